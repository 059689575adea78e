"""Transactions sized to stay inside their limit, on memory, Kafka and PostgreSQL.

A local HTTP server answers the pipeline's calls in 10 ms, then 500 ms, then 10 ms again.
Every transaction (first record read to end of commit) stays inside ``max_transaction``; the
batch size shrinks at once when the calls slow down and grows back gradually; the outputs are
exactly-once (on Kafka also across a ``kill -9`` in the slow phase), while the calls
themselves are at-least-once (each carries its idempotency key).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench.run import prepare
from workbench.runtime.external.limits import transaction_limit_ms
from workbench.runtime.external.sizer import GROWTH

from .helpers import FAST, ROOT, SLOW, enrichment, records
from .latency_server import LatencyServer

N = 600
#: 300 calls at 10 ms, 80 at 500 ms, the rest at 10 ms
SCHEDULE = [(300, FAST), (80, SLOW)]
HELPERS = Path(__file__).with_name("helpers.py")


def run_through_latency_changes(url: str, server: LatencyServer, app: str,
                                max_transaction: str | None) -> tuple[Any, list[tuple]]:
    """Run the enrichment of ``N`` records while the server changes its latency; return the
    engine and, per commit, ``(transaction ms, batch limit, server requests so far)``."""
    server.follow(SCHEDULE, then=FAST)
    p = enrichment(app, server.url)
    engine = prepare(p, url, inputs={f"{app}-in": records(N)},
                     max_transaction=max_transaction)
    trace: list[tuple] = []

    def note(e: Any) -> None:
        if e.stats.transaction_ms:
            trace.append((e.stats.transaction_ms[-1], e.stats.batch_limit, server.requests))

    engine.on_commit.append(note)
    try:
        engine.run_until_end()
    finally:
        engine.close()
        engine.driver.end_run()
    return engine, trace


def check_run(engine: Any, trace: list[tuple], app: str, limit_ms: float) -> None:
    out = sorted((r[1]["x"], r[1]["y"]) for r in engine.driver.read_all(f"{app}-out"))
    assert out == [(i, 2 * i) for i in range(N)]  # every record once
    durations = [t for t, _b, _r in trace]
    assert engine.stats.max_transaction_ms == limit_ms
    assert max(durations) <= limit_ms, durations
    fast = [b for _t, b, r in trace if r <= SCHEDULE[0][0]]
    slow = [(i, b) for i, (_t, b, r) in enumerate(trace)
            if SCHEDULE[0][0] + 8 < r <= SCHEDULE[0][0] + SCHEDULE[1][0]]
    assert max(fast) > 40 and slow, trace
    # the batch shrinks at once: to what 8 calls of 500 ms do in half the limit
    assert max(b for _i, b in slow) <= 8 * int(limit_ms / 2 / 1000 / SLOW), trace
    after = [b for _t, b, _r in trace[slow[-1][0] + 1:]]
    assert after, trace
    assert any(b2 > b1 for b1, b2 in itertools.pairwise(after)), trace  # grows back
    assert all(b2 <= b1 * GROWTH + 1 for b1, b2 in itertools.pairwise(after)), trace  # gradually
    print(f"\n{engine.driver.scheme}: {len(trace)} transactions, longest "
          f"{max(durations):.0f} ms (limit {limit_ms:.0f} ms); fast phase max "
          f"{max(t for t, _b, r in trace if r <= SCHEDULE[0][0]):.0f} ms, slow phase max "
          f"{max(trace[i][0] for i, _b in slow):.0f} ms; batch sizes fast {max(fast)}, "
          f"slow {[b for _i, b in slow][:3]}..., after {after[:8]}")


def test_memory(latency_server: LatencyServer) -> None:
    app = f"ext-mem-{uuid.uuid4().hex[:6]}"
    engine, trace = run_through_latency_changes("memory://", latency_server, app, "2s")
    check_run(engine, trace, app, 2000)


@pytest.mark.kafka
def test_kafka(latency_server: LatencyServer, kafka_url: str) -> None:
    app = f"ext-kafka-{uuid.uuid4().hex[:6]}"
    url = f"{kafka_url}?transaction_timeout_ms=4000"  # max_transaction defaults to 2 s
    assert transaction_limit_ms(wb.connect(url))[0] == 2000
    engine, trace = run_through_latency_changes(url, latency_server, app, None)
    check_run(engine, trace, app, 2000)


@pytest.mark.postgres
def test_postgresql(latency_server: LatencyServer, postgres_url: str) -> None:
    app = f"ext_pg_{uuid.uuid4().hex[:6]}"
    url = f"{postgres_url}?options=-c%20statement_timeout%3D4000"  # default: 2 s
    assert transaction_limit_ms(wb.connect(url))[0] == 2000
    engine, trace = run_through_latency_changes(url, latency_server, app, None)
    try:
        check_run(engine, trace, app, 2000)
    finally:
        engine.driver.drop_schema()


def test_a_slow_plain_step_is_sized_too() -> None:
    """No external step: a ``map`` that takes 10 ms a record for records 0-99 and 2000-2099
    and 1 ms otherwise. The first poll is small, so even the first transactions fit; the
    batch grows back gradually in the fast part, and each poll is short enough that the
    tenfold slowdown meeting it in the middle still fits (then the batch shrinks at once)."""
    def work(v: dict[str, Any]) -> int:
        x = v["x"]
        time.sleep(0.01 if x < 100 or 2000 <= x < 2100 else 0.001)
        return x

    p = wb.Pipeline("ext-plain")
    p.source("in").map(work).to("out")
    engine = prepare(p, "memory://", inputs={"in": [{"x": i} for i in range(3000)]},
                     commit_interval="1h", max_transaction="1s")
    trace: list[tuple[int, float, int]] = []  # (position, transaction ms, batch limit)
    engine.on_commit.append(lambda e: trace.append(
        (e.input_positions()[("in", 0)], e.stats.transaction_ms[-1], e.stats.batch_limit)))
    engine.run_until_end()
    assert len(engine.driver.read_all("out")) == 3000
    assert max(t for _p, t, _b in trace) <= 1000, trace
    first = [b for pos, _t, b in trace if pos <= 100]
    assert len(first) >= 2 and max(first) <= 60, trace  # 500 ms hold 50 slow records
    fast = [b for pos, _t, b in trace if 100 < pos < 2000]
    assert all(b2 <= b1 * GROWTH + 1 for b1, b2 in itertools.pairwise(fast)), trace  # gradually
    assert max(fast) > 200, trace
    met = next(i for i, (pos, _t, _b) in enumerate(trace) if pos > 2000)
    assert trace[met][2] < trace[met - 1][2], trace  # shrinks at once
    assert min(b for _p, _t, b in trace[met:met + 2]) <= 60, trace
    assert len(trace) >= 20  # commits came before the (1 h) commit interval


def test_driver_defaults() -> None:
    """Half of the driver's own limit (no broker is contacted: the Kafka driver connects when
    it is first used)."""
    assert transaction_limit_ms(wb.connect("memory://")) == (
        30_000, "no limit from the memory driver")
    kafka = "kafka://127.0.0.1:1"
    assert transaction_limit_ms(wb.connect(kafka)) == (
        5_000, "0.5 x transaction.timeout.ms=10000")
    assert transaction_limit_ms(wb.connect(f"{kafka}?producer.transaction.timeout.ms=6000")) == (
        3_000, "0.5 x transaction.timeout.ms=6000")
    assert transaction_limit_ms(wb.connect(f"{kafka}?consumer.max.poll.interval.ms=3000")) == (
        1_500, "0.5 x max.poll.interval.ms=3000")


@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_kill_9_in_the_slow_phase(latency_server: LatencyServer, kafka_url: str,
                                        tmp_path: Path) -> None:
    """A worker is killed with SIGKILL while the calls take 500 ms; its restart finishes the
    input: every output exactly once (read_committed), no transaction beyond its limit, and
    each call made at least once with its idempotency key."""
    app = f"ext-kill-{uuid.uuid4().hex[:6]}"
    url = f"{kafka_url}?transaction_timeout_ms=4000"
    driver = wb.connect(url)
    from workbench.run import append_inputs

    append_inputs(enrichment(app, latency_server.url), driver, {f"{app}-in": records(N)})
    latency_server.follow([(200, FAST), (100, SLOW)], then=FAST)
    log = tmp_path / "txns.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(HELPERS), "worker", url, latency_server.url, app, str(log)],
            stdout=(tmp_path / f"{name}.out").open("wb"), stderr=subprocess.STDOUT, env=env)

    def committed() -> int:
        return sum(driver.committed(app, f"{app}-in", p) for p in range(2))

    first = start("first")
    deadline = time.monotonic() + 120
    while committed() < 230 and time.monotonic() < deadline:  # well into the slow phase
        assert first.poll() is None, (tmp_path / "first.out").read_text()
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    killed_at = committed()
    assert 230 <= killed_at < N
    second = start("second")
    try:
        deadline = time.monotonic() + 180
        while committed() < N and time.monotonic() < deadline:
            assert second.poll() is None, (tmp_path / "second.out").read_text()
            time.sleep(0.1)
        assert committed() == N
    finally:
        second.send_signal(signal.SIGKILL)
        second.wait(30)
    out = sorted((r[1]["x"], r[1]["y"]) for r in driver.read_all(f"{app}-out"))
    assert out == [(i, 2 * i) for i in range(N)]  # exactly once across the kill
    text = (tmp_path / "second.out").read_text() + (tmp_path / "first.out").read_text()
    assert "Fenced" not in text and "Traceback" not in text, text
    durations = [float(line.split()[0]) for line in log.read_text().splitlines()]
    assert durations and max(durations) <= 2000, durations
    keys = [k for k in latency_server.keys if k]
    assert {k.rsplit("/", 3)[-3] for k in keys} == {f"{app}-in"}
    assert len(set(keys)) == N  # every record called, under one key per record
    print(f"\nkafka kill -9: killed at {killed_at} committed; {len(durations)} transactions, "
          f"longest {max(durations):.0f} ms (limit 2000 ms); {len(keys) - N} repeated calls")
    driver.close()


def test_the_batch_size_shows_in_the_live_view(latency_server: LatencyServer) -> None:
    """The batch sizer's choice and the last transaction against its limit are in the live
    view's snapshot, its HTML and its text."""
    from workbench.display import live

    app = f"ext-live-{uuid.uuid4().hex[:6]}"
    p = enrichment(app, latency_server.url)
    run = live.start(p, "memory://", inputs={f"{app}-in": records(60)}, until="end",
                     display=False, max_transaction="1s")
    run.wait(timeout=120)
    snap = run.snapshot()
    engine = run.engine
    assert snap.batch_limit == engine.stats.batch_limit >= 1
    assert snap.max_transaction_ms == 1000
    assert 0 < snap.transaction_ms <= 1000
    shown = f"batch {snap.batch_limit:,} · transaction {snap.transaction_ms:,.0f} / 1,000 ms"
    assert shown in live.render_html(snap) and shown in live.render_text(snap)
    assert snap.commits >= 1 and 0 < snap.latency_ms[0] <= snap.latency_ms[1]
    latency = (f"commit latency p50 {snap.latency_ms[0]:,.0f} / p99 "
               f"{snap.latency_ms[1]:,.0f} ms")
    assert latency in live.render_html(snap) and latency in live.render_text(snap)
