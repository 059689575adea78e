"""A ``memory://`` sink topic stores dict values as columns (and int keys as an ``int64``
column) when a batch converts exactly; whatever it stores, reading back gives the records that
were appended (equal values of the same types, dict fields in the same order) and the frame
the one frame rule makes of them."""

from __future__ import annotations

import enum
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import workbench as wb
from workbench.drivers.memory import MemoryDriver
from workbench.frames import FrameSchema, batch_frame, build_frame
from workbench.runtime.batch import Batch, ObjectValues, StructValues


class Colour(enum.IntEnum):
    RED = 1


scalars = st.one_of(st.none(), st.integers(-3, 3), st.integers(2**63, 2**64),
                    st.floats(allow_nan=False), st.booleans(), st.text(max_size=2),
                    st.just(np.int64(7)), st.just(Colour.RED), st.just([1, 2]))
fields = st.sampled_from(["a", "b", "c"])
dicts = st.dictionaries(fields, scalars, max_size=3)
values = st.one_of(st.none(), dicts, scalars)
keys = st.one_of(st.integers(-2, 2), st.booleans(), st.text(max_size=1), st.none(),
                 st.just(np.int64(1)))


def _typed(x: Any) -> Any:
    """A value with every Python type visible (and dict field order)."""
    if isinstance(x, dict):
        return ("dict", [(k, _typed(v)) for k, v in x.items()])
    if isinstance(x, list):
        return ("list", [_typed(v) for v in x])
    return (type(x), x)


def _append(batches: list[list[tuple[Any, Any]]]) -> tuple[MemoryDriver, list[Any]]:
    drv = MemoryDriver()
    drv.create_topic("out", 1, kind="sink")
    appended: list[Any] = []
    for part in batches:
        n = len(part)
        if not n:
            continue
        ks = np.empty(n, dtype=object)
        ks[:] = [k for k, _v in part]
        vs = np.empty(n, dtype=object)
        vs[:] = [v for _k, v in part]
        batch = Batch(ks, ObjectValues(vs), np.arange(n, dtype=np.int64) * 1000,
                      np.arange(n, dtype=np.int64))
        drv.append_batch("out", 0, batch)
        appended.extend(part)
    return drv, appended


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.lists(st.tuples(keys, values), max_size=6), max_size=4),
       same_fields=st.booleans())
def test_sink_logs_read_back_exactly(batches: list[list[tuple[Any, Any]]],
                                     same_fields: bool) -> None:
    if same_fields:  # mostly batches that do convert
        batches = [[(k, {"a": v, "b": 1} if v is not None else None) for k, v in part]
                   for part in batches]
    drv, appended = _append(batches)
    rows = drv.read_all("out")
    assert [(_typed(k), _typed(v)) for k, v, *_ in rows] == \
        [(_typed(k), _typed(v)) for k, v in appended]
    for schema in (None, FrameSchema(key_name="user", columns=("b",))):
        expected = build_frame([k for k, _v in appended], [v for _k, v in appended],
                               [r[2] for r in rows], schema)
        got = batch_frame(drv.read_all_batch("out"), schema)
        pd.testing.assert_frame_equal(got, expected)
        assert got.attrs == expected.attrs


def test_dicts_with_the_same_fields_are_stored_as_columns() -> None:
    drv, _ = _append([[(1, {"x": 1, "s": "a"}), (2, {"x": 2, "s": "b"})],
                      [(True, {"x": 1.5, "s": "c"})],
                      [(3, {"s": "d", "x": 3}), (4, {"x": 4, "s": "e"})]])  # two orders
    segments = drv._logs["out"][0].segments
    assert [type(s.values) for s in segments] == [StructValues, StructValues, ObjectValues]
    assert segments[0].keys.dtype == np.int64  # every key an int
    assert segments[1].keys.dtype == object  # True is a bool, not an int
    assert [list(v) for _k, v, *_ in drv.read_all("out")] == \
        [["x", "s"]] * 3 + [["s", "x"], ["x", "s"]]


def test_a_run_frame_of_dict_values_is_a_concatenation() -> None:
    p = wb.Pipeline("memory-columns")
    s = p.source("events", key="user_id", time="ts")
    s.filter(lambda e: e["amount"] > 0).map(lambda e: {**e, "cents": round(e["amount"] * 100)}
                                            ).to("paid")
    events = [{"user_id": i % 3, "ts": i, "amount": (i % 4) - 1.5} for i in range(100)]
    run = p.run("memory://", inputs={"events": events}, batch_size=7)
    log = run.driver._logs["paid"][0]  # type: ignore[attr-defined]
    assert log.segments and all(isinstance(s.values, StructValues) for s in log.segments)
    frame = run.frame("paid")
    expected = [{**e, "cents": round(e["amount"] * 100)} for e in events if e["amount"] > 0]
    assert frame.drop(columns=["key", "timestamp"]).to_dict("records") == expected
    assert [r.value for r in run.records("paid")] == expected
    assert str(frame["user_id"].dtype) == "int64"


def test_a_whole_read_merges_the_log_into_one_segment() -> None:
    """``run.frame`` (a read of the whole log) leaves one segment whose typed columns the frame
    shares; partial reads, later appends and reads see the same records as before."""
    drv, appended = _append([[(1, {"x": 1, "s": "a"})], [(2, {"x": 2, "s": "b"})],
                             [(3, {"x": 3, "s": "c"}), (4, {"x": 4, "s": "d"})]])
    log = drv._logs["out"][0]
    assert len(log.segments) == 3
    assert [r[1] for r in drv.read("out", 0, 1, 2)] == [{"x": 2, "s": "b"}, {"x": 3, "s": "c"}]
    assert len(log.segments) == 3  # a partial read merges nothing
    frame = batch_frame(drv.read_all_batch("out"))
    assert len(log.segments) == 1 and log.starts == [0]
    assert np.shares_memory(frame["x"].to_numpy(), log.segments[0].values.cols["x"])
    assert frame["x"].tolist() == [1, 2, 3, 4]
    drv2, more = _append([[(5, {"x": 5, "s": "e"})]])
    drv.append_batch("out", 0, drv2.read_all_batch("out"))
    assert [(k, v, o) for k, v, _t, o, _h in drv.read_all("out")] == \
        [(k, v, i) for i, (k, v) in enumerate(appended + more)]


def test_segments_of_different_layouts_are_not_merged() -> None:
    drv, _appended = _append([[(1, {"x": 1, "s": "a"})], [(2, {"s": "b", "x": 2})],
                              [(3, 7)]])
    log = drv._logs["out"][0]
    assert [list(v) if isinstance(v, dict) else v for _k, v, *_ in drv.read_all("out")] == \
        [["x", "s"], ["s", "x"], 7]
    assert len(log.segments) == 3


def test_string_fields_become_arrow_strings_and_read_back_as_str() -> None:
    """A field of only ``str`` values is held as Arrow strings (pandas' strings are Arrow's
    here); records read back hold equal ``str`` objects, and a string Arrow cannot hold (a lone
    surrogate) or a ``str`` subclass keeps its column as objects."""
    from workbench.runtime.strings import ArrowStrings

    class Name(str):
        pass

    drv, appended = _append([[(1, {"s": "a", "n": 1}), (2, {"s": "bé", "n": 2})],
                             [(3, {"s": "\ud800", "n": 3})], [(4, {"s": Name("x"), "n": 4})]])
    segments = drv._logs["out"][0].segments
    assert isinstance(segments[0].values.cols["s"], ArrowStrings)
    assert [type(s.values.cols["s"]) for s in segments[1:]] == [np.ndarray, np.ndarray]
    rows = drv.read_all("out")
    assert [(_typed(k), _typed(v)) for k, v, *_ in rows] == \
        [(_typed(k), _typed(v)) for k, v in appended]


def test_a_key_or_time_equal_to_a_field_is_stored_once() -> None:
    p = wb.Pipeline("memory-columns-shared")
    p.source("events", key="user_id", time="ts").map(lambda e: {**e, "x": 1}).to("out")
    events = [{"user_id": i % 3, "ts": 10 * i, "page": f"p{i % 2}"} for i in range(50)]
    run = p.run("memory://", inputs={"events": events}, batch_size=7)
    frame = run.frame("out")
    seg = run.driver._logs["out"][0].segments[0]  # type: ignore[attr-defined]
    assert seg.keys is seg.values.cols["user_id"] and seg.ts is seg.values.cols["ts"]
    assert frame["user_id"].tolist() == frame["key"].tolist() == [e["user_id"] for e in events]
    assert [r.value for r in run.records("out")] == [{**e, "x": 1} for e in events]


def test_to_struct_takes_dicts_of_one_field_order_only() -> None:
    """Columns only when every dict has the same fields in the same order (``None`` values are
    missing rows); with ``arrow_strings`` a field of exact ``str`` values is Arrow strings, a
    lone surrogate or a missing row keeps it as objects."""
    from workbench.runtime.strings import ArrowStrings

    def struct(vals: list[Any], arrow: bool = True) -> Any:
        arr = np.empty(len(vals), dtype=object)
        arr[:] = vals
        return ObjectValues(arr).to_struct(arrow_strings=arrow)

    assert struct([{"a": 1, "b": "x"}, {"b": "y", "a": 2}]) is None
    assert struct([{"a": 1}, {"a": 2, "b": 3}]) is None
    assert struct([{"a": 1}, 5]) is None
    assert struct([{1: "a"}, {True: "b"}, {1.0: "c"}]) is None  # equal keys of three types
    got = struct([{"a": 1, "b": "x"}, {"a": 2, "b": "é"}])
    assert list(got.cols) == ["a", "b"] and got.present is None
    assert got.cols["a"].dtype == np.int64 and isinstance(got.cols["b"], ArrowStrings)
    assert got.cols["b"].tolist() == ["x", "é"]
    plain = struct([{"a": 1, "b": "x"}, {"a": 2, "b": "é"}], arrow=False)
    assert plain.cols["b"].__class__ is np.ndarray and plain.cols["b"].tolist() == ["x", "é"]
    odd = struct([{"s": "\ud800"}, {"s": "x"}])
    assert odd.cols["s"].__class__ is np.ndarray and odd.cols["s"].tolist() == ["\ud800", "x"]
    holes = struct([{"a": 1.5, "b": "x"}, None, {"a": 2.5, "b": "y"}])
    assert holes.present.tolist() == [True, False, True]
    assert holes.cols["b"].__class__ is np.ndarray
    assert [_typed(v) for v in holes.objects().tolist()] == \
        [_typed(v) for v in [{"a": 1.5, "b": "x"}, None, {"a": 2.5, "b": "y"}]]


def test_equal_keys_of_other_types_read_back_as_they_were() -> None:
    p = wb.Pipeline("memory-columns-key-types")
    p.source("s").map(lambda v: v).to("out")
    values = [{1: "a"}, {True: "b"}, {1.0: "c"}]
    run = p.run("memory://", inputs={"s": values})
    got = [r.value for r in run.records("out")]
    assert [[(type(k), k, v) for k, v in d.items()] for d in got] == \
        [[(type(k), k, v) for k, v in d.items()] for d in values]
