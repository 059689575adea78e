"""Recovery of the PostgreSQL driver: ``kill -9`` mid-run, two workers with one killed, and a
server restart mid-run. Every time, the sink logs and tables — the records that came too late
for their windows included — must equal one uninterrupted run's exactly. Workers run in child
processes (``python -m tests.drivers.test_postgres_recovery``).
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

EVENTS = int(os.environ.get("WB_CRASH_EVENTS", "120000"))
BASE_TS = 1_700_000_000_000
#: Per user: 5 s windows with 200 ms of grace. Events come in rounds of 400, 300 in time order
#: and then 100 that are 10 s late, so every round sends records to the ``late`` outputs, and
#: a restart inside a late stretch decides correctly only if the task's stream time was
#: committed and restored. Per country, the windows read a repartition topic whose order
#: interleaves the upstream tasks' commits (it depends on batch sizes and timing, as in Kafka);
#: a grace longer than the data keeps that from changing which records count there.
WINDOW, GRACE_USER, GRACE_COUNTRY = 5_000, 200, 3_600_000_000
LATE_SINKS = ("per_user_late", "final_late")


# -- the pipelines (also used by the child processes) ------------------------------------------
def crash_pipeline(partitions: int = 2, with_repartition: bool = True) -> wb.Pipeline:
    """Windowed + joined: events joined with the profiles table, then per user 5 s windows
    emitting every update (a windowed table sink) and emitting on close, each with its late
    records; through a repartition, per-country windows emitted on close."""
    p = wb.Pipeline("crash")
    users = p.table("profiles", key="user_id", time="ts", partitions=partitions)
    ev = p.source("events", key="user_id", time="ts", partitions=partitions)
    enriched = ev.filter(lambda e: e["amount"] > 0).join(
        users, combine=lambda e, u: {**e, "country": u["country"]})
    per_user = (enriched.group_by_key().window(wb.Tumbling(WINDOW, grace=GRACE_USER))
                .agg(total=("amount", "sum"), n="count", name="per_user"))
    per_user.to("per_user")
    per_user.late.to("per_user_late")
    final = (enriched.group_by_key()
             .window(wb.Tumbling(WINDOW, grace=GRACE_USER), emit="close")
             .count(name="final"))
    final.to("final")
    final.late.to("final_late")
    if with_repartition:
        (enriched.group_by(lambda e: e["country"])
         .window(wb.Tumbling(60_000, grace=GRACE_COUNTRY), emit="close")
         .count(name="per_country").to("per_country"))
    return p


def inputs(n: int = EVENTS, seed: int = 3) -> dict[str, list[dict[str, Any]]]:
    """``n`` events of 200 users, 10 ms apart, with 10 s late stretches (see ``WINDOW``), and
    the users' profiles."""
    rng = random.Random(seed)
    profiles = [{"user_id": u, "country": f"C{u % 10}", "ts": BASE_TS - 60_000}
                for u in range(200)]
    events = [{"user_id": rng.randrange(200),
               "ts": BASE_TS + 10 * i - (10_000 if i % 400 >= 300 else 0),
               "amount": round(rng.uniform(-5, 100), 2)} for i in range(n)]
    return {"profiles": profiles, "events": events}


def child(mode: str, url: str, partitions: int, repartition: int, batch: int = 2_000) -> None:
    """Entry point of a worker process."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    build = lambda: crash_pipeline(partitions, bool(repartition))  # noqa: E731
    if mode == "run":
        build().run(url, until="end", commit_interval="50ms", batch_size=batch).driver.close()
        return
    if mode == "worker":  # run until every source partition is done, taking over dead workers'
        first = True
        while True:
            run = build().run(url if first else url.replace("members=2", "members=0"),
                              until="end", commit_interval="50ms", batch_size=batch)
            d = run.driver
            done = all(d.committed("crash", t, p) >= d.end_offset(t, p)
                       for t in ("events", "profiles") for p in range(partitions))
            d.close()
            first = False
            if done:
                return
            time.sleep(0.3)
    raise SystemExit(f"unknown mode {mode}")


def spawn(mode: str, url: str, partitions: int, repartition: bool,
          batch: int = 2_000) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.drivers.test_postgres_recovery", mode, url,
         str(partitions), str(int(repartition)), str(batch)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def resumes_in_a_late_stretch(url: str) -> bool:
    """Whether the committed position of some events partition is followed by a record that is
    late by the stream time before it (so a restart there is exact only if that stream time
    was restored)."""
    d = PostgresDriver(url)
    try:
        for p in range(d.partitions("events") or 0):
            pos = d.committed("crash", "events", p)
            before = d.read("events", p, max(0, pos - 1_000), min(pos, 1_000))
            after = d.read("events", p, pos, 10)
            if not before or not after:
                continue
            stream_time = max(r[2] for r in before)
            if any((r[2] // WINDOW + 1) * WINDOW <= stream_time - GRACE_USER for r in after):
                return True
        return False
    finally:
        d.close()


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


def sinks(repartition: bool) -> list[str]:
    return ["per_user", "per_user_late", "final", "final_late",
            *(["per_country"] if repartition else [])]


def assert_exact(url: str, mem: Any, repartition: bool) -> None:
    """The upserted sink tables equal the memory driver's final tables; every sink's log (the
    late records included) holds the same records in the same partitions and order."""
    d = PostgresDriver(url)
    try:
        for topic in sinks(repartition):
            if d.catalog.require(topic).upsert:
                assert dict(d.table_rows(topic)) == final_table(mem, topic), topic
        for topic in sinks(repartition):
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
        for late in LATE_SINKS:
            assert len(mem.records(late)) > 100, f"the workload must have late records ({late})"
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
    url = with_options(pg_url, upsert="per_user,per_country,final")
    prepare_inputs(url, data, 2, True)
    seed = int(os.environ.get("WB_CRASH_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    total = len(data["events"])  # progress() sums the events partitions' positions
    # kill points spread over the run: after these many committed events, plus 0-400 ms; each
    # run reads batches of a random size, so the runs stop at every phase of the late stretches;
    # more kills until one run resumed inside a late stretch
    targets = sorted(rng.uniform(0.05, 0.9) * total for _ in range(3))
    kills: list[int] = []
    in_late = 0
    started = time.monotonic()
    while targets:
        # a target already passed would kill the run before it commits anything: each run
        # goes at least 500 events further than the last
        target = max(targets.pop(0), progress(url) + 500)
        proc = spawn("run", url, 2, True, batch=rng.randrange(150, 1500))
        deadline = time.monotonic() + 600
        while progress(url) < target and proc.poll() is None:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        # (runs commit ~30,000 events a second now: a longer wait overshoots to the end)
        time.sleep(rng.uniform(0.0, 0.1))
        assert proc.poll() is None, f"the run ended before the kill at {target:.0f}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(progress(url))
        in_late += resumes_in_a_late_stretch(url)
        # about a quarter of the positions are followed by a late record: extra kills close
        # behind each other (not spread to the end), so that enough fit before the input ends
        if not targets and not in_late and len(kills) < 16 and kills[-1] < 0.93 * total:
            targets.append(rng.uniform(kills[-1] + 300, min(kills[-1] + 3_000, 0.95 * total)))
    assert in_late, f"no kill (of {kills}) left a run to resume inside a late stretch"
    proc = spawn("run", url, 2, True)
    _out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert progress(url) == total
    print(f"seed {seed}: killed at committed positions {kills} of {total} ({in_late} resumed "
          "inside a late stretch); "
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
    url = with_options(private_cluster.url, schema="restart",
                       upsert="per_user,per_country,final",
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
    child(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
