"""The column operators compute exactly what the row operators compute: every pipeline here
runs twice on the same input, vectorized and record by record (``Engine(vectorize=False)``),
with several batch sizes, and every output (and ``.late``) must be equal — values, types,
timestamps, order — also across a restart in the middle."""

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

AGGS: dict[str, dict[str, Any]] = {
    "count": {},
    "sum-count": {"total": ("x", "sum"), "n": "count"},
    "all": {"total": ("x", "sum"), "n": "count", "nx": ("x", "count"), "lo": ("x", "min"),
            "hi": ("x", "max"), "avg": ("x", "mean"), "first": ("x", "first"),
            "last": ("x", "last")},
    "ints": {"total": ("i", "sum"), "hi": ("i", "max"), "avg": ("i", "mean")},
}

WINDOWS: dict[str, Callable[[int], Any]] = {
    "tumbling": lambda g: wb.Tumbling(10, grace=g),
    "hopping": lambda g: wb.Hopping(10, advance=5, grace=g),
    "hopping3": lambda g: wb.Hopping(9, advance=3, grace=g),
}


def _windowed(window: str, agg: str, emit: str, grace: int,
              nones: bool = False) -> Callable[[], wb.Pipeline]:
    def build() -> wb.Pipeline:
        p = wb.Pipeline("vec")
        s = p.source("in", key="k", time="t")
        if nones:  # some values become None: windows aggregate them (a bare count counts them)
            s = s.map(lambda v: None if v["i"] == 0 else v)
        g = s.group_by_key().window(WINDOWS[window](grace), emit=emit)
        table = g.count(name="agg") if agg == "count" else g.agg(name="agg", **AGGS[agg])
        table.to("out")
        table.late.to("late")
        return p
    return build


def _outputs(driver: MemoryDriver, topics: list[str]) -> dict[str, list[Any]]:
    out = {}
    for t in topics:
        if driver.partitions(t) is None:
            out[t] = []
            continue
        # repr keeps 1 and 1.0 and True apart
        out[t] = [(repr(k), repr(v), ts, repr(h)) for k, v, ts, _o, h in driver.read_all(t)]
    return out


def _run(build: Callable[[], wb.Pipeline], rows: list[dict[str, Any]], *, vectorize: bool,
         batch: int, split: int | None, name: str) -> dict[str, list[Any]]:
    MemoryDriver.forget(name)
    try:
        driver = MemoryDriver.named(name)
        parts = [rows] if split is None else [rows[:split], rows[split:]]
        for part in parts:  # a second run continues from the first one's state
            engine = prepare(build(), driver, inputs={"in": part}, batch_size=batch)
            engine.vectorize = vectorize
            engine.run_until_end() if part is parts[-1] else _run_without_end(engine)
        return _outputs(driver, ["out", "late"])
    finally:
        MemoryDriver.forget(name)


def _run_without_end(engine: Any) -> None:
    engine.start()
    while engine.poll():
        pass
    engine.commit()


keys = st.one_of(st.sampled_from(["a", "b", "c"]), st.sampled_from([1, 2]), st.none())
records = st.lists(st.fixed_dictionaries({
    "k": keys,
    "t": st.integers(0, 80),
    "x": st.one_of(st.floats(-5, 5, allow_nan=False).map(lambda f: round(f, 3)),
                   st.integers(-3, 3).map(float)),
    "i": st.integers(-5, 5),
}), min_size=1, max_size=40)


@pytest.mark.parametrize("window", list(WINDOWS))
@pytest.mark.parametrize("agg", list(AGGS))
@pytest.mark.parametrize("emit", ["update", "close"])
@settings(max_examples=int(os.environ.get("WB_VEC_EXAMPLES", "20")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(rows=records, grace=st.integers(0, 6), batch=st.sampled_from([1, 3, 7, 10_000]),
       split=st.one_of(st.none(), st.integers(0, 40)), nones=st.booleans())
def test_time_windows(window: str, agg: str, emit: str, rows: list[dict[str, Any]],
                      grace: int, batch: int, split: int | None, nones: bool) -> None:
    if split is not None:
        split = min(split, len(rows))
    build = _windowed(window, agg, emit, grace, nones)
    want = _run(build, rows, vectorize=False, batch=batch, split=split, name="vec-row")
    got = _run(build, rows, vectorize=True, batch=batch, split=split, name="vec-col")
    assert got == want


def test_none_values_and_odd_keys_take_the_row_path_with_the_same_state() -> None:
    rows = [{"k": "a", "t": 1, "x": 1.0, "i": 1}, {"k": 1.0, "t": 2, "x": 2.0, "i": 1},
            {"k": True, "t": 3, "x": 2.5, "i": 2}, {"k": "a", "t": 4, "x": 3.5, "i": 3},
            {"k": "a", "t": 25, "x": 0.5, "i": 1}]
    build = _windowed("tumbling", "all", "close", 2)
    assert (_run(build, rows, vectorize=True, batch=2, split=None, name="vec-odd")
            == _run(build, rows, vectorize=False, batch=2, split=None, name="vec-odd-r"))


def _stream_table(how: str, combine: Any) -> Callable[[], wb.Pipeline]:
    def build() -> wb.Pipeline:
        p = wb.Pipeline("vecj")
        table = p.table("tab", key="k", time="t")
        s = p.source("in", key="k", time="t")
        s.join(table, how=how, combine=combine, name="j").to("out")
        return p
    return build


table_rows = st.lists(st.fixed_dictionaries({
    "k": keys, "t": st.integers(0, 80),
    "name": st.one_of(st.none(), st.sampled_from(["n1", "n2"])),
}), max_size=15)


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("combine", [None, "tuple"])
@settings(max_examples=int(os.environ.get("WB_VEC_EXAMPLES", "20")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(rows=records, tab=table_rows, batch=st.sampled_from([1, 3, 7, 10_000]))
def test_stream_table_join(how: str, combine: str | None, rows: list[dict[str, Any]],
                           tab: list[dict[str, Any]], batch: int) -> None:
    fn = None if combine is None else (lambda a, b: (a["x"], None if b is None else b["name"]))
    build = _stream_table(how, fn)

    def run(vectorize: bool, name: str) -> dict[str, list[Any]]:
        MemoryDriver.forget(name)
        try:
            driver = MemoryDriver.named(name)
            engine = prepare(build(), driver, inputs={"in": rows, "tab": tab},
                             batch_size=batch)
            engine.vectorize = vectorize
            engine.run_until_end()
            return _outputs(driver, ["out"])
        finally:
            MemoryDriver.forget(name)

    assert run(True, "vecj-col") == run(False, "vecj-row")


def _grouped(agg: str) -> Callable[[], wb.Pipeline]:
    def build() -> wb.Pipeline:
        p = wb.Pipeline("veca")
        s = p.source("in", key="k", time="t")
        g = s.group_by_key()
        table = g.count(name="agg") if agg == "count" else g.agg(name="agg", **AGGS[agg])
        table.changes().to("out")
        table.late.to("late")
        return p
    return build


@pytest.mark.parametrize("agg", list(AGGS))
@settings(max_examples=int(os.environ.get("WB_VEC_EXAMPLES", "20")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(rows=records, batch=st.sampled_from([1, 3, 7, 10_000]),
       split=st.one_of(st.none(), st.integers(0, 40)))
def test_key_aggregations(agg: str, rows: list[dict[str, Any]], batch: int,
                          split: int | None) -> None:
    if split is not None:
        split = min(split, len(rows))
    build = _grouped(agg)
    assert (_run(build, rows, vectorize=True, batch=batch, split=split, name="veca-col")
            == _run(build, rows, vectorize=False, batch=batch, split=split, name="veca-row"))


def test_key_aggregation_with_none_values_and_odd_keys() -> None:
    rows = [{"k": "a", "t": 1, "x": 1.0, "i": 1}, {"k": 1.0, "t": 2, "x": 2.0, "i": 1},
            {"k": "a", "t": 3, "x": 2.5, "i": 2}, {"k": True, "t": 4, "x": 3.5, "i": 3},
            {"k": 1, "t": 5, "x": 0.5, "i": 1}, {"k": "a", "t": 6, "x": 1.5, "i": 1}]
    build = _grouped("all")
    for batch in (1, 2, 100):
        assert (_run(build, rows, vectorize=True, batch=batch, split=3, name="veca-odd")
                == _run(build, rows, vectorize=False, batch=batch, split=3, name="veca-odd-r"))


def test_columnar_windows_leave_no_tombstone_the_changelog_does_not_need() -> None:
    """A window opened and closed between two commits never reached the changelog: the column
    store writes no tombstone for it (the row store does); every tombstone follows a value of
    its window, and a restart from that changelog gives the same outputs (test_time_windows)."""
    rows = [{"k": i % 5, "t": i * 3, "x": 1.0, "i": 1} for i in range(200)]
    name = "vec-tombstones"
    MemoryDriver.forget(name)
    try:
        driver = MemoryDriver.named(name)
        engine = prepare(_windowed("tumbling", "sum-count", "close", 0)(), driver,
                         inputs={"in": rows}, batch_size=10_000)
        engine.run_until_end()
        changelog = [t for t in driver.topics() if t.endswith("changelog")]
        records = driver.read_all(changelog[0])
        seen: set[Any] = set()
        tombstones = 0
        for k, v, *_ in records:
            if isinstance(k, list) and v is None:
                assert tuple(k) in seen, f"a tombstone for {k}, which the changelog never held"
                tombstones += 1
            elif isinstance(k, list):
                seen.add(tuple(k))
        emitted = len(_outputs(driver, ["out"])["out"])  # every window, once
        assert tombstones == len(seen) < emitted / 10  # one batch: the last windows only
    finally:
        MemoryDriver.forget(name)
