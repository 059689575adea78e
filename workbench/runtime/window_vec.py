"""Tumbling and hopping window aggregations of the built-in functions, on column batches.

Same semantics as :class:`~workbench.runtime.window_ops.TimeWindowAggregateOp` (its module
docstring has the rules), computed per batch with array operations:

* stream time after each record is a running maximum of the timestamps (records with a
  ``None`` key do not advance it), the close time is that minus grace, and the acceptance
  threshold (``eff``) a running maximum of the close time (and, with ``emit="close"``, of the
  last emitted close time);
* a record is late for a window when ``end <= eff`` at that record; a window closes at the
  first record whose ``eff`` reaches its end (a binary search, since ``eff`` never decreases);
* the aggregates are folded per window in record order (:mod:`workbench.runtime.fold`);
* ``emit="close"`` emits the closed windows ordered by the record that closed them, then window
  start, then key, with that record's ``seq`` and headers.

The open windows are kept as columns (:class:`ColumnarWindowStore`): keys, starts, the
window's largest timestamp and the accumulators. Their changelog records have the layout of
the row operator's store (``[key, start]`` → ``[accumulator, ts]``), so the two paths restore
each other's state; a window opened and closed between two commits leaves no tombstone here
(the changelog never held it), where the row store writes one. A batch the columns cannot
express (keys whose Python equality differs from their identity, value columns of mixed types,
``None`` values summed) is processed by the row operator on the same state, converted for the
occasion.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..keys import KeyId, unwrap_key
from ..types import Change
from ..windows import Windowed
from .batch import (
    Batch,
    ChangeValues,
    ObjectValues,
    StructValues,
    WindowedKeys,
    nones,
    obj_array,
)
from .fold import Accs, Part, empty, fold, from_python, published, to_python
from .key_codes import object_key_codes
from .operators import Operator, TimedRowBacked
from .state import StateStore
from .strings import plain
from .window_changes import WindowChanges
from .window_ops import LATE, NULL_KEY, TimeWindowAggregateOp, _fallback_order
from .window_store import (
    NO_TIMESTAMP,
    TimeWindowStore,
    apply_window_changelog,
)

__all__ = ["ColumnarWindowStore", "TimeWindowAggregateVec"]

_NUMERIC = frozenset("if")


class ColumnarWindowStore(StateStore):
    """The open windows of a tumbling/hopping aggregation as columns (see the module
    docstring); its changelog has the row store's layout."""

    kind = "window"

    def __init__(self, name: str, changelog: str, parts: list[Part]) -> None:
        super().__init__(name, changelog)
        self.parts = parts
        self.keys: np.ndarray = np.empty(0, dtype=object)
        self.starts = np.empty(0, dtype=np.int64)
        self.ts = np.empty(0, dtype=np.int64)
        self.accs = empty(parts, 0)
        self.dirty = np.zeros(0, dtype=bool)
        #: the windows whose value reached the changelog (drained, or restored): only their
        #: removal needs a tombstone
        self.logged = np.zeros(0, dtype=bool)
        #: windows removed since the last drain: (key, start)
        self.removed: list[tuple[Any, int]] = []
        self.last_emit = NO_TIMESTAMP
        self._meta_dirty = False

    def __len__(self) -> int:
        return len(self.starts)

    def set_last_emit(self, close_time: int) -> None:
        if close_time != self.last_emit:
            self.last_emit = close_time
            self._meta_dirty = True

    # -- changelog ---------------------------------------------------------------------------
    def drain_changes(self) -> list[tuple[Any, Any]]:
        return self.drain_window_changes(0).changes()

    def drain_window_changes(self, ts: int) -> WindowChanges:
        """:meth:`drain_changes` as columns, the records' timestamp ``ts`` (see
        :mod:`workbench.runtime.window_changes`)."""
        removed, self.removed = self.removed, []
        idx = np.flatnonzero(self.dirty)
        if len(idx):
            self.logged[idx] = True
            self.dirty[:] = False
        meta = None
        if self._meta_dirty:
            meta, self._meta_dirty = self.last_emit, False
        return WindowChanges(removed, self.keys[idx], self.starts[idx], self.parts,
                             self.accs.take(idx), self.ts[idx], meta, ts)

    def discard_changes(self) -> None:
        self.removed = []
        self.dirty[:] = False
        self._meta_dirty = False

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        live = dict(self._entries())

        def put(key: Any, start: int, v: Any) -> None:
            live[(key, start)] = (v[0], int(v[1]))

        count = apply_window_changelog(self, records, put,
                                       lambda key, start: live.pop((key, start), None))
        self._load(live)
        self.dirty[:] = False
        self.removed = []
        return count

    # -- conversions -------------------------------------------------------------------------
    def _entries(self) -> Iterable[tuple[tuple[Any, int], tuple[Any, int]]]:
        accs = to_python(self.parts, self.accs) if len(self) else []
        return zip(zip(self.keys.tolist(), self.starts.tolist()),
                   zip(accs, self.ts.tolist()))

    def _load(self, live: dict[tuple[Any, int], tuple[Any, int]]) -> None:
        from .batch import column

        items = sorted(live.items(), key=lambda kv: kv[0][1])
        self.keys = obj_array((k for (k, _s), _v in items), len(items))
        self.starts = np.array([s for (_k, s), _v in items], dtype=np.int64)
        self.ts = np.array([t for _kv, (_a, t) in items], dtype=np.int64)
        self.accs = from_python(self.parts, [a for _kv, (a, _t) in items])
        self.dirty = np.zeros(len(items), dtype=bool)
        self.logged = np.ones(len(items), dtype=bool)  # restored, or from the row store: as if
        # logged (a tombstone too many is harmless; one too few would resurrect a window)
        if self.keys.dtype == object and len(self.keys):
            typed = column(self.keys.tolist())
            if typed.dtype == np.int64:
                self.keys = typed

    def to_row_store(self, store: TimeWindowStore) -> None:
        """Put these windows into a row store (for a batch only the row operator can do)."""
        import heapq

        store.windows = {}
        for (k, s), (a, t) in self._entries():
            store.windows.setdefault(s, {})[k] = [a, t]
        store.starts = list(store.windows)
        heapq.heapify(store.starts)
        store.dirty = {}
        store.last_emit = self.last_emit

    def from_row_store(self, store: TimeWindowStore) -> None:
        """Take the windows back from a row store, with its changes as ours."""
        before = {(k, s) for (k, s), _v in self._entries()}
        pending = {(k, s) for k, s, d in zip(self.keys.tolist(), self.starts.tolist(),
                                             self.dirty.tolist()) if d}
        live = {(k, s): (e[0], e[1]) for s, w in store.windows.items() for k, e in w.items()}
        # changes not drained yet stay pending, with the row operator's on top
        changed = pending | {(k, s) for s, keys in store.dirty.items() for k in keys}
        self._load(live)
        if changed:
            index = {(k, s): i for i, (k, s) in enumerate(zip(self.keys.tolist(),
                                                              self.starts.tolist()))}
            for ks in changed:
                i = index.get(ks)
                if i is not None:
                    self.dirty[i] = True
                elif ks in before:
                    self.removed.append(ks)
        store.dirty = {}
        if store.last_emit != self.last_emit:
            self.set_last_emit(store.last_emit)

    # -- for the debugger and tools -----------------------------------------------------------
    @property
    def windows(self) -> dict[int, dict[Any, list[Any]]]:
        """The windows as the row store lays them out (``windows[start][key] = [acc, ts]``),
        built on demand."""
        out: dict[int, dict[Any, list[Any]]] = {}
        for (k, s), (a, t) in self._entries():
            out.setdefault(s, {})[k] = [a, t]
        return out


class TimeWindowAggregateVec(TimedRowBacked):
    """A tumbling or hopping aggregation of built-in functions on column batches (see the
    module docstring); ``row`` is the row operator it falls back on."""

    def __init__(self, row: TimeWindowAggregateOp, parts: list[Part]) -> None:
        self.row = row
        self.name = row.name
        self._fin = row._fin  # the debugger shows published values
        self.parts = parts
        self.scalar = parts[0][0] is None
        self.size = row.size
        self.advance = row.advance
        self.grace = row.grace
        self.emit_close = row.emit_close
        self.store = ColumnarWindowStore(row.store.name, row.store.changelog, parts)
        self.stores = [self.store]
        self.side: list[Batch] = []

    # -- processing -----------------------------------------------------------------------------
    def process(self, batch: Batch, port: int) -> Batch | None:
        if not len(batch):
            return None
        keys = batch.keys
        if not isinstance(keys, np.ndarray):
            return self._by_rows(batch)
        numbered = None
        if keys.dtype == object:
            numbered = object_key_codes(keys)
            if numbered is None:  # keys whose == differs from their identity: the row path
                return self._by_rows(batch)  # wraps them
        cols = self._columns(batch)
        if cols is None:
            return self._by_rows(batch)
        return self._vector(batch, cols, numbered)

    def _columns(self, batch: Batch) -> list[np.ndarray | None] | None:
        """The value columns of the parts, or ``None`` when the batch needs the row path."""
        values = batch.values
        if isinstance(values, ChangeValues):
            return None
        present = _present(values)
        if present is not None and not present.any():
            present = None if not len(values) else present
        if present is not None and not present.all() and any(
                f in ("sum", "mean") for _o, _c, f in self.parts):
            return None
        return part_columns(self.parts, values, present)

    def _by_rows(self, batch: Batch) -> Batch | None:
        return through_row_operator(self, batch)

    def _vector(self, batch: Batch, cols: list[np.ndarray | None],
                numbered: tuple[np.ndarray, list[Any]] | None) -> Batch | None:
        row = self.row
        store = self.store
        size, advance, grace = self.size, self.advance, self.grace
        keys = batch.keys
        n = len(batch)
        row._last_seq = batch.seq[-1].item()
        state_n = len(store)
        # the batch's keys and the state's numbered alike (None: -1)
        codes, state_codes = _key_codes(store.keys, keys, numbered)
        nullkey = codes < 0 if keys.dtype == object else np.zeros(n, dtype=bool)
        original = batch
        kept_rows: np.ndarray | None = None
        if nullkey.any():
            kept_rows = np.flatnonzero(~nullkey)
            batch = batch.take(kept_rows)
            cols = [None if c is None else c[kept_rows] for c in cols]
            codes = codes[kept_rows]
            keys = batch.keys
            n = len(batch)
            if not n:
                self._drop_rows(original, nullkey, None, None)
                return None
        ts = batch.ts
        st0 = row.stream_time
        run_max = np.maximum.accumulate(ts)
        st = np.maximum(run_max, st0)
        eff0 = st0 - grace
        if self.emit_close:
            eff0 = max(eff0, store.last_emit)
        eff = np.maximum(st - grace, eff0)
        # windows of each record: tumbling one, hopping size // advance (ascending starts)
        if advance == size:
            rec = np.arange(n, dtype=np.int64)
            starts = ts - ts % size
        else:
            lo = np.maximum(ts - size + advance, 0) // advance * advance
            counts = (ts - lo) // advance + 1
            rec = np.repeat(np.arange(n, dtype=np.int64), counts)
            offsets = np.arange(len(rec), dtype=np.int64) - np.repeat(
                np.cumsum(counts) - counts, counts)
            starts = lo[rec] + offsets * advance
        ends = starts + size
        late_w = ends <= eff[rec]
        if advance == size:
            late_rec = late_w
        else:  # a record missed at least one of its windows
            late_rec = np.zeros(n, dtype=bool)
            late_rec[rec[late_w]] = True
        valid = ~late_w
        vrec = rec[valid]
        vstart = starts[valid]
        # groups: the state's windows first, then new ones in order of appearance
        all_codes = np.concatenate([state_codes, codes[vrec]])
        all_starts = np.concatenate([store.starts, vstart])
        gid_all = _group_ids(all_codes, all_starts, advance)
        state_gid = gid_all[:state_n]
        row_gid = gid_all[state_n:]
        # state windows are distinct, so their group ids are 0..state_n-1 in order
        groups = int(gid_all.max()) + 1 if len(gid_all) else 0
        # the accumulators of every group: the state's, then empty ones
        new_n = groups - state_n
        fresh = empty(self.parts, new_n, _dtypes(self.parts, cols, store.accs, state_n))
        accs = store.accs if not new_n else Accs.concat([store.accs, fresh])
        g_keys = _cat_keys(store.keys, _first_of(keys[vrec], row_gid, state_n, groups))
        g_starts = np.concatenate([store.starts, _first_of(vstart, row_gid, state_n, groups)])
        g_ts = np.concatenate([store.ts, np.full(new_n, np.iinfo(np.int64).min)])
        existed = np.concatenate([np.ones(state_n, dtype=bool), np.zeros(new_n, dtype=bool)])
        del state_gid
        present = _present(batch.values)
        vcols = [None if c is None else c[vrec] for c in cols]
        vpresent = None if present is None else present[vrec]
        per_row = not self.emit_close
        touched = np.flatnonzero(np.bincount(row_gid, minlength=groups))
        sub = accs.take(touched)
        remap = np.full(groups, -1, dtype=np.int64)
        remap[touched] = np.arange(len(touched), dtype=np.int64)
        sub, after, before = fold(self.parts, vcols, vpresent, remap[row_gid], sub,
                                  per_row=per_row)
        accs = _put(accs, touched, sub)
        vts = ts[vrec]
        np.maximum.at(g_ts, row_gid, vts)
        dirty = np.concatenate([store.dirty, np.zeros(new_n, dtype=bool)])
        dirty[touched] = True
        logged = np.concatenate([store.logged, np.zeros(new_n, dtype=bool)])
        out_parts: list[Batch] = []
        if per_row and len(vrec):
            out_parts.append(self._updates(batch, vrec, vstart, row_gid, existed, after,
                                           before, g_ts_running=_running_ts(
                                               vts, row_gid, g_ts, existed, store, state_n)))
        # close the windows whose end the last record's eff reached
        last_eff = int(eff[-1])
        g_ends = g_starts + size
        closing = g_ends <= last_eff
        if closing.any():
            cidx = np.flatnonzero(closing)
            at = np.searchsorted(eff, g_ends[cidx], side="left")
            if self.emit_close:
                order = _close_order(at, g_starts[cidx], g_keys[cidx])
                cidx, at = cidx[order], at[order]
                out_parts.append(self._emitted(batch, cidx, at, g_keys, g_starts, g_ts, accs))
                store.set_last_emit(int(eff[int(at.max())]))
            removed = cidx[logged[cidx]]  # a window the changelog never held needs no tombstone
            store.removed.extend(zip(g_keys[removed].tolist(), g_starts[removed].tolist()))
            keep = ~closing
        else:
            keep = np.ones(groups, dtype=bool)
        store.keys = g_keys[keep]
        store.starts = g_starts[keep]
        store.ts = g_ts[keep]
        store.accs = accs.take(keep)
        store.dirty = dirty[keep]
        store.logged = logged[keep]
        row.stream_time = int(st[-1])
        if late_rec.any() or kept_rows is not None:
            self._drop_rows(original, nullkey, late_rec, kept_rows)
        if not out_parts:
            return None
        return Batch.concat(out_parts) if len(out_parts) > 1 else out_parts[0]

    # -- outputs -------------------------------------------------------------------------------
    def _values(self, columns: list[np.ndarray]) -> Any:
        if self.scalar:
            return ObjectValues(columns[0])
        return StructValues({str(p[0]): c for p, c in zip(self.parts, columns)}, None)

    def _updates(self, batch: Batch, vrec: np.ndarray, vstart: np.ndarray,
                 row_gid: np.ndarray, existed: np.ndarray, after: Any, before: Any,
                 g_ts_running: np.ndarray) -> Batch:
        """emit="update": one ``Change(new, old)`` per record and window."""
        first_in_batch = _first_occurrence(row_gid)
        old_present = ~(first_in_batch & ~existed[row_gid])
        new_vals = self._values(after)
        if self.scalar:
            old_col = before[0].copy()
            old_col[~old_present] = None
            old_vals: Any = ObjectValues(old_col)
        else:
            old_vals = StructValues({str(p[0]): c for p, c in zip(self.parts, before)},
                                    None if old_present.all() else old_present)
        keys = WindowedKeys(_keys_of(batch.keys[vrec]), vstart, vstart + self.size)
        headers = None if batch.headers is None else batch.headers[vrec]
        return Batch(keys, ChangeValues(new_vals, old_vals), g_ts_running, batch.seq[vrec],
                     headers)

    def _emitted(self, batch: Batch, cidx: np.ndarray, at: np.ndarray, g_keys: np.ndarray,
                 g_starts: np.ndarray, g_ts: np.ndarray, accs: Accs) -> Batch:
        """emit="close": the final value of each closed window."""
        final = published(self.parts, accs.take(cidx))
        keys = WindowedKeys(_keys_of(g_keys[cidx]), g_starts[cidx], g_starts[cidx] + self.size)
        headers = None if batch.headers is None else batch.headers[at]
        return Batch(keys, ChangeValues(self._values(final), nones(len(cidx))), g_ts[cidx],
                     batch.seq[at], headers)

    def _drop_rows(self, batch: Batch, nullkey: np.ndarray, late: np.ndarray | None,
                   kept_rows: np.ndarray | None) -> None:
        """Send null-key and late records to the side output, in record order, each with its
        ``workbench.dropped`` header."""
        code = nullkey.astype(np.int8)  # 1: null key, 2: late
        if late is not None and late.any():
            rows = np.flatnonzero(late) if kept_rows is None else kept_rows[late]
            code[rows] = 2
        idx = np.flatnonzero(code)
        if not len(idx):
            return
        dropped = batch.take(idx)
        hs = dropped.header_list()
        tags = [NULL_KEY if c == 1 else LATE for c in code[idx].tolist()]
        dropped.headers = obj_array(((*h, tag) if h else (tag,) for h, tag in zip(hs, tags)),
                                    len(idx))
        self.side.append(dropped)
        self.row.dropped += len(idx)

    def end(self) -> Batch | None:
        if not self.emit_close or not len(self.store):
            return None
        store = self.store
        row = self.row
        g_ends = store.starts + self.size
        close = int(g_ends.max())
        cidx = np.arange(len(store), dtype=np.int64)
        order = _close_order(np.zeros(len(cidx), dtype=np.int64), store.starts, store.keys)
        cidx = cidx[order]
        final = published(self.parts, store.accs.take(cidx))
        keys = WindowedKeys(_keys_of(store.keys[cidx]), store.starts[cidx],
                            store.starts[cidx] + self.size)
        seq = np.full(len(cidx), row._last_seq,
                      dtype=np.float64 if isinstance(row._last_seq, float) else np.int64)
        out = Batch(keys, ChangeValues(self._values(final), nones(len(cidx))), store.ts[cidx],
                    seq, None)
        done = store.logged
        store.removed.extend(zip(store.keys[done].tolist(), store.starts[done].tolist()))
        store.keys = store.keys[:0]
        store.starts = store.starts[:0]
        store.ts = store.ts[:0]
        store.accs = store.accs.take(slice(0, 0))
        store.dirty = store.dirty[:0]
        store.logged = store.logged[:0]
        store.set_last_emit(close)
        return out



# -- helpers ------------------------------------------------------------------------------------
def part_columns(parts: list[Part], values: Any,
                 present: np.ndarray | None) -> list[np.ndarray | None] | None:
    """The value column each aggregate part reads (``None`` for ``count()``), or ``None`` when
    a column is missing or not numeric where the function needs numbers: the row path then
    handles the batch and reports the record."""
    cols: list[np.ndarray | None] = []
    cache: dict[str, np.ndarray] = {}
    for _out, col, func in parts:
        if col is None:
            cols.append(None)
            continue
        arr = cache.get(col)
        if arr is None:
            try:
                arr = _field(values, col, present)
            except (KeyError, TypeError, IndexError):
                return None
            cache[col] = arr
        if func in ("sum", "mean", "min", "max") and arr.dtype.kind not in _NUMERIC:
            return None
        cols.append(arr)
    return cols


def through_row_operator(op: Any, batch: Batch) -> Batch | None:
    """Run ``batch`` through the row operator ``op.row`` on the same state (moved into its
    store and back), its side output appended to ``op.side``."""
    from .task import _ids_in, _ids_out

    row = op.row
    op.store.to_row_store(row.store)
    out = row.process(_ids_in(batch.rows()), 0)
    op.store.from_row_store(row.store)
    if row.side:
        op.side.append(Batch.from_rows(_ids_out(row.side)))
        row.side = []
    return Batch.from_rows(_ids_out(out)) if out else None


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


def _field(values: Any, name: str, present: np.ndarray | None) -> np.ndarray:
    from .batch import column

    if isinstance(values, StructValues):
        col = values.cols.get(name)
        if col is None:
            raise KeyError(name)
        return plain(col)
    vals = values.objects().tolist()
    if present is None:
        return column([v[name] for v in vals])
    return column([v[name] if v is not None else None for v in vals])


def _key_codes(state_keys: np.ndarray, keys: np.ndarray,
               numbered: tuple[np.ndarray, list[Any]] | None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Numbers for the batch's keys and the state's keys (equal keys, equal numbers; ``None``:
    -1): ``int64`` keys are their own numbers; object keys (``str``, ``int``, ``None``, checked
    by the caller, which numbered them: ``numbered``) and the state's keys (identities, also
    :class:`~workbench.keys.KeyId`) share one numbering."""
    if keys.dtype == np.int64 and (state_keys.dtype == np.int64 or not len(state_keys)):
        return keys, state_keys.astype(np.int64, copy=False)
    if numbered is None:
        numbered = object_key_codes(keys.astype(object))
        assert numbered is not None  # int64 keys
    codes, values = numbered
    if not len(state_keys):
        return codes, np.empty(0, dtype=np.int64)
    numbers = dict(zip(values, range(len(values))))
    state_codes = np.fromiter((numbers.setdefault(k, len(numbers))
                               for k in state_keys.tolist()), dtype=np.int64,
                              count=len(state_keys))
    return codes, state_codes


def _cat_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype == b.dtype or not len(b):
        return np.concatenate([a, b.astype(a.dtype)]) if len(b) else a
    if not len(a):
        return b
    return np.concatenate([a.astype(object), b.astype(object)])


def _group_ids(keys: np.ndarray, starts: np.ndarray, unit: int = 1) -> np.ndarray:
    """Group ids of (key, start) pairs, numbered in order of first appearance (``unit``: what
    every start is a multiple of, the windows' advance)."""
    import pandas as pd

    if not len(starts):
        return np.empty(0, dtype=np.int64)
    lo = int(starts.min())
    span = (starts - lo)
    if unit > 1 and not (span % unit).any():
        span = span // unit
    width = int(span.max()) + 1
    if keys.dtype == np.int64 and len(keys):
        kmin, kmax = int(keys.min()), int(keys.max())
        if (kmax - kmin + 1) * width < 2**62:
            combined = (keys - kmin) * width + span
            if (kmax - kmin + 1) * width <= 4 * len(combined) + 1024:
                return _dense_ids(combined, (kmax - kmin + 1) * width)
            gid, _v = pd.factorize(combined)
            out: np.ndarray = gid.astype(np.int64)
            return out
    kcodes, _u = pd.factorize(keys, use_na_sentinel=False)
    combined = kcodes.astype(np.int64) * width + span
    gid, _v = pd.factorize(combined)
    result: np.ndarray = gid.astype(np.int64)
    return result


def _dense_ids(values: np.ndarray, size: int) -> np.ndarray:
    """``pd.factorize(values)[0]`` for values in ``0 .. size-1`` (a small range), by arrays."""
    n = len(values)
    rows = np.arange(n, dtype=np.int64)
    first = np.full(size, n, dtype=np.int64)
    first[values[::-1]] = rows[::-1]  # the earliest row of each value wins
    opens = first[values] == rows  # rows that are their value's first, in order
    number = np.empty(size, dtype=np.int64)
    number[values[opens]] = np.arange(int(opens.sum()), dtype=np.int64)
    out: np.ndarray = number[values]
    return out


def _first_of(values: np.ndarray, gid: np.ndarray, state_n: int, groups: int) -> np.ndarray:
    """For each new group (``state_n .. groups-1``), the value at its first row."""
    first = np.full(groups - state_n, -1, dtype=np.int64)
    rows = np.arange(len(gid), dtype=np.int64)
    new = gid >= state_n
    # first occurrence of each new group: scan from the end so the earliest write wins
    first[gid[new][::-1] - state_n] = rows[new][::-1]
    return values[first]


def _put(accs: Accs, idx: np.ndarray, sub: Accs) -> Accs:
    for i in range(len(accs.vals)):
        target = accs.vals[i]
        new = sub.vals[i]
        if target.dtype != new.dtype:
            if len(idx) == len(target):  # every group was folded: the new type for all
                target = np.empty(len(target), dtype=new.dtype)
            else:  # the others keep their own type: Python objects
                target = target.astype(object)
        target[idx] = new
        accs.vals[i] = target
        if accs.has[i] is not None:
            accs.has[i][idx] = sub.has[i]  # type: ignore[index]
        if accs.cnt[i] is not None:
            accs.cnt[i][idx] = sub.cnt[i]  # type: ignore[index]
    return accs


def _first_occurrence(gid: np.ndarray) -> np.ndarray:
    """Per row, whether it is its group's first row."""
    n = len(gid)
    first = np.full(int(gid.max()) + 1 if n else 0, -1, dtype=np.int64)
    rows = np.arange(n, dtype=np.int64)
    first[gid[::-1]] = rows[::-1]  # the earliest row is written last
    is_first: np.ndarray = first[gid] == rows
    return is_first


def _dtypes(parts: list[Part], cols: list[np.ndarray | None], state: Accs,
            state_n: int) -> list[Any]:
    """The dtype of new groups' accumulators per part: the state's when it holds the same kind
    of numbers as the batch's column (so the columns stay typed), else the column's."""
    out: list[Any] = []
    for i, (_o, _c, func) in enumerate(parts):
        col = cols[i]
        if func == "count" or col is None:
            out.append(np.int64)
            continue
        want = col.dtype if func not in ("first", "last") or col.dtype != object else object
        if state_n and state.vals[i].dtype == want:
            out.append(want)
        else:
            out.append(want)
    return out


def _running_ts(vts: np.ndarray, row_gid: np.ndarray, g_ts_final: np.ndarray,
                existed: np.ndarray, store: ColumnarWindowStore, state_n: int) -> np.ndarray:
    """Per update row, the window's largest timestamp so far (the state's, then a running
    maximum within the batch)."""
    import pandas as pd

    start = np.full(len(g_ts_final), np.iinfo(np.int64).min, dtype=np.int64)
    start[:state_n] = store.ts
    running = pd.Series(vts).groupby(row_gid).cummax().to_numpy()
    latest: np.ndarray = np.maximum(running, start[row_gid])
    return latest


def _keys_of(keys: np.ndarray) -> np.ndarray:
    """State keys as output keys: identities (:class:`~workbench.keys.KeyId`, left by a batch
    the row operator processed) back to the original keys."""
    if keys.dtype != object:
        return keys
    items = keys.tolist()
    if not any(k.__class__ is KeyId for k in items):
        return keys
    return obj_array((unwrap_key(k) for k in items), len(items))


def _close_order(at: np.ndarray, starts: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Emission order: by closing record, window start, then key (natural order, else by
    type name and repr)."""
    try:
        if keys.dtype == object:
            ranks = np.argsort(np.argsort(keys, kind="stable"), kind="stable")
        else:
            ranks = keys
    except TypeError:
        order = sorted(range(len(keys)), key=lambda i: _fallback_order(keys[i]))
        ranks = np.empty(len(keys), dtype=np.int64)
        ranks[np.array(order, dtype=np.int64)] = np.arange(len(keys), dtype=np.int64)
    return np.lexsort((ranks, starts, at))


def vectorized_time_window(row: TimeWindowAggregateOp, parts: list[Part]) -> Operator:
    """The column operator for a time-window aggregation of built-ins."""
    return TimeWindowAggregateVec(row, parts)


_unused = (Windowed, Change)
