"""The engine: one executor for every driver.

It creates the plan's tasks for the partitions this process owns, restores their state, reads
micro-batches from the driver, runs them through the tasks and, every commit interval and at the
end of input, hands outputs, changelog records and input positions to the driver as **one**
transaction.

Inputs of a task are interleaved the way a Kafka Streams task does it: the next record comes from
the input whose head record has the smallest timestamp (ties: input order); one input keeps its
own order.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .._checks import check_batch_size
from ..drivers.base import Driver, Transaction
from ..errors import DefinitionError, StateError
from ..partitioning import KeyPartitioner
from ..plan import Plan, SubTopology
from ..privacy.hooks import attach_plan as attach_privacy
from ..serde import get_serde
from .batch import Batch, BatchParts
from .clock import Clock, SystemClock
from .external.sizer import BatchSizer
from .footprint import batch_nbytes
from .global_ops import GlobalTables
from .origins import SourceResolver, without_origins
from .origins import rows_with_headers as origin_rows
from .origins import with_headers as origin_headers
from .task import OpContext, Task

__all__ = ["Engine", "EngineStats", "StateListener", "gc_paused", "stream_time_key"]

log = logging.getLogger(__name__)


@dataclass
class EngineStats:
    """Counters a run exposes (progress bars, live views, metrics)."""

    records_in: int = 0
    records_out: dict[str, int] = field(default_factory=dict)
    commits: int = 0
    #: durations of the last 10,000 commits (ms); ``commits`` counts them all (a bounded
    #: deque: a job that runs for weeks must not grow by one float per commit)
    commit_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    started_at: float = field(default_factory=time.perf_counter)
    #: records read per input topic (sources and internal topics)
    records_in_by_topic: dict[str, int] = field(default_factory=dict)
    #: ``time.monotonic()`` of the last turn of the processing loop (liveness)
    loop_at: float = field(default_factory=time.monotonic)
    #: membership changes applied (tasks dropped or added after a rebalance)
    rebalances: int = 0
    #: ``"created"``, ``"restoring"`` (assignment and state restore), ``"running"``,
    #: ``"rebalancing"``, ``"stopped"`` (readiness)
    phase: str = "created"
    #: records of each of the last 100 non-empty polls (the batch sizes)
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=100))
    #: ``time.monotonic()`` of the last 100 commits (see :meth:`commit_rate`)
    commit_times: deque[float] = field(default_factory=lambda: deque(maxlen=100))
    #: of the last 100 commits, the time from reading the oldest record a commit made visible
    #: to the end of that commit (ms): the engine's share of end-to-end latency
    commit_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100))
    #: of the last 100 commits, wall-clock time at the commit minus the newest stream time it
    #: committed (ms): Kafka Streams' record end-to-end latency (large for replayed history)
    e2e_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100))
    #: the batch size: records the batch sizer lets one transaction read now
    #: (:mod:`workbench.runtime.external.sizer`); shrinks at once when steps or external calls
    #: slow down, grows back gradually
    batch_limit: int = 0
    #: of the last 100 transactions, from the first record read to the end of the commit (ms)
    transaction_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100))
    #: the limit the batch sizer keeps transactions inside (ms; ``max_transaction``)
    max_transaction_ms: float = 0.0
    #: records in the queues of external steps (read, calls not finished)
    external_in_flight: int = 0
    #: commits made before the interval was up because the outputs waiting for a commit
    #: reached ``Engine.max_buffered_records`` or ``Engine.max_buffered_bytes``
    #: (backpressure: reading waits for the commit)
    early_commits: int = 0

    def commit_rate(self, window_s: float = 10.0) -> float:
        """Commits per second over the last ``window_s`` seconds (at most 100 commits)."""
        now = time.monotonic()
        recent = [t for t in self.commit_times if now - t <= window_s]
        if len(recent) < 2:
            return float(len(recent)) / window_s
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)

    def batch_size(self) -> float:
        """The mean records per non-empty poll over the last 100 of them."""
        return sum(self.batch_sizes) / len(self.batch_sizes) if self.batch_sizes else 0.0

    def latency_ms(self, q: float, *, kind: str = "commit") -> float:
        """The ``q`` quantile (0..1, nearest rank) of the last 100 commits' latencies:
        ``kind="commit"`` (:attr:`commit_latency_ms`, the oldest record read to the end of
        its commit) or ``"e2e"`` (:attr:`e2e_latency_ms`, wall clock at the commit minus the
        newest event time committed); 0.0 before the first commit."""
        values = sorted(self.commit_latency_ms if kind == "commit" else self.e2e_latency_ms)
        if not values:
            return 0.0
        rank = -(-q * len(values) // 1)  # ceil: the nearest-rank quantile
        return float(values[min(len(values) - 1, max(0, int(rank) - 1))])


class StateListener(Protocol):
    """Receives committed state changes, on the engine's thread (queryable state).

    Stores are named by their changelog topic; changes are the ``(key, value)`` pairs a
    changelog gets (``None`` value: delete), whether or not the driver persists them.
    """

    def restored(self, changelog: str, partition: int, records: list[tuple[Any, Any]]) -> None:
        """Changelog records read while restoring the store of task ``partition``."""

    def committed(self, changes: dict[tuple[str, int], list[tuple[Any, Any]]]) -> None:
        """``{(changelog, partition): changes}`` of one commit, after the driver committed it."""

    def revoked(self, changelog: str, partition: int) -> None:
        """The task ``partition`` of the store moved away (a rebalance)."""


def env_flag_default(name: str, default: bool) -> bool:
    """A boolean environment setting (``0/false/no/off`` or ``1/true/yes/on``)."""
    import os

    value = os.environ.get(name, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    return default


def stream_time_key(task_id: str) -> str:
    """The metadata key under which a task's stream times are committed
    (``stream_time.<subtopology>_<partition>``)."""
    return f"stream_time.{task_id}"


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while records flow.

    Records and values are acyclic, short-lived or appended to logs; with millions of them
    alive, automatic full collections dominate the run time (measured: P1 at 1,000,000 events
    took 2.3 s with the collector paused, 5.7 s without). Reference counting still frees
    everything; the collector runs again when the block ends, and every few seconds of a long
    run (see :meth:`Engine.commit`). Nested uses are fine.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Engine:
    """Runs a :class:`~workbench.plan.Plan` on a :class:`~workbench.drivers.base.Driver`.

    Args:
        plan: the compiled pipeline.
        driver: where topics, state and positions live.
        clock: wall-clock source (commit interval, wall-clock punctuation).
        commit_interval_ms: time between commits.
        batch_size: maximum records read per input partition and poll.
        key_serde: serde whose bytes choose partitions (same on every driver).
        max_transaction_ms: keep each transaction (first record read to end of commit) inside
            this limit (default: derived from the driver, see
            :mod:`workbench.runtime.external.sizer`).
        max_buffered_records: output records the engine holds for the next commit at most
            (default ``workbench.options.max_buffered_records``); when a poll brings them to
            the limit, the engine commits at once instead of reading on (backpressure), so a
            long commit interval or a fast source does not make it grow. At most one poll's
            output (``batch_size`` records per input partition, times the steps' fan-out) goes
            past it. ``0`` means no limit.
        max_buffered_bytes: the same bound in bytes (default
            ``workbench.options.max_buffered_bytes``), estimated from the column batches
            (:mod:`workbench.runtime.footprint`: NumPy ``nbytes``, sampled sizes for Python
            objects); whichever limit is reached first commits. ``0`` means no limit.
    """

    def __init__(
        self,
        plan: Plan,
        driver: Driver,
        *,
        clock: Clock | None = None,
        commit_interval_ms: int = 100,
        batch_size: int = 10_000,
        key_serde: str = "json",
        vectorize: bool | None = None,
        max_transaction_ms: int | None = None,
        max_buffered_records: int | None = None,
        max_buffered_bytes: int | None = None,
        track_origins: bool | None = None,
    ) -> None:
        self.plan = plan
        #: operators run vectorized on column batches; ``False`` runs every stateful step
        #: through its record-by-record operator (the reference path; also
        #: ``WORKBENCH_VECTORIZE=0``)
        self.vectorize = (env_flag_default("WORKBENCH_VECTORIZE", True) if vectorize is None
                          else vectorize)
        #: the driver, seen through the privacy boundary when the pipeline has a key store
        self.driver = attach_privacy(plan, driver)
        self.clock = clock or SystemClock()
        self.commit_interval_ms = commit_interval_ms
        self.batch_size = check_batch_size(batch_size)
        from ..preview import options

        if max_buffered_records is None:
            max_buffered_records = options.max_buffered_records
        if max_buffered_bytes is None:
            max_buffered_bytes = options.max_buffered_bytes
        for name, limit, unit in (("max_buffered_records", max_buffered_records, "records"),
                                  ("max_buffered_bytes", max_buffered_bytes, "bytes")):
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
                raise DefinitionError(f"{name}={limit!r}: use a whole number of {unit} "
                                      "(0: no limit).")
        self.max_buffered_records = max_buffered_records
        self.max_buffered_bytes = max_buffered_bytes
        #: estimated bytes of the outputs made since the last commit (``max_buffered_bytes``)
        self._buffered_bytes = 0
        self.partitioner = KeyPartitioner(get_serde(key_serde).serialize)
        #: chooses how many records each poll reads so that processing, the external calls in
        #: flight and the commit stay inside ``max_transaction``; drives external operators'
        #: queues (backpressure, flush before commit)
        self.batch_sizer = BatchSizer(self, max_transaction_ms)
        #: each topic's serdes and partitioner (set by :meth:`start`)
        self.codecs: Any = None
        self._partitioners: dict[str, KeyPartitioner] = {}
        self._normalize: tuple[str, ...] = ()
        self.tasks: list[Task] = []
        self.partitions: dict[str, int] = {}
        #: the global tables' stores (one copy per process, :mod:`.global_ops`)
        self.globals = GlobalTables(plan, self.driver, self.partitions)
        #: the plan's repartition topics: their records' origins are kept and looked up
        self._internal = {t for t, spec in plan.topics.items() if spec.kind == "repartition"}
        #: the driver keeps origins as columns beside its log (else: one header per record)
        self._keeps_origins = bool(getattr(self.driver, "keeps_origins", False))
        #: records written to repartition topics keep the position of the input record they
        #: came from, so that errors downstream name it (:mod:`.origins`). Default: on where
        #: the driver keeps them as columns (memory), off where each record would carry a
        #: header (measured: ``docs/performance.md``); ``WORKBENCH_ORIGINS=1``/``0`` decides
        self.track_origins = (env_flag_default("WORKBENCH_ORIGINS", self._keeps_origins)
                              if track_origins is None else track_origins)
        self.source_of = SourceResolver(self.driver, self._internal, self.track_origins)
        self.task_counts: dict[int, int] = {}
        self.stats = EngineStats()
        self.on_commit: list[Callable[[Engine], None]] = []
        #: listeners of committed state changes (queryable state, see :class:`StateListener`);
        #: with one registered, changes are drained even when the driver's state is not durable
        self.state_listeners: list[StateListener] = []
        #: called at every commit point, also when there was nothing to commit (engine thread):
        #: surfaces refresh what they publish (metrics snapshots) without a thread of their own
        self.on_interval: list[Callable[[Engine], None]] = []
        self._positions: dict[tuple[str, int], int] = {}
        self._pending_positions: dict[tuple[str, int], int] = {}
        self._last_commit = 0
        self._uncommitted = False
        self._started = False
        self._stop = threading.Event()
        self._limits: dict[tuple[str, int], int] | None = None  # bounded run: end offsets
        self._seq = 0
        self._last_gc = time.monotonic()
        self._long_run = False
        self._finishing = False
        #: metadata committed by earlier runs (stream times of tasks), read at start
        self._committed_meta: dict[str, Any] = {}
        #: per task id, the stream times last committed (only changes are written)
        self._saved_times: dict[str, dict[str, Any]] = {}
        #: set when a bounded run reached the end of its input and flushed (windows closed)
        self.finished = False
        self._membership_since: float | None = None
        #: the driver's ``send_outputs(app_id, outputs)``, if it takes outputs while the
        #: interval runs (produced into the open transaction; committed with the positions)
        self._send_outputs: Callable[[str, dict[tuple[str, int], list[Any]]], None] | None = \
            getattr(self.driver, "send_outputs", None)
        self._first_unsent: float | None = None  # monotonic time of the oldest uncommitted read

    # -- setup --------------------------------------------------------------------------------
    def start(self) -> None:
        """Create topics, decide task counts, create owned tasks and restore their state."""
        if self._started:
            return
        self.stats.phase = "restoring"
        self._resolve_topics()
        self._use_serdes()
        self.globals.restore()  # global tables: every partition, before any task runs
        app = self.plan.app_id
        inputs = [t for st in self.plan.subtopologies for t in st.inputs]
        owned = self.driver.assign(app, inputs)
        self._committed_meta = self.driver.committed_metadata(app)
        for st in self.plan.subtopologies:
            for p in sorted({p for t in st.inputs for p in owned.get(t, [])}):
                self._add_task(st, p)
        hints = getattr(self.driver, "read_hints", None)
        if hints is not None:  # inputs a task reads alone: no need to wait for unfetched data
            shared = {t for st in self.plan.subtopologies if len(st.inputs) > 1
                      for t in st.inputs}
            hints(sole_inputs={t for st in self.plan.subtopologies for t in st.inputs
                               if t not in shared})
        self._last_commit = self.clock.now_ms()
        self.batch_sizer.start()
        self._started = True
        self.stats.phase = "running"
        self.stats.loop_at = time.monotonic()
        log.debug("engine started: %d tasks on %s", len(self.tasks), self.driver.url)

    def _add_task(self, st: SubTopology, p: int) -> None:
        """Create the task of sub-topology ``st`` for partition ``p``: restore its state, read
        its committed positions."""
        app = self.plan.app_id
        ctx = OpContext(app, p, {s.name: s for s in st.stores}, self.clock)
        ctx.extra["globals"] = self.globals.stores
        ctx.extra["track_origins"] = self.track_origins
        ctx.extra["source_of"] = self.source_of
        task = Task(st, p, ctx, vectorize=self.vectorize)
        self._restore(task)
        saved = self._committed_meta.get(stream_time_key(task.id))
        if saved is not None:
            task.restore_times(saved)
            self._saved_times[task.id] = task.times()
        for rn in task.nodes:
            rn.op.init(ctx)
        self.tasks.append(task)
        for t in st.inputs:
            if p < self.partitions[t]:
                self._positions[(t, p)] = self.driver.committed(app, t, p)
                if self._limits is not None and self.plan.topics[t].kind == "source":
                    self._limits.setdefault((t, p), self.driver.end_offset(t, p))

    def apply_ownership(self, owned: dict[str, list[int]]) -> None:
        """Follow a membership change (``driver.poll_membership()``, called right after a
        commit, so every task is committed): drop the tasks whose partitions this process no
        longer owns, create and restore tasks for partitions new to it."""
        self.stats.phase = "rebalancing"
        self.stats.rebalances += 1
        keep = []
        for task in self.tasks:
            if any(task.partition in owned.get(t, ()) for t in task.subtopology.inputs):
                keep.append(task)
                continue
            task.close()
            for listener in self.state_listeners:
                for store in task.stores:
                    listener.revoked(store.changelog, task.partition)
            for t in task.subtopology.inputs:
                self._positions.pop((t, task.partition), None)
                self._pending_positions.pop((t, task.partition), None)
        self.tasks = keep
        have = {(task.subtopology.id, task.partition) for task in keep}
        self._committed_meta = self.driver.committed_metadata(self.plan.app_id)
        for st in self.plan.subtopologies:
            for p in sorted({p for t in st.inputs for p in owned.get(t, [])}):
                if (st.id, p) not in have:
                    self._add_task(st, p)
        self.stats.phase = "running"
        log.info("membership changed: %d tasks", len(self.tasks))

    def _check_membership(self) -> None:
        # once a bounded run has started ending its tasks, a task added now would close its
        # emit-on-close windows early: membership changes wait for the next run
        if self._started and not self._finishing:
            self._membership_since = time.monotonic()
            try:
                owned = self.driver.poll_membership()
            finally:
                self._membership_since = None
            if owned is not None:
                self.apply_ownership(owned)

    def _resolve_topics(self) -> None:
        """Partition counts: sources as they are (or created), each sub-topology runs
        max(input partitions) tasks, its outputs default to that count."""
        topics = self.plan.topics
        for name, spec in topics.items():
            if spec.kind in ("source", "global"):
                self.partitions[name] = self.driver.ensure_topic(name, spec.partitions,
                                                                 kind="source")
        pending = list(self.plan.subtopologies)
        while pending:
            progressed = False
            for st in list(pending):
                # a sub-topology may read a repartition topic it writes itself (e.g. an
                # aggregation joined with a table that another step of it also reads)
                # a copartitioned input is created by its reader with the reader's count
                external = [t for t in st.inputs if t not in st.outputs
                            and not topics[t].copartition]
                if all(t in self.partitions for t in external):
                    count = max((self.partitions[t] for t in external), default=1)
                    self.task_counts[st.id] = count
                    for t in st.inputs:
                        if topics[t].copartition and t not in self.partitions:
                            self.partitions[t] = self.driver.ensure_topic(
                                t, count, kind="repartition")
                    for t in st.outputs:
                        if t not in self.partitions and not topics[t].copartition:
                            spec = topics[t]
                            self.partitions[t] = self.driver.ensure_topic(
                                t, spec.partitions or count, kind=spec.kind,
                                compact=spec.compact)
                    for s in st.stores:
                        if s.shared:
                            continue
                        self.partitions[s.changelog] = self.driver.ensure_topic(
                            s.changelog, count, kind="changelog", compact=True)
                    pending.remove(st)
                    progressed = True
            if not progressed:
                missing = {t for st in pending for t in st.inputs if t not in self.partitions}
                raise StateError(f"cannot resolve partition counts of topics {sorted(missing)}.")

    def _use_serdes(self) -> None:
        """Each topic's serdes (:mod:`workbench.serde.topics`): handed to the driver, checked
        for co-partitioned inputs, used to partition what the engine routes."""
        from ..serde.topics import codecs_for

        self.codecs = codecs = codecs_for(self.plan.topics, self.driver)
        codecs.check_copartitioned((st.inputs for st in self.plan.subtopologies),
                                   self.partitions)
        self._partitioners = {t: codecs.partitioner(t) for t in self.plan.topics}
        self._normalize = () if self.driver.stores_bytes else tuple(
            t for t in self.plan.topics if codecs.typed(t))

    def _restore(self, task: Task) -> None:
        for store in task.stores:
            topic = store.changelog
            count = self.partitions.get(topic)
            if count is None or task.partition >= count:
                continue
            offset, end = 0, self.driver.end_offset(topic, task.partition)
            restored = 0
            while offset < end:
                chunk = self.driver.read(topic, task.partition, offset, 50_000)
                if not chunk:
                    break
                restored += store.restore((r[0], r[1]) for r in chunk)
                for listener in self.state_listeners:
                    listener.restored(topic, task.partition, [(r[0], r[1]) for r in chunk])
                offset = chunk[-1][3] + 1
            if restored:
                log.info("restored %d changelog records into store %s (task %s)", restored,
                         store.name, task.id)

    # -- processing ---------------------------------------------------------------------------
    def end_offsets(self) -> dict[tuple[str, int], int]:
        """Current end offsets of every input partition of the owned tasks."""
        out = {}
        for task in self.tasks:
            for t in task.subtopology.inputs:
                if task.partition < self.partitions[t]:
                    out[(t, task.partition)] = self.driver.end_offset(t, task.partition)
        return out

    def poll(self, limits: dict[tuple[str, int], int] | None = None) -> int:
        """Read and process one micro-batch per task; return how many records were processed.

        Args:
            limits: optional end offsets (exclusive) per source partition (bounded runs).
        """
        total = 0
        self.stats.loop_at = time.monotonic()
        if self.globals:  # global tables first: a record is in them before later stream ones
            self.globals.update(self.batch_size)
        sizing = bool(self.max_buffered_bytes) and self._send_outputs is None
        marks = self._output_marks() if sizing else []
        polled_at = time.perf_counter()
        for task in self.tasks:
            total += self._poll_task(task, limits)
        self.batch_sizer.polled(total, time.perf_counter() - polled_at)
        if total:
            self.stats.records_in += total
            self.stats.batch_sizes.append(total)
            self._uncommitted = True
            if self._first_unsent is None:
                self._first_unsent = self.stats.loop_at
        now = self.clock.now_ms()
        for task in self.tasks:
            task.punctuate_wall(now)
        if sizing:
            self._buffered_bytes += self._new_output_bytes(marks)
        if self._send_outputs is not None:
            self._hand_over()
        if now - self._last_commit >= self.commit_interval_ms or self.batch_sizer.commit_due():
            self.commit()
        elif total and ((self.max_buffered_records and (
                self.buffered_records() >= self.max_buffered_records)) or (
                sizing and self._buffered_bytes >= self.max_buffered_bytes)):
            self.stats.early_commits += 1
            self.commit()
        return total

    def buffered_records(self) -> int:
        """Output records waiting for the next commit in the engine (a driver that takes
        outputs while the interval runs holds them itself, bounded by its own client)."""
        return (sum(len(b) for task in self.tasks for c in task.collectors for b in c.buffer)
                + sum(len(b) for task in self.tasks for s in task.topic_sinks
                      for _t, b in s.buffer))

    def buffered_bytes(self) -> int:
        """The estimated bytes of the outputs waiting for the next commit in the engine
        (counted as polls make them while ``max_buffered_bytes`` is set; else 0)."""
        return self._buffered_bytes

    def _output_marks(self) -> list[tuple[Any, int]]:
        """Each output buffer and how many batches it holds now."""
        return [(op, len(op.buffer)) for task in self.tasks
                for op in (*task.collectors, *task.topic_sinks)]

    def _new_output_bytes(self, marks: list[tuple[Any, int]]) -> int:
        """The estimated bytes of the batches added to the output buffers since ``marks``."""
        size = 0
        for op, mark in marks:
            for item in op.buffer[mark:]:
                size += batch_nbytes(item[1] if isinstance(item, tuple) else item)
        return size

    def _hand_over(self) -> None:
        """Give the outputs made so far to a driver that produces them while the interval runs
        (they join the open transaction; the commit makes them visible with the positions)."""
        routed: dict[tuple[str, int], list[Batch]] = {}
        for task in self.tasks:
            for topic, batch in task.drain_outputs():
                self._route(routed, topic, batch, task.partition)
        outputs = self._as_outputs(routed)
        if outputs:
            assert self._send_outputs is not None
            self._send_outputs(self.plan.app_id, outputs)
            counts = self.stats.records_out
            for (topic, _p), recs in outputs.items():
                counts[topic] = counts.get(topic, 0) + len(recs)

    def _poll_task(self, task: Task, limits: dict[tuple[str, int], int] | None) -> int:
        p = task.partition
        inputs = [t for t in task.subtopology.inputs if p < self.partitions[t]]
        reads: list[tuple[str, Batch]] = []
        read_cap = self.batch_sizer.read_cap(task, self.batch_size)
        for t in inputs:
            pos = self._positions[(t, p)]
            cap = read_cap
            if limits is not None and (t, p) in limits:
                cap = min(cap, limits[(t, p)] - pos)
            if cap <= 0:
                reads.append((t, Batch.empty()))
                continue
            batch = self.driver.read_batch(t, p, pos, cap)
            if t in self._internal:  # origins stay out of the records (and user sinks)
                batch = without_origins(batch)
            if limits is not None and (t, p) in limits and len(batch) and int(
                    batch.seq[-1]) >= limits[(t, p)]:
                # offsets may have gaps (user tables, transaction markers): stop at the end
                # seen when the run started
                batch = batch.take(batch.seq < limits[(t, p)])
            reads.append((t, batch))
        nonempty = [(t, b) for t, b in reads if len(b)]
        if not nonempty:
            return 0
        if len(nonempty) == 1 and len(inputs) == 1:
            t, batch = nonempty[0]
            task.process(t, batch, p)
            self._positions[(t, p)] = int(batch.seq[-1]) + 1
            by_topic = self.stats.records_in_by_topic
            by_topic[t] = by_topic.get(t, 0) + len(batch)
            return len(batch)
        return self._interleave(task, reads, limits)

    def _interleave(self, task: Task, reads: list[tuple[str, Batch]],
                    limits: dict[tuple[str, int], int] | None) -> int:
        """Merge several inputs the way a Kafka Streams task does: the next record comes from
        the input whose head record has the smallest timestamp (ties: input order). That order
        is the stable order of (running maximum of the input's timestamps, input, position);
        it stops where an input that may have more records runs out of fetched ones, so the
        order never depends on batch sizes."""
        p = task.partition
        topics: list[str] = []
        parts: list[Batch] = []
        keys: list[np.ndarray] = []
        which: list[np.ndarray] = []
        stops: list[int] = []  # per part: -1 if exhausted, else its last index (global)
        offset = 0
        for t, batch in reads:
            n = len(batch)
            if not n:
                continue
            pos = self._positions[(t, p)]
            end = limits.get((t, p)) if limits is not None else None
            fetched_to = int(batch.seq[-1]) + 1 if n else pos
            at_end = (end is not None and fetched_to >= end) or (
                not self.driver.has_records_from(t, p, fetched_to))
            i = len(topics)
            topics.append(t)
            parts.append(batch)
            keys.append(np.maximum.accumulate(batch.ts))
            which.append(np.full(n, i, dtype=np.int64))
            stops.append(-1 if at_end else offset + n - 1)
            offset += n
        all_which = np.concatenate(which)
        position = np.arange(offset, dtype=np.int64)
        if len(parts) == 1:  # one input with records (the others read none): all, in order
            order = position
        else:
            order = np.lexsort((position, all_which, np.concatenate(keys)))
        cut = len(order)
        blocking = [s for s in stops if s >= 0] if len(parts) > 1 else []
        if blocking:
            rank = np.empty(offset, dtype=np.int64)
            rank[order] = np.arange(offset, dtype=np.int64)
            cut = int(min(rank[s] for s in blocking)) + 1
        chosen = order[:cut]
        seq0 = self._seq
        new_seq = np.empty(offset, dtype=np.int64)
        new_seq[chosen] = np.arange(seq0, seq0 + cut, dtype=np.int64)
        self._seq = seq0 + cut
        picked = np.zeros(offset, dtype=bool)
        picked[chosen] = True
        items: list[tuple[str, Batch]] = []
        start = 0
        offsets_all = np.concatenate([b.seq for b in parts])
        for i, (t, batch) in enumerate(zip(topics, parts)):
            n = len(batch)
            mask = picked[start:start + n]
            if mask.any():
                whole = bool(mask.all())
                sub = batch if whole else batch.take(mask)
                self._positions[(t, p)] = int(sub.seq[-1]) + 1
                seq = new_seq[start:start + n] if whole else new_seq[start:start + n][mask]
                sub = Batch(sub.keys, sub.values, sub.ts, seq, sub.headers, sub.time_field)
                # within one input, chosen records keep their order, so seq stays increasing
                items.append((t, sub))
                by_topic = self.stats.records_in_by_topic
                by_topic[t] = by_topic.get(t, 0) + len(sub)
            start += n
            del i
        task.set_origins(seq0, topics, all_which[chosen], offsets_all[chosen], p)
        task.process_interleaved(items, p)
        return cut

    # -- committing ---------------------------------------------------------------------------
    def commit(self) -> None:
        """Hand outputs, changelog records and positions to the driver as one transaction.

        Commits follow one another every ``commit_interval_ms`` counted from the start of the
        previous one, so a commit's own duration does not stretch the cadence."""
        self.batch_sizer.flush()  # a commit waits for the external calls of its records
        started = time.perf_counter()
        started_ms = self.clock.now_ms()
        txn = Transaction(self.plan.app_id)
        outputs = txn.outputs
        durable = self.driver.durable_state
        listening = bool(self.state_listeners)
        # window stores' changelogs as columns, to a driver that encodes them so (looked up on
        # the class, as commit_soon below); see runtime/window_changes.py
        as_columns = durable and not listening and getattr(
            type(self.driver), "accepts_window_changes", False)
        state_changes: dict[tuple[str, int], list[tuple[Any, Any]]] = {}
        routed: dict[tuple[str, int], list[Batch]] = {}
        self._buffered_bytes = 0
        for task in self.tasks:
            for topic, batch in task.drain_outputs():
                self._route(routed, topic, batch, task.partition)
            for store in task.stores:
                if store.shared or (not durable and not listening):
                    store.discard_changes()
                    continue
                if as_columns and hasattr(store, "drain_window_changes"):
                    drained = store.drain_window_changes(max(task.stream_time, 0))
                    if drained:
                        outputs[(store.changelog, task.partition)] = drained
                    continue
                changes = store.drain_changes()
                if changes and listening:
                    state_changes[(store.changelog, task.partition)] = changes
                if changes and durable:
                    ts = max(task.stream_time, 0)
                    outputs.setdefault((store.changelog, task.partition), []).extend(
                        (k, v, ts, 0, None) for k, v in changes)
        outputs.update(self._as_outputs(routed))
        for key, pos in self._positions.items():
            if self._committed_position(key) != pos:
                txn.positions[key] = pos
        times: dict[str, dict[str, Any]] = {}
        for task in self.tasks:
            now_times = task.times()
            if now_times != self._saved_times.get(task.id):
                times[task.id] = now_times
                txn.metadata[stream_time_key(task.id)] = now_times
        if txn.is_empty() and not self.driver.wants_commit():
            self._last_commit = started_ms
            self._uncommitted = False
            self._first_unsent = None
            self.batch_sizer.committed(None)
            if state_changes:  # state changed, but only in a non-durable store
                for listener in self.state_listeners:
                    listener.committed(state_changes)
            for hook in self.on_interval:
                hook(self)
            self._check_membership()
            return
        # a driver may take the transaction and write it while the next batch is processed
        # (``commit_soon``: PostgreSQL); its next call waits for it and raises its error. Not
        # with state listeners: they hear of a commit only once it is durable. Looked up on
        # the class: a wrapping driver (privacy) forwards unknown attributes to the driver it
        # wraps, whose commit_soon would skip the wrapper's commit
        soon = None if listening else getattr(type(self.driver), "commit_soon", None)
        if soon is not None:
            soon(self.driver, txn)
        else:
            self.driver.commit(txn)
        self.batch_sizer.committed(time.perf_counter() - started)
        self._saved_times.update(times)
        for listener in self.state_listeners:
            listener.committed(state_changes)
        for key, pos in txn.positions.items():
            self._pending_positions[key] = pos
        for (topic, _p), recs in outputs.items():
            self.stats.records_out[topic] = self.stats.records_out.get(topic, 0) + len(recs)
        self.stats.commits += 1
        self.stats.commit_ms.append((time.perf_counter() - started) * 1000)
        self._note_commit(txn)
        self._last_commit = started_ms
        self._uncommitted = False
        if self._long_run and not gc.isenabled() and time.monotonic() - self._last_gc > 5.0:
            gc.collect(1)  # a long run with the collector paused: collect young objects
            self._last_gc = time.monotonic()
        for hook in self.on_commit:
            hook(self)
        for hook in self.on_interval:
            hook(self)
        self._check_membership()

    def _note_commit(self, txn: Transaction) -> None:
        """Commit rate and latency statistics (``self.stats``)."""
        stats = self.stats
        done = time.monotonic()
        stats.commit_times.append(done)
        if self._first_unsent is not None and txn.positions:
            stats.commit_latency_ms.append((done - self._first_unsent) * 1000)
        self._first_unsent = None
        newest = max((t.stream_time for t in self.tasks), default=-1)
        if newest >= 0 and txn.positions:
            stats.e2e_latency_ms.append(time.time() * 1000 - newest)

    def _committed_position(self, key: tuple[str, int]) -> int | None:
        return self._pending_positions.get(key)

    def _as_outputs(self, routed: dict[tuple[str, int], list[Batch]]) -> dict[Any, Any]:
        """Routed batches as the driver takes them: one batch per partition, or its rows."""
        columns = self.driver.accepts_batches
        parts = columns and self._keeps_origins and self.driver.accepts_batch_parts
        out: dict[Any, Any] = {}
        for key, batches in routed.items():
            if parts and len(batches) > 1:
                out[key] = BatchParts(batches)  # the driver stores them as they are
                continue
            merged = Batch.concat(batches)
            if merged.origin is not None and not self._keeps_origins:  # as headers
                out[key] = origin_headers(merged) if columns else origin_rows(merged)
                continue
            out[key] = merged if columns else merged.rows()
        return out

    def _route(self, routed: dict[tuple[str, int], list[Batch]], topic: str, batch: Batch,
               task_partition: int) -> None:
        if topic in self._normalize:  # typed topic, driver of objects: as read back
            origin = batch.origin
            batch = Batch.from_rows(self.codecs.normalize(topic, batch.rows()))
            batch.origin = origin
        count = self.partitions.get(topic)
        if count is None:
            count = self._new_topic(topic)
        if count == 1:
            routed.setdefault((topic, 0), []).append(batch)
            return
        keys = batch.keys.inner if hasattr(batch.keys, "inner") else batch.keys
        where = self._partitioners[topic].partitions_of(keys.tolist(), count, task_partition)
        for p in range(count):
            mask = where == p
            if mask.any():
                routed.setdefault((topic, p), []).append(batch.take(mask))

    def _new_topic(self, topic: str) -> int:
        """A topic the plan does not declare, named by a ``to(topic function)`` step (which
        checked the name): created now with the driver's defaults."""
        count = self.partitions[topic] = int(self.driver.ensure_topic(topic, None, kind="sink"))
        self._partitioners[topic] = self.codecs.partitioner(topic)
        return count

    # -- running ------------------------------------------------------------------------------
    def _gc_paused(self) -> contextlib.AbstractContextManager[None]:
        return gc_paused()

    def run_until_end(self, progress: Callable[[int], None] | None = None) -> None:
        """Bounded run: process what the source topics hold now, then flush every sub-topology
        in order (closing windows), committing as it goes."""
        self.start()
        limits = {k: v for k, v in self.end_offsets().items()
                  if self.plan.topics[k[0]].kind == "source"}
        self._limits = limits  # tasks a rebalance adds get theirs too
        with self._gc_paused():
            self._drain(limits, progress)
            if self._stop.is_set():
                # a stop is not the end of the input: commit what was processed and leave
                # windows open; a later run continues where this one stopped
                self.commit()
                log.info("stopped before the end of the input; windows stay open")
                return
            self.finish(limits, progress)

    def finish(self, limits: dict[tuple[str, int], int] | None = None,
               progress: Callable[[int], None] | None = None) -> None:
        """End of bounded input: flush each sub-topology in order (closing windows, emitting
        parked join records), letting downstream sub-topologies process what that produced."""
        self._finishing = True
        order = sorted({task.subtopology.id for task in self.tasks})
        for st_id in order:
            if self._stop.is_set():
                # stopped while flushing: what was flushed is committed; a restart reaches
                # the end again and flushes the remaining sub-topologies
                self.commit()
                return
            for task in self.tasks:
                if task.subtopology.id == st_id:
                    task.end()
            self.commit()
            self._drain(limits or {}, progress)
        self.commit()
        self.finished = not self._stop.is_set()

    def process_available(self) -> int:
        """Process everything readable now, committing after each round, until quiescent
        (the test driver's step after each piped record)."""
        self.start()
        total = 0
        while True:
            n = self.poll()
            total += n
            self.commit()
            if n == 0 and not self._internal_backlog() and not self.batch_sizer.held_back:
                return total

    def _drain(self, limits: dict[tuple[str, int], int],
               progress: Callable[[int], None] | None) -> None:
        while not self._stop.is_set():
            n = self.poll(limits)
            if progress is not None and n:
                progress(n)
            if n == 0:
                if self._uncommitted or any(c.buffer for t in self.tasks for c in t.collectors):
                    self.commit()
                    continue
                if self._internal_backlog() or self.batch_sizer.held_back:
                    continue  # the batch sizer held reads back for a commit: not the end
                break

    def _internal_backlog(self) -> bool:
        for task in self.tasks:
            for t in task.subtopology.inputs:
                if (self.plan.topics[t].kind != "source"
                        and task.partition < self.partitions[t]
                        and self._positions[(t, task.partition)]
                        < self.driver.end_offset(t, task.partition)):
                    return True
        return False

    def run_forever(self, idle_sleep_s: float = 0.01,
                    progress: Callable[[int], None] | None = None) -> None:
        """Unbounded run: poll until :meth:`stop` is called.

        Commits come every ``commit_interval_ms`` (when a batch completes after it), not when
        the input runs dry: a quiet moment is no reason to commit early. Outputs go to a
        driver that takes them while the interval runs (``send_outputs``) as they are made.
        With nothing to read, the loop waits in the driver's ``wait_for_data`` (which returns
        as soon as a record arrives) until the next commit is due, or sleeps ``idle_sleep_s``
        for drivers without it.
        """
        self.start()
        self._long_run = True
        wait = getattr(self.driver, "wait_for_data", None)
        with self._gc_paused():
            while not self._stop.is_set():
                n = self.poll()
                if progress is not None and n:
                    progress(n)
                if n == 0 and not self.batch_sizer.held_back:
                    due = self._last_commit + self.commit_interval_ms - self.clock.now_ms()
                    timeout = min(0.5, max(0.001, due / 1000)) if self._uncommitted else 0.5
                    if wait is not None:  # Kafka: a blocking fetch; PostgreSQL: LISTEN/NOTIFY
                        wait(timeout)
                    else:
                        self._stop.wait(min(timeout, idle_sleep_s))
            self.commit()

    def stop(self) -> None:
        """Ask a running loop to finish its batch, commit and return.

        A stop is not the end of the input: in a bounded run (:meth:`run_until_end`) it
        commits what was processed and leaves windows open, so a later run on the same driver
        continues exactly where this one stopped. Safe to call from a signal handler or another
        thread."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    # -- read-only views for surfaces (call them on the engine's thread) ----------------------
    def input_positions(self) -> dict[tuple[str, int], int]:
        """``{(input topic, partition): next offset to read}`` of the owned tasks."""
        return dict(self._positions)

    def dropped_counts(self) -> dict[str, int]:
        """``{step: records it dropped or sent to its late output}``, summed over tasks."""
        out: dict[str, int] = dict(self.globals.dropped())
        for task in self.tasks:
            for rn in task.nodes:
                n = getattr(rn.op, "dropped", 0)
                if n:
                    name = getattr(rn.op, "name", "?")
                    out[name] = out.get(name, 0) + n
        return out

    def store_sizes(self) -> dict[str, int]:
        """``{store name: entries}``, summed over the owned tasks."""
        out: dict[str, int] = {}
        for task in self.tasks:
            for store in task.stores:
                out[store.name] = out.get(store.name, 0) + len(store)  # type: ignore[arg-type]
        return out

    @property
    def membership_wait_s(self) -> float:
        """Seconds the engine has been waiting in the driver's membership poll (a rebalance in
        progress when large); 0 when it is not in it."""
        since = self._membership_since
        return 0.0 if since is None else time.monotonic() - since

    def close(self) -> None:
        """Close every task's operators."""
        for task in self.tasks:
            task.close()

    @property
    def stream_time(self) -> int:
        """The largest stream time of the owned tasks (-1 before any record)."""
        return max((t.stream_time for t in self.tasks), default=-1)
