"""Faults around a git-driver job: the disk fills up mid-commit, the process is killed while it
packs, a crashed process on another host leaves the writer lock behind. Each time the
repository stays ``git fsck --strict`` clean, the error names what happened, and a later run
resumes exactly (its outputs equal one uninterrupted run's)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dulwich")

from tests.drivers.test_git_crash import OUTPUTS, build, crash_events
from workbench._env import in_ci
from workbench.drivers.git import GitDriver
from workbench.errors import DriverError
from workbench.run import append_inputs, prepare

ROOT = Path(__file__).resolve().parents[2]
APP = "crash"  # build()'s application
GIT = shutil.which("git")


def fsck_clean(repo: Path) -> None:
    """``git fsck --strict`` exits 0 and says nothing worse than notices."""
    if GIT is None:
        if in_ci():
            pytest.fail("the git binary is missing on CI")
        return
    out = subprocess.run([GIT, "-C", str(repo), "fsck", "--strict", "--no-dangling"],
                         capture_output=True, text=True)
    problems = [line for line in out.stderr.splitlines() if not line.startswith("notice:")]
    assert out.returncode == 0 and not problems, out


def reference(events: list[dict[str, Any]]) -> dict[str, list[tuple[Any, ...]]]:
    run = build().run("memory://", inputs={"events": events})
    return {t: [r[:3] for r in run.driver.read_all(t)] for t in OUTPUTS}


def outputs(url: str) -> dict[str, list[tuple[Any, ...]]]:
    d = GitDriver(url, app=APP)
    try:
        return {t: [r[:3] for r in d.read_all(t)] for t in OUTPUTS}
    finally:
        d.close()


@contextlib.contextmanager
def small_file_system(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (needs root), unmounted afterwards."""
    if os.geteuid() != 0:
        message = ("mounting a small file system needs root: run this test as root (CI does) "
                   "to check a full disk")
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        message = f"cannot mount a tmpfs here ({mounted.stderr.strip()})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(fs: Path, leave: int) -> Path:
    """A ballast file taking all free space on ``fs`` but ``leave`` bytes."""
    ballast = fs / "ballast"
    free = shutil.disk_usage(fs).free - leave
    with open(ballast, "wb") as f:
        chunk = b"\0" * (1 << 20)
        while free > 0:
            f.write(chunk[:min(free, len(chunk))])
            free -= len(chunk)
    return ballast


# ------------------------------------------------------------------------------- full disk
@pytest.mark.slow  # ~15-30 s
def test_disk_full_mid_commit_then_resume_exactly(tmp_path: Path) -> None:
    events = crash_events(30_000)
    with small_file_system(tmp_path / "fs", "24m") as fs:
        repo = fs / "repo"
        url = f"git://{repo}"
        loader = GitDriver(url, app=APP)
        append_inputs(build(), loader, {"events": events})
        loader.close()
        ballast = fill(fs, leave=600_000)
        with pytest.raises(DriverError) as info:
            build().run(url, until="end", commit_interval=0, batch_size=500)
        err = info.value
        assert "No space left on device (ENOSPC)" in str(err), err
        assert str(getattr(err, "path", "")).startswith(str(repo)), err
        assert str(repo) in str(err) and "resumes at its last commit" in str(err)
        stopped = GitDriver(url, app=APP)
        position = stopped.committed(APP, "events", 0)
        stopped.close()
        assert 0 < position < len(events), position  # it failed in the middle
        print(f"stopped at {position} of {len(events)}: {err}")
        fsck_clean(repo)
        # space returns: the next run resumes at the last commit and ends exactly
        ballast.unlink()
        build().run(url, until="end", commit_interval="50ms", batch_size=500).driver.close()
        assert outputs(url) == reference(events)
        fsck_clean(repo)


# ------------------------------------------------------------------------------- pack
PACKER = """
import sys
sys.path[:0] = [{root!r}]
from workbench.drivers.git import GitDriver
d = GitDriver({url!r}, app={app!r})
print("packing", flush=True)
d.pack()
print("packed", flush=True)
"""


@pytest.mark.slow  # ~20-40 s
def test_killed_while_packing_then_resume_exactly(tmp_path: Path) -> None:
    events = crash_events(12_000)
    repo = tmp_path / "repo"
    url = f"git://{repo}"
    # half the input in many small commits (thousands of loose objects to pack), then a stop:
    # windows stay open, as a job's would when it is stopped for maintenance
    engine = prepare(build(), url, inputs={"events": events}, commit_interval=0,
                     batch_size=40)
    seen = 0

    def progress(n: int) -> None:
        nonlocal seen
        seen += n
        if seen >= 9_000:
            engine.stop()

    engine.run_until_end(progress=progress)
    assert not engine.finished
    engine.close()
    engine.driver.close()
    check = GitDriver(url, app=APP)
    stopped_at = check.committed(APP, "events", 0)
    check.close()
    assert 0 < stopped_at < len(events)
    loose = sum(len(files) for _d, _s, files in os.walk(repo / "objects"))
    assert loose > 1_000, loose
    rng = random.Random(7)
    script = PACKER.format(root=str(ROOT), url=url, app=APP)
    started = time.monotonic()
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "packing"
        time.sleep(rng.uniform(0.0, 0.8))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
        fsck_clean(repo)
        check = GitDriver(url, app=APP)
        assert check.committed(APP, "events", 0) == stopped_at
        assert len(check.read_all("events")) == len(events)
        check.close()
    assert kills >= 1, "every pack finished before the kill: pack more objects"
    # a pack that finishes, then the rest of the run: exactly one uninterrupted run's output
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and "packed" in done.stdout, done.stderr
    assert not [p for p in (repo / "objects").iterdir() if len(p.name) == 2 and any(p.iterdir())]
    build().run(url, until="end", batch_size=1_000).driver.close()
    assert outputs(url) == reference(events)
    fsck_clean(repo)
    print(f"{kills} kills during pack, {loose} loose files, {time.monotonic() - started:.1f} s")


# ------------------------------------------------------------------------------- stale lock
HOLDER = """
import sys, time
sys.path[:0] = [{root!r}]
from tests.drivers.test_git_crash import build
from workbench.drivers.git import GitDriver
d = GitDriver({url!r}, app={app!r})
run = build().run(d, until="end", commit_interval=0, batch_size=200)
"""


def test_lock_left_by_a_crashed_process_on_another_host(tmp_path: Path) -> None:
    events = crash_events(6_000)
    repo = tmp_path / "repo"
    url = f"git://{repo}"
    driver = GitDriver(url, app=APP)
    append_inputs(build(), driver, {"events": events})
    driver.close()
    # a job runs, commits a few times and is killed with its lock in place
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT), url=url,
                                                                 app=APP)])
    reader = GitDriver(url, app=APP)
    deadline = time.monotonic() + 120
    while reader.committed(APP, "events", 0) < 1_000 and time.monotonic() < deadline:
        reader.wait_for_data(0.5)
    proc.kill()
    proc.wait()
    reader.close()
    lock = repo / "workbench.lock"
    info = json.loads(lock.read_text())
    assert info["pid"] == proc.pid
    # ... on another host (the repository is on a shared file system)
    info["host"] = "build-agent-7"
    lock.write_text(json.dumps(info))
    fsck_clean(repo)
    # while the lock is fresh, another host's writer may still be alive: refused, with a hint
    with pytest.raises(DriverError, match=r"host 'build-agent-7'.*lock_lease"):
        build().run(url, until="end")
    # once it is older than the lease, it is taken over with a warning, and the run resumes
    old = time.time() - 3_600
    os.utime(lock, (old, old))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build().run(url, until="end", batch_size=1_000).driver.close()
    assert any("build-agent-7" in str(w.message) and "stale" in str(w.message)
               for w in caught), [str(w.message) for w in caught]
    assert outputs(url) == reference(events)
    assert not lock.exists()
    fsck_clean(repo)
