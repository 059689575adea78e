"""Arrow string columns (``runtime/strings.py``) behave like the ``object`` arrays of ``str``
they stand for: every selection, concatenation and conversion gives the same values, and runs
on DataFrames with ``str`` columns equal runs on the same rows as dicts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import workbench as wb
from workbench.runtime.batch import concat_columns
from workbench.runtime.strings import ArrowStrings, plain

pa = pytest.importorskip("pyarrow")

words = st.lists(st.sampled_from(["a", "bb", "", "é", "x y"]), min_size=1, max_size=30)


def _col(values: list[str]) -> ArrowStrings:
    return ArrowStrings.of(pa.array(values, pa.large_string()))


def _select(rng: np.random.Generator, n: int) -> Any:
    kind = rng.integers(0, 4)
    if kind == 0:
        lo = int(rng.integers(0, n + 1))
        return slice(lo, int(rng.integers(lo, n + 1)))
    if kind == 1:
        return rng.random(n) > 0.4
    if kind == 2:
        if n == 0:
            return np.empty(0, dtype=np.int64)
        return rng.integers(-n, n, size=int(rng.integers(0, 2 * n)))
    return slice(None, None, -2)


@settings(max_examples=200, deadline=None)
@given(values=words, more=words, seed=st.integers(0, 2**32 - 1))
def test_selections_and_concatenations_equal_numpy(values: list[str], more: list[str],
                                                   seed: int) -> None:
    rng = np.random.default_rng(seed)
    col, ref = _col(values), np.array(values, dtype=object)
    for _ in range(3):  # selections of selections
        sel = _select(rng, len(ref))
        col, ref = col[sel], ref[sel]
        assert col.tolist() == ref.tolist()
        assert len(col) == len(ref)
        if len(ref):
            i = int(rng.integers(-len(ref), len(ref)))
            assert col[i] == ref[i]
    other = _col(more)
    parts = [col, other[::2], col[:1]]
    refs = [ref, np.array(more, dtype=object)[::2], ref[:1]]
    got = concat_columns(parts)
    assert isinstance(got, ArrowStrings)
    assert got.tolist() == np.concatenate(refs).tolist()
    assert got.arrow().to_pylist() == np.concatenate(refs).tolist()
    same = concat_columns([col, col])  # one base: positions only
    assert same.tolist() == ref.tolist() * 2
    mixed = concat_columns([col, np.array(["z"], dtype=object)])
    assert mixed.tolist() == [*ref.tolist(), "z"]


def test_numpy_operations_see_the_strings() -> None:
    col = _col(["a", "b", "a"])
    assert (col == "a").tolist() == [True, False, True]
    assert (col != "a").tolist() == [False, True, False]
    assert np.asarray(col).dtype == object
    assert np.concatenate([col, np.array(["c"], dtype=object)]).tolist() == ["a", "b", "a", "c"]
    assert plain(col).tolist() == ["a", "b", "a"]
    assert (col + "!").tolist() == ["a!", "b!", "a!"]
    assert col.dtype == object and col.shape == (3,)
    with pytest.raises(IndexError):
        col[np.array([3])]
    with pytest.raises(IndexError):
        col[np.array([True])]


def test_a_frame_column_has_pandas_default_string_dtype() -> None:
    col = _col(["a", "b", "a", "c"])[np.array([True, False, True, True])]
    series = col.series(pd)
    expected = pd.Series(["a", "a", "c"])
    pd.testing.assert_series_equal(series, expected)


def test_repeated_values_share_one_object_each() -> None:
    col = _col([f"/p/{i % 3}" for i in range(30_000)])
    assert len({id(v) for v in col.objects()}) == 3


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"user": f"u{i % 13}", "page": f"/p/{i % 5}", "n": i % 7, "ts": i * 10}
            for i in range(n)]


def _build() -> wb.Pipeline:
    p = wb.Pipeline("arrow-strings")
    users = p.table("users", key="user")
    clicks = p.source("clicks", key="user", time="ts")
    kept = clicks.filter(wb.col("n") > 1).assign(tag=wb.col("page"))
    kept.to("plain")
    kept.map(lambda v: {**v, "upper": v["page"].upper()}).to("mapped")
    kept.join(users).to("joined")
    (kept.group_by("page").window(wb.Tumbling("1s"))
         .agg(n=("n", "sum"), last=("user", "last"), name="by-page").to("pages"))
    return p


@pytest.mark.parametrize("batch_size", [7, 10_000])
def test_runs_on_string_frames_equal_runs_on_rows(batch_size: int) -> None:
    rows = _rows(3_000)
    users = [{"user": f"u{i}", "tier": f"t{i % 2}"} for i in range(13)]
    frame = pd.DataFrame(rows).astype({"user": "str", "page": "str"})
    assert isinstance(frame["page"].array, pd.arrays.ArrowStringArray)
    got = _build().run("memory://", inputs={"clicks": frame, "users": users},
                       batch_size=batch_size)
    want = _build().run("memory://", inputs={"clicks": rows, "users": users},
                        batch_size=batch_size)
    for topic in ("plain", "mapped", "joined", "pages"):
        a = [(r.key, r.value, r.timestamp) for r in got.records(topic)]
        b = [(r.key, r.value, r.timestamp) for r in want.records(topic)]
        assert a == b, topic
        pd.testing.assert_frame_equal(got.frame(topic), want.frame(topic))


def test_pandas_string_dtype_is_the_dtype_of_a_list_of_str() -> None:
    from workbench.runtime.strings import arrow_is_pandas_string, pandas_string_dtype

    assert pandas_string_dtype() == pd.Series(["x"]).dtype
    assert pandas_string_dtype() is pandas_string_dtype()  # asked once
    dtype = pd.Series(["x"]).dtype
    assert arrow_is_pandas_string() == (isinstance(dtype, pd.StringDtype)
                                        and dtype.storage == "pyarrow")
