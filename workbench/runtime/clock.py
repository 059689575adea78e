"""Clocks: the engine reads wall-clock time only through one of these, so tests control it."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Wall-clock time in epoch milliseconds (drives commits and wall-clock punctuation)."""

    def now_ms(self) -> int: ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to (for tests and the test driver).

    >>> c = ManualClock(1000); c.advance(250); c.now_ms()
    1250
    """

    def __init__(self, start_ms: int = 0) -> None:
        self._now = int(start_ms)

    def now_ms(self) -> int:
        return self._now

    def advance(self, ms: int) -> None:
        """Move the clock forward by ``ms`` milliseconds."""
        if ms < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += int(ms)

    def set(self, now_ms: int) -> None:
        """Set the time (never backwards)."""
        if now_ms < self._now:
            raise ValueError("a clock cannot go backwards")
        self._now = int(now_ms)
