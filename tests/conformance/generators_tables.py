"""Hypothesis strategies of the generated cases for global tables, versioned tables and the
Processor API's stores (``cases/*.json`` format; shaped like those of ``generators.py``: nearly
every case has output before the end of input, edge cases kept).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.conformance.generators import _flag, _key, timed

__all__ = ["global_join_cases", "session_store_cases", "timestamped_store_cases",
           "versioned_stream_table_cases", "versioned_table_table_cases"]


@st.composite
def global_join_cases(draw: st.DrawFn) -> dict[str, Any]:
    """A stream of orders joined with a global table of customers through the customer named
    in the order's value (``c2|L7``; no customer: ``L7``; or a ``None`` value). Orders have keys
    ``o1``-``o3`` or ``None`` (the stream key is not needed); customers ``c1``-``c3`` get
    updates, tombstones and now and then a ``None`` key. Customer ``c1`` (and maybe ``c2``) is
    in the table first, and most orders name ``c1`` or ``c2``."""
    topology = {"op": "join_global", "how": draw(st.sampled_from(["inner", "left"]))}
    first = ["c1", *draw(st.lists(st.just("c2"), max_size=1))]
    # (is_customer, number, fk: 0 = none, 1..3 = c1..c3, is_null_value, null_key)
    event = st.tuples(st.booleans(), st.integers(1, 3), st.sampled_from([1, 2, 1, 3, 0, 2, 1, 2]),
                      _flag(7), _flag(9))
    events = draw(timed(event, horizon=10, min_size=3, max_size=16))
    if not any(not cust and fk and not null for _ts, (cust, _n, fk, null, _nk) in events):
        events[-1] = (events[-1][0], (False, 1, 1, False, False))
    start = events[0][0]
    records = [{"topic": "right", "key": c, "value": f"r{i}", "ts": start}
               for i, c in enumerate(first)]
    for i, (ts, (cust, n, fk, null, null_key)) in enumerate(events, start=len(first)):
        if cust:
            key = None if null_key else f"c{n}"
            value = None if null else f"r{i}"
        else:
            key = None if null_key else f"o{n}"
            value = None if null else (f"L{i}" if fk == 0 else f"c{fk}|L{i}")
        records.append({"topic": "right" if cust else "left", "key": key, "value": value,
                        "ts": ts})
    return {"name": "generated-global", "topology": topology, "records": records}


def _versioned_events(draw: st.DrawFn, keys: str, history: int,
                      left_too: bool = False, tail: bool = False) -> list[tuple[int, Any]]:
    """``(ts, (is_right, key, is_null))`` events over ``keys``; table (right) records for
    every key come first, at time 0 (with ``left_too`` left ones too), then both sides mixed,
    with many out-of-order timestamps (up to about a history behind the latest, so some are
    beyond it); with ``tail``, mostly a last stream record a history or two later."""
    mixed = st.tuples(st.booleans(), _key(keys, 12), _flag(5))
    events = draw(timed(mixed, horizon=max(4, history), min_size=4, max_size=16, tail=tail))
    if tail:  # the last record (a stream record) moves time past the join's grace
        ts, (_right, k, _null) = events[-1]
        events[-1] = (ts, (False, k or keys[0], False))
    prefix = [(0, (True, k, False)) for k in sorted(set(keys))]
    if left_too:
        prefix += [(0, (False, k, False)) for k in sorted(set(keys))]
    return prefix + events


@st.composite
def versioned_stream_table_cases(draw: st.DrawFn) -> dict[str, Any]:
    """A stream joined with a versioned table (inner or left; a history of 3-30 ms, sometimes
    a join grace below it), with out-of-order table updates and stream records, tombstones and
    ``None`` keys."""
    history = draw(st.integers(3, 30))
    topology: dict[str, Any] = {"op": "join_st", "how": draw(st.sampled_from(["inner", "left"])),
                                "versioned": True, "history": history}
    if draw(_flag(3)):
        topology["join_grace"] = draw(st.integers(0, history))
    events = _versioned_events(draw, "AAB", history, tail="join_grace" in topology)
    records = []
    for i, (ts, (right, k, null)) in enumerate(events):
        if k is None and not right and "join_grace" in topology:
            # Kafka Streams' grace buffer refuses a None key and fails the task (a left join's
            # None-key record); workbench joins it at once (docs/semantics.md)
            k = "B"
        value = None if null else (f"r{i}" if right else f"L{i}")
        records.append({"topic": "right" if right else "left", "key": k, "value": value,
                        "ts": ts})
    if not any(r["topic"] == "left" and r["key"] is not None and r["value"] is not None
               for r in records):
        records.append({"topic": "left", "key": "A", "value": "Lx", "ts": records[-1]["ts"]})
    return {"name": "generated-versioned-st", "topology": topology, "records": records}


@st.composite
def versioned_table_table_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Two versioned tables joined (inner, left, outer) with out-of-order updates and
    tombstones on both sides (KIP-914: out-of-order updates are ignored)."""
    history = draw(st.integers(3, 30))
    topology = {"op": "join_tt", "how": draw(st.sampled_from(["inner", "left", "outer"])),
                "versioned": True, "history": history}
    events = _versioned_events(draw, "AAB", history, left_too=True)
    records = []
    for i, (ts, (right, k, null)) in enumerate(events):
        value = None if null else (f"r{i}" if right else f"L{i}")
        records.append({"topic": "right" if right else "left", "key": k, "value": value,
                        "ts": ts})
    return {"name": "generated-versioned-tt", "topology": topology, "records": records}


def _commands(draw: st.DrawFn, command: st.SearchStrategy[tuple[str, str]], horizon: int,
              name: str, topology: dict[str, Any]) -> dict[str, Any]:
    """A case of ``(key, command)`` inputs at times scaled to ``horizon`` (each input forwards
    one output: what its command returned)."""
    events = draw(timed(command, horizon=horizon, min_size=4, max_size=18))
    records = [{"topic": "in", "key": key, "value": value, "ts": ts}
               for ts, (key, value) in events]
    return {"name": name, "topology": topology, "records": records}


@st.composite
def session_store_cases(draw: st.DrawFn) -> dict[str, Any]:
    """A processor driving a session store (``process_session``, the oracle's
    ``SessionCommands``) with a gap of 1-8, sometimes a retention of 5-40: mostly ``merge``
    (a processor's own session windows), then puts, deletes and removes of sessions near the
    latest times, finds with random bounds, fetches and single-session gets; keys A and B."""
    gap = draw(st.integers(1, 8))
    topology: dict[str, Any] = {"op": "process_session", "gap": gap}
    if draw(_flag(2)):
        topology["retention"] = draw(st.integers(5, 40))
    span = st.tuples(st.integers(0, 60), st.integers(0, 8))

    def session(kind: str) -> st.SearchStrategy[str]:
        return span.map(lambda se: f"{kind}|{se[0]}|{se[0] + se[1]}")

    command = st.one_of(
        st.integers(1, 9).map(lambda n: f"merge|{n}"),
        st.integers(1, 9).map(lambda n: f"merge|{n}"),
        st.tuples(span, st.integers(1, 9)).map(
            lambda x: f"put|{x[0][0]}|{x[0][0] + x[0][1]}|{x[1]}"),
        session("del"), session("remove"), session("get"),
        st.tuples(st.integers(0, 60), st.integers(0, 60)).map(lambda x: f"find|{x[0]}|{x[1]}"),
        st.just("fetch"),
    )
    return _commands(draw, st.tuples(st.sampled_from("AAB"), command), max(4, gap * 2),
                     "generated-session-store", topology)


#: keys of the timestamped-store cases: prefixes of each other, an upper-case one, a non-ASCII
TS_KEYS = ["a", "ab", "abc", "b", "B", "\u00e9"]


@st.composite
def timestamped_store_cases(draw: st.DrawFn) -> dict[str, Any]:
    """A processor driving a timestamped key-value store (``process_timestamped``, the oracle's
    ``TimestampedCommands``): puts (plain, newer-wins, if-absent), deletes and gets at
    out-of-order times, with ranges (both directions, ends that are or are not keys, reversed
    bounds), full scans and prefix scans."""
    key = st.sampled_from(TS_KEYS)
    bound = st.sampled_from([*TS_KEYS, "aa", "c", "A"])
    value = st.integers(0, 99).map(str)
    command = st.one_of(
        value.map(lambda v: f"put|v{v}"), value.map(lambda v: f"newer|v{v}"),
        value.map(lambda v: f"absent|v{v}"), st.just("del"), st.just("get"),
        st.tuples(bound, bound).map(lambda b: f"range|{b[0]}|{b[1]}"),
        st.tuples(bound, bound).map(lambda b: f"rrange|{b[0]}|{b[1]}"),
        st.just("all"), st.just("rall"), st.sampled_from(["a", "ab", "b", "z"]).map(
            lambda p: f"prefix|{p}"),
    )
    return _commands(draw, st.tuples(key, command), 10, "generated-timestamped-store",
                     {"op": "process_timestamped"})
