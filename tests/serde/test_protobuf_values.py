"""What Protobuf messages read as (dicts per message and columns), for every kind of field:
proto3 ``optional`` scalars, oneofs, enums with aliases and unknown numbers, maps with message,
enum and Timestamp values, repeated Timestamps and messages, recursive and empty messages.

The oracle is :func:`reference`, a plain walk over the descriptor per message and field (the
conversion workbench used before its converters were compiled per message type): the compiled
converters (``workbench/serde/protobuf_columns.py``) must give exactly its values and types.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import workbench as wb
from workbench.errors import SerializationError
from workbench.serde.protobuf_serde import message_to_dict


# -- the oracle: one dict per message, field by field, from the descriptor ---------------------
def reference(msg: Any) -> dict[str, Any]:
    return {field.name: _ref_field(field, msg) for field in msg.DESCRIPTOR.fields}


def _ref_field(field: Any, msg: Any) -> Any:
    value = getattr(msg, field.name)
    repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == 3
    if field.message_type is not None:
        if field.message_type.GetOptions().map_entry:
            vf = field.message_type.fields_by_name["value"]
            return {k: _ref_convert(vf, v) for k, v in value.items()}
        if repeated:
            return [_ref_message(v) for v in value]
        if not msg.HasField(field.name):
            return None
        return _ref_message(value)
    if repeated:
        return [_ref_convert(field, v) for v in value]
    return _ref_convert(field, value)


def _ref_message(value: Any) -> Any:
    if value.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        return dt.datetime.fromtimestamp(value.seconds, dt.UTC) + dt.timedelta(
            microseconds=value.nanos // 1000)
    return reference(value)


def _ref_convert(field: Any, value: Any) -> Any:
    if field.message_type is not None:
        return _ref_message(value)
    if field.enum_type is not None:
        named = field.enum_type.values_by_number.get(value)
        return named.name if named is not None else value
    return value


def _typed(value: Any) -> Any:
    """``value`` with the type of every part, so that ``1 == 1.0 == True`` do not pass for each
    other."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


# -- the message types -----------------------------------------------------------------------
def _classes() -> dict[str, Any]:
    from google.protobuf import (
        descriptor_pb2,
        descriptor_pool,
        duration_pb2,
        message_factory,
        timestamp_pb2,
    )

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(duration_pb2.DESCRIPTOR.serialized_pb)
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="pbvalues/all.proto", package="pbvalues", syntax="proto3",
        dependency=["google/protobuf/timestamp.proto", "google/protobuf/duration.proto"])
    color = fdp.enum_type.add(name="Color", options={"allow_alias": True})
    for number, name in ((0, "RED"), (0, "CRIMSON"), (1, "GREEN"), (2, "BLUE")):
        color.value.add(name=name, number=number)
    fdp.message_type.add(name="Empty")
    node = fdp.message_type.add(name="Node")
    node.field.add(name="v", number=1, type=F.TYPE_INT32, label=1)
    node.field.add(name="next", number=2, type=F.TYPE_MESSAGE, label=1,
                   type_name=".pbvalues.Node")
    node.field.add(name="children", number=3, type=F.TYPE_MESSAGE, label=3,
                   type_name=".pbvalues.Node")
    msg = fdp.message_type.add(name="All")
    for entry_name, key_type, value_type, value_name in (
            ("NodesEntry", F.TYPE_INT32, F.TYPE_MESSAGE, ".pbvalues.Node"),
            ("TimesEntry", F.TYPE_STRING, F.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
            ("FlagsEntry", F.TYPE_BOOL, F.TYPE_ENUM, ".pbvalues.Color")):
        entry = msg.nested_type.add(name=entry_name, options={"map_entry": True})
        entry.field.add(name="key", number=1, type=key_type, label=1)
        entry.field.add(name="value", number=2, type=value_type, label=1, type_name=value_name)
    msg.oneof_decl.add(name="choice")
    msg.oneof_decl.add(name="_maybe")
    msg.oneof_decl.add(name="_maybe_color")
    for number, (name, kind, label, type_name, oneof) in enumerate([
            ("maybe", F.TYPE_INT64, 1, "", 1),
            ("maybe_color", F.TYPE_ENUM, 1, ".pbvalues.Color", 2),
            ("text", F.TYPE_STRING, 1, "", 0),
            ("node", F.TYPE_MESSAGE, 1, ".pbvalues.Node", 0),
            ("when", F.TYPE_MESSAGE, 1, ".google.protobuf.Timestamp", 0),
            ("nodes", F.TYPE_MESSAGE, 3, ".pbvalues.All.NodesEntry", None),
            ("times", F.TYPE_MESSAGE, 3, ".pbvalues.All.TimesEntry", None),
            ("flags", F.TYPE_MESSAGE, 3, ".pbvalues.All.FlagsEntry", None),
            ("stamps", F.TYPE_MESSAGE, 3, ".google.protobuf.Timestamp", None),
            ("colors", F.TYPE_ENUM, 3, ".pbvalues.Color", None),
            ("root", F.TYPE_MESSAGE, 1, ".pbvalues.Node", None),
            ("empty", F.TYPE_MESSAGE, 1, ".pbvalues.Empty", None),
            ("took", F.TYPE_MESSAGE, 1, ".google.protobuf.Duration", None),
            ("blobs", F.TYPE_BYTES, 3, "", None),
            ("f", F.TYPE_FLOAT, 1, "", None),
            ("u", F.TYPE_UINT64, 1, "", None)], start=1):
        field = msg.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name
        if oneof is not None:
            field.oneof_index = oneof
            field.proto3_optional = oneof > 0
    pool.Add(fdp)
    get = message_factory.GetMessageClass
    return {name: get(pool.FindMessageTypeByName(f"pbvalues.{name}"))
            for name in ("All", "Node", "Empty")}


_C = _classes()
All, Node = _C["All"], _C["Node"]
_SECONDS = st.integers(-62_135_596_800, 253_402_300_799 - 1)
_NANOS = st.integers(0, 999_999_999)
_COLOR = st.integers(0, 4)  # 3 and 4: numbers the enum does not name


def _node(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return st.builds(lambda v: Node(v=v), st.integers(-5, 5))
    return st.builds(lambda v, nxt, kids: Node(v=v, next=nxt, children=kids),
                     st.integers(-5, 5), st.none() | _node(depth - 1),
                     st.lists(_node(depth - 1), max_size=2))


@st.composite
def _all(draw: Any) -> Any:
    msg = All()
    if draw(st.booleans()):
        msg.maybe = draw(st.integers(-(2**63), 2**63 - 1))
    if draw(st.booleans()):
        msg.maybe_color = draw(_COLOR)
    choice = draw(st.sampled_from(["", "text", "node", "when"]))
    if choice == "text":
        msg.text = draw(st.text(max_size=4))
    elif choice == "node":
        msg.node.CopyFrom(draw(_node(2)))
    elif choice == "when":
        msg.when.seconds, msg.when.nanos = draw(_SECONDS), draw(_NANOS)
    for k, node in draw(st.dictionaries(st.integers(-3, 3), _node(1), max_size=2)).items():
        msg.nodes[k].CopyFrom(node)
    for k, (s, n) in draw(st.dictionaries(st.text(max_size=2), st.tuples(_SECONDS, _NANOS),
                                          max_size=2)).items():
        msg.times[k].seconds, msg.times[k].nanos = s, n
    for k, c in draw(st.dictionaries(st.booleans(), _COLOR, max_size=2)).items():
        msg.flags[k] = c
    for s, n in draw(st.lists(st.tuples(_SECONDS, _NANOS), max_size=3)):
        msg.stamps.add(seconds=s, nanos=n)
    msg.colors.extend(draw(st.lists(_COLOR, max_size=3)))
    if draw(st.booleans()):
        msg.root.CopyFrom(draw(_node(3)))
    if draw(st.booleans()):
        msg.empty.SetInParent()
    if draw(st.booleans()):
        msg.took.seconds, msg.took.nanos = draw(st.integers(-99, 99)), draw(st.integers(0, 9))
    msg.blobs.extend(draw(st.lists(st.binary(max_size=3), max_size=2)))
    msg.f = draw(st.floats(width=32, allow_nan=False))
    msg.u = draw(st.integers(0, 2**64 - 1))
    return msg


@settings(max_examples=150, deadline=None)
@given(st.lists(_all(), max_size=6), st.lists(st.integers(0, 6), max_size=2))
def test_every_kind_of_field_reads_as_the_reference(msgs: list[Any], nones: list[int]) -> None:
    """Dicts per message, columns, ``message_to_dict`` and the sample check all give the
    reference's values, of the reference's types, with ``None`` values anywhere."""
    serde = wb.serde.protobuf(All)
    items: list[bytes | None] = [m.SerializeToString() for m in msgs]
    for at in nones:
        items.insert(min(at, len(items)), None)
    expected = [None if b is None else reference(All.FromString(b)) for b in items]
    assert _typed(serde.deserialize_many(items)) == _typed(expected)
    cols, present = serde.deserialize_columns(items)  # type: ignore[misc]
    assert present == [e is not None for e in expected]
    for name in All.DESCRIPTOR.fields_by_name:
        col = cols[name]
        got = col.tolist() if hasattr(col, "tolist") else col
        assert _typed(got) == _typed([None if e is None else e[name] for e in expected]), name
    for m in msgs:
        assert _typed(message_to_dict(m)) == _typed(reference(m))
        assert _typed(serde.check(m)) == _typed(reference(m))


def test_presence_oneofs_enums_and_recursion() -> None:
    """The cases spelled out: a proto3 ``optional`` scalar that is not set reads as its default
    (as its attribute does), a oneof's unset message member as ``None``, an alias as the name
    protobuf gives its number, an unknown number as the number, a recursive message as nested
    dicts, an empty message as ``{}``, a Duration as a dict of its fields."""
    serde = wb.serde.protobuf(All)
    msg = All(text="t", colors=[0, 1, 7], flags={True: 9, False: 1}, blobs=[b"x"])
    msg.root.v = 1
    msg.root.next.v = 2
    msg.root.next.children.add(v=3)
    msg.empty.SetInParent()
    msg.times["a"].seconds = 0
    msg.took.seconds = -5
    got = serde.deserialize(msg.SerializeToString())
    red = All.DESCRIPTOR.fields_by_name["colors"].enum_type.values_by_number[0].name
    assert got == {
        "maybe": 0, "maybe_color": red, "text": "t", "node": None, "when": None, "nodes": {},
        "times": {"a": dt.datetime(1970, 1, 1, tzinfo=dt.UTC)}, "flags": {True: 9, False: "GREEN"},
        "stamps": [], "colors": [red, "GREEN", 7],
        "root": {"v": 1, "next": {"v": 2, "next": None, "children": [
            {"v": 3, "next": None, "children": []}]}, "children": []},
        "empty": {}, "took": {"seconds": -5, "nanos": 0}, "blobs": [b"x"], "f": 0.0, "u": 0}
    cols, _ = serde.deserialize_columns([msg.SerializeToString(), All(maybe=4).SerializeToString()])
    assert list(cols["maybe"]) == [0, 4] and str(cols["maybe"].dtype) == "int64"
    assert list(cols["text"]) == ["t", ""] and cols["node"] == [None, None]
    assert cols["root"][1] is None and cols["empty"] == [{}, None]
    assert serde.deserialize(All(node=Node(v=1)).SerializeToString())["node"] == {
        "v": 1, "next": None, "children": []}


@pytest.mark.parametrize(("seconds", "nanos", "expected"), [
    (-62_135_596_800, 0, dt.datetime(1, 1, 1, tzinfo=dt.UTC)),
    (253_402_300_799, 999_999_999, dt.datetime(9999, 12, 31, 23, 59, 59, 999_999,
                                               tzinfo=dt.UTC)),
    (0, -1, dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)),
    (1, 2_000_000_001, dt.datetime(1970, 1, 1, 0, 0, 3, tzinfo=dt.UTC)),
])
def test_timestamps_at_the_edges(seconds: int, nanos: int, expected: dt.datetime) -> None:
    """Timestamps at the ends of ``datetime``'s range, and nanos outside 0..999,999,999
    (which protobuf does not forbid on the wire), read as the reference reads them."""
    msg = All()
    msg.when.seconds, msg.when.nanos = seconds, nanos
    msg.stamps.add(seconds=seconds, nanos=nanos)
    serde = wb.serde.protobuf(All)
    got = serde.deserialize(msg.SerializeToString())
    assert got["when"] == got["stamps"][0] == expected == reference(msg)["when"]


@pytest.mark.parametrize(("seconds", "nanos"), [
    (253_402_300_800, 0), (-62_135_596_801, 0), (2**62, 0), (253_402_300_799, 10**9)])
def test_a_timestamp_out_of_range_is_a_serialization_error(seconds: int, nanos: int) -> None:
    """A Timestamp no ``datetime`` holds is a SerializationError naming it, one message or a
    batch, columns or dicts (the Kafka driver then names the record's topic, partition and
    offset), not a ``ValueError``/``OSError`` from ``datetime``."""
    msg = All()
    msg.stamps.add(seconds=0)
    msg.stamps.add(seconds=seconds, nanos=nanos)
    data = msg.SerializeToString()
    serde = wb.serde.protobuf(All)
    match = f"Timestamp with seconds={seconds} nanos={nanos} is not a date"
    with pytest.raises(SerializationError, match=match):
        serde.deserialize(data)
    with pytest.raises(SerializationError, match=match):
        serde.deserialize_columns([All().SerializeToString(), data])
    with pytest.raises(SerializationError, match=match):
        serde.deserialize_many([data, None])
