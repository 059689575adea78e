"""Re-grouped tables: ``table_group_by`` (Kafka Streams' ``KTableRepartitionMap``) and the
aggregation behind it (``KTableAggregate`` / ``KTableReduce``), as Kafka Streams 4.1.1 behaves
(TopologyTestDriver, caching off; conformance cases ``tables_regrouped.json``, FINDINGS D22).

**``table_group_by``** maps each table update ``Change(new, old)`` of a row to the groups it
touches. The new group is ``group(new)`` (none when ``new`` is ``None``), the old group
``group(old)``:

- both exist and are the same key (same serialized bytes): one record to that group,
  ``Change(new, old)``;
- otherwise the old value leaves first, ``(old group, Change(None, old))``, then the new value
  joins, ``(new group, Change(new, None))``.

An out-of-order update of a versioned table (older than the key's latest version, KIP-914) is
skipped, as Kafka Streams skips it (silently; conformance case ``regroup-sum-versioned-source``).

A row whose new group is ``None`` joins no group. Kafka Streams drops it silently at the
repartition topic; workbench forwards it with a ``None`` key so that the aggregation sends it to
its ``late`` output (header ``workbench.dropped=null-key``): nothing is lost without a trace.

**The aggregation** keeps ``(aggregate, timestamp)`` per group. For ``Change(new, old)`` at
time ``t``:

1. if ``old`` is not ``None`` and the group has an aggregate, ``subtract(aggregate, old)``;
   the timestamp becomes ``max(t, aggregate's timestamp)``;
2. if ``new`` is not ``None``, ``add(that or init(), new)`` (``reduce``: the first value is
   the aggregate); with a stored aggregate the timestamp is ``max(t, its timestamp)``;
3. the result is stored (``None`` deletes the group) and forwarded as
   ``Change(result, previous)`` with that timestamp: also a count that reaches 0 (it stays,
   as ``0``), and also when nothing changed the value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..keys import key_id
from ..plan import PlanNode, changelog_topic
from ..types import Change, Record
from .operators import Batch, Operator, StepFailure
from .task import OPERATOR_FACTORIES, OpContext
from .versioned import OutOfOrder
from .window_store import AggKVStore

__all__ = ["TableAggregateOp", "TableGroupByOp"]

NULL_KEY = ("workbench.dropped", b"null-key")
_tnew = tuple.__new__


class TableGroupByOp(Operator):
    """``KTableRepartitionMap``: a table update to the groups it leaves and joins."""

    def __init__(self, name: str, defined_at: str, group: Callable[[Any], Any],
                 with_record: bool) -> None:
        self.name = name
        self.defined_at = defined_at
        self.group = group
        self.with_record = with_record
        self.side = []

    def _group_of(self, k: Any, value: Any, t: int, h: Any) -> Any:
        if self.with_record:
            return self.group(Record(k, value, t, h))
        return self.group(value)

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        append = out.append
        group_of = self._group_of
        for r in batch:
            k, ch, t, s, h = r
            if ch.__class__ is OutOfOrder:
                continue
            new, old = ch
            try:
                new_key = None if new is None else group_of(k, new, t, h)
                old_key = None if old is None else group_of(k, old, t, h)
            except Exception as exc:
                raise StepFailure(self.name, self.defined_at, r, exc) from exc
            if (new_key is not None and old_key is not None
                    and key_id(new_key) == key_id(old_key)):
                append((new_key, ch, t, s, h))
                continue
            if old_key is not None:
                append((old_key, _tnew(Change, (None, old)), t, s, h))
            if new is not None:  # a None group reaches the aggregation's late output
                append((new_key, _tnew(Change, (new, None)), t, s, h))
        return out


class TableAggregateOp(Operator):
    """``KTableAggregate`` / ``KTableReduce``: adder and subtractor per group."""

    def __init__(self, pn: PlanNode, ctx: OpContext) -> None:
        node = pn.node
        assert node is not None
        params = node.params
        self.name = pn.name
        self.defined_at = node.defined_at
        self.side: Batch = []
        #: rows in no group (sent to the late output; Kafka Streams drops them silently)
        self.ungrouped = 0
        agg = params["agg"]
        self.agg = agg
        if agg.subtract is None:  # pragma: no cover - the DSL always gives one
            raise ValueError(f"step {pn.name!r}: a re-grouped aggregation needs a subtractor")
        suffix, _kind = params["stores"][0]
        store_name = f"{node.name}-{suffix}" if suffix else node.name
        spec = ctx.stores.get(store_name)
        changelog = spec.changelog if spec is not None else changelog_topic(ctx.app_id,
                                                                            store_name)
        self.store = AggKVStore(store_name, changelog)
        self.stores = [self.store]

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        append = out.append
        data = self.store.data
        dirty = self.store._dirty
        agg = self.agg
        init, add, sub, fin = agg.init, agg.add, agg.subtract, agg.finalize
        reducer = agg.reducer
        for r in batch:
            k, ch, t, s, h = r
            new, old = ch
            if k is None:  # a row in no group
                hdrs = (*h, NULL_KEY) if h else (NULL_KEY,)
                self.side.append((k, new, t, s, hdrs))
                self.ungrouped += 1
                continue
            e = data.get(k)
            prev = None if e is None else e[0]
            ts = t
            try:
                if old is not None and e is not None and prev is not None:
                    acc = sub(prev, old)
                    if e[1] > ts:
                        ts = e[1]
                else:
                    acc = prev
                if new is not None:
                    if acc is None:
                        acc = new if reducer else add(init(), new)
                        if not reducer and e is not None and e[1] > ts:
                            ts = e[1]
                    else:
                        acc = add(acc, new)
                        if e is not None and e[1] > ts:
                            ts = e[1]
                value = acc if fin is None or acc is None else fin(acc)
                before = prev if fin is None or prev is None else fin(prev)
            except Exception as exc:
                raise StepFailure(self.name, self.defined_at, r, exc) from exc
            if acc is None:
                data.pop(k, None)
                dirty[k] = None
            else:
                e = (acc, ts)
                data[k] = e
                dirty[k] = e
            append((k, _tnew(Change, (value, before)), ts, s, h))
        return out


def _table_group_by(plan_node: PlanNode, ctx: OpContext) -> Operator:
    node = plan_node.node
    assert node is not None
    params = node.params
    field = params.get("field")
    if isinstance(field, str):
        def group(value: Any, field: str = field) -> Any:
            return value[field]
        fn: Callable[[Any], Any] = group
    else:
        fn = params["fn"]
    return TableGroupByOp(plan_node.name, node.defined_at, fn,
                          bool(params.get("with_record")) and not isinstance(field, str))


OPERATOR_FACTORIES["table_group_by"] = _table_group_by
