"""Errors after a repartition name the source record's position too (issue 10), on memory://.

A record read from ``<app>-<step>-repartition`` has a position of its own; the error names it
and, looked up through the repartition topic, the position of the input record it came from
(through any number of repartition topics). The origins cost no header on the in-memory driver
(columns beside the log) and never reach user sinks. The Kafka, PostgreSQL and git variants are
in ``tests/drivers/test_origins_drivers.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import workbench as wb
from workbench.drivers.memory import MemoryDriver
from workbench.run import append_inputs
from workbench.runtime.batch import Batch
from workbench.runtime.origins import (
    ORIGIN_HEADER,
    OriginColumns,
    decode_header,
    strip_headers,
    with_headers,
)


@pytest.fixture(autouse=True)
def _default_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKBENCH_ORIGINS", raising=False)  # memory://: on by default


def orders(bad: int = 7, n: int = 12) -> list[dict[str, Any]]:
    """``n`` orders of three customers; order ``bad`` has ``qty`` 0."""
    return [{"id": i, "cust": f"c{i % 3}", "qty": 0 if i == bad else i + 1, "ts": 1_000 + i}
            for i in range(n)]


def source_position(rows: list[dict[str, Any]], bad: int, partitions: int = 2
                    ) -> tuple[str, int, int]:
    """Where order ``bad`` lands in topic ``orders``, as workbench partitions it."""
    d = MemoryDriver()
    p = wb.Pipeline("where")
    p.source("orders", key="id", time="ts", partitions=partitions)
    append_inputs(p, d, {"orders": rows})
    for part in range(partitions):
        for rec in d.read("orders", part, 0, 1_000):
            if rec[1]["id"] == bad:
                return ("orders", part, rec[3])
    raise AssertionError("not found")


def test_map_after_repartition_names_the_source_record() -> None:
    rows = orders()
    p = wb.Pipeline("orig-map")
    s = p.source("orders", key="id", time="ts", partitions=2)
    s.key_by("cust").repartition(name="rp").map(lambda v: 10 // v["qty"], name="div").to("out")
    with pytest.raises(wb.ProcessingError) as info:
        p.run("memory://", inputs={"orders": rows})
    err = info.value
    assert err.topic == "orig-map-rp-repartition" and err.step == "div"
    src = source_position(rows, 7)
    assert (err.source_topic, err.source_partition, err.source_offset) == src
    assert (f"the record from topic 'orig-map-rp-repartition' partition {err.partition} offset "
            f"{err.offset}, which came from topic 'orders' partition {src[1]} offset {src[2]}: "
            "ZeroDivisionError") in str(err)


def test_aggregation_after_group_by_names_the_source_record() -> None:
    rows = orders(bad=10)
    p = wb.Pipeline("orig-agg")
    s = p.source("orders", key="id", time="ts", partitions=3)
    s.group_by("cust").aggregate(0, lambda agg, v: agg + 10 // v["qty"], name="tot").to("out")
    with pytest.raises(wb.ProcessingError) as info:
        p.run("memory://", inputs={"orders": rows})
    err = info.value
    assert err.step == "tot" and err.topic == "orig-agg-tot-repartition"
    assert (err.source_topic, err.source_partition, err.source_offset) == source_position(
        rows, 10, partitions=3)


def test_two_repartitions_lead_back_to_the_first_input() -> None:
    rows = orders(bad=5)
    p = wb.Pipeline("orig-two")
    s = p.source("orders", key="id", time="ts", partitions=2)
    (s.key_by("cust").repartition(name="r1").key_by(lambda v: v["id"] % 2)
      .repartition(partitions=3, name="r2").map(lambda v: 10 // v["qty"], name="div").to("out"))
    with pytest.raises(wb.ProcessingError) as info:
        p.run("memory://", inputs={"orders": rows})
    err = info.value
    assert err.topic == "orig-two-r2-repartition"
    assert (err.source_topic, err.source_partition, err.source_offset) == source_position(
        rows, 5)


def test_interleaved_inputs_name_the_right_source() -> None:
    a = [{"id": i, "cust": "x", "qty": 1, "ts": 1_000 + 2 * i} for i in range(6)]
    b = [{"id": 100 + i, "cust": "x", "qty": 0 if i == 4 else 1, "ts": 1_001 + 2 * i}
         for i in range(6)]
    p = wb.Pipeline("orig-merge")
    sa = p.source("a", key="id", time="ts")
    sb = p.source("b", key="id", time="ts")
    (sa.merge(sb).group_by("cust")
       .aggregate(0, lambda agg, v: agg + 1 // v["qty"], name="tot").to("out"))
    with pytest.raises(wb.ProcessingError) as info:
        p.run("memory://", inputs={"a": a, "b": b})
    err = info.value
    assert (err.source_topic, err.source_partition, err.source_offset) == ("b", 0, 4)
    assert err.topic == "orig-merge-tot-repartition" and err.offset == 9  # a0 b0 a1 b1 .. b4


def test_without_tracking_the_error_names_the_repartition_record_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_ORIGINS", "0")
    p = wb.Pipeline("orig-off")
    s = p.source("orders", key="id", time="ts", partitions=2)
    s.key_by("cust").repartition(name="rp").map(lambda v: 10 // v["qty"], name="div").to("out")
    with pytest.raises(wb.ProcessingError) as info:
        p.run("memory://", inputs={"orders": orders()})
    assert info.value.topic == "orig-off-rp-repartition"
    assert info.value.source_topic is None and "which came from" not in str(info.value)
    assert "run with WORKBENCH_ORIGINS=1" in str(info.value)


def test_origins_stay_beside_the_repartition_log_and_out_of_user_sinks() -> None:
    p = wb.Pipeline("orig-sink")
    s = p.source("orders", key="id", time="ts", partitions=2)
    s.key_by("cust").repartition(name="rp").to("out")
    run = p.run("memory://", inputs={"orders": orders(bad=-1)})
    driver = run.driver
    internal = "orig-sink-rp-repartition"
    seen = set()
    for part in range(2):
        for rec in driver.read(internal, part, 0, 100):
            assert rec[4] is None  # no header per record on memory://
            src = driver.origin_of(internal, part, rec[3])
            assert src is not None and src[0] == "orders"
            got = driver.read(*src, 1)[0]
            assert got[1] == rec[1]  # the origin is the input record itself
            seen.add(src)
    assert len(seen) == 12
    out = run.records("out")
    assert len(out) == 12 and all(not r.headers for r in out)
    assert all(driver.origin_of("out", part, 0) is None for part in range(2))


def test_dead_lettered_records_carry_the_source_position() -> None:
    async def picky(v: dict[str, Any]) -> int:
        return 10 // v["qty"]

    rows = orders(bad=4)
    p = wb.Pipeline("orig-dlq")
    s = p.source("orders", key="id", time="ts", partitions=2)
    (s.key_by("cust").repartition(name="rp")
      .map_async(picky, retries=0, dead_letter="dlq", name="call").to("out"))
    run = p.run("memory://", inputs={"orders": rows})
    dead = run.records("dlq")
    assert [r.value["id"] for r in dead] == [4]
    h = dict(dead[0].headers)
    assert h["workbench.error.topic"] == b"orig-dlq-rp-repartition"
    src = source_position(rows, 4)
    assert (h["workbench.error.source.topic"], h["workbench.error.source.partition"],
            h["workbench.error.source.offset"]) == (b"orders", str(src[1]).encode(),
                                                     str(src[2]).encode())
    assert ORIGIN_HEADER not in h


# -- the columns and the header ------------------------------------------------------------------
def test_origin_columns_follow_take_and_concat() -> None:
    a = Batch.from_columns(["k1", "k2"], [1, 2], [10, 20])
    a.origin = OriginColumns(("x",), np.array([0, -1], np.int32), np.array([1, 0], np.int32),
                             np.array([5, 0], np.int64))
    b = Batch.from_columns(["k3"], [3], [30])
    b.origin = OriginColumns(("y", "x"), np.array([0], np.int32), np.array([2], np.int32),
                             np.array([7], np.int64))
    c = Batch.from_columns(["k4"], [4], [40])  # no origins: unknown
    both = Batch.concat([a, b, c])
    assert [both.origin.get(i) for i in range(4)] == [
        ("x", 1, 5), (None, None, None), ("y", 2, 7), (None, None, None)]
    picked = both.take(np.array([2, 0]))
    assert [picked.origin.get(i) for i in range(2)] == [("y", 2, 7), ("x", 1, 5)]
    assert both.take(slice(1, 3)).origin.get(1) == ("y", 2, 7)


def test_origin_header_round_trip_keeps_the_records_own_headers() -> None:
    batch = Batch.from_columns(["a", "b", "c"], [1, 2, 3], [1, 2, 3],
                               headers=[None, (("mine", b"1"),), None])
    batch.origin = OriginColumns(("ordérs", "t"), np.array([0, 1, -1], np.int32),
                                 np.array([3, 0, 0], np.int32),
                                 np.array([2**40 + 256, 0, 0], np.int64))
    sent = with_headers(batch)
    assert sent.origin is None
    hs = sent.headers.tolist()
    assert decode_header(hs[0][0][1]) == ("ordérs", 3, 2**40 + 256)
    assert hs[1][0] == ("mine", b"1") and decode_header(hs[1][1][1]) == ("t", 0, 0)
    assert hs[2] is None
    assert strip_headers(sent).headers.tolist() == [None, (("mine", b"1"),), None]
    plain = with_headers(Batch.from_columns(["a"], [1], [1]))
    assert plain.headers is None and strip_headers(plain) is plain
    assert decode_header(b"short") is None and decode_header(None) is None


def test_the_benchmark_compares_outputs_and_checks_origins() -> None:
    import origins as bench  # benchmarks/origins.py (tests/conftest.py puts it on the path)
    import workload

    data = workload.events(3_000)
    _w, _c, off = bench.timed("memory://", data, False)
    _w, _c, on = bench.timed("memory://", data, True)  # exits if an origin is wrong
    assert off == on and len(off["out"]) == 3_000
