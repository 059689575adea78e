"""The serdes' bytes and their errors, without any service (the registry and Java have their
own tests: test_registry.py, tests/interop/)."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import workbench as wb
from workbench.errors import DefinitionError, SerializationError
from workbench.serde import get_serde, wire
from workbench.serde.naming import resolve_strategy
from workbench.serde.protobuf_serde import message_class
from workbench.windows import Windowed


@pytest.mark.parametrize(("serde", "value", "data"), [
    (wb.serde.long(), 1, b"\0\0\0\0\0\0\0\x01"),
    (wb.serde.long(), -2, b"\xff" * 7 + b"\xfe"),
    (wb.serde.long(), 2**63 - 1, b"\x7f" + b"\xff" * 7),
    (wb.serde.integer(), 258, b"\0\0\x01\x02"),
    (wb.serde.integer(), -1, b"\xff\xff\xff\xff"),
    (wb.serde.short(), 1, b"\0\x01"),
    (wb.serde.double(), 1.5, struct.pack(">d", 1.5)),
    (wb.serde.float32(), 0.5, struct.pack(">f", 0.5)),
    (wb.serde.string(), "héllo", "héllo".encode()),
    (wb.serde.bytes(), b"\x00\x01", b"\x00\x01"),
    (wb.serde.json(), {"a": [1, 2.5]}, b'{"a":[1,2.5]}'),
    (wb.serde.uuid(), uuid.UUID(int=1), b"00000000-0000-0000-0000-000000000001"),
])
def test_java_compatible_bytes_round_trip(serde: wb.serde.Serde, value: object,
                                          data: bytes) -> None:
    assert serde.serialize(value) == data
    assert serde.deserialize(data) == value
    assert serde.serialize(None) is None and serde.deserialize(None) is None
    assert serde.deserialize_many([data, None]) == [value, None]


@pytest.mark.parametrize(("serde", "bad", "words"), [
    (wb.serde.long(), 2**63, "does not fit"),
    (wb.serde.long(), "1", "needs an integer"),
    (wb.serde.long(), True, "needs an integer"),
    (wb.serde.integer(), 2**31, "does not fit"),
    (wb.serde.short(), -(2**15) - 1, "does not fit"),
    (wb.serde.double(), "x", "needs a number"),
    (wb.serde.bytes(), "text", "needs bytes"),
    (wb.serde.json(), {1, object()}, "JSON"),
    (wb.serde.uuid(), "not-a-uuid", "not a UUID"),
])
def test_values_a_serde_cannot_write_are_serialization_errors(
        serde: wb.serde.Serde, bad: object, words: str) -> None:
    with pytest.raises(SerializationError, match=words):
        serde.serialize(bad)


@pytest.mark.parametrize(("serde", "data", "words"), [
    (wb.serde.long(), b"\0\0\0\x01", "exactly 8 bytes"),
    (wb.serde.integer(), b"\0", "exactly 4 bytes"),
    (wb.serde.string(), b"\xff\xfe", "UTF-8"),
    (wb.serde.json(), b"{nope", "JSON"),
])
def test_bytes_a_serde_cannot_read_are_serialization_errors(
        serde: wb.serde.Serde, data: bytes, words: str) -> None:
    with pytest.raises(SerializationError, match=words):
        serde.deserialize(data)
    with pytest.raises(SerializationError, match=words):
        serde.deserialize_many([serde.serialize(serde.deserialize_many([None])[0]), data])


def test_numpy_numbers_and_nan_go_through_java_serdes() -> None:
    np = pytest.importorskip("numpy")
    assert wb.serde.long().serialize(np.int64(7)) == struct.pack(">q", 7)
    assert math.isnan(wb.serde.double().deserialize(wb.serde.double().serialize(math.nan)))


def test_get_serde_names_objects_and_errors() -> None:
    for name in ("json", "string", "bytes", "long", "integer", "short", "double", "float32",
                 "uuid"):
        assert get_serde(name).name == name

    class Upper:
        def serialize(self, obj: object) -> bytes:
            return str(obj).upper().encode()

        def deserialize(self, data: bytes) -> str:
            if data == b"BAD":
                raise ValueError("no")
            return data.decode()

    wrapped = get_serde(Upper())
    assert wrapped.serialize("ab") == b"AB" and wrapped.deserialize(b"AB") == "AB"
    with pytest.raises(SerializationError, match="cannot decode"):
        wrapped.deserialize(b"BAD")
    with pytest.raises(DefinitionError, match="Did you mean 'long'"):
        get_serde("lnog")
    with pytest.raises(DefinitionError, match="serialize"):
        get_serde(42)


# -- Confluent's wire format ------------------------------------------------------------------
def test_wire_format_header_and_message_indexes() -> None:
    assert wire.frame(1, b"x") == b"\x00\x00\x00\x00\x01x"
    assert wire.unframe(b"\x00\x00\x01\x00\x00rest") == 65536
    # semantics.md B.5: [1] -> 02 02, [0, 2] -> 04 00 04, [0] -> 00
    assert wire.encode_indexes([1]) == b"\x02\x02"
    assert wire.encode_indexes([0, 2]) == b"\x04\x00\x04"
    assert wire.encode_indexes([0]) == b"\x00"
    for idx in ([0], [1], [0, 2], [3, 1, 70]):
        data = b"\x00\x00\x00\x00\x09" + wire.encode_indexes(idx) + b"payload"
        assert wire.decode_indexes(data, 5) == (idx, len(data) - len(b"payload"))
    with pytest.raises(SerializationError, match="magic byte"):
        wire.unframe(b'{"a":1}')
    with pytest.raises(SerializationError, match="too short"):
        wire.unframe(b"\x00\x01")
    with pytest.raises(SerializationError, match="truncated"):
        wire.decode_indexes(b"\x00\x00\x00\x00\x01\x04", 5)


def test_subject_naming_strategies() -> None:
    assert resolve_strategy("topic")("orders", True, None) == "orders-key"
    assert resolve_strategy("topic")("orders", False, "shop.Order") == "orders-value"
    assert resolve_strategy("record")("orders", False, "shop.Order") == "shop.Order"
    assert resolve_strategy("topic_record")("orders", False, "shop.Order") == \
        "orders-shop.Order"
    assert resolve_strategy(lambda t, k, r: f"x.{t}")("o", False, None) == "x.o"
    with pytest.raises(SerializationError, match="needs a named schema"):
        resolve_strategy("record")("orders", False, None)
    with pytest.raises(DefinitionError, match="topic_record"):
        resolve_strategy("topic-record")


# -- windowed keys ----------------------------------------------------------------------------
def test_windowed_layouts() -> None:
    tw = wb.serde.time_windowed(wb.serde.string(), 10)
    data = tw.serialize(Windowed("k", 20, 30))
    assert data == b"k" + struct.pack(">q", 20)
    assert tw.deserialize(data) == Windowed("k", 20, 30)
    sw = wb.serde.session_windowed(wb.serde.long())
    data = sw.serialize(Windowed(7, 5, 9))
    assert data == struct.pack(">qqq", 7, 9, 5)  # key, end, start
    assert sw.deserialize(data) == Windowed(7, 5, 9)
    end = wb.serde.time_windowed("string", 10).deserialize(b"k" + struct.pack(">q", 2**63 - 5))
    assert end.window_end == 2**63 - 1  # Long.MAX_VALUE on overflow, as Java
    with pytest.raises(SerializationError, match="windowed keys"):
        tw.serialize("k")
    with pytest.raises(SerializationError, match="at least 16 bytes"):
        sw.deserialize(b"short")


# -- Avro ----------------------------------------------------------------------------------
ORDER = {
    "type": "record", "name": "Order", "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                    "precision": 9, "scale": 2}},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


def test_avro_raw_round_trip_with_logical_types() -> None:
    serde = wb.serde.avro(ORDER)
    value = {"id": 1, "customer": "c1", "amount": decimal.Decimal("12.50"),
             "created_at": dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC), "note": None}
    data = serde.serialize(value)
    assert data is not None
    assert serde.deserialize(data) == value
    assert serde.deserialize_many([data, None]) == [value, None]
    # definition-time check: defaults filled in, types as a reader gets them
    checked = serde.check({"id": 2, "customer": "c2", "amount": decimal.Decimal("1.00"),
                           "created_at": 1_700_000_000_000})
    assert checked["note"] is None
    assert checked["created_at"] == dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)


def test_avro_errors_say_which_field() -> None:
    serde = wb.serde.avro(ORDER)
    with pytest.raises(SerializationError, match=r"shop.Order.id .*expected long"):
        serde.serialize({"id": "one", "customer": "c", "amount": decimal.Decimal(1),
                         "created_at": 0})
    with pytest.raises(SerializationError, match="cannot decode"):
        serde.deserialize(b"\x02")
    with pytest.raises(SerializationError, match="left over"):
        wb.serde.avro("long").deserialize(b"\x02\x02")
    with pytest.raises(DefinitionError, match="not a valid Avro schema"):
        wb.serde.avro({"type": "record", "name": "X", "fields": [{"name": "a"}]})
    with pytest.raises(DefinitionError, match="needs a schema"):
        wb.serde.avro()


# -- Protobuf ------------------------------------------------------------------------------
def test_protobuf_round_trip_dicts_and_messages() -> None:
    Total = message_class("Total", {"customer": "string", "total": "double",
                                    "tags": "repeated string"}, package="shoptest")
    serde = wb.serde.protobuf(Total)
    data = serde.serialize({"customer": "c1", "total": 2.5, "tags": ["a"]})
    assert data == Total(customer="c1", total=2.5, tags=["a"]).SerializeToString()
    assert serde.deserialize(data) == {"customer": "c1", "total": 2.5, "tags": ["a"]}
    assert serde.check({"customer": "c2"}) == {"customer": "c2", "total": 0.0, "tags": []}
    as_msg = wb.serde.protobuf(Total, as_dict=False)
    assert as_msg.deserialize(data) == Total(customer="c1", total=2.5, tags=["a"])
    with pytest.raises(SerializationError, match="has no field 'totl'"):
        serde.serialize({"totl": 1.0})
    with pytest.raises(SerializationError, match="does not fit"):
        serde.serialize({"total": "many"})
    with pytest.raises(SerializationError, match=r"not a shoptest\.Total message"):
        serde.deserialize(b"\xff\xff\xff")
    with pytest.raises(DefinitionError, match="message class"):
        wb.serde.protobuf({"not": "a class"})


# -- JSON Schema ---------------------------------------------------------------------------
def test_jsonschema_validates_on_write() -> None:
    serde = wb.serde.jsonschema({"title": "Click", "type": "object",
                                 "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    assert serde.serialize({"n": 1}) == b'{"n":1}'
    assert serde.deserialize(b'{"n":1}') == {"n": 1}
    with pytest.raises(SerializationError, match="at n: 'x' is not of type 'integer'"):
        serde.serialize({"n": "x"})
    with pytest.raises(SerializationError, match="'n' is a required property"):
        serde.serialize({})
    with pytest.raises(DefinitionError, match="not a valid JSON Schema"):
        wb.serde.jsonschema({"type": "nonsense"})


# -- round trips of generated values -----------------------------------------------------------

_AVRO_ROW = st.fixed_dictionaries({
    "id": st.integers(-(2**63), 2**63 - 1), "customer": st.text(max_size=20),
    "amount": st.decimals(min_value=-9_999_999, max_value=9_999_999, places=2,
                          allow_nan=False, allow_infinity=False),
    "created_at": st.datetimes(min_value=dt.datetime(1970, 1, 1),
                               max_value=dt.datetime(2200, 1, 1),
                               timezones=st.just(dt.UTC)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)),
    "note": st.none() | st.text(max_size=10)})


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**31), 2**31 - 1),
       st.floats(allow_nan=False), st.text(), st.binary())
def test_java_serdes_round_trip(n: int, i: int, x: float, s: str, b: bytes) -> None:
    for serde, value in ((wb.serde.long(), n), (wb.serde.integer(), i),
                         (wb.serde.double(), x), (wb.serde.string(), s),
                         (wb.serde.bytes(), b)):
        assert serde.deserialize(serde.serialize(value)) == value


@settings(max_examples=150, deadline=None)
@given(st.lists(_AVRO_ROW, max_size=5))
def test_avro_round_trips_and_columns(rows: list[dict[str, object]]) -> None:
    serde = wb.serde.avro(ORDER)
    data = [serde.serialize(r) for r in rows]
    assert serde.deserialize_many(data) == rows
    columns = serde.deserialize_columns([*data, None])
    if rows:
        assert columns is not None
        cols, present = columns
        assert present == [True] * len(rows) + [False]
        assert cols["id"] == [r["id"] for r in rows] + [None]


_SCALARS = message_class("Scalars", {
    "i32": "int32", "i64": "sint64", "u32": "uint32", "u64": "uint64", "f64": "double",
    "f32": "float", "flag": "bool", "text": "string", "raw": "bytes"}, package="formats")
_SCALAR_ROW = st.fixed_dictionaries({
    "i32": st.integers(-(2**31), 2**31 - 1), "i64": st.integers(-(2**63), 2**63 - 1),
    "u32": st.integers(0, 2**32 - 1), "u64": st.integers(0, 2**64 - 1),
    "f64": st.floats(allow_nan=False), "f32": st.floats(width=32, allow_nan=False),
    "flag": st.booleans(), "text": st.text(max_size=12), "raw": st.binary(max_size=12)})


@settings(max_examples=150, deadline=None)
@given(st.lists(_SCALAR_ROW, max_size=6), st.booleans())
def test_protobuf_columns_equal_dicts(rows: list[dict[str, object]], with_none: bool) -> None:
    """Protobuf messages of scalar fields read straight into columns (typed NumPy arrays) hold
    exactly what one dict per message holds; a bad message among them is named. (The wire
    format's framing: tests/serde/test_kafka_registry.py, with a real registry.)"""
    serde = wb.serde.protobuf(_SCALARS)
    assert serde.columnar
    data = [serde.serialize(r) for r in rows]
    items = [*data, None] if with_none else data
    dicts = serde.deserialize_many(items)
    cols, present = serde.deserialize_columns(items)  # type: ignore[misc]
    assert present == [d is not None for d in dicts]
    for name in _SCALARS.DESCRIPTOR.fields_by_name:
        col = cols[name]
        assert list(col.tolist() if hasattr(col, "tolist") else col) == [
            None if d is None else d[name] for d in dicts], name
    if rows and not with_none:
        assert {n: str(c.dtype) for n, c in cols.items() if hasattr(c, "dtype")} == {
            "i32": "int64", "i64": "int64", "u32": "int64", "f64": "float64",
            "f32": "float64", "flag": "bool", "text": "object", "raw": "object"}
    with pytest.raises(SerializationError, match=r"not a formats\.Scalars message"):
        serde.deserialize_columns([*items, b"\xff\xff"])


def _rich_message() -> type:
    """A proto3 message with every kind of field a dict shows differently: an enum, a nested
    message (with presence), a ``Timestamp``, a map, repeated scalars, enums and messages."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    fdp = descriptor_pb2.FileDescriptorProto(name="formats/rich.proto", package="formats",
                                             syntax="proto3",
                                             dependency=["google/protobuf/timestamp.proto"])
    enum = fdp.enum_type.add(name="Status")
    for number, name in enumerate(["NEW", "PAID", "REFUNDED"]):
        enum.value.add(name=name, number=number)
    inner = fdp.message_type.add(name="Inner")
    inner.field.add(name="n", number=1, type=3, label=1)
    rich = fdp.message_type.add(name="Rich")
    entry = rich.nested_type.add(name="CountsEntry", options={"map_entry": True})
    entry.field.add(name="key", number=1, type=9, label=1)
    entry.field.add(name="value", number=2, type=3, label=1)
    F = descriptor_pb2.FieldDescriptorProto
    for number, (name, kind, label, type_name) in enumerate([
            ("status", F.TYPE_ENUM, 1, ".formats.Status"), ("inner", F.TYPE_MESSAGE, 1,
                                                             ".formats.Inner"),
            ("at", F.TYPE_MESSAGE, 1, ".google.protobuf.Timestamp"),
            ("counts", F.TYPE_MESSAGE, 3, ".formats.Rich.CountsEntry"),
            ("tags", F.TYPE_STRING, 3, ""), ("history", F.TYPE_ENUM, 3, ".formats.Status"),
            ("inners", F.TYPE_MESSAGE, 3, ".formats.Inner"), ("big", F.TYPE_UINT64, 1, ""),
            ("x", F.TYPE_DOUBLE, 1, "")], start=1):
        field = rich.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("formats.Rich"))


_RICH = _rich_message()
_STATUS = st.sampled_from(["NEW", "PAID", "REFUNDED"])
_RICH_ROW = st.fixed_dictionaries({
    "status": _STATUS, "inner": st.none() | st.fixed_dictionaries({"n": st.integers(0, 99)}),
    "counts": st.dictionaries(st.text(max_size=3), st.integers(-5, 5), max_size=3),
    "tags": st.lists(st.text(max_size=4), max_size=3), "history": st.lists(_STATUS, max_size=3),
    "inners": st.lists(st.fixed_dictionaries({"n": st.integers(0, 9)}), max_size=2),
    "big": st.integers(0, 2**64 - 1), "x": st.floats(allow_nan=False)})


@settings(max_examples=100, deadline=None)
@given(st.lists(_RICH_ROW, max_size=5), st.booleans(), st.integers(0, 253_402_300_799))
def test_protobuf_columns_of_nested_enum_and_repeated_fields(
        rows: list[dict[str, object]], with_none: bool, seconds: int) -> None:
    """Enums (names; a number the enum does not name stays a number), nested messages (None
    when unset), Timestamps (UTC datetimes), maps and repeated fields gathered one field at a
    time equal one dict per message."""
    serde = wb.serde.protobuf(_RICH)
    assert serde.columnar
    msgs = []
    for r in rows:
        msg = _RICH(status=r["status"], counts=r["counts"], tags=r["tags"],
                    history=r["history"], big=r["big"], x=r["x"])
        for inner in r["inners"]:  # type: ignore[attr-defined]
            msg.inners.add(n=inner["n"])
        if r["inner"] is not None:
            msg.inner.n = r["inner"]["n"]  # type: ignore[index]
        msg.at.FromSeconds(seconds)
        msgs.append(msg.SerializeToString())
    msgs.append(b"\x08\x07")  # status 7: not a name of the enum
    items = [*msgs, None] if with_none else msgs
    dicts = serde.deserialize_many(items)
    cols, present = serde.deserialize_columns(items)  # type: ignore[misc]
    assert present == [d is not None for d in dicts]
    for name in _RICH.DESCRIPTOR.fields_by_name:
        col = cols[name]
        assert list(col.tolist() if hasattr(col, "tolist") else col) == [
            None if d is None else d[name] for d in dicts], name
    assert dicts[len(rows)]["status"] == 7 and dicts[len(rows)]["inner"] is None
    if rows:
        assert dicts[0]["at"] == dt.datetime.fromtimestamp(seconds, dt.UTC)
