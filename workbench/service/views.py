"""Queryable state: the committed contents of a running pipeline's tables and windowed stores.

The engine hands every commit's state changes to :class:`StateViews` (it is an engine
``StateListener``): the same ``(key, value)`` pairs a changelog topic gets, also on drivers whose
state is not durable. They are decoded once into rows and applied to a **left-right pair** of
maps (:class:`LeftRight`): readers (HTTP handlers, Python code in other threads) read one copy
while the engine's thread writes the other, then the two swap. Neither side ever waits for the
other: a writer that finds readers still on the copy it would write keeps the changes for the
next commit, so readers see the last committed state, or the one before it, never a partial
commit, and the processing loop is never blocked by a query.

Which stores are queryable, and their names
-------------------------------------------
Tables (``p.table``, ``Stream.to_table``), aggregations (``count``/``agg``/``reduce``/
``aggregate``, windowed or not) and the stores of ``process`` steps. A store is found by its
**step name** (``name=`` of the step, or its generated name), by its store name, and by the sink
topic it is written to with ``.to(topic)``. Join stores are internal and not listed.

Rows
----
Each entry is a JSON-ready dict: ``{"key": ..., "value": ..., "timestamp": ...}``, plus
``"window_start"``/``"window_end"`` (epoch ms) for windowed stores. Aggregates are finalized
(``agg(avg=("x", "mean"))`` shows the mean, not its running sum and count).

>>> lr = LeftRight(dict)
>>> lr.publish([("k", 1)], lambda m, op: m.__setitem__(*op))
True
>>> with lr.read() as m:
...     m["k"]
1
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import WorkbenchError

if TYPE_CHECKING:
    from ..plan import Plan

__all__ = ["LeftRight", "NotFound", "StateViews", "StoreInfo", "parse_key", "parse_time"]

T = TypeVar("T")

#: reserved changelog key of window stores (emit-on-close bookkeeping), never a row
_META_KEY = "workbench.lastEmitWindowCloseTime"


class NotFound(WorkbenchError, LookupError):
    """An unknown store or key; ``known`` lists what exists (for the 404 body)."""

    def __init__(self, message: str, *, known: list[str] | None = None,
                 what: str = "store") -> None:
        super().__init__(message)
        self.known = known or []
        self.what = what


class LeftRight(Generic[T]):
    """Two copies of a structure: readers use the published one, the writer the other.

    ``publish(ops, apply)`` (one writer thread) applies ``ops`` to the standby copy, swaps, and
    remembers the ops for the copy it just retired; if readers are still inside the standby
    copy, nothing is applied and it returns ``False`` (the ops wait for the next call). It never
    blocks. ``read()`` (any thread) is a context manager yielding the published copy; a reader
    never blocks either.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._copies = (factory(), factory())
        self._readers: tuple[set[object], set[object]] = (set(), set())
        self._active = 0
        #: per copy, the ops it has not applied yet (each op is applied once to each copy)
        self._behind: tuple[list[Any], list[Any]] = ([], [])
        self._lock = threading.Lock()  # writers only (one writer thread in practice)
        self.swaps = 0
        self.deferred = 0
        #: a publish was deferred: readers see an older state until the next publish
        self.stale = False

    @contextlib.contextmanager
    def read(self) -> Iterator[T]:
        """The published copy, for the duration of the block (do not keep references)."""
        token = object()
        while True:
            i = self._active
            readers = self._readers[i]
            readers.add(token)
            if self._active == i:
                break
            readers.discard(token)  # the writer swapped meanwhile: take the other copy
        try:
            yield self._copies[i]
        finally:
            readers.discard(token)

    def publish(self, ops: list[Any], apply: Callable[[T, Any], None]) -> bool:
        """Apply ``ops`` (and any deferred ones) to the standby copy and publish it."""
        with self._lock:
            if ops:
                self._behind[0].extend(ops)
                self._behind[1].extend(ops)
            standby = 1 - self._active
            if self._readers[standby]:
                self.deferred += 1
                self.stale = True
                return False
            copy = self._copies[standby]
            todo = self._behind[standby]
            for op in todo:
                apply(copy, op)
            todo.clear()
            self._active = standby
            self.swaps += 1
            self.stale = False
            return True

    @property
    def backlog(self) -> int:
        """Ops waiting to be applied to the copy that is not published (about one commit's)."""
        return len(self._behind[1 - self._active])


# -- decoding changelog records into rows -----------------------------------------------------
def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def _jsonable(value: Any) -> Any:
    """A JSON-friendly form of a key or value (tuples become lists)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "_asdict"):
        return _jsonable(value._asdict())
    return repr(value)


def _row(key: Any, value: Any, ts: Any, start: Any = None, end: Any = None) -> dict[str, Any]:
    row: dict[str, Any] = {"key": _jsonable(key), "value": _jsonable(value), "timestamp": ts}
    if start is not None:
        row["window_start"] = start
        row["window_end"] = end
    return row


def _hkey(k: Any) -> Any:
    """The state identity of a changelog key (JSON lists back to tuples, then
    :func:`~workbench.keys.key_id`: keys equal in Python but different on the wire, such as
    ``1``, ``1.0`` and ``True``, stay apart)."""
    if k.__class__ is str:
        return k
    from ..keys import key_id

    return key_id(_tuplify(k))


def _table_hkey(k: Any) -> Any:
    if k.__class__ is str:
        return k
    from ..keys import decode_key, key_id

    return key_id(decode_key(k))


def lookup_key(key: Any) -> Any:
    """The identity under which the views hold a key given by a caller."""
    from ..keys import key_id

    return key_id(key)


@dataclass
class StoreInfo:
    """A queryable store: its names, kind and how its changelog records read.

    The views keep the changelog's raw values (applying a commit is then two ``dict.update``
    calls); rows are decoded when read (:attr:`row`).
    """

    name: str
    step: str
    changelog: str
    #: ``"table"`` (one value per key) or ``"window"`` (values per key and window)
    kind: str
    subtopology: int
    aliases: list[str] = field(default_factory=list)
    #: window stores: changelog key → ``(key, window)``, or ``None`` to skip the record
    split: Callable[[Any], tuple[Any, Any] | None] | None = None
    #: ``(key, window, raw value)`` → row
    row: Callable[[Any, Any, Any], dict[str, Any]] = lambda k, w, v: _row(k, v, None)
    #: table stores: changelog key → state identity
    hkey: Callable[[Any], Any] = _hkey

    def describe(self) -> dict[str, Any]:
        """JSON description (for listings and 404 bodies)."""
        return {"name": self.step, "store": self.name, "kind": self.kind,
                "aliases": self.aliases}


def _window_split(k: Any) -> tuple[Any, Any] | None:
    if k.__class__ is str:  # the emit-on-close bookkeeping entry
        return None
    return _hkey(k[0]), int(k[1])


def _session_split(k: Any) -> tuple[Any, Any] | None:
    if k.__class__ is str:
        return None
    return _hkey(k[0]), (int(k[1]), int(k[2]))


def _store_info(spec: Any, node: Any, st_id: int) -> StoreInfo | None:
    from ..windows import Hopping, Session, Sliding, Tumbling

    op, params, kind = node.op, node.params, spec.kind
    info = StoreInfo(spec.name, spec.step, spec.changelog, "table", st_id)
    if op in ("table_source", "to_table"):
        info.hkey = _table_hkey
        return info
    if op == "aggregate":
        agg = params.get("agg")
        fin = getattr(agg, "finalize", None) or (lambda a: a)
        window = params.get("window")
        if window is None:
            info.row = lambda k, w, v: _row(k, fin(v[0]), v[1])
            return info
        info.kind = "window"
        if isinstance(window, (Tumbling, Hopping, Sliding)):
            # sliding windows are [start, start + difference], both ends inclusive
            size = window.difference if isinstance(window, Sliding) else window.size
            info.split = _window_split
            info.row = lambda k, w, v: _row(k, fin(v[0]), v[1], w, w + size)
            return info
        if isinstance(window, Session):
            info.split = _session_split
            info.row = lambda k, w, v: _row(k, fin(v), w[1], w[0], w[1])
            return info
        return None
    if op == "process":
        info.step = spec.name  # one step may have several stores
        if kind == "window":
            info.kind = "window"
            info.split = _window_split
            info.row = lambda k, w, v: _row(k, v, None, w, None)
        return info
    return None  # join stores are internal


def queryable_stores(plan: Plan, sinks: dict[str, list[str]] | None = None
                     ) -> dict[str, StoreInfo]:
    """``{changelog topic: StoreInfo}`` of the plan's queryable stores.

    ``sinks`` maps a step name to the topics it is written to (``.to``), used as aliases.
    """
    nodes = {pn.node.name: pn.node for st in plan.subtopologies for pn in st.nodes
             if pn.node is not None}
    out: dict[str, StoreInfo] = {}
    for st in plan.subtopologies:
        for spec in st.stores:
            node = nodes.get(spec.step)
            info = None if node is None else _store_info(spec, node, st.id)
            if info is None:
                continue
            names = {spec.name, *(sinks or {}).get(spec.step, [])}
            info.aliases = sorted(n for n in names if n != info.step)
            out[spec.changelog] = info
    return out


def sink_aliases(plan: Plan) -> dict[str, list[str]]:
    """``{step: [topics]}`` for the steps written straight to a sink topic."""
    out: dict[str, list[str]] = {}
    for st in plan.subtopologies:
        for pn in st.nodes:
            if pn.op != "sink" or pn.topic is None:
                continue
            for parent in pn.parents:
                src = st.nodes[parent]
                # a table written with .to() goes through its to-stream step
                while src.node is not None and src.op == "table_changes" and src.parents:
                    src = st.nodes[src.parents[0]]
                if src.node is not None:
                    out.setdefault(src.node.name, []).append(pn.topic)
    return out


# -- the views --------------------------------------------------------------------------------
# a copy: {changelog: {partition: {key: raw value}}} for tables,
#         {changelog: {partition: {key: {window: raw value}}}} for windowed stores
_Copy = dict[str, dict[int, dict[Any, Any]]]


def _apply(copy: _Copy, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "kv":
        _k, store, p, puts, dels = op
        parts = copy.setdefault(store, {})
        m = parts.get(p)
        if m is None:
            m = parts[p] = {}
        if puts:
            m.update(puts)
        pop = m.pop
        for k in dels:
            pop(k, None)
    elif kind == "win":
        _k, store, p, changes = op
        parts = copy.setdefault(store, {})
        m = parts.get(p)
        if m is None:
            m = parts[p] = {}
        for key, window, v in changes:
            entry = m.get(key)
            if v is None:
                if entry is not None:
                    entry.pop(window, None)
                    if not entry:
                        del m[key]
            elif entry is None:
                m[key] = {window: v}
            else:
                entry[window] = v
    elif kind == "drop":
        _k, store, p = op
        copy.get(store, {}).pop(p, None)


class StateViews:
    """The queryable state of one engine (an engine ``StateListener``).

    Register it before the engine starts (``engine.state_listeners.append(views)``) so that
    restored state is seen too. Reads work from any thread.
    """

    def __init__(self, plan: Plan, *,
                 partition_of: Callable[[Any, int, int], int] | None = None,
                 task_counts: Callable[[], dict[int, int]] | None = None) -> None:
        self.plan = plan
        self.stores = queryable_stores(plan, sink_aliases(plan))
        self._by_name: dict[str, StoreInfo] = {}
        for info in self.stores.values():
            for n in (info.step, *info.aliases):
                self._by_name.setdefault(n, info)
        self._lr: LeftRight[_Copy] = LeftRight(dict)
        self._partition_of = partition_of
        self._task_counts = task_counts
        #: ``{sub-topology id: partitions whose tasks run here}`` (set by the engine's thread)
        self.owned: dict[int, frozenset[int]] = {}
        self.commits = 0

    # -- engine side (StateListener) ----------------------------------------------------------
    def _op(self, changelog: str, partition: int, records: list[tuple[Any, Any]]
            ) -> tuple[Any, ...] | None:
        info = self.stores.get(changelog)
        if info is None or not records:
            return None
        split = info.split
        if split is None:
            # the common case (string keys, no deletes) stays in C: dict() and one scan
            try:
                puts = dict(records)
            except TypeError:  # an unhashable changelog key (a tuple as a JSON list)
                puts = {}
            if len(puts) == len(records) and not any(
                    v is None or k.__class__ is not str for k, v in records):
                return ("kv", changelog, partition, puts, ())
            puts = {}
            dels = []
            hkey = info.hkey
            for k, v in records:
                hk = k if k.__class__ is str else hkey(k)
                if v is None:
                    puts.pop(hk, None)
                    dels.append(hk)
                else:
                    puts[hk] = v
            return ("kv", changelog, partition, puts, dels)
        changes = []
        for k, v in records:
            kw = split(k)
            if kw is not None:
                changes.append((kw[0], kw[1], v))
        return ("win", changelog, partition, changes)

    def restored(self, changelog: str, partition: int, records: list[tuple[Any, Any]]) -> None:
        """Restored changelog records (engine hook)."""
        op = self._op(changelog, partition, records)
        if op is not None:
            self._lr.publish([op], _apply)

    def committed(self, changes: dict[tuple[str, int], list[tuple[Any, Any]]]) -> None:
        """One commit's changes (engine hook)."""
        ops = []
        for (changelog, partition), records in changes.items():
            op = self._op(changelog, partition, records)
            if op is not None:
                ops.append(op)
        self.commits += 1
        if ops:
            self._lr.publish(ops, _apply)

    def revoked(self, changelog: str, partition: int) -> None:
        """A task moved away (engine hook)."""
        if changelog in self.stores:
            self._lr.publish([("drop", changelog, partition)], _apply)

    def catch_up(self) -> None:
        """Publish changes a previous commit had to defer (engine thread, at every interval)."""
        if self._lr.stale:
            self._lr.publish([], _apply)

    def settle(self, timeout_s: float = 1.0) -> None:
        """At the end of a run: publish what is deferred, waiting up to ``timeout_s`` for
        readers to leave the copy."""
        import time

        deadline = time.monotonic() + timeout_s
        self.catch_up()
        while self._lr.stale and time.monotonic() < deadline:
            time.sleep(0.005)
            self.catch_up()

    def set_owned(self, tasks: list[tuple[int, int]]) -> None:
        """The ``(sub-topology, partition)`` tasks running here (engine thread)."""
        owned: dict[int, set[int]] = {}
        for st, p in tasks:
            owned.setdefault(st, set()).add(p)
        self.owned = {st: frozenset(ps) for st, ps in owned.items()}

    def holds(self, name: str, partition: int) -> bool:
        """Whether partition ``partition`` of store ``name`` is held by this process."""
        return partition in self.owned.get(self.store(name).subtopology, frozenset())

    # -- reads --------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """The names of the queryable stores (step names)."""
        return sorted({info.step for info in self.stores.values()})

    def describe(self) -> list[dict[str, Any]]:
        """Every queryable store, with its kind, aliases and partitions held here."""
        out = []
        for info in sorted(self.stores.values(), key=lambda i: i.step):
            d = info.describe()
            d["partitions_here"] = sorted(self.owned.get(info.subtopology, ()))
            out.append(d)
        return out

    def store(self, name: str) -> StoreInfo:
        """The store called ``name`` (step, store or sink topic name), or :class:`NotFound`."""
        info = self._by_name.get(name)
        if info is None:
            from ..errors import did_you_mean

            raise NotFound(f"no queryable table or store {name!r}."
                           + did_you_mean(name, list(self._by_name)), known=self.names())
        return info

    def partition_of(self, name: str, key: Any) -> int | None:
        """The task partition that holds ``key`` in store ``name`` (``None`` if unknown)."""
        info = self.store(name)
        if self._partition_of is None or self._task_counts is None:
            return None
        count = self._task_counts().get(info.subtopology)
        if not count:
            return None
        return self._partition_of(key, count, info.subtopology)

    def _rows(self, info: StoreInfo, key: Any, raw: Any) -> list[dict[str, Any]]:
        from ..keys import unwrap_key

        key = unwrap_key(key)
        if info.split is None:
            return [info.row(key, None, raw)]
        return [info.row(key, w, v) for w, v in raw.items()]

    def get(self, name: str, key: Any, *, time_from: int | None = None,
            time_to: int | None = None) -> list[dict[str, Any]]:
        """The rows of ``key`` (one for a table; the windows of the key, by start, for a
        windowed store, limited to windows that start in ``[time_from, time_to]``). Raises
        :class:`NotFound` when the key has no row here."""
        info = self.store(name)
        hk = lookup_key(key)
        found: list[Any] = []
        with self._lr.read() as copy:
            for m in copy.get(info.changelog, {}).values():
                raw = m.get(hk)
                if raw is not None:
                    found.append(dict(raw) if info.split is not None else raw)
        rows = [r for raw in found for r in self._rows(info, key, raw)]
        if info.kind == "window":
            rows = _in_time(rows, time_from, time_to)
            rows.sort(key=lambda r: (r["window_start"], r.get("window_end") or 0))
        if not rows:
            raise NotFound(f"store {info.step!r} has no key {key!r}"
                           + (" in that time range." if time_from is not None
                              or time_to is not None else "."), what="key",
                           known=[])
        return rows

    def range(self, name: str, *, from_key: Any = None, to_key: Any = None,
              time_from: int | None = None, time_to: int | None = None,
              limit: int = 1000) -> list[dict[str, Any]]:
        """Rows with ``from_key <= key <= to_key`` (either bound optional; keys of different
        types order numbers, then strings, then others), ordered by key then window start, at
        most ``limit``."""
        info = self.store(name)
        windowed = info.split is not None
        with self._lr.read() as copy:
            picked: list[tuple[Any, Any]] = []
            for m in copy.get(info.changelog, {}).values():
                for k, raw in m.items():
                    if _between(k, from_key, to_key):
                        picked.append((k, dict(raw) if windowed else raw))
        picked.sort(key=lambda kv: _sort_key(_unwrap(kv[0])))
        rows: list[dict[str, Any]] = []
        for k, raw in picked:
            entry_rows = self._rows(info, k, raw)
            if windowed:
                entry_rows = sorted(_in_time(entry_rows, time_from, time_to),
                                    key=lambda r: r["window_start"])
            rows.extend(entry_rows)
            if len(rows) >= limit:
                return rows[:limit]
        return rows

    def count(self, name: str) -> int:
        """Rows held here for store ``name``."""
        info = self.store(name)
        with self._lr.read() as copy:
            parts = copy.get(info.changelog, {}).values()
            if info.split is None:
                return sum(len(m) for m in parts)
            return sum(len(e) for m in parts for e in m.values())

    def sizes(self) -> dict[str, tuple[int, int]]:
        """``{step: (rows, approximate bytes)}`` (bytes from a sample of at most 50 rows)."""
        import json

        out: dict[str, tuple[int, int]] = {}
        for changelog, info in self.stores.items():
            sample: list[tuple[Any, Any]] = []
            with self._lr.read() as copy:
                parts = list(copy.get(changelog, {}).values())
                n = 0
                for m in parts:
                    if info.split is None:
                        n += len(m)
                        for kv in m.items():
                            if len(sample) >= 50:
                                break
                            sample.append(kv)
                    else:
                        for k, e in m.items():
                            n += len(e)
                            if len(sample) < 50:
                                sample.append((k, dict(e)))
            size = 0
            if sample:
                rows = [r for k, raw in sample for r in self._rows(info, k, raw)]
                each = sum(len(json.dumps(r, default=repr)) for r in rows) / max(1, len(rows))
                size = int(each * n)
            out[info.step] = (n, size)
        return out


def _in_time(rows: list[dict[str, Any]], lo: int | None, hi: int | None
             ) -> list[dict[str, Any]]:
    if lo is None and hi is None:
        return list(rows)
    out = []
    for r in rows:
        start = r["window_start"]
        end = r.get("window_end")
        end = start if end is None else end
        # a window overlaps [lo, hi] (Kafka Streams' fetch(key, from, to) by start time)
        if (lo is None or start >= lo) and (hi is None or start <= hi):
            out.append(r)
    return out


def _sort_key(key: Any) -> tuple[int, Any]:
    if isinstance(key, bool):
        return (1, int(key))
    if isinstance(key, (int, float)):
        return (1, key)
    if isinstance(key, str):
        return (2, key)
    return (3, repr(key))


def _unwrap(key: Any) -> Any:
    from ..keys import unwrap_key

    return unwrap_key(key)


def _between(key: Any, lo: Any, hi: Any) -> bool:
    sk = _sort_key(_unwrap(key))
    if lo is not None and sk < _sort_key(lo):
        return False
    return not (hi is not None and sk > _sort_key(hi))


def parse_key(text: str, sample: Any = None) -> list[Any]:
    """Candidates for a key given as URL text: the text itself, then its JSON reading (so
    ``42`` finds an int key and ``["a",1]`` a tuple key)."""
    import json

    out: list[Any] = [text]
    try:
        value = json.loads(text)
    except ValueError:
        return out
    value = _tuplify(value)
    if value != text:
        try:
            hash(value)
        except TypeError:
            return out
        out.append(value)
    return out


def parse_time(text: str | None, what: str) -> int | None:
    """Epoch milliseconds from ``1700000000000`` or an ISO-8601 time (UTC if no zone)."""
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        from ..errors import DefinitionError

        raise DefinitionError(f"{what}={text!r}: use epoch milliseconds or an ISO-8601 "
                              "time such as 2024-01-01T00:00:00Z.") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)
