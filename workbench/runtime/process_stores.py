"""The Processor API's timestamped key-value stores and session stores, as Kafka Streams'
``TimestampedKeyValueStore`` and ``SessionStore`` behave (its in-memory implementations,
``InMemoryKeyValueStore`` and ``InMemorySessionStore`` of 4.1.1, checked record by record with
TopologyTestDriver: ``tests/conformance/cases/processor_stores.json``).

**Timestamped key-value store** (``stores={"latest": "timestamped"}``): each key holds a value
and a timestamp (:class:`~workbench.processors.ValueAndTimestamp`). ``put(key, value, ts)`` (a
``None`` value deletes), ``put_if_absent`` and ``delete`` return the previous entry; ``range``,
``reverse_range``, ``all``, ``reverse_all`` and ``prefix_scan`` iterate in serialized-key order
(strings by their UTF-8 bytes, other keys by their JSON text), both range ends included, an
empty range when ``from`` sorts after ``to``.

**Session store** (``stores={"sessions": "session"}``, or ``("session", retention)``): values per
session ``Windowed(key, start, end)`` (both ends included, as Kafka's session windows).
``find_sessions(key, earliest_end, latest_start)`` returns the sessions with ``end >=
earliest_end`` and ``start <= latest_start``, by end, then start **descending** (the order of
Kafka's in-memory session store; ``backward_find_sessions``: the reverse, which Kafka's
in-memory store does not offer through its API); ``fetch(key)``/``backward_fetch`` all of a
key's sessions; ``fetch_session(key, start, end)`` one value. With a retention ``r`` the
store's stream time ``T`` is the largest session end put: a session whose end is ``<= T - r`` is
no longer found, and a put of one is
refused (counted as dropped). Without a retention nothing expires.

Both refuse ``None`` keys (reads and writes), as Kafka Streams' stores do: the step fails.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from typing import Any

from ..keys import decode_key, encode_key, key_id
from ..processors import ValueAndTimestamp
from ..windows import Windowed
from .state import StateStore
from .table_ops import key_bytes

__all__ = ["SessionStore", "TimestampedKeyValueStore"]

_MAX = 2**63 - 1


def _check_key(store: StateStore, key: Any) -> None:
    """Refuse a ``None`` key, as Kafka Streams' stores do (``key cannot be null``); the
    processor step reports it with the step and partition (a :class:`ProcessingError`)."""
    if key is None:
        raise ValueError(f"store {store.name!r}: a key cannot be None (Kafka Streams' stores "
                         "refuse null keys); skip records without a key in the processor")


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


class TimestampedKeyValueStore(StateStore):
    """A key-value store whose entries carry a timestamp (module docstring)."""

    kind = "timestamped"

    def __init__(self, name: str, changelog: str) -> None:
        super().__init__(name, changelog)
        #: key identity -> (key, ValueAndTimestamp)
        self._data: dict[Any, tuple[Any, ValueAndTimestamp]] = {}
        #: (serialized key, key identity), sorted; rebuilt lazily after inserts and deletes
        self._order: list[tuple[bytes, Any]] | None = []

    # -- reads
    def get(self, key: Any) -> ValueAndTimestamp | None:
        """The key's ``ValueAndTimestamp(value, timestamp)``, or ``None``."""
        _check_key(self, key)
        entry = self._data.get(key_id(key))
        return None if entry is None else entry[1]

    def __contains__(self, key: Any) -> bool:
        return key_id(key) in self._data

    def __len__(self) -> int:
        return len(self._data)

    def _sorted(self) -> list[tuple[bytes, Any]]:
        if self._order is None:
            self._order = sorted((key_bytes(k), kid) for kid, (k, _v) in self._data.items())
        return self._order

    def _entries(self, items: Iterable[tuple[bytes, Any]]) -> list[tuple[Any, ValueAndTimestamp]]:
        data = self._data
        return [data[kid] for _kb, kid in items]

    def range(self, from_key: Any, to_key: Any) -> list[tuple[Any, ValueAndTimestamp]]:
        """``[(key, ValueAndTimestamp)]`` with ``from_key <= key <= to_key`` (serialized)."""
        order = self._sorted()
        lo, hi = key_bytes(from_key), key_bytes(to_key)
        if lo > hi:
            return []
        i = bisect_left(order, (lo,))
        j = bisect_left(order, (hi + b"\x00",))
        return self._entries(order[i:j])

    def reverse_range(self, from_key: Any, to_key: Any) -> list[tuple[Any, ValueAndTimestamp]]:
        """:meth:`range` in descending order."""
        return self.range(from_key, to_key)[::-1]

    def all(self) -> list[tuple[Any, ValueAndTimestamp]]:
        """Every entry, in serialized-key order."""
        return self._entries(self._sorted())

    def reverse_all(self) -> list[tuple[Any, ValueAndTimestamp]]:
        """Every entry, in descending serialized-key order."""
        return self.all()[::-1]

    def prefix_scan(self, prefix: Any) -> list[tuple[Any, ValueAndTimestamp]]:
        """The entries whose serialized key starts with ``prefix``'s serialized form (for string
        keys: the keys that start with the string ``prefix``)."""
        order = self._sorted()
        p = key_bytes(prefix)
        i = bisect_left(order, (p,))
        j = i
        while j < len(order) and order[j][0].startswith(p):
            j += 1
        return self._entries(order[i:j])

    def items(self) -> list[tuple[Any, ValueAndTimestamp]]:
        """Every ``(key, ValueAndTimestamp)``, in serialized-key order."""
        return self.all()

    # -- writes
    def put(self, key: Any, value: Any, timestamp: int) -> ValueAndTimestamp | None:
        """Store ``value`` with ``timestamp`` (``None`` deletes); return the previous entry."""
        _check_key(self, key)
        if value is None:
            return self.delete(key)
        kid = key_id(key)
        old = self._data.get(kid)
        entry = ValueAndTimestamp(value, int(timestamp))
        self._data[kid] = (key, entry)
        if old is None:
            self._order = None
        self._dirty.pop(kid, None)
        self._dirty[kid] = (key, entry)
        return None if old is None else old[1]

    def put_if_absent(self, key: Any, value: Any, timestamp: int) -> ValueAndTimestamp | None:
        """Store only if the key is absent; return the entry that was there (or ``None``)."""
        old = self.get(key)
        if old is None:
            self.put(key, value, timestamp)
        return old

    def delete(self, key: Any) -> ValueAndTimestamp | None:
        """Remove the key; return its entry (or ``None``)."""
        _check_key(self, key)
        kid = key_id(key)
        old = self._data.pop(kid, None)
        if old is not None:
            self._order = None
        self._dirty.pop(kid, None)
        self._dirty[kid] = None
        return None if old is None else old[1]

    # -- changelog: key -> [value, timestamp]
    def drain_changes(self) -> list[tuple[Any, Any]]:
        if not self._dirty:
            return []
        out: list[tuple[Any, Any]] = []
        for kid, entry in self._dirty.items():
            if entry is None:
                out.append((encode_key(kid), None))
            else:
                out.append((encode_key(entry[0]), [entry[1].value, entry[1].timestamp]))
        self._dirty = {}
        return out

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        count = 0
        for k, v in records:
            key = _hashable(decode_key(k))
            kid = key_id(key)
            if v is None:
                self._data.pop(kid, None)
            else:
                self._data[kid] = (key, ValueAndTimestamp(v[0], int(v[1])))
            count += 1
        self._order = None
        return count


class SessionStore(StateStore):
    """Values per session window (module docstring)."""

    kind = "session"

    def __init__(self, name: str, changelog: str, retention: int | None = None) -> None:
        super().__init__(name, changelog)
        self.retention = retention
        #: key identity -> (key, sorted [(end, -start)], {(end, start): value}): Kafka's
        #: in-memory session store iterates by end, then start descending
        self._keys: dict[Any, tuple[Any, list[tuple[int, int]], dict[tuple[int, int], Any]]] = {}
        #: the largest session end put (-1 before any)
        self.observed = -1
        #: puts refused because the session had expired
        self.dropped = 0
        #: no stored session ends before this (expiry runs only when the floor passes it)
        self._min_end = _MAX

    def __len__(self) -> int:
        return sum(len(e[2]) for e in self._keys.values())

    def _floor(self) -> int:
        """Sessions ending at or before this are expired."""
        return -1 if self.retention is None else self.observed - self.retention

    # -- reads
    def find_sessions(self, key: Any, earliest_end: int, latest_start: int
                      ) -> list[tuple[Windowed, Any]]:
        """The key's sessions with ``end >= earliest_end`` and ``start <= latest_start``, by
        end, then start descending."""
        _check_key(self, key)
        entry = self._keys.get(key_id(key))
        if entry is None:
            return []
        original, order, values = entry
        low = max(earliest_end, self._floor() + 1)
        i = bisect_left(order, (low, -_MAX))
        return [(Windowed(original, -neg, end), values[(end, -neg)])
                for end, neg in order[i:] if -neg <= latest_start]

    def backward_find_sessions(self, key: Any, earliest_end: int, latest_start: int
                               ) -> list[tuple[Windowed, Any]]:
        """:meth:`find_sessions` from the last to the first."""
        return self.find_sessions(key, earliest_end, latest_start)[::-1]

    def fetch(self, key: Any) -> list[tuple[Windowed, Any]]:
        """Every session of ``key``, by end, then start descending."""
        return self.find_sessions(key, 0, _MAX)

    def backward_fetch(self, key: Any) -> list[tuple[Windowed, Any]]:
        """Every session of ``key``, from the last to the first."""
        return self.fetch(key)[::-1]

    def items(self) -> list[tuple[Windowed, Any]]:
        """Every live session ``(Windowed, value)``: key by key (in the order keys first came),
        each key's by end, then start descending."""
        return [item for original, _o, _v in list(self._keys.values())
                for item in self.fetch(original)]

    def fetch_session(self, key: Any, start: int, end: int) -> Any:
        """The value of the session ``[start, end]`` of ``key``, or ``None``."""
        _check_key(self, key)
        if end <= self._floor():
            return None
        entry = self._keys.get(key_id(key))
        return None if entry is None else entry[2].get((int(end), int(start)))

    # -- writes
    def put(self, session: Windowed, value: Any) -> None:
        """Store the value of ``session`` (``Windowed(key, start, end)``); ``None`` removes
        it. A session that has already expired is not stored (counted in ``dropped``)."""
        key, start, end = session[0], int(session[1]), int(session[2])
        _check_key(self, key)
        if end > self.observed:
            self.observed = end
        if end <= self._floor():
            self.dropped += 1
            return
        if value is None:
            self.remove(session)
            return
        kid = key_id(key)
        entry = self._keys.get(kid)
        if entry is None:
            entry = (key, [], {})
            self._keys[kid] = entry
        if (end, start) not in entry[2]:
            insort(entry[1], (end, -start))
            if end < self._min_end:
                self._min_end = end
        entry[2][(end, start)] = value
        self._mark(key, start, end, value)
        if self._floor() >= self._min_end:
            self._expire()

    def remove(self, session: Windowed) -> None:
        """Remove ``session`` (``Windowed(key, start, end)``)."""
        key, start, end = session[0], int(session[1]), int(session[2])
        _check_key(self, key)
        kid = key_id(key)
        entry = self._keys.get(kid)
        if entry is None or entry[2].pop((end, start), None) is None:
            return
        del entry[1][bisect_left(entry[1], (end, -start))]
        if not entry[2]:
            del self._keys[kid]
        self._mark(key, start, end, None)

    def _mark(self, key: Any, start: int, end: int, value: Any) -> None:
        dk = (key_id(key), start, end)
        self._dirty.pop(dk, None)
        self._dirty[dk] = (key, value)

    def _expire(self) -> None:
        """Drop expired sessions from memory (reads never return them anyway)."""
        floor = self._floor()
        self._min_end = _MAX
        for kid in list(self._keys):
            original, order, values = self._keys[kid]
            n = bisect_right(order, (floor, _MAX))
            if n:
                for end, neg in order[:n]:
                    del values[(end, -neg)]
                    self._mark(original, -neg, end, None)
                del order[:n]
                if not order:
                    del self._keys[kid]
                    continue
            if order[0][0] < self._min_end:
                self._min_end = order[0][0]

    # -- changelog: [key, start, end] -> value
    def drain_changes(self) -> list[tuple[Any, Any]]:
        if not self._dirty:
            return []
        out = [([encode_key(key), start, end], value)
               for (_kid, start, end), (key, value) in self._dirty.items()]
        self._dirty = {}
        return out

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        count = 0
        for k, v in records:
            key = _hashable(decode_key(k[0]))
            session = Windowed(key, int(k[1]), int(k[2]))
            if v is None:
                self.remove(session)
            else:
                kid = key_id(key)
                entry = self._keys.setdefault(kid, (key, [], {}))
                if (session[2], session[1]) not in entry[2]:
                    insort(entry[1], (session[2], -session[1]))
                entry[2][(session[2], session[1])] = v
                self.observed = max(self.observed, session[2])
                self._min_end = min(self._min_end, session[2])
            count += 1
        self._dirty = {}
        return count
