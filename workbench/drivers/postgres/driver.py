"""The :class:`PostgresDriver`: the driver contract on top of the package's parts."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
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

    def drop_schema(self) -> None:
        """Drop the whole schema (tests, resets)."""
        self.catalog.drop_schema()
        self._forget_schema()

    # -- log ----------------------------------------------------------------------------------
    def partitions(self, topic: str) -> int | None:
        info = self.catalog.info(topic)
        return None if info is None else info.partitions

    def topics(self) -> list[str]:
        return self.catalog.names()

    def create_topic(self, topic: str, partitions: int, *, kind: str = "source",
                     compact: bool = False) -> None:
        self.catalog.create_topic(topic, partitions, kind=kind, compact=compact)

    def append(self, topic: str, partition: int, records: Iterable[OutRec]) -> None:
        self.logs.append(self.catalog.require(topic), partition, records)

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
        a log's batch comes back as one row of column texts, each parsed in one call."""
        info = self.catalog.require(topic)
        self.catalog.check_partition(info, partition)
        if max_records <= 0 or info.source_table:
            return super().read_batch(topic, partition, offset, max_records)
        return self.logs.read_batch(info, partition, offset, max_records)

    def append_batch(self, topic: str, partition: int, batch: Any) -> None:
        """Like :meth:`append`, for a column batch (encoded column by column)."""
        self.logs.append(self.catalog.require(topic), partition, batch)

    def end_offset(self, topic: str, partition: int) -> int:
        info = self.catalog.require(topic)
        self.catalog.check_partition(info, partition)
        if info.source_table:
            return self.sources.end_offset(info)
        return self.logs.end_offset(info, partition)

    def compact(self, topic: str) -> int:
        """Delete the records of compacted topic ``topic`` (changelogs) that a later record of
        the same key supersedes; offsets do not change. Returns how many were deleted."""
        return self.logs.compact(self.catalog.require(topic))

    # -- table sinks and bad rows -------------------------------------------------------------
    def table_rows(self, topic: str) -> list[tuple[Any, Any]]:
        """``[(key, value)]`` of table sink ``topic``'s upserted table (windowed keys come back
        as :class:`~workbench.windows.Windowed`), ordered by key."""
        return self.sinks.rows(topic)

    def errors(self) -> list[dict[str, Any]]:
        """The rows of the errors table: bad source rows that were skipped, and table sink
        changes the table refused (with ``errors=1``)."""
        return self.errors_table.rows()

    # -- transactions -------------------------------------------------------------------------
    def committed(self, app_id: str, topic: str, partition: int) -> int:
        return self.committer.committed(app_id, topic, partition)

    def committed_metadata(self, app_id: str) -> dict[str, Any]:
        return self.committer.committed_metadata(app_id)

    def commit(self, txn: Transaction) -> None:
        self.committer.commit(txn)

    # -- membership ---------------------------------------------------------------------------
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
        return self.leases.poll(self.takeover)

    def end_run(self) -> None:
        """The run is over: give up its partitions (reading results keeps working)."""
        self.leases.end_run()

    def release(self, app_id: str) -> None:
        """Give up this process's partitions of ``app_id``."""
        self.leases.release(app_id)

    # -- tailing ------------------------------------------------------------------------------
    def wait_for_data(self, timeout_s: float) -> bool:
        """Block until a commit or append on this schema is notified (``LISTEN``), or
        ``timeout_s`` passes; True if notified. For the engine's idle loop instead of sleeping.
        User-table sources have no notifications: the timeout bounds how late their new rows
        are seen."""
        return self.listener.wait(timeout_s)

    # -- closing ------------------------------------------------------------------------------
    def close(self) -> None:
        self.committer.forget_marker()
        self.logs.close()
        self.listener.close()
        self.session.close()
        self.leases.forget()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
