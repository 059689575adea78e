"""External work: how the queue of ``map_async`` and the batch size trade throughput, memory
and latency.

    python benchmarks/external_io.py [--quick] [--json PATH] [--plot PATH] [--kafka URL]

**Queue** (``map_async``): a call that waits ``latency`` (``asyncio.sleep``, so the numbers are
the engine's, not a server's) and returns a 16 KB value, for every combination of call latency
(10 ms, 100 ms), ``concurrency`` (4, 16, 64) and queue length (1x, 2x, 4x, 16x concurrency), on
``memory://`` with the default commit interval (100 ms); the next step drops the 16 KB, so
they live only while in the queue. Per row: records/s, the ideal
``concurrency / latency``, the peak RSS above the process's size before the run (the queue's
records and results), the time commits waited for the calls in flight ("flush", median and
max), the longest transaction, and the process's CPU time per record (all threads: what the
other sessions of a shared machine disturb least). Each row runs in a fresh child process (its
own peak RSS).
**Reference** (same script run, same conditions, its own fresh child process just before the
workbench side): plain ``asyncio`` over the same list, the same call, at most ``concurrency``
calls at once (a semaphore) and at most ``queue`` records outstanding (a sliding window of
tasks), results taken in input order and the 16 KB dropped: what a hand-written loop gets
with the same bound, without commits or an engine.

**Batch size** (plain steps): a ``map`` costing 20 µs of CPU per record, committed after every
poll (``commit_interval=0``), for batch sizes 10 to 100,000 (``max_transaction=1h``, so the
batch sizer stays out of the way): records/s against the commit latency (first record read to
end of commit, median and p99) and CPU time per record. On ``memory://``, and on Kafka with
``--kafka URL`` (where a commit costs milliseconds). The last two rows let the batch sizer choose
(``batch_size=1,000,000``): with ``max_transaction=200ms``, and with the driver's default
(memory 30 s, Kafka 5 s). Reference: the plain loop calling the
same function over the same list (no commits), in its own child process.

``--plot`` draws both (throughput against queue length per latency and concurrency; commit
latency against throughput per batch size). Timings on a shared machine move a lot: read the
shape, not the digits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import harness  # noqa: E402

import workbench as wb  # noqa: E402

wb.options.progress = False

LATENCIES = (0.01, 0.1)
CONCURRENCY = (4, 16, 64)
QUEUE_FACTORS = (1, 2, 4, 16)
BATCHES = (10, 100, 1_000, 10_000, 100_000)
PAYLOAD = 16 * 1024
CPU_COST_S = 20e-6


# ------------------------------------------------------------------------ one queue row
def queue_row(latency: float, concurrency: int, queue: int, records: int) -> dict[str, Any]:
    """Run the map_async pipeline once (in this process) and measure it."""
    from workbench.run import prepare

    async def call(v: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(latency)
        return {"x": v["x"], "blob": bytearray(PAYLOAD)}  # a fresh 16 KB per result

    p = wb.Pipeline(f"bench-ext-{uuid.uuid4().hex[:6]}")
    (p.source("in").map_async(call, concurrency=concurrency, queue=queue)
      .map(lambda v: v["x"]).to("out"))  # the 16 KB live only while in the queue
    engine = prepare(p, "memory://", inputs={"in": [{"x": i} for i in range(records)]})
    flushes: list[float] = []
    sizer = engine.batch_sizer
    plain_flush = sizer.flush

    def timed_flush() -> None:
        began = time.perf_counter()
        plain_flush()
        flushes.append((time.perf_counter() - began) * 1000)

    sizer.flush = timed_flush  # type: ignore[method-assign]
    engine.start()
    base = harness.rss_mb()
    harness.reset_peak()
    began, cpu = time.perf_counter(), time.process_time()
    engine.run_until_end()
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    peak = harness.peak_rss_mb() - base
    out = engine.stats.records_out.get("out", 0)
    engine.close()
    if out != records:
        raise SystemExit(f"ERROR: {out} results for {records} records")
    waits = [f for f in flushes if f > 0.5] or [0.0]
    return {"latency_ms": latency * 1000, "concurrency": concurrency, "queue": queue,
            "records": records, "rate": records / seconds, "ideal": concurrency / latency,
            "cpu_us": cpu / records * 1e6,
            "peak_mb": peak, "flush_p50_ms": statistics.median(waits),
            "flush_max_ms": max(waits), "commits": engine.stats.commits,
            "txn_max_ms": max(engine.stats.transaction_ms, default=0.0)}


def queue_reference(latency: float, concurrency: int, queue: int, records: int
                    ) -> dict[str, Any]:
    """The same calls from plain asyncio: a semaphore of ``concurrency``, a sliding window of
    ``queue`` outstanding records, results in input order."""
    from collections import deque

    async def call(v: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(latency)
        return {"x": v["x"], "blob": bytearray(PAYLOAD)}

    async def main(rows: list[dict[str, Any]]) -> list[int]:
        sem = asyncio.Semaphore(concurrency)

        async def one(v: dict[str, Any]) -> dict[str, Any]:
            async with sem:
                return await call(v)

        window: deque[asyncio.Task[dict[str, Any]]] = deque()
        out: list[int] = []
        for v in rows:
            if len(window) >= queue:
                out.append((await window.popleft())["x"])
            window.append(asyncio.ensure_future(one(v)))
        while window:
            out.append((await window.popleft())["x"])
        return out

    rows = [{"x": i} for i in range(records)]
    base = harness.rss_mb()
    harness.reset_peak()
    began, cpu = time.perf_counter(), time.process_time()
    out = asyncio.run(main(rows))
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    peak = harness.peak_rss_mb() - base
    if out != list(range(records)):
        raise SystemExit("ERROR: the reference lost or reordered results")
    return {"rate": records / seconds, "peak_mb": peak, "cpu_us": cpu / records * 1e6}


# ------------------------------------------------------------------------ one batch row
def busy(v: Any) -> Any:
    """20 µs of this thread's CPU time (not wall-clock time: a wait interrupted by another
    process would cost less CPU than it says)."""
    end = time.thread_time() + CPU_COST_S
    while time.thread_time() < end:
        pass
    return v


def batch_row(url: str, batch: int, records: int, max_transaction: str | None
              ) -> dict[str, Any]:
    from workbench.run import prepare

    app = f"bench-batch-{uuid.uuid4().hex[:6]}"
    p = wb.Pipeline(app)
    p.source(f"{app}-in").map(busy).to(f"{app}-out")
    engine = prepare(p, url, inputs={f"{app}-in": [{"x": i} for i in range(records)]},
                     commit_interval=0, batch_size=batch,
                     max_transaction=None if max_transaction == "default" else max_transaction)
    latencies: list[float] = []
    engine.on_commit.append(lambda e: latencies.append(e.stats.commit_latency_ms[-1])
                            if e.stats.commit_latency_ms else None)
    began, cpu = time.perf_counter(), time.process_time()
    try:
        engine.run_until_end()
    finally:
        engine.close()
        engine.driver.end_run()
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    lat = sorted(latencies) or [0.0]
    return {"driver": url.split(":")[0], "batch": batch, "records": records,
            "rate": records / seconds, "commits": engine.stats.commits,
            "cpu_us": cpu / records * 1e6,
            "commit_p50_ms": statistics.median(lat),
            "commit_p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "sized": batch > 100_000, "chosen": engine.stats.batch_limit,
            "max_transaction_ms": engine.stats.max_transaction_ms}


def batch_reference(records: int) -> dict[str, Any]:
    """The plain loop: the same function over the same list, no commits (median of 3)."""
    rows = [{"x": i} for i in range(records)]
    times, cpus = [], []
    for _ in range(3):  # the median of three (it is short, and the machine is shared)
        began, cpu = time.perf_counter(), time.process_time()
        out = [busy(v) for v in rows]
        times.append(time.perf_counter() - began)
        cpus.append(time.process_time() - cpu)
        if len(out) != records:
            raise SystemExit("ERROR: the reference lost records")
    seconds = statistics.median(times)
    return {"driver": "loop", "batch": records, "records": records, "rate": records / seconds,
            "cpu_us": statistics.median(cpus) / records * 1e6,
            "commits": 0, "commit_p50_ms": 0.0, "commit_p99_ms": 0.0, "sized": False,
            "chosen": 0, "reference": True}


# ------------------------------------------------------------------------ the parent
ERRORS: list[str] = []


def child(args: list[str]) -> dict[str, Any] | None:
    """One row in a fresh child process (``None`` and an ERROR line when it failed: the other
    rows still run, and the script exits 1)."""
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                         text=True, check=False)
    if out.returncode:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        ERRORS.append(f"ERROR {' '.join(args)}: {last}")
        print(ERRORS[-1], flush=True)
        return None
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def queue_table(rows: list[dict[str, Any]]) -> str:
    lines = ["latency  concurrency  queue  records   rec/s  ideal  % of ideal  ref rec/s  "
             "wb/ref  CPU µs/rec  ref CPU µs/rec  peak MB  ref peak MB  flush p50 ms  "
             "flush max ms  longest txn ms",
             "-------  -----------  -----  -------  ------  -----  ----------  ---------  "
             "------  ----------  --------------  -------  -----------  ------------  "
             "------------  --------------"]
    for r in rows:
        ref = r.get("ref") or {"rate": float("nan"), "peak_mb": float("nan"),
                               "cpu_us": float("nan")}
        lines.append(
            f"{r['latency_ms']:>5.0f}ms  {r['concurrency']:>11}  {r['queue']:>5}  "
            f"{r['records']:>7}  {r['rate']:>6.0f}  {r['ideal']:>5.0f}  "
            f"{100 * r['rate'] / r['ideal']:>9.0f}%  {ref['rate']:>9.0f}  "
            f"{r['rate'] / ref['rate']:>6.2f}  {r['cpu_us']:>10.0f}  {ref['cpu_us']:>14.0f}  "
            f"{r['peak_mb']:>7.1f}  {ref['peak_mb']:>11.1f}  "
            f"{r['flush_p50_ms']:>12.0f}  {r['flush_max_ms']:>12.0f}  {r['txn_max_ms']:>14.0f}")
    return "\n".join(lines)


def batch_table(rows: list[dict[str, Any]]) -> str:
    lines = ["driver  batch size              records   rec/s  CPU µs/rec  commits  "
             "commit latency p50 ms  p99 ms",
             "------  ----------------------  -------  ------  ----------  -------  "
             "---------------------  ------"]
    for r in rows:
        limit = f"{r.get('max_transaction_ms', 0) / 1000:g} s"
        size = ("plain loop" if r.get("reference") else
                f"sizer ({limit}): {r['chosen']:,}" if r["sized"] else f"{r['batch']:,}")
        lines.append(f"{r['driver']:<6}  {size:<22}  {r['records']:>7}  {r['rate']:>6.0f}  "
                     f"{r['cpu_us']:>10.1f}  "
                     f"{r['commits']:>7}  {r['commit_p50_ms']:>21.1f}  "
                     f"{r['commit_p99_ms']:>6.1f}")
    return "\n".join(lines)


def plot(path: str, queue_rows: list[dict[str, Any]], batch_rows: list[dict[str, Any]]
         ) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for latency in sorted({r["latency_ms"] for r in queue_rows}):
        for conc in sorted({r["concurrency"] for r in queue_rows}):
            rows = [r for r in queue_rows
                    if r["latency_ms"] == latency and r["concurrency"] == conc]
            if rows:
                left.plot([r["queue"] / conc for r in rows],
                          [100 * r["rate"] / r["ideal"] for r in rows], marker="o",
                          label=f"{latency:.0f} ms, concurrency {conc}")
    left.axvline(1, color="grey", linestyle=":", label="default queue = concurrency")
    left.set_xscale("log", base=2)
    left.set_xlabel("queue length / concurrency")
    left.set_ylabel("% of concurrency / latency")
    left.set_title("map_async: throughput against queue length")
    left.legend(fontsize=7)
    for driver in sorted({r["driver"] for r in batch_rows}):
        if driver == "loop":
            for r in batch_rows:
                if r.get("reference"):
                    right.axhline(r["rate"], color="grey", linestyle=":",
                                  label="plain loop, no commits")
            continue
        rows = [r for r in batch_rows if r["driver"] == driver and not r["sized"]]
        left_x = [r["commit_p50_ms"] for r in rows]
        right.plot(left_x, [r["rate"] for r in rows], marker="o", label=driver)
        for r in rows:
            right.annotate(f"{r['batch']:,}", (r["commit_p50_ms"], r["rate"]), fontsize=7)
        sized = [r for r in batch_rows if r["driver"] == driver and r["sized"]]
        for r in sized:
            limit = r.get("max_transaction_ms", 0) / 1000
            right.plot([r["commit_p50_ms"]], [r["rate"]], marker="*" if limit < 1 else "P",
                       markersize=12, linestyle="",
                       label=f"{driver}: batch sizer (max_transaction {limit:g} s)")
    right.set_xscale("log")
    right.set_xlabel("commit latency p50 (ms): first record read to end of commit")
    right.set_ylabel("records/s")
    right.set_title("plain step (20 µs/record): batch size against commit latency")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and smaller rows")
    parser.add_argument("--json", help="write the rows as JSON to this file")
    parser.add_argument("--plot", help="draw the plot into this file (.svg or .png)")
    parser.add_argument("--kafka", help="also measure batch sizes on this Kafka URL")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind in ("queue", "queue-ref"):
            lat, conc, queue, n = float(rest[0]), int(rest[1]), int(rest[2]), int(rest[3])
            measure = queue_row if kind == "queue" else queue_reference
            print(json.dumps(measure(lat, conc, queue, n)))
        elif kind == "batch-ref":
            print(json.dumps(batch_reference(int(rest[0]))))
        else:
            url, batch, n, mt = rest[0], int(rest[1]), int(rest[2]), rest[3]
            print(json.dumps(batch_row(url, batch, n, mt)))
        return 0
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} | load average "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores | python "
          f"{sys.version.split()[0]}", flush=True)
    latencies = LATENCIES[:1] if args.quick else LATENCIES
    queue_rows: list[dict[str, Any]] = []
    for lat in latencies:
        for conc in CONCURRENCY:
            for factor in QUEUE_FACTORS:
                ideal = conc / lat
                n = int(min(20_000, max(4 * conc * factor, ideal * (1.0 if args.quick else 3.0))))
                spec = [str(lat), str(conc), str(conc * factor), str(n)]
                ref = child(["queue-ref", *spec])
                row = child(["queue", *spec])
                if row is not None:
                    row["ref"] = ref
                    queue_rows.append(row)
                    print(queue_table([row]).splitlines()[-1], flush=True)
    batch_rows: list[dict[str, Any]] = []
    ref_row = child(["batch-ref", str(5_000 if args.quick else 20_000)])
    if ref_row is not None:
        batch_rows.append(ref_row)
    drivers = ["memory://"] + ([args.kafka] if args.kafka else [])
    for url in drivers:
        n = 20_000 if url.startswith("memory") else 10_000
        if args.quick:
            n //= 4
        for batch in BATCHES:
            if batch > n:
                continue
            row = child(["batch", url, str(batch), str(n), "1h"])
            if row is not None:
                batch_rows.append(row)
        for limit in ("200ms", "default"):
            row = child(["batch", url, "1000000", str(n), limit])
            if row is not None:
                batch_rows.append(row)
    print()
    print(queue_table(queue_rows))
    print()
    print(batch_table(batch_rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"queue": queue_rows, "batch": batch_rows},
                                              indent=1))
    if args.plot:
        plot(args.plot, queue_rows, batch_rows)
    for line in ERRORS:
        print(line)
    return 1 if ERRORS else 0


if __name__ == "__main__":
    sys.exit(main())
