"""The Processor API's timestamped key-value stores and session stores
(``workbench/runtime/process_stores.py``): their API and changelogs, a restart that restores
them, and the definition errors of ``process(stores=...)``. Their behaviour record by record is
checked against Kafka Streams 4.1.1 by ``tests/conformance/cases/processor_stores.json``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

import workbench as wb
from workbench.drivers.memory import MemoryDriver
from workbench.errors import DefinitionError
from workbench.runtime.process_stores import SessionStore, TimestampedKeyValueStore
from workbench.testing import TestDriver
from workbench.types import Record

W = wb.Windowed
VT = wb.ValueAndTimestamp


def _round_trip(changes: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """The changelog records as a driver gives them back (JSON)."""
    return [tuple(c) for c in json.loads(json.dumps(changes))]


# -- timestamped key-value store -------------------------------------------------------------


def test_timestamped_store_api() -> None:
    s = TimestampedKeyValueStore("t", "t-changelog")
    assert s.put("b", "vb", 3) is None
    assert s.put("a", "va", 1) is None
    assert s.put("b", "vb2", 2) == VT("vb", 3)     # the previous entry, whatever its time
    assert s.get("b") == VT("vb2", 2) and s.get("zz") is None
    assert s.put_if_absent("a", "other", 9) == VT("va", 1) and s.get("a") == VT("va", 1)
    assert s.put_if_absent("c", "vc", 4) is None and s.get("c") == VT("vc", 4)
    s.put("ab", "vab", 5)
    assert [k for k, _ in s.all()] == ["a", "ab", "b", "c"]
    assert [k for k, _ in s.reverse_all()] == ["c", "b", "ab", "a"]
    assert [k for k, _ in s.range("a", "b")] == ["a", "ab", "b"]
    assert [k for k, _ in s.reverse_range("a", "b")] == ["b", "ab", "a"]
    assert s.range("c", "a") == []
    assert [k for k, _ in s.prefix_scan("a")] == ["a", "ab"]
    assert s.delete("ab") == VT("vab", 5) and s.delete("ab") is None
    assert s.put("c", None, 7) == VT("vc", 4) and "c" not in s    # a None value deletes
    assert len(s) == 2 and s.items() == [("a", VT("va", 1)), ("b", VT("vb2", 2))]


def test_timestamped_store_changelog_restores_an_equal_store() -> None:
    s = TimestampedKeyValueStore("t", "t-changelog")
    s.put("a", {"n": 1}, 10)
    s.put(("u", 1), [1, 2], 11)
    s.put("gone", "x", 12)
    s.delete("gone")
    s.put("a", {"n": 2}, 13)
    changes = _round_trip(s.drain_changes())
    # one record per key changed since the last drain, in the order of the last changes
    assert changes == [(["u", 1], [[1, 2], 11]), ("gone", None), ("a", [{"n": 2}, 13])]
    assert s.drain_changes() == []
    restored = TimestampedKeyValueStore("t", "t-changelog")
    assert restored.restore(changes) == 3
    assert restored.get(("u", 1)) == VT([1, 2], 11)       # tuple keys come back as tuples
    assert restored.items() == s.items() and restored.drain_changes() == []


# -- session store ---------------------------------------------------------------------------


def test_session_store_api_order_by_end_then_start_descending() -> None:
    s = SessionStore("s", "s-changelog")
    s.put(W("A", 3, 5), 1)
    s.put(W("A", 1, 5), 2)
    s.put(W("A", 0, 4), 4)
    s.put(W("A", 7, 9), 5)
    s.put(W("B", 0, 4), 6)
    assert s.fetch("A") == [(W("A", 0, 4), 4), (W("A", 3, 5), 1), (W("A", 1, 5), 2),
                            (W("A", 7, 9), 5)]
    assert s.backward_fetch("A") == s.fetch("A")[::-1]
    assert s.find_sessions("A", 5, 3) == [(W("A", 3, 5), 1), (W("A", 1, 5), 2)]
    assert s.backward_find_sessions("A", 5, 3) == [(W("A", 1, 5), 2), (W("A", 3, 5), 1)]
    assert s.fetch_session("A", 1, 5) == 2 and s.fetch_session("A", 2, 5) is None
    s.remove(W("A", 3, 5))
    s.put(W("A", 7, 9), None)                     # a None value removes
    s.remove(W("A", 100, 200))                    # absent: nothing happens
    assert s.fetch("A") == [(W("A", 0, 4), 4), (W("A", 1, 5), 2)] and len(s) == 3
    assert s.fetch("nobody") == [] and s.dropped == 0


def test_session_store_retention_and_its_changelog() -> None:
    s = SessionStore("s", "s-changelog", retention=10)
    s.put(W("A", 0, 2), 5)
    s.put(W("A", 20, 25), 1)               # stream time 25: sessions ending <= 15 expire
    assert s.fetch_session("A", 0, 2) is None and s.fetch("A") == [(W("A", 20, 25), 1)]
    s.put(W("A", 3, 15), 2)                # expired already: refused, counted
    s.put(W("A", 5, 16), 3)
    assert s.dropped == 1
    changes = _round_trip(s.drain_changes())
    # the expired session's removal is in the changelog too (a restore does not bring it back)
    assert sorted(map(str, changes)) == sorted(map(str, [
        (["A", 0, 2], None), (["A", 20, 25], 1), (["A", 5, 16], 3)]))
    restored = SessionStore("s", "s-changelog", retention=10)
    assert restored.restore(changes) == 3
    assert restored.fetch("A") == s.fetch("A") and restored.drain_changes() == []
    restored.put(W("A", 1, 15), 9)         # its stream time (25) came back with the sessions
    assert restored.dropped == 1 and restored.fetch_session("A", 1, 15) is None


# -- a restart restores both kinds -----------------------------------------------------------


class Sessionize(wb.Processor):
    """Merges a key's records into sessions (gap 5) in a session store, keeps each key's
    latest value in a timestamped store, and forwards ``(session, count, previous value)``."""

    def init(self, ctx: Any) -> None:
        self.ctx = ctx
        self.sessions = ctx.store("sessions")
        self.latest = ctx.store("latest")

    def process(self, record: Record) -> None:
        key, ts = record.key, record.timestamp
        found = self.sessions.find_sessions(key, ts - 5, ts + 5)
        start = min([ts] + [w.window_start for w, _ in found])
        end = max([ts] + [w.window_end for w, _ in found])
        for w, _ in found:
            self.sessions.remove(w)
        count = 1 + sum(n for _, n in found)
        self.sessions.put(W(key, start, end), count)
        old = self.latest.put(key, record.value["v"], ts)
        self.ctx.forward(key, [start, end, count, None if old is None else list(old)])


def _sessionize(p: wb.Pipeline) -> None:
    p.source("in", key="id", time="ts").process(
        Sessionize, stores={"sessions": ("session", "1s"), "latest": "timestamped"},
    ).to("out")


def test_a_restart_restores_session_and_timestamped_stores() -> None:
    events = [{"id": "a", "ts": 1, "v": 1}, {"id": "a", "ts": 4, "v": 2},
              {"id": "b", "ts": 5, "v": 3}, {"id": "a", "ts": 20, "v": 4},
              {"id": "a", "ts": 15, "v": 5}, {"id": "b", "ts": 8, "v": 6}]
    first, second = events[:3], events[3:]

    def pipeline() -> wb.Pipeline:
        p = wb.Pipeline("sessionize")
        _sessionize(p)
        return p

    name, other = (f"proc-stores-{uuid.uuid4().hex}" for _ in range(2))
    try:
        pipeline().run(f"memory://{name}", inputs={"in": first})
        again = pipeline().run(f"memory://{name}", inputs={"in": second})
        restarted = [(r.key, r.value) for r in again.records("out")]
        single = pipeline().run(f"memory://{other}", inputs={"in": events})
        once = [(r.key, r.value) for r in single.records("out")]
    finally:
        MemoryDriver.forget(name)
        MemoryDriver.forget(other)
    assert restarted == once
    assert once[-3:] == [
        ("a", [20, 20, 1, [2, 4]]),
        ("a", [15, 20, 2, [4, 20]]),      # 15 is within the gap of [20, 20], not of [1, 4]
        ("b", [5, 8, 2, [3, 5]]),
    ]


# -- definition errors -----------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "message"), [
    ("sessions", "store kinds are 'kv', 'window', 'timestamped', 'session'"),
    (("session",), "store kinds are"),
    (("window", "1h"), "store kinds are"),
    (("session", "soon"), "the retention"),
    (("session", 0), "at least 1 ms"),
])
def test_store_declaration_errors_name_the_store(kind: Any, message: str) -> None:
    p = wb.Pipeline("bad-store")
    with pytest.raises(DefinitionError, match=message) as info:
        p.source("in").process(wb.Processor, stores={"sessions": kind})
    assert "'sessions'" in str(info.value)


def test_an_undeclared_store_is_named_with_a_suggestion() -> None:
    class Wrong(wb.Processor):
        def init(self, ctx: Any) -> None:
            ctx.store("session")

        def process(self, record: Record) -> None:
            pass

    p = wb.Pipeline("undeclared")
    p.source("in").process(Wrong, stores={"sessions": "session"}).to("out")
    with pytest.raises(wb.WorkbenchError, match=r"no state store 'session'.*sessions"), \
            TestDriver(p) as td:
        td.input("in").pipe("k", 1, 1)


# -- the debugger shows them -------------------------------------------------------------------


def test_debugger_state_shows_sessions_and_timestamps() -> None:
    import pandas as pd

    from workbench import debug

    p = wb.Pipeline("sessionize-debug")
    p.source("in", key="id", time="ts", sample=[
        {"id": "a", "ts": 1, "v": 1}, {"id": "a", "ts": 4, "v": 2}, {"id": "b", "ts": 5, "v": 3},
        {"id": "a", "ts": 30, "v": 4}]).process(
        Sessionize, stores={"sessions": ("session", "1s"), "latest": "timestamped"},
        name="sess").to("out")
    st = debug.state_at(p, offset=3)
    sessions = st.state["sess-sessions"]
    ms = lambda t: pd.Timestamp(t, unit="ms", tz="UTC")  # noqa: E731
    assert list(sessions["key"]) == ["a", "a", "b"]
    assert list(sessions["window_start"]) == [ms(1), ms(30), ms(5)]
    assert list(sessions["window_end"]) == [ms(4), ms(30), ms(5)]
    assert list(sessions["value"]) == [2, 1, 1]
    latest = st.state["sess-latest"]
    assert list(latest["key"]) == ["a", "b"] and list(latest["value"]) == [4, 3]
    assert list(latest["timestamp"]) == [ms(30), ms(5)]


def test_preview_of_a_processor_with_both_stores() -> None:
    p = wb.Pipeline("sessionize-preview")
    s = p.source("in", key="id", time="ts", sample=[
        {"id": "a", "ts": 1, "v": 1}, {"id": "a", "ts": 4, "v": 2}, {"id": "b", "ts": 5, "v": 3}])
    frame = s.process(Sessionize, stores={"sessions": "session", "latest": "timestamped"}
                      ).to_pandas()
    assert list(frame["value"]) == [[1, 1, 1, None], [1, 4, 2, [1, 1]], [5, 5, 1, None]]


def test_a_none_key_fails_the_step_as_in_kafka_streams() -> None:
    with pytest.raises(ValueError, match="a key cannot be None"):
        TimestampedKeyValueStore("t", "c").put(None, 1, 1)
    with pytest.raises(ValueError, match="a key cannot be None"):
        SessionStore("s", "c").find_sessions(None, 0, 1)
    p = wb.Pipeline("none-key")
    p.source("in").process(Sessionize, stores={"sessions": "session", "latest": "timestamped"},
                           name="sess").to("out")
    with pytest.raises(wb.ProcessingError, match=r"step 'sess'.*store 'sess-sessions': a key "
                                                 r"cannot be None"), TestDriver(p) as td:
        td.input("in").pipe(None, {"v": 1}, 1)


def test_kv_and_window_stores_refuse_a_none_key_too() -> None:
    """The older store kinds, like the new ones: on Kafka a None key would fail the whole
    transaction when its changelog record is sent (INVALID_RECORD on a compacted topic)."""
    from workbench.runtime.processor_ops import ProcessKeyValueStore, WindowStore

    with pytest.raises(ValueError, match="a key cannot be None"):
        ProcessKeyValueStore("k", "c").put(None, 1)
    with pytest.raises(ValueError, match="a key cannot be None"):
        WindowStore("w", "c").put(None, 0, 1)

    class Last(wb.Processor):  # type: ignore[misc]
        def init(self, context: Any) -> None:
            self.ctx = context
            self.store = context.store("last")

        def process(self, record: Any) -> None:
            self.store.put(record.key, record.value)

    p = wb.Pipeline("none-key-kv")
    p.source("in").process(Last, stores={"last": "kv"}, name="keep").to("out")
    with pytest.raises(wb.ProcessingError, match=r"step 'keep'.*store 'keep-last': a key "
                                                 r"cannot be None"), TestDriver(p) as td:
        td.input("in").pipe(None, {"v": 1}, 1)
