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

from tests.conformance.generators import _case, _flag, _key, timed

__all__ = [
    "regroup_cases",
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
