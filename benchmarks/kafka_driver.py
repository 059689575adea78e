"""Kafka-driver benchmark on one broker: the workload (workload.py) on a 3-partition topic,
processed exactly-once by

  (a) a raw confluent-kafka transactional copy loop (consume, produce, send offsets, commit
      every 100 ms): the reference;
  (b) workbench P1 and P2 (the lambda pipelines of pipelines.py) on ``kafka://``, bounded runs
      (``until="end"``).

The events are loaded once through the driver (reported on its own, not in either side's
time). Each repeat of each side runs in a fresh process with fresh outputs and consumer group
(peak RSS is that process's); the repeats of the sides alternate, and medians are reported.
Every side's output is read back once and checked: the raw copy must equal its input, P1 and
P2 must equal the plain-Python loop on the same events (P2 per partition: stream time is per
task), late counts included. A difference exits 1.

Then the end-to-end latency at 10,000 records/s offered load: a producer stamps each record
with its send time, the processor runs unbounded, a read_committed consumer notes when each
result becomes visible, for the raw loop and for workbench P1. With ``--sweep``, workbench P1's
latency again at 1k, 5k, 10k and 20k rec/s offered (10,000 keys) and with 100, 10,000, 100,000
and 1,000,000 distinct keys (at ``--rate``), each with its commit count (the target: within
20 % of the loaded seconds / the 100 ms interval).

    python benchmarks/kafka_driver.py [--url kafka://127.0.0.1:PORT] [--events 1000000]
        [--repeat 3] [--only raw,P1,P2,latency] [--latency-seconds 20] [--sweep] [--json PATH]

Without ``--url`` the broker comes from ``workbench.devservices.up()``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import statistics
import subprocess
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

import workbench as wb  # noqa: E402

PARTITIONS = 3
COMMIT_S = 0.1
RAW = "raw copy loop (transactional)"


def bootstrap(url: str) -> str:
    return url[len("kafka://"):].split("?")[0]


# ---------------------------------------------------------------- (a) the raw reference loop
def raw_copy(url: str, src: str, dst: str, group: str, expected: int | None,
             ready: bool = False) -> dict[str, Any]:
    """Consume ``src``, produce each record to the same partition of ``dst``; every 100 ms
    send the offsets to the transaction and commit. Stops after ``expected`` records (or on
    SIGTERM when None)."""
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    started = time.perf_counter()
    consumer = Consumer({"bootstrap.servers": bootstrap(url), "group.id": group,
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10})
    producer = Producer({"bootstrap.servers": bootstrap(url), "transactional.id": f"{group}-0",
                         "enable.idempotence": True, "linger.ms": 5,
                         "partitioner": "murmur2_random",
                         "queue.buffering.max.messages": 1_000_000})
    producer.init_transactions(60)
    assigned: list[Any] = []
    consumer.subscribe([src], on_assign=lambda c, parts: assigned.extend(parts))
    while ready and not assigned:
        consumer.poll(0.05)
    if ready:
        print("ready", flush=True)
    producer.begin_transaction()
    positions: dict[int, int] = {}
    count, last = 0, time.monotonic()
    produce, eof = producer.produce, KafkaError._PARTITION_EOF
    while not stop["now"] and (expected is None or count < expected):
        for m in consumer.consume(10_000, 0.02):
            if m.error() is not None:
                if m.error().code() != eof:
                    raise RuntimeError(m.error())
                continue
            while True:
                try:
                    produce(dst, m.value(), m.key(), m.partition(), timestamp=m.timestamp()[1],
                            headers=m.headers())
                    break
                except BufferError:
                    producer.poll(0.05)
            positions[m.partition()] = m.offset() + 1
            count += 1
        if time.monotonic() - last >= COMMIT_S and positions:
            producer.send_offsets_to_transaction(
                [TopicPartition(src, p, o) for p, o in positions.items()],
                consumer.consumer_group_metadata())
            producer.commit_transaction()
            producer.begin_transaction()
            last = time.monotonic()
    producer.send_offsets_to_transaction(
        [TopicPartition(src, p, o) for p, o in positions.items()],
        consumer.consumer_group_metadata())
    producer.commit_transaction()
    consumer.close()
    return {"records": count, "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------- (b) workbench
def p2_live(sfx: str, source: str) -> wb.Pipeline:
    """P2 as issue 18 measures its latency: the same windows emitting on update, each result
    carrying the send time of the newest record it counts (``sent``, max)."""
    from workload import GRACE, WINDOW

    p = wb.Pipeline(f"bench-p2u-{sfx}")
    events = p.source(source, key="user_id", time="ts", partitions=PARTITIONS)
    (events.filter(pipelines.is_paid).map(pipelines.add_cents)
     .group_by_key()
     .window(wb.Tumbling(WINDOW, grace=GRACE), emit="update")
     .agg(total=("amount", "sum"), n="count", sent=("sent", "max"), name="p2u")
     .to(f"p2u-{sfx}", partitions=PARTITIONS))
    return p


def wb_run(url: str, case: str, sfx: str, source: str, forever: bool,
           result: str | None = None) -> dict[str, Any]:
    if case == "P2u":  # the live P2 of the latency rows (unbounded only)
        built = pipelines.Built(p2_live(sfx, source), f"p2u-{sfx}", None, source, None)
    else:
        built = pipelines.build(case, sfx=f"-{sfx}", source=source, partitions=PARTITIONS)
    started = time.perf_counter()
    if not forever:
        run = built.pipeline.run(url, until="end", progress=False)
        out = {"records": run.stats.records_in, "seconds": time.perf_counter() - started,
               "commits": run.stats.commits, "rss_mb": harness.peak_rss_mb()}
        if result:  # read back after measuring: the check's memory is not the run's
            late = run.stats.records_out.get(built.late, 0) if built.late else None
            results.from_frame(case, run.frame(built.sink), late).save(result)
        run.driver.close()
        return out
    from workbench.run import prepare

    engine = prepare(built.pipeline, url)
    signal.signal(signal.SIGTERM, lambda *_: engine.stop())
    engine.start()
    print("ready", flush=True)
    engine.run_forever()
    engine.close()
    engine.driver.close()
    ms = sorted(engine.stats.commit_ms) or [0.0]
    return {"records": engine.stats.records_in, "seconds": time.perf_counter() - started,
            "commits": engine.stats.commits, "commit_ms_p50": ms[len(ms) // 2],
            "commit_ms_max": ms[-1]}


def child(argv: list[str]) -> int:
    """Entry point of the case processes: prints one JSON line with the result.
    ``ROLE URL SFX SOURCE end|forever [EXPECTED] [GC] [RESULT]``"""
    role, url, sfx, source, mode = argv[:5]
    expected = int(argv[5]) if len(argv) > 5 and argv[5] != "-" else None
    gc_mode = argv[6] if len(argv) > 6 else "paused"
    result = argv[7] if len(argv) > 7 and argv[7] != "-" else None
    forever = mode == "forever"
    with harness.gc_state(gc_mode):
        if role == "raw":
            dst = f"raw-out-{sfx}"
            if not forever:
                d = wb.connect(url)
                d.ensure_topic(dst, PARTITIONS)
                d.close()
            out = raw_copy(url, source, dst, f"bench-raw-{sfx}", None if forever else expected,
                           ready=forever)
        else:
            out = wb_run(url, role, sfx, source, forever, result)
    out.setdefault("rss_mb", harness.peak_rss_mb())
    if role == "raw" and result:
        from workbench.frames import records_to_frame

        d = wb.connect(url)
        results.from_frame("copy", records_to_frame(d.read_all(dst)), None).save(result)
        d.close()
    print(json.dumps(out), flush=True)
    return 0


def run_case(args: list[str], timeout: float = 3600) -> dict[str, Any]:
    """Run a case process to the end; its result plus its peak RSS (MB)."""
    proc = subprocess.Popen([sys.executable, __file__, "_child", *args], stdout=subprocess.PIPE,
                            text=True)
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"case {args[0]} failed (status {proc.returncode}):\n{out[-3000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------- latency
def _load(url: str, topic: str, rate: int, seconds: float, go: Any, sent: Any,
          keys: int = 0) -> None:
    """Offer ``rate`` records/s for ``seconds``: each value carries its send time (``keys``:
    that many distinct user ids instead of the workload's 10,000)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap(url), "linger.ms": 1,
                         "partitioner": "murmur2_random", "enable.idempotence": True})
    events = workload.events(int(rate * seconds) + rate)
    if keys:
        for i, e in enumerate(events):
            e["user_id"] = (i * 2_654_435_761) % keys
    records = [(json.dumps({**e, "amount": abs(e["amount"]) or 0.01})[:-1].encode()
                + b', "sent": ', json.dumps(e["user_id"]).encode(), e["ts"])
               for e in events]
    go.wait()
    start = time.perf_counter()
    step = 0.005
    per_step = int(rate * step)
    i = 0
    while time.perf_counter() - start < seconds:
        due = start + (i // per_step) * step
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        now_b = repr(time.time()).encode() + b"}"
        for prefix, key, ts in records[i:i + per_step]:
            while True:
                try:
                    producer.produce(topic, prefix + now_b, key, timestamp=ts)
                    break
                except BufferError:  # offered faster than the broker takes it
                    producer.poll(0.01)
        i += per_step
        producer.poll(0)
    producer.flush(60)
    sent.value = i


def latency(url: str, role: str, sfx: str, rate: int, seconds: float,
            keys: int = 0) -> dict[str, Any]:
    """p50/p99 (ms) of send time → committed visibility of the result, at ``rate`` rec/s."""
    from confluent_kafka import Consumer, KafkaError

    src = f"lat-in-{role}-{sfx}"
    dst = {"raw": f"raw-out-{sfx}", "P2u": f"p2u-{sfx}"}.get(role, f"p1-{sfx}")
    d = wb.connect(url)
    d.ensure_topic(src, PARTITIONS)
    d.ensure_topic(dst, PARTITIONS)
    d.close()
    proc = subprocess.Popen([sys.executable, __file__, "_child", role, url, sfx, src, "forever"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    consumer = Consumer({"bootstrap.servers": bootstrap(url), "group.id": f"lat-{sfx}-{role}",
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 5})
    consumer.subscribe([dst])
    spawn = multiprocessing.get_context("spawn")  # librdkafka's threads do not survive fork
    go = spawn.Event()
    sent = spawn.Value("l", 0)
    loader = spawn.Process(target=_load, args=(url, src, rate, seconds, go, sent, keys))
    loader.start()
    time.sleep(2.0)  # the loader generated its events; the consumer joined
    go.set()
    lat: list[float] = []
    deadline = time.time() + seconds + 30
    last_seen = time.time()
    while time.time() < deadline and (loader.is_alive() or len(lat) < sent.value):
        if not loader.is_alive() and time.time() - last_seen > 5:
            break  # a window's updates are fewer than its records (late ones are dropped)
        for m in consumer.consume(10_000, 0.05):
            last_seen = time.time()
            if m.error() is not None:
                if m.error().code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(m.error())
                continue
            now = time.time()
            lat.append(now - json.loads(m.value())["sent"])
    loader.join()
    proc.send_signal(signal.SIGTERM)
    child_out = json.loads(proc.stdout.read().strip().splitlines()[-1])
    proc.wait()
    consumer.close()
    warm = lat[int(len(lat) * 0.1):] or lat  # the first 10% warm up
    sixth = max(1, len(lat) // 6)  # in arrival order: does latency grow over the run?
    slices = [sorted(lat[i:i + sixth]) for i in range(0, sixth * 6, sixth) if lat[i:i + sixth]]
    warm.sort()
    return {"received": len(lat), "offered": sent.value, "p50_ms": 1000 * warm[len(warm) // 2],
            "p99_ms": 1000 * warm[int(len(warm) * 0.99) - 1] if warm else float("nan"),
            "max_ms": 1000 * warm[-1] if warm else float("nan"),
            "p99_by_sixth_ms": [1000 * x[max(0, int(len(x) * 0.99) - 1)] for x in slices],
            "rss_mb": child_out["rss_mb"], "process": child_out}


# ---------------------------------------------------------------- main
def _expected(events: list[dict[str, Any]], tmp: Path) -> dict[str, Path]:
    """The references' results on the same events, saved for the checks."""
    paths = {"raw": tmp / "want-copy.pickle", "P1": tmp / "want-P1.pickle",
             "P2": tmp / "want-P2.pickle"}
    results.from_rows("copy", events).save(paths["raw"])
    results.from_loop("P1", *references.loop_p1(events)).save(paths["P1"])
    results.from_loop("P2", *references.loop_p2(events, PARTITIONS)).save(paths["P2"])
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.common_args(ap)
    ap.add_argument("--url", default=None)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--only", default="raw,P1,P2,latency")
    ap.add_argument("--sweep", action="store_true",
                    help="P1 latency at 1k-20k rec/s and with 100 to 1,000,000 keys")
    ap.add_argument("--new-keys-seconds", type=float, default=0.0,
                    help="P1 latency at --rate for this long, every record with a new key")
    args = ap.parse_args()
    meta = harness.conditions(args)
    only = args.only.split(",")
    url = args.url
    if url is None:
        from workbench.devservices import up

        url = up(("kafka",))["kafka"].url
    from workbench.run import append_inputs

    sfx = uuid.uuid4().hex[:8]
    n = args.events
    source = f"bench-events-{sfx}"
    events = workload.events(n)
    tmpdir = tempfile.TemporaryDirectory(prefix="wb-bench-kafka-")
    tmp = Path(tmpdir.name)
    want = _expected(events, tmp)
    d = wb.connect(url)
    t0 = time.perf_counter()
    append_inputs(pipelines.build("P1", source=source, partitions=PARTITIONS).pipeline, d,
                  {source: events})
    load_s = time.perf_counter() - t0
    d.close()
    del events
    harness.progress(f"kafka: {n:,} events loaded through the driver in {load_s:.1f} s")
    roles = [r for r in ("raw", "P1", "P2") if r in only]
    runs: dict[str, list[dict[str, Any]]] = {r: [] for r in roles}
    got: dict[str, results.Canonical] = {}
    for rep in range(args.repeat):
        for role in roles:
            rs = f"{sfx}r{rep}"
            res = str(tmp / f"got-{role}.pickle") if rep == 0 else "-"
            out = run_case([role, url, rs, source, "end", str(n), args.gc, res])
            runs[role].append(out)
            harness.progress(f"kafka {role} run {rep + 1}: {out['seconds']:.1f} s, "
                             f"{out['records']:,} records, peak RSS {out['rss_mb']:.0f} MB")
            if rep == 0:
                got[role] = results.Canonical.load(res)
    rows = _rows(args, runs, got, want, load_s)
    if "latency" in only:
        lat = {role: latency(url, role, f"{sfx}l", args.rate, args.latency_seconds)
               for role in ("raw", "P1", "P2u")}
        w, r = lat["P1"], lat["raw"]
        rows.append(harness.Row(
            "kafka", "latency", "P1, unbounded", RAW, 0, wb_rss_mb=w["rss_mb"],
            ref_rss_mb=r["rss_mb"],
            note=(f"at {args.rate:,} rec/s: workbench p50 {w['p50_ms']:.0f} ms p99 "
                  f"{w['p99_ms']:.0f} ms; raw p50 {r['p50_ms']:.0f} ms p99 {r['p99_ms']:.0f} ms"
                  f" ({w['received']:,}/{w['offered']:,} and {r['received']:,}/"
                  f"{r['offered']:,} results)"),
            extra={"workbench": w, "raw": r}))
        w = lat["P2u"]
        rows.append(harness.Row(
            "kafka", "latency", "P2, emit on update", RAW, 0, wb_rss_mb=w["rss_mb"],
            ref_rss_mb=r["rss_mb"],
            note=(f"at {args.rate:,} rec/s: workbench p50 {w['p50_ms']:.0f} ms p99 "
                  f"{w['p99_ms']:.0f} ms (target p99 <= 400 ms); {w['received']:,} window "
                  f"updates for {w['offered']:,} offered"),
            extra={"workbench": w}))
    if args.sweep:
        rows += _sweep(url, sfx, args)
    if args.new_keys_seconds:
        rows.append(_new_keys(url, sfx, args))
    tmpdir.cleanup()
    return harness.finish(rows, args, meta)


def _sweep(url: str, sfx: str, args: argparse.Namespace) -> list[harness.Row]:
    """Workbench P1's latency over offered load and key cardinality (one run each)."""
    points = [(rate, 10_000) for rate in (1_000, 5_000, 10_000, 20_000)]
    points += [(args.rate, keys) for keys in (100, 100_000, 1_000_000)]
    rows = []
    for i, (rate, keys) in enumerate(points):
        w = latency(url, "P1", f"{sfx}s{i}", rate, args.latency_seconds, keys)
        commits = w["process"]["commits"]
        ideal = args.latency_seconds / COMMIT_S
        note = (f"{rate:,} rec/s, {keys:,} keys: p50 {w['p50_ms']:.0f} ms p99 "
                f"{w['p99_ms']:.0f} ms max {w['max_ms']:.0f} ms; {w['received']:,}/"
                f"{w['offered']:,} results; {commits} commits ({commits / ideal:.0%} of "
                f"{ideal:.0f} for {args.latency_seconds:g} s)")
        harness.progress(f"kafka sweep: {note}")
        rows.append(harness.Row("kafka", "latency sweep", "P1, unbounded", "-", 0,
                                wb_rss_mb=w["rss_mb"], note=note, extra={"workbench": w}))
    return rows


def _new_keys(url: str, sfx: str, args: argparse.Namespace) -> harness.Row:
    """P1 at ``--rate`` for ``--new-keys-seconds`` where every record has a key never seen
    before: if any cost grew with the keys ever seen, the later sixths of the run would show a
    higher p99 than the first ones (and the commit count would fall behind)."""
    seconds = args.new_keys_seconds
    w = latency(url, "P1", f"{sfx}k", args.rate, seconds, 10_000_019)  # > records: all distinct
    commits = w["process"]["commits"]
    ideal = seconds / COMMIT_S
    sixths = " / ".join(f"{x:.0f}" for x in w["p99_by_sixth_ms"])
    note = (f"{args.rate:,} rec/s for {seconds:g} s, every key new ({w['offered']:,} keys): "
            f"p50 {w['p50_ms']:.0f} ms p99 {w['p99_ms']:.0f} ms; p99 by sixth of the run "
            f"{sixths} ms; {w['received']:,}/{w['offered']:,} results; {commits} commits "
            f"({commits / ideal:.0%} of {ideal:.0f}); RSS {w['rss_mb']:.0f} MB")
    harness.progress(f"kafka new keys: {note}")
    return harness.Row("kafka", "latency new keys", "P1, unbounded", "-", 0,
                       wb_rss_mb=w["rss_mb"], note=note, extra={"workbench": w})


def _rows(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]],
          got: dict[str, results.Canonical], want: dict[str, Path], load_s: float
          ) -> list[harness.Row]:
    def med(role: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[role])

    rows = []
    raw_diffs = (results.differences(got["raw"], results.Canonical.load(want["raw"]),
                                     "raw copy", "its input") if "raw" in runs else [])
    for case in ("P1", "P2"):
        if case not in runs:
            continue
        diffs = results.differences(got[case], results.Canonical.load(want[case]),
                                    "workbench", "plain loop")
        row = harness.Row("kafka", case, "lambda, until end", RAW, args.events,
                          wb_s=med(case, "seconds"), wb_rss_mb=max(r["rss_mb"] for r in
                                                                   runs[case]),
                          wb_times=[r["seconds"] for r in runs[case]],
                          diffs=diffs + raw_diffs, matched=not (diffs or raw_diffs),
                          note=f"checked vs plain loop; load {load_s:.1f} s excluded")
        if got[case].late is not None:
            row.note += f"; late {got[case].late:,}"
        if "raw" in runs:
            row.ref_s = med("raw", "seconds")
            row.ref_rss_mb = max(r["rss_mb"] for r in runs["raw"])
            row.ref_times = [r["seconds"] for r in runs["raw"]]
        rows.append(row)
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        sys.exit(child(sys.argv[2:]))
    sys.exit(main())
