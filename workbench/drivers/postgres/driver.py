"""The :class:`PostgresDriver`: the driver contract on top of the package's parts.

The engine's commits overlap its work (``overlap=1``, the default): :meth:`PostgresDriver.
commit_soon` encodes the transaction's records while the previous commit is still being written,
then hands the transaction to a thread and returns; the server writes it while the engine
processes the next batch. Every other call that talks to the server (on the connection
the commit uses, or about what it writes) waits for that commit first, and raises its error if
it failed: a read of a topic the commit writes, positions, end offsets, table rows, the end of
the run, closing. Only a read served by the read-ahead connection of a topic the commit does
not write goes on meanwhile. So at most one commit is in flight, nothing reads around it, and
a failed commit stops the run at the driver's next call, with nothing of it written (restart
resumes from the last commit, as before). :meth:`PostgresDriver.commit` (the contract's) is
synchronous.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..base import Driver, OutRec, ReadRec, Transaction
from .catalog import Catalog
from .commit import Committer
from .errors_table import ErrorsTable
from .leases import Leases
from .logs import Logs
from .options import PgOptions, TableSource, parse_url
from .session import Session, libpq_params, load_psycopg
from .sinks import STAGE_DDL, TableSinks
from .sources import TableSources
from .tailing import Listener

__all__ = ["PostgresDriver"]

log = logging.getLogger(__name__)


def _settled(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wait for the commit in flight (raising its error) before ``method``."""
    @functools.wraps(method)
    def run(self: PostgresDriver, *args: Any, **kwargs: Any) -> Any:
        if self._pending is not None:
            self.settle()
        return method(self, *args, **kwargs)
    return run


class PostgresDriver(Driver):
    """Topics, state and positions in PostgreSQL; each commit is one SQL transaction.

    Args:
        url: ``postgresql://user@host:port/db?options`` (see ``docs/drivers/postgres.md``).
        schema: overrides ``schema=`` of the URL.
        application_name: shown in ``pg_stat_activity``.
    """

    scheme = "postgresql"
    #: commits take column batches (encoded into COPY text column by column)
    accepts_batches = True
    #: and window stores' changelogs as columns (``runtime.window_changes``)
    accepts_window_changes = True
    _commit_pool: Any = None
    _pending: Any = None  # the commit in flight (a Future), see settle()
    _pending_topics: frozenset[str] = frozenset()

    def __init__(self, url: str, *, schema: str | None = None,
                 application_name: str = "workbench") -> None:
        load_psycopg()  # "install workbench[postgres]" comes first
        options = parse_url(url, libpq_params())
        #: the URL as shown (reprs, logs, messages): without its password or secrets
        self.url = options.shown
        self.options: PgOptions = options
        self.session = Session(options, application_name)
        if schema:
            self.session.schema = schema
        self._schema_explicit = bool(schema or options.schema)
        self.default_partitions = options.partitions
        self.takeover = options.takeover
        self.catalog = Catalog(self.session)
        self.logs = Logs(self.session, self.catalog)
        self.errors_table = ErrorsTable(self.session)
        self.sources = TableSources(self.session, self.errors_table)
        self.sinks = TableSinks(self.session, self.catalog, self.errors_table)
        self.committer = Committer(self.session, self.catalog, self.logs, self.sinks)
        self.leases = Leases(self.session, self.partitions)
        self.listener = Listener(self.session)
        self.session.after_connect.append(lambda conn: conn.execute(STAGE_DDL))
        self.session.connect()
        self.catalog.setup_schema()

    # -- facts --------------------------------------------------------------------------------
    @property
    def schema(self) -> str:
        """The schema that holds this driver's tables."""
        return self.session.schema

    @property
    def table_sources(self) -> dict[str, TableSource]:
        """User tables read as source topics, by topic."""
        return self.options.tables

    @property
    def prefetch(self) -> bool:
        """Whether the next batch is read ahead on a second connection."""
        return self.logs.prefetch

    @prefetch.setter
    def prefetch(self, on: bool) -> None:
        self.logs.prefetch = on

    @property
    def commits(self) -> int:
        """Transactions committed by this driver."""
        return self.committer.commits

    @property
    def last_commit_ms(self) -> float:
        """Wall time of the last commit."""
        return self.committer.last_commit_ms

    @property
    def reconnects(self) -> int:
        """How many times a lost connection was re-established."""
        return self.session.reconnects

    # -- schema -------------------------------------------------------------------------------
    def bind(self, app_id: str) -> None:
        """The driver contract's hook: use the application's schema (see :meth:`bind_app`)."""
        self.bind_app(app_id)

    @_settled
    def bind_app(self, app_id: str) -> None:
        """Use a schema named after the application, unless the URL chose one (``schema=``).
        Called before anything touches topics; safe to call more than once."""
        if self._schema_explicit or self.session.schema == app_id:
            return
        self.session.schema = app_id
        self._forget_schema()
        self.catalog.setup_schema()

    def _forget_schema(self) -> None:
        self.catalog.clear()
        self.logs.clear()
        self.sources.clear()
        self.listener.close()

    @_settled
    def drop_schema(self) -> None:
        """Drop the whole schema (tests, resets)."""
        self.catalog.drop_schema()
        self._forget_schema()

    # -- log ----------------------------------------------------------------------------------
    @_settled
    def partitions(self, topic: str) -> int | None:
        info = self.catalog.info(topic)
        return None if info is None else info.partitions

    @_settled
    def topics(self) -> list[str]:
        return self.catalog.names()

    @_settled
    def create_topic(self, topic: str, partitions: int, *, kind: str = "source",
                     compact: bool = False) -> None:
        self.catalog.create_topic(topic, partitions, kind=kind, compact=compact)

    @_settled
    def append(self, topic: str, partition: int, records: Iterable[OutRec]) -> None:
        self.logs.append(self.catalog.require(topic), partition, records)

    @_settled
    def read(self, topic: str, partition: int, offset: int, max_records: int) -> list[ReadRec]:
        info = self.catalog.require(topic)
        self.catalog.check_partition(info, partition)
        if max_records <= 0:
            return []
        if info.source_table:
            return self.sources.read(info, offset, max_records)
        return self.logs.read(info, partition, offset, max_records)

    def read_batch(self, topic: str, partition: int, offset: int, max_records: int) -> Any:
        """Like :meth:`read`, as a column batch (``runtime.batch.Batch``, ``seq``: offsets):
        a log's batch comes back as one row of column texts, each parsed in one call. While a
        commit is in flight, only a read the read-ahead serves, of a topic that commit does not
        write, goes on without waiting for it."""
        if self._pending is not None and (
                topic in self._pending_topics or topic not in self.catalog.topics
                or not self.logs.prefetched(topic, partition, offset, max_records)):
            self.settle()
        info = self.catalog.require(topic)
        self.catalog.check_partition(info, partition)
        if max_records <= 0 or info.source_table:
            return super().read_batch(topic, partition, offset, max_records)
        return self.logs.read_batch(info, partition, offset, max_records)

    @_settled
    def append_batch(self, topic: str, partition: int, batch: Any) -> None:
        """Like :meth:`append`, for a column batch (encoded column by column)."""
        self.logs.append(self.catalog.require(topic), partition, batch)

    @_settled
    def end_offset(self, topic: str, partition: int) -> int:
        info = self.catalog.require(topic)
        self.catalog.check_partition(info, partition)
        if info.source_table:
            return self.sources.end_offset(info)
        return self.logs.end_offset(info, partition)

    @_settled
    def compact(self, topic: str) -> int:
        """Delete the records of compacted topic ``topic`` (changelogs) that a later record of
        the same key supersedes; offsets do not change. Returns how many were deleted."""
        return self.logs.compact(self.catalog.require(topic))

    # -- table sinks and bad rows -------------------------------------------------------------
    @_settled
    def table_rows(self, topic: str) -> list[tuple[Any, Any]]:
        """``[(key, value)]`` of table sink ``topic``'s upserted table (windowed keys come back
        as :class:`~workbench.windows.Windowed`), ordered by key."""
        return self.sinks.rows(topic)

    @_settled
    def errors(self) -> list[dict[str, Any]]:
        """The rows of the errors table: bad source rows that were skipped, and table sink
        changes the table refused (with ``errors=1``)."""
        return self.errors_table.rows()

    # -- transactions -------------------------------------------------------------------------
    @_settled
    def committed(self, app_id: str, topic: str, partition: int) -> int:
        return self.committer.committed(app_id, topic, partition)

    @_settled
    def committed_metadata(self, app_id: str) -> dict[str, Any]:
        return self.committer.committed_metadata(app_id)

    def commit(self, txn: Transaction) -> None:
        """Commit ``txn`` in one SQL transaction; returns when it is committed."""
        if self._pending is not None:
            self.settle()
        self.committer.commit(txn)

    def commit_soon(self, txn: Transaction) -> None:
        """The engine's commit: with ``overlap=1`` (the default) ``txn`` is committed in a
        thread and this returns (see the module docstring); if the previous commit is still
        being written, ``txn``'s records are encoded meanwhile (:meth:`Committer.prepare`),
        else the thread encodes them (and the engine's reads may overlap that); else
        :meth:`commit`."""
        if not self.options.overlap or txn.is_empty():
            if self._pending is not None:
                self.settle()
            self.committer.commit(txn)
            return
        prepared = None
        if self._pending is not None:
            if not self._pending.done():  # the wait would be idle: encode meanwhile
                prepared = self.committer.prepare(txn)
            self.settle()
        if self._commit_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._commit_pool = ThreadPoolExecutor(1, thread_name_prefix="workbench-pg-commit")
        self._pending_topics = frozenset(t for t, _p in txn.outputs)
        self._pending = self._commit_pool.submit(self.committer.commit, txn, prepared)

    def settle(self) -> None:
        """Wait for the commit in flight, if any; raise its error if it failed."""
        pending, self._pending = self._pending, None
        self._pending_topics = frozenset()
        if pending is not None:
            pending.result()

    # -- membership ---------------------------------------------------------------------------
    @_settled
    def assign(self, app_id: str, topics: Iterable[str]) -> dict[str, list[int]]:
        """Lease partitions with session advisory locks on ``(schema, app, partition)``.

        With ``members=N`` in the URL a worker takes at most ``ceil(P / N)`` partitions, so N
        workers started together split the work; partitions already leased by this driver are
        kept.
        """
        return self.leases.assign(app_id, topics)

    def poll_membership(self) -> dict[str, list[int]] | None:
        """With ``takeover=1``: lease the partitions that became free (their worker died, or
        stopped), up to ⌈P / live workers⌉, and return the new ownership; else ``None``. The
        engine calls this after each commit (at most one lease round per second here). Off by
        default: in a bounded run the engine would add a task after it started flushing."""
        if self.takeover and self._pending is not None:
            self.settle()
        return self.leases.poll(self.takeover)

    def end_run(self) -> None:
        """The run is over: give up its partitions (reading results keeps working), also when
        the commit in flight failed (its error is raised after)."""
        try:
            self.settle()
        finally:
            self.leases.end_run()

    def release(self, app_id: str) -> None:
        """Give up this process's partitions of ``app_id`` (after the commit in flight, whose
        error is raised after)."""
        try:
            self.settle()
        finally:
            self.leases.release(app_id)

    # -- tailing ------------------------------------------------------------------------------
    @_settled
    def wait_for_data(self, timeout_s: float) -> bool:
        """Block until a commit or append on this schema is notified (``LISTEN``), or
        ``timeout_s`` passes; True if notified. For the engine's idle loop instead of sleeping.
        User-table sources have no notifications: the timeout bounds how late their new rows
        are seen."""
        return self.listener.wait(timeout_s)

    # -- closing ------------------------------------------------------------------------------
    def close(self) -> None:
        try:
            self.settle()
        except Exception as exc:  # closing goes on; the run reported it
            log.warning("closing %s: the last commit failed: %s", self.url, exc)
        if self._commit_pool is not None:
            self._commit_pool.shutdown(wait=True)
            self._commit_pool = None
        self.committer.forget_marker()
        self.logs.close()
        self.listener.close()
        self.session.close()
        self.leases.forget()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
