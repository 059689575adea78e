"""Window specifications (frozen; the engine builds the window logic from them).

All four follow Kafka Streams (see ``docs/semantics.md``):

* :class:`Tumbling` — fixed, epoch-aligned, half-open ``[start, start+size)`` windows.
* :class:`Hopping` — fixed windows of ``size`` starting every ``advance``.
* :class:`Sliding` — ``[t-difference, t]`` windows aligned to record timestamps, both ends
  inclusive.
* :class:`Session` — per-key activity sessions that close after ``gap`` of inactivity.

Each takes a ``grace`` period: a record may arrive that late (in stream time) and still update its
window; later records go to the aggregation's ``late`` output. Durations are ``"5s"``-style
strings, ``timedelta`` or milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from ._time import duration_ms
from .errors import DefinitionError

__all__ = ["Hopping", "Session", "Sliding", "Tumbling", "WindowSpec", "Windowed"]


class Windowed(NamedTuple):
    """The key of a windowed result: the group key and its window (epoch ms).

    Time and sliding windows are ``[window_start, window_end)`` and ``[window_start,
    window_end]`` respectively; session windows report the first and last record time.
    """

    key: Any
    window_start: int
    window_end: int


@dataclass(frozen=True, init=False)
class Tumbling:
    """Tumbling windows of ``size``, with ``grace`` for late records.

    >>> Tumbling("60s", grace="5s")
    Tumbling(size=60000, grace=5000)
    """

    size: int
    grace: int

    def __init__(self, size: Any, grace: Any = 0) -> None:
        object.__setattr__(self, "size", duration_ms(size, "Tumbling size"))
        object.__setattr__(self, "grace", duration_ms(grace, "Tumbling grace"))
        if self.size <= 0:
            raise DefinitionError(f"Tumbling size must be > 0, got {size!r}.")

    @property
    def advance(self) -> int:
        """Equal to the size."""
        return self.size

    def windows_for(self, t: int) -> list[tuple[int, int]]:
        """The windows ``[(start, end)]`` that contain timestamp ``t``."""
        return _time_windows(t, self.size, self.size)


@dataclass(frozen=True, init=False)
class Hopping:
    """Hopping windows of ``size`` that start every ``advance`` (``0 < advance <= size``).

    >>> Hopping("10s", "5s").windows_for(7000)
    [(0, 10000), (5000, 15000)]
    """

    size: int
    advance: int
    grace: int

    def __init__(self, size: Any, advance: Any, grace: Any = 0) -> None:
        object.__setattr__(self, "size", duration_ms(size, "Hopping size"))
        object.__setattr__(self, "advance", duration_ms(advance, "Hopping advance"))
        object.__setattr__(self, "grace", duration_ms(grace, "Hopping grace"))
        if self.size <= 0 or not 0 < self.advance <= self.size:
            raise DefinitionError(
                f"Hopping needs size > 0 and 0 < advance <= size, got size={size!r}, "
                f"advance={advance!r}."
            )

    def windows_for(self, t: int) -> list[tuple[int, int]]:
        """The windows ``[(start, end)]`` that contain timestamp ``t``."""
        return _time_windows(t, self.size, self.advance)


@dataclass(frozen=True, init=False)
class Sliding:
    """Sliding windows: for each record at ``t`` the window ``[t-difference, t]``."""

    difference: int
    grace: int

    def __init__(self, difference: Any, grace: Any = 0) -> None:
        object.__setattr__(self, "difference", duration_ms(difference, "Sliding difference"))
        object.__setattr__(self, "grace", duration_ms(grace, "Sliding grace"))
        if self.difference <= 0:
            raise DefinitionError(f"Sliding difference must be > 0, got {difference!r}.")


@dataclass(frozen=True, init=False)
class Session:
    """Session windows: records of a key closer than ``gap`` (inclusive) form one session."""

    gap: int
    grace: int

    def __init__(self, gap: Any, grace: Any = 0) -> None:
        object.__setattr__(self, "gap", duration_ms(gap, "Session gap"))
        object.__setattr__(self, "grace", duration_ms(grace, "Session grace"))
        if self.gap <= 0:
            raise DefinitionError(f"Session gap must be > 0, got {gap!r}.")


WindowSpec = Tumbling | Hopping | Sliding | Session


def _time_windows(t: int, size: int, advance: int) -> list[tuple[int, int]]:
    start = (max(0, t - size + advance) // advance) * advance
    out = []
    while start <= t:
        out.append((start, start + size))
        start += advance
    return out
