"""Values to and from the text that PostgreSQL stores: JSON for keys, values and headers, and
COPY's text format.

Keys use workbench's key encoding (:mod:`workbench.keys`: tuples as lists, ``Windowed`` as
``{"windowed": [key, start, end]}``) so that they read back as the same Python values.

**NaN and infinities.** ``json`` and ``jsonb`` columns cannot hold them, so a non-finite float
is stored as the object ``{"$float": "NaN"}`` (``"Infinity"``, ``"-Infinity"``) and read back as
the float. To keep this exact, a dict whose only key is ``"$float"`` or ``"$literal"`` is
stored wrapped as ``{"$literal": {...}}``. Every other value is plain JSON, so it stays
queryable (``value->>'total'``). Values without either case cost one substring search per
COPY slice or read batch (the slow path only runs when a marker or a non-finite float is there).

>>> dumps({"x": float("nan"), "y": [1.5, float("-inf")]})
'{"x":{"$float":"NaN"},"y":[1.5,{"$float":"-Infinity"}]}'
>>> loads(dumps({"$float": "NaN"}))
{'$float': 'NaN'}

**Headers** are ``[[name, value]]``: bytes as a hex string, ``str`` as ``{"str": text}``, ints,
bools and floats as JSON numbers, ``None`` as null; each reads back as the type it was written.
"""

from __future__ import annotations

import enum as _enum
import json
import math
import uuid as _uuid
from collections.abc import Callable
from typing import Any

from ...errors import SerializationError
from ...keys import SCALARS, encode_key
from ...serde import _json_default
from ...windows import Windowed

__all__ = ["copy_text", "dumps", "encode_header_list", "headers_from",
           "headers_json", "key_text", "loads", "log_lines"]

_FLOAT, _LITERAL = "$float", "$literal"
_RESERVED = (_FLOAT, _LITERAL)
#: substrings whose presence in a JSON text sends it through the slow path
_MARKERS = ('"$float":', '"$literal":')
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _name_of(x: float) -> str:
    return "NaN" if x != x else ("Infinity" if x > 0 else "-Infinity")


def _tag(obj: Any) -> Any:
    """``obj`` with non-finite floats tagged and reserved dicts wrapped (the slow path)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {_FLOAT: _name_of(obj)}
    if isinstance(obj, dict):
        inner = {k: _tag(v) for k, v in obj.items()}
        if len(obj) == 1 and next(iter(obj)) in _RESERVED:
            return {_LITERAL: inner}
        return inner
    if isinstance(obj, list | tuple):
        return [_tag(x) for x in obj]
    if obj is None or isinstance(obj, str | int):
        return obj
    return _tag(_default(obj))  # numpy scalars, sets, dates... then tag what they became


def _untag(obj: Any) -> Any:
    """Inverse of :func:`_tag` on parsed JSON."""
    if isinstance(obj, dict):
        if len(obj) == 1:
            (k, v), = obj.items()
            if k == _FLOAT and isinstance(v, str) and v in _NON_FINITE:
                return _NON_FINITE[v]
            if k == _LITERAL and isinstance(v, dict):
                return {kk: _untag(vv) for kk, vv in v.items()}
        return {k: _untag(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_untag(x) for x in obj]
    return obj


def _default(obj: Any) -> Any:
    """What JSON cannot hold as it is: enum members as their value and UUIDs as their text
    (as orjson, the fast path of :mod:`.columns`, writes them), then the serdes' rules (dates,
    decimals, sets, NumPy scalars)."""
    if isinstance(obj, _enum.Enum):
        return obj.value
    if isinstance(obj, _uuid.UUID):
        return str(obj)
    return _json_default(obj)


_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                            default=_default)
_fast: Callable[[Any], str] = _encoder.encode
try:  # the C encoder, made once (JSONEncoder.encode makes one per call: ~40% of its time)
    from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]

    if c_make_encoder is not None and c_encode_basestring is not None:
        _c_iterencode = c_make_encoder(None, _default, c_encode_basestring, None, ":", ",",
                                       False, False, False)

        def _fast(obj: Any) -> str:
            if obj.__class__ is str:
                return c_encode_basestring(obj)  # type: ignore[no-any-return]
            return "".join(_c_iterencode(obj, 0))
except ImportError:  # pragma: no cover - no C accelerator
    pass


def key_text(k: Any) -> str:
    """JSON text of a (non-``None``) key in the key encoding (:mod:`workbench.keys`), with fast
    paths for ``str``, ``int`` and windowed ``str``/``int`` keys; ``ValueError`` for a
    non-finite float (the caller then uses :func:`dumps`)."""
    cls = k.__class__
    if cls is str or cls is int:
        return _fast(k)
    if cls is Windowed:
        inner, start, end = k
        ic = inner.__class__
        if (ic is str or ic is int) and start.__class__ is int and end.__class__ is int:
            return f'{{"windowed":[{_fast(inner)},{start},{end}]}}'
    return _fast(k if cls in SCALARS else encode_key(k))


def _slow(obj: Any) -> str:
    return _fast(_tag(obj))


def _marked(text: str) -> bool:
    # "$" first: one memchr over text without it (most), instead of two substring searches
    return "$" in text and (_MARKERS[0] in text or _MARKERS[1] in text)


def dumps(obj: Any) -> str:
    """Compact JSON text of ``obj`` under the NaN rule of this module's docstring. Raises
    ``TypeError``/``ValueError``/``RecursionError`` for what JSON cannot hold."""
    try:
        text = _fast(obj)
    except ValueError:  # a non-finite float
        return _slow(obj)
    return _slow(obj) if _marked(text) else text


def loads(text: str) -> Any:
    """Inverse of :func:`dumps`."""
    obj = json.loads(text)
    return _untag(obj) if _marked(text) else obj


# -- headers -----------------------------------------------------------------------------------
def _header_value(value: Any) -> Any:
    if value is None or value.__class__ in (int, bool, float):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, str):
        return {"str": value}
    if isinstance(value, int):  # int subclasses (numpy ints come through .item())
        return int(value)
    raise TypeError(f"header value {value!r} is {type(value).__name__}; use bytes, str, int, "
                    "float or None")


def encode_header_list(headers: Any) -> list[list[Any]]:
    """Headers as the JSON-able list ``[[name, value]]``."""
    return [[str(k), _header_value(v)] for k, v in headers]


def headers_json(headers: Any) -> str:
    """Record headers as JSON (see the module docstring)."""
    return dumps(encode_header_list(headers))


def headers_from(data: Any) -> Any:
    """Inverse of :func:`headers_json` (after :func:`loads`)."""
    if data is None:
        return None
    out = []
    for k, v in data:
        if isinstance(v, str):
            v = bytes.fromhex(v)
        elif isinstance(v, dict):
            v = v["str"]
        out.append((k, v))
    return tuple(out)


# -- COPY --------------------------------------------------------------------------------------
def copy_text(s: str) -> str:
    """Escape a JSON text for COPY's text format (JSON text has no raw tabs or newlines)."""
    return s.replace("\\", "\\\\") if "\\" in s else s


def _fields(r: Any, enc: Callable[[Any], str]) -> tuple[str, str, str]:
    k, v, h = r[0], r[1], r[4]
    ks = "\\N" if k is None else copy_text(enc(k if k.__class__ in SCALARS else encode_key(k)))
    vs = "\\N" if v is None else copy_text(enc(v))
    hs = "\\N" if not h else copy_text(headers_json(h))
    return ks, vs, hs


def log_lines(topic: str, partition: int, base: int, records: list[Any],
              values: list[str] | None = None) -> str:
    """COPY text lines ``partition, offset, key, value, ts, headers`` of ``records`` (JSON
    texts; ``\\N`` for SQL NULL), numbered from offset ``base``. ``values``: a list to which
    each record's value field is appended as written (table sinks stage the same text)."""
    out: list[str] = []
    vals: list[str] = []
    append, keep = out.append, vals.append
    fast = _fast
    off = base
    for r in records:
        try:
            k, v, h = r[0], r[1], r[4]
            try:
                ks = "\\N" if k is None else copy_text(key_text(k))
                vs = "\\N" if v is None else copy_text(fast(v))
                hs = "\\N" if not h else copy_text(headers_json(h))
            except ValueError:  # a non-finite float: tag it
                ks, vs, hs = _fields(r, dumps)
            append(f"{partition}\t{off}\t{ks}\t{vs}\t{int(r[2])}\t{hs}\n")
            keep(vs)
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(
                f"cannot write a record to topic {topic!r} partition {partition} (offset "
                f"{off}) as JSON: {exc} (key {r[0]!r}, value {r[1]!r:.200}). Nothing of this "
                "commit was written."
            ) from exc
        off += 1
    text = "".join(out)
    if _marked(text):
        # a reserved key somewhere in the slice: encode it again record by record, with the rule
        out.clear()
        vals.clear()
        for i, r in enumerate(records):
            ks, vs, hs = _fields(r, dumps)
            append(f"{partition}\t{base + i}\t{ks}\t{vs}\t{int(r[2])}\t{hs}\n")
            keep(vs)
        text = "".join(out)
    if values is not None:
        values.extend(vals)
    return text
