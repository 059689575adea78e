"""The ``process`` step: custom processors, their state stores, punctuation and errors.

Expected punctuation outputs were produced by the real Kafka Streams 4.1.1 TopologyTestDriver
(a processor scheduling ``Duration.ofMillis(10)`` STREAM_TIME / ``ofMillis(100)``
WALL_CLOCK_TIME punctuation that forwards ``punct@<timestamp>``; TTD created at wall-clock 1000).
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

import pytest

import workbench as wb
from workbench.drivers.memory import MemoryDriver
from workbench.errors import DefinitionError, ProcessingError
from workbench.runtime.processor_ops import ProcessKeyValueStore, WindowStore
from workbench.testing import TestDriver
from workbench.types import Record

# -- processors used by the tests -------------------------------------------------------------


class Dedupe(wb.Processor):
    """Forwards the first record of each key."""

    def init(self, ctx: Any) -> None:
        self.ctx = ctx
        self.seen = ctx.store("seen")

    def process(self, record: Record) -> None:
        if self.seen.get(record.key) is None:
            self.seen.put(record.key, True)
            self.ctx.forward(record)


class WindowCount(wb.Processor):
    """Per key, counts records in 10 ms tumbling windows (a window store) and forwards
    ``(window_start, count, total over the last three windows)``."""

    def init(self, ctx: Any) -> None:
        self.ctx = ctx
        self.store = ctx.store("counts")

    def process(self, record: Record) -> None:
        start = record.timestamp - record.timestamp % 10
        count = self.store.get(record.key, start, 0) + 1
        self.store.put(record.key, start, count)
        recent = self.store.fetch(record.key, start - 20, start)
        self.ctx.forward(record.key, (start, count, sum(c for _s, c in recent)))


class Summary(wb.Processor):
    """Forwards each record tagged with the stream time it saw, and every 10 ms of stream time
    a summary of how many records arrived since the previous summary."""

    def init(self, ctx: Any) -> None:
        self.ctx = ctx
        self.count = 0
        ctx.schedule(10, "stream_time", self.summary)

    def process(self, record: Record) -> None:
        self.count += 1
        self.ctx.forward(record.key, f"rec {record.value} st={self.ctx.stream_time}")

    def summary(self, ts: int) -> None:
        self.ctx.forward("P", f"punct@{ts} n={self.count}")
        self.count = 0


class WallTicker(wb.Processor):
    def init(self, ctx: Any) -> None:
        self.ctx = ctx
        ctx.schedule("100ms", "wall_clock", self.tick)

    def process(self, record: Record) -> None:
        self.ctx.forward(record.key, f"rec {record.value} st={self.ctx.stream_time}")

    def tick(self, ts: int) -> None:
        self.ctx.forward("W", f"wall@{ts} st={self.ctx.stream_time} sys={self.ctx.wall_clock}")


def _pipe_all(td: TestDriver, records: list[tuple[Any, Any, int]]) -> None:
    inp = td.input("in")
    for k, v, t in records:
        inp.pipe(k, v, t)


def _kvt(records: list[Record]) -> list[tuple[Any, Any, int]]:
    return [(r.key, r.value, r.timestamp) for r in records]


# -- stores -----------------------------------------------------------------------------------


def test_dedupe_with_kv_store_keeps_record_headers_and_timestamps() -> None:
    p = wb.Pipeline("dedupe")
    p.source("in").process(Dedupe, stores={"seen": "kv"}).to("out")
    with TestDriver(p) as td:
        inp = td.input("in")
        inp.pipe("a", 1, 5, headers=(("h", b"1"),))
        inp.pipe("a", 2, 6)
        inp.pipe("b", 3, 4)
        inp.pipe("a", 4, 9)
        inp.pipe("c", 5, 10)
        assert td.output("out").read_records() == [
            Record("a", 1, 5, (("h", b"1"),)),
            Record("b", 3, 4),
            Record("c", 5, 10),
        ]


def test_doctest_pipeline_preview() -> None:
    p = wb.Pipeline("dedupe-preview")
    s = p.source("in", key="id", sample=[{"id": 1}, {"id": 1}, {"id": 2}])
    frame = s.process(Dedupe, stores={"seen": "kv"}).to_pandas()
    assert list(frame["key"]) == [1, 2]


def test_running_count_with_window_store() -> None:
    p = wb.Pipeline("wcount")
    p.source("in").process(WindowCount, stores={"counts": "window"}).to("out")
    with TestDriver(p) as td:
        _pipe_all(td, [("A", 0, 1), ("A", 0, 4), ("B", 0, 5), ("A", 0, 12), ("A", 0, 8),
                       ("A", 0, 25), ("A", 0, 31), ("B", 0, 39)])
        assert _kvt(td.output("out").read_records()) == [
            ("A", (0, 1, 1), 1),
            ("A", (0, 2, 2), 4),
            ("B", (0, 1, 1), 5),
            ("A", (10, 1, 3), 12),
            ("A", (0, 3, 3), 8),
            ("A", (20, 1, 5), 25),   # windows 0, 10, 20: 3 + 1 + 1
            ("A", (30, 1, 3), 31),   # windows 10, 20, 30: 1 + 1 + 1
            ("B", (30, 1, 1), 39),
        ]


def test_window_store_api_and_changelog_round_trip() -> None:
    store = WindowStore("s", "s-changelog")
    store.put("k", 20, "c")
    store.put("k", 0, "a")
    store.put("k", 10, "b")
    store.put(("x", 1), 5, "t")
    assert store.fetch("k", 0, 10) == [(0, "a"), (10, "b")]
    assert store.fetch("k", 1, 100) == [(10, "b"), (20, "c")]
    assert store.fetch("nope", 0, 100) == []
    assert store.get("k", 10) == "b" and store.get("k", 11) is None
    assert store.get("k", 11, 0) == 0
    store.delete("k", 10)
    store.put("k", 20, None)  # a None value deletes
    assert list(store.items()) == [(("k", 0), "a"), ((("x", 1), 5), "t")]
    assert len(store) == 2 and ("k", 0) in store and ("k", 10) not in store
    # the changelog is JSON-friendly; tuple keys come back as tuples
    changes = json.loads(json.dumps(store.drain_changes()))
    # one change per entry since the last drain, in the order of the last changes
    assert changes == [[["k", 0], "a"], [[["x", 1], 5], "t"], [["k", 10], None],
                       [["k", 20], None]]
    restored = WindowStore("s", "s-changelog")
    assert restored.restore([tuple(c) for c in changes]) == 4
    assert list(restored.items()) == list(store.items())
    assert restored.drain_changes() == []

    kv = ProcessKeyValueStore("kv", "kv-changelog")
    kv.put(("u", 1), {"n": 1})
    changes = json.loads(json.dumps(kv.drain_changes()))
    kv2 = ProcessKeyValueStore("kv", "kv-changelog")
    kv2.restore([tuple(c) for c in changes])
    assert kv2.get(("u", 1)) == {"n": 1}


def test_state_restores_from_changelog_across_runs() -> None:
    name = f"proc-restore-{uuid.uuid4().hex}"
    url = f"memory://{name}"

    def pipeline() -> wb.Pipeline:
        p = wb.Pipeline("restore")
        src = p.source("in", key="id", time="ts",
                       sample=[{"id": "a", "ts": 1}, {"id": "a", "ts": 2}, {"id": "b", "ts": 3}])
        src.process(Dedupe, stores={"seen": "kv"}).map(lambda v: v["id"]).to("deduped")
        src.process(WindowCount, stores={"counts": "window"}).to("counts")
        return p

    try:
        first = pipeline().run(url)
        assert [r.value for r in first.records("deduped")] == ["a", "b"]
        changelog = first.driver.read_all("restore-process-2-counts-changelog")
        assert [(k, v) for k, v, *_ in changelog] == [(["a", 0], 2), (["b", 0], 1)]
        # a new pipeline object (a restarted process) on the same log, with more input
        second = pipeline().run(url, inputs={"in": [{"id": "b", "ts": 4}, {"id": "c", "ts": 5},
                                                    {"id": "a", "ts": 6}]})
        assert [r.value for r in second.records("deduped")] == ["a", "b", "c"]
        assert [(r.key, r.value) for r in second.records("counts")] == [
            ("a", (0, 1, 1)), ("a", (0, 2, 2)), ("b", (0, 1, 1)),   # first run
            ("b", (0, 2, 2)), ("c", (0, 1, 1)), ("a", (0, 3, 3)),   # counts carried over
        ]
    finally:
        MemoryDriver.forget(name)


# -- forward ----------------------------------------------------------------------------------


class Forwarder(wb.Processor):
    def process(self, record: Record) -> None:
        ctx = self.ctx
        ctx.forward(record)                                   # as is
        ctx.forward(record._replace(value="replaced"))         # a modified Record
        ctx.forward("k2", "kv")                               # key + value: current ts, headers
        ctx.forward("k3", "ts", 99)                           # explicit timestamp
        ctx.forward("k4", "hd", headers=None)                 # explicit headers
        ctx.forward(record, timestamp=7)                      # Record with a new timestamp


def test_forward_forms() -> None:
    p = wb.Pipeline("fwd")
    p.source("in").process(Forwarder).to("out")
    h = (("x", b"y"),)
    with TestDriver(p) as td:
        td.input("in").pipe("k", "v", 5, headers=h)
        assert td.output("out").read_records() == [
            Record("k", "v", 5, h),
            Record("k", "replaced", 5, h),
            Record("k2", "kv", 5, h),
            Record("k3", "ts", 99, h),
            Record("k4", "hd", 5, None),
            Record("k", "v", 7, h),
        ]


def test_processor_instance_per_task_and_partition() -> None:
    created: list[int] = []

    class Tag(wb.Processor):
        def __init__(self) -> None:
            created.append(1)

        def process(self, record: Record) -> None:
            self.ctx.forward(record.key, (self.ctx.partition, record.value))

    p = wb.Pipeline("parts")
    p.source("in", partitions=2).process(Tag).to("out")
    with TestDriver(p, partitions=2) as td:
        assert len(created) == 2
        for i in range(6):
            td.input("in").pipe(f"k{i}", i, i)
        out = td.output("out").read_records()
        assert sorted(r.value[1] for r in out) == list(range(6))
        parts = {r.key: r.value[0] for r in out}
        assert set(parts.values()) == {0, 1}
        for i in range(6):  # one key stays on one partition
            td.input("in").pipe(f"k{i}", i, 10 + i)
        assert all(parts[r.key] == r.value[0] for r in td.output("out").read_records())


# -- punctuation ------------------------------------------------------------------------------

STREAM_INPUT = [("k", "a", 5), ("k", "b", 7), ("k", "c", 9), ("k", "d", 10), ("k", "e", 24),
                ("k", "f", 31), ("k", "g", 40), ("k", "h", 100), ("k", "i", 3),
                ("k", "j", 110), ("k", "k", 0)]


def _rows(records: list[tuple[Any, Any, int]]) -> list[dict[str, Any]]:
    return [{"k": k, "v": v, "ts": t} for k, v, t in records]


def test_stream_time_punctuation_matches_kafka_streams() -> None:
    p = wb.Pipeline("punct")
    p.source("in", key="k", time="ts").map(lambda row: row["v"]).process(Summary).to("out")
    expected = {  # per piped record: the outputs, from TopologyTestDriver (plus n=)
        "a": [("k", "rec a st=5", 5), ("P", "punct@5 n=1", 5)],
        "b": [("k", "rec b st=7", 7)],
        "c": [("k", "rec c st=9", 9)],
        "d": [("k", "rec d st=10", 10), ("P", "punct@10 n=3", 10)],
        "e": [("k", "rec e st=24", 24), ("P", "punct@24 n=1", 24)],
        "f": [("k", "rec f st=31", 31), ("P", "punct@31 n=1", 31)],
        "g": [("k", "rec g st=40", 40), ("P", "punct@40 n=1", 40)],
        "h": [("k", "rec h st=100", 100), ("P", "punct@100 n=1", 100)],  # once, realigned
        "i": [("k", "rec i st=100", 3)],
        "j": [("k", "rec j st=110", 110), ("P", "punct@110 n=2", 110)],
        "k": [("k", "rec k st=110", 0)],
    }
    with TestDriver(p) as td:
        out = td.output("out")
        for row in _rows(STREAM_INPUT):
            td.input("in").pipe_rows([row])
            assert _kvt(out.read_records()) == expected[row["v"]], row
        td.end()  # no end-of-input punctuation (Kafka Streams has none)
        assert out.read_records() == []
    # a bounded run gives the same records whatever the batch size
    flat = [r for v in expected.values() for r in v]
    for batch_size in (1, 3, 10_000):
        run = p.run(inputs={"in": _rows(STREAM_INPUT)}, batch_size=batch_size)
        assert _kvt(run.records("out")) == flat


def test_stream_time_punctuation_is_aligned_to_multiples_of_the_interval() -> None:
    class P(wb.Processor):
        def init(self, ctx: Any) -> None:
            self.ctx = ctx
            ctx.schedule(10, "stream_time", lambda t: ctx.forward("P", t))

        def process(self, record: Record) -> None:
            pass

    p = wb.Pipeline("align")
    p.source("in").process(P).to("out")
    with TestDriver(p) as td:
        fired = []
        for t in (25, 29, 30, 39, 40, 75, 79, 80):
            td.input("in").pipe("k", None, t)
            fired.append([r.value for r in td.output("out").read_records()])
        # first at the first record (scheduled at 0), then 30, 40, and after the gap to 75
        # it fires once and goes on at 80 (not at 85)
        assert fired == [[25], [], [30], [], [40], [75], [], [80]]


def test_schedule_cancel_and_schedule_inside_process() -> None:
    class P(wb.Processor):
        def init(self, ctx: Any) -> None:
            self.ctx = ctx
            self.handle: Any = None
            self.calls = 0

        def process(self, record: Record) -> None:
            if self.handle is None:
                self.handle = self.ctx.schedule(5, "stream_time", self.tick)

        def tick(self, t: int) -> None:
            self.calls += 1
            self.ctx.forward("tick", self.calls)
            if self.calls == 2:
                self.handle.cancel()

    p = wb.Pipeline("cancel")
    p.source("in").process(P).to("out")
    with TestDriver(p) as td:
        for t in (1, 3, 5, 12, 20, 40):
            td.input("in").pipe("k", None, t)
        assert _kvt(td.output("out").read_records()) == [("tick", 1, 1), ("tick", 2, 5)]


def test_wall_clock_punctuation_matches_kafka_streams() -> None:
    p = wb.Pipeline("wall")
    p.source("in").process(WallTicker).to("out")
    with TestDriver(p, wall_clock_ms=1000) as td:
        out = td.output("out")
        steps: list[tuple[str, Any, list[tuple[Any, Any, int]]]] = [
            ("pipe", ("a", 5), [("k", "rec a st=5", 5)]),
            ("advance", 50, []),
            ("advance", 50, [("W", "wall@1100 st=5 sys=1100", 1100)]),
            ("advance", 99, []),
            ("advance", 1, [("W", "wall@1200 st=5 sys=1200", 1200)]),
            ("pipe", ("b", 7), [("k", "rec b st=7", 7)]),
            ("advance", 250, [("W", "wall@1450 st=7 sys=1450", 1450)]),  # once, realigned
            ("advance", 50, [("W", "wall@1500 st=7 sys=1500", 1500)]),
            ("advance", 100, [("W", "wall@1600 st=7 sys=1600", 1600)]),
        ]
        for what, arg, want in steps:
            if what == "pipe":
                td.input("in").pipe("k", arg[0], arg[1])
            else:
                td.advance_wall_clock(arg)
            assert _kvt(out.read_records()) == want, (what, arg)


def test_wall_clock_punctuation_with_store_updates_changelog() -> None:
    class Flusher(wb.Processor):
        def init(self, ctx: Any) -> None:
            self.ctx = ctx
            self.store = ctx.store("pending")
            ctx.schedule(1000, "wall_clock", self.flush)

        def process(self, record: Record) -> None:
            self.store.put(record.key, (self.store.get(record.key) or 0) + record.value)

        def flush(self, now: int) -> None:
            for k, v in self.store.items():
                self.ctx.forward(k, v)
                self.store.delete(k)

    p = wb.Pipeline("flush")
    p.source("in").process(Flusher, stores={"pending": "kv"}).to("out")
    with TestDriver(p) as td:
        _pipe_all(td, [("a", 1, 1), ("b", 2, 2), ("a", 3, 3)])
        assert td.output("out").read_records() == []
        td.advance_wall_clock(1000)
        assert _kvt(td.output("out").read_records()) == [("a", 4, 1000), ("b", 2, 1000)]
        changelog = td.driver.read_all("flush-process-1-pending-changelog")
        assert [(k, v) for k, v, *_ in changelog][-2:] == [("a", None), ("b", None)]


def test_stream_time_punctuation_output_keeps_order_through_merge() -> None:
    class P(wb.Processor):
        def init(self, ctx: Any) -> None:
            self.ctx = ctx
            ctx.schedule(10, "stream_time", lambda t: ctx.forward("P", f"punct@{t}"))

        def process(self, record: Record) -> None:
            pass

    p = wb.Pipeline("merged")
    src = p.source("in", key="k", time="ts")
    src.process(P).merge(src.map(lambda row: f"rec {row['v']}")).to("out")
    rows = _rows([("k", i, t) for i, t in enumerate((1, 4, 12, 13, 25, 31, 33))])
    with TestDriver(p) as td:
        for row in rows:
            td.input("in").pipe_rows([row])
        expected = _kvt(td.output("out").read_records())
    assert [v for _k, v, _t in expected] == [
        # TopologyTestDriver: a punctuation runs after the record went through every branch
        "rec 0", "punct@1", "rec 1", "rec 2", "punct@12", "rec 3", "rec 4", "punct@25",
        "rec 5", "punct@31", "rec 6"]
    for batch_size in (1, 2, 100):
        run = p.run(inputs={"in": rows}, batch_size=batch_size)
        assert _kvt(run.records("out")) == expected


# -- errors -----------------------------------------------------------------------------------


class Boom(wb.Processor):
    def process(self, record: Record) -> None:
        if record.value == "bad":
            raise ValueError("cannot handle this")
        self.ctx.forward(record)


def test_failing_processor_names_step_origin_and_definition_line() -> None:
    p = wb.Pipeline("boom")
    src = p.source("in")
    line = sys._getframe().f_lineno + 1
    src.process(Boom, name="guard").to("out")
    with TestDriver(p) as td:
        td.input("in").pipe("a", "ok", 1)
        with pytest.raises(ProcessingError) as info:
            td.input("in").pipe("b", "bad", 2)
    err = info.value
    assert err.step == "guard"
    assert (err.topic, err.partition, err.offset) == ("in", 0, 1)
    assert err.defined_at is not None and err.defined_at.endswith(f"test_processors.py:{line}")
    msg = str(err)
    for part in ("'guard'", f"test_processors.py:{line}", "topic 'in' partition 0 offset 1",
                 "ValueError: cannot handle this", "key='b'"):
        assert part in msg
    assert isinstance(err.__cause__, ValueError)

    p2 = wb.Pipeline("boom2")
    p2.source("in", key="k", time="ts").map(lambda row: row["v"]).process(Boom).to("out")
    with pytest.raises(ProcessingError) as info:
        p2.run(inputs={"in": _rows([("a", "ok", 1), ("b", "ok", 2), ("c", "bad", 3)])})
    assert (info.value.topic, info.value.offset) == ("in", 2)


def test_failing_punctuation_names_step_and_time() -> None:
    class P(wb.Processor):
        def init(self, ctx: Any) -> None:
            self.ctx = ctx
            ctx.schedule(10, "stream_time", self.tick)
            ctx.schedule(10, "wall_clock", self.tick)

        def process(self, record: Record) -> None:
            pass

        def tick(self, t: int) -> None:
            if t >= 20:
                raise RuntimeError("tick failed")

    p = wb.Pipeline("ptick")
    p.source("in").process(P, name="ticker").to("out")
    with TestDriver(p) as td:
        td.input("in").pipe("a", 1, 5)
        with pytest.raises(ProcessingError) as info:
            td.input("in").pipe("a", 1, 25)
        assert info.value.step == "ticker"
        assert "stream-time punctuation at 25" in str(info.value)
        assert "RuntimeError: tick failed" in str(info.value)
    with TestDriver(p) as td:
        td.advance_wall_clock(10)
        with pytest.raises(ProcessingError) as info:
            td.advance_wall_clock(10)
        assert info.value.step == "ticker"
        assert "wall-clock punctuation at 20" in str(info.value)


def test_definition_mistakes_in_processors() -> None:
    class BadStore(wb.Processor):
        def init(self, ctx: Any) -> None:
            ctx.store("sen")

        def process(self, record: Record) -> None:
            pass

    p = wb.Pipeline("badstore")
    p.source("in").process(BadStore, stores={"seen": "kv"}).to("out")
    with pytest.raises(DefinitionError, match=r"no state store 'sen'.*Did you mean 'seen'"):
        TestDriver(p)

    class BadKind(wb.Processor):
        def init(self, ctx: Any) -> None:
            ctx.schedule(10, "event_time", print)

        def process(self, record: Record) -> None:
            pass

    p = wb.Pipeline("badkind")
    p.source("in").process(BadKind).to("out")
    with pytest.raises(DefinitionError, match="'stream_time' or 'wall_clock'"):
        TestDriver(p)

    class ForwardInInit(wb.Processor):
        def init(self, ctx: Any) -> None:
            ctx.forward("k", "v")

        def process(self, record: Record) -> None:
            pass

    p = wb.Pipeline("fwdinit")
    p.source("in").process(ForwardInInit).to("out")
    with pytest.raises(ProcessingError, match=r"init.*forward\(\) can only be called"):
        TestDriver(p)

    def failing_factory() -> wb.Processor:
        raise OSError("no resources")

    p = wb.Pipeline("badfactory")
    p.source("in").process(failing_factory, name="mk").to("out")
    with pytest.raises(ProcessingError, match=r"'mk'.*could not create its processor.*OSError"):
        TestDriver(p)

    p = wb.Pipeline("notaprocessor")
    p.source("in").process(lambda: 42).to("out")
    with pytest.raises(DefinitionError, match=r"no process\(record\) method"):
        TestDriver(p)

    class ForwardValueOnly(wb.Processor):
        def process(self, record: Record) -> None:
            self.ctx.forward(record.value)

    p = wb.Pipeline("fwdvalue")
    p.source("in").process(ForwardValueOnly).to("out")
    with TestDriver(p) as td, pytest.raises(ProcessingError, match=r"forward\(\) takes a Record"):
        td.input("in").pipe("k", "v", 1)


def test_process_with_stores_after_key_change_is_repartitioned() -> None:
    p = wb.Pipeline("rekey")
    (p.source("in", partitions=2)
     .key_by(lambda v: v["user"])
     .process(WindowCount, stores={"counts": "window"}, name="per-user")
     .to("out"))
    assert "rekey-per-user-repartition" in p.plan().topics
    with TestDriver(p, partitions=2) as td:
        for i, (user, t) in enumerate([("u1", 1), ("u2", 2), ("u1", 3), ("u1", 14)]):
            td.input("in").pipe(f"order-{i}", {"user": user}, t)
        assert sorted(_kvt(td.output("out").read_records()), key=lambda r: r[2]) == [
            ("u1", (0, 1, 1), 1), ("u2", (0, 1, 1), 2), ("u1", (0, 2, 2), 3),
            ("u1", (10, 1, 3), 14)]
