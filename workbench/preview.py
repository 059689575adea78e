"""Previews: a step's output computed from the sources' samples on a private in-memory driver.

Work is bounded: at most :data:`options.preview_input_limit` sample records per source are
used, and the result is cached on the step (steps are immutable, so it cannot go stale).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._nodes import Node

if TYPE_CHECKING:
    import pandas as pd

    from .pipeline import Pipeline

__all__ = ["Preview", "latest_per_key", "options", "preview", "preview_frame", "table_frame"]


@dataclass
class _Options:
    """Display and preview settings (``workbench.options``)."""

    #: sample records used per source for a preview
    preview_input_limit: int = 50_000
    #: rows shown in a notebook preview
    display_rows: int = 10
    #: characters shown per cell in a notebook preview
    display_width: int = 80
    #: progress bars on runs: True (runs of at least ``progress_min_records`` source records,
    #: and unbounded runs), False (never), "always"
    progress: bool | str = True
    #: source records from which a bounded run shows a progress bar
    progress_min_records: int = 50_000
    #: seconds between updates of a live view
    live_interval: float = 0.5
    #: records shown per output topic in a live view
    live_tail_rows: int = 5
    #: records each partition keeps in a live run without an end on the private
    #: ``memory://`` (``p.start()``; older ones are dropped, as ``memory://?max_records=N``);
    #: 0 keeps everything
    live_max_records: int = 1_000_000
    #: output records an engine holds for its next commit at most: reaching it commits at
    #: once (backpressure) instead of reading on (``Engine(max_buffered_records=)``; 0: none)
    max_buffered_records: int = 200_000
    #: the same bound in bytes, estimated from the column batches (NumPy ``nbytes`` plus
    #: sampled sizes of Python objects; ``Engine(max_buffered_bytes=)``; 0: none)
    max_buffered_bytes: int = 256 * 2**20


options = _Options()


@dataclass(frozen=True)
class Preview:
    """A computed preview: the output records, and what they were computed from."""

    records: list[Any]
    inputs: dict[str, int]
    truncated: dict[str, int]
    missing_samples: list[str]


def preview(pipeline: Pipeline, node: Node) -> Preview:
    """Compute (or fetch from cache) the preview of ``node``."""
    from .privacy.hooks import preview_epoch

    limit = options.preview_input_limit
    cached = node.cache.get("preview")
    if cached is not None and cached[0] == (limit, preview_epoch()):
        result: Preview = cached[1]
        return result
    from .drivers.memory import MemoryDriver
    from .plan import _ancestors, compile_plan
    from .run import append_inputs
    from .runtime.engine import Engine

    if node.op == "global_table":  # read by no task: its records are its topic's records
        result = _global_preview(pipeline, node, limit)
        node.cache["preview"] = ((limit, preview_epoch()), result)
        return result
    plan = compile_plan(pipeline, targets=[node])
    driver = MemoryDriver(durable_state=False)
    sources = [n for n in _ancestors([node])
               if n.op in ("source", "table_source", "global_table")]
    samples: dict[str, Any] = {}
    missing: list[str] = []
    truncated: dict[str, int] = {}
    for src in sorted(sources, key=lambda n: n.id):
        spec = src.params["spec"]
        if spec.sample is None:
            missing.append(spec.topic)
            continue
        samples[spec.topic] = spec.sample
        if len(spec.sample) > limit:
            truncated[spec.topic] = len(spec.sample)
    counts = append_inputs(pipeline, driver, samples, copy=True, limit=limit)
    engine = Engine(plan, driver, commit_interval_ms=10**12)
    try:
        engine.run_until_end()
    finally:
        engine.close()  # stops the child processes of pipe steps, also after an error
    records = driver.read_all(plan.captures[node.name])
    result = Preview(records, counts, truncated, missing)
    node.cache["preview"] = ((limit, preview_epoch()), result)
    return result


def _global_preview(pipeline: Pipeline, node: Node, limit: int) -> Preview:
    """A global table's preview: its sample as the records of its topic."""
    from .drivers.memory import MemoryDriver
    from .run import append_inputs

    spec = node.params["spec"]
    if spec.sample is None:
        return Preview([], {}, {}, [spec.topic])
    driver = MemoryDriver(durable_state=False)
    counts = append_inputs(pipeline, driver, {spec.topic: spec.sample}, copy=True, limit=limit)
    truncated = {spec.topic: len(spec.sample)} if len(spec.sample) > limit else {}
    return Preview(driver.read_all(spec.topic), counts, truncated, [])


def preview_frame(pipeline: Pipeline, node: Node, limit: int | None = None) -> pd.DataFrame:
    """The preview of ``node`` as a DataFrame (first ``limit`` rows; the columns of every
    record, see :mod:`workbench.frames`)."""
    from .frames import frame_schema, records_to_frame

    records = preview(pipeline, node).records
    shown = records if limit is None else records[:limit]
    return records_to_frame(shown, frame_schema(node),
                            scan=None if shown is records else (r[1] for r in records))


def _identity(key: Any) -> Any:
    """A dict key that keeps keys apart when their serialized forms differ (``1``, ``1.0`` and
    ``True`` are equal in Python but different keys on the wire)."""
    from .windows import Windowed

    if isinstance(key, Windowed):
        return ("windowed", _identity(key.key), key.window_start, key.window_end)
    if isinstance(key, tuple):
        return ("tuple", *(_identity(k) for k in key))
    try:
        hash(key)
    except TypeError:
        return ("repr", repr(key))
    return (key.__class__.__name__, key)


def _order(record: Any) -> Any:
    from .windows import Windowed

    k = record[0]
    if isinstance(k, Windowed):  # time first, so that a preview shows several keys
        return (0, k.window_start, k.window_end, k.key)
    return (0, k)


def latest_per_key(records: list[Any], *, by_time: bool = False) -> list[Any]:
    """A changelog's current contents: the last record per key, deletes removed; sorted by key
    (windowed keys: by window, then key) where keys are comparable, else in order of last
    update. ``by_time``: a versioned table's -- the record with the largest timestamp per key
    (the last of equal ones), whatever order the updates came in."""
    latest: dict[Any, Any] = {}
    newest: dict[Any, int] = {}
    for r in records:
        k = _identity(r[0])
        if by_time:
            if r[2] < newest.get(k, r[2]):
                continue  # out of order: an older version
            newest[k] = r[2]
        latest.pop(k, None)
        if r[1] is not None:
            latest[k] = r
    rows = list(latest.values())
    with contextlib.suppress(TypeError):  # keys of mixed types: keep update order
        rows.sort(key=_order)
    return rows


def table_frame(pipeline: Pipeline, node: Node, limit: int | None = None) -> pd.DataFrame:
    """The current contents of table ``node`` computed from the samples."""
    from .frames import frame_schema, records_to_frame
    from .table import versioned_history

    versioned = node.op != "global_table" and versioned_history(node)[0] is not None
    rows = latest_per_key(preview(pipeline, node).records, by_time=versioned)
    shown = rows if limit is None else rows[:limit]
    return records_to_frame(shown, frame_schema(node),
                            scan=None if shown is rows else (r[1] for r in rows))
