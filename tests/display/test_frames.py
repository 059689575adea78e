"""One frame shape everywhere: every surface builds a topic's frame with the same columns in
the same order, for every operator (``docs/notebooks.md``, "Frames")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

import workbench as wb
from workbench import debug
from workbench.display import live
from workbench.frames import FrameSchema, records_to_frame
from workbench.testing import TestDriver

CLICKS = [{"user_id": f"u{i % 3}", "ts": 1_000 * i, "amount": float((i % 5) - 1),
           "page": f"/p/{i % 2}"} for i in range(30)]
PROFILES = [{"user_id": "u0", "country": "DE", "updated": 0},
            {"user_id": "u1", "country": "FR", "updated": 0}]


class Case:
    def __init__(self, name: str, build: Callable[[wb.Pipeline, wb.Stream, Any], Any],
                 columns: list[str], *, per_record: bool = True) -> None:
        self.name = name
        self.build = build
        self.columns = columns
        #: the debugger and the test driver (one record through every sub-topology at a
        #: time) produce the same records as a batch run
        self.per_record = per_record


def _process() -> Any:
    class Upper(wb.Processor):
        def process(self, record: Any) -> None:
            self.ctx.forward(record.key, {"page": record.value["page"].upper()}, record.timestamp)

    return Upper


CLICK_COLS = ["key", "timestamp", "user_id", "ts", "amount", "page"]
WINDOW = ["user_id", "window_start", "window_end", "timestamp"]
CASES = [
    Case("source", lambda p, c, t: c, CLICK_COLS),
    Case("filter", lambda p, c, t: c.filter(lambda e: e["amount"] > 0, name="s"), CLICK_COLS),
    Case("map", lambda p, c, t: c.map(lambda e: {"a": e["amount"], "n": 1}, name="s"),
         ["key", "timestamp", "a", "n"]),
    Case("flat_map", lambda p, c, t: c.flat_map(lambda e: [{"x": 1}, {"x": 2}], name="s"),
         ["key", "timestamp", "x"]),
    Case("key_by", lambda p, c, t: c.key_by("page", name="s"), CLICK_COLS),
    Case("peek", lambda p, c, t: c.peek(lambda e: None, name="s"), CLICK_COLS),
    Case("branch", lambda p, c, t: c.split(pos=lambda e: e["amount"] > 0, name="s").pos,
         CLICK_COLS),
    Case("merge", lambda p, c, t: c.filter(lambda e: e["amount"] > 0).merge(
        c.filter(lambda e: e["amount"] < 0), name="s"), CLICK_COLS),
    Case("count", lambda p, c, t: c.group_by("user_id").count(name="s"),
         ["user_id", "timestamp", "value"]),
    Case("agg", lambda p, c, t: c.group_by("user_id").agg(total=("amount", "sum"), n="count",
                                                         name="s"),
         ["user_id", "timestamp", "total", "n"]),
    Case("reduce", lambda p, c, t: c.group_by("page").reduce(
        lambda a, v: {**v, "amount": a["amount"] + v["amount"]}, name="s"),
         ["key", "timestamp", "user_id", "ts", "amount", "page"]),
    Case("tumbling", lambda p, c, t: c.group_by("user_id").window(wb.Tumbling("10s")).agg(
        n="count", name="s"), [*WINDOW, "n"]),
    Case("tumbling-close", lambda p, c, t: c.group_by("user_id").window(
        wb.Tumbling("10s"), emit="close").agg(n="count", name="s"), [*WINDOW, "n"]),
    Case("hopping", lambda p, c, t: c.group_by("user_id").window(
        wb.Hopping("10s", "5s")).count(name="s"), [*WINDOW, "value"]),
    Case("sliding", lambda p, c, t: c.group_by("user_id").window(wb.Sliding("5s")).agg(
        n="count", name="s"), [*WINDOW, "n"]),
    Case("session", lambda p, c, t: c.group_by("user_id").window(wb.Session("2s")).aggregate(
        0, lambda a, v: a + 1, merge=lambda a, b: a + b, name="s"),
         ["key", "window_start", "window_end", "timestamp", "value"]),
    Case("late", lambda p, c, t: c.group_by("user_id").window(
        wb.Tumbling("1s"), emit="close").agg(n="count", name="w").late, CLICK_COLS),
    Case("to_table", lambda p, c, t: c.to_table(name="s"), CLICK_COLS),
    Case("table_filter", lambda p, c, t: c.group_by("user_id").agg(n="count", name="a").filter(
        lambda v: v["n"] % 2 == 0, name="s"), ["user_id", "timestamp", "n"]),
    Case("table_map_values", lambda p, c, t: c.group_by("user_id").agg(
        n="count", name="a").map_values(lambda v: {"double": 2 * v["n"]}, name="s"),
         ["key", "timestamp", "double"]),
    Case("table_source", lambda p, c, t: t, ["key", "timestamp", "user_id", "country",
                                             "updated"]),
    Case("stream_table_join", lambda p, c, t: c.join(t, how="left", name="s"),
         [*CLICK_COLS, "country", "updated"]),
    Case("stream_stream_join", lambda p, c, t: c.filter(lambda e: e["amount"] < 0).join(
        c.filter(lambda e: e["amount"] > 0), within="3s",
        combine=lambda a, b: {"refund": a["amount"], "buy": b["amount"]}, name="s"),
         ["key", "timestamp", "refund", "buy"]),
    Case("table_table_join", lambda p, c, t: c.group_by("user_id").agg(
        n="count", name="a").join(c.group_by("user_id").agg(m=("amount", "max"), name="b"),
                                  how="left", name="s"),
         ["user_id", "timestamp", "n", "m"]),
    Case("foreign_key_join", lambda p, c, t: c.key_by("ts").to_table(name="bt").join(
        t, on=lambda v: v["user_id"], how="left", name="s"),
         ["key", "timestamp", "user_id", "ts", "amount", "page", "country", "updated"],
         per_record=False),  # a join across a repartition sees its inputs in another order
    Case("process", lambda p, c, t: c.process(_process(), name="s"),
         ["key", "timestamp", "page"]),
    # column expressions
    Case("filter_expr", lambda p, c, t: c.filter(wb.col("amount") > 0, name="s"), CLICK_COLS),
    Case("assign", lambda p, c, t: c.assign(cents=(wb.col("amount") * 100).round(), name="s"),
         [*CLICK_COLS, "cents"]),
    Case("select_rename", lambda p, c, t: c.select("page", "amount").rename(
        amount="eur", name="s"), ["key", "timestamp", "page", "eur"]),
    Case("split_expr", lambda p, c, t: c.split(pos=wb.col("amount") > 0, default="other",
                                               name="s").other, CLICK_COLS),
    # the rest of the DSL (issue 15)
    Case("repartition", lambda p, c, t: c.repartition(name="s"), CLICK_COLS),
    Case("table_group_by", lambda p, c, t: t.group_by("country").count(name="s"),
         ["country", "timestamp", "value"]),
    Case("suppress", lambda p, c, t: c.group_by("user_id").window(wb.Tumbling("10s")).count(
        name="w").suppress("window-close", name="s"), [*WINDOW, "value"], per_record=False),
    Case("cogroup", lambda p, c, t: wb.cogroup(
        c.group_by("user_id"), lambda a, v: a + 1,
        c.filter(lambda e: e["amount"] > 0).group_by("user_id"), lambda a, v: a + 10,
    ).aggregate(0, name="s"), ["key", "timestamp", "value"]),  # user aggregators: as aggregate
]


def _pipeline(case: Case) -> tuple[wb.Pipeline, Any]:
    p = wb.Pipeline(f"frames-{case.name}")
    clicks = p.source("clicks", key="user_id", time="ts", sample=CLICKS)
    profiles = p.table("profiles", key="user_id", time="updated", sample=PROFILES)
    step = case.build(p, clicks, profiles)
    step.to("out")
    return p, step


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(str).sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_surface_builds_the_same_frame(case: Case) -> None:
    p, step = _pipeline(case)
    run = p.run("memory://")
    ran = run.frame("out")
    assert list(ran.columns) == case.columns, f"{case.name}: {list(ran.columns)}"
    assert str(ran["timestamp"].dtype) == "datetime64[ms, UTC]"
    for col in ("window_start", "window_end"):
        if col in ran:
            assert str(ran[col].dtype) == "datetime64[ms, UTC]"

    # the step's preview: a stream's records, a table's current contents (same columns)
    preview = step.to_pandas()
    assert list(preview.columns) == case.columns
    if isinstance(step, wb.Stream):
        pd.testing.assert_frame_equal(_sorted(preview), _sorted(ran))
        changes = preview
    else:
        changes = step.changes().to_pandas()
        assert list(changes.columns) == case.columns
    pd.testing.assert_frame_equal(_sorted(changes), _sorted(ran))

    # the live view: the result of a background run, and the tail it shows
    lr = live.start(p, "memory://", until="end", display=False)
    pd.testing.assert_frame_equal(lr.wait(timeout=60).frame("out"), ran)
    tail = lr.snapshot().outputs["out"].frame()
    assert list(tail.columns) == case.columns

    # the debugger, at the end of input
    dbg = debug.Debugger(p, checkpoint_every=1000)
    end = dbg.state_at(len(dbg))
    assert list(end.outputs["out"].columns) == case.columns
    if case.per_record:
        pd.testing.assert_frame_equal(_sorted(end.outputs["out"]), _sorted(ran))
    assert list(dbg.emissions("out").columns) == ["offset", *case.columns]

    # the test driver, piping the same records in the order a run interleaves them
    # (timestamp order, ties in the order the sources were defined)
    ordered = sorted([(r["ts"], 0, "clicks", r) for r in CLICKS]
                     + [(r["updated"], 1, "profiles", r) for r in PROFILES],
                     key=lambda x: (x[0], x[1]))
    with TestDriver(p) as td:
        for _t, _o, topic, row in ordered:
            td.input(topic).pipe_rows([row])
        td.end()
        created = td.output("out").read_frame()
    assert list(created.columns) == case.columns
    if case.per_record:
        pd.testing.assert_frame_equal(_sorted(created), _sorted(ran))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_an_empty_frame_keeps_its_columns(case: Case) -> None:
    """Previews of steps that produce nothing still show the step's columns where the
    definition knows them (``generous.late`` used to show ``key float64, timestamp``)."""
    p = wb.Pipeline(f"empty-{case.name}")
    clicks = p.source("clicks", key="user_id", time="ts", sample=CLICKS[:0] or [])
    profiles = p.table("profiles", key="user_id", time="updated", sample=PROFILES[:0] or [])
    step = case.build(p, clicks, profiles)
    step.to("out")
    frame = p.run("memory://").frame("out")
    assert len(frame) == 0
    assert list(frame.columns[:1]) == case.columns[:1]
    assert "timestamp" in frame.columns
    assert str(frame["timestamp"].dtype) == "datetime64[ms, UTC]"


def test_empty_late_output_has_the_source_columns() -> None:
    p = wb.Pipeline("late-empty")
    clicks = p.source("clicks", key="user_id", time="ts", sample=CLICKS)
    generous = clicks.group_by("user_id").window(wb.Tumbling("10s", grace="1h"),
                                                  emit="close").agg(n="count", name="g")
    frame = generous.late.to_pandas()
    assert len(frame) == 0
    assert list(frame.columns) == CLICK_COLS
    assert str(frame["timestamp"].dtype) == "datetime64[ms, UTC]"


def test_deletions_keep_integer_columns_and_are_marked() -> None:
    frame = records_to_frame([("a", {"n": 1}, 1), ("a", None, 2), ("b", {"n": 3}, 3)],
                             FrameSchema(key_name="user_id", columns=("n",), changelog=True))
    assert list(frame.columns) == ["user_id", "timestamp", "n"]
    assert str(frame["n"].dtype) == "Int64"  # not 1.0, NaN, 3.0
    assert frame["n"].isna().tolist() == [False, True, False]
    assert frame.attrs["null_values"] == [1] and frame.attrs["changelog"] is True


def test_colliding_and_non_string_field_names_render() -> None:
    values = [{"key": "k", "timestamp": 5, 1: "one", "1": "string one", "value": 2}]
    frame = records_to_frame([("a", values[0], 1)])
    assert list(frame.columns) == ["key", "timestamp", "value.key", "value.timestamp", "1",
                                   "'1'", "value"]
    assert frame.iloc[0].tolist()[2:] == ["k", 5, "one", "string one", 2]
    p = wb.Pipeline("collide")
    s = p.source("in", sample=values)
    bundle = s._repr_mimebundle_()
    assert "value.timestamp" in bundle["text/html"] and "string one" in bundle["text/plain"]


def test_the_key_column_never_depends_on_the_data() -> None:
    schema = FrameSchema(key_name="user_id")  # fields unknown: the values may carry it
    assert list(records_to_frame([], schema).columns) == ["key", "timestamp"]
    assert records_to_frame([("a", {"x": 1}, 1)], schema).columns[0] == "key"
    known = FrameSchema(key_name="user_id", columns=("total",))
    assert records_to_frame([], known).columns[0] == "user_id"
    assert records_to_frame([("a", {"total": 1, "user_id": "a"}, 1)], known).columns[0] == \
        "user_id"
