"""PostgreSQL-driver benchmark: the workload of workload.py on one server, same run.

(a) reference: COPY the events into a plain table, then the P2 aggregation as one SQL
    ``GROUP BY`` (filter amount > 0, per user_id and 60 s tumbling window: sum and count),
    materialized with CREATE TABLE AS;
(b) workbench P1 and P2 (the pipelines of memory_driver.py) reading the events' log table and
    writing the sink log tables (and, for P2, the upserted table) exactly-once.

    python benchmarks/postgres_driver.py [--events 1000000] [--url postgresql://...]
                                         [--only P1,P2] [--commit-interval 100ms]

Reports records/s, the ratio to (a), commit latency p50/p99 and peak RSS. Each case runs in a
fresh process (so peak RSS is its own) on a fresh schema. The events are appended to the log
table before the timed part of (b) (that load is reported on its own).

Server: --url, else WORKBENCH_POSTGRES_URL, else ``workbench.devservices.up(("postgres",))``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workload  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def server_url(arg: str | None) -> str:
    if arg:
        return arg
    env = os.environ.get("WORKBENCH_POSTGRES_URL")
    if env:
        return env
    try:
        from workbench.devservices import up  # type: ignore[attr-defined]
    except ImportError:
        sys.exit("no server: pass --url, set WORKBENCH_POSTGRES_URL or run `workbench dev up`")
    return str(up(("postgres",), install=True)["postgres"].url)


def _register() -> None:
    from workbench.drivers import register_driver
    from workbench.drivers.postgres import open_driver

    register_driver("postgresql", open_driver)  # harmless once drivers/__init__ registers it
    register_driver("postgres", open_driver)


# ---------------------------------------------------------------- (a) the SQL reference
def case_reference(url: str, n: int) -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    events = workload.events(n)
    base = rss_mb()
    schema = f"bench_ref_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        t = sql.Identifier(schema, "events")
        try:
            t0 = time.perf_counter()
            c.execute(sql.SQL("CREATE TABLE {} (user_id int, ts bigint, amount float8, "
                              "page text)").format(t))
            with c.cursor() as cur, cur.copy(sql.SQL(
                    "COPY {} (user_id, ts, amount, page) FROM STDIN").format(t)) as cp:
                for e in events:
                    cp.write_row((e["user_id"], e["ts"], e["amount"], e["page"]))
            t1 = time.perf_counter()
            c.execute(sql.SQL(
                "CREATE TABLE {} AS SELECT user_id, ts - ts % 60000 AS window_start, "
                "sum(amount) AS total, count(*) AS n FROM {} WHERE amount > 0 "
                "GROUP BY 1, 2").format(sql.Identifier(schema, "p2"), t))
            t2 = time.perf_counter()
            rows = c.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(schema, "p2"))).fetchone()[0]
        finally:
            c.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return {"case": "ref", "seconds": t2 - t0, "copy_s": t1 - t0, "group_by_s": t2 - t1,
            "rows": rows, "rss_mb": rss_mb(), "rss_data_mb": base}


# ---------------------------------------------------------------- (b) workbench
def case_workbench(url: str, n: int, name: str, commit_interval: str) -> dict[str, Any]:
    import memory_driver as md

    from workbench.drivers.postgres import PostgresDriver
    from workbench.run import append_inputs

    _register()
    build = {"P1": md.wb_p1, "P2": md.wb_p2}[name]
    events = workload.events(n)
    base = rss_mb()
    schema = f"bench_{name.lower()}_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in url else "?"
    wurl = f"{url}{sep}schema={schema}" + ("&upsert=p2" if name == "P2" else "")
    drv = PostgresDriver(wurl)
    try:
        t0 = time.perf_counter()
        append_inputs(build(), drv, {"events": events})
        load_s = time.perf_counter() - t0
        del events
        t0 = time.perf_counter()
        run = build().run(drv, commit_interval=commit_interval)
        secs = time.perf_counter() - t0
        stats = run.stats
        commit_ms = sorted(stats.commit_ms) or [0.0]
        out_topic = name.lower()
        out = drv.end_offset(out_topic, 0)
        table_rows = len(drv.table_rows("p2")) if name == "P2" else None
    finally:
        drv.drop_schema()
        drv.close()
    return {"case": name, "seconds": secs, "load_s": load_s, "commits": stats.commits,
            "commit_p50_ms": statistics.median(commit_ms),
            "commit_p99_ms": commit_ms[min(len(commit_ms) - 1, int(len(commit_ms) * 0.99))],
            "out": out, "table_rows": table_rows, "rss_mb": rss_mb(), "rss_data_mb": base}


# ---------------------------------------------------------------- driver
def run_case(args: argparse.Namespace, url: str, case: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--case", case, "--url", url, "--events", str(args.events),
           "--commit-interval", args.commit_interval]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--url")
    ap.add_argument("--only", default="P1,P2")
    ap.add_argument("--commit-interval", default="100ms")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    url = server_url(args.url)
    if args.case:
        if args.case == "ref":
            res = case_reference(url, args.events)
        else:
            res = case_workbench(url, args.events, args.case, args.commit_interval)
        print(json.dumps(res))
        return 0
    n = args.events
    print(f"events={n:,} commit_interval={args.commit_interval} "
          f"python={sys.version.split()[0]} server={url.split('@')[-1]}")
    ref = run_case(args, url, "ref")
    print(f"(a) reference: {n / ref['seconds']:>10,.0f} rec/s ({ref['seconds']:.2f} s = COPY "
          f"{ref['copy_s']:.2f} s + GROUP BY {ref['group_by_s']:.2f} s, {ref['rows']:,} groups)"
          f" | peak RSS {ref['rss_mb']:.0f} MB (data {ref['rss_data_mb']:.0f} MB)")
    for case in args.only.split(","):
        r = run_case(args, url, case)
        extra = f", table {r['table_rows']:,} rows" if r["table_rows"] is not None else ""
        print(f"(b) {case}: {n / r['seconds']:>10,.0f} rec/s ({r['seconds']:.2f} s) | ratio to "
              f"(a) {ref['seconds'] / r['seconds']:.2f} | commits {r['commits']} p50 "
              f"{r['commit_p50_ms']:.1f} ms p99 {r['commit_p99_ms']:.1f} ms | out "
              f"{r['out']:,}{extra} | load {r['load_s']:.2f} s | peak RSS {r['rss_mb']:.0f} MB "
              f"(data {r['rss_data_mb']:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
