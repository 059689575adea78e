"""Serdes in pipelines on the memory driver: partitioning by the key serde's bytes, typed
samples checked at definition time, previews of decoded values, serde inheritance, windowed
keys, co-partitioning (Kafka and Java: tests/interop/, tests/drivers/)."""

from __future__ import annotations

import datetime as dt
import struct

import pytest

import workbench as wb
from workbench.drivers.memory import MemoryDriver
from workbench.errors import DefinitionError, SerializationError
from workbench.partitioning import partition_for
from workbench.windows import Windowed

CLICK = {"type": "record", "name": "Click", "namespace": "web",
         "fields": [{"name": "user", "type": "string"},
                    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                    {"name": "amount", "type": "double"},
                    {"name": "page", "type": "string", "default": "/"}]}


def _where(driver: MemoryDriver, topic: str) -> dict[object, int]:
    out = {}
    for p in range(driver.partitions(topic) or 0):
        for rec in driver.read(topic, p, 0, 10_000):
            out[rec[0]] = p
    return out


def test_string_keys_land_where_java_puts_them() -> None:
    users = [f"user-{i}" for i in range(60)]
    for serde, encode in ((wb.serde.string(), str.encode),
                          (None, lambda u: f'"{u}"'.encode())):  # the JSON default: quoted
        p = wb.Pipeline("strings")
        key = ("user", serde) if serde is not None else "user"
        (p.source("clicks", key=key, partitions=4)
          .key_by(lambda v: v["user"] + "!").to("out", key=serde, partitions=3))
        driver = MemoryDriver()
        p.run(driver, inputs={"clicks": [{"user": u} for u in users]})
        assert _where(driver, "clicks") == {u: partition_for(encode(u), 4) for u in users}
        assert _where(driver, "out") == {u + "!": partition_for(encode(u + "!"), 3)
                                         for u in users}


def test_long_keys_partition_by_their_eight_bytes() -> None:
    p = wb.Pipeline("longs")
    p.source("n", key=("id", wb.serde.long()), partitions=5).to("copy")
    driver = MemoryDriver()
    p.run(driver, inputs={"n": [{"id": i} for i in range(100)]})
    assert _where(driver, "n") == {i: partition_for(struct.pack(">q", i), 5) for i in range(100)}
    assert wb.Pipeline("x").plan is not None


def test_typed_sample_is_checked_and_previews_decoded_columns() -> None:
    p = wb.Pipeline("avro-sample")
    rows = [{"user": "u1", "ts": 1_700_000_000_000, "amount": 2.5},
            {"user": "u2", "ts": 1_700_000_001_000, "amount": 1.0, "page": "/a"}]
    clicks = p.source("clicks", key="user", time="ts", value=wb.serde.avro(CLICK), sample=rows)
    frame = clicks.to_pandas()
    assert list(frame["page"]) == ["/", "/a"]  # Avro's default filled in
    assert frame["ts"].iloc[0] == dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)
    assert str(frame["amount"].dtype) == "float64"
    with pytest.raises(DefinitionError, match=r"row 1 of the sample .*web.Click.amount"):
        wb.Pipeline("bad").source("clicks", value=wb.serde.avro(CLICK),
                                  sample=[rows[0], {"user": "u", "ts": 1, "amount": "lots"}])


def test_serdes_are_inherited_until_a_step_changes_keys_or_values() -> None:
    p = wb.Pipeline("inherit")
    avro = wb.serde.avro(CLICK)
    src = p.source("clicks", key=wb.serde.string(), value=avro)
    src.filter(lambda v: v["amount"] > 0).to("kept")
    src.map(lambda v: v["amount"]).to("amounts")
    src.key_by(lambda v: v["page"]).to("by-page")
    src.group_by_key().window(wb.Tumbling("1m")).count().to("counts")
    src.group_by_key().window(wb.Session("1m")).count().to("sessions")
    src.group_by_key().count(name="totals").to("totals")
    topics = p.plan().topics
    assert (topics["kept"].key_serde.name, topics["kept"].value_serde) == ("string", avro)
    assert (topics["amounts"].key_serde.name, topics["amounts"].value_serde) == ("string", None)
    assert (topics["by-page"].key_serde, topics["by-page"].value_serde) == (None, avro)
    assert topics["counts"].key_window == ("time", 60_000)
    assert topics["sessions"].key_window == ("session", 0)
    changelog = topics["inherit-totals-store-changelog"]
    assert changelog.key_serde.name == "string" and changelog.value_serde.name == "json"


def test_windowed_results_use_kafka_streams_layouts() -> None:
    p = wb.Pipeline("windows")
    src = p.source("clicks", key=("user", wb.serde.string()), time="ts")
    src.group_by_key().window(wb.Tumbling(10)).count().to("counts", partitions=2)
    src.group_by_key().window(wb.Session(5)).count().to("sessions")
    rows = [{"user": u, "ts": t} for t in range(0, 30, 3) for u in ("a", "b")]
    run = p.run("memory://", inputs={"clicks": rows})
    from workbench.serde.topics import codecs_for

    codecs = codecs_for(p.plan().topics, MemoryDriver())
    counts = codecs.serdes("counts").key
    assert counts.serialize(Windowed("a", 10, 20)) == b"a" + struct.pack(">q", 10)
    assert {r.key for r in run.records("counts")} == {Windowed(u, s, s + 10)
                                                      for u in "ab" for s in (0, 10, 20)}
    sessions = codecs.serdes("sessions").key
    assert sessions.serialize(Windowed("a", 0, 27)) == b"a" + struct.pack(">qq", 27, 0)


def test_a_value_the_sink_serde_cannot_write_names_the_topic() -> None:
    p = wb.Pipeline("bad-sink")
    p.source("in", sample=[{"user": "u", "ts": 1, "amount": "x"}]).to(
        "clicks-avro", value=wb.serde.avro(CLICK))
    with pytest.raises(SerializationError, match=r"topic 'clicks-avro'.*web.Click.amount"):
        p.run("memory://")


def test_copartitioned_topics_must_agree_on_key_bytes() -> None:
    p = wb.Pipeline("copart")
    left = p.source("left", key=wb.serde.string(), partitions=2)
    right = p.table("right", key=wb.serde.long(), partitions=2)
    left.join(right).to("joined")
    with pytest.raises(DefinitionError, match=r"co-partitioned.*different serdes"):
        p.run("memory://", inputs={"left": [], "right": []})


def test_repartition_topic_takes_the_key_serde_of_its_join_partner() -> None:
    p = wb.Pipeline("partner")
    orders = p.source("orders", key=wb.serde.string(), partitions=3)
    customers = p.table("customers", key=("id", wb.serde.string()), partitions=3)
    orders.key_by(lambda v: v["customer"]).join(customers, how="left").to("enriched")
    plan = p.plan()
    (rtopic,) = [t for t, s in plan.topics.items() if s.kind == "repartition"]
    assert plan.topics[rtopic].key_serde.name == "string"
    run = p.run("memory://", inputs={
        "customers": [{"id": f"c{i}", "name": f"n{i}"} for i in range(9)],
        "orders": [{"customer": f"c{i % 9}", "n": i} for i in range(27)]})
    enriched = run.records("enriched")
    assert len(enriched) == 27 and all(r.value["name"] == "n" + r.key[1:] for r in enriched)


def test_serde_arguments_are_checked() -> None:
    p = wb.Pipeline("args")
    with pytest.raises(DefinitionError, match=r"source\('a', value=...\): unknown serde"):
        p.source("a", value="avor")
    with pytest.raises(DefinitionError, match=r"to\('b', key=...\)"):
        p.source("a2").to("b", key=42)
    with pytest.raises(DefinitionError, match="field name or a function"):
        p.source("a3", key=42)


def test_sample_keys_are_checked_against_the_key_serde() -> None:
    p = wb.Pipeline("keys")
    p.source("ok", key=("id", wb.serde.long()), sample=[{"id": 1}, {"id": None}])
    with pytest.raises(DefinitionError, match=r"the key 'x' of row 1 .*long"):
        p.source("bad", key=("id", wb.serde.long()), sample=[{"id": 1}, {"id": "x"}])


def test_a_custom_serde_object_per_topic() -> None:
    class Shout:
        def serialize(self, obj: object) -> bytes:
            return str(obj).upper().encode()

        def deserialize(self, data: bytes) -> str:
            return data.decode()

    p = wb.Pipeline("custom")
    p.source("in", sample=[{"w": "hi"}]).map(lambda v: v["w"]).to("out", value=Shout())
    assert [r.value for r in p.run("memory://").records("out")] == ["HI"]


def test_an_unreachable_registry_is_named_without_its_secret() -> None:
    """Previews and memory runs need no registry (serdes with a schema of their own round-trip
    offline; one without keeps values as they are, with a warning); writing bytes names the
    registry, without its password."""
    from workbench.devservices._common import free_port
    from workbench.errors import DriverUnavailableError

    url = f"http://alice:s3cret@127.0.0.1:{free_port()}/apis/ccompat/v7"
    sr = wb.SchemaRegistry(url)
    assert "s3cret" not in repr(sr) and "alice:***@" in repr(sr)
    p = wb.Pipeline("no-registry")
    row = {"user": "u", "ts": 1_700_000_000_000, "amount": 1.0}
    with pytest.warns(UserWarning, match="not checked against a schema"):
        src = p.source("in", value=wb.serde.avro(registry=sr), sample=[row])
    src.to("out", value=wb.serde.avro(CLICK, registry=sr))
    with pytest.warns(UserWarning, match="kept as they are"):
        run = p.run("memory://")
    assert [r.value["page"] for r in run.records("out")] == ["/"]  # CLICK's default
    with pytest.raises(DriverUnavailableError) as info:
        wb.serde.avro(CLICK, registry=sr).for_topic("out", is_key=False).serialize(row)
    assert "cannot reach the Schema Registry" in str(info.value)
    assert "s3cret" not in str(info.value)
