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
    "regroup_cases",
    "suppress_cases",
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
    events = draw(timed(st.tuples(_key("AABC", 10), value), horizon=horizon, min_size=4,
                        tail=True))
    records = [{"topic": "in", "key": k, "value": v, "ts": ts} for ts, (k, v) in events]
    return _case("generated-suppress", topology, records)
