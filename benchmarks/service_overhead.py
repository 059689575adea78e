"""Cost of running a pipeline as a service: queryable state and metrics, the HTTP server, and a
query load of 200 requests/s, against the same run without any of it.

    python benchmarks/service_overhead.py [--events 300000] [--repeat 3] [--rate 200]

Each case runs the same bounded run on memory:// (group by 10,000 users, sum and count: every
record changes the state, so every commit hands ~all its records' keys to the views) in this
process; the query load comes from another process (keys picked at random, GET
/tables/totals/KEY, one connection). Medians of --repeat runs. Numbers, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import workbench as wb
from workbench.run import prepare
from workbench.service.core import Service

wb.options.progress = False

CLIENT = r'''
import http.client, random, sys, time
port, rate = int(sys.argv[1]), float(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port)
t0 = time.perf_counter(); n = ok = 0
while True:
    due = t0 + n / rate
    now = time.perf_counter()
    if due > now:
        time.sleep(due - now)
    try:
        c.request("GET", f"/tables/totals/u{random.randrange(10000)}")
        r = c.getresponse(); r.read(); ok += r.status in (200, 404)
    except OSError:
        c = http.client.HTTPConnection("127.0.0.1", port)
    n += 1
    if n % 200 == 0:
        print(n, ok, time.perf_counter() - t0, flush=True)
'''


def pipeline(events: int) -> wb.Pipeline:
    p = wb.Pipeline("service-bench")
    rows = [{"user": f"u{i % 10_000}", "ts": i, "amount": i % 100} for i in range(events)]
    p.source("clicks", key="user", time="ts", sample=rows).group_by("user").agg(
        total=("amount", "sum"), n="count", name="totals").to("totals-out")
    return p


def one(events: int, case: str, rate: float, port: int) -> tuple[float, int]:
    p = pipeline(events)
    engine = prepare(p, "memory://", commit_interval="100ms", batch_size=2_000)
    service = None
    client = None
    if case != "plain":
        service = Service(p, engine)
    if case in ("http", "http+queries"):
        assert service is not None
        service.start_http(f"127.0.0.1:{port}")
    if case == "http+queries":
        client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(rate)],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)  # the client is up and querying before the run starts
    started = time.perf_counter()
    engine.start()
    if service is not None:
        service.after_start()
    engine.run_until_end()
    took = time.perf_counter() - started
    served = 0
    if client is not None:
        client.terminate()
        out = client.communicate()[0].split()
        served = int(out[-2]) if len(out) >= 3 else 0
    if service is not None:
        service.stop_http()
    engine.close()
    return events / took, served


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--port", type=int, default=18777)
    args = ap.parse_args()
    cases = ["plain", "service", "http", "http+queries"]
    results: dict[str, list[float]] = {c: [] for c in cases}
    served: list[int] = []
    for r in range(args.repeat):
        for case in cases:  # interleaved, so load changes on the machine hit every case
            rate, n = one(args.events, case, args.rate, args.port + r * 10 + cases.index(case))
            results[case].append(rate)
            if n:
                served.append(n)
    base = statistics.median(results["plain"])
    report: dict[str, Any] = {"events": args.events, "repeat": args.repeat}
    for case in cases:
        med = statistics.median(results[case])
        report[case] = {"records_per_s": round(med), "vs_plain": round(med / base, 3),
                        "runs": [round(x) for x in results[case]]}
        print(f"{case:>14}: {med:>10,.0f} records/s  {med / base:6.1%} of plain  "
              f"runs {[round(x) for x in results[case]]}")
    print(f"queries answered per run (client at {args.rate:g}/s): {served}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
