"""Confluent's wire format: how a Schema Registry serde frames its payload.

::

    byte 0      magic byte 0x00
    bytes 1-4   schema id, big-endian (ByteBuffer.putInt)
    [Protobuf]  message indexes: [0] as the single byte 0x00, else zig-zag varint count then
                zig-zag varint indexes (Kafka's ByteUtils.writeVarint)
    rest        the Avro binary / Protobuf message / JSON text

>>> frame(7, b"payload")
b'\\x00\\x00\\x00\\x00\\x07payload'
>>> encode_indexes([1]), encode_indexes([0, 2])
(b'\\x02\\x02', b'\\x04\\x00\\x04')
"""

from __future__ import annotations

import struct

from ..errors import SerializationError

__all__ = ["MAGIC", "decode_indexes", "encode_indexes", "frame", "header", "unframe"]

MAGIC = 0
_HEADER = struct.Struct(">bI")


def header(schema_id: int) -> bytes:
    """The five bytes in front of every framed payload."""
    return _HEADER.pack(MAGIC, schema_id)


def frame(schema_id: int, payload: bytes) -> bytes:
    """``payload`` framed with ``schema_id``."""
    return _HEADER.pack(MAGIC, schema_id) + payload


def unframe(data: bytes) -> int:
    """The schema id of a framed message (the payload starts at byte 5); a message that is not
    in the wire format is a :class:`SerializationError`."""
    if len(data) < 5:
        raise SerializationError(f"not in Confluent's wire format: {len(data)} bytes is too "
                                 f"short for the 5-byte header ({data[:16]!r})")
    if data[0] != MAGIC:
        raise SerializationError(
            f"not in Confluent's wire format: the first byte is {data[0]:#04x}, not the magic "
            f"byte 0x00 ({data[:16]!r}); was it written without a Schema Registry serde?")
    schema_id: int = _HEADER.unpack_from(data)[1]
    return schema_id


def _zigzag_varint(n: int) -> bytes:
    v = ((n << 1) ^ (n >> 31)) & 0xFFFFFFFF
    out = bytearray()
    while v & ~0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise SerializationError("truncated Protobuf message indexes")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 28:
            raise SerializationError("malformed varint in Protobuf message indexes")
    return (value >> 1) ^ -(value & 1), pos


def encode_indexes(indexes: list[int]) -> bytes:
    """Protobuf message indexes as Confluent writes them (``[0]`` is the byte ``0x00``)."""
    if indexes == [0]:
        return b"\x00"
    return _zigzag_varint(len(indexes)) + b"".join(_zigzag_varint(i) for i in indexes)


def decode_indexes(data: bytes, pos: int) -> tuple[list[int], int]:
    """The message indexes at ``pos`` and the position after them."""
    count, pos = _read_varint(data, pos)
    if count == 0:
        return [0], pos
    if count < 0 or count > 100:
        raise SerializationError(f"malformed Protobuf message indexes (count {count})")
    out = []
    for _ in range(count):
        i, pos = _read_varint(data, pos)
        out.append(i)
    return out, pos
