"""Compile a pipeline graph into a :class:`Plan` (pure data, read by the engine and by display).

A plan splits the graph into **sub-topologies** at repartition points: a re-keyed stream that
feeds a stateful step is written to an internal repartition topic
``<app>-<step>-repartition`` and read back by the next sub-topology, so that all records of a key
reach the same task. Each sub-topology runs as one **task per partition** of its input topics.
Stateful steps declare **stores**, each backed by a changelog topic ``<app>-<store>-changelog``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._nodes import Node
from .errors import DefinitionError

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = ["GlobalTableSpec", "Plan", "PlanNode", "StoreSpec", "SubTopology", "TopicSpec",
           "compile_plan"]

SOURCE_KINDS = ("source", "table_source")
#: a table replicated to every task: read by no sub-topology, but by the engine for all of them
GLOBAL_TABLE = "global_table"


@dataclass(frozen=True)
class TopicSpec:
    """A topic the plan reads or writes.

    ``kind`` is ``"source"``, ``"global"`` (the topic of a global table, read whole by every
    process), ``"sink"``, ``"repartition"``, ``"changelog"`` or ``"preview"``;
    ``partitions`` is the requested count (``None``: the driver's default or the count of the
    sub-topology's inputs). ``compact`` marks changelogs and table sinks (``Table.to``), which
    drivers may keep as upserted tables.

    ``key_serde``/``value_serde`` are the topic's serdes (``None``: the driver's default) and
    ``key_window`` the window of windowed keys (``("time", size_ms)`` or ``("session", 0)``);
    :func:`workbench.serde.topics.plan_serdes` fills them in.
    """

    name: str
    kind: str
    partitions: int | None = None
    compact: bool = False
    #: the grouping field that the records' keys hold, for DataFrame column names
    key_name: str | None = None
    key_serde: Any = field(default=None, compare=False)
    value_serde: Any = field(default=None, compare=False)
    key_window: tuple[str, int] | None = None
    #: a repartition topic with as many partitions as the sub-topology that reads it (it is
    #: created by its reader), whatever its writer's count
    copartition: bool = False


@dataclass(frozen=True)
class StoreSpec:
    """A named state store of a stateful step and its changelog topic.

    ``shared``: the store is a copy of another step's store in the same task (a stream-table
    join's view of a source table): it is restored from that store's changelog and writes
    none of its own, so the table's data is stored once.
    """

    name: str
    kind: str
    changelog: str
    step: str
    shared: bool = False


@dataclass(frozen=True)
class PlanNode:
    """One operator slot in a sub-topology.

    ``op`` is the definition node's op, or one of the synthetic ``"repartition_sink"``,
    ``"repartition_source"``, ``"capture"``. ``children`` lists ``(child index, input port,
    output)``: output 0 is the main output, 1 the side output (``late``).
    """

    index: int
    op: str
    name: str
    node: Node | None
    topic: str | None
    parents: tuple[int, ...]
    children: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class SubTopology:
    """A connected part of the plan that runs as one task per input partition."""

    id: int
    nodes: tuple[PlanNode, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    stores: tuple[StoreSpec, ...]

    def input_node(self, topic: str) -> int:
        """Index of the node that reads ``topic``."""
        for n in self.nodes:
            if n.topic == topic and n.op in (*SOURCE_KINDS, "repartition_source"):
                return n.index
        raise KeyError(topic)


@dataclass(frozen=True)
class GlobalTableSpec:
    """A global table: step ``name`` reads every partition of ``topic`` in every process."""

    name: str
    topic: str
    node: Node


@dataclass(frozen=True)
class Plan:
    """The compiled pipeline."""

    app_id: str
    subtopologies: tuple[SubTopology, ...]
    topics: dict[str, TopicSpec] = field(default_factory=dict)
    captures: dict[str, str] = field(default_factory=dict)
    #: the global tables the steps read (not part of any sub-topology)
    global_tables: tuple[GlobalTableSpec, ...] = ()

    @property
    def stores(self) -> list[StoreSpec]:
        """Every state store of every sub-topology."""
        return [s for st in self.subtopologies for s in st.stores]

    def describe(self) -> str:
        """A readable text form of the plan, like Kafka Streams' ``Topology.describe()``."""
        lines = [f"Plan {self.app_id!r}:"]
        for g in self.global_tables:
            lines.append(f"  Global table {g.name}: topic {g.topic!r} (every partition)")
        for st in self.subtopologies:
            lines.append(f"  Sub-topology {st.id}: inputs {list(st.inputs)}")
            for n in st.nodes:
                kids = ", ".join(st.nodes[c].name for c, _p, _o in n.children)
                topic = f" [{n.topic}]" if n.topic else ""
                lines.append(f"    {n.op}: {n.name}{topic}" + (f" --> {kids}" if kids else ""))
            for s in st.stores:
                lines.append(f"    store {s.name} ({s.kind}) changelog {s.changelog}")
        return "\n".join(lines)


def repartition_topic(app_id: str, step: str) -> str:
    """Name of the repartition topic in front of stateful step ``step`` (Kafka Streams style)."""
    return f"{app_id}-{step}-repartition"


def changelog_topic(app_id: str, store: str) -> str:
    """Name of the changelog topic of store ``store``."""
    return f"{app_id}-{store}-changelog"


def _ancestors(targets: Iterable[Node]) -> set[Node]:
    seen: set[Node] = set()
    stack = list(targets)
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.parents)
    return seen


def _needs_repartition(node: Node, parent: Node) -> bool:
    if node.op == "repartition":
        return True
    return bool(node.stateful and parent.key_changed and node.params.get("repartition", True))


def _rtopic(app: str, node: Node, port: int) -> str:
    """The repartition topic in front of input ``port`` of ``node`` (a step may name it:
    ``params["repartition_topics"]``, e.g. a foreign-key join's subscription topics)."""
    named = node.params.get("repartition_topics", {}).get(port)
    if named is not None:
        return repartition_topic(app, named)
    return repartition_topic(app, node.name if len(node.parents) == 1
                             else f"{node.name}-{port}")


def _key_name(node: Node) -> str | None:
    """The field name the keys of ``node``'s records come from, when a grouping named it."""
    if node.op in ("aggregate", "table_changes"):
        name = node.params.get("key_name")
        return name if isinstance(name, str) else None
    if node.op in ("table_filter", "table_map_values", "suppress") and node.parents:
        return _key_name(node.parents[0])
    return None


def _output_of(child: Node) -> int:
    return int(child.params.get("output", 0)) if child.op in ("late", "errors") else 0


def node_stores(app_id: str, node: Node) -> list[StoreSpec]:
    """The state stores a stateful step declares (``params["stores"]``: ``[(suffix, kind)]``)."""
    stores = []
    for suffix, kind in node.params.get("stores", ()):
        name = f"{node.name}-{suffix}" if suffix else node.name
        stores.append(StoreSpec(name, kind, changelog_topic(app_id, name), node.name))
    return stores


def compile_plan(
    pipeline: Pipeline, targets: Sequence[Node] | None = None
) -> Plan:
    """Compile ``pipeline``: the steps a run needs (``Pipeline._live_nodes``); with
    ``targets``, only their ancestors plus a capture of each target (used by previews)."""
    all_nodes: list[Node] = list(pipeline._nodes)
    if targets is not None:
        keep = _ancestors(targets)
        nodes = [n for n in all_nodes if n in keep]
    else:
        nodes = pipeline._live_nodes()  # steps no output needs are previews only
    if not any(n.op in SOURCE_KINDS for n in nodes):
        raise DefinitionError(
            f"pipeline {pipeline.name!r} has no source; add one with p.source(topic, ...)."
        )
    if targets is None and not any(n.op == "sink" for n in nodes):
        pass  # a pipeline without sinks still runs (peek, tables); nothing is written
    globals_ = [n for n in nodes if n.op == GLOBAL_TABLE]
    nodes = [n for n in nodes if n.op != GLOBAL_TABLE]
    node_set = set(nodes)
    app = pipeline.name

    # children within the selected graph, in creation order
    children: dict[Node, list[Node]] = {n: [] for n in nodes}
    for n in nodes:
        for p in n.parents:
            if p in node_set:
                children[p].append(n)

    # union-find over non-repartition edges gives the sub-topologies
    parent_of: dict[Node, Node] = {n: n for n in nodes}

    def find(x: Node) -> Node:
        while parent_of[x] is not x:
            parent_of[x] = parent_of[parent_of[x]]
            x = parent_of[x]
        return x

    for n in nodes:
        for p in n.parents:
            if p in node_set and not _needs_repartition(n, p):
                ra, rb = find(n), find(p)
                if ra is not rb:
                    if ra.id < rb.id:
                        parent_of[rb] = ra
                    else:
                        parent_of[ra] = rb
    groups: dict[Node, list[Node]] = {}
    for n in nodes:
        groups.setdefault(find(n), []).append(n)

    topics: dict[str, TopicSpec] = {}
    captures: dict[str, str] = {}
    subtopologies: list[SubTopology] = []
    ordered = sorted(groups.values(), key=lambda g: min(x.id for x in g))
    for st_id, members in enumerate(ordered):
        members.sort(key=lambda x: x.id)
        slots: list[dict[str, Any]] = []
        index_of: dict[Node, int] = {}

        def add_slot(op: str, name: str, node: Node | None, topic: str | None,
                     slots: list[dict[str, Any]] = slots) -> int:
            slots.append({"op": op, "name": name, "node": node, "topic": topic,
                          "parents": [], "children": []})
            return len(slots) - 1

        for n in members:
            # repartitioned inputs get a synthetic source in front of the node
            in_ports: list[tuple[int, int]] = []
            for port, p in enumerate(n.parents):
                if p not in node_set:
                    continue
                if _needs_repartition(n, p):
                    rtopic = _rtopic(app, n, port)
                    # copartition: the topic takes the partition count of the sub-topology
                    # that reads it (a foreign-key join's topics go both ways between the
                    # left and right tables' sub-topologies); repartition(partitions=n): n
                    topics[rtopic] = TopicSpec(
                        rtopic, "repartition",
                        n.params.get("partitions") if n.op == "repartition" else None,
                        copartition=bool(n.params.get("copartition")))
                    src = add_slot("repartition_source", f"{n.name}-repartition-source"
                                   + (f"-{port}" if len(n.parents) > 1 else ""), None, rtopic)
                    in_ports.append((src, port))
                else:
                    in_ports.append((index_of[p], port))
            topic: str | None = None
            if n.op in SOURCE_KINDS:
                spec = n.params["spec"]
                topic = spec.topic
                topics[topic] = TopicSpec(topic, "source", spec.partitions)
            elif n.op == "sink":
                topic = n.params["topic"]
                topics[topic] = TopicSpec(topic, "sink", n.params.get("partitions"),
                                          compact=n.parents[0].op == "table_changes",
                                          key_name=_key_name(n.parents[0]))
            elif n.op == "topic_sink":  # to(topic function): the topics it declares
                for declared in n.params.get("topics") or ():
                    topics[declared] = TopicSpec(declared, "sink", n.params.get("partitions"),
                                                 key_name=_key_name(n.parents[0]))
            idx = add_slot(n.op, n.name, n, topic)
            index_of[n] = idx
            for src, port in in_ports:
                out = _output_of(n) if slots[src]["node"] is not None else 0
                slots[src]["children"].append((idx, port, out))
                slots[idx]["parents"].append(src)
            # downstream repartition: a sink slot writing the repartition topic
            for c in children[n]:
                if _needs_repartition(c, n):
                    port = c.parents.index(n)
                    rtopic = _rtopic(app, c, port)
                    rs = add_slot("repartition_sink", f"{c.name}-repartition-sink"
                                  + (f"-{port}" if len(c.parents) > 1 else ""), None, rtopic)
                    slots[idx]["children"].append((rs, 0, _output_of(c)))
                    slots[rs]["parents"].append(idx)
            if targets is not None and n in targets:
                ctopic = f"{app}-{n.name}-preview"
                topics[ctopic] = TopicSpec(ctopic, "preview")
                captures[n.name] = ctopic
                cs = add_slot("capture", f"{n.name}-capture", n, ctopic)
                slots[idx]["children"].append((cs, 0, 0))
                slots[cs]["parents"].append(idx)
        # order slots topologically (repartition sources were appended before their consumer)
        order = _topo_order(slots)
        remap = {old: new for new, old in enumerate(order)}
        plan_nodes = tuple(
            PlanNode(
                index=remap[old], op=slots[old]["op"], name=slots[old]["name"],
                node=slots[old]["node"], topic=slots[old]["topic"],
                parents=tuple(remap[p] for p in slots[old]["parents"]),
                children=tuple((remap[c], port, out)
                               for c, port, out in slots[old]["children"]),
            )
            for old in order
        )
        inputs = tuple(
            pn.topic for pn in plan_nodes
            if pn.op in (*SOURCE_KINDS, "repartition_source") and pn.topic is not None
        )
        outputs = tuple(
            pn.topic for pn in plan_nodes
            if pn.op in ("sink", "repartition_sink", "capture") and pn.topic is not None
        ) + tuple(t for pn in plan_nodes if pn.op == "topic_sink" and pn.node is not None
                  for t in pn.node.params.get("topics") or ())
        stores: list[StoreSpec] = []
        by_step: dict[str, list[StoreSpec]] = {}
        for pn in plan_nodes:
            if pn.node is not None and pn.op != "capture":
                specs = node_stores(app, pn.node)
                if pn.op == "join_stream_table" and len(pn.parents) == 2:
                    table = plan_nodes[pn.parents[1]]
                    if table.op in ("table_source", "to_table") and by_step.get(table.name):
                        # the join reads the table it is fed by: one copy of the data (its
                        # view of the table; a versioned join's grace buffer is its own)
                        source = by_step[table.name][0]
                        specs = [StoreSpec(s.name, s.kind, source.changelog, s.step, shared=True)
                                 if s.name == f"{pn.name}-table" else s for s in specs]
                by_step[pn.name] = specs
                for s in specs:
                    stores.append(s)
                    if not s.shared:
                        topics[s.changelog] = TopicSpec(s.changelog, "changelog", compact=True)
        subtopologies.append(SubTopology(st_id, plan_nodes, inputs, outputs, tuple(stores)))
    _check_internal_names(subtopologies)
    from .serde.topics import plan_serdes

    topics = plan_serdes(subtopologies, topics)
    global_specs = []
    for g in globals_:
        spec = g.params["spec"]
        topics[spec.topic] = TopicSpec(spec.topic, "global", spec.partitions,
                                       key_serde=g.params.get("key_serde"),
                                       value_serde=g.params.get("value_serde"))
        global_specs.append(GlobalTableSpec(g.name, spec.topic, g))
    return Plan(app, tuple(subtopologies), topics, captures, tuple(global_specs))


def _check_internal_names(subtopologies: list[SubTopology]) -> None:
    """Two steps whose names make the same internal topic (``a-b`` + store ``c`` and ``a`` +
    store ``b-c``; a step ``j-0`` and port 0 of a join ``j``) would share state: refuse."""
    owners: dict[str, str] = {}
    for st in subtopologies:
        for pn in st.nodes:
            if pn.op == "repartition_sink" and pn.topic is not None:
                who = pn.name.removesuffix("-repartition-sink")
                _claim(owners, pn.topic, f"the repartition topic in front of {who!r}")
        for s in st.stores:
            if not s.shared:
                _claim(owners, s.changelog, f"store {s.name!r} of step {s.step!r}")


def _claim(owners: dict[str, str], topic: str, what: str) -> None:
    other = owners.setdefault(topic, what)
    if other != what:
        raise DefinitionError(
            f"internal topic {topic!r} would serve both {other} and {what}; rename one of "
            "the steps (name=...) so their internal topics differ."
        )


def _topo_order(slots: list[dict[str, Any]]) -> list[int]:
    indegree = [len(s["parents"]) for s in slots]
    ready = [i for i, d in enumerate(indegree) if d == 0]
    order: list[int] = []
    while ready:
        ready.sort()
        i = ready.pop(0)
        order.append(i)
        for c, _p, _o in slots[i]["children"]:
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    if len(order) != len(slots):
        raise DefinitionError("the pipeline graph has a cycle.")
    return order
