"""Notebook display of streams, tables, pipelines and runs: bounded, escaped, correct types."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
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


# -- previews a reader trusts ---------------------------------------------------------------------
def _cells(html: str) -> list[str]:
    import re

    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", html)]


def test_floats_print_as_pandas_prints_them() -> None:
    p = wb.Pipeline("floats")
    s = p.source("in", sample=[{"x": 6418.339999999998}, {"x": 1.5}])
    html = s._repr_mimebundle_()["text/html"]
    text = s._repr_mimebundle_()["text/plain"]
    assert "6418.339999999998" not in html and "6418.339999999998" not in text
    assert "6418.34" in _cells(html) and "1.50" in _cells(html)  # column-wise, as pandas
    with pd.option_context("display.precision", 1):
        p2 = wb.Pipeline("floats2")
        s2 = p2.source("in", sample=[{"x": 6418.339999999998}])
        assert "6418.3" in _cells(s2._repr_mimebundle_()["text/html"])


def test_missing_values_show_as_pandas_shows_them_and_greyed() -> None:
    p = wb.Pipeline("missing")
    s = p.source("in", sample=[{"name": "a", "n": 1}, {"name": None, "n": None},
                               {"x": 2.5}])
    frame = s.to_pandas()
    assert str(frame["n"].dtype) == "Int64"  # ints stay ints
    html = s._repr_mimebundle_()["text/html"]
    assert 'class="wb-missing">NaN<' in html or 'wb-missing">NaN' in html
    assert "<NA>" not in _cells(html) or "&lt;NA&gt;" in html
    assert "nan" not in _cells(html)  # never the string 'nan'
    assert "&lt;NA&gt;" in html


def test_table_deletions_are_labelled_in_a_changes_stream() -> None:
    p = wb.Pipeline("deletions")
    t = p.table("profiles", key="user_id", sample=[
        {"user_id": "a", "n": 1}, {"user_id": "a", "n": None}, {"user_id": "b", "n": 3}])
    changes = t.changes(name="changes")
    frame = changes.to_pandas()
    assert str(frame["n"].dtype) == "Int64"  # not 1.0, NaN, 3.0
    html = changes._repr_mimebundle_()["text/html"]
    assert ">deleted<" in html and html.count("wb-null") >= 2  # style + the row
    assert "deleted" in changes._repr_mimebundle_()["text/plain"]
    assert "1.0" not in _cells(html)


def test_timestamps_print_at_ms_and_windows_stay_narrow() -> None:
    p = wb.Pipeline("times")
    s = p.source("in", key="u", time="t", sample=[{"u": "a", "t": 1_700_000_001_852, "v": 1},
                                                  {"u": "b", "t": 1_700_000_062_000, "v": 2}])
    html = s._repr_mimebundle_()["text/html"]
    assert "2023-11-14 22:13:21.852+00:00" in _cells(html)  # not padded to microseconds
    assert "852000" not in html
    w = s.group_by("u").window(wb.Tumbling("1min")).agg(n="count", name="w")
    cells = _cells(w._repr_mimebundle_()["text/html"])
    assert "2023-11-14 22:13:00+00:00" in cells  # window_start as pandas prints it
    assert "22:14:00" in cells  # window_end: the time of day on the start's day


def test_windowed_previews_spread_over_keys() -> None:
    rows = [{"u": f"u{i % 4}", "t": 1000 * i, "v": 1} for i in range(200)]
    p = wb.Pipeline("spread")
    w = p.source("in", key="u", time="t", sample=rows).group_by("u").window(
        wb.Tumbling("10s")).count(name="w")
    shown = w.to_pandas(limit=wb.options.display_rows)
    assert shown["u"].nunique() == 4  # several keys, not the first key's windows only
    assert shown["window_start"].is_monotonic_increasing


def test_plurals() -> None:
    p = wb.Pipeline("plural")
    s = p.source("in", sample=[{"n": 1}])
    s.to("out")
    assert "[1 row]" in s._repr_mimebundle_()["text/plain"]
    run = p.run("memory://")
    assert "1 source record read" in repr(run) and "1 commit;" in repr(run)
    assert "1 source, 1 sink" in p._repr_mimebundle_()["text/html"]


def test_run_counts_source_records_apart_from_internal_rereads(clicks: list[dict[str, Any]]
                                                               ) -> None:
    p = wb.Pipeline("counts")
    s = p.source("clicks", key="user_id", sample=clicks)
    s.group_by("page").count(name="per-page").to("out")
    run = p.run("memory://")
    assert run.source_records == 20
    assert "20 source records read (+20 records re-read from internal topics)" in repr(run)


def test_grouped_stream_says_what_it_is_and_what_to_call() -> None:
    p = wb.Pipeline("grouped")
    s = p.source("in", key="u", sample=[{"u": "a", "x": 1}])
    text = repr(s.group_by("u"))
    assert "GroupedStream" in text and "grouped by field 'u'" in text
    assert ".count()" in text and ".agg(" in text and ".window(" in text
    bundle = s.group_by_key().window(wb.Tumbling("1min"))._repr_mimebundle_()
    assert "WindowedStream" in bundle["text/plain"] and "&lt;" in bundle["text/html"]


def test_graph_shows_the_users_names_not_internal_ones() -> None:
    from workbench.display import pipeline_graph

    p = wb.Pipeline("names")
    s = p.source("in", key="u", sample=[{"u": "a", "x": 1}])
    totals = s.group_by("u").agg(n="count", name="totals")
    totals.to("totals-out")  # an unnamed changes() in between
    parts = s.split(big=lambda v: v["x"] > 1, small=lambda v: True)
    parts.big.to("big")  # 'small' and 'rest' are read by nothing
    labels = {n.label for n in pipeline_graph(p)[0]}
    assert "totals" in labels
    assert not any("table_changes" in label or "changes()" in label for label in labels)
    assert "branch big" in labels and "branch small" not in labels and "branch rest" not in labels
    dot = p.to_dot()
    assert '"s:totals" -> "t:totals-out"' in dot


def test_live_view_says_how_many_rows_once() -> None:
    from workbench.display import live

    p = wb.Pipeline("live-rows")
    p.source("in", sample=[{"x": 6418.339999999998 + i} for i in range(366)]).to("out")
    run = live.start(p, "memory://", until="end", display=False)
    run.wait(timeout=60)
    html = live.render_html(run.snapshot())
    assert "366 rows (last 5 shown)" in html
    assert "first 5 shown" not in html and "last 5 of" not in html
    assert "6418.339999999998" not in html and "6783.34" in html
    assert "in → " not in html  # a source read straight into a sink is one step



def test_every_drawn_node_has_an_edge() -> None:
    """No orphan nodes: a source table's store is drawn with the steps that use it (the lead's
    plan stores a source table once; the drawing follows the plan), and store nodes without an
    edge are not drawn."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    import clickstream

    from workbench.display import pipeline_graph

    nodes, edges = pipeline_graph(clickstream.build())
    ends = {e.src for e in edges} | {e.dst for e in edges}
    orphans = [n.id for n in nodes if n.id not in ends]
    assert not orphans, orphans
    changelogs = [n for n in nodes if n.kind == "changelog"]
    assert changelogs and all(n.id in ends for n in changelogs)


def test_previews_of_unnamed_steps_say_what_they_read() -> None:
    p = wb.Pipeline("titles")
    s = p.source("in", key="u", sample=[{"u": "a", "x": 1}])
    totals = s.group_by("u").agg(n="count", name="totals")
    title = totals.changes()._repr_mimebundle_()["text/plain"].splitlines()[0]
    assert title.startswith("changes() of 'totals'") and "table_changes" not in title
    parts = s.split(big=lambda v: v["x"] > 1, name="sizes")
    assert parts.big._repr_mimebundle_()["text/plain"].startswith("branch 'big' of 'sizes'")
    assert s.filter(lambda v: True)._repr_mimebundle_()["text/plain"].startswith(
        "filter of 'in'")


def test_run_preview_shows_every_column_of_a_topic() -> None:
    """A left join's right-side fields are columns even when the first rows have none
    (``balance`` used to show ``spent`` but not ``refunded``)."""
    rows = [{"u": f"u{i}", "x": float(i)} for i in range(20)]
    p = wb.Pipeline("balance")
    s = p.source("in", key="u", sample=rows)
    spent = s.group_by("u").agg(spent=("x", "sum"), name="spent")
    refunded = s.filter(lambda v: v["x"] > 15).group_by("u").agg(refunded=("x", "sum"),
                                                                  name="refunded")
    spent.join(refunded, how="left", name="balance").to("balance")
    html = p.run("memory://")._repr_mimebundle_()["text/html"]
    head = html[html.index("topic balance"):]
    assert ">refunded<" in head and ">spent<" in head
