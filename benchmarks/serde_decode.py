"""Decoding Avro and Protobuf values into columns, against fastavro and protobuf decoding the
same messages in a loop (issue 13: workbench's columnar decode should reach >= 0.5x of them).

    python benchmarks/serde_decode.py [--messages 200000] [--repeat 5] [--registry URL]

    python benchmarks/serde_decode.py --registry URL --kafka kafka://HOST:PORT

    python benchmarks/serde_decode.py --cases protobuf,nested   # only those cases

Without ``--registry`` the messages are bare Avro / Protobuf payloads; with it (e.g.
``workbench dev up`` prints one) they are in Confluent's wire format, the baseline then skips
the 5-byte header (and the message index byte) itself. With ``--kafka`` the messages are also
produced to the broker, fetched back once as librdkafka messages, and the Kafka driver's own
decoding of them into a column batch (``Codec.decode_batch``, what ``KafkaDriver.read_batch``
hands the engine: String keys, timestamps, offsets and values) is timed against the same
baselines, beside the record-by-record path (``Codec.decode`` + ``Batch.from_rows``, used for
a batch holding headers or a bad record). Protobuf is timed on two messages: ``Click`` (five
scalar fields) and ``Order`` (``nested``: nine fields, an enum, a nested message, a
``google.protobuf.Timestamp``, a map, repeated strings, enums and messages, a uint64 and a
double), with a second baseline for ``Order``: protobuf's own conversion of each message into
Python values (``json_format.MessageToDict``), and a third for both messages: the loop a user
writes to decode them into columns with protobuf (``FromString``, then each field's value
appended to its column as workbench shows it: enum names, dicts, datetimes, lists). "per msg"
is workbench's message-by-message path (the one before ``workbench/serde/protobuf_wire.py``,
still taken for small batches and what the flat path hands back), timed in the same process.
Nested fields of a batch come as columns that make their Python values when read
(``workbench/runtime/nested.py``); "+ values" also makes every one of them.
Numbers, not pass/fail: each case runs --repeat times, baseline and workbench alternately; the
best CPU times, their medians and the median of the ratios of each adjacent pair are
reported (the machine is shared and noisy: CPU times there move by a factor of two).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import time
from collections.abc import Callable
from typing import Any

import fastavro

import workbench as wb
from workbench.serde.protobuf_serde import message_class
from workbench.serde.wire import encode_indexes

SCHEMA = {"type": "record", "name": "Click", "namespace": "bench", "fields": [
    {"name": "user", "type": "string"}, {"name": "ts", "type": "long"},
    {"name": "amount", "type": "double"}, {"name": "page", "type": "string"},
    {"name": "qty", "type": "int"}]}
Click = message_class("Click", {"user": "string", "ts": "int64", "amount": "double",
                                "page": "string", "qty": "int32"}, package="bench")


def order_class() -> Any:
    """``bench.Order``: every kind of field that is not a plain scalar, without ``protoc``."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    fdp = descriptor_pb2.FileDescriptorProto(name="bench/order.proto", package="bench",
                                             syntax="proto3",
                                             dependency=["google/protobuf/timestamp.proto"])
    status = fdp.enum_type.add(name="Status")
    for number, name in enumerate(["NEW", "PAID", "REFUNDED"]):
        status.value.add(name=name, number=number)
    item = fdp.message_type.add(name="Item")
    item.field.add(name="sku", number=1, type=9, label=1)
    item.field.add(name="qty", number=2, type=5, label=1)
    order = fdp.message_type.add(name="Order")
    entry = order.nested_type.add(name="CountsEntry", options={"map_entry": True})
    entry.field.add(name="key", number=1, type=9, label=1)
    entry.field.add(name="value", number=2, type=3, label=1)
    F = descriptor_pb2.FieldDescriptorProto
    for number, (name, kind, label, type_name) in enumerate([
            ("status", F.TYPE_ENUM, 1, ".bench.Status"),
            ("item", F.TYPE_MESSAGE, 1, ".bench.Item"),
            ("at", F.TYPE_MESSAGE, 1, ".google.protobuf.Timestamp"),
            ("counts", F.TYPE_MESSAGE, 3, ".bench.Order.CountsEntry"),
            ("tags", F.TYPE_STRING, 3, ""), ("history", F.TYPE_ENUM, 3, ".bench.Status"),
            ("items", F.TYPE_MESSAGE, 3, ".bench.Item"), ("big", F.TYPE_UINT64, 1, ""),
            ("x", F.TYPE_DOUBLE, 1, "")], start=1):
        field = order.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.Order"))


Order = order_class()


def orders(n: int) -> list[dict[str, Any]]:
    return [{"status": i % 3, "item": {"sku": f"s{i % 100}", "qty": i % 4},
             "at": dt.datetime.fromtimestamp(1_700_000_000 + i, dt.UTC),
             "counts": {"a": i, "b": i % 7}, "tags": ["t1", f"t{i % 5}"],
             "history": [0, i % 3], "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": i % 3}],
             "big": 2**63 + i, "x": i * 0.5} for i in range(n)]


def values(n: int) -> list[dict[str, Any]]:
    return [{"user": f"u{i % 1000}", "ts": 1_700_000_000_000 + i, "amount": i * 0.25,
             "page": f"/p/{i % 17}", "qty": i % 9} for i in range(n)]


def hand_loop(msgs: list[bytes], cls: Any, skip: int) -> Callable[[], dict[str, list[Any]]]:
    """What a user writes to decode the messages into columns with protobuf: parse each,
    append each field's value (as workbench shows it: enum names, nested messages as dicts
    or ``None``, Timestamps as UTC datetimes, lists, dicts) to its column."""
    parse = cls.FromString
    if cls is not Order:
        def click_loop() -> dict[str, list[Any]]:
            cols: dict[str, list[Any]] = {n: [] for n in ("user", "ts", "amount", "page", "qty")}
            for m in msgs:
                c = parse(m[skip:])
                cols["user"].append(c.user)
                cols["ts"].append(c.ts)
                cols["amount"].append(c.amount)
                cols["page"].append(c.page)
                cols["qty"].append(c.qty)
            return cols
        return click_loop
    status = {v.number: v.name for v in Order.DESCRIPTOR.fields_by_name["status"].enum_type.values}

    def order_loop() -> dict[str, list[Any]]:
        cols: dict[str, list[Any]] = {f.name: [] for f in Order.DESCRIPTOR.fields}
        for m in msgs:
            o = parse(m[skip:])
            cols["status"].append(status.get(o.status, o.status))
            cols["item"].append({"sku": o.item.sku, "qty": o.item.qty}
                                if o.HasField("item") else None)
            cols["at"].append(o.at.ToDatetime(dt.UTC) if o.HasField("at") else None)
            cols["counts"].append(dict(o.counts))
            cols["tags"].append(list(o.tags))
            cols["history"].append([status.get(h, h) for h in o.history])
            cols["items"].append([{"sku": i.sku, "qty": i.qty} for i in o.items])
            cols["big"].append(o.big)
            cols["x"].append(o.x)
        return cols
    return order_loop


def per_message(serde: Any, msgs: list[bytes]) -> Any:
    """``deserialize_columns`` by parsing message by message (the path before
    ``workbench/serde/protobuf_wire.py``; now the one for what it hands back)."""
    from workbench.serde.protobuf_columns import gc_paused

    with gc_paused():
        return serde._columns_per_message(msgs)


def every_value(cols: dict[str, Any]) -> dict[str, Any]:
    """Every column's Python values made: nested fields come as columns that make their dicts,
    lists and datetimes only when read (``workbench/runtime/nested.py``), which is what a
    lambda step reading every field, a frame or a serializer pays on top."""
    from workbench.serde.protobuf_columns import gc_paused

    with gc_paused():
        return {name: col.objects() if hasattr(col, "objects") else col
                for name, col in cols.items()}


def gc_off(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` with Python's cyclic GC paused, as workbench pauses it while it decodes a batch
    (the baselines otherwise run as a user's loop does, with the GC on: its collections walk
    this process's heap of messages)."""
    from workbench.serde.protobuf_columns import gc_paused

    def paused() -> Any:
        with gc_paused():
            return fn()
    return paused


def best(fn: Callable[[], Any], repeat: int) -> float:
    """The best CPU time of this process over ``repeat`` calls (single-threaded decoding on
    both sides: CPU time does not count the time other processes take the cores)."""
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def fetch(kafka_url: str, topic: str, payloads: list[bytes | None]) -> list[Any]:
    """``payloads`` produced to a new one-partition topic (String keys) and fetched back as
    librdkafka messages."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    bootstrap = kafka_url.removeprefix("kafka://").split("?")[0]
    wb.connect(kafka_url).ensure_topic(topic, 1)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50})
    for i, value in enumerate(payloads):
        producer.produce(topic, value, f"u{i % 1000}".encode(), partition=0,
                         timestamp=1_700_000_000_000 + i)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(60)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic,
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    msgs: list[Any] = []
    while len(msgs) < len(payloads):
        got = consumer.consume(10_000, timeout=10)
        if not got:
            raise SystemExit(f"fetched {len(msgs)} of {len(payloads)} messages from {topic}")
        msgs.extend(m for m in got if m.error() is None)
    consumer.close()
    return msgs


def kafka_cases(kafka_url: str, cases: list[tuple[str, Any, list[bytes | None], Any]],
                repeat: int) -> None:
    """The Kafka driver's decoding of fetched messages into a batch, against the baselines."""
    from workbench.drivers.kafka.codec import Codec
    from workbench.runtime.batch import Batch

    print("Kafka driver: librdkafka messages into the engine's column batch")
    for name, serde, payloads, base in cases:
        msgs = fetch(kafka_url, f"bench-decode-{name}-{time.time_ns()}", payloads)
        codec = Codec(wb.serde.string(), serde)
        batch = codec.decode_batch(msgs)
        assert batch is not None and len(batch) == len(msgs)
        # in 100,000-message reads, as the engine asks (Engine.batch_size at most)
        chunks = [msgs[i:i + 100_000] for i in range(0, len(msgs), 100_000)]

        def batched(codec: Any = codec, chunks: list[Any] = chunks) -> None:
            for chunk in chunks:
                codec.decode_batch(chunk)

        def rows(codec: Any = codec, chunks: list[Any] = chunks, name: str = name) -> None:
            for chunk in chunks:
                Batch.from_rows(codec.decode(name, 0, chunk, raw=False, where="", bad=None)[0])

        for label, fn in (("batch", batched), ("record by record", rows)):
            t_base, t_ours = best_pair(base, fn, repeat)
            print(f"{name + ' ' + label:24s} baseline {len(msgs) / t_base:>11,.0f} msg/s   "
                  f"workbench {len(msgs) / t_ours:>11,.0f} msg/s   ratio {t_base / t_ours:.2f}x"
                  f"   ({MEDIANS.pop()})")


def best_pair(base: Callable[[], Any], ours: Callable[[], Any], repeat: int
              ) -> tuple[float, float]:
    """Best times of the baseline and of workbench, run alternately (the load of a shared
    machine then weighs on both alike); the medians are printed too."""
    bases, ours_ = [], []
    for _ in range(repeat):
        bases.append(best(base, 1))
        ours_.append(best(ours, 1))
    med_b, med_o = statistics.median(bases), statistics.median(ours_)
    paired = statistics.median(b / o for b, o in zip(bases, ours_))
    MEDIANS.append(f"medians: baseline {med_b * 1000:.0f} ms, workbench {med_o * 1000:.0f} ms"
                   f" (CPU), ratio {med_b / med_o:.2f}x; median of paired ratios {paired:.2f}x")
    return min(bases), min(ours_)


#: the medians of the last best_pair() (printed after its line)
MEDIANS: list[str] = []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--registry", default=None)
    ap.add_argument("--kafka", default=None, help="kafka://host:port: also time the Kafka "
                    "driver's decoding of the same messages fetched from the broker")
    ap.add_argument("--cases", default="avro,protobuf,nested",
                    help="comma-separated: avro, protobuf (Click), nested (Order)")
    args = ap.parse_args()
    wanted = set(args.cases.split(","))
    n = args.messages
    rows = values(n)
    registry = args.registry
    topic = f"bench-{time.time_ns()}"

    avro = wb.serde.avro(SCHEMA, registry=registry).for_topic(topic, is_key=False)
    proto = wb.serde.protobuf(Click, registry=registry).for_topic(topic + "p", is_key=False)
    nested = wb.serde.protobuf(Order, registry=registry).for_topic(topic + "n", is_key=False)
    avro_msgs = [avro.serialize(r) for r in rows] if "avro" in wanted else []
    proto_msgs = [proto.serialize(r) for r in rows] if "protobuf" in wanted else []
    nested_msgs = [nested.serialize(r) for r in orders(n)] if "nested" in wanted else []
    skip = 5 if registry else 0
    parsed = fastavro.parse_schema(SCHEMA)
    read = fastavro.schemaless_reader

    def fastavro_loop() -> list[Any]:
        out = []
        for m in avro_msgs:
            buf = io.BytesIO(m)
            buf.seek(skip)
            out.append(read(buf, parsed, None))
        return out

    def protobuf_loop(msgs: list[Any], cls: Any) -> Callable[[], list[Any]]:
        # the payload after the header and the message indexes (Order's are [1]: two bytes)
        skip = 5 + len(encode_indexes([1] if cls is Order else [0])) if registry else 0
        parse = cls.FromString
        return lambda: [parse(m[skip:]) for m in msgs]

    def to_dict_loop() -> list[Any]:
        from google.protobuf.json_format import MessageToDict

        parse = Order.FromString
        skip = 7 if registry else 0  # header, message indexes [1]
        return [MessageToDict(parse(m[skip:]), preserving_proto_field_name=True)
                for m in nested_msgs]

    cases: list[tuple[str, Any, Any]] = []
    if avro_msgs:
        assert avro.deserialize_columns(avro_msgs[:3])[0]["user"] == ["u0", "u1", "u2"]
        cases += [("avro", fastavro_loop, lambda: avro.deserialize_columns(avro_msgs)),
                  ("avro rows", fastavro_loop, lambda: avro.deserialize_many(avro_msgs))]
    if proto_msgs:
        assert list(proto.deserialize_columns(proto_msgs[:3])[0]["qty"]) == [0, 1, 2]
        base = protobuf_loop(proto_msgs, Click)
        loop = hand_loop(proto_msgs, Click, 6 if registry else 0)
        cases += [("protobuf", base, lambda: proto.deserialize_columns(proto_msgs)),
                  ("protobuf, GC off", gc_off(base), lambda: proto.deserialize_columns(proto_msgs)),
                  ("protobuf per msg", base,  # the path before the flat one, same process
                   lambda: per_message(proto, proto_msgs)),
                  ("protobuf rows", base, lambda: proto.deserialize_many(proto_msgs)),
                  ("protobuf vs loop", loop, lambda: proto.deserialize_columns(proto_msgs))]
    if nested_msgs:
        first = nested.deserialize_columns(nested_msgs[:2])[0]
        assert first["items"][1] == [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 1}], first
        base = protobuf_loop(nested_msgs, Order)
        loop = hand_loop(nested_msgs, Order, 7 if registry else 0)
        hand = loop.__call__()
        ours = nested.deserialize_columns(nested_msgs)[0]
        assert all(hand[k][:50] == list(ours[k][:50]) for k in hand), "not the same values"
        cases += [("nested", base, lambda: nested.deserialize_columns(nested_msgs)),
                  ("nested, GC off", gc_off(base), lambda: nested.deserialize_columns(nested_msgs)),
                  ("nested + values, GC off", gc_off(base),
                   lambda: every_value(nested.deserialize_columns(nested_msgs)[0])),
                  ("nested per msg, GC off", gc_off(base),
                   lambda: per_message(nested, nested_msgs)),
                  ("nested per msg", base, lambda: per_message(nested, nested_msgs)),
                  ("nested vs loop", loop, lambda: nested.deserialize_columns(nested_msgs)),
                  ("nested rows", base, lambda: nested.deserialize_many(nested_msgs)),
                  ("nested vs dict", to_dict_loop,
                   lambda: nested.deserialize_columns(nested_msgs))]
    print(f"{n} messages, {'wire format (registry)' if registry else 'bare payloads'}; "
          f"best of {args.repeat}")
    for name, base, ours in cases:
        t_base, t_ours = best_pair(base, ours, args.repeat)
        print(f"{name:22s} baseline {n / t_base:>11,.0f} msg/s   workbench "
              f"{n / t_ours:>11,.0f} msg/s   ratio {t_base / t_ours:.2f}x   "
              f"({MEDIANS.pop()})")
    if args.kafka:
        kafka_cases(args.kafka, [
            (name, serde, msgs, protobuf_loop(msgs, cls) if cls else fastavro_loop)
            for name, serde, msgs, cls in (("avro", avro, avro_msgs, None),
                                           ("protobuf", proto, proto_msgs, Click),
                                           ("nested", nested, nested_msgs, Order))
            if msgs], args.repeat)


if __name__ == "__main__":
    main()
