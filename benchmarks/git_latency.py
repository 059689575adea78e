"""Live tailing on the git driver: latency from appending a record (another process) to seeing
its result in the job's committed output, at a few offered loads.

    python benchmarks/git_latency.py [--rates 100,1000,5000] [--seconds 10] [--tick-ms 20]
                                     [--commit-interval 100ms] [--dir /tmp/x]

For each offered load: a fresh repository; the job is ``workbench run benchmarks/
git_latency.py:pipeline --driver git:///REPO --until forever`` (workload P1: filter, add
cents) in its own process; a producer process appends the due records every ``--tick-ms`` (one
git commit per tick; each record carries the wall-clock time just before its append); this
process reads the branch as it moves (``wait_for_data``: inotify) and takes, for every record,
the time it first sees it in the input topic (the floor: append + notification + read) and in
the job's committed output. The first 10% of records are warm-up and left out. Numbers, not
pass/fail.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload

import workbench as wb
from workbench.drivers.git import GitDriver

APP = "git-latency"
ROOT = Path(__file__).resolve().parents[1]


def pipeline() -> wb.Pipeline:
    """Workload P1: paid events with their amount in cents."""
    p = wb.Pipeline(APP)
    (p.source("events", key="user_id", time="ts")
      .filter(lambda e: e["amount"] > 0)
      .map(lambda e: {**e, "amount_cents": round(e["amount"] * 100)})
      .to("p1"))
    return p


def _produce(url: str, rate: int, seconds: float, tick: float, go: Any, sent: Any,
             rebases: Any) -> None:
    """Append ``rate`` records/s for ``seconds``, one append (git commit) per tick."""
    events = workload.events(int(rate * seconds) + rate)
    for e in events:
        e["amount"] = abs(e["amount"]) or 0.01
    driver = GitDriver(url, app=APP)
    go.wait()
    start = time.perf_counter()
    i = 0
    n = 0
    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) * rate) - i  # records due by now
        if due > 0:
            stamp = time.time()
            batch = [(e["user_id"], {**e, "sent": stamp}, e["ts"], 0, None)
                     for e in events[i:i + due]]
            driver.append("events", 0, batch)
            i += due
            n += 1
        nxt = start + n * tick
        pause = nxt - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    sent.value = i
    rebases.value = driver.rebases
    driver.close()


def _percentiles(values: list[float]) -> dict[str, float]:
    warm = sorted(values[len(values) // 10:] or values)
    if not warm:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"p50": 1000 * warm[len(warm) // 2],
            "p99": 1000 * warm[max(0, int(len(warm) * 0.99) - 1)],
            "max": 1000 * warm[-1]}


def measure(folder: Path, rate: int, seconds: float, tick: float,
            commit_interval: str) -> dict[str, Any]:
    """One offered load: start the job, offer the load, collect both latencies."""
    repo = folder / f"repo-{rate}"
    shutil.rmtree(repo, ignore_errors=True)
    url = f"git://{repo}"
    seed = GitDriver(url, app=APP)
    seed.create_topic("events", 1)
    seed.append("events", 0, [(0, {"user_id": 0, "ts": workload.START_MS, "amount": 1.0,
                                   "sent": time.time()}, workload.START_MS, 0, None)])
    seed.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                       os.environ.get("PYTHONPATH", "")])}
    job = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "run", f"{__file__}:pipeline", "--driver", url,
         "--until", "forever", "--commit-interval", commit_interval],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader = GitDriver(url, app=APP)
    deadline = time.monotonic() + 120
    while reader.committed(APP, "events", 0) < 1:  # the job runs
        if job.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the job did not start: {job.communicate()}")
        reader.wait_for_data(0.5)
    spawn = multiprocessing.get_context("spawn")
    go, sent, rebases = spawn.Event(), spawn.Value("l", -1), spawn.Value("l", 0)
    producer = spawn.Process(target=_produce,
                             args=(url, rate, seconds, tick, go, sent, rebases))
    producer.start()
    time.sleep(1.0)  # the producer generated its events
    go.set()
    seen_in: list[float] = []
    seen_out: list[float] = []
    pos_in, pos_out = 1, reader.end_offset("p1", 0) if reader.partitions("p1") else 0
    deadline = time.monotonic() + seconds + 120
    while time.monotonic() < deadline:
        reader.wait_for_data(0.2)
        now = time.time()
        for topic, seen in (("events", seen_in), ("p1", seen_out)):
            if reader.partitions(topic) is None:
                continue
            start = pos_in if topic == "events" else pos_out
            end = reader.end_offset(topic, 0)
            while start < end:
                chunk = reader.read(topic, 0, start, 100_000)
                seen.extend(now - r[1]["sent"] for r in chunk)
                start = chunk[-1][3] + 1
            if topic == "events":
                pos_in = start
            else:
                pos_out = start
        if not producer.is_alive() and sent.value >= 0 and len(seen_out) >= sent.value:
            break
    producer.join()
    job.send_signal(signal.SIGTERM)
    out, err = job.communicate(timeout=120)
    if job.returncode != 0:
        raise RuntimeError(f"the job failed ({job.returncode}): {err[-2000:]}")
    history = reader.history()
    reader.close()
    engine_commits = sum(1 for c in history if c.kind == "commit")
    appends = sum(1 for c in history if c.kind == "append") - 1
    return {"rate": rate, "offered": sent.value, "seen_in": len(seen_in),
            "seen_out": len(seen_out), "in": _percentiles(seen_in),
            "out": _percentiles(seen_out), "appends": appends, "commits": engine_commits,
            "producer_rebases": rebases.value, "job": out.strip().splitlines()[-1:],
            "seconds": seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", default="100,1000,5000")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--tick-ms", type=float, default=20.0)
    ap.add_argument("--commit-interval", default="100ms")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--json", action="store_true", help="print one JSON line per load too")
    args = ap.parse_args()
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="git-latency-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for rate in (int(r) for r in args.rates.split(",")):
        res = measure(folder, rate, args.seconds, args.tick_ms / 1000, args.commit_interval)
        rows.append(res)
        if args.json:
            print(json.dumps(res), flush=True)
    print(f"\ngit driver, live tailing: append -> visible (ms); {args.seconds:g} s per load, one "
          f"append per {args.tick_ms:g} ms, commit interval {args.commit_interval}; load "
          f"average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| offered rec/s | input p50 | input p99 | output p50 | output p99 | output max "
          "| results | appends | job commits | appends redone on a moved head |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rate']:,} | {r['in']['p50']:.0f} | {r['in']['p99']:.0f} | "
              f"{r['out']['p50']:.0f} | {r['out']['p99']:.0f} | {r['out']['max']:.0f} | "
              f"{r['seen_out']:,}/{r['offered']:,} | {r['appends']} | {r['commits']} | "
              f"{r['producer_rebases']} |")
    if not args.dir:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if all(r["seen_out"] == r["offered"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
