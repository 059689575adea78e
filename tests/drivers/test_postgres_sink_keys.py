"""Table sinks' key columns: typed (``bigint`` for int keys, ``text`` for str keys) when the first
commit's keys allow it, ``jsonb`` otherwise; a table made with a ``jsonb`` key (before typed
keys) keeps it. Both shapes read back the same (``table_rows``, ``run.frame``, restarts), and
a key a typed column cannot hold widens it to ``jsonb`` without losing a row."""

from __future__ import annotations

from typing import Any

import pytest

import workbench as wb
from workbench.drivers import Transaction
from workbench.runtime.batch import Batch
from workbench.windows import Windowed

from . import postgres_helpers
from .postgres_helpers import (
    HAVE_PSYCOPG,
    execute_sql,
    final_table,
    norm,
    query,
    schema_of,
    with_options,
)

if HAVE_PSYCOPG:
    from workbench.drivers.postgres import PostgresDriver

pytestmark = pytest.mark.postgres
pg_server = postgres_helpers.pg_server  # fixtures
pg_url = postgres_helpers.pg_url

#: str keys COPY's text format must escape, and JSON too
ODD = ["a\tb", "new\nline", "back\\slash", 'q"uote', "cr\r", "é", "", "null", "1"]


def key_type(url: str, table: str) -> str:
    """``format_type`` of the key column of ``table`` in the URL's schema."""
    rows = query(url, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                 "attrelid = %s::regclass AND attname = 'key'",
                 (f'"{schema_of(url)}"."{table}"',))
    return str(rows[0][0])


def test_the_first_keys_decide_the_key_column_type(pg_url: str) -> None:
    url = with_options(pg_url, upsert="ints,strs,wints,mixed,wide,floats")
    d = PostgresDriver(url)
    commits: dict[str, list[Any]] = {
        "ints": [(i, {"n": i}, i, 0, None) for i in (-(2**63), 0, 5, 2**63 - 1)],
        "strs": [(k, {"k": k}, 1, 0, None) for k in ODD],
        "wints": [(Windowed(u, 0, 60), {"n": u}, 1, 0, None) for u in (3, 1, 2)],
        "mixed": [(1, "one", 1, 0, None), ("1", "str one", 2, 0, None)],
        "wide": [(2**63, "wide", 1, 0, None)],
        "floats": [(1.5, "float", 1, 0, None)],
    }
    want_type = {"ints": "bigint", "strs": "text", "wints": "bigint", "mixed": "jsonb",
                 "wide": "jsonb", "floats": "jsonb"}
    for topic, recs in commits.items():
        d.create_topic(topic, 1, kind="sink")
        batch = Batch.from_rows(recs)  # the column path: keys COPYed straight in
        d.commit(Transaction("app", {(topic, 0): batch}))
        assert topic not in d.sinks.conflicted
        assert key_type(url, topic) == want_type[topic], topic
        assert dict(d.table_rows(topic)) == {k: v for k, v, *_ in recs}, topic
    # the typed columns hold the keys themselves: plain SQL compares them as numbers and text
    s = schema_of(url)
    assert query(url, f'SELECT value FROM "{s}".ints WHERE key > 4 ORDER BY key') == [
        ({"n": 5},), ({"n": 2**63 - 1},)]
    assert query(url, f'SELECT key FROM "{s}".strs WHERE key LIKE %s', ("a%",)) == [("a\tb",)]
    assert query(url, f'SELECT key FROM "{s}".wints ORDER BY key') == [(1,), (2,), (3,)]
    d.close()


def test_updates_and_deletes_on_typed_columns_go_through_the_staged_upsert(
        pg_url: str) -> None:
    url = with_options(pg_url, upsert="ints,strs,wstrs")
    d = PostgresDriver(url)
    for t in ("ints", "strs", "wstrs"):
        d.create_topic(t, 1, kind="sink")
    d.commit(Transaction("app", {("ints", 0): [(i, i, i, 0, None) for i in range(5)],
                                 ("strs", 0): [(k, 1, 1, 0, None) for k in ODD],
                                 ("wstrs", 0): [(Windowed(k, 0, 9), 1, 1, 0, None)
                                                for k in ODD]}))
    # the keys exist: the straight COPY is refused and the staged upsert decides
    d.commit(Transaction("app", {("ints", 0): [(1, 10, 9, 0, None), (2, None, 9, 0, None)],
                                 ("strs", 0): [(ODD[0], 2, 2, 0, None), (ODD[1], None, 2, 0,
                                                                          None)],
                                 ("wstrs", 0): [(Windowed(ODD[2], 0, 9), 3, 2, 0, None),
                                                (Windowed(ODD[3], 0, 9), None, 2, 0, None)]}))
    assert dict(d.table_rows("ints")) == {0: 0, 1: 10, 3: 3, 4: 4}
    want = {k: 1 for k in ODD if k != ODD[1]} | {ODD[0]: 2}
    assert dict(d.table_rows("strs")) == want
    assert dict(d.table_rows("wstrs")) == {
        Windowed(k, 0, 9): v for k, v in ({k: 1 for k in ODD if k != ODD[3]}
                                          | {ODD[2]: 3}).items()}
    assert [key_type(url, t) for t in ("ints", "strs", "wstrs")] == ["bigint", "text", "text"]
    d.close()


def test_a_key_the_typed_column_cannot_hold_widens_it_to_jsonb(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    url = with_options(pg_url, upsert="t,w")
    d = PostgresDriver(url)
    d.create_topic("t", 1, kind="sink")
    d.create_topic("w", 1, kind="sink")
    d.commit(Transaction("app", {("t", 0): [(1, "one", 1, 0, None), (2, "two", 1, 0, None)],
                                 ("w", 0): [(Windowed("u", 0, 9), 1, 1, 0, None)]}))
    assert (key_type(url, "t"), key_type(url, "w")) == ("bigint", "text")
    d.commit(Transaction("app", {("t", 0): [("1", "str one", 2, 0, None),
                                            (2**70, "wide", 2, 0, None),
                                            (2, None, 2, 0, None)],
                                 ("w", 0): [(Windowed(7, 0, 9), 2, 2, 0, None)]}))
    assert (key_type(url, "t"), key_type(url, "w")) == ("jsonb", "jsonb")
    assert "does not fit the bigint key column" in caplog.text
    assert sorted(d.table_rows("t"), key=repr) == sorted(
        [(1, "one"), ("1", "str one"), (2**70, "wide")], key=repr)
    assert sorted(d.table_rows("w"), key=repr) == sorted(
        [(Windowed("u", 0, 9), 1), (Windowed(7, 0, 9), 2)], key=repr)
    d.close()
    # another driver (a restart) finds the jsonb column and writes JSON keys into it
    d = PostgresDriver(url)
    d.commit(Transaction("app", {("t", 0): [(3, "three", 3, 0, None)]}))
    assert dict(d.table_rows("t"))[3] == "three"
    assert key_type(url, "t") == "jsonb"
    d.close()


def windowed_sums() -> wb.Pipeline:
    p = wb.Pipeline("sk")
    s = p.source("clicks", key="user", time="ts")
    s.group_by_key().window(wb.Tumbling(2_000, grace=500), emit="close").agg(
        total=("amount", "sum"), n="count", name="w").to("per_user")
    s.group_by_key().count(name="c").to("counts")
    return p


def clicks(lo: int, hi: int) -> list[dict[str, Any]]:
    """From the 60th on, a minute later: the end of a bounded run closes its windows, so the
    windows of a run split there are those of one run."""
    return [{"user": ODD[i % len(ODD)], "ts": 1_000 + 300 * i + (60_000 if i >= 60 else 0),
             "amount": i % 7 - 2} for i in range(lo, hi)]


@pytest.mark.parametrize("old_shape", [False, True], ids=["typed", "jsonb-table"])
def test_a_restart_on_either_shape_reads_back_what_one_run_does(pg_server: str,
                                                                old_shape: bool) -> None:
    """Half the input, a restart with the rest; with ``old_shape`` the tables are turned into
    the shape tables had before typed keys (``jsonb`` keys) between the two runs: they keep it,
    and every read equals one uninterrupted run on memory://."""
    import uuid

    url = with_options(pg_server, schema=f"t_{uuid.uuid4().hex[:12]}", upsert="per_user,counts")
    everything = clicks(0, 120)
    mem = windowed_sums().run("memory://", inputs={"clicks": everything})
    try:
        windowed_sums().run(url, inputs={"clicks": everything[:60]}).driver.close()
        s = schema_of(url)
        assert key_type(url, "per_user") == "text" and key_type(url, "counts") == "text"
        if old_shape:
            for t in ("per_user", "counts"):
                execute_sql(url, f'ALTER TABLE "{s}".{t} ALTER COLUMN key TYPE jsonb USING '
                            "to_jsonb(key)")
        run = windowed_sums().run(url, inputs={"clicks": everything[60:]})
        want = "jsonb" if old_shape else "text"
        assert key_type(url, "per_user") == want and key_type(url, "counts") == want
        # new windows only: COPYed straight in (a refusal would fall back to the upsert)
        assert "per_user" not in run.driver.sinks.conflicted
        for t in ("per_user", "counts"):
            assert dict(run.driver.table_rows(t)) == final_table(mem, t), t
            assert [(r.key, norm(r.value), r.timestamp) for r in run.records(t)] == [
                (r.key, norm(r.value), r.timestamp) for r in mem.records(t)], t
        assert run.frame("per_user").equals(mem.frame("per_user"))
        run.driver.close()
    finally:
        d = PostgresDriver(url)
        d.drop_schema()
        d.close()
