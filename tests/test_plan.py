"""Plan compilation: sub-topologies, repartition topics, stores, changelogs."""

from __future__ import annotations

import workbench as wb


def test_stateless_pipeline_is_one_subtopology() -> None:
    p = wb.Pipeline("app")
    s = p.source("in")
    s.filter(lambda v: True).map(lambda v: v).to("out")
    plan = p.plan()
    assert len(plan.subtopologies) == 1
    assert plan.subtopologies[0].inputs == ("in",)
    assert plan.subtopologies[0].outputs == ("out",)
    assert {t: s.kind for t, s in plan.topics.items()} == {"in": "source", "out": "sink"}


def test_rekey_before_stateful_step_inserts_repartition_topic() -> None:
    p = wb.Pipeline("app")
    s = p.source("in", sample=[{"u": 1}])
    s.group_by("u").count(name="counts").to("out")
    plan = p.plan()
    assert [st.inputs for st in plan.subtopologies] == [("in",), ("app-counts-repartition",)]
    assert plan.topics["app-counts-repartition"].kind == "repartition"
    assert [(s.name, s.changelog) for s in plan.stores] == [
        ("counts-store", "app-counts-store-changelog")]
    assert plan.topics["app-counts-store-changelog"].compact
    assert "repartition" in plan.describe()


def test_group_by_key_without_rekey_needs_no_repartition() -> None:
    p = wb.Pipeline("app")
    p.source("in").group_by_key().count().to("out")
    assert len(p.plan().subtopologies) == 1


def test_unconnected_sources_are_separate_subtopologies() -> None:
    p = wb.Pipeline("app")
    p.source("a").to("x")
    p.source("b").to("y")
    assert [st.inputs for st in p.plan().subtopologies] == [("a",), ("b",)]


def test_default_step_names_are_deterministic() -> None:
    def build() -> list[str]:
        p = wb.Pipeline("app")
        s = p.source("in")
        s.map(lambda v: v).filter(lambda v: v).map(lambda v: v).to("out")
        return p.steps

    assert build() == build() == ["in", "map-1", "filter-1", "map-2", "to-out"]


def test_subtopology_reading_its_own_repartition_topic_runs() -> None:
    p = wb.Pipeline("app")
    clicks = p.source("clicks", key="u", time="t",
                      sample=[{"u": "a", "t": 5, "x": 1}, {"u": "b", "t": 6, "x": 2}])
    prof = p.table("profiles", key="u", time="t", sample=[{"u": "a", "t": 0, "c": "DE"}])
    clicks.join(prof).to("joined")
    clicks.group_by("u").agg(n="count").join(prof, how="left").to("counts")
    run = p.run("memory://")
    assert [r.value["c"] for r in run.records("joined")] == ["DE"]
    final = {r.key: r.value for r in run.records("counts")}
    assert final == {"a": {"n": 1, "u": "a", "t": 0, "c": "DE"}, "b": {"n": 1}}
