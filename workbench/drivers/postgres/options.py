"""The driver URL: workbench's options in the query string, the rest for libpq.

``postgresql://user@host:port/db?schema=clicks&upsert=totals&table.orders=public.orders:id``
(``postgres://`` too). The options are described in ``docs/drivers/postgres.md``; any other
query parameter (``sslmode``, ``connect_timeout``, ...) is passed on to libpq.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..._time import duration_ms
from ...errors import DefinitionError

__all__ = ["OPTIONS", "PgOptions", "TableSource", "parse_url"]

#: the query parameters workbench reads itself (``table.TOPIC=...`` besides)
OPTIONS = ("schema", "upsert", "errors", "members", "retry", "partitions", "prefetch",
           "takeover")


@dataclass(frozen=True)
class TableSource:
    """A user table read as a source topic: ``[schema.]table:column[:key=COL][:value=COL]``."""

    schema: str
    table: str
    column: str
    key: str | None
    value: str | None


@dataclass(frozen=True)
class PgOptions:
    """A parsed driver URL.

    Attributes:
        conninfo: the libpq URL (with its password, if any: never show it).
        schema: ``schema=``, or ``None`` (the application's name, else ``workbench``).
        upsert: sink topics kept as upserted tables.
        errors: bad source rows go to the errors table instead of stopping the run.
        members: expected worker count (0: take every free partition).
        retry_ms: how long to keep reconnecting.
        partitions: default partition count of topics created without one.
        prefetch: read the next batch ahead on a second connection.
        takeover: lease partitions that became free during a run.
        tables: user tables read as source topics, by topic.
    """

    conninfo: str
    schema: str | None = None
    upsert: frozenset[str] = frozenset()
    errors: bool = False
    members: int = 0
    retry_ms: int = 60_000
    partitions: int = 1
    prefetch: bool = True
    takeover: bool = False
    tables: dict[str, TableSource] = field(default_factory=dict)


def _flag(value: str) -> bool:
    return value not in ("", "0", "false", "no")


def parse_table_source(topic: str, spec: str) -> TableSource:
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
    return TableSource(schema or "public", table, parts[1], opts.get("key"), opts.get("value"))


def parse_url(url: str) -> PgOptions:
    """Split ``url`` into workbench's options and the libpq connection URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise DefinitionError(f"{url!r} is not a postgresql:// URL.")
    opts: dict[str, str] = {}
    libpq: list[tuple[str, str]] = []
    tables: dict[str, TableSource] = {}
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k.startswith("table."):
            tables[k[len("table."):]] = parse_table_source(k[len("table."):], v)
        elif k in OPTIONS:
            opts[k] = v
        else:
            libpq.append((k, v))
    return PgOptions(
        conninfo=urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(libpq), "")),
        schema=opts.get("schema") or None,
        upsert=frozenset(t for t in opts.get("upsert", "").split(",") if t),
        errors=_flag(opts.get("errors", "")),
        members=int(opts.get("members", "0") or 0),
        retry_ms=duration_ms(opts.get("retry", "60s"), "retry"),
        partitions=int(opts.get("partitions", "1") or 1),
        prefetch=_flag(opts.get("prefetch", "1")),
        takeover=opts.get("takeover", "") in ("1", "true", "yes"),
        tables=tables,
    )
