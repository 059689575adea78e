"""The stream-table join on column batches.

Same semantics as :class:`~workbench.runtime.join_ops.StreamTableJoinOp`: a stream record with
a ``None`` value (or, for an inner join, a ``None`` key) is dropped and counted; it looks up the
table's current value of its key; an inner join keeps only records that found one; the output
keeps the stream record's key, timestamp, ``seq`` and headers. Table updates (port 1) go
through the row operator, in ``seq`` order with the stream records as the task arranges.

With the default ``combine``, dict values merge column-wise when every stream value and every
table value found are dicts of one shape each (``{**left, **right}``: the right side's fields
added, overwriting equal names); otherwise, and with a user ``combine``, values combine one
record at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..joins import default_combine
from .batch import Batch, ObjectValues, StructValues, column, obj_array
from .join_ops import StreamTableJoinOp
from .operators import Operator, StepFailure

__all__ = ["StreamTableJoinVec"]


class StreamTableJoinVec(Operator):
    """Column operator for a stream-table join; ``row`` is the row operator whose table it
    reads and whose table updates it applies."""

    columnar = True

    def __init__(self, row: StreamTableJoinOp) -> None:
        self.row = row
        self.name = row.name
        self.stores = row.stores
        self.side: list[Batch] = []
        #: the table as columns (key -> row), rebuilt after table updates when the table's
        #: values are dicts of one shape; ``None`` when stale or not expressible
        self._cache: _TableColumns | None = None
        self._stale = True

    @property
    def dropped(self) -> int:
        return self.row.dropped

    def process(self, batch: Batch, port: int) -> Batch | None:
        if not len(batch):
            return None
        if port == 1 or not _safe_keys(batch.keys):
            if port == 1:
                self._stale = True
            return self._by_rows(batch, port)
        return self._stream(batch)

    def _by_rows(self, batch: Batch, port: int) -> Batch | None:
        from .task import _ids_in, _ids_out

        out = self.row.process(_ids_in(batch.rows()), port)
        return Batch.from_rows(_ids_out(out)) if out else None

    def _stream(self, batch: Batch) -> Batch | None:
        row = self.row
        data = row.table.data
        left = row.left
        keys = batch.keys
        key_list = keys.tolist()
        values = batch.values
        present = _present(values)
        nokey = np.array([k is None for k in key_list], dtype=bool) if keys.dtype == object \
            else np.zeros(len(key_list), dtype=bool)
        drop = ~present if present is not None else np.zeros(len(key_list), dtype=bool)
        if not left:
            drop = drop | nokey
        if drop.any():
            row.dropped += int(drop.sum())
        cache = self._table_columns(len(batch)) if row.combine is default_combine else None
        if cache is not None:
            pos = np.fromiter((cache.index.get(k, -1) for k in key_list), dtype=np.int64,
                              count=len(key_list))
            found = pos >= 0
            keep = ~drop if left else (~drop & found)
            if not keep.any():
                return None
            rows = np.flatnonzero(keep)
            sub = batch.take(rows) if len(rows) != len(batch) else batch
            merged = _merge_with(sub.values, cache, pos[rows]) if found[rows].all() else None
            if merged is not None:
                return sub.with_values(merged)
            tvs = [data.get(k) if k is not None else None for k in sub.keys.tolist()]
            return sub.with_values(self._combine(sub, tvs))
        looked = [data.get(k) if k is not None else None for k in key_list]
        found = np.array([tv is not None for tv in looked], dtype=bool)
        keep = ~drop if left else (~drop & found)
        if not keep.any():
            return None
        rows = np.flatnonzero(keep)
        sub = batch.take(rows) if len(rows) != len(batch) else batch
        tvs = [looked[i] for i in rows.tolist()]
        merged = self._combine(sub, tvs)
        return sub.with_values(merged)

    def _table_columns(self, batch_size: int) -> _TableColumns | None:
        """The table as columns, rebuilt if the table changed (unless it is much larger than
        a batch, where looking up each record is cheaper than rebuilding)."""
        if not self._stale:
            return self._cache
        data = self.row.table.data
        if len(data) > 4 * max(batch_size, 10_000) and self._cache is None:
            return None
        self._cache = _TableColumns.build(data)
        self._stale = False
        return self._cache

    def _combine(self, sub: Batch, tvs: list[Any]) -> Any:
        combine = self.row.combine
        if combine is default_combine:
            merged = _merge_columns(sub.values, tvs)
            if merged is not None:
                return merged
        lefts = sub.values.objects().tolist()
        out = []
        for i, (lv, tv) in enumerate(zip(lefts, tvs)):
            try:
                out.append(combine(lv, tv))
            except Exception as exc:
                rec = sub.take(slice(i, i + 1)).rows()[0]
                raise StepFailure(self.row.name, self.row.defined_at, rec, exc) from exc
        return ObjectValues(obj_array(out, len(out)))

    def init(self, ctx: Any) -> None:
        self.row.init(ctx)

    def close(self) -> None:
        self.row.close()


def _safe_keys(keys: Any) -> bool:
    if not isinstance(keys, np.ndarray):
        return False
    if keys.dtype != object:
        return bool(keys.dtype == np.int64)
    return set(map(type, keys.tolist())) <= {str, int, type(None)}


def _present(values: Any) -> np.ndarray | None:
    if isinstance(values, StructValues):
        return values.present
    if isinstance(values, ObjectValues):
        arr = values.arr
        if arr.dtype != object:
            return None
        mask = np.array([v is not None for v in arr.tolist()], dtype=bool)
        return None if mask.all() else mask
    return None


class _TableColumns:
    """A table's values as columns: ``index[key]`` is the row of ``cols``."""

    __slots__ = ("cols", "index")

    def __init__(self, index: dict[Any, int], cols: dict[str, np.ndarray]) -> None:
        self.index = index
        self.cols = cols

    @staticmethod
    def build(data: dict[Any, Any]) -> _TableColumns | None:
        keys = list(data)
        tvs = list(data.values())
        if not tvs or set(map(type, tvs)) != {dict}:
            return None if tvs else _TableColumns({}, {})
        names_t = tuple(tvs[0])
        if not all(map(names_t.__eq__, map(tuple, tvs))):
            return None
        cols = {f: column([tv[f] for tv in tvs]) for f in names_t}
        return _TableColumns({k: i for i, k in enumerate(keys)}, cols)


def _merge_with(values: Any, table: _TableColumns, pos: np.ndarray) -> StructValues | None:
    """``{**left, **right}`` on columns with the right side from the table's columns."""
    if isinstance(values, ObjectValues):
        struct = values.to_struct()
        if struct is None:
            return None
        values = struct
    if not isinstance(values, StructValues) or values.present is not None:
        return None
    if not table.cols:
        return None
    cols = dict(values.cols)
    for f, c in table.cols.items():
        cols[f] = c[pos]
    return StructValues(cols, None, len(pos))


def _merge_columns(values: Any, tvs: list[Any]) -> StructValues | None:
    """``{**left, **right}`` on columns, when every left value is a dict of one shape and every
    right value is a dict of one shape (all found), else ``None``."""
    if isinstance(values, ObjectValues):
        struct = values.to_struct()
        if struct is None:
            return None
        values = struct
    if not isinstance(values, StructValues) or values.present is not None:
        return None
    if not tvs or any(tv is None for tv in tvs):
        return None
    if set(map(type, tvs)) != {dict}:
        return None
    names_t = tuple(tvs[0])
    if not all(map(names_t.__eq__, map(tuple, tvs))):
        return None
    right = {f: column([tv[f] for tv in tvs]) for f in names_t}
    cols = dict(values.cols)
    cols.update(right)
    return StructValues(cols, None, len(tvs))
