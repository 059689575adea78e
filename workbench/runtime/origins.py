"""Where a record read from a repartition topic came from (its *origin*), for error messages.

A record that crosses a repartition topic gets a new position (``<app>-<step>-repartition``,
partition, offset); an error in a later step would name only that position. Workbench keeps the
position of the input record each repartitioned record came from, as columns beside the records
(no per-record Python objects):

* a task's repartition sink asks the task for the origins of each batch it collects
  (:meth:`Task.origin_columns <workbench.runtime.task.Task.origin_columns>`: NumPy arrays computed
  from the batch's ``seq``), held as an :class:`OriginColumns` in ``Batch.origin``, which
  ``take`` and ``concat`` carry along;
* the in-memory driver keeps them as they are, beside its log (``keeps_origins``); for the
  other drivers the engine turns them into one compact header per record
  (:data:`ORIGIN_HEADER`: the source topic's name, a zero byte, then partition and offset as
  big-endian int32 and int64), built in bulk, and takes the header off again when the
  repartition topic is read, so user sinks never see it;
* only when an error names a record of a repartition topic does the engine look its origin up
  (:class:`SourceResolver`: one read of that record), following chains of repartition topics
  back to the first topic that is not one.

See ``docs/semantics.md`` ("Errors") for what users see, and
``benchmarks/bench_origins.py`` for what it costs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

import numpy as np

from ..drivers.base import ORIGIN_HEADER

__all__ = [
    "ORIGIN_HEADER",
    "OriginColumns",
    "SourceResolver",
    "decode_header",
    "describe",
    "origin_columns",
    "rows_with_headers",
    "strip_headers",
    "without_origins",
    "with_headers",
]


Origin = tuple[Any, Any, Any]

_NONE3: Origin = (None, None, None)


class OriginColumns:
    """The origin (topic, partition, offset) of each record of a batch, as columns.

    ``which[i]`` indexes ``topics`` (``-1``: unknown, e.g. a record forwarded by a
    punctuation); ``partition[i]`` and ``offset[i]`` are the position in that topic. The three
    are fields of one structured array (``rows``), so that ``take`` indexes once.
    """

    __slots__ = ("rows", "topics")

    def __init__(self, topics: tuple[str, ...], which: np.ndarray, partition: np.ndarray,
                 offset: np.ndarray) -> None:
        self.topics = topics
        rows = np.empty(len(which), dtype=_ROW)
        rows["w"] = which
        rows["p"] = partition
        rows["o"] = offset
        self.rows = rows

    @classmethod
    def _of(cls, topics: tuple[str, ...], rows: np.ndarray) -> OriginColumns:
        new = cls.__new__(cls)
        new.topics = topics
        new.rows = rows
        return new

    @property
    def which(self) -> np.ndarray:
        return self.rows["w"]

    @property
    def partition(self) -> np.ndarray:
        return self.rows["p"]

    @property
    def offset(self) -> np.ndarray:
        return self.rows["o"]

    def __len__(self) -> int:
        return len(self.rows)

    @staticmethod
    def unknown(n: int) -> OriginColumns:
        """``n`` records of unknown origin."""
        rows = np.zeros(n, dtype=_ROW)
        rows["w"] = -1
        return OriginColumns._of((), rows)

    def take(self, idx: Any) -> OriginColumns:
        """The rows at ``idx`` (index array, boolean mask or slice)."""
        return OriginColumns._of(self.topics, self.rows[idx])

    def get(self, i: int) -> Origin:
        """The origin of row ``i``: ``(topic, partition, offset)``, ``None`` parts if unknown."""
        w, p, o = self.rows[i].tolist()
        if w < 0:
            return _NONE3
        return (self.topics[w], p, o)

    @staticmethod
    def concat(parts: Sequence[OriginColumns | None], lengths: Sequence[int]) -> OriginColumns:
        """One :class:`OriginColumns` for batches of ``lengths`` records (``None``: unknown)."""
        first = parts[0]
        if first is not None and all(p is not None and p.topics == first.topics
                                     for p in parts):  # the common case: one task's batches
            return OriginColumns._of(first.topics,
                                     np.concatenate([p.rows for p in parts]))  # type: ignore
        topics: list[str] = []
        index: dict[str, int] = {}
        pieces = []
        for part, n in zip(parts, lengths):
            if part is None:
                part = OriginColumns.unknown(n)
            rows = part.rows
            k = len(part.topics)
            remap = np.empty(k + 1, dtype=np.int32)
            remap[k] = -1  # which == -1 (unknown) stays -1
            for j, t in enumerate(part.topics):
                if t not in index:
                    index[t] = len(topics)
                    topics.append(t)
                remap[j] = index[t]
            if k and not np.array_equal(remap[:k], np.arange(k)):
                rows = rows.copy()
                rows["w"] = remap[rows["w"]]
            pieces.append(rows)
        return OriginColumns._of(tuple(topics), np.concatenate(pieces))


#: one record's origin: index into ``topics``, partition, offset
_ROW = np.dtype([("w", "<i4"), ("p", "<i4"), ("o", "<i8")])


def origin_columns(task: Any, seq: np.ndarray) -> OriginColumns:
    """The origins of the records with ``seq`` that ``task`` is processing now (see
    :meth:`Task.origin_columns <workbench.runtime.task.Task.origin_columns>`)."""
    n = len(seq)
    override = task._origin_override
    if override is not None:  # results of external calls: their own resolver, per record
        return _from_tuples([override(s) for s in seq.tolist()])
    if seq.dtype == np.int64:
        valid = seq >= 0
        s = seq
    else:  # seq + 0.5: forwarded by a punctuation after record seq, not from it
        valid = (seq >= 0) & (seq == np.floor(seq))
        s = seq.astype(np.int64)
    single = task._single_origin
    if single is not None:
        return OriginColumns((single[0],), np.where(valid, 0, -1).astype(np.int32),
                             np.full(n, single[1], dtype=np.int32),
                             np.array(s, dtype=np.int64))
    found = task._origins
    if found is None or not len(found.offsets):
        return OriginColumns.unknown(n)
    i = s - found.seq_start
    ok = valid & (i >= 0) & (i < len(found.offsets))
    i = np.where(ok, i, 0)
    return OriginColumns(tuple(found.topics),
                         np.where(ok, found.which[i], -1).astype(np.int32),
                         np.full(n, task._origin_partition, dtype=np.int32),
                         np.where(ok, found.offsets[i], 0).astype(np.int64))


def _from_tuples(items: list[Origin]) -> OriginColumns:
    topics: dict[str, int] = {}
    which = np.full(len(items), -1, dtype=np.int32)
    partition = np.zeros(len(items), dtype=np.int32)
    offset = np.zeros(len(items), dtype=np.int64)
    for i, (t, p, o) in enumerate(items):
        if t is not None and p is not None and o is not None:
            which[i] = topics.setdefault(t, len(topics))
            partition[i] = p
            offset[i] = o
    return OriginColumns(tuple(topics), which, partition, offset)


# -- headers (drivers that store headers, not columns) -------------------------------------------
def _encode(origin: OriginColumns) -> list[Any]:
    """One header value (bytes) per row, ``None`` where the origin is unknown; in bulk."""
    n = len(origin)
    rows = origin.rows
    if len(origin.topics) == 1 and rows["w"].min() >= 0:  # the common case
        return _pack(origin.topics[0], rows["p"], rows["o"])
    out: list[Any] = [None] * n
    for w, topic in enumerate(origin.topics):
        at = np.flatnonzero(origin.which == w)
        if len(at):
            for i, v in zip(at.tolist(), _pack(topic, origin.partition[at], origin.offset[at])):
                out[i] = v
    return out


def _pack(topic: str, partition: np.ndarray, offset: np.ndarray) -> list[bytes]:
    name, dtype, view = _layout(topic)
    packed = np.zeros(len(offset), dtype=dtype)  # the zero byte after the name stays 0
    packed["t"] = name
    packed["p"] = partition
    packed["o"] = offset
    values: list[bytes] = packed.view(view).tolist()
    return values


_LAYOUTS: dict[str, tuple[bytes, np.dtype, np.dtype]] = {}


def _layout(topic: str) -> tuple[bytes, np.dtype, np.dtype]:
    """The header value layout of ``topic``: its name, the record dtype, the bytes dtype."""
    found = _LAYOUTS.get(topic)
    if found is None:
        name = topic.encode()
        found = _LAYOUTS[topic] = (
            name, np.dtype([("t", f"S{len(name)}"), ("z", "u1"), ("p", ">i4"), ("o", ">i8")]),
            np.dtype(f"V{len(name) + 13}"))
    return found


def _header_tuples(values: list[Any], old: np.ndarray | None) -> Any:
    """Per record: its own headers (``old``) followed by the origin header of ``values``."""
    key = ORIGIN_HEADER
    if old is None:
        if None not in values:
            return zip(zip(repeat(key), values))  # ((key, value),) per record, made in C
        return [((key, v),) if v is not None else None for v in values]
    out: list[Any] = []
    for h, v in zip(old.tolist(), values):
        if v is None:
            out.append(h or None)
        elif h:
            out.append((*h, (key, v)))
        else:
            out.append(((key, v),))
    return out


def decode_header(value: Any) -> Origin | None:
    """The origin that an :data:`ORIGIN_HEADER` value holds, or ``None`` if it holds none."""
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        return None
    raw = bytes(value)
    if len(raw) < 14 or raw[-13] != 0:
        return None
    try:
        topic = raw[:-13].decode()
    except UnicodeDecodeError:
        return None
    return (topic, int.from_bytes(raw[-12:-8], "big", signed=True),
            int.from_bytes(raw[-8:], "big", signed=True))


def with_headers(batch: Any) -> Any:
    """``batch`` with its origins moved into an :data:`ORIGIN_HEADER` header per record (after
    the record's own headers), for drivers that store headers; ``batch.origin`` cleared."""
    origin = batch.origin
    if origin is None or not len(batch):
        return batch
    from .batch import Batch, obj_array

    n = len(batch)
    headers = obj_array(_header_tuples(_encode(origin), batch.headers), n)
    return Batch(batch.keys, batch.values, batch.ts, batch.seq,
                 headers if any(h is not None for h in headers.tolist()) else None,
                 batch.time_field)


def rows_with_headers(batch: Any) -> list[Any]:
    """``batch.rows()`` with the origins as :data:`ORIGIN_HEADER` headers (see
    :func:`with_headers`), built without a headers column in between."""
    if batch.origin is None or not len(batch):
        rows: list[Any] = batch.rows()
        return rows
    headers = _header_tuples(_encode(batch.origin), batch.headers)
    return list(zip(batch.key_objects().tolist(), batch.values.objects().tolist(),
                    batch.ts.tolist(), batch.seq.tolist(), headers))


def _strip_one(h: Any) -> Any:
    if not h:
        return None
    kept = tuple(x for x in h if x[0] != ORIGIN_HEADER)
    return kept or None


def strip_headers(batch: Any) -> Any:
    """``batch`` without :data:`ORIGIN_HEADER` headers (records read from a repartition topic):
    the records' own headers stay, as Kafka Streams forwards them."""
    hs = batch.headers
    if hs is None:
        return batch
    from .batch import Batch, obj_array

    key = ORIGIN_HEADER
    items = hs.tolist()
    stripped = [None if h is not None and len(h) == 1 and h[0][0] == key else _strip_one(h)
                for h in items]
    any_left = any(h is not None for h in stripped)
    return Batch(batch.keys, batch.values, batch.ts, batch.seq,
                 obj_array(stripped, len(stripped)) if any_left else None, batch.time_field)


def without_origins(batch: Any) -> Any:
    """A batch read from a repartition topic as the steps after it see it: no origin columns
    (the in-memory driver hands out its stored batches), no :data:`ORIGIN_HEADER`."""
    if batch.origin is not None:
        from .batch import Batch

        batch = Batch(batch.keys, batch.values, batch.ts, batch.seq, batch.headers,
                      batch.time_field)
    return strip_headers(batch) if batch.headers is not None else batch


# -- resolving -----------------------------------------------------------------------------------
class SourceResolver:
    """Looks up where a record of a repartition topic came from, following repartition topics
    back to the first topic that is not one (at most ``depth`` of them).

    Args:
        driver: the engine's driver; ``driver.origin_of(topic, partition, offset)`` is used when
            it has one (the in-memory driver), else one :meth:`read` of the record and its
            :data:`ORIGIN_HEADER`.
        internal: the repartition topics of the plan.
        tracking: whether the run writes origins.
    """

    def __init__(self, driver: Any, internal: set[str], tracking: bool = True,
                 depth: int = 16) -> None:
        self.driver = driver
        self.internal = internal
        #: whether this run writes origins (else :meth:`hint` says how to turn it on)
        self.tracking = tracking
        self.depth = depth

    def hint(self, topic: Any, source: Origin | None) -> str:
        """What an error naming a record of repartition topic ``topic`` whose ``source`` is
        unknown adds: how to have it named, when this run does not track origins."""
        if source is not None or self.tracking or topic not in self.internal:
            return ""
        return (" (to name the input record it came from, run with WORKBENCH_ORIGINS=1: "
                "records written to repartition topics then carry their origin)")

    def __call__(self, topic: Any, partition: Any, offset: Any) -> Origin | None:
        """The source ``(topic, partition, offset)`` of that record, or ``None`` when it is
        not from a repartition topic or its origin is unknown."""
        found: Origin | None = None
        for _ in range(self.depth):
            if topic not in self.internal or partition is None or offset is None:
                break
            try:
                got = self._one(topic, int(partition), int(offset))
            except Exception:  # an error message must not fail in turn
                got = None
            if got is None or got[0] is None:
                break
            found = got
            topic, partition, offset = got
        return found

    def _one(self, topic: str, partition: int, offset: int) -> Origin | None:
        lookup: Callable[[str, int, int], Origin | None] | None = getattr(
            self.driver, "origin_of", None)
        if lookup is not None:
            return lookup(topic, partition, offset)
        rows = self.driver.read(topic, partition, offset, 1)
        if not rows or rows[0][3] != offset:
            return None
        for name, value in rows[0][4] or ():
            if name == ORIGIN_HEADER:
                return decode_header(value)
        return None


def describe(source: Origin | None) -> str:
    """``", which came from topic 'orders' partition 0 offset 1234"`` (empty without a source)."""
    if source is None:
        return ""
    topic, partition, offset = source
    return f", which came from topic {topic!r} partition {partition} offset {offset}"
