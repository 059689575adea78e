"""The column stream-table join (``runtime/join_vec.py``, ``runtime/table_slots.py``) computes
exactly what the row operator computes: every pipeline runs vectorized and record by record
(``Engine.vectorize``) on the same input, with batch sizes 1, 3, 7 and 10,000 and a restart in
the middle, and every output (and ``.late``) must be equal — values, types, timestamps, order.

Table updates include tombstones (a row whose fields other than key and time are all ``None``),
values of two shapes and a non-dict value; keys include ``None`` and keys whose identity is not
the key (``1.0``, ``True``: the row path on the same store); stream values include ``None``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workbench as wb
from workbench.drivers.memory import MemoryDriver
from workbench.run import prepare

from .test_vectorized import _outputs

EXAMPLES = int(os.environ.get("WB_VEC_EXAMPLES", "20"))

keys = st.one_of(st.sampled_from(["a", "b", "c"]), st.sampled_from([1, 2]), st.none())
odd_keys = st.one_of(keys, st.sampled_from([1.0, True]))

events = st.lists(st.fixed_dictionaries({
    "k": keys,
    "t": st.integers(0, 80),
    "x": st.one_of(st.floats(-5, 5, allow_nan=False).map(lambda f: round(f, 3)),
                   st.integers(-3, 3).map(float)),
    "i": st.integers(-5, 5),
}), min_size=1, max_size=40)

table_rows = st.lists(st.one_of(
    st.fixed_dictionaries({"k": odd_keys, "t": st.integers(0, 80),
                           "name": st.one_of(st.none(), st.sampled_from(["n1", "n2"]))}),
    st.fixed_dictionaries({"k": keys, "t": st.integers(0, 80),
                           "name": st.sampled_from(["n1", "n2"]), "tier": st.integers(0, 2)}),
), max_size=20)


def _run(build: Callable[[], wb.Pipeline], stream: Any, table: list[dict[str, Any]], *,
         vectorize: bool, batch: int, split: float | None, name: str,
         topics: tuple[str, ...] = ("out",)) -> dict[str, list[Any]]:
    """Run ``build()`` on the inputs; with ``split`` (a fraction), first on the first part of
    both inputs without ending, then (a new engine: a restart) on the rest."""
    MemoryDriver.forget(name)
    try:
        driver = MemoryDriver.named(name)
        if split is None:
            parts = [(stream, table)]
        else:
            s_cut, t_cut = int(len(stream) * split), int(len(table) * split)
            parts = [(stream[:s_cut], table[:t_cut]), (stream[s_cut:], table[t_cut:])]
        for i, (s, t) in enumerate(parts):
            inputs = {"in": s}
            if len(t):
                inputs["tab"] = t
            engine = prepare(build(), driver, inputs=inputs, batch_size=batch)
            engine.vectorize = vectorize
            if i == len(parts) - 1:
                engine.run_until_end()
            else:
                engine.process_available()  # all of this part (a poll may read none)
                engine.close()
        return _outputs(driver, list(topics))
    finally:
        MemoryDriver.forget(name)


def _rows_pipeline(how: str, combine: Any) -> Callable[[], wb.Pipeline]:
    def build() -> wb.Pipeline:
        p = wb.Pipeline("vecj")
        table = p.table("tab", key="k", time="t")
        s = p.source("in", key="k", time="t").map(lambda v: None if v["i"] == 0 else v)
        s.join(table, how=how, combine=combine, name="j").to("out")
        return p
    return build


def _tuple(a: Any, b: Any) -> Any:
    return (a["x"], None if b is None else b.get("name") if isinstance(b, dict) else b)


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("combine", [None, "tuple"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=events, tab=table_rows, batch=st.sampled_from([1, 3, 7, 10_000]),
       split=st.one_of(st.none(), st.floats(0, 1)))
def test_stream_table_join_rows(how: str, combine: str | None, rows: list[dict[str, Any]],
                                tab: list[dict[str, Any]], batch: int,
                                split: float | None) -> None:
    build = _rows_pipeline(how, None if combine is None else _tuple)
    want = _run(build, rows, tab, vectorize=False, batch=batch, split=split, name="vj-row")
    got = _run(build, rows, tab, vectorize=True, batch=batch, split=split, name="vj-col")
    assert got == want


def _expr_pipeline(how: str, grace: int, by: str = "i") -> Callable[[], wb.Pipeline]:
    """P3's shape: expression steps, a stream-table join, a re-grouping by a table field and
    a tumbling window count with its late output."""
    def build() -> wb.Pipeline:
        p = wb.Pipeline("vecp3")
        table = p.table("tab", key="k", time="t")
        s = p.source("in", key="k", time="t")
        s = s.filter(wb.col("x") > -4).assign(cents=(wb.col("x") * 100).round())
        joined = s.join(table, how=how, name="j")
        joined.to("out")
        counts = (joined.group_by(by).window(wb.Tumbling(10, grace=grace), emit="close")
                  .agg(n="count", name="w"))
        counts.to("counts")
        counts.late.to("late")
        return p
    return build


@pytest.mark.parametrize(("how", "by"), [("inner", "i"), ("left", "i"), ("inner", "name")])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=events, tab=table_rows, batch=st.sampled_from([1, 3, 7, 10_000]),
       split=st.one_of(st.none(), st.floats(0, 1)), grace=st.integers(0, 6))
def test_expression_join_and_window_count_on_frames(
        how: str, by: str, rows: list[dict[str, Any]], tab: list[dict[str, Any]], batch: int,
        split: float | None, grace: int) -> None:
    frame = pd.DataFrame({
        "k": pd.Series([r["k"] for r in rows], dtype=object),
        "t": pd.Series([r["t"] for r in rows], dtype="int64"),
        "x": pd.Series([r["x"] for r in rows], dtype="float64"),
        "i": pd.Series([r["i"] for r in rows], dtype="int64")})
    build = _expr_pipeline(how, grace, by)
    topics = ("out", "counts", "late")
    want = _run(build, frame, tab, vectorize=False, batch=batch, split=split, name="vp-row",
                topics=topics)
    got = _run(build, frame, tab, vectorize=True, batch=batch, split=split, name="vp-col",
               topics=topics)
    assert got == want


def test_a_large_table_with_updates_between_stream_records() -> None:
    """Table updates and deletes arriving between stream records, many keys added after the
    slots' index was built: each lookup sees the table as of its record."""
    table = [{"k": f"u{i % 700}", "t": 2 * i, "name": None if i % 11 == 0 else f"n{i % 5}"}
             for i in range(3_000)]
    table += [{"k": f"u{i}", "t": 6_000 + i, "name": "late", "tier": i} for i in range(400)]
    stream = [{"k": f"u{(7 * i) % 1_000}", "t": i, "x": float(i % 9), "i": i % 4}
              for i in range(8_000)]
    for how in ("inner", "left"):
        build = _rows_pipeline(how, None)
        for batch, split in ((10_000, None), (7, 0.4), (500, 0.7)):
            want = _run(build, stream, table, vectorize=False, batch=batch, split=split,
                        name="vl-row")
            got = _run(build, stream, table, vectorize=True, batch=batch, split=split,
                       name="vl-col")
            assert got == want
            assert len(got["out"]) > 1_000
