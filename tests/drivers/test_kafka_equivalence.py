"""Driver equivalence: the same pipelines on the same input give the same committed output on
``kafka://`` as on ``memory://``, with 3-partition topics (stateless steps, every window kind
and emit mode, every join kind, a repartitioned aggregation; and a family whose topics have
String keys and Avro values, windowed keys in Kafka Streams' layouts, Java longs); the joins
include a global table.

Each family is one pipeline with many sinks, run once per driver (a module fixture); every sink
is its own test case. Records compare as (key, value, timestamp) multisets, values as they read
back from JSON; sinks written by a single task (the key keeps its partition) also compare in
order, partition by partition.
"""

from __future__ import annotations

import contextlib
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import workbench as wb
from workbench.partitioning import partition_for

from .kafka_helpers import BASE_TS, canonical
from .store_processors import VISIT_STORES, Visits
from .test_kafka import kafka_url  # noqa: F401 - the session fixture (and its service)

with contextlib.suppress(ImportError):
    from .test_kafka import kafka_service  # noqa: F401

pytestmark = pytest.mark.kafka

SFX = uuid.uuid4().hex[:8]


def events(n: int = 3000, seed: int = 3) -> list[dict[str, Any]]:
    """Clicks of 20 users, mostly in time order with 3% late (some beyond every grace), a few
    without a user (null keys), one at timestamp 0."""
    rng = random.Random(seed)
    out = []
    ts = BASE_TS
    for _ in range(n):
        ts += rng.randint(0, 300)
        t = ts - rng.randint(1, 20_000) if rng.random() < 0.03 else ts
        out.append({"user": None if rng.random() < 0.01 else f"u{rng.randrange(20)}",
                    "ts": t, "amount": rng.randint(-500, 5000) / 100,
                    "page": f"/p/{rng.randrange(6)}"})
    out[7]["ts"] = 0
    return out


def payments(n: int = 800, seed: int = 4) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    ts = BASE_TS
    out = []
    for _ in range(n):
        ts += rng.randint(0, 1200)
        out.append({"user": f"u{rng.randrange(20)}", "ts": ts - rng.randint(0, 3000),
                    "paid": rng.randint(1, 99)})
    return out


def profiles(seed: int = 5) -> list[dict[str, Any]]:
    """Profile updates over time, with deletes (rows with only key and time: tombstones)."""
    rng = random.Random(seed)
    out = []
    for i in range(120):
        user = f"u{rng.randrange(24)}"
        ts = BASE_TS + i * 5_000
        if rng.random() < 0.1:
            out.append({"user": user, "ts": ts})
        else:
            out.append({"user": user, "ts": ts, "country": f"C{rng.randrange(5)}",
                        "tier": rng.choice(["free", "pro"])})
    return out


def tiers(seed: int = 6) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"user": f"u{rng.randrange(24)}", "ts": BASE_TS + i * 7_000,
             "level": rng.randint(1, 3)} for i in range(80)]


def orders(seed: int = 7) -> list[dict[str, Any]]:
    """Orders (a table keyed by order id) that point at users, updated and deleted."""
    rng = random.Random(seed)
    out = []
    for i in range(150):
        order = f"o{rng.randrange(60)}"
        ts = BASE_TS + i * 3_000
        if rng.random() < 0.1:
            out.append({"order": order, "ts": ts})
        else:
            out.append({"order": order, "ts": ts, "user": f"u{rng.randrange(24)}",
                        "qty": rng.randint(1, 5)})
    return out


def inputs(pipeline: wb.Pipeline) -> dict[str, Any]:
    """The input of each source topic of ``pipeline`` (sources are named ``<data>-<family>-``
    so that every family has topics of its own)."""
    data = {"ev": events, "pay": payments, "prof": profiles, "tiers": tiers, "ords": orders,
            "gprof": profiles, "vprof": profiles}
    return {t: data[t.split("-", 1)[0]]() for t in pipeline.sources}


def _source(p: wb.Pipeline, name: str) -> wb.Stream:
    return p.source(f"{name}-{p.name}", key="user", time="ts", partitions=3)


def stateless() -> wb.Pipeline:
    p = wb.Pipeline(f"eq-stateless-{SFX}")
    ev = _source(p, "ev")
    paid = ev.filter(lambda e: e["amount"] > 0).map(lambda e: {**e, "cents": round(
        e["amount"] * 100)})
    paid.to(f"s-paid-{SFX}")
    parts = paid.split(big=lambda e: e["amount"] > 30)
    parts.big.to(f"s-big-{SFX}")
    parts.rest.to(f"s-rest-{SFX}")
    ev.flat_map(lambda e: [e["page"]] * (1 + int(e["amount"] > 40))).to(f"s-pages-{SFX}")
    ev.key_by(lambda e: e["page"]).to(f"s-by-page-{SFX}")
    ev.map(lambda r: wb.Record(r.key, r.value, r.timestamp + 1, (("seen", b"1"),)),
           with_record=True).to(f"s-records-{SFX}")
    return p


def windowed() -> wb.Pipeline:
    p = wb.Pipeline(f"eq-windowed-{SFX}")
    ev = _source(p, "ev")
    g = ev.group_by_key()
    tumbling = g.window(wb.Tumbling("30s", grace="5s")).agg(
        total=("amount", "sum"), n="count", name="tumbling")
    tumbling.to(f"w-tumbling-{SFX}")
    tumbling.late.to(f"w-tumbling-late-{SFX}")
    closed = g.window(wb.Tumbling("30s", grace="5s"), emit="close").agg(
        total=("amount", "sum"), n="count", name="tumbling-close")
    closed.to(f"w-tumbling-close-{SFX}")
    g.window(wb.Hopping("60s", "20s", grace="2s")).count(name="hopping").to(f"w-hop-{SFX}")
    g.window(wb.Session("40s", grace="10s")).count(name="session").to(f"w-session-{SFX}")
    g.window(wb.Session("40s", grace="10s"), emit="close").agg(
        pages=("page", "list"), name="session-close").to(f"w-session-close-{SFX}")
    g.window(wb.Sliding("20s", grace="5s")).agg(hi=("amount", "max"), name="sliding").to(
        f"w-sliding-{SFX}")
    g.count(name="per-user").changes().to(f"w-count-{SFX}")
    g.reduce(lambda a, b: {**b, "amount": a["amount"] + b["amount"]}, name="reduce").to(
        f"w-reduce-{SFX}")
    # the Processor API's session and timestamped stores (changelogs on Kafka)
    ev.process(Visits, stores=VISIT_STORES, name="visits").to(f"w-visits-{SFX}")
    return p


def joins() -> wb.Pipeline:
    p = wb.Pipeline(f"eq-joins-{SFX}")
    ev = _source(p, "ev")
    pay = _source(p, "pay")
    prof = p.table(f"prof-{p.name}", key="user", time="ts", partitions=3)
    tier = p.table(f"tiers-{p.name}", key="user", time="ts", partitions=3)
    for how in ("inner", "left", "outer"):
        ev.join(pay, how=how, within="5s", grace="2s", name=f"ss-{how}").to(
            f"j-ss-{how}-{SFX}")
    for how in ("inner", "left"):
        ev.join(prof, how=how, name=f"st-{how}").to(f"j-st-{how}-{SFX}")
    for how in ("inner", "left", "outer"):
        prof.join(tier, how=how, name=f"tt-{how}").changes().to(f"j-tt-{how}-{SFX}")
    gprof = p.global_table(f"gprof-{p.name}", key="user", time="ts", partitions=3)
    for how in ("inner", "left"):  # global table: every partition in every task, no repartition
        pay.key_by(lambda v: v["paid"]).join(gprof, on="user", how=how, name=f"gt-{how}").to(
            f"j-gt-{how}-{SFX}")
    vprof = p.table(f"vprof-{p.name}", key="user", time="ts", partitions=3, history="10min")
    for how in ("inner", "left"):  # versioned: the profile valid at each event's time
        ev.join(vprof, how=how, name=f"vst-{how}").to(f"j-vst-{how}-{SFX}")
    ords = p.table(f"ords-{p.name}", key="order", time="ts", partitions=3)
    for how in ("inner", "left"):  # foreign key: subscription and response topics (KIP-213)
        ords.join(prof, on=lambda o: o.get("user"), how=how, name=f"fk-{how}").changes().to(
            f"j-fk-{how}-{SFX}")
    return p


def repartitioned() -> wb.Pipeline:
    """group_by a field: the records cross a repartition topic (written and read back inside
    the run, transactionally). Counts per page are order-independent."""
    p = wb.Pipeline(f"eq-repart-{SFX}")
    ev = _source(p, "ev")
    ev.group_by(lambda e: e["page"]).count(name="per-page").changes().to(f"r-pages-{SFX}")
    ev.filter(lambda e: e["user"] is not None).key_by(lambda e: e["page"]).group_by_key() \
        .window(wb.Tumbling("60s", grace="1h"), emit="close").count(name="page-minute") \
        .to(f"r-page-minute-{SFX}")
    return p


EVENT = {"type": "record", "name": "Event", "namespace": "eq",
         "fields": [{"name": "user", "type": ["null", "string"]}, {"name": "ts", "type": "long"},
                    {"name": "amount", "type": "double"}, {"name": "page", "type": "string"}]}


def typed() -> wb.Pipeline:
    """String keys and Avro values on the sources; sinks inherit them or take Java longs;
    windowed keys in Kafka Streams' TimeWindowed/SessionWindowed layouts; a repartition topic
    and a stream-table join with String keys on both sides."""
    p = wb.Pipeline(f"eq-typed-{SFX}")
    ev = p.source(f"ev-{p.name}", key=("user", wb.serde.string()), value=wb.serde.avro(EVENT),
                  time="ts", partitions=3)
    ev.filter(lambda e: e["amount"] > 0).to(f"t-paid-{SFX}")
    g = ev.group_by_key()
    g.window(wb.Tumbling("30s", grace="5s")).count(name="t-tumbling").to(
        f"t-tumbling-{SFX}", value=wb.serde.long())
    g.window(wb.Session("40s", grace="10s")).count(name="t-session").to(
        f"t-session-{SFX}", value=wb.serde.long())
    ev.group_by(lambda e: e["page"]).count(name="t-pages").changes().to(
        f"t-pages-{SFX}", key=wb.serde.string(), value=wb.serde.long())
    prof = p.table(f"prof-{p.name}", key=("user", wb.serde.string()), time="ts", partitions=3)
    ev.join(prof, how="left", name="t-st").to(f"t-st-{SFX}")
    return p


def dsl_operators() -> wb.Pipeline:
    """A re-grouped table (users by country), a table filter's deletes, suppress, cogroup,
    repartition, a topic function and split (``dsl_helpers``)."""
    from .dsl_helpers import dsl_pipeline

    name = f"eq-dsl-{SFX}"
    return dsl_pipeline(name, f"ev-{name}", f"prof-{name}", partitions=3, sfx=f"-{SFX}")


FAMILIES: dict[str, Callable[[], wb.Pipeline]] = {
    "stateless": stateless, "windowed": windowed, "joins": joins, "repartitioned": repartitioned,
    "typed": typed, "dsl": dsl_operators,
}
#: sinks whose records come out in a different order on a different run (repartition topics are
#: interleaved by commit timing), or whose intermediate results depend on batch boundaries (a
#: foreign-key join drops answers to left values that changed meanwhile, as Kafka Streams
#: does); compared as final values per key instead
BATCH_DEPENDENT = {f"j-fk-inner-{SFX}", f"j-fk-left-{SFX}"}
FINAL_VALUES = {f"r-pages-{SFX}", f"t-pages-{SFX}", f"d-per-country-{SFX}",
                f"d-moved-count-{SFX}", *BATCH_DEPENDENT}


@pytest.fixture(scope="module")
def runs(kafka_url: str) -> dict[str, tuple[Any, Any]]:  # noqa: F811
    out = {}
    for family, build in FAMILIES.items():
        pipeline = build()
        needed = inputs(pipeline)
        memory = build().run("memory://", inputs=needed)
        kafka = pipeline.run(kafka_url, inputs=needed)
        out[family] = (memory, kafka)
    return out


def _cases() -> list[tuple[str, str]]:
    return [(family, sink) for family, build in FAMILIES.items() for sink in build().sinks]


def final_values(records: list[Any]) -> dict[Any, Any]:
    """The last value per key, a key whose last value is a tombstone left out (as absent: a
    foreign-key join may send a tombstone for a key it never gave a result, depending on how
    answers and updates met in a batch)."""
    last = {r.key: r.value for r in records}
    return {k: v for k, v in last.items() if v is not None}


def read_partition(driver: Any, topic: str, partition: int) -> list[Any]:
    """Every record of one partition (a read returns what one fetch brought)."""
    out: list[Any] = []
    pos = 0
    while pos < driver.end_offset(topic, partition):
        chunk = driver.read(topic, partition, pos, 100_000)
        if not chunk:
            break
        out.extend(chunk)
        pos = chunk[-1][3] + 1
    return out


def norm(records: list[Any]) -> list[str]:
    return canonical([type(r)(r.key, json.loads(json.dumps(r.value)), r.timestamp, r.headers)
                      for r in records])


@pytest.mark.parametrize(("family", "sink"), _cases(),
                         ids=[s.rsplit("-", 1)[0] for _f, s in _cases()])
def test_same_output_as_memory(runs: dict[str, tuple[Any, Any]], family: str,
                               sink: str) -> None:
    memory, kafka = runs[family]
    expected, got = memory.records(sink), kafka.records(sink)
    if sink in FINAL_VALUES:
        assert final_values(got) == final_values(expected)
        return
    assert norm(got) == norm(expected)
    assert [r.headers for r in sorted(got, key=repr)] == [
        r.headers for r in sorted(expected, key=repr)]


def test_topics_a_topic_function_creates(runs: dict[str, tuple[Any, Any]]) -> None:
    """An undeclared topic function's topics are created on Kafka when first named and hold
    what memory's hold."""
    from .dsl_helpers import created_topics

    memory, kafka = runs["dsl"]
    created = [t for t in created_topics(f"-{SFX}") if memory.driver.partitions(t) is not None]
    assert len(created) == 6
    for topic in created:
        assert norm(kafka.records(topic)) == norm(memory.records(topic)), topic


def test_partition_order_of_single_writer_sinks(runs: dict[str, tuple[Any, Any]]) -> None:
    """A sink keyed like its source is written by one task per partition: the same records in
    the same order, partition by partition."""
    memory, kafka = runs["stateless"]
    sink = f"s-paid-{SFX}"
    by_partition: dict[int, list[Any]] = {0: [], 1: [], 2: []}
    for r in memory.records(sink):
        if r.key is not None:  # keyless records stay in their task's partition
            by_partition[partition_for(json.dumps(r.key).encode(), 3)].append(
                (r.key, r.value, r.timestamp))
    for part in range(3):
        got = [(k, v, t) for k, v, t, _o, _h in read_partition(kafka.driver, sink, part)
               if k is not None]
        assert got == by_partition[part]


def test_typed_topics_hold_java_bytes(runs: dict[str, tuple[Any, Any]]) -> None:
    """The typed family's topics hold what Java's serdes write: String keys (murmur2 of their
    UTF-8 chose the partition), Avro values, 8-byte longs, windowed keys with an 8-byte start."""
    import struct

    _memory, kafka = runs["typed"]
    raw = wb.connect(kafka.driver.url.split("?")[0] + "?key_serde=bytes&value_serde=bytes")
    try:
        checked = 0
        for part in range(3):
            for k, v, _t, _o, _h in raw.read(f"t-paid-{SFX}", part, 0, 100_000):
                if k is not None:
                    assert partition_for(k, 3) == part
                    assert wb.serde.avro(EVENT).deserialize(v)["user"] == k.decode()
                    checked += 1
            for k, v, _t, _o, _h in raw.read(f"t-tumbling-{SFX}", part, 0, 100_000):
                inner, start = k[:-8], struct.unpack(">q", k[-8:])[0]
                assert partition_for(inner, 3) == part and start % 30_000 == 0
                assert v is None or len(v) == 8
                checked += 1
        assert checked > 100
    finally:
        raw.close()


def test_stats_match(runs: dict[str, tuple[Any, Any]]) -> None:
    def read(run: Any) -> dict[str, int]:
        # a foreign-key join's answers depend on how subscriptions and right-table updates
        # meet in a batch (a right update answers the subscriptions already there)
        return {t: n for t, n in run.stats.records_in_by_topic.items()
                if not t.endswith("-subscription-response-repartition")}

    for memory, kafka in runs.values():
        sinks = set(memory.pipeline.sinks) - BATCH_DEPENDENT
        assert read(kafka) == read(memory)
        assert {t: n for t, n in kafka.stats.records_out.items() if t in sinks} == {
            t: n for t, n in memory.stats.records_out.items() if t in sinks}
