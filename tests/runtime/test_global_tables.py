"""Global tables (``workbench/runtime/global_ops.py``): every partition read by every task,
restored from the topic when a run starts, joined from a stream through a key selector without
a repartition, and read by processors as a read-only store. (Record-by-record agreement with
Kafka Streams: ``tests/conformance/cases/joins_global.json`` and the generated family.)"""

from __future__ import annotations

from typing import Any

import pytest

import workbench as wb
from workbench.drivers.memory import MemoryDriver
from workbench.testing import TestDriver

CUSTOMERS = [{"id": f"c{i}", "name": f"name{i}"} for i in range(12)]
ORDERS = [{"oid": f"o{i}", "cust": f"c{i % 13}", "ts": 1000 + i} for i in range(60)]


def shop(name: str = "shop", *, partitions: int = 1, how: str = "left") -> wb.Pipeline:
    p = wb.Pipeline(name)
    customers = p.global_table("customers", key="id", sample=CUSTOMERS, partitions=4)
    orders = p.source("orders", key="oid", time="ts", sample=ORDERS, partitions=partitions)
    orders.join(customers, on="cust", how=how).to("out")
    return p


def test_every_task_sees_every_partition_of_the_global_topic() -> None:
    p = shop(partitions=3)
    plan = p.plan()
    assert [g.topic for g in plan.global_tables] == ["customers"]
    assert all("customers" not in st.inputs for st in plan.subtopologies)
    assert not any(t.kind == "repartition" for t in plan.topics.values())
    driver = MemoryDriver()
    run = p.run(driver)
    assert driver.partitions("customers") == 4 and driver.partitions("orders") == 3
    out = sorted(run.records("out"), key=lambda r: r.key)
    assert len(out) == 60
    for r in out:
        expected = f"name{r.value['cust'][1:]}" if r.value["cust"] != "c12" else None
        assert r.value.get("name") == expected, r
    inner = shop("shop-inner", partitions=3, how="inner").run("memory://").records("out")
    assert len(inner) == 60 - len([o for o in ORDERS if o["cust"] == "c12"])


def test_restored_from_its_topic_when_a_run_starts() -> None:
    """A second run on the same driver reads no customer record as input, yet joins: the
    table is rebuilt from its topic (it has no changelog)."""
    driver = MemoryDriver()
    shop("restore").run(driver, inputs={"customers": CUSTOMERS, "orders": ORDERS[:5]})
    assert not [t for t in driver.topics() if t.endswith("-changelog")]
    run = shop("restore").run(driver, inputs={"orders": ORDERS[5:8]})
    new = [r for r in run.records("out") if r.key in ("o5", "o6", "o7")]
    assert [r.value["name"] for r in sorted(new, key=lambda r: r.key)] == [
        "name5", "name6", "name7"]


def test_updates_apply_before_later_stream_records() -> None:
    p = wb.Pipeline("live")
    customers = p.global_table("customers")
    p.source("orders").join(customers, on=lambda v: v["cust"], how="left",
                            combine=lambda o, c: (o["n"], c)).to("out")
    with TestDriver(p, partitions=3) as td:
        orders, cust = td.input("orders"), td.input("customers")
        orders.pipe("o1", {"cust": "c1", "n": 1}, timestamp=5)
        cust.pipe("c1", "Alice", timestamp=100)  # applies at once, whatever its timestamp
        orders.pipe("o2", {"cust": "c1", "n": 2}, timestamp=6)
        cust.pipe("c1", None, timestamp=101)
        orders.pipe(None, {"cust": "c1", "n": 3}, timestamp=7)  # the stream key is not needed
        cust.pipe(None, "ghost", timestamp=8)
        assert td.output("out").read_key_values() == [
            ("o1", (1, None)), ("o2", (2, "Alice")), (None, (3, None))]
        assert td.engine.dropped_counts() == {"customers": 1}


def test_processor_reads_a_global_store() -> None:
    class Enrich(wb.Processor):
        def init(self, ctx: Any) -> None:
            self.ctx = ctx
            self.customers = ctx.store("people")

        def process(self, record: wb.Record) -> None:
            c = self.customers
            self.ctx.forward(record.key, (record.value["cust"] in c, c.get(record.value["cust"]),
                                          len(c)))

    p = wb.Pipeline("proc")
    customers = p.global_table("customers", key="id", sample=CUSTOMERS[:2])
    orders = p.source("orders", key="oid", sample=ORDERS[:3])
    orders.process(Enrich, global_stores={"people": customers}).to("out")
    got = [r.value for r in p.run("memory://").records("out")]
    assert got == [(True, CUSTOMERS[0], 2), (True, CUSTOMERS[1], 2), (False, None, 2)]
    assert "customers" in p.to_mermaid()


def test_preview_and_drawing() -> None:
    p = shop("drawn")
    assert list(p.node("customers").params["spec"].columns) == ["id", "name"]
    frame = wb.Stream(p, p.node("join_global-1")).to_pandas()
    assert list(frame.columns) == ["key", "timestamp", "oid", "cust", "ts", "id", "name"]
    customers = wb.GlobalTable(p, p.node("customers"))
    assert len(customers.to_pandas()) == 12 and customers.topic == "customers"
    dot = p.to_dot()
    assert "customers" in dot and "every partition" in dot
    assert "global table" in repr(p)


def test_definition_errors() -> None:
    p = wb.Pipeline("errors")
    customers = p.global_table("customers")
    orders = p.source("orders")
    with pytest.raises(wb.DefinitionError, match="needs on="):
        orders.join(customers)
    with pytest.raises(wb.DefinitionError, match="no time window"):
        orders.join(customers, on="c", within="5s")
    with pytest.raises(wb.DefinitionError, match="how='outer'"):
        orders.join(customers, on="c", how="outer")
    with pytest.raises(wb.DefinitionError, match="global table"):
        orders.join(p.table("t"), on="c")
    other = wb.Pipeline("other").global_table("x")
    with pytest.raises(wb.DefinitionError, match="different pipelines"):
        orders.join(other, on="c")
    with pytest.raises(wb.DefinitionError, match="global tables"):
        orders.process(wb.Processor, global_stores=["customers"])
