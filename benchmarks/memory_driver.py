"""Memory-driver benchmarks: workloads P1-P4 (see workload.py) on workbench beside a plain-Python
reference and pandas, in the same process. Prints records/s, ratios and peak RSS.

    python benchmarks/memory_driver.py [--events 1000000] [--repeat 3] [--only P1,P2]

Numbers, not pass/fail: the machine is noisy, so each case runs --repeat times and the median
is reported.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload

import workbench as wb

wb.options.progress = False  # bars would disturb the timings

WINDOW = 60_000
GRACE = 5_000
GAP = 30_000


# ---------------------------------------------------------------- plain-Python references
def ref_p1(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    append = out.append
    for e in events:
        if e["amount"] > 0:
            append({**e, "amount_cents": round(e["amount"] * 100)})
    return out


def _tumbling_close(rows: Any, key_of: Callable[[Any], Any], add: Callable[[Any, Any], Any],
                    init: Callable[[], Any]) -> tuple[dict[Any, Any], int]:
    """Per key 60 s tumbling windows with 5 s grace on one task's stream time: the final value
    of each window, and how many records were too late."""
    windows: dict[tuple[Any, int], Any] = {}
    stream_time = -1
    late = 0
    for e in rows:
        t = e["ts"]
        if t > stream_time:
            stream_time = t
        start = t - t % WINDOW
        if start + WINDOW <= stream_time - GRACE:
            late += 1
            continue
        k = (key_of(e), start)
        acc = windows.get(k)
        windows[k] = add(init() if acc is None else acc, e)
    return windows, late


def ref_p2(events: list[dict[str, Any]]) -> tuple[dict[Any, Any], int]:
    return _tumbling_close(ref_p1(events), lambda e: e["user_id"],
                           lambda acc, e: (acc[0] + e["amount"], acc[1] + 1), lambda: (0.0, 0))


def ref_p3(events: list[dict[str, Any]], profiles: list[dict[str, Any]]
           ) -> tuple[dict[Any, Any], int]:
    by_user = {p["user_id"]: p for p in profiles}
    joined = [{**e, **by_user[e["user_id"]]} for e in ref_p1(events) if e["user_id"] in by_user]
    return _tumbling_close(joined, lambda e: e["country"], lambda acc, e: acc + 1, lambda: 0)


def ref_p4(events: list[dict[str, Any]]) -> dict[Any, list[list[int]]]:
    sessions: dict[Any, list[list[int]]] = {}  # key -> [[start, end, count]] (no grace logic)
    for e in events:
        t = e["ts"]
        ss = sessions.setdefault(e["user_id"], [])
        merged = [t, t, 1]
        keep = []
        for s in ss:
            if s[1] >= t - GAP and s[0] <= t + GAP:
                merged = [min(merged[0], s[0]), max(merged[1], s[1]), merged[2] + s[2]]
            else:
                keep.append(s)
        keep.append(merged)
        sessions[e["user_id"]] = keep
    return sessions


# ---------------------------------------------------------------- pandas references
def pandas_p2(events: list[dict[str, Any]]) -> tuple[Any, int]:
    """P2 in pandas: stream time = running max of the (filtered) timestamps, a record is late
    when its window ended at or before stream time - grace."""
    import pandas as pd

    df = pd.DataFrame(events)
    df = df[df["amount"] > 0]
    start = df["ts"] - df["ts"] % WINDOW
    late = (start + WINDOW) <= (df["ts"].cummax() - GRACE)
    ok = df[~late].assign(start=start[~late])
    out = ok.groupby(["user_id", "start"]).agg(total=("amount", "sum"), n=("amount", "size"))
    return out, int(late.sum())


def pandas_p3(events: list[dict[str, Any]], profiles: list[dict[str, Any]]) -> tuple[Any, int]:
    import pandas as pd

    df = pd.DataFrame(events)
    df = df[df["amount"] > 0].merge(pd.DataFrame(profiles), on="user_id", how="inner",
                                    sort=False)
    start = df["ts"] - df["ts"] % WINDOW
    late = (start + WINDOW) <= (df["ts"].cummax() - GRACE)
    ok = df[~late].assign(start=start[~late])
    return ok.groupby(["country", "start"]).size(), int(late.sum())


def pandas_p4(events: list[dict[str, Any]]) -> Any:
    """Sessions per user: sorted by time, a new session after a gap > 30 s."""
    import pandas as pd

    df = pd.DataFrame(events).sort_values(["user_id", "ts"], kind="stable")
    new = (df["ts"].diff() > GAP) | (df["user_id"] != df["user_id"].shift())
    df = df.assign(session=new.cumsum())
    return df.groupby(["user_id", "session"])["ts"].agg(["min", "max", "size"])


def check_p2(run: Any, events: list[dict[str, Any]]) -> str:
    ref, late = pandas_p2(events)
    got = {(r.key.key, r.key.window_start): (round(r.value["total"], 2), r.value["n"])
           for r in run.records("p2")}
    want = {k: (round(v.total, 2), int(v.n)) for k, v in ref.iterrows()}
    got_late = run.engine.stats.records_out.get("p2-late", None)
    ok = got == want
    return (f"P2 equals pandas: {ok} ({len(got):,} windows; pandas late records {late:,}"
            + (f", workbench late {got_late:,}" if got_late is not None else "") + ")")


def check_p3(run: Any, events: list[dict[str, Any]], profiles: list[dict[str, Any]]) -> str:
    ref, late = pandas_p3(events, profiles)
    got = {(r.key.key, r.key.window_start): r.value for r in run.records("p3")}
    want = {k: int(v) for k, v in ref.items()}
    return f"P3 equals pandas: {got == want} ({len(got):,} windows; pandas late {late:,})"


def check_p4(run: Any, events: list[dict[str, Any]]) -> str:
    ref = pandas_p4(events)
    latest: dict[Any, Any] = {}
    for r in run.records("p4"):
        latest[r.key] = r.value
    got = sorted((k.key, k.window_start, k.window_end, v) for k, v in latest.items()
                 if v is not None)
    want = sorted((u, int(row["min"]), int(row["max"]), int(row["size"]))
                  for (u, _s), row in ref.iterrows())
    return f"P4 equals pandas: {got == want} ({len(got):,} sessions, pandas {len(want):,})"


# ---------------------------------------------------------------- workbench pipelines
def wb_p1() -> wb.Pipeline:
    p = wb.Pipeline("bench-p1")
    (p.source("events", key="user_id", time="ts")
      .filter(lambda e: e["amount"] > 0)
      .map(lambda e: {**e, "amount_cents": round(e["amount"] * 100)})
      .to("p1"))
    return p


def wb_p2() -> wb.Pipeline:
    p = wb.Pipeline("bench-p2")
    (p.source("events", key="user_id", time="ts")
      .filter(lambda e: e["amount"] > 0)
      .map(lambda e: {**e, "amount_cents": round(e["amount"] * 100)})
      .group_by_key()
      .window(wb.Tumbling(WINDOW, grace=GRACE), emit="close")
      .agg(total=("amount", "sum"), n="count", name="p2")
      .to("p2")
      .late.to("p2-late"))
    return p


def wb_p3() -> wb.Pipeline:
    p = wb.Pipeline("bench-p3")
    users = p.table("profiles", key="user_id", time=lambda _v: 0)  # profiles exist from the start
    (p.source("events", key="user_id", time="ts")
      .filter(lambda e: e["amount"] > 0)
      .map(lambda e: {**e, "amount_cents": round(e["amount"] * 100)})
      .join(users)
      .group_by("country")
      .window(wb.Tumbling(WINDOW, grace=GRACE), emit="close")
      .count(name="p3")
      .to("p3"))
    return p


def wb_p4() -> wb.Pipeline:
    p = wb.Pipeline("bench-p4")
    (p.source("events", key="user_id", time="ts")
      .group_by_key()
      .window(wb.Session(GAP, grace=GRACE))  # grace covers the workload's <= 5 s lateness
      .count(name="p4")
      .to("p4"))
    return p


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds of ``repeat`` runs, and a summary of the last result (results are not
    kept alive between runs, so peak RSS reflects one run at a time)."""
    times, summary = [], None
    for _ in range(repeat):
        summary = None
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        summary = getattr(result, "stats", None)
        del result
    return statistics.median(times), summary


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="P1,P2,P3,P4")
    args = ap.parse_args()
    n = args.events
    events = workload.events(n)
    profiles = workload.profiles()
    print(f"events={n:,} repeat={args.repeat} python={sys.version.split()[0]} "
          f"(medians; RSS after generating data: {rss_mb():.0f} MB)")
    only = set(args.only.split(","))
    cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = []
    if "P1" in only:
        cases.append(("P1", lambda: ref_p1(events),
                      lambda: wb_p1().run("memory://", inputs={"events": events})))
    if "P2" in only:
        cases.append(("P2", lambda: ref_p2(events),
                      lambda: wb_p2().run("memory://", inputs={"events": events})))
    if "P3" in only:
        cases.append(("P3", lambda: ref_p3(events, profiles),
                      lambda: wb_p3().run("memory://",
                                          inputs={"profiles": profiles, "events": events})))
    if "P4" in only:
        cases.append(("P4", lambda: ref_p4(events),
                      lambda: wb_p4().run("memory://", inputs={"events": events})))
    checks = {
        "P2": lambda r: check_p2(r, events),
        "P3": lambda r: check_p3(r, events, profiles),
        "P4": lambda r: check_p4(r, events),
    }
    for name, ref, run in cases:
        if name in checks:
            gc.collect()
            print("  " + checks[name](run()))
        ref_s, _ = timed(ref, args.repeat)
        wb_s, result = timed(run, args.repeat)
        print(f"{name}: workbench {n / wb_s:>10,.0f} rec/s ({wb_s:.2f} s) | plain Python "
              f"{n / ref_s:>10,.0f} rec/s ({ref_s:.2f} s) | ratio {ref_s / wb_s:.2f} | "
              f"commits {result.commits} | peak RSS so far {rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
