"""``wb.cogroup``: several grouped streams aggregated into one table, one aggregator per input
(Kafka Streams' ``KGroupedStream.cogroup``).

>>> import workbench as wb
>>> p = wb.Pipeline("score")
>>> clicks = p.source("clicks", key="user", time="t", sample=[
...     {"user": "u1", "t": 1}, {"user": "u2", "t": 2}])
>>> buys = p.source("buys", key="user", time="t", sample=[{"user": "u1", "t": 3, "eur": 5}])
>>> score = wb.cogroup(clicks.group_by_key(), lambda acc, v: acc + 1,
...                    buys.group_by_key(), lambda acc, v: acc + v["eur"]).aggregate(0)
>>> score.to_pandas()[["key", "value"]]
  key  value
0  u1      6
1  u2      1

Every input must be grouped by the same key (``group_by_key()`` or ``group_by(...)``); inputs
grouped by a new key go through repartition topics first. With ``.window(...)`` the aggregate
is per window; each input keeps its own stream time, as in Kafka Streams (see
:mod:`workbench.runtime.cogroup_ops`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .aggregations import aggregate_spec
from .errors import DefinitionError
from .grouped import GroupedStream, WindowedStream
from .windows import Hopping, Session, Sliding, Tumbling

if TYPE_CHECKING:
    from .table import Table

__all__ = ["CogroupedStream", "WindowedCogroupedStream", "cogroup"]

Adder = Callable[[Any, Any], Any]


def cogroup(*inputs: Any) -> CogroupedStream:
    """Cogroup grouped streams, each with its aggregator ``add(aggregate, value)``:
    ``wb.cogroup(a.group_by_key(), add_a, b.group_by_key(), add_b)``; then ``.aggregate(init)``
    (or ``.window(spec).aggregate(init)``) gives one table."""
    if not inputs or len(inputs) % 2:
        raise DefinitionError(
            "cogroup() takes pairs of a grouped stream and its aggregator: "
            "wb.cogroup(a.group_by_key(), add_a, b.group_by_key(), add_b).")
    pairs: list[tuple[GroupedStream, Adder]] = []
    for i in range(0, len(inputs), 2):
        grouped, add = inputs[i], inputs[i + 1]
        if isinstance(grouped, WindowedStream) or not isinstance(grouped, GroupedStream):
            raise DefinitionError(
                f"cogroup() argument {i + 1} must be a grouped stream (stream.group_by_key() "
                f"or stream.group_by(...), not windowed: window the cogroup instead), got "
                f"{grouped!r}.")
        if not callable(add):
            raise DefinitionError(f"cogroup() argument {i + 2} must be the aggregator "
                                  f"add(aggregate, value) of input {i // 2 + 1}, got {add!r}.")
        pairs.append((grouped, add))
    pipeline = pairs[0][0]._pipeline
    seen = set()
    for grouped, _add in pairs:
        if grouped._pipeline is not pipeline:
            raise DefinitionError("cogroup() of grouped streams from different pipelines.")
        if grouped._node in seen:
            raise DefinitionError(f"cogroup(): the grouped stream of step "
                                  f"{grouped._node.name!r} is given twice; give each input "
                                  "once, with one aggregator.")
        seen.add(grouped._node)
    return CogroupedStream(pairs)


class CogroupedStream:
    """Grouped streams with one aggregator each; ``aggregate(init)`` gives the table,
    ``window(spec)`` makes it per window."""

    def __init__(self, pairs: list[tuple[GroupedStream, Adder]],
                 window: Tumbling | Hopping | Sliding | Session | None = None) -> None:
        self._pairs = pairs
        self._window = window

    def __repr__(self) -> str:
        steps = ", ".join(repr(g._node.name) for g, _a in self._pairs)
        how = f" in {self._window!r} windows" if self._window is not None else ""
        return (f"<{type(self).__name__}: steps {steps} cogrouped{how}. Aggregate with "
                ".aggregate(init); the result is a table that previews.>")

    def window(self, spec: Tumbling | Hopping | Sliding | Session) -> WindowedCogroupedStream:
        """Aggregate per window (each input keeps its own stream time; updates are published
        as they happen: use ``suppress(until="window-close")`` for final results)."""
        if self._window is not None:
            raise DefinitionError("this cogroup is already windowed.")
        if not isinstance(spec, Tumbling | Hopping | Sliding | Session):
            raise DefinitionError(f"window() needs wb.Tumbling, wb.Hopping, wb.Sliding or "
                                  f"wb.Session, got {spec!r}.")
        return WindowedCogroupedStream(self._pairs, spec)

    def aggregate(self, init: Any, *, merge: Callable[[Any, Any], Any] | None = None,
                  name: str | None = None) -> Table:
        """One aggregate per key (and window): start from ``init`` (a value or a
        zero-argument function), then each input's ``add(aggregate, value)``. Session windows
        need ``merge(a, b)`` to combine the aggregates of sessions that join."""
        from .grouped import _window_kind
        from .table import Table

        window = self._window
        if isinstance(window, Session) and merge is None:
            raise DefinitionError("session windows merge aggregates when sessions join; pass "
                                  "aggregate(init, merge=...) with a merge(a, b) function.")
        agg = aggregate_spec(init, self._pairs[0][1], merge)
        names = {g._key_name for g, _a in self._pairs}
        key_name = names.pop() if len(names) == 1 else None
        pipeline = self._pairs[0][0]._pipeline
        params = {"agg": agg, "adds": [a for _g, a in self._pairs], "window": window,
                  "emit": "update", "key_name": key_name, "cogroup": True,
                  "stores": [("store", _window_kind(window)), ("times", "kv")]}
        parents = tuple(g._node for g, _a in self._pairs)
        node = pipeline._add_node("aggregate", parents, params, name, key_changed=False,
                                  stateful=True)
        return Table(pipeline, node, key_name=key_name, windowed=window is not None)


class WindowedCogroupedStream(CogroupedStream):
    """A cogroup per window: ``aggregate(init)`` gives a windowed table."""
