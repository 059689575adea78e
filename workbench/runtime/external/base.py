"""What external operators share: the ordered queue of records in flight, the latency they
measure, and how a record that failed for good is reported.

An external operator takes a column batch, starts the work for all of its records at once
(calls, lines to a child process) and keeps the batch in its queue; the task collects finished
batches **in input order** (:meth:`ExternalOp.collect`) and runs them through the rest of the
sub-topology. The queue holds at most ``capacity`` records (plus one input batch: a batch is
never split); the engine stops reading while it is full. A commit first waits for every record
in flight (``collect(wait=True)``), so the positions it commits cover only finished records.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from ..._time import format_ms
from ...calls import CallInfo
from ...errors import ProcessingError
from ..batch import Batch, ObjectValues, obj_array
from ..operators import Operator
from ..origins import describe as describe_source
from ..task import Origin

__all__ = ["ERROR_HEADERS", "SLOWDOWN", "SOURCE_HEADERS", "ExternalOp", "Latency", "Pending"]

log = logging.getLogger(__name__)

#: headers of a record on a step's ``errors`` output (the Kafka driver's dead letters use the
#: same first four names)
ERROR_HEADERS = ("workbench.error", "workbench.error.topic", "workbench.error.partition",
                 "workbench.error.offset", "workbench.error.step", "workbench.error.attempts")
#: headers added to those when the record was read from a repartition topic: the position of
#: the input record it came from
SOURCE_HEADERS = ("workbench.error.source.topic", "workbench.error.source.partition",
                  "workbench.error.source.offset")


#: how much slower calls may become during one transaction and still finish inside its
#: limit: the queue admits no more than its lanes finish in the headroom at this slowdown
SLOWDOWN = 10


class Latency:
    """How long one unit of external work takes (a call; a record in a child process).

    Finished work updates it at once when slower and gradually when faster; work still
    running counts with its age, so a slowdown is seen before the first slow call returns.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.samples = 0

    def observe(self, seconds: float) -> None:
        """One unit of work took ``seconds``."""
        self.samples += 1
        if seconds > self.seconds or self.samples == 1:
            self.seconds = seconds
        else:
            self.seconds = 0.9 * self.seconds + 0.1 * seconds

    def now(self, oldest_running: float | None) -> float:
        """The estimate, raised to the age of the oldest unit still running."""
        if oldest_running is None:
            return self.seconds
        return max(self.seconds, time.monotonic() - oldest_running)


class Pending:
    """One input batch in an external operator's queue."""

    __slots__ = ("batch", "done", "errors", "n", "origin", "results")

    def __init__(self, batch: Batch, origin: Callable[[Any], Origin]) -> None:
        self.batch = batch
        self.n = len(batch)
        self.origin = origin
        #: per row: the output (map), the list of outputs (flat), set when done
        self.results: list[Any] = [None] * self.n
        #: rows that failed for good: row -> (error text, attempts)
        self.errors: dict[int, tuple[str, int]] = {}
        self.done = 0

    @property
    def finished(self) -> bool:
        return self.done >= self.n


class ExternalOp(Operator):
    """Base of the external operators (columnar; the task pumps them, see
    :meth:`workbench.runtime.task.Task.pump_external`).

    Subclasses implement :meth:`_start_batch` (begin the work of a :class:`Pending`),
    :meth:`_gather` (take finished work, waiting up to a timeout), :meth:`running_since`,
    :attr:`lanes` and :meth:`_shutdown`, and call :meth:`_finish_row` / :meth:`_fail_row`.
    """

    columnar = True
    #: the task collects this operator's results later (``Task.pump_external``)
    external = True
    #: several outputs per input (``flat_map_async``, ``pipe(outputs="many")``)
    flat = False

    def __init__(self, name: str, defined_at: str, app_id: str, task: Any, spec: Any,
                 capacity: int) -> None:
        self.name = name
        self.defined_at = defined_at
        self.app_id = app_id
        self.task = task
        self.spec = spec
        self.on_error: str = spec.on_error
        self.capacity = capacity
        self.side: list[Batch] = []  # type: ignore[assignment]
        #: records dropped after failing (``on_error="skip"``), as ``dropped_counts`` reads
        self.dropped = 0
        #: records sent to the errors output
        self.routed = 0
        #: finish each batch before returning it (a step with several inputs follows)
        self.sync_batches = False
        self.latency = Latency()
        #: the per-attempt timeout in seconds (set by the batch sizer when the step gave none)
        self.timeout_s: float | None = (None if spec.retry.timeout_ms is None
                                        else spec.retry.timeout_ms / 1000)
        self._queue: deque[Pending] = deque()
        self._in_flight = 0

    # -- what subclasses provide --------------------------------------------------------------
    lanes: int = 1

    def _start_batch(self, pending: Pending) -> None:
        raise NotImplementedError

    def _gather(self, timeout: float) -> None:
        """Take finished work (calling :meth:`_finish_row`/:meth:`_fail_row`), waiting up to
        ``timeout`` seconds for some when none is ready."""
        raise NotImplementedError

    def running_since(self) -> float | None:
        """``time.monotonic()`` when the oldest unit of work still running began."""
        return None

    def _shutdown(self) -> None:
        """Stop threads and processes."""

    # -- the sizer's view ---------------------------------------------------------------------
    def configure(self, default_timeout_s: float) -> None:
        """The timeout of one attempt when the step set none (from ``max_transaction``)."""
        if self.spec.retry.timeout_ms is None:
            self.timeout_s = default_timeout_s

    def in_flight(self) -> int:
        """Records taken and not finished."""
        return self._in_flight

    def latency_s(self) -> float:
        """The current estimate of one unit of work (seconds)."""
        return self.latency.now(self.running_since())

    def flush_estimate(self) -> float:
        """Seconds until every record in flight is finished, estimated."""
        if not self._in_flight:
            return 0.0
        return math.ceil(self._in_flight / self.lanes) * self.latency_s()

    def admissible(self, remaining_s: float, headroom_s: float) -> int:
        """Records this operator can take now: room in its queue, no more than its lanes can
        finish in ``remaining_s`` seconds at the measured latency, and no deeper a queue than
        its lanes could still finish within ``headroom_s`` were the calls to become
        :data:`SLOWDOWN` times slower."""
        room = self.capacity - self._in_flight
        lat = self.latency_s()
        if lat > 0:
            rounds = math.floor(remaining_s / lat)
            depth = max(1, math.floor(headroom_s / (SLOWDOWN * lat)))
            room = min(room, rounds * self.lanes - self._in_flight,
                       depth * self.lanes - self._in_flight)
        return max(0, room)

    def planned(self, seconds: float) -> int | None:
        """Records this operator can finish in a transaction of ``seconds`` at the measured
        latency (``None``: nothing measured yet)."""
        lat = self.latency_s()
        if lat <= 0:
            return None
        return max(1, math.floor(seconds / lat) * self.lanes)

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for some work to finish."""
        self._gather(timeout)

    # -- operator -----------------------------------------------------------------------------
    def init(self, ctx: Any) -> None:
        self.task = ctx.task

    def process(self, batch: Batch, port: int) -> Batch | None:
        if not len(batch):
            return None
        origin = self.task.origin_resolver() if self.task is not None else _no_origin
        pending = Pending(batch, origin)
        self._queue.append(pending)
        self._in_flight += pending.n
        self._start_batch(pending)
        if self.sync_batches:
            out, _origin = self.collect(True)
            return out
        return None  # the task collects the results later (Task.pump_external)

    def collect(self, wait: bool) -> tuple[Batch | None, Callable[[Any], Origin]]:
        """The finished batches at the head of the queue, as one batch (``None``: none), and
        where their records came from; with ``wait``, every batch in the queue."""
        self._gather(0.0)
        while wait and any(not p.finished for p in self._queue):
            self._gather(0.05)
        outs: list[Batch] = []
        origins: list[Callable[[Any], Origin]] = []
        while self._queue and self._queue[0].finished:
            pending = self._queue.popleft()
            self._in_flight -= pending.n
            out = self._output(pending)
            if out is not None and len(out):
                outs.append(out)
            origins.append(pending.origin)
        if not outs:
            return None, _chain(origins)
        return (outs[0] if len(outs) == 1 else Batch.concat(outs)), _chain(origins)

    def end(self) -> Batch | None:  # type: ignore[override]
        """End of a bounded input: finish everything, then stop the children/threads (they
        start again if more records come)."""
        out, _origin = self.collect(True)
        self._shutdown()
        return out

    def close(self) -> None:
        self._shutdown()

    # -- results ------------------------------------------------------------------------------
    def _finish_row(self, pending: Pending, row: int, result: Any) -> None:
        pending.results[row] = result
        pending.done += 1

    def _fail_row(self, pending: Pending, row: int, error: str, attempts: int,
                  cause: BaseException | None = None) -> None:
        """Row ``row`` failed for good: raise, or note it for the errors output / the count."""
        if self.on_error == "raise":
            raise self._error(pending, row, error, attempts) from cause
        pending.errors[row] = (error, attempts)
        pending.results[row] = [] if self.flat else None
        pending.done += 1
        topic, partition, offset = pending.origin(pending.batch.seq[row])
        log.warning("step %r gave up on the record from topic %r partition %s offset %s after "
                    "%d attempt(s): %s", self.name, topic, partition, offset, attempts, error)

    def _error(self, pending: Pending, row: int, error: str, attempts: int) -> ProcessingError:
        batch = pending.batch
        topic, partition, offset = pending.origin(batch.seq[row])
        source = self.task.source_of(topic, partition, offset) if self.task else None
        where = (f"the record from topic {topic!r} partition {partition} offset {offset}"
                 f"{describe_source(source)}" if topic is not None
                 else "a record created inside the pipeline")
        key = batch.key_objects()[row]
        value = batch.values.objects()[row]
        ts = int(batch.ts[row])
        text = repr(value)
        if len(text) > 200:
            text = text[:197] + "..."
        return ProcessingError(
            f"step {self.name!r} (defined at {self.defined_at}) failed on {where} after "
            f"{attempts} attempt(s): {error}. Record key={key!r} value={text} timestamp={ts} "
            f"({format_ms(ts)}). Use on_error='route' (or dead_letter='topic') to keep going "
            "and collect such records.",
            step=self.name, topic=topic, partition=partition, offset=offset,
            defined_at=self.defined_at, source=source)

    def _output(self, pending: Pending) -> Batch | None:
        batch = pending.batch
        results = pending.results
        if pending.errors:
            self._divert(pending)
        if self.flat:
            counts = np.fromiter((len(r) for r in results), dtype=np.int64, count=pending.n)
            if not counts.any():
                return None
            rows = np.repeat(np.arange(pending.n, dtype=np.int64), counts)
            values = [v for r in results for v in r]
            out = batch.take(rows)
        else:
            if pending.errors:
                keep = np.ones(pending.n, dtype=bool)
                keep[list(pending.errors)] = False
                out = batch.take(keep)
                values = [r for i, r in enumerate(results) if keep[i]]
            else:
                out = batch
                values = results
        if not len(out):
            return None
        return self._with_results(out, values)

    def _with_results(self, out: Batch, values: list[Any]) -> Batch:
        """``out`` with its values replaced by ``values`` (subclasses may also set keys)."""
        return out.with_values(ObjectValues(obj_array(values, len(values))))

    def _divert(self, pending: Pending) -> None:
        """Failed rows: to the errors output (``route``) or counted (``skip``)."""
        rows = sorted(pending.errors)
        if self.on_error == "skip":
            self.dropped += len(rows)
            return
        self.routed += len(rows)
        failed = pending.batch.take(np.array(rows, dtype=np.int64))
        headers = []
        old = failed.header_list()
        for i, row in enumerate(rows):
            error, attempts = pending.errors[row]
            topic, partition, offset = pending.origin(failed.seq[i])
            extra: tuple[tuple[str, bytes], ...] = (
                (ERROR_HEADERS[0], error.encode()),
                (ERROR_HEADERS[1], (topic or "").encode()),
                (ERROR_HEADERS[2], ("" if partition is None else str(partition)).encode()),
                (ERROR_HEADERS[3], ("" if offset is None else str(offset)).encode()),
                (ERROR_HEADERS[4], self.name.encode()),
                (ERROR_HEADERS[5], str(attempts).encode()))
            source = self.task.source_of(topic, partition, offset) if self.task else None
            if source is not None:  # read from a repartition topic: where it came from
                extra = (*extra, (SOURCE_HEADERS[0], str(source[0]).encode()),
                         (SOURCE_HEADERS[1], str(source[1]).encode()),
                         (SOURCE_HEADERS[2], str(source[2]).encode()))
            h = old[i]
            headers.append((*h, *extra) if h else extra)
        failed = Batch(failed.keys, failed.values, failed.ts, failed.seq,
                       obj_array(headers, len(headers)))
        self.side.append(failed)

    # -- idempotency keys ---------------------------------------------------------------------
    def call_infos(self, pending: Pending) -> list[CallInfo]:
        """The :class:`~workbench.calls.CallInfo` of each row (attempt 1)."""
        seqs = pending.batch.seq.tolist()
        # records derived from one input record (a flat_map before this step) share its seq
        # and sit next to each other: they are told apart by their place among them
        shared = set()
        if len(seqs) > 1:
            s = pending.batch.seq
            same = np.flatnonzero(s[1:] == s[:-1])
            shared = set(s[same].tolist())
        infos: list[CallInfo] = []
        prefix = f"{self.app_id}/{self.name}/"
        place = 0
        for i, seq in enumerate(seqs):
            place = place + 1 if i and seqs[i - 1] == seq else 0
            topic, partition, offset = pending.origin(seq)
            key = (f"{prefix}{topic}/{partition}/{offset}" if topic is not None
                   else f"{prefix}seq/{seq}")
            if seq in shared:
                key += f"/{place}"
            infos.append(CallInfo(key, 1, self.name, topic, partition, offset))
        return infos


def _no_origin(seq: Any) -> Origin:
    return (None, None, None)


def _chain(resolvers: list[Callable[[Any], Origin]]) -> Callable[[Any], Origin]:
    """One resolver trying each of ``resolvers`` (records of several queued batches)."""
    if len(resolvers) == 1:
        return resolvers[0]
    if not resolvers:
        return _no_origin

    def resolve(seq: Any) -> Origin:
        for r in resolvers:
            got = r(seq)
            if got[0] is not None:
                return got
        return (None, None, None)

    return resolve


def monotonic() -> float:
    """``time.monotonic()`` (one clock for every external part)."""
    return time.monotonic()
