"""Session-window counts on column batches.

Same semantics as :class:`~workbench.runtime.window_ops.SessionWindowAggregateOp` with
``emit="update"`` (its module docstring has the rules: merge, tombstones, late records,
retention), for aggregations made of bare counts only (``count()``, ``agg(n="count")``), whose
accumulator is one integer per session. Everything is computed per batch with array operations
and one pass over the records in *lockstep*:

* stream time before and after each record is a running maximum of the timestamps (records
  with a ``None`` key do not advance it); the close time is stream time minus grace and gap;
* the store's ``observed`` time (the largest session end put, which decides which sessions
  are still visible) is ``max(observed, timestamps of the records before)``: a record that is
  not late puts a session ending at or after its timestamp, and a late record's timestamp is
  below stream time, so it changes nothing (this needs stream time <= observed at the start
  of the batch, which holds unless the two were restored inconsistently: such a batch goes to
  the row operator);
* the records are grouped by key; step ``k`` processes the ``k``-th record of every key at
  once (keys are independent once the times above are known), so the number of NumPy steps is
  the number of records of the busiest key in the batch. Once fewer than :data:`LOCKSTEP_MIN`
  keys are left in a step, the remaining records of those keys go through a plain loop.

The state is compact: one slot per key with a few session columns (start, end, count),
``width`` of them, enough for the sessions that can be visible at once (sessions of a key are
more than ``gap`` apart and visible ones end within ``gap + grace`` of each other), grown when
needed. Sessions that leave the retention are dropped (a changelog tombstone each), as the row
operator's store drops them. The changelog has the row store's layout (``[key, start, end]`` →
the accumulator), so either path restores the other's state.

Outputs come in Kafka Streams' order: per input record, the merged-away sessions
(``Change(None, old)``, timestamp = their end, oldest end first), then the new session
(timestamp = its end); late records and records with a ``None`` key go to the side output.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..keys import key_id
from .batch import Batch, ChangeValues, ObjectValues, StructValues, WindowedKeys, obj_array
from .fold import Part, parts_of
from .operators import TimedRowBacked
from .state import StateStore
from .window_ops import LATE, NULL_KEY, SessionWindowAggregateOp
from .window_store import META_KEY, NO_TIMESTAMP, SessionStore, apply_session_changelog

__all__ = ["ColumnarSessionStore", "SessionCountVec", "count_parts"]

#: a lockstep step with fewer keys than this hands the rest of the batch to the plain loop
LOCKSTEP_MIN = 6

START, END, CNT, DIRTY = 0, 1, 2, 3  # the planes of ColumnarSessionStore.sess
_PLAIN = frozenset({str, int, type(None)})
_INT = frozenset({int})
_BIG = np.iinfo(np.int64).max
_SMALL = np.iinfo(np.int64).min


def count_parts(agg: Any) -> list[Part] | None:
    """The parts of an aggregation made of bare counts only (``count()``, ``agg(n="count")``),
    or ``None``."""
    parts = parts_of(agg)
    if parts is None:
        return None
    if all(col is None and func == "count" for _o, col, func in parts):
        return parts
    return None


def _width(gap: int, grace: int) -> int:
    """Session columns per key: the sessions that can be visible at once, plus the new one."""
    retention = gap + grace
    visible = max(1, (retention - 1) // (gap + 1) + 1) if retention > 0 else 1
    return min(visible + 1, 8)


class ColumnarSessionStore(StateStore):
    """The sessions of a count aggregation, one slot per key (see the module docstring); its
    changelog has the row store's layout."""

    kind = "session"

    def __init__(self, name: str, changelog: str, parts: list[Part], retention: int,
                 width: int) -> None:
        super().__init__(name, changelog)
        self.names: list[str] | None = (None if parts[0][0] is None
                                        else [str(p[0]) for p in parts])
        self.retention = retention
        #: the key identity of each slot
        self.slot_keys: list[Any] = []
        self._index: Any = None  # pandas Index of slot_keys, rebuilt after new keys
        self._ints = True  # every slot key is an int
        #: per slot, 4 planes of ``width`` session columns: start, end, count (0: no
        #: session in that column) and changed-since-the-last-drain (0/1)
        self.sess = np.zeros((0, 4, width), dtype=np.int64)
        #: sessions removed since the last drain: (slots, starts, ends)
        self.removed: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        #: the largest session end ever put (restored ones included)
        self.observed = NO_TIMESTAMP
        self.last_emit = NO_TIMESTAMP
        self._meta_dirty = False

    # -- shape ------------------------------------------------------------------------------
    @property
    def width(self) -> int:
        return int(self.sess.shape[2])

    def __len__(self) -> int:
        return int((self.sess[:, CNT] > 0).sum())

    def value(self, c: int) -> Any:
        """The accumulator object of a count (what the row operator keeps)."""
        return c if self.names is None else {n: c for n in self.names}

    def slots(self, ids: np.ndarray) -> np.ndarray:
        """The slots of distinct key identities (new keys get new, empty slots)."""
        import pandas as pd

        index = self._index
        if index is None:
            keys = self.slot_keys
            if self._ints:
                try:
                    index = pd.Index(np.array(keys, dtype=np.int64))
                except OverflowError:
                    self._ints = False
            if not self._ints:
                index = pd.Index(obj_array(keys, len(keys)))
            self._index = index
        out: np.ndarray = index.get_indexer(ids).astype(np.int64, copy=False)
        new = np.flatnonzero(out < 0)
        if len(new):
            keys = self.slot_keys
            n = len(keys)
            for j, i in enumerate(new.tolist()):
                k = ids[i]
                k = k.item() if isinstance(k, np.generic) else k
                if k.__class__ is not int:
                    self._ints = False
                keys.append(k)
                out[i] = n + j
            self._index = None
            self._grow_slots(len(keys))
        return out

    def _grow_slots(self, n: int) -> None:
        have = self.sess.shape[0]
        if n > have:
            extra = max(n - have, have, 64)
            self.sess = np.concatenate(
                [self.sess, np.zeros((extra, 4, self.width), dtype=np.int64)])

    def widen(self, w: int) -> None:
        """At least ``w`` session columns per key."""
        extra = w - self.width
        if extra > 0:
            self.sess = np.concatenate(
                [self.sess, np.zeros((self.sess.shape[0], 4, extra), dtype=np.int64)], axis=2)

    def expire(self, visible: int) -> None:
        """Drop the sessions ending at or before ``visible`` (out of the retention)."""
        sess = self.sess
        dead = (sess[:, CNT] > 0) & (sess[:, END] <= visible)
        if dead.any():
            r, c = np.nonzero(dead)
            self.removed.append((r, sess[r, START, c], sess[r, END, c]))
            sess[r, CNT, c] = 0

    # -- changelog ---------------------------------------------------------------------------
    def drain_changes(self) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        keys = self.slot_keys
        if self.removed:
            sl = np.concatenate([x[0] for x in self.removed]).tolist()
            ss = np.concatenate([x[1] for x in self.removed]).tolist()
            es = np.concatenate([x[2] for x in self.removed]).tolist()
            out = [([keys[a], b, c], None) for a, b, c in zip(sl, ss, es)]
            self.removed = []
        sess = self.sess
        put = (sess[:, CNT] > 0) & (sess[:, DIRTY] > 0)
        if put.any():
            r, c = np.nonzero(put)
            value = self.value
            out.extend(([keys[a], b, e], value(n)) for a, b, e, n in zip(
                r.tolist(), sess[r, START, c].tolist(), sess[r, END, c].tolist(),
                sess[r, CNT, c].tolist()))
        sess[:, DIRTY] = 0
        if self._meta_dirty:
            out.append((META_KEY, self.last_emit))
            self._meta_dirty = False
        return out

    def discard_changes(self) -> None:
        self.removed = []
        self.sess[:, DIRTY] = 0
        self._meta_dirty = False

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        live = self.entries()
        name = None if self.names is None else self.names[0]

        def put(key: Any, start: int, end: int, v: Any) -> None:
            live[(key, start, end)] = v if name is None else v[name]

        def remove(key: Any, start: int, end: int) -> None:
            live.pop((key, start, end), None)

        count = apply_session_changelog(self, records, put, remove)
        self.load(live)
        self.removed = []
        return count

    # -- conversions -------------------------------------------------------------------------
    def entries(self) -> dict[tuple[Any, int, int], int]:
        """``{(key, start, end): count}`` of the live sessions."""
        sess = self.sess
        r, c = np.nonzero(sess[:, CNT] > 0)
        keys = self.slot_keys
        return {(keys[a], s, e): n for a, s, e, n in zip(
            r.tolist(), sess[r, START, c].tolist(), sess[r, END, c].tolist(),
            sess[r, CNT, c].tolist())}

    def load(self, live: dict[tuple[Any, int, int], int],
             dirty: set[tuple[Any, int, int]] | None = None) -> None:
        """Replace the sessions by ``live`` (those out of the retention are left out);
        ``dirty`` ones are marked changed. Slots of known keys stay."""
        floor = self.observed - self.retention
        per: dict[Any, list[tuple[int, int, int]]] = {}
        for (k, s, e), n in live.items():
            if e > floor:
                per.setdefault(k, []).append((e, s, n))
        ids = list(per)
        slots = self.slots(obj_array(ids, len(ids))) if ids else np.empty(0, dtype=np.int64)
        self.widen(max((len(x) + 1 for x in per.values()), default=1))
        sess = self.sess
        sess[:, CNT] = 0
        sess[:, DIRTY] = 0
        for slot, k in zip(slots.tolist(), ids):
            for j, (e, s, n) in enumerate(sorted(per[k])):
                changed = dirty is not None and (k, s, e) in dirty
                sess[slot, :, j] = (s, e, n, 1 if changed else 0)

    def to_row_store(self, store: SessionStore) -> None:
        """Put these sessions into a row store (for a batch only the row operator can do)."""
        sessions: dict[Any, list[list[Any]]] = {}
        for (k, s, e), n in sorted(self.entries().items(), key=lambda x: x[0][2]):
            sessions.setdefault(k, []).append([s, e, self.value(n)])
        store.sessions = sessions
        ends = [(x[1], i, k, x[0]) for i, (k, x) in enumerate(
            (k, x) for k, lst in sessions.items() for x in lst)]
        heapq.heapify(ends)
        store.ends = ends
        store._n = len(ends)
        store.observed = self.observed
        store.last_emit = self.last_emit
        store._dirty = {}

    def from_row_store(self, store: SessionStore) -> None:
        """Take the sessions back from a row store, with its changes as ours."""
        sess = self.sess
        pr, pc = np.nonzero((sess[:, CNT] > 0) & (sess[:, DIRTY] > 0))
        keys = self.slot_keys
        pending = {(keys[a], s, e) for a, s, e in zip(
            pr.tolist(), sess[pr, START, pc].tolist(), sess[pr, END, pc].tolist())}
        live = {(k, x[0], x[1]): (x[2] if self.names is None else x[2][self.names[0]])
                for k, lst in store.sessions.items() for x in lst}
        gone = [(k, s, e) for (k, s, e), v in store._dirty.items() if v is None]
        changed = pending | {(k, s, e) for (k, s, e), v in store._dirty.items()
                             if v is not None}
        self.observed = store.observed
        self.load(live, changed)
        if gone:
            slots = self.slots(obj_array([g[0] for g in gone], len(gone)))
            self.removed.append((slots, np.array([g[1] for g in gone], dtype=np.int64),
                                 np.array([g[2] for g in gone], dtype=np.int64)))
        store._dirty = {}
        store.sessions = {}
        store.ends = []

    # -- for the debugger and tools ------------------------------------------------------------
    @property
    def sessions(self) -> dict[Any, list[list[Any]]]:
        """The sessions as the row store lays them out (``sessions[key] = [[start, end,
        aggregate], ...]`` by end), built on demand."""
        out: dict[Any, list[list[Any]]] = {}
        for (k, s, e), n in sorted(self.entries().items(), key=lambda x: x[0][2]):
            out.setdefault(k, []).append([s, e, self.value(n)])
        return out


class SessionCountVec(TimedRowBacked):
    """Session-window counts with ``emit="update"`` on column batches (see the module
    docstring); ``row`` is the row operator it falls back on."""

    def __init__(self, row: SessionWindowAggregateOp, parts: list[Part]) -> None:
        self.row = row
        self.name = row.name
        self._fin = row._fin
        self.parts = parts
        self.gap = row.gap
        self.grace = row.grace
        self.retention = row.gap + row.grace
        self.store = ColumnarSessionStore(row.store.name, row.store.changelog, parts,
                                          self.retention, _width(row.gap, row.grace))
        self.stores = [self.store]
        self.side: list[Batch] = []

    def end(self) -> Batch | None:
        return None  # emit="update": every result is already out

    # -- processing -----------------------------------------------------------------------------
    def process(self, batch: Batch, port: int) -> Batch | None:
        if not len(batch):
            return None
        keys = batch.keys
        if not isinstance(keys, np.ndarray) or self.row.stream_time > self.store.observed:
            return self._by_rows(batch)
        return self._vector(batch)

    def _by_rows(self, batch: Batch) -> Batch | None:
        from .task import _ids_in, _ids_out

        row = self.row
        self.store.to_row_store(row.store)
        out = row.process(_ids_in(batch.rows()), 0)
        self.store.from_row_store(row.store)
        if row.side:
            self.side.append(Batch.from_rows(_ids_out(row.side)))
            row.side = []
        return Batch.from_rows(_ids_out(out)) if out else None

    def _vector(self, batch: Batch) -> Batch | None:
        import pandas as pd

        row = self.row
        store = self.store
        gap, grace, retention = self.gap, self.grace, self.retention
        keys = batch.keys
        n = len(batch)
        row._last_seq = batch.seq[-1].item()
        kept: np.ndarray | None = None
        nullkey: np.ndarray | None = None
        ids = keys
        if keys.dtype.kind != "i":  # objects, or floats and bools: identities as the row path
            objs = keys.tolist()
            types = set(map(type, objs))
            if type(None) in types:
                nullkey = np.fromiter((k is None for k in objs), dtype=bool, count=n)
                kept = np.flatnonzero(~nullkey)
            if not types <= _PLAIN:  # keys whose == differs from their identity
                ids = obj_array((k if k.__class__ is str or k.__class__ is int or k is None
                                 else key_id(k) for k in objs), n)
            elif types == _INT:
                with contextlib.suppress(OverflowError):  # big ints stay objects
                    ids = np.array(objs, dtype=np.int64)
            if kept is not None:
                ids = ids[kept]
        m = len(ids)
        if not m:
            assert nullkey is not None
            self._drop_rows(batch, nullkey, None, kept)
            return None
        t = batch.ts if kept is None else batch.ts[kept]
        st0 = row.stream_time
        obs0 = store.observed
        pm = np.maximum.accumulate(t)
        eff = np.maximum(pm, st0) - (grace + gap)
        vis = np.empty(m, dtype=np.int64)
        vis[0] = obs0
        np.maximum(pm[:-1], obs0, out=vis[1:])
        vis -= retention
        codes, uniq = pd.factorize(ids)
        rslot = store.slots(uniq)[codes]  # per record, its key's slot
        # outputs per record: late, the new session and its count, the old value (-1: None)
        o_late = np.zeros(m, dtype=bool)
        o_ms = t.copy()
        o_me = t.copy()
        o_cnt = np.ones(m, dtype=np.int64)
        o_old = np.full(m, -1, dtype=np.int64)
        tombs: list[tuple[np.ndarray, ...]] = []  # (record, start, end, count)
        removed = store.removed  # (slot, start, end) of sessions merged away or expired
        # steps: the k-th record of every key
        nk = len(uniq)
        if nk == m:
            steps = [np.arange(m, dtype=np.int64)]
            order = sizes = first = None
        else:
            order = np.argsort(codes, kind="stable")
            sizes = np.bincount(codes, minlength=nk)
            first = np.cumsum(sizes) - sizes
            pos = np.empty(m, dtype=np.int64)
            pos[order] = np.arange(m, dtype=np.int64) - first[codes[order]]
            by_pos = np.argsort(pos, kind="stable")
            bounds = np.searchsorted(pos[by_pos], np.arange(int(sizes.max()) + 1))
            steps = [by_pos[bounds[k]:bounds[k + 1]] for k in range(len(bounds) - 1)]
        k = 0
        for k, rows in enumerate(steps):
            if len(rows) < LOCKSTEP_MIN and k > 0:
                break
            sl = rslot[rows]
            tr = t[rows]
            x = store.sess[sl]  # (rows, 4, width): views below write into it
            ss, ee, cc = x[:, START], x[:, END], x[:, CNT]
            live = cc > 0
            alive = live & (ee > vis[rows][:, None])
            dead = live & ~alive
            if dead.any():
                r, c = np.nonzero(dead)
                removed.append((sl[r], ss[r, c], ee[r, c]))
            mrg = alive & (ee >= (tr - gap)[:, None]) & (ss <= (tr + gap)[:, None])
            if mrg.any():
                ms = np.minimum(np.where(mrg, ss, _BIG).min(1), tr)
                me = np.maximum(np.where(mrg, ee, _SMALL).max(1), tr)
                cnt = np.where(mrg, cc, 0).sum(1) + 1
                late = me < eff[rows]
                took = mrg & ~late[:, None]
                nm = took.sum(1)
                point = (nm == 1) & (ms == tr) & (me == tr)
                if point.any():
                    o_old[rows[point]] = cnt[point] - 1
                tomb = took & ~point[:, None]
                if tomb.any():  # per record, by end
                    tr_ = np.flatnonzero(tomb.any(1))
                    oc = np.argsort(np.where(tomb[tr_], ee[tr_], _BIG), axis=1, kind="stable")
                    tm = np.take_along_axis(tomb[tr_], oc, 1)
                    r, c = np.nonzero(tm)
                    tombs.append((rows[tr_[r]], np.take_along_axis(ss[tr_], oc, 1)[r, c],
                                  np.take_along_axis(ee[tr_], oc, 1)[r, c],
                                  np.take_along_axis(cc[tr_], oc, 1)[r, c]))
                if took.any():
                    r, c = np.nonzero(took)
                    removed.append((sl[r], ss[r, c], ee[r, c]))
                alive &= ~took
                o_ms[rows] = ms
                o_me[rows] = me
                o_cnt[rows] = cnt
            else:
                ms = me = tr
                cnt = np.ones(len(rows), dtype=np.int64)
                late = tr < eff[rows]
            o_late[rows] = late
            cc[~alive] = 0
            put = np.flatnonzero(~late)
            if len(put):
                free = np.argmin(alive[put], axis=1)
                if alive[put, free].any():  # more sessions than columns: one more column
                    store.widen(store.width + 1)
                    x = np.concatenate([x, np.zeros((len(rows), 4, 1), dtype=np.int64)],
                                       axis=2)
                    alive = np.hstack([alive, np.zeros((len(rows), 1), dtype=bool)])
                    free = np.argmin(alive[put], axis=1)
                x[put, START, free] = ms[put]
                x[put, END, free] = me[put]
                x[put, CNT, free] = cnt[put]
                x[put, DIRTY, free] = 1
            store.sess[sl] = x
        else:
            k = len(steps)
        if k < len(steps):  # the few keys left: one record at a time
            assert order is not None and sizes is not None and first is not None
            self._loop(k, order, sizes, first, rslot, t, eff, vis, o_late, o_ms, o_me, o_cnt,
                       o_old, tombs)
        obs = max(obs0, int(pm[-1]))
        store.observed = obs
        row.stream_time = max(st0, int(pm[-1]))
        store.expire(obs - retention)
        if o_late.any() or nullkey is not None:
            self._drop_rows(batch, nullkey, o_late, kept)
            row.dropped += int(o_late.sum())
        return self._output(batch, kept, o_late, o_ms, o_me, o_cnt, o_old, tombs)

    def _loop(self, k0: int, order: np.ndarray, sizes: np.ndarray, first: np.ndarray,
              rslot: np.ndarray, t: np.ndarray, eff: np.ndarray, vis: np.ndarray,
              o_late: np.ndarray, o_ms: np.ndarray, o_me: np.ndarray, o_cnt: np.ndarray,
              o_old: np.ndarray, tombs: list[tuple[np.ndarray, ...]]) -> None:
        """The records at positions ``k0..`` of the keys that have them, record by record."""
        gap = self.gap
        store = self.store
        t_l, eff_l, vis_l = t.tolist(), eff.tolist(), vis.tolist()
        late_rows: list[int] = []
        put_rows: list[int] = []
        put_ms: list[int] = []
        put_me: list[int] = []
        put_cnt: list[int] = []
        old_rows: list[int] = []
        old_vals: list[int] = []
        tomb_l: list[tuple[int, int, int, int]] = []
        gone: list[tuple[int, int, int]] = []
        new_state: list[tuple[int, list[list[int]]]] = []
        widest = store.width
        first_l, sizes_l = first.tolist(), sizes.tolist()
        for u in np.flatnonzero(sizes > k0).tolist():
            recs = order[first_l[u] + k0:first_l[u] + sizes_l[u]].tolist()
            slot = int(rslot[recs[0]])
            ss, ee, cc, dd = store.sess[slot].tolist()
            sess = [[s, e, c, d] for s, e, c, d in zip(ss, ee, cc, dd) if c > 0]
            for i in recs:
                ti = t_l[i]
                vi = vis_l[i]
                lo = ti - gap
                hi = ti + gap
                keep: list[list[int]] = []
                mrg: list[list[int]] = []
                ms = me = ti
                cnt = 1
                for x in sess:
                    e = x[1]
                    if e <= vi:  # out of the retention: gone for good
                        gone.append((slot, x[0], e))
                    elif e >= lo and x[0] <= hi:
                        mrg.append(x)
                        if x[0] < ms:
                            ms = x[0]
                        if e > me:
                            me = e
                        cnt += x[2]
                    else:
                        keep.append(x)
                if me < eff_l[i]:
                    late_rows.append(i)
                    sess = keep + mrg
                    continue
                if mrg:
                    if len(mrg) == 1:
                        x = mrg[0]
                        if ms == ti and me == ti:
                            old_rows.append(i)
                            old_vals.append(x[2])
                        else:
                            tomb_l.append((i, x[0], x[1], x[2]))
                    else:
                        tomb_l.extend((i, x[0], x[1], x[2]) for x in sorted(
                            mrg, key=lambda x: x[1]))
                    gone.extend((slot, x[0], x[1]) for x in mrg)
                keep.append([ms, me, cnt, 1])
                sess = keep
                put_rows.append(i)
                put_ms.append(ms)
                put_me.append(me)
                put_cnt.append(cnt)
            new_state.append((slot, sess))
            widest = max(widest, len(sess))
        store.widen(widest)
        sess_all = store.sess
        for slot, sess in new_state:
            sess_all[slot, CNT] = 0
            for j, x in enumerate(sess):
                sess_all[slot, :, j] = x
        if late_rows:
            o_late[late_rows] = True
        if put_rows:
            o_ms[put_rows] = put_ms
            o_me[put_rows] = put_me
            o_cnt[put_rows] = put_cnt
        if old_rows:
            o_old[old_rows] = old_vals
        if tomb_l:
            a = np.array(tomb_l, dtype=np.int64)
            tombs.append((a[:, 0], a[:, 1], a[:, 2], a[:, 3]))
        if gone:
            g = np.array(gone, dtype=np.int64)
            store.removed.append((g[:, 0], g[:, 1], g[:, 2]))

    # -- outputs -------------------------------------------------------------------------------
    def _output(self, batch: Batch, kept: np.ndarray | None, o_late: np.ndarray,
                o_ms: np.ndarray, o_me: np.ndarray, o_cnt: np.ndarray, o_old: np.ndarray,
                tombs: list[tuple[np.ndarray, ...]]) -> Batch | None:
        """Per record that is not late: its merged-away sessions (by end), then its session."""
        m = len(o_late)
        upd = np.flatnonzero(~o_late)
        if not len(upd):
            return None
        if tombs:
            # each record's block: its tombstones (contiguous, by end), then its update
            t_rec = np.concatenate([x[0] for x in tombs])
            ntomb = np.bincount(t_rec, minlength=m)
            count = ntomb + ~o_late
            offsets = np.cumsum(count) - count
            total = int(offsets[-1] + count[-1])
            rec = np.empty(total, dtype=np.int64)
            starts = np.empty(total, dtype=np.int64)
            ends = np.empty(total, dtype=np.int64)
            new = np.zeros(total, dtype=np.int64)
            old = np.empty(total, dtype=np.int64)
            is_tomb: np.ndarray | None = np.zeros(total, dtype=bool)
            at = offsets[upd] + ntomb[upd]
            rec[at], starts[at], ends[at] = upd, o_ms[upd], o_me[upd]
            new[at], old[at] = o_cnt[upd], o_old[upd]
            k = np.arange(len(t_rec), dtype=np.int64)
            run = np.empty(len(t_rec), dtype=bool)
            run[0] = True
            np.not_equal(t_rec[1:], t_rec[:-1], out=run[1:])
            at = offsets[t_rec] + k - np.maximum.accumulate(np.where(run, k, 0))
            rec[at] = t_rec
            starts[at] = np.concatenate([x[1] for x in tombs])
            ends[at] = np.concatenate([x[2] for x in tombs])
            old[at] = np.concatenate([x[3] for x in tombs])
            is_tomb[at] = True  # type: ignore[index]
        else:
            rec = upd
            is_tomb = None
            starts, ends, new, old = o_ms[upd], o_me[upd], o_cnt[upd], o_old[upd]
        src = rec if kept is None else kept[rec]
        inner = batch.keys[src]
        has_old = old >= 0
        names = self.store.names
        if names is None:
            new_v = new.astype(object)
            if is_tomb is not None:
                new_v[is_tomb] = None
            old_v = old.astype(object)
            if not has_old.all():
                old_v[~has_old] = None
            values = ChangeValues(ObjectValues(new_v), ObjectValues(old_v))
        else:
            present = None if is_tomb is None or not is_tomb.any() else ~is_tomb
            values = ChangeValues(
                StructValues(dict.fromkeys(names, new), present, len(new)),
                StructValues(dict.fromkeys(names, old), None if has_old.all() else has_old,
                             len(old)))
        return Batch(WindowedKeys(inner, starts, ends), values, ends, batch.seq[src], None)

    def _drop_rows(self, batch: Batch, nullkey: np.ndarray | None, late: np.ndarray | None,
                   kept: np.ndarray | None) -> None:
        """Null-key and late records to the side output, in record order, each with its
        ``workbench.dropped`` header."""
        n = len(batch)
        code = np.zeros(n, dtype=np.int8) if nullkey is None else nullkey.astype(np.int8)
        if late is not None and late.any():
            code[np.flatnonzero(late) if kept is None else kept[late]] = 2
        idx = np.flatnonzero(code)
        if not len(idx):
            return
        dropped = batch.take(idx)
        hs = dropped.header_list()
        tags = [NULL_KEY if c == 1 else LATE for c in code[idx].tolist()]
        dropped.headers = obj_array(((*h, tag) if h else (tag,) for h, tag in zip(hs, tags)),
                                    len(idx))
        self.side.append(dropped)
        if nullkey is not None:
            self.row.dropped += int(nullkey.sum())
