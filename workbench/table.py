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

    from .grouped_table import GroupedTable
    from .pipeline import Pipeline
    from .stream import Stream

__all__ = ["Table", "versioned_history"]


def versioned_history(node: Node) -> tuple[int | None, bool]:
    """``(history, direct)`` of a table step: the history of the versioned table it is (or is
    derived from through ``filter``/``map_values``), ``None`` for an ordinary table; ``direct``
    when the step is the versioned table itself."""
    direct = True
    while node.op in ("table_filter", "table_map_values") and node.parents:
        node, direct = node.parents[0], False
    if node.op == "table_source" and node.params.get("history") is not None:
        return int(node.params["history"]), direct
    return None, direct


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
                parents: tuple[Node, ...] | None = None, stateful: bool = False,
                auto_named: bool | None = None) -> Table:
        node = self._pipeline._add_node(op, parents or (self._node,), params, name,
                                        key_changed=False, stateful=stateful,
                                        auto_named=auto_named)
        return Table(self._pipeline, node, key_name=self._key_name, windowed=self._windowed)

    # -- steps --------------------------------------------------------------------------------
    def filter(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Table:
        """Keep the keys whose value passes ``fn(value)``; a key whose new value fails is
        deleted from the result. As in Kafka Streams, every update whose new value fails is
        forwarded as a delete, also for keys the result never had, unless a later step needs
        the previous values (``group_by``, ``suppress``, table joins): then only keys that
        leave the result are (``docs/semantics.md``)."""
        if not callable(fn):
            raise DefinitionError(f"Table.filter() needs a predicate, got {fn!r}.")
        table = self._derive("table_filter", {"fn": fn}, name)
        node = table._node
        pipeline = self._pipeline
        node.params["old_values"] = lambda: old_values_needed(pipeline, node)
        return table

    def map_values(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Table:
        """Replace every value by ``fn(value)`` (deletes stay deletes)."""
        if not callable(fn):
            raise DefinitionError(f"Table.map_values() needs a function, got {fn!r}.")
        return self._derive("table_map_values", {"fn": fn}, name)

    def group_by(self, key: str | Callable[[Any], Any], *, name: str | None = None,
                 with_record: bool = False) -> GroupedTable:
        """Regroup the rows by a field name or a function of the row's value (with
        ``with_record=True``: of its :class:`~workbench.types.Record`), then aggregate with
        ``count``, ``agg``, ``reduce(add, subtract)`` or ``aggregate(init, add, subtract)``:
        when a row changes, its old value leaves its old group before its new value joins the
        new one (Kafka Streams' ``KTable.groupBy``). A row whose group is ``None`` is in no
        group (it reaches the aggregation's ``late`` output). See
        :mod:`workbench.grouped_table`."""
        from .errors import did_you_mean
        from .grouped_table import GroupedTable

        if isinstance(key, str):
            columns = self._pipeline._known_columns(self._node)
            if columns is not None and key not in columns:
                raise DefinitionError(
                    f"group_by({key!r}): the rows of table {self.name!r} have no field "
                    f"{key!r}." + did_you_mean(key, columns))
            params: dict[str, Any] = {"field": key, "fn": None, "with_record": False}
            key_name: str | None = key
        elif callable(key):
            params = {"field": None, "fn": key, "with_record": with_record}
            key_name = None
        else:
            raise DefinitionError(f"Table.group_by() needs a field name or a function of the "
                                  f"row, got {key!r}.")
        node = self._pipeline._add_node("table_group_by", (self._node,), params, name,
                                        key_changed=True)
        return GroupedTable(self._pipeline, node, key_name)

    def suppress(self, until: Any = "window-close", *, max_records: int | None = None,
                 max_bytes: int | None = None, when_full: str | None = None,
                 name: str | None = None) -> Table:
        """Hold updates back (Kafka Streams' ``suppress``): ``until="window-close"`` publishes
        each window's final value once the window closes (a windowed table; deletes are not
        published), ``until=wb.TimeLimit("10s")`` a key's latest value once stream time is
        10 s past its first held update. ``max_records``/``max_bytes`` bound the buffer; when
        it is full, ``when_full="emit-early"`` (default for a time limit) publishes the oldest
        keys early, ``"fail"`` (default and only choice for window-close) stops the run. See
        :mod:`workbench.suppress`."""
        from .suppress import suppress_spec

        spec = suppress_spec(self._node, until, max_records, max_bytes, when_full)
        return self._derive("suppress", {"spec": spec, "key_name": self._key_name,
                                         "stores": [("buffer", "kv")]}, name, stateful=True)

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
            versioned = (versioned_history(self._node)[0] is not None,
                         versioned_history(other._node)[0] is not None)
            return self._derive("join_table_table",
                                {"how": how, "combine": combine, "versioned": versioned,
                                 "stores": [("left", "kv"), ("right", "kv")]},
                                name, parents=(self._node, other._node), stateful=True)
        if not callable(on):
            raise DefinitionError(f"join(on=...) must be a function value -> foreign key, "
                                  f"got {on!r}.")
        check_how(how, ("inner", "left"), "foreign-key join")
        return self._foreign_key_join(other, how=how, combine=combine, on=on, name=name)

    def _foreign_key_join(self, other: Table, *, how: str,
                          combine: Callable[[Any, Any], Any] | None, on: Callable[[Any], Any],
                          name: str | None) -> Table:
        """KIP-213 as Kafka Streams runs it (:mod:`workbench.runtime.fk_ops`): subscriptions
        go to the right table's partitions through ``<app>-<join>-subscription-registration
        -repartition`` (partitioned like the right table), answers come back through
        ``<app>-<join>-subscription-response-repartition`` (partitioned like the left table)."""
        pipeline = self._pipeline
        join = name if name is not None else pipeline._auto_name("join_foreign_key")
        subscribe = pipeline._add_node(
            "fk_subscribe", (self._node,),
            {"how": how, "on": on, "versioned": versioned_history(self._node)[0] is not None},
            f"{join}-subscribe", key_changed=True, auto_named=True)
        answers = pipeline._add_node(
            "fk_subscriptions", (subscribe, other._node),
            {"versioned": versioned_history(other._node)[0] is not None,
             "stores": [("store", "kv"), ("right", "kv")],
             "repartition_topics": {0: f"{join}-subscription-registration"},
             "copartition": True},
            f"{join}-subscriptions", key_changed=True, stateful=True, auto_named=True)
        return self._derive("join_foreign_key",
                            {"how": how, "combine": combine, "on": on,
                             "stores": [("left", "kv"), ("results", "kv")],
                             "repartition_topics": {1: f"{join}-subscription-response"},
                             "copartition": True},
                            join, parents=(self._node, answers), stateful=True,
                            auto_named=name is None)

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


#: steps that make the tables they read send previous values (Kafka Streams 4.1.1 calls
#: ``enableSendingOldValues`` on them): re-grouping, suppress and foreign-key joins
_NEEDS_OLD = frozenset({"table_group_by", "suppress", "join_foreign_key"})


def old_values_needed(pipeline: Pipeline, node: Node) -> bool:
    """Whether a step reading table ``node`` needs its previous values (through steps that
    pass the request on: table filters and ``map_values``), as Kafka Streams decides it for
    the whole topology when it is built: re-grouping, suppress and foreign-key joins do, a
    table-table join does for the side(s) it keeps unmatched (left: its left table, outer:
    both), an inner join does not (oracle: ``tables_filter.json``)."""
    for child in pipeline._nodes:
        if node not in child.parents:
            continue
        if child.op in _NEEDS_OLD:
            return True
        if child.op == "join_table_table":
            how = child.params.get("how")
            left = child.parents[0] is node
            if how == "outer" or (how == "left" and left):
                return True
        if child.op in ("table_filter", "table_map_values") and old_values_needed(pipeline,
                                                                                  child):
            return True
    return False
