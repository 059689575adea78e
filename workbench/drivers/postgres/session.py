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

__all__ = ["SQLSTATE_RETRY", "Session", "libpq_params", "load_psycopg", "sqlstate"]

log = logging.getLogger(__name__)

#: serialization failure, deadlock, lock not available: worth another try
SQLSTATE_RETRY = {"40001", "40P01", "55P03"}
#: libpq's words for a connection parameter it cannot use
_BAD_PARAMETER = ("invalid connection option", "invalid URI", "invalid integer value",
                  " value: \"", "missing \"=\"")
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
        """A fresh autocommit connection (for listeners and read-ahead too)."""
        return self.pg.connect(self.options.conninfo, autocommit=True,
                               application_name=self.application_name)

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
        this process's leases back; another worker holding one fences this process)."""
        log.warning("PostgreSQL connection lost (%s); reconnecting", self.scrub(cause))
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None
        try:
            self.connect()
        except DriverUnavailableError as exc:
            raise self.error(
                DriverError,
                f"lost the connection to PostgreSQL at {self.safe_url()} and could not "
                f"reconnect within {self.options.retry_ms / 1000:g} s ({cause}). Nothing of the "
                "current transaction was written; restart the run to resume from the last "
                "commit.") from self.cause(exc)
        self.reconnects += 1
        for hook in self.after_reconnect:
            hook(self.conn)

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
                elif state in SQLSTATE_RETRY and time.monotonic() < deadline:
                    pass
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
