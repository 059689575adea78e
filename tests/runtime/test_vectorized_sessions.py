"""Session-window counts on column batches (``runtime/session_vec.py``) compute exactly what the
row operator computes: each pipeline runs vectorized and record by record on the same input,
with batch sizes 1, 3, 7 and 10,000 and a restart in the middle, and every output and ``.late``
record must be equal (values, types, timestamps, headers, order)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workbench as wb
from workbench.drivers.memory import MemoryDriver
from workbench.run import prepare
from workbench.runtime.session_vec import ColumnarSessionStore, SessionCountVec

from .test_vectorized import _outputs, _run

EXAMPLES = int(os.environ.get("WB_VEC_EXAMPLES", "20"))


def _sessions(agg: str, gap: int, grace: int, nones: bool = False,
              headers: bool = False) -> Callable[[], wb.Pipeline]:
    def build() -> wb.Pipeline:
        p = wb.Pipeline("vecs")
        s = p.source("in", key="k", time="t")
        if nones:  # None values are counted too
            s = s.map(lambda v: None if v["i"] == 0 else v)
        if headers:
            s = s.map(lambda r: wb.Record(r.key, r.value, r.timestamp, (
                ("h", str(r.value["i"]).encode()),) if r.value["i"] else None),
                with_record=True)
        g = s.group_by_key().window(wb.Session(gap, grace=grace))
        table = g.count(name="agg") if agg == "count" else g.agg(name="agg", n="count",
                                                                 m="count")
        table.to("out")
        table.late.to("late")
        return p
    return build


def _records(keys: Any, max_t: int, size: int) -> Any:
    return st.lists(st.fixed_dictionaries({
        "k": keys, "t": st.integers(0, max_t), "i": st.integers(-2, 2)}),
        min_size=1, max_size=size)


few_keys = st.one_of(st.sampled_from(["a", "b", "c"]), st.sampled_from([1, 2]), st.none())
odd_keys = st.one_of(st.sampled_from(["a", 1, 1.0, True, (1, 2)]), st.none())
many_keys = st.integers(0, 59)


@pytest.mark.parametrize("agg", ["count", "agg"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_records(few_keys, 80, 40), gap=st.integers(1, 10), grace=st.integers(0, 8),
       batch=st.sampled_from([1, 3, 7, 10_000]), split=st.one_of(st.none(), st.integers(0, 40)),
       nones=st.booleans())
def test_sessions_few_keys(agg: str, rows: list[dict[str, Any]], gap: int, grace: int,
                           batch: int, split: int | None, nones: bool) -> None:
    if split is not None:
        split = min(split, len(rows))
    build = _sessions(agg, gap, grace, nones)
    want = _run(build, rows, vectorize=False, batch=batch, split=split, name="vecs-row")
    got = _run(build, rows, vectorize=True, batch=batch, split=split, name="vecs-col")
    assert got == want


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_records(many_keys, 400, 400), gap=st.integers(1, 12), grace=st.integers(0, 30),
       batch=st.sampled_from([7, 10_000]), split=st.one_of(st.none(), st.integers(0, 400)))
def test_sessions_many_keys_in_lockstep(rows: list[dict[str, Any]], gap: int, grace: int,
                                        batch: int, split: int | None) -> None:
    # 60 keys: several lockstep steps per batch, then the plain loop for the busiest keys;
    # a grace much larger than the gap needs more session columns than the default
    if split is not None:
        split = min(split, len(rows))
    build = _sessions("count", gap, grace)
    want = _run(build, rows, vectorize=False, batch=batch, split=split, name="vecs-row")
    got = _run(build, rows, vectorize=True, batch=batch, split=split, name="vecs-col")
    assert got == want


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_records(odd_keys, 60, 30), gap=st.integers(1, 8), grace=st.integers(0, 5),
       batch=st.sampled_from([1, 3, 10_000]), split=st.one_of(st.none(), st.integers(0, 30)))
def test_sessions_odd_keys_and_headers(rows: list[dict[str, Any]], gap: int, grace: int,
                                       batch: int, split: int | None) -> None:
    # 1, 1.0 and True are different keys (their serialized bytes differ); late records keep
    # their headers and get the workbench.dropped one
    if split is not None:
        split = min(split, len(rows))
    build = _sessions("agg", gap, grace, headers=True)
    want = _run(build, rows, vectorize=False, batch=batch, split=split, name="vecs-row")
    got = _run(build, rows, vectorize=True, batch=batch, split=split, name="vecs-col")
    assert got == want


def _switching(build: Callable[[], wb.Pipeline], rows: list[dict[str, Any]], split: int,
               first: bool, name: str) -> dict[str, list[Any]]:
    """Run the first part with ``vectorize=first`` and the rest with the other path, on the
    state the first one left in its changelog."""
    MemoryDriver.forget(name)
    try:
        driver = MemoryDriver.named(name)
        for part, vec in ((rows[:split], first), (rows[split:], not first)):
            engine = prepare(build(), driver, inputs={"in": part}, batch_size=5)
            engine.vectorize = vec
            if vec is first:
                engine.start()
                while engine.poll():
                    pass
                engine.commit()
            else:
                engine.run_until_end()
        return _outputs(driver, ["out", "late"])
    finally:
        MemoryDriver.forget(name)


@pytest.mark.parametrize("first", [True, False])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_records(few_keys, 80, 40), gap=st.integers(1, 10), grace=st.integers(0, 8),
       split=st.integers(0, 40))
def test_each_path_restores_the_others_changelog(first: bool, rows: list[dict[str, Any]],
                                                 gap: int, grace: int, split: int) -> None:
    split = min(split, len(rows))
    build = _sessions("agg", gap, grace)
    want = _run(build, rows, vectorize=False, batch=5, split=split, name="vecs-row")
    assert _switching(build, rows, split, first, "vecs-switch") == want


def test_windowed_keys_take_the_row_path_on_the_same_state() -> None:
    # sessions of the updates of a tumbling count: the keys are windows, which the columns do
    # not express; the row operator processes those batches on the columnar store
    def build() -> wb.Pipeline:
        p = wb.Pipeline("vecw")
        counts = p.source("in", key="k", time="t").group_by_key().window(
            wb.Tumbling(10)).count(name="c")
        table = counts.changes().group_by_key().window(wb.Session(5, grace=3)).count(name="s")
        table.to("out")
        table.late.to("late")
        return p

    rows = [{"k": k, "t": t, "i": 0} for t, k in
            [(1, "a"), (2, "b"), (3, "a"), (12, "a"), (4, "a"), (30, "b"), (31, "a"),
             (5, "a"), (40, "a"), (41, "b")]]
    for batch in (1, 3, 100):
        want = _run(build, rows, vectorize=False, batch=batch, split=5, name="vecw-row")
        got = _run(build, rows, vectorize=True, batch=batch, split=5, name="vecw-col")
        assert got == want and want["out"]


def test_count_sessions_are_vectorized_and_others_are_not() -> None:
    def ops(agg: Callable[[Any], Any], emit: str = "update") -> list[Any]:
        p = wb.Pipeline("veck")
        agg(p.source("in", key="k", time="t").group_by_key().window(
            wb.Session(5), emit=emit)).to("out")
        engine = prepare(p, MemoryDriver(), inputs={"in": [{"k": "a", "t": 1}]})
        engine.run_until_end()
        return [rn.op for task in engine.tasks for rn in task.nodes]

    def has_vec(found: list[Any]) -> bool:
        return any(isinstance(op, SessionCountVec) for op in found)

    assert has_vec(ops(lambda g: g.count()))
    assert has_vec(ops(lambda g: g.agg(n="count")))
    assert not has_vec(ops(lambda g: g.agg(n="count", total=("t", "sum"))))
    assert not has_vec(ops(lambda g: g.count(), emit="close"))


def test_store_restores_its_changelog_and_shows_sessions() -> None:
    build = _sessions("count", 5, 2)
    rows = [{"k": k, "t": t, "i": 1} for t, k in
            [(1, "a"), (3, "b"), (9, "a"), (5, "a"), (20, "b"), (22, "a"), (4, "b")]]
    driver = MemoryDriver()
    engine = prepare(build(), driver, inputs={"in": rows}, batch_size=3)
    engine.run_until_end()
    store = next(s for task in engine.tasks for s in task.stores
                 if isinstance(s, ColumnarSessionStore))
    assert store.sessions == {"a": [[22, 22, 1]], "b": [[20, 20, 1]]}  # [1, 9] expired
    fresh = ColumnarSessionStore(store.name, store.changelog, [(None, None, "count")],
                                 store.retention, 2)
    fresh.restore((r[0], r[1]) for r in driver.read_all(store.changelog))
    assert fresh.sessions == store.sessions and fresh.observed == store.observed


def test_float_keys_stay_apart_from_equal_ints_across_batches() -> None:
    # a batch of float keys arrives as a float column, a mixed one as objects: 1.0, 1 and True
    # are three keys on both paths
    def build() -> wb.Pipeline:
        p = wb.Pipeline("vecf")
        table = p.source("in", time="t").group_by("x").window(
            wb.Session(5, grace=20)).agg(n="count", name="agg")
        table.to("out")
        table.late.to("late")
        return p

    xs = [1.0, 2.0, 1, True, 1.0, 1.0, 2, 1, True, 2.0, 1.0, 1]
    rows = [{"x": x, "t": i * 2} for i, x in enumerate(xs)]
    for batch in (1, 2, 3, 100):
        want = _run(build, rows, vectorize=False, batch=batch, split=None, name="vecf-row")
        got = _run(build, rows, vectorize=True, batch=batch, split=None, name="vecf-col")
        assert got == want
        assert len({k for k, *_ in want["out"]}) > 3
