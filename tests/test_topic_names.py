"""User topics never collide with internal ones; loops and double sinks are refused at
definition time with a message that says what to do."""

from __future__ import annotations

import pytest

import workbench as wb
from workbench.errors import DefinitionError


def _p() -> wb.Pipeline:
    return wb.Pipeline("app")


@pytest.mark.parametrize("topic", ["app-agg-repartition", "app-agg-store-changelog",
                                   "app-x-preview"])
def test_a_source_named_like_an_internal_topic_is_refused(topic: str) -> None:
    with pytest.raises(DefinitionError, match=r"internal topic.*reserved"):
        _p().source(topic)


@pytest.mark.parametrize("topic", ["app-agg-repartition", "app-agg-store-changelog"])
def test_a_sink_named_like_an_internal_topic_is_refused(topic: str) -> None:
    p = _p()
    s = p.source("in", key="k", sample=[{"k": "a"}])
    with pytest.raises(DefinitionError, match="reserved for the topics workbench creates"):
        s.to(topic)


def test_the_collision_that_looped_forever_is_refused() -> None:
    # before: the sink wrote into the aggregation's own repartition topic
    p = _p()
    s = p.source("in", key="k", sample=[{"k": "a", "g": 1}])
    s.group_by("g").count(name="agg").to("totals")
    with pytest.raises(DefinitionError, match="internal topic"):
        s.to("app-agg-repartition")


def test_other_pipelines_internal_names_are_fine() -> None:
    p = _p()
    p.source("other-agg-repartition").to("other-x-changelog")


def test_sink_then_source_is_a_loop() -> None:
    p = _p()
    p.source("a", sample=[{"n": 1}]).to("b")
    with pytest.raises(DefinitionError, match=r"written by step 'to-b'.*loop"):
        p.source("b")


def test_two_sinks_to_one_topic_say_how_to_write_both() -> None:
    p = _p()
    a = p.source("a", sample=[{"n": 1}])
    b = p.source("b2", sample=[{"n": 2}])
    a.to("out")
    with pytest.raises(DefinitionError, match=r"already written by step 'to-out'.*merge\(b\)"):
        b.to("out")


def test_step_names_that_make_the_same_internal_topic_are_refused() -> None:
    # ("x-store", suffix "store") and ("x", store "store-store") both make 'x-store-store'
    p2 = _p()
    s2 = p2.source("in", key="k", sample=[{"k": "a", "g": 1}])
    s2.group_by("g").count(name="x-store").to("t1")        # changelog app-x-store-store-...
    s2.process(lambda: _Keep(), stores={"store-store": "kv"}, name="x").to("t2")
    with pytest.raises(DefinitionError, match="would serve both"):
        p2.plan()


class _Keep(wb.Processor):
    def process(self, record: wb.Record) -> None:
        self.context.forward(record)


def test_store_names_are_checked_like_step_names() -> None:
    p = _p()
    s = p.source("in", sample=[{"n": 1}])
    with pytest.raises(DefinitionError, match="store name"):
        s.process(_Keep, stores={"../../etc": "kv"})
