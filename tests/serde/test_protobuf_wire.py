"""Protobuf batches parsed at once (``workbench/serde/protobuf_wire.py``): the values are those
of parsing each message with protobuf, for random messages of every kind of field, for bytes
protobuf writes otherwise than it would (merged messages, unknown fields, unpacked repeated
numbers, long varints) and for bytes that are not a message at all.

The oracle is protobuf itself: ``FromString`` of each payload, converted by
``test_protobuf_values.reference`` (the plain walk over the descriptor)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

import workbench as wb
from tests.serde.test_protobuf_values import All, Node, _all, _typed, reference
from workbench.errors import SerializationError
from workbench.serde import protobuf_wire
from workbench.serde.protobuf_columns import datetimes, utc
from workbench.serde.protobuf_serde import FLAT_MIN

_FIELDS = [f.name for f in All.DESCRIPTOR.fields]


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, wire: int, value: int | bytes) -> bytes:
    tag = _varint(number << 3 | wire)
    if wire == 0:
        return tag + _varint(int(value))  # type: ignore[arg-type]
    if wire == 1:
        return tag + int(value).to_bytes(8, "little", signed=True)  # type: ignore[arg-type]
    if wire == 5:
        return tag + int(value).to_bytes(4, "little", signed=True)  # type: ignore[arg-type]
    assert isinstance(value, bytes)
    return tag + _varint(len(value)) + value


def _expected(items: list[bytes | None]) -> list[Any]:
    return [None if b is None else reference(All.FromString(b)) for b in items]


def _reads_as_protobuf(items: list[bytes | None]) -> None:
    """Dicts and columns of ``items`` (repeated into a batch large enough for the flat path)
    are the reference's values, of its types; the flat path on ``items`` alone gives them or
    hands the batch back."""
    serde = wb.serde.protobuf(All)
    live = [b for b in items if b is not None]
    cols = protobuf_wire.columns(All.DESCRIPTOR, live)
    if cols is not None:
        got = protobuf_wire.rows(All.DESCRIPTOR, cols, len(live))
        assert _typed(got) == _typed(_expected(live))  # type: ignore[arg-type]
    repeat = -(-FLAT_MIN // max(1, len(live)))
    one = _expected(items)
    expected, items = one * repeat, items * repeat
    got = serde.deserialize_many(items)
    assert _typed(got[:len(one)]) == _typed(one) and got == expected  # (types: once)
    cols, present = serde.deserialize_columns(items)  # type: ignore[misc]
    assert present == [e is not None for e in expected]
    for name in _FIELDS:
        col = cols[name]
        got = col.tolist() if hasattr(col, "tolist") else col
        want = [None if e is None else e[name] for e in expected]
        assert _typed(got[:len(one)]) == _typed(want[:len(one)]) and got == want, name


@settings(max_examples=60, deadline=None)
@given(st.lists(_all(), max_size=8))
def test_random_messages_take_the_flat_path_with_protobufs_values(msgs: list[Any]) -> None:
    """Messages as protobuf writes them are all read by the flat path (not handed back to the
    message-by-message one), with exactly the values of parsing each."""
    payloads = [m.SerializeToString() for m in msgs]
    cols = protobuf_wire.columns(All.DESCRIPTOR, payloads)
    assert cols is not None
    got = protobuf_wire.rows(All.DESCRIPTOR, cols, len(payloads))
    assert _typed(got) == _typed(_expected(payloads))  # type: ignore[arg-type]
    _reads_as_protobuf([*payloads, None])


_UNKNOWN = st.tuples(st.integers(17, 2**29 - 1), st.sampled_from([0, 1, 2, 5]),
                     st.integers(-(2**31), 2**31 - 1), st.binary(max_size=200))


@settings(max_examples=100, deadline=None)
@given(st.lists(_all(), min_size=1, max_size=4), st.lists(_UNKNOWN, max_size=3),
       st.lists(st.integers(0, 4), max_size=3), st.integers(0, 2**64 - 1),
       st.lists(st.integers(0, 3), max_size=3))
def test_bytes_protobuf_would_write_otherwise(msgs: list[Any], unknown: list[Any],
                                              colors: list[int], big: int,
                                              merge: list[int]) -> None:
    """Unknown fields (long tags, every wire type, long lengths), repeated enums written one
    by one instead of packed, a ten-byte varint, and messages concatenated (protobuf merges
    them: the last scalar wins, messages merge, lists append) all read as protobuf parses
    them; a message without duplicates still takes the flat path."""
    extra = b"".join(_field(n, w, v if w == 2 else i) for n, w, i, v in unknown)
    extra += b"".join(_field(10, 0, c) for c in colors)  # colors, unpacked
    extra += _field(16, 0, big)  # u (a two-byte tag), up to ten bytes
    for m in msgs:
        m.ClearField("u")  # (once in each message: the flat path's)
    payloads = [m.SerializeToString() + extra for m in msgs]
    assert protobuf_wire.columns(All.DESCRIPTOR, payloads) is not None
    merged = [payloads[i % len(payloads)] + payloads[(i + 1) % len(payloads)] for i in merge]
    _reads_as_protobuf([*payloads, *merged])


@settings(max_examples=200, deadline=None)
@given(_all(), st.integers(0, 10_000), st.integers(0, 255), st.booleans())
def test_bytes_that_are_not_a_message(msg: Any, at: int, byte: int, cut: bool) -> None:
    """A payload cut short or with a byte changed reads as protobuf reads it, or, where
    protobuf cannot parse it, is a SerializationError naming the message type (the Kafka
    driver then names the record's topic, partition and offset), alone or in a batch."""
    good = msg.SerializeToString()
    data = bytearray(good + _field(3, 2, b"tail"))
    at %= len(data)
    if cut:
        del data[at:]
    else:
        data[at] = byte
    bad = bytes(data)
    serde = wb.serde.protobuf(All)
    try:
        reference(All.FromString(bad))
    except DecodeError:
        error = r"not a pbvalues\.All message"
    except (ValueError, OverflowError, OSError):
        error = r"google\.protobuf\.Timestamp with seconds=.* is not a date"
    else:
        _reads_as_protobuf([good, bad, good])
        return
    assert protobuf_wire.columns(All.DESCRIPTOR, [good, bad]) is None
    for read in (serde.deserialize_many, serde.deserialize_columns):
        for batch in ([good, bad], [good] * FLAT_MIN + [bad]):
            with pytest.raises(SerializationError, match=error):
                read(batch)


def test_deep_nesting_is_protobufs_to_refuse() -> None:
    """Nested deeper than protobuf's parser goes: a SerializationError as when parsing the
    message alone; just within it: the same values."""
    serde = wb.serde.protobuf(Node)
    for depth, ok in ((90, True), (99, True), (101, False), (140, False)):
        node = Node()
        at = node
        for i in range(depth):
            at.v = i
            at.children.add(v=-i)
            at = at.next
        at.v = 1
        data = node.SerializeToString()
        if ok:
            assert serde.deserialize_many([data] * FLAT_MIN) == [
                reference(Node.FromString(data))] * FLAT_MIN
        else:
            with pytest.raises(SerializationError, match=r"not a pbvalues\.Node message"):
                serde.deserialize_columns([data] * FLAT_MIN)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**31) + 1, 2**31 - 1),
                          st.integers(-(2**31), 2**31 - 1)), max_size=20))
def test_timestamps_through_floats_are_exact(pairs: list[tuple[int, int]]) -> None:
    """Timestamps with seconds within +-2**31 go through one float each
    (``fromtimestamp``): the instant is exactly :func:`utc`'s, to the microsecond, for any
    nanos an int32 holds."""
    secs, nanos = [s for s, _ in pairs], [n for _, n in pairs]
    assert datetimes(secs, nanos) == [utc(s, n) for s, n in pairs]


def test_timestamp_float_edges() -> None:
    """Microseconds at the ends of the float range (.999999 and .000001 near +-2**31)."""
    secs = [2**31 - 1, -(2**31) + 1, 2**31 - 1, 0, -1, 1_700_000_000]
    nanos = [999_999_999, 999_999_999, 1_000, 999, -1, 500_500]
    got = datetimes(secs, nanos)
    assert got == [utc(s, n) for s, n in zip(secs, nanos)]
    assert got[0] == dt.datetime(2038, 1, 19, 3, 14, 7, 999_999, tzinfo=dt.UTC)


def test_long_values_take_the_general_step_with_protobufs_values() -> None:
    """Fields with a length of two bytes or more (a nested message, a packed run of 200 enums,
    bytes, a map entry) and varints of two to ten bytes, mixed with short ones in a batch, take
    the walk's general step or its long-varint skip, and read as protobuf parses them."""
    msgs = []
    for i in range(6):
        msg = All(maybe=-i if i % 2 else 2**40 + i, u=2**64 - 1 - i if i % 3 else i)
        msg.root.v = i
        for j in range(40 * (i % 3)):  # a root of 0, ~300 or ~600 bytes
            msg.root.children.add(v=-j - 1)
        msg.colors.extend([j % 3 for j in range(200 * (i % 2))])
        msg.blobs.append(bytes(range(256))[: 150 * (i % 2) + 1])
        msg.nodes[i].children.add().children.add(v=2**31 - 1)
        msg.times["x" * (130 * (i % 2))].seconds = -(2**31) + 1 if i % 2 else 2**31 - 1
        msgs.append(msg)
    payloads = [m.SerializeToString() for m in msgs]
    assert protobuf_wire.columns(All.DESCRIPTOR, payloads) is not None
    _reads_as_protobuf(payloads)


@settings(max_examples=30, deadline=None)
@given(st.lists(_all(), min_size=1, max_size=4), st.binary(min_size=4, max_size=4),
       st.sampled_from([b"\x00", b"\x02\x02", b"\x04\x02\x06"]), st.integers(0, 3),
       st.integers(0, 7))
def test_framed_payloads_lose_their_headers_in_one_pass(msgs: list[Any], schema_id: bytes,
                                                       frame: bytes, bad: int, at: int) -> None:
    """Payloads in Confluent's wire format (magic byte, schema id, message indexes) read as
    the bare messages; one framed otherwise (another magic byte or index, cut inside its
    header) hands the batch back to the message-by-message path, which names it."""
    bare = [m.SerializeToString() for m in msgs]
    framed = [b"\x00" + schema_id + frame + b for b in bare]
    got = protobuf_wire.columns(All.DESCRIPTOR, framed, frame)
    assert got is not None
    assert _typed(protobuf_wire.rows(All.DESCRIPTOR, got, len(bare))) == _typed(_expected(bare))
    wrong = list(framed)
    i = at % len(wrong)
    if bad == 0:
        wrong[i] = b"\x01" + wrong[i][1:]
    elif bad == 1:
        wrong[i] = wrong[i][:5] + bytes([frame[0] ^ 2]) + wrong[i][6:]
    elif bad == 2:
        wrong[i] = wrong[i][:4 + len(frame)]
    else:
        wrong[i] = wrong[i][:5] + b"\x00" + wrong[i][5 + len(frame):]
        if frame == b"\x00":
            return  # (the same frame)
    assert protobuf_wire.columns(All.DESCRIPTOR, wrong, frame) is None
