"""Public record types.

Inside the engine a record is a plain tuple ``(key, value, timestamp, seq, headers)`` for speed
(see :mod:`workbench.runtime`); users meet :class:`Record` when a step asks for the whole record
(``with_record=True``) and in the test driver.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["TABLE_OPS", "Change", "Headers", "Record"]

Headers = tuple[tuple[str, bytes], ...]


class Record(NamedTuple):
    """One record: key, value, event timestamp (epoch ms) and headers.

    A step defined with ``with_record=True`` receives a ``Record``; ``map`` and ``flat_map`` may
    then return ``Record``s to change the key or timestamp as well as the value.

    >>> Record("u1", {"amount": 3}, 1000)
    Record(key='u1', value={'amount': 3}, timestamp=1000, headers=None)
    """

    key: Any
    value: Any
    timestamp: int
    headers: Headers | None = None


class Change(NamedTuple):
    """A table update inside the engine: the key's new value and its previous value
    (``None`` for absent). ``Table.changes()`` publishes ``new``."""

    new: Any
    old: Any = None


#: ops whose records carry :class:`Change` values (tables)
TABLE_OPS = frozenset({
    "table_source", "table_filter", "table_map_values", "aggregate", "to_table",
    "join_table_table", "join_foreign_key", "table_group_by", "suppress",
})
