"""Bounded, HTML-escaped previews of DataFrames, readable in light and dark themes.

Cells are formatted the way pandas prints them, so a preview and ``print(frame)`` agree:
floats and times column by column with pandas' display options (``display.precision``,
``display.float_format``), times at millisecond precision; missing values as pandas shows them
(``NaN``, ``<NA>``, ``NaT``, ``None``), greyed; records whose value is ``None`` labelled as
deletions (table updates) or null values. ``window_end`` is shortened to the time of day when it
falls on the day of ``window_start``, so windowed previews stay narrow.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["format_cells", "frame_html", "frame_text", "plural"]

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
    ".wb-preview .wb-missing{opacity:.5;font-style:italic}"
    ".wb-preview .wb-null{opacity:.75;font-style:italic;text-align:center;"
    "background:rgba(220,60,60,.08)}"
    ".wb-preview pre.wb-error{white-space:pre-wrap;background:rgba(220,60,60,.12);"
    "padding:6px;margin:4px 0}"
    "</style>"
)


def plural(n: int, word: str, words: str | None = None) -> str:
    """``"1 row"``, ``"2 rows"``, ``"1,234 rows"``."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        result = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return result is True or (type(result).__name__ == "bool_" and bool(result))


def _missing_text(value: Any) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    if name == "NAType":
        return "<NA>"
    if name == "NaTType":
        return "NaT"
    return "NaN"


def _pandas_strings(series: Any) -> list[str]:
    """Cells of ``series`` exactly as pandas prints the column (display options apply)."""
    if not len(series):
        return []
    lines = series.reset_index(drop=True).to_string(index=False).split("\n")
    if len(lines) != len(series):  # pragma: no cover - defensive; never seen
        return [str(v) for v in series]
    return [line.strip() for line in lines]


def leading_columns(frame: Any) -> tuple[str, ...]:
    """The key, window and timestamp columns of a frame built by :mod:`workbench.frames`."""
    if "null_values" not in frame.attrs or not len(frame.columns):
        return tuple(c for c in ("key", "window_start", "window_end", "timestamp")
                     if c in frame.columns)
    lead = [frame.columns[0]]
    lead += [c for c in ("window_start", "window_end", "timestamp") if c in frame.columns]
    return tuple(lead)


def format_cells(frame: Any, width: int = 80) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """``(columns, rows)``: every cell of ``frame`` as ``(text, css class)``, formatted as
    described in the module docstring; a deletion row has one cell spanning the value columns,
    class ``wb-null``."""
    columns = [str(c) for c in frame.columns]
    n = len(frame)
    texts: dict[str, list[tuple[str, str]]] = {}
    for c, name in zip(frame.columns, columns, strict=True):
        series = frame[c]
        kind = getattr(series.dtype, "kind", "O")
        if kind in "fcmM" and n:
            strings = _pandas_strings(series)
            cells = [(s, "wb-missing" if s in ("NaN", "NaT", "<NA>", "nan") else "")
                     for s in strings]
        else:
            cells = []
            for v in series:
                if _is_missing(v):
                    cells.append((_missing_text(v), "wb-missing"))
                else:
                    cells.append((str(v), ""))
        texts[name] = [(_clip(t, width), cls) for t, cls in cells]
    if "window_start" in texts and "window_end" in texts and n:
        starts, ends = frame["window_start"], frame["window_end"]
        try:
            same_day = bool((starts.dt.date == ends.dt.date).all())
        except Exception:
            same_day = False
        if same_day:
            full = [t for t, _c in texts["window_end"]]
            texts["window_end"] = [(t.split(" ", 1)[1].removesuffix("+00:00")
                                    if " " in t else t, cls)
                                   for t, (_x, cls) in zip(full, texts["window_end"],
                                                           strict=True)]
    lead = set(leading_columns(frame))
    nulls = set(frame.attrs.get("null_values", ()))
    label = "deleted" if frame.attrs.get("changelog") else "null value"
    value_cols = [c for c in columns if c not in lead]
    rows: list[list[tuple[str, str]]] = []
    for i, index in enumerate(frame.index):
        if index in nulls and value_cols:
            row = [texts[c][i] for c in columns if c in lead]
            row.append((label, "wb-null"))
            rows.append(row)
        else:
            rows.append([texts[c][i] for c in columns])
    return columns, rows


def _clip(text: str, width: int) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def _meta(total: int, shown: int, notes: list[str] | None, which: str = "first") -> str:
    meta = plural(total, "row") + (f" ({which} {shown} shown)" if total > shown else "")
    for note in notes or []:
        meta += " · " + note
    return meta


def frame_html(
    frame: Any,
    *,
    title: str,
    total_rows: int | None = None,
    notes: list[str] | None = None,
    rows: int = 10,
    width: int = 80,
    key_columns: tuple[str, ...] | None = None,
    which: str = "first",
) -> str:
    """Render the first ``rows`` rows of ``frame`` as an escaped HTML table with dtypes, the
    row count and ``notes``; the key/window/timestamp columns first and shaded. ``which``
    says which rows of ``total_rows`` the frame holds (``"first"``, ``"last"``)."""
    total = len(frame) if total_rows is None else total_rows
    first = [c for c in (key_columns or leading_columns(frame)) if c in frame.columns]
    ordered = first + [c for c in frame.columns if c not in first]
    head = frame.head(rows)[ordered] if list(frame.columns) != ordered else frame.head(rows)
    names, cells = format_cells(head, width)
    value_span = len([c for c in names if c not in first])
    out = [_STYLE, '<div class="wb-preview">', f"<div><b>{html.escape(title)}</b></div>"]
    out.append("<table><thead><tr>")
    for c in ordered:
        cls = ' class="wb-keycol"' if c in first else ""
        out.append(f"<th{cls}>{html.escape(_clip(str(c), width))}<br>"
                   f'<span class="wb-dtype">{html.escape(str(frame[c].dtype))}</span></th>')
    out.append("</tr></thead><tbody>")
    for row in cells:
        out.append("<tr>")
        for i, (text, cls) in enumerate(row):
            classes = []
            if i < len(first):
                classes.append("wb-keycol")
            if cls:
                classes.append(cls)
            span = f' colspan="{value_span}"' if cls == "wb-null" and value_span > 1 else ""
            attr = f' class="{" ".join(classes)}"' if classes else ""
            out.append(f"<td{attr}{span}>{html.escape(text)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    shown = min(rows, len(frame))
    out.append(f'<div class="wb-meta">{html.escape(_meta(total, shown, notes, which))}'
               "</div></div>")
    return "".join(out)


def frame_text(frame: Any, *, title: str, total_rows: int | None = None,
               notes: list[str] | None = None, rows: int = 10, width: int = 40,
               which: str = "first") -> str:
    """Plain-text version of :func:`frame_html`."""
    total = len(frame) if total_rows is None else total_rows
    lines = [title]
    head = frame.head(rows)
    if len(head) or len(head.columns):
        names, cells = format_cells(head, width)
        table = [names] + [[t for t, _c in row] for row in cells]
        widths = [max(len(r[i]) for r in table if i < len(r)) for i in range(len(names))]
        for r in table:
            parts = []
            for i, text in enumerate(r):
                if i == len(r) - 1 and len(r) < len(names):  # a deletion: spans the rest
                    parts.append(text.center(sum(widths[i:]) + 2 * (len(names) - i - 1)))
                else:
                    parts.append(text.rjust(widths[i]))
            lines.append("  ".join(parts).rstrip())
    shown = min(rows, len(frame))
    lines.append("[" + plural(total, "row") + (f", {which} {shown} shown" if total > shown
                                                  else "") + "]")
    lines.extend(f"note: {n}" for n in notes or [])
    return "\n".join(lines)
