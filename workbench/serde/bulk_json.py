"""Compact JSON of many values in one ``orjson.dumps`` call, for the drivers' bulk encoders
(Kafka's JSON values, PostgreSQL's COPY text).

The values are dumped as one list ``[v1, SEP, v2, SEP, ...]`` whose separator is a raw
``\\x01`` (an ``orjson.Fragment``: JSON text never holds a raw control character), and the text
is split at the separators. The bulk path answers ``None`` (the caller then encodes value by
value, by its exact rules) when orjson is not installed, when a value holds a type orjson
leaves to the standard library's rules (datetimes, dataclasses, subclasses: passed through to
:func:`punt`, which refuses them), an integer wider than 64 bits or a non-string dict key, or
when a ``null`` shows anywhere (a ``None``, or a non-finite float, which orjson writes as
``null``). Floats may be spelt differently from ``json.dumps`` (``1e16`` for ``1e+16``): the
same value.
"""

from __future__ import annotations

from typing import Any

try:  # the kafka and postgres extras install it
    import orjson as _orjson
except ImportError:  # pragma: no cover - without it every caller encodes value by value
    _orjson = None  # type: ignore[assignment]

__all__ = ["OPTS", "bulk_json", "bulk_json_texts", "punt"]


def punt(obj: Any) -> Any:
    """orjson's ``default``: refuse what orjson passes through (the caller's exact path
    decides it)."""
    raise TypeError("not for the bulk path")


#: orjson options: datetimes, dataclasses and subclasses go to :func:`punt`
OPTS = 0
if _orjson is not None:
    OPTS = (_orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_DATACLASS
            | _orjson.OPT_PASSTHROUGH_SUBCLASS)
    #: between two values of a bulk encoding
    _SEP = _orjson.Fragment(b"\x01")


def _blob(values: list[Any]) -> bytes | None:
    """``v1,\\x01,v2,...,vN`` (the values' JSON texts and separators), or ``None``."""
    if _orjson is None or not values:
        return None
    flat = [_SEP] * (2 * len(values))
    flat[0::2] = values
    try:
        blob = _orjson.dumps(flat, punt, OPTS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return None
    if b"null" in blob:
        return None
    return blob[1:-3]


def bulk_json(values: list[Any]) -> list[bytes] | None:
    """The compact JSON of every value (UTF-8), or ``None`` (see the module docstring)."""
    blob = _blob(values)
    if blob is None:
        return None
    out = blob.split(b",\x01,")
    return out if len(out) == len(values) else None


def bulk_json_texts(values: list[Any]) -> list[str] | None:
    """:func:`bulk_json` as ``str`` (the text decoded once, then split)."""
    blob = _blob(values)
    if blob is None:
        return None
    out = blob.decode().split(",\x01,")
    return out if len(out) == len(values) else None
