"""Exactly once on ``git://``: a 120,000-record windowed run killed with ``kill -9`` at random
points, restarted each time, ends with the output of one uninterrupted run exactly — the
windows and the ``late`` records, of which there are over a thousand (records 10-120 s late,
beyond the 5 s grace, one of them at the start of every batch), so the late/on-time decision
after each restart depends on the stream time committed before the kill; ``git fsck --strict``
is clean."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dulwich")

import workbench as wb
from workbench.drivers.git import GitDriver
from workbench.run import append_inputs

ROOT = Path(__file__).resolve().parents[2]
APP = "crash"
EVENTS = 120_000
KILLS = 3


OUTPUTS = ("per-user", "late", "per-page", "per-page-late")


def build() -> wb.Pipeline:
    """Per user 60 s tumbling windows (grace 5 s), final values on close; per page 10 s
    windows (grace 5 s) emitting every update; the late records of both."""
    p = wb.Pipeline(APP)
    paid = (p.source("events", key="user_id", time="ts")
             .filter(lambda e: e["amount"] > 0))
    totals = (paid.group_by_key()
                  .window(wb.Tumbling("60s", grace="5s"), emit="close")
                  .agg(total=("amount", "sum"), n="count", name="per-user"))
    totals.to("per-user")
    totals.late.to("late")
    # on update, only the stream time tells a late record from an on-time one
    pages = (paid.group_by("page")
                 .window(wb.Tumbling("10s", grace="5s"))
                 .count(name="per-page"))
    pages.to("per-page")
    pages.late.to("per-page-late")
    return p


BATCH = 2_000


def crash_events(n: int) -> list[dict[str, Any]]:
    """The benchmark workload with late records beyond the 5 s grace: 1% of the records at
    random, and every ``BATCH``-th record, pulled back 10-120 s. Runs commit between batches,
    so every restart begins with a late record: it is late only if the restarted run knows
    the stream time committed before the kill."""
    import workload

    rng = random.Random(5)
    out = workload.events(n)
    for i, e in enumerate(out):
        if rng.random() < 0.01 or (i and i % BATCH == 0):
            e["ts"] -= rng.randint(10_000, 120_000)
    return out


WORKER = """
import sys
sys.path[:0] = [{root!r}, {bench!r}]
from tests.drivers.test_git_crash import build
from workbench.drivers.git import GitDriver
driver = GitDriver({url!r})
start = driver.committed({app!r}, "events", 0)
run = build().run(driver, until="end", commit_interval="30ms", batch_size={batch})
print("done", start, run.engine.stats.records_in, run.engine.stats.commits, flush=True)
"""


def _head(ref: Path) -> str | None:
    try:
        return ref.read_text().strip()
    except FileNotFoundError:
        return None


@pytest.mark.slow  # ~50-80 s
def test_kill_9_and_restart_gives_exact_output(tmp_path: Path) -> None:
    seed = int(os.environ.get("WB_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    events = crash_events(EVENTS)
    repo = tmp_path / "repo"
    url = f"git://{repo}"
    driver = GitDriver(url, app=APP)
    append_inputs(build(), driver, {"events": events})
    driver.close()
    ref = repo / "refs" / "heads" / "workbench" / APP

    script = WORKER.format(root=str(ROOT), bench=str(ROOT / "benchmarks"), url=url,
                           batch=BATCH, app=APP)
    kills, attempts, log = 0, 0, []
    started = time.monotonic()
    while kills < KILLS and attempts < 3 * KILLS:
        attempts += 1
        head = _head(ref)
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        # let the restarted run commit a few times, then kill it at a random point
        commits = rng.randint(1, 8)
        while proc.poll() is None and commits:
            now = _head(ref)
            if now != head:
                head, commits = now, commits - 1
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        out, err = proc.communicate()
        reader = GitDriver(url, app=APP)
        log.append((proc.returncode, reader.committed(APP, "events", 0), out.strip(),
                    err.strip()[-500:]))
        reader.close()
        if proc.returncode == 0:
            break  # finished before the kill: the remaining kills cannot happen
    assert kills >= KILLS, (seed, log)
    positions = [entry[1] for entry in log]
    assert positions == sorted(positions), (seed, log)  # every restart resumed, none went back

    final = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=600)
    assert final.returncode == 0, (seed, final.stderr[-3000:])
    assert final.stdout.startswith("done"), final.stdout
    resumed_from = int(final.stdout.split()[1])
    assert resumed_from == positions[-1], (seed, log, final.stdout)
    print(f"seed {seed}: positions after each kill {positions}, final run read "
          f"{EVENTS - resumed_from} records")

    # the reference: one uninterrupted run of the same pipeline over the same input
    expected = build().run("memory://", inputs={"events": events})
    got = GitDriver(url, app=APP)
    for topic in OUTPUTS:
        want = [(r[0], r[1], r[2]) for r in expected.driver.read_all(topic)]
        have = [(r[0], r[1], r[2]) for r in got.read_all(topic)]
        assert len(have) == len(want), (seed, topic, len(have), len(want), log)
        assert have == want, (seed, topic)
    late = len(expected.driver.read_all("late")) + len(expected.driver.read_all("per-page-late"))
    assert late > 2_000, late  # the workload really has late records
    print(f"seed {seed}: {late} late records, equal after {kills} kills")
    assert got.committed(APP, "events", 0) == EVENTS
    got.close()

    git = shutil.which("git")
    if git is not None:
        fsck = subprocess.run([git, "-C", str(repo), "fsck", "--strict"], capture_output=True,
                              text=True)
        assert fsck.returncode == 0, fsck
        assert "error" not in fsck.stderr and "bad" not in fsck.stderr, fsck.stderr
    assert time.monotonic() - started < 300
