"""Memory bounds (issue 20): the engine commits instead of buffering past
``max_buffered_records`` (backpressure), and ``Engine.store_sizes`` counts every store kind
(a stream-stream join's window stores included) so a soak can watch state size."""

from __future__ import annotations

from typing import Any

import pytest

import workbench as wb
from workbench.drivers.memory import MemoryDriver
from workbench.errors import DefinitionError
from workbench.run import prepare

N = 6_000


def _fan_out() -> wb.Pipeline:
    p = wb.Pipeline("backpressure")
    (p.source("events", key="user", time="ts", partitions=2)
      .flat_map(lambda e: [{**e, "copy": i} for i in range(3)])
      .to("copies"))
    return p


def _events() -> list[dict[str, Any]]:
    return [{"user": i % 50, "ts": 1_000 + i, "n": i} for i in range(N)]


def _run(name: str, limit: int) -> tuple[Any, list[int]]:
    """A bounded run with a one-hour commit interval; the outputs each commit wrote."""
    MemoryDriver.forget(name)
    engine = prepare(_fan_out(), f"memory://{name}", inputs={"events": _events()},
                     commit_interval="1h", batch_size=100)
    engine.max_buffered_records = limit
    written: list[int] = []
    seen = [0]

    def note(e: Any) -> None:
        total = sum(e.stats.records_out.values())
        written.append(total - seen[0])
        seen[0] = total

    engine.on_commit.append(note)
    engine.run_until_end()
    engine.close()
    return engine, written


def test_outputs_waiting_for_a_commit_stay_under_the_limit() -> None:
    engine, written = _run("bp-limited", 1_000)
    # one poll reads at most 100 records per partition (2 partitions) and triples them
    assert written and max(written) <= 1_000 + 2 * 100 * 3, written
    assert engine.stats.early_commits >= 3 * N // 1_600, engine.stats.early_commits
    assert engine.buffered_records() == 0
    unlimited, once = _run("bp-unlimited", 0)
    assert max(once) == 3 * N  # without a limit, the whole run waited for one commit
    assert unlimited.stats.early_commits == 0
    got = [r[:3] for p in range(2) for r in engine.driver.read("copies", p, 0, 10 * N)]
    want = [r[:3] for p in range(2) for r in unlimited.driver.read("copies", p, 0, 10 * N)]
    assert got == want and len(got) == 3 * N


def test_the_limit_comes_from_the_options_and_is_checked(monkeypatch: Any) -> None:
    monkeypatch.setattr(wb.options, "max_buffered_records", 123)
    assert prepare(_fan_out(), "memory://", inputs={"events": []}).max_buffered_records == 123
    monkeypatch.setattr(wb.options, "max_buffered_records", -1)
    with pytest.raises(DefinitionError, match="max_buffered_records=-1"):
        prepare(_fan_out(), "memory://", inputs={"events": []})


def test_store_sizes_counts_join_window_stores() -> None:
    p = wb.Pipeline("sizes")
    left = p.source("left", key="k", time="ts")
    right = p.source("right", key="k", time="ts")
    (left.join(right, how="left", within="5s", name="j")
         .group_by_key().window(wb.Tumbling("10s")).agg(n="count", name="w").to("out"))
    run = p.run("memory://sizes-run", inputs={
        "left": [{"k": i % 7, "ts": i * 1_000} for i in range(40)],
        "right": [{"k": i % 7, "ts": i * 1_000 + 500} for i in range(40)]})
    sizes = run.engine.store_sizes()
    join_stores = {name: n for name, n in sizes.items() if name.startswith("j")}
    assert join_stores and all(isinstance(n, int) for n in sizes.values()), sizes
    # retention is within (5 s) + grace (0): about 5-11 s of the 40 s of records are kept
    # per side (expired ones are purged when stream time has moved a retention further)
    assert 0 < max(join_stores.values()) < 40, sizes
    MemoryDriver.forget("sizes-run")


# ------------------------------------------------------------------ a bounded memory driver
def _copy() -> wb.Pipeline:
    p = wb.Pipeline("bounded-log")
    p.source("in", key="k", time="ts").map(lambda v: {**v, "twice": 2 * v["n"]}).to("out")
    return p


def _chunk(start: int, n: int) -> list[dict[str, Any]]:
    return [{"k": i % 10, "ts": i, "n": i} for i in range(start, start + n)]


def test_a_bounded_memory_driver_keeps_the_last_records_and_loses_none_it_processed() -> None:
    from workbench.display.live import start
    from workbench.run import append_inputs

    url = "memory://bounded-log?max_records=5000"
    MemoryDriver.forget("bounded-log")
    driver = wb.connect(url)
    total = 0
    for _round in range(8):  # 8 x 3,000 records in, each round processed before the next
        append_inputs(_copy(), driver, {"in": _chunk(total, 3_000)})
        total += 3_000
        run = start(_copy(), url, until="end", display=False)
        run.wait(timeout=60)
        assert run.status == "finished", run.error
        out = run.snapshot().outputs["out"]
        assert out.total == total  # counts everything written
        assert [r[1]["n"] for r in out.tail] == list(range(total - 5, total))
    assert isinstance(driver, MemoryDriver)
    for topic in ("in", "out"):
        held = len(driver.read_all(topic))
        assert 5_000 <= held < 5_000 + 3_000, (topic, held)  # whole appended segments
        assert driver.first_offset(topic, 0) == total - held
    assert driver.committed("bounded-log", "in", 0) == total  # every record was processed
    assert [r[1]["twice"] for r in driver.read_all("out")][-3:] == [
        2 * n for n in range(total - 3, total)]
    with pytest.raises(wb.DriverError, match=r"topic 'out' partition 0: offset 0 is no longer "
                                             r"held.*max_records=5000"):
        driver.read("out", 0, 0, 10)
    MemoryDriver.forget("bounded-log")


def test_records_dropped_before_they_were_read_are_an_error_not_a_gap() -> None:
    from workbench.run import append_inputs

    MemoryDriver.forget("bounded-late")
    url = "memory://bounded-late?max_records=5000"
    driver = wb.connect(url)
    for i in range(3):
        append_inputs(_copy(), driver, {"in": _chunk(7_000 * i, 7_000)})
    with pytest.raises(wb.DriverError, match=r"topic 'in' partition 0: offset 0 is no longer "
                                             r"held on memory://bounded-late"):
        _copy().run(url)
    MemoryDriver.forget("bounded-late")


@pytest.mark.parametrize("query", ["max_records=-1", "max_records=x", "max_record=5"])
def test_bad_memory_options_are_named(query: str) -> None:
    with pytest.raises(DefinitionError, match="memory://"):
        wb.connect(f"memory://?{query}")
