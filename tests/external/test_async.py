"""``map_async`` / ``flat_map_async``: a bounded queue of calls in flight, timeouts and
retries, results in input order, errors per record, backpressure, and commits that wait for
the calls of the records they commit."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from typing import Any

import pytest

import workbench as wb
from workbench.errors import DefinitionError, ProcessingError
from workbench.run import prepare


def xs(n: int) -> list[dict[str, Any]]:
    return [{"x": i, "k": f"k{i % 3}", "ts": 1_000 + i} for i in range(n)]


def pipeline(name: str, n: int = 0) -> tuple[wb.Pipeline, wb.Stream]:
    p = wb.Pipeline(name)
    return p, p.source("in", key="k", time="ts", sample=xs(n) if n else None)


class Gauge:
    """Counts calls running at the same time (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.calls = 0

    def __enter__(self) -> Gauge:
        with self.lock:
            self.now += 1
            self.calls += 1
            self.most = max(self.most, self.now)
        return self

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


def test_async_def_results_in_input_order_at_most_concurrency_at_once() -> None:
    gauge = Gauge()
    rng = random.Random(7)
    delays = [rng.uniform(0, 0.02) for _ in range(200)]

    async def slow_double(v: dict[str, Any]) -> dict[str, Any]:
        with gauge:
            await asyncio.sleep(delays[v["x"]])  # later records often finish first
        return {"x": v["x"], "y": 2 * v["x"]}

    p, s = pipeline("async-order", 200)
    s.map_async(slow_double, concurrency=8).to("out")
    out = [r.value for r in p.run("memory://").records("out")]
    assert out == [{"x": i, "y": 2 * i} for i in range(200)]
    assert gauge.most == 8 and gauge.calls == 200


def test_a_plain_function_runs_in_a_thread_pool() -> None:
    gauge = Gauge()

    def slow(v: dict[str, Any]) -> int:
        with gauge:
            time.sleep(0.005)
            return threading.get_ident()

    p, s = pipeline("async-threads", 60)
    s.map_async(slow, concurrency=4).to("out")
    idents = [r.value for r in p.run("memory://").records("out")]
    assert len(idents) == 60 and threading.get_ident() not in idents
    assert 1 < len(set(idents)) <= 4 and gauge.most <= 4


def test_flat_map_async_with_lists_and_async_generators() -> None:
    async def pairs(v: dict[str, Any]) -> list[int]:
        await asyncio.sleep(0)
        return [v["x"]] * (v["x"] % 3)

    async def gen(v: dict[str, Any]) -> Any:
        for j in range(v["x"] % 2):
            await asyncio.sleep(0)
            yield (v["x"], j)

    p, s = pipeline("async-flat", 7)
    s.flat_map_async(pairs).to("pairs")
    s.flat_map_async(gen).to("gen")
    run = p.run("memory://")
    assert [r.value for r in run.records("pairs")] == [1, 2, 2, 4, 5, 5]
    assert [tuple(r.value) for r in run.records("gen")] == [(1, 0), (3, 0), (5, 0)]


def test_with_record_may_change_keys() -> None:
    async def rekey(r: wb.Record) -> wb.Record:
        return wb.Record(f"new-{r.key}", r.value["x"], r.timestamp + 1)

    p, s = pipeline("async-record", 4)
    s.map_async(rekey, with_record=True).to("out")
    out = p.run("memory://").records("out")
    assert [(r.key, r.value, r.timestamp) for r in out] == [
        ("new-k0", 0, 1001), ("new-k1", 1, 1002), ("new-k2", 2, 1003), ("new-k0", 3, 1004)]


def test_timeouts_and_retries_with_the_idempotency_key() -> None:
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()

    async def flaky(v: dict[str, Any]) -> int:
        info = wb.call_info()
        with lock:
            seen.setdefault(info.key, []).append(info.attempt)
        if v["x"] == 3 and info.attempt < 3:
            await asyncio.sleep(10)  # times out twice
        if v["x"] == 5 and info.attempt == 1:
            raise ConnectionError("reset by peer")
        return v["x"]

    p, s = pipeline("async-retry", 8)
    s.map_async(flaky, timeout="200ms", retries=2, backoff="10ms", name="enrich").to("out")
    out = [r.value for r in p.run("memory://").records("out")]
    assert out == list(range(8))
    assert seen["async-retry/enrich/in/0/3"] == [1, 2, 3]
    assert seen["async-retry/enrich/in/0/5"] == [1, 2]
    assert seen["async-retry/enrich/in/0/0"] == [1]
    assert len(seen) == 8


def test_call_info_outside_a_call() -> None:
    with pytest.raises(LookupError, match="only available inside"):
        wb.call_info()


def test_a_record_that_keeps_failing_stops_the_run_naming_its_origin() -> None:
    async def picky(v: dict[str, Any]) -> int:
        if v["x"] == 6:
            raise ValueError("no such customer")
        return v["x"]

    p, s = pipeline("async-raise", 10)
    s.map_async(picky, retries=1, backoff="1ms", name="lookup").to("out")
    with pytest.raises(ProcessingError) as info:
        p.run("memory://")
    err = info.value
    assert (err.step, err.topic, err.partition, err.offset) == ("lookup", "in", 0, 6)
    assert "after 2 attempt(s): ValueError: no such customer" in str(err)


def test_errors_output_skip_and_dead_letter() -> None:
    async def picky(v: dict[str, Any]) -> int:
        if v["x"] % 4 == 1:
            raise KeyError("missing")
        return v["x"]

    p, s = pipeline("async-errors", 10)
    routed = s.map_async(picky, retries=0, on_error="route", name="routed")
    routed.to("out")
    routed.errors.to("bad")
    s.map_async(picky, retries=0, on_error="skip", name="skipped").to("out2")
    s.flat_map_async(lambda v: [v["x"]] if v["x"] % 4 != 1 else 1 / 0, retries=0,
                     dead_letter="dlq").to("out3")
    run = p.run("memory://")
    assert [r.value for r in run.records("out")] == [0, 2, 3, 4, 6, 7, 8]
    bad = run.records("bad")
    assert [r.value["x"] for r in bad] == [1, 5, 9]
    assert [dict(r.headers)["workbench.error.offset"] for r in bad] == [b"1", b"5", b"9"]
    assert dict(bad[0].headers)["workbench.error"] == b"KeyError: 'missing'"
    assert [r.key for r in bad] == ["k1", "k2", "k0"]  # the input records, unchanged
    assert [r.value for r in run.records("out2")] == [0, 2, 3, 4, 6, 7, 8]
    assert run.engine.dropped_counts() == {"skipped": 3}
    assert [r.value["x"] for r in run.records("dlq")] == [1, 5, 9]
    assert routed.errors.to_pandas()["x"].tolist() == [1, 5, 9]  # previews show them too


def test_definition_errors() -> None:
    _p, s = pipeline("async-defs", 2)
    with pytest.raises(DefinitionError, match="needs a function"):
        s.map_async("fetch")
    with pytest.raises(DefinitionError, match="concurrency="):
        s.map_async(abs, concurrency=0)
    with pytest.raises(DefinitionError, match="needs at least `concurrency`"):
        s.map_async(abs, concurrency=8, queue=4)
    with pytest.raises(DefinitionError, match="on_error="):
        s.map_async(abs, on_error="ignore")
    with pytest.raises(DefinitionError, match="has no errors output"):
        _ = s.errors
    with pytest.raises(DefinitionError, match="on_error='route'"):
        _ = s.map_async(abs).errors
    with pytest.raises(DefinitionError, match="timeout"):
        s.map_async(abs, timeout=0)


def test_backpressure_the_queue_bounds_what_is_read() -> None:
    """While the queue is full the engine reads nothing: records read but not finished never
    exceed the queue (plus the batch that filled it)."""
    gate = threading.Event()
    started = Gauge()

    def held(v: dict[str, Any]) -> int:
        with started:
            gate.wait(30)
        return int(v["x"])

    p, s = pipeline("async-backpressure")
    s.map_async(held, concurrency=4, queue=10).to("out")
    engine = prepare(p, "memory://", inputs={"in": xs(500)}, commit_interval="1h")
    engine.start()
    poller = threading.Thread(target=lambda: [engine.poll() for _ in range(3)], daemon=True)
    poller.start()
    time.sleep(1.0)  # the poller reads, fills the queue, then waits for room
    assert poller.is_alive()  # blocked: backpressure
    assert engine.input_positions()[("in", 0)] <= 10  # read no more than the queue holds
    assert started.calls == 4  # and only `concurrency` calls run
    gate.set()
    poller.join(30)
    engine.run_until_end()
    assert engine.stats.records_out["out"] == 500
    engine.close()


def test_a_commit_waits_for_the_calls_of_its_records() -> None:
    """Stopped in the middle, a run commits exactly the records whose calls finished; the
    next run on the same driver continues without a gap or a duplicate."""
    driver = f"memory://commit-wait-{uuid.uuid4().hex[:8]}"

    async def slow(v: dict[str, Any]) -> int:
        await asyncio.sleep(0.01)
        return v["x"]

    p, s = pipeline("async-commit")
    s.map_async(slow, concurrency=16).to("out")
    engine = prepare(p, driver, inputs={"in": xs(3000)}, commit_interval="20ms")
    committed: list[tuple[int, int]] = []

    def check(e: Any) -> None:
        pos = e.driver.committed(e.plan.app_id, "in", 0)
        outs = len(e.driver.read_all("out"))
        committed.append((pos, outs))
        if pos > 600:
            e.stop()

    engine.on_commit.append(check)
    engine.run_until_end()
    engine.close()
    assert committed and all(pos == outs for pos, outs in committed)
    assert 0 < committed[-1][0] < 3000  # stopped in the middle
    engine = prepare(p, driver)
    engine.run_until_end()
    engine.close()
    out = [r[1] for r in engine.driver.read_all("out")]
    assert out == list(range(3000))


def test_a_merge_after_an_async_step_sees_records_in_order() -> None:
    """A step with several inputs after an external one gets each batch finished, so the
    result equals the same pipeline with a plain map."""
    async def slow(v: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(random.uniform(0, 0.003))
        return {**v, "via": "async"}

    def build(use_async: bool) -> wb.Pipeline:
        p, s = pipeline("async-merge", 60)
        left = s.map_async(slow, concurrency=5) if use_async else s.map(
            lambda v: {**v, "via": "async"})
        right = s.filter(lambda v: v["x"] % 2 == 0).map(lambda v: {**v, "via": "plain"})
        merged = left.merge(right)
        merged.to("out")
        merged.group_by_key().agg(n="count", last=("via", "last")).changes().to("totals")
        return p

    runs = [build(flag).run("memory://", batch_size=7) for flag in (False, True)]
    for topic in ("out", "totals"):
        a, b = ([(r.key, r.value) for r in run.records(topic)] for run in runs)
        assert a == b and len(a) > 60
