"""The stateful steps of the rest of the DSL (re-grouped tables, suppress buffers, cogroup,
repartition) keep their state in stores and their stream times in the commit: a run crashed
anywhere ("kill -9" after any poll) and run again ends with the outputs of one uninterrupted
run, and the outputs never depend on the batch size."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workbench as wb
from tests.runtime.test_stop_and_restart import _crash_then_finish
from tests.signals import outputs
from workbench.drivers.memory import MemoryDriver
from workbench.run import prepare

KINDS = ["regroup", "suppress-close", "suppress-limit", "cogroup-tumbling", "cogroup-session",
         "cogroup", "repartition"]


def _build(kind: str, grace: int) -> wb.Pipeline:
    p = wb.Pipeline("dsl-restart")
    if kind == "regroup":
        rows = p.table("in", key="k", time="t")
        stats = rows.group_by(lambda v: v["g"]).agg(total=("x", "sum"), n="count",
                                                    name="agg")
        stats.to("out")
        stats.late.to("late")
        return p
    s = p.source("in", key="k", time="t")
    if kind == "suppress-close":
        counts = s.group_by_key().window(wb.Tumbling(10, grace=grace)).count(name="agg")
        counts.suppress(until="window-close", name="held").to("out")
        counts.late.to("late")
    elif kind == "suppress-limit":
        counts = s.group_by_key().agg(total=("x", "sum"), name="agg")
        counts.suppress(until=wb.TimeLimit(7), max_records=2, name="held").to("out")
        counts.late.to("late")
    elif kind.startswith("cogroup"):
        other = p.source("in2", key="k", time="t")
        co = wb.cogroup(s.group_by_key(), lambda a, v: a + 1,
                        other.group_by_key(), lambda a, v: a + v["x"])
        if kind == "cogroup-tumbling":
            co = co.window(wb.Tumbling(10, grace=grace))
        elif kind == "cogroup-session":
            co = co.window(wb.Session(6, grace=grace))
        table = co.aggregate(0, merge=lambda a, b: a + b, name="agg")
        table.to("out")
        table.late.to("late")
    else:
        moved = s.repartition(2)
        counts = moved.group_by_key().count(name="agg")
        counts.to("out")
        counts.late.to("late")
    return p


def _inputs(kind: str, data: list[Any]) -> dict[str, list[dict[str, Any]]]:
    rows = [{"k": k, "t": t, "x": x, "g": f"g{x % 3}"} for k, t, x in data]
    if kind == "regroup":
        for i, row in enumerate(rows):
            if i % 7 == 6:  # a delete of the row
                row["x"] = row["g"] = None
    if kind.startswith("cogroup"):
        return {"in": rows[::2], "in2": rows[1::2]}
    return {"in": rows}


records = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 120), st.integers(0, 9)),
    min_size=1, max_size=50)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=records, grace=st.integers(0, 8), batch=st.integers(1, 7),
       crashes=st.lists(st.integers(0, 6), min_size=1, max_size=3))
def test_crash_anywhere_then_restart_equals_one_run(kind: str, data: list[Any], grace: int,
                                                    batch: int, crashes: list[int]) -> None:
    inputs = _inputs(kind, data)
    topics = ["out", "late"]
    MemoryDriver.forget("dsl-ref")
    MemoryDriver.forget("dsl-crash")
    try:
        ref = prepare(_build(kind, grace), MemoryDriver.named("dsl-ref"), inputs=inputs,
                      batch_size=batch)
        ref.run_until_end()
        expected = outputs(ref.driver, topics)
        driver = _crash_then_finish(lambda: _build(kind, grace), "dsl-crash", inputs, crashes,
                                    batch)
        assert outputs(driver, topics) == expected
    finally:
        MemoryDriver.forget("dsl-ref")
        MemoryDriver.forget("dsl-crash")


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_do_not_depend_on_the_batch_size(kind: str) -> None:
    data = [(k, (i * 7) % 97 + i, i % 10) for i, k in enumerate("abcacbbacabcca" * 4)]
    results = []
    for batch in (1, 3, 7, 10_000):
        run = _build(kind, 3).run("memory://", inputs=_inputs(kind, data), batch_size=batch)
        results.append({t: [(r.key, r.value, r.timestamp) for r in run.records(t)]
                        for t in ("out", "late")})
    assert results[0]["out"], "the pipeline produced nothing"
    assert all(r == results[0] for r in results[1:])
