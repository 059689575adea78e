"""Aggregation operators: the ``aggregate`` plan node (``count``, ``reduce``, ``aggregate``,
``agg`` on grouped and windowed streams), with Kafka Streams 4.1 semantics as observed in
TopologyTestDriver (no caching; see ``docs/semantics.md`` B.1).

One operator instance per task; its stream time is the largest timestamp it has seen (it is not
persisted, as in Kafka Streams). Every output value is ``Change(new, old)`` of finalized
aggregates (``old`` is ``None`` when the key or window had no aggregate before).

**Non-windowed** (``KStreamAggregate`` / ``KStreamReduce``): records with a ``None`` key or value
are not aggregated (header ``workbench.dropped`` = ``null-key`` / ``null-value`` on the ``late``
output). Output key = group key, timestamp = max(record timestamp, previous aggregate timestamp).

**Tumbling and hopping windows** (``KStreamWindowAggregate``): a ``None`` key is dropped (stream
time not advanced); a ``None`` value *is* aggregated, as TopologyTestDriver does (the aggregate
function receives ``None``). Stream time advances before the lateness check; close time = stream
time - grace; a window ``[start, end)`` accepts the record iff ``end > close time``. Output key
``Windowed(key, start, end)``, timestamp = max record timestamp in the window, windows in
ascending start order.

**Sliding windows** (``KStreamSlidingWindowAggregate``, the reverse-iterator path Kafka Streams
takes with its built-in stores): ``None`` keys and values are dropped; a record is dropped if
``t + difference < close time``; a window ``[start, end]`` (both inclusive) is updated only if
``end >= close time``; records with ``t < difference`` take the "early" path with the combined
window ``[0, difference]``. With ``emit="update"`` the store emulates the in-memory window
store's retention (``2 * difference + grace`` counted from the largest window start stored),
which decides which old windows the algorithm still sees; with ``emit="close"`` it keeps every
window a record that is not late can look up (``3 * difference + grace + 2``), as a long
retention would (conformance finding K1).

**Session windows** (``KStreamSessionWindowAggregate``): ``None`` keys are dropped, ``None``
values are aggregated; close time = stream time - grace - gap; a record merges every visible
session of its key with ``end >= t - gap`` and ``start <= t + gap`` (gap inclusive; their
aggregates combined with ``merge``, oldest first, then the value added); it is dropped if the
merged session ends before the close time. Merged-away sessions are deleted and forwarded as
``Change(None, old)`` with timestamp = their end (also when the merged window equals one of
them), then the new session is forwarded with timestamp = its end and no headers. A session is
visible while its end is ``> (largest session end stored so far) - gap - grace``: the retention
of Kafka Streams' session store (caching off), so a record that would extend a session that
ended at or before the previous close time starts a new session instead.

A ``None`` aggregate (e.g. ``reduce`` whose first value is ``None``) deletes the window, as
Kafka's stores treat a null value: it is forwarded as ``Change(None, ...)`` and not stored.

**Late output rule**: an input record goes to the ``late`` output (header
``workbench.dropped=late``) at most once, when it was *too late for at least one* of its windows
— also when other windows of it were still open (hopping windows overlapping the close time, or
the older sliding windows a late record no longer updates). So ``late`` lists every record whose
contribution is missing from some window; the records that reached no window at all are those
among them that produced no update. (Kafka's dropped-records metric counts once per missed
window instead.)

**emit="close"** (KIP-825 ``EmitStrategy.onWindowClose()`` with TopologyTestDriver's emit
interval 0): no update output; after each record that advances the close time, the final value
of every window that closed since is emitted as ``Change(final, None)`` with the window's
aggregate timestamp (session: its end) and the closing record's headers — time windows once
``end <= close time``, sliding windows once ``end < close time``, sessions once
``end <= close time - 1`` — ordered by window start, then key (sessions: by end, then start,
then key, the order of Kafka's default RocksDB session store). Each window comes out exactly
once, with the value its last ``emit="update"`` output would have had.

Kafka Streams reads these from a window store whose default retention (size + grace) makes
windows expire at about the moment they close, so with caching off it loses most of them
(TopologyTestDriver emits nothing for worked example 1, nor for any session with the in-memory
store). workbench emits what Kafka Streams emits when its store keeps the windows: time and
sliding windows as with a long store retention, sessions as with the RocksDB store and the
default retention (a longer session retention would also let records merge into sessions
already emitted and emit them a second time).

The last close time that emitted is kept in the store (reserved changelog key), like Kafka
Streams' processor metadata: after a restart (stream time starts again from the first new
record), windows it had already closed still count as closed (records for them are late), so
nothing is emitted twice.

**End of a bounded input** (:meth:`end`): with ``emit="close"`` every remaining window is
emitted in the same order, as if stream time jumped to infinity, and removed; the recorded close
time moves past them. With ``emit="update"`` nothing more comes out (every update was already
emitted) and the state stays.

State stays bounded: windows are removed from their stores once they can no longer change (time
windows at close time, sessions once they leave the retention, after their final value is
emitted with ``emit="close"``; sliding windows when they leave the retention period
``2 * difference + grace``), and each removal is a changelog tombstone.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Any

from ..aggregations import Aggregation
from ..keys import unwrap_key
from ..plan import PlanNode, changelog_topic
from ..types import Change
from ..windows import Hopping, Session, Sliding, Tumbling, Windowed
from .operators import Batch, Operator, Rec, StepFailure
from .task import OPERATOR_FACTORIES, OpContext
from .window_store import (
    NO_TIMESTAMP,
    AggKVStore,
    SessionStore,
    SlidingWindowStore,
    TimeWindowStore,
)

__all__ = [
    "KeyAggregateOp",
    "SessionWindowAggregateOp",
    "SlidingWindowAggregateOp",
    "TimeWindowAggregateOp",
    "make_aggregate",
]

LATE = ("workbench.dropped", b"late")
NULL_KEY = ("workbench.dropped", b"null-key")
NULL_VALUE = ("workbench.dropped", b"null-value")

_FAR_PAST = -(2**62)
#: builds a NamedTuple (Windowed, Change) without its Python-level __new__
_tnew = tuple.__new__


def _fallback_order(key: Any) -> tuple[str, str]:
    key = unwrap_key(key)
    return (type(key).__name__, repr(key))


def _sorted_keys(keys: Any) -> list[Any]:
    """Keys in a deterministic order: natural order, else by type name and repr."""
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=_fallback_order)


def _sort_by_time_then_key(items: list[tuple[Any, ...]]) -> None:
    """Sort ``[(time, key, ...)]`` by time, then key (Kafka's time-ordered store order)."""
    try:
        items.sort(key=lambda x: (x[0], x[1]))
    except TypeError:
        items.sort(key=lambda x: (x[0], _fallback_order(x[1])))


class _AggregateOp(Operator):
    """What every aggregation operator shares: the aggregate functions, the store name, the
    side output and failure reporting."""

    store: Any

    def __init__(self, pn: PlanNode, ctx: OpContext, agg: Aggregation | None = None) -> None:
        node = pn.node
        assert node is not None
        params = node.params
        self.name = pn.name
        self.defined_at = node.defined_at
        self.side: Batch = []
        #: records sent to the late output (late, null key or null value)
        self.dropped = 0
        self.emit_close = params.get("emit", "update") == "close"
        if agg is None:  # a cogroup's input gives its own (cogroup_ops)
            agg = params["agg"]
        self.agg = agg
        init: Callable[[], Any] = agg.init
        add: Callable[[Any, Any], Any] = agg.add
        merge: Callable[[Any, Any], Any] | None = agg.merge
        if agg.reducer:
            reduce_fn = agg.add
            merge_fn = agg.merge or agg.add

            def _reduce_init() -> Any:
                return None

            def _reduce_add(acc: Any, value: Any) -> Any:
                return value if acc is None else reduce_fn(acc, value)

            def _reduce_merge(a: Any, b: Any) -> Any:
                if a is None:
                    return b
                return a if b is None else merge_fn(a, b)

            init, add, merge = _reduce_init, _reduce_add, _reduce_merge
        self._init = init
        self._add = add
        self._merge = merge
        self._fin: Callable[[Any], Any] | None = agg.finalize
        #: count(): the aggregate is inlined as ``acc + 1``
        self._is_count = agg.kind == "count" and not agg.reducer and agg.finalize is None
        suffix, _kind = params["stores"][0]
        store_name = f"{node.name}-{suffix}" if suffix else node.name
        spec = ctx.stores.get(store_name)
        self._store_name = store_name
        self._changelog = (spec.changelog if spec is not None
                           else changelog_topic(ctx.app_id, store_name))
        self._last_seq = -1

    # -- helpers ------------------------------------------------------------------------------
    def _fail(self, record: Rec, exc: BaseException) -> StepFailure:
        return StepFailure(self.name, self.defined_at, record, exc)

    def _drop(self, record: Rec, header: tuple[str, bytes]) -> None:
        k, v, t, s, h = record
        self.side.append((k, v, t, s, (*h, header) if h else (header,)))
        self.dropped += 1

    def _final(self, acc: Any, record: Rec | None) -> Any:
        fin = self._fin
        if fin is None:
            return acc
        try:
            return fin(acc)
        except Exception as exc:
            raise self._fail(record or (None, acc, 0, self._last_seq, None), exc) from exc


# ================================================================================ non-windowed
class KeyAggregateOp(_AggregateOp):
    """``KGroupedStream.aggregate/count/reduce`` → a table keyed by the group key."""

    def __init__(self, pn: PlanNode, ctx: OpContext, agg: Aggregation | None = None) -> None:
        super().__init__(pn, ctx, agg)
        self.store = AggKVStore(self._store_name, self._changelog)
        self.stores = [self.store]

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        append = out.append
        data = self.store.data
        dirty = self.store._dirty
        init, add, fin = self._init, self._add, self._fin
        for r in batch:
            k, v, t, s, h = r
            if k is None:
                self._drop(r, NULL_KEY)
                continue
            if v is None:
                self._drop(r, NULL_VALUE)
                continue
            e = data.get(k)
            try:
                if e is None or e[0] is None:
                    acc = add(init(), v)
                    ts = t
                    old = None
                else:
                    prev, ts = e
                    acc = add(prev, v)
                    if t > ts:
                        ts = t
                    old = prev if fin is None else fin(prev)
                new = acc if fin is None else fin(acc)
            except Exception as exc:
                raise self._fail(r, exc) from exc
            if acc is None:  # a null aggregate deletes the key, as in Kafka Streams
                data.pop(k, None)
                dirty[k] = None
            else:
                e = (acc, ts)
                data[k] = e
                dirty[k] = e
            append((k, Change(new, old), ts, s, h))
        return out


# ====================================================================== tumbling and hopping
class TimeWindowAggregateOp(_AggregateOp):
    """Tumbling and hopping windows (``TimeWindows``)."""

    def __init__(self, pn: PlanNode, ctx: OpContext, spec: Tumbling | Hopping,
                 agg: Aggregation | None = None) -> None:
        super().__init__(pn, ctx, agg)
        self.size = spec.size
        self.advance = spec.advance
        self.grace = spec.grace
        self.stream_time = NO_TIMESTAMP
        self.store = TimeWindowStore(self._store_name, self._changelog)
        self.stores = [self.store]

    def process(self, batch: Batch, port: int) -> Batch:
        if self.advance == self.size:
            out = self._process_tumbling(batch)
        else:
            out = self._process_hopping(batch)
        if batch:
            self._last_seq = batch[-1][3]
        return out

    def _process_tumbling(self, batch: Batch) -> Batch:
        # the hot path of the engine's benchmarks: locals only, the current window cached
        out: Batch = []
        append = out.append
        store = self.store
        windows = store.windows
        dirty = store.dirty
        starts = store.starts
        size = self.size
        grace = self.grace
        init, add, fin = self._init, self._add, self._fin
        is_count = self._is_count
        emit_close = self.emit_close
        st = self.stream_time
        close = st - grace
        # acceptance threshold: the close time, or (after a restart, emit="close") the close
        # time of the last emission if that is later
        eff = max(close, store.last_emit) if emit_close else close
        cur = None
        w: dict[Any, list[Any]] = {}
        ds: set[Any] = set()
        for r in batch:
            k, v, t, s, h = r
            if k is None:
                self._drop(r, NULL_KEY)
                continue
            if t > st:
                st = t
                close = t - grace
                if close > eff:
                    eff = close
                    if starts and starts[0] + size <= close:
                        self._close_windows(close, s, h, out)
                        cur = None
            start = t - t % size
            if t < 0 or start + size <= eff:
                self._drop(r, LATE)
                continue
            if start != cur:
                got = windows.get(start)
                if got is None:
                    got = windows[start] = {}
                    heapq.heappush(starts, start)
                w = got
                got_ds = dirty.get(start)
                if got_ds is None:
                    got_ds = dirty[start] = set()
                ds = got_ds
                cur = start
            e = w.get(k)
            try:
                if e is None:
                    acc = 1 if is_count else add(init(), v)
                    if acc is not None:
                        w[k] = [acc, t]
                    ts = t
                    old = None
                else:
                    old = e[0]
                    acc = old + 1 if is_count else add(old, v)
                    ts = e[1]
                    if t > ts:
                        e[1] = ts = t
                    if acc is None:  # a null aggregate deletes the window, as in Kafka
                        del w[k]
                    else:
                        e[0] = acc
                    if not emit_close and fin is not None:
                        old = fin(old)
                ds.add(k)
                if not emit_close:
                    append((_tnew(Windowed, (k, start, start + size)),
                            _tnew(Change, (acc if fin is None else fin(acc), old)), ts, s, h))
            except Exception as exc:
                raise self._fail(r, exc) from exc
        self.stream_time = st
        return out

    def _process_hopping(self, batch: Batch) -> Batch:
        out: Batch = []
        append = out.append
        store = self.store
        windows = store.windows
        dirty = store.dirty
        starts = store.starts
        size = self.size
        advance = self.advance
        grace = self.grace
        init, add, fin = self._init, self._add, self._fin
        emit_close = self.emit_close
        st = self.stream_time
        close = st - grace
        eff = max(close, store.last_emit) if emit_close else close
        for r in batch:
            k, v, t, s, h = r
            if k is None:
                self._drop(r, NULL_KEY)
                continue
            if t > st:
                st = t
                close = t - grace
                if close > eff:
                    eff = close
                    if starts and starts[0] + size <= close:
                        self._close_windows(close, s, h, out)
            # TimeWindows.windowsFor: epoch-aligned starts, never below 0, ascending
            start = t - size + advance
            if start < 0:
                start = 0
            start = start // advance * advance
            missed = t < 0
            while start <= t:
                end = start + size
                if end <= eff:
                    missed = True
                    start += advance
                    continue
                w = windows.get(start)
                if w is None:
                    w = windows[start] = {}
                    heapq.heappush(starts, start)
                e = w.get(k)
                try:
                    if e is None:
                        acc = add(init(), v)
                        if acc is not None:
                            w[k] = [acc, t]
                        ts = t
                        old = None
                    else:
                        old = e[0]
                        acc = add(old, v)
                        ts = e[1]
                        if t > ts:
                            e[1] = ts = t
                        if acc is None:
                            del w[k]
                        else:
                            e[0] = acc
                        if not emit_close and fin is not None:
                            old = fin(old)
                    if not emit_close:
                        append((_tnew(Windowed, (k, start, end)),
                                _tnew(Change, (acc if fin is None else fin(acc), old)), ts, s,
                                h))
                except Exception as exc:
                    raise self._fail(r, exc) from exc
                ds = dirty.get(start)
                if ds is None:
                    dirty[start] = {k}
                else:
                    ds.add(k)
                start += advance
            if missed:
                self._drop(r, LATE)
        self.stream_time = st
        return out

    def _close_windows(self, close: int, seq: int, headers: Any, out: Batch) -> None:
        """Remove the windows with ``end <= close``; with emit="close", emit their final
        values first (by start, then key)."""
        store = self.store
        starts = store.starts
        size = self.size
        emit = self.emit_close
        append = out.append
        fin = self._fin
        while starts and starts[0] + size <= close:
            start = heapq.heappop(starts)
            w = store.pop_window(start)
            if not w or not emit:
                continue
            end = start + size
            keys = _sorted_keys(w)
            try:
                for k in keys:
                    acc, ts = w[k]
                    append((_tnew(Windowed, (k, start, end)),
                            _tnew(Change, (acc if fin is None else fin(acc), None)), ts, seq,
                            headers))
            except Exception as exc:
                raise self._fail((k, acc, ts, seq, headers), exc) from exc
        if emit:
            store.set_last_emit(close)

    def end(self) -> Batch:
        if not self.emit_close:
            return []
        out: Batch = []
        store = self.store
        if store.starts:
            last_end = max(store.starts) + self.size
            self._close_windows(last_end, self._last_seq, None, out)
        return out


# ================================================================================== sliding
class SlidingWindowAggregateOp(_AggregateOp):
    """Sliding windows (``SlidingWindows``), following ``KStreamSlidingWindowAggregate``."""

    def __init__(self, pn: PlanNode, ctx: OpContext, spec: Sliding,
                 agg: Aggregation | None = None) -> None:
        super().__init__(pn, ctx, agg)
        self.d = spec.difference
        self.grace = spec.grace
        self.stream_time = NO_TIMESTAMP
        # emit="update": the in-memory store's retention, which decides what Kafka Streams'
        # lookups still see. emit="close" emits what a long retention gives (as for time
        # windows): a record that is not late (t >= close - d) looks up windows starting at
        # t - 2d or later, so keeping 3d + grace (+2: the right window's start and the
        # inclusive bound) behind the largest start loses none of them (K1).
        retention = 2 * spec.difference + spec.grace
        if self.emit_close:
            retention = 3 * spec.difference + spec.grace + 2
        self.store = SlidingWindowStore(self._store_name, self._changelog, retention)
        self.store.track_pending = self.emit_close
        self.stores = [self.store]
        # per-record scratch
        self._close = 0
        self._missed = 0
        self._out: Batch = []
        self._rec: Rec = (None, None, 0, -1, None)

    def init(self, ctx: Any) -> None:
        store = self.store
        last = store.last_emit
        store.rebuild(self.emit_close, _FAR_PAST if last == NO_TIMESTAMP else last - self.d)

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        self._out = out
        store = self.store
        d = self.d
        grace = self.grace
        emit_close = self.emit_close
        st = self.stream_time
        close = st - grace
        eff = max(close, store.last_emit) if emit_close else close
        for r in batch:
            k, v, t, s, h = r
            if k is None:
                self._drop(r, NULL_KEY)
                continue
            if v is None:
                self._drop(r, NULL_VALUE)
                continue
            advanced = False
            if t > st:
                st = t
                close = t - grace
                if close > eff:
                    eff = close
                    advanced = True
            store.expire()
            if t + 1 + d <= eff:
                self._drop(r, LATE)
                continue
            self._close = eff
            self._missed = 0
            self._rec = r
            try:
                if t < d:
                    self._early(k, v, t)
                else:
                    self._reverse(k, v, t)
            except StepFailure:
                raise
            except Exception as exc:
                raise self._fail(r, exc) from exc
            if self._missed:
                self._drop(r, LATE)
            if emit_close and advanced:
                self._emit_closed(eff, s, h)
        self.stream_time = st
        if batch:
            self._last_seq = batch[-1][3]
        return out

    # -- the algorithm --------------------------------------------------------------------------
    def _update(self, k: Any, v: Any, t: int, start: int, base: tuple[Any, int],
                exists: bool) -> None:
        """Add the record to window ``start`` whose aggregate is ``base`` (stored or new)."""
        d = self.d
        end = start + d
        if end < self._close:
            self._missed += 1
            return
        acc, ts = base
        new = self._add(acc, v)
        ts = t if acc is None or t > ts else ts
        self.store.put(k, start, (new, ts))
        if not self.emit_close:
            fin = self._fin
            r = self._rec
            if fin is None:
                change = Change(new, acc if exists else None)
            else:
                change = Change(fin(new), fin(acc) if exists else None)
            self._out.append((Windowed(k, start, end), change, ts, r[3], r[4]))

    def _create_right_window(self, k: Any, t: int, value: tuple[Any, int]) -> None:
        """The current record's right window ``[t+1, t+1+d]`` gets ``value`` as it is."""
        start = t + 1
        self.store.put(k, start, value)
        if not self.emit_close:
            fin = self._fin
            acc = value[0]
            r = self._rec
            self._out.append((Windowed(k, start, start + self.d),
                              Change(acc if fin is None else fin(acc), None), value[1], r[3],
                              r[4]))

    def _reverse(self, k: Any, v: Any, t: int) -> None:
        d = self.d
        seen: set[int] = set()
        left_agg: tuple[Any, int] | None = None
        right_agg: tuple[Any, int] | None = None
        left_created = False
        right_created = False
        prev_ts: int | None = None
        entry = self.store.keys.get(k)
        if entry is not None:
            starts, values = entry
            lo = t - 2 * d
            if lo < 0:
                lo = 0
            i = bisect_right(starts, t + 1) - 1
            while i >= 0:
                start = starts[i]
                if start < lo:
                    break
                seen.add(start)
                val = values[start]
                end = start + d
                if start == t + 1:
                    right_created = True
                elif end > t:
                    if right_agg is None:
                        right_agg = val
                    self._update(k, v, t, start, val, True)
                elif end == t:
                    left_created = True
                    self._update(k, v, t, start, val, True)
                    if val[1] < t:
                        prev_ts = val[1]
                    else:
                        return
                else:
                    left_agg = val
                    prev_ts = val[1]
                    break
                i -= 1
        # the previous record's right window
        if prev_ts is not None:
            ps = prev_ts + 1
            if ps not in seen and ps + d >= t:
                self._update(k, v, t, ps, (self._init(), t), False)
        # the current record's left window
        if not left_created:
            if prev_ts is not None and left_agg is not None and t - d <= prev_ts:
                base = (left_agg[0], t)
            else:
                base = (self._init(), t)
            self._update(k, v, t, t - d, base, False)
        # the current record's right window
        if not right_created and right_agg is not None and right_agg[1] > t:
            self._create_right_window(k, t, right_agg)

    def _early(self, k: Any, v: Any, t: int) -> None:
        """A record with ``t < d``: its left window would start below 0, so it goes into the
        combined window ``[0, d]``."""
        combined: tuple[Any, int] | None = None
        right_agg: tuple[Any, int] | None = None
        right_created = False
        seen: set[int] = set()
        prev_ts: int | None = None
        entry = self.store.keys.get(k)
        if entry is not None:
            starts, values = entry
            i = bisect_left(starts, 0)
            n = len(starts)
            while i < n:
                start = starts[i]
                if start > t + 1:
                    break
                seen.add(start)
                val = values[start]
                if start == 0:
                    combined = val
                    if val[1] < t:
                        prev_ts = val[1]
                elif start <= t:
                    right_agg = val
                    self._update(k, v, t, start, val, True)
                else:
                    right_created = True
                i += 1
        if right_agg is None and combined is not None and combined[1] > t:
            right_agg = combined
        if not right_created and right_agg is not None and right_agg[1] > t:
            self._create_right_window(k, t, right_agg)
        if prev_ts is not None and prev_ts + 1 not in seen:
            self._update(k, v, t, prev_ts + 1, (self._init(), t), False)
        if combined is None:
            self._update(k, v, t, 0, (self._init(), t), False)
        else:
            self._update(k, v, t, 0, combined, True)

    # -- emit on close -------------------------------------------------------------------------
    def _emit_closed(self, close: int, seq: int, headers: Any, everything: bool = False) -> None:
        """Emit the final value of every pending window with ``end < close`` (every pending
        window with ``everything``), by start, then key."""
        store = self.store
        pending = store.pending
        d = self.d
        due: list[tuple[Any, ...]] = []
        while pending and (everything or pending[0][0] + d < close):
            start, _n, key = heapq.heappop(pending)
            val = store.get(key, start)
            if val is not None:
                due.append((start, key, val))
        if due:
            _sort_by_time_then_key(due)
            append = self._out.append
            for start, key, (acc, ts) in due:
                append((Windowed(key, start, start + d), Change(self._final(acc, None), None),
                        ts, seq, headers))
        store.set_last_emit(close)

    def end(self) -> Batch:
        store = self.store
        if not self.emit_close or not store.pending:
            return []
        out: Batch = []
        self._out = out
        last_end = max(p[0] for p in store.pending) + self.d
        self._emit_closed(max(last_end + 1, store.last_emit), self._last_seq, None,
                          everything=True)
        return out


# ================================================================================== session
class SessionWindowAggregateOp(_AggregateOp):
    """Session windows (``SessionWindows``), following ``KStreamSessionWindowAggregate``."""

    def __init__(self, pn: PlanNode, ctx: OpContext, spec: Session,
                 agg: Aggregation | None = None) -> None:
        super().__init__(pn, ctx, agg)
        self.gap = spec.gap
        self.grace = spec.grace
        self.stream_time = NO_TIMESTAMP
        self.store = SessionStore(self._store_name, self._changelog)
        self.stores = [self.store]
        self._purge_at = _FAR_PAST
        #: count puts Kafka's session store refuses (an input of a cogroup behind another)
        self.count_refused = False
        if self._merge is None:  # pragma: no cover - the DSL requires merge for sessions
            raise ValueError("session windows need an aggregation with merge")

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        append = out.append
        store = self.store
        sessions = store.sessions
        ends = store.ends
        dirty = store._dirty
        heappush = heapq.heappush
        gap = self.gap
        grace = self.grace
        retention = gap + grace
        emit_close = self.emit_close
        init, add, fin = self._init, self._add, self._fin
        merge = self._merge
        assert merge is not None
        count_refused = self.count_refused
        st = self.stream_time
        close = st - grace - gap
        eff = max(close, store.last_emit) if emit_close else close
        # emit="update" forgets expired sessions in steps of ``purge_step`` (lookups skip them
        # meanwhile), so that memory stays bounded without a purge per record
        purge_step = max(1, retention // 4)
        purge_at = self._purge_at
        for r in batch:
            k, v, t, s, h = r
            if k is None:
                self._drop(r, NULL_KEY)
                continue
            # sessions ending at or before ``visible`` have left the store's retention (Kafka's
            # in-memory session store counts it from the largest end stored so far)
            observed = store.observed
            visible = observed - retention
            advanced = False
            if t > st:
                st = t
                close = t - grace - gap
                if close > eff:
                    eff = close
                    advanced = True
                if not emit_close and visible >= purge_at:
                    self._purge(visible)
                    purge_at = self._purge_at = visible + purge_step
            found = sessions.get(k)
            ms = me = t
            first = -1  # index in ``found`` of the first merged session
            nmerged = 0
            try:
                acc = init()
                if found:
                    lo = t - gap
                    hi = t + gap
                    for i, x in enumerate(found):
                        xe = x[1]
                        if xe < lo or xe <= visible:
                            continue
                        if x[0] > hi:
                            break
                        if first < 0:
                            first = i
                        nmerged += 1
                        acc = merge(acc, x[2])
                        if x[0] < ms:
                            ms = x[0]
                        if xe > me:
                            me = xe
            except Exception as exc:
                raise self._fail(r, exc) from exc
            if me < eff:
                self._drop(r, LATE)
            else:
                old = None
                try:
                    if nmerged:
                        assert found is not None
                        merged = found[first:first + nmerged]
                        if ms != t or me != t:
                            del found[first:first + nmerged]
                            for x in merged:
                                dirty[(k, x[0], x[1])] = None
                                if not emit_close:
                                    xa = x[2]
                                    append((_tnew(Windowed, (k, x[0], x[1])),
                                            _tnew(Change, (None, xa if fin is None else fin(xa))),
                                            x[1], s, None))
                        else:
                            old = merged[0][2]
                    acc = add(acc, v)
                    if not emit_close:
                        if fin is None:
                            change = _tnew(Change, (acc, old))
                        else:
                            change = _tnew(Change, (None if acc is None else fin(acc),
                                                    None if old is None else fin(old)))
                except Exception as exc:
                    raise self._fail(r, exc) from exc
                if acc is None:
                    # Kafka's session store treats a null aggregate as a delete
                    store.remove(k, ms, me)
                    if me > observed:
                        store.observed = me
                elif old is not None:  # the same window [t, t] again: replace its aggregate
                    assert found is not None
                    found[first][2] = acc
                    dirty[(k, ms, me)] = acc
                else:
                    if found is None:
                        found = sessions[k] = []
                    i = first if nmerged else 0
                    n = len(found)
                    while i < n and found[i][1] < me:
                        i += 1
                    if i < n and found[i][1] == me and found[i][0] == ms:
                        # an expired session with the same window (not visible any more)
                        found[i][2] = acc
                    else:
                        found.insert(i, [ms, me, acc])
                        c = store._n = store._n + 1
                        heappush(ends, (me, c, k, ms))
                    dirty[(k, ms, me)] = acc
                    if me > observed:
                        store.observed = me
                if count_refused and acc is not None and me <= store.observed - retention:
                    self.dropped += 1  # Kafka's session store refuses this put (cogroup, D17)
                if not found:
                    sessions.pop(k, None)
                if not emit_close:
                    append((_tnew(Windowed, (k, ms, me)), change, me, s, None))
            if emit_close and advanced:
                self._emit_closed(eff, s, h, out)
        self.stream_time = st
        if batch:
            self._last_seq = batch[-1][3]
        return out

    def _purge(self, close: int) -> None:
        """emit="update": forget the sessions with ``end <= close`` (they have left the
        retention period: they can no longer change or merge)."""
        store = self.store
        ends = store.ends
        while ends and ends[0][0] <= close:
            end, _n, key, start = heapq.heappop(ends)
            store.remove(key, start, end)

    def _emit_closed(self, close: int, seq: int, headers: Any, out: Batch,
                     everything: bool = False) -> None:
        """emit="close": emit and forget the sessions with ``end <= close - 1`` (by end, then
        start, then key)."""
        store = self.store
        ends = store.ends
        due: list[tuple[Any, ...]] = []
        while ends and (everything or ends[0][0] < close):
            end, _n, key, start = heapq.heappop(ends)
            x = store.remove(key, start, end)
            if x is not None:
                due.append((end, start, key, x[2]))
        if due:
            # Kafka's default (RocksDB) session store: by end, then start, then key
            try:
                due.sort(key=lambda x: (x[0], x[1], x[2]))
            except TypeError:
                due.sort(key=lambda x: (x[0], x[1], _fallback_order(x[2])))
            append = out.append
            for end, start, key, acc in due:
                append((Windowed(key, start, end), Change(self._final(acc, None), None), end,
                        seq, headers))
        store.set_last_emit(close)

    def end(self) -> Batch:
        store = self.store
        if not self.emit_close or not store.sessions:
            return []
        out: Batch = []
        last_end = max(x[1] for lst in store.sessions.values() for x in lst)
        self._emit_closed(max(last_end + 1, store.last_emit), self._last_seq, None, out,
                          everything=True)
        return out


# ================================================================================== factory
def make_aggregate(pn: PlanNode, ctx: OpContext) -> Operator:
    """Build the operator of an ``aggregate`` plan node from its window spec."""
    node = pn.node
    assert node is not None
    if node.params.get("table_input"):  # a re-grouped table (regroup_ops)
        from .regroup_ops import TableAggregateOp

        return TableAggregateOp(pn, ctx)
    if node.params.get("cogroup"):  # several grouped streams (cogroup_ops)
        from .cogroup_ops import CogroupOp

        return CogroupOp(pn, ctx)
    window = node.params.get("window")
    if window is None:
        key_op = KeyAggregateOp(pn, ctx)
        from .fold import parts_of

        key_parts = parts_of(key_op.agg)
        if key_parts is not None and ctx.vectorize:
            from .agg_vec import KeyAggregateVec

            return KeyAggregateVec(key_op, key_parts)
        return key_op
    if isinstance(window, Tumbling | Hopping):
        row = TimeWindowAggregateOp(pn, ctx, window)
        from .fold import parts_of

        parts = parts_of(row.agg)
        if parts is not None and ctx.vectorize:
            from .window_vec import TimeWindowAggregateVec

            return TimeWindowAggregateVec(row, parts)
        return row
    if isinstance(window, Sliding):
        return SlidingWindowAggregateOp(pn, ctx, window)
    if isinstance(window, Session):
        session = SessionWindowAggregateOp(pn, ctx, window)
        if ctx.vectorize and not session.emit_close:
            from .session_vec import SessionCountVec, count_parts

            counts = count_parts(session.agg)
            if counts is not None:
                return SessionCountVec(session, counts)
        return session
    raise TypeError(f"step {pn.name!r}: unknown window {window!r}")


OPERATOR_FACTORIES["aggregate"] = make_aggregate
