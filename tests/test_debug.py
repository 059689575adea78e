"""The offset debugger: headless state at an offset, cheap stepping back, the scrubber widget."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import workbench as wb
from workbench import debug
from workbench.errors import DefinitionError

ROOT = Path(__file__).resolve().parent.parent


def clicks_sample(n: int = 60) -> list[dict[str, Any]]:
    """Clicks by four users, one every 400 ms, with two out-of-order ones."""
    rows = [{"user_id": f"u{i % 4}", "ts": 10_000 + 400 * i, "amount": (i % 7) - 2.0,
             "page": f"/p/{i % 3}"} for i in range(n)]
    if n > 45:
        rows[30]["ts"] = rows[30]["ts"] - 9_000   # late for 1 s windows with 1 s grace
        rows[45]["ts"] = rows[45]["ts"] - 600     # out of order, still within grace
    return rows


def windowed_join_pipeline(sample: Any = None, partitions: int | None = None) -> wb.Pipeline:
    p = wb.Pipeline("dbg")
    clicks = p.source("clicks", key="user_id", time="ts",
                      sample=clicks_sample() if sample is None else sample,
                      partitions=partitions)
    per_sec = (clicks.group_by("user_id")
                     .window(wb.Tumbling("1s", grace="1s"), emit="close")
                     .agg(total=("amount", "sum"), n="count", name="per-sec"))
    per_sec.to("per-sec")
    per_sec.late.to("late")
    refunds = clicks.filter(lambda e: e["amount"] < 0, name="refunds")
    buys = clicks.filter(lambda e: e["amount"] > 0, name="buys")
    refunds.join(buys, within="2s", how="left", name="match").to("matches")
    return p


def sorted_frame(frame: pd.DataFrame) -> pd.DataFrame:
    cols = list(frame.columns)
    return frame.astype(str).sort_values(cols).reset_index(drop=True)


def test_state_at_headless() -> None:
    p = windowed_join_pipeline()
    st = debug.state_at(p, offset=5)
    assert st.offset == 5 and st.total == 60
    assert st.record is not None and st.record.key == "u1" and st.record.value["ts"] == 12_000
    assert set(st.state) == {"per-sec-store", "match-this", "match-other", "match-outer"}
    windows = st.state["per-sec-store"]
    # the frame rule: the key column is named after the grouping field
    assert list(windows.columns[:4]) == ["user_id", "window_start", "window_end", "timestamp"]
    assert str(windows["timestamp"].dtype) == "datetime64[ms, UTC]"
    assert (windows["window_end"] - windows["window_start"] == pd.Timedelta("1s")).all()
    # open windows: those whose end + grace (1 s) is after stream time (12 s)
    starts = {t // 1000 * 1000 for t in (10_000 + 400 * i for i in range(6))}
    open_starts = {s for s in starts if s + 2_000 > 12_000}
    assert set(windows["window_start"]) == set(pd.to_datetime(sorted(open_starts), unit="ms",
                                                              utc=True))
    assert windows["n"].sum() == sum(1 for i in range(6)
                                     if (10_000 + 400 * i) // 1000 * 1000 in open_starts)
    assert set(st.outputs) == {"per-sec", "late", "matches"}
    assert st.stream_time == 12_000
    html = st._repr_mimebundle_()["text/html"]
    assert "per-sec-store" in html and "input offset 5" in html


def test_outputs_emitted_and_end_of_input_match_a_bounded_run() -> None:
    p = windowed_join_pipeline()
    dbg = debug.Debugger(p, checkpoint_every=7)
    run = p.run("memory://")
    end = dbg.state_at(len(dbg))
    assert end.at_end and end.record is None
    for topic in p.sinks:
        pd.testing.assert_frame_equal(sorted_frame(end.outputs[topic]),
                                      sorted_frame(run.frame(topic)))
    # every output record is attributed to exactly one offset
    total = 0
    for offset in range(len(dbg) + 1):
        total += sum(len(f) for f in dbg.state_at(offset).emitted.values())
    assert total == sum(len(run.frame(t)) for t in p.sinks)


def test_late_record_found_through_emissions() -> None:
    p = windowed_join_pipeline()
    dbg = debug.Debugger(p)
    late = dbg.emissions("late")
    assert list(late["offset"]) == [30]
    st = dbg.state_at(30)
    assert list(st.emitted["late"]["key"]) == ["u2"]
    before = dbg.state_at(29)
    assert before.stream_time > st.record.timestamp + 2_000  # window end + grace passed
    per_sec = dbg.emissions("per-sec")
    assert (per_sec["offset"] <= len(dbg)).all() and per_sec["offset"].is_monotonic_increasing
    with pytest.raises(DefinitionError, match="not an output topic"):
        dbg.emissions("nope")


def test_stepping_back_replays_at_most_k_records() -> None:
    p = windowed_join_pipeline()
    k = 8
    dbg = debug.Debugger(p, checkpoint_every=k)
    dbg.state_at(len(dbg))  # a full forward pass lays the checkpoints
    rng = random.Random(7)
    offsets = [rng.randrange(0, len(dbg) + 1) for _ in range(40)]
    fresh_cache: dict[int, Any] = {}
    for offset in offsets:
        st = dbg.state_at(offset)
        assert dbg.replayed <= k, (offset, dbg.replayed)
        if offset not in fresh_cache:
            fresh_cache[offset] = debug.Debugger(p, checkpoint_every=1000).state_at(offset)
        fresh = fresh_cache[offset]
        for name in fresh.state:
            pd.testing.assert_frame_equal(st.state[name], fresh.state[name])
        for topic in fresh.outputs:
            pd.testing.assert_frame_equal(st.outputs[topic], fresh.outputs[topic])
            pd.testing.assert_frame_equal(st.emitted[topic], fresh.emitted[topic])


def test_inputs_records_from_a_recorded_slice() -> None:
    p = windowed_join_pipeline()
    wb.drivers.memory.MemoryDriver.forget("dbg-slice")
    try:
        p.run("memory://dbg-slice")
        records = debug.read_slice("memory://dbg-slice", "clicks", start=20, count=20)
        assert len(records) == 20 and isinstance(records[0], wb.Record)
        st = debug.state_at(p, {"clicks": records}, offset=10)
        assert st.total == 20
        assert st.record is not None and st.record.value == clicks_sample()[30]
        assert list(st.emitted["late"]["key"]) == ["u2"]
    finally:
        wb.drivers.memory.MemoryDriver.forget("dbg-slice")
    with pytest.raises(DefinitionError):
        debug.read_slice("memory://", "missing-topic")


def test_dataframe_inputs_and_several_partitions() -> None:
    sample = pd.DataFrame(clicks_sample())
    p = windowed_join_pipeline(sample=sample, partitions=3)
    dbg = debug.Debugger(p)
    st = dbg.state_at(len(dbg) - 1)
    assert "partition" in st.state["per-sec-store"].columns
    assert set(st.state["per-sec-store"]["partition"]) <= {0, 1, 2}
    end = dbg.state_at(len(dbg))
    run = p.run("memory://")
    for topic in p.sinks:
        pd.testing.assert_frame_equal(sorted_frame(end.outputs[topic]),
                                      sorted_frame(run.frame(topic)))


def test_tables_sessions_sliding_and_stream_table_state() -> None:
    p = wb.Pipeline("dbg-tables")
    clicks = p.source("clicks", key="user_id", time="ts", sample=clicks_sample(20))
    profiles = p.table("profiles", key="user_id", time=lambda r: 0,
                       sample=[{"user_id": "u0", "country": "DE"},
                               {"user_id": "u1", "country": "FR"}])
    clicks.join(profiles, how="left", name="enrich").to("enriched")
    g = clicks.group_by("user_id")
    g.window(wb.Session("2s")).agg(n="count", name="sessions").to("sessions")
    g.window(wb.Sliding("1s")).agg(n="count", name="sliding").to("sliding")
    g.agg(total=("amount", "sum"), name="totals").to("totals")
    dbg = debug.Debugger(p)
    st = dbg.state_at(len(dbg) - 1)
    enrich = st.state["enrich-table"]
    assert sorted(enrich["key"]) == ["u0", "u1"] and "country" in enrich.columns
    sessions = st.state["sessions-store"]
    assert {"window_start", "window_end", "n"} <= set(sessions.columns)
    assert sessions["n"].sum() == 20 and len(sessions) == 4  # one session per user
    sliding = st.state["sliding-store"]
    assert ((sliding["window_end"] - sliding["window_start"]) == pd.Timedelta("1s")).all()
    totals = st.state["totals-store"].set_index("user_id")["total"]
    expected = pd.DataFrame(clicks_sample(20)).groupby("user_id").amount.sum()
    pd.testing.assert_series_equal(totals.sort_index(), expected, check_names=False)


def test_store_rows_reads_any_store_with_items() -> None:
    class Custom:
        def items(self) -> Any:
            return iter([("k", {"a": 1})])

    assert debug.store_rows(Custom()) == [{"key": "k", "value": {"a": 1}}]
    assert debug.store_rows(object())[0]["key"] is None


def test_errors() -> None:
    p = windowed_join_pipeline()
    dbg = debug.Debugger(p)
    with pytest.raises(IndexError, match="out of range"):
        dbg.state_at(len(dbg) + 1)
    with pytest.raises(DefinitionError, match="not a source topic"):
        debug.Debugger(p, {"clickz": []})
    bare = wb.Pipeline("bare")
    bare.source("in").to("out")
    with pytest.raises(DefinitionError, match="no samples"):
        debug.Debugger(bare)
    with pytest.raises(DefinitionError):
        debug.Debugger(p, checkpoint_every=0)


def test_non_deterministic_steps_do_not_break_seeking() -> None:
    calls = {"n": 0}

    def stamp(v: Any) -> Any:
        calls["n"] += 1
        return {**v, "call": calls["n"]}  # differs on every replay

    p = wb.Pipeline("dbg-nondet")
    p.source("in", sample=[{"i": i} for i in range(30)]).map(stamp).to("out")
    dbg = debug.Debugger(p, checkpoint_every=5)
    dbg.state_at(29)
    dbg.state_at(3)
    st = dbg.state_at(29)
    assert len(st.outputs["out"]) == 30


def test_scrubber_widget_state() -> None:
    pytest.importorskip("ipywidgets", reason="pip install ipywidgets (the notebook extra)")
    p = windowed_join_pipeline()
    sc = debug.scrubber(p, offset=3, checkpoint_every=10)
    assert sc.slider.continuous_update is False  # no recompute while dragging
    assert sc.slider.max == len(sc.debugger) == 60
    assert sc.current is not None and sc.current.offset == 3
    assert "input offset 3 of 60" in sc.panels["record"].value

    sc.slider.value = 30  # what releasing the slider does
    assert sc.current.offset == 30
    assert "input offset 30" in sc.panels["record"].value
    assert "u2" in sc.panels["record"].value
    assert "late" in sc.panels["outputs"].value and "1 from this offset" in \
        sc.panels["outputs"].value
    assert "per-sec-store" in sc.panels["state"].value

    sc.slider.value = 12  # backwards: from the checkpoint at 10
    assert sc.current.offset == 12 and sc.debugger.replayed <= 10
    assert "replayed" in sc.label.value

    sc.play.value = 13  # the play button drives the slider
    assert sc.slider.value == 13 and sc.current.offset == 13
    sc.next.click()
    assert sc.current.offset == 14
    sc.prev.click()
    sc.prev.click()
    assert sc.current.offset == 12

    sc.slider.value = sc.slider.max
    assert sc.current.at_end and "end of input" in sc.panels["record"].value

    bundle = sc._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "text/html" in bundle  # a static fallback for saved notebooks


def test_panels_escape_html() -> None:
    p = wb.Pipeline("dbg-escape")
    s = p.source("in", key="k", sample=[{"k": "<b>x</b>", "v": "<script>alert(1)</script>"}])
    s.group_by_key().agg(last=("v", "last")).to("out")
    st = debug.state_at(p, offset=0)
    html = "".join(st.panels_html().values())
    assert "<script>" not in html and "&lt;script&gt;" in html
