"""Exactly once on ``git://``: a 200,000-record windowed run killed with ``kill -9`` at random
points, restarted each time, ends with the memory driver's output exactly; ``git fsck`` is
clean."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("dulwich")

import workbench as wb
from workbench.drivers.git import GitDriver
from workbench.run import append_inputs

ROOT = Path(__file__).resolve().parents[2]
APP = "crash"
EVENTS = 200_000
KILLS = 3


def build() -> wb.Pipeline:
    """Per user 60 s tumbling windows (grace 5 s), final values on close, plus late records."""
    p = wb.Pipeline(APP)
    paid = (p.source("events", key="user_id", time="ts")
             .filter(lambda e: e["amount"] > 0))
    totals = (paid.group_by_key()
                  .window(wb.Tumbling("60s", grace="5s"), emit="close")
                  .agg(total=("amount", "sum"), n="count", name="per-user"))
    totals.to("per-user")
    totals.late.to("late")
    return p


WORKER = """
import sys
sys.path[:0] = [{root!r}, {bench!r}]
from tests.drivers.test_git_crash import build
from workbench.drivers.git import GitDriver
run = build().run(GitDriver({url!r}), until="end", commit_interval="30ms", batch_size=2000)
print("done", run.engine.stats.records_in, run.engine.stats.commits, flush=True)
"""


def _head(ref: Path) -> str | None:
    try:
        return ref.read_text().strip()
    except FileNotFoundError:
        return None


@pytest.mark.slow  # ~50-80 s
def test_kill_9_and_restart_gives_exact_output(tmp_path: Path) -> None:
    import workload

    seed = int(os.environ.get("WB_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    events = workload.events(EVENTS)
    repo = tmp_path / "repo"
    url = f"git://{repo}"
    driver = GitDriver(url, app=APP)
    append_inputs(build(), driver, {"events": events})
    driver.close()
    ref = repo / "refs" / "heads" / "workbench" / APP

    script = WORKER.format(root=str(ROOT), bench=str(ROOT / "benchmarks"), url=url)
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
    resumed_from = EVENTS - int(final.stdout.split()[1])
    assert resumed_from == positions[-1], (seed, log, final.stdout)
    print(f"seed {seed}: positions after each kill {positions}, final run read "
          f"{EVENTS - resumed_from} records")

    expected = build().run("memory://", inputs={"events": events})
    got = GitDriver(url, app=APP)
    for topic in ("per-user", "late"):
        want = [(r[0], r[1], r[2]) for r in expected.driver.read_all(topic)]
        have = [(r[0], r[1], r[2]) for r in got.read_all(topic)]
        assert len(have) == len(want), (seed, topic, len(have), len(want), log)
        assert have == want, (seed, topic)
    assert got.committed(APP, "events", 0) == EVENTS
    got.close()

    git = shutil.which("git")
    if git is not None:
        fsck = subprocess.run([git, "-C", str(repo), "fsck", "--strict"], capture_output=True,
                              text=True)
        assert fsck.returncode == 0, fsck
        assert "error" not in fsck.stderr and "bad" not in fsck.stderr, fsck.stderr
    assert time.monotonic() - started < 300
