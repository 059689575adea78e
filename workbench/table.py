"""``Table``: a changelog view — the latest value per key (``None`` deletes a key).

Tables come from ``p.table(topic)``, from aggregations and from ``stream.to_table()``. Inside the
engine a table's records carry :class:`~workbench.types.Change` values (new and old value), as
Kafka Streams' KTables do; ``changes()`` turns them into a plain stream of new values, with
``None`` for deletes (tombstones). A table previews as its current contents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._nodes import Node
from ._tracebacks import public
from .errors import DefinitionError
from .joins import check_combine, check_how

if TYPE_CHECKING:
    import pandas as pd

    from .pipeline import Pipeline
    from .stream import Stream

__all__ = ["Table"]


class Table:
    """A table handle; its methods add steps and return new handles."""

    __slots__ = ("_key_name", "_node", "_pipeline", "_windowed")

    def __init__(self, pipeline: Pipeline, node: Node, *, key_name: str | None = None,
                 windowed: bool = False) -> None:
        self._pipeline = pipeline
        self._node = node
        self._key_name = key_name
        self._windowed = windowed

    @property
    def name(self) -> str:
        """The name of the step that produces this table."""
        return self._node.name

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline this table belongs to."""
        return self._pipeline

    def _derive(self, op: str, params: dict[str, Any], name: str | None,
                parents: tuple[Node, ...] | None = None, stateful: bool = False) -> Table:
        node = self._pipeline._add_node(op, parents or (self._node,), params, name,
                                        key_changed=False, stateful=stateful)
        return Table(self._pipeline, node, key_name=self._key_name, windowed=self._windowed)

    # -- steps --------------------------------------------------------------------------------
    def filter(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Table:
        """Keep the keys whose value passes ``fn(value)``; a key whose new value fails is
        deleted from the result."""
        if not callable(fn):
            raise DefinitionError(f"Table.filter() needs a predicate, got {fn!r}.")
        return self._derive("table_filter", {"fn": fn}, name)

    def map_values(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Table:
        """Replace every value by ``fn(value)`` (deletes stay deletes)."""
        if not callable(fn):
            raise DefinitionError(f"Table.map_values() needs a function, got {fn!r}.")
        return self._derive("table_map_values", {"fn": fn}, name)

    def changes(self, *, name: str | None = None) -> Stream:
        """The table's changelog as a stream: one record per update, ``None`` value for a
        delete (like Kafka Streams' ``toStream()``)."""
        from .stream import Stream

        node = self._pipeline._add_node("table_changes", (self._node,),
                                        {"key_name": self._key_name}, name, key_changed=False)
        return Stream(self._pipeline, node)

    def to(self, topic: str, *, partitions: int | None = None, name: str | None = None,
           key: Any = None, value: Any = None) -> Table:
        """Write the changelog to ``topic`` (updates, and ``None`` values for deletes);
        ``key=``/``value=`` are its serdes, as for :meth:`Stream.to`."""
        self.changes().to(topic, partitions=partitions, name=name, key=key, value=value)
        return self

    def join(self, other: Table, *, how: str = "inner",
             combine: Callable[[Any, Any], Any] | None = None,
             on: Callable[[Any], Any] | None = None, name: str | None = None) -> Table:
        """Join with another table on the key (``how`` = inner, left, outer), or, with
        ``on=fk_fn``, a foreign-key join: ``fk_fn(left_value)`` gives the key of ``other``
        (``how`` = inner, left).

        Without ``combine``, dict values merge: the right side's fields are added (absent when
        there is no match).
        """
        if not isinstance(other, Table):
            raise DefinitionError(f"Table.join() needs a table, got {other!r}; to join a stream "
                                  "with a table use stream.join(table).")
        if other._pipeline is not self._pipeline:
            raise DefinitionError("join() of tables from different pipelines.")
        check_combine(combine)
        if on is None:
            check_how(how, ("inner", "left", "outer"), "table-table join")
            return self._derive("join_table_table",
                                {"how": how, "combine": combine,
                                 "stores": [("left", "kv"), ("right", "kv")]},
                                name, parents=(self._node, other._node), stateful=True)
        if not callable(on):
            raise DefinitionError(f"join(on=...) must be a function value -> foreign key, "
                                  f"got {on!r}.")
        check_how(how, ("inner", "left"), "foreign-key join")
        return self._derive("join_foreign_key",
                            {"how": how, "combine": combine, "on": on, "repartition": True,
                             "single_partition": True,
                             "stores": [("left", "kv"), ("right", "kv")]},
                            name, parents=(self._node, other._node), stateful=True)

    @property
    def late(self) -> Stream:
        """Records an aggregation did not count: too late for their window (after grace), with
        a ``None`` key, or with a ``None`` value where Kafka Streams ignores those. Header
        ``workbench.dropped`` says which (``late``, ``null-key``, ``null-value``)."""
        if self._node.op != "aggregate":
            raise DefinitionError(f"table {self.name!r} is not an aggregation; only "
                                  "aggregations have a late output.")
        from .stream import Stream

        name = f"{self._node.name}-late"
        existing = self._pipeline._names.get(name)
        if existing is None or existing.op != "late" or existing.parents != (self._node,):
            existing = self._pipeline._add_node("late", (self._node,), {"output": 1}, name,
                                                key_changed=False)
        return Stream(self._pipeline, existing)

    # -- previews -----------------------------------------------------------------------------
    @public
    def to_pandas(self, limit: int | None = None) -> pd.DataFrame:
        """The table's current contents computed from the samples (one row per key, deletes
        removed), as a DataFrame: key (or key, window_start, window_end), timestamp, values."""
        from .preview import table_frame

        return table_frame(self._pipeline, self._node, limit=limit)

    def __repr__(self) -> str:
        return f"<Table {self._node.name!r} of pipeline {self._pipeline.name!r}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from .display import table_bundle

        return table_bundle(self._pipeline, self._node)
