"""A source table joined from a stream is stored once: the join's view of it is restored from
the table's own changelog and writes none of its own."""

from __future__ import annotations

import workbench as wb
from workbench.drivers.memory import MemoryDriver


def _build() -> wb.Pipeline:
    p = wb.Pipeline("enrich")
    profiles = p.table("profiles", key="user", time="ts")
    clicks = p.source("clicks", key="user", time="ts")
    clicks.join(profiles, how="left", name="enrich").to("enriched")
    return p


def test_the_plan_has_one_changelog_for_the_table() -> None:
    plan = _build().plan()
    changelogs = sorted(t for t, spec in plan.topics.items() if spec.kind == "changelog")
    assert changelogs == ["enrich-profiles-store-changelog"]
    join_store = next(s for s in plan.stores if s.step == "enrich")
    assert join_store.shared and join_store.changelog == "enrich-profiles-store-changelog"


def test_after_a_restart_the_join_sees_the_table_from_its_changelog() -> None:
    name = "shared-table"
    MemoryDriver.forget(name)
    try:
        _build().run(f"memory://{name}", inputs={
            "profiles": [{"user": "u1", "ts": 0, "country": "DE"}],
            "clicks": [{"user": "u1", "ts": 5, "amount": 1}]})
        run = _build().run(f"memory://{name}", inputs={
            "clicks": [{"user": "u1", "ts": 6, "amount": 2}]})
        got = [(r.value["amount"], r.value.get("country")) for r in run.records("enriched")]
        assert got == [(1, "DE"), (2, "DE")]
        assert "enrich-enrich-table-changelog" not in run.driver.topics()
    finally:
        MemoryDriver.forget(name)
