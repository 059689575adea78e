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
engine calls :meth:`PostgresDriver.bind_app`, else ``workbench``. The parts, one job each:

* :mod:`.options` — the URL; :mod:`.session` — the connection, reconnects and retries;
* :mod:`.catalog` — the schema, ``_topics`` and ``_partitions``; :mod:`.naming` — object names,
  lock keys, the NOTIFY channel; :mod:`.codec` — JSON and COPY text;
* :mod:`.logs` — log tables (COPY in, ranged reads with read-ahead);
* :mod:`.commit` — the transaction: positions, outputs, table sinks, metadata, commit marker;
* :mod:`.sinks` — upserted table sinks; :mod:`.sources` — user tables as sources, ``_errors``;
* :mod:`.leases` — partition leases with advisory locks; :mod:`.tailing` — LISTEN/NOTIFY;
* :mod:`.driver` — :class:`PostgresDriver`, the driver contract over these parts.

``docs/drivers/postgres.md`` describes the tables and the behaviour. Identifiers are always
quoted (``psycopg.sql.Identifier``); values are always bound.
"""

from __future__ import annotations

from ...keys import decode_key, encode_key
from .driver import PostgresDriver

__all__ = ["PostgresDriver", "decode_key", "encode_key", "open_driver"]


def open_driver(url: str) -> PostgresDriver:
    """Factory for :func:`workbench.drivers.register_driver`."""
    return PostgresDriver(url)
