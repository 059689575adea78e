"""Key identity is the serialized key, as in Kafka Streams: ``1``, ``1.0`` and ``True`` are
three keys (their JSON differs) although Python finds them equal, so results never depend on
how many partitions a topic has."""

from __future__ import annotations

from typing import Any

import pytest

import workbench as wb

KEYS = [1, 1.0, True, 1, (1, "a"), (1.0, "a"), 1.0, True, [2, 3], [2, 3], "1"]


def _counts(build: Any, partitions: int) -> list[tuple[Any, Any]]:
    p = build(partitions)
    run = p.run("memory://")
    rows = [(r.key, r.value) for r in run.records("out")]
    return sorted(rows, key=repr)


def _grouped(partitions: int) -> wb.Pipeline:
    p = wb.Pipeline("ids")
    rows = [{"g": k, "t": i} for i, k in enumerate(KEYS)]
    s = p.source("in", time="t", sample=rows, partitions=partitions)
    s.group_by(lambda v: v["g"]).count(name="n").changes().to("out")
    return p


@pytest.mark.parametrize("partitions", [1, 3])
def test_equal_in_python_but_not_on_the_wire_are_different_groups(partitions: int) -> None:
    got = _counts(_grouped, partitions)
    finals: dict[str, Any] = {}
    for k, v in got:
        finals[repr(k)] = max(finals.get(repr(k), 0), v)
    assert finals == {"1": 2, "1.0": 2, "True": 2, "(1, 'a')": 1, "(1.0, 'a')": 1,
                      "[2, 3]": 2, "'1'": 1}


def test_results_do_not_depend_on_the_partition_count() -> None:
    assert _counts(_grouped, 1) == _counts(_grouped, 3)


def test_windows_keep_them_apart() -> None:
    p = wb.Pipeline("ids-w")
    rows = [{"g": k, "t": i} for i, k in enumerate([1, 1.0, True, 1.0])]
    s = p.source("in", time="t", sample=rows)
    (s.group_by(lambda v: v["g"]).window(wb.Tumbling(10), emit="close")
      .count(name="n").to("out"))
    got = sorted((repr(r.key.key), r.value) for r in p.run("memory://").records("out"))
    assert got == [("1", 1), ("1.0", 2), ("True", 1)]


def test_a_stream_table_join_matches_on_the_serialized_key() -> None:
    p = wb.Pipeline("ids-j")
    table = p.table("t", key="k", time="ts", sample=[{"k": 1, "name": "int one", "ts": 0}])
    s = p.source("s", key="k", time="ts", sample=[{"k": 1.0, "ts": 5}, {"k": True, "ts": 6},
                                                   {"k": 1, "ts": 7}])
    s.join(table, how="left").to("out")
    got = [(repr(r.key), r.value.get("name")) for r in p.run("memory://").records("out")]
    assert got == [("1.0", None), ("True", None), ("1", "int one")]


def test_nan_keys_are_one_group() -> None:
    p = wb.Pipeline("ids-nan")
    rows = [{"g": float("nan"), "t": i} for i in range(3)]
    s = p.source("in", time="t", sample=rows)
    s.group_by(lambda v: v["g"]).count(name="n").changes().to("out")
    assert [r.value for r in p.run("memory://").records("out")] == [1, 2, 3]


def test_identities_survive_a_restart() -> None:
    from workbench.drivers.memory import MemoryDriver

    name = "ids-restart"
    MemoryDriver.forget(name)
    try:
        def build() -> wb.Pipeline:
            p = wb.Pipeline("ids-r")
            s = p.source("in", time="t")
            s.group_by(lambda v: v["g"]).count(name="n").changes().to("out")
            return p

        build().run(f"memory://{name}", inputs={"in": [{"g": 1, "t": 0}, {"g": 1.0, "t": 1}]})
        run = build().run(f"memory://{name}", inputs={"in": [{"g": 1.0, "t": 2},
                                                            {"g": True, "t": 3}]})
        got = [(repr(r.key), r.value) for r in run.records("out")]
        assert got == [("1", 1), ("1.0", 1), ("1.0", 2), ("True", 1)]
    finally:
        MemoryDriver.forget(name)
