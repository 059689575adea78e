"""Cost of origin tracking (errors after a repartition name the source record): a repartitioning
pipeline with tracking off and on, in one process, runs interleaved, results compared.

    python benchmarks/origins.py [--events 1000000] [--repeat 3] [--driver URL]

The pipeline re-keys the workload's events by page and sends them through a repartition topic
twice over: ``key_by(page).repartition()`` then ``.map(...)`` to a sink (every record crosses the
repartition topic, the worst case for tracking), and ``group_by(page).count()`` (an aggregation
behind a repartition topic, the common case). Inputs are appended before the clock starts; each
timing is one bounded run (``Engine.run_until_end``) of the pipeline, with
``Engine(track_origins=False)`` and ``True``, alternately, so load changes hit both alike.

Printed: median wall and CPU seconds of the process, records per second, the cost per million
records (on - off, CPU) and the load average. Outputs of both runs must be equal, and with
tracking every record of the repartition topic must lead back to its input record (checked on
a sample): a difference exits non-zero.

``--driver``: ``memory://`` (default; origins are columns beside the log), ``git:///path``,
``kafka://HOST:PORT`` or ``postgresql://...`` (one header per repartitioned record).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload

import workbench as wb
from workbench.drivers import connect
from workbench.run import append_inputs
from workbench.runtime.engine import Engine
from workbench.runtime.origins import SourceResolver

wb.options.progress = False


def pipeline(app: str, source: str) -> wb.Pipeline:
    p = wb.Pipeline(app)
    events = p.source(source, key="user_id", time="ts", partitions=2)
    (events.key_by("page").repartition(name="by-page")
     .map(lambda e: {**e, "cents": round(e["amount"] * 100)}, name="cents").to(f"{app}-out"))
    events.group_by("page").count(name="views").to(f"{app}-views")
    return p


def driver_url(base: str) -> str:
    if base.startswith("git://"):
        return f"git://{tempfile.mkdtemp(prefix='bench-origins-')}/repo"
    if base.startswith("postgresql://"):
        sep = "&" if "?" in base else "?"
        return f"{base}{sep}schema=bench_origins_{uuid.uuid4().hex[:8]}"
    if base.startswith("memory://"):
        return f"memory://bench-origins-{uuid.uuid4().hex[:8]}"
    return base


def timed(base: str, data: list[dict[str, Any]], track: bool) -> tuple[float, float, Any]:
    """(wall s, CPU s, outputs) of one bounded run with tracking ``track``."""
    sfx = uuid.uuid4().hex[:8]
    app = f"bench-origins-{sfx}"
    source = f"events-{sfx}"
    p = pipeline(app, source)
    driver = connect(driver_url(base))
    driver.bind(app)
    append_inputs(p, driver, {source: data})
    engine = Engine(p.plan(), driver, track_origins=track,
                    key_serde=getattr(driver, "key_serde", "json"))
    t0, c0 = time.perf_counter(), time.process_time()
    engine.run_until_end()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    engine.close()
    outputs = {name: sorted((repr(r[0]), repr(r[1])) for r in driver.read_all(f"{app}-{name}"))
               for name in ("out", "views")}
    if track:
        check_sample(driver, engine, f"{app}-by-page-repartition")
    driver.end_run()
    driver.close()
    return elapsed, cpu, outputs


def check_sample(driver: Any, engine: Engine, internal: str) -> None:
    """Every 997th record of the repartition topic leads back to an input record with the same
    value."""
    resolve = SourceResolver(driver, {internal})
    for part in range(driver.partitions(internal) or 0):
        end = driver.end_offset(internal, part)
        for offset in range(0, end, 997):
            rec = driver.read(internal, part, offset, 1)[0]
            src = resolve(internal, part, rec[3])
            if src is None or driver.read(src[0], src[1], src[2], 1)[0][1] != rec[1]:
                sys.exit(f"origin of {internal}[{part}]@{rec[3]} is wrong: {src}")


def attributed(base: str, data: list[dict[str, Any]]) -> tuple[float, float, int]:
    """One run with tracking on and a CPU timer around each piece of origin code: (CPU
    seconds in it, CPU seconds of the run, calls timed). A share of one run, steadier than a
    difference of two runs on a loaded machine; the timer's own cost counts as origin code."""
    import workbench.runtime.engine as engine_mod
    import workbench.runtime.task as task_mod
    from workbench.runtime import origins

    spent = [0.0, 0]

    def timer(fn: Any) -> Any:
        def wrapped(*a: Any, **kw: Any) -> Any:
            t = time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                spent[0] += time.process_time() - t
                spent[1] += 1
        return wrapped

    patches = [(task_mod, "origin_columns"), (engine_mod, "without_origins"),
               (engine_mod, "origin_rows"), (engine_mod, "origin_headers")]
    saved = [(mod, name, getattr(mod, name)) for mod, name in patches]
    take, concat = origins.OriginColumns.take, origins.OriginColumns.concat
    try:
        for mod, name, fn in saved:
            setattr(mod, name, timer(fn))
        origins.OriginColumns.take = timer(take)  # type: ignore[method-assign]
        origins.OriginColumns.concat = staticmethod(timer(concat))  # type: ignore[method-assign]
        _wall, cpu, _out = timed(base, data, True)
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)
        origins.OriginColumns.take = take  # type: ignore[method-assign]
        origins.OriginColumns.concat = staticmethod(concat)  # type: ignore[method-assign]
    return spent[0], cpu, int(spent[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--driver", default="memory://")
    args = ap.parse_args()
    data = workload.events(args.events)
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    reference = None
    for track in (False, True):  # warm-up: imports, first-use costs
        timed(args.driver, data[:20_000], track)
    load_before = os.getloadavg()
    for _ in range(args.repeat):
        for track, into in ((False, off), (True, on)):
            wall, cpu, outputs = timed(args.driver, data, track)
            into.append((wall, cpu))
            if reference is None:
                reference = outputs
            elif outputs != reference:
                sys.exit("outputs with and without origin tracking differ")
    load_after = os.getloadavg()
    w0, w1 = statistics.median(t[0] for t in off), statistics.median(t[0] for t in on)
    c0, c1 = statistics.median(t[1] for t in off), statistics.median(t[1] for t in on)
    per_million = 1e6 / args.events
    print(f"driver {args.driver}, {args.events:,} events (each crosses two repartition topics), "
          f"median of {args.repeat}; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after")
    print(f"  tracking off: {w0:.2f} s wall ({args.events / w0:,.0f} rec/s), CPU {c0:.2f} s")
    print(f"  tracking on : {w1:.2f} s wall ({args.events / w1:,.0f} rec/s), CPU {c1:.2f} s")
    print(f"  cost per million events: wall {(w1 - w0) * per_million:+.2f} s, "
          f"CPU {(c1 - c0) * per_million:+.2f} s; ratio of CPU {c1 / c0:.3f}")
    inside, cpu, calls = attributed(args.driver, data)
    print(f"  one more run with tracking, CPU inside the origin code: {inside:.3f} s of "
          f"{cpu:.2f} s ({100 * inside / cpu:.1f} %, {calls} calls; "
          f"{inside * per_million:.3f} s per million events)")
    print("  runs (wall, CPU): off " + ", ".join(f"({w:.2f}, {c:.2f})" for w, c in off)
          + "; on " + ", ".join(f"({w:.2f}, {c:.2f})" for w, c in on))


if __name__ == "__main__":
    main()
