"""``Table.suppress``: hold a table's updates back (Kafka Streams' ``KTable.suppress``).

Two kinds, as in Kafka Streams 4.1.1 (``docs/semantics.md``; the rules the operator follows are
in :mod:`workbench.runtime.suppress_ops`):

* ``until="window-close"`` (``Suppressed.untilWindowCloses``): a windowed table publishes each
  window's final value once stream time has passed its end plus the grace period (plus the gap
  for sessions); deletes are not published. ``emit="close"`` on the window is the short form
  that needs no buffer.
* ``until=wb.TimeLimit("10s")`` (``Suppressed.untilTimeLimit``): a key's latest value comes out
  once stream time is ``10s`` past the key's first update since it last came out (rate
  limiting); deletes are published like updates.

The buffer may be bounded (``max_records=``, ``max_bytes=``); when it is full,
``when_full="emit-early"`` publishes the oldest keys early and ``when_full="fail"`` stops the run
with an error (Kafka Streams' ``shutDownWhenFull``). ``window-close`` only takes ``"fail"``
(a final result must not come out early).

>>> import workbench as wb
>>> p = wb.Pipeline("s")
>>> clicks = p.source("clicks", key="user", time="t", sample=[
...     {"user": "a", "t": 1}, {"user": "a", "t": 4}, {"user": "b", "t": 12}])
>>> counts = clicks.group_by_key().window(wb.Tumbling(10)).count()
>>> final = counts.suppress(until="window-close")
>>> final.changes().to_pandas()[["user", "value"]]
  user  value
0    a      2
1    b      1
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._time import duration_ms
from .errors import DefinitionError
from .windows import Session

if TYPE_CHECKING:
    from ._nodes import Node

__all__ = ["SuppressSpec", "TimeLimit", "suppress_spec"]

WHEN_FULL = ("emit-early", "fail")


@dataclass(frozen=True, init=False)
class TimeLimit:
    """``until=wb.TimeLimit("10s")``: publish a key's latest value once stream time is this far
    past its first held update (Kafka Streams' ``Suppressed.untilTimeLimit``).

    >>> TimeLimit("10s")
    TimeLimit(ms=10000)
    """

    ms: int

    def __init__(self, duration: Any) -> None:
        object.__setattr__(self, "ms", duration_ms(duration, "TimeLimit"))
        if self.ms < 0:
            raise DefinitionError(f"TimeLimit must be >= 0, got {duration!r}.")


@dataclass(frozen=True)
class SuppressSpec:
    """What ``suppress(...)`` asked for, resolved against the table it suppresses.

    Attributes:
        window_close: ``until="window-close"`` (else a time limit).
        limit: how long a key is held, in stream time: the window's grace (plus the gap for
            sessions) for ``window-close``, else the time limit.
        max_records: buffer bound in records (``None``: unbounded).
        max_bytes: buffer bound in (estimated) bytes (``None``: unbounded).
        when_full: ``"emit-early"`` or ``"fail"``.
        window: ``"time"``, ``"session"`` or ``None``: the kind of keys (windowed keys sort
            and count their bytes as Kafka Streams' windowed serdes write them).
    """

    window_close: bool
    limit: int
    max_records: int | None = None
    max_bytes: int | None = None
    when_full: str = "emit-early"
    window: str | None = None


def _window_of(node: Node) -> Any:
    """The window spec of the windowed aggregation a table comes from (through table steps
    that keep keys), or ``None``."""
    seen = node
    while True:
        if seen.op == "aggregate":
            return seen.params.get("window")
        if seen.op in ("table_filter", "table_map_values", "suppress") and seen.parents:
            seen = seen.parents[0]
            continue
        return None


def _bound(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DefinitionError(f"suppress({what}={value!r}): use a whole number >= 1 (or leave "
                              "it out for an unbounded buffer).")
    return value


def suppress_spec(node: Node, until: Any, max_records: Any, max_bytes: Any,
                  when_full: Any) -> SuppressSpec:
    """Check ``suppress(...)``'s arguments for the table step ``node`` and resolve them."""
    window = _window_of(node)
    kind = None if window is None else ("session" if isinstance(window, Session) else "time")
    records = _bound(max_records, "max_records")
    size = _bound(max_bytes, "max_bytes")
    if when_full is not None and when_full not in WHEN_FULL:
        raise DefinitionError(f"suppress(when_full={when_full!r}): use 'emit-early' (publish "
                              "the oldest keys early) or 'fail' (stop with an error).")
    if until in ("window-close", "window_close"):
        if window is None:
            raise DefinitionError(
                f"suppress(until='window-close') on {node.name!r}: the table is not a windowed "
                "aggregation, so it has no windows to close. Window it first "
                "(.window(wb.Tumbling(...)).count()), or use until=wb.TimeLimit('10s').")
        if when_full == "emit-early":
            raise DefinitionError(
                "suppress(until='window-close', when_full='emit-early'): final results cannot "
                "come out early; a full buffer can only stop the run (when_full='fail', the "
                "default), or leave the buffer unbounded.")
        grace = int(window.grace)
        # sessions wait for the gap too (Kafka: grace + inactivity gap)
        limit = grace + int(window.gap) if isinstance(window, Session) else grace
        return SuppressSpec(True, limit, records, size, "fail", kind)
    if isinstance(until, TimeLimit):
        return SuppressSpec(False, until.ms, records, size, when_full or "emit-early", kind)
    raise DefinitionError(f"suppress(until={until!r}): use 'window-close' or "
                          "wb.TimeLimit('10s').")
