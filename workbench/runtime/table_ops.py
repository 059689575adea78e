"""Table operators: ``table_source``, ``to_table``, ``table_filter``, ``table_map_values``.

Records of table steps carry :class:`~workbench.types.Change` values ``(new, old)``, as Kafka
Streams' KTables do (with "send old values" always on).

Semantics (Kafka Streams 4.1, ``docs/semantics.md`` B.3):

- ``table_source`` / ``to_table`` (``KTableSource``): a record with a ``None`` key is dropped
  (counted in ``dropped``). Every other record updates the store and is forwarded as
  ``Change(new, old)`` -- also a repeat of the same value, and also an out-of-order timestamp.
  A ``None`` value deletes the key.
- **Decision: a tombstone for a key that is not in the table is forwarded** as
  ``Change(None, None)``. That is Kafka Streams with caching disabled
  (``statestore.cache.max.bytes=0``); with its default 10 MB cache, TopologyTestDriver
  suppresses such tombstones (``CachingKeyValueStore``: nothing is forwarded when the new value
  is null and the key is absent from the underlying store). workbench has no record cache, so
  it behaves as caching-off everywhere (conformance cases ``table-caching-off`` /
  ``table-tombstones-caching-off``: identical output; the ``caching-on`` variants differ
  exactly by the absent-key tombstones).
- ``table_filter`` (``KTableFilter``): ``new' = new if new is not None and fn(new) else
  None``. When a later step needs old values (re-grouping, suppress, table joins, through
  filters and ``map_values``: Kafka Streams' ``enableSendingOldValues``), ``old'`` likewise and
  ``Change(new', old')`` is forwarded unless both are ``None``; otherwise ``Change(new',
  None)`` is forwarded for every update, so a failing update is a delete even for a key the
  result never had (``table.filter(p).changes()``, as Kafka Streams' ``toStream()``).
- ``table_map_values`` (``KTableMapValues``): ``Change(fn(new), fn(old))`` with ``None`` kept as
  ``None`` (``fn`` is not called for it); always forwarded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..keys import decode_key, encode_key, key_id
from ..plan import PlanNode
from ..samples import time_extractor
from ..types import Change
from .operators import Batch, Operator, StepFailure
from .state import KeyValueStore
from .task import OPERATOR_FACTORIES, OpContext

__all__ = [
    "TableFilterOp",
    "TableMapValuesOp",
    "TableSourceOp",
    "TableStore",
    "decode_key",
    "encode_key",
    "key_bytes",
]


# -- changelog key encoding ---------------------------------------------------------------------


def key_bytes(key: Any) -> bytes:
    """The bytes a key sorts by where Kafka Streams iterates a store in serialized-key order
    (strings: their UTF-8 bytes, as Kafka's String serde; other keys: their JSON text)."""
    if key.__class__ is str:
        return key.encode("utf-8")  # type: ignore[no-any-return]
    if isinstance(key, bytes):
        return key
    import json

    return json.dumps(encode_key(key), sort_keys=True, separators=(",", ":"),
                      default=repr).encode("utf-8")


class TableStore(KeyValueStore):
    """A key-value store whose changelog keys are JSON-friendly (tuple and windowed keys)."""

    def encode_key(self, key: Any) -> Any:
        return encode_key(key)

    def decode_key(self, key: Any) -> Any:
        return key_id(decode_key(key))

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        data = self.data
        count = 0
        for k, v in records:
            key = key_id(decode_key(k))
            if v is None:
                data.pop(key, None)
            else:
                data[key] = v
            count += 1
        return count


def _store_changelog(ctx: OpContext, name: str) -> str:
    """The changelog topic of store ``name`` (from the plan)."""
    spec = ctx.stores.get(name)
    return spec.changelog if spec is not None else f"{ctx.app_id}-{name}-changelog"


def make_store(plan_node: PlanNode, ctx: OpContext, suffix: str,
               cls: type[TableStore] = TableStore) -> TableStore:
    """The store ``<step>-<suffix>`` declared by the plan node (changelog from the plan)."""
    name = f"{plan_node.name}-{suffix}"
    spec = ctx.stores.get(name)
    changelog = spec.changelog if spec is not None else f"{ctx.app_id}-{name}-changelog"
    store = cls(name, changelog)
    store.shared = spec is not None and spec.shared
    return store


#: ``Change(new, old)`` without the NamedTuple's Python-level ``__new__``
_tuple_new = tuple.__new__


# -- operators ----------------------------------------------------------------------------------
class TableSourceOp(Operator):
    """``KTableSource``: materialize a changelog and forward ``Change(new, old)``."""

    def __init__(self, name: str, defined_at: str, store: TableStore,
                 extract: Callable[[Any], int] | None) -> None:
        self.name = name
        self.defined_at = defined_at
        self.store = store
        self.stores = [store]
        self.extract = extract
        self.dropped = 0
        self.side = []

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        append = out.append
        store = self.store
        data = store.data
        dirty = store._dirty
        extract = self.extract
        new_change = _tuple_new
        for r in batch:
            k, v, t, s, h = r
            if k is None:
                self.dropped += 1
                continue
            if extract is not None and v is not None:
                try:
                    t = extract(v)
                except Exception as exc:
                    raise StepFailure(self.name, self.defined_at, r, exc) from exc
            old = data.get(k)
            if v is None:
                if old is not None:
                    del data[k]
            else:
                data[k] = v
            dirty[k] = v
            append((k, new_change(Change, (v, old)), t, s, h))
        return out


class TableFilterOp(Operator):
    """``KTableFilter``: keep values passing ``fn``, others become deletes (with old values
    on, an update where neither the new nor the old value passes is skipped)."""

    def __init__(self, name: str, defined_at: str, fn: Callable[[Any], Any],
                 send_old: bool = True) -> None:
        self.name = name
        self.defined_at = defined_at
        self.fn = fn
        self.send_old = send_old
        self.side = []

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        append = out.append
        fn = self.fn
        send_old = self.send_old
        for r in batch:
            k, ch, t, s, h = r
            new, old = ch
            try:
                if new is not None and not fn(new):
                    new = None
                if not send_old:
                    old = None  # KTableFilter without old values: every update goes on
                elif old is not None and not fn(old):
                    old = None
            except Exception as exc:
                raise StepFailure(self.name, self.defined_at, r, exc) from exc
            if send_old and new is None and old is None:
                continue
            append((k, _tuple_new(ch.__class__, (new, old)), t, s, h))
        return out


class TableMapValuesOp(Operator):
    """``KTableMapValues`` (old values on): map new and old values."""

    def __init__(self, name: str, defined_at: str, fn: Callable[[Any], Any]) -> None:
        self.name = name
        self.defined_at = defined_at
        self.fn = fn
        self.side = []

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        append = out.append
        fn = self.fn
        for r in batch:
            k, ch, t, s, h = r
            new, old = ch
            try:
                if new is not None:
                    new = fn(new)
                if old is not None:
                    old = fn(old)
            except Exception as exc:
                raise StepFailure(self.name, self.defined_at, r, exc) from exc
            append((k, _tuple_new(ch.__class__, (new, old)), t, s, h))
        return out


# -- factories ----------------------------------------------------------------------------------
def _defined_at(plan_node: PlanNode) -> str:
    return plan_node.node.defined_at if plan_node.node is not None else "<unknown>"


def _table_source(plan_node: PlanNode, ctx: OpContext) -> Operator:
    node = plan_node.node
    assert node is not None
    spec = node.params.get("spec")
    extract = time_extractor(spec) if spec is not None else None
    if node.params.get("history") is not None:  # a versioned table
        from .versioned import versioned_table_source

        return versioned_table_source(plan_node, ctx, extract)
    return TableSourceOp(plan_node.name, node.defined_at, make_store(plan_node, ctx, "store"),
                         extract)


def _to_table(plan_node: PlanNode, ctx: OpContext) -> Operator:
    return TableSourceOp(plan_node.name, _defined_at(plan_node),
                         make_store(plan_node, ctx, "store"), None)


def _table_filter(plan_node: PlanNode, ctx: OpContext) -> Operator:
    assert plan_node.node is not None
    params = plan_node.node.params
    needed = params.get("old_values")
    return TableFilterOp(plan_node.name, plan_node.node.defined_at, params["fn"],
                         True if needed is None else bool(needed()))


def _table_map_values(plan_node: PlanNode, ctx: OpContext) -> Operator:
    assert plan_node.node is not None
    return TableMapValuesOp(plan_node.name, plan_node.node.defined_at,
                            plan_node.node.params["fn"])


OPERATOR_FACTORIES["table_source"] = _table_source
OPERATOR_FACTORIES["to_table"] = _to_table
OPERATOR_FACTORIES["table_filter"] = _table_filter
OPERATOR_FACTORIES["table_map_values"] = _table_map_values
