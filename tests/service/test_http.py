"""A real ``workbench run --http`` process on memory://: endpoints, metrics checked against the
run, the status page, and shutdown by SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from .procs import Job, metric, metric_values

pytest.importorskip("aiohttp")
pytest.importorskip("prometheus_client")

JOB = '''
import time
import workbench as wb

def slow(v):
    time.sleep(float(SLEEP))
    return v

SLEEP = 0
pipeline = wb.Pipeline("http-test")
clicks = pipeline.source("clicks", key="user", time="ts", sample=[
    {"user": f"u{i % 3}", "ts": 1000 * i, "amount": i, "bad": i % 10 == 9}
    for i in range(30)])
valid = clicks.map(slow)
totals = valid.group_by("user").agg(total=("amount", "sum"), n="count", name="user-totals")
totals.to("totals")
per_10s = valid.group_by("user").window(wb.Tumbling("10s"), emit="close").count(name="per-10s")
per_10s.to("per-10s-out")
per_10s.late.to("late")
'''


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    (tmp_path / "job.py").write_text(JOB)
    return tmp_path


def test_endpoints_queries_and_metrics(job_file: Path) -> None:
    job = Job(["run", "job.py", "--until", "forever", "--output", "out"], job_file)
    try:
        job.wait_ready()
        assert job.get("/health")[0] == 200
        # the committed state, once the 30 records are in
        status, row, headers = job.wait_for(
            lambda: (r := job.get("/tables/user-totals/u1"))[0] == 200 and r, what="u1")
        assert row == {"key": "u1", "value": {"total": 145, "n": 10}, "timestamp": 28000}
        assert headers["Content-Type"].startswith("application/json")
        # the sink topic's name finds the same table; a key range; a JSON key
        assert job.get("/tables/totals/u1")[1] == row
        rows = job.get("/tables/user-totals?from_key=u1")[1]["rows"]
        assert [r["key"] for r in rows] == ["u1", "u2"]
        # windows of a key, by window start
        windows = job.get("/tables/per-10s/u2?from=10000&to=1970-01-01T00:00:25Z")[1]
        assert [(w["window_start"], w["value"]) for w in windows] == [(20000, 4)]
        # 404s name what exists
        status, body, _h = job.get("/tables/user-total/u1")
        assert status == 404 and body["tables"] == ["per-10s", "user-totals"]
        assert "user-totals" in body["error"]
        status, body, _h = job.get("/tables/user-totals/nobody")
        assert status == 404 and body["not_found"] == "key"
        assert body["some_keys"] == ["u0", "u1", "u2"]
        assert job.get("/tables/per-10s/u1?from=yesterday")[0] == 400
        listing = job.get("/tables")[1]["tables"]
        assert {t["name"]: t["kind"] for t in listing} == {"per-10s": "window",
                                                           "user-totals": "table"}
        # metrics, parsed by prometheus_client's parser
        text = job.get("/metrics")[1]
        values = metric_values(text)
        assert metric(values, "workbench_records_in_total", topic="clicks") == 30
        assert metric(values, "workbench_records_out_total", topic="totals") == 30
        assert metric(values, "workbench_consumer_lag_records", topic="clicks") == 0
        assert metric(values, "workbench_state_entries", store="user-totals") == 3
        assert metric(values, "workbench_commit_duration_seconds_count") == metric(
            values, "workbench_commits_total") >= 1
        assert metric(values, "workbench_ready") == 1
        assert metric(values, "workbench_batch_limit_records") >= 1
        assert metric(values, "workbench_batch_records") >= 1
        assert metric(values, "workbench_commit_rate") >= 0
        p50 = metric(values, "workbench_commit_latency_seconds", quantile="0.5")
        assert 0 < p50 <= metric(values, "workbench_commit_latency_seconds", quantile="0.99")
        # the sample's event times are in 1970: end-to-end latency is the whole history
        assert metric(values, "workbench_e2e_latency_seconds", quantile="0.99") > 3600
        assert 0 < metric(values, "workbench_transaction_seconds") <= metric(
            values, "workbench_max_transaction_seconds")
        assert metric(values, "process_resident_memory_bytes") > 0
        assert metric(values, "workbench_state_bytes", store="user-totals") > 0
        assert metric(values, "workbench_state_bytes", store="per-10s") > 0
        assert metric(values, "workbench_errors_total") == 0
        assert metric(values, "workbench_rebalances_total") == 0
        # the status page and its data
        status, page, headers = job.get("/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "<svg" in page and "status.json" in page
        data = job.get("/status.json")[1]
        assert data["records_in"] == 30 and data["ready"] is True
        assert {s["step"] for s in data["steps"]} >= {"clicks", "user-totals", "totals"}
        commits_seen = metric(values, "workbench_commits_total")
    finally:
        job.signal(signal.SIGTERM)
        code = job.wait()
    out = job.output()
    assert code == 0, out
    assert "received SIGTERM" in out and "http-test: 90 records in" in out
    # what the metrics said matches what was committed
    totals = pd.read_csv(job_file / "out" / "totals.csv")
    assert len(totals) == 30
    commits = int(out.split(" commits")[0].rsplit(", ", 1)[1])
    assert commits >= commits_seen
    # a stop is not an end of input: the open windows were not closed
    assert not (job_file / "out" / "per-10s-out.csv").exists() or len(
        pd.read_csv(job_file / "out" / "per-10s-out.csv")) < 9


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_ready_fails_while_stopping_and_exit_0(job_file: Path, signum: int) -> None:
    (job_file / "job.py").write_text(JOB.replace("SLEEP = 0", "SLEEP = 0.05"))
    job = Job(["run", "job.py", "--until", "forever"], job_file)
    try:
        job.wait_ready()
        job.signal(signum)
        # the batch in hand (30 records, 50 ms each) is still being finished
        _status, body, _h = job.wait_for(lambda: (r := job.get("/ready"))[0] == 503 and r, 5,
                                        "not ready")
        assert body["reason"] == "stopping"
        assert job.get("/health")[0] == 200
        code = job.wait(60)
    finally:
        job.kill()
    assert code == 0, job.output()
    assert "http-test: " in job.output()  # committed and said so


def test_health_fails_while_the_loop_is_stuck_and_recovers(job_file: Path) -> None:
    """Liveness: a step that keeps the loop from turning for longer than --liveness-timeout
    makes /health answer 503 with the reason (what Kubernetes restarts on); it answers 200 again
    once the loop turns."""
    (job_file / "job.py").write_text(JOB.replace("SLEEP = 0", "SLEEP = 0.5"))
    job = Job(["run", "job.py", "--until", "forever", "--liveness-timeout", "1"], job_file)
    try:
        job.wait_ready()
        _status, body, _h = job.wait_for(lambda: (r := job.get("/health"))[0] == 503 and r,
                                        60, "/health failing")
        assert body["status"] == "failing"
        assert "has not turned" in body["reason"] and "limit 1 s" in body["reason"], body
        # every record processed (30 x 0.5 s): the loop turns again and /health recovers
        job.wait_for(lambda: job.get("/health")[0] == 200
                     and job.get("/status.json")[1]["records_in"] >= 30, 120,
                     "/health recovering")
        job.signal(signal.SIGTERM)
        code = job.wait(60)
    finally:
        job.kill()
    assert code == 0, job.output()


def test_second_signal_exits_at_once_without_committing(job_file: Path) -> None:
    (job_file / "job.py").write_text(JOB.replace("SLEEP = 0", "SLEEP = 0.5"))
    job = Job(["run", "job.py", "--until", "forever"], job_file)
    try:
        job.wait_ready()
        job.signal(signal.SIGTERM)
        time.sleep(0.5)
        started = time.monotonic()
        job.signal(signal.SIGTERM)
        code = job.wait(30)
        took = time.monotonic() - started
    finally:
        job.kill()
    out = job.output()
    assert code == 128 + signal.SIGTERM, out
    assert took < 5, took  # the 15 s batch was not finished
    assert "received SIGTERM again" in out and "records in" not in out
