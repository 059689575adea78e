"""Join operators: stream-table, stream-stream, table-table and foreign-key joins.

Every join node has two inputs: port 0 is the left ("this", the stream of a stream-table join)
and port 1 the right ("other", the table). ``combine(left, right)`` builds the output value;
without it, :func:`workbench.joins.default_combine`. Dropped inputs (``None`` keys, ``None``
stream values, records too late for a join window store) are counted in ``dropped``.

Semantics follow Kafka Streams 4.1 (``docs/semantics.md`` B.2), checked record by record
against TopologyTestDriver 4.1.1 with in-memory stores and caching off (``tests/conformance``):

**Stream-table** (``KStreamKTableJoinProcessor``, non-versioned table): table updates
(``Change`` records on port 1) only update the join's copy of the table; a stream record looks
up the table's current value and emits ``combine(stream_value, table_value)`` with the stream
record's timestamp. Stream records with a ``None`` value, or a ``None`` key, are dropped --
except in a left join, where a ``None`` key with a value joins with ``None``. A left join
emits with ``None`` when the key is not in the table; an inner join emits nothing.

**Stream-stream** (``KStreamKStreamJoin`` with the KIP-633 fix, ``ofTimeDifferenceAndGrace``):

- The two sides share one stream time (advanced before any null check).
- Each side keeps a window store (retention ``before + after + grace``, duplicates kept) with its
  own store time (max timestamp put into it, including records with a ``None`` value): a put of
  a record at or before ``store_time - retention`` is skipped (and counted as dropped), a fetch
  never returns records at or before it.
- The left side fetches the right store for the same key in ``[t - before, t + after]``, the
  right side the left store in ``[t - after, t + before]`` (both clamped at 0); every match
  emits ``combine(left, right)`` with timestamp ``max`` of both, in store order (timestamp,
  then arrival).
- Left join (left side) and outer join (both sides): an unmatched record whose window has already
  closed (``t + after < stream time`` for the left side, ``t + before`` for the right side) is
  emitted at once with ``None`` for the other side; otherwise it is *parked*. A match removes
  the matched record from the parked set.
- Parked records are emitted when a record with ``t == stream time`` arrives on either side and
  ``stream time > T + after + grace`` (parked left records) / ``T + before + grace`` (parked
  right records), ordered by (timestamp, side -- right before left --, serialized key), with the
  triggering record's headers. Kafka Streams only scans the parked records when its
  ``minTime`` hint says something may have closed (``minTime + joinAfter + grace < stream
  time``, ``joinAfter`` being ``after`` on the left side and ``before`` on the right side); the
  hint is reproduced exactly because it decides *when* records come out (conformance case
  ``p-mintime``).
- No wall-clock throttling (the ``__emit.interval.ms.kstreams.outer.join.spurious.results.fix__``
  interval behaves as 0).
- ``end()``: stream time jumps to infinity: every parked record is emitted in the order above.

**Table-table** (``KTableKTableInnerJoin`` / ``LeftJoin`` / ``RightJoin`` / ``OuterJoin``): an
update on either side looks up the other side's current value (the join keeps both sides in
its ``left``/``right`` stores, as ``[value, timestamp]``); the output is
``Change(new_joined, old_joined)`` (old computed from the update's old value and the other
side's current value, as Kafka Streams does with old values enabled) with timestamp
``max(update ts, other side's ts)`` (the update's own timestamp when the other side is absent).

**Foreign-key** joins (KIP-213) run as three operators across the tables' sub-topologies:
see :mod:`workbench.runtime.fk_ops`.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from ..joins import default_combine
from ..keys import key_id
from ..plan import PlanNode
from ..types import Change
from .operators import Batch, Operator, Rec, StepFailure
from .state import StateStore
from .table_ops import TableStore, _tuple_new, decode_key, encode_key, key_bytes, make_store
from .task import OPERATOR_FACTORIES, OpContext

__all__ = [
    "JoinWindowStore",
    "OuterJoinStore",
    "StreamStreamJoinOp",
    "StreamTableJoinOp",
    "TableTableJoinOp",
]

_JAVA_LONG_MAX = 2**63 - 1
_ts_key = itemgetter(0)


def _combine_of(plan_node: PlanNode) -> Callable[[Any, Any], Any]:
    assert plan_node.node is not None
    fn = plan_node.node.params.get("combine")
    return fn if fn is not None else default_combine


# -- stream-table ---------------------------------------------------------------------------------
class StreamTableJoinOp(Operator):
    """``KStreamKTableJoinProcessor`` over a non-versioned table."""

    def __init__(self, name: str, defined_at: str, how: str,
                 combine: Callable[[Any, Any], Any], table: TableStore) -> None:
        self.name = name
        self.defined_at = defined_at
        self.left = how == "left"
        self.combine = combine
        self.table = table
        self.stores = [table]
        self.dropped = 0
        self.side = []

    def process(self, batch: Batch, port: int) -> Batch:
        if port == 1:
            self._update_table(batch)
            return []
        out: Batch = []
        append = out.append
        data = self.table.data
        combine = self.combine
        left = self.left
        for r in batch:
            k, v, t, s, h = r
            if v is None or (k is None and not left):
                self.dropped += 1
                continue
            tv = data.get(k) if k is not None else None
            if tv is None and not left:
                continue
            try:
                append((k, combine(v, tv), t, s, h))
            except Exception as exc:
                raise StepFailure(self.name, self.defined_at, r, exc) from exc
        return out

    def _update_table(self, batch: Batch) -> None:
        store = self.table
        data = store.data
        dirty = store._dirty
        for k, ch, _t, _s, _h in batch:
            if k is None:
                self.dropped += 1
                continue
            new = ch[0]
            if new is None:
                data.pop(k, None)
            else:
                data[k] = new
            dirty[k] = new


# -- stream-stream: stores ------------------------------------------------------------------------
class JoinWindowStore(StateStore):
    """One side of a stream-stream join: records per key ordered by timestamp (duplicates kept),
    expiring ``retention`` ms behind the store's own stream time (``InMemoryWindowStore``).

    Changelog: key ``[key, timestamp, id]`` → value; expired records are tombstoned.
    """

    kind = "window"

    def __init__(self, name: str, changelog: str, retention: int) -> None:
        super().__init__(name, changelog)
        self.retention = retention
        self.data: dict[Any, list[tuple[int, int, Any]]] = {}
        self.observed = -1
        self._expiry: list[tuple[int, int, Any]] = []
        self._next_id = 0
        self._purge_due = 0

    def __len__(self) -> int:
        """Records held (each has one entry in the expiry heap until it is purged)."""
        return len(self._expiry)

    def advance(self, t: int) -> None:
        """Raise the store time to ``t`` (records that expired are dropped from time to time;
        :meth:`fetch` never returns them)."""
        if t > self.observed:
            self.observed = t
            if t >= self._purge_due:
                self._expire()

    def put(self, key: Any, value: Any, t: int) -> bool:
        """Store a record; False when it is already expired (not stored)."""
        if t > self.observed:
            self.observed = t
            if t >= self._purge_due:
                self._expire()
        if t <= self.observed - self.retention:
            return False
        rid = self._next_id
        self._next_id = rid + 1
        entry = (t, rid, value)
        lst = self.data.get(key)
        if lst is None:
            self.data[key] = [entry]
        elif lst[-1][0] <= t:
            lst.append(entry)
        else:
            insort(lst, entry, key=_ts_key)
        heapq.heappush(self._expiry, (t, rid, key))
        self._dirty[(key, t, rid)] = value
        return True

    def fetch(self, key: Any, lo: int, hi: int) -> list[tuple[int, int, Any]]:
        """Records of ``key`` with ``lo <= ts <= hi`` that have not expired, in store order."""
        lst = self.data.get(key)
        if not lst:
            return []
        floor = self.observed - self.retention + 1
        if lo < floor:
            lo = floor
        if hi < lo:
            return []
        if lst[0][0] >= lo and lst[-1][0] <= hi:
            return lst
        i = bisect_left(lst, lo, key=_ts_key)
        j = bisect_right(lst, hi, key=_ts_key)
        return lst[i:j]

    def _expire(self) -> None:
        """Drop expired records (and tombstone them in the changelog). Run when stream time
        has advanced by the retention since the last run, so at most about two retention
        periods of records are kept."""
        live = self.observed - self.retention + 1
        self._purge_due = self.observed + max(self.retention, 1)
        heap = self._expiry
        if not heap or heap[0][0] >= live:
            return
        data = self.data
        dirty = self._dirty
        pop = heapq.heappop
        while heap and heap[0][0] < live:
            key = pop(heap)[2]
            lst = data.get(key)
            if lst is None:
                continue
            if lst[-1][0] < live:
                expired = lst
                del data[key]
            else:
                n = bisect_left(lst, live, key=_ts_key)
                if not n:
                    continue
                expired = lst[:n]
                del lst[:n]
            for e in expired:
                dk = (key, e[0], e[1])
                if dk in dirty:
                    del dirty[dk]  # never written to the changelog
                else:
                    dirty[dk] = None

    def encode_key(self, key: Any) -> Any:
        k, t, rid = key
        return [encode_key(k), t, rid]

    def decode_key(self, key: Any) -> Any:
        k, t, rid = key
        return (key_id(decode_key(k)), t, rid)

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        live: dict[tuple[Any, int, int], Any] = {}
        count = 0
        for k, v in records:
            dk = self.decode_key(k)
            if v is None:
                live.pop(dk, None)
            else:
                live[dk] = v
            count += 1
        for (key, t, rid), v in sorted(live.items(), key=lambda kv: (kv[0][1], kv[0][2])):
            self._next_id = max(self._next_id, rid + 1)
            if t > self.observed:
                self.observed = t
            self.data.setdefault(key, []).append((t, rid, v))
            heapq.heappush(self._expiry, (t, rid, key))
        self._expire()
        self._dirty.clear()
        return count


_ABSENT = object()


class OuterJoinStore(StateStore):
    """Parked (not yet joined) records of a left/outer stream-stream join, iterated in Kafka
    Streams' ``TimestampedKeyAndJoinSide`` order: timestamp, side (right = 0 before left = 1),
    serialized key, then arrival.

    Changelog: key ``[timestamp, side, key, id]`` → value.
    """

    kind = "kv"

    def __init__(self, name: str, changelog: str) -> None:
        super().__init__(name, changelog)
        #: sorted (ts, side, key bytes, id)
        self.order: list[tuple[int, int, bytes, int]] = []
        #: id -> (key, value)
        self.entries: dict[int, tuple[Any, Any]] = {}
        #: (ts, side, key) -> number of parked records
        self.parked: dict[tuple[int, int, Any], int] = {}
        self._next_id = 0

    def __len__(self) -> int:
        return len(self.order)

    def put(self, t: int, side: int, key: Any, value: Any) -> None:
        rid = self._next_id
        self._next_id = rid + 1
        item = (t, side, key_bytes(key), rid)
        order = self.order
        if not order or order[-1] < item:
            order.append(item)
        else:
            insort(order, item)
        self.entries[rid] = (key, value)
        tk = (t, side, key)
        self.parked[tk] = self.parked.get(tk, 0) + 1
        self._dirty[(t, side, key, rid)] = value

    def remove_all(self, t: int, side: int, key: Any) -> None:
        """Delete every parked record at (t, side, key) (a ``putIfAbsent(key, null)``)."""
        if (t, side, key) not in self.parked:
            return
        order = self.order
        kb = key_bytes(key)
        i = bisect_left(order, (t, side, kb, -1))
        j = i
        n = len(order)
        while j < n:
            item = order[j]
            if item[0] != t or item[1] != side or item[2] != kb:
                break
            j += 1
        if j > i:
            for item in order[i:j]:
                self._forget(item)
            del order[i:j]

    def _forget(self, item: tuple[int, int, bytes, int]) -> None:
        t, side, _kb, rid = item
        key, _v = self.entries.pop(rid)
        tk = (t, side, key)
        left = self.parked[tk] - 1
        if left:
            self.parked[tk] = left
        else:
            del self.parked[tk]
        dk = (t, side, key, rid)
        if self._dirty.pop(dk, _ABSENT) is _ABSENT:
            self._dirty[dk] = None

    def encode_key(self, key: Any) -> Any:
        t, side, k, rid = key
        return [t, side, encode_key(k), rid]

    def decode_key(self, key: Any) -> Any:
        t, side, k, rid = key
        return (t, side, key_id(decode_key(k)), rid)

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        live: dict[tuple[int, int, Any, int], Any] = {}
        count = 0
        for k, v in records:
            dk = self.decode_key(k)
            if v is None:
                live.pop(dk, None)
            else:
                live[dk] = v
            count += 1
        for (t, side, key, rid), v in live.items():
            self._next_id = max(self._next_id, rid + 1)
            self.order.append((t, side, key_bytes(key), rid))
            self.entries[rid] = (key, v)
            self.parked[(t, side, key)] = self.parked.get((t, side, key), 0) + 1
        self.order.sort()
        self._dirty.clear()
        return count


# -- stream-stream: operator ----------------------------------------------------------------------
class StreamStreamJoinOp(Operator):
    """``KStreamKStreamJoin`` (both sides, shared time tracker, KIP-633 outer store)."""

    def __init__(self, name: str, defined_at: str, how: str, before: int, after: int,
                 grace: int, combine: Callable[[Any, Any], Any], this: JoinWindowStore,
                 other: JoinWindowStore, outer: OuterJoinStore | None) -> None:
        self.name = name
        self.defined_at = defined_at
        self.how = how
        self.before = before
        self.after = after
        self.grace = grace
        self.combine = combine
        self.windows = (this, other)
        self.outer = outer
        self.stores = [s for s in (this, other, outer) if s is not None]
        # per side: (join before, join after, parks unmatched records)
        self.params = ((before, after, how in ("left", "outer")),
                       (after, before, how == "outer"))
        self.stream_time = -1
        self.min_time = _JAVA_LONG_MAX
        self.last_seq = 0
        self.dropped = 0
        self.side = []

    def time_hints(self) -> dict[str, int]:
        return {"min_time": self.min_time} if self.outer is not None else {}

    def restore_time_hints(self, hints: dict[str, int]) -> None:
        mt = hints.get("min_time")
        if isinstance(mt, int):
            self.min_time = mt

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        append = out.append
        combine = self.combine
        this_store = self.windows[port]
        other_store = self.windows[1 - port]
        outer = self.outer
        join_before, join_after, parks = self.params[port]
        this_side = 1 if port == 0 else 0  # outer-store side flag: left = 1, right = 0
        other_side = 1 - this_side
        left = port == 0
        jag = join_after + self.grace
        for r in batch:
            k, v, t, s, h = r
            self.last_seq = s
            if t > self.stream_time:
                self.stream_time = t
            if k is None:
                if parks and v is not None:
                    try:
                        value = combine(v, None) if left else combine(None, v)
                    except Exception as exc:
                        raise StepFailure(self.name, self.defined_at, r, exc) from exc
                    append((None, value, t, s, h))
                else:
                    self.dropped += 1
                continue
            if v is None:
                self.dropped += 1
                this_store.advance(t)  # the window store still sees the record's time
                continue
            st = self.stream_time
            try:
                if outer is not None and t == st:
                    # only scan the parked records if some might have closed (Kafka Streams'
                    # minTime hint; MAX_VALUE + a positive number overflows in Java)
                    mt = self.min_time
                    if (mt + jag < st) if mt != _JAVA_LONG_MAX else jag > 0:
                        self._emit_closed(r, out)
                lo = t - join_before
                hi = t + join_after
                matches = other_store.fetch(k, lo if lo > 0 else 0, hi if hi > 0 else 0)
                if matches:
                    for ots, _rid, ov in matches:
                        if outer is not None:
                            outer.remove_all(ots, other_side, k)
                        append((k, combine(v, ov) if left else combine(ov, v),
                                t if t > ots else ots, s, h))
                elif parks:
                    if (hi if hi > 0 else 0) < st or outer is None:
                        append((k, combine(v, None) if left else combine(None, v), t, s, h))
                    else:
                        if t < self.min_time:
                            self.min_time = t
                        outer.put(t, this_side, k, v)
            except StepFailure:
                raise
            except Exception as exc:
                raise StepFailure(self.name, self.defined_at, r, exc) from exc
            if not this_store.put(k, v, t):
                self.dropped += 1
        return out

    def _emit_closed(self, r: Rec, out: Batch) -> None:
        """``emitNonJoinedOuterRecords``: emit parked records whose window closed."""
        st = self.stream_time
        grace = self.grace
        outer = self.outer
        assert outer is not None
        self.min_time = _JAVA_LONG_MAX
        order = outer.order
        if not order:
            return
        left_open = right_open = False
        lookback = (self.before, self.after)  # by outer-store side flag: right=0, left=1
        entries = outer.entries
        combine = self.combine
        _k, _v, _t, s, h = r
        keep: list[tuple[int, int, bytes, int]] = []
        visited = 0
        for item in order:
            ts, side = item[0], item[1]
            self.min_time = ts
            if left_open and right_open:
                break
            visited += 1
            if ts + lookback[side] + grace >= st:
                if side:
                    left_open = True
                else:
                    right_open = True
                keep.append(item)
                continue
            key, value = entries[item[3]]
            out.append((key, combine(value, None) if side else combine(None, value), ts, s, h))
            outer._forget(item)
        if len(keep) != visited:
            outer.order = keep + order[visited:]

    def end(self) -> Batch:
        outer = self.outer
        if outer is None or not outer.order:
            return []
        out: Batch = []
        combine = self.combine
        s = self.last_seq
        for item in outer.order:
            key, value = outer.entries[item[3]]
            ts, side = item[0], item[1]
            try:
                joined = combine(value, None) if side else combine(None, value)
            except Exception as exc:
                raise StepFailure(self.name, self.defined_at, (key, value, ts, s, None),
                                  exc) from exc
            out.append((key, joined, ts, s, None))
            outer._forget(item)
        outer.order = []
        self.min_time = _JAVA_LONG_MAX
        return out


# -- table-table ----------------------------------------------------------------------------------
class TableTableJoinOp(Operator):
    """``KTableKTable{Inner,Left,Right,Outer}Join``: both sides materialized as
    ``[value, timestamp]``; forwards ``Change(new_joined, old_joined)``."""

    def __init__(self, name: str, defined_at: str, how: str,
                 combine: Callable[[Any, Any], Any], left: TableStore,
                 right: TableStore, versioned: tuple[bool, ...] = (False, False)) -> None:
        self.name = name
        self.defined_at = defined_at
        self.how = how
        self.combine = combine
        #: per side: the table is versioned, its out-of-order updates are dropped (KIP-914)
        self.versioned = versioned
        self.sides = (left, right)
        self.stores = [left, right]
        self.dropped = 0
        self.side = []

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        append = out.append
        this = self.sides[port]
        other = self.sides[1 - port].data
        data = this.data
        dirty = this._dirty
        combine = self.combine
        how = self.how
        is_left = port == 0
        versioned = self.versioned[port]
        for r in batch:
            k, ch, t, s, h = r
            if k is None or (versioned and ch.__class__ is not Change):
                self.dropped += 1  # a None key, or a versioned table's out-of-order update
                continue
            new, old = ch
            if new is None:
                data.pop(k, None)
                dirty[k] = None
            else:
                entry = [new, t]
                data[k] = entry
                dirty[k] = entry
            o = other.get(k)
            try:
                if o is None:
                    # other side absent
                    if how == "inner" or (how == "left" and not is_left):
                        continue
                    if new is None and old is None:
                        continue
                    ov = None
                    ts = t
                else:
                    ov = o[0]
                    ts = t if t > o[1] else o[1]
                if how == "inner" or (how == "left" and is_left):
                    jn = None if new is None else self._j(new, ov, is_left)
                    jo = None if old is None else self._j(old, ov, is_left)
                elif how == "left":  # right side of a left join (KTableKTableRightJoin)
                    jn = combine(ov, new)
                    jo = combine(ov, old)
                else:  # outer
                    jn = None if (ov is None and new is None) else self._j(new, ov, is_left)
                    jo = None if (ov is None and old is None) else self._j(old, ov, is_left)
            except Exception as exc:
                raise StepFailure(self.name, self.defined_at, r, exc) from exc
            append((k, _tuple_new(Change, (jn, jo)), ts, s, h))
        return out

    def _j(self, this_value: Any, other_value: Any, is_left: bool) -> Any:
        if is_left:
            return self.combine(this_value, other_value)
        return self.combine(other_value, this_value)


# -- factories ------------------------------------------------------------------------------------
def _stream_table(plan_node: PlanNode, ctx: OpContext) -> Operator:
    node = plan_node.node
    assert node is not None
    if node.params.get("history") is not None:  # the table is versioned
        from .versioned import versioned_stream_table_join

        return versioned_stream_table_join(plan_node, ctx, _combine_of(plan_node))
    row = StreamTableJoinOp(plan_node.name, node.defined_at, node.params.get("how", "inner"),
                            _combine_of(plan_node), make_store(plan_node, ctx, "table"))
    if not ctx.vectorize:
        return row
    from .join_vec import StreamTableJoinVec

    return StreamTableJoinVec(row)


def _store_name(plan_node: PlanNode, ctx: OpContext, suffix: str) -> tuple[str, str]:
    name = f"{plan_node.name}-{suffix}"
    spec = ctx.stores.get(name)
    return name, spec.changelog if spec is not None else f"{ctx.app_id}-{name}-changelog"


def _stream_stream(plan_node: PlanNode, ctx: OpContext) -> Operator:
    node = plan_node.node
    assert node is not None
    how = node.params.get("how", "inner")
    window = node.params["window"]
    before, after, grace = int(window.before), int(window.after), int(window.grace)
    retention = before + after + grace
    this = JoinWindowStore(*_store_name(plan_node, ctx, "this"), retention)
    other = JoinWindowStore(*_store_name(plan_node, ctx, "other"), retention)
    outer = OuterJoinStore(*_store_name(plan_node, ctx, "outer")) if how != "inner" else None
    return StreamStreamJoinOp(plan_node.name, node.defined_at, how, before, after, grace,
                              _combine_of(plan_node), this, other, outer)


def _table_table(plan_node: PlanNode, ctx: OpContext) -> Operator:
    node = plan_node.node
    assert node is not None
    return TableTableJoinOp(plan_node.name, node.defined_at, node.params.get("how", "inner"),
                            _combine_of(plan_node), make_store(plan_node, ctx, "left"),
                            make_store(plan_node, ctx, "right"),
                            versioned=tuple(node.params.get("versioned", (False, False))))


OPERATOR_FACTORIES["join_stream_table"] = _stream_table
OPERATOR_FACTORIES["join_stream_stream"] = _stream_stream
OPERATOR_FACTORIES["join_table_table"] = _table_table
