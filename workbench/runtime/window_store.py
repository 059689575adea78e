"""State stores of the aggregation operators: per-key aggregates, time windows, sliding windows
and sessions.

Each store keeps its data in plain dicts and lists laid out for the operator that owns it (the
operators in :mod:`workbench.runtime.window_ops` read and write these structures directly, so
that the per-record path is a few dict operations) and tracks which entries changed since the
last commit, so :meth:`drain_changes` can hand the engine JSON-friendly changelog records:

=====================  ===============================  ==============================
store                  changelog key                    changelog value
=====================  ===============================  ==============================
:class:`AggKVStore`    ``key``                          ``[aggregate, timestamp]``
:class:`TimeWindowStore`  ``[key, window_start]``       ``[aggregate, timestamp]``
:class:`SlidingWindowStore`  ``[key, window_start]``    ``[aggregate, timestamp]``
:class:`SessionStore`  ``[key, start, end]``            ``aggregate``
=====================  ===============================  ==============================

``None`` values are deletes (tombstones). Window stores also keep one reserved entry,
:data:`META_KEY` → the last window close time at which an ``emit="close"`` aggregation emitted
final results (Kafka Streams keeps it in processor metadata committed with the offsets); it makes
a restarted aggregation not emit a window twice.

Keys come back from a JSON changelog with tuples turned into lists; :func:`tuplify` turns them
back (a list can never be a key, since keys are hashable).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from ..keys import key_id
from .state import KeyValueStore, StateStore

__all__ = [
    "META_KEY",
    "NO_TIMESTAMP",
    "AggKVStore",
    "SessionStore",
    "SlidingWindowStore",
    "TimeWindowStore",
    "apply_session_changelog",
    "tuplify",
]

#: reserved changelog key of a window store: the last emit-on-close window close time
META_KEY = "workbench.lastEmitWindowCloseTime"
#: "no timestamp yet" (Kafka's ConsumerRecord.NO_TIMESTAMP)
NO_TIMESTAMP = -1


def tuplify(value: Any) -> Any:
    """Lists (from a JSON changelog) back to tuples, recursively."""
    if isinstance(value, list):
        return tuple(tuplify(v) for v in value)
    return value


def _replay(store: Any, records: Iterable[tuple[Any, Any]],
            entry: Callable[[Any, Any], Any]) -> int:
    """Hand a store's changelog records to ``entry(key, value)``, the ``META_KEY`` record
    setting ``store.last_emit`` instead; the number of records read."""
    count = 0
    for k, v in records:
        count += 1
        if k == META_KEY:
            store.last_emit = NO_TIMESTAMP if v is None else int(v)
        else:
            entry(k, v)
    return count


def apply_window_changelog(store: Any, records: Iterable[tuple[Any, Any]],
                           put: Callable[[Any, int, Any], Any],
                           remove: Callable[[Any, int], Any]) -> int:
    """Replay a time-window store's changelog (``[key, start] -> [accumulator, ts]``, ``None``
    to remove, plus the ``META_KEY`` record) through ``put``/``remove``, setting
    ``store.last_emit`` on the way; the number of records read. The row store and the columnar
    one read the same layout."""
    def entry(k: Any, v: Any) -> None:
        key, start = key_id(tuplify(k[0])), int(k[1])
        if v is None:
            remove(key, start)
        else:
            put(key, start, v)
    return _replay(store, records, entry)


def apply_session_changelog(store: Any, records: Iterable[tuple[Any, Any]],
                            put: Callable[[Any, int, int, Any], Any],
                            remove: Callable[[Any, int, int], Any]) -> int:
    """Replay a session store's changelog (``[key, start, end] -> value``, ``None`` to remove,
    plus the ``META_KEY`` record) through ``put``/``remove``, setting ``store.last_emit`` and
    ``store.observed`` (the largest session end) on the way; the number of records read. The
    row store and the columnar one read the same layout."""
    def entry(k: Any, v: Any) -> None:
        key, start, end = key_id(tuplify(k[0])), int(k[1]), int(k[2])
        if end > store.observed:
            store.observed = end
        if v is None:
            remove(key, start, end)
        else:
            put(key, start, end, v)
    return _replay(store, records, entry)


class AggKVStore(KeyValueStore):
    """Per-key aggregates of a non-windowed aggregation: ``data[key] = (aggregate, ts)``."""

    kind = "kv"

    def decode_key(self, key: Any) -> Any:
        return key_id(tuplify(key))

    def drain_changes(self) -> list[tuple[Any, Any]]:
        if not self._dirty:
            return []
        out = [(k, None if v is None else [v[0], v[1]]) for k, v in self._dirty.items()]
        self._dirty = {}
        return out

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        count = 0
        data = self.data
        for k, v in records:
            key = key_id(tuplify(k))
            if v is None:
                data.pop(key, None)
            else:
                data[key] = (v[0], v[1])
            count += 1
        return count


class _WindowStoreBase(StateStore):
    """Shared: the emit-on-close metadata entry."""

    kind = "window"

    def __init__(self, name: str, changelog: str) -> None:
        super().__init__(name, changelog)
        #: window close time of the last emit-on-close emission (survives restarts)
        self.last_emit = NO_TIMESTAMP
        self._meta_dirty = False

    def set_last_emit(self, close_time: int) -> None:
        """Record the close time of an emit-on-close emission (written to the changelog)."""
        if close_time != self.last_emit:
            self.last_emit = close_time
            self._meta_dirty = True

    def _drain_meta(self, out: list[tuple[Any, Any]]) -> None:
        if self._meta_dirty:
            out.append((META_KEY, self.last_emit))
            self._meta_dirty = False


class TimeWindowStore(_WindowStoreBase):
    """Tumbling and hopping windows, laid out by window start:
    ``windows[start][key] = [aggregate, ts]``.

    ``starts`` is a min-heap of the window starts present (entries of removed windows are
    skipped when popped), so windows close in start order. ``dirty[start]`` holds the keys of
    window ``start`` changed since the last drain.
    """

    #: set only when a cogroup shares the store (the largest window start put so far)
    observed: int

    def __init__(self, name: str, changelog: str) -> None:
        super().__init__(name, changelog)
        self.windows: dict[int, dict[Any, list[Any]]] = {}
        self.starts: list[int] = []
        self.dirty: dict[int, set[Any]] = {}

    def pop_window(self, start: int) -> dict[Any, list[Any]] | None:
        """Remove window ``start`` (every key of it becomes a tombstone in the changelog)."""
        w = self.windows.pop(start, None)
        if w:
            ds = self.dirty.get(start)
            if ds is None:
                self.dirty[start] = set(w)
            else:
                ds.update(w)
        return w

    def discard_changes(self) -> None:
        super().discard_changes()
        self.dirty = {}

    def drain_changes(self) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        if self.dirty:
            windows = self.windows
            for start, keys in self.dirty.items():
                w = windows.get(start)
                for k in keys:
                    e = w.get(k) if w is not None else None
                    out.append(([k, start], None if e is None else [e[0], e[1]]))
            self.dirty = {}
        self._drain_meta(out)
        return out

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        count = 0
        windows = self.windows
        for k, v in records:
            count += 1
            if k == META_KEY:
                self.last_emit = NO_TIMESTAMP if v is None else int(v)
                continue
            key, start = key_id(tuplify(k[0])), int(k[1])
            if v is None:
                w = windows.get(start)
                if w is not None:
                    w.pop(key, None)
                    if not w:
                        del windows[start]
            else:
                windows.setdefault(start, {})[key] = [v[0], v[1]]
        self.starts = sorted(windows)
        return count

    def __len__(self) -> int:
        return sum(len(w) for w in self.windows.values())


class SlidingWindowStore(_WindowStoreBase):
    """Sliding windows, laid out by key: ``keys[key] = (starts, values)`` with ``starts`` the
    sorted window starts and ``values[start] = (aggregate, ts)`` (immutable tuples).

    Like Kafka Streams' in-memory window store, it has a retention (``2 * difference + grace``)
    counted from ``observed``, the largest window start ever put: a window whose start is
    ``<= observed - retention`` has expired and is removed (:meth:`expire`) before each lookup.
    ``expiry`` is a heap of ``(start, n, key)`` of every window; ``pending`` (emit-on-close only)
    a heap of the windows whose final value has not been emitted yet.
    """

    def __init__(self, name: str, changelog: str, retention: int) -> None:
        super().__init__(name, changelog)
        self.retention = retention
        self.keys: dict[Any, tuple[list[int], dict[int, tuple[Any, int]]]] = {}
        self.observed = NO_TIMESTAMP
        self.expiry: list[tuple[int, int, Any]] = []
        self.pending: list[tuple[int, int, Any]] = []
        self.track_pending = False
        self._n = 0
        #: puts Kafka's store would refuse (start already out of the retention period)
        self.refused = 0

    def get(self, key: Any, start: int) -> tuple[Any, int] | None:
        """The ``(aggregate, ts)`` of window ``start`` of ``key``, or None."""
        entry = self.keys.get(key)
        return None if entry is None else entry[1].get(start)

    def put(self, key: Any, start: int, value: tuple[Any, int]) -> None:
        """Store a window (new or updated)."""
        entry = self.keys.get(key)
        if entry is None:
            entry = self.keys[key] = ([], {})
        starts, values = entry
        if start not in values:
            i = bisect_left(starts, start)
            starts.insert(i, start)
            n = self._n = self._n + 1
            heapq.heappush(self.expiry, (start, n, key))
            if self.track_pending:
                heapq.heappush(self.pending, (start, n, key))
        values[start] = value
        self._dirty[(key, start)] = value
        if start > self.observed:
            self.observed = start
        elif start <= self.observed - self.retention:
            # Kafka's store refuses this put (and counts it as dropped); it is gone at the
            # next expire(). Only an input of a cogroup behind another gets here (D17).
            self.refused += 1

    def remove(self, key: Any, start: int) -> None:
        """Delete a window."""
        entry = self.keys.get(key)
        if entry is None:
            return
        starts, values = entry
        if values.pop(start, None) is None:
            return
        i = bisect_left(starts, start)
        if i < len(starts) and starts[i] == start:
            del starts[i]
        if not values:
            del self.keys[key]
        self._dirty[(key, start)] = None

    def expire(self) -> None:
        """Remove the windows that left the retention period."""
        limit = self.observed - self.retention
        heap = self.expiry
        while heap and heap[0][0] <= limit:
            start, _n, key = heapq.heappop(heap)
            self.remove(key, start)

    def drain_changes(self) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        if self._dirty:
            out = [([k, s], None if v is None else [v[0], v[1]])
                   for (k, s), v in self._dirty.items()]
            self._dirty = {}
        self._drain_meta(out)
        return out

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        count = apply_window_changelog(
            self, records, lambda key, start, v: self.put(key, start, (v[0], v[1])),
            self.remove)
        self._dirty = {}
        return count

    def rebuild(self, track_pending: bool, min_pending_start: int) -> None:
        """Rebuild the heaps after a restore; with emit-on-close (``track_pending``), the windows
        starting before ``min_pending_start`` were already emitted."""
        self.track_pending = track_pending
        self.expiry = []
        self.pending = []
        n = 0
        for key, (starts, _values) in self.keys.items():
            for s in starts:
                n += 1
                self.expiry.append((s, n, key))
                if track_pending and s >= min_pending_start:
                    self.pending.append((s, n, key))
        self._n = n
        heapq.heapify(self.expiry)
        heapq.heapify(self.pending)

    def __len__(self) -> int:
        return sum(len(v) for _s, v in self.keys.values())


class SessionStore(_WindowStoreBase):
    """Session windows: ``sessions[key]`` is a list of ``[start, end, aggregate]`` sorted by
    end (sessions of one key never overlap). ``ends`` is a heap of ``(end, n, key, start)`` of
    every session ever put (entries of merged-away sessions are skipped when popped), so
    sessions close in end order.

    ``observed`` is the largest session end ever put (restored ones included): as in Kafka
    Streams' in-memory session store, a session whose end is ``<= observed - (gap + grace)`` has
    left the retention period and is no longer found by lookups.
    """

    kind = "session"

    def __init__(self, name: str, changelog: str) -> None:
        super().__init__(name, changelog)
        self.sessions: dict[Any, list[list[Any]]] = {}
        self.ends: list[tuple[int, int, Any, int]] = []
        self.observed = NO_TIMESTAMP
        self._n = 0

    def put(self, key: Any, start: int, end: int, agg: Any) -> None:
        """Add (or replace) session ``[start, end]`` of ``key`` (``agg`` is not None)."""
        lst = self.sessions.get(key)
        if lst is None:
            lst = self.sessions[key] = []
        i = 0
        n = len(lst)
        while i < n and lst[i][1] < end:
            i += 1
        if i < n and lst[i][1] == end and lst[i][0] == start:
            lst[i][2] = agg
        else:
            lst.insert(i, [start, end, agg])
            c = self._n = self._n + 1
            heapq.heappush(self.ends, (end, c, key, start))
        self._dirty[(key, start, end)] = agg
        if end > self.observed:
            self.observed = end

    def remove(self, key: Any, start: int, end: int) -> list[Any] | None:
        """Delete session ``[start, end]`` of ``key``; return it (or None)."""
        lst = self.sessions.get(key)
        if lst is None:
            return None
        for i, s in enumerate(lst):
            if s[0] == start and s[1] == end:
                del lst[i]
                if not lst:
                    del self.sessions[key]
                self._dirty[(key, start, end)] = None
                return s
        return None

    def find(self, key: Any, start: int, end: int) -> list[Any] | None:
        """Session ``[start, end]`` of ``key``, or None."""
        for s in self.sessions.get(key, ()):
            if s[0] == start and s[1] == end:
                return s
        return None

    def drain_changes(self) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        if self._dirty:
            out = [([k, s, e], v) for (k, s, e), v in self._dirty.items()]
            self._dirty = {}
        self._drain_meta(out)
        return out

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        count = apply_session_changelog(self, records, self.put, self.remove)
        self._dirty = {}
        self.ends = []
        n = 0
        for key, lst in self.sessions.items():
            for s in lst:
                n += 1
                self.ends.append((s[1], n, key, s[0]))
        heapq.heapify(self.ends)
        self._n = n
        return count

    def __len__(self) -> int:
        return sum(len(v) for v in self.sessions.values())
