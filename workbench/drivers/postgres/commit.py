"""The commit path: one SQL transaction holds a commit's positions, outputs, table-sink
changes, metadata and commit marker.

In order: (1) lock the input positions (``FOR UPDATE``) and compare them with what this worker
last saw (another worker that moved one fences this one); (2) reserve offsets in
``_partitions`` (locked in a fixed order, so workers cannot deadlock) — BEGIN, (1) and (2) go
to the server in one pipeline, one round trip — and COPY the records into the log tables;
(3) upsert table sinks; (4) the positions, metadata, this driver's ``_commits`` marker,
``pg_notify`` and COMMIT, in one more round trip. A lost connection is
retried: reconnect, and look the marker up to tell whether the commit landed (only its
acknowledgement was lost) or must be applied again.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import uuid
from typing import Any

from ...errors import DriverError, FencedError, SerializationError
from ..base import Transaction
from .catalog import Catalog, TopicInfo
from .codec import dumps, loads
from .logs import Encoded, Logs
from .naming import sink_table
from .session import LOCK_NOT_AVAILABLE, QUERY_CANCELED, SQLSTATE_RETRY, Session, sqlstate
from .sinks import TableSinks, refusal

__all__ = ["Committer"]

log = logging.getLogger(__name__)


class Committer:
    """Commits transactions and reads committed positions and metadata.

    Attributes:
        commits: transactions committed by this driver.
        last_commit_ms: wall time of the last commit.
    """

    def __init__(self, session: Session, catalog: Catalog, logs: Logs,
                 sinks: TableSinks) -> None:
        self.s = session
        self.catalog = catalog
        self.logs = logs
        self.sinks = sinks
        self.token = uuid.uuid4().hex
        self._seq = 0
        self._expected: dict[tuple[str, str, int], int] = {}
        self._lock = threading.RLock()
        self.commits = 0
        self.last_commit_ms = 0.0
        self._in_sinks = False
        self._phase = "starting"

    # -- positions and metadata ---------------------------------------------------------------
    def committed(self, app_id: str, topic: str, partition: int) -> int:
        """The committed position of an input partition (remembered as the one this worker
        expects to find when it commits)."""
        S, s = self.s.sql.SQL, self.s.qs()
        row = self.s.call(lambda c: c.execute(S(
            "SELECT next_offset FROM {}._positions WHERE app = %s AND topic = %s AND "
            "partition = %s").format(s), (app_id, topic, partition)).fetchone(),
            "reading positions")
        pos = 0 if row is None else int(row[0])
        self._expected[(app_id, topic, partition)] = pos
        return pos

    def committed_metadata(self, app_id: str) -> dict[str, Any]:
        """Metadata committed by ``app_id``."""
        S, s = self.s.sql.SQL, self.s.qs()
        rows = self.s.call(lambda c: c.execute(S(
            "SELECT key, value::text FROM {}._metadata WHERE app = %s").format(s), (app_id,)
            ).fetchall(), "reading metadata")
        return {k: None if v is None else loads(v) for k, v in rows}

    # -- committing ---------------------------------------------------------------------------
    def prepare(self, txn: Transaction) -> dict[tuple[str, int], Encoded]:
        """The client's work of committing ``txn`` that needs no server: its records as COPY
        fields (:meth:`Logs.encode`), for the topics in the catalog's cache (talks to no
        server, so it may run while another commit is in flight on the connection)."""
        out: dict[tuple[str, int], Encoded] = {}
        for (topic, partition), records in txn.outputs.items():
            info = self.catalog.topics.get(topic)
            if info is not None and records and not info.source_table:
                out[(topic, partition)] = self.logs.encode(records, info.upsert)
        return out

    def commit(self, txn: Transaction,
               prepared: dict[tuple[str, int], Encoded] | None = None) -> None:
        """Apply ``txn`` in one SQL transaction, retrying lost connections and transient
        failures; other failures raise :class:`DriverError` and write nothing. ``prepared``:
        :meth:`prepare`'s (what is missing is encoded here)."""
        if txn.is_empty():
            return
        with self._lock:
            started = time.perf_counter()
            encoded: dict[tuple[str, int], Any] = {}  # (records, Logs.encode's)
            infos: dict[str, TopicInfo] = {}
            prepared = prepared or {}
            for (topic, partition), records in txn.outputs.items():
                info = infos.get(topic) or self.catalog.require(topic)
                infos[topic] = info
                self.catalog.check_partition(info, partition)
                if info.source_table:
                    raise DriverError(f"topic {topic!r} is the table {info.source_table}: it "
                                      "cannot be written to.")
                if records:
                    done = prepared.get((topic, partition))
                    encoded[(topic, partition)] = (
                        records, done if done is not None else self.logs.encode(
                            records, info.upsert))
            metadata = {k: dumps(v) for k, v in txn.metadata.items()}
            self._seq += 1
            seq = self._seq
            delay = 0.05
            deadline = time.monotonic() + self.s.options.retry_ms / 1000
            careful = False  # table sinks in savepoints (after a table refused a change)
            while True:
                self._in_sinks = False
                self._phase = "starting the transaction"
                try:
                    self._transaction(self.s.conn, txn, infos, encoded, metadata, seq, careful)
                    break
                except (FencedError, SerializationError):
                    raise
                except DriverError:
                    self._forget_ddl(infos)
                    raise
                except self.s.pg.Error as exc:
                    self._forget_ddl(infos)
                    state = sqlstate(exc)
                    if self._in_sinks and refusal(exc) and not careful:
                        log.info("commit: a table sink refused a change (%s); applying the "
                                 "changes one part at a time", state)
                        careful = True
                        continue
                    what = f"commit of application {txn.app_id!r}, {self._phase}"
                    if self.s.is_connection_error(exc):
                        if time.monotonic() > deadline:
                            raise self.s.error(
                                DriverError,
                                f"commit failed: PostgreSQL unreachable ({exc}); nothing of this "
                                "transaction was written. Restart the run to resume."
                            ) from self.s.cause(exc)
                        self.s.reconnect(exc)
                        if self._landed(seq):
                            break  # the COMMIT went through; only its acknowledgement was lost
                    elif state == LOCK_NOT_AVAILABLE:
                        final = time.monotonic() > deadline
                        msg = self.s.lock_wait(what, exc, final)
                        if final:
                            raise self.s.error(
                                DriverError, msg + f"; gave up after retry="
                                f"{self.s.options.retry_ms / 1000:g} s. Nothing of this commit "
                                "was written; restarting resumes from the last commit.") from None
                    elif state in SQLSTATE_RETRY and time.monotonic() < deadline:
                        log.info("commit: transient failure %s, retrying", state)
                    elif state == QUERY_CANCELED:
                        raise self.s.error(
                            DriverError, self.s.timed_out(what, exc) + ". Nothing of this commit "
                            "was written; restarting resumes from the last commit.") from None
                    else:
                        raise self.s.error(DriverError, self._describe_failure(exc, txn)
                                           ) from self.s.cause(exc)
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
            for (topic, partition), pos in txn.positions.items():
                self._expected[(txn.app_id, topic, partition)] = pos
            self.commits += 1
            self.last_commit_ms = (time.perf_counter() - started) * 1000

    @staticmethod
    def _forget_ddl(infos: dict[str, TopicInfo]) -> None:
        for info in infos.values():  # DDL of the failed attempt was rolled back
            if info.upsert:
                info.windowed = None
                info.key_mode = None

    def _landed(self, seq: int) -> bool:
        S, s = self.s.sql.SQL, self.s.qs()
        row = self.s.call(lambda c: c.execute(S("SELECT seq FROM {}._commits WHERE token = %s")
                                              .format(s), (self.token,)).fetchone(),
                          "checking whether the commit landed")
        return row is not None and int(row[0]) >= seq

    def _describe_failure(self, exc: Any, txn: Transaction) -> str:
        diag = getattr(exc, "diag", None)
        table = getattr(diag, "table_name", None)
        where = f" on table {self.s.schema}.{table}" if table else ""
        detail = getattr(diag, "message_detail", None)
        spans = ", ".join(f"{t}[{p}] ({len(r)} records)" for (t, p), r in txn.outputs.items())
        return (f"commit of application {txn.app_id!r} failed{where}: {str(exc).strip()}"
                + (f" ({detail})" if detail else "")
                + f". The transaction was rolled back (outputs: {spans or 'none'}); restart "
                "resumes from the last commit.")

    def _transaction(self, conn: Any, txn: Transaction, infos: dict[str, TopicInfo],
                     encoded: dict[tuple[str, int], Any], metadata: dict[str, str], seq: int,
                     careful: bool) -> None:
        """Apply ``txn`` in one SQL transaction (begun and committed by :meth:`_apply`, so
        that both travel with other statements); roll it back on any failure."""
        try:
            self._apply(conn, txn, infos, encoded, metadata, seq, careful)
        except BaseException:
            with contextlib.suppress(Exception):
                idle = self.s.pg.pq.TransactionStatus.IDLE
                if not conn.closed and conn.info.transaction_status != idle:
                    conn.execute("ROLLBACK")
            raise

    def _apply(self, conn: Any, txn: Transaction, infos: dict[str, TopicInfo],
               encoded: dict[tuple[str, int], Any],
               metadata: dict[str, str], seq: int, careful: bool) -> None:
        """The transaction in as few round trips as its COPYs allow: BEGIN, the position locks
        and the offset reservation go in one pipeline; then one COPY per log table (and the
        table sinks); then the positions, metadata, marker, NOTIFY and COMMIT in another."""
        S, s = self.s.sql.SQL, self.s.qs()
        wants = [(t, p, len(r)) for (t, p), (r, _e) in encoded.items()]
        begun = False
        # 1. positions first: compare-and-set against what this process last saw, so a worker
        #    that lost its partitions cannot write anything; 2. reserve the output offsets
        if txn.positions or encoded:
            self._phase = (f"locking the input positions and reserving offsets (tables "
                           f"{self.s.schema}._positions, {self.s.schema}._partitions)")
            with self.s.pipeline(conn):
                conn.execute("BEGIN")
                begun = True
                held = self._lock_positions(conn, txn) if txn.positions else None
                reserving = self.logs.send_reserve(conn, wants) if encoded else None
            if held is not None:
                self._check_positions(txn, held.fetchall())
            bases = self.logs.reserved(reserving, wants) if reserving is not None else {}
        # 3. outputs: COPY into the logs, upsert table sinks
        if encoded:
            by_topic: dict[str, list[tuple[int, int, Any, Encoded]]] = {}
            for (t, p), (rows, enc) in encoded.items():
                by_topic.setdefault(t, []).append((p, bases[(t, p)], rows, enc))
            texts: dict[str, dict[int, list[str]]] = {}  # table sinks' value texts
            for t in sorted(by_topic):
                kept = texts.setdefault(t, {}) if infos[t].upsert else None
                self._phase = (f"writing the log of topic {t!r} (table "
                               f"{self.s.schema}.{infos[t].log_table})")
                self.logs.copy(conn, infos[t], by_topic[t], kept)
            self._in_sinks = True
            for t in sorted(by_topic):
                if infos[t].upsert:
                    self._phase = (f"upserting table sink {t!r} (table "
                                   f"{self.s.schema}.{sink_table(t)})")
                    self.sinks.upsert(conn, infos[t], txn, bases, careful, texts[t])
            self._in_sinks = False
        # 4. positions, metadata, the commit marker, listeners, COMMIT: one round trip
        self._phase = "writing the positions, metadata and the commit marker"
        with self.s.pipeline(conn):
            if not begun:
                conn.execute("BEGIN")
            if txn.positions:
                self._write_positions(conn, txn)
            if metadata:
                ks = sorted(metadata)
                conn.execute(S(
                    "INSERT INTO {}._metadata (app, key, value) SELECT %s, k, v::jsonb FROM "
                    "unnest(%s::text[], %s::text[]) AS u(k, v) ON CONFLICT (app, key) DO UPDATE "
                    "SET value = EXCLUDED.value").format(s),
                    (txn.app_id, ks, [metadata[k] for k in ks]))
            conn.execute(S(
                "INSERT INTO {}._commits (token, seq) VALUES (%s, %s) ON CONFLICT (token) DO "
                "UPDATE SET seq = EXCLUDED.seq, at = now()").format(s), (self.token, seq))
            if encoded:
                self.logs.notify(conn)
            conn.execute("COMMIT")

    def _lock_positions(self, conn: Any, txn: Transaction) -> Any:
        """Lock the rows of the committed input positions (in a fixed order); the cursor
        returned holds ``(topic, partition, next_offset)`` for :meth:`_check_positions`."""
        S, s = self.s.sql.SQL, self.s.qs()
        keys = sorted(txn.positions)
        return conn.execute(S(
            "SELECT topic, partition, next_offset FROM {}._positions WHERE app = %s AND "
            "(topic, partition) IN (SELECT * FROM unnest(%s::text[], %s::int[])) "
            "ORDER BY topic, partition FOR UPDATE").format(s),
            (txn.app_id, [t for t, _ in keys], [p for _, p in keys]))

    def _check_positions(self, txn: Transaction, rows: list[Any]) -> None:
        """Fence this worker if another moved a position it commits."""
        current = {(t, p): o for t, p, o in rows}
        for key in sorted(txn.positions):
            expected = self._expected.get((txn.app_id, *key))
            if expected is not None and current.get(key, 0) < expected:
                # no other worker moves a position backwards: the server lost commits
                raise FencedError(
                    f"application {txn.app_id!r}: the committed position of {key[0]!r} "
                    f"partition {key[1]} is {current.get(key, 0)}, behind the {expected} this "
                    "worker committed: the server lost commits it had acknowledged (a crash "
                    "of a server running with synchronous_commit=off or fsync=off, a restore "
                    "from a backup) or the positions were reset. This worker stops without "
                    "writing on (nothing is written twice); restart it: it resumes from the "
                    "server's position."
                )
            if expected is not None and current.get(key, 0) != expected:
                raise FencedError(
                    f"application {txn.app_id!r}: the committed position of {key[0]!r} "
                    f"partition {key[1]} is {current.get(key, 0)}, not {expected} as this "
                    "worker expected: another worker processed it. This worker's "
                    "uncommitted work is discarded; restart it to take new partitions."
                )

    def _write_positions(self, conn: Any, txn: Transaction) -> None:
        S, s = self.s.sql.SQL, self.s.qs()
        keys = sorted(txn.positions)
        conn.execute(S(
            "INSERT INTO {}._positions (app, topic, partition, next_offset) SELECT %s, t, p,"
            " o FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS u(t, p, o) ON CONFLICT "
            "(app, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, "
            "updated_at = now()").format(s),
            (txn.app_id, [t for t, _ in keys], [p for _, p in keys],
             [txn.positions[k] for k in keys]))

    def forget_marker(self) -> None:
        """Delete this driver's commit marker (on close)."""
        conn = self.s.conn
        if conn is not None and not conn.closed and self.commits:
            with contextlib.suppress(Exception):
                conn.execute(self.s.sql.SQL("DELETE FROM {}._commits WHERE token = %s")
                             .format(self.s.qs()), (self.token,))
