"""The PostgreSQL driver: topics are log tables, and each commit is ONE SQL transaction.

URL: ``postgresql://user@host:port/db`` (or ``postgres://``), with workbench options in the query
string (other query parameters go to libpq, e.g. ``sslmode``, ``connect_timeout``)::

    postgresql://postgres@127.0.0.1:5432/postgres?schema=clicks
        &table.orders=public.orders:id          # user table as source topic "orders"
        &upsert=totals,per_user                 # these sink topics are tables (upserted)
        &errors=1                               # bad rows go to the errors table
        &members=2                              # expected worker count (partition leases)
        &retry=60s                              # give up reconnecting after this long

Everything lives in one schema: ``schema=`` from the URL, else the application's name once the
engine calls :meth:`PostgresDriver.bind_app`, else ``workbench``:

* ``_topics``: the catalog (name, partitions, kind, compact, log table, upsert table, source).
* ``_partitions``: one row per topic partition with the next offset; a commit locks the rows of
  the partitions it writes (``FOR UPDATE``), so offsets are dense, and visible in order.
* ``log_<topic>``: the log ``(partition, offset, key json, value json, ts bigint, headers
  json)``, primary key ``(partition, offset)``, written with ``COPY``. ``json`` rather than
  ``jsonb``: the text round-trips exactly (field order), and it is ~1.5x cheaper to write.
  Keys use workbench's changelog key encoding (tuples as lists, ``Windowed`` as
  ``{"windowed": [key, start, end]}``) so they read back as the same Python values.
* ``<topic>``: for a stream sink, a view over its log (``key, value, ts, headers, partition,
  offset``); for a table sink (``upsert=`` or a sink created with ``compact=True``), a real table
  with the key (``key jsonb``, plus ``window_start``/``window_end`` for windowed keys) as primary
  key, updated in the same transaction: tombstones delete the row.
* ``_positions`` ``(app, topic, partition, next_offset)``, ``_metadata`` ``(app, key, value)``,
  ``_commits`` (one row per driver instance: detects whether a commit whose acknowledgement
  was lost did happen), ``_errors`` (bad rows, when ``errors=1``).

A commit (:meth:`PostgresDriver.commit`) locks the partition counters it writes, COPYs the
records into the log tables, upserts the table sinks, compare-and-sets the input positions
(another worker that moved them fences this one), writes metadata and notifies listeners, all
in one transaction: exactly-once with nothing else.

Several processes: :meth:`PostgresDriver.assign` leases partitions with session advisory locks
on ``(schema, app, partition number)`` — the partition number, not the topic, so the
co-partitioned inputs of a task (a stream and the table it joins) always go together. A dead
worker's session ends and its locks with it, so another worker can take its partitions.

Identifiers are always quoted (``psycopg.sql.Identifier``); values are always bound.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._time import duration_ms
from ..errors import (
    DefinitionError,
    DriverError,
    DriverUnavailableError,
    FencedError,
    SerializationError,
)
from ..keys import SCALARS as _SCALARS
from ..keys import decode_key, encode_key
from ..serde import _json_default
from ..windows import Windowed
from .base import Driver, OutRec, ReadRec, Transaction

__all__ = ["PostgresDriver", "decode_key", "encode_key"]

log = logging.getLogger(__name__)

_MAX_IDENT = 63
_OPTIONS = ("schema", "upsert", "errors", "members", "retry", "partitions", "prefetch",
            "takeover")
_SQLSTATE_RETRY = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock n/a


# -- keys and values ---------------------------------------------------------------------------
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                            default=_json_default)
_encode: Callable[[Any], str] = _encoder.encode
try:  # the C encoder, made once (JSONEncoder.encode makes one per call: ~40% of its time)
    from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]

    if c_make_encoder is not None and c_encode_basestring is not None:
        _c_iterencode = c_make_encoder(None, _json_default, c_encode_basestring, None, ":", ",",
                                       False, False, False)

        def _encode(obj: Any) -> str:
            if obj.__class__ is str:
                return c_encode_basestring(obj)  # type: ignore[no-any-return]
            return "".join(_c_iterencode(obj, 0))
except ImportError:  # pragma: no cover - no C accelerator
    pass


def _headers_json(headers: Any) -> str:
    return _encode([[k, None if v is None else v.hex()] for k, v in headers])


def _headers_from(data: Any) -> Any:
    if data is None:
        return None
    return tuple((k, None if v is None else bytes.fromhex(v)) for k, v in data)


def _copy_text(s: str) -> str:
    """Escape a JSON text for COPY's text format (JSON text has no raw tabs or newlines)."""
    return s.replace("\\", "\\\\") if "\\" in s else s


def _ident(prefix: str, name: str) -> str:
    """A table name for ``name`` within PostgreSQL's 63-byte limit (long names get a hash)."""
    full = f"{prefix}{name}"
    if len(full.encode()) <= _MAX_IDENT:
        return full
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    cut = full.encode()[: _MAX_IDENT - 11].decode("utf-8", "ignore")
    return f"{cut}_{digest}"


def _lock_key(*parts: Any) -> int:
    """A signed 64-bit advisory lock key for ``parts``."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big", signed=True)


@dataclass
class _TopicInfo:
    name: str
    partitions: int
    kind: str
    compact: bool
    log_table: str
    upsert: bool
    source_table: str | None = None  # "schema.table" of a user table source
    source_column: str | None = None
    source_key: str | None = None
    source_value: str | None = None
    windowed: bool | None = None  # shape of the upsert table (None: not created yet)


@dataclass
class _TableSource:
    schema: str
    table: str
    column: str
    key: str | None
    value: str | None


def _parse_table_source(topic: str, spec: str) -> _TableSource:
    """``[schema.]table:column[:key=COL][:value=COL]``."""
    parts = spec.split(":")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise DefinitionError(
            f"table.{topic}={spec!r}: use table.{topic}=SCHEMA.TABLE:COLUMN, where COLUMN "
            "increases monotonically (an id or insert time), e.g. table.orders=public.orders:id."
        )
    schema, _, table = parts[0].rpartition(".")
    opts = {}
    for extra in parts[2:]:
        k, _, v = extra.partition("=")
        if k not in ("key", "value") or not v:
            raise DefinitionError(f"table.{topic}={spec!r}: unknown part {extra!r}; use "
                                  "key=COLUMN or value=COLUMN.")
        opts[k] = v
    return _TableSource(schema or "public", table, parts[1], opts.get("key"), opts.get("value"))


class PostgresDriver(Driver):
    """Topics, state and positions in PostgreSQL; see the module docstring."""

    scheme = "postgresql"

    def __init__(self, url: str, *, schema: str | None = None,
                 application_name: str = "workbench") -> None:
        try:
            import psycopg
            from psycopg import sql
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise DriverUnavailableError(
                "the PostgreSQL driver needs psycopg 3: install workbench[postgres] "
                "(pip install 'workbench[postgres]')."
            ) from exc
        self._pg = psycopg
        self._sql = sql
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("postgresql", "postgres"):
            raise DefinitionError(f"{url!r} is not a postgresql:// URL.")
        query = parse_qsl(parts.query, keep_blank_values=True)
        opts: dict[str, str] = {}
        libpq: list[tuple[str, str]] = []
        tables: dict[str, _TableSource] = {}
        for k, v in query:
            if k.startswith("table."):
                tables[k[len("table."):]] = _parse_table_source(k[len("table."):], v)
            elif k in _OPTIONS:
                opts[k] = v
            else:
                libpq.append((k, v))
        self.url = url
        self.schema = schema or opts.get("schema") or "workbench"
        self._schema_explicit = bool(schema or opts.get("schema"))
        self.upsert_topics = {t for t in opts.get("upsert", "").split(",") if t}
        self.errors_table = opts.get("errors", "") not in ("", "0", "false", "no")
        self.members = int(opts.get("members", "0") or 0)
        self.retry_ms = duration_ms(opts.get("retry", "60s"), "retry")
        self.default_partitions = int(opts.get("partitions", "1") or 1)
        self.table_sources = tables
        self._conninfo = urlunsplit(("postgresql", parts.netloc, parts.path,
                                     urlencode(libpq), ""))
        self._application_name = application_name
        self._token = uuid.uuid4().hex
        self._seq = 0
        self._topics: dict[str, _TopicInfo] = {}
        self._source_types: dict[str, str] = {}
        self._expected: dict[tuple[str, str, int], int] = {}
        self._leases: dict[str, set[int]] = {}  # app -> partition numbers leased
        self._assigned: dict[str, list[str]] = {}  # app -> topics of the last assign()
        self.takeover = opts.get("takeover", "") in ("1", "true", "yes")
        self._last_membership = 0.0
        self._lock = threading.RLock()
        self._listen_conn: Any = None
        self._conn: Any = None
        #: read the next batch ahead on a second connection (``prefetch=0`` turns it off)
        self.prefetch = opts.get("prefetch", "1") not in ("0", "false", "no")
        self._prefetch_pool: Any = None
        self._prefetch_conn: Any = None
        self._prefetched: dict[tuple[str, int], tuple[int, int, Any]] = {}
        self._read_stmts: dict[str, Any] = {}
        self.commits = 0
        self.reconnects = 0
        self.last_commit_ms = 0.0
        self._connect()
        self._setup_schema()

    # -- connections --------------------------------------------------------------------------
    def _new_connection(self) -> Any:
        return self._pg.connect(self._conninfo, autocommit=True,
                                application_name=self._application_name)

    def _connect(self) -> None:
        deadline = time.monotonic() + self.retry_ms / 1000
        delay = 0.05
        while True:
            try:
                self._conn = self._new_connection()
                self._after_connect()
                return
            except self._pg.OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    raise DriverUnavailableError(
                        f"cannot connect to PostgreSQL at {self._safe_url()}: "
                        f"{str(exc).strip()}. Start a local server with `workbench dev up`, "
                        "or check the URL."
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _after_connect(self) -> None:
        self._conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS pg_temp._wb_stage (key jsonb, window_start bigint, "
            "window_end bigint, value jsonb, ts bigint) ON COMMIT DELETE ROWS")

    def _safe_url(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        user = parts.username or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{user}@{host}{port}{parts.path}"

    def _is_connection_error(self, exc: BaseException) -> bool:
        pg = self._pg
        if isinstance(exc, pg.OperationalError) and not isinstance(
                exc, pg.errors.QueryCanceled):
            state = getattr(getattr(exc, "diag", None), "sqlstate", None)
            return state is None or state.startswith(("08", "57P"))
        return isinstance(exc, pg.InterfaceError) or (
            self._conn is not None and self._conn.closed)

    def _reconnect(self, cause: BaseException) -> None:
        """Reconnect after a lost connection and take back this process's leases (their locks
        died with the old session); another worker holding one fences this process."""
        log.warning("PostgreSQL connection lost (%s); reconnecting", str(cause).strip())
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
        try:
            self._connect()
        except DriverUnavailableError as exc:
            raise DriverError(
                f"lost the connection to PostgreSQL at {self._safe_url()} and could not "
                f"reconnect within {self.retry_ms / 1000:g} s ({cause}). Nothing of the current "
                "transaction was written; restart the run to resume from the last commit."
            ) from exc
        self.reconnects += 1
        for app, parts in self._leases.items():
            for p in sorted(parts):
                got = self._conn.execute("SELECT pg_try_advisory_lock(%s)",
                                         (_lock_key(self.schema, app, p),)).fetchone()[0]
                if not got:
                    raise FencedError(
                        f"partition {p} of application {app!r} was taken over by another "
                        "worker while this one was disconnected; stop this process (its "
                        "uncommitted work is discarded) and restart it to get new partitions."
                    )

    def _call(self, fn: Callable[[Any], Any], what: str) -> Any:
        """Run ``fn(conn)``, reconnecting and retrying (with backoff) on lost connections and
        transient failures. ``fn`` must be safe to repeat (reads, idempotent writes)."""
        delay = 0.05
        deadline = time.monotonic() + self.retry_ms / 1000
        while True:
            try:
                return fn(self._conn)
            except self._pg.Error as exc:
                state = getattr(getattr(exc, "diag", None), "sqlstate", None)
                if self._is_connection_error(exc):
                    if time.monotonic() > deadline:
                        raise DriverError(f"{what}: PostgreSQL unreachable: {exc}") from exc
                    self._reconnect(exc)
                elif state in _SQLSTATE_RETRY and time.monotonic() < deadline:
                    pass
                else:
                    raise DriverError(f"{what} failed: {str(exc).strip()}") from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

    # -- schema -------------------------------------------------------------------------------
    def _q(self, *names: str) -> Any:
        return self._sql.Identifier(*names)

    def _setup_schema(self) -> None:
        S = self._sql.SQL
        s = self._q(self.schema)
        stmts = [
            S("CREATE SCHEMA IF NOT EXISTS {}").format(s),
            S("CREATE TABLE IF NOT EXISTS {}._topics (name text PRIMARY KEY, partitions int "
              "NOT NULL, kind text NOT NULL, compact boolean NOT NULL, log_table text NOT NULL,"
              " upsert boolean NOT NULL DEFAULT false, windowed boolean, source_table text, "
              "source_column text, source_key text, source_value text, "
              "created_at timestamptz NOT NULL DEFAULT now())").format(s),
            S("CREATE TABLE IF NOT EXISTS {}._partitions (topic text NOT NULL, partition int "
              "NOT NULL, next_offset bigint NOT NULL DEFAULT 0, PRIMARY KEY (topic, partition))"
              ).format(s),
            S("CREATE TABLE IF NOT EXISTS {}._positions (app text NOT NULL, topic text NOT "
              "NULL, partition int NOT NULL, next_offset bigint NOT NULL, updated_at "
              "timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (app, topic, partition))"
              ).format(s),
            S("CREATE TABLE IF NOT EXISTS {}._metadata (app text NOT NULL, key text NOT NULL, "
              "value jsonb, PRIMARY KEY (app, key))").format(s),
            S("CREATE TABLE IF NOT EXISTS {}._commits (token text PRIMARY KEY, seq bigint NOT "
              "NULL, at timestamptz NOT NULL DEFAULT now())").format(s),
            S("CREATE TABLE IF NOT EXISTS {}._errors (id bigserial PRIMARY KEY, topic text, "
              "partition int, position text, source text, error text, row_text text, "
              "at timestamptz NOT NULL DEFAULT now(), UNIQUE (topic, partition, position))"
              ).format(s),
        ]

        def run(conn: Any) -> None:
            name = self._sql.Identifier(self.schema, "_errors").as_string(conn)
            if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]:
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.schema),))
                for st in stmts:
                    conn.execute(st)

        self._call(run, f"creating schema {self.schema!r}")

    def bind(self, app_id: str) -> None:
        """The driver contract's hook: use the application's schema (see :meth:`bind_app`)."""
        self.bind_app(app_id)

    def bind_app(self, app_id: str) -> None:
        """Use a schema named after the application, unless the URL chose one (``schema=``).
        Called before anything touches topics (see the engine hook in the docs); safe to call
        more than once."""
        if self._schema_explicit or self.schema == app_id:
            return
        self.schema = app_id
        self._topics.clear()
        self._read_stmts.clear()
        self._source_types.clear()
        self._setup_schema()

    def _info(self, topic: str) -> _TopicInfo | None:
        info = self._topics.get(topic)
        if info is not None:
            return info

        def run(conn: Any) -> Any:
            return conn.execute(
                self._sql.SQL("SELECT name, partitions, kind, compact, log_table, upsert, "
                              "source_table, source_column, source_key, source_value, windowed "
                              "FROM {}._topics WHERE name = %s").format(self._q(self.schema)),
                (topic,)).fetchone()

        row = self._call(run, f"looking up topic {topic!r}")
        if row is None:
            if topic in self.table_sources:
                self.create_topic(topic, 1, kind="source")
                return self._topics.get(topic)
            return None
        info = _TopicInfo(row[0], row[1], row[2], row[3], row[4], row[5], source_table=row[6],
                          source_column=row[7], source_key=row[8], source_value=row[9],
                          windowed=row[10])
        self._topics[topic] = info
        return info

    def _require(self, topic: str) -> _TopicInfo:
        info = self._info(topic)
        if info is None:
            raise DriverError(f"topic {topic!r} does not exist on {self._safe_url()} "
                              f"(schema {self.schema!r}).")
        return info

    # -- log ----------------------------------------------------------------------------------
    def partitions(self, topic: str) -> int | None:
        info = self._info(topic)
        return None if info is None else info.partitions

    def topics(self) -> list[str]:
        def run(conn: Any) -> list[str]:
            rows = conn.execute(self._sql.SQL("SELECT name FROM {}._topics ORDER BY name")
                                .format(self._q(self.schema))).fetchall()
            return [r[0] for r in rows]

        return self._call(run, "listing topics")  # type: ignore[no-any-return]

    def create_topic(self, topic: str, partitions: int, *, kind: str = "source",
                     compact: bool = False) -> None:
        if partitions < 1:
            raise DefinitionError(f"topic {topic!r}: partitions must be >= 1, got {partitions}.")
        S, s = self._sql.SQL, self._q(self.schema)
        src = self.table_sources.get(topic)
        if src is not None:
            partitions = 1
        upsert = kind == "sink" and (compact or topic in self.upsert_topics)
        log_table = _ident("log_", topic)

        def run(conn: Any) -> None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.schema),))
                exists = conn.execute(S("SELECT 1 FROM {}._topics WHERE name = %s").format(s),
                                      (topic,)).fetchone()
                if exists:
                    return
                if src is None:
                    conn.execute(S(
                        'CREATE TABLE IF NOT EXISTS {}.{} (partition int NOT NULL, "offset" '
                        "bigint NOT NULL, key json, value json, ts bigint NOT NULL, headers json,"
                        ' PRIMARY KEY (partition, "offset"))').format(s, self._q(log_table)))
                    if kind == "sink" and not upsert:
                        self._create_view(conn, topic, log_table)
                else:
                    found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (
                        self._sql.Identifier(src.schema, src.table).as_string(conn),)).fetchone()
                    if not found[0]:
                        raise DefinitionError(
                            f"table.{topic}: table {src.schema}.{src.table} does not exist.")
                conn.execute(S(
                    "INSERT INTO {}._topics (name, partitions, kind, compact, log_table, upsert,"
                    " source_table, source_column, source_key, source_value) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)").format(s),
                    (topic, partitions, kind, compact, log_table, upsert,
                     None if src is None else f"{src.schema}.{src.table}",
                     None if src is None else src.column, None if src is None else src.key,
                     None if src is None else src.value))
                conn.execute(S("INSERT INTO {}._partitions (topic, partition) SELECT %s, "
                               "generate_series(0, %s - 1) ON CONFLICT DO NOTHING").format(s),
                             (topic, partitions))

        self._call(run, f"creating topic {topic!r}")
        self._topics.pop(topic, None)

    def _create_view(self, conn: Any, topic: str, log_table: str) -> None:
        S, s = self._sql.SQL, self._q(self.schema)
        name = _ident("", topic)
        taken = conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s", (self.schema, name)).fetchone()
        if taken:
            return
        conn.execute(S('CREATE VIEW {}.{} AS SELECT key, value, ts, headers, partition, "offset"'
                       " FROM {}.{}").format(s, self._q(name), s, self._q(log_table)))

    def append(self, topic: str, partition: int, records: Iterable[OutRec]) -> None:
        info = self._require(topic)
        if info.source_table:
            raise DriverError(f"topic {topic!r} is the table {info.source_table}; insert rows "
                              "into that table instead of appending records.")
        self._check_partition(info, partition)
        batch = records if isinstance(records, list) else list(records)
        if not batch:
            return
        self._lines(topic, partition, 0, batch[:1])  # fail early on a value JSON cannot hold

        def run(conn: Any) -> None:
            with conn.transaction():
                base = self._reserve(conn, [(topic, partition, len(batch))])[(topic, partition)]
                self._copy(conn, info, [(partition, base, batch)])
                self._notify(conn)

        self._call(run, f"appending to {topic!r}")

    def _check_partition(self, info: _TopicInfo, partition: int) -> None:
        if not 0 <= partition < info.partitions:
            raise DriverError(f"topic {info.name!r} has {info.partitions} partitions; there is "
                              f"no partition {partition}.")

    def _lines(self, topic: str, partition: int, base: int, records: list[Any]) -> str:
        """COPY text lines ``partition, offset, key, value, ts, headers`` of ``records`` (JSON
        texts; ``\\N`` for SQL NULL)."""
        out: list[str] = []
        append = out.append
        enc = _encode
        scalars = _SCALARS
        off = base
        for r in records:
            k, v, h = r[0], r[1], r[4]
            try:
                ks = "\\N" if k is None else _copy_text(
                    enc(k if k.__class__ in scalars else encode_key(k)))
                vs = "\\N" if v is None else _copy_text(enc(v))
                hs = "\\N" if not h else _copy_text(_headers_json(h))
            except (TypeError, ValueError, RecursionError) as exc:
                raise SerializationError(
                    f"cannot write a record to topic {topic!r} partition {partition} (offset "
                    f"{off}) as JSON: {exc} (key {k!r}, value {v!r:.200}). Nothing of this "
                    "commit was written."
                ) from exc
            append(f"{partition}\t{off}\t{ks}\t{vs}\t{int(r[2])}\t{hs}\n")
            off += 1
        return "".join(out)

    def _reserve(self, conn: Any, wants: list[tuple[str, int, int]]) -> dict[tuple[str, int], int]:
        """Lock the counters of ``[(topic, partition, count)]`` (sorted, so concurrent commits
        cannot deadlock), advance them, and return the first offset of each."""
        S, s = self._sql.SQL, self._q(self.schema)
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
            raise DriverError(f"no such topic partitions on {self._safe_url()}: {missing}.")
        return out

    def _copy(self, conn: Any, info: _TopicInfo,
              chunks: list[tuple[int, int, list[Any]]]) -> None:
        """COPY ``[(partition, first offset, records)]`` into the log table, encoding slice by
        slice while the server parses what was sent."""
        stmt = self._sql.SQL('COPY {}.{} (partition, "offset", key, value, ts, headers) FROM '
                             "STDIN").format(self._q(self.schema), self._q(info.log_table))
        step = 5_000
        with conn.cursor() as cur, cur.copy(stmt) as cp:
            for partition, base, records in chunks:
                for i in range(0, len(records), step):
                    cp.write(self._lines(info.name, partition, base + i,
                                         records[i:i + step]).encode())

    def _notify(self, conn: Any) -> None:
        conn.execute("SELECT pg_notify(%s, '')", (self._channel(),))

    def _channel(self) -> str:
        return f"workbench:{self.schema}"[:_MAX_IDENT]

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> list[ReadRec]:
        info = self._require(topic)
        self._check_partition(info, partition)
        if max_records <= 0:
            return []
        if info.source_table:
            return self._read_table(info, offset, max_records)
        stmt = self._read_stmt(info)
        rows = self._take_prefetched(topic, partition, offset, max_records)
        if rows is None:
            rows = self._call(lambda c: self._fetch(c, stmt, info, partition, offset,
                                                    max_records), f"reading {topic!r}")
        if not rows:
            return []
        if len(rows) == max_records and self.prefetch:
            self._start_prefetch(stmt, info, partition, rows[-1][3] + 1, max_records)
        # one json.loads per batch instead of one per value
        keys = json.loads("[" + ",".join([r[0] or "null" for r in rows]) + "]")
        values = json.loads("[" + ",".join([r[1] or "null" for r in rows]) + "]")
        out: list[ReadRec] = []
        append = out.append
        scalars = _SCALARS
        for (_k, _v, ts, off, hs), k, v in zip(rows, keys, values):
            if k.__class__ not in scalars:
                k = decode_key(k)
            append((k, v, ts, off, None if hs is None else _headers_from(json.loads(hs))))
        return out

    def _read_stmt(self, info: _TopicInfo) -> Any:
        # The range [offset, offset + max) rather than "offset >= %s LIMIT %s" alone: with a
        # growing log the planner's statistics lag, and for an open range it picked a bitmap scan
        # of every later row plus a top-N sort (1 s per 10,000-row batch at 1M rows) instead of
        # the ordered index scan. Offsets are dense, except after compaction: see _fetch.
        stmt = self._read_stmts.get(info.log_table)
        if stmt is None:
            stmt = self._read_stmts[info.log_table] = self._sql.SQL(
                'SELECT key::text, value::text, ts, "offset", headers::text FROM {}.{} WHERE '
                'partition = %s AND "offset" >= %s AND "offset" < %s ORDER BY "offset"').format(
                    self._q(self.schema), self._q(info.log_table))
        return stmt

    def _fetch(self, conn: Any, stmt: Any, info: _TopicInfo, partition: int, offset: int,
               limit: int) -> list[Any]:
        rows = conn.execute(stmt, (partition, offset, offset + limit)).fetchall()
        if rows:
            return list(rows)
        # nothing in the range: the log ends here, or compaction left a gap to jump over
        nxt = conn.execute(self._sql.SQL(
            'SELECT min("offset") FROM {}.{} WHERE partition = %s AND "offset" >= %s').format(
                self._q(self.schema), self._q(info.log_table)), (partition, offset)).fetchone()
        if nxt is None or nxt[0] is None:
            return []
        return list(conn.execute(stmt, (partition, nxt[0], nxt[0] + limit)).fetchall())

    # Read-ahead: after a full batch, the next one is fetched on a second connection while the
    # engine processes this one, so the server's work and the network overlap with Python's.
    # Log rows never change once committed, so a batch read early is as good as one read late.
    def _start_prefetch(self, stmt: Any, info: _TopicInfo, partition: int, offset: int,
                        limit: int) -> None:
        if self._prefetch_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._prefetch_pool = ThreadPoolExecutor(1, thread_name_prefix="workbench-pg-read")
        self._prefetched[(info.name, partition)] = (
            offset, limit, self._prefetch_pool.submit(self._prefetch, stmt, info, partition,
                                                      offset, limit))

    def _prefetch(self, stmt: Any, info: _TopicInfo, partition: int, offset: int,
                  limit: int) -> list[Any] | None:
        try:
            if self._prefetch_conn is None or self._prefetch_conn.closed:
                self._prefetch_conn = self._new_connection()
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

    def end_offset(self, topic: str, partition: int) -> int:
        info = self._require(topic)
        self._check_partition(info, partition)
        if info.source_table:
            return self._table_end(info)
        stmt = self._sql.SQL("SELECT next_offset FROM {}._partitions WHERE topic = %s AND "
                             "partition = %s").format(self._q(self.schema))
        row = self._call(lambda c: c.execute(stmt, (topic, partition)).fetchone(),
                         f"end offset of {topic!r}")
        return 0 if row is None else int(row[0])

    # -- user tables as sources ---------------------------------------------------------------
    def _table_ident(self, info: _TopicInfo) -> Any:
        schema, _, table = (info.source_table or "").partition(".")
        return self._q(schema, table)

    def _source_type(self, info: _TopicInfo) -> str:
        """``"int"``, ``"timestamptz"`` or ``"timestamp"``: the ordering column's kind."""
        cached = self._source_types.get(info.name)
        if cached is not None:
            return cached
        schema, _, table = (info.source_table or "").partition(".")
        row = self._call(lambda c: c.execute(
            "SELECT format_type(a.atttypid, NULL) FROM pg_attribute a JOIN pg_class c ON "
            "c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE "
            "n.nspname = %s AND c.relname = %s AND a.attname = %s AND NOT a.attisdropped",
            (schema, table, info.source_column)).fetchone(), "inspecting a source table")
        if row is None:
            raise DefinitionError(f"table.{info.name}: table {info.source_table} has no column "
                                  f"{info.source_column!r}.")
        typ = row[0]
        if typ in ("smallint", "integer", "bigint"):
            kind = "int"
        elif typ == "timestamp with time zone":
            kind = "timestamptz"
        elif typ == "timestamp without time zone":
            kind = "timestamp"
        else:
            raise DefinitionError(
                f"table.{info.name}: column {info.source_column!r} of {info.source_table} is "
                f"{typ}; the ordering column must be an integer or a timestamp that increases "
                "with every insert.")
        self._source_types[info.name] = kind
        return kind

    def _offset_sql(self, info: _TopicInfo) -> tuple[Any, Any]:
        """``(column as offset, offset param as column value)``: integers map to themselves,
        timestamps to epoch microseconds."""
        S = self._sql.SQL
        col = self._q(info.source_column or "")
        kind = self._source_type(info)
        if kind == "int":
            return S("{}::bigint").format(col), S("%(o)s")
        base = "'epoch'::timestamptz" if kind == "timestamptz" else "'epoch'::timestamp"
        return (S("(extract(epoch FROM {} - " + base + ") * 1000000)::bigint").format(col),
                S(base + " + %(o)s * interval '1 microsecond'"))

    def _table_end(self, info: _TopicInfo) -> int:
        as_off, _ = self._offset_sql(info)
        stmt = self._sql.SQL("SELECT {e} FROM {t} ORDER BY {c} DESC LIMIT 1").format(
            e=as_off, t=self._table_ident(info), c=self._q(info.source_column or ""))
        row = self._call(lambda c: c.execute(stmt).fetchone(), f"end of {info.source_table}")
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def _read_table(self, info: _TopicInfo, offset: int, max_records: int) -> list[ReadRec]:
        """Rows whose ordering value maps to an offset >= ``offset``, in order; rows with the
        same value are never split between batches (they share an offset, and the engine
        resumes after it). Bad rows stop the read, or go to the errors table and are skipped."""
        while True:
            rows = self._table_rows(info, offset, max_records)
            out: list[ReadRec] = []
            for off, ks, vs, ts in rows:
                try:
                    key = None if ks is None else decode_key(json.loads(ks))
                    value = None if vs is None else json.loads(vs)
                except ValueError as exc:
                    msg = (f"table {info.source_table}: the row at {info.source_column} = "
                           f"position {off} (topic {info.name!r}) is not valid JSON ({exc}): "
                           f"{vs!r:.200}")
                    if not self.errors_table:
                        raise SerializationError(
                            msg + ". Fix or delete the row, or add errors=1 to the driver URL "
                            f"to route bad rows to {self.schema}._errors.") from exc
                    self._record_error(info.name, 0, str(off), info.source_table or "", msg,
                                       vs)
                    continue
                out.append((key, value, int(ts), int(off), None))
            if out or not rows:
                return out
            offset = int(rows[-1][0]) + 1  # a batch of bad rows only: go on after them

    def _table_rows(self, info: _TopicInfo, offset: int, max_records: int) -> list[Any]:
        S = self._sql.SQL
        as_off, from_off = self._offset_sql(info)
        col = self._q(info.source_column or "")
        kind = self._source_type(info)
        value_expr = (S("s.{}::text").format(self._q(info.source_value)) if info.source_value
                      else S("row_to_json(s)::text"))
        key_expr = (S("to_json(s.{})::text").format(self._q(info.source_key))
                    if info.source_key else S("NULL::text"))
        ts_expr = (S("0::bigint") if kind == "int" else
                   S("({} / 1000)").format(as_off))
        stmt = S(
            "SELECT {e} AS wb_offset, {k}, {v}, {ts} FROM (SELECT * FROM {t} WHERE {c} >= {fo} "
            "AND {c} <= coalesce((SELECT {c} FROM {t} WHERE {c} >= {fo} ORDER BY {c} "
            "OFFSET %(n)s - 1 LIMIT 1), {c})) AS s ORDER BY {c}"
        ).format(e=as_off, k=key_expr, v=value_expr, ts=ts_expr, t=self._table_ident(info),
                 c=col, fo=from_off)
        return self._call(  # type: ignore[no-any-return]
            lambda c: c.execute(stmt, {"o": offset, "n": max_records}).fetchall(),
            f"reading table {info.source_table}")

    def _record_error(self, topic: str, partition: int, position: str, source: str,
                      message: str, row_text: str | None) -> None:
        S, s = self._sql.SQL, self._q(self.schema)
        self._call(lambda c: c.execute(
            S("INSERT INTO {}._errors (topic, partition, position, source, error, row_text) "
              "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING").format(s),
            (topic, partition, position, source, message, row_text)), "recording a bad row")
        log.warning("%s (routed to %s._errors)", message, self.schema)

    def errors(self) -> list[dict[str, Any]]:
        """The rows of the errors table (bad input rows that were skipped)."""
        S, s = self._sql.SQL, self._q(self.schema)
        rows = self._call(lambda c: c.execute(S(
            "SELECT topic, partition, position, source, error, row_text FROM {}._errors "
            "ORDER BY id").format(s)).fetchall(), "reading the errors table")
        cols = ("topic", "partition", "position", "source", "error", "row")
        return [dict(zip(cols, r)) for r in rows]

    # -- transactions -------------------------------------------------------------------------
    def committed(self, app_id: str, topic: str, partition: int) -> int:
        S, s = self._sql.SQL, self._q(self.schema)
        row = self._call(lambda c: c.execute(S(
            "SELECT next_offset FROM {}._positions WHERE app = %s AND topic = %s AND "
            "partition = %s").format(s), (app_id, topic, partition)).fetchone(),
            "reading positions")
        pos = 0 if row is None else int(row[0])
        self._expected[(app_id, topic, partition)] = pos
        return pos

    def committed_metadata(self, app_id: str) -> dict[str, Any]:
        S, s = self._sql.SQL, self._q(self.schema)
        rows = self._call(lambda c: c.execute(S(
            "SELECT key, value FROM {}._metadata WHERE app = %s").format(s), (app_id,)
            ).fetchall(), "reading metadata")
        return {k: v for k, v in rows}

    def commit(self, txn: Transaction) -> None:
        if txn.is_empty():
            return
        with self._lock:
            started = time.perf_counter()
            encoded: dict[tuple[str, int], list[Any]] = {}
            infos: dict[str, _TopicInfo] = {}
            for (topic, partition), records in txn.outputs.items():
                info = infos.get(topic) or self._require(topic)
                infos[topic] = info
                self._check_partition(info, partition)
                if info.source_table:
                    raise DriverError(f"topic {topic!r} is the table {info.source_table}: it "
                                      "cannot be written to.")
                if records:
                    encoded[(topic, partition)] = records
            metadata = {k: _encode(v) for k, v in txn.metadata.items()}
            self._seq += 1
            seq = self._seq
            delay = 0.05
            deadline = time.monotonic() + self.retry_ms / 1000
            while True:
                try:
                    with self._conn.transaction():
                        self._apply(self._conn, txn, infos, encoded, metadata, seq)
                    break
                except (FencedError, SerializationError):
                    raise
                except self._pg.Error as exc:
                    for info in infos.values():  # DDL of the failed attempt was rolled back
                        if info.upsert:
                            info.windowed = None
                    state = getattr(getattr(exc, "diag", None), "sqlstate", None)
                    if self._is_connection_error(exc):
                        if time.monotonic() > deadline:
                            raise DriverError(
                                f"commit failed: PostgreSQL unreachable ({exc}); nothing of this "
                                "transaction was written. Restart the run to resume."
                            ) from exc
                        self._reconnect(exc)
                        if self._commit_landed(seq):
                            break  # the COMMIT went through; only its acknowledgement was lost
                    elif state in _SQLSTATE_RETRY and time.monotonic() < deadline:
                        log.info("commit: transient failure %s, retrying", state)
                    else:
                        raise DriverError(self._describe_failure(exc, txn)) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
            for (topic, partition), pos in txn.positions.items():
                self._expected[(txn.app_id, topic, partition)] = pos
            self.commits += 1
            self.last_commit_ms = (time.perf_counter() - started) * 1000

    def _commit_landed(self, seq: int) -> bool:
        S, s = self._sql.SQL, self._q(self.schema)
        row = self._conn.execute(S("SELECT seq FROM {}._commits WHERE token = %s").format(s),
                                 (self._token,)).fetchone()
        return row is not None and int(row[0]) >= seq

    def _describe_failure(self, exc: Any, txn: Transaction) -> str:
        diag = getattr(exc, "diag", None)
        table = getattr(diag, "table_name", None)
        where = f" on table {self.schema}.{table}" if table else ""
        detail = getattr(diag, "message_detail", None)
        spans = ", ".join(f"{t}[{p}] ({len(r)} records)" for (t, p), r in txn.outputs.items())
        return (f"commit of application {txn.app_id!r} failed{where}: {str(exc).strip()}"
                + (f" ({detail})" if detail else "")
                + f". The transaction was rolled back (outputs: {spans or 'none'}); restart "
                "resumes from the last commit.")

    def _apply(self, conn: Any, txn: Transaction, infos: dict[str, _TopicInfo],
               encoded: dict[tuple[str, int], list[Any]],
               metadata: dict[str, str], seq: int) -> None:
        S, s = self._sql.SQL, self._q(self.schema)
        # 1. positions first: compare-and-set against what this process last saw, so a worker
        #    that lost its partitions cannot write anything
        if txn.positions:
            keys = sorted(txn.positions)
            topics = [t for t, _ in keys]
            parts = [p for _, p in keys]
            rows = conn.execute(S(
                "SELECT topic, partition, next_offset FROM {}._positions WHERE app = %s AND "
                "(topic, partition) IN (SELECT * FROM unnest(%s::text[], %s::int[])) "
                "ORDER BY topic, partition FOR UPDATE").format(s),
                (txn.app_id, topics, parts)).fetchall()
            current = {(t, p): o for t, p, o in rows}
            for key in keys:
                expected = self._expected.get((txn.app_id, *key))
                if expected is not None and current.get(key, 0) != expected:
                    raise FencedError(
                        f"application {txn.app_id!r}: the committed position of {key[0]!r} "
                        f"partition {key[1]} is {current.get(key, 0)}, not {expected} as this "
                        "worker expected: another worker processed it. This worker's "
                        "uncommitted work is discarded; restart it to take new partitions."
                    )
            conn.execute(S(
                "INSERT INTO {}._positions (app, topic, partition, next_offset) SELECT %s, t, p,"
                " o FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS u(t, p, o) ON CONFLICT "
                "(app, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, "
                "updated_at = now()").format(s),
                (txn.app_id, topics, parts, [txn.positions[k] for k in keys]))
        # 2. outputs: reserve offsets, COPY into the logs, upsert table sinks
        if encoded:
            bases = self._reserve(conn, [(t, p, len(r)) for (t, p), r in encoded.items()])
            by_topic: dict[str, list[tuple[int, int, list[Any]]]] = {}
            for (t, p), rows in encoded.items():
                by_topic.setdefault(t, []).append((p, bases[(t, p)], rows))
            for t in sorted(by_topic):
                self._copy(conn, infos[t], by_topic[t])
            for t in sorted(by_topic):
                if infos[t].upsert:
                    self._upsert(conn, infos[t], txn, t)
        # 3. metadata, the commit marker, listeners
        if metadata:
            ks = sorted(metadata)
            conn.execute(S(
                "INSERT INTO {}._metadata (app, key, value) SELECT %s, k, v::jsonb FROM "
                "unnest(%s::text[], %s::text[]) AS u(k, v) ON CONFLICT (app, key) DO UPDATE SET "
                "value = EXCLUDED.value").format(s), (txn.app_id, ks, [metadata[k] for k in ks]))
        conn.execute(S(
            "INSERT INTO {}._commits (token, seq) VALUES (%s, %s) ON CONFLICT (token) DO UPDATE "
            "SET seq = EXCLUDED.seq, at = now()").format(s), (self._token, seq))
        if encoded:
            self._notify(conn)

    # -- table sinks --------------------------------------------------------------------------
    def _upsert(self, conn: Any, info: _TopicInfo, txn: Transaction, topic: str) -> None:
        """Apply the commit's changes of table sink ``topic`` to its table: the last change per
        key (and window) wins; a ``None`` value deletes the row."""
        latest: dict[Any, tuple[Any, Any, int]] = {}
        windowed = None
        for (t, _p), records in txn.outputs.items():
            if t != topic:
                continue
            for r in records:
                k = r[0]
                if windowed is None:
                    windowed = isinstance(k, Windowed)
                latest[k] = (k, r[1], r[2])
        if not latest:
            return
        self._ensure_upsert_table(conn, info, bool(windowed))
        S = self._sql.SQL
        lines = []
        deletes = False
        for k, v, ts in latest.values():
            try:
                if info.windowed:
                    if not isinstance(k, Windowed):
                        raise SerializationError(
                            f"table sink {topic!r} holds windowed keys, got key {k!r}.")
                    kj, ws, we = _encode(encode_key(k.key)), str(k.window_start), str(
                        k.window_end)
                else:
                    kj, ws, we = _encode(encode_key(k)), "\\N", "\\N"
                if v is None:
                    vj, deletes = "\\N", True
                else:
                    vj = _copy_text(_encode(v))
            except (TypeError, ValueError, RecursionError) as exc:
                raise SerializationError(f"table sink {topic!r}: cannot encode key {k!r} or "
                                         f"its value as JSON: {exc}") from exc
            lines.append(f"{_copy_text(kj)}\t{ws}\t{we}\t{vj}\t{ts}\n")
        stage = S("COPY pg_temp._wb_stage (key, window_start, window_end, value, ts) FROM STDIN")
        with conn.cursor() as cur, cur.copy(stage) as cp:
            cp.write("".join(lines).encode())
        table = self._q(self.schema, _ident("", topic))
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

    def _ensure_upsert_table(self, conn: Any, info: _TopicInfo, windowed: bool) -> None:
        if info.windowed is not None:
            return
        S, s = self._sql.SQL, self._q(self.schema)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.schema, info.name),))
        row = conn.execute(S("SELECT windowed FROM {}._topics WHERE name = %s").format(s),
                           (info.name,)).fetchone()
        if row is not None and row[0] is not None:
            info.windowed = bool(row[0])
            return
        table = self._q(self.schema, _ident("", info.name))
        if windowed:
            conn.execute(S("CREATE TABLE IF NOT EXISTS {} (key jsonb NOT NULL, window_start "
                           "bigint NOT NULL, window_end bigint NOT NULL, value jsonb NOT NULL, "
                           "ts bigint NOT NULL, PRIMARY KEY (window_start, window_end, key))"
                           ).format(table))
        else:
            conn.execute(S("CREATE TABLE IF NOT EXISTS {} (key jsonb PRIMARY KEY, value jsonb "
                           "NOT NULL, ts bigint NOT NULL)").format(table))
        conn.execute(S("UPDATE {}._topics SET windowed = %s WHERE name = %s").format(s),
                     (windowed, info.name))
        info.windowed = windowed

    def table_rows(self, topic: str) -> list[tuple[Any, Any]]:
        """``[(key, value)]`` of table sink ``topic``'s upserted table (windowed keys come back
        as :class:`~workbench.windows.Windowed`), ordered by key."""
        info = self._require(topic)
        if not info.upsert:
            raise DriverError(f"topic {topic!r} is not a table sink.")
        S = self._sql.SQL
        fresh = self._call(lambda c: c.execute(S("SELECT windowed FROM {}._topics WHERE name = "
                                                 "%s").format(self._q(self.schema)),
                                               (topic,)).fetchone(), "reading the catalog")
        if fresh is None or fresh[0] is None:
            return []
        table = self._q(self.schema, _ident("", topic))
        if fresh[0]:
            rows = self._call(lambda c: c.execute(S(
                "SELECT key::text, window_start, window_end, value::text FROM {} ORDER BY 1, 2, 3"
            ).format(table)).fetchall(), f"reading table {topic!r}")
            return [(Windowed(decode_key(json.loads(k)), ws, we), json.loads(v))
                    for k, ws, we, v in rows]
        rows = self._call(lambda c: c.execute(S(
            "SELECT key::text, value::text FROM {} ORDER BY 1").format(table)).fetchall(),
            f"reading table {topic!r}")
        return [(decode_key(json.loads(k)), json.loads(v)) for k, v in rows]

    # -- membership ---------------------------------------------------------------------------
    def assign(self, app_id: str, topics: Iterable[str]) -> dict[str, list[int]]:
        """Lease partitions with session advisory locks on ``(schema, app, partition)``.

        With ``members=N`` in the URL a worker takes at most ``ceil(P / N)`` partitions, so N
        workers started together split the work; partitions already leased by this driver are
        kept.
        """
        counts = {t: self.partitions(t) or 0 for t in topics}
        self._assigned[app_id] = list(counts)
        total = max(counts.values(), default=0)
        mine = self._leases.setdefault(app_id, set())
        cap = -(-total // self.members) if self.members > 0 else total
        for p in range(total):
            if p in mine:
                continue
            if len(mine) >= cap:
                break
            if self._try_lock(_lock_key(self.schema, app_id, p)):
                mine.add(p)
        log.info("application %r: leased partitions %s of %d", app_id, sorted(mine), total)
        return {t: sorted(p for p in mine if p < c) for t, c in counts.items()}

    def _try_lock(self, key: int) -> bool:
        def lease(conn: Any) -> bool:
            return bool(conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])

        return bool(self._call(lease, "leasing partitions"))

    def poll_membership(self) -> dict[str, list[int]] | None:
        """With ``takeover=1``: lease the partitions that became free (their worker died, or
        stopped), up to ⌈P / live workers⌉, and return the new ownership; else ``None``. The
        engine calls this after each commit (at most one lease round per second here). Off by
        default: in a bounded run the engine would add a task after it started flushing."""
        if not self.takeover or not self._assigned:
            return None
        now = time.monotonic()
        if now - self._last_membership < 1.0:
            return None
        self._last_membership = now
        changed = False
        for app_id, topics in self._assigned.items():
            mine = self._leases.setdefault(app_id, set())
            total = max((self.partitions(t) or 0 for t in topics), default=0)
            keys = {_lock_key(self.schema, app_id, p): p for p in range(total)}
            rows = self._call(lambda c: c.execute(
                "SELECT DISTINCT pid, classid::bigint, objid::bigint FROM pg_locks WHERE "
                "locktype = 'advisory' AND granted AND pid <> pg_backend_pid()").fetchall(),
                "reading leases")
            held = {keys.get(self._signed((cls << 32) | obj)): pid for pid, cls, obj in rows}
            held.pop(None, None)
            others = len(set(held.values()))
            cap = -(-total // (others + 1))
            for p in range(total):
                if len(mine) >= cap:
                    break
                if p in mine or p in held:
                    continue
                if self._try_lock(_lock_key(self.schema, app_id, p)):
                    mine.add(p)
                    changed = True
        if not changed:
            return None
        out: dict[str, list[int]] = {}
        for app_id, topics in self._assigned.items():
            mine = self._leases.get(app_id, set())
            for t in topics:
                out[t] = sorted(p for p in mine if p < (self.partitions(t) or 0))
        log.info("took over partitions: %s", out)
        return out

    @staticmethod
    def _signed(value: int) -> int:
        return value - (1 << 64) if value >= 1 << 63 else value

    def end_run(self) -> None:
        """The run is over: give up its partitions (reading results keeps working)."""
        for app_id in list(self._leases):
            self.release(app_id)
        self._assigned.clear()

    def release(self, app_id: str) -> None:
        """Give up this process's partitions of ``app_id``."""
        for p in sorted(self._leases.pop(app_id, set())):
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)",
                                   (_lock_key(self.schema, app_id, p),))
            except self._pg.Error:
                break  # the session is gone, and its locks with it

    # -- tailing ------------------------------------------------------------------------------
    def wait_for_data(self, timeout_s: float) -> bool:
        """Block until a commit or append on this schema is notified (``LISTEN``), or
        ``timeout_s`` passes; True if notified. For the engine's idle loop instead of sleeping.
        User-table sources have no notifications: the timeout bounds how late their new rows
        are seen."""
        try:
            if self._listen_conn is None or self._listen_conn.closed:
                self._listen_conn = self._new_connection()
                self._listen_conn.execute(self._sql.SQL("LISTEN {}").format(
                    self._q(self._channel())))
            got = False
            for _n in self._listen_conn.notifies(timeout=timeout_s, stop_after=1):
                got = True
            return got
        except self._pg.Error:
            if self._listen_conn is not None:
                with contextlib.suppress(self._pg.Error):
                    self._listen_conn.close()
            self._listen_conn = None
            time.sleep(min(timeout_s, 0.5))
            return False

    # -- maintenance --------------------------------------------------------------------------
    def compact(self, topic: str) -> int:
        """Delete the records of compacted topic ``topic`` (changelogs) that a later record of
        the same key supersedes; offsets do not change. Returns how many were deleted."""
        info = self._require(topic)
        stmt = self._sql.SQL(
            'DELETE FROM {t} AS a USING (SELECT partition, "offset", row_number() OVER (PARTITION '
            'BY partition, key::text ORDER BY "offset" DESC) AS rn FROM {t}) AS b WHERE '
            'a.partition = b.partition AND a."offset" = b."offset" AND b.rn > 1').format(
                t=self._q(self.schema, info.log_table))

        def run(conn: Any) -> int:
            with conn.transaction():
                return int(conn.execute(stmt).rowcount)

        return self._call(run, f"compacting {topic!r}")  # type: ignore[no-any-return]

    def drop_schema(self) -> None:
        """Drop the whole schema (tests, resets)."""
        stmt = self._sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(self._q(self.schema))
        self._call(lambda c: c.execute(stmt), f"dropping schema {self.schema!r}")
        self._topics.clear()
        self._read_stmts.clear()
        self._prefetched.clear()

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed and self.commits:
            with contextlib.suppress(Exception):  # this instance's commit marker
                self._conn.execute(self._sql.SQL("DELETE FROM {}._commits WHERE token = %s")
                                   .format(self._q(self.schema)), (self._token,))
        if self._prefetch_pool is not None:
            self._prefetch_pool.shutdown(wait=True, cancel_futures=True)
            self._prefetch_pool = None
        self._prefetched.clear()
        for conn in (self._listen_conn, self._conn, self._prefetch_conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        self._listen_conn = None
        self._conn = None
        self._prefetch_conn = None
        self._leases.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def open_driver(url: str) -> PostgresDriver:
    """Factory for :func:`workbench.drivers.register_driver`."""
    return PostgresDriver(url)

