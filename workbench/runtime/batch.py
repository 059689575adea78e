"""Column batches: what flows between the engine's operators, and what logs store.

A :class:`Batch` holds ``n`` records as columns:

* ``keys`` — a 1-D NumPy array (``object`` for arbitrary keys, ``int64`` when every key is an
  int), or :class:`WindowedKeys` (inner keys, window starts and ends as three columns);
* ``ts`` — event timestamps, ``int64`` epoch ms;
* ``seq`` — the order of records within a task (the input offset, or the position in the
  task's interleaved input; records derived from an input keep its ``seq``);
* ``headers`` — ``None`` (no record has headers) or an ``object`` array of header tuples;
* ``values`` — one of three layouts: :class:`ObjectValues` (any Python values, one per row),
  :class:`StructValues` (dict-shaped values as named columns, with a presence mask for
  ``None`` values) or :class:`ChangeValues` (table updates: a new and an old layout).

Layouts convert lazily: a lambda step asks for Python objects (``values.objects()``), an
expression step for columns (``values.field(name)``); a batch built from a DataFrame never
makes a dict unless a lambda wants one. ``rows()`` / ``from_rows()`` convert to and from the
record tuples ``(key, value, timestamp, seq, headers)`` that the row operators and the drivers'
row contract use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np

from ..types import Change
from ..windows import Windowed
from .strings import ArrowStrings

__all__ = [
    "Batch",
    "BatchParts",
    "ChangeValues",
    "ObjectValues",
    "StructValues",
    "WindowedKeys",
    "column",
    "concat_columns",
    "obj_array",
    "struct_column",
]

_EMPTY_OBJ = np.empty(0, dtype=object)
_EMPTY_I64 = np.empty(0, dtype=np.int64)
_new_change = tuple.__new__
_new_windowed = tuple.__new__


def obj_array(items: Iterable[Any], count: int = -1) -> np.ndarray:
    """A 1-D ``object`` array of ``items`` (tuples and lists stay single elements)."""
    if isinstance(items, np.ndarray) and items.dtype == object and items.ndim == 1:
        return items
    if isinstance(items, ArrowStrings):
        return items.objects()
    return np.fromiter(items, dtype=object, count=count)


def column(items: Sequence[Any]) -> np.ndarray:
    """A column for a list of Python values: ``int64``, ``float64`` or ``bool`` when every item
    has exactly that type (so ``1`` and ``1.0`` and ``True`` keep their types), else ``object``.
    """
    if len(items) == 0:
        return _EMPTY_OBJ
    return _column_of_types(items, set(map(type, items)))


def _column_of_types(items: Sequence[Any], types: set[type]) -> np.ndarray:
    """:func:`column` of non-empty ``items`` whose value types are ``types``."""
    n = len(items)
    if len(types) == 1:
        kind = next(iter(types))
        try:
            if kind is int:
                return np.fromiter(items, np.int64, n)
            if kind is float:
                return np.fromiter(items, np.float64, n)
            if kind is bool:
                return np.fromiter(items, bool, n)
        except OverflowError:
            pass
    return obj_array(items, n)


def _concat(arrays: Sequence[Any]) -> Any:
    if len(arrays) == 1:
        return arrays[0]
    strings = [a for a in arrays if isinstance(a, ArrowStrings)]
    if strings:
        if len(strings) == len(arrays):
            return ArrowStrings.concat(strings)
        arrays = [a.objects() if isinstance(a, ArrowStrings) else a for a in arrays]
    dtypes = {a.dtype for a in arrays if len(a)}
    if len(dtypes) > 1:
        # keep Python types exact: int and float columns concatenate as objects
        return np.concatenate([a.astype(object) for a in arrays])
    if not dtypes:
        return arrays[0]
    return np.concatenate(arrays)


concat_columns = _concat


def _take(arr: np.ndarray, idx: Any) -> np.ndarray:
    taken: np.ndarray = arr[idx]
    return taken


# ------------------------------------------------------------------------------------- keys
class WindowedKeys:
    """Keys of windowed results as three columns (materialized as ``Windowed`` on demand)."""

    __slots__ = ("end", "inner", "start")

    def __init__(self, inner: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
        self.inner = inner
        self.start = start
        self.end = end

    def __len__(self) -> int:
        return len(self.start)

    def take(self, idx: Any) -> WindowedKeys:
        return WindowedKeys(self.inner[idx], self.start[idx], self.end[idx])

    def objects(self) -> np.ndarray:
        """``Windowed(key, start, end)`` per row."""
        return obj_array((_new_windowed(Windowed, t) for t in zip(
            self.inner.tolist(), self.start.tolist(), self.end.tolist())), len(self.start))

    @staticmethod
    def concat(parts: Sequence[WindowedKeys]) -> WindowedKeys:
        return WindowedKeys(_concat([p.inner for p in parts]),
                            _concat([p.start for p in parts]), _concat([p.end for p in parts]))


def _keys_objects(keys: Any) -> np.ndarray:
    return keys.objects() if isinstance(keys, WindowedKeys) else keys


def _keys_concat(parts: Sequence[Any]) -> Any:
    if all(isinstance(p, WindowedKeys) for p in parts):
        return WindowedKeys.concat(parts)
    return _concat([_keys_objects(p) for p in parts])


# ----------------------------------------------------------------------------------- values
class Values:
    """A values layout (see the module docstring)."""

    __slots__ = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def objects(self) -> np.ndarray:
        """One Python value per row (``object`` array)."""
        raise NotImplementedError

    def take(self, idx: Any) -> Values:
        """The rows at ``idx`` (an index array, a boolean mask or a slice)."""
        raise NotImplementedError

    def field(self, name: str) -> np.ndarray:
        """The column of field ``name`` (raises ``KeyError``/``TypeError`` like ``v[name]``)."""
        raise NotImplementedError

    def fields(self) -> list[str] | None:
        """The field names when every value is a dict with the same fields, else ``None``."""
        return None


class ObjectValues(Values):
    """Arbitrary Python values, one per row."""

    __slots__ = ("arr",)

    def __init__(self, arr: np.ndarray) -> None:
        self.arr = arr

    def __len__(self) -> int:
        return len(self.arr)

    def objects(self) -> np.ndarray:
        arr = self.arr
        return arr if arr.dtype == object else arr.astype(object)

    def take(self, idx: Any) -> ObjectValues:
        return ObjectValues(self.arr[idx])

    def field(self, name: str) -> np.ndarray:
        return column([v[name] for v in self.arr.tolist()])

    def fields(self) -> list[str] | None:
        names: list[str] | None = None
        first: Any = None
        for v in self.arr.tolist():
            if v.__class__ is not dict:
                return None
            if names is None:
                first = v.keys()
                names = list(first)
            elif v.keys() != first:
                return None
        return names

    def to_struct(self, *, arrow_strings: bool = False) -> StructValues | None:
        """The same values as columns, when every value is a dict with the same fields, named by
        exact ``str`` (a ``None`` value is allowed: a missing row), else ``None``. Field order
        is the first value's. With ``arrow_strings``, a field of only exact ``str`` values becomes
        :class:`ArrowStrings` straight from the values (a string Arrow cannot hold, a lone
        surrogate, keeps its field as objects)."""
        vals = self.arr.tolist()
        if not vals:
            return None
        types = set(map(type, vals))
        present: Any = None
        live = vals
        if types != _DICT:
            if types != _DICT_OR_NONE:
                return None
            present = [v is not None for v in vals]
            live = [v for v in vals if v is not None]
        names_t = tuple(live[0])
        if set(map(type, names_t)) - _STR:
            return None  # 1, True and 1.0 are equal keys: only names of exact str compare exactly
        # same fields in the same order (dict order is visible: JSON bytes, frames); a set of
        # the field tuples costs less than comparing each (their hashes are the names')
        if set(map(tuple, live)) != {names_t}:
            return None
        n = len(vals)
        cols: dict[str, Any] = {}
        for f in names_t:
            get = itemgetter(f)
            if present is None:
                items = list(map(get, vals))
            else:
                items = [get(v) if v is not None else None for v in vals]
            cols[f] = struct_column(items, arrow_strings)
        return StructValues(cols, None if present is None else np.array(present, dtype=bool), n)


def struct_column(items: list[Any], arrow_strings: bool,
                  types: set[type] | None = None) -> Any:
    """:func:`column` of one field's values, or Arrow strings when asked and every value is an
    exact ``str`` (a field of :meth:`ObjectValues.to_struct`; the privacy layer builds the
    same columns from sealed fields). ``types``: ``set(map(type, items))`` when the caller
    has it already."""
    if types is None:
        types = set(map(type, items))
    if arrow_strings and types == _STR:
        import pyarrow as pa

        try:
            return ArrowStrings.of(pa.array(items, type=pa.large_string()))
        except (ValueError, UnicodeError, TypeError, pa.ArrowException):
            pass  # a lone surrogate: objects
    return _column_of_types(items, types)


_DICT = {dict}
_STR = {str}
_DICT_OR_NONE = {dict, type(None)}


class StructValues(Values):
    """Dict values as columns; ``present[i]`` is False where the value is ``None``."""

    __slots__ = ("cols", "n", "present")

    def __init__(self, cols: dict[str, np.ndarray], present: np.ndarray | None,
                 n: int | None = None) -> None:
        self.cols = cols
        self.present = present
        if n is None:
            if cols:
                n = len(next(iter(cols.values())))
            elif present is not None:
                n = len(present)
            else:
                n = 0
        self.n = n

    def __len__(self) -> int:
        return self.n

    def objects(self) -> np.ndarray:
        names = list(self.cols)
        n = self.n
        if not names:
            out = obj_array(({} for _ in range(n)), n)
        else:
            lists = [c.tolist() for c in self.cols.values()]
            out = obj_array((dict(zip(names, row)) for row in zip(*lists)), n)
        if self.present is not None:
            out[~self.present] = None
        return out

    def take(self, idx: Any) -> StructValues:
        present = self.present[idx] if self.present is not None else None
        cols = {f: c[idx] for f, c in self.cols.items()}
        n = None
        if not cols and present is None:
            n = len(np.arange(self.n)[idx])
        return StructValues(cols, present, n)

    def field(self, name: str) -> np.ndarray:
        try:
            col = self.cols[name]
        except KeyError:
            raise KeyError(name) from None
        if self.present is not None and not self.present.all():
            raise TypeError("'NoneType' object is not subscriptable")
        return col.objects() if isinstance(col, ArrowStrings) else col

    def fields(self) -> list[str] | None:
        if self.present is not None and not self.present.all():
            return None
        return list(self.cols)

    def with_columns(self, new: dict[str, np.ndarray]) -> StructValues:
        """These values with fields added or replaced (in the order of ``new`` for new ones)."""
        cols = dict(self.cols)
        cols.update(new)
        return StructValues(cols, self.present, self.n)


class ChangeValues(Values):
    """Table updates: ``Change(new, old)`` per row, as two layouts."""

    __slots__ = ("new", "old")

    def __init__(self, new: Values, old: Values) -> None:
        self.new = new
        self.old = old

    def __len__(self) -> int:
        return len(self.new)

    def objects(self) -> np.ndarray:
        n = len(self.new)
        return obj_array((_new_change(Change, t) for t in zip(
            self.new.objects().tolist(), self.old.objects().tolist())), n)

    def take(self, idx: Any) -> ChangeValues:
        return ChangeValues(self.new.take(idx), self.old.take(idx))

    def field(self, name: str) -> np.ndarray:
        raise TypeError("a table update (Change) has no fields; use .new")


def nones(n: int) -> ObjectValues:
    """``n`` ``None`` values."""
    return ObjectValues(np.full(n, None, dtype=object))


def concat_values(parts: Sequence[Values]) -> Values:
    """Concatenate layouts (keeps columns when every part has the same fields)."""
    if len(parts) == 1:
        return parts[0]
    kinds = {type(p) for p in parts}
    if kinds == {StructValues}:
        structs: list[StructValues] = list(parts)  # type: ignore[arg-type]
        names = list(structs[0].cols)
        if all(list(s.cols) == names for s in structs):
            cols = {f: _concat([s.cols[f] for s in structs]) for f in names}
            if any(s.present is not None for s in structs):
                present = np.concatenate([
                    s.present if s.present is not None else np.ones(s.n, dtype=bool)
                    for s in structs])
            else:
                present = None
            return StructValues(cols, present, sum(s.n for s in structs))
    if kinds == {ChangeValues}:
        changes: list[ChangeValues] = list(parts)  # type: ignore[arg-type]
        return ChangeValues(concat_values([c.new for c in changes]),
                            concat_values([c.old for c in changes]))
    return ObjectValues(_concat([p.objects() for p in parts]))


# ------------------------------------------------------------------------------------ batch
class Batch:
    """``n`` records as columns (see the module docstring)."""

    __slots__ = ("headers", "keys", "origin", "seq", "time_field", "ts", "values")

    def __init__(self, keys: Any, values: Values, ts: np.ndarray, seq: np.ndarray,
                 headers: np.ndarray | None = None, time_field: str | None = None) -> None:
        self.keys = keys
        self.values = values
        self.ts = ts
        self.seq = seq
        self.headers = headers
        #: set when ``ts`` is known to be what a source's ``time=`` field extraction gives
        #: for these values (inputs appended through the source's own spec), so reading them
        #: back does not extract it again
        self.time_field = time_field
        #: where each record came from when it goes to or comes from a repartition topic
        #: (``runtime.origins.OriginColumns``), else ``None``; ``take``/``concat`` keep it
        self.origin: Any = None

    def __len__(self) -> int:
        return len(self.ts)

    def __bool__(self) -> bool:
        return len(self.ts) > 0

    def __repr__(self) -> str:
        return f"<Batch {len(self)} records, values {type(self.values).__name__}>"

    # -- building ---------------------------------------------------------------------------
    @staticmethod
    def empty() -> Batch:
        return Batch(_EMPTY_OBJ, ObjectValues(_EMPTY_OBJ), _EMPTY_I64, _EMPTY_I64, None)

    @staticmethod
    def from_rows(rows: Sequence[tuple[Any, Any, Any, Any, Any]]) -> Batch:
        """From record tuples ``(key, value, timestamp, seq, headers)``."""
        n = len(rows)
        if n == 0:
            return Batch.empty()
        keys, values, ts, seq, headers = zip(*rows)
        return Batch(obj_array(keys, n), ObjectValues(obj_array(values, n)),
                     np.array(ts, dtype=np.int64), _seq_array(seq), _headers_array(headers))

    @staticmethod
    def from_columns(keys: Sequence[Any], values: Sequence[Any], ts: Sequence[int],
                     seq: Sequence[Any] | None = None,
                     headers: Sequence[Any] | None = None) -> Batch:
        """From parallel lists (``seq`` defaults to ``0..n-1``)."""
        n = len(ts)
        return Batch(obj_array(keys, n), ObjectValues(obj_array(values, n)),
                     np.array(ts, dtype=np.int64),
                     np.arange(n, dtype=np.int64) if seq is None else _seq_array(seq),
                     None if headers is None else _headers_array(headers))

    @staticmethod
    def concat(parts: Sequence[Batch], seq: np.ndarray | None = None) -> Batch:
        """The parts one after the other (``seq``: the result's seq instead of the parts')."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Batch.empty()
        if len(parts) == 1:
            if seq is None:
                return parts[0]
            return parts[0].replaced(seq=seq)
        if all(p.headers is None for p in parts):
            headers = None
        else:
            headers = _concat([p.headers if p.headers is not None
                               else np.full(len(p), None, dtype=object) for p in parts])
        fields = {p.time_field for p in parts}
        out = Batch(_keys_concat([p.keys for p in parts]),
                    concat_values([p.values for p in parts]),
                    _concat([p.ts for p in parts]),
                    np.concatenate([p.seq for p in parts]) if seq is None else seq,
                    headers, fields.pop() if len(fields) == 1 else None)
        if any(p.origin is not None for p in parts):
            from .origins import OriginColumns

            out.origin = OriginColumns.concat([p.origin for p in parts], [len(p) for p in parts])
        return out

    # -- reading ----------------------------------------------------------------------------
    def take(self, idx: Any) -> Batch:
        """The rows at ``idx`` (index array, boolean mask or slice)."""
        keys = self.keys.take(idx) if isinstance(self.keys, WindowedKeys) else self.keys[idx]
        out = Batch(keys, self.values.take(idx), self.ts[idx], self.seq[idx],
                    None if self.headers is None else self.headers[idx], self.time_field)
        if self.origin is not None:
            out.origin = self.origin.take(idx)
        return out

    def key_objects(self) -> np.ndarray:
        """The keys as Python objects (``Windowed`` for windowed keys)."""
        return _keys_objects(self.keys)

    def header_list(self) -> list[Any]:
        return [None] * len(self) if self.headers is None else self.headers.tolist()

    def rows(self) -> list[tuple[Any, Any, int, Any, Any]]:
        """The records as tuples ``(key, value, timestamp, seq, headers)``."""
        n = len(self)
        if n == 0:
            return []
        hs: Iterable[Any] = repeat(None, n) if self.headers is None else self.headers.tolist()
        return list(zip(self.key_objects().tolist(), self.values.objects().tolist(),
                        self.ts.tolist(), self.seq.tolist(), hs))

    def with_values(self, values: Values) -> Batch:
        return Batch(self.keys, values, self.ts, self.seq, self.headers)  # time_field: gone

    def replaced(self, *, keys: Any = None, values: Values | None = None,
                 seq: np.ndarray | None = None) -> Batch:
        """The same records with the same keys, values or seq in another layout (``None``:
        keep); the time field and the origins are kept."""
        out = Batch(self.keys if keys is None else keys, self.values if values is None else values,
                    self.ts, self.seq if seq is None else seq, self.headers, self.time_field)
        out.origin = self.origin
        return out


class BatchParts:
    """One partition's output batches of a commit, in order, not concatenated: for a driver
    that stores them as they are (``Driver.accepts_batch_parts``); ``len`` counts records."""

    __slots__ = ("parts",)

    def __init__(self, parts: list[Batch]) -> None:
        self.parts = parts

    def __len__(self) -> int:
        return sum(map(len, self.parts))

    def concat(self) -> Batch:
        return Batch.concat(self.parts)


def _seq_array(seq: Sequence[Any]) -> np.ndarray:
    # punctuations forward records "after record s" as s + 0.5: keep such seqs as floats
    if all(s.__class__ is int for s in seq):
        return np.array(seq, dtype=np.int64)
    return np.array(seq, dtype=np.float64)


def _headers_array(headers: Sequence[Any]) -> np.ndarray | None:
    for h in headers:
        if h is not None:
            return obj_array(headers, len(headers))
    return None


def sort_by_seq(parts: list[tuple[int, Batch]]) -> tuple[Batch, np.ndarray]:
    """Concatenate several inputs and order them by ``seq`` (ties: input order); return the
    batch and each row's input port."""
    batch = Batch.concat([b for _p, b in parts])
    ports = np.concatenate([np.full(len(b), p, dtype=np.int64) for p, b in parts if len(b)])
    order = np.argsort(batch.seq, kind="stable")
    return batch.take(order), ports[order]
