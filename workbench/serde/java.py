"""Kafka's Java serdes of numbers and UUIDs, byte for byte (big-endian, as ``ByteBuffer``).

=================  ===========================  ==========================================
serde              Java class                   bytes
=================  ===========================  ==========================================
``long()``         ``LongSerializer``           8, signed big-endian
``integer()``      ``IntegerSerializer``        4, signed big-endian
``short()``        ``ShortSerializer``          2, signed big-endian
``double()``       ``DoubleSerializer``         8, IEEE 754 big-endian
``float32()``      ``FloatSerializer``          4, IEEE 754 big-endian
``uuid()``         ``UUIDSerializer``           the UUID's text, UTF-8
=================  ===========================  ==========================================
"""

from __future__ import annotations

import struct
import uuid as _uuid
from typing import Any

from ..errors import SerializationError
from .base import Serde

__all__ = ["DoubleSerde", "FloatSerde", "IntegerSerde", "LongSerde", "ShortSerde", "UUIDSerde"]


class _Packed(Serde):
    fmt = ">q"
    size = 8
    kind = "an integer"
    low = -(1 << 63)
    high = (1 << 63) - 1

    def __init__(self) -> None:
        self._struct = struct.Struct(self.fmt)

    def _value(self, obj: Any) -> Any:
        if isinstance(obj, bool) or not isinstance(obj, int):
            item = getattr(obj, "item", None)  # numpy integers
            if callable(item) and not isinstance(obj, bool):
                obj = item()
            if isinstance(obj, bool) or not isinstance(obj, int):
                raise SerializationError(f"the {self.name} serde needs {self.kind}, got "
                                         f"{obj!r} ({type(obj).__name__})")
        if not self.low <= obj <= self.high:
            raise SerializationError(f"{obj!r} does not fit the {self.name} serde "
                                     f"({self.low}..{self.high})")
        return obj

    def serialize(self, obj: Any) -> bytes | None:
        if obj is None:
            return None
        return self._struct.pack(self._value(obj))

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        if len(data) != self.size:
            raise SerializationError(f"the {self.name} serde reads exactly {self.size} bytes, "
                                     f"got {len(data)}: {data[:40]!r}")
        return self._struct.unpack(data)[0]

    def deserialize_many(self, items: Any) -> list[Any]:
        unpack, size = self._struct.unpack, self.size
        try:
            return [None if x is None else unpack(x)[0] if len(x) == size else _bad()
                    for x in items]
        except (struct.error, _Bad):
            return [self.deserialize(x) for x in items]


class _Bad(Exception):
    pass


def _bad() -> Any:
    raise _Bad


class LongSerde(_Packed):
    """Java ``Long``: 8 bytes, signed big-endian (``LongSerializer``)."""

    name = "long"


class IntegerSerde(_Packed):
    """Java ``Integer``: 4 bytes, signed big-endian (``IntegerSerializer``)."""

    name = "integer"
    fmt, size, low, high = ">i", 4, -(1 << 31), (1 << 31) - 1


class ShortSerde(_Packed):
    """Java ``Short``: 2 bytes, signed big-endian (``ShortSerializer``)."""

    name = "short"
    fmt, size, low, high = ">h", 2, -(1 << 15), (1 << 15) - 1


class DoubleSerde(_Packed):
    """Java ``Double``: 8 bytes, IEEE 754 big-endian (``DoubleSerializer``)."""

    name = "double"
    fmt, size, kind = ">d", 8, "a number"

    def _value(self, obj: Any) -> Any:
        if isinstance(obj, bool) or not isinstance(obj, int | float):
            item = getattr(obj, "item", None)
            if callable(item):
                obj = item()
            if isinstance(obj, bool) or not isinstance(obj, int | float):
                raise SerializationError(f"the {self.name} serde needs {self.kind}, got "
                                         f"{obj!r} ({type(obj).__name__})")
        return float(obj)


class FloatSerde(DoubleSerde):
    """Java ``Float``: 4 bytes, IEEE 754 big-endian (``FloatSerializer``); values are rounded
    to single precision."""

    name = "float32"
    fmt, size = ">f", 4

    def serialize(self, obj: Any) -> bytes | None:
        if obj is None:
            return None
        try:
            return self._struct.pack(self._value(obj))
        except OverflowError as exc:
            raise SerializationError(f"{obj!r} does not fit a 32-bit float") from exc


class UUIDSerde(Serde):
    """Java ``UUID`` (``UUIDSerializer``): the canonical text, UTF-8; read as ``uuid.UUID``."""

    name = "uuid"

    def serialize(self, obj: Any) -> bytes | None:
        if obj is None:
            return None
        try:
            return str(obj if isinstance(obj, _uuid.UUID) else _uuid.UUID(str(obj))).encode()
        except ValueError as exc:
            raise SerializationError(f"{obj!r} is not a UUID") from exc

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            return _uuid.UUID(data.decode())
        except (ValueError, UnicodeDecodeError) as exc:
            raise SerializationError(f"not a UUID: {data[:40]!r}") from exc
