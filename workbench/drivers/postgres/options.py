"""The driver URL: workbench's options in the query string, the rest for libpq.

``postgresql://user@host:port/db?schema=clicks&upsert=totals&table.orders=public.orders:id``
(``postgres://`` too). The options are described in ``docs/drivers/postgres.md``; libpq's own
connection parameters (``sslmode``, ``connect_timeout``, ...) are passed on. Everything is
checked here, before any connection: an unknown or malformed parameter, an empty URL or a bad
port is a :class:`~workbench.errors.DefinitionError` naming the parameter and the form it takes.
Messages show the URL through :func:`~workbench._urls.redact_url` (no password).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from ..._time import duration_ms
from ..._urls import redact_url
from ...errors import DefinitionError, did_you_mean

__all__ = ["OPTIONS", "PgOptions", "TableSource", "parse_url"]

#: the query parameters workbench reads itself (``table.TOPIC=...`` besides)
OPTIONS = ("schema", "upsert", "errors", "members", "retry", "partitions", "prefetch",
           "overlap", "takeover", "lock_timeout")
_FORM = ("postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=NAME&...], e.g. "
         "postgresql://postgres@127.0.0.1:5432/postgres")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
#: libpq parameters with a fixed set of values (libpq 16-18 docs, "Parameter Key Words")
_LIBPQ_CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby",
                             "prefer-standby"),
    "load_balance_hosts": ("disable", "random"),
    "sslnegotiation": ("postgres", "direct"),
    "sslcertmode": ("disable", "allow", "require"),
}
#: libpq parameters that take an integer (seconds or a count)
_LIBPQ_INTS = ("connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
               "keepalives_count", "tcp_user_timeout", "sslcompression", "port")
_MAX_IDENT = 63


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
        conninfo: the libpq URL, with its password if any (never shown: not in the repr).
        shown: the URL as messages show it (password and secret parameters redacted).
        password: the password of the URL (``None`` without one), so that messages can be
            scrubbed of it; not in the repr.
        schema: ``schema=``, or ``None`` (the application's name, else ``workbench``).
        upsert: sink topics kept as upserted tables.
        errors: bad source rows go to the errors table instead of stopping the run.
        members: expected worker count (0: take every free partition).
        retry_ms: how long to keep reconnecting.
        partitions: default partition count of topics created without one.
        prefetch: read the next batch ahead on a second connection.
        overlap: the engine's commits run in a thread while it processes the next batch
            (``commit_soon`` returns once the transaction is handed over; the driver's next
            call waits for it).
        takeover: lease partitions that became free during a run.
        lock_timeout_ms: how long a statement waits for a lock before the driver reports who
            holds it and tries again (until ``retry_ms`` is spent).
        tables: user tables read as source topics, by topic.
    """

    conninfo: str = field(repr=False)
    shown: str = ""
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    upsert: frozenset[str] = frozenset()
    errors: bool = False
    members: int = 0
    retry_ms: int = 60_000
    partitions: int = 1
    prefetch: bool = True
    overlap: bool = True
    takeover: bool = False
    lock_timeout_ms: int = 5_000
    tables: dict[str, TableSource] = field(default_factory=dict)


def parse_table_source(topic: str, spec: str) -> TableSource:
    """``[schema.]table:column[:key=COL][:value=COL]``."""
    parts = spec.split(":")
    if not topic:
        raise DefinitionError(f"table.={spec!r}: name the source topic, as in "
                              "table.orders=public.orders:id.")
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


def _bool(shown: str, name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DefinitionError(f"{shown!r}: parameter {name!r} must be 1 or 0 (true/false, yes/no, "
                          f"on/off), got {value!r}.")


def _int(shown: str, name: str, value: str, *, low: int, what: str = "an integer") -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise DefinitionError(f"{shown!r}: parameter {name!r} must be {what}, got "
                              f"{value!r}.") from None
    if n < low:
        raise DefinitionError(f"{shown!r}: parameter {name!r} must be {what} >= {low}, got "
                              f"{n}.")
    return n


_PORT = re.compile(r"[0-9]{1,5}")


def _check_hosts(shown: str, netloc: str) -> None:
    """Ports of ``[user[:password]@]host[:port][,host[:port]...]`` must be 1..65535."""
    hosts = netloc.rpartition("@")[2]
    for host in hosts.split(","):
        port = host.rpartition("]")[2] if host.startswith("[") else host
        if ":" not in port:
            continue
        value = port.rpartition(":")[2]
        if value == "":
            continue  # "host:" means the default port to libpq
        if not _PORT.fullmatch(value) or not 1 <= int(value) <= 65535:
            raise DefinitionError(f"{shown!r}: port {value!r} is not a port number (1-65535);"
                                  f" use {_FORM}.")


def parse_url(url: str, libpq_params: Iterable[str] = ()) -> PgOptions:
    """Split ``url`` into workbench's options and the libpq connection URL.

    Args:
        url: the driver URL.
        libpq_params: the connection parameters the linked libpq knows (others are refused).

    Raises:
        DefinitionError: naming the parameter (or the URL part) and the form it takes.
    """
    shown = redact_url(url) if isinstance(url, str) else repr(url)
    if not isinstance(url, str):
        raise DefinitionError(f"{shown} is not a postgresql:// URL; use {_FORM}.")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise DefinitionError(f"{shown!r} is not a valid URL ({exc}); use {_FORM}.") from None
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise DefinitionError(f"{shown!r} is not a postgresql:// URL; use {_FORM}.")
    _check_hosts(shown, parts.netloc)
    known = set(libpq_params)
    opts: dict[str, str] = {}
    libpq: list[tuple[str, str]] = []
    tables: dict[str, TableSource] = {}
    seen: set[str] = set()
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k in seen:
            raise DefinitionError(f"{shown!r}: parameter {k!r} is given twice; give it once.")
        seen.add(k)
        if k.startswith("table."):
            tables[k[len("table."):]] = parse_table_source(k[len("table."):], v)
        elif k in OPTIONS:
            opts[k] = v
        elif k in known or not known:  # without the list, libpq judges at connect time
            _check_libpq(shown, k, v)
            libpq.append((k, v))
        else:
            raise DefinitionError(
                f"{shown!r}: unknown parameter {k!r}. workbench reads "
                f"{', '.join(OPTIONS)} and table.TOPIC=SCHEMA.TABLE:COLUMN, and passes libpq's "
                "connection parameters (sslmode, connect_timeout, ...) on."
                + did_you_mean(k, [*OPTIONS, *sorted(known)]))
    if not parts.netloc and not parts.path.strip("/") and not any(
            k in ("host", "hostaddr", "service", "dbname") for k, _ in libpq):
        raise DefinitionError(f"{shown!r} names no server and no database; use {_FORM} (the "
                              "URL `workbench dev up` prints works).")
    for name in ("schema", "retry", "members", "partitions", "errors", "prefetch", "overlap",
                 "takeover", "lock_timeout"):
        if name in opts and opts[name].strip() == "":
            raise DefinitionError(f"{shown!r}: parameter {name!r} is empty; give a value or "
                                  "leave it out.")
    schema = opts.get("schema")
    if schema is not None and len(schema.encode()) > _MAX_IDENT:
        raise DefinitionError(f"{shown!r}: schema {schema!r} is longer than PostgreSQL's "
                              f"{_MAX_IDENT}-byte limit for names; use a shorter one.")
    retry_ms = _duration(shown, "retry", opts.get("retry", "60s"))
    lock_timeout_ms = _duration(shown, "lock_timeout", opts.get("lock_timeout", "5s"))
    if lock_timeout_ms < 1:
        raise DefinitionError(f"{shown!r}: parameter 'lock_timeout' must be at least 1ms (the "
                              "driver never waits for a lock without a limit).")
    return PgOptions(
        # %20 for spaces: libpq does not read "+" as a space (options=-c%20name%3Dvalue)
        conninfo=urlunsplit(("postgresql", parts.netloc, parts.path,
                             urlencode(libpq, quote_via=quote), "")),
        shown=shown,
        password=unquote(parts.password) if parts.password else None,
        schema=schema,
        upsert=frozenset(t for t in opts.get("upsert", "").split(",") if t),
        errors=_bool(shown, "errors", opts.get("errors", "0")),
        members=_int(shown, "members", opts.get("members", "0"), low=0,
                     what="a worker count (an integer)"),
        retry_ms=retry_ms,
        partitions=_int(shown, "partitions", opts.get("partitions", "1"), low=1,
                        what="a partition count (an integer)"),
        prefetch=_bool(shown, "prefetch", opts.get("prefetch", "1")),
        overlap=_bool(shown, "overlap", opts.get("overlap", "1")),
        takeover=_bool(shown, "takeover", opts.get("takeover", "0")),
        lock_timeout_ms=lock_timeout_ms,
        tables=tables,
    )


def _duration(shown: str, name: str, value: str) -> int:
    try:
        return duration_ms(value, name)
    except DefinitionError:
        raise DefinitionError(f"{shown!r}: parameter {name!r} must be a duration with a unit, "
                              f"such as 500ms, 30s or 2m; got {value!r}.") from None


def _check_libpq(shown: str, name: str, value: str) -> None:
    choices = _LIBPQ_CHOICES.get(name)
    if choices is not None and value not in choices:
        raise DefinitionError(f"{shown!r}: libpq parameter {name!r} must be one of "
                              f"{', '.join(choices)}; got {value!r}.")
    if name in _LIBPQ_INTS:
        _int(shown, name, value, low=0)
