"""DataFrame inputs become column batches: an Arrow-backed string column with few distinct
values is converted through Arrow's dictionary encoding (one ``str`` per distinct value), and
the run sees exactly the values a row-by-row conversion gives."""

from __future__ import annotations

import pandas as pd
import pytest

import workbench as wb
from workbench.samples import _frame_column


@pytest.mark.parametrize("distinct", [3, 50_000])
def test_arrow_string_columns_convert_to_the_same_values(distinct: int) -> None:
    pytest.importorskip("pyarrow")
    n = 50_000
    series = pd.Series([f"/page/{i % distinct}" for i in range(n)], dtype="string[pyarrow]")
    got = _frame_column(series)
    assert got.dtype == object
    assert got.tolist() == series.to_numpy(dtype=object).tolist()
    assert all(type(v) is str for v in got[:10])
    if distinct == 3:
        assert len({id(v) for v in got}) == 3  # one object per distinct value


def test_arrow_strings_with_missing_values_keep_none() -> None:
    pytest.importorskip("pyarrow")
    series = pd.Series(["a", None, "b"] * 10_000, dtype="string[pyarrow]")
    assert _frame_column(series).tolist()[:3] == ["a", None, "b"]


def test_a_run_on_a_frame_with_arrow_strings_equals_the_run_on_rows() -> None:
    pytest.importorskip("pyarrow")
    rows = [{"k": i % 7, "page": f"/p/{i % 4}", "ts": i} for i in range(20_000)]
    frame = pd.DataFrame(rows).astype({"page": "string[pyarrow]"})

    def build() -> wb.Pipeline:
        p = wb.Pipeline("arrow-in")
        (p.source("clicks", key="k", time="ts")
          .filter(wb.col("page") != "/p/1").to("out"))
        return p

    from_frame = build().run("memory://", inputs={"clicks": frame}).records("out")
    from_rows = build().run("memory://", inputs={"clicks": rows}).records("out")
    assert [(r.key, r.value, r.timestamp) for r in from_frame] == [
        (r.key, r.value, r.timestamp) for r in from_rows]
