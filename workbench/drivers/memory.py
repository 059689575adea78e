"""The in-memory driver: a real partitioned log with offsets and transactional commits, in the
process. ``memory://`` is a fresh, private log; ``memory://NAME`` is shared by every
``connect("memory://NAME")`` in the process, so a second run resumes where the first committed.

``memory://NAME?max_records=N`` bounds the memory it holds: each partition keeps its last ``N``
records at least (whole segments of up to 4,096 records are dropped from the front, like Kafka's
size retention), so a live view of an unbounded run does not grow. A read of an offset that was
dropped is a :class:`~workbench.errors.DriverError` naming topic, partition and offset, never a
silent gap; :meth:`MemoryDriver.read_all` returns what is still held. Compacted topics (state
changelogs, ``compact=True`` tables) are kept whole: Kafka compacts them instead of deleting,
and a restart restores state from offset 0; this log does not compact.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Iterable
from typing import Any

from ..errors import DefinitionError, DriverError
from .base import Driver, OutRec, ReadRec, Transaction

__all__ = ["MemoryDriver"]

_NAMED: dict[str, MemoryDriver] = {}


class _PartitionLog:
    """One partition, stored as column batches (segments) with their first offsets: appending
    a batch keeps its columns, reading a range slices them, so a run's output becomes a
    DataFrame by concatenation, and the garbage collector has few objects to scan.

    A sink topic's log (``columns=True``) also stores dict values as columns when a batch's
    dicts all have the same fields in the same order (``ObjectValues.to_struct``, once per
    batch as it is appended): ``run.frame()`` then concatenates columns instead of taking
    950,000 dicts apart, and the dicts are freed at the commit. Reading such a segment back as
    records (``read``, ``run.records``) makes equal dicts again, fields in the same order."""

    __slots__ = ("_rows", "columns", "first", "length", "max_records", "segments", "starts")

    def __init__(self, max_records: int = 0, *, columns: bool = False) -> None:
        self.segments: list[Any] = []  # runtime.batch.Batch
        self.starts: list[int] = []
        self.length = 0
        self._rows: list[Any] = []  # row records appended since the last segment
        #: keep at least this many records, dropping older whole segments (0: keep all)
        self.max_records = max_records
        #: the first offset still held (the log start offset)
        self.first = 0
        #: store dict values as columns (sink topics: read back as frames)
        self.columns = columns

    def __len__(self) -> int:
        return self.length + len(self._rows)

    def _seal(self) -> None:
        if self._rows:
            from ..runtime.batch import Batch

            rows, self._rows = self._rows, []
            self._add(Batch.from_rows(rows))

    def _add(self, batch: Any) -> None:

        n = len(batch)
        if n:
            if self.columns:
                batch = _as_columns(batch)
            # a read's seq is the offsets: the log holds no seq column (a zero-stride view)
            batch = batch.replaced(seq=_no_seq(n))
            self.starts.append(self.length)
            self.segments.append(batch)
            self.length += n
            limit = self.max_records
            if limit:
                while len(self.segments) > 1 and self.length - self.starts[1] >= limit:
                    del self.segments[0], self.starts[0]
                    self.first = self.starts[0]

    def extend(self, records: Iterable[OutRec]) -> None:
        batch = records if isinstance(records, list) else list(records)
        self._rows.extend(batch)
        if len(self._rows) >= 4096:
            self._seal()

    def extend_batch(self, batch: Any) -> None:
        self._seal()
        self._add(batch)

    def read_batch(self, offset: int, count: int) -> Any:
        """Records ``offset .. offset+count-1`` as one batch whose ``seq`` is the offsets."""
        import numpy as np

        from ..runtime.batch import Batch

        self._seal()
        end = min(offset + count, self.length)
        if offset < self.first:
            raise IndexError(offset)
        if offset >= end:
            return Batch.empty()
        if (self.columns and not self.max_records and offset == self.first
                and end == self.length and len(self.segments) > 1):
            self._merge()  # a whole read (run.frame): one segment from now on
        i = bisect_right(self.starts, offset) - 1
        parts = []
        pos = offset
        while pos < end:
            seg = self.segments[i]
            lo = pos - self.starts[i]
            hi = min(len(seg), end - self.starts[i])
            parts.append(seg if lo == 0 and hi == len(seg) else seg.take(slice(lo, hi)))
            pos = self.starts[i] + hi
            i += 1
        return Batch.concat(parts, seq=np.arange(offset, end, dtype=np.int64))

    def read(self, offset: int, count: int) -> list[ReadRec]:
        return self.read_batch(offset, count).rows()  # type: ignore[no-any-return]

    def _merge(self) -> None:
        """Make the segments one, column by column: as each column is concatenated, the
        segments' parts of it become views of the result, so the old parts are freed at once
        and memory never holds the log twice; a frame of the whole log then shares its typed
        columns with the log instead of holding a second copy. Segments of different layouts
        (fields, keys, headers, origins, tombstones) stay as they are."""
        from ..runtime.batch import concat_columns

        flat = [_flat(seg) for seg in self.segments]
        first = flat[0]
        if first is None or any(f is None or list(f) != list(first) for f in flat):
            return  # (field order matters: it is the order of the dicts read back)
        fields = {seg.time_field for seg in self.segments}
        lengths = list(map(len, self.segments))
        self.segments = []  # from here on `flat` holds the columns
        merged: dict[Any, Any] = {}
        made: dict[tuple[int, ...], Any] = {}  # the same parts (a key equal to a field): once
        try:
            for name in first:
                parts = [f[name] for f in flat]  # type: ignore[index]
                same = tuple(map(id, parts))
                col = made.get(same)
                if col is None:
                    col = made[same] = concat_columns(parts)
                merged[name] = col
                del parts
                lo = 0
                for f, n in zip(flat, lengths):
                    f[name] = col[lo:lo + n]  # type: ignore[index]
                    lo += n
        except BaseException:
            self.segments = [_unflat(f, n, fields) for f, n in zip(flat, lengths)]  # type: ignore
            raise
        self.segments = [_unflat(merged, sum(lengths), fields)]
        self.starts = [self.starts[0]]

    def origin_of(self, offset: int) -> Any:
        """The origin kept beside the record at ``offset`` (``runtime.origins``), or ``None``."""
        self._seal()
        if not self.first <= offset < self.length:
            return None
        i = bisect_right(self.starts, offset) - 1
        origin = self.segments[i].origin
        if origin is None:
            return None
        found = origin.get(offset - self.starts[i])
        return None if found[0] is None else found


def _flat(batch: Any) -> dict[Any, Any] | None:
    """A segment's columns by name, or ``None`` when :meth:`_PartitionLog._merge` leaves it
    alone (headers, origins, tombstones among dict values, table updates)."""
    import numpy as np

    from ..runtime.batch import ObjectValues, StructValues, WindowedKeys

    if batch.headers is not None or batch.origin is not None:
        return None
    out: dict[Any, Any] = {"ts": batch.ts}
    keys = batch.keys
    if keys.__class__ is np.ndarray:
        out["keys"] = keys
    elif keys.__class__ is WindowedKeys:
        out["inner"], out["start"], out["end"] = keys.inner, keys.start, keys.end
    else:
        return None
    values = batch.values
    if values.__class__ is ObjectValues:
        out["values"] = values.arr
    elif values.__class__ is StructValues and values.present is None:
        for name, col in values.cols.items():
            out[("field", name)] = col
    else:
        return None
    return out


def _unflat(cols: dict[Any, Any], n: int, time_fields: set[str | None]) -> Any:
    """The segment of :func:`_flat`'s columns."""
    from ..runtime.batch import Batch, ObjectValues, StructValues, WindowedKeys

    keys = cols["keys"] if "keys" in cols else WindowedKeys(cols["inner"], cols["start"],
                                                            cols["end"])
    values = ObjectValues(cols["values"]) if "values" in cols else StructValues(
        {name[1]: col for name, col in cols.items() if name.__class__ is tuple}, None, n)
    return Batch(keys, values, cols["ts"], _no_seq(n), None,
                 next(iter(time_fields)) if len(time_fields) == 1 else None)


def _no_seq(n: int) -> Any:
    """``n`` zeros that take no memory (a read-only, zero-stride view)."""
    import numpy as np

    return np.broadcast_to(np.int64(0), (n,))


def _as_columns(batch: Any) -> Any:
    """``batch`` with its dict values as columns where they convert, and its keys as an
    ``int64`` column when every key is an ``int`` (see ``_PartitionLog``). A field of only
    ``str`` values becomes Arrow strings (when pandas' strings are Arrow's: the frame then
    wraps them instead of converting 950,000 objects), and a key or timestamp column equal to
    an ``int64`` field is stored once (``key="user_id"``, ``time="ts"``), as is a timestamp
    column equal to the windows' ends."""
    import numpy as np

    from ..runtime.batch import ObjectValues, WindowedKeys, column
    from ..runtime.strings import arrow_is_pandas_string

    values = batch.values
    keys = batch.keys
    ts = batch.ts
    changed = False
    if values.__class__ is ObjectValues:
        struct = values.to_struct(arrow_strings=arrow_is_pandas_string())
        if struct is not None:
            values = struct
            changed = True
    if keys.__class__ is np.ndarray and keys.dtype == object:
        typed = column(keys.tolist())
        if typed.dtype == np.int64:
            keys = typed
            changed = True
    elif keys.__class__ is WindowedKeys and keys.inner.dtype == object:
        typed = column(keys.inner.tolist())
        if typed.dtype == np.int64:
            keys = WindowedKeys(typed, keys.start, keys.end)
            changed = True
    if keys.__class__ is WindowedKeys and ts is not keys.end and np.array_equal(ts, keys.end):
        ts = keys.end  # results stamped with their window's end (sessions)
        changed = True
    if not changed:
        return batch
    if values is not batch.values and values.present is None:
        same_key = keys.__class__ is not np.ndarray or keys.dtype != np.int64
        same_ts = False
        for col in values.cols.values():  # the first equal field
            if col.__class__ is np.ndarray and col.dtype == np.int64:
                if not same_key and np.array_equal(keys, col):
                    keys, same_key = col, True
                if not same_ts and np.array_equal(ts, col):
                    ts, same_ts = col, True
    out = batch.replaced(keys=keys, values=values)
    out.ts = ts
    return out




_NAMED_LOCK = threading.Lock()
#: topic kinds whose logs store dict values as columns (read back as frames)
_FRAMED = ("sink", "preview")


class MemoryDriver(Driver):
    """Topics as lists in memory; a commit appends outputs and moves positions atomically."""

    scheme = "memory"
    #: transactions may carry column batches (``runtime.batch.Batch``) instead of row lists
    accepts_batches = True
    #: a commit's batches become segments of the log as they are (``BatchParts``): no copy
    #: until something reads the log
    accepts_batch_parts = True
    #: the origins of repartitioned records (``Batch.origin``) stay as columns beside the log
    #: (:meth:`origin_of`), with no header per record
    keeps_origins = True

    def __init__(self, name: str = "", *, default_partitions: int = 1,
                 durable_state: bool = True, max_records: int = 0) -> None:
        self.name = name
        self.url = f"memory://{name}"
        #: records each partition keeps at least (older whole segments are dropped); 0: all.
        #: Compacted topics (changelogs) keep everything.
        self.max_records = max_records
        # ``connect("memory://")`` makes a private log nobody can restart from: no changelogs
        self.durable_state = durable_state
        self.default_partitions = default_partitions
        self._logs: dict[str, list[_PartitionLog]] = {}
        self._kinds: dict[str, str] = {}
        self._compact: set[str] = set()  # compacted topics: never trimmed by max_records
        self._positions: dict[tuple[str, str, int], int] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self.commits = 0

    @classmethod
    def named(cls, name: str) -> MemoryDriver:
        """The process-wide driver called ``name`` (created on first use)."""
        with _NAMED_LOCK:
            drv = _NAMED.get(name)
            if drv is None:
                drv = _NAMED[name] = cls(name)
            return drv

    @staticmethod
    def forget(name: str) -> None:
        """Drop the process-wide driver called ``name`` and its data."""
        with _NAMED_LOCK:
            _NAMED.pop(name, None)

    # -- log ----------------------------------------------------------------------------------
    def partitions(self, topic: str) -> int | None:
        log = self._logs.get(topic)
        return None if log is None else len(log)

    def create_topic(self, topic: str, partitions: int, *, kind: str = "source",
                     compact: bool = False) -> None:
        if partitions < 1:
            raise DefinitionError(f"topic {topic!r}: partitions must be >= 1, got {partitions}.")
        with self._lock:
            if topic not in self._logs:
                keep = 0 if compact else self.max_records
                self._logs[topic] = [_PartitionLog(keep, columns=kind in _FRAMED)
                                     for _ in range(partitions)]
                self._kinds[topic] = kind
                if compact:
                    self._compact.add(topic)

    def topics(self) -> list[str]:
        return sorted(self._logs)

    def stores_columns(self, topic: str) -> bool:
        """True when ``topic``'s log stores dict values as columns (sink and preview topics,
        see ``_PartitionLog``): a column batch appended there is kept as it is."""
        return self._kinds.get(topic) in _FRAMED

    def _partition(self, topic: str, partition: int) -> _PartitionLog:
        try:
            return self._logs[topic][partition]
        except KeyError:
            raise DriverError(f"topic {topic!r} does not exist on {self.url}.") from None
        except IndexError:
            raise DriverError(
                f"topic {topic!r} has {len(self._logs[topic])} partitions; "
                f"there is no partition {partition}."
            ) from None

    def append(self, topic: str, partition: int, records: Iterable[OutRec]) -> None:
        with self._lock:
            self._partition(topic, partition).extend(records)

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> list[ReadRec]:
        return self.read_batch(topic, partition, offset, max_records).rows()  # type: ignore

    def read_batch(self, topic: str, partition: int, offset: int, max_records: int) -> Any:
        log = self._partition(topic, partition)
        try:
            with self._lock:  # a bounded log may drop segments while another thread appends
                return log.read_batch(offset, max_records)
        except IndexError:
            raise DriverError(
                f"topic {topic!r} partition {partition}: offset {offset} is no longer held on "
                f"{self.url}: max_records={self.max_records} keeps the last records of each "
                f"partition, and the records before offset {log.first} were dropped. Read "
                "sooner, or raise max_records.") from None

    def origin_of(self, topic: str, partition: int, offset: int) -> Any:
        """Where the record at ``offset`` of a repartition topic came from: ``(topic, partition,
        offset)``, or ``None`` when that was not kept (:mod:`workbench.runtime.origins`)."""
        with self._lock:
            return self._partition(topic, partition).origin_of(offset)

    def set_max_records(self, n: int) -> None:
        """Keep at least ``n`` records per partition from now on (0: keep everything), also in
        the topics that exist already (compacted topics keep everything)."""
        with self._lock:
            self.max_records = n
            for topic, logs in self._logs.items():
                if topic in self._compact:
                    continue
                for log in logs:
                    log.max_records = n

    def first_offset(self, topic: str, partition: int) -> int:
        """The first offset ``topic``'s ``partition`` still holds (0 unless ``max_records``
        dropped older records)."""
        return self._partition(topic, partition).first

    def read_all(self, topic: str) -> list[ReadRec]:
        """Every record of ``topic`` still held, partition by partition."""
        return self.read_all_batch(topic).rows()  # type: ignore[no-any-return]

    def read_all_batch(self, topic: str) -> Any:
        """Every record of ``topic`` still held, as one column batch (``seq``: offsets)."""
        from ..runtime.batch import Batch

        count = self.partitions(topic)
        if count is None:
            raise DriverError(f"topic {topic!r} does not exist on {self.url}.")
        parts = []
        for p in range(count):
            log = self._logs[topic][p]
            with self._lock:
                parts.append(log.read_batch(log.first, len(log)))
        return Batch.concat(parts)

    def append_batch(self, topic: str, partition: int, batch: Any) -> None:
        with self._lock:
            self._partition(topic, partition).extend_batch(batch)

    def end_offset(self, topic: str, partition: int) -> int:
        return len(self._partition(topic, partition))

    # -- transactions -------------------------------------------------------------------------
    def committed(self, app_id: str, topic: str, partition: int) -> int:
        return self._positions.get((app_id, topic, partition), 0)

    def committed_metadata(self, app_id: str) -> dict[str, Any]:
        return dict(self._metadata.get(app_id, {}))

    def commit(self, txn: Transaction) -> None:
        from ..runtime.batch import BatchParts

        with self._lock:
            for (topic, partition) in txn.outputs:
                self._partition(topic, partition)  # validate before changing anything
            for (topic, partition), records in txn.outputs.items():
                log = self._logs[topic][partition]
                if isinstance(records, list):
                    log.extend(records)
                elif isinstance(records, BatchParts):
                    for part in records.parts:
                        log.extend_batch(part)
                else:
                    log.extend_batch(records)
            for (topic, partition), offset in txn.positions.items():
                self._positions[(txn.app_id, topic, partition)] = offset
            if txn.metadata:
                self._metadata.setdefault(txn.app_id, {}).update(txn.metadata)
            self.commits += 1
