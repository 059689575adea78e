"""Grouped and windowed streams: the step between ``group_by`` and an aggregation.

>>> import workbench as wb
>>> p = wb.Pipeline("g")
>>> s = p.source("in", key="u", time="t", sample=[{"u": "a", "t": 1, "x": 2},
...                                               {"u": "a", "t": 2, "x": 3}])
>>> s.group_by_key().agg(total=("x", "sum"), n="count").to_pandas()[["u", "total", "n"]]
   u  total  n
0  a      5  2
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._nodes import Node
from .aggregations import Aggregation, agg_spec, aggregate_spec, count_spec, reduce_spec
from .errors import DefinitionError
from .windows import Hopping, Session, Sliding, Tumbling

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .table import Table

__all__ = ["GroupedStream", "WindowedStream"]

_EMITS = ("update", "close")


class GroupedStream:
    """A stream grouped by key, ready to aggregate (``count``, ``reduce``, ``aggregate``,
    ``agg``) or to be windowed first (``window``)."""

    def __init__(self, pipeline: Pipeline, node: Node, key_name: str | None) -> None:
        self._pipeline = pipeline
        self._node = node
        self._key_name = key_name

    def _grouping(self) -> str:
        node = self._node
        field = node.params.get("field") if node.op == "group_by" else None
        if isinstance(field, str):
            return f"grouped by field {field!r}"
        if node.op == "group_by":
            return "grouped by a function of the value"
        return "grouped by its key"

    def __repr__(self) -> str:
        source = self._node.parents[0].name if self._node.op == "group_by" and \
            self._node.parents else self._node.name
        return (f"<GroupedStream: step {source!r} of pipeline {self._pipeline.name!r}, "
                f"{self._grouping()}. Aggregate it with .count(), .agg(total=('field', 'sum')), "
                ".reduce(fn) or .aggregate(init, add), or window it first with "
                ".window(wb.Tumbling('1min')); an aggregation returns a table that previews.>")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        import html

        text = repr(self)
        return {"text/plain": text,
                "text/html": f'<div class="wb-grouped"><code>{html.escape(text)}</code></div>'}

    def window(self, spec: Tumbling | Hopping | Sliding | Session,
               emit: str = "update") -> WindowedStream:
        """Aggregate per window. ``emit="update"`` (default, as Kafka Streams) publishes every
        change; ``emit="close"`` publishes each window's final value once it closes."""
        if not isinstance(spec, Tumbling | Hopping | Sliding | Session):
            raise DefinitionError(
                f"window() needs wb.Tumbling, wb.Hopping, wb.Sliding or wb.Session, got {spec!r}."
            )
        if emit not in _EMITS:
            raise DefinitionError(f"window(emit={emit!r}): use 'update' or 'close'.")
        return WindowedStream(self._pipeline, self._node, self._key_name, spec, emit)

    def _aggregate(self, agg: Aggregation, name: str | None) -> Table:
        return _aggregate(self._pipeline, self._node, self._key_name, agg, None, "update", name)

    def count(self, *, name: str | None = None) -> Table:
        """Records per key (see :func:`workbench.aggregations.count_spec` for ``None``
        values)."""
        return self._aggregate(count_spec(), name)

    def reduce(self, fn: Callable[[Any, Any], Any], *, name: str | None = None) -> Table:
        """Combine each key's values with ``fn(aggregate, value)``."""
        return self._aggregate(reduce_spec(fn), name)

    def aggregate(self, init: Any, add: Callable[[Any, Any], Any], *,
                  merge: Callable[[Any, Any], Any] | None = None,
                  name: str | None = None) -> Table:
        """Fold each key's values: start from ``init`` (a value or zero-argument function), then
        ``add(aggregate, value)``."""
        return self._aggregate(aggregate_spec(init, add, merge), name)

    def agg(self, *, name: str | None = None, **named: Any) -> Table:
        """pandas-style named aggregations: ``agg(total=("amount", "sum"), n="count")`` with
        sum, count, min, max, mean, first, last and list."""
        columns = self._pipeline._known_columns(self._node)
        return self._aggregate(agg_spec(named, columns), name)


class WindowedStream(GroupedStream):
    """A grouped stream with a window: its aggregations produce windowed tables whose keys are
    :class:`~workbench.windows.Windowed` and whose previews have ``window_start`` and
    ``window_end`` columns. Records too late for their window go to ``table.late``."""

    def __init__(self, pipeline: Pipeline, node: Node, key_name: str | None,
                 spec: Tumbling | Hopping | Sliding | Session, emit: str) -> None:
        super().__init__(pipeline, node, key_name)
        self.spec = spec
        self.emit = emit

    def window(self, spec: Any, emit: str = "update") -> WindowedStream:
        raise DefinitionError("this stream is already windowed.")

    def __repr__(self) -> str:
        source = self._node.parents[0].name if self._node.op == "group_by" and \
            self._node.parents else self._node.name
        return (f"<WindowedStream: step {source!r} of pipeline {self._pipeline.name!r}, "
                f"{self._grouping()}, in {self.spec!r} windows, emit={self.emit!r}. Aggregate "
                "it with .count(), .agg(total=('field', 'sum')), .reduce(fn) or "
                ".aggregate(init, add); the result is a windowed table that previews.>")

    def _aggregate(self, agg: Aggregation, name: str | None) -> Table:
        if isinstance(self.spec, Session) and agg.merge is None:
            raise DefinitionError(
                "session windows merge aggregates when sessions join; pass "
                "aggregate(init, add, merge=...) with a merge(a, b) function."
            )
        return _aggregate(self._pipeline, self._node, self._key_name, agg, self.spec,
                          self.emit, name)


def _window_kind(spec: Any) -> str:
    if isinstance(spec, Session):
        return "session"
    return "window" if spec is not None else "kv"


def _aggregate(pipeline: Pipeline, parent: Node, key_name: str | None, agg: Aggregation,
               window: Any, emit: str, name: str | None) -> Table:
    from .table import Table

    params = {
        "agg": agg,
        "window": window,
        "emit": emit,
        "key_name": key_name,
        "stores": [("store", _window_kind(window))],
    }
    node = pipeline._add_node("aggregate", (parent,), params, name, key_changed=False,
                              stateful=True)
    return Table(pipeline, node, key_name=key_name, windowed=window is not None)
