"""The rest of the Kafka Streams DSL, part A (issue 15): re-grouped tables, cogroup, suppress,
repartition, foreach, print, to(topic function), table filter tombstones and split with a
default branch — definitions, errors and behaviour through the public API on ``memory://``
(record-by-record agreement with Kafka Streams is in ``tests/conformance``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench.testing import TestDriver


def _values(td: TestDriver, topic: str) -> list[tuple[Any, Any, int]]:
    return [(r.key, r.value, r.timestamp) for r in td.output(topic).read_records()]


# ------------------------------------------------------------------------- re-grouped tables
def _users(p: wb.Pipeline) -> wb.Table:
    return p.table("users", key="user", sample=[{"user": "u1", "country": "de", "age": 30}])


def test_regrouped_count_moves_a_row_between_groups() -> None:
    p = wb.Pipeline("regroup")
    counts = _users(p).group_by("country").count(name="by-country")
    counts.changes().to("out")
    with TestDriver(p) as td:
        users = td.input("users")
        users.pipe("u1", {"country": "de"}, timestamp=1)
        users.pipe("u2", {"country": "de"}, timestamp=2)
        users.pipe("u1", {"country": "fr"}, timestamp=3)
        users.pipe("u2", None, timestamp=4)
        assert _values(td, "out") == [("de", 1, 1), ("de", 2, 2), ("de", 1, 3), ("fr", 1, 3),
                                      ("de", 0, 4)]


def test_regrouped_agg_derives_subtractors_for_sum_count_mean_and_list() -> None:
    p = wb.Pipeline("regroup-agg")
    stats = _users(p).group_by("country").agg(total=("age", "sum"), n="count",
                                              avg=("age", "mean"), ages=("age", "list"))
    stats.changes().to("out")
    with TestDriver(p) as td:
        users = td.input("users")
        users.pipe("u1", {"country": "de", "age": 30}, timestamp=1)
        users.pipe("u2", {"country": "de", "age": 40}, timestamp=2)
        users.pipe("u1", {"country": "fr", "age": 31}, timestamp=3)
        out = _values(td, "out")
    assert out[-2] == ("de", {"total": 40, "n": 1, "avg": 40.0, "ages": [40]}, 3)
    assert out[-1] == ("fr", {"total": 31, "n": 1, "avg": 31.0, "ages": [31]}, 3)


def test_regrouped_agg_min_needs_a_subtractor() -> None:
    p = wb.Pipeline("regroup-min")
    grouped = _users(p).group_by("country")
    with pytest.raises(wb.DefinitionError, match=r"'min' cannot be undone.*third element"):
        grouped.agg(youngest=("age", "min"))
    table = grouped.agg(youngest=("age", "min", lambda current, age: None))
    table.changes().to("out")
    with TestDriver(p) as td:
        td.input("users").pipe("u1", {"country": "de", "age": 30}, timestamp=1)
        td.input("users").pipe("u1", {"country": "fr", "age": 30}, timestamp=2)
        assert _values(td, "out") == [("de", {"youngest": 30}, 1), ("de", {"youngest": None}, 2),
                                      ("fr", {"youngest": 30}, 2)]


def test_regrouped_reduce_and_aggregate_take_a_subtractor() -> None:
    p = wb.Pipeline("regroup-fns")
    grouped = _users(p).group_by(lambda v: v["country"])
    grouped.reduce(lambda a, v: {"age": a["age"] + v["age"]},
                   lambda a, v: {"age": a["age"] - v["age"]}, name="r").changes().to("r")
    grouped.aggregate(list, lambda a, v: [*a, v["age"]],
                      subtract=lambda a, v: [x for x in a if x != v["age"]],
                      name="a").changes().to("a")
    with TestDriver(p) as td:
        td.input("users").pipe("u1", {"country": "de", "age": 30}, timestamp=1)
        td.input("users").pipe("u2", {"country": "de", "age": 5}, timestamp=2)
        td.input("users").pipe("u1", None, timestamp=3)
        # a group's first row is its aggregate as it is
        assert [v for _k, v, _t in _values(td, "r")] == [{"country": "de", "age": 30},
                                                          {"age": 35}, {"age": 5}]
        assert [v for _k, v, _t in _values(td, "a")] == [[30], [30, 5], [5]]
    with pytest.raises(TypeError):
        grouped.reduce(lambda a, v: a)  # type: ignore[call-arg]


def test_regroup_none_group_reaches_late_and_bad_fields_are_refused() -> None:
    p = wb.Pipeline("regroup-none")
    users = _users(p)
    with pytest.raises(wb.DefinitionError, match=r"no field 'contry'\. Did you mean 'country'"):
        users.group_by("contry")
    with pytest.raises(wb.DefinitionError, match="field name or a function"):
        users.group_by(3)  # type: ignore[arg-type]
    counts = users.group_by(lambda v: v.get("country")).count()
    counts.changes().to("out")
    counts.late.to("late")
    with TestDriver(p) as td:
        td.input("users").pipe("u1", {"country": None}, timestamp=1)
        td.input("users").pipe("u2", {"country": "de"}, timestamp=2)
        assert _values(td, "out") == [("de", 1, 2)]
        late = td.output("late").read_records()
        assert [(r.key, r.value) for r in late] == [(None, {"country": None})]
        assert dict(late[0].headers or ())["workbench.dropped"] == b"null-key"


def test_regrouped_table_previews_and_draws() -> None:
    p = wb.Pipeline("regroup-preview")
    users = p.table("users", key="user", sample=[
        {"user": "u1", "country": "de"}, {"user": "u2", "country": "de"},
        {"user": "u1", "country": "fr"}])
    counts = users.group_by("country").count(name="per-country")
    frame = counts.to_pandas()
    assert dict(zip(frame["country"], frame["value"], strict=True)) == {"de": 1, "fr": 1}
    counts.to("per-country")
    assert "per-country" in p.to_mermaid() and "table group_by" in p.to_mermaid()
    assert "GroupedTable" in repr(users.group_by("country"))


# ----------------------------------------------------------------------------------- suppress
def test_suppress_window_close_emits_final_results_only() -> None:
    p = wb.Pipeline("supp")
    counts = p.source("in").group_by_key().window(wb.Tumbling(10, grace=2)).count()
    counts.suppress(until="window-close").changes().to("out")
    with TestDriver(p) as td:
        for ts in (1, 4, 11):
            td.input("in").pipe("a", 1, timestamp=ts)
        assert _values(td, "out") == []
        td.input("in").pipe("a", 1, timestamp=12)
        assert _values(td, "out") == [(wb.Windowed("a", 0, 10), 2, 4)]
        td.end()
        assert _values(td, "out") == [(wb.Windowed("a", 10, 20), 2, 12)]


def test_suppress_time_limit_rate_limits_a_key() -> None:
    p = wb.Pipeline("supp-limit")
    p.source("in").group_by_key().count().suppress(until=wb.TimeLimit("10ms")).changes().to(
        "out")
    with TestDriver(p) as td:
        for key, ts in (("a", 1), ("a", 4), ("b", 6), ("a", 11)):
            td.input("in").pipe(key, 1, timestamp=ts)
        # a's first held update was at 1: stream time 11 lets it out with its latest value
        assert _values(td, "out") == [("a", 3, 11)]


def test_suppress_full_buffer_emits_early_or_fails() -> None:
    for when_full in ("emit-early", "fail"):
        p = wb.Pipeline("supp-full")
        (p.source("in").group_by_key().count()
          .suppress(until=wb.TimeLimit(100), max_records=1, when_full=when_full, name="held")
          .changes().to("out"))
        with TestDriver(p) as td:
            td.input("in").pipe("a", 1, timestamp=1)
            if when_full == "fail":
                with pytest.raises(wb.ProcessingError, match=r"'held'.*max capacity: 2/1 records"):
                    td.input("in").pipe("b", 1, timestamp=2)
            else:
                td.input("in").pipe("b", 1, timestamp=2)
                assert _values(td, "out") == [("a", 1, 1)]


def test_suppress_definition_errors() -> None:
    p = wb.Pipeline("supp-errors")
    table = p.source("in").group_by_key().count()
    windowed = p.source("in2").group_by_key().window(wb.Tumbling(10)).count()
    with pytest.raises(wb.DefinitionError, match="not a windowed aggregation"):
        table.suppress(until="window-close")
    with pytest.raises(wb.DefinitionError, match="cannot come out early"):
        windowed.suppress(until="window-close", max_records=5, when_full="emit-early")
    with pytest.raises(wb.DefinitionError, match="max_records=0"):
        table.suppress(until=wb.TimeLimit(5), max_records=0)
    with pytest.raises(wb.DefinitionError, match="when_full='later'"):
        table.suppress(until=wb.TimeLimit(5), when_full="later")
    with pytest.raises(wb.DefinitionError, match="until='soon'"):
        table.suppress(until="soon")
    with pytest.raises(wb.DefinitionError):
        wb.TimeLimit(-1)


# ----------------------------------------------------------------------------------- cogroup
def test_cogroup_aggregates_several_inputs_into_one_table() -> None:
    p = wb.Pipeline("co")
    clicks, buys = p.source("clicks"), p.source("buys")
    score = wb.cogroup(clicks.group_by_key(), lambda acc, v: acc + 1,
                       buys.group_by_key(), lambda acc, v: acc + v).aggregate(0, name="score")
    score.changes().to("out")
    with TestDriver(p) as td:
        td.input("clicks").pipe("u1", "x", timestamp=1)
        td.input("buys").pipe("u1", 5, timestamp=2)
        td.input("clicks").pipe("u2", "x", timestamp=3)
        assert _values(td, "out") == [("u1", 1, 1), ("u1", 6, 2), ("u2", 1, 3)]


def test_windowed_cogroup_keeps_a_stream_time_per_input() -> None:
    p = wb.Pipeline("co-win")
    a, b = p.source("a"), p.source("b")
    table = wb.cogroup(a.group_by_key(), lambda acc, v: acc + 1, b.group_by_key(),
                       lambda acc, v: acc + v).window(wb.Tumbling(10, grace=5)).aggregate(0)
    table.changes().to("out")
    with TestDriver(p) as td:
        td.input("a").pipe("K", "x", timestamp=20)
        td.input("b").pipe("K", 3, timestamp=14)  # late for a's stream time, not for b's
        assert _values(td, "out") == [(wb.Windowed("K", 20, 30), 1, 20),
                                      (wb.Windowed("K", 10, 20), 3, 14)]


def test_cogroup_definition_errors() -> None:
    p = wb.Pipeline("co-errors")
    g = p.source("a").group_by_key()
    with pytest.raises(wb.DefinitionError, match="pairs"):
        wb.cogroup(g)
    with pytest.raises(wb.DefinitionError, match="aggregator"):
        wb.cogroup(g, "add")
    with pytest.raises(wb.DefinitionError, match="given twice"):
        wb.cogroup(g, lambda a, v: a, g, lambda a, v: a)
    with pytest.raises(wb.DefinitionError, match="not windowed"):
        wb.cogroup(g.window(wb.Tumbling(5)), lambda a, v: a)
    with pytest.raises(wb.DefinitionError, match="merge"):
        wb.cogroup(g, lambda a, v: a).window(wb.Session(5)).aggregate(0)
    other = wb.Pipeline("other").source("b").group_by_key()
    with pytest.raises(wb.DefinitionError, match="different pipelines"):
        wb.cogroup(g, lambda a, v: a, other, lambda a, v: a)


# ------------------------------------------------------------------------------ small steps
def test_repartition_uses_its_partition_count_and_drops_none_keys() -> None:
    p = wb.Pipeline("rep")
    p.source("in").repartition(4, name="moved").to("out")
    plan = p.plan()
    assert plan.topics["rep-moved-repartition"].partitions == 4
    with TestDriver(p) as td:
        td.input("in").pipe("a", 1, timestamp=1)
        td.input("in").pipe(None, 2, timestamp=2)
        assert _values(td, "out") == [("a", 1, 1)]
        dropped = [n.op.null_keys for t in td.engine.tasks for n in t.nodes
                   if hasattr(n.op, "null_keys")]
        assert sum(dropped) == 1 and len(dropped) == 4  # one task per partition
    with pytest.raises(wb.DefinitionError):
        p.source("in2").repartition(0)


def test_foreach_sees_every_record_and_makes_the_stream_run() -> None:
    seen: list[Any] = []
    p = wb.Pipeline("each")
    s = p.source("in")
    assert s.foreach(seen.append) is None
    s.foreach(lambda r: seen.append((r.key, r.timestamp)), with_record=True, name="records")
    with TestDriver(p) as td:
        td.input("in").pipe("a", 1, timestamp=5)
        td.input("in").pipe(None, None, timestamp=6)
    assert seen == [1, ("a", 5), None, (None, 6)]
    with pytest.raises(wb.DefinitionError):
        s.foreach("nope")  # type: ignore[arg-type]


def test_foreach_failure_names_the_step_and_record() -> None:
    p = wb.Pipeline("each-fail")
    p.source("in").foreach(lambda v: 1 / v, name="divide")
    with TestDriver(p) as td, pytest.raises(wb.ProcessingError, match=r"'divide'.*offset 0"):
        td.input("in").pipe("a", 0, timestamp=1)


def test_print_to_a_file_and_to_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "printed.txt"
    p = wb.Pipeline("prt")
    s = p.source("in")
    s.print(path, label="L")
    s.print(mapper=lambda k, v: f"{k}={v}", name="to-log")
    with caplog.at_level(logging.INFO, logger="workbench.print"), TestDriver(p) as td:
        td.input("in").pipe("a", {"x": 1}, timestamp=1)
        td.input("in").pipe(None, None, timestamp=2)
    assert path.read_text(encoding="utf-8").splitlines() == ["[L]: a, {'x': 1}", "[L]: null, null"]
    assert [r.getMessage() for r in caplog.records] == ["[to-log]: a={'x': 1}",
                                                       "[to-log]: None=None"]
    with pytest.raises(wb.DefinitionError, match="takes a path"):
        s.print(file=3)


def test_to_topic_function_creates_topics_and_checks_names() -> None:
    p = wb.Pipeline("fn")
    p.source("in").to(lambda v: f"out-{v['kind']}")
    run = p.run("memory://", inputs={"in": [{"kind": "a"}, {"kind": "b"}, {"kind": "a"}]})
    assert [r.value for r in run.records("out-a")] == [{"kind": "a"}, {"kind": "a"}]
    assert [r.value for r in run.records("out-b")] == [{"kind": "b"}]
    for bad, why in (("in", "is read by pipeline"), ("bad name!", "not a valid topic name"),
                     ("fn2-x-changelog", "internal topic")):
        q = wb.Pipeline("fn2")
        q.source("in").to(lambda v, bad=bad: bad)
        with pytest.raises(wb.ProcessingError, match=why):
            q.run("memory://", inputs={"in": [{"kind": "a"}]})


def test_to_topic_function_with_declared_topics() -> None:
    p = wb.Pipeline("fn-declared")
    s = p.source("in")
    s.to(lambda v: v["t"], topics=["x", "y"], partitions=2, value=wb.serde.string())
    assert set(p.sinks) == {"x", "y"}
    assert p.plan().topics["x"].partitions == 2
    run = p.run("memory://", inputs={"in": [{"t": "x"}]})
    assert len(run.records("x")) == 1 and run.records("y") == []
    q = wb.Pipeline("fn-declared-2")
    q.source("in").to(lambda v: "z", topics=["x"])
    with pytest.raises(wb.ProcessingError, match="not among the topics this step declares"):
        q.run("memory://", inputs={"in": [{"t": "x"}]})
    with pytest.raises(wb.DefinitionError, match="declared topics"):
        q.source("in2").to(lambda v: "z", value=wb.serde.string(), name="other")
    with pytest.raises(wb.DefinitionError, match="is a source"):
        q.source("in3").to(lambda v: "z", topics=["in"], name="third")


def test_table_filter_forwards_tombstones_as_kafka_streams() -> None:
    def build(downstream: str) -> wb.Pipeline:
        p = wb.Pipeline(f"flt-{downstream}")
        kept = p.table("t").filter(lambda v: v >= 5)
        if downstream == "changes":
            kept.changes().to("out")
        else:  # re-grouping asks for old values
            kept.group_by(lambda v: "all").count().changes().to("out")
        return p

    with TestDriver(build("changes")) as td:
        td.input("t").pipe("a", 1, timestamp=1)  # never passed: still a delete
        td.input("t").pipe("b", 7, timestamp=2)
        assert _values(td, "out") == [("a", None, 1), ("b", 7, 2)]
    with TestDriver(build("count")) as td:
        td.input("t").pipe("a", 1, timestamp=1)
        td.input("t").pipe("b", 7, timestamp=2)
        assert _values(td, "out") == [("all", 1, 2)]


def test_split_with_a_named_default_branch_or_none() -> None:
    p = wb.Pipeline("splits")
    s = p.source("in")
    parts = s.split(big=lambda v: v > 10, default="small", name="sizes")
    assert list(parts) == ["big", "small"]
    parts.small.to("small")
    only = s.split(big=lambda v: v > 10, default=None, name="only-big")
    assert list(only) == ["big"]
    only.big.to("big")
    with TestDriver(p) as td:
        for v in (1, 20):
            td.input("in").pipe("k", v, timestamp=v)
        assert [r.value for r in td.output("small").read_records()] == [1]
        assert [r.value for r in td.output("big").read_records()] == [20]
    with pytest.raises(wb.DefinitionError, match="name of the default branch"):
        s.split(rest=lambda v: True)
    with pytest.raises(wb.DefinitionError, match="default branch's name"):
        s.split(big=lambda v: True, default="no spaces")
    assert list(s.split(x=lambda v: True, rest=lambda v: False, default="other")) == [
        "x", "rest", "other"]
