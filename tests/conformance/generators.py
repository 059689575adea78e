"""Hypothesis strategies for the generated conformance cases (``cases/*.json`` format).

Each strategy draws one case of a family. They are shaped so that nearly every case produces
output (the suite requires 90% per family, see ``test_generated.py``) while keeping the edge
cases that make a comparison worth doing:

- **time** moves forward in steps scaled to the topology's own horizon (window size + grace,
  gap + grace, join window + grace), so windows really close and parked join records really
  expire within a case; ties (step 0) are common; about a third of the records are out of
  order, some within the grace period and some beyond it (late);
- **keys** come from a small set (two or three keys), so records meet in windows, sessions and
  joins, plus a ``None`` key now and then;
- **values** are sometimes ``None`` (tombstones for tables, ignored or counted records for
  aggregations);
- **joins** with a table populate the table first (a short prefix of table records), and
  foreign keys are drawn mostly from the keys the right side has.

Values of join inputs are unique (``L3``, ``r5``: the letter and the record's index), so a join
result shows which records met.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

__all__ = [
    "aggregation_cases",
    "foreign_key_cases",
    "stream_stream_cases",
    "stream_table_cases",
    "table_cases",
    "table_table_cases",
    "timed",
    "windowed_cases",
]


def _key(keys: str, null_one_in: int) -> st.SearchStrategy[str | None]:
    """One of ``keys`` (one letter each, a letter repeated in ``keys`` coming more often), or
    ``None`` about once in ``null_one_in`` draws.

    Hypothesis favours the smallest and the largest choice; both are ``keys[0]`` here, so the
    rare choices (``None``, the last key) stay rare.
    """
    pool: list[str | None] = [keys[i % len(keys)] for i in range(len(keys) * (null_one_in - 1))]
    pool.insert(len(pool) // 2, None)
    pool.append(keys[0])
    return st.sampled_from(pool)


def _flag(one_in: int) -> st.SearchStrategy[bool]:
    """True about once in ``one_in`` draws (not at either end of the range, which hypothesis
    favours)."""
    return st.integers(0, one_in - 1).map(lambda i: i == one_in // 2)


@st.composite
def timed(draw: st.DrawFn, events: st.SearchStrategy[Any], horizon: int = 10,
          min_size: int = 3, max_size: int = 14, jumps: bool = True,
          tail: bool = False) -> list[tuple[int, Any]]:
    """``[(ts, event)]`` with time scaled to ``horizon`` (how far stream time must move for a
    window to close or a parked join record to expire).

    Time moves forward by 0 (a tie), by a small step, by up to ``horizon``, or (``jumps``) by
    about one to two horizons, which closes what is open; about a third of the records are out
    of order, up to ``horizon + 5`` behind the latest timestamp (so some are within grace and
    some are late). With ``tail``, three cases in four end with one more record a horizon or
    two later, as a stream that goes on would (so that final results come out before the end
    of the input).
    """
    horizon = max(2, horizon)
    forward = [st.just(0), st.integers(1, 3), st.integers(1, horizon)]
    if jumps:
        forward.append(st.integers(horizon // 2, 2 * horizon))
    step = st.one_of(*forward)
    late = st.one_of(st.just(0), st.just(0), st.integers(1, horizon + 5))
    steps = draw(st.lists(st.tuples(step, late, events), min_size=min_size, max_size=max_size))
    if tail and not draw(_flag(4)):
        steps.append((draw(st.integers(horizon + 2, 2 * horizon + 2)), 0, draw(events)))
    now = draw(st.integers(0, 30))
    out = []
    for ahead, behind, event in steps:
        now += ahead
        out.append((max(0, now - behind), event))
    return out


def _case(name: str, topology: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "topology": topology, "records": records}


# ------------------------------------------------------------------------ windowed aggregations
def _value(null_one_in: int) -> st.SearchStrategy[str | None]:
    """A number 0..19 as a string, or ``None`` about once in ``null_one_in`` draws."""
    pool: list[str | None] = [str(i % 20) for i in range(max(20, null_one_in - 1))]
    pool.insert(len(pool) // 2, None)
    return st.sampled_from(pool)


AGG_VALUE = _value(21)


@st.composite
def windowed_cases(draw: st.DrawFn, kind: str, emit: str | None = None) -> dict[str, Any]:
    """A windowed count or sum over keys ``A``-``C`` (tumbling, hopping, sliding or session)."""
    window: dict[str, Any] = {"type": kind}
    if kind == "tumbling":
        window["size"] = span = draw(st.integers(1, 20))
    elif kind == "hopping":
        window["size"] = span = draw(st.integers(2, 20))
        window["advance"] = draw(st.integers(1, window["size"]))
    elif kind == "sliding":
        window["difference"] = span = draw(st.integers(1, 15))
    else:
        window["gap"] = span = draw(st.integers(1, 10))
    grace = draw(st.one_of(st.none(), st.integers(0, 15)))
    if grace is not None:
        window["grace"] = grace
        span += grace
    topology = {"op": "window_agg", "window": window,
                "agg": draw(st.sampled_from(["count", "sum"])),
                "emit": emit or draw(st.sampled_from(["update", "close"]))}
    events = draw(timed(st.tuples(_key("AABC", 10), AGG_VALUE), horizon=span, min_size=4,
                        tail=topology["emit"] == "close"))
    records = [{"topic": "in", "key": k, "value": v, "ts": ts} for ts, (k, v) in events]
    return _case(f"generated-{kind}", topology, records)


# ------------------------------------------------------------ non-windowed aggregations, tables
@st.composite
def aggregation_cases(draw: st.DrawFn) -> dict[str, Any]:
    """count / sum / reduce, grouped by key or by a field of the value (a repartition)."""
    group_by = draw(st.sampled_from(["key", "fk"]))
    topology = {"op": "agg", "agg": draw(st.sampled_from(["count", "sum", "reduce_concat"])),
                "group_by": group_by}
    value = _value(8)
    if group_by == "fk":  # "<fk>|<n>", or no foreign key (one in eight), or None
        value = st.tuples(st.integers(0, 7), value).map(
            lambda fv: fv[1] if fv[1] is None or fv[0] == 4 else f"{'xyz'[fv[0] % 3]}|{fv[1]}")
    events = draw(timed(st.tuples(_key("ABC", 7), value), horizon=10, min_size=3))
    records = [{"topic": "in", "key": k, "value": v, "ts": ts} for ts, (k, v) in events]
    return _case("generated-agg", topology, records)


@st.composite
def table_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Table updates, tombstones (also for absent keys), out-of-order updates, ``None`` keys."""
    events = draw(timed(st.tuples(_key("ABC", 10), _flag(4)), horizon=10, min_size=1))
    records = [{"topic": "in", "key": k, "value": None if tomb else f"v{i}", "ts": ts}
               for i, (ts, (k, tomb)) in enumerate(events)]
    return _case("generated-table", {"op": "table"}, records)


# ----------------------------------------------------------------------------------- joins
def _two_sided(events: list[tuple[int, Any]], key: str) -> list[dict[str, Any]]:
    """Records of ``(is_right, key, is_null)`` events; values are unique (``L3``, ``r5``), so
    join results show which records met.

    Both sides always have a record with a key and a value: if a side has none, the last event
    (the one before it, for the second side) becomes one, with key ``key``.
    """
    events = list(events)
    for position, side in enumerate((False, True)):
        if not any(right == side and k is not None and not null
                   for _ts, (right, k, null) in events):
            index = len(events) - 1 - position
            events[index] = (events[index][0], (side, key, False))
    records = []
    for i, (ts, (right, k, null)) in enumerate(events):
        value = None if null else (f"r{i}" if right else f"L{i}")
        records.append({"topic": "right" if right else "left", "key": k, "value": value,
                        "ts": ts})
    return records


@st.composite
def stream_stream_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Inner, left and outer stream-stream joins over keys ``K`` (mostly) and ``J``; mostly
    starting with a left and a right record that join."""
    how = draw(st.sampled_from(["inner", "left", "outer"]))
    before, after = draw(st.integers(0, 12)), draw(st.integers(0, 12))
    grace = draw(st.integers(0, 8))
    if before == after == grace == 0:
        # a join store of retention 0 keeps nothing, so such a join never matches
        # (hand-written case ss-inner-zero-window); one millisecond of grace instead
        grace = 1
    topology = {"op": "join_ss", "how": how, "before": before, "after": after, "grace": grace}
    # inner joins need records close together; left and outer joins also need time to move on,
    # so that unmatched records come out before the end of the input
    horizon = max(before, after) + grace if how != "inner" else (before + after) // 2
    events = draw(timed(st.tuples(st.booleans(), _key("KKKJ", 12), _flag(12)),
                        horizon=horizon, min_size=4, max_size=16,
                        jumps=how != "inner", tail=how != "inner"))
    if not draw(_flag(4)):
        # three cases in four start with a left and a right record of key K that meet
        # (the one that comes first arrives at the first record's time)
        first = draw(st.booleans())
        events = [(events[0][0], (first, "K", False)), (events[0][0], (not first, "K", False)),
                  *events]
    return _case("generated-ss", topology, _two_sided(events, "K"))


@st.composite
def _table_first(draw: st.DrawFn, keys: str, null_one_in: int, tombstone_one_in: int,
                 horizon: int, left_too: bool = False) -> list[tuple[int, Any]]:
    """``(ts, (is_right, key, is_null))`` events: right (table) records for every key of
    ``keys`` but the last one first (in any order, maybe one of them twice), then both sides
    mixed (the last key of ``keys`` has no table record until the mixed part gives it one).
    With ``left_too``, three cases in four also start the left side with a ``keys[0]``
    record."""
    first = sorted(set(keys[:-1]))
    prefix = [(True, key, False) for key in draw(st.permutations(first))] + draw(st.lists(
        st.tuples(st.just(True), st.sampled_from(first), st.just(False)), max_size=1))
    if left_too and not draw(_flag(4)):
        prefix.append((False, keys[0], False))
    mixed = st.tuples(st.booleans(), _key(keys, null_one_in), _flag(tombstone_one_in))
    events = draw(timed(mixed, horizon=horizon, min_size=3, max_size=16))
    start = events[0][0]
    return [(start, e) for e in prefix] + events


@st.composite
def stream_table_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Inner and left stream-table joins; the table gets records first, then both sides mix
    (table tombstones, ``None`` stream values and keys included)."""
    topology = {"op": "join_st", "how": draw(st.sampled_from(["inner", "left"]))}
    events = draw(_table_first("AABBC", 10, 5, horizon=10))
    return _case("generated-st", topology, _two_sided(events, "A"))


@st.composite
def table_table_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Inner, left and outer table-table joins with tombstones on both sides; the right table
    (and mostly the left one too) gets records first, then both sides mix."""
    topology = {"op": "join_tt", "how": draw(st.sampled_from(["inner", "left", "outer"]))}
    events = draw(_table_first("AAAB", 12, 5, horizon=10, left_too=True))
    return _case("generated-tt", topology, _two_sided(events, "A"))


@st.composite
def foreign_key_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Left: orders ``o1..o4`` whose value ``c2|L7`` names customer ``c2`` (or no customer,
    or a tombstone); right: customers ``c1..c3`` (tombstones too). Customer ``c1`` (and maybe
    ``c2``) comes first, and orders name ``c1`` or ``c2`` most of the time."""
    topology = {"op": "join_fk", "how": draw(st.sampled_from(["inner", "left"]))}
    first = ["c1", *draw(st.lists(st.just("c2"), max_size=1))]
    # fk: 0 = no foreign key, 1..3 = c1..c3; customers c1 and c2 are named most often
    event = st.tuples(st.booleans(), st.integers(1, 4),
                      st.sampled_from([1, 2, 1, 3, 0, 2, 1, 2]), _flag(6))
    events = draw(timed(event, horizon=10, min_size=3, max_size=16))
    if not any(not right and fk and not null for _ts, (right, _n, fk, null) in events):
        # at least one order names a customer
        events[-1] = (events[-1][0], (False, events[-1][1][1], 1, False))
    start = events[0][0]
    records = [{"topic": "right", "key": c, "value": f"r{i}", "ts": start}
               for i, c in enumerate(first)]
    for i, (ts, (right, n, fk, null)) in enumerate(events, start=len(first)):
        if right:
            key, value = f"c{max(1, n - 1)}", None if null else f"r{i}"
        else:
            key = f"o{n}"
            value = None if null else (f"L{i}" if fk == 0 else f"c{fk}|L{i}")
        records.append({"topic": "right" if right else "left", "key": key, "value": value,
                        "ts": ts})
    return _case("generated-fk", topology, records)
