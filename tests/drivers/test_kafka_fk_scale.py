"""Foreign-key joins and global tables on many partitions and processes: two unbounded
workers of one application (subprocesses) share 3-partition tables; each runs tasks of both
sides of the foreign-key joins, and subscriptions and answers cross between them through the
subscription-registration and subscription-response topics. The committed outputs must hold the
memory run's final result per key (a foreign-key join's intermediate results depend on timing,
as in Kafka Streams), and the global-table join exactly the memory run's records.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from workbench.run import append_inputs

from .kafka_helpers import canonical, fk_inputs, fk_pipeline, fk_sinks
from .test_kafka import kafka_url  # noqa: F401 - the session fixture (and its service)
from .test_kafka_recovery import start_worker

with contextlib.suppress(ImportError):
    from .test_kafka import kafka_service  # noqa: F401

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def final_values(records: list[Any]) -> dict[str, Any]:
    """The table a changelog describes: the last value per key, deletes removed."""
    out: dict[str, Any] = {}
    for key, value in records:
        out.pop(key, None)
        if value is not None:
            out[key] = json.loads(json.dumps(value))
    return out


def test_two_workers_run_foreign_key_and_global_joins(kafka_url: str,  # noqa: F811
                                                       tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient

    from workbench.drivers.kafka import KafkaDriver

    sfx = uuid.uuid4().hex[:8]
    raw = fk_inputs()
    data = {f"orders-{sfx}": raw["orders"], f"users-{sfx}": raw["users"],
            f"gusers-{sfx}": raw["users"]}
    expected = fk_pipeline(sfx).run("memory://", inputs=data)
    pipeline = fk_pipeline(sfx)
    plan = pipeline.plan()
    registration = [t for t in plan.topics if t.endswith("subscription-registration-repartition")]
    response = [t for t in plan.topics if t.endswith("subscription-response-repartition")]
    assert len(registration) == len(response) == 2
    watcher = KafkaDriver(kafka_url)
    append_inputs(pipeline, watcher, data)
    sources = [f"orders-{sfx}", f"users-{sfx}"]
    end = sum(watcher.end_offset(t, p) for t in sources for p in range(3))
    app = pipeline.name
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers = [start_worker(kafka_url, "fk", sfx, log, until="forever") for log in logs]
    admin = AdminClient({"bootstrap.servers": kafka_url[len("kafka://"):]})

    def tail() -> str:
        return "\n".join(log.read_text()[-2000:] for log in logs)

    try:
        deadline = time.monotonic() + 180
        shared = False
        while True:
            group = admin.describe_consumer_groups([app])[app].result()
            owners = [m for m in group.members if m.assignment.topic_partitions]
            if len(owners) == 2:
                shared = True
                # each worker runs tasks of both sides: it owns partitions of both tables
                for m in owners:
                    topics = {tp.topic for tp in m.assignment.topic_partitions}
                    assert set(sources) <= topics, topics
            done = sum(watcher.committed(app, t, p) for t in sources for p in range(3))
            backlog = sum(watcher.end_offset(t, p) - watcher.committed(app, t, p)
                          for t in registration + response for p in range(3))
            if shared and done >= end and backlog == 0:
                break
            assert time.monotonic() < deadline, tail()
            assert all(w.poll() is None for w in workers), tail()
            time.sleep(0.3)
        assert watcher.partitions(registration[0]) == 3 and watcher.partitions(response[0]) == 3
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            assert w.wait(60) == 0, tail()
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for sink in fk_sinks(sfx):
        got = [(k, v) for k, v, _t, _o, _h in watcher.read_all(sink)]
        want = [(r.key, r.value) for r in expected.records(sink)]
        assert final_values(got) == final_values(want), sink
        assert len(final_values(want)) > 50, sink
    g = f"g-left-{sfx}"
    from workbench.types import Record

    assert canonical([Record(k, v, t, h) for k, v, t, _o, h in watcher.read_all(g)]) == \
        canonical(expected.records(g))
    watcher.close()
