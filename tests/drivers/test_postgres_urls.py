"""PostgreSQL driver URLs: bad parameters are refused up front with the parameter and its form
named, and a password in the URL never shows (repr, Run, errors, tracebacks, logs)."""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

import pytest

import workbench as wb
from workbench.errors import DefinitionError, DriverError, DriverUnavailableError

from . import postgres_helpers
from .postgres_helpers import (
    HAVE_PSYCOPG,
    execute_sql,
    free_port,
    pg_server_of,
    query,
    schema_of,
    with_options,
)

if HAVE_PSYCOPG:
    from workbench.drivers.postgres import PostgresDriver
    from workbench.drivers.postgres.options import parse_url
    from workbench.drivers.postgres.session import libpq_params

pytestmark = pytest.mark.postgres
pg_server = postgres_helpers.pg_server  # fixtures
pg_url = postgres_helpers.pg_url

BASE = "postgresql://postgres@127.0.0.1:5432/postgres"

BAD = [
    ("postgresql://", r"names no server and no database; use postgresql://USER"),
    ("postgres://", r"names no server and no database"),
    ("postgresql://h:abc/db", r"port 'abc' is not a port number \(1-65535\)"),
    ("postgresql://h:99999/db", r"port '99999' is not a port number"),
    ("postgresql://u:p@h1:5432,h2:x5/db", r"port 'x5'"),
    (BASE + "?foo=1", r"unknown parameter 'foo'.*schema, upsert.*table\.TOPIC=.*libpq"),
    (BASE + "?shema=x", r"unknown parameter 'shema'.*Did you mean 'schema'\?"),
    (BASE + "?members=x", r"parameter 'members' must be a worker count \(an integer\), "
                          r"got 'x'"),
    (BASE + "?members=-1", r"'members' must be a worker count \(an integer\) >= 0"),
    (BASE + "?partitions=0", r"'partitions' must be a partition count \(an integer\) >= 1"),
    (BASE + "?partitions=3.5", r"'partitions' must be a partition count"),
    (BASE + "?errors=maybe", r"'errors' must be 1 or 0 \(true/false, yes/no, on/off\), got "
                             r"'maybe'"),
    (BASE + "?prefetch=2", r"'prefetch' must be 1 or 0"),
    (BASE + "?takeover=y", r"'takeover' must be 1 or 0"),
    (BASE + "?retry=60", r"'retry' must be a duration with a unit, such as 500ms, 30s or 2m; "
                         r"got '60'"),
    (BASE + "?retry=soon", r"'retry' must be a duration"),
    (BASE + "?schema=", r"parameter 'schema' is empty"),
    (BASE + "?schema=" + "s" * 64, r"longer than PostgreSQL's 63-byte limit"),
    (BASE + "?schema=a&schema=b", r"parameter 'schema' is given twice"),
    (BASE + "?table.=public.t:id", r"name the source topic"),
    (BASE + "?table.o=public.t", r"use table\.o=SCHEMA\.TABLE:COLUMN"),
    (BASE + "?sslmode=bogus", r"libpq parameter 'sslmode' must be one of disable, allow, "
                              r"prefer, require, verify-ca, verify-full; got 'bogus'"),
    (BASE + "?connect_timeout=soon", r"parameter 'connect_timeout' must be an integer"),
    ("mysql://h/db", r"is not a postgresql:// URL"),
]


@pytest.mark.parametrize(("url", "message"), BAD, ids=[b[0][-40:] for b in BAD])
def test_bad_urls_are_definition_errors_naming_the_parameter(url: str, message: str) -> None:
    if not HAVE_PSYCOPG:
        pytest.skip("psycopg missing")
    with pytest.raises(DefinitionError, match=message):
        PostgresDriver(url)  # refused before any connection is tried


def test_good_urls_parse() -> None:
    if not HAVE_PSYCOPG:
        pytest.skip("psycopg missing")
    o = parse_url(BASE + "?schema=s&upsert=a,b&errors=yes&members=2&retry=5s&partitions=3"
                  "&prefetch=off&takeover=true&sslmode=disable&connect_timeout=5"
                  "&table.o=public.orders:id:key=k", libpq_params())
    assert (o.schema, o.upsert, o.errors, o.members, o.retry_ms, o.partitions, o.prefetch,
            o.takeover) == ("s", frozenset({"a", "b"}), True, 2, 5000, 3, False, True)
    assert o.tables["o"].table == "orders" and o.tables["o"].key == "k"
    assert "sslmode=disable" in o.conninfo and "schema" not in o.conninfo
    for url in ("postgresql:///db", "postgresql://h", "postgresql://h:/db",
                "postgresql://[::1]:5432/db", "postgresql://h1:1,h2:2/db",
                "postgresql://?host=/tmp&dbname=x"):
        parse_url(url, libpq_params())


def test_a_libpq_refusal_is_a_definition_error_at_once(pg_server: str) -> None:
    # a parameter libpq knows, with a value only libpq checks (at connect time): no retrying
    t0 = time.monotonic()
    with pytest.raises(DefinitionError, match=r"invalid require_auth value"):
        PostgresDriver(with_options(pg_server, require_auth="nope", retry="60s"))
    assert time.monotonic() - t0 < 30


# -- secrets -----------------------------------------------------------------------------------
SECRET = "SeCrEt123"


def with_password(server: str) -> str:
    """The server URL with a password (trust auth ignores it)."""
    return server.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@", 1)


def surfaces(exc: BaseException) -> str:
    """Everything a user may see of an error: its message and the printed traceback (which
    includes chained causes)."""
    return str(exc) + "".join(traceback.format_exception(exc))


def test_a_password_never_shows(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = with_password(pg_url)
    assert SECRET in url
    seen: list[str] = []

    # the driver and a run on it
    d = PostgresDriver(with_options(url, upsert="counts"))
    seen += [repr(d), d.url, str(d.options), repr(d.options), repr(d.session.options)]
    p = wb.Pipeline("secret")
    p.source("in", key="k").group_by_key().count(name="c").to("counts")
    run = p.run(d, inputs={"in": [{"k": 1}, {"k": 2}]})
    seen += [repr(run), str(run._repr_mimebundle_())]
    # a lost connection (logged as a warning, then reconnected)
    execute_sql(pg_url, f"SELECT pg_terminate_backend({d.session.conn.info.backend_pid})")
    assert d.end_offset("counts", 0) == 2
    assert d.reconnects == 1
    # a commit the database refuses
    execute_sql(pg_url, f'ALTER TABLE "{schema_of(pg_url)}".counts ADD CONSTRAINT small '
                "CHECK ((value)::int < 0) NOT VALID")
    with pytest.raises(DriverError) as failed_commit:
        p.run(d, inputs={"in": [{"k": 1}]})
    seen.append(surfaces(failed_commit.value))
    d.close()

    # connection failures: no such database, nobody listening, bad parameters
    server = with_password(pg_server_of(pg_url))
    broken = [server.rsplit("/", 1)[0] + "/no_such_db_here",
              f"postgresql://postgres:{SECRET}@127.0.0.1:{free_port()}/postgres?retry=200ms",
              f"postgresql://postgres:{SECRET}@nonexistent.invalid/postgres?retry=200ms",
              server + "?sslmode=bogus", server + "?foo=1", server + "?target_session_attrs=x",
              f"postgresql://postgres:{SECRET}@h:port/db"]
    for bad in broken:
        with pytest.raises((DriverUnavailableError, DefinitionError)) as err:
            PostgresDriver(bad)
        seen.append(surfaces(err.value))
    assert "no_such_db_here" in seen[-7] and "does not exist" in seen[-7]
    seen += [r.getMessage() for r in caplog.records]
    assert any("reconnecting" in r.getMessage() for r in caplog.records)

    leaked = [s for s in seen if SECRET in s]
    assert not leaked, leaked[0][:2000]
    assert query(pg_url, "SELECT 1") == [(1,)]


def test_the_run_cli_error_does_not_show_the_password(pg_url: str, tmp_path: Any) -> None:
    import subprocess
    import sys

    from .postgres_helpers import ROOT

    mod = tmp_path / "pipe_secret.py"
    mod.write_text("import workbench as wb\np = wb.Pipeline('cli_secret')\n"
                   "p.source('in').to('out')\n")
    bad = with_password(pg_server_of(pg_url)).rsplit("/", 1)[0] + "/no_such_db_here"
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "run", f"{mod}:p", "--driver",
                          bad, "--until", "end"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    assert "no_such_db_here" in out.stderr + out.stdout
    assert SECRET not in out.stderr + out.stdout


def test_server_options_reach_the_server(pg_url: str) -> None:
    d = PostgresDriver(with_options(pg_url, options="-c%20statement_timeout%3D4321"))
    assert d.session.conn.execute("SHOW statement_timeout").fetchone()[0] == "4321ms"
    d.close()
    t0 = time.monotonic()
    with pytest.raises(DefinitionError, match='unrecognized configuration parameter "nosuch"'):
        PostgresDriver(with_options(pg_url, options="-c%20nosuch%3D1"))
    assert time.monotonic() - t0 < 30  # refused at once, not retried for retry=
