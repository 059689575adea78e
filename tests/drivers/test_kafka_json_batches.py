"""JSON values of a Kafka topic are decoded a batch at a time with orjson only where that gives
exactly what the standard library gives (``codec._json_values``); anything else (an integer
wider than 64 bits, ``NaN``, a tombstone, a lone surrogate) takes the record-by-record path,
so both reads of a topic always hold the same records."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.drivers.kafka.codec import _json_values

pytest.importorskip("orjson")

#: integers at and beyond the ends of what orjson reads as integers (int64, uint64)
edge_integers = st.sampled_from([-2**63, 2**64 - 1]).flatmap(
    lambda edge: st.integers(edge - 3, edge + 3))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | edge_integers | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=4),
    max_leaves=12)


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (NaN equals NaN, dict order counts)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(json_values, min_size=1, max_size=8))
def test_batch_decoding_is_the_standard_librarys_or_declines(values: list[Any]) -> None:
    data = [json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode() for v in values]
    want = [json.loads(d) for d in data]
    try:
        got = _json_values(data)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return  # declined: the record path decodes these
    if got is None:
        return
    assert all(map(_same, got, want)), (got, want)


def test_wide_integers_and_tombstones_decline() -> None:
    assert _json_values([b'{"n":18446744073709551616}']) is None
    assert _json_values([b"[-9223372036854775809]"]) is None  # orjson: a float
    assert _json_values([b"-99999999999999999999999", b"1"]) is None
    assert _json_values([b'{"n":9223372036854775807}']) == [{"n": 2**63 - 1}]
    assert _json_values([b"[-922337203685477580]", b'"short"']) == [[-922337203685477580],
                                                                      "short"]
    with pytest.raises(TypeError):
        _json_values([b"1", None])
    with pytest.raises(ValueError):
        _json_values([b"NaN"])


@pytest.mark.kafka
def test_batch_and_record_reads_of_a_topic_agree(kafka_url: str) -> None:
    from confluent_kafka import Producer

    from workbench.drivers import connect
    from workbench.drivers.kafka.driver import KafkaDriver

    topic = f"json-batches-{uuid.uuid4().hex[:8]}"
    d = connect(kafka_url)
    assert isinstance(d, KafkaDriver)
    d.create_topic(topic, 1)
    plain = [json.dumps({"i": i, "s": f"é{i}", "f": i / 3, "l": [i, None]}).encode()
             for i in range(500)]
    tricky = [b'{"big":18446744073709551616}', b"NaN", None, b'"\\ud800"', b"1e400",
              b'{"a":1,"a":2}', b"[1,[2,[3]]]"]
    producer = Producer({"bootstrap.servers": kafka_url[len("kafka://"):].split("?")[0]})
    for i, v in enumerate([*plain, *tricky, *plain[:10]]):
        producer.produce(topic, v, json.dumps(f"k{i % 5}").encode(), 0, timestamp=1_000 + i)
    assert producer.flush(30) == 0
    n = len(plain) + len(tricky) + 10
    by_batch: list[Any] = []
    offset = 0
    while offset < n:
        b = d.read_batch(topic, 0, offset, 100)
        rows = b.rows()
        assert rows, f"nothing read at offset {offset}"
        by_batch.extend(rows)
        offset = int(rows[-1][3]) + 1
    by_record = d.read(topic, 0, 0, n)
    while len(by_record) < n:
        by_record.extend(d.read(topic, 0, len(by_record), n))
    d.close()
    assert len(by_batch) == len(by_record) == n
    for a, b in zip(by_batch, by_record):
        assert a[0] == b[0] and a[2] == b[2] and a[3] == b[3]
        assert _same(a[1], b[1]), (a, b)
    # the plain messages take the batch path (read with a consumer of our own, decoded by the
    # topic's codec): a batch path that always declined would pass the comparison above
    codec = d._codec.for_topic(topic)
    msgs = _consume(kafka_url, topic, n)
    decoded = codec.decode_batch(msgs[:len(plain)])
    assert decoded is not None, "the plain messages did not decode as a batch"
    assert [r[:4] for r in decoded.rows()] == [r[:4] for r in by_record[:len(plain)]]
    assert codec.decode_batch(msgs[len(plain):len(plain) + 1]) is None  # the wide integer
    assert by_record[len(plain)][1] == {"big": 2**64}
    assert math.isinf(by_record[len(plain) + 4][1])


def _consume(kafka_url: str, topic: str, n: int) -> list[Any]:
    """The first ``n`` messages of partition 0 of ``topic``, as confluent-kafka gives them."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": kafka_url[len("kafka://"):].split("?")[0],
                         "group.id": f"test-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        msgs: list[Any] = []
        for _ in range(60):
            msgs.extend(m for m in consumer.consume(n - len(msgs), 1.0) if not m.error())
            if len(msgs) >= n:
                break
    finally:
        consumer.close()
    assert len(msgs) == n, f"consumed {len(msgs)} of {n} messages"
    return msgs


@settings(max_examples=300, deadline=None)
@given(values=st.lists(json_values, min_size=1, max_size=8))
def test_bulk_encoding_reads_back_as_the_standard_librarys(values: list[Any]) -> None:
    from workbench.serde import JsonSerde
    from workbench.serde.bulk_json import bulk_json, bulk_json_texts

    exact = JsonSerde()
    try:
        want = [exact.serialize(v) for v in values]
    except Exception:
        want = None
    got = bulk_json(values)
    assert bulk_json_texts(values) == (None if got is None else [g.decode() for g in got])
    if got is None:
        return  # the record path encodes these
    assert want is not None, "the bulk path wrote what the exact path refuses"
    assert len(got) == len(values)
    for g, w in zip(got, want):
        assert _same(json.loads(g), json.loads(w)), (g, w)
