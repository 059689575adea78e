"""The batch sizer: how many records the engine reads, so that transactions stay inside
``max_transaction``.

A transaction runs from the first record read after a commit to the end of the next commit.
It holds the processing of every record read, the wait for the external calls still in flight
(a commit waits for the calls of the records it commits) and the commit itself. The sizer
plans for **half** of the limit (:data:`HEADROOM`): the other half absorbs a slowdown found out
while a transaction runs, when the calls already in flight take longer than measured.

What it measures:

* the **per-record cost** of processing (each poll's time over its records, without the
  time spent waiting for room in an external queue), taken at once when it rises and
  followed gradually when it falls;
* the **commit time** (the driver's part), the same way;
* each external operator's **call latency** (:class:`~.base.Latency`), from finished calls
  and from the age of the oldest call still running, so a slowdown shows before the first
  slow call returns.

What it decides:

* the **batch size**, the records one transaction may read (``engine.stats.batch_limit``):
  what the planned time holds at the measured cost and latencies. It shrinks at once (also in
  the middle of a transaction) and grows back by at most :data:`GROWTH` per transaction. The
  first poll of a run reads :data:`START` records per task to measure the cost;
* per poll, how many records each task reads: the rest of the batch, no more than the rest
  of the transaction's time allows at the measured cost, no more than the headroom holds
  were the records to become :data:`~.base.SLOWDOWN` times slower (a poll under way cannot be
  cut short, so this is what bounds a sudden slowdown of a plain step), no more than each external
  operator can take (:meth:`~.base.ExternalOp.admissible`: room in its queue, calls that can
  finish in time). While an operator's queue is full the engine waits for its calls instead
  of reading (backpressure);
* when to commit early: when the time left cannot take another record, the commit comes
  before the commit interval ends.

The limit defaults to a fraction of the driver's own (:mod:`.limits`).
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

from .base import SLOWDOWN
from .limits import transaction_limit_ms

if TYPE_CHECKING:
    from ..engine import Engine
    from ..task import Task

__all__ = ["GROWTH", "HEADROOM", "START", "WAIT_SLICE_S", "BatchSizer"]

log = logging.getLogger(__name__)

#: the share of ``max_transaction`` a transaction is planned to take
HEADROOM = 0.5
#: records each task reads in the first poll of a run (to measure the cost)
START = 10
#: the most the batch size grows per transaction
GROWTH = 1.25
#: how long one wait for queue room lasts before the engine looks at the clock again (s)
WAIT_SLICE_S = 0.05


def _follow(old: float, new: float) -> float:
    """A measurement that rises at once and falls gradually."""
    return new if new > old or old == 0.0 else 0.8 * old + 0.2 * new


class BatchSizer:
    """Sizes polls and transactions of one :class:`~workbench.runtime.engine.Engine`.

    Args:
        engine: the engine it serves (its tasks, driver, stats).
        max_transaction_ms: the limit; ``None``: derived from the driver (:mod:`.limits`).
    """

    def __init__(self, engine: Engine, max_transaction_ms: int | None = None) -> None:
        self.engine = engine
        self.explicit_ms = max_transaction_ms
        self.limit_s = (max_transaction_ms or 0) / 1000
        self.target_s = self.limit_s * HEADROOM
        #: where the limit comes from (logged at start)
        self.source = "max_transaction" if max_transaction_ms else ""
        #: records one transaction may read (``inf``: as many as the polls bring)
        self.budget = math.inf
        self.cost_s = 0.0  # per record processed
        self.commit_s = 0.0  # the driver's commit
        self._txn_started: float | None = None
        self._txn_records = 0
        self._starved = False
        self._waited = 0.0
        self._flushed_at = time.perf_counter()
        self._started = False
        #: the last poll read less than it could because of the sizer (a commit first, or a
        #: full external queue): reading nothing then does not mean the input ended
        self.held_back = False
        self._holding = False

    # -- set-up -------------------------------------------------------------------------------
    def start(self) -> None:
        """Learn the limit (the driver's default unless given) and tell external operators
        what timeout a call gets when the step set none."""
        if self._started:
            return
        self._started = True
        if self.explicit_ms is None:
            ms, self.source = transaction_limit_ms(self.engine.driver)
            self.limit_s = ms / 1000
            self.target_s = self.limit_s * HEADROOM
        self.engine.stats.max_transaction_ms = self.limit_s * 1000
        for task in self.engine.tasks:
            self._configure(task)
        self.engine.stats.batch_limit = self.batch_limit()
        if any(task.external for task in self.engine.tasks):
            log.info("transactions stay inside %.3g s (%s)", self.limit_s, self.source)

    @property
    def headroom_s(self) -> float:
        """What the plan leaves of the limit; also the timeout of a call whose step set
        none."""
        return max(0.001, self.limit_s - self.target_s)

    def _configure(self, task: Task) -> None:
        for op in task.external_ops():
            op.configure(self.headroom_s)  # type: ignore[attr-defined]

    # -- the engine's hooks -------------------------------------------------------------------
    def read_cap(self, task: Task, batch_size: int) -> int:
        """Records ``task`` may read from each of its inputs in this poll (0: none now).

        Moves finished external results downstream first; while an external operator's queue
        is full, waits for its calls (backpressure) as long as the transaction's time allows.
        """
        tasks = max(1, len(self.engine.tasks))
        if self.cost_s > 0:
            # the rest of the batch, what the rest of the time holds, and a poll short enough
            # to stay inside the headroom were the records to become SLOWDOWN times slower
            # (a poll under way cannot be cut)
            left = min(self.budget - self._txn_records, self._remaining() / self.cost_s,
                       self.headroom_s / (SLOWDOWN * self.cost_s))
            cap = int(left / tasks)
        else:
            cap = START  # nothing measured yet: a small first poll
        if task.external:
            ops = task.external_ops()
            if ops[0].timeout_s is None:  # type: ignore[attr-defined]
                self._configure(task)  # a task created by a rebalance
            task.pump_external(False)
            cap = min(cap, self._room(task, ops))
        if cap <= 0:
            if self._txn_started is None and not self._in_flight():
                cap = 1  # every transaction makes progress, however slow the steps are
            else:
                self._starved = True
                self._holding = True
                return 0
        return min(cap, batch_size)

    def _room(self, task: Task, ops: list[Any]) -> int:
        """How many records the external operators of ``task`` can take now: waits while a
        queue is full and the transaction has time left (backpressure)."""
        while True:
            remaining = self._remaining()
            room: int = min(op.admissible(remaining, self.headroom_s) for op in ops)
            if room > 0:
                return room
            busy = [op for op in ops if op.in_flight()]
            if not busy or remaining - self.flush_estimate() <= 0 or self.engine.stopping:
                return 0  # no time left for more calls in this transaction
            began = time.perf_counter()
            busy[0].wait(min(WAIT_SLICE_S, max(0.001, remaining)))
            task.pump_external(False)
            self._waited += time.perf_counter() - began

    def polled(self, records: int, seconds: float) -> None:
        """A poll read and processed ``records`` in ``seconds``: follow the per-record cost;
        shrink the batch size at once when it no longer fits."""
        busy = max(0.0, seconds - self._waited)
        self._waited = 0.0
        self.held_back, self._holding = self._holding, False
        stats = self.engine.stats
        stats.external_in_flight = self._in_flight()
        if not records:
            return
        if self._txn_started is None:
            self._txn_started = time.monotonic() - seconds
        self._txn_records += records
        self.cost_s = _follow(self.cost_s, busy / records)
        wanted = self.wanted()
        if wanted < self.budget:
            self.budget = wanted
        stats.batch_limit = self.batch_limit()

    def commit_due(self) -> bool:
        """Whether the open transaction should commit now: its time cannot take another
        record (or the calls in flight already need what is left)."""
        if self._txn_started is None:
            return False
        return self._starved or self._remaining() - self.flush_estimate() <= 0

    def flush(self) -> None:
        """Before a commit: wait for every external call in flight and run the results
        through the rest of their tasks, so the commit holds every record it commits."""
        for task in self.engine.tasks:
            if task.external:
                task.pump_external(True)
        self.engine.stats.external_in_flight = 0
        self._flushed_at = time.perf_counter()

    def committed(self, seconds: float | None) -> None:
        """A commit ended (``None``: there was nothing to commit): grow the batch size back
        by at most :data:`GROWTH`."""
        stats = self.engine.stats
        if seconds is not None:
            self.commit_s = _follow(self.commit_s, time.perf_counter() - self._flushed_at)
            if self._txn_started is not None:
                stats.transaction_ms.append((time.monotonic() - self._txn_started) * 1000)
        if self._txn_records:
            wanted = self.wanted()
            self.budget = (wanted if wanted < self.budget
                           else min(wanted, self.budget * GROWTH))
            stats.batch_limit = self.batch_limit()
        self._txn_started = None
        self._txn_records = 0
        self._starved = False

    # -- estimates ----------------------------------------------------------------------------
    def wanted(self) -> float:
        """The records a transaction can take at the measured cost and latencies."""
        seconds = max(self.target_s - self.commit_s, 0.0)
        size = seconds / self.cost_s if self.cost_s > 0 else math.inf
        for task in self.engine.tasks:
            if task.external:
                for op in task.external_ops():
                    planned = op.planned(seconds)  # type: ignore[attr-defined]
                    if planned is not None:
                        size = min(size, planned)
        return max(1.0, size)

    def batch_limit(self) -> int:
        """The batch size as a number (the metric), at most what one poll of every task
        reads."""
        ceiling = self.engine.batch_size * max(1, len(self.engine.tasks))
        return int(min(self.budget, ceiling))

    def _remaining(self) -> float:
        """Seconds the open transaction has left for processing (its plan minus the commit)."""
        elapsed = 0.0 if self._txn_started is None else time.monotonic() - self._txn_started
        return self.target_s - elapsed - self.commit_s

    def flush_estimate(self) -> float:
        """Seconds a commit would wait now for the external calls in flight."""
        best = 0.0
        for task in self.engine.tasks:
            if task.external:  # the steps of a task flush one after the other
                best = max(best, sum(op.flush_estimate()  # type: ignore[attr-defined]
                                     for op in task.external_ops()))
        return best

    def _in_flight(self) -> int:
        return sum(op.in_flight() for task in self.engine.tasks  # type: ignore[attr-defined]
                   if task.external for op in task.external_ops())
