"""PostgreSQL-driver benchmark: the workload of workload.py on one server.

(a) reference: the same results in SQL on a plain table of the events (``seq`` = input order):
    P1 as ``CREATE TABLE AS SELECT`` (filter, amount_cents); P2 as a window function (stream
    time = running maximum of ``ts`` in input order, as workbench's task sees it) marking the
    late records, then ``GROUP BY`` user and 60 s window into a table, the late records into
    another;
(b) workbench P1 and P2 (the lambda pipelines of pipelines.py) reading the events' log table
    and writing the sink log tables (P2's table sink is also upserted) exactly-once.

CPU (the CPU ratio column): the workbench process's CPU time plus that of its server processes
(found by ``application_name``), against the SQL session's server process plus its client; read
from /proc, so with a server on this machine only. On a shared machine it moves much less than
wall-clock time.

Loading is excluded on both sides and reported on its own: the events are appended to the log
table through the driver (b) and COPYed into the plain table (a) once, before anything is
timed. Each repeat of each side runs in a fresh process with fresh outputs (peak RSS is its
own); repeats alternate between the sides; medians are reported. Results are read back once and
checked: SQL against workbench, workbench against the plain-Python loop, late counts included;
a difference exits 1.

    python benchmarks/postgres_driver.py [--events 1000000] [--repeat 3] [--url postgresql://...]
                                         [--only P1,P2,latency] [--commit-interval 100ms]
                                         [--rate 5000] [--latency-seconds 20] [--json PATH]

Then the live latency of P1 at ``--rate`` records/s: insert time to committed visibility
through LISTEN/NOTIFY tailing (``postgres_latency.py``, which also sweeps load and keys).

Server: --url, else WORKBENCH_POSTGRES_URL, else ``workbench.devservices.up(("postgres",))``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import pipelines  # noqa: E402
import references  # noqa: E402
import results  # noqa: E402
import workload  # noqa: E402

from workbench._urls import redact_url  # noqa: E402

SQL_LABEL = {"P1": "SQL CREATE TABLE AS SELECT",
             "P2": "SQL window fn + GROUP BY"}


def server_url(arg: str | None) -> str:
    if arg:
        return arg
    env = os.environ.get("WORKBENCH_POSTGRES_URL")
    if env:
        return env
    from workbench.devservices import up

    return str(up(("postgres",), install=True)["postgres"].url)


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def _connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url.split("?")[0], autocommit=True)


def backend_cpu_s(pids: list[int]) -> float | None:
    """CPU seconds (user + system) the server processes ``pids`` used so far, read from
    /proc: a server on this machine only (None otherwise)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    except (OSError, IndexError, ValueError):
        return None
    return total


def app_backends(url: str, application_name: str) -> list[int]:
    """The server processes of the connections named ``application_name``."""
    with _connect(url) as c:
        return [int(r[0]) for r in c.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            (application_name,)).fetchall()]


# ---------------------------------------------------------------- loading (not timed)
def load(url: str, schema: str, events: list[dict[str, Any]]) -> dict[str, float]:
    """Create the schema; append the events through the driver and COPY them into
    ``<schema>.events_ref``; seconds of each."""
    from psycopg import sql

    import workbench as wb
    from workbench.run import append_inputs

    with _connect(url) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    d = wb.connect(with_schema(url, schema))
    t0 = time.perf_counter()
    append_inputs(pipelines.build("P1").pipeline, d, {"events": events})
    wb_s = time.perf_counter() - t0
    d.close()
    t = sql.Identifier(schema, "events_ref")
    with _connect(url) as c:
        t0 = time.perf_counter()
        c.execute(sql.SQL("CREATE TABLE {} (seq bigint, user_id bigint, ts bigint, "
                          "amount float8, page text)").format(t))
        with c.cursor() as cur, cur.copy(sql.SQL(
                "COPY {} (seq, user_id, ts, amount, page) FROM STDIN").format(t)) as cp:
            for i, e in enumerate(events):
                cp.write_row((i, e["user_id"], e["ts"], e["amount"], e["page"]))
        c.execute(sql.SQL("ANALYZE {}").format(t))
        ref_s = time.perf_counter() - t0
    return {"wb_load_s": wb_s, "ref_load_s": ref_s}


# ---------------------------------------------------------------- (a) the SQL reference
def sql_case(url: str, schema: str, case: str, rep: int, result: str | None) -> dict[str, Any]:
    from psycopg import sql

    ev = sql.Identifier(schema, "events_ref")
    out = sql.Identifier(schema, f"sql_{case.lower()}_{rep}")
    late = sql.Identifier(schema, f"sql_{case.lower()}_late_{rep}")
    marked = sql.Identifier(f"marked_{rep}")
    if case == "P1":
        stmts = [sql.SQL("CREATE TABLE {} AS SELECT seq, user_id, ts, amount, page, "
                         "round(amount * 100)::bigint AS amount_cents FROM {} "
                         "WHERE amount > 0").format(out, ev)]
    else:
        stmts = [
            sql.SQL("CREATE TEMP TABLE {} AS SELECT user_id, ts, amount, "
                    "ts - ts % {w} AS window_start, "
                    "ts - ts % {w} + {w} <= max(ts) OVER (ORDER BY seq ROWS UNBOUNDED "
                    "PRECEDING) - {g} AS late FROM {} WHERE amount > 0").format(
                marked, ev, w=sql.Literal(workload.WINDOW), g=sql.Literal(workload.GRACE)),
            sql.SQL("CREATE TABLE {} AS SELECT user_id, window_start, sum(amount) AS total, "
                    "count(*) AS n FROM {} WHERE NOT late GROUP BY 1, 2").format(out, marked),
            sql.SQL("CREATE TABLE {} AS SELECT user_id, ts, amount FROM {} WHERE late"
                    ).format(late, marked),
        ]
    with _connect(url) as c:
        pid = c.info.backend_pid
        server0 = backend_cpu_s([pid])
        t0 = time.perf_counter()
        c0 = time.process_time()
        for s in stmts:
            c.execute(s)
        seconds = time.perf_counter() - t0
        client = time.process_time() - c0
        server1 = backend_cpu_s([pid])
        rss = harness.peak_rss_mb()
        cpu = None if server0 is None or server1 is None else client + server1 - server0
        if result:  # read back after measuring: the check's memory is not the run's
            import pandas as pd

            cur = c.execute(sql.SQL("SELECT * FROM {}").format(out))
            frame = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
            if case == "P1":
                canon = results.from_pandas("P1", frame, None)
            else:
                n_late = c.execute(sql.SQL("SELECT count(*) FROM {}").format(late)).fetchone()
                canon = results.from_pandas("P2", frame.set_index(["user_id", "window_start"]),
                                            int(n_late[0]))
            canon.save(result)
    return {"seconds": seconds, "rss_mb": rss, "cpu_s": cpu}


# ---------------------------------------------------------------- (b) workbench
def wb_case(url: str, schema: str, case: str, rep: int, commit_interval: str,
            result: str | None) -> dict[str, Any]:
    built = pipelines.build(case, sfx=f"-r{rep}")
    name = f"wb-bench-{uuid.uuid4().hex[:8]}"  # to find the run's server processes
    t0 = time.perf_counter()
    c0 = time.process_time()
    run = built.pipeline.run(f"{with_schema(url, schema)}&application_name={name}",
                             commit_interval=commit_interval, progress=False)
    seconds = time.perf_counter() - t0
    client = time.process_time() - c0
    server = backend_cpu_s(app_backends(url, name))  # its connections are still open
    rss = harness.peak_rss_mb()
    stats = run.stats
    commit_ms = sorted(stats.commit_ms) or [0.0]
    if result:  # read back after measuring: the check's memory is not the run's
        late = stats.records_out.get(built.late, 0) if built.late else None
        results.from_frame(case, run.frame(built.sink), late).save(result)
    run.close()
    return {"seconds": seconds, "rss_mb": rss, "commits": stats.commits,
            "cpu_s": None if server is None else client + server,
            "client_cpu_s": client, "server_cpu_s": server,
            "commit_p50_ms": statistics.median(commit_ms),
            "commit_p99_ms": commit_ms[min(len(commit_ms) - 1, int(len(commit_ms) * 0.99))]}


def child(args: argparse.Namespace) -> dict[str, Any]:
    role, case = args.child
    with harness.gc_state(args.gc):
        if role == "sql":
            out = sql_case(args.url, args.schema, case, args.rep, args.result)
        else:
            out = wb_case(args.url, args.schema, case, args.rep, args.commit_interval,
                          args.result)
    return out


# ---------------------------------------------------------------- the parent
def parent(args: argparse.Namespace, url: str) -> list[harness.Row]:
    from psycopg import sql

    n = args.events
    cases = [c for c in args.only.split(",") if c != "latency"]
    if not cases:
        return [latency_row(url, args)] if "latency" in args.only.split(",") else []
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-pg-"))
    events = workload.events(n)
    want = {"P1": results.from_loop("P1", *references.loop_p1(events)),
            "P2": results.from_loop("P2", *references.loop_p2(events))}
    try:
        loads = load(url, schema, events)
        del events
        harness.progress(f"postgresql: loaded {n:,} events: driver {loads['wb_load_s']:.1f} s,"
                         f" COPY {loads['ref_load_s']:.1f} s")
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        got: dict[tuple[str, str], results.Canonical] = {}
        for rep in range(args.repeat):
            for case in cases:
                for role in ("sql", "wb"):
                    res = tmp / f"{role}-{case}.pickle"
                    out = harness.run_child(Path(__file__), [
                        "--child", role, case, "--url", url, "--schema", schema,
                        "--rep", str(rep), "--gc", args.gc,
                        "--commit-interval", args.commit_interval]
                        + (["--result", str(res)] if rep == 0 else []))
                    runs.setdefault((role, case), []).append(out)
                    harness.progress(f"postgresql {case} {role} run {rep + 1}: "
                                     f"{out['seconds']:.2f} s, peak RSS {out['rss_mb']:.0f} MB")
                    if rep == 0:
                        got[(role, case)] = results.Canonical.load(res)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        with _connect(url) as c:
            c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))
    rows = []
    for case in cases:
        w, r = runs[("wb", case)], runs[("sql", case)]
        wc, rc = got[("wb", case)], got[("sql", case)]
        diffs = (results.differences(wc, rc, "workbench", "SQL")
                 + results.differences(wc, want[case], "workbench", "plain loop"))
        note = (f"load excluded: driver {loads['wb_load_s']:.1f} s, COPY "
                f"{loads['ref_load_s']:.1f} s; commits {w[0]['commits']} p99 "
                f"{w[0]['commit_p99_ms']:.0f} ms")
        if wc.late is not None:
            note += f"; late {wc.late:,}"
        wb_cpu, ref_cpu = _median_of(w, "cpu_s"), _median_of(r, "cpu_s")
        if wb_cpu is not None:
            note += (f"; CPU client {_median_of(w, 'client_cpu_s'):.1f} s + server "
                     f"{_median_of(w, 'server_cpu_s'):.1f} s")
        rows.append(harness.Row(
            "postgresql", case, "lambda, until end", SQL_LABEL[case], n,
            wb_s=statistics.median(x["seconds"] for x in w),
            ref_s=statistics.median(x["seconds"] for x in r),
            wb_cpu_s=wb_cpu, ref_cpu_s=ref_cpu,
            wb_rss_mb=max(x["rss_mb"] for x in w), ref_rss_mb=max(x["rss_mb"] for x in r),
            wb_times=[x["seconds"] for x in w], ref_times=[x["seconds"] for x in r],
            matched=not diffs, diffs=diffs, note=note, extra=dict(loads)))
    if "latency" in args.only.split(","):
        rows.append(latency_row(url, args))
    return rows


def _median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    got = [x[key] for x in runs if x.get(key) is not None]
    return statistics.median(got) if got else None


def latency_row(url: str, args: argparse.Namespace) -> harness.Row:
    """P1 unbounded at ``--rate`` rec/s (10,000 keys): insert time to committed visibility
    through LISTEN/NOTIFY tailing (``postgres_latency.py`` has the sweeps)."""
    import postgres_latency

    r = postgres_latency.case(url, "P1", args.rate, 10_000, args.latency_seconds,
                              args.commit_interval, "")
    return harness.Row(
        "postgresql", "latency", "P1, unbounded", "target: p99 <= 500 ms", 0,
        wb_rss_mb=r["rss_mb"],
        note=(f"at {args.rate:,} rec/s: p50 {r['p50_ms']:.0f} ms p99 {r['p99_ms']:.0f} ms max "
              f"{r['max_ms']:.0f} ms ({r['results']:,} results of {r['offered']:,} offered); "
              f"{r['commits_per_s']:.1f} commits/s, commit p99 {r['commit_p99_ms']:.0f} ms"),
        extra=r)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.common_args(ap)
    ap.add_argument("--url")
    ap.add_argument("--only", default="P1,P2,latency")
    ap.add_argument("--commit-interval", default="100ms")
    ap.add_argument("--rate", type=int, default=5_000, help="offered load of the latency case")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--child", nargs=2, metavar=("ROLE", "CASE"), help=argparse.SUPPRESS)
    ap.add_argument("--schema", help=argparse.SUPPRESS)
    ap.add_argument("--rep", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    url = server_url(args.url)
    if args.child:
        args.url = url
        print(json.dumps(child(args)), flush=True)
        return 0
    meta = harness.conditions(args)
    meta["server"] = redact_url(url)
    rows = parent(args, url)
    return harness.finish(rows, args, meta)


if __name__ == "__main__":
    sys.exit(main())
