"""``suppress``: Kafka Streams 4.1.1's ``KTableSuppressProcessor`` with its in-memory
time-ordered buffer, as TopologyTestDriver shows it (conformance cases ``suppress.json``,
``windows_*.json`` with ``"emit": "suppress"``; FINDINGS D9, D21, B.6-3).

For each table update ``(key, Change(new, old), t)``:

1. The operator's stream time becomes ``max(stream time, t)`` (its own: the largest timestamp
   of the updates that reach it).
2. The update is buffered under its key. A key that is not buffered gets a **buffer time**:
   the window's end for ``until="window-close"`` (the end as the windowed key reports it), the
   update's timestamp for a time limit; it keeps that time, and the value it had before (its
   *prior* value, ``old`` of this first update), until it comes out. A buffered key takes the
   new value, timestamp and headers.
3. Keys come out while the smallest buffer time is ``<= stream time - limit`` (limit: the grace
   period, plus the gap for sessions; or the time limit), in buffer-time order, ties by the
   key's serialized bytes (windowed keys: the inner key's bytes, then the window's start, as
   Kafka's windowed serdes write them; sessions: end, then start). Each comes out as
   ``Change(latest value, prior value)`` with its latest timestamp and headers. With
   ``window-close``, deletes (``None``) come out as nothing (Kafka: "safe to drop
   tombstones"); with a time limit they come out like any update.
4. Then, if the buffer holds more than ``max_records`` keys or more than ``max_bytes`` bytes:
   ``when_full="emit-early"`` lets the oldest keys out (same order) until it fits;
   ``when_full="fail"`` stops the run with an error at this update, like Kafka's
   ``shutDownWhenFull`` (the update is not committed).

Bytes are counted as Kafka Streams estimates a buffered record: 8 (buffer time) + the key's
bytes + the prior value + the old value (unless it is the prior value itself) + the new value +
the record's metadata (8 + 8 + the input topic's name + 4 + header names and values). Values
count as Kafka's serdes would write them (text: its UTF-8 bytes, numbers: 8, others: their
JSON); Kafka Streams' own count differs by the serdes it uses (and by one old value: its
aggregations report the initializer, not nothing, as a new key's old value).

**End of a bounded input** (:meth:`end`): every buffered key comes out, in the same order.

State: the buffer is a store (changelog key = the key; value = ``[buffer time, new, old,
prior, timestamp, headers]``), and the stream time is committed with the positions, so a
restarted run continues exactly.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable
from typing import Any

from ..keys import decode_key, encode_key, key_id, unwrap_key
from ..plan import PlanNode, changelog_topic
from ..suppress import SuppressSpec
from ..types import Change
from ..windows import Windowed
from .operators import Batch, Operator, StepFailure
from .state import StateStore
from .table_ops import key_bytes
from .task import OPERATOR_FACTORIES, OpContext
from .window_store import NO_TIMESTAMP

__all__ = ["SuppressBuffer", "SuppressOp"]

# entry fields
_TIME, _NEW, _OLD, _PRIOR, _TS, _HEADERS, _SIZE, _SORT, _GEN = range(9)


def _value_size(value: Any) -> int:
    """Bytes of a value as Kafka's serdes would write it (an estimate for ``max_bytes``)."""
    if value is None:
        return 0
    cls = value.__class__
    if cls is str:
        return len(value.encode("utf-8"))
    if cls is bytes:
        return len(value)
    if cls is bool:
        return 1
    if cls is int or cls is float:
        return 8
    return len(json.dumps(value, separators=(",", ":"), default=str).encode("utf-8"))


def sort_bytes(key: Any, session: bool) -> bytes:
    """The bytes Kafka Streams' buffer orders a key by (its serialized form)."""
    key = unwrap_key(key)
    if key.__class__ is Windowed:
        inner = key_bytes(unwrap_key(key[0]))
        if session:
            return inner + _long(key[2]) + _long(key[1])
        return inner + _long(key[1])
    return key_bytes(key)


def _long(n: int) -> bytes:
    return int(n).to_bytes(8, "big", signed=True)


class SuppressBuffer(StateStore):
    """The buffered keys: ``entries[key] = [buffer time, new, old, prior, ts, headers, size,
    sort bytes, generation]`` and a heap of ``(buffer time, sort bytes, generation, key)``."""

    kind = "kv"

    def __init__(self, name: str, changelog: str, session: bool) -> None:
        super().__init__(name, changelog)
        self.session = session
        self.entries: dict[Any, list[Any]] = {}
        self.heap: list[tuple[int, bytes, int, Any]] = []
        self.size = 0
        self._gen = 0

    # -- buffer operations ----------------------------------------------------------------------
    def put(self, key: Any, time: int, new: Any, old: Any, ts: int, headers: Any,
            context: int) -> None:
        """Buffer an update (a key already buffered keeps its buffer time and prior value)."""
        e = self.entries.get(key)
        if e is None:
            self._gen += 1
            sort = sort_bytes(key, self.session)
            e = [time, new, old, old, ts, headers, 0, sort, self._gen]
            self.entries[key] = e
            heapq.heappush(self.heap, (time, sort, self._gen, key))
            size = 8 + len(sort) + _value_size(old) + _value_size(new) + context
        else:
            e[_NEW], e[_OLD], e[_TS], e[_HEADERS] = new, old, ts, headers
            size = (8 + len(e[_SORT]) + _value_size(e[_PRIOR]) + _value_size(old)
                    + _value_size(new) + context)
            self.size -= e[_SIZE]
        e[_SIZE] = size
        self.size += size
        self._dirty[key] = e

    def min_time(self) -> int | None:
        """The smallest buffer time (``None`` when empty)."""
        heap = self.heap
        entries = self.entries
        while heap:
            time, _sort, gen, key = heap[0]
            e = entries.get(key)
            if e is not None and e[_GEN] == gen:
                return time
            heapq.heappop(heap)  # a key that came out since
        return None

    def pop_min(self) -> tuple[Any, list[Any]]:
        """Remove and return the oldest buffered key and its entry."""
        self.min_time()
        _time, _sort, _gen, key = heapq.heappop(self.heap)
        e = self.entries.pop(key)
        self.size -= e[_SIZE]
        self._dirty[key] = None
        return key, e

    def __len__(self) -> int:
        return len(self.entries)

    # -- changelog --------------------------------------------------------------------------
    def encode_key(self, key: Any) -> Any:
        return encode_key(key)

    def drain_changes(self) -> list[tuple[Any, Any]]:
        if not self._dirty:
            return []
        out = []
        for k, e in self._dirty.items():
            value = None if e is None else [
                e[_TIME], e[_NEW], e[_OLD], e[_PRIOR], e[_TS],
                None if not e[_HEADERS] else [[n, v.decode("latin-1") if isinstance(v, bytes)
                                               else v] for n, v in e[_HEADERS]],
                e[_SIZE]]
            out.append((encode_key(k), value))
        self._dirty = {}
        return out

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        count = 0
        for k, v in records:
            count += 1
            key = key_id(decode_key(k))
            old = self.entries.pop(key, None)
            if old is not None:
                self.size -= old[_SIZE]
            if v is None:
                continue
            time, new, old_v, prior, ts, headers, size = v
            hdrs = None if not headers else tuple(
                (n, x.encode("latin-1") if isinstance(x, str) else x) for n, x in headers)
            self._gen += 1
            sort = sort_bytes(key, self.session)
            self.entries[key] = [time, new, old_v, prior, ts, hdrs, size, sort, self._gen]
            self.size += size
        self.heap = [(e[_TIME], e[_SORT], e[_GEN], k) for k, e in self.entries.items()]
        heapq.heapify(self.heap)
        return count


class SuppressOp(Operator):
    """``KTableSuppressProcessor`` (see the module docstring)."""

    def __init__(self, pn: PlanNode, ctx: OpContext) -> None:
        node = pn.node
        assert node is not None
        self.name = pn.name
        self.defined_at = node.defined_at
        self.side = []
        spec: SuppressSpec = node.params["spec"]
        self.spec = spec
        self.stream_time = NO_TIMESTAMP
        store_name = f"{node.name}-buffer"
        store_spec = ctx.stores.get(store_name)
        changelog = (store_spec.changelog if store_spec is not None
                     else changelog_topic(ctx.app_id, store_name))
        self.buffer = SuppressBuffer(store_name, changelog, spec.window == "session")
        self.stores = [self.buffer]
        task = ctx.task
        inputs = task.subtopology.inputs if task is not None else ()
        #: record metadata Kafka counts per buffered record: timestamp, offset, topic, partition
        self._context = 8 + 8 + len(inputs[0]) + 4 if inputs else 20
        self._last_seq = -1

    def _over(self) -> bool:
        spec, buf = self.spec, self.buffer
        return ((spec.max_records is not None and len(buf) > spec.max_records)
                or (spec.max_bytes is not None and buf.size > spec.max_bytes))

    def _emit(self, key: Any, e: list[Any], seq: int, out: Batch) -> None:
        new = e[_NEW]
        if new is None and self.spec.window_close:
            return  # final results: deletes are dropped
        out.append((key, Change(new, e[_PRIOR]), e[_TS], seq, e[_HEADERS]))

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        buf = self.buffer
        spec = self.spec
        limit = spec.limit
        window_close = spec.window_close
        bounded = spec.max_records is not None or spec.max_bytes is not None
        st = self.stream_time
        for r in batch:
            k, ch, t, s, h = r
            if t > st:
                st = t
            if window_close:
                wk = unwrap_key(k)
                if wk.__class__ is not Windowed:  # pragma: no cover - checked when defined
                    raise StepFailure(self.name, self.defined_at, r,
                                      TypeError("until='window-close' needs windowed keys"))
                time = wk[2]
            else:
                time = t
            context = self._context
            if h:
                context += sum(len(n) + (len(v) if v is not None else 0) for n, v in h)
            buf.put(k, time, ch[0], ch[1], t, h, context)
            expiry = st - limit
            while True:
                m = buf.min_time()
                if m is None or m > expiry:
                    break
                key, e = buf.pop_min()
                self._emit(key, e, s, out)
            if bounded and self._over():
                if spec.when_full == "fail":
                    self.stream_time = st
                    raise StepFailure(self.name, self.defined_at, r, RuntimeError(
                        f"the suppress buffer exceeded its max capacity: {len(buf)}/"
                        f"{_bound(spec.max_records)} records and {buf.size}/"
                        f"{_bound(spec.max_bytes)} bytes (when_full='fail'). Give it more "
                        "room (max_records=, max_bytes=) or let it emit early "
                        "(when_full='emit-early', time limits only)"))
                while self._over():
                    key, e = buf.pop_min()
                    self._emit(key, e, s, out)
            self._last_seq = s
        self.stream_time = st
        return out

    def end(self) -> Batch:
        out: Batch = []
        buf = self.buffer
        while buf.min_time() is not None:
            key, e = buf.pop_min()
            self._emit(key, e, self._last_seq, out)
        return out


def _bound(value: int | None) -> str:
    return "unbounded" if value is None else str(value)


OPERATOR_FACTORIES["suppress"] = SuppressOp
