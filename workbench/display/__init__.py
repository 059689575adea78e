"""Notebook display: previews of streams and runs, and drawings of pipelines.

Reprs on the public classes delegate here and import it lazily. Everything shown is bounded and
HTML-escaped; nothing here runs unbounded work (previews use at most
``workbench.options.preview_input_limit`` sample records per source).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from .graph import GraphEdge, GraphNode, graphviz_svg, to_dot, to_mermaid, to_svg

if TYPE_CHECKING:
    from .._nodes import Node
    from ..pipeline import Pipeline
    from ..run import Run

__all__ = [
    "pipeline_bundle",
    "pipeline_dot",
    "pipeline_graph",
    "pipeline_mermaid",
    "pipeline_svg",
    "pipeline_text",
    "run_bundle",
    "stream_bundle",
    "table_bundle",
]

_STATELESS = {"map", "filter", "flat_map", "key_by", "peek", "split", "branch", "merge"}


def pipeline_graph(pipeline: Pipeline) -> tuple[list[GraphNode], list[GraphEdge]]:
    """Nodes and edges to draw: steps, plus topic nodes for sources, sinks, repartition and
    changelog topics (from the compiled plan, so internal topics show where they will be)."""
    from ..plan import compile_plan

    nodes: list[GraphNode] = []
    edges: list[GraphEdge] = []
    seen: set[str] = set()

    def add(node: GraphNode) -> None:
        if node.id not in seen:
            seen.add(node.id)
            nodes.append(node)

    try:
        plan = compile_plan(pipeline)
    except Exception:  # a pipeline without sources still draws its steps
        plan = None
    if plan is None:
        for n in pipeline._nodes:
            add(GraphNode(f"s:{n.name}", n.name, "stateless", n.op))
            for p in n.parents:
                edges.append(GraphEdge(f"s:{p.name}", f"s:{n.name}"))
        return nodes, edges
    for st in plan.subtopologies:
        ids: dict[int, str] = {}
        for pn in st.nodes:
            if pn.op in ("source", "table_source"):
                nid = f"t:{pn.topic}"
                kind = "table" if pn.op == "table_source" else "source"
                add(GraphNode(nid, str(pn.topic), kind, "topic"))
            elif pn.op == "sink":
                nid = f"t:{pn.topic}"
                add(GraphNode(nid, str(pn.topic), "sink", "topic"))
            elif pn.op in ("repartition_sink", "repartition_source"):
                nid = f"t:{pn.topic}"
                add(GraphNode(nid, "repartition", "repartition", str(pn.topic)))
            else:
                nid = f"s:{pn.name}"
                kind = "stateless" if pn.op in _STATELESS else "stateful"
                site = pn.node.defined_at if pn.node is not None else ""
                label = pn.name if pn.name.startswith(pn.op) else f"{pn.op}: {pn.name}"
                add(GraphNode(nid, label, kind, site.rsplit("/", 1)[-1]))
            ids[pn.index] = nid
        for pn in st.nodes:
            for c, _port, _out in pn.children:
                a, b = ids[pn.index], ids[c]
                if a != b:
                    edges.append(GraphEdge(a, b))
        for store in st.stores:
            cid = f"t:{store.changelog}"
            add(GraphNode(cid, store.name, "changelog", "changelog"))
            step_id = f"s:{store.step}"
            if step_id in seen:
                edges.append(GraphEdge(step_id, cid, "state"))
    return nodes, edges


def pipeline_svg(pipeline: Pipeline) -> str:
    """The pipeline drawn as SVG in Python (no Graphviz needed)."""
    nodes, edges = pipeline_graph(pipeline)
    return to_svg(nodes, edges, title=pipeline.name)


def pipeline_dot(pipeline: Pipeline) -> str:
    """The pipeline as Graphviz DOT text."""
    nodes, edges = pipeline_graph(pipeline)
    return to_dot(nodes, edges, name=pipeline.name)


def pipeline_mermaid(pipeline: Pipeline) -> str:
    """The pipeline as Mermaid flowchart text."""
    nodes, edges = pipeline_graph(pipeline)
    return to_mermaid(nodes, edges)


def pipeline_text(pipeline: Pipeline) -> str:
    """A plain-text listing of the pipeline's steps."""
    lines = [f"Pipeline {pipeline.name!r}: {len(pipeline._nodes)} steps"]
    for n in pipeline._nodes:
        if n.op == "branch":
            continue
        parents = ", ".join(p.name for p in n.parents)
        arrow = f" <- {parents}" if parents else ""
        extra = ""
        if n.op == "source":
            extra = f" topic={n.params['spec'].topic!r}"
        elif n.op == "sink":
            extra = f" topic={n.params['topic']!r}"
        lines.append(f"  {n.op:<9} {n.name}{extra}{arrow}")
    return "\n".join(lines)


def pipeline_bundle(pipeline: Pipeline) -> dict[str, str]:
    """MIME bundle: text, HTML with the SVG graph, Mermaid, and Graphviz SVG when ``dot`` is
    installed."""
    nodes, edges = pipeline_graph(pipeline)
    svg = to_svg(nodes, edges, title=pipeline.name)
    bundle = {
        "text/plain": pipeline_text(pipeline),
        "text/html": (
            f'<div class="wb-pipeline"><div><b>Pipeline {html.escape(pipeline.name)}</b> · '
            f"{len(pipeline.sources)} sources, {len(pipeline.sinks)} sinks</div>{svg}</div>"
        ),
        "text/vnd.mermaid": to_mermaid(nodes, edges),
    }
    dot_svg = graphviz_svg(to_dot(nodes, edges, name=pipeline.name))
    if dot_svg:
        bundle["image/svg+xml"] = dot_svg
    return bundle


def _preview_parts(pipeline: Pipeline, node: Node) -> tuple[Any, str, list[str], int]:
    from ..frames import records_to_frame
    from ..preview import options, preview

    result = preview(pipeline, node)
    frame = records_to_frame(result.records[: options.display_rows])
    notes = []
    for topic, total in result.truncated.items():
        notes.append(f"computed from the first {options.preview_input_limit:,} of "
                     f"{total:,} sample records of {topic!r}")
    for topic in result.missing_samples:
        notes.append(f"source {topic!r} has no sample")
    title = f"{node.op} {node.name!r} · pipeline {pipeline.name!r} · preview from samples"
    return frame, title, notes, len(result.records)


def table_bundle(pipeline: Pipeline, node: Node, key_name: str | None = None
                 ) -> dict[str, str]:
    """MIME bundle of a table's preview: its current contents (one row per key)."""
    from ..frames import records_to_frame
    from ..preview import latest_per_key, options, preview
    from .frame import frame_html, frame_text

    result = preview(pipeline, node)
    rows = latest_per_key(result.records)
    frame = records_to_frame(rows[: options.display_rows], key_name=key_name)
    notes = [f"current contents after {len(result.records):,} changes"]
    for topic in result.missing_samples:
        notes.append(f"source {topic!r} has no sample")
    title = f"table {node.name!r} · pipeline {pipeline.name!r} · preview from samples"
    key_cols = tuple(c for c in (key_name or "key", "window_start", "window_end", "timestamp"))
    return {
        "text/plain": frame_text(frame, title=title, total_rows=len(rows), notes=notes,
                                 rows=options.display_rows),
        "text/html": frame_html(frame, title=title, total_rows=len(rows), notes=notes,
                                rows=options.display_rows, width=options.display_width,
                                key_columns=key_cols),
    }


def stream_bundle(pipeline: Pipeline, node: Node) -> dict[str, str]:
    """MIME bundle of a stream's preview (text and HTML)."""
    from ..preview import options
    from .frame import frame_html, frame_text

    frame, title, notes, total = _preview_parts(pipeline, node)
    return {
        "text/plain": frame_text(frame, title=title, total_rows=total, notes=notes,
                                 rows=options.display_rows),
        "text/html": frame_html(frame, title=title, total_rows=total, notes=notes,
                                rows=options.display_rows, width=options.display_width),
    }


def run_bundle(run: Run) -> dict[str, str]:
    """MIME bundle of a run: a summary and the head of each output."""
    from ..frames import records_to_frame
    from ..preview import options
    from .frame import frame_html

    parts = [f"<div><b>{html.escape(repr(run))}</b></div>"]
    for topic in run.pipeline.sinks:
        records = run.driver.read_all(topic)
        frame = records_to_frame(records[: options.display_rows])
        parts.append(frame_html(frame, title=f"topic {topic}", total_rows=len(records),
                                rows=options.display_rows, width=options.display_width))
    return {"text/plain": repr(run), "text/html": "".join(parts)}
