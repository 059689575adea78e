"""Run a conformance case (``cases/*.json`` format, see README.md) through workbench.

:func:`build_pipeline` translates a case's ``topology`` into the workbench DSL: the same
topology ``oracle/src/main/java/Oracle.java`` builds with Kafka Streams, through the public API
only (``wb.Pipeline``, ``p.source``, ``p.table``, ``group_by_key``/``group_by``, ``window``,
``count``/``aggregate``/``reduce``, ``join``, ``changes``, ``to``). :func:`run_case` pipes the
case's records through :class:`workbench.testing.TestDriver` in list order (pipe order) and
returns the output records in the oracle's format::

    {"in": 3, "key": "A", "start": 0, "end": 10, "value": "3", "ts": 8}

The user functions follow the oracle's Java definitions, Java string conventions included:

- **sum**: ``aggregate(0, acc + number(v))``, ``number`` = the long after the last ``|`` (or
  the whole value), a ``None`` value adds 0; session merge ``a + b``;
- **count**: ``count()``; **reduce_concat**: ``reduce(agg + "," + v)``;
- aggregates print as strings (``3`` → ``"3"``);
- **joiner** of every join: ``l + "+" + r`` with Java's ``"null"`` for a missing side;
- **foreign key** (``join_fk``, ``group_by: "fk"``): the part of the value before the first
  ``|``; a value without ``|`` (or a ``None`` value) has a ``None`` foreign key.

:func:`workbench_reference` says which oracle configuration workbench is meant to reproduce for
a case (workbench models no record cache, no store retention for ``emit="close"``, no suppress
and no versioned tables; ``docs/conformance.md`` explains each).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import workbench as wb
from tests.conformance.spec_extra import (
    EXTRA_OPS,
    build_extra,
    has_suppress,
    has_versioned_tables,
    output_topics,
    suppressed,
    table_of,
)
from workbench.testing import TestDriver
from workbench.windows import Windowed

__all__ = [
    "LONG_RETENTION",
    "Unsupported",
    "build_pipeline",
    "foreign_key",
    "java_concat",
    "joiner",
    "number",
    "run_case",
    "run_case_full",
    "workbench_reference",
]

#: topic that receives an aggregation's ``late`` output (header ``workbench.dropped``)
DROPPED_TOPIC = "dropped"
#: operations whose aggregation has a ``late`` output (to ``DROPPED_TOPIC``) while other
#: operators of the topology count what they drop (a table source's ``None`` keys)
LATE_AND_COUNTED = ("table_group_by", "table_filter")

#: Store retention given to the oracle for ``emit="close"`` cases: nothing expires within the
#: time ranges the cases use, so Kafka Streams emits every final result (``semantics.md``).
LONG_RETENTION = 1_000_000_000


class Unsupported(ValueError):
    """The case uses a Kafka Streams feature workbench does not have (see
    :func:`workbench_reference`)."""


# ------------------------------------------------------------------------- user functions
def java_str(x: Any) -> str:
    """``String.valueOf(x)``: ``None`` prints as ``"null"``."""
    return "null" if x is None else str(x)


def java_concat(*parts: Any) -> str:
    """Java string concatenation ``a + b + ...`` (``null`` operands print as ``"null"``)."""
    return "".join(java_str(p) for p in parts)


def joiner(left: Any, right: Any) -> str:
    """The oracle's joiner ``(l, r) -> l + "+" + r``."""
    return java_concat(left, "+", right)


def number(value: str | None) -> int:
    """The oracle's ``number(v)``: the long after the last ``|`` (or the whole value); ``None``
    counts as 0."""
    if value is None:
        return 0
    return int(value[value.rfind("|") + 1 :].strip())


def sum_add(acc: int, value: str | None) -> int:
    return acc + number(value)


def sum_merge(a: int, b: int) -> int:
    return a + b


def concat_reduce(acc: Any, value: Any) -> str:
    """The oracle's reducer ``(a, v) -> a + "," + v``."""
    return java_concat(acc, ",", value)


def foreign_key(value: str | None) -> str | None:
    """The part of the value before the first ``|``; ``None`` if there is none."""
    if value is None:
        return None
    bar = value.find("|")
    return None if bar < 0 else value[:bar]


# ------------------------------------------------------------------------------- topology
def _window(spec: dict[str, Any]) -> wb.Tumbling | wb.Hopping | wb.Sliding | wb.Session:
    kind = spec["type"]
    grace = int(spec.get("grace", 0))  # absent grace = Kafka's ...WithNoGrace factory
    if kind == "tumbling":
        return wb.Tumbling(int(spec["size"]), grace=grace)
    if kind == "hopping":
        return wb.Hopping(int(spec["size"]), int(spec["advance"]), grace=grace)
    if kind == "sliding":
        return wb.Sliding(int(spec["difference"]), grace=grace)
    if kind == "session":
        return wb.Session(int(spec["gap"]), grace=grace)
    raise ValueError(f"unknown window type: {kind!r}")


def _aggregate(grouped: wb.GroupedStream, agg: str) -> wb.Table:
    if agg == "count":
        return grouped.count()
    if agg == "sum":
        return grouped.aggregate(0, sum_add, merge=sum_merge)
    if agg == "reduce_concat":
        return grouped.reduce(concat_reduce)
    raise ValueError(f"unknown agg: {agg!r}")


def _check_versioned(topo: dict[str, Any]) -> None:
    if topo.get("versioned") and not has_versioned_tables():
        raise Unsupported("workbench has no versioned tables yet (issue 15)")


def build_pipeline(topology: dict[str, Any], name: str = "conformance") -> wb.Pipeline:
    """The workbench pipeline for a case's ``topology``; results go to topic ``out``, and an
    aggregation's ``late`` output (records it did not count) to topic ``dropped``.

    Options that configure Kafka Streams' stores rather than the topology (``retention``,
    ``caching``, ``store``) are ignored. Raises :class:`Unsupported` for what workbench does not
    have yet (``suppress``, versioned tables: see :func:`spec_extra.missing_dsl`). The
    operations of issue 15 are built by :func:`spec_extra.build_extra`.
    """
    op = topology["op"]
    p = wb.Pipeline(name)
    if op in EXTRA_OPS:
        build_extra(p, topology)
        return p
    if op == "window_agg":
        emit = topology.get("emit", "update")
        spec = topology
        if emit == "suppress":
            if not has_suppress():
                raise Unsupported("workbench has no suppress(); emit='close' gives final results")
            emit, spec = "update", {"suppress": {"until": "window_close"}}
        grouped = p.source("in").group_by_key()
        windowed = grouped.window(_window(topology["window"]), emit=emit)
        table = _aggregate(windowed, topology.get("agg", "count"))
        suppressed(table, spec).changes().to("out")
        table.late.to(DROPPED_TOPIC)
    elif op == "agg":
        stream = p.source("in")
        group_by = topology.get("group_by", "key")
        if group_by == "key":
            grouped = stream.group_by_key()
        elif group_by == "fk":
            grouped = stream.group_by(foreign_key)
        else:
            raise ValueError(f"unknown group_by: {group_by!r}")
        table = _aggregate(grouped, topology.get("agg", "count"))
        suppressed(table, topology).changes().to("out")
        table.late.to(DROPPED_TOPIC)
    elif op == "join_ss":
        how = topology.get("how", "inner")
        difference = topology.get("difference", 0)
        before = int(topology.get("before", difference))
        after = int(topology.get("after", difference))
        left, right = p.source("left"), p.source("right")
        left.join(right, how=how, combine=joiner, before=before, after=after,
                  grace=int(topology.get("grace", 0))).to("out")
    elif op == "join_st":
        _check_versioned(topology)
        stream, table = p.source("left"), table_of(p, "right", topology)
        grace = {"grace": int(topology["join_grace"])} if "join_grace" in topology else {}
        stream.join(table, how=topology.get("how", "inner"), combine=joiner,
                    **grace).to("out")
    elif op == "join_tt":
        _check_versioned(topology)
        left_table, right_table = table_of(p, "left", topology), table_of(p, "right", topology)
        left_table.join(right_table, how=topology.get("how", "inner"),
                        combine=joiner).changes().to("out")
    elif op == "join_fk":
        orders, customers = p.table("left"), p.table("right")
        orders.join(customers, how=topology.get("how", "inner"), combine=joiner,
                    on=foreign_key).changes().to("out")
    elif op == "table":
        _check_versioned(topology)
        suppressed(table_of(p, "in", topology), topology).changes().to("out")
    else:
        raise ValueError(f"unknown op: {op!r}")
    return p


# ---------------------------------------------------------------------------------- running
def _value(value: Any) -> str | None:
    """Aggregates print as strings, like the oracle's ``mapValues(Object::toString)``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"unexpected output value {value!r} (type {type(value).__name__})")
    return str(value)


def _output(index: int | str, record: wb.Record) -> dict[str, Any]:
    key = record.key
    if isinstance(key, Windowed):
        return {"in": index, "key": key.key, "start": key.window_start,
                "end": key.window_end, "value": _value(record.value), "ts": record.timestamp}
    return {"in": index, "key": key, "value": _value(record.value), "ts": record.timestamp}


def run_case(case: dict[str, Any], *, end_of_input: bool = False) -> list[dict[str, Any]]:
    """Pipe the case's records through workbench in list order and return its outputs.

    Each output is tagged with the index of the input record whose processing produced it.
    With ``end_of_input=True`` the test driver's end-of-input flush (``TestDriver.end()``, which
    Kafka Streams does not have) runs last and its outputs are tagged ``"in": "end"``.
    """
    return run_case_full(case, end_of_input=end_of_input)["outputs"]


def run_case_full(case: dict[str, Any], *, end_of_input: bool = False,
                  serdes: str = "json", partitions: int | None = None) -> dict[str, Any]:
    """Like :func:`run_case`, and also what workbench dropped, and whether it failed:
    ``{"outputs", "dropped"[, "failure"]}``.

    ``serdes="string+avro"`` gives every source, table and output topic String keys and Avro
    values (:func:`typed_topics`), so every record goes through those serdes, as in Kafka
    Streams with ``Serdes.String()`` and an Avro value serde (the oracle's String serdes see
    the same keys and values).

    ``dropped`` lists ``{"in": index, "count": n, "reasons": [...]}`` for the input records
    that made workbench drop something, in the oracle's format (plus ``reasons``):

    - aggregations (``window_agg``, ``agg``): the records of the aggregation's ``late``
      output, ``reasons`` being their ``workbench.dropped`` headers (``late``, ``null-key``,
      ``null-value``);
    - every other operation (joins, tables, ...; no ``late`` output): the growth of the
      operators' ``dropped`` counters (``reasons`` is ``["counted"]``).

    ``partitions``: every source topic gets that many partitions (default 1, as in
    TopologyTestDriver); outputs of one input record may then come from several tasks.

    ``failure`` (``{"in": index, "error": message}``) says that piping record ``index`` raised
    a workbench error (e.g. a full suppress buffer with ``when_full="fail"``); nothing is piped
    after it and its outputs are not read, as in the oracle.
    """
    topo = case["topology"]
    pipeline = build_pipeline(topo)
    if serdes == "string+avro":
        typed_topics(pipeline)
    aggregation = topo["op"] in ("window_agg", "agg")
    #: operations with a late output as well as operators that count what they drop
    late_and_counted = topo["op"] in LATE_AND_COUNTED
    topics = output_topics(topo)
    outputs: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    result: dict[str, Any] = {"outputs": outputs, "dropped": dropped}

    def collect(index: int | str, td: TestDriver, counted_before: int) -> int:
        for topic in topics:
            tag = {"topic": topic} if len(topics) > 1 else {}
            outputs.extend({**_output(index, r), **tag} for r in td.output(topic).read_records())
        if aggregation:
            late = td.output(DROPPED_TOPIC).read_records()
            if late:
                dropped.append({"in": index, "count": len(late),
                                "reasons": [_reason(r) for r in late]})
            return 0
        counted = _operator_drops(td)
        reasons = ["counted"] * (counted - counted_before)
        if late_and_counted and DROPPED_TOPIC in td.plan.topics:
            reasons += [_reason(r) for r in td.output(DROPPED_TOPIC).read_records()]
        if reasons:
            dropped.append({"in": index, "count": len(reasons), "reasons": reasons})
        return counted

    printed = [n.params["path"] for n in pipeline._nodes if n.op == "print"]
    lines_read = 0

    def collect_printed(index: int) -> None:
        """A print step's new lines, as the oracle reports them."""
        nonlocal lines_read
        for path in printed:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
            outputs.extend({"in": index, "key": None, "value": line, "ts": 0}
                           for line in lines[lines_read:])
            lines_read = len(lines)

    try:
        return _pipe_case(case, pipeline, end_of_input, result, collect, collect_printed,
                          partitions)
    finally:
        for path in printed:
            os.remove(path)


def _pipe_case(case: dict[str, Any], pipeline: wb.Pipeline, end_of_input: bool,
               result: dict[str, Any], collect: Any, collect_printed: Any,
               partitions: int | None = None) -> dict[str, Any]:
    """Pipe the case's records (see :func:`run_case_full`)."""
    with TestDriver(pipeline, partitions=partitions) as td:
        inputs = {topic: td.input(topic) for topic in pipeline.sources}
        counted = 0
        for index, rec in enumerate(case["records"]):
            try:
                inputs[rec["topic"]].pipe(rec["key"], rec["value"], timestamp=int(rec["ts"]))
            except wb.WorkbenchError as exc:
                result["failure"] = {"in": index, "error": f"{type(exc).__name__}: {exc}"}
                return result
            counted = collect(index, td, counted)
            collect_printed(index)
        if end_of_input:
            td.end()
            collect("end", td, counted)
    return result


#: the Avro value schema of the typed runs: the values the cases use (strings, numbers of
#: aggregations, booleans) or null
AVRO_VALUES = ["null", "string", "long", "double", "boolean"]


def typed_topics(pipeline: wb.Pipeline) -> wb.Pipeline:
    """Give the pipeline's source, table and output topics String keys and Avro values (the
    serdes ``p.source(topic, key=..., value=...)`` and ``to(topic, key=..., value=...)`` set);
    windowed output keys then take Kafka Streams' windowed layouts, repartition topics inherit
    them as Kafka Streams' serdes do."""
    key, value = wb.serde.string(), wb.serde.avro(AVRO_VALUES)
    for node in pipeline._nodes:
        if node.op in ("source", "table_source") or node.op == "sink":
            node.params["key_serde"], node.params["value_serde"] = key, value
    return pipeline


def _reason(record: wb.Record) -> str:
    for name, value in record.headers or ():
        if name == "workbench.dropped":
            return value.decode() if isinstance(value, bytes) else str(value)
    raise AssertionError(f"late record without a workbench.dropped header: {record!r}")


def _operator_drops(td: TestDriver) -> int:
    """The sum of every operator's ``dropped`` counter (joins and table sources count the
    records they drop) and of the global tables' (``None`` keys): what
    ``Engine.dropped_counts`` reports."""
    return sum(td.engine.dropped_counts().values())


# ------------------------------------------------------------------------ reference config
def workbench_reference(case: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The case as the oracle must run it for workbench to match, and why it differs.

    Returns ``(oracle_case, reasons)``; ``reasons`` is empty when the case runs unchanged.
    workbench's own decisions (``docs/conformance.md``):

    - no record cache (TopologyTestDriver with ``statestore.cache.max.bytes=0``): ``caching``
      is turned off;
    - ``emit="close"`` emits every final result, as Kafka Streams does when its window store
      keeps the window until it closes: for time and sliding windows the oracle gets a long
      ``retention`` (caching off, in-memory stores) instead of the default one, whose expiry
      loses results; for session windows it uses the RocksDB store with the default retention,
      which emits every closed session while merging exactly as the update path does (a
      session that ended at or before stream time - gap - grace no longer merges);
    - ``emit="update"`` and ``suppress`` (which reads the updates) see the windows Kafka's
      default store retention keeps: a case's longer ``retention`` is dropped;
    - without ``Table.suppress``: ``emit="suppress"`` cases run with ``emit="close"`` on both
      sides;
    - no versioned tables yet: the non-versioned topology is compared (until
      ``Pipeline.table(history=)`` exists).
    """
    ref = copy.deepcopy(case)
    topo = ref["topology"]
    reasons: list[str] = []
    if ref.pop("caching", False) | topo.pop("caching", False):
        reasons.append("caching off (workbench has no record cache)")
    if topo.get("op") == "window_agg" and topo.get("emit") == "suppress" and not has_suppress():
        topo["emit"] = "close"
        reasons.append("suppress -> emit='close' (workbench has no suppress)")
    store = ref.pop("store", "in_memory")
    window = topo.get("window") or {}
    if (topo.get("op") == "window_agg" and topo.get("emit") in ("update", "suppress")
            and "retention" in window):
        # the update path (and suppress behind it) models Kafka's default store retention
        del window["retention"]
        reasons.append("default store retention (workbench models Kafka's default)")
    if topo.get("op") == "window_agg" and topo.get("emit") == "close":
        window = topo["window"]
        if window["type"] == "session":
            # Kafka's default store, RocksDB, emits every closed session with the default
            # retention, and (like the in-memory store) no longer finds a session whose end is
            # <= stream time - gap - grace for merging: the sessions workbench computes.
            store = "rocksdb"
            if "retention" in window:
                del window["retention"]
                reasons.append("emit='close' on sessions: default retention")
        else:
            store = "in_memory"
            if window.get("retention", 0) < LONG_RETENTION:
                window["retention"] = LONG_RETENTION
                reasons.append("emit='close': long store retention")
    if store != "in_memory":
        ref["store"] = store
    if store != case.get("store", "in_memory"):
        reasons.append(f"{store} store")
    for key in ("versioned", "history", "join_grace"):
        if key in topo and not has_versioned_tables():
            versioned = topo.pop(key)
            if key != "versioned" or versioned:
                reasons.append(f"no {key} (workbench has no versioned tables)")
    ref.pop("end_of_input", None)
    return ref, reasons
