"""Errors a person can act on: definition errors with hints, processing errors with origin."""

from __future__ import annotations

from typing import Any

import pytest

import workbench as wb
from workbench.testing import TestDriver


def test_misspelt_column_in_source_and_key_by(clicks: list[dict[str, Any]]) -> None:
    p = wb.Pipeline("t")
    with pytest.raises(wb.DefinitionError, match=r"no column 'user'.*Did you mean 'user_id'"):
        p.source("clicks", key="user", sample=clicks)
    s = p.source("clicks", key="user_id", time="ts", sample=clicks)
    with pytest.raises(wb.DefinitionError, match=r"no field 'amout'.*Did you mean 'amount'"):
        s.key_by("amout")
    with pytest.raises(wb.DefinitionError, match="Did you mean 'amount'"):
        s.group_by("amout")


def test_non_callable_and_bad_names() -> None:
    p = wb.Pipeline("t")
    s = p.source("in")
    with pytest.raises(wb.DefinitionError, match="needs a function"):
        s.map(42)  # type: ignore[arg-type]
    with pytest.raises(wb.DefinitionError, match="predicate"):
        s.filter("amount > 0")  # type: ignore[arg-type]
    s.map(lambda v: v, name="double")
    with pytest.raises(wb.DefinitionError, match=r"duplicate step name 'double'.*first defined"):
        s.map(lambda v: v, name="double")
    with pytest.raises(wb.DefinitionError, match="pipeline name"):
        wb.Pipeline("has space")
    with pytest.raises(wb.DefinitionError, match="already a source"):
        p.source("in")
    with pytest.raises(wb.DefinitionError, match="feed the pipeline its own output"):
        s.to("in")


def test_unknown_driver_urls() -> None:
    p = wb.Pipeline("t")
    p.source("in", sample=[1]).to("out")
    with pytest.raises(wb.DefinitionError, match=r"unknown driver scheme 'memry'.*'memory'"):
        p.run("memry://")
    with pytest.raises(wb.DefinitionError, match="is not a URL"):
        p.run("localhost:9092")
    with pytest.raises(wb.DefinitionError, match="until="):
        p.run("memory://", until="later")


def test_exception_in_user_function_names_step_origin_and_line() -> None:
    p = wb.Pipeline("t")
    s = p.source("orders", key="id", sample=[{"id": 1, "qty": 2}, {"id": 2}, {"id": 3, "qty": 1}])
    s.map(lambda v: v["qty"] * 2, name="double-qty").to("out")  # this line is in the message
    with pytest.raises(wb.ProcessingError) as info:
        p.run("memory://")
    err = info.value
    assert err.step == "double-qty"
    assert (err.topic, err.partition, err.offset) == ("orders", 0, 1)
    assert err.defined_at is not None and err.defined_at.startswith("tests/test_errors.py:")
    text = str(err)
    assert "'double-qty'" in text and "topic 'orders' partition 0 offset 1" in text
    assert "KeyError" in text and "Available: 'id'" in text


def test_exception_with_interleaved_inputs_names_the_right_origin() -> None:
    p = wb.Pipeline("t")
    a = p.source("a", time="t", sample=[{"t": 1}, {"t": 3}])
    b = p.source("b", time="t", sample=[{"t": 2}, {"t": 4, "bad": True}])
    a.merge(b).map(lambda v: 1 / 0 if v.get("bad") else v, name="boom").to("out")
    with pytest.raises(wb.ProcessingError) as info:
        p.run("memory://")
    assert (info.value.topic, info.value.offset, info.value.step) == ("b", 1, "boom")


def test_missing_time_field_is_reported_with_row() -> None:
    p = wb.Pipeline("t")
    p.source("in", time="ts").to("out")
    with pytest.raises(wb.ProcessingError, match=r"row 1 for topic 'in'.*'ts'"):
        p.run("memory://", inputs={"in": [{"ts": 1}, {"t": 2}]})


def test_test_driver_error_from_time_extractor() -> None:
    p = wb.Pipeline("t")
    p.source("in", time="ts").to("out")
    with TestDriver(p) as td, pytest.raises(wb.ProcessingError, match="offset 0"):
        td.input("in").pipe("k", {"x": 1})


def test_error_hierarchy() -> None:
    for cls in (wb.DefinitionError, wb.DriverError, wb.StateError, wb.ProcessingError,
                wb.SerializationError, wb.DriverUnavailableError, wb.FencedError):
        assert issubclass(cls, wb.WorkbenchError)
        assert cls.__doc__ and len(cls.__doc__) > 40
    assert issubclass(wb.SerializationError, wb.DriverError)
