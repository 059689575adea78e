"""Stream times on Kafka: the engine commits each task's stream times as
``txn.metadata["stream_time.<subtopology>_<partition>"]``; the driver attaches a task's key
only to the offsets of that task's partition (offset metadata is limited to
``offset.metadata.max.bytes``, 4096 bytes by default) and every other key to all partitions,
keeps the merged state across commits, and merges it back on reading.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

import workbench as wb
from workbench.drivers.base import Transaction

pytestmark = pytest.mark.kafka

TASKS = 200


def _pipeline(sfx: str) -> wb.Pipeline:
    p = wb.Pipeline(f"times-{sfx}")
    counts = (p.source(f"times-in-{sfx}", key="k", time="ts", partitions=TASKS)
               .group_by_key().window(wb.Tumbling("10s"), emit="update")
               .count(name="per-10s"))
    counts.late.to(f"times-late-{sfx}")
    return p


@pytest.mark.slow  # ~30 s: 200 partitions, two runs
def test_stream_times_of_200_tasks_fit_and_come_back(kafka_url: str) -> None:
    """200 tasks (one per partition) each commit their stream time; every partition's offset
    metadata holds its own task's key only (and stays far below 4096 bytes); a second run
    restores all 200 stream times, so a record older than its window's close is late in
    every task."""
    from confluent_kafka import Consumer, TopicPartition

    from workbench.drivers.kafka import KafkaDriver

    sfx = uuid.uuid4().hex[:8]
    topic = f"times-in-{sfx}"
    d = KafkaDriver(kafka_url)
    d.ensure_topic(topic, TASKS)
    for p in range(TASKS):
        d.append(topic, p, [(f"k{p}", {"k": f"k{p}", "ts": 100_000}, 100_000, 0, None)])
    first = _pipeline(sfx).run(kafka_url)
    first.close()
    c = Consumer({"bootstrap.servers": kafka_url[len("kafka://"):], "group.id": f"times-{sfx}"})
    got = c.committed([TopicPartition(topic, p) for p in range(TASKS)], timeout=30)
    c.close()
    for tp in got:
        assert tp.offset == 1
        assert tp.metadata and len(tp.metadata.encode()) < 1024
        keys = set(json.loads(tp.metadata))
        assert keys == {f"stream_time.0_{tp.partition}"}, keys
    for p in range(TASKS):  # older than its window's close: late, if stream time came back
        d.append(topic, p, [(f"k{p}", {"k": f"k{p}", "ts": 50_000}, 50_000, 0, None)])
    second = _pipeline(sfx).run(kafka_url)
    late = second.records(f"times-late-{sfx}")
    second.close()
    d.close()
    assert sorted(r.key for r in late) == sorted(f"k{p}" for p in range(TASKS))


def test_metadata_is_merged_across_commits(kafka_url: str) -> None:
    """The engine commits only the keys that changed: earlier keys stay committed (each
    transaction rewrites every owned offset, with the merged metadata)."""
    from workbench.drivers.kafka import KafkaDriver

    sfx = uuid.uuid4().hex[:8]
    app, src = f"merge-{sfx}", f"merge-in-{sfx}"
    d = KafkaDriver(kafka_url)
    d.ensure_topic(src, 3)
    d.assign(app, [src])
    assert d.committed_metadata(app) == {}
    for p in range(3):
        d.committed(app, src, p)
    t0: dict[str, Any] = {"task": 5, "ops": {}}
    d.commit(Transaction(app, positions={(src, 0): 0}, metadata={
        "stream_time.0_0": t0, "stream_time.0_1": {"task": 6, "ops": {}}, "shared": 1}))
    d.commit(Transaction(app, positions={(src, 1): 0}, metadata={
        "stream_time.0_1": {"task": 9, "ops": {}}}))
    d.commit(Transaction(app, positions={(src, 2): 0}))
    want = {"stream_time.0_0": t0, "stream_time.0_1": {"task": 9, "ops": {}}, "shared": 1}
    assert d.committed_metadata(app) == want
    d.close()
    again = KafkaDriver(kafka_url)  # a restart reads the same
    again.assign(app, [src])
    assert again.committed_metadata(app) == want
    again.close()
