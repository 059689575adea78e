"""Versioned tables (``workbench/runtime/versioned.py``): the store's versions and lookups as
Kafka Streams' ``RocksDBVersionedStore`` keeps them, joins that read the version valid at a stream
record's timestamp (with and without a grace buffer), table-table joins that ignore out-of-order
updates, restarts, previews and definition errors. (Record-by-record agreement with Kafka
Streams: ``tests/conformance/cases/versioned.json`` and the generated families.)"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import workbench as wb
from workbench.drivers.memory import MemoryDriver
from workbench.keys import key_id
from workbench.run import append_inputs
from workbench.runtime import Engine
from workbench.runtime.versioned import NOT_PUT, VersionedStore
from workbench.testing import TestDriver


def store(history: int = 10) -> VersionedStore:
    return VersionedStore("s", "c", history)


def test_lookups_see_the_version_valid_at_their_time() -> None:
    s = store(1000)
    assert s.put("K", "p10", 10) is True
    assert s.put("K", "p30", 30) is True
    assert s.put("K", "p20", 20) is False  # out of order, kept as a version
    assert [s.get("K", t) for t in (5, 10, 19, 20, 29, 30, 99)] == [
        None, "p10", "p10", "p20", "p20", "p30", "p30"]
    assert s.put("K", None, 40) is True  # a tombstone ends the latest version
    assert s.latest("K") is None
    assert [s.get("K", t) for t in (35, 40, 45)] == ["p30", None, None]


def test_history_boundary() -> None:
    """FINDINGS D18: the version valid at the boundary stays; beyond it only the latest value
    (if it is old enough) is found; puts beyond it are refused."""
    s = store(10)
    s.put("J", "j0", 0)
    s.put("K", "p0", 0)
    s.put("K", "p50", 50)
    assert s.get("K", 45) == "p0" and s.get("K", 41) == "p0"
    assert s.get("K", 35) is None
    assert s.put("K", "p30", 30) is NOT_PUT
    assert s.get("J", 5) == "j0"  # the latest value never expires


def test_tombstone_at_the_latest_timestamp_leaves_no_version() -> None:
    """As in Kafka Streams: deleting at exactly the latest value's timestamp erases it, so an
    older value put next is the latest again (found by the generated tests)."""
    s = store(3)
    s.put("A", "r0", 1)
    s.put("A", None, 1)
    assert s.put("A", "r4", 0) is True
    assert s.get("A", 1) == "r4"


def test_state_survives_the_changelog() -> None:
    s = store(100)
    for t, v in [(10, "a"), (30, "c"), (20, "b"), (40, None), (35, "d"), (50, "e")]:
        s.put("K", v, t)
    s.put(key_id(("x", 1)), "tuple", 5)
    copy = store(100)
    copy.restore(s.drain_changes())
    for t in range(0, 60):
        assert copy.get("K", t) == s.get("K", t), t
    assert copy.get(key_id(("x", 1)), 7) == "tuple" and copy.observed == s.observed


def prices(grace: Any = None, history: str = "1s") -> wb.Pipeline:
    p = wb.Pipeline("prices")
    table = p.table("prices", history=history)
    joined = p.source("sales").join(table, how="left", combine=lambda s, pr: (s, pr),
                                    **({"grace": grace} if grace is not None else {}))
    joined.to("out")
    return p


def test_stream_joins_the_version_valid_at_its_timestamp() -> None:
    with TestDriver(prices()) as td:
        pr, sales = td.input("prices"), td.input("sales")
        pr.pipe("K", 10, timestamp=10)
        pr.pipe("K", 30, timestamp=30)
        pr.pipe("K", 20, timestamp=20)
        for t in (25, 15, 35, 5):
            sales.pipe("K", f"s{t}", timestamp=t)
        assert td.output("out").read_values() == [("s25", 20), ("s15", 10), ("s35", 30),
                                                  ("s5", None)]


def test_grace_waits_for_late_table_updates_and_the_end_flushes() -> None:
    with TestDriver(prices(grace="10ms")) as td:
        pr, sales = td.input("prices"), td.input("sales")
        pr.pipe("K", "p0", timestamp=0)
        sales.pipe("K", "s5", timestamp=5)
        pr.pipe("K", "p4", timestamp=4)
        sales.pipe("J", "j12", timestamp=12)
        assert td.output("out").read_values() == []
        sales.pipe("K", "s30", timestamp=30)
        assert td.output("out").read_values() == [("s5", "p4"), ("j12", None)]
        sales.pipe("K", "s8", timestamp=8)  # already older than buffer time - grace: at once
        assert td.output("out").read_values() == [("s8", "p4")]
        td.end()
        assert td.output("out").read_values() == [("s30", "p4")]


def test_restart_keeps_versions_and_the_grace_buffer() -> None:
    """Stopping after part of the input and continuing in a new run gives the outputs of one
    engine that goes on: the versioned store and the records waiting in the grace buffer come
    back from their changelogs (and the buffer's time from the committed metadata)."""
    prices_in = [{"k": "K", "v": f"p{t}", "t": t} for t in (0, 20, 10, 40, 30)]
    sales_in = [{"k": "K", "v": f"s{t}", "t": t} for t in (5, 15, 25, 35, 45, 21)]

    def build() -> wb.Pipeline:
        p = wb.Pipeline("restart-versioned")
        table = p.table("prices", key="k", time="t", history=100)
        p.source("sales", key="k", time="t").join(
            table, how="left", grace=8, combine=lambda s, pr: [s["v"], pr and pr["v"]]).to("out")
        return p

    def outputs(restart: bool) -> list[Any]:
        driver = MemoryDriver()
        append_inputs(build(), driver, {"prices": prices_in, "sales": sales_in[:4]})
        engine = Engine(build().plan(), driver)
        engine.process_available()  # no end of input: the buffer keeps what waits
        if restart:
            engine.close()
            engine = Engine(build().plan(), driver)
        append_inputs(build(), driver, {"sales": sales_in[4:]})
        engine.run_until_end()
        return [(r[1], r[2]) for r in driver.read_all("out")]

    expected = outputs(restart=False)
    assert len(expected) == 6
    assert outputs(restart=True) == expected


def test_table_table_join_ignores_out_of_order_updates() -> None:
    p = wb.Pipeline("tt")
    left = p.table("left", history=1000)
    right = p.table("right", history=1000)
    left.join(right, combine=lambda a, b: f"{a}+{b}").changes().to("out")
    with TestDriver(p) as td:
        lt, rt = td.input("left"), td.input("right")
        lt.pipe("K", "L10", timestamp=10)
        rt.pipe("K", "R10", timestamp=10)
        lt.pipe("K", "L5", timestamp=5)
        rt.pipe("K", "R20", timestamp=20)
        rt.pipe("K", "R15", timestamp=15)
        assert td.output("out").read_values() == ["L10+R10", "L10+R20"]
        assert sum(td.engine.dropped_counts().values()) == 2


def test_changelog_and_preview() -> None:
    """The table's changelog has every update (out-of-order ones too); its preview shows the
    latest version per key."""
    p = wb.Pipeline("preview")
    rows = [{"k": "A", "v": 1, "t": 10}, {"k": "A", "v": 2, "t": 5}, {"k": "B", "v": 3, "t": 1},
            {"k": "B", "t": 7}, {"k": "B", "v": 4, "t": 3}]
    table = p.table("t", key="k", time="t", sample=rows, history="1h")
    changes = table.changes().to_pandas()
    assert [None if pd.isna(v) else int(v) for v in changes["v"]] == [1, 2, 3, None, 4]
    frame = table.to_pandas()
    assert list(frame["key"]) == ["A"] and list(frame["v"]) == [1]


def test_definition_errors() -> None:
    p = wb.Pipeline("errors")
    plain = p.table("plain")
    versioned = p.table("versioned", history=50)
    stream = p.source("s")
    with pytest.raises(wb.DefinitionError, match="needs a versioned table"):
        stream.join(plain, grace=5)
    with pytest.raises(wb.DefinitionError, match="may not exceed"):
        stream.join(versioned, grace=60)
    with pytest.raises(wb.DefinitionError, match="derived from a versioned table"):
        stream.join(versioned.filter(lambda v: True))
    with pytest.raises(wb.DefinitionError, match="at least 1 ms"):
        p.table("zero", history=0)
