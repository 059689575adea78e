"""Hypothesis strategies for the generated conformance cases of the rest of the DSL (issue 15,
part A): re-grouped tables, cogroup, suppress, repartition and ``to(topic function)``, table
filters and ``split`` with named branches. Same shape rules as ``generators.py`` (whose
helpers they use): a few keys, ties, out-of-order records, ``None`` keys and values where they
mean something, and time that moves far enough for windows and time limits to pass, so that
nearly every example has output before the end of the input.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.conformance.generators import AGG_VALUE, _case, _flag, _key, _value, timed

__all__ = [
    "cogroup_cases",
    "print_cases",
    "regroup_cases",
    "repartition_cases",
    "split_cases",
    "suppress_cases",
    "table_filter_cases",
]


def _grouped_value(no_group_one_in: int = 8, null_one_in: int = 6
                   ) -> st.SearchStrategy[str | None]:
    """``"<group>|<n>"`` with group ``x``, ``y`` or ``z`` (mostly ``x`` and ``y``), a value
    without a group (``"nogroup"``), or ``None`` (a tombstone)."""
    return st.tuples(st.sampled_from("xyxyz"), st.integers(0, 19),
                     _flag(no_group_one_in), _flag(null_one_in)).map(
        lambda t: None if t[3] else ("nogroup" if t[2] else f"{t[0]}|{t[1]}"))


# ------------------------------------------------------------------------- re-grouped tables
@st.composite
def regroup_cases(draw: st.DrawFn) -> dict[str, Any]:
    """``table.group_by(group).count()`` / ``aggregate(0, +n, -n)`` / ``reduce(+, -)``: rows
    ``u1``-``u4`` moving between groups ``x``/``y``/``z``, into no group, deleted (also when
    absent), out of order, with ``None`` keys now and then."""
    topology = {"op": "table_group_by", "group_by": "fk",
                "agg": draw(st.sampled_from(["count", "sum", "reduce_sum"]))}
    events = draw(timed(st.tuples(_key("1234", 12), _grouped_value()), horizon=10,
                        min_size=3, max_size=16))
    first_ts, (first_key, first_value) = events[0]
    if first_key is None or first_value is None or "|" not in first_value:
        events[0] = (first_ts, ("1", f"x|{draw(st.integers(0, 19))}"))  # one row in a group
    records = [{"topic": "in", "key": None if k is None else f"u{k}", "value": v, "ts": ts}
               for ts, (k, v) in events]
    return _case("generated-regroup", topology, records)


# ----------------------------------------------------------------------------------- cogroup
def _window_spec(draw: st.DrawFn, kinds: tuple[str, ...]) -> tuple[dict[str, Any], int]:
    """A window of one of ``kinds`` with random parameters, and its horizon (how far stream
    time must move for it to close)."""
    kind = draw(st.sampled_from(kinds))
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
    return window, span


@st.composite
def cogroup_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Two or three inputs (``a``, ``b``, ``c``) with aggregators count / sum / minus, over
    keys ``K`` and ``J`` (``None`` keys and values too), without windows or in tumbling,
    hopping, sliding or session windows; each input's time runs on its own (an input may lag
    the others by up to a horizon, D17)."""
    topics = ["a", "b", "c"][: draw(st.integers(2, 3))]
    inputs = [{"topic": t, "agg": draw(st.sampled_from(["count", "sum", "minus"]))}
              for t in topics]
    topology: dict[str, Any] = {"op": "cogroup", "inputs": inputs}
    horizon = 10
    if draw(st.integers(0, 4)) > 0:
        topology["window"], horizon = _window_spec(
            draw, ("tumbling", "hopping", "sliding", "session"))
    events = draw(timed(st.tuples(st.sampled_from(topics), _key("KKJ", 10), AGG_VALUE,
                                  st.integers(0, 2)),
                        horizon=horizon, min_size=3, max_size=16))
    records = []
    for ts, (topic, key, value, lag) in events:
        # one input runs behind the others now and then (by up to a horizon)
        behind = horizon if lag == 1 and topic == topics[-1] else 0
        records.append({"topic": topic, "key": key, "value": value,
                        "ts": max(0, ts - behind)})
    first = records[0]
    if first["key"] is None or first["value"] is None:
        first.update(key="K", value="1")  # the first record counts
    return _case("generated-cogroup", topology, records)


# ---------------------------------------------------------------------------------- suppress
@st.composite
def suppress_cases(draw: st.DrawFn) -> dict[str, Any]:
    """``suppress`` after a windowed count or sum (``until="window-close"``, unbounded or
    with a record bound that fails when full) or after a non-windowed aggregation or a table
    (``wb.TimeLimit``, unbounded or with a record bound that emits early or fails)."""
    kind = draw(st.sampled_from(["window_close", "window_close", "time_limit", "table"]))
    bound = draw(st.sampled_from([None, None, None, 1, 2, 2, 3]))
    suppress: dict[str, Any] = {"until": "window_close" if kind == "window_close"
                                else "time_limit"}
    if kind == "window_close":
        window, horizon = _window_spec(draw, ("tumbling", "hopping", "sliding", "session"))
        topology: dict[str, Any] = {"op": "window_agg", "window": window, "emit": "update",
                                    "agg": draw(st.sampled_from(["count", "sum"]))}
        if bound is not None:
            suppress["max_records"] = bound + 3  # windows of three keys wait together
    else:
        horizon = draw(st.integers(0, 15))
        suppress["time_limit"] = horizon
        if kind == "table":
            topology = {"op": "table"}
        else:
            topology = {"op": "agg", "agg": draw(st.sampled_from(["count", "sum"]))}
        if bound is not None:
            suppress["max_records"] = bound
            suppress["when_full"] = draw(st.sampled_from(["emit_early", "emit_early",
                                                          "shut_down"]))
        horizon = max(horizon, 2)
    topology["suppress"] = suppress
    value = _value(8) if kind == "table" else AGG_VALUE
    events = draw(timed(st.tuples(_key("AABC", 10), value), horizon=horizon, min_size=4))
    records = [{"topic": "in", "key": k, "value": v, "ts": ts} for ts, (k, v) in events]
    if not draw(_flag(8)):  # seven in eight: time moves on past what is held at the end
        records.append({"topic": "in", "key": "B", "value": "1",
                        "ts": max(r["ts"] for r in records) + horizon + 1})
    return _case("generated-suppress", topology, records)


# ------------------------------------------------------------ repartition, to(topic function)
def _fk_value(no_fk_one_in: int = 8, null_one_in: int = 10) -> st.SearchStrategy[str | None]:
    """``"x|3"``-style values (foreign key ``x``, ``y`` or ``z``), a value without one
    (``"nofk"``) or ``None``."""
    return st.tuples(st.sampled_from("xyxyz"), st.integers(0, 9), _flag(no_fk_one_in),
                     _flag(null_one_in)).map(
        lambda t: None if t[3] else ("nofk" if t[2] else f"{t[0]}|{t[1]}"))


@st.composite
def repartition_cases(draw: st.DrawFn) -> dict[str, Any]:
    """``repartition(partitions)`` (after a re-key to the foreign key or not) then straight
    out or counted, or ``to(topic function)`` by the value's foreign key or by the key; keys
    ``A``-``C`` with ``None`` keys and values now and then."""
    events = draw(timed(st.tuples(_key("AABC", 8), _fk_value()), horizon=10, min_size=2))
    records = [{"topic": "in", "key": k, "value": v, "ts": ts} for ts, (k, v) in events]
    if draw(st.booleans()):
        topology: dict[str, Any] = {"op": "repartition",
                                    "then": draw(st.sampled_from(["forward", "count"]))}
        if draw(st.booleans()):
            topology["key_by"] = "fk"
        partitions = draw(st.sampled_from([None, 1, 2, 3]))
        if partitions is not None:
            topology["partitions"] = partitions
        first = records[0]
        if first["key"] is None or first["value"] is None or "|" not in first["value"]:
            first.update(key="A", value="x|1")  # the first record comes out
        return _case("generated-repartition", topology, records)
    if draw(st.booleans()):
        topology = {"op": "to_topic", "by": "key", "topics": ["out-A", "out-B", "out-C",
                                                             "out-null"]}
    else:
        topology = {"op": "to_topic", "topics": ["out-x", "out-y", "out-z", "out-none"]}
    return _case("generated-to-topic", topology, records)


# ------------------------------------------------------------------------------ table filters
@st.composite
def table_filter_cases(draw: st.DrawFn) -> dict[str, Any]:
    """``table.filter(number >= min)`` then ``changes()``, a second filter, ``map_values``,
    ``group_by(...).count()``, an inner/left/outer join, a foreign-key join or a suppress
    (which decide whether the filter forwards deletes for keys it never had); updates,
    deletes (also of absent keys) and ``None`` keys, the right table filled first."""
    then = draw(st.sampled_from(["changes", "filter_changes", "map_changes", "group_count",
                                 "join", "fk_join", "suppress"]))
    topology: dict[str, Any] = {"op": "table_filter", "min": draw(st.integers(0, 9)),
                                "then": then}
    if then == "filter_changes":
        topology["max"] = draw(st.integers(topology["min"], 9))
    if then == "join":
        topology["how"] = draw(st.sampled_from(["inner", "left", "outer"]))
    if then == "suppress":
        topology["suppress"] = {"until": "time_limit", "time_limit": draw(st.integers(0, 5))}
    value = st.tuples(st.sampled_from("xyxyz"), st.integers(0, 9), _flag(6)).map(
        lambda t: None if t[2] else f"{t[0]}|{t[1]}")
    right = then in ("join", "fk_join")
    events = draw(timed(st.tuples(_flag(4) if right else st.just(False), _key("ABBC", 12),
                                  value), horizon=10, min_size=3, max_size=14))
    records = []
    if right:  # the right table first: keys A and B (joins), foreign keys x and y (FK join)
        names = ["x", "y"] if then == "fk_join" else ["A", "B"]
        records = [{"topic": "right", "key": n, "value": f"r{n}", "ts": events[0][0]}
                   for n in names]
    for i, (ts, (is_right, k, v)) in enumerate(events):
        if is_right:
            key = ("x" if k == "A" else "y") if then == "fk_join" else k
            records.append({"topic": "right", "key": key, "value": None if v is None
                            else f"r{i}", "ts": ts})
        else:
            records.append({"topic": "in", "key": k, "value": v, "ts": ts})
    # the first update of the filtered table passes the filter (key A, in the right table)
    first = next((r for r in records if r["topic"] == "in"), None)
    if first is None:  # every drawn event was a right-table update
        first = {"topic": "in", "ts": records[-1]["ts"]}
        records.append(first)
    first.update(key="A", value=f"x|{topology['min']}")
    if then == "suppress":  # stream time moves past the time limit at the end
        last = max(r["ts"] for r in records)
        records.append({"topic": "in", "key": "C", "value": f"y|{topology['min']}",
                        "ts": last + topology["suppress"]["time_limit"] + 1})
    case = _case("generated-table-filter", topology, records)
    if then == "suppress":
        # the oracle's flush record fails the filter whenever min > 0, so it never reaches
        # the suppress buffer: Kafka Streams cannot show the end of the input here
        case["end_of_input"] = False
    return case


# ----------------------------------------------------------------------------- split, print
@st.composite
def split_cases(draw: st.DrawFn) -> dict[str, Any]:
    """``split()`` with one to three branches by the value's foreign key (``x``, ``y``, ``z``
    or none), maybe the same one twice, and a default branch or none."""
    fks = draw(st.lists(st.sampled_from(["x", "y", "z", None]), min_size=1, max_size=3))
    branches = [{"name": f"b{i}", "fk": fk} for i, fk in enumerate(fks)]
    default = draw(st.sampled_from(["other", "other", None]))
    topology = {"op": "split", "branches": branches, "default": default}
    events = draw(timed(st.tuples(_key("AABC", 8), _fk_value(6, 8)), horizon=10, min_size=2))
    records = [{"topic": "in", "key": k, "value": v, "ts": ts} for ts, (k, v) in events]
    if default is None:  # the first record reaches a branch
        fk = fks[0]
        records[0]["value"] = None if fk is None else f"{fk}|1"
    return _case("generated-split", topology, records)


@st.composite
def print_cases(draw: st.DrawFn) -> dict[str, Any]:
    """``print(file, label=...)`` (key and value, or the value alone) of records with ``None``
    keys and values now and then, timestamps out of order."""
    topology = {"op": "print", "label": draw(st.sampled_from(["L", "orders", "p 1"])),
                "mapper": draw(st.sampled_from(["key_value", "value"]))}
    events = draw(timed(st.tuples(_key("AB", 6), _fk_value(6, 6)), horizon=10, min_size=1,
                        max_size=8))
    records = [{"topic": "in", "key": k, "value": v, "ts": ts} for ts, (k, v) in events]
    return _case("generated-print", topology, records)
