"""Live tailing on ``git://``: other processes append records while a job runs; the job
notices them (inotify, no busy polling) and its commits go on top of theirs; nothing is lost
or duplicated, and a commit by another writer still fences the job."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dulwich")

import workbench as wb
from tests.drivers.test_git import _put
from workbench.drivers import Transaction
from workbench.drivers.git import GitDriver
from workbench.drivers.git.watch import BranchWatch
from workbench.errors import FencedError

ROOT = Path(__file__).resolve().parents[2]
APP = "live"


def recs(n: int, start: int = 0) -> list[tuple[Any, Any, int, int, None]]:
    return [(f"k{i % 5}", {"i": i}, 1_000 + i, 0, None) for i in range(start, start + n)]


def live_pipeline() -> wb.Pipeline:
    """The job ``workbench run`` runs in these tests: paid events with their amount in cents,
    and a per-user count."""
    p = wb.Pipeline(APP)
    paid = (p.source("events", key="user", time="ts")
             .filter(lambda e: e["amount"] > 0)
             .map(lambda e: {**e, "cents": round(e["amount"] * 100)}))
    paid.to("paid")
    paid.group_by_key().count(name="per-user").to("per-user")
    return p


def events(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"user": f"u{i % 7}", "ts": 1_000_000 + 10 * i, "amount": (i % 5) - 1.0, "i": i}
            for i in range(start, start + n)]


def fsck_clean(repo: Path) -> None:
    git = shutil.which("git")
    if git is None:
        return
    out = subprocess.run([git, "-C", str(repo), "fsck", "--strict"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "error" not in out.stderr, out


# ------------------------------------------------------------------------------- in process
def test_a_writer_commits_on_top_of_appends_it_did_not_see(tmp_path: Path) -> None:
    url = f"git://{tmp_path}/repo"
    job = GitDriver(url, app="a")
    job.create_topic("in", 1)
    job.create_topic("out", 1, kind="sink")
    job.append("in", 0, recs(3))
    job.assign("a", ["in"])
    producer = GitDriver(url, app="a")
    producer.append("in", 0, recs(4, 3))  # the job has not seen this commit
    job.commit(Transaction("a", outputs={("out", 0): recs(2)}, positions={("in", 0): 3}))
    assert [h.kind for h in job.history()] == ["commit", "append", "append"]
    assert job.end_offset("in", 0) == 7 and job.committed("a", "in", 0) == 3
    again = GitDriver(url, app="a")
    assert [r[1]["i"] for r in again.read_all("in")] == list(range(7))
    assert len(again.read_all("out")) == 2
    # and the producer appends on top of the job's commit
    producer.append("in", 0, recs(1, 7))
    assert GitDriver(url, app="a").end_offset("in", 0) == 8
    job.close()
    producer.close()
    fsck_clean(tmp_path / "repo")


def test_a_commit_that_is_not_an_append_fences_the_writer(tmp_path: Path) -> None:
    url = f"git://{tmp_path}/repo"
    job = GitDriver(url, app="a")
    job.create_topic("in", 1)
    job.append("in", 0, recs(3))
    job.assign("a", ["in"])
    _put(url, "workbench/a", "notes.txt", b"someone else writes this branch\n")
    with pytest.raises(FencedError, match=r"moved under this writer.*not an append"):
        job.commit(Transaction("a", positions={("in", 0): 3}))
    job.close()


def test_wait_for_data_wakes_on_an_append_by_another_process(tmp_path: Path) -> None:
    url = f"git://{tmp_path}/repo"
    d = GitDriver(url, app="a")
    d.create_topic("in", 1)
    d.append("in", 0, recs(1))
    assert d.wait_for_data(0.05) is False  # nothing moved
    script = ("import time; from workbench.drivers.git import GitDriver\n"
              f"time.sleep(0.3); GitDriver({url!r}, app='a').append('in', 0, "
              "[('k', 1, 5, 0, None)])\n")
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        assert d.wait_for_data(60) is True
        assert d.end_offset("in", 0) == 2
    finally:
        proc.wait(timeout=60)
    if sys.platform.startswith("linux"):
        watch = d._watch
        assert isinstance(watch, BranchWatch) and watch.notifies  # inotify, not polling
    d.close()


# ------------------------------------------------------------------------------- processes
APPENDER = """
import os, sys, time
sys.path[:0] = [{root!r}]
from workbench.drivers.git import GitDriver
d = GitDriver({url!r}, app={app!r})
while not os.path.exists({go!r}):  # start together
    time.sleep(0.001)
for b in range({batches}):
    d.append("in", 0, [("w{w}", {{"w": {w}, "b": b, "j": j}}, 1, 0, None) for j in range({size})])
print(d.rebases)
d.close()
"""


def test_concurrent_appenders_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    """Four processes append 60 batches each to one partition at once (each batch one commit,
    racing for the branch): every record is there exactly once, each process's in order."""
    url = f"git://{tmp_path}/repo?segment_bytes=4096"
    d = GitDriver(url, app="a")
    d.create_topic("in", 1)
    d.append("in", 0, recs(1))
    writers, batches, size = 4, 60, 5
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER.format(
        root=str(ROOT), url=url, app="a", batches=batches, w=w, size=size, go=str(go))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(writers)]
    time.sleep(0.5)
    go.touch()
    rebases = 0
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        rebases += int(out)
    assert rebases > 0, "the appenders never raced: the test proves nothing"
    print(f"{rebases} of {writers * batches} appends redone on a moved branch")
    got = [r[1] for r in GitDriver(url, app="a").read_all("in")[1:]]
    assert len(got) == writers * batches * size
    for w in range(writers):
        mine = [(v["b"], v["j"]) for v in got if v["w"] == w]
        assert mine == [(b, j) for b in range(batches) for j in range(size)]
    kinds = [c.kind for c in d.history()]
    assert kinds.count("append") == 1 + writers * batches
    d.close()
    fsck_clean(tmp_path / "repo")


def test_a_live_job_tails_records_appended_by_another_process(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    url = f"git://{repo}"
    producer = GitDriver(url, app=APP)
    from workbench.run import append_inputs

    append_inputs(live_pipeline(), producer, {"events": events(50)})
    job = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "run", f"{__file__}:live_pipeline",
         "--driver", url, "--until", "forever", "--commit-interval", "50ms"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader = GitDriver(url, app=APP)
    try:
        total = 50
        for k in range(6):
            deadline = time.monotonic() + 120
            while reader.committed(APP, "events", 0) < total:  # the job caught up
                assert job.poll() is None, job.communicate()
                assert time.monotonic() < deadline, "the job did not process the appends"
                reader.wait_for_data(1.0)
            append_inputs(live_pipeline(), producer, {"events": events(20 + k, total)})
            total += 20 + k
        deadline = time.monotonic() + 120
        while reader.committed(APP, "events", 0) < total:
            assert time.monotonic() < deadline, "the job did not process the last append"
            reader.wait_for_data(1.0)
    finally:
        job.send_signal(signal.SIGTERM)
        _out, err = job.communicate(timeout=120)
    assert job.returncode == 0, err
    expected = live_pipeline().run("memory://", inputs={"events": events(total)})
    reader.refresh()
    for topic in ("paid", "per-user"):
        want = [r[:3] for r in expected.driver.read_all(topic)]
        assert [r[:3] for r in reader.read_all(topic)] == want, topic
    kinds = [c.kind for c in reader.history()]
    assert kinds.count("append") == 7 and kinds.count("commit") >= 7
    producer.close()
    reader.close()
    fsck_clean(repo)


def test_a_writer_reading_past_a_foreign_commit_is_fenced(tmp_path: Path) -> None:
    """Following the branch (reads) lets a writer skip only appends, too."""
    url = f"git://{tmp_path}/repo"
    job = GitDriver(url, app="a")
    job.create_topic("in", 1)
    job.append("in", 0, recs(3))
    job.assign("a", ["in"])
    GitDriver(url, app="a").append("in", 0, recs(1, 3))
    job.refresh()
    assert job.end_offset("in", 0) == 4  # an append: followed
    _put(url, "workbench/a", "notes.txt", b"not an append\n")
    with pytest.raises(FencedError, match="not an append"):
        job.refresh()
    job.close()
