"""JSON (the default), UTF-8 strings and raw bytes."""

from __future__ import annotations

import datetime as _dt
import decimal
import json
from typing import Any

from ..errors import SerializationError
from .base import Serde

__all__ = ["BytesSerde", "JsonSerde", "StringSerde", "_json_default"]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, _dt.datetime | _dt.date):
        return obj.isoformat()
    if isinstance(obj, decimal.Decimal):
        return float(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    from ..keys import KeyId, encode_key

    if obj.__class__ is KeyId:  # a state key inside a changelog record
        return encode_key(obj.key)
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return item()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


class JsonSerde(Serde):
    """Compact JSON (UTF-8), the default for keys and values."""

    name = "json"

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, default=_json_default
        )

    def serialize(self, obj: Any) -> bytes | None:
        if obj is None:
            return None
        try:
            return self._encoder.encode(obj).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"cannot encode {obj!r} as JSON: {exc}") from exc

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SerializationError(f"not valid JSON: {data[:80]!r} ({exc})") from exc


class StringSerde(Serde):
    """UTF-8 text, like Kafka's ``StringSerializer``: a key partitions where Java's does."""

    name = "string"

    def serialize(self, obj: Any) -> bytes | None:
        return None if obj is None else str(obj).encode()

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise SerializationError(f"not valid UTF-8: {data[:80]!r}") from exc

    def deserialize_many(self, items: Any) -> list[Any]:
        try:
            return [None if x is None else x.decode() for x in items]
        except UnicodeDecodeError:
            return [self.deserialize(x) for x in items]  # raises for the bad one


class BytesSerde(Serde):
    """Raw bytes, unchanged (Kafka's ``ByteArraySerializer``)."""

    name = "bytes"

    def serialize(self, obj: Any) -> bytes | None:
        if obj is None or isinstance(obj, bytes):
            return obj
        if isinstance(obj, bytearray | memoryview):
            return bytes(obj)
        raise SerializationError(f"the bytes serde needs bytes, got {type(obj).__name__}")

    def deserialize(self, data: bytes | None) -> Any:
        return data
