"""Paired ratios of a lambda pipeline (``run`` + ``run.frame``) and the plain loop calling the
same functions, measured alternately in ONE process.

``memory_driver.py`` times each side in its own child process, minutes apart; on a shared
machine whose speed changes under both, its single ratio is two independent draws (P1 gave
0.17 and 0.82 within ten minutes on the same code). Here each workbench run is paired with a
loop run just before or after it (the order alternates), with the same input, the same GC
state (paused, as the harness does) and the same heap, and each pair gives one CPU ratio
``loop / workbench``: their median is the ratio the machine's moods do not move. The CPU time,
minor page faults and involuntary context switches of every run come from ``getrusage``.
The untimed first run of each side is checked: the workbench frame (late count included) must
equal the loop's result, or the script prints the differences and exits 1.

    python benchmarks/lambda_pairs.py [--case P1] [--events 1000000] [--pairs 8]
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import memory_driver  # noqa: E402
import pipelines  # noqa: E402
import references  # noqa: E402
import results  # noqa: E402
import workload  # noqa: E402

import workbench as wb  # noqa: E402

wb.options.progress = False


def _sides(case: str, n: int) -> dict[str, Callable[[], Any]]:
    events = workload.events(n)
    profiles = workload.profiles()

    workbench = memory_driver._workbench(case, "lambda", events, profiles)  # (frame, late)
    loop = {"P1": lambda: references.loop_p1(events),
            "P2": lambda: references.loop_p2(events),
            "P3": lambda: references.loop_p3(events, profiles),
            "P4": lambda: references.loop_p4(events)}[case]
    return {"workbench": workbench, "loop": loop}


def _measure(fn: Callable[[], Any]) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds, minor page faults and involuntary context switches of one
    run of ``fn`` with the collector paused (its result freed after the timers stop)."""
    gc.collect()
    gc.disable()
    try:
        a = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        result = fn()
        wall = time.perf_counter() - t0
        b = resource.getrusage(resource.RUSAGE_SELF)
        del result
    finally:
        gc.enable()
    cpu = (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)
    return wall, cpu, b.ru_minflt - a.ru_minflt, b.ru_nivcsw - a.ru_nivcsw


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", default="P1", choices=pipelines.CASES)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=8)
    args = ap.parse_args()
    sides = _sides(args.case, args.events)
    gc.collect()
    gc.freeze()  # the input out of the collector's sight, as in harness.py
    try:
        return _pairs(args, sides)
    finally:
        gc.unfreeze()


def _pairs(args: argparse.Namespace, sides: dict[str, Callable[[], Any]]) -> int:
    # warm-up (imports, caches) and the check: both sides' results must be equal
    wb_result, loop_result = sides["workbench"](), sides["loop"]()
    diffs = results.differences(results.from_frame(args.case, *wb_result),
                                results.from_loop(args.case, *loop_result),
                                "workbench", "plain loop")
    del wb_result, loop_result
    if diffs:
        print("RESULTS DIFFER:\n" + "\n".join(diffs))
        return 1
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} | {args.case} | events "
          f"{args.events:,} | load average {' '.join(f'{x:.1f}' for x in _load())}")
    got: dict[str, list[tuple[float, float, int, int]]] = {"workbench": [], "loop": []}
    for i in range(args.pairs):
        order = ["workbench", "loop"] if i % 2 == 0 else ["loop", "workbench"]
        for name in order:
            wall, cpu, faults, switches = _measure(sides[name])
            got[name].append((wall, cpu, faults, switches))
            print(f"{name:9s} wall {wall:6.3f} s  CPU {cpu:6.3f} s  minor faults {faults:7,d}  "
                  f"involuntary switches {switches:5,d}", flush=True)
    for name, runs in got.items():
        walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
        print(f"{name}: wall median {statistics.median(walls):.3f} s ({min(walls):.3f}-"
              f"{max(walls):.3f}), CPU median {statistics.median(cpus):.3f} s ({min(cpus):.3f}-"
              f"{max(cpus):.3f})")
    ratios = [lp[1] / w[1] for lp, w in zip(got["loop"], got["workbench"])]
    print("paired CPU ratios loop/workbench: " + " ".join(f"{r:.2f}" for r in ratios)
          + f" | median {statistics.median(ratios):.2f} | load average after "
          + " ".join(f"{x:.1f}" for x in _load()))
    return 0


def _load() -> tuple[float, float, float]:
    import os

    return os.getloadavg()


if __name__ == "__main__":
    sys.exit(main())
