"""Pipelines the deployment tests generate manifests for (importable as TARGETs:
``tests/deploy/pipelines.py:NAME``)."""

from __future__ import annotations

import workbench as wb

CLICKS = [{"user_id": f"u{i % 3}", "ts": 1_000 + 10 * i, "amount": (i % 5) - 1.5}
          for i in range(20)]
PROFILES = [{"user_id": f"u{i}", "updated": 500, "tier": "gold" if i else "free"}
            for i in range(3)]


def shop(name: str = "shop", partitions: int | None = None, sfx: str = "") -> wb.Pipeline:
    """Sources (one with pinned partitions), a re-keying aggregation (repartition topic and a
    windowed store), a stream-table join (table store), a sink with pinned partitions, a table
    sink and a late-records sink. ``sfx`` is appended to every user topic's name."""
    p = wb.Pipeline(name)
    clicks = p.source(f"clicks{sfx}", key="user_id", time="ts", sample=CLICKS,
                      partitions=partitions)
    profiles = p.table(f"profiles{sfx}", key="user_id", time="updated", sample=PROFILES)
    paid = clicks.filter(lambda c: c["amount"] > 0, name="paid")
    per_amount = (paid.group_by(lambda c: int(c["amount"]), name="by-amount")
                      .window(wb.Tumbling("60s", grace="5s"))
                      .agg(total=("amount", "sum"), n="count", name="per-amount"))
    per_amount.to(f"per-amount{sfx}")
    per_amount.late.to(f"late{sfx}")
    paid.join(profiles, how="left", name="enrich").to(f"enriched{sfx}", partitions=2)
    paid.group_by("user_id").count(name="clicks-per-user").to(f"clicks-per-user{sfx}")
    return p


def odd_names() -> wb.Pipeline:
    """Topic names a Kubernetes object cannot have (capitals, underscores)."""
    p = wb.Pipeline("Odd_Names")
    src = p.source("Raw_Events", key="user_id", time="ts", sample=CLICKS)
    src.group_by("user_id").count(name="Per_User").to("per_user_TOTALS")
    return p


pipeline = shop()
odd = odd_names()
