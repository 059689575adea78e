"""Time travel on the git driver: run a pipeline into a git repository, look at a table as of an
old commit, then replay a changed pipeline from an old commit on a new branch and compare.

    python examples/git_time_travel.py [REPO_PATH]

Without REPO_PATH the repository goes to a temporary directory. Afterwards, ordinary git shows
what happened: ``git -C REPO_PATH log --oneline --graph --all``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

import workbench as wb
from workbench.drivers.git import GitDriver

DATA = Path(__file__).parent / "data"


def build(min_amount: float = 0.0) -> wb.Pipeline:
    """Per-user totals of the clicks worth more than ``min_amount``: a running table and
    per-minute final values."""
    p = wb.Pipeline("shop")
    paid = (p.source("clicks", key="user_id", time="ts")
             .filter(lambda e: e["amount"] > min_amount, name="paid"))
    paid.group_by_key().agg(total=("amount", "sum"), n="count", name="totals").to("totals")
    (paid.group_by_key()
         .window(wb.Tumbling("60s", grace="5s"), emit="close")
         .agg(total=("amount", "sum"), n="count", name="per-minute")
         .to("per-minute"))
    return p


def main(argv: list[str]) -> int:
    repo = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp()) / "shop.git"
    url = f"git://{repo.resolve()}"
    clicks = pd.read_csv(DATA / "clicks.csv")
    pd.set_option("display.width", 120)

    # 1. run v1 into the repository: small batches and a commit per batch, so the history
    #    has some steps (a real job commits every 100 ms)
    v1 = build().run(GitDriver(url), inputs={"clicks": clicks}, commit_interval=0,
                     batch_size=50)
    print(v1)
    drv = v1.driver
    assert isinstance(drv, GitDriver)

    # 2. the history: one git commit per engine commit, with the input positions
    history = drv.history("shop")
    print(f"\n== history of {drv.branch} ({len(history)} commits, newest first)")
    for c in history:
        print(" ", c)

    # 3. the totals table as of an old commit, beside the table now
    old = [c for c in history if c.kind == "commit"][len(history) // 2]
    then = drv.as_of(old).table("totals", key_name="user_id")
    now = drv.table("totals", key_name="user_id")
    print(f"\n== totals as of {old.id[:12]} (after {old.positions['clicks'][0]} clicks) "
          f"and now (after {len(clicks)} clicks)")
    both = then[["user_id", "total", "n"]].merge(now[["user_id", "total", "n"]], on="user_id",
                                                 suffixes=("_then", "_now"), how="outer")
    print(both.to_string(index=False))
    drv.close()

    # 4. replay: a changed pipeline (only clicks over 100) from the commit that loaded the
    #    inputs, on a new branch; the original branch stays as it was
    loaded = [c for c in history if c.kind == "append"][-1]
    replay_driver = GitDriver(url, branch="replay-over-100", start_at=loaded.id)
    v2 = build(min_amount=100.0).run(replay_driver)
    print(f"\n== replay on {replay_driver.branch} from {loaded.id[:12]}: {v2}")
    a = GitDriver(url, app="shop").table("totals", key_name="user_id")
    b = replay_driver.table("totals", key_name="user_id")
    diff = a[["user_id", "total", "n"]].merge(b[["user_id", "total", "n"]], on="user_id",
                                              suffixes=("_v1", "_v2"), how="outer")
    diff["total_change"] = diff["total_v2"] - diff["total_v1"]
    print(diff.to_string(index=False))
    v1_minutes = len(GitDriver(url, app="shop").read_all("per-minute"))
    v2_minutes = len(replay_driver.read_all("per-minute"))
    print(f"\nper-minute windows: v1 {v1_minutes}, v2 {v2_minutes}")
    replay_driver.close()
    print(f"\nrepository: {repo}\n  git -C {repo} log --oneline --graph --all | head")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
