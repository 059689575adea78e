"""Join specifications and the default way two values combine.

Joins follow Kafka Streams (``docs/semantics.md``): stream-stream within a time difference
(inner, left, outer; left/outer results for unmatched records are emitted once the join window
closes, as since KIP-633), stream-table (inner, left; only stream records trigger output),
table-table (inner, left, outer) and the table-table foreign-key join.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._time import duration_ms
from .errors import DefinitionError

__all__ = ["JoinWindow", "check_combine", "check_how", "default_combine"]


def default_combine(left: Any, right: Any) -> Any:
    """Merge two dict values (the right side's fields added; ``None`` sides left out). Non-dict
    values combine into a ``(left, right)`` tuple.

    >>> default_combine({"a": 1}, {"b": 2}), default_combine({"a": 1}, None)
    ({'a': 1, 'b': 2}, {'a': 1})
    """
    if isinstance(left, dict) or isinstance(right, dict):
        if left is None:
            return dict(right)
        if right is None:
            return dict(left)
        if isinstance(left, dict) and isinstance(right, dict):
            return {**left, **right}
    return (left, right)


def check_how(how: str, allowed: Sequence[str], what: str) -> None:
    """Raise a :class:`DefinitionError` unless ``how`` is one of ``allowed``."""
    if how not in allowed:
        raise DefinitionError(f"{what}: how={how!r} is not supported; use one of "
                              f"{', '.join(repr(a) for a in allowed)}.")


def check_combine(combine: Callable[[Any, Any], Any] | None) -> None:
    """Raise unless ``combine`` is ``None`` or callable."""
    if combine is not None and not callable(combine):
        raise DefinitionError(f"combine= must be a function (left, right) -> value, got "
                              f"{combine!r}.")


@dataclass(frozen=True, init=False)
class JoinWindow:
    """A stream-stream join window: ``left.ts - before <= right.ts <= left.ts + after``."""

    before: int
    after: int
    grace: int

    def __init__(self, within: Any, grace: Any = 0, *, before: Any = None,
                 after: Any = None) -> None:
        d = duration_ms(within, "join within") if within is not None else None
        b = duration_ms(before, "join before") if before is not None else d
        a = duration_ms(after, "join after") if after is not None else d
        if b is None or a is None:
            raise DefinitionError("a stream-stream join needs within= (a duration), or before= "
                                  "and after=.")
        object.__setattr__(self, "before", b)
        object.__setattr__(self, "after", a)
        object.__setattr__(self, "grace", duration_ms(grace, "join grace"))
