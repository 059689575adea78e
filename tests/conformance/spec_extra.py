"""Conformance topologies of issue 15 in workbench's DSL: re-grouped tables, cogroup, global
tables, suppress, versioned tables, repartition and ``to(topic function)``.

These operators are not in workbench yet. The DSL calls below follow issue 15's wording
(``table.group_by(fn).aggregate(init, add, subtract=...)``, ``wb.cogroup(g1, add1, g2,
add2).aggregate(init)``, ``p.global_table(topic)`` and ``stream.join(global_table, on=fn)``,
``table.suppress(until="window-close" | wb.TimeLimit(ms), max_records=, max_bytes=,
when_full="emit-early" | "fail")``, ``p.table(topic, history=ms)``,
``stream.repartition(partitions=n)``, ``stream.to(topic_fn)``); whoever adds an operator adjusts
the call here if its final API differs. :func:`missing_dsl` says which DSL feature a case needs
that workbench does not have, so the tests skip such cases until the DSL grows, and then run by
themselves.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import workbench as wb

__all__ = [
    "EXTRA_OPS",
    "build_extra",
    "has_suppress",
    "has_versioned_tables",
    "missing_dsl",
    "suppressed",
    "table_of",
]

#: the case operations built here (the others are in spec.build_pipeline)
EXTRA_OPS = ("table_group_by", "cogroup", "join_global", "repartition", "to_topic",
             "table_filter", "split", "print", "process_session", "process_timestamped",
             "process_global")


# ----------------------------------------------------------------------------- DSL detection
def has_suppress() -> bool:
    """``Table.suppress`` exists."""
    return hasattr(wb.Table, "suppress")


def has_versioned_tables() -> bool:
    """``Pipeline.table`` takes ``history=`` (versioned tables)."""
    return "history" in inspect.signature(wb.Pipeline.table).parameters


def _has_topic_function() -> bool:
    """``Stream.to`` accepts a function choosing the topic per record."""
    p = wb.Pipeline("probe")
    try:
        p.source("probe-in").to(lambda v: "probe-out")  # type: ignore[arg-type]
    except (TypeError, wb.DefinitionError):
        return False
    return True


def missing_dsl(case: dict[str, Any]) -> str | None:
    """The DSL feature ``case`` needs that workbench does not have yet, or ``None``."""
    topo = case["topology"]
    op = topo["op"]
    needs: list[tuple[bool, str]] = [
        (op == "table_group_by", "Table.group_by"),
        (op == "cogroup", "wb.cogroup"),
        (op == "join_global", "Pipeline.global_table"),
        (op == "repartition", "Stream.repartition"),
        ("suppress" in topo, "Table.suppress"),
        (bool(topo.get("versioned")), "Pipeline.table(history=)"),
    ]
    checks: dict[str, Callable[[], bool]] = {
        "Table.group_by": lambda: hasattr(wb.Table, "group_by"),
        "wb.cogroup": lambda: hasattr(wb, "cogroup"),
        "Pipeline.global_table": lambda: hasattr(wb.Pipeline, "global_table"),
        "Stream.repartition": lambda: hasattr(wb.Stream, "repartition"),
        "Table.suppress": has_suppress,
        "Pipeline.table(history=)": has_versioned_tables,
    }
    for needed, feature in needs:
        if needed and not checks[feature]():
            return feature
    if op == "to_topic" and not _has_topic_function():
        return "Stream.to(topic function)"
    if op == "split" and "default" not in inspect.signature(wb.Stream.split).parameters:
        return "Stream.split(default=)"
    if op == "print" and not hasattr(wb.Stream, "print"):
        return "Stream.print"
    return None


def output_topics(topo: dict[str, Any]) -> list[str]:
    """The topics a case's topology writes, in the order the oracle reads them."""
    if topo["op"] == "split":
        names = [b["name"] for b in topo["branches"]]
        if topo.get("default") is not None:
            names.append(topo["default"])
        return [f"out-{n}" for n in names]
    if topo["op"] == "print":
        return []  # the lines of its file
    return list(topo.get("topics", ["out"]))


# ---------------------------------------------------------------------------- building blocks
def table_of(p: wb.Pipeline, topic: str, topo: dict[str, Any]) -> wb.Table:
    """``p.table(topic)``; versioned (``history=``) if the case says so."""
    if topo.get("versioned"):
        return p.table(topic, history=int(topo.get("history", 1_000_000)))  # type: ignore[call-arg]
    return p.table(topic)


def suppressed(table: wb.Table, topo: dict[str, Any]) -> wb.Table:
    """Apply the case's ``suppress`` spec (see README.md) to ``table``."""
    spec = topo.get("suppress")
    if spec is None:
        return table
    kwargs: dict[str, Any] = {}
    if spec["until"] == "window_close":
        kwargs["until"] = "window-close"
    else:
        kwargs["until"] = wb.TimeLimit(int(spec["time_limit"]))  # type: ignore[attr-defined]
    for field in ("max_records", "max_bytes"):
        if field in spec:
            kwargs[field] = int(spec[field])
    if "when_full" in spec:
        kwargs["when_full"] = {"emit_early": "emit-early", "shut_down": "fail"}[spec["when_full"]]
    return table.suppress(**kwargs)  # type: ignore[attr-defined,no-any-return]


def _cogroup_add(agg: str) -> Callable[[int, Any], int]:
    from tests.conformance.spec import number

    if agg == "count":
        return lambda acc, v: acc + 1
    if agg == "sum":
        return lambda acc, v: acc + number(v)
    if agg == "minus":
        return lambda acc, v: acc - number(v)
    raise ValueError(f"unknown cogroup agg: {agg!r}")


# ------------------------------------------------------------------------------- topologies
def build_extra(p: wb.Pipeline, topo: dict[str, Any]) -> None:
    """Add the topology of an issue-15 case (``EXTRA_OPS``) to ``p``; results go to ``out``
    (``to_topic``: to the topics it names)."""
    from tests.conformance.spec import (
        DROPPED_TOPIC,
        _window,
        foreign_key,
        java_str,
        joiner,
        number,
        sum_merge,
    )

    op = topo["op"]
    if op == "table_group_by":
        grouped = table_of(p, "in", topo).group_by(foreign_key)  # type: ignore[attr-defined]
        agg = topo.get("agg", "count")
        if agg == "count":
            result = grouped.count()
        elif agg == "sum":
            result = grouped.aggregate(0, lambda acc, v: acc + number(v),
                                       subtract=lambda acc, v: acc - number(v))
        elif agg == "reduce_sum":
            result = grouped.reduce(lambda a, v: str(number(a) + number(v)),
                                    subtract=lambda a, v: str(number(a) - number(v)))
        else:
            raise ValueError(f"unknown agg: {agg!r}")
        suppressed(result, topo).changes().to("out")
        result.late.to(DROPPED_TOPIC)  # rows in no group (Kafka Streams drops them silently)
    elif op == "cogroup":
        args: list[Any] = []
        for spec in topo["inputs"]:
            args += [p.source(spec["topic"]).group_by_key(), _cogroup_add(spec.get("agg", "count"))]
        co = wb.cogroup(*args)  # type: ignore[attr-defined]
        window = topo.get("window")
        if window is None:
            result = co.aggregate(0)
        else:
            result = co.window(_window(window)).aggregate(0, merge=sum_merge)
        suppressed(result, topo).changes().to("out")
    elif op == "join_global":
        customers = p.global_table("right")  # type: ignore[attr-defined]
        p.source("left").join(customers, on=foreign_key, how=topo.get("how", "inner"),
                              combine=joiner).to("out")
    elif op == "repartition":
        stream = p.source("in")
        if topo.get("key_by") == "fk":
            stream = stream.key_by(foreign_key)
        moved = stream.repartition(partitions=topo.get("partitions"))  # type: ignore[attr-defined]
        if topo.get("then", "forward") == "count":
            moved.group_by_key().count().changes().to("out")
        else:
            moved.to("out")
    elif op in ("process_session", "process_timestamped"):
        if op == "process_session":
            gap = int(topo.get("gap", 5))
            kind: Any = ("session", int(topo.get("retention", 1_000_000)))
            factory: Callable[[], wb.Processor] = lambda: SessionCommands(gap)  # noqa: E731
        else:
            kind, factory = "timestamped", TimestampedCommands
        p.source("in").process(factory, stores={"store": kind}).to("out")
    elif op == "process_global":
        customers = p.global_table("right")
        p.source("left").process(GlobalCommands, global_stores={"global": customers}).to("out")
    elif op == "to_topic":
        if topo.get("by") == "key":  # "out-" + the key, "out-null" for a null key
            p.source("in").to(lambda r: "out-" + java_str(r.key), with_record=True)
        else:
            p.source("in").to(lambda v: "out-" + (foreign_key(v) or "none"))  # type: ignore[arg-type]
    elif op == "print":
        import tempfile

        fd, path = tempfile.mkstemp(prefix="workbench-print-", suffix=".txt")
        os.close(fd)
        mapper = (lambda k, v: v) if topo.get("mapper") == "value" else None
        p.source("in").print(path, label=topo["label"], mapper=mapper)
    elif op == "table_filter":
        low = int(topo.get("min", 0))
        filtered = p.table("in").filter(lambda v, low=low: number(v) >= low)
        then = topo.get("then", "changes")
        if then == "changes":
            filtered.changes().to("out")
        elif then == "filter_changes":
            high = int(topo.get("max", 2**63 - 1))
            filtered.filter(lambda v: number(v) <= high).changes().to("out")
        elif then == "map_changes":
            filtered.map_values(lambda v: v + "!").changes().to("out")
        elif then == "group_count":
            counts = filtered.group_by(foreign_key).count()
            counts.changes().to("out")
            counts.late.to(DROPPED_TOPIC)
        elif then == "join":
            filtered.join(p.table("right"), how=topo.get("how", "inner"),
                          combine=joiner).changes().to("out")
        elif then == "fk_join":
            filtered.join(p.table("right"), on=foreign_key, combine=joiner).changes().to("out")
        elif then == "suppress":
            suppressed(filtered, topo).changes().to("out")
        else:
            raise ValueError(f"unknown then: {then!r}")
    elif op == "split":
        def has_fk(fk: str | None) -> Callable[[Any], bool]:
            return lambda v: foreign_key(v) == fk

        branches = {b["name"]: has_fk(b.get("fk")) for b in topo["branches"]}
        default = topo.get("default")
        parts = p.source("in").split(default=default, **branches)
        for name in output_topics(topo):
            parts[name.removeprefix("out-")].to(name)
    else:
        raise ValueError(f"unknown op: {op!r}")


# ---------------------------------------------------------------- Processor API store commands
def _command(value: str | None) -> list[str]:
    return ["none"] if value is None else value.split("|")


class SessionCommands(wb.Processor):
    """The oracle's ``ProcessorTopologies.SessionCommands`` on a workbench session store: one
    command per input value (README.md), its result forwarded as a string."""

    def __init__(self, gap: int) -> None:
        self.gap = gap

    def init(self, ctx: Any) -> None:
        self.ctx = ctx
        self.store = ctx.store("store")

    @staticmethod
    def _format(sessions: list[tuple[wb.Windowed, Any]]) -> str:
        return ";".join(f"[{w.window_start},{w.window_end}]={v}" for w, v in sessions)

    def process(self, record: wb.Record) -> None:
        key, ts, c = record.key, record.timestamp, _command(record.value)
        store = self.store
        if c[0] == "merge":
            found = store.find_sessions(key, ts - self.gap, ts + self.gap)
            start = min([ts] + [w.window_start for w, _v in found])
            end = max([ts] + [w.window_end for w, _v in found])
            total = int(c[1]) + sum(v for _w, v in found)
            for w, _v in found:
                store.remove(w)
            store.put(wb.Windowed(key, start, end), total)
            out = f"merge {self._format(found)} -> [{start},{end}]={total}"
        elif c[0] == "put":
            store.put(wb.Windowed(key, int(c[1]), int(c[2])), int(c[3]))
            out = "put"
        elif c[0] == "del":
            store.put(wb.Windowed(key, int(c[1]), int(c[2])), None)
            out = "del"
        elif c[0] == "remove":
            store.remove(wb.Windowed(key, int(c[1]), int(c[2])))
            out = "remove"
        elif c[0] == "find":
            out = "find " + self._format(store.find_sessions(key, int(c[1]), int(c[2])))
        elif c[0] == "fetch":
            out = "fetch " + self._format(store.fetch(key))
        elif c[0] == "get":
            value = store.fetch_session(key, int(c[1]), int(c[2]))
            out = f"get {'null' if value is None else value}"
        else:
            out = "unknown"
        self.ctx.forward(key, out)


class TimestampedCommands(wb.Processor):
    """The oracle's ``ProcessorTopologies.TimestampedCommands`` on a workbench timestamped
    key-value store."""

    def init(self, ctx: Any) -> None:
        self.ctx = ctx
        self.store = ctx.store("store")

    @staticmethod
    def _one(entry: wb.ValueAndTimestamp | None) -> str:
        return "null" if entry is None else f"{entry.value}@{entry.timestamp}"

    def _many(self, entries: list[tuple[Any, wb.ValueAndTimestamp]]) -> str:
        return ";".join(f"{k}={self._one(v)}" for k, v in entries)

    def process(self, record: wb.Record) -> None:
        key, ts, c = record.key, record.timestamp, _command(record.value)
        store = self.store
        if c[0] == "put":
            old = store.get(key)
            store.put(key, c[1], ts)
            out = f"put old={self._one(old)}"
        elif c[0] == "newer":
            old = store.get(key)
            apply = old is None or ts >= old.timestamp
            if apply:
                store.put(key, c[1], ts)
            out = f"newer {'yes' if apply else 'no'} old={self._one(old)}"
        elif c[0] == "absent":
            out = f"absent {self._one(store.put_if_absent(key, c[1], ts))}"
        elif c[0] == "del":
            out = f"del {self._one(store.delete(key))}"
        elif c[0] == "get":
            out = f"get {self._one(store.get(key))}"
        elif c[0] == "range":
            out = "range " + self._many(store.range(c[1], c[2]))
        elif c[0] == "rrange":
            out = "rrange " + self._many(store.reverse_range(c[1], c[2]))
        elif c[0] == "all":
            out = "all " + self._many(store.all())
        elif c[0] == "rall":
            out = "rall " + self._many(store.reverse_all())
        elif c[0] == "prefix":
            out = "prefix " + self._many(store.prefix_scan(c[1]))
        else:
            out = "unknown"
        self.ctx.forward(key, out)


class GlobalCommands(wb.Processor):
    """The oracle's ``ProcessorTopologies.GlobalCommands``: reads a global table's store."""

    def init(self, ctx: Any) -> None:
        self.ctx = ctx
        self.store = ctx.store("global")

    def process(self, record: wb.Record) -> None:
        c = _command(record.value)
        if c[0] == "get":
            value = self.store.get(c[1])
            out = f"get {c[1]}={'null' if value is None else value}"
        elif c[0] == "has":
            out = f"has {c[1]}={'true' if c[1] in self.store else 'false'}"
        elif c[0] == "count":
            out = f"count {len(self.store)}"
        else:
            out = "unknown"
        self.ctx.forward(record.key, out)
