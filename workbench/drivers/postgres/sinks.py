"""Table sinks: a table written with ``table.to(topic)`` (named in ``upsert=``, or created
with ``compact=True``) is also kept as a real SQL table named after the topic, upserted in the
commit's transaction.

| keys | table |
| --- | --- |
| plain | ``key jsonb PRIMARY KEY, value jsonb, ts bigint`` |
| windowed | ``key jsonb, window_start bigint, window_end bigint, value jsonb, ts bigint``, primary
  key ``(window_start, window_end, key)`` |

Its shape is decided by the first key written; a ``None`` value deletes the row.
"""

from __future__ import annotations

from typing import Any

from ...errors import DriverError, SerializationError
from ...keys import decode_key, encode_key, key_id
from ...windows import Windowed
from ..base import Transaction
from .catalog import Catalog, TopicInfo
from .codec import copy_text, dumps, loads
from .naming import lock_key, sink_table
from .session import Session

__all__ = ["STAGE_DDL", "TableSinks"]

#: the per-session staging table the changes of a commit are COPYed into
STAGE_DDL = ("CREATE TEMP TABLE IF NOT EXISTS pg_temp._wb_stage (key jsonb, window_start "
             "bigint, window_end bigint, value jsonb, ts bigint) ON COMMIT DELETE ROWS")


class TableSinks:
    """Keeps the upserted tables of table sinks."""

    def __init__(self, session: Session, catalog: Catalog) -> None:
        self.s = session
        self.catalog = catalog

    def upsert(self, conn: Any, info: TopicInfo, txn: Transaction) -> None:
        """Apply the commit's changes of table sink ``info`` to its table: the last change per
        key (and window) wins; a ``None`` value deletes the row."""
        topic = info.name
        latest: dict[Any, tuple[Any, Any, int]] = {}
        windowed = None
        for (t, _p), records in txn.outputs.items():
            if t != topic:
                continue
            for r in records:
                k = r[0]
                if windowed is None:
                    windowed = isinstance(k, Windowed)
                latest[key_id(k)] = (k, r[1], r[2])  # identity: the serialized key
        if not latest:
            return
        self._ensure_table(conn, info, bool(windowed))
        S = self.s.sql.SQL
        lines = []
        deletes = False
        for k, v, ts in latest.values():
            try:
                if info.windowed:
                    if not isinstance(k, Windowed):
                        raise SerializationError(
                            f"table sink {topic!r} holds windowed keys, got key {k!r}.")
                    kj, ws, we = dumps(encode_key(k.key)), str(k.window_start), str(
                        k.window_end)
                else:
                    kj, ws, we = dumps(encode_key(k)), "\\N", "\\N"
                if v is None:
                    vj, deletes = "\\N", True
                else:
                    vj = copy_text(dumps(v))
            except (TypeError, ValueError, RecursionError) as exc:
                raise SerializationError(f"table sink {topic!r}: cannot encode key {k!r} or "
                                         f"its value as JSON: {exc}") from exc
            lines.append(f"{copy_text(kj)}\t{ws}\t{we}\t{vj}\t{ts}\n")
        stage = S("COPY pg_temp._wb_stage (key, window_start, window_end, value, ts) FROM STDIN")
        with conn.cursor() as cur, cur.copy(stage) as cp:
            cp.write("".join(lines).encode())
        table = self.s.q(self.s.schema, sink_table(topic))
        if info.windowed:
            cols, match = ("key, window_start, window_end, value, ts",
                           "u.key = g.key AND u.window_start = g.window_start AND "
                           "u.window_end = g.window_end")
            conflict = "window_start, window_end, key"  # the primary key (time first: ~30%
            # faster upserts than key first, and window-range queries use it)
        else:
            cols, match, conflict = "key, value, ts", "u.key = g.key", "key"
        if deletes:
            conn.execute(S("DELETE FROM {t} AS u USING pg_temp._wb_stage AS g WHERE g.value IS "
                           "NULL AND " + match).format(t=table))
        conn.execute(S("INSERT INTO {t} (" + cols + ") SELECT " + cols + " FROM pg_temp._wb_stage "
                       "WHERE value IS NOT NULL ON CONFLICT (" + conflict + ") DO UPDATE SET "
                       "value = EXCLUDED.value, ts = EXCLUDED.ts").format(t=table))
        conn.execute("TRUNCATE pg_temp._wb_stage")

    def _ensure_table(self, conn: Any, info: TopicInfo, windowed: bool) -> None:
        if info.windowed is not None:
            return
        S, s = self.s.sql.SQL, self.s.qs()
        conn.execute("SELECT pg_advisory_xact_lock(%s)",
                     (lock_key("table", self.s.schema, info.name),))
        row = conn.execute(S("SELECT windowed FROM {}._topics WHERE name = %s").format(s),
                           (info.name,)).fetchone()
        if row is not None and row[0] is not None:
            info.windowed = bool(row[0])
            return
        name = sink_table(info.name)
        self.catalog.claim(conn, info.name, name, "table")
        table = self.s.q(self.s.schema, name)
        if windowed:
            conn.execute(S("CREATE TABLE {} (key jsonb NOT NULL, window_start "
                           "bigint NOT NULL, window_end bigint NOT NULL, value jsonb NOT NULL, "
                           "ts bigint NOT NULL, PRIMARY KEY (window_start, window_end, key))"
                           ).format(table))
        else:
            conn.execute(S("CREATE TABLE {} (key jsonb PRIMARY KEY, value jsonb "
                           "NOT NULL, ts bigint NOT NULL)").format(table))
        conn.execute(S("UPDATE {}._topics SET windowed = %s WHERE name = %s").format(s),
                     (windowed, info.name))
        info.windowed = windowed

    def rows(self, topic: str) -> list[tuple[Any, Any]]:
        """``[(key, value)]`` of table sink ``topic``'s upserted table (windowed keys come back
        as :class:`~workbench.windows.Windowed`), ordered by key."""
        info = self.catalog.require(topic)
        if not info.upsert:
            raise DriverError(f"topic {topic!r} is not a table sink.")
        S = self.s.sql.SQL
        fresh = self.s.call(lambda c: c.execute(S("SELECT windowed FROM {}._topics WHERE name = "
                                                  "%s").format(self.s.qs()),
                                                (topic,)).fetchone(), "reading the catalog")
        if fresh is None or fresh[0] is None:
            return []
        table = self.s.q(self.s.schema, sink_table(topic))
        if fresh[0]:
            rows = self.s.call(lambda c: c.execute(S(
                "SELECT key::text, window_start, window_end, value::text FROM {} ORDER BY 1, 2, 3"
            ).format(table)).fetchall(), f"reading table {topic!r}")
            return [(Windowed(decode_key(loads(k)), ws, we), loads(v))
                    for k, ws, we, v in rows]
        rows = self.s.call(lambda c: c.execute(S(
            "SELECT key::text, value::text FROM {} ORDER BY 1").format(table)).fetchall(),
            f"reading table {topic!r}")
        return [(decode_key(loads(k)), loads(v)) for k, v in rows]
