"""Which serdes each topic of a plan uses, and the per-topic encode/decode hook the engine and
the drivers share.

**At compile time** (:func:`plan_serdes`) every topic of a plan gets a key serde, a value serde
(``None``: the driver's default) and, for windowed keys, the window they carry. The rules are
Kafka Streams' serde inheritance:

* a source or table topic has the serdes given to ``p.source``/``p.table``;
* a step passes its input's key serde on unless it re-keys (``key_by``, ``group_by``,
  ``map``/``process`` with records); it passes its input's value serde on only when it keeps
  the values (``filter``, ``peek``, ``merge``, ``key_by``, ``group_by``, ``to_table``, table
  filters);
* a sink uses the serdes given to ``to()``, else what reaches it;
* a repartition topic uses what reaches it, except that its key serde is the one of the source
  topics it is co-partitioned with (the sub-topology that reads it), so that a key lands in the
  same partition number on both sides of a join;
* a changelog uses the key serde of the keys its store holds; its values are workbench's store
  format and always JSON. Changelogs of windowed stores keep JSON keys too (they hold
  workbench's emit-on-close marker beside the windows);
* windowed results of a topic whose key serde is not JSON are written in Kafka Streams'
  ``TimeWindowedSerde``/``SessionWindowedSerde`` layouts.

**At run time** :class:`TopicCodecs` binds them (:meth:`~workbench.serde.base.Serde.for_topic`)
with the driver's defaults, checks that co-partitioned topics agree on their key serde, hands
them to the driver (``Driver.use_serdes``), partitions by them, and, for drivers that keep
Python objects instead of bytes, sends records of typed topics through their serdes once, so
that every driver holds what a Kafka reader would read back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import DefinitionError, SerializationError
from .base import Serde, TopicSerdes
from .text import JsonSerde
from .windowed import SessionWindowedSerde, TimeWindowedSerde

if TYPE_CHECKING:
    from ..plan import PlanNode, SubTopology, TopicSpec

__all__ = ["TopicCodecs", "codecs_for", "plan_serdes", "same_bytes", "source_topics"]

#: steps that keep their input's values (so its value serde)
_KEEP_VALUES = frozenset({
    "filter", "peek", "merge", "key_by", "group_by", "to_table", "table_filter", "sink",
    "repartition_sink", "repartition_source", "branch", "table_changes", "capture",
    "topic_sink", "repartition", "suppress", "table_group_by",
})
#: steps whose outputs are table updates
_TABLE_OUT = frozenset({"table_source", "aggregate", "to_table", "join_table_table",
                        "join_foreign_key"})
#: a window: ("time", size ms) or ("session", 0)
Window = tuple[str, int]
Flow = tuple[Any, Any, "Window | None"]
_NOTHING: Flow = (None, None, None)


def same_bytes(a: Serde | None, b: Serde | None) -> bool:
    """Whether two key serdes write the same bytes for the same key (as far as can be told)."""
    if a is b:
        return True
    if a is None or b is None:
        return False
    return type(a) is type(b) and repr(a) == repr(b)


def _window_of(node: Any) -> Window | None:
    spec = node.params.get("window") if node is not None else None
    if spec is None:
        return None
    kind = type(spec).__name__
    if kind == "Session":
        return ("session", 0)
    if kind == "Sliding":
        return ("time", int(spec.difference))
    return ("time", int(spec.size))


def _common(values: list[Any]) -> Any:
    first = values[0] if values else None
    return first if all(same_bytes(v, first) for v in values[1:]) else None


def _updates(ops: list[str]) -> bool:
    """Whether steps of these ops emit table updates (``Change(new, old)``)."""
    return any(op in _TABLE_OUT or (op.startswith("table_") and op != "table_changes")
               for op in ops)


def _flow(pn: PlanNode, parents: list[Flow], topics: dict[str, TopicSpec],
          parent_ops: list[str]) -> Flow:
    """The (key serde, value serde, window) of the records ``pn`` emits (``parent_ops``: the
    ops of its parents)."""
    node, op = pn.node, pn.op
    if op in ("source", "table_source"):
        assert node is not None
        return node.params.get("key_serde"), node.params.get("value_serde"), None
    if op == "repartition_source":
        spec = topics[pn.topic] if pn.topic is not None else None
        return (spec.key_serde, spec.value_serde, None) if spec is not None else _NOTHING
    if not parents:
        return _NOTHING
    if op == "late":  # the aggregation's input records: its key, its input's values
        return parents[0][0], None, None
    rekeys = node is not None and node.key_changed and not node.inherits_key
    key = None if rekeys else _common([p[0] for p in parents])
    window = None if rekeys else _common([p[2] for p in parents])
    if op == "aggregate":
        window = _window_of(node)
    value = _common([p[1] for p in parents]) if op in _KEEP_VALUES else None
    if op == "repartition_sink" and pn.parents and _updates(parent_ops):
        value = None  # table updates (new, old) in workbench's own form: the default serde
    if op == "sink" and node is not None:
        key = node.params.get("key_serde") or key
        value = node.params.get("value_serde") or value
    return key, value, window


def plan_serdes(subtopologies: Iterable[SubTopology],
                topics: dict[str, TopicSpec]) -> dict[str, TopicSpec]:
    """``topics`` with the serdes (and key windows) of every topic filled in."""
    sts = list(subtopologies)
    out = dict(topics)
    # key serdes of the source topics each sub-topology reads (its partition partners)
    partners: dict[int, Serde | None] = {}
    for st in sts:
        explicit = [pn.node.params.get("key_serde") for pn in st.nodes
                    if pn.op in ("source", "table_source") and pn.node is not None]
        explicit = [s for s in explicit if s is not None]
        partners[st.id] = _common(explicit) if explicit else None
    readers = {t: st.id for st in sts for t in st.inputs}
    for st in sts:
        for pn in st.nodes:
            if pn.op in ("source", "table_source") and pn.node is not None and pn.topic:
                out[pn.topic] = dataclasses.replace(
                    out[pn.topic], key_serde=pn.node.params.get("key_serde"),
                    value_serde=pn.node.params.get("value_serde"))
    resolved: set[str] = set()
    pending = list(sts)
    for _ in range(len(sts) + 1):
        if not pending:
            break
        for st in list(pending):
            needs = [t for t in st.inputs if out[t].kind == "repartition" and t not in
                     st.outputs]
            if any(t not in resolved for t in needs) and len(pending) > 1:
                continue
            flows: dict[int, Flow] = {}
            for pn in st.nodes:
                parents = [flows[i] for i in pn.parents if i in flows]
                ops = [st.nodes[i].op for i in pn.parents]
                flows[pn.index] = flow = _flow(pn, parents, out, ops)
                topic = pn.topic
                if topic is None:
                    if pn.op == "topic_sink" and pn.node is not None:  # its declared topics
                        params = pn.node.params
                        for t in params.get("topics") or ():
                            out[t] = dataclasses.replace(
                                out[t], key_serde=params.get("key_serde") or flow[0],
                                value_serde=params.get("value_serde") or flow[1],
                                key_window=flow[2])
                    continue
                if pn.op == "sink":
                    out[topic] = dataclasses.replace(out[topic], key_serde=flow[0],
                                                     value_serde=flow[1], key_window=flow[2])
                elif pn.op == "repartition_sink":
                    key = flow[0]
                    partner = partners.get(readers.get(topic, -1))
                    if partner is not None:
                        key = partner
                    out[topic] = dataclasses.replace(out[topic], key_serde=key,
                                                     value_serde=flow[1])
                    resolved.add(topic)
            for store in st.stores:
                if store.shared:
                    continue
                owner = next((pn for pn in st.nodes if pn.name == store.step), None)
                inputs = [flows[i] for i in owner.parents if i in flows] if owner else []
                key = _common([f[0] for f in inputs]) if inputs else None
                windowed = store.kind != "kv"
                out[store.changelog] = dataclasses.replace(
                    out[store.changelog], key_serde=JsonSerde() if windowed else key,
                    value_serde=JsonSerde(), key_window=None)
            pending.remove(st)
    return out


class TopicCodecs:
    """The bound serdes of every topic of a run (see the module docstring).

    Args:
        topics: the plan's topics.
        default_key, default_value: the driver's default serdes.
    """

    def __init__(self, topics: dict[str, TopicSpec], default_key: Serde,
                 default_value: Serde) -> None:
        self.default_key = default_key
        self.default_value = default_value
        self.by_topic: dict[str, TopicSerdes] = {}
        self._partitioners: dict[str, Any] = {}
        self._fixers: dict[tuple[str, bool], Any] = {}
        for name, spec in topics.items():
            self.by_topic[name] = bind(spec, default_key, default_value)

    def partitioner(self, topic: str) -> Any:
        """The :class:`~workbench.partitioning.KeyPartitioner` of ``topic``: murmur2 of the
        key serde's bytes (of the inner key, for windowed keys)."""
        found = self._partitioners.get(topic)
        if found is None:
            from ..partitioning import KeyPartitioner

            found = self._partitioners[topic] = KeyPartitioner(
                _inner(self.serdes(topic).key).serialize)
        return found

    def serdes(self, topic: str) -> TopicSerdes:
        """The serdes of ``topic`` (the defaults for a topic the plan does not know)."""
        found = self.by_topic.get(topic)
        if found is None:
            found = self.by_topic[topic] = TopicSerdes(topic, self.default_key,
                                                       self.default_value, default=True)
        return found

    def typed(self, topic: str) -> bool:
        """True when ``topic`` has serdes other than the defaults."""
        found = self.by_topic.get(topic)
        return found is not None and not found.default

    def check_copartitioned(self, groups: Iterable[tuple[str, ...]],
                            counts: dict[str, int]) -> None:
        """Topics read together by one task (same partition number) must partition keys
        alike: their key serdes must write the same bytes."""
        for inputs in groups:
            real = [t for t in inputs if counts.get(t, 1) > 1]
            if len(real) < 2:
                continue
            first = self.serdes(real[0]).key
            for other in real[1:]:
                serde = self.serdes(other).key
                if not same_bytes(_inner(first), _inner(serde)):
                    raise DefinitionError(
                        f"topics {real[0]!r} and {other!r} are read together (co-partitioned) "
                        f"but their keys are written with different serdes ({first!r} and "
                        f"{serde!r}): the same key would be in different partitions and "
                        "joins would miss it. Give both the same key serde.")

    def normalize(self, topic: str, records: list[Any]) -> list[Any]:
        """Records of a typed topic as a reader of its bytes sees them: each key and value
        through its serde and back (drivers that keep Python objects call this on what they
        store). The round trip needs no network: Schema Registry serdes use their own schema
        (one without a schema takes its subject's latest once; when there is none, or the
        registry does not answer, values pass as they are, with a warning). Raises
        :class:`SerializationError` naming the topic."""
        serdes = self.serdes(topic)
        if serdes.default:
            return records
        kfix, vfix = self._fixer(topic, serdes.key, True), self._fixer(topic, serdes.value,
                                                                        False)
        out = []
        for rec in records:
            key, value = rec[0], rec[1]
            try:
                k = kfix(key) if key is not None else None
                v = vfix(value) if value is not None else None
            except SerializationError as exc:
                raise SerializationError(f"cannot write a record with key {key!r} to topic "
                                         f"{topic!r}: {exc}") from None
            out.append((k, v, *rec[2:]))
        return out

    def _fixer(self, topic: str, serde: Serde, is_key: bool) -> Any:
        cache = self._fixers
        found = cache.get((topic, is_key))
        if found is not None:
            return found
        check = serde.check
        if not serde.offline:
            from ..errors import DriverUnavailableError

            try:
                serde.writer_id()  # type: ignore[attr-defined]  # adopts the latest schema
            except (SerializationError, DriverUnavailableError) as exc:
                import warnings

                warnings.warn(f"topic {topic!r}: its {'key' if is_key else 'value'}s are kept "
                              f"as they are, not sent through {serde!r}: {exc}", stacklevel=3)
                cache[(topic, is_key)] = _same
                return _same

        def round_trip(obj: Any) -> Any:
            return check(obj, topic=topic, is_key=is_key)
        cache[(topic, is_key)] = round_trip
        return round_trip


def _same(obj: Any) -> Any:
    return obj


def source_topics(sources: dict[str, Any]) -> dict[str, TopicSpec]:
    """The topic specs (with serdes) of a pipeline's source steps ``{topic: node}``."""
    from ..plan import TopicSpec

    return {t: TopicSpec(t, "source", key_serde=n.params.get("key_serde"),
                         value_serde=n.params.get("value_serde"))
            for t, n in sources.items()}


def codecs_for(topics: dict[str, TopicSpec], driver: Any) -> TopicCodecs:
    """The codecs of a plan's ``topics`` on ``driver`` (its default serdes: the driver's
    ``key_serde``/``value_serde`` attributes, else JSON), handed to the driver."""
    from . import get_serde

    key = getattr(driver, "key_serde", None)
    value = getattr(driver, "value_serde", None)
    codecs = TopicCodecs(topics, get_serde(key) if key is not None else JsonSerde(),
                         get_serde(value) if value is not None else JsonSerde())
    use = getattr(driver, "use_serdes", None)
    if use is not None:
        use(codecs)
    return codecs


def _inner(serde: Serde) -> Serde:
    return getattr(serde, "inner", serde)


def bind(spec: TopicSpec, default_key: Serde, default_value: Serde) -> TopicSerdes:
    """The bound serdes of one topic: its own or the defaults, windowed keys wrapped."""
    key = spec.key_serde if spec.key_serde is not None else default_key
    value = spec.value_serde if spec.value_serde is not None else default_value
    window = spec.key_window
    wrapped = window is not None and not isinstance(key, JsonSerde)
    if wrapped:
        assert window is not None
        key = SessionWindowedSerde(key) if window[0] == "session" else \
            TimeWindowedSerde(key, window[1])
    default = spec.key_serde is None and spec.value_serde is None and not wrapped
    topic = spec.name
    return TopicSerdes(topic, key.for_topic(topic, is_key=True),
                       value.for_topic(topic, is_key=False), default=default)
