"""Queryable state in Python: the left-right maps and the views of a running engine."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import workbench as wb
from workbench.service import LeftRight, NotFound, start


def _set_all(copy: dict[int, int], op: tuple[int, int]) -> None:
    copy[op[0]] = op[1]


def test_left_right_readers_never_see_a_partial_commit() -> None:
    lr: LeftRight[dict[int, int]] = LeftRight(dict)
    keys = range(200)
    lr.publish([(k, 0) for k in keys], _set_all)
    stop = threading.Event()
    seen: list[int] = []
    torn: list[set[int]] = []

    def reader() -> None:
        while not stop.is_set():
            with lr.read() as m:
                values = set(m.values())
            if len(values) != 1:
                torn.append(values)
            seen.append(next(iter(values)))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    published = 0
    for commit in range(1, 400):
        if lr.publish([(k, commit) for k in keys], _set_all):
            published += 1
    time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    assert not torn, f"a reader saw values of several commits: {torn[:3]}"
    assert published > 0 and max(seen) > 0
    with lr.read() as m:  # whatever was deferred, the last publish left both copies whole
        assert len(set(m.values())) == 1


def test_left_right_writer_does_not_wait_for_a_slow_reader() -> None:
    lr: LeftRight[dict[int, int]] = LeftRight(dict)
    assert lr.publish([(1, 1)], _set_all)  # copy A published with 1=1
    with lr.read() as m:  # a reader inside A
        assert m == {1: 1}
        assert lr.publish([(1, 2)], _set_all)  # B gets 1=1, 1=2; published
        started = time.perf_counter()
        assert not lr.publish([(1, 3)], _set_all)  # A is being read: deferred, no wait
        assert time.perf_counter() - started < 0.05
        assert m == {1: 1}  # the reader's copy did not change under it
    assert lr.publish([], _set_all)  # A catches up with 2 and 3
    with lr.read() as m:
        assert m == {1: 3}
    assert lr.deferred == 1


def _pipeline() -> wb.Pipeline:
    p = wb.Pipeline("views")
    clicks = p.source("clicks", key="user", time="ts", sample=[
        {"user": f"u{i % 3}", "ts": 1000 * i, "amount": i} for i in range(30)])
    clicks.group_by("user").agg(total=("amount", "sum"), avg=("amount", "mean"),
                                name="totals").to("totals-out")
    clicks.group_by("user").window(wb.Tumbling("10s", grace="1h")).count(name="per-10s")
    clicks.group_by("user").window(wb.Session("2s", grace="1h")).count(name="sessions")
    p.table("profiles", key="user", sample=[{"user": "u1", "name": "Ann"},
                                            {"user": "u2", "name": "Bob"}], name="profiles")
    return p


def test_reads_on_a_running_job() -> None:
    run = start(_pipeline(), "memory://")
    try:
        assert {t["name"] for t in run.tables()} == {"totals", "per-10s", "sessions",
                                                     "profiles"}
        # u1: amounts 1, 4, ..., 28 (10 records)
        row = run.service.views  # noqa: F841  (the views are public too)
        deadline = time.monotonic() + 30
        while True:
            try:
                got = run.get("totals", "u1")
                if got["value"]["total"] == sum(range(1, 30, 3)):
                    break
            except NotFound:
                pass
            assert time.monotonic() < deadline, "the totals never arrived"
            time.sleep(0.05)
        assert got == {"key": "u1", "value": {"total": 145, "avg": 14.5}, "timestamp": 28000}
        assert run.get("totals-out", "u1") == got  # the sink topic names the table too
        windows = run.get("per-10s", "u1")
        assert [(w["window_start"], w["window_end"], w["value"]) for w in windows] == [
            (0, 10000, 3), (10000, 20000, 4), (20000, 30000, 3)]
        assert [w["window_start"] for w in run.get("per-10s", "u1", time_from=10000)] == [
            10000, 20000]
        assert [w["window_start"] for w in run.get("per-10s", "u1", time_from=5000,
                                                   time_to=15000)] == [10000]
        sessions = run.get("sessions", "u0")  # u0 every 3 s, gap 2 s: one session each
        assert len(sessions) == 10 and sessions[0]["window_end"] == 0
        assert run.get("profiles", "u2")["value"] == {"user": "u2", "name": "Bob"}
        assert [r["key"] for r in run.range("totals", from_key="u1")] == ["u1", "u2"]
        assert [r["key"] for r in run.range("totals", to_key="u0")] == ["u0"]
        with pytest.raises(NotFound, match="no queryable table or store 'total'") as e:
            run.get("total", "u1")
        assert "totals" in e.value.known
        with pytest.raises(NotFound, match="has no key 'nobody'"):
            run.get("totals", "nobody")
    finally:
        run.stop()
        result = run.wait(60)
    assert len(result.frame("totals-out")) == 30


def test_readers_in_other_threads_while_records_flow() -> None:
    p = wb.Pipeline("views-flow")
    src = p.source("n", key="k", sample=[{"k": i % 50, "v": 1} for i in range(20_000)])
    src.group_by("k").count(name="counts")
    errors: list[BaseException] = []
    reads: list[dict[Any, int]] = []
    run = start(p, "memory://", commit_interval="10ms",
                on_engine=lambda e: setattr(e, "batch_size", 500))

    def reader() -> None:
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                counts = {r["key"]: r["value"] for r in run.range("counts")}
                reads.append(counts)
                if sum(counts.values()) == 20_000:
                    return
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.stop()
    run.wait(60)
    assert not errors
    # each read saw one committed state: the counts of a prefix of the input (the first n
    # records, key i % 50), never some keys before a commit and others after it
    torn = []
    for counts in reads:
        n = sum(counts.values())
        prefix = {k: (n - k + 49) // 50 for k in range(50) if n > k}
        if counts != prefix:
            torn.append((n, counts))
    assert not torn, torn[:2]
    assert len({sum(c.values()) for c in reads}) > 3  # reads really happened while records flowed
    assert sum(r["value"] for r in run.range("counts")) == 20_000


def test_process_stores_are_queryable() -> None:
    class Last(wb.Processor):  # type: ignore[misc]
        def init(self, context: Any) -> None:
            self.store = context.store("last")

        def process(self, record: Any) -> None:
            self.store.put(record.key, record.value)

    p = wb.Pipeline("views-proc")
    p.source("in", key="k", sample=[{"k": "a", "v": 1}, {"k": "a", "v": 2}]).process(
        Last, stores={"last": "kv"}, name="keep")
    run = start(p, "memory://", until="end")
    run.wait(60)
    assert run.get("keep-last", "a")["value"] == {"k": "a", "v": 2}


def test_keys_equal_in_python_but_not_on_the_wire_stay_apart() -> None:
    p = wb.Pipeline("views-keys")
    p.source("in", key=lambda v: v["k"], sample=[{"k": 1}, {"k": 1.0}, {"k": True},
                                                {"k": 1}, {"k": ["a", 2]}]).group_by_key(
    ).count(name="c")
    run = start(p, "memory://", until="end")
    run.wait(60)
    assert run.get("c", 1)["value"] == 2
    assert run.get("c", 1.0)["value"] == 1
    assert run.get("c", True)["value"] == 1
    assert run.get("c", ("a", 2)) == {"key": ["a", 2], "value": 1, "timestamp": 0} or \
        run.get("c", ("a", 2))["value"] == 1
    assert len(run.range("c")) == 4


def test_left_right_applies_each_op_once_to_each_copy() -> None:
    applied: list[tuple[int, int]] = []
    lr: LeftRight[dict[int, int]] = LeftRight(dict)

    def apply(copy: dict[int, int], op: int) -> None:
        applied.append((id(copy), op))
        copy[op] = op

    for commit in range(100):
        assert lr.publish([commit], apply)
        assert lr.backlog <= 1  # the retired copy lags one commit, never more
    with lr.read():
        assert lr.publish([100], apply)  # the other copy: published
        assert not lr.publish([101], apply)  # deferred: this copy is being read
    assert lr.publish([], apply)
    assert lr.publish([], apply)
    counts: dict[int, int] = {}
    for _copy, op in applied:
        counts[op] = counts.get(op, 0) + 1
    assert counts == {op: 2 for op in range(102)}
    with lr.read() as m:
        assert sorted(m) == list(range(102))
