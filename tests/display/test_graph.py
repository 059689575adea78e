"""Tests for ``workbench.display.graph`` (pure-Python graph drawing)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import random
import re
import stat
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _load_graph_module() -> ModuleType:
    """Import the module normally, or by path while the package is incomplete."""
    try:
        return importlib.import_module("workbench.display.graph")
    except ImportError:
        path = Path(__file__).resolve().parents[2] / "workbench" / "display" / "graph.py"
        spec = importlib.util.spec_from_file_location("_wb_display_graph_under_test", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        return module


graph = _load_graph_module()
GraphNode = graph.GraphNode
GraphEdge = graph.GraphEdge

SVG_NS = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert(1)</script>"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def pipeline() -> tuple[list[Any], list[Any]]:
    nodes = [
        GraphNode("clicks", "clicks", "source", "topic: clicks"),
        GraphNode("users", "users", "table", "topic: users"),
        GraphNode("f", "filter", "stateless", "line 12"),
        GraphNode("rk", "selectKey", "repartition"),
        GraphNode("agg", "count", "stateful", "line 20"),
        GraphNode("cl", "count-changelog", "changelog"),
        GraphNode("j", "join", "stateful"),
        GraphNode("out", "paid", "sink", "topic: paid"),
    ]
    edges = [
        GraphEdge("clicks", "f"),
        GraphEdge("f", "rk", "rekey"),
        GraphEdge("rk", "agg"),
        GraphEdge("agg", "cl"),
        GraphEdge("agg", "j"),
        GraphEdge("users", "j", "lookup"),
        GraphEdge("j", "out"),
        GraphEdge("clicks", "out", "raw"),  # long edge spanning layers
    ]
    return nodes, edges


def chain(n: int) -> tuple[list[Any], list[Any]]:
    nodes = [GraphNode(f"n{i}", f"op{i}", "stateless") for i in range(n)]
    edges = [GraphEdge(f"n{i}", f"n{i + 1}") for i in range(n - 1)]
    return nodes, edges


def diamonds(n: int) -> tuple[list[Any], list[Any]]:
    """A row of diamonds: i -> i+1, i -> i+2, i+1 -> i+3, i+2 -> i+3, ..."""
    nodes = [GraphNode(f"d{i}", f"op{i}", "stateful" if i % 3 else "stateless") for i in range(n)]
    edges: list[Any] = []
    for i in range(0, n - 3, 3):
        edges += [
            GraphEdge(f"d{i}", f"d{i + 1}"),
            GraphEdge(f"d{i}", f"d{i + 2}"),
            GraphEdge(f"d{i + 1}", f"d{i + 3}"),
            GraphEdge(f"d{i + 2}", f"d{i + 3}"),
        ]
    return nodes, edges


def random_dag(seed: int, n: int, m: int) -> tuple[list[Any], list[Any]]:
    rng = random.Random(seed)
    kinds = graph.NODE_KINDS
    nodes = [
        GraphNode(
            f"v{i}",
            f"node {i}" + ("x" * rng.randrange(0, 30)),
            kinds[i % len(kinds)],
            "detail" if rng.random() < 0.4 else "",
        )
        for i in range(n)
    ]
    edges = []
    for _ in range(m):
        a, b = sorted(rng.sample(range(n), 2))
        edges.append(GraphEdge(f"v{a}", f"v{b}", "lbl" if rng.random() < 0.2 else ""))
    return nodes, edges


def random_digraph(seed: int, n: int, m: int) -> tuple[list[Any], list[Any]]:
    rng = random.Random(seed)
    nodes = [GraphNode(f"c{i}", f"c{i}", "stateless") for i in range(n)]
    edges = [GraphEdge(f"c{rng.randrange(n)}", f"c{rng.randrange(n)}") for _ in range(m)]
    return nodes, edges


def parse_svg(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    return root


def node_groups(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG_NS}g") if g.get("class") == "wbg-node"]


def edge_paths(root: ET.Element) -> list[ET.Element]:
    return [p for p in root.iter(f"{SVG_NS}path") if p.get("class") == "wbg-edge"]


def boxes(root: ET.Element) -> dict[str, tuple[float, float, float, float]]:
    """Node id -> (x, y, w, h) of its rect."""
    out = {}
    for group in node_groups(root):
        rects = group.findall(f"{SVG_NS}rect")
        assert len(rects) == 1
        r = rects[0]
        node_id = group.get("data-id")
        assert node_id is not None
        out[node_id] = tuple(float(r.get(k, "nan")) for k in ("x", "y", "width", "height"))
    return out  # type: ignore[return-value]


def assert_no_overlap(root: ET.Element) -> None:
    items = sorted(boxes(root).values())
    for i, (x1, y1, w1, h1) in enumerate(items):
        assert w1 > 0 and h1 > 0
        for x2, y2, w2, h2 in items[i + 1 :]:
            if x2 >= x1 + w1:
                break  # sorted by x: nothing further right can overlap
            overlap_x = x1 < x2 + w2 and x2 < x1 + w1
            overlap_y = y1 < y2 + h2 and y2 < y1 + h1
            assert not (overlap_x and overlap_y), ((x1, y1, w1, h1), (x2, y2, w2, h2))


def assert_inside_canvas(root: ET.Element) -> None:
    vb = [float(v) for v in (root.get("viewBox") or "").split()]
    assert len(vb) == 4 and vb[0] == 0 and vb[1] == 0
    assert float(root.get("width", "0")) == vb[2]
    assert float(root.get("height", "0")) == vb[3]
    band = 0.0
    for g in root.iter(f"{SVG_NS}g"):
        m = re.fullmatch(r"translate\(0,([\d.]+)\)", g.get("transform", ""))
        if m:
            band = float(m.group(1))
    for x, y, w, h in boxes(root).values():
        assert x >= 0 and x + w <= vb[2] + 1e-6
        assert y + band >= 0 and y + band + h <= vb[3] + 1e-6


def run_with_deadline(fn: Callable[[], Any], seconds: float = 60.0) -> Any:
    """Run fn in a daemon thread; fail (rather than hang the suite) if it never returns."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # pragma: no cover - re-raised below
            errors.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "did not finish: probable infinite loop"
    if errors:
        raise errors[0]
    return result[0]


# ---------------------------------------------------------------------------
# SVG structure
# ---------------------------------------------------------------------------


def test_svg_is_xml_with_one_box_per_node_and_one_path_per_edge() -> None:
    nodes, edges = pipeline()
    svg = graph.to_svg(nodes, edges, title="My pipeline")
    root = parse_svg(svg)
    assert svg.startswith("<svg")
    assert root.get("viewBox") and root.get("width") and root.get("height")
    groups = node_groups(root)
    assert len(groups) == len(nodes)
    assert [g.get("data-id") for g in groups] == [n.id for n in nodes]
    assert [g.get("data-kind") for g in groups] == [n.kind for n in nodes]
    assert len(edge_paths(root)) == len(edges)
    # Every edge path is a cubic Bezier ending in an arrowhead marker.
    markers = list(root.iter(f"{SVG_NS}marker"))
    assert len(markers) == 1
    marker_ref = f"url(#{markers[0].get('id')})"
    for path in edge_paths(root):
        assert path.get("marker-end") == marker_ref
        assert re.match(r"^M[-\d.]+,[-\d.]+ C", path.get("d", ""))
    # Labels of the labelled edges are drawn.
    edge_texts = [t for t in root.iter(f"{SVG_NS}text") if t.get("class") == "wbg-edge-label"]
    assert sorted("".join(t.itertext()) for t in edge_texts) == sorted(
        e.label + e.label
        for e in edges
        if e.label  # tooltip title + visible text
    )
    # The title is shown.
    titles = [t for t in root.iter(f"{SVG_NS}text") if t.get("class") == "wbg-title"]
    assert ["".join(t.itertext()) for t in titles] == ["My pipeline"]
    assert_no_overlap(root)
    assert_inside_canvas(root)


def test_svg_details_kinds_and_theme_colours() -> None:
    nodes, edges = pipeline()
    root = parse_svg(graph.to_svg(nodes, edges))
    by_id = {g.get("data-id"): g for g in node_groups(root)}
    clicks = by_id["clicks"]
    assert [t.text for t in clicks.findall(f"{SVG_NS}text")] == ["clicks", "topic: clicks"]
    label, detail = clicks.findall(f"{SVG_NS}text")
    assert float(detail.get("font-size", "0")) < float(label.get("font-size", "0"))
    assert [t.text for t in by_id["rk"].findall(f"{SVG_NS}text")] == ["selectKey"]
    # Node fills are semi-transparent and differ per kind.
    fills = {}
    for node in nodes:
        rect = by_id[node.id].find(f"{SVG_NS}rect")
        assert rect is not None
        assert 0 < float(rect.get("fill-opacity", "1")) < 1
        fills.setdefault(node.kind, set()).add(rect.get("fill"))
    assert all(len(v) == 1 for v in fills.values())
    assert len({next(iter(v)) for v in fills.values()}) == len(fills)
    # Text and edges follow the Jupyter theme with a fallback.
    for text in root.iter(f"{SVG_NS}text"):
        assert "var(--jp-" in text.get("style", "")
    for path in edge_paths(root):
        assert "var(--jp-" in path.get("style", "")
        assert path.get("stroke") == "currentColor"


def test_empty_graph() -> None:
    assert graph.layout([], []) == {}
    root = parse_svg(graph.to_svg([], [], title="nothing"))
    assert node_groups(root) == [] and edge_paths(root) == []
    assert float(root.get("width", "0")) > 0 and float(root.get("height", "0")) > 0
    assert graph.to_mermaid([], []).startswith("flowchart LR")
    assert graph.to_dot([], []).strip().endswith("}")


# ---------------------------------------------------------------------------
# Escaping
# ---------------------------------------------------------------------------


def hostile_graph() -> tuple[list[Any], list[Any]]:
    nodes = [
        GraphNode('a"><img src=x onerror=alert(1)>', HOSTILE, "source", "detail & <b>bold</b>"),
        GraphNode("b'&", 'it\'s "quoted" & <ok>', "stateful", "ctl\x00\x1b\x7fchars\nnl"),
        GraphNode("end", "#hash; `tick` |pipe| \\N \\l", "sink", "a\\b"),
    ]
    edges = [
        GraphEdge(nodes[0].id, nodes[1].id, "</text><script>x</script>"),
        GraphEdge(nodes[1].id, nodes[2].id, 'say "hi"|now'),
    ]
    return nodes, edges


def test_svg_escapes_hostile_text() -> None:
    nodes, edges = hostile_graph()
    svg = graph.to_svg(nodes, edges, title="<title>&</title>")
    assert "<script" not in svg and "<img" not in svg and "<b>" not in svg
    assert "&lt;script&gt;" in svg
    root = parse_svg(svg)  # also proves control characters were neutralised
    tags = {el.tag for el in root.iter()}
    allowed = ("svg", "defs", "marker", "path", "g", "rect", "text", "title")
    assert tags <= {f"{SVG_NS}{t}" for t in allowed}
    groups = node_groups(root)
    assert [g.get("data-id") for g in groups] == [n.id for n in nodes]
    first_label = groups[0].findall(f"{SVG_NS}text")[0]
    assert first_label.text == HOSTILE
    tooltip = groups[0].find(f"{SVG_NS}title")
    assert tooltip is not None and HOSTILE in (tooltip.text or "")
    second = [t.text for t in groups[1].findall(f"{SVG_NS}text")]
    assert second[0] == 'it\'s "quoted" & <ok>'
    assert second[1] is not None and "\x00" not in second[1] and "\n" not in second[1]
    edge_texts = [
        "".join(t.itertext())
        for t in root.iter(f"{SVG_NS}text")
        if t.get("class") == "wbg-edge-label"
    ]
    assert any("</text><script>x</script>" in t for t in edge_texts)


def test_svg_wraps_long_labels_with_full_text_in_tooltip() -> None:
    long_label = "a-very-long-operator-name-" * 6 + "<end>"
    nodes = [
        GraphNode("x", long_label, "stateless", "d" * 200),
        GraphNode("y", "short", "sink"),
    ]
    edges = [GraphEdge("x", "y", "edge label " * 10)]
    root = parse_svg(graph.to_svg(nodes, edges))
    group = node_groups(root)[0]
    label, detail = group.findall(f"{SVG_NS}text")
    lines = [label.text or "", *((t.text or "") for t in label.findall(f"{SVG_NS}tspan"))]
    assert len(lines) == 3  # wrapped onto three lines, not cut after the first
    assert lines[0] == "a-very-long-operator-name-a-"  # broken after a '-'
    assert all(len(line) <= 28 for line in lines)
    assert lines[-1].endswith("\u2026") and len("".join(lines)) < len(long_label)
    short = parse_svg(graph.to_svg([GraphNode("s", "aggregate: per-user-minute-totals",
                                              "stateful")], []))
    text = node_groups(short)[0].find(f"{SVG_NS}text")
    assert text is not None
    assert [text.text, *(t.text for t in text.findall(f"{SVG_NS}tspan"))] == [
        "aggregate: per-user-minute-", "totals"]  # wrapped whole, nothing lost
    assert detail.text is not None and detail.text.endswith("\u2026")
    tooltip = group.find(f"{SVG_NS}title")
    assert tooltip is not None and long_label in (tooltip.text or "")
    edge_label = next(t for t in root.iter(f"{SVG_NS}text") if t.get("class") == "wbg-edge-label")
    title = edge_label.find(f"{SVG_NS}title")
    assert title is not None and title.text == "edge label " * 10
    assert title.tail is not None and title.tail.endswith("\u2026")
    assert len(title.tail) < len(title.text)
    # Box width is bounded even for very long labels.
    assert boxes(root)["x"][2] < 320


def _dot_lex(text: str) -> tuple[list[str], str]:
    """Split DOT text like Graphviz's scanner: quoted strings and the rest.

    Inside quotes ``\\"`` is a quote, ``\\\\`` stays a backslash pair, and
    anything else is literal.  Returns the strings and the unquoted remainder.
    """
    strings: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != '"':
            rest.append(text[i])
            i += 1
            continue
        i += 1
        buf: list[str] = []
        while True:
            assert i < len(text), "unterminated DOT string"
            if text.startswith('\\"', i):
                buf.append('"')
                i += 2
            elif text.startswith("\\\\", i):
                buf.append("\\\\")
                i += 2
            elif text[i] == '"':
                i += 1
                break
            else:
                buf.append(text[i])
                i += 1
        strings.append("".join(buf))
        rest.append("\x01")  # placeholder for one quoted string
    return strings, "".join(rest)


def _esc_string(raw: str) -> str:
    """Decode the escString escapes a label may use (only \\\\ and \\n expected)."""
    out = []
    i = 0
    while i < len(raw):
        if raw[i] == "\\":
            nxt = raw[i + 1]
            assert nxt in "\\n", f"unexpected escape \\{nxt} in {raw!r}"
            out.append("\\" if nxt == "\\" else "\n")
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


def test_dot_quotes_and_escapes_everything() -> None:
    nodes, edges = hostile_graph()
    dot = graph.to_dot(nodes, edges, name='my "graph"')
    strings, rest = _dot_lex(dot)
    # Outside of strings only DOT structure remains: no user text leaked.
    assert "script" not in rest and "img" not in rest and "quoted" not in rest
    assert rest.count("{") == rest.count("}") == 1
    assert rest.strip().startswith("digraph \x01 {")
    assert strings[0] == 'my "graph"'
    # Node statements: id string followed by a label string.
    node_lines = [line for line in dot.splitlines() if "label=" in line and "->" not in line]
    assert len(node_lines) == len(nodes)
    for node, line in zip(nodes, node_lines):
        line_strings, _ = _dot_lex(line)
        assert line_strings[0].replace("\\\\", "\\") == node.id
        label = _esc_string(line_strings[1])
        first, _, second = label.partition("\n")
        assert first == node.label.replace("\n", " ")
        if node.detail and "\x00" not in node.detail:
            assert second == node.detail
    edge_lines = [line for line in dot.splitlines() if "->" in _dot_lex(line)[1]]
    assert len(edge_lines) == len(edges)
    for edge, line in zip(edges, edge_lines):
        line_strings, _ = _dot_lex(line)
        assert [s.replace("\\\\", "\\") for s in line_strings[:2]] == [edge.src, edge.dst]
        assert _esc_string(line_strings[2]) == edge.label
    # A trailing backslash must not swallow the closing quote.
    dot2 = graph.to_dot([GraphNode("a\\", "b\\", "sink")], [])
    strs, rest2 = _dot_lex(dot2)
    assert "a\\\\" in strs and rest2.count("{") == 1


def test_mermaid_escapes_and_sanitises() -> None:
    nodes, edges = hostile_graph()
    text = graph.to_mermaid(nodes, edges)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert "<script" not in text and "<img" not in text
    assert "#lt;script#gt;" in text and "#quot;quoted#quot;" in text
    assert "#35;hash" in text and "#96;tick#96;" in text
    definitions = lines[1 : 1 + len(nodes)]
    ids = []
    for line in definitions:
        m = re.match(r'^    ([A-Za-z0-9_]+)(\(\[|\[\(|\[\[|\(|\{\{|\[/|>|\[)"([^"]*)"', line)
        assert m, line
        ids.append(m.group(1))
    assert len(set(ids)) == len(nodes)
    assert "end" not in ids  # a Mermaid keyword must not be used as an id
    for line in lines[1:]:
        # Quotes only ever delimit labels: an even number per line.
        assert line.count('"') % 2 == 0, line
    edge_lines = [line for line in lines if "-->" in line]
    assert len(edge_lines) == len(edges)
    assert '-->|"say #quot;hi#quot;#124;now"|' in edge_lines[1]


def test_mermaid_ids_unique_shapes_and_every_node_mentioned() -> None:
    nodes = [
        GraphNode("a-b", "one", "source"),
        GraphNode("a_b", "two", "sink"),
        GraphNode("a b", "three", "stateful"),
        GraphNode("9lives", "four", "stateless"),
        GraphNode("", "five", "repartition"),
        GraphNode("ünïcode", "six", "table"),
        GraphNode("graph", "seven", "changelog"),
    ]
    edges = [GraphEdge(nodes[i].id, nodes[i + 1].id) for i in range(len(nodes) - 1)]
    text = graph.to_mermaid(nodes, edges)
    assert text.startswith("flowchart LR\n")
    lines = text.splitlines()
    ids = []
    for node, line in zip(nodes, lines[1:]):
        m = re.match(r"^    ([A-Za-z0-9_]+)\W", line)
        assert m, line
        assert f'"{node.label}"' in line
        ids.append(m.group(1))
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", i) for i in ids)
    assert ids[6] != "graph"
    shapes = {node.kind: line for node, line in zip(nodes, lines[1:])}
    assert '(["one"])' in shapes["source"]
    assert '[("two")]' in shapes["sink"]
    assert '[["three"]]' in shapes["stateful"]
    # Edges use the sanitised ids.
    for i, line in enumerate(line for line in lines if "-->" in line):
        assert line.split() == [ids[i], "-->", ids[i + 1]]
    # Each kind gets a class.
    for kind in {n.kind for n in nodes}:
        assert f"classDef {kind} " in text


# ---------------------------------------------------------------------------
# Layout properties
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [pipeline, lambda: chain(12), lambda: diamonds(30)]
    + [lambda s=s: random_dag(s, 40, 70) for s in range(6)],
)
def test_dag_edges_go_left_to_right_without_overlaps(make: Callable[[], Any]) -> None:
    nodes, edges = make()
    pos = graph.layout(nodes, edges)
    assert set(pos) == {n.id for n in nodes}
    for edge in edges:
        assert pos[edge.src][0] < pos[edge.dst][0], edge
    root = parse_svg(graph.to_svg(nodes, edges))
    assert len(node_groups(root)) == len(nodes)
    assert len(edge_paths(root)) == len(edges)
    assert_no_overlap(root)
    assert_inside_canvas(root)


def test_layers_are_longest_paths() -> None:
    nodes = [GraphNode(x, x, "stateless") for x in "abcde"]
    edges = [
        GraphEdge("a", "b"),
        GraphEdge("b", "c"),
        GraphEdge("c", "e"),
        GraphEdge("a", "e"),
        GraphEdge("d", "e"),
    ]
    pos = graph.layout(nodes, edges)
    columns = sorted({x for x, _ in pos.values()})
    layer = {k: columns.index(v[0]) for k, v in pos.items()}
    assert layer == {"a": 0, "b": 1, "c": 2, "d": 0, "e": 3}


def test_barycenter_removes_avoidable_crossing() -> None:
    # Input order would cross: r feeds a and b; a -> d, b -> c, c listed before d.
    nodes = [GraphNode(x, x, "stateless") for x in ("r", "a", "b", "c", "d")]
    edges = [GraphEdge("r", "a"), GraphEdge("r", "b"), GraphEdge("a", "d"), GraphEdge("b", "c")]
    pos = graph.layout(nodes, edges)
    assert (pos["a"][1] - pos["b"][1]) * (pos["d"][1] - pos["c"][1]) > 0


def test_crossings_reduced_on_connected_matching() -> None:
    rng = random.Random(7)
    root = [GraphNode("root", "root", "source")]
    left = [GraphNode(f"l{i}", f"l{i}", "stateless") for i in range(8)]
    right = [GraphNode(f"r{i}", f"r{i}", "sink") for i in range(8)]
    perm = list(range(8))
    rng.shuffle(perm)
    edges = [GraphEdge("root", f"l{i}") for i in range(8)]
    edges += [GraphEdge(f"l{i}", f"r{perm[i]}") for i in range(8)]  # a perfect matching
    pos = graph.layout(root + left + right, edges)
    order_right = sorted(range(8), key=lambda i: pos[f"r{perm[i]}"][1])
    order_left = sorted(range(8), key=lambda i: pos[f"l{i}"][1])
    assert order_left == order_right  # a tree can always be drawn crossing-free


def test_deterministic_output() -> None:
    nodes, edges = random_dag(3, 60, 120)
    first = (
        graph.layout(nodes, edges),
        graph.to_svg(nodes, edges, title="t"),
        graph.to_dot(nodes, edges),
        graph.to_mermaid(nodes, edges),
    )
    copies_n = [GraphNode(n.id, n.label, n.kind, n.detail) for n in nodes]
    copies_e = [GraphEdge(e.src, e.dst, e.label) for e in edges]
    second = (
        graph.layout(copies_n, copies_e),
        graph.to_svg(copies_n, copies_e, title="t"),
        graph.to_dot(copies_n, copies_e),
        graph.to_mermaid(copies_n, copies_e),
    )
    assert first == second
    # Also in a fresh interpreter (no dependence on hash randomisation).
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('g', {graph.__file__!r})\n"
        "g = importlib.util.module_from_spec(spec); sys.modules['g'] = g\n"
        "spec.loader.exec_module(g)\n"
        "import random\n"
        "rng = random.Random(5)\n"
        "nodes = [g.GraphNode(f'v{i}', f'v{i}', 'stateless') for i in range(30)]\n"
        "pick = lambda: f'v{rng.randrange(30)}'\n"
        "edges = [g.GraphEdge(pick(), pick()) for _ in range(60)]\n"
        "sys.stdout.write(g.to_svg(nodes, edges))\n"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        proc = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=60,
        )
        outputs.add(proc.stdout)
    assert len(outputs) == 1


@pytest.mark.parametrize(
    "edges",
    [
        [("a", "b"), ("b", "c"), ("c", "a")],
        [("a", "b"), ("b", "a")],
        [("a", "a")],
        [("a", "a"), ("a", "a", "again"), ("a", "b"), ("b", "b")],
        [(x, y) for x in "abcde" for y in "abcde"],  # complete with self-loops
    ],
)
def test_cycles_do_not_hang_and_draw_every_edge(edges: list[tuple[str, ...]]) -> None:
    ids = sorted({x for e in edges for x in e[:2]})
    nodes = [GraphNode(i, i, "stateful") for i in ids]
    gedges = [GraphEdge(*e) for e in edges]
    pos = run_with_deadline(lambda: graph.layout(nodes, gedges))
    assert set(pos) == set(ids)
    svg = run_with_deadline(lambda: graph.to_svg(nodes, gedges))
    root = parse_svg(svg)
    assert len(edge_paths(root)) == len(gedges)
    assert_no_overlap(root)
    assert_inside_canvas(root)
    # Every path starts and ends on the border of its own boxes.
    bx = boxes(root)
    for edge, path in zip(gedges, edge_paths(root)):
        nums = [float(v) for v in re.findall(r"-?[\d.]+", path.get("d", ""))]
        (sx, sy), (ex, ey) = (nums[0], nums[1]), (nums[-2], nums[-1])
        for (px, py), node_id in (((sx, sy), edge.src), ((ex, ey), edge.dst)):
            x, y, w, h = bx[node_id]
            assert x - 0.01 <= px <= x + w + 0.01 and y - 0.01 <= py <= y + h + 0.01


def test_cycle_is_broken_into_increasing_layers() -> None:
    nodes = [GraphNode(x, x, "stateless") for x in "abcd"]
    edges = [GraphEdge("a", "b"), GraphEdge("b", "c"), GraphEdge("c", "d"), GraphEdge("d", "b")]
    pos = run_with_deadline(lambda: graph.layout(nodes, edges))
    # "a" is the only root; the back edge d -> b is the one reversed.
    assert pos["a"][0] < pos["b"][0] < pos["c"][0] < pos["d"][0]


def test_random_cyclic_graphs() -> None:
    for seed in range(5):
        nodes, edges = random_digraph(seed, 30, 70)
        root = parse_svg(run_with_deadline(lambda n=nodes, e=edges: graph.to_svg(n, e)))
        assert len(node_groups(root)) == len(nodes)
        assert len(edge_paths(root)) == len(edges)
        assert_no_overlap(root)


def test_disconnected_components_are_stacked() -> None:
    a_nodes, a_edges = chain(4)
    b_nodes = [GraphNode(f"b{i}", f"b{i}", "stateless") for i in range(3)]
    b_edges = [GraphEdge("b0", "b1"), GraphEdge("b0", "b2")]
    lonely = [GraphNode("solo", "solo", "source"), GraphNode("solo2", "solo2", "sink")]
    nodes = a_nodes + b_nodes + lonely
    edges = a_edges + b_edges
    pos = run_with_deadline(lambda: graph.layout(nodes, edges))
    assert set(pos) == {n.id for n in nodes}
    a_bottom = max(pos[n.id][1] for n in a_nodes)
    b_top = min(pos[n.id][1] for n in b_nodes)
    b_bottom = max(pos[n.id][1] for n in b_nodes)
    assert a_bottom < b_top  # components do not interleave
    assert b_bottom < pos["solo"][1] < pos["solo2"][1]
    root = parse_svg(graph.to_svg(nodes, edges))
    assert_no_overlap(root)
    assert_inside_canvas(root)


def test_large_graphs_lay_out() -> None:
    for nodes, edges in (chain(200), diamonds(200)):
        pos = run_with_deadline(lambda n=nodes, e=edges: graph.layout(n, e))
        assert len(pos) == len(nodes)
        for edge in edges:
            assert pos[edge.src][0] < pos[edge.dst][0]
        root = parse_svg(graph.to_svg(nodes, edges))
        assert len(edge_paths(root)) == len(edges)
        assert_no_overlap(root)
    # A chain lays out on one row.
    nodes, edges = chain(200)
    pos = graph.layout(nodes, edges)
    assert len({round(y, 1) for _, y in pos.values()}) == 1


def test_long_fan_out_graph_lays_out() -> None:
    # n0 feeds every node of a 120-long chain: thousands of dummy vertices.
    nodes, edges = chain(120)
    edges = edges + [GraphEdge("n0", f"n{i}") for i in range(2, 120)]
    pos = run_with_deadline(lambda: graph.layout(nodes, edges))
    xs = [pos[f"n{i}"][0] for i in range(120)]
    assert xs == sorted(xs) and len(set(xs)) == 120
    root = parse_svg(graph.to_svg(nodes, edges))
    assert_no_overlap(root)


# ---------------------------------------------------------------------------
# Validation and Graphviz hook
# ---------------------------------------------------------------------------


def test_duplicate_ids_and_unknown_edge_ends_are_tolerated() -> None:
    nodes = [
        GraphNode("a", "first", "source"),
        GraphNode("a", "second", "sink"),  # duplicate: first definition wins
        GraphNode("b", "b", "stateless"),
    ]
    edges = [GraphEdge("a", "b"), GraphEdge("b", "ghost<x>"), GraphEdge("ghost<x>", "a")]
    pos = graph.layout(nodes, edges)
    assert set(pos) == {"a", "b", "ghost<x>"}
    root = parse_svg(graph.to_svg(nodes, edges))
    groups = node_groups(root)
    assert [g.get("data-id") for g in groups] == ["a", "b", "ghost<x>"]
    assert groups[0].findall(f"{SVG_NS}text")[0].text == "first"
    assert groups[2].findall(f"{SVG_NS}text")[0].text == "ghost<x>"
    assert len(edge_paths(root)) == len(edges)
    assert_no_overlap(root)
    dot = graph.to_dot(nodes, edges)
    assert dot.count("label=") == 3  # one statement per effective node
    mermaid = graph.to_mermaid(nodes, edges)
    assert "ghost_x_" in mermaid and '"ghost#lt;x#gt;"' in mermaid
    assert "second" not in mermaid


def test_graphviz_svg_without_dot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph.shutil, "which", lambda name: None)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not run anything without dot")

    monkeypatch.setattr(graph.subprocess, "run", forbidden)
    assert graph.graphviz_svg("digraph { a -> b }") is None


def _fake_dot(tmp_path: Path, body: str) -> None:
    script = tmp_path / "dot"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.mark.skipif(sys.platform == "win32", reason="uses a shell script as fake dot")
def test_graphviz_svg_with_fake_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    _fake_dot(
        tmp_path,
        'cat > "$0.in"\n'
        "printf '%s\\n' '<?xml version=\"1.0\"?>' '<svg xmlns=\"http://www.w3.org/2000/svg\">"
        "<g/></svg>'\n",
    )
    dot_text = graph.to_dot(*pipeline())
    out = graph.graphviz_svg(dot_text)
    assert out is not None and out.startswith("<svg") and out.rstrip().endswith("</svg>")
    assert (tmp_path / "dot.in").read_text() == dot_text  # DOT went to stdin
    _fake_dot(tmp_path, "cat >/dev/null\necho 'Error: syntax' >&2\nexit 1\n")
    assert graph.graphviz_svg("digraph {") is None


def test_graphviz_svg_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph.shutil, "which", lambda name: "/usr/bin/dot")
    seen: dict[str, Any] = {}

    def slow(cmd: Sequence[str], **kwargs: Any) -> None:
        seen.update(kwargs)
        raise subprocess.TimeoutExpired(cmd, kwargs.get("timeout", 0))

    monkeypatch.setattr(graph.subprocess, "run", slow)
    assert graph.graphviz_svg("digraph { a -> b }") is None
    assert seen["timeout"] == 10


@pytest.mark.skipif(graph.shutil.which("dot") is None, reason="Graphviz dot not installed")
def test_graphviz_svg_real_dot() -> None:
    nodes, edges = hostile_graph()
    out = graph.graphviz_svg(graph.to_dot(nodes, edges))
    assert out is not None
    ET.fromstring(out)
