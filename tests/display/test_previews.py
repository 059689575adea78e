"""Notebook display of streams, tables, pipelines and runs: bounded, escaped, correct types."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pandas as pd
import pytest

import workbench as wb


def test_stream_preview_frame_types(clicks: list[dict[str, Any]]) -> None:
    p = wb.Pipeline("t")
    paid = p.source("clicks", key="user_id", time="ts", sample=clicks).filter(
        lambda e: e["amount"] > 0)
    frame = paid.to_pandas()
    assert list(frame.columns[:2]) == ["key", "timestamp"]
    assert str(frame["timestamp"].dtype) == "datetime64[ms, UTC]"
    assert pd.api.types.is_float_dtype(frame["amount"])
    assert len(frame) == sum(c["amount"] > 0 for c in clicks)
    first = next(c for c in clicks if c["amount"] > 0)
    assert frame["timestamp"].iloc[0] == pd.Timestamp(first["ts"], unit="ms", tz="UTC")
    assert frame["key"].iloc[0] == first["user_id"]
    assert len(paid.to_pandas(limit=3)) == 3


def test_preview_html_is_escaped_and_bounded() -> None:
    hostile = [{"name": "<script>alert(1)</script>", "n": i} for i in range(500)]
    p = wb.Pipeline("t")
    s = p.source("in", key="name", sample=hostile)
    bundle = s._repr_mimebundle_()
    html = bundle["text/html"]
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<tr>") == 1 + wb.options.display_rows  # header + bounded rows
    assert "500 rows" in html and "first 10 shown" in html
    assert "500 rows" in bundle["text/plain"]


def test_preview_bounds_the_input_it_reads() -> None:
    p = wb.Pipeline("t")
    s = p.source("in", sample=[{"i": i} for i in range(1000)])
    old = wb.options.preview_input_limit
    wb.options.preview_input_limit = 100
    try:
        assert len(s.map(lambda v: v, name="m").to_pandas()) == 100
        html = s._repr_mimebundle_()["text/html"]
        assert "first 100 of 1,000 sample records" in html
    finally:
        wb.options.preview_input_limit = old


def test_preview_without_samples_says_so() -> None:
    p = wb.Pipeline("t")
    s = p.source("in")
    assert "has no sample" in s._repr_mimebundle_()["text/plain"]


def test_pipeline_bundle_has_svg_mermaid_and_escapes(clicks: list[dict[str, Any]]) -> None:
    p = wb.Pipeline("t")
    s = p.source("clicks", key="user_id", sample=clicks)
    s.filter(lambda e: e["amount"] > 0, name="paid").to("out")
    bundle = p._repr_mimebundle_()
    assert set(bundle) >= {"text/plain", "text/html", "text/vnd.mermaid"}
    svg = bundle["text/html"][bundle["text/html"].index("<svg"):bundle["text/html"].rindex(
        "</svg>") + 6]
    ET.fromstring(svg)  # well-formed
    assert "clicks" in svg and "paid" in svg
    assert bundle["text/vnd.mermaid"].startswith("flowchart LR")
    assert "paid" in p.to_dot() and "digraph" in p.to_dot()
    assert "paid" in p.to_mermaid()
    assert repr(p).startswith("Pipeline 't'")


def test_topic_names_are_validated() -> None:
    p = wb.Pipeline("t")
    with pytest.raises(wb.DefinitionError, match="topic name"):
        p.source("clicks<x>")
    with pytest.raises(wb.DefinitionError, match="topic name"):
        p.source("in").to("a b")


def test_graph_shows_repartition_and_changelog_topics() -> None:
    p = wb.Pipeline("app")
    p.source("in", sample=[{"u": 1}]).group_by("u").count(name="counts").to("out")
    dot = p.to_dot()
    assert "app-counts-repartition" in dot
    assert "app-counts-store-changelog" in dot or "counts-store" in dot


def test_repr_never_runs_a_pipeline_unbounded() -> None:
    calls: list[int] = []
    p = wb.Pipeline("t")
    s = p.source("in", sample=[{"i": i} for i in range(10)])
    m = s.map(lambda v: calls.append(1) or v)
    m._repr_mimebundle_()
    m._repr_mimebundle_()
    assert len(calls) == 10  # computed once, then cached on the step
    repr(m)
    assert len(calls) == 10


def test_run_bundle_and_repr(clicks: list[dict[str, Any]]) -> None:
    p = wb.Pipeline("t")
    p.source("clicks", key="user_id", sample=clicks).to("out")
    run = p.run("memory://")
    assert "20 source records read" in repr(run) and "1 commit" in repr(run)
    html = run._repr_mimebundle_()["text/html"]
    assert "topic out" in html and "20 rows" in html
    frames = run.frames()
    assert list(frames) == ["out"] and len(frames["out"]) == 20
