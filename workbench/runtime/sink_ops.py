"""Small stream steps of the rest of the DSL: ``repartition``, ``foreach``, ``print`` and
``to(topic function)`` (Kafka Streams 4.1.1 semantics; conformance cases
``repartition.json``, FINDINGS D19).

- ``repartition`` (``KStream.repartition``): the records go through a repartition topic
  (``<app>-<step>-repartition``, ``partitions=`` of them) and come back keyed and ordered as
  they were. A record whose key is ``None`` is dropped there, as Kafka Streams does silently
  (D19); workbench counts it (``null_keys``) and logs the first one.
- ``foreach`` (``KStream.foreach``): calls the function for each record; nothing comes out.
- ``print`` (``KStream.print``): one line per record, ``[label]: key, value`` (Kafka's
  ``Printed`` format, ``None`` written ``null``; ``mapper(key, value)`` replaces ``key,
  value``), to the log (logger ``workbench.print``, level INFO) or appended to a file (written
  at each batch; Kafka Streams flushes its file when the application closes).
- ``to(topic function)`` (``KStream.to(TopicNameExtractor)``): each record goes to the topic
  the function names for it, ``None`` keys and values included. The topic must be a valid
  topic name, not a topic the pipeline reads or another step writes, not an internal topic,
  and one of ``topics=`` when the step declares them; undeclared topics are created by the
  driver when first named.

Side effects of ``foreach`` and ``print`` happen when records are processed, so after a
crash they may happen again for records processed but not committed (at-least-once, as in
Kafka Streams).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ..plan import PlanNode
from ..types import Record
from . import batch as cb
from .operators import Operator, StepFailure
from .task import OPERATOR_FACTORIES, OpContext

__all__ = ["ForeachOp", "PrintOp", "RepartitionOp", "TopicSinkOp"]

log = logging.getLogger("workbench.print")
_log_ops = logging.getLogger(__name__)
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _text(x: Any) -> str:
    """As Kafka Streams' ``Printed`` writes it: ``None`` is ``null``."""
    return "null" if x is None else str(x)


def _record_of(batch: Any, i: int) -> tuple[Any, Any, int, Any, Any]:
    rec: tuple[Any, Any, int, Any, Any] = batch.take(slice(i, i + 1)).rows()[0]
    return rec


class RepartitionOp(Operator):
    """After the repartition topic: records without a key are dropped (counted)."""

    columnar = True

    def __init__(self, name: str) -> None:
        self.name = name
        #: records dropped for a ``None`` key (Kafka Streams drops them silently, D19)
        self.null_keys = 0

    def process(self, batch: Any, port: int) -> Any:
        keys = batch.keys
        if hasattr(keys, "inner"):  # windowed keys always have a key
            return batch
        keep = np.fromiter((k is not None for k in keys.tolist()), dtype=bool,
                           count=len(batch))
        if keep.all():
            return batch
        if not self.null_keys:
            _log_ops.warning("step %r: records with a None key are dropped at the repartition "
                             "topic, as Kafka Streams does", self.name)
        self.null_keys += int(len(batch) - keep.sum())
        return batch.take(keep)


class ForeachOp(Operator):
    """Calls ``fn`` for each record (value, or ``Record`` with ``with_record``)."""

    columnar = True

    def __init__(self, name: str, defined_at: str, fn: Callable[[Any], Any],
                 with_record: bool) -> None:
        self.name = name
        self.defined_at = defined_at
        self.fn = fn
        self.with_record = with_record

    def _args(self, batch: Any) -> list[Any]:
        if self.with_record:
            return [Record(k, v, t, h) for k, v, t, _s, h in batch.rows()]
        values: list[Any] = batch.values.objects().tolist()
        return values

    def process(self, batch: Any, port: int) -> Any:
        fn = self.fn
        for i, arg in enumerate(self._args(batch)):
            try:
                fn(arg)
            except Exception as exc:
                raise StepFailure(self.name, self.defined_at, _record_of(batch, i),
                                  exc) from exc
        return None


class PrintOp(Operator):
    """``[label]: key, value`` per record, to the log or appended to a file."""

    columnar = True

    def __init__(self, name: str, defined_at: str, label: str,
                 mapper: Callable[[Any, Any], Any] | None, path: str | None) -> None:
        self.name = name
        self.defined_at = defined_at
        self.label = label
        self.mapper = mapper
        self.path = path

    def process(self, batch: Any, port: int) -> Any:
        mapper = self.mapper
        lines = []
        for i, (k, v, _t, _s, _h) in enumerate(batch.rows()):
            try:
                text = f"{_text(k)}, {_text(v)}" if mapper is None else _text(mapper(k, v))
            except Exception as exc:
                raise StepFailure(self.name, self.defined_at, _record_of(batch, i),
                                  exc) from exc
            lines.append(f"[{self.label}]: {text}")
        if self.path is None:
            for line in lines:
                log.info("%s", line)
        elif lines:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        return None


class TopicSinkOp(Operator):
    """``to(topic function)``: collects each record for the topic its function names."""

    columnar = True

    def __init__(self, name: str, defined_at: str, fn: Callable[[Any], Any],
                 with_record: bool, declared: tuple[str, ...] | None,
                 reserved: Callable[[], dict[str, str]], app_id: str) -> None:
        self.name = name
        self.defined_at = defined_at
        self.fn = fn
        self.with_record = with_record
        self.declared = None if declared is None else frozenset(declared)
        self._reserved = reserved
        self._reserved_now: dict[str, str] | None = None
        self.app_id = app_id
        self._checked: set[str] = set()
        self.buffer: list[tuple[str, Any]] = []

    def _check(self, topic: Any) -> str | None:
        """Why ``topic`` may not be written here, or ``None``."""
        if not isinstance(topic, str) or not _TOPIC.match(topic) or topic in (".", ".."):
            return (f"the topic function returned {topic!r}, which is not a valid topic name "
                    "(1-249 letters, digits, '.', '_' and '-')")
        if self.declared is not None and topic not in self.declared:
            return (f"the topic function returned {topic!r}, which is not among the topics "
                    f"this step declares (topics={sorted(self.declared)!r})")
        if topic.startswith(f"{self.app_id}-") and topic.endswith(
                ("-repartition", "-changelog", "-preview")):
            return f"{topic!r} has the form of an internal topic of pipeline {self.app_id!r}"
        if self._reserved_now is None:
            self._reserved_now = self._reserved()
        why = self._reserved_now.get(topic)
        if why is not None:
            return f"topic {topic!r} {why}"
        return None

    def process(self, batch: Any, port: int) -> Any:
        fn = self.fn
        if self.with_record:
            args: list[Any] = [Record(k, v, t, h) for k, v, t, _s, h in batch.rows()]
        else:
            args = batch.values.objects().tolist()
        topics: list[str] = []
        checked = self._checked
        for i, arg in enumerate(args):
            try:
                topic = fn(arg)
                if topic not in checked:
                    problem = self._check(topic)
                    if problem is not None:
                        raise ValueError(problem)
                    checked.add(topic)
            except Exception as exc:
                raise StepFailure(self.name, self.defined_at, _record_of(batch, i),
                                  exc) from exc
            topics.append(topic)
        if len(set(topics)) == 1:
            self.buffer.append((topics[0], batch))
            return None
        which = np.array(topics, dtype=object)
        for topic in dict.fromkeys(topics):
            self.buffer.append((topic, batch.take(which == topic)))
        return None

    def drain_topics(self) -> list[tuple[str, Any]]:
        """``[(topic, batch)]`` collected since the last drain, one batch per topic."""
        grouped: dict[str, list[Any]] = {}
        for topic, b in self.buffer:
            grouped.setdefault(topic, []).append(b)
        self.buffer = []
        return [(t, cb.Batch.concat(bs)) for t, bs in grouped.items()]


# -- factories ----------------------------------------------------------------------------------
def _node(pn: PlanNode) -> Any:
    assert pn.node is not None
    return pn.node


def _repartition(pn: PlanNode, ctx: OpContext) -> Operator:
    return RepartitionOp(pn.name)


def _foreach(pn: PlanNode, ctx: OpContext) -> Operator:
    node = _node(pn)
    return ForeachOp(pn.name, node.defined_at, node.params["fn"],
                     bool(node.params.get("with_record")))


def _print(pn: PlanNode, ctx: OpContext) -> Operator:
    node = _node(pn)
    params = node.params
    path = params.get("path")
    return PrintOp(pn.name, node.defined_at, params.get("label") or pn.name,
                   params.get("mapper"), None if path is None else os.fspath(path))


def _topic_sink(pn: PlanNode, ctx: OpContext) -> Operator:
    node = _node(pn)
    params = node.params
    return TopicSinkOp(pn.name, node.defined_at, params["fn"], bool(params.get("with_record")),
                       params.get("topics"), params["reserved"], ctx.app_id)


OPERATOR_FACTORIES["repartition"] = _repartition
OPERATOR_FACTORIES["foreach"] = _foreach
OPERATOR_FACTORIES["print"] = _print
OPERATOR_FACTORIES["topic_sink"] = _topic_sink
