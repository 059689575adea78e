"""Bounded, HTML-escaped previews of DataFrames, readable in light and dark themes."""

from __future__ import annotations

import html
from typing import Any

__all__ = ["frame_html", "frame_text"]

_STYLE = (
    "<style>"
    ".wb-preview{font-family:var(--jp-ui-font-family,sans-serif);font-size:12px;"
    "color:var(--jp-ui-font-color1,inherit)}"
    ".wb-preview table{border-collapse:collapse;margin:4px 0}"
    ".wb-preview th,.wb-preview td{padding:2px 8px;text-align:right;white-space:nowrap;"
    "border-bottom:1px solid var(--jp-border-color2,rgba(128,128,128,.3))}"
    ".wb-preview th{font-weight:600}"
    ".wb-preview .wb-dtype{font-weight:400;opacity:.65;font-size:10px}"
    ".wb-preview .wb-meta{opacity:.75}"
    ".wb-preview .wb-keycol{background:rgba(80,140,220,.12)}"
    "</style>"
)


def _cell(value: Any, width: int) -> str:
    if value is None:
        text = "None"
    else:
        text = str(value)
    if len(text) > width:
        text = text[: width - 1] + "…"
    return html.escape(text)


def frame_html(
    frame: Any,
    *,
    title: str,
    total_rows: int | None = None,
    notes: list[str] | None = None,
    rows: int = 10,
    width: int = 80,
    key_columns: tuple[str, ...] = ("key", "window_start", "window_end", "timestamp"),
) -> str:
    """Render the first ``rows`` rows of ``frame`` as an escaped HTML table with dtypes, the
    row count and ``notes``; key/window/timestamp columns first and shaded."""
    total = len(frame) if total_rows is None else total_rows
    first = [c for c in key_columns if c in frame.columns]
    ordered = first + [c for c in frame.columns if c not in first]
    head = frame.head(rows)
    out = [_STYLE, '<div class="wb-preview">', f"<div><b>{html.escape(title)}</b></div>"]
    out.append("<table><thead><tr>")
    for c in ordered:
        cls = ' class="wb-keycol"' if c in first else ""
        out.append(f"<th{cls}>{_cell(c, width)}<br>"
                   f'<span class="wb-dtype">{html.escape(str(frame[c].dtype))}</span></th>')
    out.append("</tr></thead><tbody>")
    for _, row in head.iterrows():
        out.append("<tr>")
        for c in ordered:
            cls = ' class="wb-keycol"' if c in first else ""
            out.append(f"<td{cls}>{_cell(row[c], width)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    shown = min(rows, len(frame))
    meta = f"{total:,} rows" + (f" (first {shown} shown)" if total > shown else "")
    for note in notes or []:
        meta += " · " + html.escape(note)
    out.append(f'<div class="wb-meta">{meta}</div></div>')
    return "".join(out)


def frame_text(frame: Any, *, title: str, total_rows: int | None = None,
               notes: list[str] | None = None, rows: int = 10) -> str:
    """Plain-text version of :func:`frame_html`."""
    total = len(frame) if total_rows is None else total_rows
    lines = [title]
    if len(frame):
        lines.append(frame.head(rows).to_string(max_colwidth=40))
    shown = min(rows, len(frame))
    meta = f"[{total:,} rows" + (f", first {shown} shown" if total > shown else "") + "]"
    lines.append(meta)
    lines.extend(f"note: {n}" for n in notes or [])
    return "\n".join(lines)
