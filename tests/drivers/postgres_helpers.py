"""Helpers of the PostgreSQL driver tests: a server for the session, a fresh schema per test,
throwaway clusters for tests that restart or break a server, and comparisons with memory://.

Server: ``WORKBENCH_POSTGRES_URL`` if set, else ``workbench.devservices.up(("postgres",))`` where
that exists, else a throwaway cluster started here from Debian's binaries
(``apt-get install -y postgresql``). Without any of them the tests skip, except on CI
(``CI=true``), where they fail.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench._env import in_ci

ROOT = Path(__file__).resolve().parents[2]
HOWTO = ("PostgreSQL is not available: install it (apt-get install -y postgresql), or run "
         "`workbench dev up`, or set WORKBENCH_POSTGRES_URL=postgresql://user@host:port/db.")

try:
    import psycopg

    from workbench.drivers.postgres import PostgresDriver

    HAVE_PSYCOPG = True
except ImportError:  # pragma: no cover
    HAVE_PSYCOPG = False


def unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
    pytest.skip(reason)


# -- servers -----------------------------------------------------------------------------------
def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """A throwaway PostgreSQL cluster in a temp directory (tests that restart the server)."""

    def __init__(self) -> None:
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError(HOWTO)
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="wb-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
                  "-c max_connections=200", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop("immediate")
        self.start()

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The base URL of a running server: ``WORKBENCH_POSTGRES_URL``, else the dev service
    (``workbench.devservices``; skips with a how-to, or fails on CI, when it cannot start), else a
    throwaway cluster of our own."""
    if not HAVE_PSYCOPG:
        unavailable("psycopg is not installed: pip install 'workbench[postgres]'.")
    env = os.environ.get("WORKBENCH_POSTGRES_URL")
    if env:
        yield env
        return
    try:
        from workbench.devservices import down
        from workbench.devservices.pytest_fixtures import start_service
    except ImportError:
        start_service = None
    if start_service is not None:
        info, started_here = start_service("postgres")
        yield info.url
        if started_here and os.environ.get("WORKBENCH_DEV_KEEP", "") not in ("1", "true"):
            down(("postgres",))
        return
    if pg_bin() is None:
        unavailable(HOWTO)
    cluster = PgCluster()
    yield cluster.url
    cluster.destroy()


def with_options(url: str, **opts: Any) -> str:
    q = "&".join(f"{k.replace('__', '.')}={v}" for k, v in opts.items())
    return url + ("&" if "?" in url else "?") + q


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL with a fresh schema of its own (dropped afterwards)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = with_options(pg_server, schema=schema)
    yield url
    d = PostgresDriver(url)
    d.drop_schema()
    d.close()


# -- helpers -----------------------------------------------------------------------------------
def norm(value: Any) -> Any:
    """A value as it reads back from JSON (tuples become lists, numpy scalars numbers)."""
    from workbench.serde import _json_default

    return json.loads(json.dumps(value, default=_json_default))


def outputs(run: Any, topic: str) -> list[tuple[Any, Any, int]]:
    return [(r.key, norm(r.value), r.timestamp) for r in run.records(topic)]


def final_table(run: Any, topic: str) -> dict[Any, Any]:
    """The latest value per key of a changelog sink, deletes removed."""
    state: dict[Any, Any] = {}
    for r in run.records(topic):
        if r.value is None:
            state.pop(r.key, None)
        else:
            state[r.key] = norm(r.value)
    return state


def assert_same(build: Callable[[], wb.Pipeline], inputs: dict[str, Any], url: str,
                tables: tuple[str, ...] = (), created: tuple[str, ...] = (),
                interleaved: tuple[str, ...] = ()) -> Any:
    """Run ``build()`` on memory:// and on ``url``; every sink (and each topic of ``created``
    that a topic function created on memory://) must hold the same records, in the same
    partitions and order; table sinks' upserted tables must equal the final state.

    ``interleaved``: sinks of an aggregation behind a repartition topic that several tasks
    write. The order in which their records of one key reach the aggregation depends on how
    the writing tasks' batches interleave (as on Kafka), and the batch sizer cuts batches by
    time on PostgreSQL: those sinks must hold the same final value and timestamp per key (an
    aggregate's timestamp is the largest it has seen) and the same number of updates per key."""
    mem = build().run("memory://", inputs=inputs)
    pg_url = with_options(url, upsert=",".join(tables)) if tables else url
    pg = build().run(pg_url, inputs=inputs)
    made = [t for t in created if mem.driver.partitions(t) is not None]
    for topic in interleaved:
        assert final_table(pg, topic) == final_table(mem, topic), topic
        assert _per_key_stamps(pg, topic) == _per_key_stamps(mem, topic), topic
    for topic in [t for t in [*build().sinks, *made] if t not in interleaved]:
        assert outputs(pg, topic) == outputs(mem, topic), topic
        parts = pg.driver.partitions(topic)
        assert parts == mem.driver.partitions(topic)
        for p in range(parts):
            assert [r[:3] for r in pg.driver.read(topic, p, 0, 10**9)] == [
                (k, norm(v), t) for k, v, t, _o, _h in mem.driver.read(topic, p, 0, 10**9)]
    for topic in tables:
        rows = dict(pg.driver.table_rows(topic))
        assert rows == final_table(mem, topic), topic
    pg.driver.close()
    return mem, pg


def _per_key_stamps(run: Any, topic: str) -> dict[Any, tuple[int, int]]:
    """``{key: (updates, last timestamp)}``."""
    out: dict[Any, tuple[int, int]] = {}
    for r in run.records(topic):
        out[r.key] = (out.get(r.key, (0, 0))[0] + 1, r.timestamp)
    return out


def clicks(n: int = 400) -> list[dict[str, Any]]:
    return [{"user": f"u{i % 7}", "ts": 5_000 + 97 * i - (3000 if i % 13 == 0 else 0),
             "amount": round((i % 11) - 3.5, 2), "page": f"/p/{i % 5}"} for i in range(n)]


def profiles() -> list[dict[str, Any]]:
    return [{"user": f"u{i}", "country": f"C{i % 3}", "ts": 0} for i in range(6)]


# -- SQL on the side ----------------------------------------------------------------------------
def pg_server_of(url: str) -> str:
    return url.split("?")[0]


def execute_sql(url: str, *stmts: str) -> None:
    with psycopg.connect(pg_server_of(url), autocommit=True) as c:
        for s in stmts:
            c.execute(s)


def schema_of(url: str) -> str:
    """The ``schema=`` of a test URL."""
    return url.split("schema=")[1].split("&")[0]


def query(url: str, stmt: str, params: Any = None) -> list[Any]:
    """Rows of one statement, on a connection of its own."""
    with psycopg.connect(pg_server_of(url), autocommit=True) as c:
        return list(c.execute(stmt, params).fetchall())


@pytest.fixture
def private_cluster(pg_server: str) -> Iterator[PgCluster]:
    """A server of the test's own, to restart or break (``pg_server`` first: it installs
    PostgreSQL on CI)."""
    if not HAVE_PSYCOPG or pg_bin() is None:
        unavailable(HOWTO + " (this test starts its own server)")
    cluster = PgCluster()
    yield cluster
    cluster.destroy()
