"""Operators: what a plan node does to a micro-batch.

Batches flow between operators as columns (:mod:`workbench.runtime.batch`). An operator with
``columnar = True`` takes and returns column batches; the others ("row operators": the
stateful operators written record by record) take and return lists of record tuples
``(key, value, timestamp, seq, headers)``, and the task converts at their boundary. ``seq``
orders records within a task: it is the input offset for a single-input task, or the position
in the task's interleaved input otherwise; records derived from an input keep its ``seq``, and
operators with several inputs process them in ``seq`` order. So the result never depends on
where batch boundaries fall.

Chains of stateless steps are fused (:mod:`workbench.runtime.stateless`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..types import Record

__all__ = [
    "Batch",
    "BranchOp",
    "CollectOp",
    "IdentityOp",
    "Operator",
    "Rec",
    "SplitOp",
    "StepFailure",
]

Rec = tuple[Any, Any, int, int, Any]
#: a row batch: what the row operators (``columnar = False``) take and return
Batch = list[Rec]


class StepFailure(Exception):
    """Raised inside the engine when a user function fails; the task turns it into a
    :class:`~workbench.errors.ProcessingError` naming the input record's origin."""

    def __init__(self, step: str, defined_at: str, record: Rec, error: BaseException) -> None:
        super().__init__(step, error)
        self.step = step
        self.defined_at = defined_at
        self.record = record
        self.error = error


class Operator:
    """Base operator: one instance per task and plan node.

    Subclasses override :meth:`process`; stateful ones also :meth:`end` (flush at the end of a
    bounded run), :meth:`punctuate_wall`, and expose their stores in ``stores``.
    """

    name: str = "?"
    stores: Sequence[Any] = ()
    #: True for operators that take and return column batches (``runtime.batch.Batch``);
    #: the others take and return lists of record tuples, converted by the task
    columnar: bool = False
    #: side output (records for the ``late`` output), drained by the task after each call;
    #: operators that produce one assign their own list in ``__init__`` (record tuples for a
    #: row operator, column batches for a columnar one)
    side: Any = []  # noqa: RUF012

    def process(self, batch: Any, port: int) -> Any:
        """Process one micro-batch arriving on input ``port``; return the output batch."""
        raise NotImplementedError

    def end(self) -> Any:
        """End of a bounded input: emit everything still pending (close windows): record
        tuples (row operators) or a column batch or ``None`` (columnar ones)."""
        return []

    def punctuate_wall(self, now_ms: int) -> Batch:
        """Wall-clock punctuation; called between batches with the clock's time."""
        return []

    def init(self, ctx: Any) -> None:
        """Called once when the task starts, after state is restored."""

    def observed_time(self) -> int | None:
        """The operator's own stream time (largest timestamp it has seen), for operators that
        keep one (windows, stream-stream joins, processors); ``None`` for the others. The
        engine commits it with the input positions and restores it with :meth:`restore_time`,
        so late/on-time decisions after a restart equal those of an uninterrupted run."""
        t = getattr(self, "stream_time", None)
        return t if t.__class__ is int else None

    def restore_time(self, t: int) -> None:
        """Set the stream time committed by an earlier run (before any record is processed)."""
        if getattr(self, "stream_time", None).__class__ is int:
            self.stream_time = t  # type: ignore[attr-defined]

    def time_hints(self) -> dict[str, int]:
        """Other small time state that decides outputs (a stream-stream join's earliest parked
        record time, which decides when parked records are looked at), committed and restored
        like the stream time. Empty by default."""
        return {}

    def restore_time_hints(self, hints: dict[str, int]) -> None:
        """Restore what :meth:`time_hints` returned in an earlier run."""

    def close(self) -> None:
        """Called when the task closes."""


class RowBacked(Operator):
    """A columnar operator that keeps ``row``, the row operator it falls back on for batches
    it cannot express: the row operator counts the dropped records and is initialised and
    closed with it."""

    columnar = True
    row: Any

    @property
    def dropped(self) -> int:
        return int(self.row.dropped)

    def init(self, ctx: Any) -> None:
        self.row.init(ctx)

    def close(self) -> None:
        self.row.close()


class TimedRowBacked(RowBacked):
    """A :class:`RowBacked` operator whose stream time is its row operator's (committed and
    restored through :meth:`Operator.observed_time` / :meth:`Operator.restore_time`)."""

    @property
    def stream_time(self) -> int:
        return int(self.row.stream_time)

    @stream_time.setter
    def stream_time(self, value: int) -> None:
        self.row.stream_time = value


class IdentityOp(Operator):
    """Passes batches through (``merge``: the task already ordered its inputs by ``seq``)."""

    columnar = True

    def __init__(self, name: str) -> None:
        self.name = name

    def process(self, batch: Any, port: int) -> Any:
        return batch


class CollectOp(Operator):
    """A sink: collects column batches for the commit (the engine partitions and writes them).
    With ``unwrap_changes`` (previews of table steps) it keeps the new values of changes."""

    columnar = True

    def __init__(self, name: str, topic: str, *, unwrap_changes: bool = False) -> None:
        self.name = name
        self.topic = topic
        self.buffer: list[Any] = []
        self.unwrap = unwrap_changes
        #: ``seq -> runtime.origins.OriginColumns`` of the task (repartition sinks that keep
        #: where their records came from, for error messages downstream), or ``None``
        self.track: Any = None

    def process(self, batch: Any, port: int) -> Any:
        if self.unwrap:
            from .batch import ChangeValues, ObjectValues, obj_array

            values = batch.values
            if isinstance(values, ChangeValues):
                batch = batch.with_values(values.new)
            else:
                batch = batch.with_values(ObjectValues(obj_array(
                    (c[0] for c in values.objects().tolist()), len(batch))))
        if self.track is not None:
            from .batch import Batch

            origin = self.track(batch.seq)
            batch = Batch(batch.keys, batch.values, batch.ts, batch.seq, batch.headers,
                          batch.time_field)
            batch.origin = origin
        self.buffer.append(batch)
        return None

    def drain(self) -> Any:
        """Return (one batch) and forget the collected records."""
        from .batch import Batch

        return Batch.concat(self.drain_parts())

    def drain_parts(self) -> list[Any]:
        """Return the collected batches as they came and forget them."""
        out, self.buffer = self.buffer, []
        return out


class SplitOp(Operator):
    """``split``: route each record to the first branch whose predicate holds, else to rest.

    Outputs a list of batches, one per branch plus rest; :class:`BranchOp` children pick theirs.
    """

    columnar = True

    def __init__(self, name: str, defined_at: str, predicates: Sequence[Any],
                 with_record: bool) -> None:
        self.name = name
        self.defined_at = defined_at
        self.predicates = list(predicates)
        self.with_record = with_record

    def process(self, batch: Any, port: int) -> list[Any]:
        import numpy as np

        from ..expressions import Expr
        from .stateless import predicate_mask

        k = len(self.predicates)
        masks = {i: predicate_mask(self.name, self.defined_at, p, batch)
                 for i, p in enumerate(self.predicates) if isinstance(p, Expr)}
        if len(masks) == k:  # expressions only: no row loop
            which = np.full(len(batch), k, dtype=np.int64)
            for i in range(k - 1, -1, -1):  # the first match wins: it is written last
                which[masks[i]] = i
            return [batch.take(which == i) for i in range(k + 1)]
        # functions and expressions mixed: the expressions' masks are read row by row
        preds = [(i, masks[i].tolist() if i in masks else None, p)
                 for i, p in enumerate(self.predicates)]
        branch = [len(self.predicates)] * len(batch)
        values = batch.values.objects().tolist()
        if self.with_record:
            rows = batch.rows()
            args: list[Any] = [Record(r[0], r[1], r[2], r[4]) for r in rows]
        else:
            args = values
        for j, arg in enumerate(args):
            try:
                for i, mask, pred in preds:
                    hit = mask[j] if mask is not None else pred(arg)
                    if hit if hit.__class__ is bool else _truth(hit):
                        branch[j] = i
                        break
            except Exception as exc:
                rec = batch.take(slice(j, j + 1)).rows()[0]
                raise StepFailure(self.name, self.defined_at, rec, exc) from exc
        which = np.array(branch, dtype=np.int64)
        return [batch.take(which == i) for i in range(len(self.predicates) + 1)]


class BranchOp(Operator):
    """Selects branch ``index`` from a :class:`SplitOp` output."""

    columnar = True

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index

    def process(self, batch: list[Any], port: int) -> Any:
        return batch[self.index]


def _truth(result: Any) -> bool:
    """A predicate's result as a bool, with a clear message for results that have no single
    truth value (a NumPy array, a pandas Series, a DataFrame)."""
    try:
        return bool(result)
    except ValueError as exc:
        raise TypeError(
            f"the predicate returned {type(result).__name__} instead of True/False ({exc}). A "
            "function step sees one record's value at a time: return a bool for that record "
            "(for whole-column conditions use an expression such as wb.col('amount') > 0)"
        ) from None


def _as_record_result(res: Any, k: Any, t: int, h: Any) -> tuple[Any, Any, int, Any]:
    if isinstance(res, Record):
        return res.key, res.value, int(res.timestamp), res.headers
    return k, res, t, h
