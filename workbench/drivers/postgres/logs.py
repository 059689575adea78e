"""Log tables: records go in with ``COPY`` at offsets reserved from ``_partitions``, and come
out by offset range, read ahead on a second connection while the engine works.

A log table is ``(partition int, offset bigint, key json, value json, ts bigint, headers
json)`` with primary key ``(partition, offset)``. ``json`` rather than ``jsonb``: the text
round-trips exactly (field order), and it is ~1.5x cheaper to write.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from ...errors import DriverError
from ..base import OutRec, ReadRec
from .catalog import Catalog, TopicInfo
from .columns import (
    READ_COLUMNS,
    batch_from_texts,
    copy_batch,
    copy_tails,
    lines_at,
    struct_texts,
    window_change_tails,
)
from .naming import channel
from .session import Session

__all__ = ["Encoded", "Logs", "record_columns"]

#: a partition's records as :meth:`Logs.encode` leaves them: the COPY fields of each record
#: after ``partition, offset`` (or ``None``), and the value fields kept for a table sink
Encoded = tuple[list[str] | None, list[str] | None]

#: records encoded per COPY write (the server parses one slice while the next is encoded)
_COPY_SLICE = 5_000
#: records read per statement at most (a read returns each column as one text)
_MAX_READ = 100_000


def record_columns(records: Any, values: bool = True
                   ) -> tuple[Any, list[Any] | None, list[int], list[Any] | None]:
    """``(keys, values, timestamps, headers or None)`` of a row list ``[(key, value, ts, _,
    headers)]`` or a column batch, as lists (windowed keys of a batch: its ``WindowedKeys``;
    ``values=False``: a batch's values are not built, ``None``)."""
    if isinstance(records, list):
        if not records:
            return [], [], [], None
        keys, vals, ts, _, headers = zip(*records)
        tss = [t if t.__class__ is int else int(t) for t in ts]
        return list(keys), list(vals), tss, (list(headers) if any(headers) else None)
    hs = records.headers
    keys = records.keys  # windowed keys stay columns (encoded without Windowed objects)
    return (keys if hasattr(keys, "inner") else keys.tolist(),
            records.values.objects().tolist() if values else None,
            records.ts.tolist(), None if hs is None else hs.tolist())


class Logs:
    """Appends to and reads from log tables."""

    def __init__(self, session: Session, catalog: Catalog) -> None:
        self.s = session
        self.catalog = catalog
        #: read the next batch ahead on a second connection
        self.prefetch = session.options.prefetch
        self._prefetch_pool: Any = None
        self._prefetch_conn: Any = None
        self._prefetched: dict[tuple[str, int], tuple[int, int, Any]] = {}
        self._read_stmts: dict[str, Any] = {}

    def clear(self) -> None:
        """Forget prepared statements and read-ahead (after the schema changed)."""
        self._read_stmts.clear()
        self._prefetched.clear()

    # -- writing ------------------------------------------------------------------------------
    def append(self, info: TopicInfo, partition: int, records: Iterable[OutRec] | Any) -> None:
        """Append records (rows, or a column batch) outside any engine transaction (inputs for
        tests and demos)."""
        if info.source_table:
            raise DriverError(f"topic {info.name!r} is the table {info.source_table}; insert "
                              "rows into that table instead of appending records.")
        self.catalog.check_partition(info, partition)
        batch: Any = records if isinstance(records, list) or hasattr(records, "values") \
            else list(records)  # a row list, or a column batch
        if not len(batch):
            return
        keys, vals, ts, headers = record_columns(batch[:1] if isinstance(batch, list) else
                                                 batch.take(slice(0, 1)))
        # fail early on a value JSON cannot hold
        copy_batch(info.name, partition, 0, keys, vals, ts, headers)

        def run(conn: Any) -> None:
            with conn.transaction():
                base = self.reserve(conn, [(info.name, partition, len(batch))])[
                    (info.name, partition)]
                self.copy(conn, info, [(partition, base, batch, self.encode(batch))])
                self.notify(conn)

        self.s.call(run, f"appending to {info.name!r}")

    def reserve(self, conn: Any, wants: list[tuple[str, int, int]]) -> dict[tuple[str, int], int]:
        """Lock the counters of ``[(topic, partition, count)]`` (sorted, so concurrent commits
        cannot deadlock), advance them, and return the first offset of each."""
        return self.reserved(self.send_reserve(conn, wants), wants)

    def send_reserve(self, conn: Any, wants: list[tuple[str, int, int]]) -> Any:
        """The statements of :meth:`reserve` (in a pipeline they wait for nothing); pass the
        cursor returned to :meth:`reserved` for the offsets."""
        S, s = self.s.sql.SQL, self.s.qs()
        wants = sorted(wants)
        topics = [w[0] for w in wants]
        parts = [w[1] for w in wants]
        counts = [w[2] for w in wants]
        conn.execute(S("SELECT 1 FROM {}._partitions WHERE (topic, partition) IN (SELECT * FROM "
                       "unnest(%s::text[], %s::int[])) ORDER BY topic, partition FOR UPDATE"
                       ).format(s), (topics, parts))
        return conn.execute(S(
            "UPDATE {}._partitions AS x SET next_offset = x.next_offset + u.n FROM "
            "unnest(%s::text[], %s::int[], %s::bigint[]) AS u(t, p, n) WHERE x.topic = u.t AND "
            "x.partition = u.p RETURNING x.topic, x.partition, x.next_offset, u.n").format(s),
            (topics, parts, counts))

    def reserved(self, cur: Any, wants: list[tuple[str, int, int]]) -> dict[tuple[str, int], int]:
        """The first offsets reserved by :meth:`send_reserve`'s statements."""
        out = {(t, p): nxt - n for t, p, nxt, n in cur.fetchall()}
        if len(out) != len(wants):
            missing = [w[:2] for w in wants if (w[0], w[1]) not in out]
            raise DriverError(f"no such topic partitions on {self.s.safe_url()}: {missing}.")
        return out

    @staticmethod
    def encode(records: Any, keep: bool = False) -> Encoded:
        """The client's work of :meth:`copy` for ``records`` (a row list, a column batch or a
        window store's changelog as columns), done before the offsets are known (while the
        previous commit is being written): each record's COPY fields after ``partition,
        offset``, and with ``keep`` the value fields as written (for a table sink). ``(None,
        None)`` when a record needs the exact path: :meth:`copy` then encodes slice by slice."""
        if hasattr(records, "accs"):  # a window store's changelog as columns
            return window_change_tails(records), None
        kept: list[str] | None = [] if keep else None
        texts = None if isinstance(records, list) else struct_texts(records.values)
        keys, vals, ts, headers = record_columns(records, texts is None)
        tails = copy_tails(keys, vals, ts, headers, kept, texts)
        return (tails, kept) if tails is not None else (None, None)

    def copy(self, conn: Any, info: TopicInfo, chunks: list[tuple[int, int, Any, Encoded]],
             values: dict[int, list[str]] | None = None) -> None:
        """COPY ``[(partition, first offset, records, encoded)]`` (records: a row list, a column
        batch or a window store's changelog as columns; ``encoded``: :meth:`encode`'s) into the
        log table, numbering the encoded records slice by slice while the server parses what
        was sent, or encoding them slice by slice. ``values``: filled with each partition's
        value texts as written (for the table sink's upsert)."""
        stmt = self.s.sql.SQL('COPY {}.{} (partition, "offset", key, value, ts, headers) FROM '
                              "STDIN").format(self.s.qs(), self.s.q(info.log_table))
        with conn.cursor() as cur, cur.copy(stmt) as cp:
            for partition, base, records, (tails, kept_texts) in chunks:
                if tails is not None:
                    for i in range(0, len(tails), _COPY_SLICE):
                        cp.write(lines_at(partition, base + i,
                                          tails[i:i + _COPY_SLICE]).encode())
                    if values is not None:
                        values[partition] = kept_texts if kept_texts is not None else []
                    continue
                if hasattr(records, "accs"):
                    records = records.rows()
                kept = None if values is None else values.setdefault(partition, [])
                texts = None if isinstance(records, list) else struct_texts(records.values)
                keys, vals, ts, headers = record_columns(records, texts is None)
                for i in range(0, len(ts), _COPY_SLICE):
                    j = i + _COPY_SLICE
                    ks = keys[i:j] if isinstance(keys, list) else keys.take(slice(i, j))
                    cp.write(copy_batch(info.name, partition, base + i, ks,
                                        None if vals is None else vals[i:j], ts[i:j],
                                        None if headers is None else headers[i:j], kept,
                                        None if texts is None else texts[i:j]).encode())

    def notify(self, conn: Any) -> None:
        """Wake the schema's listeners (sent when the transaction commits)."""
        conn.execute("SELECT pg_notify(%s, '')", (channel(self.s.schema),))

    # -- reading ------------------------------------------------------------------------------
    def read_batch(self, info: TopicInfo, partition: int, offset: int, max_records: int) -> Any:
        """Committed records of a log table from ``offset``, at most ``max_records`` (and at
        most :data:`_MAX_READ` per statement), as a column batch whose ``seq`` holds the
        offsets."""
        from ...runtime.batch import Batch

        limit = min(max_records, _MAX_READ)
        stmt = self._read_stmt(info)
        row = self._take_prefetched(info.name, partition, offset, limit)
        if row is None:
            row = self.s.call(lambda c: self._fetch(c, stmt, info, partition, offset, limit),
                              f"reading {info.name!r}")
        if not row or not row[0]:
            return Batch.empty()
        batch = batch_from_texts(row, Batch)
        if len(batch) > limit:  # a read-ahead of more than asked for
            batch = batch.take(slice(0, limit))
        if len(batch) == limit and self.prefetch:
            self._start_prefetch(stmt, info, partition, int(batch.seq[-1]) + 1, limit)
        return batch

    def read(self, info: TopicInfo, partition: int, offset: int,
             max_records: int) -> list[ReadRec]:
        """Committed records of a log table from ``offset``, at most ``max_records``."""
        return self.read_batch(info, partition, offset, max_records).rows()  # type: ignore

    def _read_stmt(self, info: TopicInfo) -> Any:
        # The range [offset, offset + max) rather than "offset >= %s LIMIT %s" alone: with a
        # growing log the planner's statistics lag, and for an open range it picked a bitmap scan
        # of every later row plus a top-N sort (1 s per 10,000-row batch at 1M rows) instead of
        # the ordered index scan. Offsets are dense, except after compaction: see _fetch.
        # One row comes back: the batch's columns as texts (see columns.READ_COLUMNS), so the
        # client parses five texts instead of building a tuple per record.
        stmt = self._read_stmts.get(info.log_table)
        if stmt is None:
            stmt = self._read_stmts[info.log_table] = self.s.sql.SQL(
                "SELECT " + READ_COLUMNS + ' FROM {}.{} WHERE partition = %s AND "offset" >= %s '
                'AND "offset" < %s').format(self.s.qs(), self.s.q(info.log_table))
        return stmt

    def _fetch(self, conn: Any, stmt: Any, info: TopicInfo, partition: int, offset: int,
               limit: int) -> tuple[Any, ...] | None:
        row = conn.execute(stmt, (partition, offset, offset + limit)).fetchone()
        if (row is not None and row[0]) or not info.compact:
            return row  # type: ignore[no-any-return]
        # nothing in the range of a compacted log: it ends here, or compaction left a gap to
        # jump over (other logs are dense: an empty range is the end, and a live run polling
        # an idle partition pays one query, not two)
        nxt = conn.execute(self.s.sql.SQL(
            'SELECT min("offset") FROM {}.{} WHERE partition = %s AND "offset" >= %s').format(
                self.s.qs(), self.s.q(info.log_table)), (partition, offset)).fetchone()
        if nxt is None or nxt[0] is None:
            return None
        return conn.execute(stmt, (partition, nxt[0], nxt[0] + limit)).fetchone()  # type: ignore

    # Read-ahead: after a full batch, the next one is fetched on a second connection while the
    # engine processes this one, so the server's work and the network overlap with Python's.
    # Log rows never change once committed, so a batch read early is as good as one read late.
    def _start_prefetch(self, stmt: Any, info: TopicInfo, partition: int, offset: int,
                        limit: int) -> None:
        if self._prefetch_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._prefetch_pool = ThreadPoolExecutor(1, thread_name_prefix="workbench-pg-read")
        self._prefetched[(info.name, partition)] = (
            offset, limit, self._prefetch_pool.submit(self._prefetch, stmt, info, partition,
                                                      offset, limit))

    def _prefetch(self, stmt: Any, info: TopicInfo, partition: int, offset: int,
                  limit: int) -> tuple[Any, ...] | None:
        try:
            if self._prefetch_conn is None or self._prefetch_conn.closed:
                self._prefetch_conn = self.s.new_connection()
            return self._fetch(self._prefetch_conn, stmt, info, partition, offset, limit)
        except Exception:  # the caller reads again on its own connection
            if self._prefetch_conn is not None:
                with contextlib.suppress(Exception):
                    self._prefetch_conn.close()
            self._prefetch_conn = None
            return None

    def prefetched(self, topic: str, partition: int, offset: int, max_records: int) -> bool:
        """Whether a read of ``max_records`` from ``offset`` is served by the read-ahead (no
        statement on the main connection)."""
        pending = self._prefetched.get((topic, partition))
        return pending is not None and pending[0] == offset and pending[1] >= min(
            max_records, _MAX_READ)

    def _take_prefetched(self, topic: str, partition: int, offset: int,
                         limit: int) -> tuple[Any, ...] | None:
        pending = self._prefetched.pop((topic, partition), None)
        if pending is None:
            return None
        p_offset, p_limit, future = pending
        if p_offset != offset or p_limit < limit:
            return None
        return future.result()  # type: ignore[no-any-return]

    def end_offset(self, info: TopicInfo, partition: int) -> int:
        """The partition's next offset (its counter in ``_partitions``)."""
        stmt = self.s.sql.SQL("SELECT next_offset FROM {}._partitions WHERE topic = %s AND "
                              "partition = %s").format(self.s.qs())
        row = self.s.call(lambda c: c.execute(stmt, (info.name, partition)).fetchone(),
                          f"end offset of {info.name!r}")
        return 0 if row is None else int(row[0])

    # -- maintenance --------------------------------------------------------------------------
    def compact(self, info: TopicInfo) -> int:
        """Delete the records that a later record of the same key supersedes; offsets do not
        change. Returns how many were deleted. Only topics created with ``compact=True``
        (changelogs, table sinks): readers of other logs take an empty range for the end."""
        if not info.compact:
            raise DriverError(f"topic {info.name!r} was not created with compact=True; only "
                              "compacted topics (changelogs, table sinks) can be compacted.")
        stmt = self.s.sql.SQL(
            'DELETE FROM {t} AS a USING (SELECT partition, "offset", row_number() OVER (PARTITION '
            'BY partition, key::text ORDER BY "offset" DESC) AS rn FROM {t}) AS b WHERE '
            'a.partition = b.partition AND a."offset" = b."offset" AND b.rn > 1').format(
                t=self.s.q(self.s.schema, info.log_table))

        def run(conn: Any) -> int:
            with conn.transaction():
                return int(conn.execute(stmt).rowcount)

        return self.s.call(run, f"compacting {info.name!r}")  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the read-ahead and close its connection."""
        if self._prefetch_pool is not None:
            self._prefetch_pool.shutdown(wait=True, cancel_futures=True)
            self._prefetch_pool = None
        self._prefetched.clear()
        if self._prefetch_conn is not None:
            with contextlib.suppress(Exception):
                self._prefetch_conn.close()
        self._prefetch_conn = None
