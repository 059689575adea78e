"""Pipeline topology drawing without the Graphviz ``dot`` binary.

This module turns a small directed graph (the topology of a stream-processing
pipeline) into pictures and diagram texts using only the standard library:

* :func:`layout` computes a layered, left-to-right placement (longest-path
  layering, barycenter crossing reduction, smooth vertical placement).
* :func:`to_svg` renders a standalone ``<svg>`` document that reads well in
  both light and dark Jupyter themes.
* :func:`to_dot` and :func:`to_mermaid` emit Graphviz DOT and Mermaid
  ``flowchart LR`` texts.
* :func:`graphviz_svg` renders DOT text with a locally installed ``dot``
  binary, when (and only when) one is on ``PATH``.

Every piece of text that reaches an output format is escaped for it, because
labels come from user code.  All functions are deterministic: the same input
always yields byte-identical output.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "NODE_KINDS",
    "GraphEdge",
    "GraphNode",
    "graphviz_svg",
    "layout",
    "to_dot",
    "to_mermaid",
    "to_svg",
]

NODE_KINDS: tuple[str, ...] = (
    "source",
    "sink",
    "stateless",
    "stateful",
    "repartition",
    "table",
    "changelog",
    "unused",
)
"""The node kinds that get their own colour and shape (``unused``: a step no output needs,
drawn greyed and dashed)."""


@dataclass(frozen=True)
class GraphNode:
    """One operator (or topic, table, ...) of a pipeline topology.

    Attributes:
        id: Unique identifier of the node within one graph.
        label: Short text shown in the box, e.g. ``"filter"`` or ``"clicks"``.
        kind: One of :data:`NODE_KINDS`; unknown kinds are drawn in a neutral
            style.
        detail: Optional second, smaller line, e.g. ``"line 12"``.
    """

    id: str
    label: str
    kind: str
    detail: str = ""


@dataclass(frozen=True)
class GraphEdge:
    """A directed connection between two nodes.

    Attributes:
        src: Id of the upstream node.
        dst: Id of the downstream node.
        label: Optional short text drawn next to the edge.
    """

    src: str
    dst: str
    label: str = ""


# --------------------------------------------------------------------------
# Styling constants
# --------------------------------------------------------------------------

_MARGIN = 16.0
_LABEL_FONT = 13.0
_DETAIL_FONT = 11.0
_EDGE_FONT = 11.0
_TITLE_FONT = 15.0
_LABEL_CHAR_W = 7.3
_DETAIL_CHAR_W = 6.3
_EDGE_CHAR_W = 6.3
_TITLE_CHAR_W = 8.4
_PAD_X = 14.0
_MIN_NODE_W = 76.0
_H_ONE_LINE = 32.0
_H_TWO_LINES = 46.0
_MAX_LABEL_COLS = 28
_MAX_LABEL_LINES = 3
_LINE_H = 15.0
_MAX_DETAIL_COLS = 34
_MAX_EDGE_LABEL_COLS = 24
_MAX_TITLE_COLS = 100
_COL_GAP = 56.0
_NODE_GAP = 20.0
_DUMMY_GAP = 10.0
_DUMMY_HALF_H = 4.0
_COMPONENT_GAP = 30.0
_TITLE_H = 30.0
_PORT_SPACING = 7.0
_LOOP_BASE_H = 26.0
_LOOP_STEP_H = 12.0
_MAX_SWEEPS = 12
_PLACEMENT_ROUNDS = 8
_PLACEMENT_BUDGET = 4000  # virtual vertices that get all rounds

_FONT_STACK = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif"


@dataclass(frozen=True)
class _KindStyle:
    """Visual style of one node kind (colour plus border details)."""

    color: str
    pill: bool = False
    dash: str = ""
    stroke_width: float = 1.5
    rx: float = 6.0


_KIND_STYLES: dict[str, _KindStyle] = {
    "source": _KindStyle("#2e9d5a", pill=True),
    "sink": _KindStyle("#d9822b", pill=True),
    "stateless": _KindStyle("#4a7fd4"),
    "stateful": _KindStyle("#9b59d0", stroke_width=2.6),
    "repartition": _KindStyle("#c94f7c", dash="6 3"),
    "table": _KindStyle("#1aa3a3", stroke_width=2.2, rx=2.0),
    "changelog": _KindStyle("#8a8f98", dash="2 3", rx=2.0),
    "unused": _KindStyle("#9a9a9a", dash="4 3", stroke_width=1.0),
}
_DEFAULT_STYLE = _KindStyle("#888888")

# (presentation attribute, CSS declaration using Jupyter's theme variables).
# ``currentColor`` follows the host page's text colour where the variables are
# missing; secondary ink is the same colour at reduced opacity.
_INK = ("currentColor", "var(--jp-ui-font-color1, currentColor)")
_HALO = ("none", "var(--jp-layout-color0, Canvas)")
_SECONDARY_OPACITY = "0.72"
_EDGE_OPACITY = "0.6"


# --------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Make text printable on one line and legal in XML 1.0.

    Line breaks and tabs become spaces; other control characters, lone
    surrogates and the non-characters U+FFFE/U+FFFF become U+FFFD.

    Args:
        text: Arbitrary user text.

    Returns:
        The cleaned text.
    """
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch in "\t\n\r":
            out.append(" ")
        elif (
            code < 0x20
            or 0x7F <= code <= 0x9F
            or 0xD800 <= code <= 0xDFFF
            or code in (0xFFFE, 0xFFFF)
        ):
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


def _char_cols(ch: str) -> int:
    """Return how many monospace columns a character roughly occupies."""
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _cols(text: str) -> int:
    """Return the approximate display width of text in columns."""
    return sum(_char_cols(ch) for ch in text)


def _truncate(text: str, max_cols: int) -> tuple[str, bool]:
    """Shorten text to at most ``max_cols`` columns, ending with an ellipsis.

    Args:
        text: Cleaned text.
        max_cols: Maximum display width in columns (at least 2).

    Returns:
        The possibly shortened text and whether it was shortened.
    """
    if _cols(text) <= max_cols:
        return text, False
    used = 0
    kept: list[str] = []
    for ch in text:
        width = _char_cols(ch)
        if used + width > max_cols - 1:
            break
        kept.append(ch)
        used += width
    return "".join(kept).rstrip() + "\u2026", True


def _wrap(text: str, max_cols: int, max_lines: int = _MAX_LABEL_LINES) -> list[str]:
    """Break text into at most ``max_lines`` lines of ``max_cols`` columns, preferably after
    a space, ``-``, ``_``, ``.``, ``:`` or ``/``; the last line ends with an ellipsis when the
    text still does not fit."""
    lines: list[str] = []
    rest = text
    while rest and len(lines) < max_lines - 1 and _cols(rest) > max_cols:
        used = 0
        cut = 0
        best = 0
        for i, ch in enumerate(rest):
            width = _char_cols(ch)
            if used + width > max_cols:
                break
            used += width
            cut = i + 1
            if ch in " -_.:/" and i > 0:
                best = i + 1
        if best >= max(1, cut // 2):
            cut = best
        lines.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not lines:
        lines.append(_truncate(rest, max_cols)[0])
    return lines


def _xml(text: str) -> str:
    """Escape text for XML character data and attribute values."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def _num(value: float) -> str:
    """Format a coordinate compactly and deterministically."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# --------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------


@dataclass
class _Geometry:
    """Everything :func:`to_svg` needs to draw a laid-out graph."""

    width: float
    height: float
    centers: list[tuple[float, float]]
    sizes: list[tuple[float, float]]
    paths: list[str]
    label_points: list[tuple[float, float]]


def _node_size(node: GraphNode) -> tuple[float, float]:
    """Return the (width, height) of a node's box."""
    lines = _wrap(_clean(node.label), _MAX_LABEL_COLS)
    detail, _ = _truncate(_clean(node.detail), _MAX_DETAIL_COLS)
    width = max(
        _MIN_NODE_W,
        max(_cols(line) for line in lines) * _LABEL_CHAR_W + 2 * _PAD_X,
        _cols(detail) * _DETAIL_CHAR_W + 2 * _PAD_X,
    )
    height = (_H_TWO_LINES if detail else _H_ONE_LINE) + (len(lines) - 1) * _LINE_H
    return width, height


def _normalize(
    nodes: Sequence[GraphNode], edges: Sequence[GraphEdge]
) -> tuple[list[GraphNode], list[tuple[int, int]]]:
    """Resolve the graph to a node list and integer edge pairs.

    Like Graphviz, this is forgiving so that drawing never fails: a repeated
    node id keeps its first definition, and an edge end naming no node adds
    an implicit node (label = id, kind ``"unknown"``) after the given ones.

    Args:
        nodes: The nodes.
        edges: The edges.

    Returns:
        The effective nodes and the edges as ``(src, dst)`` index pairs in
        input order.
    """
    index: dict[str, int] = {}
    resolved: list[GraphNode] = []
    for node in nodes:
        if node.id not in index:
            index[node.id] = len(resolved)
            resolved.append(node)
    pairs: list[tuple[int, int]] = []
    for edge in edges:
        for end in (edge.src, edge.dst):
            if end not in index:
                index[end] = len(resolved)
                resolved.append(GraphNode(end, end, "unknown"))
        pairs.append((index[edge.src], index[edge.dst]))
    return resolved, pairs


def _components(n: int, pairs: Sequence[tuple[int, int]]) -> list[int]:
    """Label the weakly connected components, numbered by first node index."""
    parent = list(range(n))

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for s, t in pairs:
        rs, rt = find(s), find(t)
        if rs != rt:
            # Keep the smaller index as representative: deterministic numbering.
            if rs < rt:
                parent[rt] = rs
            else:
                parent[rs] = rt
    numbers: dict[int, int] = {}
    comp: list[int] = []
    for i in range(n):
        root = find(i)
        if root not in numbers:
            numbers[root] = len(numbers)
        comp.append(numbers[root])
    return comp


def _back_edges(n: int, pairs: Sequence[tuple[int, int]]) -> set[int]:
    """Find edges whose reversal makes the graph acyclic (DFS back edges).

    The depth-first search is iterative (no recursion limit) and visits roots
    first, then the remaining nodes, all in input order, so the choice of
    reversed edges is deterministic.  Self-loops must already be excluded.

    Args:
        n: Number of nodes.
        pairs: Edges as ``(src, dst)`` index pairs, no self-loops.

    Returns:
        Indices (into ``pairs``) of the edges to reverse.
    """
    out: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    indegree = [0] * n
    for e, (s, t) in enumerate(pairs):
        out[s].append((t, e))
        indegree[t] += 1
    state = [0] * n  # 0 unvisited, 1 on the DFS stack, 2 finished
    reversed_edges: set[int] = set()
    starts = [i for i in range(n) if indegree[i] == 0] + list(range(n))
    for root in starts:
        if state[root]:
            continue
        state[root] = 1
        stack: list[tuple[int, int]] = [(root, 0)]
        while stack:
            u, i = stack[-1]
            if i < len(out[u]):
                stack[-1] = (u, i + 1)
                t, e = out[u][i]
                if state[t] == 0:
                    state[t] = 1
                    stack.append((t, 0))
                elif state[t] == 1:
                    reversed_edges.add(e)
            else:
                state[u] = 2
                stack.pop()
    return reversed_edges


def _longest_path_layers(n: int, dag: Sequence[tuple[int, int]]) -> list[int]:
    """Assign each node the length of the longest path reaching it from a root.

    Args:
        n: Number of nodes.
        dag: Acyclic edges as index pairs.

    Returns:
        The layer of every node.
    """
    succ: list[list[int]] = [[] for _ in range(n)]
    indegree = [0] * n
    for s, t in dag:
        succ[s].append(t)
        indegree[t] += 1
    layer = [0] * n
    heap = [i for i in range(n) if indegree[i] == 0]
    heapq.heapify(heap)
    while heap:
        u = heapq.heappop(heap)
        for t in succ[u]:
            layer[t] = max(layer[t], layer[u] + 1)
            indegree[t] -= 1
            if indegree[t] == 0:
                heapq.heappush(heap, t)
    return layer


def _count_crossings(
    upper: Sequence[int], down: Sequence[Sequence[int]], pos: Sequence[int], size: int
) -> int:
    """Count edge crossings between one layer and the next.

    Uses a Fenwick tree over the lower layer's positions: O(E log V).

    Args:
        upper: Vertices of the upper (left) layer in order.
        down: Successor lists of all vertices.
        pos: Position of every vertex within its layer.
        size: Number of vertices in the lower (right) layer.

    Returns:
        The number of pairwise crossings.
    """
    targets: list[int] = []
    for u in upper:
        targets.extend(sorted(pos[v] for v in down[u]))
    tree = [0] * (size + 1)
    crossings = 0
    for seen, p in enumerate(targets):
        # Count already-seen targets strictly to the right of p.
        i = p + 1
        not_greater = 0
        while i > 0:
            not_greater += tree[i]
            i -= i & -i
        crossings += seen - not_greater
        i = p + 1
        while i <= size:
            tree[i] += 1
            i += i & -i
    return crossings


def _order_layers(
    layers: list[list[int]],
    up: Sequence[Sequence[int]],
    down: Sequence[Sequence[int]],
    pos: list[int],
) -> list[list[int]]:
    """Reduce crossings with alternating barycenter sweeps.

    Args:
        layers: Initial vertex order per layer (not modified).
        up: Predecessor lists (neighbours in the previous layer).
        down: Successor lists (neighbours in the next layer).
        pos: Scratch array of per-vertex positions; updated in place to match
            the returned order.

    Returns:
        The best ordering found (fewest crossings; earliest on ties).
    """

    def set_positions(order: list[list[int]]) -> None:
        for layer in order:
            for i, v in enumerate(layer):
                pos[v] = i

    def total_crossings(order: list[list[int]]) -> int:
        return sum(
            _count_crossings(order[k], down, pos, len(order[k + 1])) for k in range(len(order) - 1)
        )

    def reorder(layer: list[int], nbrs: Sequence[Sequence[int]]) -> list[int]:
        keyed: list[tuple[float, int, int]] = []
        for v in layer:
            around = nbrs[v]
            bary = sum(pos[u] for u in around) / len(around) if around else float(pos[v])
            keyed.append((bary, pos[v], v))
        keyed.sort()
        result = [v for _, _, v in keyed]
        for i, v in enumerate(result):
            pos[v] = i
        return result

    current = [list(layer) for layer in layers]
    set_positions(current)
    best = [list(layer) for layer in current]
    best_crossings = total_crossings(current)
    stale = 0
    for _ in range(_MAX_SWEEPS):
        if best_crossings == 0 or len(current) < 2:
            break
        for k in range(1, len(current)):
            current[k] = reorder(current[k], up)
        for k in range(len(current) - 2, -1, -1):
            current[k] = reorder(current[k], down)
        crossings = total_crossings(current)
        if crossings < best_crossings:
            best_crossings = crossings
            best = [list(layer) for layer in current]
            stale = 0
        else:
            stale += 1
            if stale >= 3:
                break
    set_positions(best)
    return best


def _place_layer(
    layer: Sequence[int],
    y: list[float],
    nbrs: Sequence[Sequence[tuple[int, float]]],
    seps: Sequence[float],
) -> None:
    """Move a layer's vertices towards their neighbours, keeping them apart.

    Solves ``min sum w_i (y_i - d_i)^2`` subject to
    ``y_i - y_{i-1} >= seps[i]`` exactly, by isotonic regression
    (pool-adjacent-violators) on ``y_i - offset_i``.

    Args:
        layer: Vertices in top-to-bottom order.
        y: Vertical centre of every vertex; updated in place.
        nbrs: Weighted neighbour lists used to compute the desired positions.
        seps: Required centre distance to the previous vertex (``seps[0]``
            is ignored).
    """
    # Pool-adjacent-violators blocks as parallel lists: total weight,
    # weighted sum of targets, number of vertices.
    b_weight: list[float] = []
    b_sum: list[float] = []
    b_count: list[int] = []
    offset = 0.0
    offsets: list[float] = []
    for i, v in enumerate(layer):
        if i:
            offset += seps[i]
        offsets.append(offset)
        total_w = 0.0
        weighted = 0.0
        for u, w in nbrs[v]:
            total_w += w
            weighted += y[u] * w
        if total_w > 0:
            desired = weighted / total_w
        else:
            desired, total_w = y[v], 0.01
        cur_w = total_w
        cur_s = total_w * (desired - offset)
        cur_c = 1
        while b_weight and b_sum[-1] / b_weight[-1] > cur_s / cur_w:
            cur_w += b_weight.pop()
            cur_s += b_sum.pop()
            cur_c += b_count.pop()
        b_weight.append(cur_w)
        b_sum.append(cur_s)
        b_count.append(cur_c)
    i = 0
    for weight, total, count in zip(b_weight, b_sum, b_count):
        value = total / weight
        for _ in range(count):
            y[layer[i]] = value + offsets[i]
            i += 1


def _compute(
    nodes: Sequence[GraphNode], edges: Sequence[GraphEdge], pairs: Sequence[tuple[int, int]]
) -> _Geometry:
    """Lay out the graph and route its edges.

    Args:
        nodes: The effective nodes (from :func:`_normalize`).
        edges: The edges.
        pairs: The edges as node index pairs (from :func:`_normalize`).

    Returns:
        Node boxes, edge paths and canvas size (without any title band).
    """
    n = len(nodes)
    sizes = [_node_size(node) for node in nodes]
    if n == 0:
        return _Geometry(2 * _MARGIN, 2 * _MARGIN, [], [], [], [])

    loops: list[list[int]] = [[] for _ in range(n)]
    plain: list[int] = []  # indices of edges that are not self-loops
    for e, (s, t) in enumerate(pairs):
        if s == t:
            loops[s].append(e)
        else:
            plain.append(e)
    plain_pairs = [pairs[e] for e in plain]

    comp = _components(n, plain_pairs)
    flipped = {plain[k] for k in _back_edges(n, plain_pairs)}
    oriented: dict[int, tuple[int, int]] = {}
    for e in plain:
        s, t = pairs[e]
        oriented[e] = (t, s) if e in flipped else (s, t)
    layer_of = _longest_path_layers(n, list(oriented.values()))
    n_layers = max(layer_of) + 1

    # Virtual graph: real nodes 0..n-1 followed by dummy vertices that
    # split edges spanning more than one layer.
    vlayer = list(layer_of)
    vcomp = list(comp)
    chains: dict[int, list[int]] = {}
    for e in plain:
        a, b = oriented[e]
        chain = [a]
        for k in range(layer_of[a] + 1, layer_of[b]):
            vlayer.append(k)
            vcomp.append(comp[a])
            chain.append(len(vlayer) - 1)
        chain.append(b)
        chains[e] = chain
    nv = len(vlayer)
    up: list[list[int]] = [[] for _ in range(nv)]
    down: list[list[int]] = [[] for _ in range(nv)]
    for chain in chains.values():
        for u, v in itertools.pairwise(chain):
            down[u].append(v)
            up[v].append(u)

    # Vertical extents around each vertex's centre line.
    ext_top = [0.0] * nv
    ext_bottom = [0.0] * nv
    for v in range(nv):
        if v < n:
            half = sizes[v][1] / 2
            extra = 0.0
            if loops[v]:
                extra = 0.75 * (_LOOP_BASE_H + _LOOP_STEP_H * (len(loops[v]) - 1)) + 4
                if any(edges[e].label for e in loops[v]):
                    extra += _EDGE_FONT + 4
            ext_top[v], ext_bottom[v] = half + extra, half
        else:
            ext_top[v] = ext_bottom[v] = _DUMMY_HALF_H

    # Columns: shared by all components so that they line up.
    col_w = [0.0] * n_layers
    for v in range(n):
        col_w[layer_of[v]] = max(col_w[layer_of[v]], sizes[v][0])
    gaps = [_COL_GAP] * n_layers
    for e in plain:
        label, _ = _truncate(_clean(edges[e].label), _MAX_EDGE_LABEL_COLS)
        if label:
            k = layer_of[oriented[e][0]]
            gaps[k] = max(gaps[k], _cols(label) * _EDGE_CHAR_W + 24)
    col_left: list[float] = []
    x = _MARGIN
    for k in range(n_layers):
        col_left.append(x)
        x += col_w[k] + gaps[k]
    width = col_left[-1] + col_w[-1] + _MARGIN
    col_center = [col_left[k] + col_w[k] / 2 for k in range(n_layers)]

    # Weighted neighbour lists for vertical placement: straight long edges
    # matter more than short ones.
    def weight(u: int, v: int) -> float:
        dummies = (u >= n) + (v >= n)
        return (1.0, 2.0, 8.0)[dummies]

    up_w = [[(u, weight(u, v)) for u in up[v]] for v in range(nv)]
    down_w = [[(w, weight(v, w)) for w in down[v]] for v in range(nv)]
    both_w = [up_w[v] + down_w[v] for v in range(nv)]

    pos = [0] * nv
    y = [0.0] * nv
    # Fewer smoothing rounds for huge virtual graphs keeps the cost linear.
    rounds = max(2, min(_PLACEMENT_ROUNDS, _PLACEMENT_ROUNDS * _PLACEMENT_BUDGET // nv))
    n_comps = max(comp) + 1
    members: list[list[int]] = [[] for _ in range(n_comps)]
    for v in range(nv):
        members[vcomp[v]].append(v)
    top = _MARGIN
    for c in range(n_comps):
        layers: list[list[int]] = [[] for _ in range(n_layers)]
        for v in members[c]:
            layers[vlayer[v]].append(v)
        while layers and not layers[-1]:
            layers.pop()
        layers = _order_layers(layers, up, down, pos)

        seps_by_layer: list[list[float]] = []
        for layer in layers:
            seps = [0.0]
            for prev, cur in itertools.pairwise(layer):
                gap = _NODE_GAP if prev < n and cur < n else _DUMMY_GAP
                seps.append(ext_bottom[prev] + gap + ext_top[cur])
            seps_by_layer.append(seps)
            acc = 0.0
            for i, v in enumerate(layer):
                acc += seps[i]
                y[v] = acc
        # Centre every layer on the tallest one before smoothing.
        spans = [y[layer[-1]] - y[layer[0]] if layer else 0.0 for layer in layers]
        tallest = max(spans)
        for layer, span in zip(layers, spans):
            for v in layer:
                y[v] += (tallest - span) / 2
        for rnd in range(rounds):
            from_left = up_w if rnd < 2 else both_w
            from_right = down_w if rnd < 2 else both_w
            for k in range(1, len(layers)):
                _place_layer(layers[k], y, from_left, seps_by_layer[k])
            for k in range(len(layers) - 2, -1, -1):
                _place_layer(layers[k], y, from_right, seps_by_layer[k])
        lowest = min(y[v] - ext_top[v] for v in members[c])
        highest = max(y[v] + ext_bottom[v] for v in members[c])
        for v in members[c]:
            y[v] += top - lowest
        top += highest - lowest + _COMPONENT_GAP
    height = top - _COMPONENT_GAP + _MARGIN

    centers = [(col_center[layer_of[v]], y[v]) for v in range(n)]

    # Ports: spread the edges leaving/entering one side of a box.
    out_port: dict[int, float] = {}
    in_port: dict[int, float] = {}
    out_by_node: list[list[int]] = [[] for _ in range(n)]
    in_by_node: list[list[int]] = [[] for _ in range(n)]
    for e in plain:
        chain = chains[e]
        out_by_node[chain[0]].append(e)
        in_by_node[chain[-1]].append(e)

    def spread(group: list[int], height_: float, key_vertex: int, target: dict[int, float]) -> None:
        ordered = sorted(group, key=lambda e: (y[chains[e][key_vertex]], e))
        count = len(ordered)
        step = min(_PORT_SPACING, 0.6 * height_ / (count - 1)) if count > 1 else 0.0
        for i, e in enumerate(ordered):
            target[e] = (i - (count - 1) / 2) * step

    for v in range(n):
        spread(out_by_node[v], sizes[v][1], 1, out_port)
        spread(in_by_node[v], sizes[v][1], -2, in_port)

    paths: list[str] = []
    label_points: list[tuple[float, float]] = []
    loop_rank: dict[int, int] = {}
    for v in range(n):
        for rank, e in enumerate(loops[v]):
            loop_rank[e] = rank
    for e, (s, _) in enumerate(pairs):
        if e in loop_rank:
            cx, cy = centers[s]
            w, h = sizes[s]
            rank = loop_rank[e]
            box_top = cy - h / 2
            lift = _LOOP_BASE_H + _LOOP_STEP_H * rank
            half = min(w / 4, 20.0) + 4 * rank
            paths.append(
                f"M{_num(cx + half)},{_num(box_top)} "
                f"C{_num(cx + half)},{_num(box_top - lift)} "
                f"{_num(cx - half)},{_num(box_top - lift)} "
                f"{_num(cx - half)},{_num(box_top)}"
            )
            label_points.append((cx, box_top - 0.75 * lift - 4))
            continue
        chain = chains[e]
        a, b = chain[0], chain[-1]
        points = [(centers[a][0] + sizes[a][0] / 2, y[a] + out_port[e])]
        for d in chain[1:-1]:
            k = vlayer[d]
            points.append((col_left[k], y[d]))
            points.append((col_left[k] + col_w[k], y[d]))
        points.append((centers[b][0] - sizes[b][0] / 2, y[b] + in_port[e]))
        (x0, y0), (x1, y1) = points[0], points[1]
        label_points.append(((x0 + x1) / 2, (y0 + y1) / 2 - 5))
        if e in flipped:
            points.reverse()
        parts = [f"M{_num(points[0][0])},{_num(points[0][1])}"]
        for i in range(len(points) - 1):
            (px, py), (qx, qy) = points[i], points[i + 1]
            if i % 2 == 0:
                mid = (qx - px) / 2
                parts.append(
                    f"C{_num(px + mid)},{_num(py)} {_num(qx - mid)},{_num(qy)} "
                    f"{_num(qx)},{_num(qy)}"
                )
            else:
                parts.append(f"L{_num(qx)},{_num(qy)}")
        paths.append(" ".join(parts))

    return _Geometry(width, height, centers, sizes, paths, label_points)


def layout(
    nodes: Sequence[GraphNode], edges: Sequence[GraphEdge]
) -> dict[str, tuple[float, float]]:
    """Compute a layered left-to-right layout.

    Each node's layer (column) is the length of the longest path reaching it
    from a root; cycles are first broken by reversing depth-first-search back
    edges (deterministically, in input order), and self-loops are ignored.
    Nodes within a column are ordered by barycenter sweeps to reduce edge
    crossings, then placed vertically close to their neighbours without
    overlapping.  Weakly connected components are stacked top to bottom.

    Args:
        nodes: The nodes.  A repeated id keeps its first definition.
        edges: The edges.  An end that names no node adds an implicit node
            (label = id, neutral style), as Graphviz does.

    Returns:
        The centre ``(x, y)`` of every node's box (implicit nodes included),
        keyed by node id, in the
        same units (pixels) as :func:`to_svg` draws them without a title.
    """
    resolved, pairs = _normalize(nodes, edges)
    geometry = _compute(resolved, edges, pairs)
    return {
        node.id: (round(cx, 2), round(cy, 2)) for node, (cx, cy) in zip(resolved, geometry.centers)
    }


# --------------------------------------------------------------------------
# SVG
# --------------------------------------------------------------------------


def _paint(attr: str, colors: tuple[str, str]) -> str:
    """Return a presentation attribute plus a themed style override.

    Renderers without CSS variable support drop the ``style`` declaration
    and use the plain attribute.
    """
    return f'{attr}="{colors[0]}" style="{attr}: {colors[1]}"'


def _graph_digest(nodes: Sequence[GraphNode], edges: Sequence[GraphEdge], title: str) -> str:
    """Return a short content hash, used to make element ids unique per graph."""
    digest = hashlib.sha1(usedforsecurity=False)
    for node in nodes:
        digest.update(
            repr((node.id, node.label, node.kind, node.detail)).encode("utf-8", "replace")
        )
    for edge in edges:
        digest.update(repr((edge.src, edge.dst, edge.label)).encode("utf-8", "replace"))
    digest.update(repr(title).encode("utf-8", "replace"))
    return digest.hexdigest()[:10]


def to_svg(nodes: Sequence[GraphNode], edges: Sequence[GraphEdge], *, title: str = "") -> str:
    """Render the graph as a standalone SVG document.

    Nodes are rounded boxes coloured by kind (semi-transparent fills, so they
    read on light and dark backgrounds), with the label and an optional
    smaller detail line.  Edges are cubic Bezier curves with arrowheads and
    optional labels.  Text colours follow Jupyter's theme variables
    (``--jp-ui-font-color1`` etc.) with plain fallbacks.  All text is
    XML-escaped; long labels wrap onto up to three lines, other long texts are truncated with
    an ellipsis, and the full text
    is available as a ``<title>`` tooltip.

    Args:
        nodes: The nodes.  A repeated id keeps its first definition.
        edges: The edges.  An end that names no node adds an implicit node
            (label = id, neutral style), as Graphviz does.
        title: Optional caption drawn above the graph.

    Returns:
        The ``<svg>`` element as a string (no XML prolog), with ``xmlns``,
        ``viewBox``, ``width`` and ``height`` set.
    """
    nodes, pairs = _normalize(nodes, edges)
    geometry = _compute(nodes, edges, pairs)
    uid = _graph_digest(nodes, edges, title)
    marker_id = f"wbg-arrow-{uid}"
    title_text = _clean(title)
    title_shown, title_cut = _truncate(title_text, _MAX_TITLE_COLS)
    band = _TITLE_H if title_shown else 0.0
    width = geometry.width
    if title_shown:
        width = max(width, _cols(title_shown) * _TITLE_CHAR_W + 2 * _MARGIN)
    if not nodes:
        width = max(width, 160.0)
    height = geometry.height + band

    out: list[str] = []
    aria = f' aria-label="{_xml(title_text)}"' if title_text else ""
    out.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="wbg-graph" role="img"{aria} '
        f'width="{_num(width)}" height="{_num(height)}" '
        f'viewBox="0 0 {_num(width)} {_num(height)}" '
        f'font-family="{_xml(_FONT_STACK)}" '
        f'style="font-family: var(--jp-ui-font-family, {_xml(_FONT_STACK)})">'
    )
    out.append(
        "<defs>"
        f'<marker id="{marker_id}" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="8" markerHeight="8" markerUnits="userSpaceOnUse" orient="auto">'
        f'<path d="M0,0 L10,5 L0,10 z" {_paint("fill", _INK)} fill-opacity="{_EDGE_OPACITY}"/>'
        "</marker></defs>"
    )
    if title_shown:
        tip = f"<title>{_xml(title_text)}</title>" if title_cut else ""
        out.append(
            f'<text class="wbg-title" x="{_num(_MARGIN)}" y="{_num(_MARGIN + _TITLE_FONT * 0.6)}" '
            f'font-size="{_num(_TITLE_FONT)}" font-weight="600" {_paint("fill", _INK)}>'
            f"{tip}{_xml(title_shown)}</text>"
        )
    if not nodes:
        out.append(
            f'<text class="wbg-empty" x="{_num(_MARGIN)}" y="{_num(band + _MARGIN + 4)}" '
            f'font-size="{_num(_DETAIL_FONT)}" {_paint("fill", _INK)} '
            f'fill-opacity="{_SECONDARY_OPACITY}">(empty graph)</text>'
        )
    out.append(f'<g transform="translate(0,{_num(band)})">')

    out.append('<g class="wbg-edges">')
    for edge, d, (lx, ly) in zip(edges, geometry.paths, geometry.label_points):
        full_label = _clean(edge.label)
        tip_parts = f"{_clean(edge.src)} \u2192 {_clean(edge.dst)}"
        if full_label:
            tip_parts += f": {full_label}"
        out.append(
            f'<g class="wbg-edge-group"><path class="wbg-edge" d="{d}" fill="none" '
            f'{_paint("stroke", _INK)} stroke-opacity="{_EDGE_OPACITY}" stroke-width="1.4" '
            f'marker-end="url(#{marker_id})"><title>{_xml(tip_parts)}</title></path>'
        )
        if full_label:
            shown, _ = _truncate(full_label, _MAX_EDGE_LABEL_COLS)
            out.append(
                f'<text class="wbg-edge-label" x="{_num(lx)}" y="{_num(ly)}" '
                f'text-anchor="middle" font-size="{_num(_EDGE_FONT)}" '
                f'paint-order="stroke" stroke-width="3" stroke-linejoin="round" '
                f'fill="{_INK[0]}" fill-opacity="{_SECONDARY_OPACITY}" '
                f'stroke="{_HALO[0]}" style="fill: {_INK[1]}; stroke: {_HALO[1]}">'
                f"<title>{_xml(full_label)}</title>{_xml(shown)}</text>"
            )
        out.append("</g>")
    out.append("</g>")

    out.append('<g class="wbg-nodes">')
    for node, (cx, cy), (w, h) in zip(nodes, geometry.centers, geometry.sizes):
        style = _KIND_STYLES.get(node.kind, _DEFAULT_STYLE)
        label_full = _clean(node.label)
        detail_full = _clean(node.detail)
        lines = _wrap(label_full, _MAX_LABEL_COLS)
        detail, _ = _truncate(detail_full, _MAX_DETAIL_COLS)
        tip = f"{label_full}\n[{_clean(node.kind)}]"
        if detail_full:
            tip += f"\n{detail_full}"
        rx = h / 2 if style.pill else style.rx
        dash = f' stroke-dasharray="{style.dash}"' if style.dash else ""
        out.append(
            f'<g class="wbg-node" data-id="{_xml(_clean(node.id))}" '
            f'data-kind="{_xml(_clean(node.kind))}"><title>{_xml(tip)}</title>'
            f'<rect x="{_num(cx - w / 2)}" y="{_num(cy - h / 2)}" width="{_num(w)}" '
            f'height="{_num(h)}" rx="{_num(rx)}" fill="{style.color}" fill-opacity="0.2" '
            f'stroke="{style.color}" stroke-width="{_num(style.stroke_width)}"{dash}/>'
        )
        extra = (len(lines) - 1) * _LINE_H
        label_y = (cy - 7 if detail else cy) - extra / 2
        more = "".join(f'<tspan x="{_num(cx)}" dy="{_num(_LINE_H)}">{_xml(line)}</tspan>'
                       for line in lines[1:])
        out.append(
            f'<text class="wbg-label" x="{_num(cx)}" y="{_num(label_y + _LABEL_FONT * 0.35)}" '
            f'text-anchor="middle" font-size="{_num(_LABEL_FONT)}" {_paint("fill", _INK)}>'
            f"{_xml(lines[0])}{more}</text>"
        )
        if detail:
            out.append(
                f'<text class="wbg-detail" x="{_num(cx)}" '
                f'y="{_num(cy + 9 + extra / 2 + _DETAIL_FONT * 0.35)}" text-anchor="middle" '
                f'font-size="{_num(_DETAIL_FONT)}" {_paint("fill", _INK)} '
                f'fill-opacity="{_SECONDARY_OPACITY}">'
                f"{_xml(detail)}</text>"
            )
        out.append("</g>")
    out.append("</g></g></svg>")
    return "\n".join(out)


# --------------------------------------------------------------------------
# DOT
# --------------------------------------------------------------------------

_DOT_SHAPES: dict[str, str] = {
    "source": 'shape=box, style="rounded,filled,bold"',
    "sink": 'shape=cylinder, style="filled"',
    "stateless": 'shape=box, style="rounded,filled"',
    "stateful": 'shape=box, style="rounded,filled", peripheries=2',
    "repartition": 'shape=hexagon, style="filled,dashed"',
    "table": 'shape=tab, style="filled"',
    "changelog": 'shape=note, style="filled,dashed"',
    "unused": 'shape=box, style="rounded,dashed"',
}


def _dot_quote(text: str) -> str:
    """Quote text as a DOT string.

    Backslashes and double quotes are escaped (so escString sequences such as
    ``\\N`` or ``\\l`` in user text stay literal), line breaks become ``\\n``
    and other control characters become ``\\xNN`` text.

    Args:
        text: Arbitrary text.

    Returns:
        The quoted DOT string, including the surrounding quotes.
    """
    out: list[str] = []
    for ch in text.replace("\r\n", "\n"):
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch in "\n\r":
            out.append("\\n")
        elif code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\\\x{code:02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def to_dot(
    nodes: Sequence[GraphNode], edges: Sequence[GraphEdge], *, name: str = "pipeline"
) -> str:
    """Render the graph as Graphviz DOT text (left-to-right).

    Every id, label and the graph name are emitted as quoted, escaped DOT
    strings, so hostile labels cannot break out of the text.

    Args:
        nodes: The nodes.  A repeated id keeps its first definition.
        edges: The edges.  An end that names no node adds an implicit node
            (label = id, neutral style), as Graphviz does.
        name: Graph name.

    Returns:
        The DOT source, ending with a newline.
    """
    nodes, _ = _normalize(nodes, edges)
    lines = [
        f"digraph {_dot_quote(name)} {{",
        "  rankdir=LR;",
        '  bgcolor="transparent";',
        '  node [fontname="Helvetica", fontsize=11, margin="0.15,0.06"];',
        '  edge [fontname="Helvetica", fontsize=9, color="#7a7a7a", fontcolor="#555555"];',
    ]
    for node in nodes:
        style = _KIND_STYLES.get(node.kind, _DEFAULT_STYLE)
        shape = _DOT_SHAPES.get(node.kind, 'shape=box, style="filled"')
        label = _dot_quote(_clean(node.label))
        if node.detail:
            label = label[:-1] + "\\n" + _dot_quote(_clean(node.detail))[1:]
        lines.append(
            f"  {_dot_quote(node.id)} [label={label}, {shape}, "
            f'color="{style.color}", fillcolor="{style.color}33"];'
        )
    for edge in edges:
        attrs = f" [label={_dot_quote(_clean(edge.label))}]" if edge.label else ""
        lines.append(f"  {_dot_quote(edge.src)} -> {_dot_quote(edge.dst)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Mermaid
# --------------------------------------------------------------------------

_MERMAID_SHAPES: dict[str, tuple[str, str]] = {
    "source": ("([", "])"),  # stadium
    "sink": ("[(", ")]"),  # cylinder
    "stateless": ("(", ")"),  # rounded box
    "stateful": ("[[", "]]"),  # subroutine (double border)
    "repartition": ("{{", "}}"),  # hexagon
    "table": ("[/", "\\]"),  # trapezoid
    "changelog": (">", "]"),  # asymmetric flag
    "unused": ("(", ")"),  # rounded box, grey
}

_MERMAID_ENTITIES: dict[str, str] = {
    '"': "#quot;",
    "#": "#35;",
    "&": "#amp;",
    "<": "#lt;",
    ">": "#gt;",
    "`": "#96;",
    "|": "#124;",
}

_MERMAID_RESERVED = frozenset(
    {
        "end",
        "graph",
        "flowchart",
        "subgraph",
        "style",
        "class",
        "classdef",
        "click",
        "call",
        "href",
        "linkstyle",
        "direction",
        "default",
        "interpolate",
        "tb",
        "td",
        "bt",
        "rl",
        "lr",
    }
)


def _mermaid_text(text: str) -> str:
    """Escape text for use inside a double-quoted Mermaid label."""
    return "".join(_MERMAID_ENTITIES.get(ch, ch) for ch in _clean(text))


def _mermaid_ids(nodes: Sequence[GraphNode]) -> dict[str, str]:
    """Map node ids to unique Mermaid-safe ids made of ``[A-Za-z0-9_]``."""
    result: dict[str, str] = {}
    taken: set[str] = set()
    for node in nodes:
        base = re.sub(r"[^A-Za-z0-9_]", "_", node.id)
        if not base or base[0].isdigit() or base.lower() in _MERMAID_RESERVED:
            base = "n_" + base
        candidate = base
        suffix = 2
        while candidate in taken:
            candidate = f"{base}_{suffix}"
            suffix += 1
        taken.add(candidate)
        result[node.id] = candidate
    return result


def to_mermaid(nodes: Sequence[GraphNode], edges: Sequence[GraphEdge]) -> str:
    """Render the graph as a Mermaid ``flowchart LR`` diagram.

    Node ids are sanitised to ``[A-Za-z0-9_]`` (made unique and kept clear of
    Mermaid keywords); labels are double-quoted with Mermaid entity escapes
    (``#quot;``, ``#lt;``, ...).  Sources are stadiums, sinks cylinders,
    stateful operators subroutine boxes, repartitions hexagons; each kind
    also gets a ``classDef`` colour.

    Args:
        nodes: The nodes.  A repeated id keeps its first definition.
        edges: The edges.  An end that names no node adds an implicit node
            (label = id, neutral style), as Graphviz does.

    Returns:
        The Mermaid source, ending with a newline.
    """
    nodes, _ = _normalize(nodes, edges)
    ids = _mermaid_ids(nodes)
    lines = ["flowchart LR"]
    by_kind: dict[str, list[str]] = {}
    for node in nodes:
        opening, closing = _MERMAID_SHAPES.get(node.kind, ("[", "]"))
        text = _mermaid_text(node.label)
        if node.detail:
            text += "<br/>" + _mermaid_text(node.detail)
        lines.append(f'    {ids[node.id]}{opening}"{text}"{closing}')
        if node.kind in _KIND_STYLES:
            by_kind.setdefault(node.kind, []).append(ids[node.id])
    for edge in edges:
        arrow = f'-->|"{_mermaid_text(edge.label)}"|' if edge.label else "-->"
        lines.append(f"    {ids[edge.src]} {arrow} {ids[edge.dst]}")
    for kind in NODE_KINDS:
        if kind in by_kind:
            color = _KIND_STYLES[kind].color
            lines.append(f"    classDef {kind} fill:{color}33,stroke:{color},stroke-width:1.5px")
            lines.append(f"    class {','.join(by_kind[kind])} {kind}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Optional Graphviz
# --------------------------------------------------------------------------


def graphviz_svg(dot_text: str) -> str | None:
    """Render DOT text with the Graphviz ``dot`` binary, if it is installed.

    Args:
        dot_text: DOT source, e.g. from :func:`to_dot`.

    Returns:
        The SVG produced by ``dot -Tsvg`` starting at its ``<svg`` element
        (XML prolog and doctype dropped, for inline embedding), or ``None``
        when ``dot`` is not on ``PATH``, fails, or takes over 10 seconds.
    """
    exe = shutil.which("dot")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "-Tsvg"],
            input=dot_text.encode("utf-8", "replace"),
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError):
        return None
    if proc.returncode != 0:
        return None
    svg = proc.stdout.decode("utf-8", "replace")
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else None
