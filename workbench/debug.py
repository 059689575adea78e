"""Debugging: load the state of a pipeline at any input offset.

The input records (the sources' samples, ``inputs=`` you pass, or a slice recorded from a real
topic with :func:`read_slice`) are laid on one **timeline**: each source topic partition in
offset order, merged by timestamp as an engine task interleaves its inputs. Offset ``k`` of the
timeline is the state right after the engine processed record ``k`` (records are processed one
at a time and committed after each, as the test driver does); offset ``len(timeline)`` is the
end of input, after open windows were closed.

:func:`state_at` returns, headless, a :class:`DebugState`: the input record, every operator's
state (open windows, join buffers, table contents: one DataFrame per state store, read from the
operators' ``stores``), the outputs emitted so far and those emitted by that very record.
:func:`scrubber` wraps it in ipywidgets: a slider (recomputes on release, not while dragging),
a play button, step buttons and the panels.

Going backwards is cheap: the :class:`Debugger` keeps a checkpoint of the engine's state every
``checkpoint_every`` offsets (a deep copy of the operators and their stores, plus the log
positions of its private in-memory driver) and replays at most that many records from the
nearest one.

>>> import workbench as wb
>>> p = wb.Pipeline("dbg-doc")
>>> s = p.source("in", key="k", time="t",
...              sample=[{"k": "a", "t": 1000, "n": 1}, {"k": "a", "t": 2000, "n": 2},
...                      {"k": "b", "t": 9000, "n": 5}])
>>> counts = s.group_by("k").window(wb.Tumbling("5s")).agg(total=("n", "sum"))
>>> _ = counts.to("totals")
>>> st = wb.debug.state_at(p, offset=1)
>>> st.record.key, st.record.value["n"]
('a', 2)
>>> st.state["aggregate-1-store"][["k", "total"]].to_dict("records")
[{'k': 'a', 'total': 3}]
>>> len(st.outputs["totals"]), len(st.emitted["totals"])
(2, 1)
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import html
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._tracebacks import public
from ._urls import redact_url
from .drivers.base import Driver, Transaction
from .errors import DefinitionError, DriverError, did_you_mean
from .types import Record

if TYPE_CHECKING:
    import pandas as pd

    from .frames import FrameSchema
    from .pipeline import Pipeline
    from .runtime.engine import Engine

__all__ = ["DebugState", "Debugger", "InputRecord", "Scrubber", "read_slice", "scrubber",
           "state_at", "store_rows"]

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_EVERY = 50


# -- inputs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputRecord:
    """One record of the debugging timeline.

    Attributes:
        index: position on the timeline (the offset the slider selects).
        topic: the source topic.
        partition: its partition.
        offset: offset within that topic partition of the debugger's input.
        key, value, timestamp, headers: the record as appended to the topic.
    """

    index: int
    topic: str
    partition: int
    offset: int
    key: Any
    value: Any
    timestamp: int
    headers: Any = None
    _schema: Any = field(default=None, repr=False, compare=False)

    def frame(self) -> pd.DataFrame:
        """The record as a one-row DataFrame (key, timestamp, value fields)."""
        from .frames import records_to_frame

        frame = records_to_frame([(self.key, self.value, self.timestamp)], self._schema)
        frame.insert(0, "offset", [self.index])
        frame.insert(1, "topic", [self.topic])
        return frame


def read_slice(driver: Any, topic: str, *, partition: int | None = None, start: int = 0,
               count: int = 1000) -> list[Record]:
    """Record a slice of a real topic (any driver) for the debugger's ``inputs=``: up to
    ``count`` records from offset ``start`` of ``partition`` (every partition when ``None``),
    as :class:`~workbench.types.Record`s that keep their key, timestamp and headers."""
    from .drivers import connect

    if start < 0 or count < 0:
        raise DefinitionError(f"read_slice: start and count must be >= 0, got {start}, {count}.")
    drv = connect(driver) if isinstance(driver, str) else driver
    parts = drv.partitions(topic)
    if parts is None:
        raise DefinitionError(f"read_slice: no topic {topic!r} on {redact_url(drv.url)}.")
    chosen = range(parts) if partition is None else [partition]
    out: list[Record] = []
    for p in chosen:
        for k, v, t, _o, h in drv.read(topic, p, start, count):
            out.append(Record(k, v, t, h))
    if partition is None and parts > 1:
        out.sort(key=lambda r: r.timestamp)
    return out


def _timeline(pipeline: Pipeline, inputs: Mapping[str, Any] | None
              ) -> tuple[list[InputRecord], dict[str, int]]:
    """Lay the inputs on one timeline and return it with each source's partition count."""
    from .frames import frame_schema
    from .samples import normalize_sample, rows_to_records, time_extractor
    from .serde.topics import TopicCodecs, source_topics

    sources = pipeline._sources
    if inputs is None:
        inputs = {t: n.params["spec"].sample for t, n in sources.items()
                  if n.params["spec"].sample is not None}
        if not inputs:
            raise DefinitionError(f"pipeline {pipeline.name!r} has no samples; pass inputs="
                                  "{topic: rows or records}.")
    from .serde import JsonSerde

    codecs = TopicCodecs(source_topics(sources), JsonSerde(), JsonSerde())  # keys' bytes
    counts: dict[str, int] = {}
    lanes: list[list[tuple[int, int, str, int, Any, Any, Any]]] = []
    for order, (topic, data) in enumerate(
            sorted(inputs.items(), key=lambda kv: list(sources).index(kv[0])
                   if kv[0] in sources else -1)):
        node = sources.get(topic)
        if node is None:
            raise DefinitionError(f"inputs: {topic!r} is not a source topic of pipeline "
                                  f"{pipeline.name!r}." + did_you_mean(topic, sources))
        spec = node.params["spec"]
        parts = spec.partitions or 1
        counts[topic] = parts
        if isinstance(data, list) and data and all(isinstance(r, Record) for r in data):
            extract = time_extractor(spec)
            recs = []
            for r in data:
                ts = r.timestamp
                if extract is not None and r.value is not None:
                    with contextlib.suppress(Exception):  # the engine reports it when it runs
                        ts = extract(r.value)
                recs.append((r.key, r.value, ts, r.headers))
        else:
            rows, _cols = normalize_sample(data, topic) if not isinstance(data, list) \
                else (data, None)
            recs = [(k, v, t, h) for k, v, t, _s, h in
                    rows_to_records(spec, rows or [], now_ms=0, copy=True)]
        per_part: dict[int, list[Any]] = {}
        partitioner = codecs.partitioner(topic)
        for i, (k, v, t, h) in enumerate(recs):
            p = 0 if parts == 1 else partitioner.partition(k, parts, i)
            lane = per_part.setdefault(p, [])
            lane.append((t, order, topic, p, k, v, h))
        for p in sorted(per_part):
            lanes.append(per_part[p])
    merged = heapq.merge(*lanes, key=lambda x: (x[0], x[1])) if len(lanes) > 1 else (
        lanes[0] if lanes else [])
    offsets: dict[tuple[str, int], int] = {}
    timeline = []
    for index, (t, _order, topic, p, k, v, h) in enumerate(merged):
        off = offsets.get((topic, p), 0)
        offsets[(topic, p)] = off + 1
        timeline.append(InputRecord(index, topic, p, off, k, v, t, h,
                                    frame_schema(sources[topic])))
    return timeline, counts


# -- state stores → rows ----------------------------------------------------------------------
def _finalizer(op: Any) -> Callable[[Any], Any] | None:
    fin = getattr(op, "_fin", None)
    return fin if callable(fin) else None


def _final(fin: Callable[[Any], Any] | None, acc: Any) -> Any:
    if fin is None or acc is None:
        return acc
    try:
        return fin(acc)
    except Exception:
        return acc


def store_rows(store: Any, op: Any = None) -> list[dict[str, Any]]:
    """The contents of a state store as rows (``key``, window/time columns, ``value``).

    Known layouts (time, sliding and session windows, stream-stream join buffers, parked
    outer-join records, per-key aggregates) get dedicated columns; any other store is read
    through its ``items()``.
    """
    cls = type(store).__name__
    fin = _finalizer(op)
    rows: list[dict[str, Any]] = []
    if cls in ("TimeWindowStore", "ColumnarWindowStore") and hasattr(store, "windows"):
        size = getattr(op, "size", None)
        for start in sorted(store.windows):
            for key, entry in store.windows[start].items():
                rows.append({"key": key, "window_start": start,
                             "window_end": None if size is None else start + size,
                             "timestamp": entry[1], "value": _final(fin, entry[0])})
    elif cls == "SlidingWindowStore" and hasattr(store, "keys"):
        d = getattr(op, "d", None)
        for key, (starts, values) in list(store.keys.items()):
            for start in starts:
                agg, ts = values[start]
                rows.append({"key": key, "window_start": start,
                             "window_end": None if d is None else start + d,
                             "timestamp": ts, "value": _final(fin, agg)})
    elif cls in ("SessionStore", "ColumnarSessionStore") and hasattr(store, "sessions"):
        for key, sessions in list(store.sessions.items()):
            for start, end, agg in sessions:
                rows.append({"key": key, "window_start": start, "window_end": end,
                             "value": _final(fin, agg)})
    elif cls == "JoinWindowStore" and hasattr(store, "data"):
        # what a join lookup can still see: records older than the retention are expired,
        # whether or not the store has dropped them yet
        observed, retention = getattr(store, "observed", None), getattr(store, "retention", None)
        floor = observed - retention if isinstance(observed, int) and isinstance(
            retention, int) and observed >= 0 else None
        for key, entries in list(store.data.items()):
            for t, _rid, value in entries:
                if floor is None or t > floor:
                    rows.append({"key": key, "timestamp": t, "value": value})
    elif cls == "OuterJoinStore" and hasattr(store, "entries"):
        for t, side, _kb, rid in list(store.order):
            key, value = store.entries[rid]
            rows.append({"key": key, "timestamp": t, "side": "left" if side else "right",
                         "value": value})
    elif cls in ("AggKVStore", "ColumnarAggStore") and hasattr(store, "data"):
        for key, (agg, ts) in list(store.data.items()):
            rows.append({"key": key, "timestamp": ts, "value": _final(fin, agg)})
    elif cls == "TimestampedKeyValueStore":  # the Processor API's (runtime/process_stores.py)
        for key, entry in store.items():
            rows.append({"key": key, "timestamp": entry.timestamp, "value": entry.value})
    elif getattr(store, "kind", None) == "session" and hasattr(store, "find_sessions"):
        for session, value in store.items():
            rows.append({"key": session[0], "window_start": session[1],
                         "window_end": session[2], "value": value})
    elif hasattr(store, "items"):
        for key, value in store.items():
            rows.append({"key": key, "value": value})
    else:
        rows.append({"key": None, "value": repr(store)})
    return rows


def _rows_frame(rows: list[dict[str, Any]], schema: FrameSchema | None = None
                ) -> pd.DataFrame:
    """State-store rows → the frame every surface uses (:mod:`workbench.frames`): key (named
    after the step's key field), window columns, timestamp, then extra columns of the store
    (``side`` of a parked outer-join record) and the value's fields."""
    from .frames import FrameSchema, build_frame
    from .types import Change
    from .windows import Windowed

    keys: list[Any] = []
    values: list[Any] = []
    stamps: list[Any] = []
    extras: dict[str, list[Any]] = {}
    for r in rows:
        key = r.get("key")
        if "window_start" in r and not isinstance(key, Windowed):
            key = Windowed(key, r["window_start"], r.get("window_end"))  # type: ignore[arg-type]
        keys.append(key)
        value = r.get("value")
        values.append(value.new if isinstance(value, Change) else value)
        stamps.append(r.get("timestamp"))
        for c in r:
            if c not in ("key", "value", "timestamp", "window_start", "window_end"):
                extras.setdefault(c, [])
    for r in rows:
        for c, col in extras.items():
            col.append(r.get(c))
    frame = build_frame(keys, values, stamps, schema or FrameSchema())
    if extras:
        at = list(frame.columns).index("timestamp") + 1
        for offset, (c, col) in enumerate(extras.items()):
            frame.insert(at + offset, c if c not in frame.columns else f"store.{c}", col)
    return frame


# -- the debugger -----------------------------------------------------------------------------
class _ScrubDriver(Driver):
    """The debugger's private in-memory driver. Its logs keep their history when rewound: a
    rewind (backwards or forwards, to any :meth:`mark`) only moves each partition's visible end,
    and an append that writes what the history already holds just moves the end forward. An
    append that differs (a pipeline that is not deterministic) drops the history after it and
    sets ``diverged``."""

    scheme = "memory"

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"memory://{name}"
        self._hist: dict[str, list[list[tuple[Any, Any, int, Any]]]] = {}
        self._vis: dict[str, list[int]] = {}
        self._positions: dict[tuple[str, str, int], int] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self.diverged = False

    # -- log
    def partitions(self, topic: str) -> int | None:
        h = self._hist.get(topic)
        return None if h is None else len(h)

    def create_topic(self, topic: str, partitions: int, *, kind: str = "source",
                     compact: bool = False) -> None:
        if topic not in self._hist:
            self._hist[topic] = [[] for _ in range(partitions)]
            self._vis[topic] = [0] * partitions

    def topics(self) -> list[str]:
        return sorted(self._hist)

    def _check(self, topic: str, partition: int) -> None:
        if topic not in self._hist:
            raise DriverError(f"topic {topic!r} does not exist on {self.url}.")
        if not 0 <= partition < len(self._hist[topic]):
            raise DriverError(f"topic {topic!r} has no partition {partition}.")

    def append(self, topic: str, partition: int, records: Iterable[Any]) -> None:
        self._check(topic, partition)
        hist = self._hist[topic][partition]
        vis = self._vis[topic]
        i = vis[partition]
        for r in records:
            rec = (r[0], r[1], r[2], r[4])
            if i < len(hist):
                old = hist[i]
                try:
                    same = old is rec or old == rec
                except Exception:
                    same = False
                if not same:
                    del hist[i:]
                    hist.append(rec)
                    self.diverged = True
            else:
                hist.append(rec)
            i += 1
        vis[partition] = i

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> list[Any]:
        self._check(topic, partition)
        end = min(offset + max_records, self._vis[topic][partition])
        hist = self._hist[topic][partition]
        return [(k, v, t, o, h) for o, (k, v, t, h) in zip(range(offset, end),
                                                          hist[offset:end])]

    def end_offset(self, topic: str, partition: int) -> int:
        self._check(topic, partition)
        return self._vis[topic][partition]

    # -- transactions
    def committed(self, app_id: str, topic: str, partition: int) -> int:
        return self._positions.get((app_id, topic, partition), 0)

    def committed_metadata(self, app_id: str) -> dict[str, Any]:
        return dict(self._metadata.get(app_id, {}))

    def commit(self, txn: Transaction) -> None:
        for (topic, partition), records in txn.outputs.items():
            self.append(topic, partition, records)
        for (topic, partition), offset in txn.positions.items():
            self._positions[(txn.app_id, topic, partition)] = offset
        if txn.metadata:
            self._metadata.setdefault(txn.app_id, {}).update(txn.metadata)

    # -- rewinding
    def mark(self) -> tuple[dict[str, list[int]], dict[Any, int], dict[str, Any]]:
        """Every partition's visible end, the committed positions and metadata."""
        return ({t: list(v) for t, v in self._vis.items()}, dict(self._positions),
                copy.deepcopy(self._metadata))

    def rewind(self, mark: tuple[dict[str, list[int]], dict[Any, int], dict[str, Any]]) -> None:
        """Move every partition's visible end to ``mark`` (backwards or forwards)."""
        lengths, positions, metadata = mark
        for topic, vis in self._vis.items():
            ends = lengths.get(topic)
            for p in range(len(vis)):
                vis[p] = ends[p] if ends is not None and p < len(ends) else 0
        self._positions = dict(positions)
        self._metadata = copy.deepcopy(metadata)


@dataclass
class _Checkpoint:
    engine: Engine
    mark: Any


@dataclass
class DebugState:
    """The pipeline's state at one offset of the timeline (see the module docstring).

    Attributes:
        offset: the timeline offset (``len(timeline)``: the end of input).
        record: the input record at that offset (``None`` at the end of input).
        state: ``{store name: DataFrame}``, every state store of every operator (a
            ``partition`` column when the step runs in several tasks).
        outputs: ``{topic: DataFrame}``, what each output topic received so far.
        emitted: ``{topic: DataFrame}``, what that record (or the end of input) added.
        stream_time: the engine's stream time (epoch ms; -1 before any record).
        steps: ``{store name: step name}``.
    """

    offset: int
    total: int
    record: InputRecord | None
    state: dict[str, pd.DataFrame]
    outputs: dict[str, pd.DataFrame]
    emitted: dict[str, pd.DataFrame]
    stream_time: int
    steps: dict[str, str] = field(default_factory=dict)

    @property
    def at_end(self) -> bool:
        """True for the end-of-input state."""
        return self.record is None

    def panels_html(self, rows: int = 10) -> dict[str, str]:
        """HTML of the three panels: ``record``, ``state`` and ``outputs``."""
        from .display.frame import frame_html
        from .display.live import _fmt_time

        width = 60
        if self.record is None:
            rec = (f"<div class='wb-preview'><b>end of input</b> (after offset "
                   f"{self.total - 1}): open windows closed, parked join records emitted · "
                   f"stream time {_fmt_time(self.stream_time)}</div>")
        else:
            r = self.record
            rec = frame_html(r.frame(), title=(f"input offset {self.offset} of {self.total} · "
                                               f"topic {r.topic} partition {r.partition} offset "
                                               f"{r.offset} · stream time "
                                               f"{_fmt_time(self.stream_time)}"),
                             rows=1, width=width,
                             key_columns=("offset", "topic", "key", "timestamp"))
        state = []
        for name, frame in self.state.items():
            step = self.steps.get(name, "")
            title = f"state {name}" + (f" (step {step})" if step else "")
            state.append(frame_html(frame, title=title, rows=rows, width=width))
        if not state:
            state.append("<div class='wb-preview'>no state stores</div>")
        outs = []
        for topic, frame in self.outputs.items():
            new = len(self.emitted.get(topic, ()))
            title = f"topic {topic} · {len(frame):,} so far, {new} from this offset (newest first)"
            outs.append(frame_html(frame.iloc[::-1], title=title, total_rows=len(frame),
                                   rows=rows, width=width))
        return {"record": rec, "state": "".join(state), "outputs": "".join(outs)}

    def __repr__(self) -> str:
        where = "end of input" if self.record is None else (
            f"{self.record.topic}[{self.record.partition}]@{self.record.offset} "
            f"key={self.record.key!r}")
        stores = ", ".join(f"{n}: {len(f)} rows" for n, f in self.state.items())
        outs = ", ".join(f"{t}: {len(f)}" for t, f in self.outputs.items())
        return (f"<DebugState offset {self.offset}/{self.total} ({where}); state {{{stores}}}; "
                f"outputs {{{outs}}}>")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        p = self.panels_html()
        body = (f"<div>{p['record']}</div><div style='display:flex;flex-wrap:wrap;gap:16px'>"
                f"<div>{p['state']}</div><div>{p['outputs']}</div></div>")
        return {"text/plain": repr(self), "text/html": body}


class Debugger:
    """Step a pipeline through its inputs and load the state at any offset.

    Args:
        pipeline: the pipeline.
        inputs: ``{topic: DataFrame | list of dicts | path | list of Record}`` (``Record``s,
            e.g. from :func:`read_slice`, keep their key and timestamp); default: the samples.
        checkpoint_every: offsets between state checkpoints (going back replays at most this
            many records).
    """

    def __init__(self, pipeline: Pipeline, inputs: Mapping[str, Any] | None = None, *,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY) -> None:
        from .runtime.clock import ManualClock
        from .runtime.engine import Engine

        if checkpoint_every < 1:
            raise DefinitionError("checkpoint_every must be >= 1.")
        self.pipeline = pipeline
        self.checkpoint_every = checkpoint_every
        self.timeline, partitions = _timeline(pipeline, inputs)
        self.plan = pipeline.plan()
        self.driver = _ScrubDriver(f"debug-{pipeline.name}")
        for topic, n in partitions.items():
            self.driver.create_topic(topic, n, kind="source")
        self.clock = ManualClock(0)
        self.engine = Engine(self.plan, self.driver, clock=self.clock,
                             commit_interval_ms=2**62)
        self.engine.start()
        self.sinks = list(dict.fromkeys(pipeline.sinks))
        #: number of inputs processed (len(timeline) + 1 once the end of input is flushed)
        self.position = 0
        self._checkpoints: dict[int, _Checkpoint] = {}
        #: output topic ends after each position (ends[s] = {topic: records})
        self._ends: dict[int, dict[str, tuple[int, ...]]] = {0: self._sink_ends()}
        self.replayed = 0  # records processed by the last seek (for tests and tuning)
        self._checkpoint()

    # -- engine control -----------------------------------------------------------------------
    def _memo(self) -> dict[int, Any]:
        e = self.engine
        shared = [self.driver, self.plan, self.clock, e.partitioner, e._stop, e.on_commit]
        return {id(o): o for o in shared}

    def _checkpoint(self) -> None:
        self._checkpoints[self.position] = _Checkpoint(
            copy.deepcopy(self.engine, self._memo()), self.driver.mark())

    def _restore(self, position: int) -> None:
        cp = self._checkpoints[position]
        self.driver.rewind(cp.mark)
        self.engine = copy.deepcopy(cp.engine, self._memo())
        self.position = position

    def _sink_ends(self) -> dict[str, tuple[int, ...]]:
        out = {}
        for t in self.sinks:
            n = self.driver.partitions(t)
            out[t] = () if n is None else tuple(self.driver.end_offset(t, p) for p in range(n))
        return out

    def _step(self) -> None:
        """Process the next input record (or, past the last, the end of input)."""
        s = self.position
        n = len(self.timeline)
        if s < n:
            r = self.timeline[s]
            value = dict(r.value) if isinstance(r.value, dict) else r.value
            self.driver.append(r.topic, r.partition, [(r.key, value, r.timestamp, None,
                                                       r.headers)])
            self.engine.process_available()
        elif s == n:
            self.engine.finish()
        else:
            raise IndexError("already at the end of input")
        self.position = s + 1
        self.replayed += 1
        if self.driver.diverged:  # not deterministic: what lay ahead is no longer valid
            self.driver.diverged = False
            for c in [c for c in self._checkpoints if c > self.position]:
                del self._checkpoints[c]
            for e in [e for e in self._ends if e > self.position]:
                del self._ends[e]
        self._ends[self.position] = self._sink_ends()
        if self.position % self.checkpoint_every == 0 and self.position not in \
                self._checkpoints and self.position <= n:
            self._checkpoint()

    @public
    def seek(self, offset: int) -> None:
        """Move to the state right after input ``offset`` (``len(timeline)``: end of input)."""
        n = len(self.timeline)
        if not isinstance(offset, int) or not -1 <= offset <= n:
            raise IndexError(f"offset {offset!r} out of range: the timeline has {n} records "
                             f"(0..{n - 1}; {n} is the end of input).")
        target = offset + 1
        self.replayed = 0
        if target < self.position:
            self._restore(max(c for c in self._checkpoints if c <= target))
        elif target > self.position:
            ahead = [c for c in self._checkpoints if self.position < c <= target]
            if ahead:  # the history ahead is intact: jump to the nearest checkpoint
                self._restore(max(ahead))
        while self.position < target:
            self._step()

    # -- reading ------------------------------------------------------------------------------
    def state_frames(self) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
        """``{store name: DataFrame}`` of every operator's stores now, and ``{store: step}``."""
        import pandas as pd

        per_store: dict[str, list[pd.DataFrame]] = {}
        steps: dict[str, str] = {}
        tasks = sorted(self.engine.tasks, key=lambda t: (t.subtopology.id, t.partition))
        multi: dict[str, int] = {}
        for task in tasks:
            for rn in task.nodes:
                for store in getattr(rn.op, "stores", ()) or ():
                    multi[store.name] = multi.get(store.name, 0) + 1
        from .frames import frame_schema

        for task in tasks:
            for rn in task.nodes:
                op = rn.op
                step = self.pipeline._names.get(getattr(op, "name", ""))
                schema = frame_schema(step) if step else None
                for store in getattr(op, "stores", ()) or ():
                    frame = _rows_frame(store_rows(store, op), schema)
                    if multi[store.name] > 1:
                        frame.insert(0, "partition", task.partition)
                    per_store.setdefault(store.name, []).append(frame)
                    steps[store.name] = getattr(op, "name", "")
        out = {}
        for name, frames in per_store.items():
            nonempty = [f for f in frames if len(f)]
            out[name] = (pd.concat(nonempty, ignore_index=True) if len(nonempty) > 1
                         else (nonempty[0] if nonempty else frames[0]))
        return out, steps

    def output_frames(self, since: int | None = None) -> dict[str, pd.DataFrame]:
        """``{topic: DataFrame}`` of what each output holds now (``since``: only the records
        added after position ``since``)."""
        from .frames import records_to_frame, topic_schema

        out = {}
        for t in self.sinks:
            n = self.driver.partitions(t)
            recs: list[Any] = []
            before = self._ends.get(since, {}).get(t, ()) if since is not None else ()
            for p in range(n or 0):
                start = before[p] if p < len(before) else 0
                end = self.driver.end_offset(t, p)
                if end > start:
                    recs.extend(self.driver.read(t, p, start, end - start))
            out[t] = records_to_frame(recs, topic_schema(self.pipeline, t))
        return out

    @public
    def state_at(self, offset: int) -> DebugState:
        """The :class:`DebugState` right after input ``offset``."""
        self.seek(offset)
        state, steps = self.state_frames()
        n = len(self.timeline)
        return DebugState(
            offset=offset,
            total=n,
            record=self.timeline[offset] if 0 <= offset < n else None,
            state=state,
            outputs=self.output_frames(),
            emitted=self.output_frames(since=self.position - 1),
            stream_time=self.engine.stream_time,
            steps=steps,
        )

    def inputs_frame(self) -> pd.DataFrame:
        """The timeline as a DataFrame: offset, topic, partition, key, timestamp, fields."""
        from .frames import FrameSchema, records_to_frame, topic_schema

        schemas = {topic_schema(self.pipeline, t) for t in {r.topic for r in self.timeline}}
        frame = records_to_frame([(r.key, r.value, r.timestamp) for r in self.timeline],
                                 schemas.pop() if len(schemas) == 1 else FrameSchema())
        frame.insert(0, "offset", [r.index for r in self.timeline])
        frame.insert(1, "topic", [r.topic for r in self.timeline])
        return frame

    @public
    def emissions(self, topic: str) -> pd.DataFrame:
        """Every record ``topic`` receives over the whole timeline, with the ``offset`` of the
        input that produced it (``len(timeline)``: the end of input). Runs the timeline to the
        end once."""
        if topic not in self.sinks:
            raise DefinitionError(f"{topic!r} is not an output topic of pipeline "
                                  f"{self.pipeline.name!r}." + did_you_mean(topic, self.sinks))
        n = len(self.timeline)
        self.seek(n)
        parts = self.driver.partitions(topic) or 0
        recs: list[Any] = []
        causes: list[int] = []
        for p in range(parts):
            prev = 0
            for s in range(1, n + 2):
                ends = self._ends[s].get(topic, ())
                end = ends[p] if p < len(ends) else 0
                causes.extend([s - 1] * (end - prev))
                prev = end
            recs.extend(self.driver.read(topic, p, 0, prev))
        from .frames import records_to_frame, topic_schema

        frame = records_to_frame(recs, topic_schema(self.pipeline, topic))
        frame.insert(0, "offset", causes[: len(frame)])
        return frame.sort_values("offset", kind="stable").reset_index(drop=True)

    def find(self, predicate: Callable[[InputRecord], Any]) -> list[int]:
        """Offsets of the input records for which ``predicate(record)`` holds."""
        return [r.index for r in self.timeline if predicate(r)]

    def __len__(self) -> int:
        return len(self.timeline)

    def __repr__(self) -> str:
        return (f"<Debugger {self.pipeline.name!r}: {len(self.timeline)} input records, "
                f"at offset {self.position - 1}, {len(self._checkpoints)} checkpoints>")


_LAST: list[Any] = []


def _debugger_for(pipeline: Pipeline, inputs: Mapping[str, Any] | None,
                  checkpoint_every: int) -> Debugger:
    key = (id(pipeline), pipeline._version, id(inputs), checkpoint_every)
    if _LAST and _LAST[0] == key and _LAST[1].pipeline is pipeline:
        dbg: Debugger = _LAST[1]
        return dbg
    dbg = Debugger(pipeline, inputs, checkpoint_every=checkpoint_every)
    _LAST[:] = [key, dbg]
    return dbg


@public
def state_at(pipeline: Pipeline, inputs: Mapping[str, Any] | None = None, offset: int = 0, *,
             checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY) -> DebugState:
    """The pipeline's state right after input ``offset`` (headless; see the module docstring).

    Repeated calls with the same pipeline and ``inputs`` object reuse one :class:`Debugger`,
    so moving back and forth is cheap.
    """
    return _debugger_for(pipeline, inputs, checkpoint_every).state_at(offset)


# -- the widget -------------------------------------------------------------------------------
class Scrubber:
    """An ipywidgets offset scrubber over a :class:`Debugger`.

    Attributes:
        debugger: the debugger.
        slider: the offset slider (recomputes when released: ``continuous_update=False``).
        play: the play button (steps the slider forward).
        panels: ``{"record", "state", "outputs"}`` → ``ipywidgets.HTML``.
        current: the :class:`DebugState` shown.
    """

    def __init__(self, debugger: Debugger, offset: int = 0, *, rows: int = 10,
                 interval_ms: int = 600) -> None:
        import ipywidgets as w

        self.debugger = debugger
        self.rows = rows
        n = len(debugger.timeline)
        self.slider = w.IntSlider(value=offset, min=0, max=n, step=1,
                                  description="offset", continuous_update=False,
                                  layout=w.Layout(width="60%"))
        self.play = w.Play(value=offset, min=0, max=n, step=1, interval=interval_ms,
                           description="play")
        self.link = w.link((self.play, "value"), (self.slider, "value"))
        self.prev = w.Button(description="◀", tooltip="previous offset",
                             layout=w.Layout(width="40px"))
        self.next = w.Button(description="▶", tooltip="next offset",
                             layout=w.Layout(width="40px"))
        self.prev.on_click(lambda _b: self._nudge(-1))
        self.next.on_click(lambda _b: self._nudge(1))
        self.label = w.HTML()
        self.panels = {name: w.HTML() for name in ("record", "state", "outputs")}
        self.widget = w.VBox([
            w.HBox([self.play, self.prev, self.slider, self.next, self.label]),
            self.panels["record"],
            w.HBox([self.panels["state"], self.panels["outputs"]],
                   layout=w.Layout(flex_flow="row wrap", grid_gap="16px")),
        ])
        self.current: DebugState | None = None
        self.slider.observe(self._on_change, names="value")
        self._fallback: Any = None
        # the frontend counts the views it renders: a live view replaces the static fallback
        self.widget._view_count = 0
        self.widget.observe(self._on_views, names="_view_count")
        self.show(offset)

    def _nudge(self, delta: int) -> None:
        self.slider.value = min(self.slider.max, max(0, self.slider.value + delta))

    def _on_change(self, change: Mapping[str, Any]) -> None:
        self.show(int(change["new"]))

    def show(self, offset: int) -> DebugState:
        """Load ``offset`` into the panels (what moving the slider does)."""
        st = self.debugger.state_at(offset)
        self.current = st
        p = st.panels_html(self.rows)
        for name, widget in self.panels.items():
            widget.value = p[name]
        self.label.value = html.escape(
            f"replayed {self.debugger.replayed} record(s)"
            + (" · end of input" if st.at_end else ""))
        if self.slider.value != offset:
            self.slider.value = offset
        return st

    def fallback_bundle(self) -> dict[str, str]:
        """The static render of the state shown now (text and HTML), for where the widget
        cannot render: a notebook exported with nbconvert, GitHub, an offline page."""
        if self.current is None:
            return {"text/plain": repr(self)}
        bundle = self.current._repr_mimebundle_()
        note = ("static snapshot of the offset scrubber at offset "
                f"{self.current.offset}: run the notebook to move it")
        bundle["text/html"] = (f'<div class="wb-scrubber-fallback"><div class="wb-meta">'
                               f"<i>{html.escape(note)}</i></div>{bundle['text/html']}</div>")
        bundle["text/plain"] = f"{bundle['text/plain']}\n({note})"
        return bundle

    def _ipython_display_(self) -> None:
        """In IPython: two outputs, the static fallback and the widget. nbconvert, GitHub and
        offline pages show the fallback (they render no widgets, and pick a widget output's
        own fallback only in some cases); a frontend that renders the widget counts its
        view, and the fallback is then emptied, so JupyterLab shows the widget alone."""
        from IPython.display import display

        self._fallback = display(self.fallback_bundle(), raw=True,  # type: ignore[no-untyped-call]
                                 display_id=True)
        display(self.widget)  # type: ignore[no-untyped-call]

    def _on_views(self, change: Mapping[str, Any]) -> None:
        if change.get("new") and self._fallback is not None:
            self._fallback.update({}, raw=True)
            self._fallback = None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        bundle: dict[str, Any] = {}
        if self.current is not None:
            bundle.update(self.current._repr_mimebundle_())
        wb = self.widget._repr_mimebundle_(include=include, exclude=exclude)
        if isinstance(wb, tuple):
            wb = wb[0]
        if wb:
            text = bundle.get("text/plain")
            bundle.update(wb)
            if text:
                bundle["text/plain"] = text
        return bundle


def scrubber(pipeline: Pipeline, inputs: Mapping[str, Any] | None = None, offset: int = 0,
             *, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY, rows: int = 10,
             interval_ms: int = 600) -> Scrubber:
    """An offset scrubber widget (needs ``ipywidgets``): a slider over the input offsets, a
    play button, and panels with the input record, every operator's state and the outputs
    so far. See :class:`Scrubber`."""
    dbg = Debugger(pipeline, inputs, checkpoint_every=checkpoint_every)
    return Scrubber(dbg, offset, rows=rows, interval_ms=interval_ms)
