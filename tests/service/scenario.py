"""One scenario for the shared drivers: ``workbench run --workers 2 --http`` processes, queried
over HTTP while records flow, stopped by SIGTERM, one worker killed with SIGKILL, restarted;
the outputs, the queryable state and the metrics are compared with what was sent."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from workbench.drivers import connect
from workbench.partitioning import KeyPartitioner
from workbench.serde import get_serde

from .procs import Job, http_get, metric, metric_values

JOB = '''
import workbench as wb

def make(suffix):
    p = wb.Pipeline(f"svc-{suffix}")
    clicks = p.source(f"clicks-{suffix}", key="user", time="ts", partitions=4)
    totals = clicks.group_by("user").agg(total=("amount", "sum"), n="count", name="totals")
    totals.to(f"totals-{suffix}")
    clicks.group_by("user").window(wb.Tumbling("10s", grace="1h")).count(name="per-10s")
    return p
'''

USERS = [f"u{i}" for i in range(12)]
PARTITIONS = 4


def _records(start: int, count: int) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for i in range(start, start + count):
        user = USERS[i % len(USERS)]
        out.append((user, {"user": user, "ts": 1_000 * i, "amount": i % 7}))
    return out


class Producer:
    """Appends records to the source topic, partitioned as the pipeline partitions them."""

    def __init__(self, url: str, topic: str) -> None:
        self.driver = connect(url)
        self.topic = topic
        self.part = KeyPartitioner(get_serde("json").serialize)
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        parts: dict[int, list[Any]] = {}
        for user, value in records:
            p = self.part.partition(user, PARTITIONS, 0)
            parts.setdefault(p, []).append((user, value, value["ts"], 0, None))
        for p, recs in sorted(parts.items()):
            self.driver.append(self.topic, p, recs)
        self.sent.extend(records)

    def expected(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for user, value in self.sent:
            e = out.setdefault(user, {"total": 0, "n": 0})
            e["total"] += value["amount"]
            e["n"] += 1
        return out


def _start(tmp: Path, url: str, suffix: str) -> Job:
    return Job(["run", "job.py:make", "-p", f"suffix={suffix!r}", "--driver", url,
                "--until", "forever", "--workers", "2", "--commit-interval", "200ms",
                "--log-level", "INFO"], tmp)


def _table_matches(job: Job, expected: dict[str, dict[str, int]]) -> bool:
    status, body, _h = job.get("/tables/totals")
    if status != 200:
        return False
    got = {r["key"]: r["value"] for r in body["rows"]}
    return got == expected


def run_scenario(tmp: Path, url: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    (tmp / "job.py").write_text(JOB)
    source = f"clicks-{suffix}"
    producer = Producer(url, source)
    producer.driver.ensure_topic(source, PARTITIONS, kind="source")

    # 1. two workers behind one port; records flow while we query
    job = _start(tmp, url, suffix)
    try:
        job.wait_ready(180)

        def split() -> bool:
            # both ready, but a member that joined last may still be rebalancing the other
            workers = job.get("/workers")[1]
            assert sorted(w["index"] for w in workers) == [0, 1]
            owned = [set(w["owned"].get("1", [])) for w in workers]
            return owned[0] | owned[1] == set(range(PARTITIONS)) and not owned[0] & owned[1] \
                and all(owned)

        job.wait_for(split, 120, "the partitions split between the workers")

        answers: list[tuple[str, int]] = []
        stop = threading.Event()

        def query() -> None:
            while not stop.is_set():
                for user in USERS[:4]:
                    answers.append((user, http_get(f"{job.base}/tables/totals/{user}")[0]))
                time.sleep(0.02)

        reader = threading.Thread(target=query)
        reader.start()
        try:
            for start in range(0, 600, 100):
                producer.send(_records(start, 100))
                time.sleep(0.3)
            job.wait_for(lambda: _table_matches(job, producer.expected()), 120,
                         "the totals of the first 600 records")
        finally:
            stop.set()
            reader.join()
        for user in USERS[:4]:  # once more, after the totals are all there
            answers.append((user, http_get(f"{job.base}/tables/totals/{user}")[0]))
        statuses = [status for _user, status in answers]
        assert statuses and set(statuses) <= {200, 404}, sorted(set(statuses))
        # a key is unknown (404) until the first commit that holds it, then always answered,
        # whichever worker holds it (a timing-free form of "queries work while records flow")
        for user in USERS[:4]:
            mine = [status for u, status in answers if u == user]
            assert 200 in mine, f"{user} never answered while records flowed"
            first = mine.index(200)
            assert set(mine[first:]) == {200}, (user, mine[first:].count(404))
        # every key is answered, whichever worker holds it
        served_by = set()
        for user in USERS:
            status, body, headers = job.get(f"/tables/totals/{user}")
            assert status == 200 and body["value"] == producer.expected()[user]
            served_by.add(headers.get("X-Workbench-Worker"))
        assert served_by == {"0", "1"}
        windows = job.get(f"/tables/per-10s/{USERS[0]}?from=0&to=19999")[1]
        assert [w["window_start"] for w in windows] == [0, 10000]
        assert sum(w["value"] for w in windows) == sum(
            1 for u, v in producer.sent if u == USERS[0] and v["ts"] < 20000)
        # merged metrics: both workers, numbers equal to what was sent
        values = metric_values(job.get("/metrics")[1])
        assert metric(values, "workbench_records_in_total", topic=source) == 600
        assert {dict(k[1]).get("worker") for k in values if k[0] == "workbench_tasks"} == {
            "0", "1"}
        assert metric(values, "workbench_state_entries", store="totals") == len(USERS)
        assert metric(values, "workbench_consumer_lag_records", topic=source) == 0
        assert job.get("/health")[0] == 200
        # 2. SIGTERM: both workers finish, commit, leave; exit 0
        job.signal(signal.SIGTERM)
        assert job.wait(120) == 0, job.output()
    finally:
        job.kill()

    # 3. restart; more records; one worker is killed: the other stops too (exit 1)
    job = _start(tmp, url, suffix)
    try:
        job.wait_ready(180)
        assert _table_matches(job, producer.expected())  # restored state
        producer.send(_records(600, 300))
        job.wait_for(lambda: _table_matches(job, producer.expected()), 120,
                     "the totals after the restart")
        victim = job.get("/workers")[1][1]["pid"]
        producer.send(_records(900, 200))  # some of these may be processed, not committed
        import os

        os.kill(victim, signal.SIGKILL)
        code = job.wait(120)
        assert code == 1, job.output()
        assert "worker 1 exited with status -9: stopping the others" in job.output()
    finally:
        job.kill()

    # 4. restart: exactly once, whatever the kill interrupted
    job = _start(tmp, url, suffix)
    try:
        job.wait_ready(180)
        job.wait_for(lambda: _table_matches(job, producer.expected()), 180,
                     "the totals after the kill")
        job.signal(signal.SIGINT)
        assert job.wait(120) == 0, job.output()
    finally:
        job.kill()
    # the committed output topic agrees: the last update of each key is the total
    reader = connect(url)
    try:
        last: dict[str, Any] = {}
        for key, value, _ts, _off, _h in sorted(reader.read_all(f"totals-{suffix}"),
                                                key=lambda r: r[3]):
            last[key] = value
        assert {k: {"total": v["total"], "n": v["n"]} for k, v in last.items()} == \
            producer.expected()
    finally:
        reader.close()
        producer.driver.close()
