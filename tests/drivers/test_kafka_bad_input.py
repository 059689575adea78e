"""Bad input on the Kafka driver: every malformed record (bad key or value bytes, a JSON object
as key, forged private headers) goes to the dead-letter topic when ``dead_letter=`` is set, or
stops the run with a SerializationError naming topic, partition and offset — never a traceback
from deep inside, never silently dropped. The poison pills are written as raw bytes by a plain
confluent-kafka producer, as an external producer would.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

import workbench as wb
from workbench.errors import SerializationError

from .kafka_helpers import with_options
from .test_kafka import raw_producer

pytestmark = pytest.mark.kafka


@pytest.fixture
def sfx() -> str:
    return uuid.uuid4().hex[:8]


# -- malformed JSON values -------------------------------------------------------------------
def _bad_input_pipeline(sfx: str) -> wb.Pipeline:
    p = wb.Pipeline(f"bad-{sfx}")
    (p.source(f"raw-{sfx}", key="k", time="ts", partitions=2)
      .map(lambda v: {**v, "double": v["n"] * 2})
      .to(f"clean-{sfx}"))
    return p


def _write_with_bad_record(kafka_url: str, sfx: str) -> tuple[int, int]:
    """Ten good records on partition 0 with one malformed JSON value after the sixth, and
    five on partition 1; returns (partition, offset) of the bad one."""
    from workbench.drivers.kafka import KafkaDriver

    d = KafkaDriver(kafka_url)
    d.ensure_topic(f"raw-{sfx}", 2)
    d.close()
    p = raw_producer(kafka_url)
    for i in range(10):
        if i == 6:
            p.produce(f"raw-{sfx}", b'{"k": "x", "n": ', b'"x"', 0, timestamp=999)
        p.produce(f"raw-{sfx}", json.dumps({"k": f"a{i}", "ts": 1000 + i, "n": i}).encode(),
                  json.dumps(f"a{i}").encode(), 0, timestamp=1000 + i)
    for i in range(5):
        p.produce(f"raw-{sfx}", json.dumps({"k": f"b{i}", "ts": 2000 + i, "n": i}).encode(),
                  json.dumps(f"b{i}").encode(), 1, timestamp=2000 + i)
    p.flush(30)
    return 0, 6


def test_malformed_json_stops_the_run_naming_the_offset(kafka_url: str, sfx: str) -> None:
    part, offset = _write_with_bad_record(kafka_url, sfx)
    with pytest.raises(SerializationError) as info:
        _bad_input_pipeline(sfx).run(kafka_url)
    msg = str(info.value)
    assert f"offset {offset} of 'raw-{sfx}' partition {part}" in msg
    assert "dead_letter" in msg


@pytest.mark.parametrize("at_end", [False, True])
def test_malformed_json_goes_to_the_dead_letter_topic(kafka_url: str, sfx: str,
                                                      at_end: bool) -> None:
    part, offset = _write_with_bad_record(kafka_url, sfx)
    if at_end:  # the last record of the partition: committed through close()
        producer = raw_producer(kafka_url)
        producer.produce(f"raw-{sfx}", b"not json", b'"z"', 1, timestamp=5)
        producer.flush(10)
    url = with_options(kafka_url, dead_letter=f"dlq-{sfx}")
    run = _bad_input_pipeline(sfx).run(url)
    run.driver.close()
    out = sorted(r.key for r in run.records(f"clean-{sfx}"))
    assert out == sorted([f"a{i}" for i in range(10)] + [f"b{i}" for i in range(5)])
    dead = run.driver.read_all(f"dlq-{sfx}")  # raw bytes: dead letters are not decoded
    assert [r[1] for r in dead] == [b'{"k": "x", "n": ', *([b"not json"] if at_end else [])]
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": kafka_url[len("kafka://"):], "group.id": f"x-{sfx}",
                  "isolation.level": "read_committed"})
    c.assign([TopicPartition(f"dlq-{sfx}", 0, 0)])
    msgs: list[Any] = []
    deadline = time.monotonic() + 30
    while len(msgs) < len(dead) and time.monotonic() < deadline:
        msgs += [m for m in c.consume(10, 0.2) if m.error() is None]
    c.close()
    first = msgs[0]
    headers = dict(first.headers())
    assert first.value() == b'{"k": "x", "n": '
    assert headers["workbench.error.topic"] == f"raw-{sfx}".encode()
    assert (headers["workbench.error.partition"], headers["workbench.error.offset"]) == (
        str(part).encode(), str(offset).encode())
    assert b"not valid JSON" in headers["workbench.error"]
    # positions skip the dead-lettered records: a second run reads nothing new
    again = _bad_input_pipeline(sfx).run(url)
    assert again.stats.records_in == 0
    assert len(again.driver.read_all(f"dlq-{sfx}")) == len(dead)
    again.driver.close()


# -- poison pills from an external producer --------------------------------------------------
def _good(i: int) -> bytes:
    return json.dumps({"k": f"g{i}", "ts": 1000 + i, "n": i}).encode()


GOOD = _good(99)
#: (id, key bytes, value bytes, headers, what the error says)
PILLS: list[tuple[str, bytes | None, bytes | None, Any, str]] = [
    ("value-not-json", b'"a"', b'{"k": ', None, "not valid JSON"),
    ("value-not-utf8", b'"a"', b'"\xff"', None, "not valid JSON"),
    ("value-nested-too-deeply", b'"a"', b"[" * 100_000, None, "nested too deeply"),
    ("key-not-json", b'{"k', GOOD, None, "not valid JSON"),
    ("key-json-object", b'{"a":1}', GOOD, None, "a JSON object cannot be a key"),
    ("key-list-holding-an-object", b'[1,{"a":1}]', GOOD, None, "cannot be a key"),
    ("timestamp-header-not-a-number", b'"a"', GOOD, [("workbench.timestamp", b"soon")],
     "'workbench.timestamp' must hold an integer"),
    ("timestamp-header-null", b'"a"', GOOD, [("workbench.timestamp", None)],
     "'workbench.timestamp' must hold an integer"),
    ("value-type-header-unknown", b'"a"', GOOD, [("workbench.value.type", b"delta")],
     "workbench writes only b'change'"),
    ("change-header-on-an-object", b'"a"', GOOD, [("workbench.value.type", b"change")],
     "is not [new, old]"),
    ("key-type-header-unknown", b'"a"', GOOD, [("workbench.key.type", b"session")],
     "workbench writes only b'windowed'"),
    ("windowed-header-on-a-plain-key", b'"a"', GOOD, [("workbench.key.type", b"windowed")],
     "is not [key, window_start, window_end]"),
    ("windowed-bounds-not-integers", b'["a","x","y"]', GOOD,
     [("workbench.key.type", b"windowed")], "with integer bounds"),
]


def _write_pills(kafka_url: str, topic: str, pills: list[Any]) -> None:
    """Partition i: a good record, pill i (offset 1), a good record."""
    from workbench.drivers.kafka import KafkaDriver

    d = KafkaDriver(kafka_url)
    d.ensure_topic(topic, len(pills))
    d.close()
    p = raw_producer(kafka_url)
    for i, (_id, key, value, headers, _say) in enumerate(pills):
        p.produce(topic, _good(2 * i), json.dumps(f"g{2 * i}").encode(), i, timestamp=1000)
        p.produce(topic, value, key, i, timestamp=1001, headers=headers)
        p.produce(topic, _good(2 * i + 1), json.dumps(f"g{2 * i + 1}").encode(), i,
                  timestamp=1002)
    p.flush(30)


@pytest.mark.parametrize("pill", PILLS, ids=[p[0] for p in PILLS])
def test_a_poison_pill_stops_reading_naming_topic_partition_offset(kafka_url: str, sfx: str,
                                                                  pill: Any) -> None:
    """Without a dead-letter topic the good record before the pill is handed out, then the
    read fails with a SerializationError (not a TypeError/ValueError from inside) that names
    topic, partition, offset and what is wrong."""
    from workbench.drivers.kafka import KafkaDriver

    topic = f"pill-{sfx}"
    _write_pills(kafka_url, topic, [pill])
    d = KafkaDriver(kafka_url)
    try:
        first = d.read(topic, 0, 0, 10)
        assert [r[0] for r in first] == ["g0"]
        with pytest.raises(SerializationError) as info:
            d.read(topic, 0, 1, 10)
        msg = str(info.value)
        assert f"offset 1 of {topic!r} partition 0" in msg
        assert pill[4] in msg
        assert "dead_letter" in msg
        with pytest.raises(SerializationError):  # stays put: nothing is skipped silently
            d.read(topic, 0, 1, 10)
    finally:
        d.close()


def test_every_poison_pill_goes_to_the_dead_letter_topic(kafka_url: str, sfx: str) -> None:
    """One pill per partition, between good records: a pipeline with ``dead_letter=`` runs to
    the end, writes every good record and dead-letters every pill, raw, with the error, topic,
    partition and offset in its headers."""
    topic = f"pills-{sfx}"
    _write_pills(kafka_url, topic, PILLS)
    p = wb.Pipeline(f"pills-{sfx}")
    p.source(topic, key="k", time="ts").map(lambda v: {**v, "seen": True}).to(f"ok-{sfx}")
    run = p.run(with_options(kafka_url, dead_letter=f"dlq-{sfx}"))
    try:
        out = sorted(r.key for r in run.records(f"ok-{sfx}"))
        assert out == sorted(f"g{i}" for i in range(2 * len(PILLS)))
        dead = run.driver.read_all(f"dlq-{sfx}")
        by_partition = {}
        for key, value, _ts, _off, headers in dead:
            h = dict(headers)
            assert h["workbench.error.topic"] == topic.encode()
            assert h["workbench.error.offset"] == b"1"
            by_partition[int(h["workbench.error.partition"])] = (key, value, h)
        assert sorted(by_partition) == list(range(len(PILLS)))
        for i, (_id, key, value, headers, say) in enumerate(PILLS):
            got_key, got_value, h = by_partition[i]
            assert (got_key, got_value) == (key, value)  # as they were
            assert say in h["workbench.error"].decode()
            for name, raw in headers or ():
                assert h[name] == raw  # the original headers travel with it
    finally:
        run.close()


def test_a_forged_header_stops_a_run_with_a_serialization_error(kafka_url: str,
                                                                sfx: str) -> None:
    topic = f"forged-{sfx}"
    _write_pills(kafka_url, topic, [PILLS[6]])
    p = wb.Pipeline(f"forged-{sfx}")
    p.source(topic, key="k", time="ts").to(f"forged-out-{sfx}")
    with pytest.raises(SerializationError, match=f"offset 1 of '{topic}' partition 0"):
        p.run(kafka_url)
