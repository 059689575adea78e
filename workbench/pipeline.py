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
from ._nodes import Node, caller_site
from .errors import DefinitionError, did_you_mean
from .samples import SourceSpec, normalize_sample
from .stream import Stream

if TYPE_CHECKING:
    from .display.live import LiveRun
    from .drivers.base import Driver
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


class Pipeline:
    """A stream-processing pipeline: sources, steps and sinks.

    Args:
        name: the application id. State stores, internal topics and committed positions are named
            after it, so two runs with the same name share progress on a persistent driver.
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise DefinitionError(
                f"pipeline name {name!r} must start with a letter or digit and contain only "
                "letters, digits, '.', '_' and '-' (it names topics and tables)."
            )
        self.name = name
        self._nodes: list[Node] = []
        self._names: dict[str, Node] = {}
        self._sources: dict[str, Node] = {}
        self._sinks: dict[str, str] = {}
        self._counters: dict[str, int] = {}

    # -- building -------------------------------------------------------------------------------
    def source(
        self,
        topic: str,
        *,
        key: str | Callable[[Any], Any] | None = None,
        time: str | Callable[[Any], Any] | None = None,
        sample: Any = None,
        partitions: int | None = None,
        name: str | None = None,
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
        """
        check_topic_name(topic, "source()")
        check_partitions(partitions, f"source({topic!r})")
        self._check_not_internal(topic, "source()")
        writer = self._sink_of(topic)
        if writer is not None:
            raise DefinitionError(
                f"source({topic!r}): topic {topic!r} is written by step {writer.name!r} of "
                f"pipeline {self.name!r} (defined at {writer.defined_at}); reading it back "
                "would feed the pipeline its own output in a loop. Use the stream that writes "
                "it instead of a new source."
            )
        if topic in self._sources:
            raise DefinitionError(
                f"topic {topic!r} is already a source of pipeline {self.name!r} "
                f"(step {self._sources[topic].name!r}); reuse that stream instead."
            )
        for what, spec in (("key", key), ("time", time)):
            if spec is not None and not isinstance(spec, str) and not callable(spec):
                raise DefinitionError(
                    f"source({topic!r}, {what}=...) must be a field name or a function, "
                    f"got {spec!r}."
                )
        rows, columns = normalize_sample(sample, topic)
        for what, spec in (("key", key), ("time", time)):
            if isinstance(spec, str) and columns is not None and spec not in columns:
                raise DefinitionError(
                    f"source({topic!r}, {what}={spec!r}): the sample has no column {spec!r}."
                    + did_you_mean(spec, columns)
                )
        spec_obj = SourceSpec(topic=topic, key=key, time=time, sample=rows, columns=columns,
                              partitions=partitions)
        node = self._add_node("source", (), {"spec": spec_obj}, name or topic,
                              key_changed=False)
        self._sources[topic] = node
        return Stream(self, node)

    def table(
        self,
        topic: str,
        *,
        key: str | Callable[[Any], Any] | None = None,
        time: str | Callable[[Any], Any] | None = None,
        sample: Any = None,
        partitions: int | None = None,
        name: str | None = None,
    ) -> Table:
        """A table read from ``topic`` as a changelog: the latest value per key, a ``None``
        value deletes the key (a tombstone). In a DataFrame sample, a row whose fields other
        than the key and time columns are all empty is a tombstone.

        Arguments as for :meth:`source`.
        """
        from .table import Table

        stream = self.source(topic, key=key, time=time, sample=sample, partitions=partitions,
                             name=name)
        node = stream._node
        node.op = "table_source"
        node.stateful = True
        spec = node.params["spec"]
        node.params["spec"] = SourceSpec(topic=spec.topic, key=key, time=time,
                                         sample=spec.sample, columns=spec.columns,
                                         partitions=partitions, table=True)
        node.params["stores"] = [("store", "kv")]
        return Table(self, node, key_name=key if isinstance(key, str) else None)

    def _add_node(
        self,
        op: str,
        parents: tuple[Node, ...],
        params: dict[str, Any],
        name: str | None,
        *,
        key_changed: bool = False,
        stateful: bool = False,
        auto_named: bool | None = None,
    ) -> Node:
        for parent in parents:
            if parent not in self._nodes:
                raise DefinitionError("a step's input belongs to another pipeline.")
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
            if name in self._names:
                raise DefinitionError(
                    f"duplicate step name {name!r} in pipeline {self.name!r} (first defined at "
                    f"{self._names[name].defined_at}); names must be unique."
                )
            explicit = True
        node = Node(
            id=len(self._nodes), op=op, name=name, parents=parents, params=params,
            defined_at=caller_site(), key_changed=key_changed, stateful=stateful,
            auto_named=(not explicit) if auto_named is None else auto_named,
        )
        self._nodes.append(node)
        self._names[name] = node
        return node

    def _register_sink(self, topic: str, name: str | None, parent: Node | None = None) -> None:
        self._check_not_internal(topic, "to()")
        if topic in self._sources:
            raise DefinitionError(
                f"topic {topic!r} is a source of pipeline {self.name!r}; writing to it would "
                "feed the pipeline its own output. Use another topic name."
            )
        writer = self._sink_of(topic)
        if writer is not None and parent is not None and writer.parents[:1] != (parent,):
            raise DefinitionError(
                f"to({topic!r}): topic {topic!r} is already written by step {writer.name!r} "
                f"(defined at {writer.defined_at}), from step {writer.parents[0].name!r}. "
                f"Write both streams with one sink: a.merge(b).to({topic!r})."
            )

    def _sink_of(self, topic: str) -> Node | None:
        """The sink step that writes ``topic``, if any."""
        for node in self._nodes:
            if node.op == "sink" and node.params.get("topic") == topic:
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

    def _known_columns(self, node: Node) -> list[str] | None:
        """Field names of the node's records when they are known without running anything."""
        if node.op in ("source", "table_source"):
            columns: list[str] | None = node.params["spec"].columns
            return columns
        if node.op in ("filter", "peek", "branch", "split", "key_by", "group_by", "sink",
                       "late", "table_changes", "table_filter") and node.parents:
            return self._known_columns(node.parents[0])
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
        """The topics written with ``to()``."""
        return [n.params["topic"] for n in self._nodes if n.op == "sink"]

    def node(self, name: str) -> Node:
        """The step called ``name`` (for tools such as the debugger)."""
        try:
            return self._names[name]
        except KeyError:
            raise DefinitionError(f"no step {name!r} in pipeline {self.name!r}."
                                  + did_you_mean(name, self._names)) from None

    def plan(self) -> Plan:
        """Compile the graph: sub-topologies, tasks, internal topics and state stores."""
        from .plan import compile_plan

        return compile_plan(self)

    # -- running ------------------------------------------------------------------------------
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
        """
        if live:
            from .display.live import run_live

            return run_live(self, driver, inputs, until, commit_interval=commit_interval,
                            clock=clock, batch_size=batch_size)
        from .run import execute

        return execute(self, driver, inputs=inputs, until=until,
                       commit_interval=commit_interval, clock=clock, batch_size=batch_size,
                       progress=progress)

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
    ) -> LiveRun:
        """Run in a background thread; return a :class:`~workbench.display.live.LiveRun`
        (``stop()``, ``wait()``, ``frame(topic)``); in a notebook, show the live view."""
        from .display.live import start

        return start(self, driver, inputs, until, commit_interval=commit_interval,
                     clock=clock, batch_size=batch_size, display=display)

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
