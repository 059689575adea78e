"""The Kafka driver against a real Apache Kafka broker: the driver contract (topics, serdes,
timestamps, headers, read_committed reads, end offsets over transaction markers), exactly-once
commits and fencing, murmur2 placement as the Java client does it, bad input, membership.

Broker: see ``kafka_helpers.py`` (started once per session; the tests skip with a how-to when
Java/Maven are missing, and fail on CI).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import workbench as wb
from workbench.drivers import Transaction, connect
from workbench.errors import (
    DriverUnavailableError,
    FencedError,
    SerializationError,
)
from workbench.partitioning import partition_for
from workbench.types import Change
from workbench.windows import Windowed

from ..conftest import in_ci
from .kafka_helpers import canonical, register, session_broker, with_options

pytestmark = pytest.mark.kafka

register()

try:  # the project's dev services: one broker for the whole test session
    from workbench.devservices.pytest_fixtures import (  # noqa: F401
        kafka_service,
        kafka_url,
    )
except ImportError:  # pragma: no cover - without them: a broker of our own

    @pytest.fixture(scope="session")
    def kafka_url() -> str:
        try:
            return session_broker()
        except RuntimeError as exc:
            if in_ci():
                pytest.fail(f"{exc} (CI=true: the Kafka tests must run)")
            pytest.skip(str(exc))


@pytest.fixture
def sfx() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def driver(kafka_url: str) -> Iterator[Any]:
    from workbench.drivers.kafka import KafkaDriver

    d = KafkaDriver(kafka_url)
    yield d
    d.close()


def raw_producer(url: str, **cfg: Any) -> Any:
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": url[len("kafka://"):].split("?")[0], **cfg})


# -- contract --------------------------------------------------------------------------------
def test_connect_resolves_kafka_urls(kafka_url: str) -> None:
    d = connect(kafka_url)
    assert d.scheme == "kafka" and repr(d).startswith("<KafkaDriver kafka://")
    d.close()


def test_unreachable_broker_is_a_clear_error() -> None:
    from workbench.drivers.kafka import KafkaDriver

    register()
    d = KafkaDriver("kafka://127.0.0.1:1?timeout=2")
    with pytest.raises(DriverUnavailableError, match="workbench dev up"):
        d.partitions("anything")
    d.close()


def test_missing_client_library_says_what_to_install() -> None:
    code = ("import sys; sys.modules['confluent_kafka'] = None\n"
            "from workbench.drivers.kafka import KafkaDriver\n"
            "from workbench.errors import DriverUnavailableError\n"
            "try:\n    KafkaDriver('kafka://127.0.0.1:9')\n"
            "except DriverUnavailableError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert "install workbench[kafka]" in out.stdout


def test_topics_partitions_and_compaction(driver: Any, sfx: str) -> None:
    from confluent_kafka.admin import ConfigResource

    assert driver.partitions(f"nope-{sfx}") is None
    assert f"nope-{sfx}" not in driver.topics()  # looking a topic up does not create it
    assert driver.ensure_topic(f"t-{sfx}", 3) == 3
    assert driver.ensure_topic(f"t-{sfx}", 5) == 3  # exists: unchanged
    driver.ensure_topic(f"cl-{sfx}", 3, kind="changelog", compact=True)
    res = ConfigResource("topic", f"cl-{sfx}")
    cfg = driver._conn.admin.describe_configs([res])[res].result()
    assert cfg["cleanup.policy"].value == "compact"
    res = ConfigResource("topic", f"t-{sfx}")
    cfg = driver._conn.admin.describe_configs([res])[res].result()
    assert cfg["retention.ms"].value == "-1"  # history is not deleted by its timestamps
    assert {f"t-{sfx}", f"cl-{sfx}"} <= set(driver.topics())


def test_append_read_roundtrip_keeps_types_timestamps_headers(driver: Any, sfx: str) -> None:
    t = f"rt-{sfx}"
    driver.ensure_topic(t, 1)
    records = [
        ("a", {"x": 1, "s": "é"}, 1_700_000_000_123, 0, None),
        (None, [1, 2.5, None], 0, 0, (("h1", b"v1"), ("h2", b""))),  # ts 0: librdkafka's "now"
        (("k", 1), "text", 5, 0, None),  # a tuple key stays a tuple
        (Windowed("u1", 0, 10), 3, 7, 0, None),
        ("c", Change({"n": 2}, {"n": 1}), 9, 0, None),
        ("tomb", None, 11, 0, None),
        (7, True, -1, 0, None),
    ]
    driver.append(t, 0, records)
    assert driver.end_offset(t, 0) == len(records)
    got = driver.read(t, 0, 0, 100)
    assert [(k, v, ts, h) for k, v, ts, _o, h in got] == [
        (k, v, ts, h) for k, v, ts, _s, h in records]
    assert type(got[3][0]) is Windowed and type(got[4][1]) is Change
    assert [r[3] for r in got] == list(range(len(records)))
    assert driver.read(t, 0, 4, 2) == got[4:6]
    assert driver.read(t, 0, len(records), 10) == []


def test_commit_is_atomic_and_read_committed(driver: Any, sfx: str) -> None:
    src, out, app = f"in-{sfx}", f"out-{sfx}", f"app-{sfx}"
    driver.ensure_topic(src, 2)
    driver.ensure_topic(out, 2, kind="sink")
    driver.append(src, 1, [("k", 1, 10, 0, None)] * 3)
    assert driver.committed(app, src, 1) == 0
    driver.commit(Transaction(app, outputs={(out, 0): [("a", 1, 10, 0, None)],
                                            (out, 1): [("b", 2, 11, 0, None)] * 2},
                              positions={(src, 1): 3}))
    # read-your-writes although the broker writes commit markers asynchronously
    assert driver.end_offset(out, 1) == 2
    assert [r[:3] for r in driver.read(out, 1, 0, 10)] == [("b", 2, 11)] * 2
    assert driver.committed(app, src, 1) == 3
    # a failed commit (unserializable value) leaves nothing behind
    with pytest.raises(SerializationError, match=out):
        driver.commit(Transaction(app, outputs={(out, 0): [("ok", 1, 12, 0, None),
                                                           ("bad", object(), 13, 0, None)]},
                                  positions={(src, 1): 3}))
    driver.commit(Transaction(app, outputs={(out, 0): [("c", 3, 14, 0, None)]},
                              positions={(src, 1): 3}))
    assert [r[0] for r in driver.read_all(out)] == ["a", "c", "b", "b"]
    assert driver.commits == 2


def test_end_offset_skips_markers_and_aborted_records(driver: Any, kafka_url: str,
                                                      sfx: str) -> None:
    """Positions after the last record equal end_offset although markers and aborted
    transactions follow it (the engine's 'position == end' means 'nothing left')."""
    t = f"gaps-{sfx}"
    driver.ensure_topic(t, 1)
    p = raw_producer(kafka_url, **{"transactional.id": f"gaps-{sfx}"})
    p.init_transactions(30)
    for n, commit in ((3, True), (50, False), (2, True), (5, False)):
        p.begin_transaction()
        for i in range(n):
            p.produce(t, b'"v"', b'"k"', 0, timestamp=100 + i)
        p.flush()
        (p.commit_transaction if commit else p.abort_transaction)(30)
    deadline = time.monotonic() + 10
    while driver._ends.stable_offset(t, 0) < 64 and time.monotonic() < deadline:
        time.sleep(0.05)  # markers land asynchronously
    assert driver._ends.stable_offset(t, 0) == 64  # 60 records + 4 markers
    end = driver.end_offset(t, 0)
    offsets, pos = [], 0
    while pos < end:
        chunk = driver.read(t, 0, pos, 2)
        offsets += [r[3] for r in chunk]
        pos = chunk[-1][3] + 1
    assert offsets == [0, 1, 2, 55, 56] and pos == end == 57
    assert driver.read(t, 0, end, 10) == []
    fresh = type(driver)(kafka_url)  # without cached knowledge: found from the log
    assert fresh.end_offset(t, 0) == 57
    fresh.close()


def test_empty_partition_end_offset(driver: Any, sfx: str) -> None:
    driver.ensure_topic(f"e-{sfx}", 2)
    assert driver.end_offset(f"e-{sfx}", 1) == 0
    assert driver.read(f"e-{sfx}", 1, 0, 10) == []


# -- interop ---------------------------------------------------------------------------------
def test_murmur2_random_places_keys_where_partition_for_says(driver: Any, kafka_url: str,
                                                             sfx: str) -> None:
    """librdkafka with partitioner=murmur2_random (the Java client's rule) puts every JSON key
    where workbench.partitioning.partition_for does; the driver produces to explicit
    partitions computed the same way."""
    keys: list[Any] = ["a", "kafka", "u1", 1, 2, 123456789, -7, 3.5, "ü", [1, 2], {"x": 1},
                       True, *[f"user-{i}" for i in range(200)]]
    for count in (3, 7):
        t = f"mm-{count}-{sfx}"
        driver.ensure_topic(t, count)
        placed: dict[bytes, int] = {}

        def delivered(err: Any, msg: Any, placed: dict[bytes, int] = placed) -> None:
            placed[msg.key()] = msg.partition()

        p = raw_producer(kafka_url, partitioner="murmur2_random")
        for k in keys:
            kb = json.dumps(k, separators=(",", ":"), ensure_ascii=False).encode()
            p.produce(t, b"1", kb, on_delivery=delivered)
        p.flush(30)
        assert len(placed) == len(keys)
        assert {kb: partition_for(kb, count) for kb in placed} == placed


def test_pipeline_output_lands_in_java_partitions(kafka_url: str, sfx: str) -> None:
    p = wb.Pipeline(f"place-{sfx}")
    p.source(f"src-{sfx}", key="k", partitions=1).to(f"dst-{sfx}", partitions=3)
    rows = [{"k": f"key-{i}", "v": i} for i in range(60)]
    run = p.run(kafka_url, inputs={f"src-{sfx}": rows})
    d = run.driver
    for part in range(3):
        for key, *_ in d.read(f"dst-{sfx}", part, 0, 1000):
            assert partition_for(json.dumps(key).encode(), 3) == part
    assert len(run.records(f"dst-{sfx}")) == 60
    d.close()


# -- fencing ---------------------------------------------------------------------------------
def test_restarted_instance_fences_its_predecessor(kafka_url: str, sfx: str) -> None:
    """Same instance= → same transactional.id: the newer producer fences the older one, whose
    commit fails with FencedError and leaves nothing visible."""
    from workbench.drivers.kafka import KafkaDriver

    url = with_options(kafka_url, instance="w0")
    app, src, out = f"fence-{sfx}", f"fin-{sfx}", f"fout-{sfx}"
    old = KafkaDriver(url)
    old.ensure_topic(src, 1)
    old.ensure_topic(out, 1)
    old.assign(app, [src])
    old.commit(Transaction(app, outputs={(out, 0): [("a", 1, 1, 0, None)]},
                           positions={(src, 0): 0}))
    new = KafkaDriver(url)
    new.assign(app, [src])  # static membership: takes the slot over, fences the producer
    with pytest.raises(FencedError, match="fenced"):
        old.commit(Transaction(app, outputs={(out, 0): [("zombie", 1, 2, 0, None)]},
                               positions={(src, 0): 0}))
    with pytest.raises(FencedError):  # stays fenced
        old.commit(Transaction(app, outputs={(out, 0): [("zombie", 1, 3, 0, None)]}))
    new.commit(Transaction(app, outputs={(out, 0): [("b", 2, 4, 0, None)]},
                           positions={(src, 0): 0}))
    assert [r[0] for r in new.read_all(out)] == ["a", "b"]
    old.close()
    new.close()


def test_zombie_after_rebalance_cannot_commit(kafka_url: str, sfx: str) -> None:
    """Group-generation fencing (exactly_once_v2): a member that stopped polling loses its
    partitions; its next transaction is refused, so nothing it wrote becomes visible."""
    from workbench.drivers.kafka import KafkaDriver

    url = with_options(kafka_url, session_timeout_ms=6000,
                       **{"consumer.max.poll.interval.ms": 7000})
    app, src, out = f"zomb-{sfx}", f"zin-{sfx}", f"zout-{sfx}"
    a = KafkaDriver(url)
    a.ensure_topic(src, 2)
    a.ensure_topic(out, 1)
    assert a.assign(app, [src]) == {src: [0, 1]}
    a.committed(app, src, 0)
    b = KafkaDriver(url)
    got = b.assign(app, [src])  # a never polls: after max.poll.interval it is dropped
    assert got == {src: [0, 1]}
    with pytest.raises(FencedError):
        a.commit(Transaction(app, outputs={(out, 0): [("zombie", 1, 1, 0, None)]},
                             positions={(src, 0): 5}))
    b.commit(Transaction(app, outputs={(out, 0): [("live", 1, 2, 0, None)]},
                         positions={(src, 0): 1}))
    assert [r[0] for r in b.read_all(out)] == ["live"]
    assert b.committed(app, src, 0) == 1
    a.close()
    b.close()


def test_membership_is_co_partitioned_and_rebalances(kafka_url: str, sfx: str) -> None:
    """Range assignment: the same partition numbers of equally partitioned topics go to the
    same member; a member that leaves hands its partitions over (poll_membership)."""
    from workbench.drivers.kafka import KafkaDriver

    app, t1, t2 = f"mem-{sfx}", f"m1-{sfx}", f"m2-{sfx}"
    a = KafkaDriver(kafka_url)
    a.ensure_topic(t1, 3)
    a.ensure_topic(t2, 3)
    assert a.assign(app, [t1, t2]) == {t1: [0, 1, 2], t2: [0, 1, 2]}
    assert a.poll_membership() is None
    b = KafkaDriver(kafka_url)
    import threading

    result: dict[str, Any] = {}
    joiner = threading.Thread(target=lambda: result.update(b=b.assign(app, [t1, t2])))
    joiner.start()
    deadline = time.monotonic() + 60
    got_a = None
    while got_a is None or not got_a[t1]:
        assert time.monotonic() < deadline
        got_a = a.poll_membership() or got_a
        time.sleep(0.05)
    joiner.join(60)
    got_b = result["b"]
    for owned in (got_a, got_b):
        assert owned[t1] == owned[t2]  # co-partitioned
    assert sorted(got_a[t1] + got_b[t1]) == [0, 1, 2]
    b.close()  # leaves the group: a gets everything back
    deadline = time.monotonic() + 60
    back = None
    while back is None or back[t1] != [0, 1, 2]:
        assert time.monotonic() < deadline
        back = a.poll_membership() or back
        time.sleep(0.05)
    a.close()


# -- runs ------------------------------------------------------------------------------------
def test_run_frame_and_resume(kafka_url: str, sfx: str) -> None:
    """A bounded run, results read back as a DataFrame through read_committed reads; a second
    run of the same application resumes from the committed positions."""
    def build() -> wb.Pipeline:
        p = wb.Pipeline(f"frame-{sfx}")
        (p.source(f"clicks-{sfx}", key="user", time="ts", partitions=3)
          .group_by_key().window(wb.Tumbling("10s")).count(name="per-10s")
          .to(f"counts-{sfx}"))
        return p

    rows = [{"user": f"u{i % 4}", "ts": 1_000 + 1_000 * i} for i in range(40)]
    run = build().run(kafka_url, inputs={f"clicks-{sfx}": rows})
    frame = run.frame(f"counts-{sfx}")
    assert list(frame.columns[:4]) == ["user", "window_start", "window_end", "timestamp"]
    assert len(frame) == 40
    memory = build().run("memory://", inputs={f"clicks-{sfx}": rows})
    assert sorted(map(repr, run.records(f"counts-{sfx}"))) == sorted(
        map(repr, memory.records(f"counts-{sfx}")))
    run.driver.close()
    second = build().run(kafka_url)
    assert second.stats.records_in == 0
    second.driver.close()


def test_reader_pauses_full_buffers_without_losing_records(driver: Any, sfx: str) -> None:
    """Reading one partition buffers what arrives for the others; a full buffer pauses that
    partition's fetching and reading it resumes it: every record comes, once, in order."""
    driver._stream.max_buffered = 40
    t = f"pause-{sfx}"
    driver.ensure_topic(t, 3)
    for p in range(3):
        driver.append(t, p, [(f"k{p}", i, 10 + i, 0, None) for i in range(500)])
    for p in range(3):
        got, pos = [], 0
        while pos < 500:
            chunk = driver.read(t, p, pos, 7)
            got += [r[1] for r in chunk]
            pos = chunk[-1][3] + 1
        assert got == list(range(500))
    assert driver._stream._paused <= {(t, 0), (t, 1), (t, 2)}


def test_metadata_is_committed_with_the_positions(kafka_url: str, sfx: str) -> None:
    from workbench.drivers.kafka import KafkaDriver

    app, src = f"meta-{sfx}", f"meta-in-{sfx}"
    d = KafkaDriver(kafka_url)
    d.ensure_topic(src, 2)
    d.assign(app, [src])
    d.commit(Transaction(app, positions={(src, 1): 0}, metadata={"last_emit": 42}))
    assert d.committed_metadata(app) == {"last_emit": 42}
    d.close()


def test_a_second_run_in_the_same_process_does_not_wait(kafka_url: str, sfx: str) -> None:
    """A run that ended leaves the consumer group (driver.end_run() from execute()), so the
    next run of the application gets its partitions at once instead of waiting for the first
    member's rebalance timeout (max.poll.interval.ms, 5 minutes) as a notebook would."""
    from workbench.drivers.base import Driver

    if not hasattr(Driver, "end_run"):
        pytest.skip("needs execute() to call driver.end_run() (the proposed engine patch)")

    def build() -> wb.Pipeline:
        p = wb.Pipeline(f"again-{sfx}")
        p.source(f"again-in-{sfx}", key="k", partitions=2).to(f"again-out-{sfx}")
        return p

    first = build().run(kafka_url, inputs={f"again-in-{sfx}": [{"k": "a"}, {"k": "b"}]})
    started = time.monotonic()
    second = build().run(kafka_url, inputs={f"again-in-{sfx}": [{"k": "c"}]})
    assert time.monotonic() - started < 20
    assert second.stats.records_in == 1
    assert len(first.records(f"again-out-{sfx}")) == 3
    first.close()
    second.close()


def test_nan_and_infinity_round_trip_through_a_repartition_topic(kafka_url: str,
                                                                 sfx: str) -> None:
    """NaN, Infinity and -Infinity are float values like any other (the rule for every
    driver): the JSON serde writes Python json's tokens, and they come back unchanged — in a
    sink, and through a repartition topic into an aggregation."""
    import math

    specials = [float("nan"), float("inf"), float("-inf"), 1.5]
    rows = [{"k": f"k{i}", "g": f"g{i % 2}", "ts": 1_000 + i, "x": specials[i % 4]}
            for i in range(12)]

    def build() -> wb.Pipeline:
        p = wb.Pipeline(f"nan-{sfx}")
        src = p.source(f"nan-in-{sfx}", key="k", time="ts", partitions=2)
        src.to(f"nan-copy-{sfx}")
        (src.group_by("g").agg(last=("x", "last"), biggest=("x", "max"), n="count",
                               name="per-g")
            .changes().to(f"nan-agg-{sfx}"))
        return p

    run = build().run(kafka_url, inputs={f"nan-in-{sfx}": rows})
    memory = build().run("memory://", inputs={f"nan-in-{sfx}": rows})
    try:
        copy = {r.key: r.value["x"] for r in run.records(f"nan-copy-{sfx}")}
        for row in rows:
            got, want = copy[row["k"]], row["x"]
            assert type(got) is float
            assert (math.isnan(got) and math.isnan(want)) or got == want
        plan = build().plan()
        assert any(t.kind == "repartition" for t in plan.topics.values())
        aggs = run.records(f"nan-agg-{sfx}")
        assert [r.value["last"] for r in aggs if math.isnan(r.value["last"])]
        assert canonical(aggs) == canonical(memory.records(f"nan-agg-{sfx}"))
        raw = bytes_driver(kafka_url)
        values = b"".join(r[1] for r in raw.read_all(f"nan-copy-{sfx}"))
        assert b"NaN" in values and b"-Infinity" in values and b"Infinity" in values
        raw.close()
    finally:
        run.close()


def bytes_driver(url: str) -> Any:
    """A driver that reads values as the bytes on the wire."""
    from workbench.drivers.kafka import KafkaDriver

    return KafkaDriver(with_options(url, value_serde="bytes"))
