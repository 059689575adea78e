"""Exactly-once under failure on a real broker: ``kill -9`` a windowed + joined pipeline at
random points and restart it; two processes share the work and one of them dies; real SIGTERM
and SIGINT stop a ``workbench run`` that is restarted. The read_committed output must equal an
uninterrupted run's exactly: no duplicate, no gap, the same window values, and the same records
late beyond grace (stream time is committed with the positions and restored).

The workers are subprocesses (``kafka_helpers.py worker``); the input is written once by the
test, before the first worker starts.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from workbench.run import append_inputs

from .kafka_helpers import (
    ROOT,
    canonical,
    crash_inputs,
    crash_pipeline,
    crash_sinks,
    scale_pipeline,
    with_options,
)
from .test_kafka import kafka_url  # noqa: F401 - the session fixture (and its service)

with contextlib.suppress(ImportError):
    from .test_kafka import kafka_service  # noqa: F401

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

HELPERS = Path(__file__).with_name("kafka_helpers.py")


def start_worker(url: str, pipeline: str, sfx: str, log: Path, until: str = "end"
                 ) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(HELPERS), "worker", url, pipeline, sfx, "--until", until],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def progress(driver: Any, app: str, sources: list[str]) -> int:
    """Sum of the committed positions of the application's source partitions."""
    return sum(driver.committed(app, t, p) for t in sources for p in range(3))


def total(driver: Any, sources: list[str]) -> int:
    return sum(driver.end_offset(t, p) for t in sources for p in range(3))


def inputs_for(sfx: str, n: int) -> dict[str, Any]:
    data = crash_inputs(n)
    return {f"orders-{sfx}": data["orders"], f"payments-{sfx}": data["payments"]}


def assert_same_output(kafka_driver: Any, expected: Any, sinks: list[str]) -> None:
    from workbench.types import Record

    for sink in sinks:
        got = [Record(k, v, t, h) for k, v, t, _o, h in kafka_driver.read_all(sink)]
        want = expected.records(sink)
        g, w = canonical(got), canonical(want)
        dupes = len(g) - len(set(g))
        assert g == w, (f"{sink}: {len(g)} records (duplicates: {dupes}), expected {len(w)}; "
                        f"missing {len(set(w) - set(g))}, unexpected {len(set(g) - set(w))}")


def test_kill9_at_random_points_then_restart(kafka_url: str, tmp_path: Path) -> None:  # noqa: F811
    """200,000 orders (+ 50,000 payments), ``kill -9`` at random points at least 3 times;
    the restarted instance (same ``instance=``: it fences its predecessor's producer at once)
    completes the bounded run. The output equals an uninterrupted memory run."""
    from workbench.drivers.kafka import KafkaDriver

    sfx = uuid.uuid4().hex[:8]
    n = int(os.environ.get("WB_CRASH_RECORDS", "200000"))
    data = inputs_for(sfx, n)
    expected = crash_pipeline(sfx).run("memory://", inputs=data)
    url = with_options(kafka_url, instance="crash-worker")
    pipeline = crash_pipeline(sfx)
    watcher = KafkaDriver(kafka_url)
    append_inputs(pipeline, watcher, data)
    sources = list(pipeline.sources)
    app, end = pipeline.name, total(watcher, sources)
    rng = random.Random()
    log = tmp_path / "worker.log"
    kills, started = [], time.monotonic()
    while len(kills) < 3:
        before = progress(watcher, app, sources)
        target = before + 1 + int(rng.uniform(0.05, 0.3) * (end - before))
        proc = start_worker(url, "crash", sfx, log)
        deadline = time.monotonic() + 180
        while proc.poll() is None and progress(watcher, app, sources) < target:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.1))  # inside a transaction or between two
        if proc.poll() is not None:
            pytest.fail(f"the worker finished before kill {len(kills) + 1}: make the input "
                        f"bigger\n{log.read_text()[-3000:]}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(progress(watcher, app, sources))
    assert kills[-1] < end, "every kill must happen before the input is consumed"
    final = start_worker(url, "crash", sfx, log)
    assert final.wait(600) == 0, log.read_text()[-3000:]
    print(f"\n{n + n // 4} records, killed at committed positions {kills} of {end}; "
          f"{time.monotonic() - started:.1f} s in all")
    assert progress(watcher, app, sources) == end
    assert_same_output(watcher, expected, crash_sinks(sfx))
    for late in (f"late-{sfx}", f"late-updates-{sfx}"):
        assert expected.records(late), "the workload must have records late beyond grace"
    watcher.close()


def test_two_processes_share_the_work_and_one_dies(kafka_url: str,  # noqa: F811
                                                   tmp_path: Path) -> None:
    """Two unbounded workers of one application split the partitions (consumer group, range
    assignment); one is killed with ``kill -9`` mid-run; the survivor takes its partitions
    over (after the session timeout), restores their state from the changelogs and finishes.
    SIGTERM then stops it cleanly (exit 0). Output: exactly the memory run's."""
    from workbench.drivers.kafka import KafkaDriver

    sfx = uuid.uuid4().hex[:8]
    n = int(os.environ.get("WB_SCALE_RECORDS", "100000"))
    data = inputs_for(sfx, n)
    expected = scale_pipeline(sfx).run("memory://", inputs=data)
    url = with_options(kafka_url, session_timeout_ms=6000)
    pipeline = scale_pipeline(sfx)
    watcher = KafkaDriver(kafka_url)
    append_inputs(pipeline, watcher, data)
    sources = list(pipeline.sources)
    app, end = pipeline.name, total(watcher, sources)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    a = start_worker(url, "scale", sfx, logs[0], until="forever")
    b = start_worker(url, "scale", sfx, logs[1], until="forever")
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": kafka_url[len("kafka://"):]})
    deadline = time.monotonic() + 120
    while True:  # both members joined and the work is under way
        group = admin.describe_consumer_groups([app])[app].result()
        owners = [m for m in group.members if m.assignment.topic_partitions]
        if len(owners) == 2 and progress(watcher, app, sources) > 0:
            break
        assert time.monotonic() < deadline, logs[0].read_text()[-2000:] + logs[1].read_text()
        assert a.poll() is None and b.poll() is None
        time.sleep(0.1)
    a.send_signal(signal.SIGKILL)
    a.wait()
    at_kill = progress(watcher, app, sources)
    assert at_kill < end, "the kill must happen mid-run"
    deadline = time.monotonic() + 120
    while True:  # the survivor owns everything after the session timeout and a rebalance
        group = admin.describe_consumer_groups([app])[app].result()
        if [len(m.assignment.topic_partitions) for m in group.members] == [6]:
            break
        assert b.poll() is None, logs[1].read_text()[-3000:]
        assert time.monotonic() < deadline, logs[1].read_text()[-3000:]
        time.sleep(0.2)
    deadline = time.monotonic() + 300
    while progress(watcher, app, sources) < end:
        assert b.poll() is None, logs[1].read_text()[-3000:]
        assert time.monotonic() < deadline, logs[1].read_text()[-3000:]
        time.sleep(0.2)
    b.send_signal(signal.SIGTERM)
    assert b.wait(60) == 0, logs[1].read_text()[-3000:]
    print(f"\nkilled one of two workers at {at_kill} of {end} committed input records")
    assert_same_output(watcher, expected, crash_sinks(sfx))
    for late in (f"late-{sfx}", f"late-updates-{sfx}"):
        assert expected.records(late), "the workload must have records late beyond grace"
    watcher.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_then_restart_on_kafka_equals_one_run(kafka_url: str,  # noqa: F811
                                                     sig: int) -> None:
    """``workbench run ... --driver kafka://... --until end`` gets a real SIGTERM or SIGINT in
    the middle of its input: it commits what it processed, leaves its windows open and exits
    0; run again, it finishes. The outputs (emit-on-close windows, sessions, late records)
    equal one uninterrupted run's, record by record."""
    from tests.pipelines import signals_job
    from tests.signals import cli_env, outputs, wait_for_commit
    from workbench.drivers.kafka import KafkaDriver

    from .kafka_helpers import signals_pipeline

    sfx = uuid.uuid4().hex[:8]
    pipeline = signals_pipeline(sfx)
    app, source = pipeline.name, f"{signals_job.SOURCE}-{sfx}"
    sinks = [f"per-user-{sfx}", f"per-user-late-{sfx}", f"sessions-{sfx}"]
    watcher = KafkaDriver(kafka_url)
    append_inputs(pipeline, watcher, {source: signals_job.events()})
    cmd = [sys.executable, "-m", "workbench.cli", "run",
           f"{HELPERS}:signals_pipeline", "--driver", kafka_url, "--until", "end",
           "--batch-size", "200", "--commit-interval", "50ms"]
    env = {"WB_KAFKA_SIGNAL_SUFFIX": sfx}
    proc = subprocess.Popen(cmd, env=cli_env(env), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    got = wait_for_commit(lambda: watcher.committed(app, source, 0), 400, timeout=120)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"exit code {proc.returncode} after {sig!r}:\n{err}"
    stopped_at = watcher.committed(app, source, 0)
    assert 400 <= got <= stopped_at < signals_job.EVENTS, "the signal must come mid-run"
    second = subprocess.run(cmd, env=cli_env({**env, "WB_SIGNAL_SLOW_S": "0"}), cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stderr
    assert watcher.committed(app, source, 0) == signals_job.EVENTS
    got_outputs = outputs(watcher, sinks)
    watcher.close()
    reference = signals_pipeline(sfx).run("memory://", inputs={source: signals_job.events()})
    want = outputs(reference.driver, sinks)
    assert got_outputs == want
    assert got_outputs[f"per-user-late-{sfx}"], "the workload must have late records"
    print(f"\n{sig!r} at {stopped_at} of {signals_job.EVENTS} committed records")
