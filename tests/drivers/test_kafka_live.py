"""Live runs on Kafka: outputs are produced into the open transaction while the interval runs
(``send_outputs``) and become visible only with the commit; a stop or failure before the commit
leaves nothing visible; an unbounded run reports commit rate, batch sizes and latencies in
``engine.stats``. (How fast it keeps up is measured by ``benchmarks/kafka_driver.py``.)"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

import workbench as wb
from workbench.drivers.base import Transaction

pytestmark = pytest.mark.kafka


def test_sent_outputs_become_visible_with_the_commit_only(kafka_url: str) -> None:
    from workbench.drivers.kafka import KafkaDriver

    sfx = uuid.uuid4().hex[:8]
    app, src, out = f"send-{sfx}", f"send-in-{sfx}", f"send-out-{sfx}"
    d = KafkaDriver(kafka_url)
    d.ensure_topic(src, 1)
    d.ensure_topic(out, 1, kind="sink")
    d.assign(app, [src])
    d.committed(app, src, 0)
    d.send_outputs(app, {(out, 0): [("a", 1, 10, 0, None), ("b", 2, 11, 0, None)]})
    assert d.end_offset(out, 0) == 0  # produced, not committed: invisible
    d.send_outputs(app, {(out, 0): [("c", 3, 12, 0, None)]})
    d.commit(Transaction(app, outputs={(out, 0): [("d", 4, 13, 0, None)]},
                         positions={(src, 0): 0}))
    assert [r[0] for r in d.read_all(out)] == ["a", "b", "c", "d"]
    d.send_outputs(app, {(out, 0): [("never", 5, 14, 0, None)]})
    d.end_run()  # the engine stopped before committing: the open transaction is aborted
    assert [r[0] for r in d.read_all(out)] == ["a", "b", "c", "d"]
    d.close()
    fresh = KafkaDriver(kafka_url)
    assert [r[0] for r in fresh.read_all(out)] == ["a", "b", "c", "d"]
    fresh.close()


def test_live_run_hands_outputs_over_and_reports_its_pace(kafka_url: str) -> None:
    from workbench.drivers import connect
    from workbench.run import prepare

    sfx = uuid.uuid4().hex[:8]
    p = wb.Pipeline(f"live-{sfx}")
    (p.source(f"live-in-{sfx}", key="k", time="ts", partitions=2)
      .group_by_key().window(wb.Tumbling("10s"), emit="update").count(name="n")
      .to(f"live-out-{sfx}"))
    engine = prepare(p, kafka_url)
    feeder = connect(kafka_url)
    engine.start()
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    try:
        for i in range(20):
            feeder.append(f"live-in-{sfx}", i % 2, [(f"k{i % 5}", {"k": f"k{i % 5}",
                                                                     "ts": 1000 + i}, 1000 + i,
                                                     0, None)])
            time.sleep(0.02)
        deadline = time.monotonic() + 60
        while len(feeder.read_all(f"live-out-{sfx}")) < 20:
            assert time.monotonic() < deadline and runner.is_alive()
            time.sleep(0.05)
    finally:
        engine.stop()
        runner.join(60)
        engine.close()
        engine.driver.close()
        feeder.close()
    stats = engine.stats
    assert stats.records_in == 20 and stats.records_out[f"live-out-{sfx}"] == 20
    assert sum(stats.batch_sizes) == 20 and stats.batch_size() >= 1
    assert stats.commits >= 1 and len(stats.commit_times) == stats.commits
    assert stats.commit_rate(window_s=600) > 0
    assert stats.commit_latency_ms and min(stats.commit_latency_ms) >= 0
    assert stats.e2e_latency_ms  # event times from 1970: a huge, but measured, latency
