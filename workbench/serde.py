"""Serializers for keys and values: ``json`` (default), ``string`` and ``bytes``.

Drivers that store bytes (Kafka) use these to encode records; every driver uses the key serde to
choose partitions, so partitioning is the same everywhere.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
from typing import Any, Protocol

from .errors import DefinitionError, SerializationError, did_you_mean

__all__ = ["BytesSerde", "JsonSerde", "Serde", "StringSerde", "get_serde"]


class Serde(Protocol):
    """Turns Python objects into bytes and back. ``None`` always maps to ``None`` (tombstones)."""

    name: str

    def serialize(self, obj: Any) -> bytes | None: ...

    def deserialize(self, data: bytes | None) -> Any: ...


def _json_default(obj: Any) -> Any:
    if isinstance(obj, _dt.datetime | _dt.date):
        return obj.isoformat()
    if isinstance(obj, decimal.Decimal):
        return float(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    from .keys import KeyId, encode_key

    if obj.__class__ is KeyId:  # a state key inside a changelog record
        return encode_key(obj.key)
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return item()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


class JsonSerde:
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


class StringSerde:
    """UTF-8 text, like Kafka's ``StringSerializer``."""

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


class BytesSerde:
    """Raw bytes, unchanged."""

    name = "bytes"

    def serialize(self, obj: Any) -> bytes | None:
        if obj is None or isinstance(obj, bytes):
            return obj
        raise SerializationError(f"the bytes serde needs bytes, got {type(obj).__name__}")

    def deserialize(self, data: bytes | None) -> Any:
        return data


_SERDES: dict[str, type] = {"json": JsonSerde, "string": StringSerde, "bytes": BytesSerde}


def get_serde(spec: str | Serde) -> Serde:
    """Resolve a serde name (``"json"``, ``"string"``, ``"bytes"``) or pass a serde through."""
    if isinstance(spec, str):
        cls = _SERDES.get(spec)
        if cls is None:
            raise DefinitionError(f"unknown serde {spec!r}." + did_you_mean(spec, _SERDES))
        serde: Serde = cls()
        return serde
    if callable(getattr(spec, "serialize", None)) and callable(getattr(spec, "deserialize", None)):
        return spec
    raise DefinitionError(f"a serde needs serialize() and deserialize(), got {spec!r}.")
