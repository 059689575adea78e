"""Foreign-key table-table joins (KIP-213) as Kafka Streams runs them: three operators in two
sub-topologies, connected by a subscription-registration topic (partitioned like the right
table) and a subscription-response topic (partitioned like the left table), so the join runs
on as many partitions and processes as its tables.

``left.join(right, on=fk)`` becomes (``Table.join``)::

    left ──> SubscribeOp ──[<join>-subscription-registration]──> SubscriptionsOp <── right
      │                                                              │
      └──> ForeignKeyJoinOp <──[<join>-subscription-response]────────┘──> result

Semantics (Kafka Streams 4.1.1 ``SubscriptionSendProcessorSupplier``,
``SubscriptionReceiveProcessorSupplier``, ``SubscriptionJoinProcessorSupplier``,
``ForeignTableJoinProcessorSupplier`` and ``ResponseJoinProcessorSupplier``; record by record
against TopologyTestDriver: ``tests/conformance/cases/joins_fk.json``, the generated family):

- **Subscribe** (left side, per left update ``Change(new, old)``, foreign keys ``fk(old)`` and
  ``fk(new)``): inner join -- no old foreign key: subscribe ``new_fk`` and answer only if the
  right key exists (a ``None`` ``new_fk`` is dropped and counted); ``new_fk`` is ``None`` (or
  the row is deleted): unsubscribe ``old_fk`` and answer with a tombstone; ``old_fk`` ==
  ``new_fk``: re-subscribe, answer only if the right key exists; changed: unsubscribe
  ``old_fk`` silently and subscribe ``new_fk``, answering ``None`` if it has no value. Left join
  -- unsubscribe a changed ``old_fk`` silently, and always subscribe ``new_fk`` (also ``None``:
  no subscription is stored, but the answer comes back, joined with ``None``); a delete of an
  absent key does nothing. Every subscription carries the hash of the left value it was made
  for (``None`` for a delete).
- **Subscriptions** (right side, keyed by foreign key): stores ``(fk, left key) -> hash``,
  answers each subscription as its instruction says with the right value and timestamp
  ``max(left update's, right value's)``; a right update (also a delete) answers every left key
  subscribed to it, in serialized left-key order, with the right value and the right record's
  timestamp.
- **Join** (left side, keyed by left key): an answer whose hash is not the hash of the left
  key's current value is stale (the left row changed since) and is dropped (counted); otherwise
  it emits ``combine(left value, right value)`` -- a tombstone for an inner join without a right
  value or a deleted left row -- as ``Change(result, previous result)``, with the answer's
  timestamp.

With one record at a time (the test driver, TopologyTestDriver) no answer is ever stale. With
batches (a bulk run) a left key updated twice before its answers come back keeps only the
answer to its latest value, as in Kafka Streams: intermediate results may be fewer, the final
result per key is the same.

Versioned tables (KIP-914): out-of-order updates of a versioned left or right table are ignored
(counted).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from ..joins import default_combine
from ..keys import decode_key, encode_key, key_id
from ..plan import PlanNode
from ..serde import _json_default
from ..types import Change
from .operators import Batch, Operator, StepFailure
from .state import StateStore
from .table_ops import TableStore, _store_changelog, _tuple_new, key_bytes
from .task import OPERATOR_FACTORIES, OpContext

__all__ = ["ForeignKeyJoinOp", "SubscribeOp", "SubscriptionStore", "SubscriptionsOp",
           "value_hash"]

#: subscription instructions (Kafka's ``SubscriptionWrapper.Instruction``)
DELETE_NO_PROPAGATE = 0
DELETE_AND_PROPAGATE = 1
PROPAGATE_NULL = 2
PROPAGATE_ONLY = 3


def value_hash(value: Any) -> str | None:
    """The hash that identifies a left value in subscriptions and answers (Kafka Streams: the
    Murmur3 hash of the serialized value): 128 bits of BLAKE2b over its canonical JSON."""
    if value is None:
        return None
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default).encode()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _in_order(change: Any) -> bool:
    return change.__class__ is Change or change.__class__ is tuple


# -- left side: subscribe ----------------------------------------------------------------------
class SubscribeOp(Operator):
    """``SubscriptionSendProcessorSupplier``: left updates -> subscriptions keyed by foreign
    key, value ``{"pk": left key, "hash": hash of the new value, "i": instruction}``."""

    def __init__(self, name: str, defined_at: str, how: str, on: Callable[[Any], Any],
                 versioned: bool) -> None:
        self.name = name
        self.defined_at = defined_at
        self.left_join = how == "left"
        self.on = on
        self.versioned = versioned
        self.dropped = 0
        self.side = []

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        for r in batch:
            k, ch, t, s, h = r
            if self.versioned and not _in_order(ch):
                self.dropped += 1  # an out-of-order update of a versioned table (KIP-914)
                continue
            new, old = ch
            try:
                old_fk = self.on(old) if old is not None else None
                new_fk = self.on(new) if new is not None else None
            except Exception as exc:
                raise StepFailure(self.name, self.defined_at, r, exc) from exc
            sends = self._left(old, new, old_fk, new_fk) if self.left_join else self._inner(
                old, new, old_fk, new_fk)
            if not sends:
                continue
            wrapper_pk = encode_key(k)
            digest = value_hash(new)
            for fk, instruction in sends:
                out.append((fk, {"pk": wrapper_pk, "hash": digest, "i": instruction}, t, s, h))
        return out

    def _inner(self, old: Any, new: Any, old_fk: Any, new_fk: Any) -> list[tuple[Any, int]]:
        if old is not None:
            if old_fk is None and new_fk is None:
                self.dropped += 1  # no foreign key
                return []
            if old_fk is None:
                return [(new_fk, PROPAGATE_ONLY)]
            if new_fk is None:
                return [(old_fk, DELETE_AND_PROPAGATE)]
            if key_id(new_fk) != key_id(old_fk):
                return [(old_fk, DELETE_NO_PROPAGATE), (new_fk, PROPAGATE_NULL)]
            return [(new_fk, PROPAGATE_ONLY)]
        if new is not None:
            if new_fk is None:
                self.dropped += 1
                return []
            return [(new_fk, PROPAGATE_ONLY)]
        return []

    @staticmethod
    def _left(old: Any, new: Any, old_fk: Any, new_fk: Any) -> list[tuple[Any, int]]:
        if old is not None:
            sends = []
            if old_fk is not None and (new_fk is None or key_id(new_fk) != key_id(old_fk)):
                sends.append((old_fk, DELETE_NO_PROPAGATE))
            sends.append((new_fk, PROPAGATE_NULL))
            return sends
        if new is not None:
            return [(new_fk, PROPAGATE_NULL)]
        return []


# -- right side: subscriptions -----------------------------------------------------------------
class SubscriptionStore(StateStore):
    """``(foreign key, left key) -> (left key, hash)``, scanned by foreign key in serialized
    left-key order (Kafka's prefix scan over ``CombinedKey``)."""

    kind = "kv"

    def __init__(self, name: str, changelog: str) -> None:
        super().__init__(name, changelog)
        self.by_fk: dict[Any, dict[Any, tuple[Any, str | None]]] = {}

    def __len__(self) -> int:
        return sum(len(m) for m in self.by_fk.values())

    def put(self, fk: Any, pk: Any, left_key: Any, digest: str | None) -> None:
        self.by_fk.setdefault(fk, {})[pk] = (left_key, digest)
        self._dirty[(fk, pk)] = [encode_key(left_key), digest]

    def delete(self, fk: Any, pk: Any) -> None:
        subs = self.by_fk.get(fk)
        if subs is not None and subs.pop(pk, None) is not None and not subs:
            del self.by_fk[fk]
        self._dirty[(fk, pk)] = None

    def subscribers(self, fk: Any) -> list[tuple[Any, str | None]]:
        subs = self.by_fk.get(fk)
        if not subs:
            return []
        entries = list(subs.values())
        if len(entries) > 1:
            entries.sort(key=lambda e: key_bytes(e[0]))
        return entries

    def encode_key(self, key: Any) -> Any:
        return [encode_key(key[0]), encode_key(key[1])]

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        count = 0
        for k, v in records:
            fk, pk = key_id(decode_key(k[0])), key_id(decode_key(k[1]))
            count += 1
            if v is None:
                subs = self.by_fk.get(fk)
                if subs is not None:
                    subs.pop(pk, None)
                    if not subs:
                        del self.by_fk[fk]
            else:
                self.by_fk.setdefault(fk, {})[pk] = (decode_key(v[0]), v[1])
        return count


class SubscriptionsOp(Operator):
    """``SubscriptionReceive`` + ``SubscriptionJoin`` (port 0: subscriptions) and
    ``ForeignTableJoin`` (port 1: right table updates): answers keyed by left key, value
    ``{"hash": the subscription's hash, "fv": the right value}``."""

    def __init__(self, name: str, defined_at: str, subscriptions: SubscriptionStore,
                 right: TableStore, versioned: bool) -> None:
        self.name = name
        self.defined_at = defined_at
        self.subs = subscriptions
        self.right = right
        self.versioned = versioned
        self.stores = [subscriptions, right]
        self.dropped = 0
        self.side = []

    def process(self, batch: Batch, port: int) -> Batch:
        out: Batch = []
        if port == 0:
            for r in batch:
                self._subscription(r, out)
        else:
            for r in batch:
                self._right_update(r, out)
        return out

    def _subscription(self, r: Any, out: Batch) -> None:
        fk, wrapper, t, s, h = r
        instruction = wrapper["i"]
        left_key = decode_key(wrapper["pk"])
        digest = wrapper["hash"]
        if fk is None:
            if instruction != PROPAGATE_NULL:
                self.dropped += 1
                return
            found = None
        else:
            pk = key_id(left_key)
            if instruction in (DELETE_AND_PROPAGATE, DELETE_NO_PROPAGATE):
                self.subs.delete(fk, pk)
            else:
                self.subs.put(fk, pk, left_key, digest)
            found = self.right.data.get(fk)
        ts = t if found is None or found[1] <= t else found[1]
        if instruction == DELETE_AND_PROPAGATE:
            out.append((left_key, {"hash": digest, "fv": None}, ts, s, h))
        elif instruction == PROPAGATE_NULL:
            out.append((left_key, {"hash": digest, "fv": None if found is None else found[0]},
                        ts, s, h))
        elif instruction == PROPAGATE_ONLY and found is not None:
            out.append((left_key, {"hash": digest, "fv": found[0]}, ts, s, h))

    def _right_update(self, r: Any, out: Batch) -> None:
        fk, ch, t, s, h = r
        if fk is None or (self.versioned and not _in_order(ch)):
            self.dropped += 1
            return
        new = ch[0]
        if new is None:
            self.right.delete(fk)
        else:
            self.right.put(fk, [new, t])
        for left_key, digest in self.subs.subscribers(fk):
            out.append((left_key, {"hash": digest, "fv": new}, t, s, h))


# -- left side: the join -----------------------------------------------------------------------
class ForeignKeyJoinOp(Operator):
    """``ResponseJoinProcessorSupplier``: port 0 follows the left table (``left``: left key ->
    ``[value, hash]``), port 1 joins the answers that are not stale; forwards
    ``Change(result, previous result)`` (``results``: left key -> result)."""

    def __init__(self, name: str, defined_at: str, how: str,
                 combine: Callable[[Any, Any], Any], left: TableStore,
                 results: TableStore) -> None:
        self.name = name
        self.defined_at = defined_at
        self.inner = how == "inner"
        self.combine = combine
        self.left = left
        self.results = results
        self.stores = [left, results]
        self.dropped = 0
        self.side = []

    def process(self, batch: Batch, port: int) -> Batch:
        if port == 0:
            left = self.left
            for k, ch, _t, _s, _h in batch:
                if k is None or not _in_order(ch):
                    continue  # (the table's latest value stays; Subscribe counted it)
                new = ch[0]
                if new is None:
                    left.delete(k)
                else:
                    left.put(k, [new, value_hash(new)])
            return []
        out: Batch = []
        for r in batch:
            k, answer, t, s, h = r
            current = self.left.data.get(k)
            if answer["hash"] != (None if current is None else current[1]):
                self.dropped += 1  # stale: the left row changed since it subscribed
                continue
            fv = answer["fv"]
            if fv is None and (self.inner or current is None):
                result = None
            else:
                try:
                    result = self.combine(None if current is None else current[0], fv)
                except Exception as exc:
                    raise StepFailure(self.name, self.defined_at, r, exc) from exc
            previous = self.results.data.get(k)
            if result is None:
                self.results.delete(k)
            else:
                self.results.put(k, result)
            out.append((k, _tuple_new(Change, (result, previous)), t, s, h))
        return out


# -- factories ---------------------------------------------------------------------------------
def _store(plan_node: PlanNode, ctx: OpContext, suffix: str, cls: Any = TableStore) -> Any:
    name = f"{plan_node.name}-{suffix}"
    return cls(name, _store_changelog(ctx, name))


def _subscribe(plan_node: PlanNode, ctx: OpContext) -> Operator:
    node = plan_node.node
    assert node is not None
    params = node.params
    return SubscribeOp(plan_node.name, node.defined_at, params["how"], params["on"],
                       bool(params.get("versioned")))


def _subscriptions(plan_node: PlanNode, ctx: OpContext) -> Operator:
    node = plan_node.node
    assert node is not None
    return SubscriptionsOp(plan_node.name, node.defined_at,
                           _store(plan_node, ctx, "store", SubscriptionStore),
                           _store(plan_node, ctx, "right"),
                           bool(node.params.get("versioned")))


def _join(plan_node: PlanNode, ctx: OpContext) -> Operator:
    node = plan_node.node
    assert node is not None
    params = node.params
    return ForeignKeyJoinOp(plan_node.name, node.defined_at, params.get("how", "inner"),
                            params.get("combine") or default_combine,
                            _store(plan_node, ctx, "left"), _store(plan_node, ctx, "results"))


OPERATOR_FACTORIES["fk_subscribe"] = _subscribe
OPERATOR_FACTORIES["fk_subscriptions"] = _subscriptions
OPERATOR_FACTORIES["join_foreign_key"] = _join
