"""The ``process`` step: a user :class:`~workbench.processors.Processor` run by the engine.

One processor instance runs per task (the factory is called once per task). The operator gives it
a :class:`TaskProcessorContext` (forward records, use its declared state stores, read stream and
wall-clock time, schedule punctuation) and feeds it one :class:`~workbench.types.Record` at a time.

Punctuation follows Kafka Streams (``PunctuationQueue`` / ``PunctuationSchedule``, checked against
the real Kafka Streams 4.1.1 TopologyTestDriver):

- ``"stream_time"`` schedules start at time 0 (so the first punctuation comes after the first
  record) and are checked after each record; ``"wall_clock"`` schedules start at
  ``now + interval`` and are checked by :meth:`ProcessOp.punctuate_wall`.
- A due schedule fires **once** with the *current* time (stream time or wall-clock time, not the
  scheduled time), and its next time is ``scheduled + interval`` or, when that is not in the
  future any more, the next multiple of ``interval`` after the current time (missed intervals
  are skipped, not caught up).
- Several schedules due at the same check fire in scheduled-time order, ties in the order they
  were created.

Kafka Streams runs stream-time punctuation after the task has processed a record through *every*
branch of the sub-topology, so the punctuation's records come after everything that record
caused and before the next record. Records forwarded by a stream-time punctuation therefore carry
``seq = s + 0.5``, ``s`` being the ``seq`` of the record after which it fired: a downstream
multi-input step (``merge``, joins) orders them exactly so. Records forwarded by a wall-clock
punctuation carry ``seq`` -1 (the engine runs them as a batch of their own). Both default to the
punctuation time as timestamp and to no headers, as Kafka Streams' punctuation record context
does.

Differences from Kafka Streams (documented): a processor's stream time is the largest timestamp
of the records that *reached it*, where Kafka Streams uses the task's stream time (which also
counts records an upstream ``filter`` dropped in the same sub-topology, and timestamps before an
upstream step changed them); so a dropped record does not trigger a punctuation here. The two are
the same when nothing upstream in the sub-topology drops or re-times records (for example right
after a source or a repartition).
"""

from __future__ import annotations

import heapq
import logging
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .._time import duration_ms, to_epoch_ms
from ..errors import DefinitionError, ProcessingError, WorkbenchError, did_you_mean
from ..plan import PlanNode
from ..types import Record
from .global_ops import global_store
from .operators import Batch, Operator, StepFailure
from .process_stores import SessionStore, TimestampedKeyValueStore
from .state import KeyValueStore, StateStore
from .task import OPERATOR_FACTORIES, OpContext

__all__ = ["Punctuation", "ProcessKeyValueStore", "ProcessOp", "TaskProcessorContext",
           "WindowStore"]

log = logging.getLogger(__name__)

_UNSET: Any = object()
_NEVER = 1 << 62
_KINDS = {"stream_time": "stream_time", "wall_clock": "wall_clock",
          "stream_time_punctuation": "stream_time", "wall_clock_time": "wall_clock"}


def _hashable(value: Any) -> Any:
    """Turn JSON lists (tuples after a round trip) back into tuples, recursively."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


# -- stores ------------------------------------------------------------------------------------
class ProcessKeyValueStore(KeyValueStore):
    """The ``"kv"`` store of a processor: ``get``/``put``/``delete``/``items`` (a ``None`` value
    deletes). Keys and values must be JSON-friendly; tuple keys survive the changelog."""

    def decode_key(self, key: Any) -> Any:
        return _hashable(key)

    def put(self, key: Any, value: Any) -> None:
        """Set ``key``'s value (``None`` deletes); a ``None`` key is refused, as Kafka
        Streams' stores refuse it (its changelog record could not be written)."""
        from .process_stores import _check_key

        _check_key(self, key)
        super().put(key, value)

    def delete(self, key: Any) -> None:
        from .process_stores import _check_key

        _check_key(self, key)
        super().delete(key)


class WindowStore(StateStore):
    """The ``"window"`` store of a processor: values per ``(key, window_start)``.

    ``put(key, window_start, value)`` (``None`` deletes), ``get(key, window_start)``,
    ``fetch(key, time_from, time_to)`` → ``[(window_start, value)]`` with ``time_from ≤
    window_start ≤ time_to`` in ascending start order, ``delete(key, window_start)`` and
    ``items()`` → ``[((key, window_start), value)]`` (keys in first-insertion order, starts
    ascending). There is no retention: delete windows you no longer need.

    The changelog key of an entry is the list ``[key, window_start]``.
    """

    kind = "window"

    def __init__(self, name: str, changelog: str) -> None:
        super().__init__(name, changelog)
        #: key -> (sorted window starts, {start: value})
        self._data: dict[Any, tuple[list[int], dict[int, Any]]] = {}
        self._size = 0

    # -- reads
    def get(self, key: Any, window_start: int, default: Any = None) -> Any:
        """The value of ``key`` in the window starting at ``window_start``, or ``default``."""
        entry = self._data.get(key)
        if entry is None:
            return default
        return entry[1].get(window_start, default)

    def fetch(self, key: Any, time_from: int, time_to: int) -> list[tuple[int, Any]]:
        """``[(window_start, value)]`` of ``key`` with ``time_from ≤ window_start ≤ time_to``,
        ascending."""
        entry = self._data.get(key)
        if entry is None:
            return []
        starts, values = entry
        lo = bisect_left(starts, time_from)
        hi = bisect_right(starts, time_to)
        return [(s, values[s]) for s in starts[lo:hi]]

    def items(self) -> Iterator[tuple[tuple[Any, int], Any]]:
        """Every ``((key, window_start), value)``."""
        return iter([((k, s), values[s]) for k, (starts, values) in self._data.items()
                     for s in starts])

    def keys(self) -> list[Any]:
        """The keys that have at least one window."""
        return list(self._data)

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key_and_start: Any) -> bool:
        key, start = key_and_start
        entry = self._data.get(key)
        return entry is not None and start in entry[1]

    # -- writes
    def put(self, key: Any, window_start: int, value: Any) -> None:
        """Set the value of ``key`` in the window starting at ``window_start`` (a ``None`` key
        is refused, as Kafka Streams' stores refuse it)."""
        from .process_stores import _check_key

        _check_key(self, key)
        if value is None:
            self.delete(key, window_start)
            return
        start = int(window_start)
        self._set(key, start, value)
        sk = (key, start)
        dirty = self._dirty
        dirty.pop(sk, None)
        dirty[sk] = value

    def delete(self, key: Any, window_start: int) -> None:
        """Remove the window (a tombstone in the changelog)."""
        start = int(window_start)
        self._remove(key, start)
        sk = (key, start)
        dirty = self._dirty
        dirty.pop(sk, None)
        dirty[sk] = None

    def _set(self, key: Any, start: int, value: Any) -> None:
        entry = self._data.get(key)
        if entry is None:
            self._data[key] = ([start], {start: value})
            self._size += 1
            return
        starts, values = entry
        if start not in values:
            insort(starts, start)
            self._size += 1
        values[start] = value

    def _remove(self, key: Any, start: int) -> None:
        entry = self._data.get(key)
        if entry is None or start not in entry[1]:
            return
        starts, values = entry
        del values[start]
        del starts[bisect_left(starts, start)]
        self._size -= 1
        if not values:
            del self._data[key]

    # -- changelog
    def encode_key(self, key: Any) -> Any:
        return [key[0], key[1]]

    def decode_key(self, key: Any) -> Any:
        return (_hashable(key[0]), int(key[1]))

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        count = 0
        for k, v in records:
            key, start = self.decode_key(k)
            if v is None:
                self._remove(key, start)
            else:
                self._set(key, start, v)
            count += 1
        return count


# -- punctuation -------------------------------------------------------------------------------
class Punctuation:
    """A scheduled punctuation (returned by ``ctx.schedule``); :meth:`cancel` stops it."""

    __slots__ = ("callback", "cancelled", "interval", "kind")

    def __init__(self, interval: int, kind: str, callback: Callable[[int], Any]) -> None:
        self.interval = interval
        self.kind = kind
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not call this punctuation any more."""
        self.cancelled = True

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<Punctuation every {self.interval} ms of {self.kind}{state}>"


def _next_time(scheduled: int, interval: int, now: int) -> int:
    """Kafka Streams' ``PunctuationSchedule.next``: skip missed intervals, stay aligned."""
    nxt = scheduled + interval
    if now >= nxt:
        nxt = scheduled + ((now - scheduled) // interval + 1) * interval
    return nxt


# -- context -----------------------------------------------------------------------------------
class TaskProcessorContext:
    """The :class:`~workbench.processors.ProcessorContext` the engine hands to a processor."""

    def __init__(self, op: ProcessOp, partition: int, clock: Any) -> None:
        self._op = op
        self._partition = partition
        self._clock = clock
        self._stream_time = -1
        # the record being processed: (key, value, timestamp, seq, headers); in a punctuation
        # (None, None, time, seq, None). _out is None outside process and punctuation calls.
        self._cur: tuple[Any, Any, int, Any, Any] = (None, None, -1, -1, None)
        self._out: Batch | None = None

    @property
    def partition(self) -> int:
        """The task's partition."""
        return self._partition

    @property
    def stream_time(self) -> int:
        """Largest timestamp of the records that reached this processor (-1 before any)."""
        return self._stream_time

    @property
    def wall_clock(self) -> int:
        """The engine clock's time (epoch ms; mocked by the test driver)."""
        return int(self._clock.now_ms())

    @property
    def step(self) -> str:
        """The name of the ``process`` step."""
        return self._op.name

    def forward(self, record: Any, value: Any = _UNSET, timestamp: Any = None, *,
                headers: Any = _UNSET) -> None:
        """Emit a record downstream.

        ``forward(record)`` emits a :class:`~workbench.types.Record` as it is;
        ``forward(key, value)`` emits with the current record's timestamp and headers (in a
        punctuation: the punctuation time and no headers). ``timestamp=`` and ``headers=``
        override either form.
        """
        out = self._out
        if out is None:
            raise RuntimeError(f"step {self._op.name!r}: forward() can only be called while "
                               "processing a record or in a punctuation callback.")
        cur = self._cur
        if value is _UNSET:
            if not isinstance(record, Record):
                raise TypeError(
                    "forward() takes a Record, or a key and a value: forward(key, value); "
                    f"got only {record!r}.")
            key, value, ts, hdrs = record
            if timestamp is not None:
                ts = timestamp
        else:
            key = record
            ts = cur[2] if timestamp is None else timestamp
            hdrs = cur[4]
        if headers is not _UNSET:
            hdrs = headers
        if type(ts) is not int:
            ts = to_epoch_ms(ts)
        out.append((key, value, ts, cur[3], hdrs))

    def store(self, name: str) -> Any:
        """The state store declared as ``name`` in ``process(..., stores={name: kind})``."""
        stores = self._op.store_by_name
        try:
            return stores[name]
        except KeyError:
            found = self._op.global_stores.get(name)
            if found is not None:
                return found
            raise DefinitionError(
                f"step {self._op.name!r}: no state store {name!r}; declare it with "
                f"process(..., stores={{{name!r}: 'kv'}}), or a global table with "
                f"process(..., global_stores=[table])."
                + did_you_mean(name, [*stores, *self._op.global_stores])) from None

    def schedule(self, interval: Any, kind: str, callback: Callable[[int], Any]
                 ) -> Punctuation:
        """Call ``callback(time)`` every ``interval`` (``"5s"``, ms, ``timedelta``) of
        ``"stream_time"`` or ``"wall_clock"`` time; returns a handle with ``cancel()``."""
        step = self._op.name
        ms = duration_ms(interval, f"step {step!r}: schedule() interval")
        if ms < 1:
            raise DefinitionError(f"step {step!r}: schedule() interval must be at least 1 ms.")
        norm = _KINDS.get(str(kind).lower()) if isinstance(kind, str) else None
        if norm is None:
            raise DefinitionError(f"step {step!r}: schedule() kind {kind!r} must be "
                                  "'stream_time' or 'wall_clock'.")
        if not callable(callback):
            raise DefinitionError(f"step {step!r}: schedule() callback must be callable, "
                                  f"got {callback!r}.")
        punct = Punctuation(ms, norm, callback)
        self._op.add_schedule(punct, self.wall_clock)
        return punct

    def __repr__(self) -> str:
        return (f"<ProcessorContext step={self._op.name!r} partition={self._partition} "
                f"stream_time={self._stream_time}>")


# -- operator ----------------------------------------------------------------------------------
class ProcessOp(Operator):
    """Runs one processor instance for one task."""

    def __init__(self, pn: PlanNode, ctx: OpContext) -> None:
        node = pn.node
        assert node is not None
        self.name = pn.name
        self.defined_at = node.defined_at
        params = node.params
        self.store_by_name: dict[str, StateStore] = {}
        stores: list[StateStore] = []
        for short, kind in params.get("stores", ()):
            full = f"{pn.name}-{short}" if short else pn.name
            spec = ctx.store_spec(full)
            store: StateStore
            if kind == "window":
                store = WindowStore(full, spec.changelog)
            elif kind == "timestamped":
                store = TimestampedKeyValueStore(full, spec.changelog)
            elif kind == "session":
                retention = params.get("store_options", {}).get(short, {}).get("retention")
                store = SessionStore(full, spec.changelog, retention)
            else:
                store = ProcessKeyValueStore(full, spec.changelog)
            stores.append(store)
            self.store_by_name[short] = store
        self.stores = stores
        #: read-only global tables (``process(global_stores=...)``): name -> GlobalStore
        self.global_stores = {alias: global_store(ctx, table)
                              for alias, table in params.get("globals", {}).items()}
        self.side = []
        self.context = TaskProcessorContext(self, ctx.partition, ctx.clock)
        self._stream_heap: list[tuple[int, int, Punctuation]] = []
        self._wall_heap: list[tuple[int, int, Punctuation]] = []
        self._stream_due = _NEVER
        self._order = 0
        self._closed = False
        factory = params["factory"]
        try:
            self.processor = factory()
        except WorkbenchError:
            raise
        except Exception as exc:
            raise self._error(f"could not create its processor with {factory!r}", exc) from exc
        if not callable(getattr(self.processor, "process", None)):
            raise DefinitionError(
                f"step {self.name!r} (defined at {self.defined_at}): the processor factory "
                f"returned {self.processor!r}, which has no process(record) method; pass a "
                "workbench.Processor subclass or a function returning an instance.")

    def _error(self, what: str, exc: BaseException) -> ProcessingError:
        return ProcessingError(
            f"step {self.name!r} (defined at {self.defined_at}) {what} (partition "
            f"{self.context.partition}): {type(exc).__name__}: {exc}.",
            step=self.name, defined_at=self.defined_at)

    @property
    def dropped(self) -> int:
        """Puts its stores refused (expired sessions), as Kafka Streams counts them."""
        return sum(getattr(s, "dropped", 0) for s in self.stores)

    # -- lifecycle
    def init(self, ctx: Any) -> None:
        init = getattr(self.processor, "init", None)
        if init is None:
            return
        try:
            init(self.context)
        except WorkbenchError:
            raise
        except Exception as exc:
            raise self._error("failed in its processor's init()", exc) from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self.processor, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception as exc:
            raise self._error("failed in its processor's close()", exc) from exc

    def end(self) -> Batch:
        # Kafka Streams has no end-of-input signal for processors; nothing to flush.
        return []

    def observed_time(self) -> int | None:
        return self.context._stream_time

    def restore_time(self, t: int) -> None:
        self.context._stream_time = t

    # -- scheduling
    def add_schedule(self, punct: Punctuation, now_wall: int) -> None:
        """Queue a new punctuation (stream time: at 0; wall clock: at now + interval)."""
        self._order += 1
        if punct.kind == "stream_time":
            heapq.heappush(self._stream_heap, (0, self._order, punct))
            self._stream_due = self._stream_heap[0][0]
        else:
            heapq.heappush(self._wall_heap, (now_wall + punct.interval, self._order, punct))

    def _punctuate(self, heap: list[tuple[int, int, Punctuation]], now: int, seq: Any,
                   label: str) -> None:
        c = self.context
        saved = c._cur
        try:
            while heap and heap[0][0] <= now:
                scheduled, order, punct = heapq.heappop(heap)
                if punct.cancelled:
                    continue
                c._cur = (None, None, now, seq, None)
                try:
                    punct.callback(now)
                except Exception as exc:
                    exc.add_note(f"in the {label} punctuation of step {self.name!r} at {now}")
                    raise self._error(f"failed in its {label} punctuation at {now}",
                                      exc) from exc
                if not punct.cancelled:
                    heapq.heappush(heap, (_next_time(scheduled, punct.interval, now), order,
                                          punct))
        finally:
            c._cur = saved

    def punctuate_wall(self, now_ms: int) -> Batch:
        heap = self._wall_heap
        if not heap or heap[0][0] > now_ms:
            return []
        out: Batch = []
        c = self.context
        c._out = out
        try:
            self._punctuate(heap, now_ms, -1, "wall-clock")
        finally:
            c._out = None
        return out

    # -- processing
    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        c = self.context
        c._out = out
        fn = self.processor.process
        st = c._stream_time
        try:
            for r in batch:
                k, v, t, s, h = r
                if t > st:
                    st = c._stream_time = t
                c._cur = r
                try:
                    fn(Record(k, v, t, h))
                except Exception as exc:
                    raise StepFailure(self.name, self.defined_at, r, exc) from exc
                if st >= self._stream_due:
                    self._punctuate(self._stream_heap, st, s + 0.5, "stream-time")
                    heap = self._stream_heap
                    self._stream_due = heap[0][0] if heap else _NEVER
        finally:
            c._out = None
        return out


def _process_factory(pn: PlanNode, ctx: OpContext) -> Operator:
    return ProcessOp(pn, ctx)


OPERATOR_FACTORIES["process"] = _process_factory
