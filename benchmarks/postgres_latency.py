"""PostgreSQL live latency: insert time to committed visibility, through LISTEN/NOTIFY tailing.

Three processes per case, on a fresh schema:

* an **inserter** offers ``--rate`` records/s to the 3-partition source topic: every 10 ms one
  transaction appends the records due by then (``driver.commit`` of outputs only, which
  NOTIFYs; after a slow transaction the next one catches up), each value stamped with its
  insert time (``sent``, taken just before that transaction);
* the **processor** runs the pipeline unbounded (``Engine.run_forever``: it waits on LISTEN
  when idle), commit interval ``--commit-interval``;
* the **reader** (this process) LISTENs on the schema's channel and, on each notification,
  reads the sink's new committed rows; latency = time it sees a result − the ``sent`` of the
  input record behind it (for P2, the newest ``sent`` in the window: ``max``).

P1 = filter + map (stateless). P2 = P1 + per-user 60 s tumbling windows (grace 5 s) emitting
every update (``sum``, ``count``, ``max(sent)``). The sweep: offered load 1k/5k/10k rec/s at
10,000 keys, and key cardinality 100 / 10,000 / 100,000 / 1,000,000 at 5k rec/s.

    python benchmarks/postgres_latency.py [--url postgresql://...] [--seconds 20]
        [--pipelines P1,P2] [--rates 1000,5000,10000] [--keys 100,10000,100000,1000000]
        [--commit-interval 100ms] [--profile DIR]

The first 10% of each case's results are warm-up and left out of the percentiles. Numbers, not
pass/fail. Server: ``--url``, else ``WORKBENCH_POSTGRES_URL``, else ``workbench dev up``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import workbench as wb  # noqa: E402

PARTITIONS = 3
TICK_S = 0.01
SOURCE = "events"


def server_url(arg: str | None) -> str:
    if arg:
        return arg
    env = os.environ.get("WORKBENCH_POSTGRES_URL")
    if env:
        return env
    from workbench.devservices import up

    return str(up(("postgres",))["postgres"].url)


def with_schema(url: str, schema: str) -> str:
    return url + ("&" if "?" in url else "?") + f"schema={schema}"


# ---------------------------------------------------------------- pipelines
def build(name: str) -> wb.Pipeline:
    p = wb.Pipeline(f"lat-{name.lower()}")
    s = (p.source(SOURCE, key="user_id", time="ts", partitions=PARTITIONS)
         .filter(lambda e: e["amount"] > 0)
         .map(lambda e: {**e, "amount_cents": round(e["amount"] * 100)}))
    if name == "P1":
        s.to("out")
    else:
        (s.group_by_key().window(wb.Tumbling("60s", grace="5s"))
          .agg(total=("amount", "sum"), n="count", sent=("sent", "max"), name="p2")
          .to("out"))
    return p


# ---------------------------------------------------------------- processes
def time_statements() -> dict[str, list[float]]:
    """Time every statement and COPY this process sends (psycopg patched): ``{sql: [s, n]}``."""
    import contextlib

    import psycopg

    spent: dict[str, list[float]] = {}

    def note(key: str, t0: float) -> None:
        row = spent.setdefault(key[:80], [0.0, 0])
        row[0] += time.perf_counter() - t0
        row[1] += 1

    execute, copy = psycopg.Connection.execute, psycopg.Cursor.copy

    def timed_execute(self: Any, query: Any, *a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return execute(self, query, *a, **k)
        finally:
            note(query if isinstance(query, str) else query.as_string(self), t0)

    @contextlib.contextmanager
    def timed_copy(self: Any, query: Any, *a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        with copy(self, query, *a, **k) as cp:
            yield cp
        note("COPY " + (query if isinstance(query, str) else query.as_string(self.connection)),
             t0)

    psycopg.Connection.execute = timed_execute  # type: ignore[method-assign]
    psycopg.Cursor.copy = timed_copy  # type: ignore[method-assign,assignment]
    return spent


def processor(url: str, name: str, commit_interval: str, profile: str) -> None:
    """Run the pipeline until SIGTERM; print ``ready``, then a JSON line of statistics.
    ``profile``: a cProfile output path, ``statements`` (time the SQL only), or empty."""
    from workbench.run import prepare

    spent = time_statements() if profile else {}
    if profile == "statements":
        profile = ""

    engine = prepare(build(name), url, commit_interval=commit_interval)
    signal.signal(signal.SIGTERM, lambda *_: engine.stop())
    print("ready", flush=True)
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    engine.run_forever()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)
    st = engine.stats
    ms = sorted(st.commit_ms) or [0.0]
    engine.close()
    engine.driver.end_run()
    engine.driver.close()
    print(json.dumps({"commits": st.commits, "records_in": st.records_in,
                      "commit_p50_ms": statistics.median(ms),
                      "commit_p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
                      "commits_per_s": st.commits / wall, "cpu_share": cpu / wall,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "statements": sorted(([k, round(v[0] * 1000), v[1]]
                                            for k, v in spent.items()),
                                           key=lambda r: -r[1])[:12]}),
          flush=True)


def inserter(url: str, rate: int, keys: int, seconds: float, go: Any, sent: Any) -> None:
    """Offer ``rate`` records/s for ``seconds``: one transaction per 10 ms tick."""
    from workbench.drivers import Transaction
    from workbench.drivers.postgres import PostgresDriver
    from workbench.partitioning import KeyPartitioner
    from workbench.serde import get_serde

    rng = random.Random(7)
    part = KeyPartitioner(get_serde("json").serialize)
    n = int(rate * seconds) + rate
    users = [rng.randrange(keys) for _ in range(n)]
    amounts = [round(rng.uniform(-20, 500), 2) for _ in range(n)]
    parts = [part.partition(u, PARTITIONS) for u in users]
    d = PostgresDriver(url)
    go.wait()
    start = time.perf_counter()
    i = tick = 0
    while i < n:
        tick += 1
        due = start + tick * TICK_S
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
        upto = min(n, int(elapsed * rate))  # everything due by now (catches up after a slow
        if upto <= i:                        # transaction instead of falling behind)
            continue
        stamp = time.time()
        ts = int(stamp * 1000)
        outputs: dict[tuple[str, int], list[Any]] = {}
        for j in range(i, upto):
            outputs.setdefault((SOURCE, parts[j]), []).append(
                (users[j], {"user_id": users[j], "ts": ts, "amount": amounts[j],
                            "sent": stamp}, ts, 0, None))
        d.commit(Transaction("inserter", outputs))
        i = upto
    sent.value = i
    d.close()


def read_latencies(url: str, schema: str, until: float, done: Any) -> list[float]:
    """LISTEN on the schema's channel; on each notification read the sink's new rows; return
    the latency (s) of each result. Ends 2 s after the inserter is done and nothing new came."""
    import psycopg
    from psycopg import sql

    from workbench.drivers.postgres.naming import channel, log_table

    server = url.split("?")[0]
    conn = psycopg.connect(server, autocommit=True)
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel(schema))))
    stmt = sql.SQL('SELECT "offset", value::text FROM {}.{} WHERE partition = %s AND '
                   '"offset" >= %s ORDER BY "offset"').format(sql.Identifier(schema),
                                                             sql.Identifier(log_table("out")))
    nxt = [0] * PARTITIONS
    lat: list[float] = []
    last_new = time.time()
    while time.time() < until:
        for _n in conn.notifies(timeout=0.05, stop_after=1):
            pass
        for p in range(PARTITIONS):
            try:
                rows = conn.execute(stmt, (p, nxt[p])).fetchall()
            except psycopg.errors.UndefinedTable:
                break  # the processor did not create its sink yet
            if not rows:
                continue
            now = last_new = time.time()
            nxt[p] = rows[-1][0] + 1
            lat.extend(now - json.loads(v)["sent"] for _o, v in rows)
        if done.is_set() and time.time() - last_new > 2.0:
            break
    conn.close()
    return lat


def pct(values: list[float], q: float) -> float:
    return 1000 * values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def case(url: str, name: str, rate: int, keys: int, seconds: float, commit_interval: str,
         profile: str) -> dict[str, Any]:
    from workbench.drivers.postgres import PostgresDriver

    schema = f"lat_{name.lower()}_{uuid.uuid4().hex[:8]}"
    curl = with_schema(url, schema)
    setup = PostgresDriver(curl)
    setup.create_topic(SOURCE, PARTITIONS)
    proc = subprocess.Popen([sys.executable, __file__, "_process", curl, name, commit_interval,
                             profile], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        spawn = multiprocessing.get_context("spawn")
        go, done = spawn.Event(), spawn.Event()
        sent = spawn.Value("l", 0)
        loader = spawn.Process(target=inserter, args=(curl, rate, keys, seconds, go, sent))
        loader.start()
        time.sleep(2.0)  # the inserter generated its data; the processor assigned its tasks
        load0 = os.getloadavg()[0]
        go.set()
        import threading

        def watch() -> None:
            loader.join()
            done.set()

        threading.Thread(target=watch, daemon=True).start()
        lat = read_latencies(curl, schema, time.time() + seconds + 60, done)
        loader.join()
        load1 = os.getloadavg()[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
        setup.drop_schema()
        setup.close()
    stats = json.loads(out.strip().splitlines()[-1])
    warm = sorted(lat[int(len(lat) * 0.1):]) or sorted(lat)
    return {"pipeline": name, "rate": rate, "keys": keys, "offered": sent.value,
            "results": len(lat), "p50_ms": pct(warm, 0.5), "p99_ms": pct(warm, 0.99),
            "max_ms": 1000 * warm[-1] if warm else float("nan"),
            "load": round((load0 + load1) / 2, 1), **stats}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_process":
        processor(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--pipelines", default="P1,P2")
    ap.add_argument("--rates", default="1000,5000,10000")
    ap.add_argument("--keys", default="100,10000,100000,1000000")
    ap.add_argument("--rate-keys", type=int, default=10_000,
                    help="key cardinality of the load sweep")
    ap.add_argument("--key-rate", type=int, default=5_000, help="offered load of the key sweep")
    ap.add_argument("--commit-interval", default="100ms")
    ap.add_argument("--profile", default="", help="directory for cProfile output per case "
                    "(the processor's statements are timed too, and printed)")
    ap.add_argument("--statements", action="store_true",
                    help="time and print the processor's SQL statements (no cProfile)")
    args = ap.parse_args()
    url = server_url(args.url)
    cases = []
    for name in args.pipelines.split(","):
        for rate in map(int, args.rates.split(",")):
            cases.append((name, rate, args.rate_keys))
        for keys in map(int, args.keys.split(",")):
            if (name, args.key_rate, keys) not in cases:
                cases.append((name, args.key_rate, keys))
    print(f"{'case':>4} {'offered':>8} {'keys':>9} | {'p50':>6} {'p99':>6} {'max':>6} ms | "
          f"{'results':>8} {'commits/s':>9} {'commit p50/p99':>14} {'cpu':>4} {'rss':>5} | load")
    for name, rate, keys in cases:
        prof = "statements" if args.statements else ""
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            prof = str(Path(args.profile) / f"{name}-{rate}-{keys}.prof")
        r = case(url, name, rate, keys, args.seconds, args.commit_interval, prof)
        print(f"{name:>4} {rate:>8,} {keys:>9,} | {r['p50_ms']:>6.0f} {r['p99_ms']:>6.0f} "
              f"{r['max_ms']:>6.0f} ms | {r['results']:>8,} {r['commits_per_s']:>9.1f} "
              f"{r['commit_p50_ms']:>6.1f}/{r['commit_p99_ms']:<7.1f} "
              f"{r['cpu_share']:>4.0%} {r['rss_mb']:>5.0f} | {r['load']}", flush=True)
        for stmt, ms, count in r.get("statements", []):
            print(f"      {ms:>7,} ms {count:>6,}x  {stmt}")
        print("JSON " + json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
