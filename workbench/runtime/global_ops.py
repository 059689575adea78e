"""Global tables: one copy per process of a table read from **every** partition of its topic.

A :class:`GlobalStore` is kept by the engine, not by a task: Kafka Streams' global state store,
filled by its ``GlobalStreamThread``. The engine restores each global store from its topic when a
run starts (from offset 0 to the end: it has no changelog, the topic is its changelog) and, before
each poll of the tasks, reads what the topic got since (:meth:`GlobalTables.update`), so that a
record appended to the topic is in the store before any stream record that comes after it is
processed -- what TopologyTestDriver does when a record is piped into a global topic.

Semantics (Kafka Streams 4.1.1, checked with TopologyTestDriver: ``tests/conformance/cases/
joins_global.json``):

- the store is the latest value per key (a ``None`` value deletes); a record with a ``None`` key
  is dropped and counted; updates never produce output and apply whatever their timestamp (the
  store is neither versioned nor time-synchronised with the streams);
- :class:`GlobalTableJoinOp` (``KStreamKTableJoinProcessor`` with a key selector): a stream
  record with a ``None`` value is dropped (counted); otherwise the lookup key is ``on(value)``
  (the stream key is not needed, KIP-962); a ``None`` lookup key is dropped (counted) by an inner
  join and joined with ``None`` by a left join; an inner join emits only when the key is in the
  table. The output keeps the stream record's key, timestamp and headers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from ..joins import default_combine
from ..keys import key_id
from ..plan import Plan, PlanNode
from .operators import Batch, Operator, StepFailure
from .task import OPERATOR_FACTORIES, OpContext

__all__ = ["GlobalStore", "GlobalTableJoinOp", "GlobalTables"]

log = logging.getLogger(__name__)

#: records read per partition and call while following a global topic
READ_CHUNK = 50_000


class GlobalStore:
    """The latest value per key of a global table (keys by identity, see :mod:`workbench.keys`).

    Read-only for steps: ``get(key)``, ``key in store``, ``len(store)``, ``items()`` (original
    keys, in first-insertion order) -- what a processor's ``ctx.store(name)`` returns.
    """

    def __init__(self, name: str, topic: str) -> None:
        self.name = name
        self.topic = topic
        #: key identity -> (original key, value)
        self.data: dict[Any, tuple[Any, Any]] = {}
        #: partition -> next offset to read
        self.positions: dict[int, int] = {}
        #: records with a ``None`` key (dropped, as Kafka Streams counts them)
        self.dropped = 0

    def apply(self, records: list[Any]) -> None:
        """Apply topic records ``(key, value, timestamp, offset, headers)`` in order."""
        data = self.data
        for r in records:
            k, v = r[0], r[1]
            if k is None:
                self.dropped += 1
                continue
            kid = key_id(k)
            if v is None:
                data.pop(kid, None)
            else:
                data[kid] = (k, v)

    # -- reads (the join looks up by identity; processors by their own keys)
    def lookup(self, kid: Any) -> Any:
        """The value stored under key identity ``kid``, or ``None``."""
        entry = self.data.get(kid)
        return None if entry is None else entry[1]

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        entry = self.data.get(key_id(key))
        return default if entry is None else entry[1]

    def __contains__(self, key: Any) -> bool:
        return key_id(key) in self.data

    def __len__(self) -> int:
        return len(self.data)

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Every ``(key, value)``."""
        return iter(list(self.data.values()))

    def keys(self) -> list[Any]:
        """Every key."""
        return [k for k, _v in self.data.values()]

    def __repr__(self) -> str:
        return f"<GlobalStore {self.name!r} ({len(self.data)} keys) of topic {self.topic!r}>"


class GlobalTables:
    """The engine's global stores: restored when a run starts, followed before each poll."""

    def __init__(self, plan: Plan, driver: Any, partitions: dict[str, int]) -> None:
        self.driver = driver
        self.partitions = partitions
        self.stores: dict[str, GlobalStore] = {
            g.name: GlobalStore(g.name, g.topic) for g in plan.global_tables}

    def __bool__(self) -> bool:
        return bool(self.stores)

    def restore(self) -> None:
        """Read every partition of every global topic from the start to its end now."""
        for store in self.stores.values():
            count = self.partitions[store.topic]
            read = 0
            for p in range(count):
                end = self.driver.end_offset(store.topic, p)
                pos = store.positions.get(p, 0)
                while pos < end:
                    chunk = self.driver.read(store.topic, p, pos, READ_CHUNK)
                    if not chunk:
                        break
                    store.apply(chunk)
                    read += len(chunk)
                    pos = chunk[-1][3] + 1
                store.positions[p] = pos
            if read:
                log.info("global table %s: restored %d records from topic %s", store.name,
                         read, store.topic)

    def update(self, max_records: int) -> int:
        """Apply what the global topics got since the last read (at most ``max_records`` per
        partition); return how many records were read."""
        total = 0
        driver = self.driver
        for store in self.stores.values():
            topic = store.topic
            for p in range(self.partitions[topic]):
                pos = store.positions.get(p, 0)
                if pos >= driver.end_offset(topic, p):
                    continue
                chunk = driver.read(topic, p, pos, max_records)
                if chunk:
                    store.apply(chunk)
                    store.positions[p] = chunk[-1][3] + 1
                    total += len(chunk)
        return total

    def dropped(self) -> dict[str, int]:
        """``{global table: records dropped}`` (``None`` keys)."""
        return {s.name: s.dropped for s in self.stores.values() if s.dropped}


# -- the join -------------------------------------------------------------------------------------
class GlobalTableJoinOp(Operator):
    """A stream joined with a global table through a key selector (see the module docstring)."""

    def __init__(self, name: str, defined_at: str, how: str, on: Callable[[Any], Any],
                 combine: Callable[[Any, Any], Any], store: GlobalStore) -> None:
        self.name = name
        self.defined_at = defined_at
        self.left = how == "left"
        self.on = on
        self.combine = combine
        self.store = store
        self.dropped = 0
        self.side = []

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        append = out.append
        data = self.store.data
        on = self.on
        combine = self.combine
        left = self.left
        for r in batch:
            k, v, t, s, h = r
            if v is None:
                self.dropped += 1
                continue
            try:
                mapped = on(v)
                if mapped is None:
                    if not left:
                        self.dropped += 1
                        continue
                    tv = None
                else:
                    entry = data.get(key_id(mapped))
                    if entry is None:
                        if not left:
                            continue
                        tv = None
                    else:
                        tv = entry[1]
                append((k, combine(v, tv), t, s, h))
            except Exception as exc:
                raise StepFailure(self.name, self.defined_at, r, exc) from exc
        return out


def _selector(params: dict[str, Any]) -> Callable[[Any], Any]:
    field = params.get("field")
    if field is None:
        fn: Callable[[Any], Any] = params["on"]
        return fn

    def pick(value: Any) -> Any:
        return value.get(field) if isinstance(value, dict) else getattr(value, field, None)

    return pick


def global_store(ctx: OpContext, name: str) -> GlobalStore:
    """The engine's global store of global table ``name`` (put in ``ctx.extra`` by the
    engine)."""
    stores: dict[str, GlobalStore] = ctx.extra.get("globals", {})
    store = stores.get(name)
    if store is None:  # a task built outside an engine (tests of one operator)
        store = GlobalStore(name, name)
        stores[name] = store
        ctx.extra["globals"] = stores
    return store


def _join_global(plan_node: PlanNode, ctx: OpContext) -> Operator:
    node = plan_node.node
    assert node is not None
    params = node.params
    combine = params.get("combine") or default_combine
    return GlobalTableJoinOp(plan_node.name, node.defined_at, params.get("how", "inner"),
                             _selector(params), combine, global_store(ctx, params["global"]))


OPERATOR_FACTORIES["join_global"] = _join_global
