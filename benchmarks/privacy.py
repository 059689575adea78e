"""Cost of personal fields: P1 with three personal fields against P1 without them, in one
process, on a named (durable, so encrypted) memory driver.

    python benchmarks/privacy.py [--events 200000] [--repeat 3]

Both pipelines get the same records (the workload's events plus ``email``, ``name`` and ``ip``
per user, 10,000 users); the second declares those three fields personal
(``wb.Personal(subject="user_id", ...)``) with a directory key store. Two timings per case:

* ``run``: the pipeline alone, on inputs already in the log (for the personal case, already
  encrypted, as a producer through workbench writes them): read + decrypt, filter, map,
  encrypt + write.
* ``append+run``: the inputs appended through the driver first (the personal case encrypts
  them on the way in), then the run.

The data keys of the 10,000 subjects are made by an untimed warm-up (one-time cost per
subject). The target (issue 16) is a ratio of at most 1.5 for ``run``. Medians of --repeat.
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

wb.options.progress = False


def events(n: int) -> list[dict[str, Any]]:
    out = workload.events(n)
    for e in out:
        u = e["user_id"]
        e["email"] = f"user{u}@example.com"
        e["name"] = f"User Number {u}"
        e["ip"] = f"10.{u % 256}.{u // 256}.7"
    return out


def p1(keys: Any = None) -> wb.Pipeline:
    p = wb.Pipeline("bench-privacy-p1", keys=keys)
    personal = wb.Personal(subject="user_id", fields=["email", "name", "ip"]) if keys else None
    (p.source("events", key="user_id", time="ts", personal=personal)
      .filter(lambda e: e["amount"] > 0)
      .map(lambda e: {**e, "amount_cents": round(e["amount"] * 100)})
      .to("p1"))
    return p


def timed(keys: Any, data: list[dict[str, Any]], with_append: bool) -> float:
    url = f"memory://bench-privacy-{uuid.uuid4().hex[:8]}"
    pipeline = p1(keys)
    drv = connect(url)
    if with_append:
        t0 = time.perf_counter()
        append_inputs(pipeline, drv, {"events": data})
    else:
        append_inputs(pipeline, drv, {"events": data})
        t0 = time.perf_counter()
    run = pipeline.run(drv)
    elapsed = time.perf_counter() - t0
    assert len(run.driver.read(("p1"), 0, 0, 1)) == 1
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    data = events(args.events)
    keys = wb.KeyStore(tempfile.mkdtemp(prefix="bench-keys-"), master=os.urandom(32),
                       ttl=3600)
    t0 = time.perf_counter()
    timed(keys, data[:50_000], True)  # warm-up: makes the subjects' keys
    print(f"warm-up (10,000 subjects' keys made, fsynced): {time.perf_counter() - t0:.1f} s")
    for with_append in (False, True):
        label = "append+run" if with_append else "run"
        base, priv = [], []
        for _ in range(args.repeat):  # interleaved, so load changes hit both alike
            base.append(timed(None, data, with_append))
            priv.append(timed(keys, data, with_append))
        b, q = statistics.median(base), statistics.median(priv)
        print(f"{label:>11}: P1 {args.events / b:>9,.0f} rec/s ({b:.2f} s)   "
              f"P1 + 3 personal fields {args.events / q:>9,.0f} rec/s ({q:.2f} s)   "
              f"ratio {q / b:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
