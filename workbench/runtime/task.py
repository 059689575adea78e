"""A task: one sub-topology × one partition. It owns its operators, their state and positions.

Building a task turns the plan's nodes into operators, fusing chains of stateless steps into
one generated loop. Processing a micro-batch runs the operator DAG in topological order; an
operator with several inputs receives them in ``seq`` order, so the result is the same as
record-at-a-time processing (as in Kafka Streams) whatever the batch boundaries.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._time import format_ms
from ..errors import ProcessingError
from ..keys import KeyId, key_id, unwrap_key
from ..plan import PlanNode, StoreSpec, SubTopology
from ..samples import time_extractor
from ..types import TABLE_OPS
from ..windows import Windowed
from . import batch as cb
from .operators import (
    Batch,
    BranchOp,
    CollectOp,
    IdentityOp,
    Operator,
    SplitOp,
    StepFailure,
)
from .origins import OriginColumns, origin_columns
from .origins import describe as describe_source
from .stateless import StatelessChain

__all__ = ["OPERATOR_FACTORIES", "OpContext", "Origin", "Task"]

#: where a record came from: (topic, partition, offset), ``None`` parts when unknown
Origin = tuple[str | None, int | None, int | None]

FUSABLE = frozenset({"map", "filter", "flat_map", "key_by", "group_by", "peek",
                     "table_changes", "assign", "select", "rename", "drop"})

#: op name -> factory(plan_node, ctx) -> Operator, for stateful steps (filled by their modules)
OPERATOR_FACTORIES: dict[str, Callable[[PlanNode, OpContext], Operator]] = {}


@dataclass
class OpContext:
    """What an operator factory may use: the task's identity, stores, clock."""

    app_id: str
    partition: int
    stores: dict[str, StoreSpec]
    clock: Any
    task: Task | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: operators may run vectorized on column batches (False: the row operators only, the
    #: reference for equivalence tests)
    vectorize: bool = True

    def store_spec(self, name: str) -> StoreSpec:
        """The plan's spec of store ``name``."""
        return self.stores[name]


@dataclass
class _RNode:
    op: Operator
    children: list[tuple[int, int]]
    collect: CollectOp | None = None
    side_children: list[tuple[int, int]] = field(default_factory=list)
    #: a stateful DSL step: its records' keys are replaced by their identity (``key_id``)
    #: on the way in, and back on the way out
    keyed: bool = False
    #: the operator takes column batches (else rows, converted here)
    columnar: bool = False


def _ids_in(batch: Batch) -> Batch:
    """``batch`` with each key replaced by its identity where that differs from the key."""
    for r in batch:
        c = r[0].__class__
        if c is not str and c is not int and r[0] is not None:
            break
    else:
        return batch
    return [(key_id(k), v, t, s, h) for k, v, t, s, h in batch]


def _ids_out(batch: Any) -> Any:
    """Output of a keyed step with the original keys back."""
    for r in batch:
        c = r[0].__class__
        if c is KeyId or (c is Windowed and r[0][0].__class__ is KeyId):
            return [(unwrap_key(k), v, t, s, h) for k, v, t, s, h in batch]
    return batch


class Task:
    """One sub-topology instance for one partition."""

    def __init__(self, subtopology: SubTopology, partition: int, ctx: OpContext, *,
                 vectorize: bool = True) -> None:
        self.vectorize = vectorize
        ctx.vectorize = vectorize
        self.subtopology = subtopology
        self.partition = partition
        self.id = f"{subtopology.id}_{partition}"
        self.ctx = ctx
        ctx.task = self
        self.stream_time = -1
        self.processed = 0
        self.nodes: list[_RNode] = []
        self.input_nodes: dict[str, int] = {}  # topic -> runtime node index
        self.collectors: list[CollectOp] = []
        #: sinks whose records name their topic (``to(topic function)``): ``drain_topics()``
        self.topic_sinks: list[Any] = []
        self._build()
        self.stores = [s for rn in self.nodes for s in rn.op.stores]
        #: for error messages of an interleaved batch: seq → (topic, offset)
        self._origins: _Origins | None = None
        self._origin_partition = partition
        self._single_origin: tuple[str, int] | None = None
        #: while results of external calls run downstream: where their records came from
        self._origin_override: Callable[[Any], Origin] | None = None
        #: nodes whose operators finish records later (external calls, ``runtime/external``)
        self.external = [i for i, rn in enumerate(self.nodes)
                         if getattr(rn.op, "external", False)]
        if self.external:
            self._setup_external()

    # -- building -----------------------------------------------------------------------------
    def _build(self) -> None:
        st = self.subtopology
        pnodes = st.nodes
        group_of: dict[int, int] = {}
        groups: list[list[PlanNode]] = []
        for pn in pnodes:
            parent = pnodes[pn.parents[0]] if len(pn.parents) == 1 else None
            if (
                pn.op in FUSABLE
                and parent is not None
                and len(parent.children) == 1
                and _can_head(parent)
                and parent.index in group_of
            ):
                g = group_of[parent.index]
                groups[g].append(pn)
                group_of[pn.index] = g
            else:
                group_of[pn.index] = len(groups)
                groups.append([pn])
        for members in groups:
            op, collect = self._make_op(members)
            last = members[-1]
            children = [(group_of[c], port) for c, port, out in last.children if out == 0]
            side = [(group_of[c], port) for c, port, out in last.children if out == 1]
            keyed = bool(op.stores) and members[0].op != "process"
            self.nodes.append(_RNode(op, children, collect, side, keyed,
                                     getattr(op, "columnar", False)))
            if collect is not None:
                self.collectors.append(collect)
            elif hasattr(op, "drain_topics"):
                self.topic_sinks.append(op)
            head = members[0]
            if head.topic is not None and head.op in ("source", "table_source",
                                                      "repartition_source"):
                self.input_nodes[head.topic] = len(self.nodes) - 1

    def _make_op(self, members: list[PlanNode]) -> tuple[Operator, CollectOp | None]:
        head = members[0]
        steps: list[tuple[str, str, str, dict[str, Any]]] = []
        pre: BranchOp | None = None
        if head.op in ("sink", "repartition_sink", "capture"):
            assert head.topic is not None
            unwrap = head.op == "capture" and head.node is not None and head.node.op in TABLE_OPS
            collect = CollectOp(head.name, head.topic, unwrap_changes=unwrap)
            if head.op == "repartition_sink" and self.ctx.extra.get("track_origins"):
                collect.track = self.origin_columns  # errors downstream name the source
            return collect, collect
        if head.op == "split":
            node = head.node
            assert node is not None
            return SplitOp(head.name, node.defined_at, list(node.params["branches"].values()),
                           node.params["with_record"]), None
        if head.op in OPERATOR_FACTORIES and len(members) == 1:
            return OPERATOR_FACTORIES[head.op](head, self.ctx), None
        if head.op == "source":
            assert head.node is not None
            spec = head.node.params["spec"]
            if isinstance(spec.time, str):
                steps.append(("time", head.name, head.node.defined_at,
                              {"field": spec.time, "fn": None}))
            elif spec.time is not None:
                steps.append(("time", head.name, head.node.defined_at,
                              {"fn": time_extractor(spec)}))
        elif head.op == "branch":
            assert head.node is not None
            pre = BranchOp(head.name, head.node.params["index"])
        elif head.op in FUSABLE:
            pass  # head is itself a step
        elif head.op in ("merge", "repartition_source", "late", "errors"):
            pass
        elif head.op in OPERATOR_FACTORIES:  # pragma: no cover - stateful ops are never heads
            return OPERATOR_FACTORIES[head.op](head, self.ctx), None
        else:
            raise NotImplementedError(f"step {head.name!r}: op {head.op!r} is not supported by "
                                      "this engine")
        for pn in members:
            if pn.op in FUSABLE:
                assert pn.node is not None
                steps.append((pn.op, pn.name, pn.node.defined_at, pn.node.params))
        name = "+".join(m.name for m in members)
        if not steps:
            return (pre if pre is not None else IdentityOp(name)), None
        chain = StatelessChain(name, steps, vectorize=self.vectorize)
        if pre is not None:
            return _Then(pre, chain), None
        return chain, None

    # -- processing ---------------------------------------------------------------------------
    def process(self, topic: str, batch: cb.Batch, partition: int) -> None:
        """Process records read from one input partition (``seq`` = offset)."""
        if not len(batch):
            return
        self._origins = None
        self._single_origin = (topic, partition)
        top = int(batch.ts.max())
        if top > self.stream_time:
            self.stream_time = top
        self._run({self.input_nodes[topic]: [(0, batch)]}, ending=False)
        self.processed += len(batch)

    def process_interleaved(self, items: list[tuple[str, cb.Batch]], partition: int) -> None:
        """Process records from several inputs, already interleaved; ``items`` holds per topic
        the records re-numbered with the task's ``seq``."""
        inbox: dict[int, list[tuple[int, Any]]] = {}
        count = 0
        for topic, batch in items:
            if len(batch):
                inbox.setdefault(self.input_nodes[topic], []).append((0, batch))
                count += len(batch)
                top = int(batch.ts.max())
                if top > self.stream_time:
                    self.stream_time = top
        if count:
            self._single_origin = None
            self._run(inbox, ending=False)
            self.processed += count

    def set_origins(self, seq_start: int, topics: list[str], which: np.ndarray,
                    offsets: np.ndarray, partition: int) -> None:
        """For error messages of an interleaved batch: record ``seq_start + i`` came from
        ``topics[which[i]]`` at ``offsets[i]``."""
        self._origins = _Origins(seq_start, topics, which, offsets)
        self._origin_partition = partition

    def end(self) -> None:
        """End of bounded input: let every operator flush (close windows, emit parked joins)."""
        self._single_origin = None
        self._run({}, ending=True)

    def punctuate_wall(self, now_ms: int) -> None:
        """Run wall-clock punctuators."""
        self._single_origin = None
        self._origins = None
        inbox: dict[int, list[tuple[int, Any]]] = {}
        for rn in self.nodes:
            out: Any = rn.op.punctuate_wall(now_ms)
            if out is not None and len(out):
                if not rn.columnar:
                    out = cb.Batch.from_rows(_ids_out(out) if rn.keyed else out)
                for c, port in rn.children:
                    inbox.setdefault(c, []).append((port, out))
        if any(inbox.values()):
            self._run(inbox, ending=False)

    def _run(self, inbox: dict[int, list[tuple[int, Any]]], *, ending: bool) -> None:
        try:
            for i, rn in enumerate(self.nodes):
                items = inbox.pop(i, None)
                out: Any = None
                op = rn.op
                if rn.columnar:
                    if items:
                        if len(items) == 1:
                            port, batch = items[0]
                            out = op.process(batch, port)
                        else:
                            out = self._process_ordered_columns(op, items)
                    if ending:
                        flushed = op.end()
                        if flushed is not None and len(flushed):
                            out = flushed if out is None else cb.Batch.concat([out, flushed])
                    side: Any = op.side
                    if side is not None and len(side):
                        op.side = []
                        side = cb.Batch.concat(side) if isinstance(side, list) else side
                    else:
                        side = None
                else:
                    rows: Any = None
                    if items:
                        row_items = [(port, b.rows()) for port, b in items]
                        if rn.keyed:
                            row_items = [(port, _ids_in(r)) for port, r in row_items]
                        if len(row_items) == 1:
                            port, r = row_items[0]
                            rows = op.process(r, port)
                        else:
                            rows = self._process_ordered(op, row_items)
                    if ending:
                        flushed = op.end()
                        if flushed:
                            rows = flushed if not rows else [*rows, *flushed]
                    if rows:
                        out = cb.Batch.from_rows(_ids_out(rows) if rn.keyed else rows)
                    side = None
                    if op.side:
                        side_rows = op.side
                        op.side = []
                        side = cb.Batch.from_rows(_ids_out(side_rows) if rn.keyed
                                                  else side_rows)
                if out is not None and rn.children and (isinstance(out, list) or len(out)):
                    for c, port in rn.children:
                        inbox.setdefault(c, []).append((port, out))
                if side is not None:
                    for c, port in rn.side_children:
                        inbox.setdefault(c, []).append((port, side))
        except StepFailure as failure:
            raise self._processing_error(failure) from failure.error

    @staticmethod
    def _process_ordered_columns(op: Operator, items: list[tuple[int, Any]]) -> Any:
        """Feed several column inputs to ``op`` in ``seq`` order (ties: input order)."""
        merged, ports = cb.sort_by_seq(items)
        if isinstance(op, IdentityOp):
            return merged
        out = []
        n = len(merged)
        start = 0
        while start < n:
            port = int(ports[start])
            stop = start + 1
            while stop < n and ports[stop] == port:
                stop += 1
            res = op.process(merged.take(slice(start, stop)), port)
            if res is not None and len(res):
                out.append(res)
            start = stop
        return cb.Batch.concat(out)

    @staticmethod
    def _process_ordered(op: Operator, items: list[tuple[int, Batch]]) -> Batch:
        """Feed several row inputs to ``op`` in ``seq`` order (ties: input order)."""
        tagged = [[(r[3], port, r) for r in batch] for port, batch in items]
        out: Batch = []
        run: Batch = []
        run_port = -1
        for _seq, port, rec in heapq.merge(*tagged, key=lambda x: x[0]):
            if port != run_port and run:
                out.extend(op.process(run, run_port))
                run = []
            run_port = port
            run.append(rec)
        if run:
            out.extend(op.process(run, run_port))
        return out

    # -- external operators (runtime/external) ------------------------------------------------
    def _setup_external(self) -> None:
        """An external operator upstream of a step with several inputs (merge, join) finishes
        each batch before the next step runs, so that step sees its inputs in ``seq`` order."""
        indegree = [0] * len(self.nodes)
        for rn in self.nodes:
            for c, _port in (*rn.children, *rn.side_children):
                indegree[c] += 1
        for i in self.external:
            seen, todo = set(), [i]
            while todo:
                j = todo.pop()
                for c, _port in (*self.nodes[j].children, *self.nodes[j].side_children):
                    if c not in seen:
                        seen.add(c)
                        todo.append(c)
            op: Any = self.nodes[i].op
            op.sync_batches = any(indegree[c] > 1 for c in seen)

    def external_ops(self) -> list[Operator]:
        """The operators of this task that finish records later (external calls)."""
        return [self.nodes[i].op for i in self.external]

    def pump_external(self, wait: bool = False) -> int:
        """Run the finished results of external operators through the rest of the task (in
        order); with ``wait``, first wait for every call in flight (a commit waits for the
        calls of the records it commits). Returns the number of results moved."""
        moved = 0
        for i in self.external:  # topological order: a flush feeds the next external step
            rn = self.nodes[i]
            op: Any = rn.op
            out, origin = op.collect(wait)
            side: Any = op.side
            inbox: dict[int, list[tuple[int, Any]]] = {}
            if out is not None and len(out):
                moved += len(out)
                for c, port in rn.children:
                    inbox.setdefault(c, []).append((port, out))
            if side:
                op.side = []
                side_batch = cb.Batch.concat(side)
                for c, port in rn.side_children:
                    inbox.setdefault(c, []).append((port, side_batch))
            if inbox:
                self._origin_override = origin
                try:
                    self._run(inbox, ending=False)
                finally:
                    self._origin_override = None
        return moved

    def origin_resolver(self) -> Callable[[Any], Origin]:
        """``seq -> (topic, partition, offset)`` of the records being processed now (``None``
        parts when unknown), for operators that finish records later (external calls)."""
        override = self._origin_override
        if override is not None:
            return override
        single, origins, part = self._single_origin, self._origins, self._origin_partition

        def resolve(seq: Any) -> Origin:
            if isinstance(seq, float):
                return (None, None, None)
            seq = int(seq)
            if seq < 0:
                return (None, None, None)
            if single is not None:
                return (single[0], single[1], seq)
            got = origins.get(seq) if origins is not None else None
            return (got[0], part, got[1]) if got is not None else (None, None, None)

        return resolve

    def origin_columns(self, seq: np.ndarray) -> OriginColumns:
        """Where the records with ``seq`` being processed now came from, as columns (for the
        repartition topics they go to: :mod:`.origins`); vectorized except for results of
        external calls."""
        return origin_columns(self, seq)

    def source_of(self, topic: str | None, partition: int | None,
                  offset: int | None) -> Origin | None:
        """Where a record read from a repartition topic came from (``None``: not from one, or
        unknown), looked up through the driver by the engine (:mod:`.origins`)."""
        resolve = self.ctx.extra.get("source_of")
        if resolve is None or topic is None:
            return None
        found: Origin | None = resolve(topic, partition, offset)
        return found

    def _processing_error(self, failure: StepFailure) -> ProcessingError:
        seq = failure.record[3]
        topic: str | None = None
        partition: int | None = None
        offset: int | None = None
        punctuated = ""
        source: Origin | None = None
        if isinstance(seq, float):  # forwarded by a stream-time punctuation after record int(seq)
            seq = int(seq)
            punctuated = "a record forwarded by a stream-time punctuation after "
        if isinstance(seq, int) and seq < 0:
            where = "a record forwarded by a wall-clock punctuation"
        else:
            if self._origin_override is not None:
                topic, partition, offset = self._origin_override(seq)
            elif self._single_origin is not None:
                topic, partition = self._single_origin
                offset = seq
            elif self._origins is not None and self._origins.get(seq) is not None:
                topic, offset = self._origins.get(seq)  # type: ignore[misc]
                partition = self._origin_partition
            source = self.source_of(topic, partition, offset)
            resolver = self.ctx.extra.get("source_of")
            where = (f"{punctuated}the record from topic {topic!r} partition {partition} "
                     f"offset {offset}{describe_source(source)}"
                     f"{resolver.hint(topic, source) if resolver is not None else ''}"
                     if topic is not None else "a record created inside the pipeline")
        err = failure.error
        hint = ""
        if isinstance(err, KeyError) and isinstance(failure.record[1], dict):
            from ..errors import did_you_mean

            hint = did_you_mean(str(err.args[0]) if err.args else "", failure.record[1])
        message = (
            f"step {failure.step!r} (defined at {failure.defined_at}) failed on "
            f"{where}: {type(err).__name__}: {err}.{hint} Record key={failure.record[0]!r} "
            f"value={_short(failure.record[1])} timestamp={failure.record[2]} "
            f"({format_ms(failure.record[2])})."
        )
        return ProcessingError(message, step=failure.step, topic=topic, partition=partition,
                               offset=offset, defined_at=failure.defined_at, source=source)

    def times(self) -> dict[str, Any]:
        """The task's stream time and each time-keeping operator's own, as committed in the
        transaction metadata: ``{"task": ms, "ops": {operator name: ms}}``."""
        ops: dict[str, int] = {}
        for rn in self.nodes:
            t = rn.op.observed_time()
            if t is not None:
                ops[rn.op.name] = t
        out: dict[str, Any] = {"task": self.stream_time, "ops": ops}
        hints = {rn.op.name: h for rn in self.nodes if (h := rn.op.time_hints())}
        if hints:
            out["hints"] = hints
        # stores that keep their own time (join window stores, sliding and session stores:
        # what has expired) — part of the state a restore must give back exactly
        stores = {s.name: s.observed for s in self.stores
                  if getattr(s, "observed", None).__class__ is int}
        if stores:
            out["stores"] = stores
        return out

    def restore_times(self, saved: Any) -> None:
        """Restore what :meth:`times` returned in an earlier run."""
        if not isinstance(saved, dict):
            return
        task_time = saved.get("task")
        if isinstance(task_time, int):
            self.stream_time = task_time
        ops = saved.get("ops")
        if isinstance(ops, dict):
            for rn in self.nodes:
                t = ops.get(rn.op.name)
                if isinstance(t, int):
                    rn.op.restore_time(t)
        hints = saved.get("hints")
        if isinstance(hints, dict):
            for rn in self.nodes:
                h = hints.get(rn.op.name)
                if isinstance(h, dict):
                    rn.op.restore_time_hints(h)
        stores = saved.get("stores")
        if isinstance(stores, dict):
            for store in self.stores:
                t = stores.get(store.name)
                if isinstance(t, int) and t > getattr(store, "observed", t):
                    store.observed = t

    def drain_outputs(self) -> list[tuple[str, cb.Batch]]:
        """``[(topic, column batch)]`` collected since the last drain."""
        out = [(c.topic, b) for c in self.collectors if c.buffer for b in c.drain_parts()]
        for sink in self.topic_sinks:
            out.extend(sink.drain_topics())
        return out

    def close(self) -> None:
        """Close every operator."""
        for rn in self.nodes:
            rn.op.close()


class _Then(Operator):
    """A branch selection followed by a stateless chain."""

    columnar = True

    def __init__(self, first: BranchOp, then: StatelessChain) -> None:
        self.first = first
        self.then = then
        self.name = then.name

    def process(self, batch: Any, port: int) -> Any:
        picked = self.first.process(batch, port)
        return self.then.process(picked, port) if len(picked) else picked


@dataclass
class _Origins:
    seq_start: int
    topics: list[str]
    which: np.ndarray
    offsets: np.ndarray

    def get(self, seq: int) -> tuple[str, int] | None:
        i = seq - self.seq_start
        if 0 <= i < len(self.offsets):
            return self.topics[int(self.which[i])], int(self.offsets[i])
        return None


def _can_head(pn: PlanNode) -> bool:
    return pn.op in FUSABLE or pn.op in ("source", "merge", "branch", "repartition_source",
                                         "late", "errors")


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
