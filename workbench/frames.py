"""Records → pandas DataFrames: the one frame shape of every surface.

Every DataFrame workbench shows or returns (``to_pandas()``, notebook previews, ``run.frame``,
the live view, the debugger, ``TestDriver`` outputs) is built by :func:`build_frame` from a
:class:`FrameSchema` that :func:`frame_schema` derives from the pipeline definition, so the same
topic has the same columns everywhere. The rule (also in ``docs/notebooks.md``):

1. **key** — named after the field the key was taken from (``group_by("user_id")``,
   ``key_by("user_id")``, a source's ``key="user_id"``; kept by steps that keep the key) when the
   definition says which fields the values have and that field is not one of them (``agg()``
   and ``count()`` results, joins of those); otherwise ``key`` (the values still carry the
   field, their fields are not known, or the key was made by a function). The data never
   changes the name, so an empty frame has the same columns as a full one.
2. **window_start, window_end** — for windowed keys (windowed aggregations).
3. **timestamp** — the record's event time.
4. **the value's fields** — fields the definition knows first (a source's sample columns,
   ``agg()`` names, both sides of a join), then any other field found in the data; a value that
   is not a dict is one ``value`` column. A field named like a column above is shown as
   ``value.<name>``; a field name that is not a string is shown as ``str(name)``.

Times are ``datetime64[ms, UTC]``. A ``None`` value (a table deletion, a tombstone) leaves every
value column missing; integer and boolean fields stay integer/boolean (pandas' nullable
``Int64``/``boolean``) instead of turning into floats. The rows holding ``None`` values are
listed in ``frame.attrs["null_values"]`` (index labels) so that previews can label them.

pandas is imported only when a frame is built.

>>> from workbench.frames import FrameSchema, records_to_frame
>>> records_to_frame([("u1", {"n": 2}, 1000), ("u1", None, 2000)],
...                  FrameSchema(key_name="user_id", columns=("n",), changelog=True))
  user_id                 timestamp     n
0      u1 1970-01-01 00:00:01+00:00     2
1      u1 1970-01-01 00:00:02+00:00  <NA>
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import repeat
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ._nodes import Node
    from .pipeline import Pipeline

__all__ = ["FrameSchema", "batch_frame", "build_frame", "frame_schema", "records_to_frame",
           "topic_schema"]

#: columns that come before the value's fields (a value field with one of these names, or with
#: the key column's name, is shown as ``value.<name>``)
WINDOW_COLUMNS = ("window_start", "window_end")
TIME_COLUMN = "timestamp"
#: rows scanned for field names when only some rows are shown
SCAN_LIMIT = 50_000


@dataclass(frozen=True)
class FrameSchema:
    """What the definition says about a step's records, for building their frame.

    Attributes:
        key_name: the field the keys were taken from (``None``: a function, or unknown).
        windowed: keys are :class:`~workbench.windows.Windowed` (window columns always shown).
        columns: value fields known from the definition, in order (``None``: not known).
        scalar: values are not dicts (one ``value`` column), e.g. ``count()``.
        changelog: records are table updates, so a ``None`` value is a deletion.
    """

    key_name: str | None = None
    windowed: bool = False
    columns: tuple[str, ...] | None = None
    scalar: bool = False
    changelog: bool = False

    def key_column(self) -> str:
        """The key column's name: decided by the definition alone, never by the data, so a
        topic's frame has the same columns whether it is empty or not."""
        name = self.key_name
        if not name or name in (TIME_COLUMN, "value", *WINDOW_COLUMNS):
            return "key"
        if self.scalar:
            return name
        if self.columns is None or name in self.columns:
            return "key"
        return name


# -- schema of a definition node ---------------------------------------------------------------
_SAME_RECORDS = {"filter", "peek", "branch", "split", "sink", "table_filter", "merge",
                 "to_table", "table_changes", "repartition_source", "repartition_sink",
                 "suppress", "repartition", "foreach", "print"}


def _union(columns: Sequence[tuple[str, ...] | None]) -> tuple[str, ...] | None:
    if any(c is None for c in columns):
        return None
    out: dict[str, None] = {}
    for cols in columns:
        for c in cols or ():
            out[c] = None
    return tuple(out)


def frame_schema(node: Node) -> FrameSchema:
    """The :class:`FrameSchema` of the records a definition node produces (cached on the node;
    the cache is cleared when a step is redefined)."""
    cached = node.cache.get("frame_schema")
    if cached is None:
        cached = _schema(node)
        node.cache["frame_schema"] = cached
    result: FrameSchema = cached
    return result


def _schema(node: Node) -> FrameSchema:
    op = node.op
    params = node.params
    parents = node.parents
    first = frame_schema(parents[0]) if parents else FrameSchema()
    if op in ("source", "table_source", "global_table"):
        spec = params["spec"]
        return FrameSchema(
            key_name=spec.key if isinstance(spec.key, str) else None,
            columns=tuple(spec.columns) if spec.columns is not None else None,
            changelog=op != "source")
    if op == "merge":
        schemas = [frame_schema(p) for p in parents]
        names = {s.key_name for s in schemas}
        return FrameSchema(
            key_name=names.pop() if len(names) == 1 else None,
            windowed=all(s.windowed for s in schemas),
            columns=_union([s.columns for s in schemas]),
            scalar=all(s.scalar for s in schemas),
            changelog=all(s.changelog for s in schemas))
    if op == "table_changes":
        return replace(first, changelog=True)
    if op in _SAME_RECORDS:
        return first
    if op in ("key_by", "group_by", "table_group_by"):
        field = params.get("field")
        return replace(first, key_name=field if isinstance(field, str) else None,
                       windowed=False, changelog=op == "table_group_by")
    if op in ("map", "flat_map", "map_async", "flat_map_async"):
        return FrameSchema(key_name=None if params.get("with_record") else first.key_name,
                           windowed=first.windowed and not params.get("with_record"))
    if op == "table_map_values":
        return FrameSchema(key_name=first.key_name, windowed=first.windowed, changelog=True)
    if op == "pipe":  # the program's outputs: new values, same keys
        return FrameSchema(key_name=first.key_name, windowed=first.windowed)
    if op == "errors":  # the records an external step gave up on: its input records
        return replace(frame_schema(parents[0].parents[0]), changelog=False)
    if op == "late":
        # the records an aggregation did not count: its input records, keyed by its key
        agg_input = frame_schema(parents[0].parents[0]) if parents[0].parents else FrameSchema()
        return replace(agg_input, key_name=first.key_name, windowed=False, changelog=False)
    if op == "aggregate":
        agg = params["agg"]
        fields = tuple(getattr(agg, "fields", ()) or ())
        return FrameSchema(
            key_name=first.key_name, windowed=params.get("window") is not None,
            columns=fields or None,
            scalar=agg.kind == "count",
            changelog=True)
    if op in ("join_stream_table", "join_stream_stream", "join_table_table",
              "join_foreign_key", "join_global"):
        other = parents[1] if len(parents) > 1 else None
        if op == "join_foreign_key" and other is not None and len(other.parents) > 1:
            other = other.parents[1]  # through the subscriptions step: the right table
        right = frame_schema(other) if other is not None else FrameSchema()
        columns = _union([first.columns, right.columns]) if params.get("combine") is None \
            else None
        return FrameSchema(key_name=first.key_name, windowed=first.windowed, columns=columns,
                           changelog=op in ("join_table_table", "join_foreign_key"))
    return FrameSchema()  # process and anything unknown: learn the shape from the data


def topic_schema(pipeline: Pipeline, topic: str) -> FrameSchema:
    """The schema of the records the pipeline writes to (or reads from) ``topic``."""
    for node in pipeline._nodes:
        if node.op == "sink" and node.params.get("topic") == topic:
            return frame_schema(node)
    source = pipeline._sources.get(topic)
    if source is not None:
        return frame_schema(source)
    return FrameSchema()


# -- building frames ---------------------------------------------------------------------------
def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _series(values: list[Any], pd: Any) -> Any:
    """A column with pandas' inference, keeping ints and bools as ints and bools when some
    values are missing (nullable ``Int64``/``boolean``) instead of turning them into floats."""
    if not values:
        return pd.Series([], dtype=object)
    try:
        series = pd.Series(values)
    except Exception:  # values pandas cannot hold as one column: keep them as objects
        series = pd.Series(values, dtype=object)
    kind = series.dtype.kind
    if kind == "f" or kind == "O":
        present = [v for v in values if not _missing(v)]
        if present and len(present) < len(values):
            if all(type(v) is bool for v in present):
                return series.astype("boolean")
            if kind == "f" and all(isinstance(v, int) and not isinstance(v, bool)
                                   and -2**63 <= v < 2**63 for v in present):
                return pd.array([None if _missing(v) else v for v in values], dtype="Int64")
        if kind == "O" and present and all(isinstance(v, float) for v in present):
            return series.astype("float64")
    return series


def _times(stamps: Sequence[Any], pd: Any) -> Any:
    import numpy as np

    if not len(stamps):
        return pd.Series([], dtype="datetime64[ms, UTC]")
    if any(s is None for s in stamps):
        arr = pd.array([None if s is None else int(s) for s in stamps], dtype="Int64")
        return pd.to_datetime(arr, unit="ms", utc=True).astype("datetime64[ms, UTC]")
    array = np.asarray(stamps, dtype="int64").astype("datetime64[ms]")
    return pd.Series(array).dt.tz_localize("UTC")


def _field_names(values: Iterable[Any], known: tuple[str, ...] | None
                 ) -> tuple[dict[Any, str], bool]:
    """``({field: column name}, all values are dicts or None)`` over ``values``."""
    names: dict[Any, str] = {}
    used: set[str] = set()
    for c in known or ():
        names[c] = c
        used.add(c)
    for v in values:
        if v is None:
            continue
        if not isinstance(v, dict):
            return names, False
        for f in v:
            if f not in names:
                name = f if isinstance(f, str) else str(f)
                if name in used:
                    name = repr(f)
                names[f] = name
                used.add(name)
    return names, True


def build_frame(keys: Sequence[Any], values: Sequence[Any], timestamps: Sequence[Any],
                schema: FrameSchema | None = None, *,
                scan: Iterable[Any] | None = None) -> pd.DataFrame:
    """Build the frame of records given as columns (see the module docstring for the rule).

    Args:
        keys, values, timestamps: one entry per record (timestamps in epoch ms).
        schema: what the definition says (default: learn everything from the data).
        scan: values of more records (for example all the records when only the first rows are
            shown) whose fields become columns too, so a preview shows every column its topic
            has.
    """
    import pandas as pd

    schema = schema or FrameSchema()
    from .windows import Windowed

    windowed = schema.windowed or any(isinstance(k, Windowed) for k in keys)
    if scan is not None:
        scanned: list[Any] = []
        for i, v in enumerate(scan):
            if i >= SCAN_LIMIT:
                break
            scanned.append(v)
        fields, dicts = _field_names([*scanned, *values],
                                     None if schema.scalar else schema.columns)
    else:
        fields, dicts = _field_names(values, None if schema.scalar else schema.columns)
    if schema.scalar and all(v is None or not isinstance(v, dict) for v in values):
        dicts = False
    key_col = schema.key_column()
    data: dict[str, Any] = {}
    if windowed:
        inner = [k.key if isinstance(k, Windowed) else k for k in keys]
        data[key_col] = _series(inner, pd)
        for col, attr in (("window_start", 1), ("window_end", 2)):
            data[col] = _times([k[attr] if isinstance(k, Windowed) else None for k in keys], pd)
    else:
        data[key_col] = _series(list(keys), pd)
    data[TIME_COLUMN] = _times(timestamps, pd)
    taken = set(data)
    if dicts:
        for field, name in fields.items():
            col = f"value.{name}" if name in taken else name
            data[col] = _series([v.get(field) if isinstance(v, dict) else None for v in values],
                                pd)
    else:
        data["value"] = _series(list(values), pd)
    frame = pd.DataFrame(data, index=pd.RangeIndex(len(keys)))
    nulls = [i for i, v in enumerate(values) if v is None]
    frame.attrs["null_values"] = nulls
    frame.attrs["changelog"] = schema.changelog
    return frame


def records_to_frame(records: Sequence[Any], schema: FrameSchema | None = None, *,
                     scan: Iterable[Any] | None = None,
                     key_name: str | None = None) -> pd.DataFrame:
    """Build the frame of ``(key, value, timestamp, ...)`` tuples or
    :class:`~workbench.types.Record`s (see :func:`build_frame`); ``key_name`` is a shortcut
    for ``FrameSchema(key_name=...)``."""
    if schema is None and key_name is not None:  # named unless the values carry the field
        fields, dicts = _field_names([r[1] for r in records], None)
        schema = FrameSchema(key_name=key_name,
                             columns=tuple(fields.values()) if dicts else None,
                             scalar=not dicts)
    return build_frame([r[0] for r in records], [r[1] for r in records],
                       [r[2] for r in records], schema, scan=scan)


# -- building frames from column batches -------------------------------------------------------
def _column_series(col: Any, pd: Any) -> Any:
    """What :func:`_series` makes of ``col.tolist()``, without the list where the column's
    type already decides it (typed columns; object columns without missing values that pandas
    keeps as strings)."""
    if col.dtype.kind in "iufb":
        return pd.Series(col, copy=False)
    import numpy as np

    from .runtime.strings import ArrowStrings

    if isinstance(col, ArrowStrings):
        return col.series(pd)

    if len(col) and col[0].__class__ is str:
        series = pd.Series(col, copy=False)
        if isinstance(series.dtype, pd.StringDtype):
            return series  # pandas' own string column (what it makes of the list too)
    items = col.tolist()
    types = set(map(type, items))
    if len(types) == 1:  # what pandas infers from the list, without its inference
        kind = types.pop()
        if kind is str:
            return pd.Series(col, copy=False)
        dtype = _EXACT.get(kind)
        if dtype is not None:
            try:
                return pd.Series(np.fromiter(items, dtype, len(items)), copy=False)
            except OverflowError:  # ints beyond int64: pandas decides
                pass
    if len(col) and not pd.isna(col).any():
        series = pd.Series(col, copy=False)
        if series.dtype != object:
            return series
    return _series(items, pd)


_EXACT = {int: "int64", float: "float64", bool: "bool"}


def _masked_series(col: Any, present: Any, pd: Any) -> Any:
    """What :func:`_series` makes of ``col.tolist()`` with ``None`` where ``present`` is False
    (tombstones among dict values), without the list for typed columns: ``Int64``/``boolean``
    with a mask, floats with NaN."""
    import numpy as np

    if present.all():
        return _column_series(col, pd)
    kind = col.dtype.kind
    if kind in "ifb" and present.any():
        missing = ~present
        if kind == "i":
            return pd.Series(pd.arrays.IntegerArray(col.astype(np.int64, copy=False),
                                                    missing.copy()), copy=False)
        if kind == "b":
            return pd.Series(pd.arrays.BooleanArray(col.astype(bool, copy=False),
                                                    missing.copy()), copy=False)
        out = col.astype(np.float64, copy=True)
        out[missing] = np.nan
        return pd.Series(out, copy=False)
    items = col.tolist()
    for i in np.flatnonzero(~present).tolist():
        items[i] = None
    return _series(items, pd)


def _times_array(stamps: Any, pd: Any) -> Any:
    """Epoch-ms ``int64`` column → ``datetime64[ms, UTC]`` (no per-row work; one copy, made
    by pandas' ``tz_localize``: the int64 column is viewed as times, not converted)."""
    import numpy as np

    times = np.ascontiguousarray(stamps, dtype=np.int64).view("datetime64[ms]")
    return pd.Series(times, copy=False).dt.tz_localize("UTC")


def _key_columns(batch: Any, schema: FrameSchema, pd: Any) -> dict[str, Any] | None:
    """The key (and window) columns of ``batch`` from its key columns, or ``None`` where
    only the record path decides (windowed results whose keys are not ``WindowedKeys``)."""
    from .runtime.batch import WindowedKeys

    keys = batch.keys
    key_col = schema.key_column()
    data: dict[str, Any] = {}
    if isinstance(keys, WindowedKeys):
        data[key_col] = _column_series(keys.inner, pd)
        for col, arr in (("window_start", keys.start), ("window_end", keys.end)):
            data[col] = _times_array(arr, pd)
    elif schema.windowed:
        return None
    else:
        data[key_col] = _column_series(batch.key_objects(), pd)
    if isinstance(keys, WindowedKeys) and batch.ts is keys.end:  # stamped with the window end
        data[TIME_COLUMN] = data["window_end"]  # (the log holds them once: so does the frame)
    else:
        data[TIME_COLUMN] = _times_array(batch.ts, pd)
    return data


def _scalar_frame(batch: Any, schema: FrameSchema, pd: Any) -> pd.DataFrame | None:
    """The frame of values that are all exactly ``int``, all ``float`` or all ``bool`` (and
    ``None``: deletions, merged sessions), as ``count()`` and most scalar results are: one
    ``value`` column made from a typed column and a presence mask, what :func:`build_frame`
    makes of them record by record. ``None`` for other values (the record path decides)."""
    from operator import is_not

    import numpy as np

    arr = batch.values.objects()
    n = len(arr)
    if not n:
        return None
    present = np.fromiter(map(is_not, arr, repeat(None)), bool, n)
    missing = not present.all()
    live = arr[present] if missing else arr
    types = set(map(type, live))
    dtype = _EXACT.get(types.pop()) if len(types) == 1 else None
    if dtype is None:
        return None  # dicts, strings, mixed types, only deletions
    typed = np.zeros(n, dtype=dtype)
    try:  # every value has exactly this type: NumPy's cast keeps it
        typed[present] = live
    except OverflowError:  # ints beyond int64
        return None
    del live
    data = _key_columns(batch, schema, pd)
    if data is None:
        return None
    if missing:
        data["value"] = _masked_series(typed, present, pd)
    else:
        data["value"] = _column_series(typed, pd)
    frame = pd.DataFrame(data, index=pd.RangeIndex(n), copy=False)
    frame.attrs["null_values"] = np.flatnonzero(~present).tolist() if missing else []
    frame.attrs["changelog"] = schema.changelog
    return frame  # type: ignore[no-any-return]


def batch_frame(batch: Any, schema: FrameSchema | None = None) -> pd.DataFrame:
    """The frame of a column batch (``runtime.batch.Batch``): the same frame
    :func:`build_frame` makes of its records, built from the columns (typed columns without a
    copy, no dict per row when the values are columns)."""
    import numpy as np
    import pandas as pd

    from .runtime.batch import ObjectValues, StructValues

    schema = schema or FrameSchema()
    values = batch.values
    struct = values if isinstance(values, StructValues) else None
    if isinstance(values, ObjectValues) and not schema.scalar:
        struct = values.to_struct()
    if struct is None or schema.scalar or (struct.present is not None
                                           and not struct.present.any()):
        scalars = _scalar_frame(batch, schema, pd) if isinstance(values, ObjectValues) \
            else None
        if scalars is not None:
            return scalars
        keys = batch.key_objects().tolist()
        return build_frame(keys, values.objects().tolist(), batch.ts, schema)
    fields, _dicts = _field_names([{f: None for f in struct.cols}], schema.columns)
    data = _key_columns(batch, schema, pd)
    if data is None:
        return build_frame(batch.key_objects().tolist(), values.objects().tolist(), batch.ts,
                           schema)
    taken = set(data)
    present = struct.present
    n = len(batch)
    for field, name in fields.items():
        col_name = f"value.{name}" if name in taken else name
        found = struct.cols.get(field)
        if found is None:
            data[col_name] = _series([None] * n, pd)
        elif present is None:
            data[col_name] = _column_series(found, pd)
        else:
            data[col_name] = _masked_series(found, present, pd)
    frame = pd.DataFrame(data, index=pd.RangeIndex(n), copy=False)
    frame.attrs["null_values"] = [] if present is None else np.flatnonzero(~present).tolist()
    frame.attrs["changelog"] = schema.changelog
    return frame
