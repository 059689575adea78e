"""The external steps on the columnar engine: a pipeline with ``map_async``,
``flat_map_async`` and a ``pipe`` pool in front of a windowed aggregation computes exactly what
the same pipeline with plain ``map``/``flat_map`` steps computes, vectorized or record by
record (``Engine(vectorize=False)``), with batch sizes 1, 3, 7 and 10,000, also across a
restart in the middle (the harness of ``tests/runtime/test_vectorized.py``)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

import workbench as wb
from tests.runtime.test_vectorized import _run

from .conftest import tool


def _double(v: dict[str, Any]) -> dict[str, Any]:
    return {**v, "y": 2 * v["x"]}


def _split(v: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**v, "part": j} for j in range(v["i"] % 3)]  # 0, 1 or 2 records


async def _double_async(v: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(random.random() / 1000)  # finish out of order
    return _double(v)


def _build(external: bool) -> Callable[[], wb.Pipeline]:
    def build() -> wb.Pipeline:
        p = wb.Pipeline("vec-ext")
        s = p.source("in", key="k", time="t")
        if external:
            s = s.map_async(_double_async, concurrency=4, name="double")
            s = s.flat_map_async(_split, concurrency=3, name="split")
            s = s.pipe(tool("same"), workers=2, name="same")
        else:
            s = s.map(_double, name="double").flat_map(_split, name="split")
        s.to("rows")
        (s.group_by_key().window(wb.Tumbling(10), emit="update")
         .agg(name="agg", total=("y", "sum"), n="count").to("out"))
        return p
    return build


ROWS = [{"k": random.Random(i).choice(["a", "b", "c"]), "t": i * 2 + (i % 4),
         "x": i % 7, "i": i} for i in range(40)]


@pytest.mark.parametrize("batch", [1, 3, 7, 10_000])
@pytest.mark.parametrize("split", [None, 17])
def test_external_steps_equal_their_plain_counterparts(batch: int, split: int | None) -> None:
    want = _run(_build(False), ROWS, vectorize=False, batch=batch, split=split,
                name="vec-ext-ref")
    assert len(want["out"]) == sum(r["i"] % 3 for r in ROWS)
    for vectorize in (True, False):
        got = _run(_build(True), ROWS, vectorize=vectorize, batch=batch, split=split,
                   name="vec-ext")
        assert got == want, (vectorize, batch, split)
