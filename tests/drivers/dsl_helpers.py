"""One pipeline with every operator of the rest of the DSL (issue 15, part A), for the driver
equivalence tests: a re-grouped table, a table filter's deletes, suppress (time limit with a
bounded buffer, and window close), cogroup (running and windowed), repartition, a topic
function and split with a named default branch. Each driver test runs it on its own data
(clicks keyed by user with ``ts``, ``amount``, ``page``; profiles with ``country``)."""

from __future__ import annotations

import workbench as wb

#: sinks whose records cross a repartition topic written by several tasks: their order
#: depends on commit timing, their final value per key does not
REPARTITIONED = ("d-per-country", "d-moved-count")


def dsl_pipeline(name: str, clicks: str, profiles: str, *, key: str = "user",
                 partitions: int | None = None, sfx: str = "") -> wb.Pipeline:
    """The pipeline; its sinks are ``d-<what><sfx>``."""
    p = wb.Pipeline(name)
    ev = p.source(clicks, key=key, time="ts", partitions=partitions)
    prof = p.table(profiles, key=key, time="ts", partitions=partitions)
    prof.group_by(lambda v: v["country"]).count(name="per-country").to(f"d-per-country{sfx}")
    prof.filter(lambda v: v["country"] != "C0", name="not-c0").changes().to(
        f"d-filtered{sfx}")
    g = ev.group_by_key()
    g.count(name="click-count").suppress(until=wb.TimeLimit("2s"), max_records=5,
                                    name="limited").to(f"d-limited{sfx}")
    (g.window(wb.Tumbling("30s", grace="5s")).count(name="tumbling")
      .suppress(until="window-close", name="final").to(f"d-final{sfx}"))
    paid = ev.filter(lambda e: e["amount"] > 0).group_by_key()
    co = wb.cogroup(g, lambda a, e: a + 1, paid, lambda a, e: a + e["amount"])
    co.aggregate(0, name="score").to(f"d-score{sfx}")
    co.window(wb.Tumbling("60s", grace="10s")).aggregate(0, name="score-min").to(
        f"d-score-min{sfx}")
    ev.repartition(2, name="moved").group_by_key().count(name="moved-count").to(
        f"d-moved-count{sfx}")
    ev.to(lambda e: f"d-page-{e['page'][-1]}{sfx}",
          topics=[f"d-page-{i}{sfx}" for i in range(6)], name="by-page")
    ev.to(lambda e: f"d-dyn-{e['page'][-1]}{sfx}", name="by-page-created")  # not declared
    parts = ev.split(big=lambda e: e["amount"] > 30, default="other", name="sizes")
    parts.other.to(f"d-other{sfx}")
    return p


def created_topics(sfx: str = "") -> list[str]:
    """The topics the pipeline's undeclared topic function creates (pages end in 0-5)."""
    return [f"d-dyn-{i}{sfx}" for i in range(6)]
