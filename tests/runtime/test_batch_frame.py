"""Frames built from column batches equal the frames built record by record (the one frame
rule of ``workbench.frames``), whatever the layout of the values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.frames import FrameSchema, batch_frame, build_frame
from workbench.runtime.batch import Batch, ObjectValues, StructValues, WindowedKeys, column
from workbench.windows import Windowed

scalars = st.one_of(st.none(), st.integers(-5, 5), st.floats(allow_nan=False, width=32),
                    st.booleans(), st.text(max_size=3))
keys = st.one_of(st.integers(0, 3), st.text(max_size=2), st.none())


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs == b.attrs


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(keys, st.one_of(st.none(), st.fixed_dictionaries(
    {"a": scalars, "b": scalars})), st.integers(0, 10**12)), max_size=12),
    schema=st.sampled_from([None, FrameSchema(), FrameSchema(key_name="k", columns=("a", "b")),
                            FrameSchema(columns=("b", "a", "c"), changelog=True)]))
def test_object_values(rows: list[tuple[Any, Any, int]], schema: FrameSchema | None) -> None:
    batch = Batch.from_rows([(k, v, t, i, None) for i, (k, v, t) in enumerate(rows)])
    expected = build_frame([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                           schema)
    _same(batch_frame(batch, schema), expected)


@settings(max_examples=100, deadline=None)
@given(data=st.lists(st.tuples(keys, scalars, scalars, st.booleans()), min_size=1,
                     max_size=12))
def test_struct_values_with_missing_rows(data: list[Any]) -> None:
    n = len(data)
    present = np.array([p for *_x, p in data], dtype=bool)
    cols = {"a": column([a for _k, a, _b, _p in data]), "b": column([b for _k, _a, b, _p in data])}
    values = StructValues(cols, None if present.all() else present)
    batch = Batch(np.array([k for k, *_ in data], dtype=object), values,
                  np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64))
    rows = batch.rows()
    expected = build_frame([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    _same(batch_frame(batch), expected)


def test_windowed_keys_and_scalar_values() -> None:
    keys = WindowedKeys(np.array(["a", "b"], dtype=object), np.array([0, 10]),
                        np.array([10, 20]))
    batch = Batch(keys, ObjectValues(np.array([3, None], dtype=object)),
                  np.array([5, 15]), np.array([0, 1]))
    schema = FrameSchema(key_name="user", windowed=True, scalar=True, changelog=True)
    rows = batch.rows()
    assert rows[0][0] == Windowed("a", 0, 10)
    _same(batch_frame(batch, schema),
          build_frame([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], schema))


def test_windowed_struct() -> None:
    keys = WindowedKeys(np.array([1, 2]), np.array([0, 10]), np.array([10, 20]))
    values = StructValues({"total": np.array([1.5, 2.5]), "n": np.array([1, 2])}, None)
    batch = Batch(keys, values, np.array([5, 15]), np.array([0, 1]))
    schema = FrameSchema(key_name="user_id", windowed=True, columns=("total", "n"))
    rows = batch.rows()
    _same(batch_frame(batch, schema),
          build_frame([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], schema))


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["int", "float", "bool"]),
       data=st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=1, max_size=12))
def test_typed_columns_with_missing_rows(kind: str, data: list[tuple[int, bool]]) -> None:
    """Typed columns beside tombstones (session merges, table deletions) become nullable
    ``Int64``/``boolean`` or NaN floats from the columns, as the record path makes them; the
    value a column holds at a missing row does not matter."""
    n = len(data)
    make = {"int": int, "float": lambda v: v / 2, "bool": lambda v: v > 0}[kind]
    present = np.array([p for _v, p in data], dtype=bool)
    col = column([make(v) for v, _p in data])
    assert col.dtype != object
    batch = Batch(np.arange(n), StructValues({"n": col}, present),
                  np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64))
    rows = batch.rows()
    schema = FrameSchema(key_name="k", columns=("n",), changelog=True)
    expected = build_frame([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                           schema)
    _same(batch_frame(batch, schema), expected)


scalar_values = st.one_of(
    st.lists(st.one_of(st.none(), st.integers(-3, 3)), min_size=1, max_size=12),
    st.lists(st.one_of(st.none(), st.floats(allow_nan=True, width=32)), min_size=1,
             max_size=12),
    st.lists(st.one_of(st.none(), st.booleans()), min_size=1, max_size=12),
    st.lists(st.one_of(st.none(), st.integers(2**63 - 2, 2**64)), min_size=1, max_size=12),
    st.lists(st.one_of(st.none(), scalars, st.fixed_dictionaries({"a": scalars})),
             min_size=1, max_size=12))


@settings(max_examples=200, deadline=None)
@given(values=scalar_values, windowed=st.booleans(),
       schema=st.sampled_from([None, FrameSchema(key_name="user", scalar=True, changelog=True),
                               FrameSchema(key_name="user", windowed=True, scalar=True,
                                           changelog=True),
                               FrameSchema(key_name="k", columns=("a",))]))
def test_scalar_values(values: list[Any], windowed: bool, schema: FrameSchema | None) -> None:
    """Scalar results (``count()`` per session or window, deletions among them) become their
    frame from the columns, equal to the record path's frame for any mix of values."""
    n = len(values)
    inner = column([i % 3 for i in range(n)])
    keys: Any = (WindowedKeys(inner, np.arange(n, dtype=np.int64) * 10,
                              np.arange(n, dtype=np.int64) * 10 + 5) if windowed else inner)
    batch = Batch(keys, ObjectValues(np.array([*values, 0], dtype=object)[:n]),
                  np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64))
    rows = batch.rows()
    expected = build_frame([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                           schema)
    _same(batch_frame(batch, schema), expected)


def test_counts_take_the_column_path() -> None:
    """Counts with deletions are built from columns (no record path): the frame's value
    column is nullable ``Int64`` and its keys and windows come from the key columns."""
    from workbench import frames

    keys = WindowedKeys(np.array([7, 7, 8]), np.array([0, 0, 10]), np.array([5, 9, 20]))
    batch = Batch(keys, ObjectValues(np.array([1, None, 2], dtype=object)),
                  np.array([1, 2, 3]), np.array([0, 1, 2]))
    schema = FrameSchema(key_name="user_id", windowed=True, scalar=True, changelog=True)
    frame = frames._scalar_frame(batch, schema, pd)
    assert frame is not None
    assert list(frame.columns) == ["user_id", "window_start", "window_end", "timestamp",
                                   "value"]
    assert str(frame["value"].dtype) == "Int64" and frame.attrs["null_values"] == [1]


def test_results_stamped_with_their_window_end_share_the_column() -> None:
    ends = np.array([5, 9, 20])
    keys = WindowedKeys(np.array([7, 7, 8]), np.array([0, 0, 10]), ends)
    batch = Batch(keys, ObjectValues(np.array([1, None, 2], dtype=object)), ends,
                  np.array([0, 1, 2]))
    schema = FrameSchema(key_name="user_id", windowed=True, scalar=True, changelog=True)
    rows = batch.rows()
    frame = batch_frame(batch, schema)
    _same(frame, build_frame([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                             schema))
    frame.loc[0, "timestamp"] = frame.loc[2, "timestamp"]  # the columns stay independent
    assert frame["window_end"].tolist() == build_frame(
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], schema
    )["window_end"].tolist()
