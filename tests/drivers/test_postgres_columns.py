"""The PostgreSQL driver's column paths: COPY text encoded column by column (orjson in bulk)
keeps every rule of the record-by-record encoder, and column batches written and read back
(``append_batch``, ``read_batch``, commits carrying batches) equal the row paths."""

from __future__ import annotations

import datetime as dt
import enum
import math
import uuid
from typing import Any

import numpy as np
import pytest

from workbench.drivers import Transaction
from workbench.errors import SerializationError
from workbench.keys import decode_key
from workbench.runtime.batch import Batch, ObjectValues, WindowedKeys
from workbench.windows import Windowed

from . import postgres_helpers
from .postgres_helpers import HAVE_PSYCOPG, with_options
from .test_postgres_values import exact

if HAVE_PSYCOPG:
    from workbench.drivers.postgres import PostgresDriver
    from workbench.drivers.postgres.codec import loads, log_lines
    from workbench.drivers.postgres.columns import copy_batch
    from workbench.drivers.postgres.logs import record_columns

pg_server = postgres_helpers.pg_server  # fixtures
pg_url = postgres_helpers.pg_url

NAN, INF = float("nan"), float("inf")


class Color(enum.Enum):
    RED = "red"


#: values that take every path: plain, None fields, non-finite floats (orjson writes them as
#: null), reserved dicts, escapes and backslashes, wide integers, types orjson does not take
VALUES = [
    {"user_id": 1, "amount": 1.5, "page": "/p"},
    {"a": None, "b": [None, 1]},
    {"x": NAN, "y": [1.5, -INF, {"z": INF}]},
    NAN, -INF, None, "null", "a\\b", 'q"\\\n\t\x01é', {"$float": "NaN"}, {"$literal": 1},
    {"big": 2**70}, {1: "int key"}, 1e-7, -0.0, 1e300, True, 0, [1, "two", {"3": 3.0}],
    dt.date(2024, 1, 2), Color.RED, uuid.UUID(int=7), np.int64(5), {"s": {1, 2}},
]
KEYS = ["k", 7, None, NAN, ("a", 1), Windowed("u", 0, 10), Windowed(3, 5, 15), True, 'q"\\']


def _parse_copy(text: str) -> list[list[str | None]]:
    """COPY text format lines as fields (``\\N`` as None, backslash escapes undone)."""
    out = []
    for line in text.split("\n")[:-1]:
        fields: list[str | None] = []
        for f in line.split("\t"):
            fields.append(None if f == "\\N" else f.replace("\\\\", "\\"))
        out.append(fields)
    return out


def _decoded(text: str) -> list[tuple[Any, ...]]:
    rows = []
    for p, off, k, v, ts, h in _parse_copy(text):
        rows.append((int(p), int(off), None if k is None else decode_key(loads(k)),
                     None if v is None else loads(v), int(str(ts)), h))
    return rows


def _kept_value(text: str) -> Any:
    """A value field as the table sink stages it (COPY-escaped JSON, ``\\N`` for None)."""
    return None if text == "\\N" else loads(text.replace("\\\\", "\\"))


@pytest.mark.skipif(not HAVE_PSYCOPG, reason="psycopg missing")
def test_column_copy_text_decodes_like_the_record_encoder() -> None:
    n = len(VALUES)
    keys = [KEYS[i % len(KEYS)] for i in range(n)]
    ts = list(range(100, 100 + n))
    kept: list[str] = []
    got = copy_batch("t", 2, 40, keys, VALUES, ts, None, kept)
    want_kept: list[str] = []
    want = log_lines("t", 2, 40, [(k, v, t, 0, None) for k, v, t in zip(keys, VALUES, ts)],
                     want_kept)
    assert exact(_decoded(got)) == exact(_decoded(want))
    assert exact(list(map(_kept_value, kept))) == exact(list(map(_kept_value, want_kept)))
    # one value at a time too: each value's own path (fast, or exact when it needs it)
    for i, v in enumerate(VALUES):
        one = _decoded(copy_batch("t", 0, i, ["k"], [v], [1], None))
        assert exact(one) == exact(_decoded(log_lines("t", 0, i, [("k", v, 1, 0, None)]))), v


@pytest.mark.skipif(not HAVE_PSYCOPG, reason="psycopg missing")
def test_windowed_and_changelog_keys_as_columns_match_the_record_encoder() -> None:
    inner = [7, "u", 'q"\\', ("a", 1), None, 2**70]
    columns = WindowedKeys(np.array(inner, dtype=object), np.arange(6, dtype=np.int64) * 10,
                           np.arange(6, dtype=np.int64) * 10 + 10)
    plain = WindowedKeys(np.array([1, 2, 3], dtype=object), np.array([0, 0, 5]),
                         np.array([5, 5, 10]))
    changelog = [[1, 0], ["a", 5], [1.5, 0], [NAN, 0], [2**70, 1], "__meta__"]
    mixed = [[1, 0], "m", 3]
    for keys, objs in [(columns, columns.objects().tolist()), (plain, plain.objects().tolist()),
                       (changelog, changelog), (changelog[:2], changelog[:2]), (mixed, mixed)]:
        n = len(objs)
        got = copy_batch("t", 0, 0, keys, [1] * n, list(range(n)), None)
        want = log_lines("t", 0, 0, [(k, 1, i, 0, None) for i, k in enumerate(objs)])
        assert got == want, objs


@pytest.mark.skipif(not HAVE_PSYCOPG, reason="psycopg missing")
def test_plain_batches_take_the_bulk_path_and_keep_text_exact() -> None:
    values = [{"user_id": i, "amount": i / 4, "page": f"/p{i % 3}", "tags": ["x", "y"]}
              for i in range(2000)]
    keys = [i % 17 for i in range(2000)]
    text = copy_batch("t", 0, 0, keys, values, list(range(2000)), None)
    lines = _parse_copy(text)
    assert len(lines) == 2000
    assert lines[5] == ["0", "5", "5", '{"user_id":5,"amount":1.25,"page":"/p2","tags":["x","y"]}',
                        "5", None]
    skeys = [f"user {i}" for i in range(3)]
    assert [r[2] for r in _parse_copy(copy_batch("t", 0, 0, skeys, values[:3], [0, 1, 2],
                                                 None))] == ['"user 0"', '"user 1"', '"user 2"']


@pytest.mark.skipif(not HAVE_PSYCOPG, reason="psycopg missing")
def test_a_value_json_cannot_hold_is_named_by_the_column_encoder() -> None:
    values = [{"ok": 1}, {"bad": object()}]
    with pytest.raises(SerializationError, match=r"topic 't' partition 3 \(offset 11\)"):
        copy_batch("t", 3, 10, ["a", "b"], values, [1, 2], None)


# -- against the server ------------------------------------------------------------------------
pg = pytest.mark.postgres


def _rows(batch: Batch) -> list[tuple[Any, ...]]:
    return [(k, v, t, s, h) for k, v, t, s, h in batch.rows()]


@pg
def test_batches_written_and_read_equal_the_row_paths(pg_url: str) -> None:
    d = PostgresDriver(pg_url)
    d.create_topic("rows", 1, kind="sink")
    d.create_topic("cols", 1, kind="sink")
    n = len(VALUES)
    keys = [KEYS[i % len(KEYS)] for i in range(n)]
    headers = [None] * n
    headers[3] = (("h", b"\x01"), ("s", "x"))
    recs = [(k, v, 1000 + i, 0, h) for i, (k, v, h) in enumerate(zip(keys, VALUES, headers))]
    d.append("rows", 0, recs)
    d.append_batch("cols", 0, Batch.from_rows(recs))
    by_rows = d.read("rows", 0, 0, 100)
    batch = d.read_batch("cols", 0, 0, 100)
    assert list(batch.seq) == list(range(n))
    assert batch.ts.dtype == np.int64
    assert exact(_rows(batch)) == exact(by_rows)
    assert exact(d.read("cols", 0, 3, 2)) == exact(by_rows[3:5])  # a range inside
    assert not len(d.read_batch("cols", 0, n, 10))  # the end
    d.close()


@pg
def test_a_commit_of_batches_writes_what_a_commit_of_rows_does(pg_url: str) -> None:
    url = with_options(pg_url, upsert="ta,tb")
    d = PostgresDriver(url)
    for t in ("a", "b", "ta", "tb"):
        d.create_topic(t, 2, kind="sink")
    recs = [(f"k{i % 5}", {"n": i, "f": [NAN, 0.5][i % 2]}, i, 0, None) for i in range(50)]
    win = Batch(WindowedKeys(np.array(["u", "v"] * 3, dtype=object),
                             np.array([0, 0, 10, 10, 20, 20]), np.array([10, 10, 20, 20, 30, 30])),
                ObjectValues(np.array([{"c": i} for i in range(6)], dtype=object)),
                np.arange(6, dtype=np.int64), np.arange(6, dtype=np.int64))
    d.commit(Transaction("app", {("a", 1): recs, ("ta", 0): win.rows()},
                         positions={}, metadata={"m": 1}))
    d.commit(Transaction("app", {("b", 1): Batch.from_rows(recs), ("tb", 0): win},
                         positions={}, metadata={"m": 2}))
    assert exact(d.read("b", 1, 0, 100)) == exact(d.read("a", 1, 0, 100))
    assert exact(d.read("tb", 0, 0, 100)) == exact(d.read("ta", 0, 0, 100))
    assert exact(d.table_rows("tb")) == exact(d.table_rows("ta"))
    assert len(d.table_rows("tb")) == 6
    assert d.committed_metadata("app") == {"m": 2}
    d.close()


@pg
def test_reads_larger_than_one_statement_come_in_parts(pg_url: str) -> None:
    from workbench.drivers.postgres import logs

    d = PostgresDriver(pg_url)
    d.create_topic("big", 1, kind="sink")
    d.append("big", 0, [(i, {"i": i}, i, 0, None) for i in range(250)])
    old = logs._MAX_READ
    logs._MAX_READ = 100
    try:
        first = d.read_batch("big", 0, 0, 1000)
        assert list(first.seq) == list(range(100))
        whole = d.read_all_batch("big")
        assert [v["i"] for v in whole.values.objects()] == list(range(250))
    finally:
        logs._MAX_READ = old
    d.close()


@pg
def test_enum_and_uuid_values_are_written_alike_on_every_path(pg_url: str) -> None:
    d = PostgresDriver(pg_url)
    d.create_topic("e", 1, kind="sink")
    u = uuid.UUID(int=9)
    d.append("e", 0, [("k", {"c": Color.RED, "u": u}, 1, 0, None),  # fast path
                      ("k", {"c": Color.RED, "u": u, "n": NAN}, 2, 0, None)])  # exact path
    got = [r[1] for r in d.read("e", 0, 0, 10)]
    assert got[0] == {"c": "red", "u": str(u)}
    assert got[1]["c"] == "red" and got[1]["u"] == str(u) and math.isnan(got[1]["n"])
    d.close()


@pg
def test_commits_without_pipeline_mode_write_the_same(pg_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A libpq older than 14 has no pipeline mode: the statements then run one by one."""
    import psycopg

    url = with_options(pg_url, upsert="t")
    piped = PostgresDriver(url)
    piped.create_topic("in", 1)
    piped.append("in", 0, [(i, {"i": i}, i, 0, None) for i in range(5)])
    piped.create_topic("t", 1, kind="sink")
    recs = Batch.from_rows([(f"k{i % 3}", {"n": i}, i, 0, None) for i in range(9)])
    piped.committed("app", "in", 0)
    piped.commit(Transaction("app", {("t", 0): recs}, positions={("in", 0): 5},
                             metadata={"m": 1}))
    want = (piped.read("t", 0, 0, 100), piped.table_rows("t"))
    piped.drop_schema()
    piped.close()
    monkeypatch.setattr(psycopg.Pipeline, "is_supported", classmethod(lambda cls: False))
    plain = PostgresDriver(url)
    plain.create_topic("in", 1)
    plain.append("in", 0, [(i, {"i": i}, i, 0, None) for i in range(5)])
    plain.create_topic("t", 1, kind="sink")
    plain.committed("app", "in", 0)
    plain.commit(Transaction("app", {("t", 0): recs}, positions={("in", 0): 5},
                             metadata={"m": 1}))
    assert (plain.read("t", 0, 0, 100), plain.table_rows("t")) == want
    assert plain.committed("app", "in", 0) == 5
    assert plain.committed_metadata("app") == {"m": 1}
    plain.close()


@pytest.mark.skipif(not HAVE_PSYCOPG, reason="psycopg missing")
def test_struct_values_are_encoded_from_their_columns_as_json_writes_them() -> None:
    import json

    from workbench.drivers.postgres.columns import struct_texts
    from workbench.runtime.batch import StructValues

    floats = np.array([0.1 + 0.2, 1e-05, 1e16, -0.0, 5e-324, 1.7976931348623157e308, 3.0])
    cols = {"total": floats, "n": np.arange(7, dtype=np.int64),
            "ok": np.array([True, False] * 3 + [True])}
    texts = struct_texts(StructValues(cols, None))
    want = [json.dumps(v, separators=(",", ":"))
            for v in StructValues(cols, None).objects().tolist()]
    assert texts == want
    assert [json.loads(t) for t in texts] == StructValues(cols, None).objects().tolist()
    # the general encoders take what the columns cannot say exactly
    assert struct_texts(StructValues({"x": np.array([1.0, NAN])}, None)) is None
    assert struct_texts(StructValues({"x": np.array([1, 2])}, np.array([True, False]))) is None
    assert struct_texts(StructValues({"a b": np.array([1])}, None)) is None
    assert struct_texts(StructValues({"s": np.array(["x"], dtype=object)}, None)) is None
    assert struct_texts(ObjectValues(np.array([{"a": 1}], dtype=object))) is None


@pg
def test_windowed_table_sinks_are_copied_straight_in_and_upserted_on_a_conflict(
        pg_url: str) -> None:
    """Windows a table does not hold yet are COPYed into it (no upsert); a commit holding a
    window the table has already goes through the upsert, and the table ends as the log's
    last value per window."""
    from workbench.runtime.batch import StructValues

    url = with_options(pg_url, upsert="w")
    d = PostgresDriver(url)
    d.create_topic("w", 1, kind="sink")

    def batch(keys: list[int], starts: list[int], n: list[int]) -> Batch:
        s = np.array(starts, dtype=np.int64)
        return Batch(WindowedKeys(np.array(keys, dtype=np.int64), s, s + 10),
                     StructValues({"n": np.array(n, dtype=np.int64),
                                   "total": np.array(n, dtype=np.float64) / 2}, None),
                     s, np.arange(len(keys), dtype=np.int64))

    d.commit(Transaction("app", {("w", 0): batch([1, 2, 3], [0, 0, 0], [1, 2, 3])}, {}, {}))
    assert "w" not in d.sinks.conflicted
    d.commit(Transaction("app", {("w", 0): batch([1, 4], [10, 10], [4, 5])}, {}, {}))
    assert "w" not in d.sinks.conflicted
    d.commit(Transaction("app", {("w", 0): batch([2, 5], [0, 10], [20, 6])}, {}, {}))
    assert "w" in d.sinks.conflicted  # window (2, 0) was there: upserted
    want = {Windowed(k, s, s + 10): {"n": n, "total": n / 2}
            for k, s, n in [(1, 0, 1), (2, 0, 20), (3, 0, 3), (1, 10, 4), (4, 10, 5), (5, 10, 6)]}
    assert dict(d.table_rows("w")) == want
    logged = {}
    for k, v, *_ in d.read("w", 0, 0, 100):
        logged[k] = v
    assert logged == want
    d.close()


@pg
def test_overlapped_commits_write_what_synchronous_ones_do(pg_url: str) -> None:
    """The engine's commits in a thread (overlap=1, the default) and one by one (overlap=0):
    the same outputs, table and positions; a read of a topic in flight waits for its commit."""
    import workbench as wb

    def pipeline(app: str) -> wb.Pipeline:
        p = wb.Pipeline(app)
        (p.source(f"in-{app}", key="k", time="t").group_by_key()
         .window(wb.Tumbling("10s", grace="1s"), emit="close")
         .agg(total=("x", "sum"), n="count", name="agg").to(f"out-{app}"))
        return p

    rng = np.random.default_rng(3)
    rows = [{"k": int(rng.integers(50)), "t": i * 37 + int(rng.integers(3000)),
             "x": float(rng.integers(100)) / 4} for i in range(3000)]
    got = {}
    for overlap in ("0", "1"):
        app = f"ov{overlap}"
        url = with_options(pg_url, upsert=f"out-{app}", overlap=overlap)
        run = pipeline(app).run(url, inputs={f"in-{app}": rows}, batch_size=97,
                                commit_interval="1ms")
        assert run.stats.commits > 5
        d = run.driver
        got[overlap] = ([(k, v, t) for k, v, t, _o, _h in d.read(f"out-{app}", 0, 0, 10**6)],
                        sorted(d.table_rows(f"out-{app}")), d.committed(app, f"in-{app}", 0))
        d.close()
    assert got["1"] == got["0"]
    assert got["1"][2] == 3000 and len(got["1"][0]) > 100


@pytest.mark.skipif(not HAVE_PSYCOPG, reason="psycopg missing")
def test_window_changelogs_as_columns_are_written_as_their_records_are() -> None:
    """A window store's changelog handed over as columns (``WindowChanges``) is encoded
    without building its records, into the text the records' path writes; anything but int/str
    keys with counts and sums is left to the records' path."""
    from workbench.drivers.postgres.columns import lines_at, window_change_tails
    from workbench.runtime.fold import Accs
    from workbench.runtime.window_changes import WindowChanges

    keys = np.array([7, "u\\1", 'q"é', 3], dtype=object)
    starts = np.array([0, 60, 120, 180], dtype=np.int64)
    times = np.array([5, 61, 179, 200], dtype=np.int64)
    agg = [("total", "amount", "sum"), ("n", None, "count")]
    accs = Accs([np.array([0.1 + 0.2, -2.5, 1e300, 7.0]), np.array([1, 2, 3, 4])],
                [None, None], [None, None])
    removed = [(5, 0), ("a\tb", 60)]
    cases = [WindowChanges(removed, keys, starts, agg, accs, times, 9_000, 42),
             WindowChanges([], keys[:1], starts[:1], [(None, None, "count")],
                           Accs([np.array([3])], [None], [None]), times[:1], None, 0),
             WindowChanges(removed, keys[:0], starts[:0], agg, accs.take(slice(0, 0)),
                           times[:0], None, 1)]
    for ch in cases:
        tails = window_change_tails(ch)
        assert tails is not None and len(tails) == len(ch)
        want = copy_batch("cl", 2, 10, *record_columns(ch.rows()))
        assert lines_at(2, 10, tails) == want
    # a float orjson spells otherwise (0.00001; json writes 1e-05): the same value
    tiny = WindowChanges([], keys[:1], starts[:1], agg[:1], Accs([np.array([1e-5])], [None],
                                                                 [None]), times[:1], None, 0)
    text = lines_at(0, 0, window_change_tails(tiny) or [])
    assert "1e-05" in text
    assert _decoded(text) == _decoded(copy_batch("cl", 0, 0, *record_columns(tiny.rows())))
    # the records' path takes the rest: keys other than int/str, other aggregations
    tuple_key = np.empty(1, dtype=object)
    tuple_key[0] = (1, 2)
    odd = [WindowChanges([], tuple_key, starts[:1], agg,
                         accs.take(slice(0, 1)), times[:1], None, 0),
           WindowChanges([(None, 0)], keys[:0], starts[:0], agg, accs.take(slice(0, 0)),
                         times[:0], None, 0),
           WindowChanges([], keys[:1], starts[:1], [("m", "x", "mean")],
                         Accs([np.array([1.0])], [None], [np.array([2])]), times[:1], None, 0),
           WindowChanges([], keys[:1], starts[:1], agg[:1], Accs([np.array([math.nan])],
                                                                 [None], [None]), times[:1],
                         None, 0)]
    for ch in odd:
        assert window_change_tails(ch) is None
