"""Operators: what a plan node does to a micro-batch.

A record inside the engine is the tuple ``(key, value, timestamp, seq, headers)``. ``seq``
orders records within a task: it is the input offset for a single-input task, or the position
in the task's interleaved input otherwise; records derived from an input keep its ``seq``, and
operators with several inputs process them in ``seq`` order. So the result never depends on
where batch boundaries fall.

Chains of stateless steps are **fused** into one generated Python loop (no per-step call or
intermediate list per record).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._time import MAX_MS, check_ms, to_epoch_ms
from ..types import Record

__all__ = [
    "Batch",
    "BranchOp",
    "CollectOp",
    "FusedOp",
    "IdentityOp",
    "Operator",
    "SplitOp",
    "StepFailure",
    "fuse",
]

Rec = tuple[Any, Any, int, int, Any]
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
    #: side output (records for the ``late`` output), drained by the task after each call;
    #: operators that produce one assign their own list in ``__init__``
    side: Batch = []  # noqa: RUF012

    def process(self, batch: Any, port: int) -> Any:
        """Process one micro-batch arriving on input ``port``; return the output batch."""
        raise NotImplementedError

    def end(self) -> Batch:
        """End of a bounded input: emit everything still pending (close windows)."""
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

    def close(self) -> None:
        """Called when the task closes."""


class IdentityOp(Operator):
    """Passes batches through (``merge``: the engine already ordered its inputs by ``seq``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def process(self, batch: Batch, port: int) -> Batch:
        return batch


class CollectOp(Operator):
    """A sink: collects records for the commit (the engine partitions and writes them)."""

    def __init__(self, name: str, topic: str, *, unwrap_changes: bool = False) -> None:
        self.name = name
        self.topic = topic
        self.buffer: Batch = []
        self.unwrap = unwrap_changes

    def process(self, batch: Batch, port: int) -> Batch:
        if self.unwrap:
            self.buffer.extend((k, v[0], t, s, h) for k, v, t, s, h in batch)
        else:
            self.buffer.extend(batch)
        return []

    def drain(self) -> Batch:
        """Return and forget the collected records."""
        out, self.buffer = self.buffer, []
        return out


class SplitOp(Operator):
    """``split``: route each record to the first branch whose predicate holds, else to rest.

    Outputs a list of batches, one per branch plus rest; :class:`BranchOp` children pick theirs.
    """

    def __init__(self, name: str, defined_at: str, predicates: Sequence[Callable[[Any], Any]],
                 with_record: bool) -> None:
        self.name = name
        self.defined_at = defined_at
        self.predicates = list(predicates)
        self.with_record = with_record

    def process(self, batch: Batch, port: int) -> list[Batch]:
        outs: list[Batch] = [[] for _ in range(len(self.predicates) + 1)]
        preds = list(enumerate(self.predicates))
        rest = outs[-1]
        wr = self.with_record
        for r in batch:
            try:
                arg = Record(r[0], r[1], r[2], r[4]) if wr else r[1]
                for i, pred in preds:
                    hit = pred(arg)
                    if hit if hit.__class__ is bool else _truth(hit):
                        outs[i].append(r)
                        break
                else:
                    rest.append(r)
            except Exception as exc:
                raise StepFailure(self.name, self.defined_at, r, exc) from exc
        return outs


class BranchOp(Operator):
    """Selects branch ``index`` from a :class:`SplitOp` output."""

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index

    def process(self, batch: list[Batch], port: int) -> Batch:
        return batch[self.index]


class FusedOp(Operator):
    """A chain of stateless steps compiled into one loop."""

    def __init__(self, name: str, fn: Callable[[Batch], Batch], steps: Sequence[str],
                 source: str) -> None:
        self.name = name
        self._fn = fn
        self.steps = list(steps)
        self.source = source  # generated code, kept for debugging

    def process(self, batch: Batch, port: int) -> Batch:
        return self._fn(batch)


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


def fuse(steps: Sequence[tuple[str, str, str, dict[str, Any]]], name: str) -> FusedOp:
    """Compile stateless steps ``[(op, step_name, defined_at, params)]`` into one loop.

    Supported ops: ``map``, ``filter``, ``flat_map``, ``key_by``, ``peek``, ``time`` (set the
    timestamp from the value, for sources with ``time=``).
    """
    env: dict[str, Any] = {
        "Record": Record,
        "StepFailure": StepFailure,
        "_asrec": _as_record_result,
        "_to_ms": to_epoch_ms,
        "_check_ms": check_ms,
        "_MAX_MS": MAX_MS,
        "_truth": _truth,
        "_names": [s[1] for s in steps],
        "_sites": [s[2] for s in steps],
    }
    body: list[str] = []
    indent = 2

    def emit(line: str) -> None:
        body.append("    " * indent + line)

    def guarded(i: int, lines: list[str]) -> None:
        # one try block per step: free in CPython 3.11+ unless it raises, and the failing step
        # is known without bookkeeping on the hot path
        emit("try:")
        for line in lines:
            emit("    " + line)
        emit("except Exception as exc:")
        emit(f"    raise StepFailure(_names[{i}], _sites[{i}], (k, v, t, s, h), exc) from exc")

    for i, (op, _step, _site, params) in enumerate(steps):
        fn = params.get("fn")
        env[f"f{i}"] = fn
        if params.get("field") is not None:
            env[f"field{i}"] = params["field"]
        wr = params.get("with_record", False)
        arg = "Record(k, v, t, h)" if wr else "v"
        if op == "map":
            guarded(i, [f"k, v, t, h = _asrec(f{i}({arg}), k, t, h)" if wr else f"v = f{i}(v)"])
        elif op == "filter":
            guarded(i, [f"_keep = f{i}({arg})", "if _keep.__class__ is not bool:",
                        "    _keep = _truth(_keep)"])
            emit("if not _keep:")
            emit("    continue")
        elif op == "peek":
            guarded(i, [f"f{i}({arg})"])
        elif op == "table_changes":
            emit("v = v[0]")
        elif op in ("key_by", "group_by"):
            guarded(i, [f"k = v[field{i}]" if params.get("field") is not None
                        else f"k = f{i}({arg})"])
        elif op == "time":
            if params.get("field") is not None:
                guarded(i, ["if v is not None:", f"    t = v[field{i}]",
                            "    if t.__class__ is not int:", "        t = _to_ms(t)",
                            "    elif not 0 <= t <= _MAX_MS:", "        _check_ms(t)"])
            else:
                guarded(i, ["if v is not None:", f"    t = f{i}(v)",
                            "    if t.__class__ is not int:", "        t = _to_ms(t)",
                            "    elif not 0 <= t <= _MAX_MS:", "        _check_ms(t)"])
        elif op == "flat_map":
            guarded(i, [f"_items{i} = list(f{i}({arg}))"])
            emit(f"for _o{i} in _items{i}:")
            indent += 1
            if wr:
                guarded(i, [f"k, v, t, h = _asrec(_o{i}, k, t, h)"])
            else:
                emit(f"v = _o{i}")
        else:  # pragma: no cover - guarded by the builder
            raise ValueError(f"cannot fuse op {op!r}")
    emit("append((k, v, t, s, h))")
    lines = [
        "def fused(batch):",
        "    out = []",
        "    append = out.append",
        "    for k, v, t, s, h in batch:",
        *body,
        "    return out",
    ]
    if not steps:
        lines = ["def fused(batch):", "    return batch"]
    source = "\n".join(lines)
    exec(compile(source, f"<workbench fused {name}>", "exec"), env)
    return FusedOp(name, env["fused"], [s[1] for s in steps], source)
