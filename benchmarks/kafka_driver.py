"""Kafka-driver benchmark, one broker, one run: 1,000,000 events (workload.py) on a 3-partition
topic, processed exactly-once by

  (a) a raw confluent-kafka transactional copy loop (consume, produce, send offsets, commit
      every 100 ms): the reference;
  (b) workbench P1 (filter + map) and P2 (P1 + per-user 60 s tumbling windows, final results)
      on ``kafka://``, bounded runs (``until="end"``).

Each case runs in its own process (peak RSS is that process's). Then the end-to-end latency at
10,000 records/s offered load: a producer stamps each record with its send time, the processor
runs unbounded, a read_committed consumer notes when each result becomes visible (produce time to
committed visibility), for the raw loop and for workbench P1.

    python benchmarks/kafka_driver.py [--url kafka://127.0.0.1:PORT] [--events 1000000]
                                      [--latency-seconds 20] [--only raw,P1,P2,latency]

Without ``--url`` the broker comes from ``workbench.devservices.up()``. Numbers, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import workload  # noqa: E402

import workbench as wb  # noqa: E402

WINDOW = 60_000
GRACE = 5_000
COMMIT_S = 0.1


def bootstrap(url: str) -> str:
    return url[len("kafka://"):].split("?")[0]


def register() -> None:
    from workbench.drivers import _FACTORIES, register_driver
    from workbench.drivers.kafka import connect_kafka

    if "kafka" not in _FACTORIES:  # until workbench/drivers/__init__.py registers it
        register_driver("kafka", connect_kafka)


# ---------------------------------------------------------------- pipelines (as memory_driver.py)
def wb_p1(sfx: str, source: str) -> wb.Pipeline:
    p = wb.Pipeline(f"bench-p1-{sfx}")
    (p.source(source, key="user_id", time="ts", partitions=3)
      .filter(lambda e: e["amount"] > 0)
      .map(lambda e: {**e, "amount_cents": round(e["amount"] * 100)})
      .to(f"p1-{sfx}", partitions=3))
    return p


def wb_p2(sfx: str, source: str) -> wb.Pipeline:
    p = wb.Pipeline(f"bench-p2-{sfx}")
    (p.source(source, key="user_id", time="ts", partitions=3)
      .filter(lambda e: e["amount"] > 0)
      .map(lambda e: {**e, "amount_cents": round(e["amount"] * 100)})
      .group_by_key()
      .window(wb.Tumbling(WINDOW, grace=GRACE), emit="close")
      .agg(total=("amount", "sum"), n="count", name="p2")
      .to(f"p2-{sfx}", partitions=3))
    return p


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
def wb_run(url: str, which: str, sfx: str, source: str, forever: bool) -> dict[str, Any]:
    register()
    pipeline = (wb_p1 if which == "P1" else wb_p2)(sfx, source)
    started = time.perf_counter()
    if not forever:
        run = pipeline.run(url, until="end", progress=False)
        run.driver.close()
        return {"records": run.stats.records_in, "seconds": time.perf_counter() - started,
                "commits": run.stats.commits}
    from workbench.run import prepare

    engine = prepare(pipeline, url)
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


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, it does not count the
    parent's memory that the fork before exec copied)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(argv: list[str]) -> int:
    """Entry point of the case processes: prints one JSON line with the result."""
    role, url, sfx, source, mode = argv[:5]
    forever = mode == "forever"
    if role == "raw":
        out = raw_copy(url, source, f"raw-out-{sfx}", f"bench-raw-{sfx}",
                       None if forever else int(argv[5]), ready=forever)
    else:
        out = wb_run(url, role, sfx, source, forever)
    out["rss_mb"] = peak_rss_mb()
    print(json.dumps(out), flush=True)
    return 0


def run_case(args: list[str], timeout: float = 1800) -> dict[str, Any]:
    """Run a case process to the end; its result plus its peak RSS (MB)."""
    proc = subprocess.Popen([sys.executable, __file__, "_child", *args], stdout=subprocess.PIPE,
                            text=True)
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"case {args[0]} failed (status {proc.returncode}):\n{out[-3000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------- latency
def _load(url: str, topic: str, rate: int, seconds: float, go: Any, sent: Any) -> None:
    """Offer ``rate`` records/s for ``seconds``: each value carries its send time."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap(url), "linger.ms": 1,
                         "partitioner": "murmur2_random", "enable.idempotence": True})
    records = [(json.dumps({**e, "amount": abs(e["amount"]) or 0.01})[:-1].encode()
                + b', "sent": ', json.dumps(e["user_id"]).encode(), e["ts"])
               for e in workload.events(int(rate * seconds) + rate)]
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
            producer.produce(topic, prefix + now_b, key, timestamp=ts)
        i += per_step
        producer.poll(0)
    producer.flush(60)
    sent.value = i


def latency(url: str, role: str, sfx: str, rate: int, seconds: float) -> dict[str, Any]:
    """p50/p99 (ms) of send time → committed visibility of the result, at ``rate`` rec/s."""
    from confluent_kafka import Consumer, KafkaError

    from workbench.drivers.kafka import KafkaDriver

    register()
    src = f"lat-in-{role}-{sfx}"
    dst = f"raw-out-{sfx}" if role == "raw" else f"p1-{sfx}"
    d = KafkaDriver(url)
    d.ensure_topic(src, 3)
    d.ensure_topic(dst, 3)
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
    loader = spawn.Process(target=_load, args=(url, src, rate, seconds, go, sent))
    loader.start()
    time.sleep(2.0)  # the loader generated its events; the consumer joined
    go.set()
    lat: list[float] = []
    deadline = time.time() + seconds + 30
    while time.time() < deadline and (loader.is_alive() or len(lat) < sent.value):
        for m in consumer.consume(10_000, 0.05):
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
    warm.sort()
    return {"received": len(lat), "offered": sent.value, "p50_ms": 1000 * warm[len(warm) // 2],
            "p99_ms": 1000 * warm[int(len(warm) * 0.99) - 1] if warm else float("nan"),
            "max_ms": 1000 * warm[-1] if warm else float("nan"),
            "rss_mb": child_out["rss_mb"], "process": child_out}


# ---------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=None)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--only", default="raw,P1,P2,latency")
    args = ap.parse_args()
    only = set(args.only.split(","))
    url = args.url
    if url is None:
        from workbench.devservices import up

        t0 = time.perf_counter()
        info = up(("kafka",))["kafka"]
        url = info.url
        how = "already running" if info.already_running else \
            f"started in {time.perf_counter() - t0:.1f} s"
        print(f"broker {url} ({how})")
    register()
    from workbench.drivers.kafka import KafkaDriver
    from workbench.run import append_inputs

    sfx = uuid.uuid4().hex[:8]
    n = args.events
    source = f"bench-events-{sfx}"
    events = workload.events(n)
    d = KafkaDriver(url)
    t0 = time.perf_counter()
    append_inputs(wb_p1(sfx, source), d, {source: events})
    load_s = time.perf_counter() - t0
    d.ensure_topic(f"raw-out-{sfx}", 3)
    d.close()
    del events
    print(f"events={n:,} on 3 partitions; loaded through the driver in {load_s:.1f} s "
          f"({n / load_s:,.0f} rec/s); python={sys.version.split()[0]}, cores={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    results: dict[str, dict[str, Any]] = {}
    if "raw" in only:
        results["raw"] = run_case(["raw", url, sfx, source, "end", str(n)])
    for case in ("P1", "P2"):
        if case in only:
            results[case] = run_case([case, url, sfx, source, "end"])
    ref = results.get("raw")
    for name, r in results.items():
        rate = r["records"] / r["seconds"]
        ratio = f" | {rate / (ref['records'] / ref['seconds']):.2f} x raw" if ref else ""
        label = "raw copy loop" if name == "raw" else f"workbench {name}"
        print(f"{label:>15}: {rate:>9,.0f} rec/s ({r['records']:,} in {r['seconds']:.1f} s)"
              f"{ratio} | peak RSS {r['rss_mb']:.0f} MB")
    if "latency" in only:
        for role in ("raw", "P1"):
            lat = latency(url, role, f"{sfx}l", args.rate, args.latency_seconds)
            label = "raw copy loop" if role == "raw" else "workbench P1"
            print(f"{label:>15}: latency at {args.rate:,} rec/s: p50 {lat['p50_ms']:.0f} ms, "
                  f"p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms ({lat['received']:,} "
                  f"results of {lat['offered']:,} offered in {args.latency_seconds:g} s) | "
                  f"peak RSS {lat['rss_mb']:.0f} MB")
            if "commit_ms_p50" in lat["process"]:
                pr = lat["process"]
                print(f"{'':>15}  {pr['commits']} commits, commit time p50 "
                      f"{pr['commit_ms_p50']:.0f} ms, max {pr['commit_ms_max']:.0f} ms")
    print(f"targets: P1 >= 0.5 x raw; p99 <= 300 ms at {args.rate:,} rec/s; RSS <= 1 GB")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        sys.exit(child(sys.argv[2:]))
    sys.exit(main())
