"""``/metrics`` counters that a quiet run leaves at zero, checked against a run that moves them:
records dropped as late (per step) and a processing error, rendered by the service's registry
and parsed with prometheus_client's own parser."""

from __future__ import annotations

from typing import Any

import pytest

import workbench as wb
from workbench.drivers.memory import MemoryDriver
from workbench.run import prepare

from .procs import metric

pytest.importorskip("prometheus_client")


def _values(engine: Any, errors: int = 0) -> dict[Any, float]:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from workbench.service.metrics import SnapshotTaker, build_registry

    taker = SnapshotTaker(engine)
    taker.errors = errors
    snap = taker.take(force_lag=True)
    registry = build_registry(lambda: snap, lambda: {}, lambda: True)
    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_late_records_are_counted_per_step() -> None:
    p = wb.Pipeline("metrics-late")
    s = p.source("clicks", key="user", time="ts")
    w = s.group_by_key().window(wb.Tumbling(10, grace=0), emit="close").count(name="per-10")
    w.to("out")
    w.late.to("late")
    rows = [{"user": "a", "ts": t} for t in (1, 5, 12, 25, 3, 4, 30)]  # 3 and 4 are late
    driver = MemoryDriver()
    engine = prepare(p, driver, inputs={"clicks": rows})
    engine.run_until_end()
    values = _values(engine)
    assert metric(values, "workbench_dropped_records_total", step="per-10") == 2
    assert len(driver.read_all("late")) == 2
    assert metric(values, "workbench_errors_total") == 0


def test_processing_errors_are_counted() -> None:
    """A service whose loop fails counts the error (and /health reports it)."""
    from workbench.service import start

    p = wb.Pipeline("metrics-errors")
    p.source("clicks", key="user", time="ts",
             sample=[{"user": "a", "ts": 1}]).map(lambda v: 1 / 0).to("out")
    run = start(p, "memory://", until="end")
    with pytest.raises(wb.ProcessingError):
        run.wait(60)
    live, why = run.service.live()
    assert not live and "ZeroDivisionError" in why
    values = _values(run.engine, errors=run.service.metrics.errors)
    assert metric(values, "workbench_errors_total") == 1
