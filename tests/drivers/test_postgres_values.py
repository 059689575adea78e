"""What the PostgreSQL driver stores: object names that never collide, header values of every
type, NaN and infinities (values, nested, keys, table sinks, a whole pipeline)."""

from __future__ import annotations

import math
from typing import Any

import pytest

import workbench as wb
from workbench.drivers import Transaction
from workbench.errors import DriverError, SerializationError
from workbench.windows import Windowed

from . import postgres_helpers
from .postgres_helpers import HAVE_PSYCOPG, execute_sql, query, schema_of, with_options

if HAVE_PSYCOPG:
    from workbench.drivers.postgres import PostgresDriver

pytestmark = pytest.mark.postgres
pg_server = postgres_helpers.pg_server  # fixtures
pg_url = postgres_helpers.pg_url

NAN, INF = float("nan"), float("inf")


def exact(x: Any) -> Any:
    """``x`` with every float replaced by its repr, so that ``==`` tells NaN from NaN (equal),
    -0.0 from 0.0 and 1 from 1.0 (different); dicts still compare regardless of order."""
    if isinstance(x, float):
        return ("float", repr(x))
    if isinstance(x, dict):
        return {k: exact(v) for k, v in x.items()}
    if isinstance(x, Windowed):
        return ("windowed", exact(x.key), x.window_start, x.window_end)
    if isinstance(x, list | tuple):
        return (type(x).__name__, *map(exact, x))
    return x


def same(a: Any, b: Any) -> bool:
    """Equal, counting NaN as equal to NaN and keeping float and int apart."""
    return bool(exact(a) == exact(b))


# -- names -------------------------------------------------------------------------------------
#: topic -> the relation named after it, as docs/drivers/postgres.md ("Names") says
DOCUMENTED = {"a": "a", "log_a": "log_a", "_log_a": "__log_a", "_topics": "__topics",
              "_a": "__a", "__a": "___a"}


def test_topic_objects_never_share_a_name(pg_url: str) -> None:
    d = PostgresDriver(pg_url)
    for t in DOCUMENTED:
        d.create_topic(t, 1, kind="sink")
        d.append(t, 0, [(t, f"value of {t}", 1, 0, None)])
    schema = schema_of(pg_url)
    for t, name in DOCUMENTED.items():
        rows = query(pg_url, f'SELECT value #>> \'{{}}\' FROM "{schema}"."{name}"')
        assert rows == [(f"value of {t}",)], t
        assert d.read(t, 0, 0, 10) == [(t, f"value of {t}", 1, 0, None)]
    # workbench's own tables are untouched: a topic called _topics did not replace the catalog
    assert sorted(d.topics()) == sorted(DOCUMENTED)
    d.close()


def test_table_sink_named_like_a_log_table(pg_url: str) -> None:
    url = with_options(pg_url, upsert="log_a")
    d = PostgresDriver(url)
    d.create_topic("a", 1, kind="sink")
    d.create_topic("log_a", 1, kind="sink")
    d.commit(Transaction("app", {("a", 0): [("k", 1, 1, 0, None)],
                                 ("log_a", 0): [("k", 2, 1, 0, None)]}))
    assert d.table_rows("log_a") == [("k", 2)]
    assert d.read("a", 0, 0, 10) == [("k", 1, 1, 0, None)]
    assert query(url, f'SELECT value::text FROM "{schema_of(url)}".log_a') == [("2",)]
    d.close()


def test_long_names_stay_apart(pg_url: str) -> None:
    d = PostgresDriver(pg_url)
    base = "t" * 70
    shortened_looking = "x" * 40 + "~0123456789abcdef"  # looks like a shortened name
    topics = [base, base + "1", base + "2", shortened_looking]
    for t in topics:
        d.create_topic(t, 1, kind="sink")
        d.append(t, 0, [(None, t, 1, 0, None)])
    for t in topics:
        assert d.read(t, 0, 0, 5) == [(None, t, 1, 0, None)]
    d.close()


def test_a_foreign_relation_in_the_way_is_named(pg_url: str) -> None:
    d = PostgresDriver(pg_url)
    execute_sql(pg_url, f'CREATE TABLE "{schema_of(pg_url)}".mine (x int)')
    with pytest.raises(DriverError, match=r"relation named 'mine'.*topic 'mine'"):
        d.create_topic("mine", 1, kind="sink")
    assert d.partitions("mine") is None  # nothing half-made
    d.close()


# -- headers -----------------------------------------------------------------------------------
def test_header_values_round_trip_with_their_types(pg_url: str) -> None:
    d = PostgresDriver(pg_url)
    d.create_topic("h", 1, kind="sink")
    headers = (("s", "text é"), ("b", b"\x00\xff"), ("i", 42), ("neg", -7), ("big", 2**62),
               ("f", 1.5), ("nan", NAN), ("t", True), ("none", None), ("s", "dup name"),
               ("hexlike", "00ff"))
    d.append("h", 0, [("k", 1, 1, 0, headers)])
    d.commit(Transaction("app", {("h", 0): [("k", 2, 2, 0, headers)]}))
    got = d.read("h", 0, 0, 10)
    for rec in got:
        assert same(rec[4], headers)
        assert [type(v) for _n, v in rec[4]] == [type(v) for _n, v in headers]
    with pytest.raises(SerializationError, match=r"topic 'h' partition 0.*header value"):
        d.append("h", 0, [("k", 1, 1, 0, (("o", object()),))])
    d.close()


# -- NaN and infinities ------------------------------------------------------------------------
VALUES = [NAN, INF, -INF, {"x": NAN, "y": [1.5, -INF, {"z": INF}]}, [NAN, None, "NaN"],
          {"$float": "NaN"}, {"$float": NAN}, {"$literal": {"a": 1}}, {"$literal": 1},
          {"$float": "Infinity", "other": 1}, "NaN", 0.1, 2.0]
#: the log keeps JSON text as written; jsonb (table sinks) keeps numbers as numeric
LOG_ONLY = [-0.0, 1e308, 1e-7]


def test_nan_and_infinities_round_trip_in_logs(pg_url: str) -> None:
    d = PostgresDriver(pg_url)
    d.create_topic("v", 1, kind="sink")
    values = VALUES + LOG_ONLY
    d.append("v", 0, [(NAN if i == 0 else ("k", INF), v, i, 0, None)
                      for i, v in enumerate(values)])
    d.commit(Transaction("app", {("v", 0): [(Windowed(-INF, 0, 10), v, 0, 0, None)
                                            for v in values]}, metadata={"m": NAN}))
    got = d.read("v", 0, 0, 100)
    assert [repr(r[1]) for r in got] == [repr(v) for v in values + values]  # field order too
    assert same([r[0] for r in got[:2]], [NAN, ("k", INF)])
    assert same(got[-1][0], Windowed(-INF, 0, 10))
    assert math.isnan(d.committed_metadata("app")["m"])
    # ordinary values stay plain JSON: queryable in SQL
    rows = query(pg_url, f'SELECT value::text FROM "{schema_of(pg_url)}".v ORDER BY "offset" '
                 'LIMIT 4')
    assert [r[0] for r in rows] == ['{"$float":"NaN"}', '{"$float":"Infinity"}',
                                    '{"$float":"-Infinity"}',
                                    '{"x":{"$float":"NaN"},"y":[1.5,{"$float":"-Infinity"},'
                                    '{"z":{"$float":"Infinity"}}]}']
    d.close()


def test_nan_and_infinities_round_trip_in_table_sinks(pg_url: str) -> None:
    url = with_options(pg_url, upsert="t")
    d = PostgresDriver(url)
    d.create_topic("t", 1, kind="sink")
    recs = [(f"k{i}", v, i, 0, None) for i, v in enumerate(VALUES)]
    # two NaN objects are one key (identity is the serialized key): the last one wins
    nan_keys = [(float("nan"), 1.0, 0, 0, None), (float("nan"), 2.0, 0, 0, None)]
    d.commit(Transaction("app", {("t", 0): recs + nan_keys}))
    got = d.table_rows("t")
    want = [(k, v) for k, v, *_ in recs] + [(NAN, 2.0)]
    assert same(sorted(got, key=repr), sorted(want, key=repr))
    rows = query(url, f"SELECT value->>'other' FROM \"{schema_of(url)}\".t WHERE key = "
                 "'\"k9\"'::jsonb")
    assert rows == [("1",)]  # a plain dict stays queryable
    d.close()


def nan_pipeline() -> wb.Pipeline:
    p = wb.Pipeline("nan")
    s = p.source("m", key="sensor", time="ts")
    s.map(lambda v: {**v, "inv": 1 / v["x"] if v["x"] else math.copysign(INF, v["x"])}
          ).to("inverted")
    s.group_by_key().window(wb.Tumbling(10, grace=0)).agg(total=("x", "sum"),
                                                           top=("x", "max"),
                                                           name="sums").to("sums")
    return p


def test_a_pipeline_with_nan_matches_memory(pg_url: str) -> None:
    rows = [{"sensor": f"s{i % 3}", "ts": i, "x": [1.0, NAN, 0.0, -0.0, INF, 2.5][i % 6]}
            for i in range(30)]
    mem = nan_pipeline().run("memory://", inputs={"m": rows})
    pg = nan_pipeline().run(with_options(pg_url, upsert="sums"), inputs={"m": rows})
    for topic in ("inverted", "sums"):
        want = [(r.key, r.value, r.timestamp) for r in mem.records(topic)]
        got = [(r.key, r.value, r.timestamp) for r in pg.records(topic)]
        assert same(got, want), topic
    final = {r.key: r.value for r in mem.records("sums")}
    assert same(sorted(pg.driver.table_rows("sums"), key=repr), sorted(final.items(), key=repr))
    pg.driver.close()


def test_fast_key_encoding_matches_the_generic_one() -> None:
    if not HAVE_PSYCOPG:
        pytest.skip("psycopg missing")
    import json

    from workbench.drivers.postgres.codec import key_text
    from workbench.keys import encode_key

    keys = ["a", 'q"\\', 0, -5, 2**70, True, 1.5, ("a", 1), Windowed("u", 0, 60_000),
            Windowed(7, 5, 10), Windowed(("a", 1), 0, 10), Windowed(True, 0, 10),
            Windowed(None, 0, 10), frozenset({"x"})]
    for k in keys:
        want = json.dumps(encode_key(k), separators=(",", ":"), ensure_ascii=False)
        assert key_text(k) == want, k
