"""Non-windowed aggregations of the built-in functions (``group_by(...).count()`` /
``.agg(...)`` into a table) on column batches.

Same semantics as :class:`~workbench.runtime.window_ops.KeyAggregateOp`: a record with a
``None`` key or value goes to the ``late`` output (``null-key`` / ``null-value``); every other
record updates its key's aggregate and produces ``Change(new, old)`` with the timestamp
``max(record, previous aggregate)``. The per-key state is kept as columns with an index from
key to row (:class:`ColumnarAggStore`), whose changelog records are the row store's
(``key`` → ``[accumulator, ts]``). Batches the columns cannot express run through the row
operator on the same state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..keys import key_id
from .batch import Batch, ChangeValues, ObjectValues, StructValues, obj_array
from .fold import Accs, Part, empty, fold, from_python, to_python
from .operators import RowBacked
from .state import StateStore
from .window_ops import NULL_KEY, NULL_VALUE, KeyAggregateOp
from .window_store import AggKVStore, tuplify
from .window_vec import (
    _dtypes,
    _first_occurrence,
    _present,
    _put,
    part_columns,
    through_row_operator,
)

__all__ = ["ColumnarAggStore", "KeyAggregateVec"]



class ColumnarAggStore(StateStore):
    """Per-key aggregates as columns: ``index[key]`` is the key's row."""

    kind = "kv"

    def __init__(self, name: str, changelog: str, parts: list[Part]) -> None:
        super().__init__(name, changelog)
        self.parts = parts
        self.index: dict[Any, int] = {}
        self.keys: list[Any] = []
        self.ts = np.empty(0, dtype=np.int64)
        self.accs = empty(parts, 0)
        self.dirty = np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return len(self.keys)

    def drain_changes(self) -> list[tuple[Any, Any]]:
        if not self.dirty.any():
            return []
        idx = np.flatnonzero(self.dirty)
        accs = to_python(self.parts, self.accs.take(idx))
        keys = self.keys
        out = [(keys[i], [a, t]) for i, a, t in zip(idx.tolist(), accs,
                                                     self.ts[idx].tolist())]
        self.dirty[:] = False
        return out

    def discard_changes(self) -> None:
        self.dirty[:] = False

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        live = dict(self._entries())
        count = 0
        for k, v in records:
            count += 1
            key = key_id(tuplify(k))
            if v is None:
                live.pop(key, None)
            else:
                live[key] = (v[0], int(v[1]))
        self._load(live)
        return count

    def _entries(self) -> Iterable[tuple[Any, tuple[Any, int]]]:
        accs = to_python(self.parts, self.accs) if len(self) else []
        return zip(self.keys, zip(accs, self.ts.tolist()))

    def _load(self, live: dict[Any, tuple[Any, int]]) -> None:
        self.keys = list(live)
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.ts = np.array([t for _a, t in live.values()], dtype=np.int64)
        self.accs = from_python(self.parts, [a for a, _t in live.values()])
        self.dirty = np.zeros(len(self.keys), dtype=bool)

    def to_row_store(self, store: AggKVStore) -> None:
        store.data = {k: (a, t) for k, (a, t) in self._entries()}
        store._dirty = {}

    def from_row_store(self, store: AggKVStore) -> None:
        # changes not drained yet stay pending, with the row operator's on top
        changed = [k for k, d in zip(self.keys, self.dirty.tolist()) if d] + list(store._dirty)
        self._load(dict(store.data))
        for k in changed:
            i = self.index.get(k)
            if i is not None:
                self.dirty[i] = True
        store._dirty = {}

    @property
    def data(self) -> dict[Any, tuple[Any, int]]:
        """The aggregates as the row store lays them out (``data[key] = (acc, ts)``)."""
        return dict(self._entries())


class KeyAggregateVec(RowBacked):
    """A non-windowed aggregation of built-in functions on column batches."""

    def __init__(self, row: KeyAggregateOp, parts: list[Part]) -> None:
        self.row = row
        self.name = row.name
        self._fin = row._fin  # the debugger shows published values
        self.parts = parts
        self.scalar = parts[0][0] is None
        self.store = ColumnarAggStore(row.store.name, row.store.changelog, parts)
        self.stores = [self.store]
        self.side: list[Batch] = []

    def process(self, batch: Batch, port: int) -> Batch | None:
        if not len(batch):
            return None
        cols = self._columns(batch)
        if cols is None:
            return self._by_rows(batch)
        return self._vector(batch, cols)

    def _columns(self, batch: Batch) -> list[np.ndarray | None] | None:
        keys = batch.keys
        if not isinstance(keys, np.ndarray):
            return None
        if keys.dtype == object and not set(map(type, keys.tolist())) <= {str, int, type(None)}:
            return None
        values = batch.values
        if isinstance(values, ChangeValues):
            return None
        return part_columns(self.parts, values, _present(values))

    def _by_rows(self, batch: Batch) -> Batch | None:
        return through_row_operator(self, batch)

    def _vector(self, batch: Batch, cols: list[np.ndarray | None]) -> Batch | None:
        store = self.store
        key_list = batch.keys.tolist()
        present = _present(batch.values)
        nokey = np.array([k is None for k in key_list], dtype=bool) \
            if batch.keys.dtype == object else np.zeros(len(batch), dtype=bool)
        novalue = ~present if present is not None else np.zeros(len(batch), dtype=bool)
        drop = nokey | novalue
        if drop.any():
            self._drop_rows(batch, nokey, novalue & ~nokey)
            rows = np.flatnonzero(~drop)
            if not len(rows):
                return None
            batch = batch.take(rows)
            cols = [None if c is None else c[rows] for c in cols]
            key_list = batch.keys.tolist()
        index = store.index
        before = len(store.keys)
        pos: list[int] = []
        append = pos.append
        for k in key_list:
            i = index.get(k)
            if i is None:
                i = index[k] = len(store.keys)
                store.keys.append(k)
            append(i)
        gid = np.array(pos, dtype=np.int64)
        groups = len(store.keys)
        new_n = groups - before
        if new_n:
            fresh = empty(self.parts, new_n, _dtypes(self.parts, cols, store.accs, before))
            store.accs = Accs.concat([store.accs, fresh]) if before else fresh
            store.ts = np.concatenate([store.ts, np.full(new_n, np.iinfo(np.int64).min)])
            store.dirty = np.concatenate([store.dirty, np.zeros(new_n, dtype=bool)])
        existed = np.arange(groups) < before
        touched = np.flatnonzero(np.bincount(gid, minlength=groups))
        remap = np.full(groups, -1, dtype=np.int64)
        remap[touched] = np.arange(len(touched), dtype=np.int64)
        sub, after, prior = fold(self.parts, cols, None, remap[gid], store.accs.take(touched),
                                 per_row=True)
        store.accs = _put(store.accs, touched, sub)
        ts = batch.ts
        import pandas as pd

        running = pd.Series(ts).groupby(gid).cummax().to_numpy()
        start_ts = store.ts[gid]
        out_ts = np.maximum(running, start_ts)
        np.maximum.at(store.ts, gid, ts)
        store.dirty[touched] = True
        first = _first_occurrence(gid)
        old_present = ~(first & ~existed[gid])
        assert after is not None and prior is not None
        if self.scalar:
            new_vals: Any = ObjectValues(after[0])
            old_col = prior[0].copy()
            old_col[~old_present] = None
            old_vals: Any = ObjectValues(old_col)
        else:
            new_vals = StructValues({str(p[0]): c for p, c in zip(self.parts, after)}, None)
            old_vals = StructValues({str(p[0]): c for p, c in zip(self.parts, prior)},
                                    None if old_present.all() else old_present)
        return Batch(batch.keys, ChangeValues(new_vals, old_vals), out_ts, batch.seq,
                     batch.headers)  # the batch's keys are identity-safe (checked above)

    def _drop_rows(self, batch: Batch, nokey: np.ndarray, novalue: np.ndarray) -> None:
        idx = np.flatnonzero(nokey | novalue)
        dropped = batch.take(idx)
        hs = dropped.header_list()
        tags = [NULL_KEY if nk else NULL_VALUE for nk in nokey[idx].tolist()]
        dropped.headers = obj_array(((*h, tag) if h else (tag,) for h, tag in zip(hs, tags)),
                                    len(idx))
        self.side.append(dropped)
        self.row.dropped += len(idx)


