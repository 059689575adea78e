"""Columns to and from PostgreSQL in bulk: the COPY text of a whole batch, and a column batch
(``runtime.batch.Batch``) from one aggregated read.

Writing: keys, values, timestamps and headers arrive as columns (a batch's, or a row list's
unzipped); values are encoded one C call each with ``orjson`` when it is installed (the
``postgres`` extra installs it), and the lines are assembled with one f-string per record
and two whole-text replaces (COPY's backslash escape and SQL NULL). The rules of
:mod:`.codec` hold exactly: a value whose fast text has ``null`` in it (orjson writes a
non-finite float as ``null``) is encoded again by the exact path, which tags NaN and
infinities; a slice holding a reserved ``$float``/``$literal`` dict goes through the exact
path whole; anything the fast path cannot encode (a type orjson does not know, an integer
wider than 64 bits, a dict with non-string keys) goes through the exact path, whose error
names the topic, partition and offset.

Reading: one statement per batch returns the batch's records as one text, the body of a flat
JSON array (``string_agg`` in offset order), parsed with one ``orjson.loads`` and cut into
columns by slicing: no Python work per row but building the key objects that are not plain
scalars.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np

from ...keys import SCALARS, decode_key
from ...serde.bulk_json import OPTS, bulk_json_texts, punt
from ..base import ORIGIN_HEADER
from .codec import _fast, _marked, _untag, headers_from, headers_json, key_text, log_lines

__all__ = ["READ_COLUMNS", "batch_from_texts", "copy_batch", "copy_tails", "json_array",
           "lines_at", "struct_texts", "window_change_tails"]

try:  # the postgres extra installs it; without it the standard library does the same, slower
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is part of the postgres extra
    _orjson = None  # type: ignore[assignment]

#: what a read selects: the row count, and the rows as the body of one flat JSON array, five
#: items per record in offset order: key, value, timestamp, offset, headers (SQL NULL as
#: ``null``: the driver never writes a JSON ``null``). One ordered aggregate costs the server
#: about what sending the rows would; several (one per column) cost twice that.
READ_COLUMNS = (
    "count(*), string_agg(concat_ws(',', coalesce(key::text, 'null'), "
    "coalesce(value::text, 'null'), ts, \"offset\", coalesce(headers::text, 'null')), ',' "
    "ORDER BY \"offset\")"
)

_SCALAR_SET = set(SCALARS)
_PLAIN = {int, str}
_PLAIN_OR_LIST = {int, str, list}
_NULL = "\x00"  # SQL NULL while a COPY text is assembled (JSON text never holds a raw NUL)


if _orjson is not None:
    _odumps = _orjson.dumps
    _oloads = _orjson.loads

    def _value_texts(values: list[Any]) -> list[str]:
        """JSON texts of non-``None`` values and ``_NULL`` for ``None``, by the fast path;
        ``TypeError``/``ValueError`` when one of them needs the exact path's judgement."""
        if not values:
            return []
        texts = bulk_json_texts(values)  # one C call; None: a null, or one needs judgement
        if texts is not None:
            return texts
        out: list[str] = []
        append = out.append
        for v in values:
            if v is None:
                append(_NULL)
                continue
            b = _odumps(v, punt, OPTS)
            # ``null`` in the text: a None field, or a non-finite float orjson wrote as null
            append(b.decode() if b"null" not in b else _fast(v))
        return out

    def _str_keys(keys: list[Any]) -> list[str]:
        return bulk_json_texts(keys) or list(map(_fast, keys))

    def json_array(body: str) -> list[Any]:
        """Parse ``[body]`` (a comma-joined list of JSON texts)."""
        try:
            return _oloads(f"[{body}]")  # type: ignore[no-any-return]
        except _orjson.JSONDecodeError:  # an integer wider than 64 bits, deep nesting...
            return json.loads(f"[{body}]")  # type: ignore[no-any-return]
else:  # pragma: no cover - orjson is part of the postgres extra
    def _value_texts(values: list[Any]) -> list[str]:
        return [_NULL if v is None else _fast(v) for v in values]

    def _str_keys(keys: list[Any]) -> list[str]:
        return list(map(_fast, keys))

    def json_array(body: str) -> list[Any]:
        """Parse ``[body]`` (a comma-joined list of JSON texts)."""
        return json.loads(f"[{body}]")  # type: ignore[no-any-return]


def _key_texts(keys: Any) -> list[str]:
    """JSON texts of keys in the key encoding (``_NULL`` for ``None``): a list of key objects,
    or windowed keys as columns (``WindowedKeys``). ``ValueError`` for a non-finite float
    (the exact path tags it)."""
    if not isinstance(keys, list):  # WindowedKeys: inner keys, starts and ends
        inner = keys.inner.tolist()
        if None in inner or not set(map(type, inner)) <= _PLAIN:
            return [key_text(k) for k in keys.objects().tolist()]
        return [f'{{"windowed":[{k},{s},{e}]}}' for k, s, e in zip(
            _key_texts(inner), keys.start.tolist(), keys.end.tolist())]
    kinds = set(map(type, keys))
    if kinds == {int}:
        return list(map(str, keys))
    if kinds == {str}:
        return _str_keys(keys)
    if kinds <= _PLAIN_OR_LIST and set(map(type, chain.from_iterable(
            k for k in keys if k.__class__ is list))) <= _PLAIN:
        # changelog keys such as [key, window start] (and a store's metadata key): lists are
        # JSON-shaped already (encode_key keeps them); only ints and strs inside, whose text
        # is the same on every path
        return _str_keys(keys)
    out: list[str] = []
    append = out.append
    for k in keys:
        cls = k.__class__
        if k is None:
            append(_NULL)
        elif cls is int:
            append(str(k))
        elif cls is str:
            append(_fast(k))
        else:
            append(key_text(k))  # ValueError for a non-finite float: the exact path tags it
    return out


def struct_texts(values: Any) -> list[str] | None:
    """JSON texts of dict values held as columns (``runtime.batch.StructValues``, such as the
    results of built-in aggregations) without building the dicts: each field's column as texts
    (ints and bools as JSON writes them, floats by ``repr``, which is what ``json.dumps``
    writes), then one ``%`` format per record. ``None`` unless every column is int, bool or
    finite float, every value is present and every field name is a plain ASCII identifier
    (its JSON text is then just quoted): the general encoders take the rest."""
    cols = getattr(values, "cols", None)
    if not cols or values.present is not None:
        return None
    fields = []
    texts = []
    for name, col in cols.items():
        if not (name.__class__ is str and name.isascii() and name.isidentifier()) or \
                not isinstance(col, np.ndarray):  # Arrow strings (runtime.strings) and others
            return None
        col_texts = _number_texts(col, bools=True)
        if col_texts is None:
            return None
        texts.append(col_texts)
        fields.append(f'"{name}":%s')
    template = "{" + ",".join(fields) + "}"
    return [template % row for row in zip(*texts)]


def _number_texts(col: np.ndarray, *, bools: bool = False) -> list[str] | None:
    """The JSON texts of a NumPy column of ints or finite floats (``repr``, as ``json.dumps``
    writes them), and of bools when ``bools``; ``None`` for any other column."""
    kind = col.dtype.kind
    if kind in "iu":
        return list(map(str, col.tolist()))
    if kind == "f":
        return list(map(float.__repr__, col.tolist())) if np.isfinite(col).all() else None
    if kind == "b" and bools:
        return ["true" if b else "false" for b in col.tolist()]
    return None


def _acc_texts(parts: list[Any], accs: Any) -> list[str] | None:
    """JSON texts of the accumulator objects of ``count()`` or of an ``agg`` of counts and
    sums (``runtime.fold.to_python``'s dicts) from their columns; ``None`` for anything else
    (the records' path takes it)."""
    cols = []
    for (name, _col, func), vals in zip(parts, accs.vals):
        if func not in ("count", "sum") or not (
                name is None or (name.__class__ is str and name.isascii()
                                 and name.isidentifier())):
            return None
        texts = _number_texts(vals)
        if texts is None:
            return None
        cols.append(texts)
    if parts[0][0] is None:  # count(): the accumulator is the count
        return cols[0]
    template = "{" + ",".join(f'"{name}":%s' for name, _c, _f in parts) + "}"
    return [template % row for row in zip(*cols)]


def _plain_key_texts(keys: list[Any]) -> list[str] | None:
    """COPY fields of the JSON texts of ``int``/``str`` keys; ``None`` for other keys."""
    kinds = set(map(type, keys))
    if not kinds <= _PLAIN:
        return None
    texts = list(map(str, keys)) if kinds == {int} else _key_texts(keys)
    return _escaped(texts) if "\\" in "".join(texts) else texts


def window_change_tails(changes: Any) -> list[str] | None:
    """:func:`copy_tails` of a window store's changelog records given as columns
    (``runtime.window_changes.WindowChanges``): the text :func:`copy_batch` writes for
    :meth:`~WindowChanges.rows`, without building them. ``None`` when the keys are not all
    ``int``/``str`` or the accumulators are not counts and sums (the rows' path takes those)."""
    ts = changes.ts
    removed = changes.removed
    gone = _plain_key_texts([k for k, _s in removed]) if removed else []
    keys = _plain_key_texts(changes.keys.tolist()) if len(changes.keys) else []
    accs = _acc_texts(changes.parts, changes.accs) if len(changes.keys) else []
    if gone is None or keys is None or accs is None or not (
            changes.meta is None or changes.meta.__class__ is int):
        return None
    tails = [f"[{k},{s}]\t\\N\t{ts}\t\\N" for k, (_k, s) in zip(gone, removed)]
    tails += [f"[{k},{s}]\t[{a},{t}]\t{ts}\t\\N" for k, s, a, t in zip(
        keys, changes.starts.tolist(), accs, changes.times.tolist())]
    if changes.meta is not None:
        from ...runtime.window_store import META_KEY

        tails.append(f"{_fast(META_KEY)}\t{changes.meta}\t{ts}\t\\N")
    return tails


def _fields(texts: list[str]) -> list[str]:
    """JSON texts (``_NULL`` for SQL NULL) as COPY text fields."""
    joined = "".join(texts)
    return _escaped(texts) if "\\" in joined or _NULL in joined else texts


def _escaped(texts: list[str]) -> list[str]:
    return ["\\N" if t == _NULL else (t.replace("\\", "\\\\") if "\\" in t else t)
            for t in texts]


def lines_at(partition: int, base: int, tails: list[str]) -> str:
    """COPY text of records whose fields after ``partition, offset`` are ``tails``
    (:func:`copy_tails`), numbered from offset ``base``."""
    return "".join([f"{partition}\t{o}\t{r}\n"
                    for o, r in zip(range(base, base + len(tails)), tails)])


def copy_tails(keys: Any, values: list[Any] | None, ts: list[int],
               headers: list[Any] | None, kept: list[str] | None = None,
               value_texts: list[str] | None = None) -> list[str] | None:
    """The COPY text fields ``key, value, ts, headers`` of each record given as columns
    (``keys``: a list, or windowed keys as columns), tab-separated, without ``partition,
    offset`` (:func:`lines_at` adds them once the offsets are reserved). ``kept``: a list to
    which each value field is appended as written (table sinks stage the same text);
    ``value_texts``: the values' JSON texts already (:func:`struct_texts`; ``values`` may then
    be ``None``). ``None`` when a record needs the exact path (:func:`copy_batch` then takes
    it)."""
    try:
        ks = _key_texts(keys)
        vs = value_texts if value_texts is not None else _value_texts(values)  # type: ignore[arg-type]
        hs = None
        if headers is not None and any(headers):
            hs = [_header_text(h) if h else _NULL for h in headers]
    except (TypeError, ValueError, RecursionError):
        return None  # the exact path decides, and names the record it cannot write
    if _marked("".join(ks)) or _marked("".join(vs)) or (hs and _marked("".join(hs))):
        return None
    ks, vs = _fields(ks), _fields(vs)
    if kept is not None:
        kept.extend(vs)
    if hs is None:
        return [f"{k}\t{v}\t{t}\t\\N" for k, v, t in zip(ks, vs, ts)]
    return [f"{k}\t{v}\t{t}\t{h}" for k, v, t, h in zip(ks, vs, ts, _fields(hs))]


def copy_batch(topic: str, partition: int, base: int, keys: Any, values: list[Any] | None,
               ts: list[int], headers: list[Any] | None,
               kept: list[str] | None = None, value_texts: list[str] | None = None) -> str:
    """COPY text lines ``partition, offset, key, value, ts, headers`` of the records given as
    columns, numbered from offset ``base`` (see :func:`copy_tails` for the arguments). The
    exact rules and errors of :func:`.codec.log_lines`, faster."""
    tails = copy_tails(keys, values, ts, headers, kept, value_texts)
    if tails is not None:
        return lines_at(partition, base, tails)
    hl = headers if headers is not None else [None] * len(ts)
    objs = keys if isinstance(keys, list) else keys.objects().tolist()
    if values is None:
        values = [json.loads(t) for t in value_texts or ()]
    rows = list(zip(objs, values, ts, ts, hl))
    return log_lines(topic, partition, base, rows, kept)


_ORIGIN_TEXT = '[["' + ORIGIN_HEADER + '","'


def _header_text(h: Any) -> str:
    """:func:`headers_json` of ``h``; a lone origin header (a record of a repartition topic,
    ``runtime.origins``) without the general encoder: the same JSON text, faster."""
    if len(h) == 1:
        name, value = h[0]
        if name == ORIGIN_HEADER and value.__class__ is bytes:
            return f'{_ORIGIN_TEXT}{value.hex()}"]]'
    return headers_json(h)


def _keys(keys: list[Any]) -> list[Any]:
    if set(map(type, keys)) <= _SCALAR_SET:
        return keys
    return [k if k.__class__ in SCALARS else decode_key(k) for k in keys]


def batch_from_texts(row: tuple[Any, ...], make: Callable[..., Any]) -> Any:
    """A column batch from one row of :data:`READ_COLUMNS` (``make`` is ``Batch``); ``seq``
    holds the offsets."""
    count, body = row
    flat = json_array(body)
    if _marked(body):
        flat = _untag(flat)
    keys = flat[0::5]
    ts = np.array(flat[2::5], dtype=np.int64)
    seq = np.array(flat[3::5], dtype=np.int64)
    hs = flat[4::5]
    headers = None
    if hs.count(None) != len(hs):
        headers = np.fromiter(map(headers_from, hs), dtype=object, count=count)
    from ...runtime.batch import ObjectValues, obj_array

    return make(obj_array(_keys(keys), count), ObjectValues(obj_array(flat[1::5], count)), ts,
                seq, headers)
