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


def one(events: int, case: str, rate: float, port: int) -> tuple[float, float, int]:
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
    cpu = time.process_time()  # every thread of this process: the engine's and the server's
    engine.start()
    if service is not None:
        service.after_start()
    engine.run_until_end()
    took = time.perf_counter() - started
    cpu = time.process_time() - cpu
    served = 0
    if client is not None:
        client.terminate()
        out = client.communicate()[0].split()
        served = int(out[-2]) if len(out) >= 3 else 0
    if service is not None:
        service.stop_http()
    engine.close()
    return events / took, cpu / events * 1e6, served


def per_query_cost(port: int, queries: int = 3000) -> dict[str, float]:
    """CPU time this process spends per query and per commit hook, measured without the noise
    of a concurrent run: the state of a finished run, then ``queries`` sequential GETs from
    another process; and the service's commit hook (views are fed separately) timed in
    place."""
    p = pipeline(100_000)
    engine = prepare(p, "memory://", commit_interval="100ms", batch_size=2_000)
    service = Service(p, engine)
    service.start_http(f"127.0.0.1:{port}")
    engine.start()
    service.after_start()
    engine.run_until_end()
    hook = time.process_time()
    for _ in range(1000):
        service._on_commit(engine)  # metrics snapshot + catch-up, as at every commit
    hook_us = (time.process_time() - hook) / 1000 * 1e6
    client = (
        "import http.client, random, sys, time\n"
        "c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]))\n"
        "for i in range(int(sys.argv[2])):\n"
        "    c.request('GET', f'/tables/totals/u{random.randrange(10000)}')\n"
        "    r = c.getresponse(); r.read()\n")
    cpu = time.process_time()
    wall = time.perf_counter()
    subprocess.run([sys.executable, "-c", client, str(port), str(queries)], check=True)
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    scrape = time.process_time()
    for _ in range(100):
        service.metrics_text()
    scrape_ms = (time.process_time() - scrape) / 100 * 1e3
    service.stop_http()
    engine.close()
    us = cpu / queries * 1e6
    return {"cpu_us_per_query": round(us, 1), "core_share_at_200_qps": round(us * 200 / 1e6, 4),
            "client_qps_sequential": round(queries / wall), "hook_us_per_commit": round(hook_us, 1),
            "core_share_of_hook_at_10_commits_per_s": round(hook_us * 10 / 1e6, 5),
            "cpu_ms_per_scrape": round(scrape_ms, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--port", type=int, default=18777)
    args = ap.parse_args()
    cases = ["plain", "service", "http", "http+queries"]
    results: dict[str, list[float]] = {c: [] for c in cases}
    cpu_us: dict[str, list[float]] = {c: [] for c in cases}
    served: list[int] = []
    for r in range(args.repeat):
        for case in cases:  # interleaved, so load changes on the machine hit every case
            rate, us, n = one(args.events, case, args.rate,
                              args.port + r * 10 + cases.index(case))
            results[case].append(rate)
            cpu_us[case].append(us)
            if n:
                served.append(n)
    base = statistics.median(results["plain"])
    base_cpu = statistics.median(cpu_us["plain"])
    best_cpu = min(cpu_us["plain"])
    report: dict[str, Any] = {"events": args.events, "repeat": args.repeat}
    print("CPU time per record counts every thread of the process (engine, HTTP server);")
    print("it is what the service costs, whatever else the machine runs.")
    for case in cases:
        med = statistics.median(results[case])
        us = statistics.median(cpu_us[case])
        best = min(cpu_us[case])
        report[case] = {"records_per_s": round(med), "vs_plain": round(med / base, 3),
                        "cpu_us_per_record": round(us, 3),
                        "cpu_vs_plain": round(us / base_cpu, 3),
                        "best_cpu_us_per_record": round(best, 3),
                        "best_cpu_vs_plain": round(best / best_cpu, 3),
                        "runs": [round(x) for x in results[case]],
                        "cpu_runs": [round(x, 2) for x in cpu_us[case]]}
        print(f"{case:>14}: {med:>10,.0f} records/s ({med / base:6.1%} of plain), "
              f"CPU {us:6.2f} us/record ({us / base_cpu - 1:+6.1%}), best run "
              f"{best:5.2f} ({best / best_cpu - 1:+6.1%}); CPU runs "
              f"{[round(x, 2) for x in cpu_us[case]]}")
    print(f"queries answered per run (client at {args.rate:g}/s): {served}")
    cost = per_query_cost(args.port + 99)
    report["costs"] = cost
    print(f"one query: {cost['cpu_us_per_query']} us CPU in the server process, so 200 "
          f"queries/s take {cost['core_share_at_200_qps']:.1%} of a core "
          f"(sequential client: {cost['client_qps_sequential']} queries/s)")
    print(f"the service's commit hook (metrics snapshot): {cost['hook_us_per_commit']} us, "
          f"{cost['core_share_of_hook_at_10_commits_per_s']:.3%} of a core at 10 commits/s; "
          f"a /metrics scrape: {cost['cpu_ms_per_scrape']} ms CPU")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
