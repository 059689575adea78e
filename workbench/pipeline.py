"""``Pipeline``: a named graph of steps, the unit that is previewed, drawn, run and promoted.

>>> import workbench as wb
>>> p = wb.Pipeline("demo")
>>> s = p.source("in", key="k", time="t", sample=[{"k": "a", "t": 1, "x": 2}])
>>> _ = s.map(lambda v: {**v, "y": v["x"] * 10}).to("out")
>>> p.run("memory://").records("out")
[Record(key='a', value={'k': 'a', 't': 1, 'x': 2, 'y': 20}, timestamp=1, headers=None)]
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._checks import check_partitions
from ._nodes import Node, caller_site, current_execution
from ._tracebacks import public
from .errors import DefinitionError, did_you_mean
from .samples import SourceSpec, normalize_sample
from .stream import Stream

if TYPE_CHECKING:
    from .display.live import LiveRun
    from .drivers.base import Driver
    from .global_table import GlobalTable
    from .plan import Plan
    from .run import Run
    from .table import Table

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
#: endings of the topics workbench creates itself (``<app>-<step>-repartition``,
#: ``<app>-<store>-changelog``, ``<app>-<step>-preview``)
INTERNAL_SUFFIXES = ("-repartition", "-changelog", "-preview")


def check_topic_name(topic: object, where: str) -> None:
    """Topic names follow Kafka's rule: 1-249 of ``[A-Za-z0-9._-]``."""
    if not isinstance(topic, str) or not _TOPIC.match(topic) or topic in (".", ".."):
        raise DefinitionError(
            f"{where}: {topic!r} is not a valid topic name; use 1-249 letters, digits, '.', "
            "'_' and '-' (the rule Kafka enforces)."
        )


_KIND = {
    "source": "source", "table_source": "table source", "filter": "filter", "map": "map",
    "flat_map": "flat_map", "key_by": "key_by", "peek": "peek", "split": "split",
    "branch": "split branch", "merge": "merge", "sink": "sink (to)", "group_by": "group_by",
    "aggregate": "aggregation", "to_table": "to_table", "table_changes": "changes()",
    "table_filter": "table filter", "table_map_values": "map_values",
    "join_stream_table": "stream-table join", "join_stream_stream": "stream-stream join",
    "join_table_table": "table-table join", "join_foreign_key": "foreign-key join",
    "late": "late output", "process": "process step", "map_async": "map_async",
    "flat_map_async": "flat_map_async", "pipe": "pipe", "errors": "errors output",
    "table_group_by": "table group_by", "suppress": "suppress", "repartition": "repartition",
    "foreach": "foreach", "print": "print", "topic_sink": "sink (to a topic function)",
    "global_table": "global table", "join_global": "global-table join",
    "fk_subscribe": "foreign-key subscription", "fk_subscriptions": "foreign-key subscriptions",
}

_TABLE_OPS = ("table_source", "aggregate", "to_table", "table_filter", "table_map_values",
              "join_table_table", "join_foreign_key", "suppress")


def _describe(node: Node) -> str:
    kind = _KIND.get(node.op, node.op)
    reads = ", ".join(repr(p.name) for p in node.parents)
    article = "an" if kind[0] in "aeiou" else "a"
    return f"{article} {kind}" + (f" reading {reads}" if reads else "")


def _distinguishing(node: Node) -> Any:
    """What tells two unnamed steps of one kind apart without comparing functions."""
    params = node.params
    if node.op in ("group_by", "key_by", "table_group_by"):
        return params.get("field")
    if node.op == "branch":
        return params.get("label")
    if node.op == "sink":
        return params.get("topic")
    return None


def _equivalent(a: Node, b: Node) -> bool:
    """``b`` is ``a`` or takes its place: both unnamed steps of the same kind, telling
    features and inputs (what running a cell again creates)."""
    if a is b:
        return True
    if not (a.auto_named and b.auto_named) or a.op != b.op or a.name == b.name:
        return False
    if _distinguishing(a) != _distinguishing(b) or len(a.parents) != len(b.parents):
        return False
    return all(_equivalent(x, y) for x, y in zip(a.parents, b.parents, strict=True))


class Pipeline:
    """A stream-processing pipeline: sources, steps and sinks.

    Args:
        name: the application id. State stores, internal topics and committed positions are named
            after it, so two runs with the same name share progress on a persistent driver.
        keys: the key store (``wb.KeyStore``) that encrypts personal fields (sources'
            ``personal=``) per data subject; see ``docs/privacy.md``.
    """

    def __init__(self, name: str, *, keys: Any = None) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise DefinitionError(
                f"pipeline name {name!r} must start with a letter or digit and contain only "
                "letters, digits, '.', '_' and '-' (it names topics and tables)."
            )
        self.name = name
        self._nodes: list[Node] = []
        self._node_set: set[Node] = set()
        self._names: dict[str, Node] = {}
        #: changes with every step added or replaced (for caches of whole-pipeline work)
        self._version = 0
        self._sources: dict[str, Node] = {}
        self._sinks: dict[str, str] = {}
        self._counters: dict[str, int] = {}
        self.keys = keys

    # -- building -------------------------------------------------------------------------------
    def source(
        self,
        topic: str,
        *,
        key: Any = None,
        time: str | Callable[[Any], Any] | None = None,
        sample: Any = None,
        partitions: int | None = None,
        name: str | None = None,
        personal: Any = None,
        value: Any = None,
    ) -> Stream:
        """A stream read from ``topic``.

        Args:
            topic: the topic (Kafka topic, PostgreSQL log table, folder in git) to read.
            key: field name or function giving a record's key when workbench writes records into
                the topic (samples and ``inputs=``); records read from a topic keep their key.
            time: field name or function giving the event time (epoch ms, ``datetime``, pandas
                ``Timestamp`` or ISO string). Applied when reading, like a Kafka Streams
                ``TimestampExtractor``; without it the record's own timestamp is used.
            sample: example data for previews and ``memory://`` runs: a DataFrame, a list of
                dicts, or a path to a CSV or JSON-lines file.
            partitions: partition count when the driver creates the topic (default 1).
            name: the step's name (default: the topic).
            personal: ``wb.Personal(subject=..., fields=[...])``: the personal fields,
                encrypted per subject outside the process (needs ``Pipeline(keys=...)``).
            value: the topic's value serde (``wb.serde.avro(schema, registry=sr)``, ...;
                default: the driver's). ``key=`` takes the key serde the same way, alone
                (``key=wb.serde.string()``) or with the key field (``key=("id",
                wb.serde.long())``). A sample is checked against the value serde's schema
                now, and previews show it as a reader of the topic would read it back.
        """
        return Stream(self, self._source_node("source", topic, key=key, time=time,
                                              sample=sample, partitions=partitions, name=name,
                                              personal=personal, value=value))

    def _source_node(self, op: str, topic: str, *, key: Any, time: Any, sample: Any,
                     partitions: int | None, name: str | None, personal: Any = None,
                     value: Any = None) -> Node:
        where = {"table_source": "table()", "global_table": "global_table()"}.get(op, "source()")
        # -- serdes (workbench.serde.dsl): key=serde or (field, serde), value=serde
        from .serde.dsl import split_key, value_serde

        key, key_serde = split_key(key, f"{where[:-2]}({topic!r}")
        val_serde = value_serde(value, f"{where[:-2]}({topic!r}")
        check_topic_name(topic, where)
        check_partitions(partitions, f"{where[:-2]}({topic!r})")
        self._check_not_internal(topic, where)
        writer = self._sink_of(topic)
        if writer is not None:
            raise DefinitionError(
                f"{where[:-2]}({topic!r}): topic {topic!r} is written by step {writer.name!r} of "
                f"pipeline {self.name!r} (defined at {writer.defined_at}); reading it back "
                "would feed the pipeline its own output in a loop. Use the stream that writes "
                "it instead of a new source."
            )
        existing = self._sources.get(topic)
        if existing is not None and existing.name != (name or topic):
            raise DefinitionError(
                f"topic {topic!r} is already a source of pipeline {self.name!r} "
                f"(step {existing.name!r}, defined at {existing.defined_at}); reuse that "
                f"{'table' if existing.op == 'table_source' else 'stream'}, or define it again "
                f"under its name {existing.name!r} to replace it."
            )
        for what, spec in (("key", key), ("time", time)):
            if spec is not None and not isinstance(spec, str) and not callable(spec):
                raise DefinitionError(
                    f"{where[:-2]}({topic!r}, {what}=...) must be a field name or a function, "
                    f"got {spec!r}."
                )
        rows, columns = normalize_sample(sample, topic)
        if key_serde is not None and rows:
            from .serde.dsl import check_sample_keys

            check_sample_keys(rows, key, key_serde, topic, f"{where[:-2]}({topic!r})")
        if val_serde is not None and rows:
            from .serde.dsl import check_sample, sample_columns

            rows = check_sample(rows, val_serde, topic, f"{where[:-2]}({topic!r})",
                                skip={f for f in (key, time) if isinstance(f, str)}
                                if op in ("table_source", "global_table") else None)
            columns = sample_columns(rows, columns)
        for what, spec in (("key", key), ("time", time)):
            if isinstance(spec, str) and columns is not None and spec not in columns:
                raise DefinitionError(
                    f"{where[:-2]}({topic!r}, {what}={spec!r}): the sample has no column "
                    f"{spec!r}." + did_you_mean(spec, columns)
                )
        table = op in ("table_source", "global_table")
        spec_obj = SourceSpec(topic=topic, key=key, time=time, sample=rows, columns=columns,
                              partitions=partitions, table=table)
        params: dict[str, Any] = {"spec": spec_obj, "key_serde": key_serde,
                                  "value_serde": val_serde}
        if personal is not None or self.keys is not None:  # workbench/privacy
            from .privacy.hooks import source_params
            params.update(source_params(self.keys, topic, personal, columns))
        if op == "table_source":
            params["stores"] = [("store", "kv")]
        node = self._add_node(op, (), params, name or topic, key_changed=False,
                              stateful=op == "table_source")
        for t, n in list(self._sources.items()):
            if n is node and t != topic:
                del self._sources[t]
        self._sources[topic] = node
        return node

    def table(
        self,
        topic: str,
        *,
        key: Any = None,
        time: str | Callable[[Any], Any] | None = None,
        sample: Any = None,
        partitions: int | None = None,
        name: str | None = None,
        personal: Any = None,
        value: Any = None,
        history: Any = None,
    ) -> Table:
        """A table read from ``topic`` as a changelog: the latest value per key, a ``None``
        value deletes the key (a tombstone). In a DataFrame sample, a row whose fields other
        than the key and time columns are all empty is a tombstone.

        With ``history=`` (``"1h"``, ms, ``timedelta``) the table is **versioned** (Kafka
        Streams' versioned stores): it keeps every version within that much of its stream time,
        a stream joined with it sees the version valid at each stream record's timestamp (also
        when table updates arrive out of order), and table-table joins ignore out-of-order
        updates. See ``docs/semantics.md``.

        Other arguments as for :meth:`source`.
        """
        from ._time import duration_ms
        from .table import Table

        history_ms = None
        if history is not None:
            history_ms = duration_ms(history, f"table({topic!r}, history=...)")
            if history_ms < 1:
                raise DefinitionError(f"table({topic!r}, history={history!r}): the history "
                                      "must be at least 1 ms.")
        node = self._source_node("table_source", topic, key=key, time=time, sample=sample,
                                 partitions=partitions, name=name, personal=personal,
                                 value=value)
        if history_ms is not None:
            node.params["history"] = history_ms
            node.params["stores"] = [("store", "versioned")]
        field = node.params["spec"].key
        return Table(self, node, key_name=field if isinstance(field, str) else None)

    def global_table(
        self,
        topic: str,
        *,
        key: Any = None,
        time: str | Callable[[Any], Any] | None = None,
        sample: Any = None,
        partitions: int | None = None,
        name: str | None = None,
        value: Any = None,
    ) -> GlobalTable:
        """A global table: every partition of ``topic`` read by every task (Kafka Streams'
        ``GlobalKTable``), restored from the topic when a run starts. Join it from a stream on
        any field, without a repartition: ``orders.join(customers, on="customer_id")``; read it
        in a processor with ``process(..., global_stores=[customers])``.

        Arguments as for :meth:`table` (``time=`` only sets the records' timestamps: a global
        table is not versioned).
        """
        from .global_table import GlobalTable

        node = self._source_node("global_table", topic, key=key, time=time, sample=sample,
                                 partitions=partitions, name=name, value=value)
        return GlobalTable(self, node)

    def _auto_name(self, op: str) -> str:
        """The next default name of a step of kind ``op`` (``op-N``), taken now."""
        count = self._counters.get(op, 0) + 1
        while f"{op}-{count}" in self._names:
            count += 1
        self._counters[op] = count
        return f"{op}-{count}"

    def _add_node(
        self,
        op: str,
        parents: tuple[Node, ...],
        params: dict[str, Any],
        name: str | None,
        *,
        key_changed: bool | None = False,
        stateful: bool = False,
        auto_named: bool | None = None,
    ) -> Node:
        """Add a step, or replace the step of that name defined in an earlier cell execution
        (see :mod:`workbench.pipeline`, "Running a cell again"). ``key_changed=None``: the
        records keep the keys their parents had."""
        for parent in parents:
            if parent not in self._node_set:
                raise DefinitionError("a step's input belongs to another pipeline.")
        inherits = key_changed is None
        changed = any(p.key_changed for p in parents) if key_changed is None else key_changed
        if name is None:
            count = self._counters.get(op, 0) + 1
            self._counters[op] = count
            name = f"{op}-{count}"
            while name in self._names:
                count += 1
                self._counters[op] = count
                name = f"{op}-{count}"
            explicit = False
        else:
            if not isinstance(name, str) or not _NAME.match(name):
                raise DefinitionError(
                    f"step name {name!r} must start with a letter or digit and contain only "
                    "letters, digits, '.', '_' and '-'."
                )
            explicit = True
            old = self._names.get(name)
            if old is not None:
                self._check_redefinition(old, op, parents)
                return self._replace(old, parents, params, key_changed=changed,
                                     inherits=inherits, stateful=stateful)
        node = Node(
            id=len(self._nodes), op=op, name=name, parents=parents, params=params,
            defined_at=caller_site(), key_changed=changed, stateful=stateful,
            auto_named=(not explicit) if auto_named is None else auto_named,
            execution=current_execution(), inherits_key=inherits,
        )
        self._nodes.append(node)
        self._node_set.add(node)
        self._names[name] = node
        self._version += 1
        return node

    # -- running a cell again ---------------------------------------------------------------------
    def _check_redefinition(self, old: Node, op: str, parents: tuple[Node, ...]) -> None:
        """Raise unless a step ``op`` on ``parents`` may replace ``old`` (same name): it must
        come from a later cell execution, be of the same kind and read the same input (or an
        unnamed step of the same kind in its place)."""
        now = current_execution()
        what = _describe(old)
        if old.execution is None or old.execution == now:
            if op == "sink":
                raise DefinitionError(
                    f"topic {old.params['topic']!r} is already written by step {old.name!r} "
                    f"(defined at {old.defined_at}); a topic has one writer in a pipeline. "
                    "Merge the streams first (a.merge(b).to(topic)) or write to another topic."
                )
            if old.op in ("source", "table_source", "global_table") and op == old.op:
                raise DefinitionError(
                    f"topic {old.params['spec'].topic!r} is already a source of pipeline "
                    f"{self.name!r} (step {old.name!r}, defined at {old.defined_at}); reuse "
                    "that handle. In a notebook, running its cell again replaces it."
                )
            raise DefinitionError(
                f"duplicate step name {old.name!r} in pipeline {self.name!r}: {what} was "
                f"first defined at {old.defined_at}, in the same "
                f"{'script' if now is None else 'cell'}. Give this step another name "
                f"(name=...). In a notebook, running a cell again replaces its steps."
            )
        if old.op != op:
            raise DefinitionError(
                f"step {old.name!r} of pipeline {self.name!r} is {what} (defined at "
                f"{old.defined_at}); this cell defines a {_KIND.get(op, op)} of that name. A step "
                "is replaced only by one of the same kind: give this one another name, or run "
                "the notebook again from the cell that creates the pipeline."
            )
        if len(parents) != len(old.parents) or not all(
                _equivalent(a, b) for a, b in zip(old.parents, parents, strict=True)):
            new_input = ", ".join(repr(p.name) for p in parents) or "nothing"
            if op == "sink":
                topic = old.params["topic"]
                raise DefinitionError(
                    f"to({topic!r}): topic {topic!r} is already written by step {old.name!r} "
                    f"(defined at {old.defined_at}), from step {old.parents[0].name!r}; this "
                    f"cell writes it from {new_input}. Write both streams with one sink: "
                    f"a.merge(b).to({topic!r})."
                )
            raise DefinitionError(
                f"step {old.name!r} of pipeline {self.name!r} is {what} (defined at "
                f"{old.defined_at}); this cell's step of that name reads {new_input}. A step is "
                "replaced only by one reading the same input: give this one another name, or "
                "run the notebook again from the cell that creates the pipeline."
            )

    def _replace(self, old: Node, parents: tuple[Node, ...], params: dict[str, Any], *,
                 key_changed: bool, inherits: bool, stateful: bool) -> Node:
        """Put a new definition into ``old`` in place, so that every handle and every step
        downstream now reads the new definition."""
        old.parents = parents
        old.params = params
        old.defined_at = caller_site()
        old.execution = current_execution()
        old.key_changed = key_changed
        old.inherits_key = inherits
        old.stateful = stateful
        old.cache.clear()
        self._renumber()
        self._refresh(old)
        self._version += 1
        return old

    def _descendants(self, node: Node) -> list[Node]:
        """``node`` and every step downstream of it, in definition order."""
        out = {node}
        for n in self._nodes:  # topologically ordered
            if any(p in out for p in n.parents):
                out.add(n)
        return [n for n in self._nodes if n in out]

    def _refresh(self, node: Node) -> None:
        """Forget the previews of ``node`` and of the steps downstream, and recompute whether
        their keys changed."""
        for n in self._descendants(node):
            for key in ("preview", "frame_schema"):
                n.cache.pop(key, None)
            if n.inherits_key:
                n.key_changed = any(p.key_changed for p in n.parents)

    def _renumber(self) -> None:
        """Keep ``_nodes`` topologically ordered (a replaced step may now read newer steps)."""
        placed: set[Node] = set()
        order: list[Node] = []
        for start in sorted(self._nodes, key=lambda n: n.id):
            stack: list[tuple[Node, bool]] = [(start, False)]
            while stack:
                n, expanded = stack.pop()
                if n in placed:
                    continue
                if expanded:
                    placed.add(n)
                    order.append(n)
                    continue
                stack.append((n, True))
                for p in reversed(n.parents):
                    if p not in placed:
                        stack.append((p, False))
        for i, n in enumerate(order):
            n.id = i
        self._nodes = order

    def _remove(self, node: Node) -> None:
        """Remove ``node`` and every step downstream of it (a branch a split no longer has)."""
        gone = set(self._descendants(node))
        self._nodes = [n for n in self._nodes if n not in gone]
        self._node_set -= gone
        for n in gone:
            if self._names.get(n.name) is n:
                del self._names[n.name]
        for topic, n in list(self._sources.items()):
            if n in gone:
                del self._sources[topic]
        self._renumber()
        self._version += 1

    def _register_sink(self, topic: str, name: str | None, parent: Node | None = None) -> None:
        self._check_not_internal(topic, "to()")
        if topic in self._sources:
            raise DefinitionError(
                f"topic {topic!r} is a source of pipeline {self.name!r}; writing to it would "
                "feed the pipeline its own output. Use another topic name."
            )
        writer = self._sink_of(topic)
        if writer is not None and writer.op == "topic_sink" and writer.name == name:
            return  # the same topic-function step, defined again (running its cell again)
        if writer is not None and writer.name != (name or f"to-{topic}"):
            raise DefinitionError(
                f"to({topic!r}): topic {topic!r} is already written by step {writer.name!r} "
                f"(defined at {writer.defined_at}), from step {writer.parents[0].name!r}. "
                f"Write both streams with one sink: a.merge(b).to({topic!r})."
            )
        # a sink of the same name: _add_node decides (running a cell again replaces it)

    def _sink_of(self, topic: str) -> Node | None:
        """The sink step that writes ``topic``, if any."""
        for node in self._nodes:
            if node.op == "sink" and node.params.get("topic") == topic:
                return node
            if node.op == "topic_sink" and topic in (node.params.get("topics") or ()):
                return node
        return None

    def _check_not_internal(self, topic: str, where: str) -> None:
        if topic.startswith(f"{self.name}-") and topic.endswith(INTERNAL_SUFFIXES):
            raise DefinitionError(
                f"{where}: topic {topic!r} has the form of an internal topic of pipeline "
                f"{self.name!r}: names '{self.name}-<step>-repartition', "
                f"'{self.name}-<store>-changelog' and '{self.name}-<step>-preview' are "
                "reserved for the topics workbench creates. Choose another topic name."
            )

    # -- which steps a run needs ------------------------------------------------------------------
    def _live_nodes(self) -> list[Node]:
        """The steps a run computes: the sinks (``to``), ``peek`` and ``process`` steps (their
        side effects are their output), tables given a ``name=`` (queryable state), and every
        step they read from. Other steps are previews only: left out of the plan."""
        roots = [n for n in self._nodes
                 if n.op in ("sink", "peek", "process", "foreach", "print", "topic_sink")
                 or (n.op in _TABLE_OPS and not n.auto_named)]
        from .plan import _ancestors

        keep = _ancestors(roots)
        return [n for n in self._nodes if n in keep]

    @property
    def unused_steps(self) -> list[str]:
        """Steps no output needs: previews only, left out of runs (drawn greyed)."""
        live = set(self._live_nodes())
        return [n.name for n in self._nodes if n not in live]
    def _known_columns(self, node: Node) -> list[str] | None:
        """Field names of the node's records when they are known without running anything."""
        if node.op in ("source", "table_source", "global_table"):
            columns: list[str] | None = node.params["spec"].columns
            return columns
        if node.op in ("filter", "peek", "branch", "split", "key_by", "group_by", "sink",
                       "late", "errors", "table_changes", "table_filter", "table_group_by",
                       "suppress", "repartition") and node.parents:
            return self._known_columns(node.parents[0])
        if node.op in ("assign", "select", "rename", "drop") and node.parents:
            before = self._known_columns(node.parents[0])
            params = node.params
            if node.op == "select":
                return list(params["exprs"])
            if before is None:
                return None
            if node.op == "assign":
                return [*before, *(c for c in params["exprs"] if c not in before)]
            if node.op == "rename":
                return [params["mapping"].get(c, c) for c in before]
            return [c for c in before if c not in params["columns"]]
        return None

    # -- introspection ------------------------------------------------------------------------
    @property
    def steps(self) -> list[str]:
        """The step names, in definition order."""
        return [n.name for n in self._nodes]

    @property
    def sources(self) -> list[str]:
        """The source topics."""
        return list(self._sources)

    @property
    def sinks(self) -> list[str]:
        """The topics written with ``to()`` (a topic function's declared ``topics=``)."""
        out: list[str] = []
        for n in self._nodes:
            if n.op == "sink":
                out.append(n.params["topic"])
            elif n.op == "topic_sink":
                out.extend(n.params.get("topics") or ())
        return out

    def node(self, name: str) -> Node:
        """The step called ``name`` (for tools such as the debugger)."""
        try:
            return self._names[name]
        except KeyError:
            raise DefinitionError(f"no step {name!r} in pipeline {self.name!r}."
                                  + did_you_mean(name, self._names)) from None

    def plan(self) -> Plan:
        """Compile the graph: sub-topologies, tasks, internal topics and state stores, for the
        steps a run needs (see :attr:`unused_steps`)."""
        from .plan import compile_plan

        if self._sources and not self._live_nodes():
            raise DefinitionError(
                f"pipeline {self.name!r} has nothing to run: no step writes a topic (.to(topic)), "
                "peeks, processes or is a named table, and every other step is a preview only. "
                "Add .to('some-topic') to the step whose results you want."
            )
        return compile_plan(self)

    # -- running ------------------------------------------------------------------------------
    @public
    def run(
        self,
        driver: str | Driver = "memory://",
        inputs: Mapping[str, Any] | None = None,
        until: str | None = "end",
        *,
        commit_interval: str | int = "100ms",
        clock: Any = None,
        batch_size: int = 10_000,
        live: bool = False,
        progress: bool | None = None,
        max_transaction: str | int | None = None,
    ) -> Run:
        """Run the pipeline on a driver and return the :class:`~workbench.run.Run`.

        Args:
            driver: a URL (``"memory://"``, ``"kafka://host:port"``, ``"postgresql://..."``,
                ``"git:///path"``) or a driver from :func:`workbench.connect`.
            inputs: ``{topic: DataFrame | list of dicts | path}`` appended to the source topics
                through the driver before the run. Without it, ``memory://`` uses the samples.
            until: ``"end"`` processes what the source topics hold when the run starts, flushes
                (closes open windows) and commits; ``None`` runs until stopped.
            commit_interval: time between commits (default 100 ms).
            clock: an injectable clock (see :mod:`workbench.runtime.clock`).
            batch_size: maximum records per micro-batch and input partition.
            max_transaction: the longest a transaction may stay open, from its first record
                read to the end of its commit (``"2s"``; default: half of the driver's own
                limit, see ``docs/external.md``). The engine reads fewer records per poll
                and commits earlier when steps or external calls are slow.
        """
        if live:
            from .display.live import run_live

            return run_live(self, driver, inputs, until, commit_interval=commit_interval,
                            clock=clock, batch_size=batch_size,
                            max_transaction=max_transaction)
        from .run import execute

        return execute(self, driver, inputs=inputs, until=until,
                       commit_interval=commit_interval, clock=clock, batch_size=batch_size,
                       progress=progress, max_transaction=max_transaction)

    def start(
        self,
        driver: str | Driver = "memory://",
        inputs: Mapping[str, Any] | None = None,
        until: str | None = None,
        *,
        commit_interval: str | int = "100ms",
        clock: Any = None,
        batch_size: int = 10_000,
        display: bool | None = None,
        max_transaction: str | int | None = None,
    ) -> LiveRun:
        """Run in a background thread; return a :class:`~workbench.display.live.LiveRun`
        (``stop()``, ``wait()``, ``frame(topic)``); in a notebook, show the live view."""
        from .display.live import start

        return start(self, driver, inputs, until, commit_interval=commit_interval,
                     clock=clock, batch_size=batch_size, display=display,
                     max_transaction=max_transaction)

    # -- drawing ------------------------------------------------------------------------------
    def to_dot(self) -> str:
        """The graph as Graphviz DOT text."""
        from .display import pipeline_dot

        return pipeline_dot(self)

    def to_mermaid(self) -> str:
        """The graph as Mermaid ``flowchart`` text."""
        from .display import pipeline_mermaid

        return pipeline_mermaid(self)

    def to_svg(self) -> str:
        """The graph as SVG, drawn in Python (no Graphviz needed)."""
        from .display import pipeline_svg

        return pipeline_svg(self)

    def __repr__(self) -> str:
        from .display import pipeline_text

        return pipeline_text(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from .display import pipeline_bundle

        return pipeline_bundle(self)
