"""The clickstream example: the main job of `make demo`.

Run it as a script (prints the results of a bounded run on the in-memory driver), or promote the
same graph with the CLI:

    workbench run examples/clickstream.py:pipeline --driver memory:// --until end
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

import workbench as wb

DATA = Path(__file__).parent / "data"


def build(clicks: pd.DataFrame | str | None = None,
          profiles: pd.DataFrame | str | None = None) -> wb.Pipeline:
    """The clickstream pipeline: paid clicks, split by size, per-user minute totals, enriched
    with profiles."""
    clicks = pd.read_csv(DATA / "clicks.csv") if clicks is None else clicks
    profiles = pd.read_csv(DATA / "profiles.csv") if profiles is None else profiles

    p = wb.Pipeline("clickstream")
    events = p.source("clicks", key="user_id", time="ts", sample=clicks)
    # column expressions run on whole columns; a Python function (lambda) works the same way,
    # record by record: filter(lambda e: e["amount"] > 0)
    paid = (events.filter(wb.col("amount") > 0, name="paid-only")
                  .assign(cents=(wb.col("amount") * 100).round().cast(int), name="add-cents"))
    paid.to("paid")
    parts = paid.split(big=wb.col("amount") > 100, small=wb.col("amount") <= 100)
    parts.big.to("big-purchases")
    parts.rest.to("unsized")  # nothing lands here: every paid click is big or small

    per_user = (paid.group_by("user_id")
                    .window(wb.Tumbling("60s", grace="5s"), emit="close")
                    .agg(total=("amount", "sum"), n="count", name="per-user-minute"))
    per_user.to("per-user-minute")
    per_user.late.to("late-clicks")

    users = p.table("profiles", key="user_id", time="updated", sample=profiles)
    enriched = paid.join(users, how="left", name="enrich")
    enriched.to("enriched")
    return p


pipeline = build()


def main() -> int:
    run = pipeline.run("memory://")
    pd.set_option("display.width", 120)
    print(pipeline)
    print()
    print(run)
    for topic, frame in run.frames().items():
        print(f"\n== {topic}: {len(frame)} records")
        print(frame.head(8).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
