"""Values to and from the text that PostgreSQL stores: JSON for keys, values and headers, and
COPY's text format.

Keys use workbench's key encoding (:mod:`workbench.keys`: tuples as lists, ``Windowed`` as
``{"windowed": [key, start, end]}``) so that they read back as the same Python values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ...errors import SerializationError
from ...keys import SCALARS, decode_key, encode_key
from ...serde import _json_default
from ..base import ReadRec

__all__ = ["copy_text", "decode_rows", "encode", "headers_from", "headers_json", "log_lines"]

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                            default=_json_default)
encode: Callable[[Any], str] = _encoder.encode
try:  # the C encoder, made once (JSONEncoder.encode makes one per call: ~40% of its time)
    from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]

    if c_make_encoder is not None and c_encode_basestring is not None:
        _c_iterencode = c_make_encoder(None, _json_default, c_encode_basestring, None, ":", ",",
                                       False, False, False)

        def encode(obj: Any) -> str:
            """Compact JSON text of ``obj`` (raises ``ValueError`` for NaN and infinities)."""
            if obj.__class__ is str:
                return c_encode_basestring(obj)  # type: ignore[no-any-return]
            return "".join(_c_iterencode(obj, 0))
except ImportError:  # pragma: no cover - no C accelerator
    pass


def headers_json(headers: Any) -> str:
    """Record headers as JSON: ``[[name, hex bytes or null]]``."""
    return encode([[k, None if v is None else v.hex()] for k, v in headers])


def headers_from(data: Any) -> Any:
    """Inverse of :func:`headers_json` (after ``json.loads``)."""
    if data is None:
        return None
    return tuple((k, None if v is None else bytes.fromhex(v)) for k, v in data)


def copy_text(s: str) -> str:
    """Escape a JSON text for COPY's text format (JSON text has no raw tabs or newlines)."""
    return s.replace("\\", "\\\\") if "\\" in s else s


def log_lines(topic: str, partition: int, base: int, records: list[Any]) -> str:
    """COPY text lines ``partition, offset, key, value, ts, headers`` of ``records`` (JSON
    texts; ``\\N`` for SQL NULL), numbered from offset ``base``."""
    out: list[str] = []
    append = out.append
    enc = encode
    scalars = SCALARS
    off = base
    for r in records:
        k, v, h = r[0], r[1], r[4]
        try:
            ks = "\\N" if k is None else copy_text(
                enc(k if k.__class__ in scalars else encode_key(k)))
            vs = "\\N" if v is None else copy_text(enc(v))
            hs = "\\N" if not h else copy_text(headers_json(h))
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(
                f"cannot write a record to topic {topic!r} partition {partition} (offset "
                f"{off}) as JSON: {exc} (key {k!r}, value {v!r:.200}). Nothing of this "
                "commit was written."
            ) from exc
        append(f"{partition}\t{off}\t{ks}\t{vs}\t{int(r[2])}\t{hs}\n")
        off += 1
    return "".join(out)


def decode_rows(rows: list[Any]) -> list[ReadRec]:
    """Records of log rows ``(key text, value text, ts, offset, headers text)``."""
    # one json.loads per batch instead of one per value
    keys = json.loads("[" + ",".join([r[0] or "null" for r in rows]) + "]")
    values = json.loads("[" + ",".join([r[1] or "null" for r in rows]) + "]")
    out: list[ReadRec] = []
    append = out.append
    scalars = SCALARS
    for (_k, _v, ts, off, hs), k, v in zip(rows, keys, values):
        if k.__class__ not in scalars:
            k = decode_key(k)
        append((k, v, ts, off, None if hs is None else headers_from(json.loads(hs))))
    return out


def decode_json(text: str) -> Any:
    """A JSON text read back from the database."""
    return json.loads(text)
