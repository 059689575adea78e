"""The driver's connection: connect, reconnect with backoff, and retry what may be retried.

Every part of the driver talks to PostgreSQL through one :class:`Session`: its autocommit
connection, the schema that holds workbench's tables, and :meth:`Session.call`, which runs a
repeatable statement and reconnects or retries on lost connections and transient failures.
psycopg's exceptions are mapped to workbench's errors here and in :mod:`.commit`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from ..._urls import redact_text
from ...errors import DefinitionError, DriverError, DriverUnavailableError
from .options import PgOptions

__all__ = ["LOCK_NOT_AVAILABLE", "QUERY_CANCELED", "SQLSTATE_RETRY", "Session", "libpq_params",
           "load_psycopg", "sqlstate"]

log = logging.getLogger(__name__)

#: serialization failure, deadlock, lock not available: worth another try
SQLSTATE_RETRY = {"40001", "40P01", "55P03"}
LOCK_NOT_AVAILABLE, QUERY_CANCELED = "55P03", "57014"
#: libpq's words for a connection parameter it cannot use
_BAD_PARAMETER = ("invalid connection option", "invalid URI", "invalid integer value",
                  " value: \"", "missing \"=\"", "unrecognized configuration parameter",
                  "invalid value for parameter")
#: the server's words for a refusal that retrying cannot change
_REFUSED = ("does not exist", "authentication failed", "no pg_hba.conf entry",
            "permission denied")
E = TypeVar("E", bound=Exception)


def load_psycopg() -> tuple[Any, Any]:
    """``(psycopg, psycopg.sql)``, or :class:`DriverUnavailableError` saying how to install."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DriverUnavailableError(
            "the PostgreSQL driver needs psycopg 3: install workbench[postgres] "
            "(pip install 'workbench[postgres]')."
        ) from exc
    return psycopg, sql


_PARAMS: frozenset[str] | None = None


def libpq_params() -> frozenset[str]:
    """The connection parameters the linked libpq knows."""
    global _PARAMS
    if _PARAMS is None:
        pg, _sql = load_psycopg()
        _PARAMS = frozenset(o.keyword.decode() for o in pg.pq.Conninfo.get_defaults())
    return _PARAMS


def primary(exc: BaseException) -> str:
    """The server's one-line message of a psycopg error (without the ``LINE 1: ...`` lines)."""
    text = getattr(getattr(exc, "diag", None), "message_primary", None)
    return str(text or exc).strip()


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg error, if it has one."""
    return getattr(getattr(exc, "diag", None), "sqlstate", None)


class Session:
    """The connection, the schema name and the retry policy shared by the driver's parts.

    Attributes:
        pg, sql: the ``psycopg`` module and ``psycopg.sql``.
        options: the parsed URL.
        schema: the schema of workbench's tables.
        conn: the autocommit connection (``None`` while disconnected).
        reconnects: how many times the connection was re-established.
        after_connect: called with the new connection after every connect.
        after_reconnect: called after a lost connection was re-established (leases).
    """

    def __init__(self, options: PgOptions, application_name: str) -> None:
        self.pg, self.sql = load_psycopg()
        self.options = options
        self.schema = options.schema or "workbench"
        self.application_name = application_name
        self.conn: Any = None
        self.reconnects = 0
        self.after_connect: list[Callable[[Any], None]] = []
        self.after_reconnect: list[Callable[[Any], None]] = []
        self._pids: set[int] = set()  # backends of this driver's connections

    # -- names --------------------------------------------------------------------------------
    def q(self, *names: str) -> Any:
        """A quoted identifier (``schema.table`` when given two names)."""
        return self.sql.Identifier(*names)

    def qs(self) -> Any:
        """The quoted schema."""
        return self.sql.Identifier(self.schema)

    def safe_url(self) -> str:
        """The URL without its password and query, for messages."""
        return self.options.shown.split("?", 1)[0]

    def scrub(self, text: object) -> str:
        """``text`` (an error message, perhaps psycopg's quoting the connection string) without
        the URL's password or any other secret."""
        out = redact_text(str(text).strip())
        secret = self.options.password
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***").replace(quote(secret, safe=""), "***")
        return out

    def error(self, cls: type[E], message: str) -> E:
        """``cls(message)``, scrubbed of secrets."""
        return cls(self.scrub(message))

    def cause(self, exc: BaseException) -> BaseException | None:
        """``exc`` to chain an error to (``raise ... from``), or ``None`` when its own text would
        show a secret."""
        return exc if self.scrub(exc) == str(exc).strip() else None

    # -- connections --------------------------------------------------------------------------
    def new_connection(self) -> Any:
        """A fresh autocommit connection (for listeners and read-ahead too), whose statements
        wait at most ``lock_timeout=`` for a lock. ``application_name`` in the URL wins over
        the driver's."""
        extra = {} if "application_name=" in self.options.conninfo else {
            "application_name": self.application_name}
        conn = self.pg.connect(self.options.conninfo, autocommit=True, **extra)
        conn.execute("SELECT set_config('lock_timeout', %s, false)",
                     (f"{self.options.lock_timeout_ms}ms",))
        self._pids.add(conn.info.backend_pid)
        return conn

    def blockers(self) -> str:
        """Who holds locks on this schema's tables (other sessions; the oldest transactions
        first), as a sentence for messages; empty when nobody does or it cannot be told."""
        stmt = (
            "SELECT a.pid, a.application_name, a.usename, a.state, "
            "extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::int, "
            "left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120), "
            "string_agg(DISTINCT l.mode || ' on ' || c.relname, ', ') "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "JOIN pg_class c ON c.oid = l.relation "
            "WHERE l.granted AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = "
            "%s) AND l.pid <> pg_backend_pid() AND NOT l.pid = ANY(%s) AND NOT (l.mode = "
            "'AccessShareLock' AND a.state = 'active') "
            "GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 5 DESC NULLS LAST LIMIT 3")
        try:
            rows = self.conn.execute(stmt, (self.schema, sorted(self._pids))).fetchall()
        except Exception:  # only a hint for a message
            return ""
        if not rows:
            return ""
        parts = [f"pid {pid} (application {app!r}, user {user!r}, {state} for {age} s, "
                 f"holding {locks}; its statement: {query!r})"
                 for pid, app, user, state, age, query, locks in rows]
        return self.scrub("held by " + "; ".join(parts))

    def connect(self) -> None:
        """Connect, retrying with backoff for up to ``retry=``; a refusal that retrying cannot
        change (no such database or user, bad password, a bad parameter) fails at once."""
        deadline = time.monotonic() + self.options.retry_ms / 1000
        delay = 0.05
        while True:
            try:
                self.conn = self.new_connection()
                for hook in self.after_connect:
                    hook(self.conn)
                return
            except self.pg.ProgrammingError as exc:  # psycopg refused a parameter's value
                raise self.error(DefinitionError, f"{self.options.shown}: {exc}") from None
            except self.pg.OperationalError as exc:
                text = str(exc)
                if any(m in text for m in _BAD_PARAMETER):
                    raise self.error(DefinitionError, f"{self.options.shown}: {text}") from None
                final = any(m in text for m in _REFUSED)
                if final or time.monotonic() + delay > deadline:
                    raise self.error(
                        DriverUnavailableError,
                        f"cannot connect to PostgreSQL at {self.safe_url()}: {text}. "
                        + ("Check the URL's database, user and password."
                           if final else "Start a local server with `workbench dev up`, or "
                           "check the URL.")) from self.cause(exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def pipeline(self, conn: Any) -> Any:
        """A context in which ``conn``'s statements go to the server together (psycopg's
        pipeline mode: one round trip, results read after); with a libpq older than 14, which
        has no pipeline mode, the statements simply run one by one."""
        if self.pg.Pipeline.is_supported():
            return conn.pipeline()
        return contextlib.nullcontext()

    def is_connection_error(self, exc: BaseException) -> bool:
        """True when ``exc`` means the connection is gone (reconnect and retry)."""
        pg = self.pg
        if isinstance(exc, pg.OperationalError) and not isinstance(
                exc, pg.errors.QueryCanceled):
            state = sqlstate(exc)
            return state is None or state.startswith(("08", "57P"))
        return isinstance(exc, pg.InterfaceError) or (
            self.conn is not None and self.conn.closed)

    def reconnect(self, cause: BaseException) -> None:
        """Reconnect after a lost connection, then run the ``after_reconnect`` hooks (they take
        this process's leases back; another worker holding one fences this process). A
        connection lost again meanwhile is reconnected again, until ``retry=`` is spent."""
        deadline = time.monotonic() + self.options.retry_ms / 1000
        while True:
            log.warning("PostgreSQL connection lost (%s); reconnecting", self.scrub(cause))
            if self.conn is not None:
                with contextlib.suppress(Exception):
                    self.conn.close()
            self.conn = None
            try:
                self.connect()
                for hook in self.after_reconnect:
                    hook(self.conn)
            except DriverUnavailableError as exc:
                raise self.error(
                    DriverError,
                    f"lost the connection to PostgreSQL at {self.safe_url()} and could not "
                    f"reconnect within {self.options.retry_ms / 1000:g} s ({cause}). Nothing of "
                    "the current transaction was written; restart the run to resume from the "
                    "last commit.") from self.cause(exc)
            except self.pg.Error as exc:
                if not self.is_connection_error(exc) or time.monotonic() > deadline:
                    raise
                cause = exc
                continue
            self.reconnects += 1
            return

    def lock_wait(self, what: str, exc: BaseException, final: bool) -> str:
        """The message for a statement that gave up waiting for a lock (``lock_timeout=``),
        naming who holds locks on the schema; logged as a warning unless ``final``."""
        msg = (f"{what}: waited {self.options.lock_timeout_ms / 1000:g} s for a lock "
               f"({primary(exc)})")
        who = self.blockers()
        msg += f", {who}" if who else ""
        if not final:
            log.warning("%s; trying again", self.scrub(msg))
        return msg

    def timed_out(self, what: str, exc: BaseException) -> str:
        """The message for a statement cancelled by ``statement_timeout``."""
        try:
            limit = self.conn.execute("SHOW statement_timeout").fetchone()[0]
        except Exception:  # only a hint for a message
            limit = "?"
        who = self.blockers()
        return (f"{what} was cancelled by the server: {primary(exc)} (statement_timeout is "
                f"{limit}{'; locks ' + who if who else ''}). Raise statement_timeout for "
                "workbench's connections (options=-c%20statement_timeout%3D0 in the URL, or "
                "ALTER ROLE ... SET statement_timeout), or make commits smaller (a shorter "
                "commit interval)")

    def call(self, fn: Callable[[Any], Any], what: str) -> Any:
        """Run ``fn(conn)``, reconnecting and retrying (with backoff) on lost connections and
        transient failures. ``fn`` must be safe to repeat (reads, idempotent writes)."""
        delay = 0.05
        deadline = time.monotonic() + self.options.retry_ms / 1000
        while True:
            try:
                return fn(self.conn)
            except self.pg.Error as exc:
                state = sqlstate(exc)
                if self.is_connection_error(exc):
                    if time.monotonic() > deadline:
                        raise self.error(DriverError, f"{what}: PostgreSQL unreachable: {exc}"
                                         ) from self.cause(exc)
                    self.reconnect(exc)
                elif state == LOCK_NOT_AVAILABLE:
                    final = time.monotonic() > deadline
                    msg = self.lock_wait(what, exc, final)
                    if final:
                        raise self.error(DriverError, msg + f"; gave up after retry="
                                         f"{self.options.retry_ms / 1000:g} s.") from None
                elif state in SQLSTATE_RETRY and time.monotonic() < deadline:
                    pass
                elif state == QUERY_CANCELED:
                    raise self.error(DriverError, self.timed_out(what, exc) + ".") from None
                else:
                    raise self.error(DriverError, f"{what} failed: {exc}") from self.cause(exc)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

    def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None
