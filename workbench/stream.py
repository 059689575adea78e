"""``Stream``: an immutable handle on a step's output; its methods add steps.

Building a step runs nothing. A step's function receives the record's **value**; pass
``with_record=True`` to receive the whole :class:`~workbench.types.Record` (key, value,
timestamp, headers) instead. With ``with_record=True``, ``map`` and ``flat_map`` may return
``Record``s to change the key or timestamp too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._nodes import Node
from ._tracebacks import public
from .errors import DefinitionError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

    from .expressions import Expr
    from .global_table import GlobalTable
    from .grouped import GroupedStream
    from .pipeline import Pipeline
    from .table import Table

__all__ = ["Branches", "Stream"]


def _check_callable(fn: Any, step: str, what: str = "function") -> None:
    if not callable(fn):
        raise DefinitionError(
            f"{step}() needs a {what} (a callable), got {fn!r} of type {type(fn).__name__}."
            + (" Did you mean to pass a lambda, e.g. lambda v: ...?" if not isinstance(fn, str)
               else " A field name works only where the docs say so (key_by, group_by).")
        )


class Stream:
    """A stream of records: the output of a source or of a step.

    Handles are cheap and immutable; every method returns a new handle and leaves this one as it
    is, so a step can be reused by several later steps (the stream is then copied to each).
    In a notebook a stream displays as a preview: the records it would produce from the
    sources' samples on the in-memory driver.
    """

    __slots__ = ("_node", "_pipeline")

    def __init__(self, pipeline: Pipeline, node: Node) -> None:
        self._pipeline = pipeline
        self._node = node

    # -- identity ---------------------------------------------------------------------------
    @property
    def pipeline(self) -> Pipeline:
        """The pipeline this stream belongs to."""
        return self._pipeline

    @property
    def name(self) -> str:
        """The name of the step that produces this stream."""
        return self._node.name

    def _add(
        self,
        op: str,
        params: dict[str, Any],
        name: str | None,
        *,
        parents: tuple[Node, ...] | None = None,
        key_changed: bool | None = None,
    ) -> Node:
        parents = parents if parents is not None else (self._node,)
        return self._pipeline._add_node(op, parents, params, name, key_changed=key_changed)

    def _derive(self, node: Node) -> Stream:
        return Stream(self._pipeline, node)

    # -- stateless steps ----------------------------------------------------------------------
    def map(
        self, fn: Callable[[Any], Any], *, name: str | None = None, with_record: bool = False
    ) -> Stream:
        """Replace each value by ``fn(value)``.

        With ``with_record=True``, ``fn`` receives the :class:`~workbench.types.Record` and may
        return a ``Record`` (new key/timestamp) or a plain value (key and timestamp kept).
        """
        _check_callable(fn, "map")
        return self._derive(
            self._add("map", {"fn": fn, "with_record": with_record}, name,
                      key_changed=True if with_record else None)
        )

    def filter(
        self, fn: Expr | Callable[[Any], Any], *, name: str | None = None,
        with_record: bool = False,
    ) -> Stream:
        """Keep the records whose condition holds: an expression, evaluated on whole columns
        (``s.filter(wb.col("amount") > 0)``; null counts as False), or a function called with
        each value (``s.filter(lambda v: v["amount"] > 0)``; truthy keeps)."""
        from .expressions import Expr

        if isinstance(fn, Expr):
            if with_record:
                raise DefinitionError("filter(expression) reads value fields; with_record=True "
                                      "is for functions.")
            self._check_expr(fn, "filter")
            return self._derive(self._add("filter", {"expr": fn, "fn": None}, name))
        _check_callable(fn, "filter", "predicate or expression (wb.col(...) > 0)")
        return self._derive(self._add("filter", {"fn": fn, "with_record": with_record}, name))

    def assign(self, *, name: str | None = None, **columns: Any) -> Stream:
        """Add or replace value fields, computed on whole columns, like ``DataFrame.assign``:
        ``s.assign(cents=(wb.col("amount") * 100).round(), source="web")`` (an expression or a
        constant per field). Values must be dicts."""
        from .expressions import Expr

        if not columns:
            raise DefinitionError("assign() needs at least one field=expression, e.g. "
                                  "assign(cents=wb.col('amount') * 100).")
        for field, e in columns.items():
            if isinstance(e, Expr):
                self._check_expr(e, f"assign({field}=...)")
            elif callable(e):
                raise DefinitionError(
                    f"assign({field}=...) takes an expression or a constant, got a function; "
                    "use wb.col(...) expressions, or map(lambda v: {**v, ...}) for a function.")
        return self._derive(self._add("assign", {"exprs": dict(columns)}, name))

    def select(self, *fields: str | Expr, name: str | None = None, **exprs: Any) -> Stream:
        """Keep only some value fields (in this order), optionally computing new ones:
        ``s.select("user_id", "amount", day=wb.col("ts") // 86_400_000)``."""
        from .expressions import Expr, col

        chosen: dict[str, Any] = {}
        for f in fields:
            if isinstance(f, str):
                self._check_field(f, "select")
                chosen[f] = col(f)
            elif isinstance(f, Expr) and f.name is not None:
                self._check_expr(f, "select")
                chosen[f.name] = f
            else:
                raise DefinitionError(f"select() takes field names or named expressions "
                                      f"(.alias('name')), got {f!r}.")
        for field, e in exprs.items():
            if isinstance(e, Expr):
                self._check_expr(e, f"select({field}=...)")
            chosen[field] = e
        if not chosen:
            raise DefinitionError("select() needs at least one field.")
        return self._derive(self._add("select", {"exprs": chosen}, name))

    def rename(self, mapping: dict[str, str] | None = None, *, name: str | None = None,
               **renames: str) -> Stream:
        """Rename value fields: ``s.rename({"amount": "eur"})`` or ``s.rename(amount="eur")``."""
        merged = {**(mapping or {}), **renames}
        if not merged:
            raise DefinitionError("rename() needs at least one old='new' pair.")
        for old, new in merged.items():
            self._check_field(old, "rename")
            if not isinstance(new, str) or not new:
                raise DefinitionError(f"rename({old}=...) needs a new field name, got {new!r}.")
        return self._derive(self._add("rename", {"mapping": merged}, name))

    def drop(self, *fields: str, name: str | None = None) -> Stream:
        """Remove value fields: ``s.drop("page")``."""
        if not fields:
            raise DefinitionError("drop() needs at least one field name.")
        for f in fields:
            self._check_field(f, "drop")
        return self._derive(self._add("drop", {"columns": list(fields)}, name))

    def flat_map(
        self, fn: Callable[[Any], Any], *, name: str | None = None, with_record: bool = False
    ) -> Stream:
        """Replace each value by zero or more values: ``fn(value)`` returns an iterable.

        Every output keeps the input's key and timestamp unless ``with_record=True`` and ``fn``
        yields ``Record``s.
        """
        _check_callable(fn, "flat_map")
        return self._derive(
            self._add("flat_map", {"fn": fn, "with_record": with_record}, name,
                      key_changed=True if with_record else None)
        )

    def key_by(
        self, key: str | Callable[[Any], Any], *, name: str | None = None,
        with_record: bool = False,
    ) -> Stream:
        """Re-key: the new key is ``value[key]`` for a field name, or ``key(value)``.

        A re-keyed stream that feeds a stateful step goes through a repartition topic first, so
        that every record of a key is processed by the same task.
        """
        from .expressions import Expr

        if isinstance(key, str):
            self._check_field(key, "key_by")
            params: dict[str, Any] = {"field": key, "fn": None, "with_record": False}
        elif isinstance(key, Expr):
            self._check_expr(key, "key_by")
            params = {"field": None, "fn": None, "expr": key, "with_record": False}
        else:
            _check_callable(key, "key_by", "field name, expression or function")
            params = {"field": None, "fn": key, "with_record": with_record}
        return self._derive(self._add("key_by", params, name, key_changed=True))

    def peek(
        self, fn: Callable[[Any], Any], *, name: str | None = None, with_record: bool = False
    ) -> Stream:
        """Call ``fn(value)`` for each record (for side effects such as logging); records pass
        through unchanged."""
        _check_callable(fn, "peek")
        return self._derive(self._add("peek", {"fn": fn, "with_record": with_record}, name))

    def split(
        self, *, name: str | None = None, with_record: bool = False,
        default: str | None = "rest", **branches: Expr | Callable[[Any], Any],
    ) -> Branches:
        """Divide the stream by named predicates, first match wins (Kafka Streams'
        ``split().branch(pred, Branched.as(name))``); the records no predicate matches go to
        the default branch, named by ``default`` (``"rest"`` unless given;
        ``defaultBranch()``), or, with ``default=None``, nowhere (``noDefaultBranch()``).
        A predicate is an expression, evaluated on whole columns (``big=wb.col("amount") >
        100``; null counts as False), or a function called with each value.

        >>> # parts = stream.split(big=wb.col("amount") > 100, small=wb.col("amount") > 10)
        >>> # parts = stream.split(big=lambda e: e["amount"] > 100, small=lambda e: True)
        >>> # parts.big, parts["small"], parts.rest  (rest: records no predicate matched)
        >>> # stream.split(eu=is_eu, default="world").world
        """
        from .pipeline import _NAME

        if not branches:
            raise DefinitionError("split() needs at least one named predicate, e.g. "
                                  "split(big=lambda e: e['amount'] > 100).")
        if default is not None and (not isinstance(default, str) or not _NAME.match(default)):
            raise DefinitionError(f"split(default={default!r}): the default branch's name "
                                  "must start with a letter or digit and contain only letters, "
                                  "digits, '.', '_' and '-' (or None for no default branch).")
        if default in branches:
            raise DefinitionError(f"{default!r} is the name of the default branch (the records "
                                  "no predicate matched); name the predicate's branch "
                                  "differently, or choose another default=.")
        from .expressions import Expr

        for label, fn in branches.items():
            if isinstance(fn, Expr):
                if with_record:
                    raise DefinitionError(f"split(..., {label}=expression) reads value fields; "
                                          "with_record=True is for functions.")
                self._check_expr(fn, f"split(..., {label}=)")
            else:
                _check_callable(fn, f"split(..., {label}=)",
                                "predicate or expression (wb.col(...) > 0)")
        node = self._add(
            "split", {"branches": dict(branches), "with_record": with_record,
                      "default": default}, name
        )
        handles: dict[str, Stream] = {}
        labels = [*branches, *([default] if default is not None else [])]
        for index, label in enumerate(labels):
            child = self._pipeline._add_node(
                "branch", (node,), {"index": index, "label": label},
                f"{node.name}-{label}", key_changed=None, auto_named=True,
            )
            handles[label] = self._derive(child)
        for old in [n for n in self._pipeline._nodes if n.op == "branch"
                    and n.parents == (node,) and n.params["label"] not in labels]:
            self._pipeline._remove(old)  # a branch the split no longer has, and its steps
        return Branches(handles)

    def merge(self, *others: Stream, name: str | None = None) -> Stream:
        """Merge this stream with others into one (records keep their keys and timestamps)."""
        if not others:
            raise DefinitionError("merge() needs at least one other stream.")
        for other in others:
            if not isinstance(other, Stream):
                raise DefinitionError(f"merge() takes streams, got {other!r}.")
            if other._pipeline is not self._pipeline:
                raise DefinitionError("merge() of streams from different pipelines: "
                                      f"{self._pipeline.name!r} and {other._pipeline.name!r}.")
        parents = (self._node, *(o._node for o in others))
        return self._derive(self._add("merge", {}, name, parents=parents))

    def to(
        self, topic: str | Callable[[Any], str], *, partitions: int | None = None,
        name: str | None = None, key: Any = None, value: Any = None,
        topics: list[str] | None = None, with_record: bool = False,
    ) -> Stream:
        """Write the stream to ``topic`` (created by the driver if missing), or to the topic a
        function ``topic(value)`` names for each record (``with_record=True``: the function
        gets the :class:`~workbench.types.Record`).

        ``key=``/``value=`` are the topic's serdes (default: the serdes the records were read
        with while the step keeps them, else the driver's; see :mod:`workbench.serde`).
        With a topic function, ``topics=[...]`` declares the topics it may name: they are
        created when the run starts (with ``partitions=`` and the serdes given) and any other
        name is an error; without ``topics=``, each topic is created by the driver when a
        record first names it (default partitions and serdes). A topic the pipeline reads,
        another step's topic or an internal topic is an error naming the record.
        Returns this stream, so a notebook cell ending in ``.to(...)`` still shows the preview.
        """
        from ._checks import check_partitions
        from .pipeline import check_topic_name
        from .serde.dsl import serde_arg

        if callable(topic):
            return self._to_function(topic, topics, partitions, name, key, value, with_record)
        if topics is not None or with_record:
            raise DefinitionError(f"to({topic!r}): topics= and with_record= go with a topic "
                                  "function, to(lambda v: ...).")
        check_topic_name(topic, "to()")
        check_partitions(partitions, f"to({topic!r})")
        serdes = {"key_serde": serde_arg(key, f"to({topic!r}", "key"),  # workbench.serde
                  "value_serde": serde_arg(value, f"to({topic!r}", "value")}
        self._pipeline._register_sink(topic, name, self._node)
        self._add("sink", {"topic": topic, "partitions": partitions, **serdes},
                  name or f"to-{topic}")
        return self

    # -- external work (docs/external.md; engine side: workbench/runtime/external) -----------
    def map_async(
        self, fn: Callable[[Any], Any], *, concurrency: int = 16, timeout: Any = None,
        retries: int = 2, backoff: Any = "100ms", queue: int | None = None,
        on_error: str = "raise", dead_letter: str | None = None, name: str | None = None,
        with_record: bool = False,
    ) -> Stream:
        """Replace each value by the result of a slow call, ``concurrency`` at a time.

        ``fn`` is an ``async def`` (run on an event loop) or a plain function (run in a thread
        pool). Results come out in input order. At most ``queue`` records (default:
        ``concurrency``) are in flight; while the queue is full the engine stops reading, and
        a commit waits for the calls of the records it commits. Each attempt may take
        ``timeout`` (default: half of the run's ``max_transaction``); a failed attempt is
        retried ``retries`` times after ``backoff`` (doubling).
        A record that still fails stops the run (``on_error="raise"``), is dropped and counted
        (``"skip"``) or goes to this step's :attr:`errors` output (``"route"``;
        ``dead_letter="topic"`` also writes them there).

        Calls are at-least-once: :func:`workbench.call_info` gives the call's idempotency key.
        """
        from .calls import AsyncSpec

        spec = AsyncSpec.build("map_async", fn, concurrency=concurrency, queue=queue,
                               timeout=timeout, retries=retries, backoff=backoff,
                               on_error=on_error, dead_letter=dead_letter,
                               with_record=with_record, flat=False)
        return self._external("map_async", spec, name, dead_letter,
                              key_changed=True if with_record else None)

    def flat_map_async(
        self, fn: Callable[[Any], Any], *, concurrency: int = 16, timeout: Any = None,
        retries: int = 2, backoff: Any = "100ms", queue: int | None = None,
        on_error: str = "raise", dead_letter: str | None = None, name: str | None = None,
        with_record: bool = False,
    ) -> Stream:
        """Like :meth:`map_async`, but ``fn`` returns (or its coroutine returns) an iterable of
        zero or more values per record (``Record``\\ s with ``with_record=True``)."""
        from .calls import AsyncSpec

        spec = AsyncSpec.build("flat_map_async", fn, concurrency=concurrency, queue=queue,
                               timeout=timeout, retries=retries, backoff=backoff,
                               on_error=on_error, dead_letter=dead_letter,
                               with_record=with_record, flat=True)
        return self._external("flat_map_async", spec, name, dead_letter,
                              key_changed=True if with_record else None)

    def pipe(
        self, argv: Any, *, format: str = "jsonl", outputs: str = "one", workers: int = 1,
        timeout: Any = None, retries: int = 2, backoff: Any = "100ms",
        queue: int | None = None, on_error: str = "raise", dead_letter: str | None = None,
        shell: bool = False, env: dict[str, str] | None = None, cwd: Any = None,
        name: str | None = None,
    ) -> Stream:
        """Send each value through long-lived child processes: ``argv`` (a list; no shell
        unless ``shell=True`` with a string) reads records on stdin and writes results on
        stdout, flushing after each.

        ``format="jsonl"``: one JSON value per line; ``"bytes"``: frames of a 4-byte
        big-endian length and the bytes. ``outputs="one"``: one output per input, in order;
        ``"many"``: zero or more per input, as the envelopes ``docs/external.md`` describes.
        ``workers`` processes share the records; all records of a key go to the same one, in
        order. stderr goes to the log with the step's name. A child that exits or hangs
        (``timeout`` for one record) is restarted after ``backoff`` (doubling) and its
        records are sent again; the record it was working on counts an attempt, and after
        ``retries`` it is reported with its topic, partition and offset (``on_error``,
        ``dead_letter`` as in :meth:`map_async`). The children stop when the run ends.
        """
        from .calls import PipeSpec

        spec = PipeSpec.build(argv, format=format, outputs=outputs, workers=workers,
                              queue=queue, timeout=timeout, retries=retries, backoff=backoff,
                              on_error=on_error, dead_letter=dead_letter, shell=shell, env=env,
                              cwd=cwd)
        return self._external("pipe", spec, name, dead_letter, key_changed=None)

    def _external(self, op: str, spec: Any, name: str | None, dead_letter: str | None, *,
                  key_changed: bool | None) -> Stream:
        out = self._derive(self._add(op, {"spec": spec}, name, key_changed=key_changed))
        if dead_letter is not None:
            out.errors.to(dead_letter)
        return out

    @property
    def errors(self) -> Stream:
        """The records an external step (``map_async``, ``flat_map_async``, ``pipe`` with
        ``on_error="route"``) gave up on, unchanged, with headers ``workbench.error`` (the
        error), ``workbench.error.step``, ``workbench.error.attempts`` and
        ``workbench.error.topic``/``.partition``/``.offset`` (where the record came from)."""
        node = self._node
        if node.op not in ("map_async", "flat_map_async", "pipe"):
            raise DefinitionError(f"step {node.name!r} has no errors output; only map_async, "
                                  "flat_map_async and pipe steps have one.")
        if node.params["spec"].on_error != "route":
            raise DefinitionError(f"step {node.name!r} raises on a failed record; pass "
                                  "on_error='route' (or dead_letter='topic') to send failed "
                                  "records to its errors output.")
        name = f"{node.name}-errors"
        existing = self._pipeline._names.get(name)
        if existing is None or existing.op != "errors" or existing.parents != (node,):
            existing = self._pipeline._add_node("errors", (node,), {"output": 1}, name,
                                                key_changed=None)
        return Stream(self._pipeline, existing)
    def _to_function(self, fn: Callable[[Any], str], topics: list[str] | None,
                     partitions: int | None, name: str | None, key: Any, value: Any,
                     with_record: bool) -> Stream:
        """``to(topic function)``: a ``topic_sink`` step (see :mod:`workbench.runtime.sink_ops`)."""
        from ._checks import check_partitions
        from .pipeline import check_topic_name
        from .serde.dsl import serde_arg

        declared: tuple[str, ...] | None = None
        name = name or "to-topic-function"  # a fixed default: running the cell again replaces it
        if topics is not None:
            if isinstance(topics, str) or not topics:
                raise DefinitionError("to(topic function, topics=[...]) takes a non-empty list "
                                      "of the topic names the function may return.")
            declared = tuple(dict.fromkeys(topics))
            for t in declared:
                check_topic_name(t, "to(topic function, topics=[...])")
                self._pipeline._register_sink(t, name, self._node)
        elif key is not None or value is not None or partitions is not None:
            raise DefinitionError(
                "to(topic function, key=/value=/partitions=): serdes and partition counts are "
                "given to declared topics; list them with topics=[...].")
        check_partitions(partitions, "to(topic function)")
        pipeline = self._pipeline

        def reserved() -> dict[str, str]:
            """Topics this step may not write: read by the pipeline or written by another
            step (resolved when the run starts)."""
            out = {t: f"is read by pipeline {pipeline.name!r}" for t in pipeline.sources}
            for n in pipeline._nodes:
                if n.op == "sink":
                    out[n.params["topic"]] = f"is written by step {n.name!r}"
                elif n.op == "topic_sink" and n is not node and n.params.get("topics"):
                    for t in n.params["topics"]:
                        out[t] = f"is written by step {n.name!r}"
            return out

        params = {"fn": fn, "with_record": with_record, "topics": declared,
                  "partitions": partitions, "reserved": reserved,
                  "key_serde": serde_arg(key, "to(topic function", "key"),
                  "value_serde": serde_arg(value, "to(topic function", "value")}
        node = self._add("topic_sink", params, name)
        return self

    def repartition(self, partitions: int | None = None, *, name: str | None = None) -> Stream:
        """Send the records through a repartition topic (``<app>-<step>-repartition``) with
        ``partitions`` partitions (default: as many as the input), so that the next steps run
        in that many tasks, each key in one of them (Kafka Streams' ``repartition()``). A record
        with a ``None`` key is dropped there, as in Kafka Streams (counted, and logged once)."""
        from ._checks import check_partitions

        check_partitions(partitions, "repartition()")
        return self._derive(self._add("repartition", {"partitions": partitions}, name,
                                      key_changed=False))

    def foreach(self, fn: Callable[[Any], Any], *, name: str | None = None,
                with_record: bool = False) -> None:
        """Call ``fn(value)`` (``with_record=True``: ``fn(record)``) for each record, for its
        side effects; nothing comes out (Kafka Streams' terminal ``foreach``). Like ``to()``,
        it makes the stream part of every run. Side effects are at-least-once: after a crash,
        records processed but not committed are processed again."""
        _check_callable(fn, "foreach")
        self._add("foreach", {"fn": fn, "with_record": with_record}, name)

    def print(self, file: Any = None, *, label: str | None = None,
              mapper: Callable[[Any, Any], Any] | None = None,
              name: str | None = None) -> None:
        """Print one line per record, ``[label]: key, value`` (Kafka Streams' ``print``), to the
        log (logger ``workbench.print``, level INFO) or, with ``file="path"``, appended to that
        file. ``label`` defaults to the step's name; ``mapper(key, value)`` replaces
        ``key, value``. At-least-once, like :meth:`foreach`."""
        import os

        if file is not None and not isinstance(file, str | os.PathLike):
            raise DefinitionError(f"print(file=...) takes a path, got {file!r}; leave it out to "
                                  "print to the log (logger 'workbench.print').")
        if mapper is not None:
            _check_callable(mapper, "print(mapper=)", "function (key, value) -> text")
        if label is not None and not isinstance(label, str):
            raise DefinitionError(f"print(label=...) takes a string, got {label!r}.")
        self._add("print", {"path": file, "label": label, "mapper": mapper}, name)

    # -- stateful steps -----------------------------------------------------------------------
    def group_by(
        self, key: str | Callable[[Any], Any], *, name: str | None = None
    ) -> GroupedStream:
        """Group by a field name or a function of the value (re-keys the stream; the next
        aggregation reads it through a repartition topic)."""
        from .expressions import Expr
        from .grouped import GroupedStream

        if isinstance(key, str):
            self._check_field(key, "group_by")
            params: dict[str, Any] = {"field": key, "fn": None, "with_record": False}
            key_name: str | None = key
        elif isinstance(key, Expr):
            self._check_expr(key, "group_by")
            params = {"field": None, "fn": None, "expr": key, "with_record": False}
            key_name = key.name
        else:
            _check_callable(key, "group_by", "field name, expression or function")
            params = {"field": None, "fn": key, "with_record": False}
            key_name = None
        node = self._add("group_by", params, name, key_changed=True)
        return GroupedStream(self._pipeline, node, key_name)

    def group_by_key(self) -> GroupedStream:
        """Group by the current key (no re-keying)."""
        from .grouped import GroupedStream

        return GroupedStream(self._pipeline, self._node, None)

    def to_table(self, *, name: str | None = None) -> Table:
        """Read the stream as a changelog: the latest value per key (``None`` deletes)."""
        from .table import Table

        node = self._add("to_table", {"stores": [("store", "kv")]}, name, key_changed=False)
        node.stateful = True
        return Table(self._pipeline, node)

    def join(
        self,
        other: Stream | Table | GlobalTable,
        *,
        how: str = "inner",
        combine: Callable[[Any, Any], Any] | None = None,
        within: Any = None,
        grace: Any = 0,
        before: Any = None,
        after: Any = None,
        on: str | Callable[[Any], Any] | None = None,
        name: str | None = None,
    ) -> Stream:
        """Join with a table on the key (``how`` = inner, left), with a global table on
        ``on=`` (a field name or a function of the value giving the table's key; ``how`` =
        inner, left), or with another stream within a time difference (``within=``, or
        ``before=``/``after=``; ``how`` = inner, left, outer).

        Without ``combine(left, right)``, dict values merge: the right side's fields are added
        (absent on an unmatched left or outer row).
        """
        from .global_table import GlobalTable
        from .joins import JoinWindow, check_combine, check_how
        from .table import Table

        check_combine(combine)
        if isinstance(other, GlobalTable):
            return self._join_global(other, how=how, combine=combine, on=on, name=name,
                                     windowed=within is not None or before is not None
                                     or after is not None or bool(grace))
        if on is not None:
            raise DefinitionError(
                "join(on=...) selects the key of a global table (p.global_table(...)); a "
                "stream joins a table or a stream on its own key. Re-key the stream first "
                "(key_by), or join a global table.")
        if isinstance(other, Table):
            if within is not None or before is not None or after is not None:
                raise DefinitionError("a stream-table join has no time window; drop within=.")
            if other._pipeline is not self._pipeline:
                raise DefinitionError("join() of a stream and a table from different pipelines.")
            check_how(how, ("inner", "left"), "stream-table join")
            params = {"how": how, "combine": combine, "stores": [("table", "kv")],
                      **_versioned_join(other, grace)}
            node = self._add("join_stream_table", params,
                             name, parents=(self._node, other._node), key_changed=False)
            node.stateful = True
            return self._derive(node)
        if isinstance(other, Stream):
            if other._pipeline is not self._pipeline:
                raise DefinitionError("join() of streams from different pipelines.")
            check_how(how, ("inner", "left", "outer"), "stream-stream join")
            window = JoinWindow(within, grace, before=before, after=after)
            node = self._add("join_stream_stream",
                             {"how": how, "combine": combine, "window": window,
                              "stores": [("this", "window"), ("other", "window"),
                                         ("outer", "kv")]},
                             name, parents=(self._node, other._node), key_changed=False)
            node.stateful = True
            return self._derive(node)
        raise DefinitionError(f"join() needs a Stream, a Table or a GlobalTable, got {other!r}.")

    def _join_global(self, other: GlobalTable, *, how: str,
                     combine: Callable[[Any, Any], Any] | None, on: Any, name: str | None,
                     windowed: bool) -> Stream:
        """The stream-global-table join (``KStream#join(GlobalKTable, KeyValueMapper, ...)``)."""
        from .expressions import Expr
        from .joins import check_how

        if other._pipeline is not self._pipeline:
            raise DefinitionError("join() of a stream and a global table from different "
                                  "pipelines.")
        if windowed:
            raise DefinitionError("a stream-global-table join has no time window or grace; "
                                  "drop within=/before=/after=/grace=.")
        check_how(how, ("inner", "left"), "stream-global-table join")
        if on is None:
            raise DefinitionError(
                f"join({other.name!r}) needs on=: a field name or a function of the stream's "
                "value giving the global table's key, e.g. on='customer_id'.")
        if isinstance(on, str):
            self._check_field(on, "join(on=...)")
            params: dict[str, Any] = {"field": on, "on": None}
        elif isinstance(on, Expr):
            raise DefinitionError("join(on=...) takes a field name or a function; use "
                                  "on='field' for a field.")
        else:
            _check_callable(on, "join(on=...)", "field name or function")
            params = {"field": None, "on": on}
        params.update({"how": how, "combine": combine, "global": other._node.name})
        node = self._add("join_global", params, name, parents=(self._node, other._node))
        return self._derive(node)

    def process(
        self,
        processor: Any,
        *,
        stores: dict[str, str] | None = None,
        global_stores: Any = None,
        name: str | None = None,
    ) -> Stream:
        """Run a custom :class:`~workbench.processors.Processor` (a class or a zero-argument
        factory; one instance per task) with the named state stores (``{"name": "kv" |
        "window" | "timestamped" | "session" | ("session", retention)}``, see
        :meth:`workbench.processors.ProcessorContext.store`) and read-only global tables
        (``global_stores=[customers]`` or ``{"name": customers}``: ``ctx.store(name)`` gives
        the table's latest value per key, the same in every task)."""
        _check_callable(processor, "process", "Processor class or factory")
        globals_ = self._global_stores(global_stores, stores or {})
        stores = dict(stores or {})
        from .pipeline import _NAME

        kinds: dict[str, str] = {}
        options: dict[str, dict[str, Any]] = {}
        for store, kind in stores.items():
            if not isinstance(store, str) or not _NAME.match(store):
                raise DefinitionError(
                    f"process(stores={{{store!r}: ...}}): a store name must start with a letter "
                    "or digit and contain only letters, digits, '.', '_' and '-' (it names a "
                    "changelog topic).")
            kinds[store], options[store] = _store_kind(store, kind)
        node = self._add("process",
                         {"factory": processor, "store_names": list(stores),
                          "stores": [(s, k) for s, k in kinds.items()],
                          "store_options": options,
                          "repartition": bool(stores),
                          "globals": {alias: g._node.name for alias, g in globals_.items()}},
                         name, key_changed=True,
                         parents=(self._node, *(g._node for g in globals_.values())))
        node.stateful = bool(stores)
        return self._derive(node)

    def _global_stores(self, spec: Any, stores: dict[str, str]) -> dict[str, GlobalTable]:
        """``global_stores=`` as ``{name in the processor: GlobalTable}``."""
        from .global_table import GlobalTable

        if spec is None:
            return {}
        items = list(spec.items()) if isinstance(spec, dict) else [
            (g.name if isinstance(g, GlobalTable) else None, g) for g in spec]
        out: dict[str, GlobalTable] = {}
        for alias, table in items:
            if not isinstance(table, GlobalTable):
                raise DefinitionError(
                    f"process(global_stores=...) takes global tables (p.global_table(topic)), "
                    f"got {table!r}.")
            if table._pipeline is not self._pipeline:
                raise DefinitionError("process(global_stores=...): the global table "
                                      f"{table.name!r} belongs to another pipeline.")
            if not isinstance(alias, str) or alias in stores or alias in out:
                raise DefinitionError(
                    f"process(global_stores=...): {alias!r} must be a name, different from "
                    "the processor's own stores and from the other global stores.")
            out[alias] = table
        return out

    # -- previews -----------------------------------------------------------------------------
    @public
    def to_pandas(self, limit: int | None = None) -> pd.DataFrame:
        """Run the sources' samples through the pipeline on the in-memory driver and return this
        step's output as a DataFrame: ``key``, ``timestamp`` (UTC), then the value's columns.

        Args:
            limit: return at most this many rows (all rows when ``None``).
        """
        from .preview import preview_frame

        return preview_frame(self._pipeline, self._node, limit=limit)

    def __repr__(self) -> str:
        return f"<Stream {self._node.name!r} of pipeline {self._pipeline.name!r}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from .display import stream_bundle

        return stream_bundle(self._pipeline, self._node)

    # -- helpers ------------------------------------------------------------------------------
    def _check_expr(self, e: Expr, step: str) -> None:
        for field in sorted(e.columns()):
            self._check_field(field, step)

    def _check_field(self, field: str, step: str) -> None:
        columns = self._pipeline._known_columns(self._node)
        if columns is not None and field not in columns:
            raise DefinitionError(
                f"{step}({field!r}): the records of step {self._node.name!r} have no field "
                f"{field!r}." + did_you_mean(field, columns)
            )


def _store_kind(store: str, kind: Any) -> tuple[str, dict[str, Any]]:
    """A processor store's declaration: ``"kv"``, ``"window"``, ``"timestamped"``,
    ``"session"`` or ``("session", retention)``, as ``(kind, options)``."""
    from ._time import duration_ms

    where = f"process(stores={{{store!r}: {kind!r}}})"
    if isinstance(kind, tuple) and len(kind) == 2 and kind[0] == "session":
        retention = duration_ms(kind[1], f"{where}: the retention")
        if retention < 1:
            raise DefinitionError(f"{where}: the retention must be at least 1 ms.")
        return "session", {"retention": retention}
    if kind in ("kv", "window", "timestamped", "session"):
        return str(kind), {}
    raise DefinitionError(f"{where}: store kinds are 'kv', 'window', 'timestamped', 'session' "
                          "and ('session', retention), e.g. ('session', '1h').")


def _versioned_join(table: Table, grace: Any) -> dict[str, Any]:
    """The parameters a stream-table join takes from a versioned table (``history``, the
    versioned store, the grace buffer); ``{}`` for an ordinary table."""
    from ._time import duration_ms
    from .table import versioned_history

    history, direct = versioned_history(table._node)
    grace_ms = duration_ms(grace, "join(grace=...)") if grace else 0
    if history is None:
        if grace_ms:
            raise DefinitionError(
                f"join({table.name!r}, grace={grace!r}): a grace period needs a versioned "
                "table (p.table(topic, history=...)); an ordinary table has only its latest "
                "value to join.")
        return {}
    if not direct:
        raise DefinitionError(
            f"join({table.name!r}): {table.name!r} is derived from a versioned table; join "
            "the versioned table itself (filter or map the joined stream instead), so that "
            "each stream record sees the version valid at its timestamp.")
    if grace_ms > history:
        raise DefinitionError(
            f"join({table.name!r}, grace={grace!r}): the grace ({grace_ms} ms) may not exceed "
            f"the table's history ({history} ms); older versions are gone by then.")
    params: dict[str, Any] = {"history": history, "stores": [("table", "versioned")]}
    if grace:
        params["grace"] = grace_ms
        params["stores"].append(("buffer", "kv"))
    return params


class Branches:
    """The named outputs of :meth:`Stream.split`: ``branches.big``, ``branches["big"]`` and
    the default branch, ``branches.rest`` unless ``split(default=...)`` named it otherwise
    (the records no predicate matched)."""

    def __init__(self, handles: dict[str, Stream]) -> None:
        self._handles = handles

    def __getattr__(self, label: str) -> Stream:
        handles: dict[str, Stream] = self.__dict__.get("_handles", {})
        if label in handles:
            return handles[label]
        raise AttributeError(f"no branch {label!r}." + did_you_mean(label, handles))

    def __getitem__(self, label: str) -> Stream:
        try:
            return self._handles[label]
        except KeyError:
            raise KeyError(f"no branch {label!r}." + did_you_mean(label, self._handles)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._handles)

    def __len__(self) -> int:
        return len(self._handles)

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self._handles]

    def __repr__(self) -> str:
        return f"<Branches {', '.join(self._handles)}>"
