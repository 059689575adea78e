"""Faults outside the process (issue 20, Kafka): the broker is killed with ``kill -9`` in the
middle of a run and started again after 5-20 s, several times; the broker is stopped with
SIGSTOP for longer than the transaction timeout and then continued. The job either keeps
running or exits with a clear error (the driver's ``timeout``, 60 s by default, bounds every
wait for the broker) and is started again; in the end the outputs equal one uninterrupted run,
with nothing committed twice.

Each test starts its OWN broker (``BouncingBroker``: ``workbench.devservices`` in a temporary
state directory) and never touches the shared one. The job is ``workbench run
tests/drivers/kafka_helpers.py:signals_pipeline --until end`` (emit-on-close windows, sessions,
records late beyond grace), slowed down so the faults land mid-run.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .kafka_helpers import ROOT, BouncingBroker, signals_pipeline, with_options

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

HELPERS = Path(__file__).with_name("kafka_helpers.py")


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    import shutil

    from workbench._env import in_ci

    if not shutil.which("java"):
        if in_ci():
            pytest.fail("CI=true: the Kafka fault tests need Java 17 and Maven")
        pytest.skip("needs Java 17 and Maven to start a private broker")
    b = BouncingBroker(tmp_path / "broker")
    yield b
    b.destroy()


def _job(url: str, sfx: str, slow: str) -> subprocess.Popen[str]:
    from tests.signals import cli_env

    cmd = [sys.executable, "-m", "workbench.cli", "run", f"{HELPERS}:signals_pipeline",
           "--driver", url, "--until", "end", "--batch-size", "100", "--commit-interval",
           "50ms"]
    env = cli_env({"WB_KAFKA_SIGNAL_SUFFIX": sfx, "WB_SIGNAL_SLOW_S": slow})
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _prepare(url: str) -> tuple[str, str, list[str], Any]:
    from tests.pipelines import signals_job
    from workbench.drivers.kafka import KafkaDriver
    from workbench.run import append_inputs

    sfx = uuid.uuid4().hex[:8]
    source = f"{signals_job.SOURCE}-{sfx}"
    d = KafkaDriver(url)
    append_inputs(signals_pipeline(sfx), d, {source: signals_job.events()})
    d.close()
    return sfx, source, [f"per-user-{sfx}", f"per-user-late-{sfx}", f"sessions-{sfx}"], \
        signals_job


def _finish(url: str, sfx: str, source: str, sinks: list[str], signals_job: Any,
            errors: list[str]) -> None:
    """Run the job again until it exits 0; compare every output with one memory run."""
    from tests.signals import outputs
    from workbench.drivers.kafka import KafkaDriver

    for _attempt in range(5):
        proc = _job(url, sfx, "0")
        _out, err = proc.communicate(timeout=600)
        if proc.returncode == 0:
            break
        errors.append(err)
    else:
        pytest.fail("the job did not finish after the broker came back:\n" + errors[-1][-3000:])
    d = KafkaDriver(url)
    app = signals_pipeline(sfx).name
    assert d.committed(app, source, 0) == signals_job.EVENTS
    got = outputs(d, sinks)
    d.close()
    reference = signals_pipeline(sfx).run("memory://", inputs={source: signals_job.events()})
    assert got == outputs(reference.driver, sinks)  # no duplicate, no gap, same values
    assert got[sinks[1]], "the workload must have late records"
    for err in errors:
        print("the job gave up:", err.strip().splitlines()[-1][:300] if err.strip() else "?")
    for err in errors:  # a job that gave up said why, in one clear line of workbench's
        assert "Error" in err and ("DriverUnavailableError" in err or "DriverError" in err
                                   or "FencedError" in err), err[-3000:]


def test_broker_killed_and_restarted_mid_run(broker: BouncingBroker) -> None:
    """Three times: ``kill -9`` the broker while the job runs, start it again 5-20 s later."""
    url = with_options(broker.url, instance="bounce")
    sfx, source, sinks, signals_job = _prepare(url)
    rng = random.Random()
    errors: list[str] = []
    proc = _job(url, sfx, "0.01")  # ~30 s of input
    downtimes = []
    for _bounce in range(3):
        time.sleep(rng.uniform(2, 5))
        broker.kill()
        down = rng.uniform(5, 20)
        downtimes.append(round(down, 1))
        time.sleep(down)
        broker.restart()
        if proc.poll() is not None:  # it gave up while the broker was away: start it again
            if proc.returncode != 0:
                errors.append(proc.communicate()[1])
            proc = _job(url, sfx, "0.01")
    _out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        errors.append(err)
    print(f"\nbroker down for {downtimes} s; restarts took "
          f"{[round(s, 1) for s in broker.starts]} s; the job gave up {len(errors)} times")
    _finish(url, sfx, source, sinks, signals_job, errors)


def test_broker_stopped_longer_than_the_transaction_timeout(broker: BouncingBroker) -> None:
    """SIGSTOP the broker for longer than the transaction timeout mid-run, then SIGCONT: the
    open transaction is aborted (the coordinator fences it), and nothing is committed
    twice."""
    url = with_options(broker.url, instance="stall", transaction_timeout_ms=5000)
    sfx, source, sinks, signals_job = _prepare(url)
    errors: list[str] = []
    proc = _job(url, sfx, "0.01")
    time.sleep(4)
    broker.pause()
    time.sleep(12)  # > transaction_timeout_ms
    broker.resume()
    _out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        errors.append(err)
    notes = [line for line in err.splitlines() if "transaction" in line.lower()]
    print(f"\nafter SIGSTOP/SIGCONT the job exited {proc.returncode}; what it said about "
          f"transactions: {notes[-3:]}")
    _finish(url, sfx, source, sinks, signals_job, errors)


def test_broker_gone_for_good_the_job_exits_with_a_clear_error(broker: BouncingBroker) -> None:
    """``kill -9`` the broker mid-run and leave it down: the job must not hang (librdkafka's
    ``send_offsets_to_transaction`` ignores its timeout while the coordinator is away,
    confluentinc/librdkafka#5456) but exit with a workbench error after the driver's
    ``timeout`` (10 s here) + 5 s; once the broker is back, a restart ends exactly."""
    url = with_options(broker.url, instance="gone", timeout=10)
    sfx, source, sinks, signals_job = _prepare(url)
    proc = _job(url, sfx, "0.01")
    time.sleep(4)
    assert proc.poll() is None, "the job ended before the broker went away"
    broker.kill()
    killed = time.monotonic()
    try:
        _out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the job hung for 240 s after its broker died (timeout=10)")
    took = time.monotonic() - killed
    last = [line for line in err.splitlines() if line.startswith("workbench:")]
    print(f"\nthe broker died; the job exited {proc.returncode} after {took:.1f} s: {last}")
    assert proc.returncode != 0 and last, err[-3000:]
    assert "DriverUnavailableError" in last[-1] or "DriverError" in last[-1], last
    broker.restart()
    _finish(url, sfx, source, sinks, signals_job, [err])


def test_a_live_job_under_load_commits_again_after_a_broker_bounce(tmp_path: Path) -> None:
    """A live job (``run_forever``) with a producer offering records all the time: the broker is
    killed and started again 5 s later. The job must commit again (restarted by the script if
    it gave up) and, at the end, have committed every source record. Before the driver bounded
    ``send_offsets_to_transaction`` (librdkafka#5456) the job blocked in it for good here,
    even after the broker was back. ``benchmarks/recovery.py`` starts its OWN broker."""
    import json
    import shutil

    from workbench._env import in_ci

    if not shutil.which("java"):
        if in_ci():
            pytest.fail("CI=true: the Kafka fault tests need Java 17 and Maven")
        pytest.skip("needs Java 17 and Maven to start a private broker")
    out = tmp_path / "recovery.json"
    from tests.signals import cli_env

    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "recovery.py"), "--faults", "kafka-kill",
         "--repeat", "1", "--down", "5", "--warmup", "10", "--between", "0", "--rate", "200",
         "--patience", "150", "--json", str(out)],
        capture_output=True, text=True, timeout=900, cwd=ROOT, env=cli_env({}))
    print(done.stdout[-2000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())[0]
    assert result["missing"] == 0 and result["rows"][0]["recovery_s"] is not None, result
