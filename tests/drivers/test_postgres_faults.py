"""Faults around a PostgreSQL run (issue 20): the driver's connection killed from the server
side (``pg_terminate_backend``) in the middle of a commit and at random points of a run, a
``statement_timeout``, and a lock another session holds on a sink table. Each ends in an exact
result, at once or after a restart, or in an error that names what blocked. Each test works in
a schema of its own on the shared server and never stops the server."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import workbench as wb
from workbench.drivers import Transaction
from workbench.errors import DriverError

from . import postgres_helpers
from .postgres_helpers import (
    HAVE_PSYCOPG,
    ROOT,
    final_table,
    pg_server_of,
    query,
    schema_of,
    with_options,
)

if HAVE_PSYCOPG:
    import psycopg

    from workbench.drivers.postgres import PostgresDriver

pytestmark = pytest.mark.postgres
pg_server = postgres_helpers.pg_server  # fixtures
pg_url = postgres_helpers.pg_url

LOCKER = "wb-test-locker"


class Locker:
    """Another session that takes a lock on one of the schema's tables and keeps it until
    :meth:`release`."""

    def __init__(self, url: str, table: str, mode: str = "ACCESS EXCLUSIVE") -> None:
        self.conn = psycopg.connect(pg_server_of(url), application_name=LOCKER)
        self.conn.execute(f'LOCK TABLE "{schema_of(url)}"."{table}" IN {mode} MODE')

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


@pytest.fixture
def lockers() -> Iterator[list[Locker]]:
    held: list[Locker] = []
    yield held
    for lk in held:
        lk.release()


def wait_for_lock_wait(url: str, pid: int, timeout: float = 30) -> None:
    """Until backend ``pid`` waits for a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = query(url, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
        if rows and rows[0][0] == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited for a lock")


def counting() -> wb.Pipeline:
    p = wb.Pipeline("faults")
    p.source("in", key="k").group_by_key().count(name="c").to("counts")
    return p


def keys(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"k": f"k{rng.randrange(20)}"} for _ in range(n)]


# -- a connection killed mid-commit ------------------------------------------------------------
def test_a_connection_killed_mid_commit_is_reconnected_and_applied_once(
        pg_url: str, lockers: list[Locker]) -> None:
    url = with_options(pg_url, lock_timeout="30s")
    d = PostgresDriver(url)
    d.create_topic("in", 1)
    d.create_topic("out", 1, kind="sink")
    assert d.committed("app", "in", 0) == 0
    lockers.append(Locker(url, "_log_out"))  # the commit will wait inside its transaction
    pid = d.session.conn.info.backend_pid
    failed: list[BaseException] = []

    def commit() -> None:
        try:
            d.commit(Transaction("app", {("out", 0): [(1, "a", 1, 0, None)]}, {("in", 0): 1}))
        except BaseException as exc:  # reported by the test
            failed.append(exc)

    worker = threading.Thread(target=commit)
    worker.start()
    wait_for_lock_wait(url, pid)  # positions moved, offsets reserved, COPY waiting
    assert query(url, "SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    time.sleep(0.5)
    lockers[0].release()
    worker.join(60)
    assert not worker.is_alive() and not failed, failed
    assert d.reconnects >= 1
    assert d.read("out", 0, 0, 10) == [(1, "a", 1, 0, None)]  # once, not twice
    assert d.end_offset("out", 0) == 1
    assert d.committed("app", "in", 0) == 1
    d.close()


# -- a lock held by another session on a sink table --------------------------------------------
def test_a_short_lock_on_a_sink_table_is_waited_out_exactly(
        pg_url: str, lockers: list[Locker], caplog: pytest.LogCaptureFixture) -> None:
    url = with_options(pg_url, upsert="counts", lock_timeout="300ms", retry="60s")
    first, second = keys(50, 1), keys(200, 2)
    counting().run(url, inputs={"in": first}).driver.close()
    lockers.append(Locker(url, "counts"))
    threading.Timer(2.0, lockers[0].release).start()
    caplog.set_level(logging.WARNING)
    run = counting().run(url, inputs={"in": second})
    want = final_table(counting().run("memory://", inputs={"in": first + second}), "counts")
    assert dict(run.driver.table_rows("counts")) == want
    assert final_table(run, "counts") == want  # the log too: no change twice, none missing
    waits = [r.getMessage() for r in caplog.records if "waited" in r.getMessage()]
    assert waits, "the driver says what it waits for"
    assert LOCKER in waits[0] and "AccessExclusiveLock on counts" in waits[0]
    run.driver.close()


def test_a_long_lock_on_a_sink_table_names_the_blocker_then_a_restart_is_exact(
        pg_url: str, lockers: list[Locker]) -> None:
    url = with_options(pg_url, upsert="counts", lock_timeout="200ms", retry="2s")
    first, second = keys(50, 3), keys(200, 4)
    counting().run(url, inputs={"in": first}).driver.close()
    lockers.append(Locker(url, "counts"))
    with pytest.raises(DriverError, match=(
            r"commit of application 'faults', upserting table sink 'counts' \(table \S+\."
            r"counts\): waited 0\.2 s for a lock .*held by pid \d+ \(application "
            rf"'{LOCKER}', user '\w+', idle in transaction for \d+ s, holding "
            r"AccessExclusiveLock on counts; its statement: 'LOCK TABLE .*gave up after "
            r"retry=2 s\. Nothing of this commit was written")):
        counting().run(url, inputs={"in": second})
    lockers[0].release()
    d = PostgresDriver(url)
    assert d.committed("faults", "in", 0) == len(first)  # nothing of the failed commit
    d.close()
    run = counting().run(url)  # restart: the second batch is in the topic already
    want = final_table(counting().run("memory://", inputs={"in": first + second}), "counts")
    assert dict(run.driver.table_rows("counts")) == want
    assert final_table(run, "counts") == want
    run.driver.close()


# -- a statement timeout -----------------------------------------------------------------------
def test_a_statement_timeout_is_a_clear_error_then_a_restart_is_exact(
        pg_url: str, lockers: list[Locker]) -> None:
    base = with_options(pg_url, upsert="counts")
    timed = with_options(base, lock_timeout="30s", options="-c%20statement_timeout%3D1500")
    first, second = keys(50, 5), keys(200, 6)
    counting().run(timed, inputs={"in": first}).driver.close()  # fast enough: no timeout
    lockers.append(Locker(base, "counts"))  # makes the next commit's upsert wait
    with pytest.raises(DriverError, match=(
            r"upserting table sink 'counts' .* was cancelled by the server: canceling statement "
            r"due to statement timeout \(statement_timeout is 1500ms; locks held by pid \d+ "
            rf"\(application '{LOCKER}'.*Raise statement_timeout")):
        counting().run(timed, inputs={"in": second})
    lockers[0].release()
    run = counting().run(base)
    want = final_table(counting().run("memory://", inputs={"in": first + second}), "counts")
    assert dict(run.driver.table_rows("counts")) == want
    assert final_table(run, "counts") == want
    run.driver.close()


# -- connections killed at random points of a run ----------------------------------------------
@pytest.mark.slow
def test_connections_killed_at_random_during_a_run_leave_an_exact_result(pg_url: str) -> None:
    from .test_postgres_recovery import assert_exact, crash_pipeline, inputs, prepare_inputs

    app_name = f"wbfault_{uuid.uuid4().hex[:8]}"
    url = with_options(pg_url, upsert="per_user,per_country,final", application_name=app_name)
    data = inputs(60_000, seed=11)
    prepare_inputs(url, data, 2, True)
    seed = int(os.environ.get("WB_CRASH_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    proc = subprocess.Popen([sys.executable, "-m", "tests.drivers.test_postgres_recovery", "run",
                             url, "2", "1", "500"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    kills = 0
    try:
        while proc.poll() is None and kills < 20:
            time.sleep(rng.uniform(0.1, 0.5))
            pids = [r[0] for r in query(url, "SELECT pid FROM pg_stat_activity WHERE "
                                        "application_name = %s", (app_name,))]
            if pids:
                query(url, "SELECT pg_terminate_backend(%s)", (rng.choice(pids),))
                kills += 1
        _out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err.decode()[-3000:]
    print(f"\nseed {seed}: {kills} connections killed; the run reconnected "
          f"{err.decode().count('reconnecting')} times")
    assert kills >= 3, "the run ended before the faults"
    assert_exact(url, crash_pipeline(2, True).run("memory://", inputs=data), True)


# -- processes creating a fresh schema at the same moment ----------------------------------------
def test_drivers_connecting_to_a_new_schema_at_once_all_succeed(pg_url: str) -> None:
    """Workers of one job (or a job and its producer) started together on a fresh schema: the
    advisory lock serializes the creation, but it does not refresh the server's catalog cache,
    so a waiter's ``CREATE SCHEMA IF NOT EXISTS`` could fail with a unique violation; the
    driver retries and finds the schema made."""
    url = with_options(pg_url.split("?")[0], schema=f"race_{uuid.uuid4().hex[:8]}")
    for _round in range(3):
        go = threading.Barrier(6)
        errors: list[BaseException] = []
        drivers: list[Any] = []

        def connect(go: threading.Barrier = go, errors: list[BaseException] = errors,
                    drivers: list[Any] = drivers) -> None:
            go.wait()
            try:
                drivers.append(PostgresDriver(url))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=connect) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        drivers[0].drop_schema()
        for d in drivers:
            d.close()


# -- a server that lost acknowledged commits ------------------------------------------------------
def test_positions_that_went_backwards_are_named_as_lost_commits(pg_url: str) -> None:
    """A server with ``synchronous_commit=off`` (the dev server) may lose the last commits it
    acknowledged when it crashes; a restore from a backup does the same. The worker's next
    commit must stop without writing, and say so (no other worker moves a position back)."""
    d = PostgresDriver(pg_url)
    d.create_topic("in", 1)
    d.create_topic("out", 1, kind="sink")
    d.commit(Transaction("app", {("out", 0): [(1, "a", 1, 0, None)]}, {("in", 0): 5}))
    with psycopg.connect(pg_server_of(pg_url), autocommit=True) as conn:
        # what a crash that lost the commit leaves behind
        conn.execute(f'UPDATE "{schema_of(pg_url)}"._positions SET next_offset = 3 '
                     "WHERE app = 'app'")
    with pytest.raises(wb.FencedError, match=r"'in' partition 0 is 3, behind the 5 this worker "
                                             r"committed: the server lost commits"):
        d.commit(Transaction("app", {("out", 0): [(2, "b", 2, 0, None)]}, {("in", 0): 6}))
    d.close()
    check = PostgresDriver(pg_url)
    assert check.end_offset("out", 0) == 1 and check.committed("app", "in", 0) == 3
    check.close()
