"""Recovery of the PostgreSQL driver: ``kill -9`` mid-run, two workers with one killed, and a
server restart mid-run. Every time, the sink tables must equal the memory driver's output
exactly. Workers run in child processes (``python -m tests.drivers.test_postgres_recovery``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest

import workbench as wb

from . import postgres_helpers
from .postgres_helpers import (
    HAVE_PSYCOPG,
    ROOT,
    PgCluster,
    final_table,
    norm,
    with_options,
)

if HAVE_PSYCOPG:
    from workbench.drivers.postgres import PostgresDriver

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
pg_server = postgres_helpers.pg_server  # fixtures
pg_url = postgres_helpers.pg_url
private_cluster = postgres_helpers.private_cluster

EVENTS = int(os.environ.get("WB_CRASH_EVENTS", "200000"))
WINDOW = 60_000
#: The workload pulls 1% of events back by up to 5 s. With 10 s of grace no per-user window
#: drops a record, so the result does not depend on the stream time a task had before a crash
#: (the engine does not persist it yet). Per country, the windows read a repartition topic whose
#: order interleaves the upstream tasks' commits (it depends on batch sizes and timing, as in
#: Kafka); a grace longer than the data keeps that from changing which records count.
GRACE_USER, GRACE_COUNTRY = 10_000, 3_600_000


# -- the pipelines (also used by the child processes) ------------------------------------------
def crash_pipeline(partitions: int = 2, with_repartition: bool = True) -> wb.Pipeline:
    """Windowed + joined: events joined with the profiles table, then per-user 60 s windows
    (a windowed table sink, every update) and, through a repartition, per-country windows
    emitted on close."""
    p = wb.Pipeline("crash")
    users = p.table("profiles", key="user_id", time="ts", partitions=partitions)
    ev = p.source("events", key="user_id", time="ts", partitions=partitions)
    enriched = ev.filter(lambda e: e["amount"] > 0).join(
        users, combine=lambda e, u: {**e, "country": u["country"]})
    (enriched.group_by_key().window(wb.Tumbling(WINDOW, grace=GRACE_USER))
     .agg(total=("amount", "sum"), n="count", name="per_user").to("per_user"))
    if with_repartition:
        (enriched.group_by(lambda e: e["country"])
         .window(wb.Tumbling(WINDOW, grace=GRACE_COUNTRY), emit="close")
         .count(name="per_country").to("per_country"))
    return p


def inputs(n: int = EVENTS) -> dict[str, list[dict[str, Any]]]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import workload

    profiles = [{**r, "ts": workload.START_MS - 60_000} for r in workload.profiles()]
    return {"profiles": profiles, "events": workload.events(n, seed=3)}


def child(mode: str, url: str, partitions: int, repartition: int) -> None:
    """Entry point of a worker process."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    build = lambda: crash_pipeline(partitions, bool(repartition))  # noqa: E731
    if mode == "run":
        build().run(url, until="end", commit_interval="50ms", batch_size=2_000).driver.close()
        return
    if mode == "worker":  # run until every source partition is done, taking over dead workers'
        first = True
        while True:
            run = build().run(url if first else url.replace("members=2", "members=0"),
                              until="end", commit_interval="50ms", batch_size=2_000)
            d = run.driver
            done = all(d.committed("crash", t, p) >= d.end_offset(t, p)
                       for t in ("events", "profiles") for p in range(partitions))
            d.close()
            first = False
            if done:
                return
            time.sleep(0.3)
    raise SystemExit(f"unknown mode {mode}")


def spawn(mode: str, url: str, partitions: int, repartition: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.drivers.test_postgres_recovery", mode, url,
         str(partitions), str(int(repartition))],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data() -> dict[str, list[dict[str, Any]]]:
    return inputs()


_REFERENCE: dict[tuple[int, bool], Any] = {}


def reference(data: dict[str, Any], partitions: int, repartition: bool) -> Any:
    key = (partitions, repartition)
    if key not in _REFERENCE:
        _REFERENCE[key] = crash_pipeline(partitions, repartition).run("memory://", inputs=data)
    return _REFERENCE[key]


def prepare_inputs(url: str, data: dict[str, Any], partitions: int, repartition: bool) -> None:
    from workbench.run import append_inputs

    d = PostgresDriver(url)
    append_inputs(crash_pipeline(partitions, repartition), d, data)
    d.close()


def progress(url: str) -> int:
    d = PostgresDriver(url)
    try:
        count = d.partitions("events") or 0
        return sum(d.committed("crash", "events", p) for p in range(count))
    finally:
        d.close()


def assert_exact(url: str, mem: Any, repartition: bool) -> None:
    """The upserted sink tables equal the memory driver's final tables; the sink logs hold the
    same records in the same partitions and order."""
    d = PostgresDriver(url)
    try:
        assert dict(d.table_rows("per_user")) == final_table(mem, "per_user")
        if repartition:
            assert dict(d.table_rows("per_country")) == final_table(mem, "per_country")
        for topic in ["per_user", "per_country"] if repartition else ["per_user"]:
            for p in range(mem.driver.partitions(topic)):
                raw = d.read(topic, p, 0, 10**9)
                got = [(k, v, t) for k, v, t, _o, _h in raw]
                want = [(k, norm(v), t) for k, v, t, _o, _h in mem.driver.read(topic, p, 0,
                                                                                10**9)]
                if len(got) != len(want):
                    extra = Counter(map(repr, got)) - Counter(map(repr, want))
                    missing = Counter(map(repr, want)) - Counter(map(repr, got))
                    offs = [r[3] for r in raw if repr(r[:3]) in extra][:40]
                    print("EXTRA", len(extra), list(extra.items())[:5], "at offsets", offs)
                    print("MISSING", len(missing), list(missing.items())[:5])
                assert len(got) == len(want), (topic, p)
                assert got == want, (topic, p)
    finally:
        d.close()


def wait_for_progress(url: str, proc: subprocess.Popen[bytes], beyond: int,
                      timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = progress(url)
        if now > beyond:
            return now
        if proc.poll() is not None:
            return now
        time.sleep(0.1)
    raise AssertionError("the worker made no progress")


# -- tests -------------------------------------------------------------------------------------
def test_kill_9_at_random_points_then_restart_is_exact(pg_url: str, data: Any) -> None:
    url = with_options(pg_url, upsert="per_user,per_country")
    prepare_inputs(url, data, 2, True)
    seed = int(os.environ.get("WB_CRASH_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    total = len(data["events"])  # progress() sums the events partitions' positions
    # kill points spread over the run: after these many committed events, plus 0-400 ms
    targets = sorted(rng.uniform(0.05, 0.9) * total for _ in range(3))
    kills: list[int] = []
    started = time.monotonic()
    for target in targets:
        proc = spawn("run", url, 2, True)
        deadline = time.monotonic() + 600
        while progress(url) < target and proc.poll() is None:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.4))
        assert proc.poll() is None, f"the run ended before the kill at {target:.0f}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(progress(url))
    proc = spawn("run", url, 2, True)
    _out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert progress(url) == total
    print(f"seed {seed}: killed at committed positions {kills} of {total}; "
          f"{time.monotonic() - started:.1f} s in all")
    assert_exact(url, reference(data, 2, True), True)


def test_two_workers_one_killed_the_other_finishes(pg_url: str, data: Any) -> None:
    url = with_options(pg_url, upsert="per_user", members=2)
    prepare_inputs(url, data, 4, False)
    a = spawn("worker", url, 4, False)
    b = spawn("worker", url, 4, False)
    wait_for_progress(url, a, 0)
    time.sleep(random.uniform(0.5, 1.5))
    a.send_signal(signal.SIGKILL)
    a.wait()
    _out, err = b.communicate(timeout=600)
    assert b.returncode == 0, err.decode()[-3000:]
    assert progress(url) == len(data["events"])
    assert_exact(url, reference(data, 4, False), False)


def test_server_restart_mid_run_resumes_exactly(private_cluster: PgCluster, data: Any) -> None:
    url = with_options(private_cluster.url, schema="restart", upsert="per_user,per_country",
                       retry="120s")
    prepare_inputs(url, data, 2, True)
    proc = spawn("run", url, 2, True)
    wait_for_progress(url, proc, 0)
    time.sleep(0.5)
    assert proc.poll() is None, "finished before the restart"
    private_cluster.restart()
    at = progress(url)
    _out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert at < len(data["events"]), "the restart came after the end"
    assert b"reconnecting" in err
    assert progress(url) == len(data["events"])
    assert_exact(url, reference(data, 2, True), True)


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
