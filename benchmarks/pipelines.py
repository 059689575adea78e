"""The benchmark pipelines P1-P4 (see workload.py), in two variants, for every driver script.

* ``lambda``: as the README writes them today, with Python functions (:func:`is_paid`,
  :func:`add_cents`). The plain-Python references call the very same functions per record.
* ``expr``: with column expressions (``wb.col``, ``Stream.assign``) and built-in aggregations,
  to be compared with pandas. Until the package has ``wb.col`` these are not available:
  :func:`expressions_available` says so, and the scripts print "n/a" rows.

Every builder takes a suffix for the application, sink and late-output names, so that a driver
script can run the same case again on the same server with fresh outputs and positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workload import GAP, GRACE, WINDOW

import workbench as wb

CASES = ("P1", "P2", "P3", "P4")
NO_EXPRESSIONS = "n/a: wb.col not available yet"


# ---------------------------------------------------------------- the user's functions
def is_paid(e: dict[str, Any]) -> bool:
    """P1's filter."""
    return bool(e["amount"] > 0)


def add_cents(e: dict[str, Any]) -> dict[str, Any]:
    """P1's map."""
    return {**e, "amount_cents": round(e["amount"] * 100)}


def profile_time(_v: Any) -> int:
    """Profiles exist from the start of event time."""
    return 0


def expressions_available() -> bool:
    """Whether this workbench has column expressions (issue 11)."""
    return hasattr(wb, "col")


@dataclass(frozen=True)
class Built:
    """A pipeline and the topics a script reads back."""

    pipeline: wb.Pipeline
    sink: str
    late: str | None  # the late output's topic (None for P1)
    source: str
    profiles: str | None = None  # P3's table topic


def build(case: str, variant: str = "lambda", *, sfx: str = "", source: str = "events",
          partitions: int | None = None) -> Built:
    """Pipeline ``case`` (P1..P4) in ``variant`` (``lambda`` or ``expr``); topics ``p1{sfx}``,
    ``p2-late{sfx}``, ...; application ``bench-p1-lambda{sfx}``; ``partitions`` for the
    source and the sinks (``None``: the driver's default)."""
    if case not in CASES:
        raise ValueError(f"unknown case {case!r}; one of {CASES}")
    if variant not in ("lambda", "expr"):
        raise ValueError(f"unknown variant {variant!r}")
    if variant == "expr" and not expressions_available():
        raise RuntimeError(NO_EXPRESSIONS)
    c = case.lower()
    p = wb.Pipeline(f"bench-{c}-{variant}{sfx}")
    sink = f"{c}{sfx}"
    late = None if case == "P1" else f"{c}-late{sfx}"
    events = p.source(source, key="user_id", time="ts", partitions=partitions)
    profiles = None
    (_lambda if variant == "lambda" else _expr)(case, p, events, _Sinks(sink, late, partitions))
    if case == "P3":
        profiles = "profiles"
    return Built(p, sink, late, source, profiles)


@dataclass(frozen=True)
class _Sinks:
    sink: str
    late: str | None
    partitions: int | None

    def write(self, table: Any) -> None:
        """``table.to(sink)``, and its late records to the late topic."""
        table.to(self.sink, partitions=self.partitions).late.to(
            str(self.late), partitions=self.partitions)


def _paid_lambda(events: wb.Stream) -> wb.Stream:
    return events.filter(is_paid).map(add_cents)


def _lambda(case: str, p: wb.Pipeline, events: wb.Stream, o: _Sinks) -> None:
    if case == "P1":
        _paid_lambda(events).to(o.sink, partitions=o.partitions)
    elif case == "P2":
        o.write(_paid_lambda(events)
                .group_by_key()
                .window(wb.Tumbling(WINDOW, grace=GRACE), emit="close")
                .agg(total=("amount", "sum"), n="count", name="p2"))
    elif case == "P3":
        users = p.table("profiles", key="user_id", time=profile_time)
        o.write(_paid_lambda(events)
                .join(users)
                .group_by("country")
                .window(wb.Tumbling(WINDOW, grace=GRACE), emit="close")
                .count(name="p3"))
    else:
        o.write(events.group_by_key()
                .window(wb.Session(GAP, grace=GRACE))
                .count(name="p4"))


def _paid_expr(events: wb.Stream) -> wb.Stream:
    col = wb.col  # type: ignore[attr-defined]
    return events.filter(col("amount") > 0).assign(  # type: ignore[attr-defined]
        amount_cents=(col("amount") * 100).round())


def _expr(case: str, p: wb.Pipeline, events: wb.Stream, o: _Sinks) -> None:
    if case == "P1":
        _paid_expr(events).to(o.sink, partitions=o.partitions)
    elif case == "P2":
        o.write(_paid_expr(events)
                .group_by("user_id")
                .window(wb.Tumbling("60s", grace="5s"), emit="close")
                .agg(total=("amount", "sum"), n="count", name="p2"))
    elif case == "P3":
        users = p.table("profiles", key="user_id", time=profile_time)
        o.write(_paid_expr(events)
                .join(users)
                .group_by("country")
                .window(wb.Tumbling("60s", grace="5s"), emit="close")
                .agg(n="count", name="p3"))
    else:
        o.write(events.group_by("user_id")
                .window(wb.Session("30s", grace="5s"))
                .agg(n="count", name="p4"))
