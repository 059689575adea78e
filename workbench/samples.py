"""Sample and input data: DataFrames, lists of dicts, CSV and JSON-lines files → records."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ._time import MAX_MS, check_ms, to_epoch_ms
from .errors import DefinitionError, ProcessingError, did_you_mean

__all__ = ["SourceSpec", "normalize_sample", "rows_to_records", "time_extractor"]


@dataclass(frozen=True, eq=False)
class SourceSpec:
    """How a source topic's records are made and read (see :meth:`Pipeline.source`)."""

    topic: str
    key: str | Callable[[Any], Any] | None
    time: str | Callable[[Any], Any] | None
    sample: list[Any] | None
    columns: list[str] | None
    partitions: int | None = None
    table: bool = False


def _is_dataframe(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pandas")


def _frame_rows(frame: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = frame.to_dict("records")
    for row in rows:
        for col, val in row.items():
            if (isinstance(val, float) and math.isnan(val)) or val.__class__.__name__ == "NaTType":
                row[col] = None
    return rows


def normalize_sample(sample: Any, topic: str) -> tuple[list[Any] | None, list[str] | None]:
    """Return ``(rows, columns)`` for a sample; ``columns`` is ``None`` when rows are not dicts
    with a common set of fields. Missing values (NaN/NaT) become ``None``."""
    if sample is None:
        return None, None
    if _is_dataframe(sample):
        return _frame_rows(sample), [str(c) for c in sample.columns]
    if isinstance(sample, str | os.PathLike):
        path = os.fspath(sample)
        if not os.path.exists(path):
            raise DefinitionError(f"sample file {path!r} for topic {topic!r} does not exist.")
        if path.endswith((".jsonl", ".ndjson", ".json")):
            rows = []
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except ValueError as exc:
                            raise DefinitionError(
                                f"{path}:{lineno}: not valid JSON ({exc}); samples in .jsonl "
                                "files hold one JSON object per line."
                            ) from None
            return rows, _common_columns(rows)
        if path.endswith((".csv", ".csv.gz", ".tsv")):
            import pandas as pd

            frame = pd.read_csv(path, sep="\t" if path.endswith(".tsv") else ",")
            return _frame_rows(frame), [str(c) for c in frame.columns]
        raise DefinitionError(
            f"sample file {path!r}: unknown format; use .csv, .tsv or .jsonl (JSON lines)."
        )
    if isinstance(sample, dict):
        raise DefinitionError(
            f"sample for topic {topic!r} is a single dict; pass a list of dicts (one per record)."
        )
    if isinstance(sample, Iterable):
        rows = list(sample)
        return rows, _common_columns(rows)
    raise DefinitionError(
        f"sample for topic {topic!r} must be a DataFrame, a list of dicts or a CSV/JSON-lines "
        f"path, got {type(sample).__name__}."
    )


def _common_columns(rows: list[Any]) -> list[str] | None:
    if not rows or not all(isinstance(r, dict) for r in rows):
        return None
    first = list(rows[0])
    keys = set(first)
    if all(set(r) == keys for r in rows[1:50]):
        return first
    return None


def _extractor(spec: str | Callable[[Any], Any], what: str, topic: str) -> Callable[[Any], Any]:
    if callable(spec):
        return spec
    field = spec

    def get(value: Any) -> Any:
        try:
            return value[field]
        except (KeyError, TypeError, IndexError):
            fields = list(value) if isinstance(value, dict) else []
            raise KeyError(
                f"{what} field {field!r} missing from {value!r} (topic {topic!r})."
                + did_you_mean(field, fields)
            ) from None

    return get


def time_extractor(spec: SourceSpec) -> Callable[[Any], int] | None:
    """A function value → epoch ms for the source's ``time=``, or ``None``."""
    if spec.time is None:
        return None
    raw = _extractor(spec.time, "time", spec.topic)

    def extract(value: Any) -> int:
        t = raw(value)
        return check_ms(t) if t.__class__ is int else to_epoch_ms(t)

    return extract


class _Tombstone(dict):  # type: ignore[type-arg]
    """A sample row that stands for a delete: keeps key/time fields for extraction."""


def _cp(row: Any) -> Any:
    return row if isinstance(row, _Tombstone) or not isinstance(row, dict) else dict(row)


def _with_tombstones(spec: SourceSpec, rows: Iterable[Any]) -> list[Any]:
    skip = {f for f in (spec.key, spec.time) if isinstance(f, str)}
    out: list[Any] = []
    for row in rows:
        if isinstance(row, dict) and row and all(
                v is None for k, v in row.items() if k not in skip):
            out.append(_Tombstone(row))
        else:
            out.append(row)
    return out


def rows_to_records(
    spec: SourceSpec, rows: Iterable[Any], *, now_ms: int, copy: bool = False
) -> list[tuple[Any, Any, int, None, None]]:
    """Turn sample/input rows into ``(key, value, timestamp, None, None)`` records for a
    topic (the engine's record shape; the driver assigns offsets).

    Raises:
        ProcessingError: a row lacks the key or time field, or its time is not a timestamp;
            the message gives the row number.
    """
    if spec.table:
        rows = _with_tombstones(spec, rows)
    key_of = _extractor(spec.key, "key", spec.topic) if spec.key is not None else None
    ts_of = time_extractor(spec)
    out: list[tuple[Any, Any, int, None, None]] = []
    append = out.append
    index = 0
    try:
        if key_of is None and ts_of is None:
            for index, row in enumerate(rows):  # noqa: B007
                append((None, _cp(row) if copy else row, now_ms, None, None))
        elif ts_of is None:
            assert key_of is not None
            for index, row in enumerate(rows):  # noqa: B007
                append((key_of(row), _cp(row) if copy else row, now_ms, None, None))
        elif key_of is None:
            for index, row in enumerate(rows):  # noqa: B007
                append((None, _cp(row) if copy else row, ts_of(row), None, None))
        elif isinstance(spec.key, str) and isinstance(spec.time, str) and not copy:
            kf, tf = spec.key, spec.time
            try:  # fast path: every row has both fields and integer times
                out = [(row[kf], row, row[tf], None, None) for row in rows]
                if any(r[2].__class__ is not int or not 0 <= r[2] <= MAX_MS for r in out):
                    raise TypeError("not all plain epoch-ms ints")
            except (KeyError, TypeError):  # find the bad row with the slow path
                out = []
                append = out.append
                for index, row in enumerate(rows):  # noqa: B007
                    t = row[tf]
                    append((row[kf], row, check_ms(t) if t.__class__ is int
                            else to_epoch_ms(t), None, None))
        else:
            for index, row in enumerate(rows):  # noqa: B007
                append((key_of(row), _cp(row) if copy else row, ts_of(row), None, None))
    except (KeyError, TypeError, ValueError) as exc:
        detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if isinstance(exc, KeyError) and isinstance(detail, str) and "missing" not in detail:
            detail = f"field {detail!r} missing" + (
                did_you_mean(detail, list(row)) if isinstance(row, dict) else "")
        raise ProcessingError(
            f"row {index} for topic {spec.topic!r}: {detail}",
            step=spec.topic, topic=spec.topic,
        ) from None
    if spec.table:
        out = [(k, None, t, s, h) if isinstance(v, _Tombstone) else (k, v, t, s, h)
               for k, v, t, s, h in out]
    return out


# -- inputs as column batches -------------------------------------------------------------------
def _frame_column(series: Any) -> Any:
    """A DataFrame column as a batch column: typed without missing values; otherwise Python
    objects with ``None`` where pandas has a missing value (as sample rows have)."""
    import numpy as np
    import pandas as pd

    kind = series.dtype.kind
    missing = series.isna().to_numpy()
    if kind in "iub" and not missing.any():
        return series.to_numpy(dtype=np.int64 if kind in "iu" else bool)
    if kind == "f" and not missing.any():
        return series.to_numpy(dtype=np.float64)
    if kind == "M" or isinstance(series.dtype, pd.DatetimeTZDtype):
        values = np.empty(len(series), dtype=object)
        values[:] = list(series)
        values[missing] = None
        return values
    if not missing.any():
        from .runtime.strings import from_series

        strings = from_series(series)
        if strings is not None:
            return strings  # Arrow strings stay Arrow (runtime/strings.py)
    values = series.to_numpy(dtype=object, na_value=None)
    if kind == "f":
        values[missing] = None
    return values


def _times_column(spec: SourceSpec, column: Any, count: int) -> Any:
    """Epoch-ms timestamps for a time column (raises like the row path, naming the row)."""
    import numpy as np

    if column.dtype == np.int64:
        bad = (column < 0) | (column > MAX_MS)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            try:
                check_ms(int(column[i]))
            except ValueError as exc:
                raise ProcessingError(f"row {i} for topic {spec.topic!r}: {exc}",
                                      step=spec.topic, topic=spec.topic) from None
        return column
    out = []
    for i, t in enumerate(column.tolist()):
        try:
            out.append(check_ms(t) if t.__class__ is int else to_epoch_ms(t))
        except (TypeError, ValueError) as exc:
            raise ProcessingError(f"row {i} for topic {spec.topic!r}: {exc}",
                                  step=spec.topic, topic=spec.topic) from None
    return np.array(out, dtype=np.int64)


def input_batch(spec: SourceSpec, data: Any, *, now_ms: int, copy: bool = False) -> Any:
    """The input ``data`` of a source topic as one column batch (``runtime.batch.Batch``), or
    ``None`` where only the row path applies (tables, key or time functions, rows that are not
    dicts). A DataFrame becomes columns without a dict per row; a list of dicts stays Python
    values with keys and times taken out in one pass (``int64`` columns when every key, every
    time, is an ``int``)."""
    from operator import itemgetter

    import numpy as np

    from .runtime.batch import Batch, ObjectValues, StructValues, column, obj_array

    if spec.table or callable(spec.key) or callable(spec.time):
        return None
    if _is_dataframe(data):
        n = len(data)
        names = [str(c) for c in data.columns]
        if len(set(names)) != len(names):
            return None
        for field, what in ((spec.key, "key"), (spec.time, "time")):
            if field is not None and field not in names:
                raise ProcessingError(
                    f"row 0 for topic {spec.topic!r}: {what} field {field!r} missing."
                    + did_you_mean(field, names), step=spec.topic, topic=spec.topic)
        cols = {name: _frame_column(data[c]) for name, c in zip(names, data.columns)}
        keys = cols[spec.key] if spec.key is not None else np.full(n, None, dtype=object)
        keys = obj_array(keys) if keys.dtype == object else keys
        if keys.dtype != object and keys.dtype != np.int64:
            keys = keys.astype(object)
        if spec.time is not None:
            ts = _times_column(spec, cols[spec.time], n)
        else:
            ts = np.full(n, now_ms, dtype=np.int64)
        return Batch(keys, StructValues(cols, None, n), ts, np.arange(n, dtype=np.int64),
                     None, spec.time)
    if not isinstance(data, list) or (data and set(map(type, data)) != {dict}):
        return None
    n = len(data)
    rows = [dict(r) for r in data] if copy else data
    try:
        if spec.key is not None:  # int64 when every key is an int (as a DataFrame's are)
            keys = column(list(map(itemgetter(spec.key), rows)))
            if keys.dtype != np.int64:
                keys = obj_array(keys, n)
        else:
            keys = np.full(n, None, dtype=object)
        if spec.time is not None:
            stamps = column(list(map(itemgetter(spec.time), rows)))
            if stamps.dtype != np.int64:
                stamps = obj_array(stamps.astype(object) if stamps.dtype != object
                                   else stamps, n)
            ts = _times_column(spec, stamps, n)
        else:
            ts = np.full(n, now_ms, dtype=np.int64)
    except KeyError as exc:
        field = exc.args[0] if exc.args else "?"
        index = next(i for i, row in enumerate(rows) if field not in row)
        raise ProcessingError(
            f"row {index} for topic {spec.topic!r}: field {field!r} missing"
            + did_you_mean(str(field), list(rows[index])), step=spec.topic,
            topic=spec.topic) from None
    return Batch(keys, ObjectValues(obj_array(rows, n)), ts, np.arange(n, dtype=np.int64),
                 None, spec.time)
