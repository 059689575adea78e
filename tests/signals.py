"""Stop a real ``workbench run`` with a real signal in the middle of its input, restart it, and
compare every output with one uninterrupted run (issue: a stop is not the end of the input).

Drivers' tests use :func:`signal_then_restart` (a subprocess per run; the driver must keep data
across processes); the memory driver, whose named logs live in one process, uses
:func:`signal_then_restart_in_process`, which runs the CLI in this process and sends the signal
to this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import workbench as wb
from workbench.drivers.base import Driver

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "tests" / "pipelines" / "signals_job.py"
TARGET = f"{JOB}:pipeline"


def outputs(driver: Driver, topics: Sequence[str]) -> dict[str, list[tuple[Any, ...]]]:
    """``{topic: [(partition, key, value, timestamp), ...]}`` of every committed record."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for topic in topics:
        count = driver.partitions(topic) or 0
        rows: list[tuple[Any, ...]] = []
        for p in range(count):
            offset, end = 0, driver.end_offset(topic, p)
            while offset < end:
                chunk = driver.read(topic, p, offset, 10_000)
                if not chunk:
                    break
                rows.extend((p, k, v, t) for k, v, t, _o, _h in chunk)
                offset = chunk[-1][3] + 1
        out[topic] = rows
    return out


def _source_committed(driver: Driver, app: str, topic: str) -> int:
    count = driver.partitions(topic) or 0
    return sum(driver.committed(app, topic, p) for p in range(count))


def wait_for_commit(read_committed: Callable[[], int], minimum: int, timeout: float) -> int:
    """Poll ``read_committed()`` until it reaches ``minimum``; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        got = read_committed()
        if got >= minimum or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("WB_SIGNAL_SLOW_S", "0.002")
    env.update(extra or {})
    return env


def run_cli(driver_url: str, *, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``workbench run signals_job --driver URL --until end`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", TARGET, "--driver", driver_url,
         "--until", "end", "--batch-size", "200", "--commit-interval", "50ms"],
        env=cli_env(env), capture_output=True, text=True, timeout=timeout, check=False)


def signal_then_restart(driver_url: str, connect: Callable[[], Driver], sig: int, *,
                        env: dict[str, str] | None = None,
                        after_committed: int = 400) -> tuple[int, subprocess.Popen[str]]:
    """Start the job on ``driver_url`` (its source topic already filled), send ``sig`` once
    ``after_committed`` source records are committed, wait for the exit, then run it again to
    the end. ``connect()`` returns a driver for reading positions, bound to the job's
    application where the driver needs it (git: ``d.bind("signals")``). Returns the first
    process's exit code and the process. The caller compares :func:`outputs` with an
    uninterrupted run."""
    from tests.pipelines import signals_job

    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "run", TARGET, "--driver", driver_url,
         "--until", "end", "--batch-size", "200", "--commit-interval", "50ms"],
        env=cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader = connect()
    try:
        got = wait_for_commit(
            lambda: _source_committed(reader, signals_job.APP, signals_job.SOURCE),
            after_committed, timeout=120)
    finally:
        reader.close()
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=120)
    assert got < signals_job.EVENTS, (
        f"the job processed everything ({got}) before the signal; make it slower")
    assert proc.returncode == 0, f"exit code {proc.returncode} after {sig!r}:\n{err}"
    second = run_cli(driver_url, env=env)
    assert second.returncode == 0, second.stderr
    return proc.returncode, proc


def signal_then_restart_in_process(name: str, sig: int, *, after_committed: int = 400) -> int:
    """The memory variant: ``workbench run ... --driver memory://NAME`` in this process (main
    thread), ``sig`` sent to this process from a watcher thread once ``after_committed`` source
    records are committed; then the same command again to the end. Returns the first exit
    code."""
    from tests.pipelines import signals_job
    from workbench.cli import main

    driver = wb.connect(f"memory://{name}")
    pid = os.getpid()

    def watch() -> None:
        def committed() -> int:
            if driver.partitions(signals_job.SOURCE) is None:
                return 0
            return _source_committed(driver, signals_job.APP, signals_job.SOURCE)

        wait_for_commit(committed, after_committed, timeout=120)
        os.kill(pid, sig)

    old = os.environ.get("WB_SIGNAL_SLOW_S")
    os.environ["WB_SIGNAL_SLOW_S"] = "0.002"
    try:
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        args = ["run", TARGET, "--driver", f"memory://{name}", "--until", "end",
                "--batch-size", "200", "--commit-interval", "50ms"]
        first = main(args)
        watcher.join(timeout=5)
        processed = _source_committed(driver, signals_job.APP, signals_job.SOURCE)
        assert processed < signals_job.EVENTS, (
            f"the job processed everything ({processed}) before the signal; make it slower")
        os.environ["WB_SIGNAL_SLOW_S"] = "0"
        assert main(args) == 0
    finally:
        if old is None:
            os.environ.pop("WB_SIGNAL_SLOW_S", None)
        else:
            os.environ["WB_SIGNAL_SLOW_S"] = old
    return first


def reference_outputs(name: str = "signals-reference") -> dict[str, list[tuple[Any, ...]]]:
    """The outputs of one uninterrupted run of the job on a fresh ``memory://NAME``."""
    from tests.pipelines import signals_job
    from workbench.drivers.memory import MemoryDriver

    MemoryDriver.forget(name)
    try:
        run = signals_job.pipeline().run(f"memory://{name}")
        return outputs(run.driver, signals_job.SINKS)
    finally:
        MemoryDriver.forget(name)


__all__ = ["JOB", "TARGET", "outputs", "reference_outputs", "run_cli", "signal_then_restart",
           "signal_then_restart_in_process", "wait_for_commit"]
_ = signal  # re-exported names for callers: signal.SIGTERM, signal.SIGINT
