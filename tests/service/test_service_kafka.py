"""``workbench run --workers 2 --http`` on Kafka: see :mod:`tests.service.scenario`."""

from __future__ import annotations

from pathlib import Path

import pytest

from .scenario import run_scenario

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
pytest.importorskip("aiohttp")
pytest.importorskip("prometheus_client")


def test_two_workers_on_kafka(kafka_url: str, tmp_path: Path) -> None:
    run_scenario(tmp_path, kafka_url)


def test_ready_fails_during_a_rebalance(kafka_url: str, tmp_path: Path) -> None:
    """Two members; the second leaves: the first takes over its partitions and restores their
    state (many keys, so it takes a while). Its /ready answers 503 "rebalancing" meanwhile, and
    200 once the state is restored; queries then see the moved keys."""
    import signal
    import threading
    import time
    import uuid

    from .procs import Job, http_get
    from .scenario import JOB, PARTITIONS, Producer

    (tmp_path / "job.py").write_text(JOB)
    suffix = uuid.uuid4().hex[:8]
    args = ["run", "job.py:make", "-p", f"suffix={suffix!r}", "--driver", kafka_url,
            "--until", "forever"]
    producer = Producer(kafka_url, f"clicks-{suffix}")
    producer.driver.ensure_topic(f"clicks-{suffix}", PARTITIONS, kind="source")
    first = Job(args, tmp_path)
    second = None
    try:
        first.wait_ready(180)
        tasks = first.get("/status.json")[1]["tasks"]
        second = Job(args, tmp_path)
        second.wait_ready(180)
        first.wait_for(lambda: first.get("/status.json")[1]["tasks"] == tasks // 2, 180,
                       "the split")  # a rebalance takes seconds; minutes on a loaded machine
        keys = 30_000
        producer.send([(f"k{i}", {"user": f"k{i}", "ts": i, "amount": 1})
                       for i in range(keys)])
        for job in (first, second):
            job.wait_for(lambda j=job: j.get("/status.json")[1]["lag"] == 0
                         and j.get("/status.json")[1]["records_in"] > 0, 120, "the records")
        seen: list[tuple[int, str]] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                status, body, _h = http_get(first.base + "/ready")
                seen.append((status, body.get("reason", "")))
                time.sleep(0.01)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            second.signal(signal.SIGTERM)
            assert second.wait(120) == 0
            first.wait_for(lambda: first.get("/status.json")[1]["tasks"] == tasks, 120,
                           "the take-over")
            first.wait_for(lambda: first.get("/ready")[0] == 200, 120, "ready again")
        finally:
            stop.set()
            poller.join()
        not_ready = [reason for status, reason in seen if status == 503]
        assert not_ready, "the rebalance was never visible on /ready"
        assert all(r.startswith("rebalancing") for r in not_ready), set(not_ready)
        assert seen[0][0] == 200 and seen[-1][0] == 200
        # every key is served by the one member left: state restored from the changelog, and
        # the repartitioned records the other member had not aggregated yet processed here
        def all_keys() -> list[dict[str, object]] | None:
            rows = first.get(f"/tables/totals?limit={keys + 10}")[1]["rows"]
            return rows if len(rows) == keys else None

        rows = first.wait_for(all_keys, 120, "every key")
        assert all(r["value"]["n"] == 1 for r in rows)  # type: ignore[index]
    finally:
        producer.driver.close()
        for job in (first, second):
            if job is not None:
                if job.proc.poll() is None:
                    job.signal(signal.SIGTERM)
                    job.wait(120)
                job.kill()


def test_batch_job_with_two_workers_input_and_output(kafka_url: str, tmp_path: Path) -> None:
    """--workers 2 in a bounded run: the supervisor appends the --input file once, the workers
    process it, the supervisor writes --output after both exit."""
    import subprocess
    import sys
    import uuid

    import pandas as pd

    from .scenario import JOB

    (tmp_path / "job.py").write_text(JOB)
    suffix = uuid.uuid4().hex[:8]
    clicks = pd.DataFrame({"user": [f"u{i % 10}" for i in range(300)],
                           "ts": [1000 + i for i in range(300)],
                           "amount": [i % 7 for i in range(300)]})
    clicks.to_csv(tmp_path / "clicks.csv", index=False)
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", "job.py:make", "-p", f"suffix={suffix!r}",
         "--driver", kafka_url, "--workers", "2", "--input", f"clicks-{suffix}=clicks.csv",
         "--output", "out"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert sum(int(line.split(": ")[1].split()[0]) for line in out.stdout.splitlines()
               if line.startswith(f"svc-{suffix}:")) == 900  # source + two repartition topics
    got = pd.read_csv(tmp_path / "out" / f"totals-{suffix}.csv")
    assert len(got) == 300
    last = got.groupby("user").last()  # the grouping field names the key column
    expected = clicks.groupby("user").amount.agg(["sum", "count"])
    assert (last["total"] == expected["sum"]).all() and (last["n"] == expected["count"]).all()
