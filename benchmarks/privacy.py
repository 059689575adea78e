"""Cost of personal fields: P1 with three personal fields against P1 without them, in one
process, on a named (durable, so encrypted) memory driver.

    python benchmarks/privacy.py [--events 200000] [--repeat 3] [--driver kafka://HOST:PORT]

Both pipelines get the same records (the workload's events plus ``email``, ``name`` and ``ip``
per user, 10,000 users); the second declares those three fields personal
(``wb.Personal(subject="user_id", ...)``) with a directory key store. Two timings per case:

* ``run``: the pipeline alone, on inputs already in the log (for the personal case, already
  encrypted, as a producer through workbench writes them): read + decrypt, filter, map,
  encrypt + write.
* ``run, cold``: the same, with the token caches emptied first, so every distinct personal
  value (30,000 here) is decrypted once in the run (as in a fresh process).
* ``append+run``: the inputs appended through the driver first (the personal case encrypts
  them on the way in), then the run.
* ``run, reads name``: ``run`` with a map that also reads a personal field
  (``"greeting": f"Dear {e['name']}"``), so that field is decrypted, and the output sealed.
* ``run, expressions``: ``run`` with P1 written as column expressions
  (``filter(wb.col("amount") > 0).assign(amount_cents=(wb.col("amount") * 100).round())``),
  as the columnar engine runs it fastest.
* ``private memory://`` (memory driver only): ``pipeline.run("memory://", inputs=...)`` as
  ``benchmarks/memory_driver.py`` runs P1, on a private in-process log (values stay tagged
  plaintext there: nothing is encrypted, forgotten subjects' values are erased);
  ``private, expressions``: the same with P1 as column expressions.

The first run of each case on each side is checked: the private side's ``run.frame`` (its
personal fields revealed) must equal the plain side's, or the script exits 1.

The steps of P1 read no personal field, so those stay encrypted through the run
(``workbench/privacy/reads.py``): the ``run`` case measures the check of the columns left
encrypted. A subject unrelated to the data is forgotten first, so the key store has a
tombstone and the forgotten-subject check runs, as it would in production.

``--driver`` runs both sides on another driver (``kafka://...``: fresh topics per run, deleted
after it).

The data keys of the 10,000 subjects are made by an untimed warm-up (one-time cost per
subject), which also fills the token caches that every pipeline on the key store object
shares (``run`` is then the steady state of a job that has seen its subjects). The target
(issue 16) is a ratio of at most 1.5 for P1's run: ``run``, ``run, cold``, ``run,
expressions`` and the two private cases (``append+run`` adds the producer's encryption of
P1's input; ``run, reads name`` is not P1). Medians of --repeat, in wall time and in CPU
time of the process (steadier than wall time on a loaded machine).
"""

from __future__ import annotations

import argparse
import gc
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
from workbench.drivers.memory import MemoryDriver
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


def p1(keys: Any = None, greet: bool = False, suffix: str = "",
       expr: bool = False) -> wb.Pipeline:
    p = wb.Pipeline(f"bench-privacy-p1{suffix}", keys=keys)
    personal = wb.Personal(subject="user_id", fields=["email", "name", "ip"]) if keys else None
    src = p.source(f"events{suffix}", key="user_id", time="ts", personal=personal)
    if expr:  # P1 as column expressions (the columnar engine's way)
        (src.filter(wb.col("amount") > 0)
            .assign(amount_cents=(wb.col("amount") * 100).round()).to(f"p1{suffix}"))
        return p
    s = src.filter(lambda e: e["amount"] > 0)
    if greet:
        s = s.map(lambda e: {**e, "amount_cents": round(e["amount"] * 100),
                             "greeting": f"Dear {e['name']}"})
    else:
        s = s.map(lambda e: {**e, "amount_cents": round(e["amount"] * 100)})
    s.to(f"p1{suffix}")
    return p


DRIVER = "memory"


def timed(keys: Any, data: list[dict[str, Any]], with_append: bool,
          cold: bool = False, greet: bool = False, private: bool = False,
          frame: bool = False, expr: bool = False) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, the sink's frame when ``frame``) of one
    run; ``private``: ``run("memory://", inputs=...)``, the input passed in the run."""
    tag = uuid.uuid4().hex[:8]
    if private or DRIVER == "memory":
        url, suffix = f"memory://bench-privacy-{tag}", ""
    else:
        url, suffix = DRIVER, f"-{tag}"
    pipeline = p1(keys, greet, suffix, expr)
    if private:
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        run = pipeline.run("memory://", inputs={"events": data})
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        got = run.frame("p1") if frame else None
        run.close()
        return elapsed, cpu, got
    drv = connect(url)
    if with_append:
        gc.collect()  # both sides start from the same collector state
        t0, c0 = time.perf_counter(), time.process_time()
        append_inputs(pipeline, drv, {f"events{suffix}": data})
    else:
        append_inputs(pipeline, drv, {f"events{suffix}": data})
        if cold and keys is not None:
            for cache in getattr(keys, "token_caches", ()):
                cache.clear()
        # the same collector state on both sides: the private append made ~100,000 new
        # containers (copies of the records) that the first collection would otherwise
        # walk inside the timed run (the plain append stores the caller's dicts)
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
    run = pipeline.run(drv)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    got = run.frame(f"p1{suffix}") if frame else None
    run.close()
    if DRIVER == "memory":  # the named log is process-wide: free it (a heap that keeps every
        MemoryDriver.forget(url[len("memory://"):])  # run's logs slows later runs' GC)
    else:  # each run's topics hold ~40 MB: deleted at the end (a deletion while a later run
        SUFFIXES.append(suffix)  # is timed would load the broker under it)
    return elapsed, cpu, got


def _differences(plain: Any, private: Any) -> str | None:
    """What differs between the two sides' frames (rows in any order), or ``None``."""
    import pandas as pd

    def canon(f: Any) -> Any:
        f = f.astype(object).where(f.notna(), None)
        return f.sort_values(list(f.columns), key=lambda c: c.astype(str)).reset_index(
            drop=True)

    if list(plain.columns) != list(private.columns) or len(plain) != len(private):
        return (f"columns {list(plain.columns)} / {list(private.columns)}, rows "
                f"{len(plain)} / {len(private)}")
    try:
        pd.testing.assert_frame_equal(canon(plain), canon(private), check_dtype=False)
    except AssertionError as exc:
        return str(exc)
    return None


SUFFIXES: list[str] = []


def _delete_topics(url: str, suffixes: list[str]) -> None:
    """Delete the topics of the runs (``events-TAG``, ``p1-TAG``) on the Kafka at ``url``."""
    from urllib.parse import urlsplit

    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": urlsplit(url).netloc})
    topics = [t for t in admin.list_topics(timeout=30).topics if t.endswith(tuple(suffixes))]
    for f in admin.delete_topics(topics, operation_timeout=30).values() if topics else ():
        try:
            f.result()
        except Exception as exc:  # a leftover topic is not worth failing the numbers for
            print(f"  (could not delete a topic: {exc})", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--driver", default="memory", help="memory, or kafka://HOST:PORT")
    args = ap.parse_args()
    global DRIVER
    DRIVER = args.driver
    data = events(args.events)
    keys = wb.KeyStore(tempfile.mkdtemp(prefix="bench-keys-"), master=os.urandom(32),
                       ttl=3600)
    try:
        t0 = time.perf_counter()
        timed(keys, data[:50_000], True)  # warm-up: makes the subjects' keys
        print(f"warm-up (10,000 subjects' keys made, fsynced): {time.perf_counter() - t0:.1f} s")
        keys.forget("someone-not-in-the-data")  # a tombstone, as any store in use has
        print(f"driver {DRIVER}, {args.events:,} events, load average "
              + " ".join(f"{x:.1f}" for x in os.getloadavg()))
        cases: list[tuple[str, dict[str, bool]]] = [
            ("run", {}), ("run, cold", {"cold": True}), ("append+run", {"with_append": True}),
            ("run, reads name", {"greet": True}), ("run, expressions", {"expr": True})]
        if DRIVER == "memory":
            cases += [("private memory://", {"private": True}),
                      ("private, expressions", {"private": True, "expr": True})]
        for label, case in cases:
            with_append = case.pop("with_append", False)
            cold = case.pop("cold", False)
            base, priv = [], []
            for i in range(args.repeat):  # interleaved, so load changes hit both alike
                base.append(timed(None, data, with_append, frame=i == 0, **case))
                priv.append(timed(keys, data, with_append, cold, frame=i == 0, **case))
                if i == 0:
                    diff = _differences(base[0][2], priv[0][2])
                    if diff is not None:
                        print(f"{label}: RESULTS DIFFER (plain / private): {diff}")
                        sys.exit(1)
                    base[0], priv[0] = (*base[0][:2], None), (*priv[0][:2], None)
            b, q = (statistics.median(t[0] for t in base), statistics.median(t[0] for t in priv))
            bc, qc = (statistics.median(t[1] for t in base), statistics.median(t[1] for t in priv))
            print(f"{label:>20}: P1 {args.events / b:>9,.0f} rec/s ({b:.2f} s, CPU {bc:.2f} s)   "
                  f"P1 + 3 personal fields {args.events / q:>9,.0f} rec/s ({q:.2f} s, CPU "
                  f"{qc:.2f} s)   ratio {q / b:.2f}, of CPU {qc / bc:.2f} (target <= 1.5)",
                  flush=True)
        print("load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    finally:
        if SUFFIXES:
            _delete_topics(DRIVER, SUFFIXES)


if __name__ == "__main__":
    main()
