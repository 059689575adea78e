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
from typing import Any
from urllib.parse import urlsplit

from ...errors import DriverError, DriverUnavailableError
from .options import PgOptions

__all__ = ["SQLSTATE_RETRY", "Session", "sqlstate"]

log = logging.getLogger(__name__)

#: serialization failure, deadlock, lock not available: worth another try
SQLSTATE_RETRY = {"40001", "40P01", "55P03"}


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg error, if it has one."""
    return getattr(getattr(exc, "diag", None), "sqlstate", None)


class Session:
    """The connection, the schema name and the retry policy shared by the driver's parts.

    Attributes:
        pg, sql: the ``psycopg`` module and ``psycopg.sql``.
        options: the parsed URL.
        url: the URL as given.
        schema: the schema of workbench's tables.
        conn: the autocommit connection (``None`` while disconnected).
        reconnects: how many times the connection was re-established.
        after_connect: called with the new connection after every connect.
        after_reconnect: called after a lost connection was re-established (leases).
    """

    def __init__(self, url: str, options: PgOptions, application_name: str) -> None:
        try:
            import psycopg
            from psycopg import sql
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise DriverUnavailableError(
                "the PostgreSQL driver needs psycopg 3: install workbench[postgres] "
                "(pip install 'workbench[postgres]')."
            ) from exc
        self.pg: Any = psycopg
        self.sql: Any = sql
        self.url = url
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
        """The URL without password and query, for messages."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        user = parts.username or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{user}@{host}{port}{parts.path}"

    # -- connections --------------------------------------------------------------------------
    def new_connection(self) -> Any:
        """A fresh autocommit connection (for listeners and read-ahead too)."""
        return self.pg.connect(self.options.conninfo, autocommit=True,
                               application_name=self.application_name)

    def connect(self) -> None:
        """Connect, retrying with backoff for up to ``retry=``."""
        deadline = time.monotonic() + self.options.retry_ms / 1000
        delay = 0.05
        while True:
            try:
                self.conn = self.new_connection()
                for hook in self.after_connect:
                    hook(self.conn)
                return
            except self.pg.OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    raise DriverUnavailableError(
                        f"cannot connect to PostgreSQL at {self.safe_url()}: "
                        f"{str(exc).strip()}. Start a local server with `workbench dev up`, "
                        "or check the URL."
                    ) from exc
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
        log.warning("PostgreSQL connection lost (%s); reconnecting", str(cause).strip())
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None
        try:
            self.connect()
        except DriverUnavailableError as exc:
            raise DriverError(
                f"lost the connection to PostgreSQL at {self.safe_url()} and could not "
                f"reconnect within {self.options.retry_ms / 1000:g} s ({cause}). Nothing of the "
                "current transaction was written; restart the run to resume from the last "
                "commit."
            ) from exc
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
                        raise DriverError(f"{what}: PostgreSQL unreachable: {exc}") from exc
                    self.reconnect(exc)
                elif state in SQLSTATE_RETRY and time.monotonic() < deadline:
                    pass
                else:
                    raise DriverError(f"{what} failed: {str(exc).strip()}") from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

    def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None
