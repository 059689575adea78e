"""Schema Registry serdes on a real Kafka broker and a real Apicurio Registry: records written
by confluent-kafka's own serializers are read by a pipeline, what the pipeline writes is read by
confluent-kafka's own deserializers; schema evolution, subject naming, bad records, partitions.
(The Java side: tests/interop/.)"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

import workbench as wb
from workbench.errors import SerializationError
from workbench.partitioning import partition_for
from workbench.serde.protobuf_serde import message_class

pytestmark = [pytest.mark.kafka, pytest.mark.registry]

ORDER_V1 = {"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"},
    {"name": "customer", "type": "string"},
    {"name": "amount", "type": "double"},
    {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
]}
ORDER_V2 = {**ORDER_V1, "fields": [*ORDER_V1["fields"],
                                   {"name": "channel", "type": "string", "default": "web"}]}
Total = message_class("OrderTotal", {"customer": "string", "total": "double", "orders": "int64"},
                      package="shoptests")


@pytest.fixture
def sfx() -> str:
    return uuid.uuid4().hex[:8]


def _producer(kafka_url: str) -> Any:
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": kafka_url.removeprefix("kafka://"),
                     "partitioner": "murmur2_random"})


def _confluent_avro(registry_url: str, schema: dict[str, Any], topic: str) -> Any:
    import json

    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    ser = AvroSerializer(SchemaRegistryClient({"url": registry_url}), json.dumps(schema))
    ctx = SerializationContext(topic, MessageField.VALUE)
    return lambda value: ser(value, ctx)


def _read_raw(kafka_url: str, topic: str) -> list[Any]:
    from workbench.drivers.kafka import KafkaDriver

    d = KafkaDriver(kafka_url, config={"value_serde": "bytes", "key_serde": "bytes"})
    try:
        return d.read_all(topic)
    finally:
        d.close()


def _orders(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "customer": f"c{i % 3}", "amount": 1.5 * i,
             "created_at": 1_700_000_000_000 + 1000 * i} for i in range(n)]


def test_confluent_avro_in_protobuf_out(kafka_url: str, registry_url: str, sfx: str) -> None:
    """Avro written by confluent-kafka's AvroSerializer is read as typed values; the pipeline's
    Protobuf output (wire format, message indexes) is read by confluent-kafka's
    ProtobufDeserializer, and its string keys sit where murmur2 of their UTF-8 puts them."""
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    topic, out = f"orders-{sfx}", f"totals-{sfx}"
    sr = wb.SchemaRegistry(registry_url)
    wb.connect(kafka_url).ensure_topic(topic, 3)
    encode = _confluent_avro(registry_url, ORDER_V1, topic)
    producer = _producer(kafka_url)
    for order in _orders(30):
        producer.produce(topic, encode(order), order["customer"].encode(),
                         timestamp=order["created_at"])
    producer.flush(30)

    p = wb.Pipeline(f"avro-in-{sfx}")
    orders = p.source(topic, key=wb.serde.string(), value=wb.serde.avro(registry=sr),
                      time="created_at")
    (orders.group_by_key()
           .aggregate(lambda: {"customer": None, "total": 0.0, "orders": 0},
                      lambda agg, v: {"customer": v["customer"],
                                      "total": agg["total"] + v["amount"],
                                      "orders": agg["orders"] + 1}, name="totals")
           .to(out, key=wb.serde.string(), value=wb.serde.protobuf(Total, registry=sr),
               partitions=4))
    run = p.run(kafka_url)
    frame = run.frame(topic)
    assert str(frame["created_at"].dtype).startswith("datetime64")
    assert frame["amount"].dtype == "float64" and frame["id"].dtype == "int64"

    deser = ProtobufDeserializer(Total, {"use.deprecated.format": False})
    final: dict[str, Any] = {}
    for key, value, _ts, _off, _h in _read_raw(kafka_url, out):
        msg = deser(value, SerializationContext(out, MessageField.VALUE))
        final[key.decode()] = (msg.total, msg.orders)
        assert partition_for(key, 4) == _partition_of(kafka_url, out, key)
    expected = {f"c{c}": (sum(1.5 * i for i in range(30) if i % 3 == c), 10) for c in range(3)}
    assert final == expected
    assert f"{out}-value" in sr.subjects()


def _partition_of(kafka_url: str, topic: str, key: bytes) -> int:
    from workbench.drivers.kafka import KafkaDriver

    d = KafkaDriver(kafka_url, config={"value_serde": "bytes", "key_serde": "bytes"})
    try:
        found = {d_key for p in range(d.partitions(topic) or 0)
                 for d_key in [p] if any(r[0] == key for r in d.read(topic, p, 0, 10_000))}
    finally:
        d.close()
    assert len(found) == 1
    return found.pop()


def test_schema_evolution_both_ways(kafka_url: str, registry_url: str, sfx: str) -> None:
    """v1 records read with a v2 reader schema get the new field's default; v2 records that a
    pipeline writes are read by confluent-kafka with the v1 schema (Avro's resolution)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    topic, out = f"evolve-{sfx}", f"evolved-{sfx}"
    sr = wb.SchemaRegistry(registry_url)
    sr.set_compatibility("BACKWARD", f"{out}-value")
    encode = _confluent_avro(registry_url, ORDER_V1, topic)
    producer = _producer(kafka_url)
    for order in _orders(5):
        producer.produce(topic, encode(order), b"k", timestamp=order["created_at"])
    producer.flush(30)
    p = wb.Pipeline(f"evolve-{sfx}")
    src = p.source(topic, key=wb.serde.string(), value=wb.serde.avro(ORDER_V2, registry=sr))
    src.to(out)  # inherits the v2 serde: registers v2 under evolved-value
    run = p.run(kafka_url)
    assert [r.value["channel"] for r in run.records(topic)] == ["web"] * 5
    old_reader = AvroDeserializer(SchemaRegistryClient({"url": registry_url}),
                                  __import__("json").dumps(ORDER_V1))
    values = [old_reader(v, SerializationContext(out, MessageField.VALUE))
              for _k, v, _t, _o, _h in _read_raw(kafka_url, out)]
    assert [v["id"] for v in values] == list(range(5)) and "channel" not in values[0]
    assert sr.latest(f"{out}-value").text.count("channel") == 1


def test_subject_naming_and_auto_register(kafka_url: str, registry_url: str, sfx: str) -> None:
    sr = wb.SchemaRegistry(registry_url)
    schema = {**ORDER_V1, "name": f"Order{sfx}"}
    p = wb.Pipeline(f"naming-{sfx}")
    src = p.source(f"in-{sfx}", sample=_orders(2))
    src.to(f"rec-{sfx}", value=wb.serde.avro(schema, registry=sr, naming="record"))
    src.to(f"trec-{sfx}", value=wb.serde.avro(schema, registry=sr, naming="topic_record"))
    p.run(kafka_url, inputs={f"in-{sfx}": _orders(2)})
    subjects = sr.subjects()
    assert f"shop.Order{sfx}" in subjects and f"trec-{sfx}-shop.Order{sfx}" in subjects
    q = wb.Pipeline(f"noreg-{sfx}")
    q.source(f"in2-{sfx}").to(f"x-{sfx}", value=wb.serde.avro(
        {**schema, "name": f"Never{sfx}"}, registry=sr, auto_register=False))
    with pytest.raises(SerializationError, match=f"not registered under subject 'x-{sfx}-value'"):
        q.run(kafka_url, inputs={f"in2-{sfx}": _orders(1)})


@pytest.mark.parametrize("dead_letter", [False, True])
def test_records_that_do_not_decode(kafka_url: str, registry_url: str, sfx: str,
                                    dead_letter: bool) -> None:
    """A record without the wire format, and one with an unknown schema id: the run stops
    naming topic, partition and offset, or they go to the dead-letter topic."""
    topic = f"mixed-{sfx}"
    encode = _confluent_avro(registry_url, ORDER_V1, topic)
    producer = _producer(kafka_url)
    orders = _orders(4)
    producer.produce(topic, encode(orders[0]), b"a", partition=0)
    producer.produce(topic, b'{"id": 1}', b"b", partition=0)  # plain JSON
    producer.produce(topic, b"\x00\x7f\xff\xff\xf0" + b"\x02", b"c", partition=0)  # no such id
    producer.produce(topic, encode(orders[3]), b"d", partition=0)
    producer.flush(30)
    url = f"{kafka_url}?dead_letter=dlq-{sfx}" if dead_letter else kafka_url
    p = wb.Pipeline(f"mixed-{sfx}")
    p.source(topic, key=wb.serde.string(),
             value=wb.serde.avro(ORDER_V1, registry=registry_url)).to(f"good-{sfx}")
    if not dead_letter:
        with pytest.raises(SerializationError,
                           match=rf"offset 1 of '{topic}' partition 0.*magic byte"):
            p.run(url)
        return
    run = p.run(url)
    assert [r.key for r in run.records(f"good-{sfx}")] == ["a", "d"]
    dead = _read_raw(kafka_url, f"dlq-{sfx}")
    assert len(dead) == 2
    errors = [dict(h)["workbench.error"].decode() for *_r, h in dead]
    assert "magic byte" in errors[0] and "unknown" in errors[1]


def test_confluent_protobuf_in_json_schema_out(kafka_url: str, registry_url: str,
                                               sfx: str) -> None:
    """Protobuf written by confluent-kafka's ProtobufSerializer (message indexes and all) is
    read by a pipeline; its JSON Schema output is read by confluent-kafka's JSONDeserializer,
    which checks it against the registered schema."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    topic, out = f"pb-{sfx}", f"js-{sfx}"
    client = SchemaRegistryClient({"url": registry_url})
    ser = ProtobufSerializer(Total, client, {"use.deprecated.format": False})
    producer = _producer(kafka_url)
    for i in range(6):
        msg = Total(customer=f"c{i % 2}", total=float(i), orders=i)
        producer.produce(topic, ser(msg, SerializationContext(topic, MessageField.VALUE)),
                         f"c{i % 2}".encode())
    producer.flush(30)
    schema = {"title": "Doubled", "type": "object", "required": ["customer", "twice"],
              "properties": {"customer": {"type": "string"}, "twice": {"type": "number"}}}
    p = wb.Pipeline(f"pb-js-{sfx}")
    (p.source(topic, key=wb.serde.string(), value=wb.serde.protobuf(Total, registry=registry_url))
      .map(lambda v: {"customer": v["customer"], "twice": 2 * v["total"]})
      .to(out, value=wb.serde.jsonschema(schema, registry=registry_url)))
    run = p.run(kafka_url)
    assert [r.value["orders"] for r in run.records(topic)] == list(range(6))
    deser = JSONDeserializer(None, schema_registry_client=client)
    got = [deser(v, SerializationContext(out, MessageField.VALUE))
           for _k, v, _t, _o, _h in _read_raw(kafka_url, out)]
    assert sorted(g["twice"] for g in got) == [2.0 * i for i in range(6)]


def test_typed_values_are_read_a_batch_at_a_time(kafka_url: str, registry_url: str,
                                                 sfx: str) -> None:
    """The engine reads a typed topic a batch at a time: Protobuf messages go straight into
    typed columns (no dict per message), headers kept, and a column expression filters them; a
    batch holding a record with one of workbench's private headers, or one that does not
    decode, goes record by record (the bad record named by its offset). Either way the records
    are those ``read`` gives."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from workbench.runtime.batch import ObjectValues, StructValues

    topic, out = f"pbcols-{sfx}", f"pbcols-out-{sfx}"
    ser = ProtobufSerializer(Total, SchemaRegistryClient({"url": registry_url}),
                             {"use.deprecated.format": False})
    producer = _producer(kafka_url)
    wb.connect(kafka_url).ensure_topic(topic, 1)
    for i in range(12):
        value = ser(Total(customer=f"c{i % 3}", total=i / 4, orders=i),
                    SerializationContext(topic, MessageField.VALUE))
        headers = {8: [("trace", b"t8")], 10: [("workbench.timestamp", b"5")]}.get(i)
        producer.produce(topic, value, f"c{i % 3}".encode(), partition=0, headers=headers)
    producer.flush(30)
    p = wb.Pipeline(f"pbcols-{sfx}")
    (p.source(topic, key=wb.serde.string(), value=wb.serde.protobuf(Total, registry=registry_url))
      .filter(wb.col("orders") % 2 == 0)
      .to(out, value=wb.serde.protobuf(Total, registry=registry_url)))
    run = p.run(kafka_url)
    got = [(r.key, r.value) for r in run.records(out)]
    assert got == [(f"c{i % 3}", {"customer": f"c{i % 3}", "total": i / 4, "orders": i})
                   for i in range(0, 12, 2)]

    driver = run.driver
    head = driver.read_batch(topic, 0, 0, 8)  # offsets 0-7: no headers
    assert isinstance(head.values, StructValues)
    assert {f: str(c.dtype) for f, c in head.values.cols.items()} == {
        "customer": "object", "total": "float64", "orders": "int64"}
    assert head.rows() == [r[:5] for r in driver.read(topic, 0, 0, 8)]
    with_headers = driver.read_batch(topic, 0, 6, 4)  # offset 8 has a header
    assert isinstance(with_headers.values, StructValues)
    assert with_headers.rows() == driver.read(topic, 0, 6, 4)
    assert with_headers.rows()[2][4] == (("trace", b"t8"),)
    private = driver.read_batch(topic, 0, 9, 3)  # offset 10: workbench's timestamp header
    assert isinstance(private.values, ObjectValues)
    assert private.rows() == driver.read(topic, 0, 9, 3)
    assert private.rows()[1][2] == 5 and private.rows()[1][4] is None

    producer.produce(topic, None, b"c0", partition=0)  # offset 12: a tombstone
    producer.produce(topic, b"\x00garbage", b"c1", partition=0)  # offset 13
    producer.flush(30)
    tail = driver.read_batch(topic, 0, 11, 2)
    deadline = time.monotonic() + 30
    while len(tail) < 2 and time.monotonic() < deadline:  # a read returns up to 2 records:
        tail = driver.read_batch(topic, 0, 11, 2)  # offset 12 may not be fetched yet
    assert isinstance(tail.values, StructValues)
    assert tail.values.present.tolist() == [True, False]
    assert tail.rows() == [r[:5] for r in driver.read(topic, 0, 11, 2)]
    assert tail.rows()[1][:2] == ("c0", None)
    assert len(driver.read_batch(topic, 0, 9, 10)) == 4  # the good records before it
    with pytest.raises(SerializationError, match=rf"offset 13 of '{topic}' partition 0"):
        driver.read_batch(topic, 0, 13, 10)


def test_wire_format_avro_with_bytes_left_over_is_an_error(registry_url: str, sfx: str) -> None:
    """A Confluent wire-format Avro value followed by stray bytes is not silently truncated:
    it fails naming the schema id and the bytes left over, one value or many."""
    from workbench.errors import SerializationError

    sr = wb.SchemaRegistry(registry_url)
    serde = wb.serde.avro("long", registry=sr, subject=f"leftover-{sfx}-value")
    good = serde.serialize(42)
    assert serde.deserialize(good) == 42
    with pytest.raises(SerializationError, match=r"schema id \d+.*2 bytes left over"):
        serde.deserialize(good + b"\x02\x04")
    with pytest.raises(SerializationError, match="1 bytes left over"):
        serde.deserialize_many([good, good + b"\x00"])
