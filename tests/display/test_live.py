"""The live view of a running pipeline, and progress bars."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

import workbench as wb
from workbench.display import live
from workbench.drivers.memory import MemoryDriver
from workbench.errors import ProcessingError


def clicks(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"user_id": f"u{i % 3}", "ts": 1_000 * i, "amount": (i % 5) - 1.0}
            for i in range(start, start + n)]


def pipeline(sample: Any = None, name: str = "live") -> wb.Pipeline:
    p = wb.Pipeline(name)
    s = p.source("clicks", key="user_id", time="ts",
                 sample=clicks(200) if sample is None else sample)
    s.filter(lambda e: e["amount"] > 0, name="paid").to("paid")
    (s.group_by("user_id").window(wb.Tumbling("10s"), emit="close")
      .agg(n="count", name="per-10s").to("per-10s"))
    return p


def test_bounded_background_run() -> None:
    p = pipeline()
    run = live.start(p, "memory://", until="end", display=False)
    result = run.wait(timeout=60)
    assert run.status == "finished" and run.done and not run.running
    expected = p.run("memory://")
    for topic in p.sinks:
        assert result.frame(topic).equals(expected.frame(topic))
    snap = run.snapshot()
    assert snap.status == "finished" and snap.lag == 0 and snap.source_records == 200
    counts = snap.counts()
    assert counts["paid"] == 120 and counts["to-paid"] == 120
    assert counts["per-10s"] == len(expected.frame("per-10s"))
    tail = snap.outputs["paid"]
    assert tail.total == 120 and len(tail.tail) == 5
    assert [r[1] for r in tail.tail] == [r.value for r in expected.records("paid")[-5:]]
    assert snap.stream_time == 199_000
    bundle = run._repr_mimebundle_()
    assert "finished" in bundle["text/html"] and "per-10s" in bundle["text/html"]
    assert "lag 0" in bundle["text/plain"]


def test_unbounded_run_follows_new_input_and_stops() -> None:
    name = "live-unbounded"
    MemoryDriver.forget(name)
    try:
        p = pipeline(sample=clicks(50))
        run = live.start(p, f"memory://{name}", display=False, interval=0.05)
        run.wait_idle(timeout=60)
        assert run.running and run.snapshot().lag == 0
        assert run.snapshot().source_records == 50
        drv = MemoryDriver.named(name)
        drv.append("clicks", 0, [(r["user_id"], r, r["ts"], None, None)
                                 for r in clicks(30, start=50)])
        run.wait_idle(timeout=60)
        assert run.snapshot().source_records == 80
        result = run.stop(timeout=60)
        assert run.status == "stopped"
        assert len(result.frame("paid")) == sum(1 for r in clicks(80) if r["amount"] > 0)
    finally:
        MemoryDriver.forget(name)


def test_updates_are_throttled() -> None:
    p = pipeline(sample=clicks(3000))
    run = live.LiveRun(p, live._prepare(p, "memory://", None, "1ms", None, 10), "end",
                       interval=0.2)
    times: list[float] = []
    run.on_update(lambda snap: times.append(time.perf_counter()))
    run._launch().wait(timeout=120)
    assert times, "no update"
    # the final render may come sooner than the interval
    gaps = [b - a for a, b in itertools.pairwise(times[:-1])]
    assert all(g >= 0.19 for g in gaps), gaps


def test_failure_is_reported() -> None:
    p = wb.Pipeline("live-fails")
    p.source("in", sample=[{"n": 1}, {"n": 0}]).map(lambda v: {"r": 1 / v["n"]},
                                                     name="divide").to("out")
    run = live.start(p, "memory://", until="end", display=False)
    with pytest.raises(ProcessingError, match="divide"):
        run.wait(timeout=60)
    assert run.status == "failed"
    snap = run.snapshot()
    assert snap.status == "failed" and "ZeroDivisionError" in (snap.error or "")
    assert "ZeroDivisionError" in run._repr_mimebundle_()["text/html"]


def test_wait_timeout() -> None:
    p = pipeline(sample=clicks(5))
    run = live.start(p, "memory://", display=False)  # unbounded: never ends by itself
    try:
        with pytest.raises(TimeoutError, match="still running"):
            run.wait(timeout=0.2)
    finally:
        run.stop(timeout=60)


def test_html_is_escaped() -> None:
    p = wb.Pipeline("live-escape")
    p.source("in", sample=[{"v": "<script>alert(1)</script>"}]).to("out")
    run = live.start(p, "memory://", until="end", display=False)
    run.wait(timeout=60)
    html = live.render_html(run.snapshot())
    assert "<script>alert" not in html and "&lt;script&gt;" in html


def test_foreground_live_run() -> None:
    p = pipeline()
    result = live.run_live(p, "memory://", display=False)
    assert len(result.frame("paid")) == 120


def test_widget_view_and_stop_button() -> None:
    pytest.importorskip("ipywidgets", reason="pip install ipywidgets (the notebook extra)")
    p = pipeline(sample=clicks(20))
    run = live.start(p, "memory://", display=True, interval=0.05)
    view = run._view
    assert view is not None and {"body", "box", "stop"} <= set(view.widgets)
    run.wait_idle(timeout=60)
    view.widgets["stop"].click()  # what pressing Stop in the notebook does
    run.wait(timeout=60)
    assert run.status == "stopped"
    assert view.widgets["stop"].disabled
    deadline = time.monotonic() + 5
    while "stopped" not in view.widgets["body"].value and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "stopped" in view.widgets["body"].value


def test_pipeline_methods() -> None:
    p = pipeline()
    if not hasattr(p, "start"):
        pytest.skip("Pipeline.start() is not wired to workbench.display.live yet")
    run = p.start("memory://", until="end", display=False)
    assert len(run.wait(timeout=60).frame("paid")) == 120
    assert len(p.run("memory://", live=True).frame("paid")) == 120


def test_stop_from_another_thread() -> None:
    p = pipeline(sample=clicks(10))
    run = live.start(p, "memory://", display=False)
    threading.Timer(0.2, run.stop).start()
    run._done.wait(30)
    assert run.status == "stopped"


# -- progress -------------------------------------------------------------------------------
def test_progress_bar_on_bounded_runs(capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm", reason="pip install tqdm (the notebook extra)")
    from workbench import progress
    from workbench.run import prepare

    p = pipeline()
    engine = prepare(p, "memory://")
    assert progress.run_engine(engine, "end", force=True, desc="clicks") == 200
    err = capsys.readouterr().err
    assert "clicks" in err and "200/200" in err

    monkeypatch.setattr(wb.options, "progress", False, raising=False)
    assert not progress.enabled(10**9)
    engine = prepare(p, "memory://")
    assert progress.run_engine(engine, "end") == 200
    assert "200/200" not in capsys.readouterr().err

    monkeypatch.setattr(wb.options, "progress", True, raising=False)
    monkeypatch.setattr(wb.options, "progress_min_records", 100, raising=False)
    assert progress.enabled(200) and not progress.enabled(99)
    monkeypatch.setattr(wb.options, "progress", "always", raising=False)
    assert progress.enabled(1)
