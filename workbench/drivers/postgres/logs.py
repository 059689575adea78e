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
from .codec import decode_rows, log_lines
from .naming import channel
from .session import Session

__all__ = ["Logs"]

#: records encoded per COPY write (the server parses one slice while the next is encoded)
_COPY_SLICE = 5_000


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
    def append(self, info: TopicInfo, partition: int, records: Iterable[OutRec]) -> None:
        """Append records outside any engine transaction (inputs for tests and demos)."""
        if info.source_table:
            raise DriverError(f"topic {info.name!r} is the table {info.source_table}; insert "
                              "rows into that table instead of appending records.")
        self.catalog.check_partition(info, partition)
        batch = records if isinstance(records, list) else list(records)
        if not batch:
            return
        log_lines(info.name, partition, 0, batch[:1])  # fail early on a value JSON cannot hold

        def run(conn: Any) -> None:
            with conn.transaction():
                base = self.reserve(conn, [(info.name, partition, len(batch))])[
                    (info.name, partition)]
                self.copy(conn, info, [(partition, base, batch)])
                self.notify(conn)

        self.s.call(run, f"appending to {info.name!r}")

    def reserve(self, conn: Any, wants: list[tuple[str, int, int]]) -> dict[tuple[str, int], int]:
        """Lock the counters of ``[(topic, partition, count)]`` (sorted, so concurrent commits
        cannot deadlock), advance them, and return the first offset of each."""
        S, s = self.s.sql.SQL, self.s.qs()
        wants = sorted(wants)
        topics = [w[0] for w in wants]
        parts = [w[1] for w in wants]
        counts = [w[2] for w in wants]
        conn.execute(S("SELECT 1 FROM {}._partitions WHERE (topic, partition) IN (SELECT * FROM "
                       "unnest(%s::text[], %s::int[])) ORDER BY topic, partition FOR UPDATE"
                       ).format(s), (topics, parts))
        rows = conn.execute(S(
            "UPDATE {}._partitions AS x SET next_offset = x.next_offset + u.n FROM "
            "unnest(%s::text[], %s::int[], %s::bigint[]) AS u(t, p, n) WHERE x.topic = u.t AND "
            "x.partition = u.p RETURNING x.topic, x.partition, x.next_offset, u.n").format(s),
            (topics, parts, counts)).fetchall()
        out = {(t, p): nxt - n for t, p, nxt, n in rows}
        if len(out) != len(wants):
            missing = [w[:2] for w in wants if (w[0], w[1]) not in out]
            raise DriverError(f"no such topic partitions on {self.s.safe_url()}: {missing}.")
        return out

    def copy(self, conn: Any, info: TopicInfo, chunks: list[tuple[int, int, list[Any]]],
             values: dict[int, list[str]] | None = None) -> None:
        """COPY ``[(partition, first offset, records)]`` into the log table, encoding slice by
        slice while the server parses what was sent. ``values``: filled with each partition's
        value texts as written (for the table sink's upsert)."""
        stmt = self.s.sql.SQL('COPY {}.{} (partition, "offset", key, value, ts, headers) FROM '
                              "STDIN").format(self.s.qs(), self.s.q(info.log_table))
        with conn.cursor() as cur, cur.copy(stmt) as cp:
            for partition, base, records in chunks:
                kept = None if values is None else values.setdefault(partition, [])
                for i in range(0, len(records), _COPY_SLICE):
                    cp.write(log_lines(info.name, partition, base + i,
                                       records[i:i + _COPY_SLICE], kept).encode())

    def notify(self, conn: Any) -> None:
        """Wake the schema's listeners (sent when the transaction commits)."""
        conn.execute("SELECT pg_notify(%s, '')", (channel(self.s.schema),))

    # -- reading ------------------------------------------------------------------------------
    def read(self, info: TopicInfo, partition: int, offset: int,
             max_records: int) -> list[ReadRec]:
        """Committed records of a log table from ``offset``, at most ``max_records``."""
        stmt = self._read_stmt(info)
        rows = self._take_prefetched(info.name, partition, offset, max_records)
        if rows is None:
            rows = self.s.call(lambda c: self._fetch(c, stmt, info, partition, offset,
                                                     max_records), f"reading {info.name!r}")
        if not rows:
            return []
        if len(rows) == max_records and self.prefetch:
            self._start_prefetch(stmt, info, partition, rows[-1][3] + 1, max_records)
        return decode_rows(rows)

    def _read_stmt(self, info: TopicInfo) -> Any:
        # The range [offset, offset + max) rather than "offset >= %s LIMIT %s" alone: with a
        # growing log the planner's statistics lag, and for an open range it picked a bitmap scan
        # of every later row plus a top-N sort (1 s per 10,000-row batch at 1M rows) instead of
        # the ordered index scan. Offsets are dense, except after compaction: see _fetch.
        stmt = self._read_stmts.get(info.log_table)
        if stmt is None:
            stmt = self._read_stmts[info.log_table] = self.s.sql.SQL(
                'SELECT key::text, value::text, ts, "offset", headers::text FROM {}.{} WHERE '
                'partition = %s AND "offset" >= %s AND "offset" < %s ORDER BY "offset"').format(
                    self.s.qs(), self.s.q(info.log_table))
        return stmt

    def _fetch(self, conn: Any, stmt: Any, info: TopicInfo, partition: int, offset: int,
               limit: int) -> list[Any]:
        rows = conn.execute(stmt, (partition, offset, offset + limit)).fetchall()
        if rows or not info.compact:
            return list(rows)
        # nothing in the range of a compacted log: it ends here, or compaction left a gap to
        # jump over (other logs are dense: an empty range is the end, and a live run polling
        # an idle partition pays one query, not two)
        nxt = conn.execute(self.s.sql.SQL(
            'SELECT min("offset") FROM {}.{} WHERE partition = %s AND "offset" >= %s').format(
                self.s.qs(), self.s.q(info.log_table)), (partition, offset)).fetchone()
        if nxt is None or nxt[0] is None:
            return []
        return list(conn.execute(stmt, (partition, nxt[0], nxt[0] + limit)).fetchall())

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
                  limit: int) -> list[Any] | None:
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

    def _take_prefetched(self, topic: str, partition: int, offset: int,
                         limit: int) -> list[Any] | None:
        pending = self._prefetched.pop((topic, partition), None)
        if pending is None:
            return None
        p_offset, p_limit, future = pending
        if p_offset != offset or p_limit < limit:
            return None
        rows = future.result()
        return None if rows is None else rows[:limit]

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
