"""Tables (``workbench/runtime/table_ops.py``): ``p.table()``, ``stream.to_table()``,
``Table.filter()``, ``Table.map_values()``, record by record through the TestDriver.

``RECORDED`` holds inputs and the outputs of the real Kafka Streams 4.1.1 TopologyTestDriver
(``builder.table("in", Materialized.as("s")).toStream()``, caching off, ``tests/conformance``).
"""

from __future__ import annotations

from typing import Any

import pytest

import workbench as wb
from workbench.drivers.memory import MemoryDriver
from workbench.errors import ProcessingError
from workbench.runtime import Engine, ManualClock
from workbench.testing import TestDriver

RECORDED: list[tuple[str, dict[str, Any], list[tuple[str, Any, Any, int]],
                     list[tuple[int, Any, Any, int]]]] = [
    ('table-caching-off', {'caching': False, 'op': 'table'},
     [('I', 'A', '1', 1), ('I', 'A', '1', 2), ('I', 'B', None, 3), ('I', 'A', None, 4)],
     [(0, 'A', '1', 1), (1, 'A', '1', 2), (2, 'B', None, 3), (3, 'A', None, 4)]),
    ('table-tombstones-caching-off', {'caching': False, 'op': 'table'},
     [('I', 'A', '1', 5), ('I', 'B', '2', 3), ('I', 'A', '2', 1), ('I', None, 'x', 6),
      ('I', 'C', None, 7), ('I', 'B', None, 8), ('I', 'B', None, 9), ('I', 'A', '3', 10)],
     [(0, 'A', '1', 5), (1, 'B', '2', 3), (2, 'A', '2', 1), (4, 'C', None, 7),
      (5, 'B', None, 8), (6, 'B', None, 9), (7, 'A', '3', 10)]),
]


def _pipe_all(td: TestDriver, topic: str, records: list[tuple[Any, Any, int]],
              out: str = "out") -> list[tuple[Any, ...]]:
    sink = td.output(out)
    got: list[tuple[Any, ...]] = []
    for i, (key, value, ts) in enumerate(records):
        td.input(topic).pipe(key, value, timestamp=ts)
        got.extend((i, r.key, r.value, r.timestamp) for r in sink.read_records())
    return got


@pytest.mark.parametrize("name, topo, records, expected", RECORDED,
                         ids=[c[0] for c in RECORDED])
def test_table_source_matches_kafka_streams_caching_off(
        name: str, topo: dict[str, Any], records: list[tuple[str, Any, Any, int]],
        expected: list[tuple[int, Any, Any, int]]) -> None:
    # every update is forwarded (also a repeated value and an out-of-order timestamp), a null
    # key is dropped, and a tombstone for an absent key is forwarded (caching off)
    p = wb.Pipeline("t")
    p.table("in").to("out")
    with TestDriver(p) as td:
        assert _pipe_all(td, "in", [(k, v, t) for _s, k, v, t in records]) == expected


def test_stream_to_table_behaves_as_a_table_source() -> None:
    records = [("A", "1", 5), ("B", "2", 3), ("A", "2", 1), (None, "x", 6), ("C", None, 7),
               ("B", None, 8), ("A", "3", 10)]
    p = wb.Pipeline("t")
    p.source("in").to_table().to("out")
    with TestDriver(p) as td:
        assert _pipe_all(td, "in", records) == [
            (0, "A", "1", 5), (1, "B", "2", 3), (2, "A", "2", 1), (4, "C", None, 7),
            (5, "B", None, 8), (6, "A", "3", 10)]


def test_table_time_field_sets_the_timestamp() -> None:
    p = wb.Pipeline("t")
    p.table("in", key="id", time="ts").to("out")
    with TestDriver(p) as td:
        td.input("in").pipe("a", {"id": "a", "ts": 42}, timestamp=1)
        td.input("in").pipe("a", None, timestamp=7)  # a tombstone keeps the record time
        assert [(r.key, r.timestamp) for r in td.output("out").read_records()] == [
            ("a", 42), ("a", 7)]


def test_table_time_field_missing_is_a_processing_error() -> None:
    p = wb.Pipeline("t")
    p.table("in", key="id", time="ts", name="prices").to("out")
    with TestDriver(p) as td, pytest.raises(ProcessingError) as info:
        td.input("in").pipe("a", {"id": "a"}, timestamp=1)
    assert info.value.step == "prices"


def test_table_filter_forwards_a_delete_for_every_record_that_fails() -> None:
    # Kafka Streams' KTableFilter without old values (nothing after it asks for them): every
    # record that fails the predicate is forwarded as a delete, whether or not its key passed
    # before (docs/semantics.md, conformance cases tables_filter.json)
    p = wb.Pipeline("t")
    p.table("in").filter(lambda v: v > 10).to("out")
    with TestDriver(p) as td:
        got = _pipe_all(td, "in", [
            ("A", 5, 1),      # fails, was absent: delete
            ("A", 20, 2),     # passes
            ("A", 30, 3),     # passes
            ("A", 7, 4),      # fails, old passed: delete
            ("A", 8, 5),      # fails, old failed: delete
            ("A", None, 6),   # tombstone: delete
            ("B", 11, 7),
            ("B", None, 8),   # tombstone, old passed: delete
            ("C", None, 9),   # tombstone for an absent key: delete
        ])
    assert got == [(0, "A", None, 1), (1, "A", 20, 2), (2, "A", 30, 3), (3, "A", None, 4),
                   (4, "A", None, 5), (5, "A", None, 6), (6, "B", 11, 7), (7, "B", None, 8),
                   (8, "C", None, 9)]


def test_table_map_values_keeps_deletes_and_does_not_call_fn_on_none() -> None:
    calls: list[Any] = []

    def double(v: Any) -> Any:
        calls.append(v)
        return v * 2

    p = wb.Pipeline("t")
    p.table("in").map_values(double).to("out")
    with TestDriver(p) as td:
        got = _pipe_all(td, "in", [("A", 1, 1), ("A", 2, 2), ("A", None, 3), ("B", None, 4)])
    assert got == [(0, "A", 2, 1), (1, "A", 4, 2), (2, "A", None, 3), (3, "B", None, 4)]
    # new values, and old values (for downstream table steps): 1; 2 and old 1; old 2
    assert calls == [1, 2, 1, 2]


def test_filter_after_map_values_forwards_deletes_of_mapped_values() -> None:
    p = wb.Pipeline("t")
    p.table("in").map_values(lambda v: v + 100).filter(lambda v: v < 110).to("out")
    with TestDriver(p) as td:
        got = _pipe_all(td, "in", [("A", 1, 1), ("A", 50, 2), ("A", 60, 3)])
    # 150 and 160 both fail: a delete each (no later step asks for old values)
    assert got == [(0, "A", 101, 1), (1, "A", None, 2), (2, "A", None, 3)]


def test_table_preview_shows_latest_value_per_key() -> None:
    p = wb.Pipeline("t")
    prices = p.table("prices", key="sku", time="ts", sample=[
        {"sku": "a", "price": 1, "ts": 1}, {"sku": "b", "price": 2, "ts": 2},
        {"sku": "a", "price": 3, "ts": 3}, {"sku": "b", "price": None, "ts": 4}])
    frame = prices.to_pandas()
    assert list(frame["key"]) == ["a"]
    assert list(frame["price"]) == [3]
    cheap = prices.map_values(lambda v: {**v, "price": v["price"] * 10}).filter(
        lambda v: v["price"] < 20)
    assert cheap.to_pandas().empty


def test_table_store_survives_a_restart() -> None:
    # the source store is restored: after a restart, the filter still sees the old value 20,
    # so the failing update deletes the key downstream
    p = wb.Pipeline("t")
    p.table("in").filter(lambda v: v > 10).to("out")
    driver = MemoryDriver()

    def run(records: list[tuple[Any, Any, int]]) -> list[Any]:
        engine = Engine(p.plan(), driver, clock=ManualClock(0), commit_interval_ms=2**62)
        engine.start()
        start = driver.end_offset("out", 0)
        driver.append("in", 0, [(k, v, t, None, None) for k, v, t in records])
        engine.process_available()
        engine.close()
        return [(k, v, t) for k, v, t, _o, _h in driver.read("out", 0, start, 100)]

    assert run([(("x", 1), 20, 1)]) == [(("x", 1), 20, 1)]
    assert run([(("x", 1), 5, 2)]) == [(("x", 1), None, 2)]
