"""The stream-table join on column batches.

Same semantics as :class:`~workbench.runtime.join_ops.StreamTableJoinOp` (Kafka Streams'
``KStreamKTableJoinProcessor`` over a non-versioned table):

* table updates (port 1) put ``Change.new`` into the join's table (``None``: delete; a ``None``
  key is dropped and counted), in ``seq`` order with the stream records as the task arranges;
* a stream record with a ``None`` value (or, for an inner join, a ``None`` key) is dropped and
  counted; it looks up the table's current value of its key; an inner join keeps only records
  that found one, a left join combines the others with ``None``; the output keeps the stream
  record's key, timestamp, ``seq`` and headers.

Both sides work on columns: the table is mirrored in :class:`~.table_slots.TableSlots` (the
store's ``data`` dict stays the truth for the changelog and restore), updates go into both with
C-level loops, and a batch of stream records finds its table values with one vectorized hash
lookup. With the default ``combine``, dict values merge column-wise when the stream values are
columns and every table value found is a dict of one shape (``{**left, **right}``: the right
side's fields added, overwriting equal names); otherwise, and with a user ``combine``, values
combine one record at a time. Keys other than ``str``/``int``/``None`` (whose identity is not
the key itself) go through the row operator on the same store.
"""

from __future__ import annotations

from itertools import repeat
from operator import is_, itemgetter
from typing import Any

import numpy as np

from ..joins import default_combine
from .batch import Batch, ChangeValues, ObjectValues, StructValues, obj_array
from .join_ops import StreamTableJoinOp
from .operators import RowBacked, StepFailure
from .table_slots import TableSlots

__all__ = ["StreamTableJoinVec"]

_new_of = itemgetter(0)


class StreamTableJoinVec(RowBacked):
    """Column operator for a stream-table join; ``row`` is the row operator whose store it
    shares and which handles batches the columns cannot express."""

    def __init__(self, row: StreamTableJoinOp) -> None:
        self.row = row
        self.name = row.name
        self.stores = row.stores
        self.side: list[Batch] = []
        #: the table in slots (built from the store on first use, after a restore)
        self._slots: TableSlots | None = None

    def process(self, batch: Batch, port: int) -> Batch | None:
        if not len(batch):
            return None
        if not _safe_keys(batch.keys):
            if port == 1:
                self._slots = None  # rebuilt from the store on the next lookup
            return self._by_rows(batch, port)
        if port == 1:
            self._update(batch)
            return None
        return self._stream(batch)

    def _by_rows(self, batch: Batch, port: int) -> Batch | None:
        from .task import _ids_in, _ids_out

        out = self.row.process(_ids_in(batch.rows()), port)
        return Batch.from_rows(_ids_out(out)) if out else None

    def _table(self) -> TableSlots:
        slots = self._slots
        if slots is None:
            slots = self._slots = TableSlots.from_dict(self.row.table.data)
        return slots

    # -- table updates --------------------------------------------------------------------------
    def _update(self, batch: Batch) -> None:
        """``KStreamKTableJoin``'s table side: the store takes each update's new value."""
        values = batch.values
        if isinstance(values, ChangeValues):
            news = values.new.objects().tolist()
        else:
            news = list(map(_new_of, values.objects().tolist()))
        keys = batch.keys.tolist()
        if batch.keys.dtype == object and None in keys:
            kept = [i for i, k in enumerate(keys) if k is not None]
            self.row.dropped += len(keys) - len(kept)
            keys = [keys[i] for i in kept]
            news = [news[i] for i in kept]
            if not keys:
                return
        store = self.row.table
        data = store.data
        if any(map(is_, news, repeat(None))):  # deletes: in order, as the row operator
            for k, v in zip(keys, news):
                if v is None:
                    data.pop(k, None)
                else:
                    data[k] = v
        else:
            data.update(zip(keys, news))
        store._dirty.update(zip(keys, news))
        slots = self._slots
        if slots is not None:
            if slots.n > 2 * len(data) + 1_024:  # mostly deleted keys: rebuilt from the store
                self._slots = None
            else:
                slots.put(keys, news)

    # -- stream records -------------------------------------------------------------------------
    def _stream(self, batch: Batch) -> Batch | None:
        row = self.row
        left = row.left
        keys = batch.keys
        n = len(batch)
        present = _present(batch.values)
        drop = None if present is None else ~present
        if keys.dtype == object:
            nokey = np.fromiter((k is None for k in keys.tolist()), dtype=bool, count=n)
            if not left and nokey.any():
                drop = nokey if drop is None else drop | nokey
        pos = self._table().lookup(keys)
        found = pos >= 0
        keep: np.ndarray | None = None if left else found
        if drop is not None and drop.any():
            row.dropped += int(drop.sum())
            keep = ~drop if left else ~drop & found
        if keep is not None and not keep.all():
            if not keep.any():
                return None
            rows = np.flatnonzero(keep)
            batch = batch.take(rows)
            pos = pos[rows]
            found = found[rows]
        slots = self._table()
        if row.combine is default_combine and found.all():
            cols = slots.columns()
            if cols:
                merged = _merge_with(batch.values, cols, pos)
                if merged is not None:
                    return batch.with_values(merged)
        return batch.with_values(self._combine(batch, slots.values_at(pos).tolist()))

    def _combine(self, sub: Batch, tvs: list[Any]) -> Any:
        combine = self.row.combine
        lefts = sub.values.objects().tolist()
        out = []
        for i, (lv, tv) in enumerate(zip(lefts, tvs)):
            try:
                out.append(combine(lv, tv))
            except Exception as exc:
                rec = sub.take(slice(i, i + 1)).rows()[0]
                raise StepFailure(self.row.name, self.row.defined_at, rec, exc) from exc
        return ObjectValues(obj_array(out, len(out)))



def _safe_keys(keys: Any) -> bool:
    """Whether every key is its own identity in the store (``str``, ``int``, ``None``)."""
    if not isinstance(keys, np.ndarray):
        return False
    if keys.dtype != object:
        return bool(keys.dtype == np.int64)
    return set(map(type, keys.tolist())) <= {str, int, type(None)}


def _present(values: Any) -> np.ndarray | None:
    """Per row, whether the value is not ``None`` (``None``: all are)."""
    if isinstance(values, StructValues):
        p = values.present
        return None if p is None or p.all() else p
    if isinstance(values, ObjectValues):
        arr = values.arr
        if arr.dtype != object:
            return None
        mask = np.fromiter((v is not None for v in arr.tolist()), dtype=bool, count=len(arr))
        return None if mask.all() else mask
    return None


def _merge_with(values: Any, cols: dict[str, np.ndarray], pos: np.ndarray
                ) -> StructValues | None:
    """``{**left, **right}`` on columns, the right side the table's columns at ``pos``."""
    if isinstance(values, ObjectValues):
        struct = values.to_struct()
        if struct is None:
            return None
        values = struct
    if not isinstance(values, StructValues):
        return None
    if values.present is not None and not values.present.all():
        return None
    out = dict(values.cols)
    for f, c in cols.items():
        out[f] = c[pos]
    return StructValues(out, None, len(pos))
