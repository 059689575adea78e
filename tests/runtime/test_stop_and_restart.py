"""A stop is not the end of the input, and a restart continues exactly.

* ``Engine.stop()`` (and SIGTERM/SIGINT to ``workbench run``) during a bounded run commits what
  was processed and leaves windows open; only reaching the end offsets closes them. A later run
  ends with the outputs of one uninterrupted run.
* Stream time is committed with the positions and restored, so a record's late/on-time decision
  after a restart equals the uninterrupted run's, for every grace.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workbench as wb
from tests.signals import outputs, reference_outputs, signal_then_restart_in_process
from workbench.drivers.memory import MemoryDriver
from workbench.run import prepare


@pytest.fixture
def fresh_name(request: pytest.FixtureRequest) -> Any:
    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name)
    MemoryDriver.forget(name)
    yield name
    MemoryDriver.forget(name)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_bounded_cli_run_then_restart_equals_one_run(
        sig: int, fresh_name: str) -> None:
    from tests.pipelines import signals_job

    expected = reference_outputs()
    code = signal_then_restart_in_process(fresh_name, sig)
    assert code == 0
    got = outputs(wb.connect(f"memory://{fresh_name}"), signals_job.SINKS)
    assert got == expected
    assert got["per-user-late"], "the workload must have late records"


def _windows_pipeline(emit: str) -> wb.Pipeline:
    p = wb.Pipeline("stops")
    s = p.source("in", key="k", time="t")
    agg = (s.group_by_key().window(wb.Tumbling(10, grace=2), emit=emit)
            .agg(n="count", name="agg"))
    agg.to("out")
    agg.late.to("late")
    return p


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"k": f"k{i % 3}", "t": 5 * i - (40 if i % 9 == 8 else 0)} for i in range(n)]


def test_engine_stop_in_a_bounded_run_leaves_windows_open(fresh_name: str) -> None:
    rows = _rows(300)
    engine = prepare(_windows_pipeline("close"), f"memory://{fresh_name}",
                     inputs={"in": rows}, batch_size=20)
    seen = 0

    def progress(n: int) -> None:
        nonlocal seen
        seen += n
        if seen >= 100:
            engine.stop()

    engine.run_until_end(progress=progress)
    assert not engine.finished
    drv = engine.driver
    partial = outputs(drv, ["out"])["out"]
    # every window emitted so far is final: its count equals the uninterrupted run's
    MemoryDriver.forget("stops-ref")
    ref_run = _windows_pipeline("close").run("memory://stops-ref", inputs={"in": rows})
    reference = outputs(ref_run.driver, ["out", "late"])
    MemoryDriver.forget("stops-ref")
    assert partial == reference["out"][: len(partial)]
    assert len(partial) < len(reference["out"])
    again = prepare(_windows_pipeline("close"), f"memory://{fresh_name}", batch_size=20)
    again.run_until_end()
    assert again.finished
    assert outputs(drv, ["out", "late"]) == reference


# ------------------------------------------------------------------ crash anywhere, restart
def _build(kind: str, grace: int) -> wb.Pipeline:
    p = wb.Pipeline("restart")
    s = p.source("in", key="k", time="t")
    if kind == "join":
        other = p.source("in2", key="k", time="t")
        joined = s.join(other, within=5, grace=grace, how="outer", name="j")
        joined.to("out")
        return p
    windows: dict[str, Any] = {
        "tumbling": wb.Tumbling(10, grace=grace),
        "hopping": wb.Hopping(10, advance=5, grace=grace),
        "sliding": wb.Sliding(10, grace=grace),
        "session": wb.Session(6, grace=grace),
    }
    emit = "close" if kind != "session" else "update"
    agg = (s.group_by_key().window(windows[kind], emit=emit)
            .agg(n="count", total=("x", "sum"), name="agg"))
    agg.to("out")
    agg.late.to("late")
    return p


def _crash_then_finish(build: Callable[[], wb.Pipeline], name: str,
                       inputs: dict[str, list[dict[str, Any]]], crash_polls: list[int],
                       batch_size: int) -> MemoryDriver:
    """Process a few polls, commit, drop the engine without a commit ("kill -9"), several
    times, then run to the end."""
    driver = MemoryDriver.named(name)
    first = True
    for polls in crash_polls:
        engine = prepare(build(), driver, inputs=inputs if first else None,
                         batch_size=batch_size)
        first = False
        engine.start()
        for i in range(polls):
            engine.poll()
            if i % 2 == 0:
                engine.commit()
        # crash: whatever was processed after the last commit is lost with the engine
    engine = prepare(build(), driver, inputs=inputs if first else None, batch_size=batch_size)
    engine.run_until_end()
    return driver


records = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 120), st.integers(-3, 9)),
    min_size=1, max_size=60)


@pytest.mark.parametrize("kind", ["tumbling", "hopping", "sliding", "session", "join"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=records, grace=st.integers(0, 8), batch=st.integers(1, 7),
       crashes=st.lists(st.integers(0, 6), min_size=1, max_size=3))
def test_crash_anywhere_then_restart_equals_one_run(kind: str, data: list[Any], grace: int,
                                                    batch: int, crashes: list[int]) -> None:
    rows = [{"k": k, "t": t, "x": x} for k, t, x in data]
    inputs = {"in": rows}
    if kind == "join":
        inputs = {"in": rows[::2], "in2": rows[1::2]}
    topics = ["out"] if kind == "join" else ["out", "late"]
    MemoryDriver.forget("restart-ref")
    MemoryDriver.forget("restart-crash")
    try:
        ref = prepare(_build(kind, grace), MemoryDriver.named("restart-ref"), inputs=inputs,
                      batch_size=batch)
        ref.run_until_end()
        expected = outputs(ref.driver, topics)
        driver = _crash_then_finish(lambda: _build(kind, grace), "restart-crash", inputs,
                                    crashes, batch)
        assert outputs(driver, topics) == expected
    finally:
        MemoryDriver.forget("restart-ref")
        MemoryDriver.forget("restart-crash")
