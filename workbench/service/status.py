"""The status page at ``/``: the pipeline drawing, counts per step, lag and commit latency,
refreshed in place once a second from ``/status.json`` (no page reload, no external assets)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core import Service

__all__ = ["render_page"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222;background:#fff}
h1{font-size:18px;margin:0 0 4px} .meta{color:#555;margin-bottom:8px}
.badge{display:inline-block;padding:1px 8px;border-radius:3px;border:1px solid #aaa;
margin-right:6px} .ok{background:#d8f0dd} .bad{background:#f6d5d5}
table{border-collapse:collapse;margin:8px 0} td,th{padding:2px 10px;text-align:right;
border-bottom:1px solid #ddd} td:first-child,th:first-child{text-align:left}
.graph svg{max-width:100%;height:auto} .cards{display:flex;gap:18px;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:4px;padding:6px 12px;min-width:110px}
.card b{display:block;font-size:18px}
"""

_SCRIPT = """
const fmt = n => n === null || n === undefined ? "–" : Number(n).toLocaleString("en");
function cell(tr, text) { const td = document.createElement("td"); td.textContent = text;
  tr.appendChild(td); }
async function refresh() {
  let s;
  try { s = await (await fetch("status.json", {cache: "no-store"})).json(); }
  catch (e) { document.getElementById("status").textContent = "unreachable"; return; }
  const badge = (id, ok, text) => { const el = document.getElementById(id);
    el.textContent = text; el.className = "badge " + (ok ? "ok" : "bad"); };
  badge("status", s.status === "running" || s.status === "finished", s.status);
  badge("live", s.live, s.live ? "live" : "not live");
  badge("ready", s.ready, s.ready ? "ready" : "not ready: " + s.ready_reason);
  document.getElementById("records").textContent = fmt(s.records_in);
  document.getElementById("commits").textContent = fmt(s.commits);
  document.getElementById("lag").textContent = fmt(s.lag);
  document.getElementById("p50").textContent =
    s.commit_ms_p50 === null ? "–" : s.commit_ms_p50.toFixed(1) + " ms";
  document.getElementById("p99").textContent =
    s.commit_ms_p99 === null ? "–" : s.commit_ms_p99.toFixed(1) + " ms";
  document.getElementById("stream").textContent =
    s.stream_time < 0 ? "–" : new Date(s.stream_time).toISOString();
  const body = document.getElementById("steps"); body.replaceChildren();
  for (const st of s.steps) { const tr = document.createElement("tr");
    cell(tr, st.step); cell(tr, st.kind); cell(tr, fmt(st.records));
    cell(tr, st.lag === undefined ? "" : fmt(st.lag));
    cell(tr, st.dropped === undefined ? "" : fmt(st.dropped)); body.appendChild(tr); }
  const w = document.getElementById("workers"); w.replaceChildren();
  for (const x of s.workers || []) { const tr = document.createElement("tr");
    cell(tr, "worker " + x.index); cell(tr, x.url); cell(tr, x.ready ? "ready" : "not ready");
    w.appendChild(tr); }
  document.getElementById("updated").textContent = new Date().toLocaleTimeString("en");
}
refresh(); setInterval(refresh, 1000);
"""


def render_page(service: Service) -> str:
    """The status page's HTML (the drawing is the pipeline's own SVG)."""
    from ..display import pipeline_svg

    s = service.snapshot()
    try:
        svg = pipeline_svg(service.pipeline)
    except Exception as exc:  # a drawing problem must not hide the status
        svg = f"<p>(no drawing: {html.escape(str(exc))})</p>"
    title = html.escape(f"{s.pipeline} · workbench")
    cards = "".join(
        f'<div class="card">{label}<b id="{id_}">–</b></div>'
        for id_, label in (("records", "source records"), ("commits", "commits"),
                           ("lag", "lag (records)"), ("p50", "commit p50"),
                           ("p99", "commit p99"), ("stream", "stream time")))
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(s.pipeline)}</h1>"
        f'<div class="meta">on {html.escape(s.driver)} · '
        '<span id="status" class="badge">…</span><span id="live" class="badge">…</span>'
        '<span id="ready" class="badge">…</span> updated <span id="updated">–</span></div>'
        f'<div class="cards">{cards}</div>'
        '<table><thead><tr><th>step</th><th>kind</th><th>records</th><th>lag</th>'
        '<th>dropped</th></tr></thead><tbody id="steps"></tbody></table>'
        '<table><tbody id="workers"></tbody></table>'
        f'<div class="graph">{svg}</div>'
        f"<script>{_SCRIPT}</script>"
        "</body></html>"
    )
