"""Records ↔ JSON lines: the contents of a segment file.

A record is one line ``{"key": K, "value": V, "timestamp": T}`` (JSON serde), with ``"window":
[start, end]`` when the key is a :class:`~workbench.windows.Windowed` (``K`` is then its group
key), ``"old": O`` when the value is a table :class:`~workbench.types.Change` (``V`` is its new
value) and ``"headers": [[name, value], ...]`` when there are headers. Keys that are JSON
arrays come back as tuples (a list is never a key).

Header values come back as the type they were written with: bytes are stored as UTF-8 text
(``"abc"``) or ``{"base64": ...}``, ``str`` as ``{"str": ...}``, and ``int``, ``float``,
``bool`` and ``None`` as JSON scalars. Floats, in values as in headers, include NaN and
±Infinity (Python json's ``NaN``/``Infinity``/``-Infinity`` tokens), stored unchanged.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from typing import Any

from ...serde import _json_default
from ...types import Change
from ...windows import Windowed
from ..base import OutRec, ReadRec

__all__ = ["HeaderError", "decode_lines", "encode_records", "iter_encoded"]

# records are acyclic: no circular-reference bookkeeping (a cycle ends in RecursionError)
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False,
                            default=_json_default)
_enc = _encoder.encode
_loads = json.loads

#: records encoded per call of the C encoder (bounds the memory of a large append)
_ENCODE_CHUNK = 16_384
_SEP = '},{"key":'
_SEP_NL = '}\n{"key":'


def _tuplify(value: Any) -> Any:
    if type(value) is list:
        return tuple(_tuplify(v) for v in value)
    return value


class HeaderError(TypeError):
    """A header value the segment format cannot keep (names the header)."""


def _encode_headers(headers: Any) -> list[Any]:
    out: list[Any] = []
    for name, value in headers:
        kind = type(value)
        if value is None or kind is int or kind is float or kind is bool:
            out.append([name, value])  # JSON keeps these types
        elif kind is str:
            out.append([name, {"str": value}])
        elif isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            try:
                out.append([name, raw.decode()])
            except UnicodeDecodeError:
                out.append([name, {"base64": base64.b64encode(raw).decode()}])
        else:
            raise HeaderError(f"header {name!r} has a value of type {kind.__name__} "
                              f"({value!r:.60}); header values are bytes, str, int, float, "
                              "bool or None")
    return out


def _decode_headers(raw: Any) -> tuple[tuple[str, Any], ...]:
    out: list[tuple[str, Any]] = []
    for name, value in raw:
        if type(value) is str:
            out.append((name, value.encode()))
        elif type(value) is dict:
            text = value.get("str")
            out.append((name, text if text is not None else base64.b64decode(value["base64"])))
        else:
            out.append((name, value))
    return tuple(out)


def _record_obj(k: Any, v: Any, t: Any, h: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    if type(k) is Windowed:
        obj["key"] = k.key
        obj["window"] = [k.window_start, k.window_end]
    else:
        obj["key"] = k
    if type(v) is Change:
        obj["value"] = v.new
        obj["old"] = v.old
    else:
        obj["value"] = v
    obj["timestamp"] = t
    if h is not None:
        obj["headers"] = _encode_headers(h)
    return obj


def encode_records(records: Iterable[OutRec]) -> tuple[bytes, int]:
    """Records ``(key, value, timestamp, _, headers)`` → JSON lines (bytes) and their count.

    The whole batch is encoded by one call of the C encoder as a JSON array of record
    objects, which is then cut into lines at the ``},{"key":`` between records; where a value
    holds that text too (the count tells), records are encoded one by one instead.
    """
    batch = records if isinstance(records, list) else list(records)
    n = len(batch)
    if not n:
        return b"", 0
    if n <= _ENCODE_CHUNK:
        return _encode_chunk(batch), n
    return b"".join(data for data, _n in iter_encoded(batch)), n


def iter_encoded(batch: list[OutRec]) -> Iterator[tuple[bytes, int]]:
    """:func:`encode_records` chunk by chunk (bounded memory for large appends)."""
    for i in range(0, len(batch), _ENCODE_CHUNK):
        chunk = batch[i:i + _ENCODE_CHUNK]
        yield _encode_chunk(chunk), len(chunk)


def _encode_chunk(batch: list[OutRec]) -> bytes:
    objs = [{"key": k, "value": v, "timestamp": t}
            if h is None and type(v) is not Change and type(k) is not Windowed
            else _record_obj(k, v, t, h)
            for k, v, t, _s, h in batch]
    text = _enc(objs)
    if text.count(_SEP) == len(objs) - 1:
        body = text[1:-1].replace(_SEP, _SEP_NL)
    else:
        body = "\n".join(map(_enc, objs))
    return (body + "\n").encode()


def _decode_one(o: Any, offset: int) -> ReadRec:
    if type(o) is not dict or "key" not in o or "value" not in o or "timestamp" not in o:
        raise ValueError("not a record object with key, value and timestamp")
    k = o["key"]
    if type(k) is list:
        k = _tuplify(k)
    w = o.get("window")
    if w is not None:
        k = Windowed(k, w[0], w[1])
    v = o["value"]
    if "old" in o:
        v = Change(v, o["old"])
    t = o["timestamp"]
    if type(t) is not int:
        raise ValueError(f"timestamp {t!r} is not an integer")
    h = o.get("headers")
    return (k, v, t, offset, None if h is None else _decode_headers(h))


def decode_lines(lines: list[bytes], first_offset: int) -> list[ReadRec]:
    """JSON lines → records ``(key, value, timestamp, offset, headers)``. Raises ``ValueError``
    (with ``.line`` = index of the bad line) on a malformed line."""
    try:
        objs = _loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        objs = None
    if objs is None or len(objs) != len(lines):
        for i, line in enumerate(lines):
            try:
                _loads(line)
            except ValueError as exc:
                err = ValueError(f"not valid JSON ({exc})")
                err.line = i  # type: ignore[attr-defined]
                raise err from None
        err = ValueError("more than one JSON value on a line")
        err.line = 0  # type: ignore[attr-defined]
        raise err
    if all(type(o) is dict and len(o) == 3 for o in objs):
        try:
            return [((k if type(k := o["key"]) is not list else _tuplify(k)), o["value"],
                     o["timestamp"], off, None)
                    for off, o in enumerate(objs, first_offset)]
        except KeyError:
            pass
    out: list[ReadRec] = []
    append = out.append
    for i, o in enumerate(objs):
        try:
            append(_decode_one(o, first_offset + i))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            err = ValueError(str(exc))
            err.line = i  # type: ignore[attr-defined]
            raise err from None
    return out
