"""Re-grouped tables: ``table.group_by(...)`` and its aggregations (Kafka Streams'
``KGroupedTable``).

A table's rows are grouped by a new key; every update of a row moves its contribution: the old
value is subtracted from its old group **first**, then the new value is added to its new group
(two outputs when the group changes, one when it stays; ``docs/semantics.md``). So each
aggregation needs a way to take a value back out: ``count`` and the built-in ``agg`` functions
``sum``, ``count``, ``mean`` and ``list`` have one; ``reduce`` and ``aggregate`` take the
user's ``subtract``.

>>> import workbench as wb
>>> p = wb.Pipeline("users")
>>> users = p.table("users", key="user", sample=[
...     {"user": "u1", "country": "de"}, {"user": "u2", "country": "de"},
...     {"user": "u1", "country": "fr"}])
>>> users.group_by("country").count().to_pandas()[["country", "value"]]
  country  value
0      de      1
1      fr      1
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._nodes import Node
from .aggregations import (
    Aggregation,
    table_agg_spec,
    table_aggregate_spec,
    table_count_spec,
    table_reduce_spec,
)

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .table import Table

__all__ = ["GroupedTable"]


class GroupedTable:
    """A table regrouped by a new key, ready to aggregate: ``count()``, ``agg(...)``,
    ``reduce(add, subtract)`` or ``aggregate(init, add, subtract)``. The result is a table keyed
    by the new key."""

    def __init__(self, pipeline: Pipeline, node: Node, key_name: str | None) -> None:
        self._pipeline = pipeline
        self._node = node
        self._key_name = key_name

    def __repr__(self) -> str:
        field = self._node.params.get("field")
        how = f"by field {field!r}" if isinstance(field, str) else "by a function of the row"
        return (f"<GroupedTable: table {self._node.parents[0].name!r} of pipeline "
                f"{self._pipeline.name!r} regrouped {how}. Aggregate it with .count(), "
                ".agg(total=('field', 'sum')), .reduce(add, subtract) or "
                ".aggregate(init, add, subtract); the result is a table that previews.>")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        import html

        text = repr(self)
        return {"text/plain": text,
                "text/html": f'<div class="wb-grouped"><code>{html.escape(text)}</code></div>'}

    def _aggregate(self, agg: Aggregation, name: str | None) -> Table:
        from .table import Table

        params = {"agg": agg, "window": None, "emit": "update", "key_name": self._key_name,
                  "stores": [("store", "kv")], "table_input": True}
        node = self._pipeline._add_node("aggregate", (self._node,), params, name,
                                        key_changed=False, stateful=True)
        return Table(self._pipeline, node, key_name=self._key_name)

    def count(self, *, name: str | None = None) -> Table:
        """Rows per group; a group whose rows all left counts ``0`` (it is not deleted)."""
        return self._aggregate(table_count_spec(), name)

    def reduce(self, add: Callable[[Any, Any], Any], subtract: Callable[[Any, Any], Any], *,
               name: str | None = None) -> Table:
        """``add(aggregate, value)`` when a row joins a group (a group's first row is its
        aggregate), ``subtract(aggregate, value)`` when it leaves. An aggregate of ``None``
        deletes the group."""
        return self._aggregate(table_reduce_spec(add, subtract), name)

    def aggregate(self, init: Any, add: Callable[[Any, Any], Any],
                  subtract: Callable[[Any, Any], Any], *, name: str | None = None) -> Table:
        """Start a group from ``init`` (a value or a zero-argument function), then
        ``add(aggregate, value)`` when a row joins it and ``subtract(aggregate, value)`` when
        it leaves."""
        return self._aggregate(table_aggregate_spec(init, add, subtract), name)

    def agg(self, *, name: str | None = None, **named: Any) -> Table:
        """pandas-style named aggregations, ``agg(total=("amount", "sum"), n="count")``:
        ``sum``, ``count``, ``mean`` and ``list`` subtract by themselves; ``min``, ``max``,
        ``first`` and ``last`` need a subtractor, ``low=("price", "min", fn)`` with
        ``fn(current, value)`` giving the part's value once ``value`` has left the group."""
        columns = self._pipeline._known_columns(self._node)
        return self._aggregate(table_agg_spec(named, columns), name)
