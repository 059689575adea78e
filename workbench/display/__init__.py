"""Notebook display: previews of streams and runs, and drawings of pipelines.

Reprs on the public classes delegate here and import it lazily. Everything shown is bounded and
HTML-escaped; nothing here runs unbounded work (previews use at most
``workbench.options.preview_input_limit`` sample records per source).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from .frame import plural
from .graph import GraphEdge, GraphNode, graphviz_svg, to_dot, to_mermaid, to_svg

if TYPE_CHECKING:
    from .._nodes import Node
    from ..pipeline import Pipeline
    from ..run import Run

__all__ = [
    "error_bundle",
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

_STATELESS = {"map", "filter", "flat_map", "key_by", "peek", "split", "branch", "merge",
              "map_async", "flat_map_async", "pipe", "errors",
              "table_group_by", "repartition", "foreach", "print", "topic_sink", "fk_subscribe"}
#: unnamed steps that are plumbing of another step (drawn as the edge they stand for)
_PLUMBING = {"table_changes"}


def _step_label(node: Node) -> tuple[str, str]:
    """``(label, detail)`` of a step: the user's name for a named step, else its kind (with
    the grouping field or branch label); the detail says the kind and where it was defined."""
    from ..pipeline import _KIND

    kind = _KIND.get(node.op, node.op)
    site = node.defined_at.rsplit("/", 1)[-1]
    if node.op == "branch":
        return f"branch {node.params.get('label')}", site
    if not node.auto_named:
        return node.name, f"{kind} · {site}"
    field = node.params.get("field") if node.op in ("group_by", "key_by") else None
    return (f"{kind} {field}" if isinstance(field, str) else kind), site


def _superseded(pipeline: Pipeline, node: Node, live: set[Node]) -> bool:
    """An unnamed step left behind when its cell ran again (a newer equivalent one exists)."""
    from ..pipeline import _equivalent

    if not node.auto_named:
        return False
    return any(other is not node and other.id > node.id and _equivalent(node, other)
               for other in pipeline._nodes)


def pipeline_graph(pipeline: Pipeline) -> tuple[list[GraphNode], list[GraphEdge]]:
    """Nodes and edges to draw: steps, plus topic nodes for sources, sinks, repartition and
    changelog topics (from the compiled plan, so internal topics show where they will be).
    Steps no output needs are drawn greyed (kind ``unused``); unnamed plumbing (a table's
    ``changes()`` before ``to()``), split branches nothing reads, store nodes of steps that
    are not drawn and unnamed steps left behind by running a cell again are not drawn."""
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
    live = set(pipeline._live_nodes()) if plan is not None else set()
    step_id: dict[str, str] = {}  # step name -> drawn node id
    if plan is not None:
        for st in plan.subtopologies:
            ids: dict[int, str] = {}
            skipped: dict[int, int] = {}  # plan index of an undrawn node -> its parent's index
            for pn in st.nodes:
                node = pn.node
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
                elif node is not None and ((node.op in _PLUMBING and node.auto_named)
                                           or (node.op == "branch" and not pn.children)):
                    skipped[pn.index] = pn.parents[0] if pn.parents else -1
                    continue
                else:
                    nid = f"s:{pn.name}"
                    kind = "stateless" if pn.op in _STATELESS else "stateful"
                    label, detail = _step_label(node) if node is not None else (pn.name, "")
                    add(GraphNode(nid, label, kind, detail))
                ids[pn.index] = nid
                step_id[pn.name] = nid
                if pn.op == "topic_sink" and node is not None:  # its declared topics
                    for t in node.params.get("topics") or ():
                        add(GraphNode(f"t:{t}", t, "sink", "topic"))
                        edges.append(GraphEdge(nid, f"t:{t}"))
            for pn in st.nodes:
                if pn.index not in ids:
                    continue
                for c, _port, _out in pn.children:
                    target = c
                    while target in skipped and target not in ids:  # follow plumbing down
                        kids = st.nodes[target].children
                        if not kids:
                            target = -1
                            break
                        target = kids[0][0]
                    if target in ids and ids[pn.index] != ids[target]:
                        edges.append(GraphEdge(ids[pn.index], ids[target]))
            for store in st.stores:
                owner = step_id.get(store.step)
                if owner is None:
                    continue  # a store node without an edge says nothing
                cid = f"t:{store.changelog}"
                add(GraphNode(cid, store.name, "changelog", "changelog"))
                edges.append(GraphEdge(owner, cid, "state"))
    if plan is not None:  # global tables: read whole by every task, no sub-topology
        for g in plan.global_tables:
            gid = f"t:{g.topic}"
            add(GraphNode(gid, g.topic, "table", "global table · every partition"))
            step_id[g.name] = gid
            for n in pipeline._nodes:
                if g.node in n.parents and n.name in step_id:
                    edges.append(GraphEdge(gid, step_id[n.name]))
    for n in pipeline._nodes:  # steps no output needs: greyed
        if n in live or n.name in step_id:
            continue
        if n.op in ("source", "table_source", "global_table"):
            nid = f"t:{n.params['spec'].topic}"
            step_id[n.name] = nid
            add(GraphNode(nid, n.params["spec"].topic, "unused", "topic · not read by any output"))
            continue
        if (n.op in _PLUMBING or n.op == "branch") and n.auto_named:
            parent = step_id.get(n.parents[0].name) if n.parents else None
            if parent is not None:
                step_id[n.name] = parent
            continue
        if _superseded(pipeline, n, live):
            continue
        nid = f"s:{n.name}"
        label, detail = _step_label(n)
        add(GraphNode(nid, label, "unused", detail))
        step_id[n.name] = nid
        for p in n.parents:
            src = step_id.get(p.name)
            if src is not None and src != nid:
                edges.append(GraphEdge(src, nid))
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
    """A plain-text listing of the pipeline's steps (steps no output needs are marked; unnamed
    steps left behind by running a cell again are not listed)."""
    from ..pipeline import _KIND

    live = set(pipeline._live_nodes()) if pipeline._sources else set(pipeline._nodes)
    shown = [n for n in pipeline._nodes if n.op != "branch"
             and (n in live or not _superseded(pipeline, n, live))]
    lines = [f"Pipeline {pipeline.name!r}: {plural(len(shown), 'step')}"]
    for n in shown:
        parents = ", ".join(p.name for p in n.parents)
        arrow = f" <- {parents}" if parents else ""
        extra = ""
        if n.op in ("source", "table_source", "global_table"):
            extra = f" topic={n.params['spec'].topic!r}"
        elif n.op == "sink":
            extra = f" topic={n.params['topic']!r}"
        elif n.op == "topic_sink":
            extra = (f" topics={list(n.params['topics'])!r}" if n.params.get("topics")
                     else " topics=(named per record)")
        unused = "" if n in live else "   (unused: no output needs it)"
        lines.append(f"  {_KIND.get(n.op, n.op):<18} {n.name}{extra}{arrow}{unused}")
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
            f"{plural(len(pipeline.sources), 'source')}, {plural(len(pipeline.sinks), 'sink')}"
            f"{_unused_note(pipeline)}</div>{svg}</div>"
        ),
        "text/vnd.mermaid": to_mermaid(nodes, edges),
    }
    dot_svg = graphviz_svg(to_dot(nodes, edges, name=pipeline.name))
    if dot_svg:
        bundle["image/svg+xml"] = dot_svg
    return bundle


def _unused_note(pipeline: Pipeline) -> str:
    try:
        live = set(pipeline._live_nodes())
    except Exception:
        return ""
    unused = [n for n in pipeline._nodes if n not in live and not n.auto_named]
    if not unused:
        return ""
    names = ", ".join(n.name for n in unused[:6]) + (", ..." if len(unused) > 6 else "")
    return html.escape(f" · greyed: not needed by any output, left out of runs ({names})")


def _notes(result: Any) -> list[str]:
    from ..preview import options

    notes = []
    for topic, total in result.truncated.items():
        notes.append(f"computed from the first {options.preview_input_limit:,} of "
                     f"{total:,} sample records of {topic!r}")
    for topic in result.missing_samples:
        notes.append(f"source {topic!r} has no sample")
    return notes


def _frame_bundle(frame: Any, title: str, total: int, notes: list[str]) -> dict[str, str]:
    from ..preview import options
    from .frame import frame_html, frame_text

    return {
        "text/plain": frame_text(frame, title=title, total_rows=total, notes=notes,
                                 rows=options.display_rows),
        "text/html": frame_html(frame, title=title, total_rows=total, notes=notes,
                                rows=options.display_rows, width=options.display_width),
    }


def error_bundle(title: str, exc: BaseException) -> dict[str, str]:
    """MIME bundle of a preview that failed: the title, the error message and where in the
    user's code it happened (no traceback through workbench's own frames)."""
    from .._tracebacks import describe
    from .frame import _STYLE

    text = describe(exc)
    return {
        "text/plain": f"{title}\n{text}",
        "text/html": (f'{_STYLE}<div class="wb-preview"><div><b>{html.escape(title)}</b></div>'
                      f'<pre class="wb-error">{html.escape(text)}</pre></div>'),
    }


def _title(kind: str, pipeline: Pipeline, node: Node) -> str:
    """``filter 'paid' · pipeline 'p' · preview from samples``; an unnamed step is described
    by what it reads (``changes() of 'totals'``), not by its internal name."""
    from ..pipeline import _KIND

    if node.op == "branch" and node.parents:
        what = f"branch {node.params.get('label')!r} of {node.parents[0].name!r}"
    elif node.auto_named and node.parents:
        reads = ", ".join(repr(p.name) for p in node.parents)
        what = f"{_KIND.get(node.op, node.op)} of {reads}"
    else:
        what = f"{kind} {node.name!r}"
    return f"{what} · pipeline {pipeline.name!r} · preview from samples"


def table_bundle(pipeline: Pipeline, node: Node) -> dict[str, str]:
    """MIME bundle of a table's preview: its current contents (one row per key)."""
    from ..errors import WorkbenchError
    from ..frames import frame_schema, records_to_frame
    from ..preview import latest_per_key, options, preview

    title = _title("table", pipeline, node)
    try:
        result = preview(pipeline, node)
    except WorkbenchError as exc:
        return error_bundle(title, exc)
    rows = latest_per_key(result.records)
    frame = records_to_frame(rows[: options.display_rows], frame_schema(node),
                             scan=(r[1] for r in rows))
    notes = [f"current contents after {plural(len(result.records), 'change')}", *_notes(result)]
    return _frame_bundle(frame, title, len(rows), notes)


def stream_bundle(pipeline: Pipeline, node: Node) -> dict[str, str]:
    """MIME bundle of a stream's preview (text and HTML)."""
    from ..errors import WorkbenchError
    from ..frames import frame_schema, records_to_frame
    from ..preview import options, preview

    title = _title(node.op, pipeline, node)
    try:
        result = preview(pipeline, node)
    except WorkbenchError as exc:
        return error_bundle(title, exc)
    records = result.records
    frame = records_to_frame(records[: options.display_rows], frame_schema(node),
                             scan=(r[1] for r in records))
    return _frame_bundle(frame, title, len(records), _notes(result))


def run_bundle(run: Run) -> dict[str, str]:
    """MIME bundle of a run: a summary and the head of each output."""
    from ..frames import SCAN_LIMIT, records_to_frame, topic_schema
    from ..preview import options
    from .frame import frame_html, frame_text

    parts = [f"<div><b>Run {html.escape(run.summary())}</b></div>"]
    texts = [f"Run {run.summary()}"]
    for topic in dict.fromkeys(run.pipeline.sinks):
        records = run.driver.read_all(topic)
        frame = records_to_frame(records[: options.display_rows],
                                 topic_schema(run.pipeline, topic),
                                 scan=(r[1] for r in records[:SCAN_LIMIT]))
        parts.append(frame_html(frame, title=f"topic {topic}", total_rows=len(records),
                                rows=options.display_rows, width=options.display_width))
        texts.append(frame_text(frame, title=f"topic {topic}", total_rows=len(records),
                                rows=min(options.display_rows, 5)))
    return {"text/plain": "\n\n".join(texts), "text/html": "".join(parts)}
