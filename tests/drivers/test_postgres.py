"""The PostgreSQL driver against a real server: the driver contract, equivalence with
``memory://`` on stateless, windowed and joined pipelines, table sinks, user tables as sources,
bad rows, leases, LISTEN/NOTIFY. Server and helpers: ``postgres_helpers.py``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid

import pytest

import workbench as wb
from workbench.drivers import Transaction
from workbench.errors import (
    DefinitionError,
    DriverError,
    DriverUnavailableError,
    FencedError,
    SerializationError,
)
from workbench.windows import Windowed

from . import postgres_helpers
from .postgres_helpers import (
    HAVE_PSYCOPG,
    ROOT,
    assert_same,
    clicks,
    execute_sql,
    final_table,
    free_port,
    pg_server_of,
    profiles,
    with_options,
)
from .store_processors import VISIT_STORES, Visits

if HAVE_PSYCOPG:
    import psycopg

    from workbench.drivers.postgres import PostgresDriver, decode_key, encode_key

pytestmark = pytest.mark.postgres
pg_server = postgres_helpers.pg_server  # fixtures
pg_url = postgres_helpers.pg_url


# -- the driver contract -----------------------------------------------------------------------
def test_log_append_read_end_offset(pg_url: str) -> None:
    d = PostgresDriver(pg_url)
    assert d.partitions("t") is None
    assert d.ensure_topic("t", 3) == 3
    assert d.ensure_topic("t", 5) == 3
    d.append("t", 1, [("k", {"a": 1, "z": [1, 2]}, 10, 0, None),
                      (("x", 2), None, 11, 0, (("h", b"\x00\x01"), ("n", None)))])
    d.append("t", 1, [(Windowed("k", 0, 60), "v\\\t\n'\"", 12, 0, None)])
    assert d.end_offset("t", 1) == 3
    assert d.end_offset("t", 0) == 0
    got = d.read("t", 1, 0, 10)
    assert got == [("k", {"a": 1, "z": [1, 2]}, 10, 0, None),
                   (("x", 2), None, 11, 1, (("h", b"\x00\x01"), ("n", None))),
                   (Windowed("k", 0, 60), "v\\\t\n'\"", 12, 2, None)]
    assert list(got[0][1]) == ["a", "z"]  # field order survives (json, not jsonb)
    assert d.read("t", 1, 1, 1) == got[1:2]
    assert d.read("t", 1, 3, 10) == []
    assert d.read_all("t") == got
    with pytest.raises(DriverError, match="no partition 3"):
        d.read("t", 3, 0, 1)
    with pytest.raises(DriverError, match="does not exist"):
        d.read("nope", 0, 0, 1)
    assert "t" in d.topics()
    d.close()


def test_key_encoding_round_trips() -> None:
    for key in ["a", 1, 2.5, None, True, ("a", 1), Windowed(("a", 1), 0, 10),
                frozenset({"x", "y"}), (("n", 1), "z")]:
        assert decode_key(json.loads(json.dumps(encode_key(key)))) == key


def test_identifiers_are_quoted_and_long_names_fit(pg_url: str) -> None:
    d = PostgresDriver(pg_url)
    evil = 'x"; DROP TABLE _topics; --'
    long = "a" * 80
    longer = "a" * 79 + "b"
    for t in (evil, long, longer):
        d.create_topic(t, 1, kind="sink")
        d.append(t, 0, [(t, t, 1, 0, None)])
    for t in (evil, long, longer):
        assert d.read(t, 0, 0, 5) == [(t, t, 1, 0, None)]
    assert d.partitions(evil) == 1
    d.close()


def test_commit_is_atomic_and_moves_positions(pg_url: str) -> None:
    d = PostgresDriver(pg_url)
    d.create_topic("in", 1)
    d.create_topic("out", 2, kind="sink")
    d.append("in", 0, [(i, i, i, 0, None) for i in range(5)])
    assert d.committed("app", "in", 0) == 0
    d.commit(Transaction("app", {("out", 0): [(1, "a", 1, 0, None)],
                                 ("out", 1): [(2, "b", 2, 0, None)]}, {("in", 0): 3}, {"m": 5}))
    assert d.committed("app", "in", 0) == 3
    assert d.committed_metadata("app") == {"m": 5}
    assert d.end_offset("out", 0) == 1 and d.end_offset("out", 1) == 1
    # a value JSON cannot hold: the commit fails before anything is written
    with pytest.raises(SerializationError, match="out"):
        d.commit(Transaction("app", {("out", 0): [(1, "ok", 1, 0, None),
                                                  (1, object(), 1, 0, None)]},
                             {("in", 0): 5}))
    # a failure inside the transaction: nothing is written either
    with pytest.raises(DriverError):
        d.commit(Transaction("app", {("out", 0): [(1, "ok", 1, 0, None)],
                                     ("out", 7): [(1, "x", 1, 0, None)]}, {("in", 0): 5}))
    assert d.end_offset("out", 0) == 1
    assert d.committed("app", "in", 0) == 3
    d.close()


def test_positions_are_compare_and_set(pg_url: str) -> None:
    a, b = PostgresDriver(pg_url), PostgresDriver(pg_url)
    a.create_topic("in", 1)
    a.create_topic("out", 1, kind="sink")
    assert a.committed("app", "in", 0) == 0
    assert b.committed("app", "in", 0) == 0
    b.commit(Transaction("app", {("out", 0): [(1, 1, 1, 0, None)]}, {("in", 0): 4}))
    with pytest.raises(FencedError, match="another worker"):
        a.commit(Transaction("app", {("out", 0): [(2, 2, 2, 0, None)]}, {("in", 0): 2}))
    assert a.end_offset("out", 0) == 1
    a.close()
    b.close()


def test_missing_psycopg_is_driver_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(DriverUnavailableError, match=r"workbench\[postgres\]"):
        PostgresDriver("postgresql://nobody@127.0.0.1:1/x")


def test_unreachable_server_is_driver_unavailable() -> None:
    if not HAVE_PSYCOPG:
        pytest.skip("psycopg missing")
    with pytest.raises(DriverUnavailableError, match="`workbench dev up`"):
        PostgresDriver(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?retry=200ms")


def test_url_options(pg_server: str) -> None:
    with pytest.raises(DefinitionError, match=r"table\.orders"):
        PostgresDriver(with_options(pg_server, table__orders="public.orders"))


# -- equivalence with memory:// ----------------------------------------------------------------
def stateless() -> wb.Pipeline:
    p = wb.Pipeline("eq-stateless")
    s = p.source("clicks", key="user", time="ts", partitions=3)
    parts = s.split(pos=lambda v: v["amount"] > 0)
    pos, neg = parts.pos, parts.rest
    pos.map(lambda v: {**v, "cents": round(v["amount"] * 100)}).to("positive")
    neg.flat_map(lambda v: [v, {**v, "copy": True}]).key_by(lambda v: v["page"]).to("by_page")
    s.filter(lambda v: v["page"] == "/p/1").merge(
        s.filter(lambda v: v["page"] == "/p/2")).to("merged", partitions=2)
    return p


def test_equivalent_stateless(pg_url: str) -> None:
    assert_same(stateless, {"clicks": clicks()}, pg_url)


def windowed() -> wb.Pipeline:
    p = wb.Pipeline("eq-windowed")
    s = p.source("clicks", key="user", time="ts", partitions=2)
    g = s.group_by_key()
    g.window(wb.Tumbling(5_000, grace=1_000)).agg(total=("amount", "sum"), n="count",
                                                  name="tumbling").to("tumbling")
    g.window(wb.Hopping(6_000, advance=2_000, grace=500), emit="close").count(
        name="hopping").to("hopping")
    g.window(wb.Session(1_500)).count(name="sessions").to("sessions")
    s.group_by("page").count(name="per_page").to("per_page")
    return p


def test_equivalent_windowed(pg_url: str) -> None:
    assert_same(windowed, {"clicks": clicks()}, pg_url,
                tables=("tumbling", "hopping", "per_page"), interleaved=("per_page",))


def joined() -> wb.Pipeline:
    p = wb.Pipeline("eq-joined")
    users = p.table("profiles", key="user", time="ts", partitions=2)
    s = p.source("clicks", key="user", time="ts", partitions=2)
    s.join(users).map(lambda v: {k: v[k] for k in sorted(v)}).to("enriched")
    s.join(s.filter(lambda v: v["amount"] > 0), within=500,
           combine=lambda a, b: [a["ts"], b["ts"]]).to("pairs")
    s.group_by_key().count(name="n").join(users, how="left",
                                          combine=lambda n, u: [n, u and u["country"]]
                                          ).to("user_counts")
    return p


def global_joined() -> wb.Pipeline:
    """A global table (every partition read by every task) joined on a field."""
    p = wb.Pipeline("eq-global")
    users = p.global_table("profiles", key="user", time="ts", partitions=3)
    s = p.source("clicks", key="page", time="ts", partitions=2)
    s.join(users, on="user", how="left").map(lambda v: {k: v[k] for k in sorted(v)}).to(
        "g-enriched")
    return p


def test_equivalent_global_table_join(pg_url: str) -> None:
    assert_same(global_joined, {"clicks": clicks(), "profiles": profiles()}, pg_url)


def test_equivalent_versioned_table_join(pg_url: str) -> None:
    """A stream joined with a versioned table (as of each click; a grace period too)."""
    def build() -> wb.Pipeline:
        p = wb.Pipeline("eq-versioned")
        users = p.table("profiles", key="user", time="ts", partitions=2, history="1h")
        s = p.source("clicks", key="user", time="ts", partitions=2)
        s.join(users, how="left", combine=lambda c, u: [c["ts"], u and u["country"]],
               name="v-left").to("v-left")
        s.join(users, grace="2s", combine=lambda c, u: [c["ts"], u["country"]],
               name="v-grace").to("v-grace")
        return p

    moves = [{"user": f"u{i}", "country": "XX", "ts": 10_000 * i} for i in range(1, 4)]
    mem, _pg = assert_same(build, {"clicks": clicks(), "profiles": profiles() + moves}, pg_url)
    assert "XX" in {r.value[1] for r in mem.records("v-left")}


def test_equivalent_processor_stores(pg_url: str) -> None:
    """A processor's session and timestamped stores (changelogs as log tables)."""
    def build() -> wb.Pipeline:
        p = wb.Pipeline("eq-proc-stores")
        s = p.source("clicks", key="user", time="ts", partitions=2)
        s.process(Visits, stores=VISIT_STORES, name="visits").to("visits")
        return p

    mem, _pg = assert_same(build, {"clicks": clicks()}, pg_url)
    assert any(r.value[2] > 1 for r in mem.records("visits"))   # sessions were merged


def test_foreign_key_join_final_values(pg_url: str) -> None:
    """A foreign-key join across 2- and 3-partition tables (subscription and response topics
    as log tables): the same final result per key as memory."""
    def build() -> wb.Pipeline:
        p = wb.Pipeline("eq-fk")
        users = p.table("profiles", key="user", time="ts", partitions=3)
        last = p.table("clicks", key="page", time="ts", partitions=2)
        last.join(users, on=lambda c: c["user"], how="left").to("fk-left")
        return p

    data = {"clicks": clicks(), "profiles": profiles()}
    mem = build().run("memory://", inputs=data)
    pg = build().run(pg_url, inputs=data)
    final = {r.key: r.value for r in mem.records("fk-left")}
    assert {r.key: r.value for r in pg.records("fk-left")} == final
    assert len(final) == 5


def test_equivalent_joined(pg_url: str) -> None:
    assert_same(joined, {"clicks": clicks(), "profiles": profiles()}, pg_url,
                tables=("user_counts",))


def test_equivalent_dsl_operators(pg_url: str) -> None:
    """Re-grouped table, suppress, cogroup, repartition, topic function, split."""
    from .dsl_helpers import created_topics, dsl_pipeline

    mem, _pg = assert_same(lambda: dsl_pipeline("eq-dsl", "clicks", "profiles", partitions=2),
                           {"clicks": clicks(), "profiles": profiles()}, pg_url,
                           created=tuple(created_topics()))
    assert sum(mem.driver.partitions(t) is not None for t in created_topics()) == 5


def test_equivalent_clickstream_example(pg_url: str) -> None:
    import pandas as pd

    sys.path.insert(0, str(ROOT / "examples"))
    import clickstream

    data = {"clicks": pd.read_csv(clickstream.DATA / "clicks.csv"),
            "profiles": pd.read_csv(clickstream.DATA / "profiles.csv")}
    assert_same(clickstream.build, data, pg_url, tables=("per-user-minute",))


def test_table_sink_upserts_and_deletes(pg_url: str) -> None:
    def build() -> wb.Pipeline:
        p = wb.Pipeline("eq-table")
        t = p.table("kv", key="k", time="ts", partitions=2)
        t.filter(lambda v: v["n"] % 2 == 0).to("even")
        return p

    rows = [{"k": f"k{i % 5}", "n": i, "ts": i} for i in range(23)]
    rows.append({"k": "k1", "n": None, "ts": 30})
    mem, _pg = assert_same(build, {"kv": rows}, pg_url, tables=("even",))
    d = PostgresDriver(pg_url)
    with psycopg.connect(pg_server_of(pg_url)) as c:
        got = c.execute(f'SELECT key, value FROM "{d.schema}".even ORDER BY key').fetchall()
    assert got == sorted((k, v) for k, v in final_table(mem, "even").items())
    d.close()


def test_sink_view_is_readable(pg_url: str) -> None:
    p = wb.Pipeline("view")
    p.source("in", key="k").to("out")
    p.run(pg_url, inputs={"in": [{"k": 1, "x": "a"}, {"k": 2, "x": "b"}]}).driver.close()
    schema = pg_url.split("schema=")[1]
    with psycopg.connect(pg_server_of(pg_url)) as c:
        got = c.execute(f'SELECT key::text, value->>\'x\' FROM "{schema}".out '
                        'ORDER BY "offset"').fetchall()
    assert got == [("1", "a"), ("2", "b")]


def test_resume_after_a_finished_run_processes_only_new_records(pg_url: str) -> None:
    def build() -> wb.Pipeline:
        p = wb.Pipeline("resume")
        p.source("in", key="k").group_by_key().count(name="c").to("counts")
        return p

    first = [{"k": i % 3} for i in range(10)]
    build().run(pg_url, inputs={"in": first}).driver.close()
    run = build().run(pg_url, inputs={"in": [{"k": 0}, {"k": 5}]})
    assert final_table(run, "counts") == {0: 5, 1: 3, 2: 3, 5: 1}
    run.driver.close()


# -- user tables as sources --------------------------------------------------------------------
def test_user_table_source_resumes_from_last_position(pg_url: str) -> None:
    tbl = f"orders_{uuid.uuid4().hex[:8]}"
    execute_sql(pg_url, f"CREATE TABLE public.{tbl} (id bigserial PRIMARY KEY, customer text, "
          "amount numeric, created timestamptz DEFAULT now())",
          f"INSERT INTO public.{tbl} (customer, amount) SELECT 'c' || (g % 3), g FROM "
          "generate_series(1, 25) g")
    url = with_options(pg_url, **{f"table__{tbl}": f"public.{tbl}:id:key=customer"})

    def build() -> wb.Pipeline:
        p = wb.Pipeline("orders")
        p.source(tbl).group_by_key().agg(total=("amount", "sum"), name="tot").to("totals")
        return p

    try:
        run = build().run(url, batch_size=7)
        assert final_table(run, "totals") == {
            "c0": {"total": sum(g for g in range(1, 26) if g % 3 == 0)},
            "c1": {"total": sum(g for g in range(1, 26) if g % 3 == 1)},
            "c2": {"total": sum(g for g in range(1, 26) if g % 3 == 2)}}
        assert run.driver.committed("orders", tbl, 0) == 26
        run.driver.close()
        execute_sql(pg_url, f"INSERT INTO public.{tbl} (customer, amount) VALUES ('c9', 100)")
        run = build().run(url)
        assert final_table(run, "totals")["c9"] == {"total": 100}
        assert run.stats.records_in == 1
        run.driver.close()
    finally:
        execute_sql(pg_url, f"DROP TABLE public.{tbl}")


def test_user_table_ordered_by_timestamp(pg_url: str) -> None:
    tbl = f"ev_{uuid.uuid4().hex[:8]}"
    day = "timestamptz '2024-01-01 00:00:00+00'"
    execute_sql(pg_url, f"CREATE TABLE public.{tbl} (at timestamptz, v int)",
          f"INSERT INTO public.{tbl} SELECT {day} + g * interval '1 ms', g "
          "FROM generate_series(1, 10) g",
          f"INSERT INTO public.{tbl} VALUES ({day} + interval '5 ms', 99)")
    url = with_options(pg_url, **{f"table__{tbl}": f"public.{tbl}:at"})
    p = wb.Pipeline("ts")
    p.source(tbl).map(lambda v: v["v"]).to("vs")
    try:
        run = p.run(url, batch_size=5)  # 5 and 99 share a timestamp: never split
        assert sorted(r.value for r in run.records("vs")) == [*range(1, 11), 99]
        assert run.records("vs")[0].timestamp == 1704067200001
        run.driver.close()
    finally:
        execute_sql(pg_url, f"DROP TABLE public.{tbl}")


def test_bad_rows_stop_the_run_with_table_and_position(pg_url: str) -> None:
    tbl = f"raw_{uuid.uuid4().hex[:8]}"
    execute_sql(pg_url, f"CREATE TABLE public.{tbl} (id int, payload text)",
          f"INSERT INTO public.{tbl} VALUES (1, '{{\"a\": 1}}'), (2, '{{broken'), "
          "(3, '{\"a\": 3}')")
    p = wb.Pipeline("raw")
    p.source(tbl).map(lambda v: v["a"]).to("as")
    try:
        url = with_options(pg_url, **{f"table__{tbl}": f"public.{tbl}:id:value=payload"})
        with pytest.raises(SerializationError, match=rf"public\.{tbl}.*position 2"):
            p.run(url)
        url = with_options(url, errors=1)
        run = p.run(url, batch_size=2)
        assert [r.value for r in run.records("as")] == [1, 3]
        errs = run.driver.errors()
        assert len(errs) == 1 and errs[0]["position"] == "2"
        assert errs[0]["source"] == f"public.{tbl}" and errs[0]["row"] == "{broken"
        run.driver.close()
    finally:
        execute_sql(pg_url, f"DROP TABLE public.{tbl}")


def test_constraint_violation_names_the_table_and_rolls_back(pg_url: str) -> None:
    def build() -> wb.Pipeline:
        p = wb.Pipeline("cv")
        p.source("in", key="k").group_by_key().count(name="c").to("counts")
        return p

    url = with_options(pg_url, upsert="counts")
    build().run(url, inputs={"in": [{"k": 1}]}).driver.close()
    schema = url.split("schema=")[1].split("&")[0]
    execute_sql(url, f'ALTER TABLE "{schema}".counts ADD CONSTRAINT small CHECK '
          "((value)::int < 3)")
    with pytest.raises(DriverError, match=r"counts.*small"):
        build().run(url, inputs={"in": [{"k": 1}, {"k": 1}, {"k": 1}]})
    d = PostgresDriver(url)
    assert d.end_offset("counts", 0) == 1  # nothing of the failed transaction
    assert d.committed("cv", "in", 0) == 1
    d.close()


# -- membership and tailing --------------------------------------------------------------------
def test_leases_split_partitions_and_pass_on_when_a_worker_dies(pg_url: str) -> None:
    url = with_options(pg_url, members=2)
    a, b = PostgresDriver(url), PostgresDriver(url)
    a.create_topic("in", 4)
    got_a = a.assign("app", ["in"])
    got_b = b.assign("app", ["in"])
    assert got_a == {"in": [0, 1]} and got_b == {"in": [2, 3]}
    a.close()  # its session ends, and its locks with it
    c = PostgresDriver(pg_url)  # members unset: takes whatever is free
    assert c.assign("app", ["in"]) == {"in": [0, 1]}
    b.close()
    c.close()


def test_wait_for_data_wakes_on_commit(pg_url: str) -> None:
    d = PostgresDriver(pg_url)
    d.create_topic("t", 1)
    t0 = time.monotonic()
    assert d.wait_for_data(0.2) is False
    assert time.monotonic() - t0 >= 0.19
    d.wait_for_data(0.01)  # LISTEN is set up
    other = PostgresDriver(pg_url)
    timer = threading.Timer(0.3, lambda: other.append("t", 0, [(1, 1, 1, 0, None)]))
    timer.start()
    t0 = time.monotonic()
    assert d.wait_for_data(10) is True
    assert time.monotonic() - t0 < 5
    timer.join()
    other.close()
    d.close()


def test_compaction_keeps_the_latest_record_per_key(pg_url: str) -> None:
    d = PostgresDriver(pg_url)
    d.create_topic("cl", 1, kind="changelog", compact=True)
    d.append("cl", 0, [("a", 1, 1, 0, None), ("b", 1, 1, 0, None), ("a", 2, 1, 0, None),
                       (["a", 1], 3, 1, 0, None), ("b", None, 1, 0, None)])
    assert d.compact("cl") == 2
    assert [(r[0], r[1], r[3]) for r in d.read("cl", 0, 0, 10)] == [
        ("a", 2, 2), (("a", 1), 3, 3), ("b", None, 4)]
    assert d.end_offset("cl", 0) == 5
    assert d.read("cl", 0, 0, 1) == [("a", 2, 1, 2, None)]  # jumps over the compacted gap
    assert d.read("cl", 0, 5, 10) == []
    d.close()


def test_bind_app_names_the_schema_after_the_application(pg_server: str) -> None:
    app = f"app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_of(pg_server)) as c:
        had_default = c.execute("SELECT count(*) FROM pg_namespace WHERE nspname = "
                                "'workbench'").fetchone()[0]
    d = PostgresDriver(pg_server)
    assert d.schema == "workbench"
    d.bind_app(app)
    assert d.schema == app
    d.create_topic("t", 1)
    with psycopg.connect(pg_server_of(pg_server)) as c:
        assert c.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                         "%s AND table_name = '_log_t'", (app,)).fetchone()[0] == 1
    d.drop_schema()
    d.close()
    if not had_default:  # the default schema, made by this test
        execute_sql(pg_server, "DROP SCHEMA IF EXISTS workbench CASCADE")
    chosen = f"chosen_{uuid.uuid4().hex[:8]}"
    explicit = PostgresDriver(with_options(pg_server, schema=chosen))
    explicit.bind_app(app)
    assert explicit.schema == chosen
    explicit.drop_schema()
    explicit.close()


def test_a_lost_session_is_reconnected_and_its_leases_taken_back(pg_url: str) -> None:
    d = PostgresDriver(pg_url)
    d.create_topic("in", 1)
    d.create_topic("out", 1, kind="sink")
    assert d.assign("app", ["in"]) == {"in": [0]}
    assert d.committed("app", "in", 0) == 0
    execute_sql(pg_url, f"SELECT pg_terminate_backend({d.session.conn.info.backend_pid})")
    d.commit(Transaction("app", {("out", 0): [(1, 1, 1, 0, None)]}, {("in", 0): 1}))
    assert d.reconnects == 1
    assert d.end_offset("out", 0) == 1 and d.committed("app", "in", 0) == 1
    other = PostgresDriver(pg_url)
    assert other.assign("app", ["in"]) == {"in": []}  # the lease is held again
    # lost again, and this time another worker takes the partition first: fenced
    execute_sql(pg_url, f"SELECT pg_terminate_backend({d.session.conn.info.backend_pid})")
    time.sleep(0.2)
    assert other.assign("app", ["in"]) == {"in": [0]}
    with pytest.raises(FencedError, match="taken over"):
        d.commit(Transaction("app", {("out", 0): [(2, 2, 2, 0, None)]}, {("in", 0): 2}))
    assert d.end_offset("out", 0) == 1
    other.close()
    d.close()


def test_takeover_leases_a_dead_workers_partitions_during_a_run(pg_url: str) -> None:
    a = PostgresDriver(with_options(pg_url, members=2))
    b = PostgresDriver(with_options(pg_url, members=2, takeover=1))
    a.create_topic("in", 4)
    a.create_topic("side", 2)
    assert a.assign("app", ["in", "side"]) == {"in": [0, 1], "side": [0, 1]}
    assert b.assign("app", ["in", "side"]) == {"in": [2, 3], "side": []}
    b.leases.poll_interval_s = 0.0  # no pause between lease rounds
    assert b.poll_membership() is None  # a is alive: nothing is free
    a.close()
    owned = None  # the server ends a's session (and its leases) asynchronously
    deadline = time.monotonic() + 10
    while owned is None and time.monotonic() < deadline:
        owned = b.poll_membership()
        if owned is None:
            time.sleep(0.1)
    assert owned == {"in": [0, 1, 2, 3], "side": [0, 1]}
    b.end_run()  # the run is over: its partitions are free again
    c = PostgresDriver(pg_url)
    assert c.assign("app", ["in"]) == {"in": [0, 1, 2, 3]}
    c.close()
    b.close()
