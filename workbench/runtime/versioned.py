"""Versioned tables (``p.table(topic, history=...)``): Kafka Streams' versioned key-value stores
(KIP-889) and the joins that read them (KIP-914, ``Joined.withGracePeriod`` of KIP-923).

Semantics (Kafka Streams 4.1.1 ``RocksDBVersionedStore``, ``KTableSource``,
``KStreamKTableJoinProcessor``, ``RocksDBTimeOrderedKeyValueBuffer`` and the table-table join
processors, read from the 4.1.1 jar and checked with TopologyTestDriver:
``tests/conformance/cases/versioned.json``, FINDINGS D18 and D20):

**The store** keeps, per key, every version (a value or a tombstone, from its timestamp until
the next version's) within ``history`` of the store's stream time ``T`` (the largest timestamp
put), in Kafka's two parts: the latest value, and the older versions. A put older than
``T - history`` is not stored (the table counts it as dropped and forwards nothing). A put at or
after the key's latest timestamp is the new latest (a tombstone at exactly the latest value's
timestamp erases that value without leaving a version); an older put is inserted among the
older versions (out of order). A lookup "as of" ``t``:

- the latest value if its timestamp is ``<= t``;
- else, if ``t >= T - history``, the older version valid at ``t`` (``None`` for a tombstone or
  no version). The version valid at the boundary ``T - history`` is kept, so a lookup just
  inside the history still finds a version that started before it (FINDINGS D18: ``s45`` and
  ``s41`` join ``p0``);
- else ``None`` (older versions are gone).

**The table** (``KTableSource`` on a versioned store) forwards every stored update, also an
out-of-order one (older than the key's latest version), as ``Change(new, latest value before
it)``; an out-of-order update is an :class:`OutOfOrder` change (Kafka's ``isLatest = false``).

**Stream-table join**: a stream record joins the version valid at its own timestamp. With a
join grace ``g`` (``stream.join(table, grace=g)``), stream records wait in a buffer ordered by
(timestamp, serialized key, arrival) whose time is the largest timestamp buffered: a record
older than ``buffer time - g`` joins at once, the others are buffered and every buffered record
with timestamp ``<= buffer time - g`` is then joined, in that order, with the version valid at
its own timestamp -- so table updates that arrive up to ``g`` late are seen. A bounded run's end
joins what is still buffered. Records dropped by the join (``None`` value; ``None`` key in an
inner join) neither wait nor move the buffer time. *workbench decision*: a left join's record
with a ``None`` key joins at once (Kafka Streams' buffer refuses ``None`` keys and fails).

**Table-table join**: on a side whose table is versioned, out-of-order updates are ignored and
counted as dropped (FINDINGS D20); the rest is the ordinary table-table join.

Changelogs: the versioned store writes one record per key with the key's whole state
(``{"latest": [timestamp, value] | null, "older": [next timestamp, [[timestamp, value] |
[timestamp] (a tombstone), ...]] | null}``); the join buffer's key is ``[timestamp, key bytes,
n]`` with value ``[key, value, headers]``.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from ..keys import decode_key, encode_key, key_id
from ..types import Change
from .operators import Batch, Operator, StepFailure
from .state import StateStore
from .table_ops import _tuple_new, key_bytes

__all__ = [
    "JoinBuffer",
    "OutOfOrder",
    "VersionedStore",
    "VersionedStreamTableJoinOp",
    "VersionedTableSourceOp",
    "is_out_of_order",
]

#: ``put`` result: the update is older than the history and was not stored
NOT_PUT = None


class OutOfOrder(Change):
    """A versioned table's update older than the key's latest version (Kafka Streams'
    ``Change.isLatest == false``): joins and aggregations downstream ignore it."""

    __slots__ = ()


def is_out_of_order(change: Any) -> bool:
    """True for the out-of-order update of a versioned table."""
    return change.__class__ is OutOfOrder


class _History:
    """The older versions of one key (Kafka's segment rows, as one row): ``times``/``values``
    ascending (``None``: a tombstone version), each valid until the next one's timestamp, the
    last until ``next_ts``. A lone tombstone with ``next_ts`` equal to its own timestamp is
    Kafka's "degenerate" row."""

    __slots__ = ("next_ts", "times", "values")

    def __init__(self, t: int, value: Any, next_ts: int) -> None:
        self.times = [t]
        self.values = [value]
        self.next_ts = next_ts

    @property
    def degenerate(self) -> bool:
        return self.next_ts == self.times[0]

    def insert_as_latest(self, valid_from: int, valid_to: int, value: Any) -> None:
        if self.degenerate:
            start = self.next_ts
            self.times, self.values = [], []
            if start != valid_from:
                self.times.append(start)
                self.values.append(None)
        elif self.next_ts != valid_from:
            self.times.append(self.next_ts)
            self.values.append(None)
        self.times.append(valid_from)
        self.values.append(value)
        self.next_ts = valid_to

    def insert_as_earliest(self, t: int, value: Any) -> None:
        if self.degenerate:
            self.times, self.values = [t], [value]
        else:
            self.times.insert(0, t)
            self.values.insert(0, value)

    def put_inside(self, t: int, value: Any) -> None:
        """Put a version at ``t`` with ``min <= t < next_ts`` (replacing one at ``t``)."""
        i = bisect_right(self.times, t) - 1
        if self.times[i] == t:
            self.values[i] = value
        else:
            self.times.insert(i + 1, t)
            self.values.insert(i + 1, value)

    def find(self, as_of: int) -> Any:
        if self.next_ts <= as_of or self.times[0] > as_of:
            return None
        return self.values[bisect_right(self.times, as_of) - 1]


class VersionedStore(StateStore):
    """Kafka Streams' ``RocksDBVersionedStore`` (module docstring), per key: the latest value
    (``latest``: key -> ``(value, timestamp)``, never a tombstone) and the older versions
    (``history``: key -> :class:`_History`), exactly as Kafka keeps them, so that lookups and
    the in-order/out-of-order decision of every put agree with it (segments are not modelled:
    they only decide when old versions are freed, which no lookup can see)."""

    kind = "versioned"

    def __init__(self, name: str, changelog: str, history: int) -> None:
        super().__init__(name, changelog)
        self.retention = history
        self.latest_values: dict[Any, tuple[Any, int]] = {}
        self.older: dict[Any, _History] = {}
        #: the store's stream time (largest timestamp put), -1 before the first
        self.observed = -1

    def __len__(self) -> int:
        return len(self.latest_values)

    # -- reads
    def latest(self, key: Any) -> Any:
        """The key's latest value (``None`` when absent or deleted)."""
        entry = self.latest_values.get(key)
        return None if entry is None else entry[0]

    def get(self, key: Any, as_of: int) -> Any:
        """The value valid at ``as_of``, or ``None`` (``RocksDBVersionedStore.get``)."""
        entry = self.latest_values.get(key)
        if entry is not None and entry[1] <= as_of:
            return entry[0]
        if as_of < self.observed - self.retention:
            return None  # older versions are gone
        older = self.older.get(key)
        return None if older is None else older.find(as_of)

    # -- writes
    def put(self, key: Any, value: Any, t: int) -> bool | None:
        """Store a version; ``True`` if it is the key's latest, ``False`` if it is older than
        the latest (out of order), ``None`` (:data:`NOT_PUT`) if it is older than the history
        (not stored)."""
        if t < self.observed - self.retention:
            return NOT_PUT
        if t > self.observed:
            self.observed = t
        self._dirty[key] = True
        latest = self.latest_values.get(key)
        older = self.older.get(key)
        found: int | None = None  # Kafka's foundTs (None: the sentinel)
        if latest is not None:
            lv, lt = latest
            if t >= lt:
                if t > lt:  # the latest value becomes an older version
                    if older is None:
                        self.older[key] = _History(lt, lv, t)
                    else:
                        older.insert_as_latest(lt, t, lv)
                if value is None:
                    del self.latest_values[key]
                else:
                    self.latest_values[key] = (value, t)
                self._trim(key)
                return True
            found = lt
        if older is not None and older.next_ts > t:
            if older.times[0] <= t:
                older.put_inside(t, value)
                self._trim(key)
                return False
            found = older.times[0]
        if found is None:  # nothing later exists: the new latest version
            if value is not None:
                self.latest_values[key] = (value, t)
            elif older is None:
                self.older[key] = _History(t, None, t)
            elif older.next_ts != t:
                older.insert_as_latest(older.next_ts, t, None)
            self._trim(key)
            return True
        if older is None:
            self.older[key] = _History(t, value, found)
        elif older.next_ts <= t:
            older.insert_as_latest(t, found, value)
        else:
            older.insert_as_earliest(t, value)
        self._trim(key)
        return False

    def _trim(self, key: Any) -> None:
        """Free the older versions no lookup can see any more (valid only before the history
        boundary)."""
        older = self.older.get(key)
        if older is None:
            return
        boundary = self.observed - self.retention
        if older.next_ts <= boundary:
            del self.older[key]
            return
        times = older.times
        n = bisect_right(times, boundary) - 1  # the version valid at the boundary stays
        if n > 0:
            del times[:n]
            del older.values[:n]

    # -- changelog: one record per key with its whole state
    def drain_changes(self) -> list[tuple[Any, Any]]:
        if not self._dirty:
            return []
        out: list[tuple[Any, Any]] = []
        for key in self._dirty:
            latest = self.latest_values.get(key)
            older = self.older.get(key)
            if latest is None and older is None:
                out.append((encode_key(key), None))
                continue
            out.append((encode_key(key), {
                "latest": None if latest is None else [latest[1], latest[0]],
                "older": None if older is None else [
                    older.next_ts, [[t] if v is None else [t, v]
                                    for t, v in zip(older.times, older.values)]]}))
        self._dirty = {}
        return out

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        count = 0
        for k, v in records:
            key = key_id(decode_key(k))
            count += 1
            self.latest_values.pop(key, None)
            self.older.pop(key, None)
            if v is None:
                continue
            latest = v.get("latest")
            if latest is not None:
                self.latest_values[key] = (latest[1], int(latest[0]))
                self.observed = max(self.observed, int(latest[0]))
            older = v.get("older")
            if older is not None:
                next_ts, versions = older
                h = _History(int(versions[0][0]), None, int(next_ts))
                h.times = [int(e[0]) for e in versions]
                h.values = [e[1] if len(e) > 1 else None for e in versions]
                self.older[key] = h
                self.observed = max(self.observed, int(next_ts), h.times[-1])
        return count


# -- the table ------------------------------------------------------------------------------------
class VersionedTableSourceOp(Operator):
    """``KTableSource`` materialized in a versioned store."""

    def __init__(self, name: str, defined_at: str, store: VersionedStore,
                 extract: Callable[[Any], int] | None) -> None:
        self.name = name
        self.defined_at = defined_at
        self.store = store
        self.stores = [store]
        self.extract = extract
        self.dropped = 0
        self.side = []

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        append = out.append
        store = self.store
        extract = self.extract
        for r in batch:
            k, v, t, s, h = r
            if k is None:
                self.dropped += 1
                continue
            if extract is not None and v is not None:
                try:
                    t = extract(v)
                except Exception as exc:
                    raise StepFailure(self.name, self.defined_at, r, exc) from exc
            old = store.latest(k)
            latest = store.put(k, v, t)
            if latest is NOT_PUT:
                self.dropped += 1  # older than the history: not stored, not forwarded
                continue
            append((k, _tuple_new(Change if latest else OutOfOrder, (v, old)), t, s, h))
        return out


# -- the stream-table join ------------------------------------------------------------------------
class JoinBuffer(StateStore):
    """Stream records waiting for a versioned join's grace period, in (timestamp, serialized
    key, arrival) order; ``observed`` is the largest timestamp buffered."""

    kind = "kv"

    def __init__(self, name: str, changelog: str) -> None:
        super().__init__(name, changelog)
        #: sorted (ts, key bytes, n)
        self.order: list[tuple[int, bytes, int]] = []
        #: n -> (key, value, headers)
        self.entries: dict[int, tuple[Any, Any, Any]] = {}
        self.observed = -1
        self._next = 0

    def __len__(self) -> int:
        return len(self.order)

    def put(self, key: Any, value: Any, t: int, headers: Any) -> None:
        n = self._next
        self._next = n + 1
        item = (t, key_bytes(key), n)
        order = self.order
        if not order or order[-1] < item:
            order.append(item)
        else:
            insort(order, item)
        self.entries[n] = (key, value, headers)
        if t > self.observed:
            self.observed = t
        self._dirty[item] = [encode_key(key), value, _encode_headers(headers)]

    def pop_until(self, limit: int) -> list[tuple[int, tuple[Any, Any, Any]]]:
        """Remove and return the buffered records with timestamp ``<= limit``, in order."""
        order = self.order
        n = bisect_right(order, limit, key=_first)
        if not n:
            return []
        out = []
        for item in order[:n]:
            out.append((item[0], self.entries.pop(item[2])))
            dirty = self._dirty
            if dirty.pop(item, _MISSING) is _MISSING:
                dirty[item] = None
        del order[:n]
        return out

    def encode_key(self, key: Any) -> Any:
        t, kb, n = key
        return [t, kb.decode("latin-1"), n]

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        live: dict[tuple[int, bytes, int], Any] = {}
        count = 0
        for k, v in records:
            item = (int(k[0]), str(k[1]).encode("latin-1"), int(k[2]))
            if v is None:
                live.pop(item, None)
            else:
                live[item] = v
            count += 1
        for item in sorted(live):
            key, value, headers = live[item]
            self.order.append(item)
            self.entries[item[2]] = (key_id(decode_key(key)), value, _decode_headers(headers))
            self._next = max(self._next, item[2] + 1)
            if item[0] > self.observed:
                self.observed = item[0]
        return count


_MISSING = object()
_first = itemgetter(0)


def _encode_headers(headers: Any) -> Any:
    if headers is None:
        return None
    return [[name, value.hex() if isinstance(value, bytes) else value] for name, value in headers]


def _decode_headers(headers: Any) -> Any:
    if headers is None:
        return None
    return tuple((name, bytes.fromhex(value) if isinstance(value, str) else value)
                 for name, value in headers)


class VersionedStreamTableJoinOp(Operator):
    """A stream joined with a versioned table (module docstring)."""

    def __init__(self, name: str, defined_at: str, how: str,
                 combine: Callable[[Any, Any], Any], table: VersionedStore,
                 grace: int | None, buffer: JoinBuffer | None) -> None:
        self.name = name
        self.defined_at = defined_at
        self.left = how == "left"
        self.combine = combine
        self.table = table
        self.grace = grace or 0
        self.buffer = buffer
        self.stores = [table] if buffer is None else [table, buffer]
        self.dropped = 0
        self.side = []
        self.last_seq: Any = 0

    def process(self, batch: Batch, port: int) -> Batch:
        if port == 1:
            self._update_table(batch)
            return []
        out: Batch = []
        left = self.left
        buffer = self.buffer
        grace = self.grace
        for r in batch:
            k, v, t, s, h = r
            self.last_seq = s
            if v is None or (k is None and not left):
                self.dropped += 1
                continue
            if buffer is None or k is None or t < buffer.observed - grace:
                self._join(k, v, t, s, h, r, out)
                continue
            buffer.put(k, v, t, h)
            for ts, (bk, bv, bh) in buffer.pop_until(buffer.observed - grace):
                self._join(bk, bv, ts, s, bh, r, out)
        return out

    def _join(self, k: Any, v: Any, t: int, s: Any, h: Any, origin: Any, out: Batch) -> None:
        tv = self.table.get(k, t) if k is not None else None
        if tv is None and not self.left:
            return
        try:
            out.append((k, self.combine(v, tv), t, s, h))
        except Exception as exc:
            raise StepFailure(self.name, self.defined_at, origin, exc) from exc

    def _update_table(self, batch: Batch) -> None:
        store = self.table
        for k, ch, t, _s, _h in batch:
            if k is None:
                continue
            store.put(k, ch[0], t)

    def end(self) -> Batch:
        buffer = self.buffer
        if buffer is None or not buffer.order:
            return []
        out: Batch = []
        s = self.last_seq
        for ts, (bk, bv, bh) in buffer.pop_until(1 << 62):
            self._join(bk, bv, ts, s, bh, (bk, bv, ts, s, bh), out)
        return out


# -- factories (called by table_ops / join_ops for versioned tables) ------------------------------
def versioned_table_source(plan_node: Any, ctx: Any,
                           extract: Callable[[Any], int] | None) -> Operator:
    """The operator of a ``table_source`` with ``history=``."""
    from .table_ops import _store_changelog

    node = plan_node.node
    name = f"{plan_node.name}-store"
    store = VersionedStore(name, _store_changelog(ctx, name), int(node.params["history"]))
    store.shared = False
    return VersionedTableSourceOp(plan_node.name, node.defined_at, store, extract)


def versioned_stream_table_join(plan_node: Any, ctx: Any,
                                combine: Callable[[Any, Any], Any]) -> Operator:
    """The operator of a stream-table join whose table is versioned."""
    from .table_ops import _store_changelog

    node = plan_node.node
    params = node.params
    name = f"{plan_node.name}-table"
    spec = ctx.stores.get(name)
    table = VersionedStore(name, _store_changelog(ctx, name), int(params["history"]))
    table.shared = spec is not None and spec.shared
    grace = params.get("grace")
    buffer = None
    if grace is not None:
        bname = f"{plan_node.name}-buffer"
        buffer = JoinBuffer(bname, _store_changelog(ctx, bname))
    return VersionedStreamTableJoinOp(plan_node.name, node.defined_at,
                                      params.get("how", "inner"), combine, table, grace, buffer)
