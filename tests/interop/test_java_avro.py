"""A Java producer (the real Kafka clients, Apache Avro, Confluent's wire format with the schema
registered in Apicurio Registry) writes Avro records to the real broker; a workbench pipeline
reads them, previews typed columns, writes Avro back; a Java consumer reads what workbench
wrote. Both sides agree field by field, and on every record's partition."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

import workbench as wb

from .java_build import require_java, run_java

pytestmark = [pytest.mark.kafka, pytest.mark.registry, pytest.mark.conformance]

PAYMENT = {
    "type": "record", "name": "Payment", "namespace": "interop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "quantity", "type": "int"},
        {"name": "paid_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "status", "type": {"type": "enum", "name": "Status",
                                    "symbols": ["NEW", "PAID", "REFUNDED"]}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
COUNT = 60


def _ms(value: Any) -> Any:
    return int(value.timestamp() * 1000) if isinstance(value, dt.datetime) else value


def _transform(v: dict[str, Any]) -> dict[str, Any]:
    return {**v, "amount": v["amount"] * 2, "tags": [*v["tags"], "wb"],
            "status": "PAID" if v["status"] == "NEW" else v["status"]}


def test_java_writes_workbench_reads_and_writes_java_reads(kafka_url: str, kafka_bootstrap: str,
                                                           registry_url: str) -> None:
    require_java()
    sfx = uuid.uuid4().hex[:8]
    source, sink = f"payments-{sfx}", f"payments-doubled-{sfx}"
    wb.connect(kafka_url).ensure_topic(source, 4)
    produced = run_java("produce-avro", kafka_bootstrap, registry_url, source, str(COUNT),
                        stdin=json.dumps(PAYMENT))
    assert len(produced) == COUNT

    sr = wb.SchemaRegistry(registry_url)
    p = wb.Pipeline(f"java-avro-{sfx}")
    payments = p.source(source, key=wb.serde.string(), value=wb.serde.avro(registry=sr),
                        time="paid_at")
    payments.map(_transform).to(sink, value=wb.serde.avro(PAYMENT, registry=sr), partitions=4)
    run = p.run(kafka_url)

    # workbench read what Java wrote, field by field, with typed columns
    read = {r.value["id"]: r for r in run.records(source)}
    assert len(read) == COUNT
    for rec in produced:
        ours = read[rec["value"]["id"]]
        assert ours.key == rec["key"]
        assert {k: _ms(v) for k, v in ours.value.items()} == rec["value"]
        assert ours.timestamp == rec["value"]["paid_at"]
    frame = run.frame(source)
    assert str(frame["paid_at"].dtype).startswith("datetime64")
    assert (frame["quantity"].dtype, frame["amount"].dtype) == ("int64", "float64")

    # Java reads what workbench wrote: same fields, each record in the partition Java's own
    # producer chose for its key
    consumed = run_java("consume-avro", kafka_bootstrap, registry_url, sink, str(COUNT))
    assert len(consumed) == COUNT
    by_id = {r["value"]["id"]: r for r in consumed}
    for rec in produced:
        java = by_id[rec["value"]["id"]]
        assert java["value"] == _transform(rec["value"])
        assert java["key"] == rec["key"]
        assert java["partition"] == rec["partition"]
        assert java["timestamp"] == rec["value"]["paid_at"]
    assert {r["schema_id"] for r in consumed} == {sr.latest(f"{sink}-value").id}


def test_internal_topics_are_readable_by_java(kafka_url: str, kafka_bootstrap: str) -> None:
    """With Java-compatible serdes (the driver's default key serde ``string``), the repartition
    topic, the key-value changelog and the output are read by a Java consumer with
    ``StringDeserializer`` keys (and ``LongDeserializer`` values for the output), every record
    in the partition Java's producer chooses for its key."""
    require_java()
    sfx = uuid.uuid4().hex[:8]
    url = f"{kafka_url}?key_serde=string&partitions=3"
    p = wb.Pipeline(f"java-internal-{sfx}")
    clicks = p.source(f"clicks-{sfx}", key=("user", wb.serde.string()), partitions=3)
    clicks.group_by(lambda v: v["page"]).count(name="per-page").changes().to(
        f"pages-{sfx}", value=wb.serde.long())
    rows = [{"user": f"u{i % 5}", "page": f"/p/{i % 7}"} for i in range(70)]
    run = p.run(url, inputs={f"clicks-{sfx}": rows})
    topics = run.plan.topics
    repartition = next(t for t, s in topics.items() if s.kind == "repartition")
    changelog = next(t for t, s in topics.items() if s.kind == "changelog")
    for topic, serde, count in ((repartition, "string", 70), (changelog, "string", None),
                                (f"pages-{sfx}", "long", 70)):
        n = count or len(run.driver.read_all(topic))
        got = run_java("consume-raw", kafka_bootstrap, topic, str(n), serde)
        assert len(got) == n and n > 0
        assert all(r["partition"] == r["java_partition"] for r in got), topic
        assert {r["key"] for r in got} <= {f"/p/{i}" for i in range(7)}, topic
        if topic == repartition:
            assert all(json.loads(r["value"])["page"] == r["key"] for r in got)
        elif topic == changelog:
            assert all(isinstance(json.loads(r["value"])[0], int) for r in got)
        else:
            final = {r["key"]: r["value"] for r in got}
            assert final == {f"/p/{i}": 10 for i in range(7)}
