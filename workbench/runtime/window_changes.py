"""The changelog records of a columnar window store for one commit, as columns.

:class:`WindowChanges` holds what :meth:`ColumnarWindowStore.drain_changes
<workbench.runtime.window_vec.ColumnarWindowStore.drain_changes>` returns as records, without
building them: the removed windows (tombstones), the changed windows' keys, starts,
accumulators and largest timestamps, and the last emitted close time if it moved. In that
order, its records are ``([key, start], None)``, ``([key, start], [accumulator, ts])`` and
``(META_KEY, close time)`` — the row store's changelog layout.

The engine hands one to a driver whose class says ``accepts_window_changes = True`` (instead
of a list of records), so that the driver encodes the columns directly (PostgreSQL's COPY text:
one format per record, no accumulator dicts); :meth:`WindowChanges.rows` gives the records for
everything else.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .fold import Accs, Part, to_python
from .window_store import META_KEY

__all__ = ["WindowChanges"]


class WindowChanges:
    """One commit's changelog records of a columnar window store, as columns.

    Attributes:
        removed: ``(key, start)`` of the removed windows (tombstones, first).
        keys, starts, times: the changed windows' keys (objects), starts and largest timestamps.
        parts, accs: the aggregation's parts and the changed windows' accumulators.
        meta: the last emitted close time when it moved (the last record), else ``None``.
        ts: the timestamp of every record (the task's stream time at the commit).
    """

    __slots__ = ("accs", "keys", "meta", "parts", "removed", "starts", "times", "ts")

    def __init__(self, removed: list[tuple[Any, int]], keys: np.ndarray, starts: np.ndarray,
                 parts: list[Part], accs: Accs, times: np.ndarray, meta: int | None,
                 ts: int) -> None:
        self.removed = removed
        self.keys = keys
        self.starts = starts
        self.parts = parts
        self.accs = accs
        self.times = times
        self.meta = meta
        self.ts = ts

    def __len__(self) -> int:
        return len(self.removed) + len(self.starts) + (self.meta is not None)

    def __bool__(self) -> bool:
        return len(self) > 0

    def changes(self) -> list[tuple[Any, Any]]:
        """The ``(key, value)`` records, in order."""
        out: list[tuple[Any, Any]] = [([k, s], None) for k, s in self.removed]
        if len(self.starts):
            accs = to_python(self.parts, self.accs)
            out += [([k, s], [a, t]) for k, s, a, t in zip(
                self.keys.tolist(), self.starts.tolist(), accs, self.times.tolist())]
        if self.meta is not None:
            out.append((META_KEY, self.meta))
        return out

    def rows(self) -> list[tuple[Any, Any, int, int, None]]:
        """The records as a driver's rows ``(key, value, ts, 0, None)``."""
        ts = self.ts
        return [(k, v, ts, 0, None) for k, v in self.changes()]
