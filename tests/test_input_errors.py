"""Bad input gets a clear error that names what and where, never a traceback from deep inside
(issue 10, "Clear errors instead of tracebacks from deep inside")."""

from __future__ import annotations

import math
from typing import Any

import pytest

import workbench as wb
from workbench.drivers.memory import MemoryDriver


def _run_times(times: list[Any]) -> wb.Run:
    p = wb.Pipeline("times")
    rows = [{"k": "a", "t": t} for t in times]
    p.source("in", key="k", time="t", sample=rows).to("out")
    return p.run("memory://")


@pytest.mark.parametrize(("bad", "words"), [
    (float("nan"), "missing"),
    (math.inf, "not finite"),
    (-5, "negative timestamp"),
    (2**70, "too large"),
    (1_700_000_000_000_000_000, "nanoseconds"),
    (1_700_000_000_000_000, "microseconds"),
])
def test_bad_timestamps_in_samples_name_the_row(bad: Any, words: str) -> None:
    with pytest.raises(wb.ProcessingError, match=rf"row 1 for topic 'in'.*{words}"):
        _run_times([1_000, bad])


def test_bad_timestamps_read_from_a_topic_name_topic_partition_offset() -> None:
    name = "bad-times"
    MemoryDriver.forget(name)
    try:
        driver = MemoryDriver.named(name)
        driver.create_topic("in", 1)
        driver.append("in", 0, [("a", {"t": 5}, 5, None, None),
                                ("a", {"t": 1_700_000_000_000_000_000}, 0, None, None)])
        p = wb.Pipeline("times2")
        p.source("in", key="k", time="t").to("out")
        with pytest.raises(wb.ProcessingError,
                           match=r"topic 'in' partition 0 offset 1.*nanoseconds"):
            p.run(f"memory://{name}")
    finally:
        MemoryDriver.forget(name)


@pytest.mark.parametrize("bad", [math.inf, math.nan, 10**20, "1e99s"])
def test_infinite_or_huge_durations_are_refused(bad: Any) -> None:
    with pytest.raises(wb.DefinitionError, match="duration"):
        wb.Tumbling(bad)


@pytest.mark.parametrize("bad", [0, -1, "10", 2.5, True])
def test_batch_size_must_be_a_whole_number(bad: Any) -> None:
    p = wb.Pipeline("bs")
    p.source("in", sample=[{"n": 1}]).to("out")
    with pytest.raises(wb.DefinitionError, match="batch_size must be a whole number"):
        p.run("memory://", batch_size=bad)


@pytest.mark.parametrize("bad", ["3", 0, -2, 1.5, True])
def test_partitions_must_be_a_whole_number(bad: Any) -> None:
    p = wb.Pipeline("parts")
    with pytest.raises(wb.DefinitionError, match="partitions must be a whole number"):
        p.source("in", partitions=bad)
    s = p.source("ok")
    with pytest.raises(wb.DefinitionError, match="partitions must be a whole number"):
        s.to("out", partitions=bad)


def test_a_filter_returning_an_array_says_what_to_return() -> None:
    np = pytest.importorskip("numpy")
    p = wb.Pipeline("arr")
    s = p.source("in", sample=[{"x": [1, 2]}])
    s.filter(lambda v: np.array(v["x"]) > 1, name="big").to("out")
    with pytest.raises(wb.ProcessingError, match=r"step 'big'.*instead of True/False"):
        p.run("memory://")


def test_split_predicate_returning_an_array_says_what_to_return() -> None:
    np = pytest.importorskip("numpy")
    p = wb.Pipeline("arr2")
    s = p.source("in", sample=[{"x": [1, 2]}])
    s.split(big=lambda v: np.array(v["x"]) > 1).big.to("out")
    with pytest.raises(wb.ProcessingError, match="instead of True/False"):
        p.run("memory://")


@pytest.mark.parametrize(("url", "words"), [
    ("memory://x?members=3", "unknown parameter 'members'"),
    ("memory://x?partitions=abc", "partitions='abc'"),
    ("memory://x y", "may contain only"),
])
def test_bad_memory_urls(url: str, words: str) -> None:
    with pytest.raises(wb.DefinitionError, match=words):
        wb.connect(url)


def test_memory_url_partitions_parameter() -> None:
    driver = wb.connect("memory://?partitions=3")
    assert driver.ensure_topic("t", None) == 3


def test_dict_and_list_keys_are_usable_in_stateful_steps() -> None:
    p = wb.Pipeline("dk")
    rows = [{"g": {"a": i % 2}, "t": i} for i in range(4)]
    s = p.source("in", time="t", sample=rows, partitions=2)
    s.group_by(lambda v: v["g"], name="by-dict").count(name="n").changes().to("out")
    got = sorted((repr(r.key), r.value) for r in p.run("memory://").records("out"))
    assert got == [("{'a': 0}", 1), ("{'a': 0}", 2), ("{'a': 1}", 1), ("{'a': 1}", 2)]
