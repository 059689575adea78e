"""Time travel on ``git://``: a table as of an old commit equals the memory driver's table after
the same number of input records; replays on a new branch start from an old commit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dulwich")

import pandas as pd

import workbench as wb
from workbench.drivers import _FACTORIES
from workbench.drivers.git import GitDriver

ROOT = Path(__file__).resolve().parents[2]
APP = "tt"


@pytest.fixture(autouse=True)
def _git_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    if "git" not in _FACTORIES:
        monkeypatch.setitem(_FACTORIES, "git", GitDriver)


def build(threshold: float = 0.0) -> wb.Pipeline:
    p = wb.Pipeline(APP)
    (p.source("events", key="user_id", time="ts")
      .filter(lambda e: e["amount"] > threshold)
      .group_by_key()
      .agg(total=("amount", "sum"), n="count", name="totals")
      .to("totals"))
    return p


def table_after(events: list[dict[str, Any]]) -> pd.DataFrame:
    run = build().run("memory://", inputs={"events": events})
    from workbench.frames import records_to_frame
    from workbench.preview import latest_per_key

    return records_to_frame(latest_per_key(run.driver.read_all("totals")))


def test_table_as_of_an_old_commit_equals_memory_after_as_many_records(tmp_path: Path) -> None:
    import workload

    events = [{**e, "user_id": e["user_id"] % 50} for e in workload.events(6_000)]
    url = f"git://{tmp_path}/repo"
    run = build().run(url, inputs={"events": events}, commit_interval=0, batch_size=700)
    driver = run.driver
    assert isinstance(driver, GitDriver)
    history = driver.history(APP)
    engine_commits = [c for c in history if c.kind == "commit"]
    assert len(engine_commits) == run.engine.stats.commits
    assert [c.kind for c in history][-1] == "append"
    checked = 0
    for commit in engine_commits[::3]:
        n = commit.positions["events"][0]
        view = driver.as_of(commit.id)
        pd.testing.assert_frame_equal(view.table("totals"), table_after(events[:n]))
        checked += 1
    assert checked >= 3
    # the same through GitDriver(url, at=time) and the commit object
    middle = engine_commits[len(engine_commits) // 2]
    by_time = GitDriver(url, branch=f"workbench/{APP}", at=middle.time)
    assert by_time.head == middle.id
    n = middle.positions["events"][0]
    pd.testing.assert_frame_equal(by_time.table("totals"), table_after(events[:n]))
    pd.testing.assert_frame_equal(driver.as_of(middle).frame("totals"),
                                  by_time.frame("totals"))
    driver.close()


def test_replay_a_changed_pipeline_from_an_old_commit(tmp_path: Path) -> None:
    """Fork the branch at the commit that loaded the inputs, run a changed pipeline there,
    compare with the original; the original branch is untouched."""
    import workload

    events = [{**e, "user_id": e["user_id"] % 20} for e in workload.events(3_000)]
    url = f"git://{tmp_path}/repo"
    first = build().run(url, inputs={"events": events})
    first.driver.close()
    base = GitDriver(url, app=APP)
    loaded = [c for c in base.history() if c.kind == "append"][-1]
    original = base.table("totals")
    replay = build(threshold=100.0).run(GitDriver(url, branch="replay-100", start_at=loaded.id))
    changed = replay.driver.table("totals")
    assert changed["n"].sum() == sum(1 for e in events if e["amount"] > 100)
    assert original["n"].sum() == sum(1 for e in events if e["amount"] > 0)
    assert base.refresh() is None and base.table("totals").equals(original)
    replay.driver.close()
    base.close()


def test_time_travel_example_runs(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "git_time_travel.py"),
                          str(tmp_path / "repo")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "replay" in out.stdout
