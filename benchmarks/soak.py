"""Soak: a live pipeline with a stream-stream join and windows at a steady offered load, for a
long time, on Kafka and on PostgreSQL. Every ``--sample`` seconds the processor reports its RSS,
state size (entries in its stores), commit duration, commit latency (oldest record read to its
commit), end-to-end latency (wall clock minus committed stream time), lag (source records not
processed yet) and throughput. Numbers, not pass/fail.

Three processes per driver, on fresh topics (Kafka: names with a random suffix, deleted at the
end; PostgreSQL: a fresh schema, dropped at the end):

* a **producer** offers ``--rate`` clicks/s and ``--rate/4`` purchases/s (``--users`` keys),
  one transaction every 100 ms, timestamps = wall clock;
* the **processor** runs the pipeline unbounded (``Engine.run_forever``, commit interval
  ``--commit-interval``) and prints one JSON sample per interval;
* this process prints the samples as a table, and at the end the summary: RSS and latency after
  warm-up (first ``--warmup`` of the run) and their trend, and **offered vs processed** (the
  producer stops, the processor drains; nothing may be missing).

The pipeline: purchases LEFT JOIN clicks of the same user within 5 s (grace 1 s), then per user
10 s tumbling windows (grace 2 s) counting purchases and summing amounts. State should grow
only as the data says: the join's window stores hold ~6 s of records, the window store ~12 s of
windows per active user; everything older is purged.

    python benchmarks/soak.py [--drivers kafka,postgres] [--minutes 30] [--rate 1000]
        [--users 10000] [--sample 10] [--commit-interval 100ms] [--json FILE] [--plot FILE]
    python benchmarks/soak.py --short          # 3 minutes per driver, a sample every 5 s
    python benchmarks/soak.py --stall 60@5     # also stop the processor (SIGSTOP) at minute 5
                                               # for 60 s: how long it takes to catch up
    python benchmarks/soak.py --replot kafka.json postgres.json --plot soak.png
                                               # summary and plot of saved runs, together

With ``--stall`` the summary also says when the processor caught up: the first sample after
the stall whose lag is back under the largest lag seen before it.

Servers: ``--kafka-url`` / ``--postgres-url``, else ``WORKBENCH_KAFKA_URL`` /
``WORKBENCH_POSTGRES_URL``, else ``workbench dev up`` (``WORKBENCH_DEV_DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import workbench as wb  # noqa: E402

PARTITIONS = 3
TICK_S = 0.1


# ---------------------------------------------------------------- the pipeline
def names(driver: str, sfx: str) -> dict[str, str]:
    """Topic and application names (on Kafka every run gets its own; PostgreSQL: a schema)."""
    tail = f"-{sfx}" if driver == "kafka" else ""
    return {"app": f"soak{tail}", "clicks": f"soak-clicks{tail}", "buys": f"soak-buys{tail}",
            "out": f"soak-per-user{tail}"}


def build(driver: str, sfx: str) -> wb.Pipeline:
    n = names(driver, sfx)
    p = wb.Pipeline(n["app"])
    clicks = p.source(n["clicks"], key="user", time="ts", partitions=PARTITIONS)
    buys = p.source(n["buys"], key="user", time="ts", partitions=PARTITIONS)
    (buys.join(clicks, how="left", within="5s", grace="1s", name="buys-with-clicks")
         .group_by_key().window(wb.Tumbling("10s", grace="2s"))
         .agg(n="count", total=("amount", "sum"), name="per-user")
         .to(n["out"]))
    return p


# ---------------------------------------------------------------- processes
def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) / 1024
    return float("nan")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 1)


def processor(url: str, driver: str, sfx: str, commit_interval: str, sample_s: float) -> None:
    """Run until SIGTERM, printing ``ready`` and then one JSON sample per ``sample_s``."""
    from workbench.progress import source_backlog
    from workbench.run import prepare

    engine = prepare(build(driver, sfx), url, commit_interval=commit_interval)
    signal.signal(signal.SIGTERM, lambda *_: engine.stop())
    engine.start()
    print("ready", flush=True)
    st = engine.stats
    t0 = time.monotonic()
    last = {"at": t0, "records": 0}
    window: dict[str, list[float]] = {"commit": [], "latency": [], "e2e": []}
    seen = {"commits": 0}

    def on_commit(e: Any) -> None:
        if st.commits != seen["commits"]:
            seen["commits"] = st.commits
            window["commit"].append(st.commit_ms[-1])
            if st.commit_latency_ms:
                window["latency"].append(st.commit_latency_ms[-1])
            if st.e2e_latency_ms:
                window["e2e"].append(st.e2e_latency_ms[-1])

    def on_interval(e: Any) -> None:
        now = time.monotonic()
        if now - last["at"] < sample_s:
            return
        sources = sum(n for t, n in st.records_in_by_topic.items()
                      if e.plan.topics[t].kind == "source")
        stores = e.store_sizes()
        sample = {
            "t": round(now - t0, 1), "rss_mb": round(_rss_mb(), 1),
            "state": sum(stores.values()), "stores": stores,
            "rate": round((sources - last["records"]) / (now - last["at"])),
            "processed": sources, "lag": source_backlog(e), "commits": st.commits,
            "commit_p50_ms": _pct(window["commit"], 0.5),
            "commit_p99_ms": _pct(window["commit"], 0.99),
            "latency_p50_ms": _pct(window["latency"], 0.5),
            "latency_p99_ms": _pct(window["latency"], 0.99),
            "e2e_p99_ms": _pct(window["e2e"], 0.99),
            "cpu_s": round(time.process_time(), 1),
        }
        for v in window.values():
            v.clear()
        last["at"], last["records"] = now, sources
        print("SAMPLE " + json.dumps(sample), flush=True)

    engine.on_commit.append(on_commit)
    engine.on_interval.append(on_interval)
    engine.run_forever()
    processed = sum(n for t, n in st.records_in_by_topic.items()
                    if engine.plan.topics[t].kind == "source")
    engine.close()
    engine.driver.end_run()
    engine.driver.close()
    print("DONE " + json.dumps({"processed": processed, "commits": st.commits}), flush=True)


def producer(url: str, driver: str, sfx: str, rate: int, users: int, seconds: float) -> None:
    """Offer ``rate`` clicks/s and ``rate // 4`` purchases/s for ``seconds``; print the counts.
    One transaction per 100 ms tick; after a slow one the next catches up (the offered load
    stays what was asked unless the server cannot take it, which the output then shows)."""
    from workbench.drivers import Transaction
    from workbench.partitioning import KeyPartitioner
    from workbench.serde import get_serde

    n = names(driver, sfx)
    rng = random.Random(11)
    part = KeyPartitioner(get_serde("json").serialize)
    d = wb.connect(url)
    rates = {n["clicks"]: rate, n["buys"]: max(1, rate // 4)}
    sent = dict.fromkeys(rates, 0)
    pages = ["home", "search", "item", "cart", "help"]
    start = time.monotonic()
    tick = 0
    while True:
        tick += 1
        due = start + tick * TICK_S
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        ts = int(time.time() * 1000)
        outputs: dict[tuple[str, int], list[Any]] = {}
        for topic, r in rates.items():
            upto = int(elapsed * r)
            for _ in range(sent[topic], upto):
                user = rng.randrange(users)
                value = ({"user": user, "ts": ts, "page": rng.choice(pages)}
                         if topic == n["clicks"] else
                         {"user": user, "ts": ts, "amount": round(rng.uniform(1, 200), 2)})
                outputs.setdefault((topic, part.partition(user, PARTITIONS)), []).append(
                    (user, value, ts, 0, None))
            sent[topic] = max(sent[topic], upto)
        if outputs:
            d.commit(Transaction(f"{n['app']}-producer", outputs))
    d.close()
    print("SENT " + json.dumps({"offered": sum(sent.values()), **sent,
                                "seconds": round(time.monotonic() - start, 1)}), flush=True)


# ---------------------------------------------------------------- servers and clean-up
def server_url(driver: str, arg: str | None) -> str:
    if arg:
        return arg
    env = os.environ.get(f"WORKBENCH_{driver.upper()}_URL")
    if env:
        return env
    from workbench.devservices import up

    return str(up((driver,))[driver].url)


def _with_schema(url: str, schema: str) -> str:
    return url + ("&" if "?" in url else "?") + f"schema={schema}"


def clean_up(driver: str, url: str, sfx: str) -> None:
    """Drop what the run made: the schema, or every Kafka topic whose name has the suffix."""
    if driver == "postgres":
        from workbench.drivers.postgres import PostgresDriver

        d = PostgresDriver(url)
        d.drop_schema()
        d.close()
        return
    from urllib.parse import urlsplit

    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": urlsplit(url).netloc})
    topics = [t for t in admin.list_topics(timeout=30).topics if sfx in t]
    if topics:
        for f in admin.delete_topics(topics, operation_timeout=30).values():
            try:
                f.result()
            except Exception as exc:  # a leftover topic is not worth failing the numbers for
                print(f"  (could not delete a topic: {exc})", file=sys.stderr)


# ---------------------------------------------------------------- one driver
HEADER = (f"{'t s':>6} {'rss MB':>7} {'state':>8} {'rec/s':>6} {'lag':>7} | "
          f"{'commit p50/p99 ms':>17} | {'latency p50/p99 ms':>18} | {'e2e p99':>7} | load")


def _row(s: dict[str, Any]) -> str:
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.0f}"

    return (f"{s['t']:>6.0f} {s['rss_mb']:>7.1f} {s['state']:>8,} {s['rate']:>6,} "
            f"{s['lag']:>7,} | {f(s['commit_p50_ms']):>8}/{f(s['commit_p99_ms']):<8} | "
            f"{f(s['latency_p50_ms']):>9}/{f(s['latency_p99_ms']):<8} | "
            f"{f(s['e2e_p99_ms']):>7} | {s['load']}")


def soak(driver: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    sfx = uuid.uuid4().hex[:8]
    if driver == "postgres":
        url = _with_schema(url, f"soak_{sfx}")
    seconds = args.minutes * 60
    me = [sys.executable, str(Path(__file__).resolve())]
    proc = subprocess.Popen([*me, "_process", url, driver, sfx, args.commit_interval,
                             str(args.sample)], stdout=subprocess.PIPE, text=True)
    samples: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"{driver}: the processor did not start ({line!r})")
        load = subprocess.Popen([*me, "_produce", url, driver, sfx, str(args.rate),
                                 str(args.users), str(seconds)],
                                stdout=subprocess.PIPE, text=True)
        print(f"\n{driver}: {args.rate:,} clicks/s + {max(1, args.rate // 4):,} purchases/s, "
              f"{args.users:,} users, {args.minutes:g} min, commit interval "
              f"{args.commit_interval}, a sample every {args.sample:g} s\n{HEADER}", flush=True)
        drained = threading.Event()

        def follow() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                if raw.startswith("SAMPLE "):
                    s = json.loads(raw[7:])
                    s["load"] = round(os.getloadavg()[0], 1)
                    samples.append(s)
                    print(_row(s), flush=True)
                    if load.poll() is not None and s["lag"] == 0:
                        drained.set()
                elif raw.startswith("DONE "):
                    summary.update(json.loads(raw[5:]))

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        if args.stall:
            threading.Thread(target=_stall, args=(proc.pid, args.stall), daemon=True).start()
        sent_out = load.communicate()[0]
        sent = json.loads(next(x for x in sent_out.splitlines() if x.startswith("SENT "))[5:])
        # the producer is done: let the processor drain (lag 0 in a sample), at most 5 minutes
        drained.wait(timeout=300)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    reader.join(timeout=30)
    clean_up(driver, url, sfx)
    return {"driver": driver, "rate": args.rate, "users": args.users,
            "minutes": args.minutes, "commit_interval": args.commit_interval,
            "stall": args.stall, "samples": samples, **sent, **summary}


def parse_stall(text: str) -> tuple[float, float]:
    """``SECONDS@MINUTE`` → (seconds, minute)."""
    try:
        seconds, minute = text.split("@")
        return float(seconds), float(minute)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--stall {text!r}: use SECONDS@MINUTE, e.g. 60@5"
                                         ) from None


def _stall(pid: int, stall: tuple[float, float]) -> None:
    """Stop the processor at minute ``stall[1]`` for ``stall[0]`` seconds (SIGSTOP/SIGCONT):
    the load keeps coming, and the processor must catch up."""
    seconds, minute = stall
    time.sleep(minute * 60)
    try:
        os.kill(pid, signal.SIGSTOP)
        print(f"  -- processor stopped (SIGSTOP) for {seconds:g} s", flush=True)
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
        print("  -- processor continued (SIGCONT)", flush=True)


def caught_up(r: dict[str, Any]) -> dict[str, Any]:
    """With a stall: the largest lag before it, the largest after, and the seconds from the
    end of the stall to the first sample whose lag is back under the largest before it."""
    if not r.get("stall"):
        return {}
    seconds, minute = r["stall"]
    start, end = minute * 60, minute * 60 + seconds
    before = [s["lag"] for s in r["samples"] if 30 <= s["t"] < start] or [0]
    after = [s for s in r["samples"] if s["t"] > end]
    limit = max(before)
    back = next((s["t"] for s in after if s["lag"] <= limit), None)
    return {"stall_s": seconds, "lag_max_before": limit,
            "lag_max_after": max((s["lag"] for s in after), default=None),
            "caught_up_after_s": None if back is None else round(back - end, 1)}


def _slope_per_10min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) pairs, per 10 minutes."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def summarize(r: dict[str, Any], warmup: float) -> dict[str, Any]:
    """After warm-up: RSS and state first/last/max and their slope, latency by halves."""
    loaded = [s for s in r["samples"] if s["t"] <= r["minutes"] * 60 + 1]
    steady = [s for s in loaded if s["t"] >= warmup * r["minutes"] * 60] or loaded
    half = len(steady) // 2
    first, second = steady[:half] or steady, steady[half:] or steady

    def med(rows: list[dict[str, Any]], key: str) -> float | None:
        vals = [s[key] for s in rows if s[key] is not None]
        return round(statistics.median(vals), 1) if vals else None

    return {
        "driver": r["driver"], "samples": len(r["samples"]),
        "rss_mb_first": steady[0]["rss_mb"] if steady else None,
        "rss_mb_last": steady[-1]["rss_mb"] if steady else None,
        "rss_mb_max": max((s["rss_mb"] for s in steady), default=None),
        "rss_mb_per_10min": round(_slope_per_10min([(s["t"], s["rss_mb"]) for s in steady]), 1),
        "state_median": med(steady, "state"),
        "state_per_10min": round(_slope_per_10min([(s["t"], s["state"]) for s in steady])),
        "rate_median": med(steady, "rate"), "lag_max": max((s["lag"] for s in steady),
                                                            default=None),
        "commit_p99_ms_halves": (med(first, "commit_p99_ms"), med(second, "commit_p99_ms")),
        "latency_p99_ms_halves": (med(first, "latency_p99_ms"), med(second, "latency_p99_ms")),
        "e2e_p99_ms_halves": (med(first, "e2e_p99_ms"), med(second, "e2e_p99_ms")),
        "offered": r.get("offered"), "processed": r.get("processed"),
        "missing": (r["offered"] - r["processed"]) if "processed" in r else None,
        **caught_up(r),
    }


def plot(results: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("rss_mb", "RSS (MB)"), ("state", "state entries"),
              ("commit_p99_ms", "commit p99 (ms)"), ("latency_p99_ms", "commit latency p99 (ms)"),
              ("lag", "lag (records)"), ("rate", "processed (rec/s)")]
    fig, axes = plt.subplots(3, 2, figsize=(11, 9), sharex=True)
    colours = {r["driver"]: f"C{i}" for i, r in enumerate(results)}
    for ax, (key, label) in zip(axes.flat, panels):
        for r in results:
            pts = [(s["t"] / 60, s[key]) for s in r["samples"] if s[key] is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=r["driver"],
                    color=colours[r["driver"]])
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        if key in ("commit_p99_ms", "latency_p99_ms"):  # latency follows the machine's load
            twin = ax.twinx()
            for r in results:
                pts = [(s["t"] / 60, s["load"]) for s in r["samples"] if "load" in s]
                twin.plot([p[0] for p in pts], [p[1] for p in pts], linestyle=":",
                          color=colours[r["driver"]], linewidth=1.2,
                          label=f"load average ({r['driver']} run)")
            twin.set_ylabel("load average (2 cores), dotted", fontsize=8, color="grey")
            twin.tick_params(labelsize=8, colors="grey")
            twin.set_ylim(bottom=0)
            if key == "commit_p99_ms":
                twin.legend(loc="upper left", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("minutes")
    axes.flat[0].legend()
    r0 = results[0]
    stall = (f", processor stopped {r0['stall'][0]:g} s at minute {r0['stall'][1]:g}"
             if r0.get("stall") else "")
    fig.suptitle(f"soak: {r0['rate']:,} clicks/s + {max(1, r0['rate'] // 4):,} purchases/s, "
                 f"{r0['users']:,} users, {r0['minutes']:g} min per driver{stall}",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    from PIL import Image  # matplotlib's own dependency: a 64-colour PNG is a third the size

    Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_process":
        a = sys.argv[2:]
        processor(a[0], a[1], a[2], a[3], float(a[4]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_produce":
        a = sys.argv[2:]
        producer(a[0], a[1], a[2], int(a[3]), int(a[4]), float(a[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drivers", default="kafka,postgres")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=int, default=1000, help="clicks/s (purchases: a quarter)")
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--commit-interval", default="100ms")
    ap.add_argument("--warmup", type=float, default=0.2,
                    help="share of the run left out of the summary")
    ap.add_argument("--short", action="store_true", help="3 minutes per driver, samples 5 s")
    ap.add_argument("--stall", type=parse_stall, metavar="SECONDS@MINUTE",
                    help="stop the processor (SIGSTOP) at MINUTE for SECONDS, then continue")
    ap.add_argument("--kafka-url")
    ap.add_argument("--postgres-url")
    ap.add_argument("--replot", nargs="+", metavar="JSON",
                    help="no run: summarize and plot the results saved by --json")
    ap.add_argument("--json", help="write every sample and the summary here")
    ap.add_argument("--plot", help="write a PNG of the samples here (matplotlib)")
    args = ap.parse_args()
    if args.short:
        args.minutes, args.sample = 3.0, 5.0
    results = []
    if args.replot:
        for path in args.replot:
            results.extend(json.loads(Path(path).read_text())["results"])
    for driver in [] if args.replot else args.drivers.split(","):
        url = server_url(driver, getattr(args, f"{driver}_url"))
        results.append(soak(driver, url, args))
    summaries = [summarize(r, args.warmup) for r in results]
    print("\nafter warm-up (the first "
          f"{args.warmup:.0%}); halves = medians of the samples' p99 in each half")
    for s in summaries:
        print(json.dumps(s))
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "summary": summaries},
                                              indent=1))
    if args.plot:
        plot(results, args.plot)
        print(f"plot: {args.plot}")
    return 1 if any(s["missing"] for s in summaries) else 0


if __name__ == "__main__":
    raise SystemExit(main())
