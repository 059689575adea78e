"""Public record types.

Inside the engine a record is a plain tuple ``(key, value, timestamp, seq, headers)`` for speed
(see :mod:`workbench.runtime`); users meet :class:`Record` when a step asks for the whole record
(``with_record=True``) and in the test driver.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Headers", "Record"]

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
