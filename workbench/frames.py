"""Records → pandas DataFrames (pandas is imported only here, and only when called)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["records_to_frame"]


def _value_columns(values: Sequence[Any]) -> list[str] | None:
    columns: dict[str, None] = {}
    for v in values:
        if v is None:
            continue
        if not isinstance(v, dict):
            return None
        for c in v:
            columns[str(c)] = None
    return list(columns)


def records_to_frame(records: Sequence[Any], key_name: str | None = None) -> pd.DataFrame:
    """Build a DataFrame from ``(key, value, timestamp, ...)`` tuples or ``Record``s.

    Columns: ``key`` (or, for windowed keys, ``key``, ``window_start``, ``window_end``),
    ``timestamp`` (UTC), then the value's fields when values are dicts, else ``value``.
    Numeric fields stay numeric; a tombstone (``None`` value) leaves the value columns empty.
    With ``key_name`` the key column is named after the grouping field, unless the values
    have a field of that name.
    """
    import pandas as pd

    keys = [r[0] for r in records]
    values = [r[1] for r in records]
    stamps = [r[2] for r in records]
    data: dict[str, Any] = {}
    windowed = bool(keys) and all(hasattr(k, "window_start") for k in keys if k is not None) \
        and any(k is not None for k in keys)
    if windowed:
        data["key"] = [None if k is None else k.key for k in keys]
        data["window_start"] = pd.to_datetime(
            pd.Series([None if k is None else k.window_start for k in keys], dtype="Int64"),
            unit="ms", utc=True)
        data["window_end"] = pd.to_datetime(
            pd.Series([None if k is None else k.window_end for k in keys], dtype="Int64"),
            unit="ms", utc=True)
    else:
        data["key"] = keys
    data["timestamp"] = pd.to_datetime(pd.Series(stamps, dtype="int64"), unit="ms", utc=True) \
        if stamps else pd.Series([], dtype="datetime64[ms, UTC]")
    columns = _value_columns(values)
    if columns is None:
        data["value"] = values
        frame = pd.DataFrame(data)
    else:
        frame = pd.DataFrame(data)
        if columns:
            body = pd.DataFrame.from_records(
                [v if v is not None else {} for v in values], columns=columns)
            body.index = frame.index
            clash = [c for c in columns if c in frame.columns]
            if clash:
                body = body.rename(columns={c: f"value.{c}" for c in clash})
            frame = pd.concat([frame, body], axis=1)
    for col in ("timestamp", "window_start", "window_end"):
        if col in frame and len(frame):
            frame[col] = frame[col].astype("datetime64[ms, UTC]")
    if key_name and key_name not in frame.columns:
        frame = frame.rename(columns={"key": key_name})
    return frame
