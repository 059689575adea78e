"""Stateless steps through the real engine on memory:// and the test driver."""

from __future__ import annotations

from typing import Any

import pytest

import workbench as wb
from workbench.testing import TestDriver


def values(run: Any, topic: str) -> list[Any]:
    return [r.value for r in run.records(topic)]


def test_filter_and_map(clicks: list[dict[str, Any]]) -> None:
    p = wb.Pipeline("t")
    s = p.source("clicks", key="user_id", time="ts", sample=clicks)
    s.filter(lambda e: e["amount"] > 0).map(lambda e: {**e, "cents": round(e["amount"] * 100)}
                                            ).to("paid")
    run = p.run("memory://")
    expected = [{**c, "cents": round(c["amount"] * 100)} for c in clicks if c["amount"] > 0]
    assert values(run, "paid") == expected
    recs = run.records("paid")
    assert [r.key for r in recs] == [c["user_id"] for c in clicks if c["amount"] > 0]
    assert [r.timestamp for r in recs] == [c["ts"] for c in clicks if c["amount"] > 0]


def test_flat_map_key_by_peek() -> None:
    seen: list[Any] = []
    p = wb.Pipeline("t")
    s = p.source("words", sample=[{"line": "a b"}, {"line": ""}, {"line": "c"}])
    (s.flat_map(lambda v: v["line"].split())
      .peek(seen.append)
      .key_by(lambda w: w.upper())
      .to("out"))
    run = p.run("memory://")
    assert [(r.key, r.value) for r in run.records("out")] == [("A", "a"), ("B", "b"),
                                                               ("C", "c")]
    assert seen == ["a", "b", "c"]


def test_key_by_field_and_with_record() -> None:
    p = wb.Pipeline("t")
    s = p.source("in", key="id", time="t", sample=[{"id": 1, "t": 5, "g": "x"}])
    s.key_by("g").to("by-g")
    s.map(lambda r: wb.Record(r.key * 10, r.value["g"], r.timestamp + 1), with_record=True
          ).to("rec")
    s.filter(lambda r: r.key == 1 and r.timestamp == 5, with_record=True).to("flt")
    run = p.run("memory://")
    assert run.records("by-g")[0].key == "x"
    assert run.records("rec") == [wb.Record(10, "x", 6)]
    assert len(run.records("flt")) == 1


def test_flat_map_with_records_changes_keys_and_times() -> None:
    p = wb.Pipeline("t")
    s = p.source("in", sample=[{"n": 2}])
    s.flat_map(lambda r: [wb.Record(i, r.value["n"] * i, 100 + i) for i in range(3)],
               with_record=True).to("out")
    assert p.run("memory://").records("out") == [wb.Record(i, 2 * i, 100 + i) for i in range(3)]


def test_split_first_match_wins_and_rest() -> None:
    p = wb.Pipeline("t")
    s = p.source("in", sample=[{"n": n} for n in range(10)])
    parts = s.split(small=lambda v: v["n"] < 3, even=lambda v: v["n"] % 2 == 0)
    parts.small.to("small")
    parts["even"].to("even")
    parts.rest.to("rest")
    run = p.run("memory://")
    assert [v["n"] for v in values(run, "small")] == [0, 1, 2]
    assert [v["n"] for v in values(run, "even")] == [4, 6, 8]
    assert [v["n"] for v in values(run, "rest")] == [3, 5, 7, 9]
    assert set(parts) == {"small", "even", "rest"}
    with pytest.raises(AttributeError, match="Did you mean 'small'"):
        parts.smal  # noqa: B018


def test_merge_keeps_input_order_whatever_the_batch_size() -> None:
    def build() -> wb.Pipeline:
        p = wb.Pipeline("t")
        s = p.source("in", sample=[{"n": n} for n in range(50)])
        parts = s.split(odd=lambda v: v["n"] % 2 == 1)
        parts.odd.map(lambda v: {"n": v["n"], "side": "odd"}).merge(parts.rest).to("out")
        return p

    results = [
        [v["n"] for v in values(build().run("memory://", batch_size=b), "out")]
        for b in (1, 3, 7, 10_000)
    ]
    assert results[0] == list(range(50))
    assert all(r == results[0] for r in results)


def test_two_sources_interleave_by_timestamp_ties_by_input_order() -> None:
    p = wb.Pipeline("t")
    a = p.source("a", time="t", sample=[{"s": "a", "t": t} for t in (1, 5, 5, 9)])
    b = p.source("b", time="t", sample=[{"s": "b", "t": t} for t in (2, 5, 3, 10)])
    a.merge(b).to("out")
    for batch in (1, 2, 100):
        run = p.run("memory://", batch_size=batch)
        got = [(v["s"], v["t"]) for v in values(run, "out")]
        # smallest head timestamp first; one input keeps its own order (b: 5 before 3)
        assert got == [("a", 1), ("b", 2), ("a", 5), ("a", 5), ("b", 5), ("b", 3), ("a", 9),
                       ("b", 10)], batch


def test_test_driver_pipe_order_and_reads() -> None:
    p = wb.Pipeline("t")
    p.source("in").filter(lambda v: v % 2 == 0).map(lambda v: v * 10).to("out")
    with TestDriver(p, wall_clock_ms=1_000) as td:
        inp, out = td.input("in"), td.output("out")
        inp.pipe("k", 2, timestamp=7)
        inp.pipe("k", 3, timestamp=8)
        inp.pipe_value(4)
        assert out.queue_size == 2
        assert out.read_record() == wb.Record("k", 20, 7)
        assert out.read_key_values() == [(None, 40)]
        assert out.read_records()[0:0] == []
        assert out.is_empty()
        inp.pipe_records([("x", 6, 1), wb.Record("y", 8, 2)])
        assert out.read_values() == [60, 80]
        td.advance_wall_clock(500)
        assert td.clock.now_ms() == 1_500


def test_test_driver_rejects_unknown_topics() -> None:
    p = wb.Pipeline("t")
    p.source("clicks").to("out")
    with TestDriver(p) as td:
        with pytest.raises(wb.DefinitionError, match="Did you mean 'clicks'"):
            td.input("click")
        with pytest.raises(wb.DefinitionError, match="not a topic"):
            td.output("nope")


def test_samples_from_csv_jsonl_and_dataframe(tmp_path: Any) -> None:
    import pandas as pd

    csv = tmp_path / "c.csv"
    csv.write_text("id,ts,x\na,2024-01-01T00:00:00Z,1\nb,2024-01-01T00:00:01Z,2\n")
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"id": "a", "ts": 1, "x": 1}\n\n{"id": "b", "ts": 2, "x": 2}\n')
    frame = pd.DataFrame({"id": ["a", "b"], "ts": pd.to_datetime([1, 2], unit="ms", utc=True),
                          "x": [1, 2]})
    for sample, first_ts in ((csv, 1_704_067_200_000), (jsonl, 1), (frame, 1)):
        p = wb.Pipeline("t")
        p.source("in", key="id", time="ts", sample=sample).to("out")
        recs = p.run("memory://").records("out")
        assert [r.key for r in recs] == ["a", "b"]
        assert recs[0].timestamp == first_ts
        assert recs[1].value["x"] == 2


def test_named_memory_driver_resumes_from_committed_positions() -> None:
    from workbench.drivers.memory import MemoryDriver

    MemoryDriver.forget("resume-test")
    p = wb.Pipeline("resume")
    p.source("in").map(lambda v: v + 1).to("out")
    first = p.run("memory://resume-test", inputs={"in": [1, 2]})
    assert [r.value for r in first.records("out")] == [2, 3]
    second = p.run("memory://resume-test", inputs={"in": [10]})
    assert [r.value for r in second.records("out")] == [2, 3, 11]
    assert second.stats.records_in == 1
    MemoryDriver.forget("resume-test")
