"""``GlobalTable``: a table replicated to every task (Kafka Streams' ``GlobalKTable``).

``p.global_table(topic)`` reads **every partition** of ``topic`` in every task, so a stream can
join it on any field of its values without a repartition:
``orders.join(customers, on="customer_id")``. The table is restored from its topic when a run
starts (it has no changelog of its own) and then follows the topic as it grows; its updates
never produce output by themselves.

A processor reads it as a read-only store: ``stream.process(MyProcessor,
global_stores=[customers])`` and, inside the processor, ``ctx.store("customers")``.

Semantics (Kafka Streams 4.1.1 ``KStreamKTableJoinProcessor`` with a key selector, checked with
TopologyTestDriver; ``docs/semantics.md``): the lookup key is ``on(value)``; the stream key is
not used (a ``None`` key joins too, KIP-962). A stream record with a ``None`` value is dropped;
one whose lookup key is ``None`` is dropped by an inner join and joined with ``None`` by a left
join. The global table is not versioned and not time-synchronised: each stream record sees the
table as it is when the record is processed, whatever the timestamps. The output keeps the
stream record's key and timestamp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._nodes import Node
from ._tracebacks import public

if TYPE_CHECKING:
    import pandas as pd

    from .pipeline import Pipeline

__all__ = ["GlobalTable"]


class GlobalTable:
    """A handle on a global table (``Pipeline.global_table``): join it from a stream with
    ``stream.join(table, on=...)`` or read it in a processor (``global_stores=``)."""

    __slots__ = ("_node", "_pipeline")

    def __init__(self, pipeline: Pipeline, node: Node) -> None:
        self._pipeline = pipeline
        self._node = node

    @property
    def name(self) -> str:
        """The step's name (also the name a processor reads it by)."""
        return self._node.name

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline this table belongs to."""
        return self._pipeline

    @property
    def topic(self) -> str:
        """The topic the table is read from (every partition, in every task)."""
        return str(self._node.params["spec"].topic)

    @public
    def to_pandas(self, limit: int | None = None) -> pd.DataFrame:
        """The table's contents computed from its sample (the latest value per key, deletes
        removed), as a DataFrame: key, timestamp, values."""
        from .preview import table_frame

        return table_frame(self._pipeline, self._node, limit=limit)

    def __repr__(self) -> str:
        return f"<GlobalTable {self._node.name!r} of pipeline {self._pipeline.name!r}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from .display import table_bundle

        return table_bundle(self._pipeline, self._node)
