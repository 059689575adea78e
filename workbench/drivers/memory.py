"""The in-memory driver: a real partitioned log with offsets and transactional commits, in the
process. ``memory://`` is a fresh, private log; ``memory://NAME`` is shared by every
``connect("memory://NAME")`` in the process, so a second run resumes where the first committed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from ..errors import DefinitionError, DriverError
from .base import Driver, OutRec, ReadRec, Transaction

__all__ = ["MemoryDriver"]

_NAMED: dict[str, MemoryDriver] = {}
_NAMED_LOCK = threading.Lock()


class MemoryDriver(Driver):
    """Topics as lists in memory; a commit appends outputs and moves positions atomically."""

    scheme = "memory"

    def __init__(self, name: str = "", *, default_partitions: int = 1) -> None:
        self.name = name
        self.url = f"memory://{name}"
        self.default_partitions = default_partitions
        self._logs: dict[str, list[list[ReadRec]]] = {}
        self._kinds: dict[str, str] = {}
        self._positions: dict[tuple[str, str, int], int] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self.commits = 0

    @classmethod
    def named(cls, name: str) -> MemoryDriver:
        """The process-wide driver called ``name`` (created on first use)."""
        with _NAMED_LOCK:
            drv = _NAMED.get(name)
            if drv is None:
                drv = _NAMED[name] = cls(name)
            return drv

    @staticmethod
    def forget(name: str) -> None:
        """Drop the process-wide driver called ``name`` and its data."""
        with _NAMED_LOCK:
            _NAMED.pop(name, None)

    # -- log ----------------------------------------------------------------------------------
    def partitions(self, topic: str) -> int | None:
        log = self._logs.get(topic)
        return None if log is None else len(log)

    def create_topic(self, topic: str, partitions: int, *, kind: str = "source",
                     compact: bool = False) -> None:
        if partitions < 1:
            raise DefinitionError(f"topic {topic!r}: partitions must be >= 1, got {partitions}.")
        with self._lock:
            if topic not in self._logs:
                self._logs[topic] = [[] for _ in range(partitions)]
                self._kinds[topic] = kind

    def topics(self) -> list[str]:
        return sorted(self._logs)

    def _partition(self, topic: str, partition: int) -> list[ReadRec]:
        try:
            return self._logs[topic][partition]
        except KeyError:
            raise DriverError(f"topic {topic!r} does not exist on {self.url}.") from None
        except IndexError:
            raise DriverError(
                f"topic {topic!r} has {len(self._logs[topic])} partitions; "
                f"there is no partition {partition}."
            ) from None

    def append(self, topic: str, partition: int, records: Sequence[OutRec]) -> None:
        with self._lock:
            log = self._partition(topic, partition)
            base = len(log)
            log.extend(
                (k, v, t, base + i, h) for i, (k, v, t, h) in enumerate(records)
            )

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> list[ReadRec]:
        log = self._partition(topic, partition)
        return log[offset:offset + max_records]

    def end_offset(self, topic: str, partition: int) -> int:
        return len(self._partition(topic, partition))

    # -- transactions -------------------------------------------------------------------------
    def committed(self, app_id: str, topic: str, partition: int) -> int:
        return self._positions.get((app_id, topic, partition), 0)

    def committed_metadata(self, app_id: str) -> dict[str, Any]:
        return dict(self._metadata.get(app_id, {}))

    def commit(self, txn: Transaction) -> None:
        with self._lock:
            for (topic, partition) in txn.outputs:
                self._partition(topic, partition)  # validate before changing anything
            for (topic, partition), records in txn.outputs.items():
                log = self._logs[topic][partition]
                base = len(log)
                log.extend((k, v, t, base + i, h) for i, (k, v, t, h) in enumerate(records))
            for (topic, partition), offset in txn.positions.items():
                self._positions[(txn.app_id, topic, partition)] = offset
            if txn.metadata:
                self._metadata.setdefault(txn.app_id, {}).update(txn.metadata)
            self.commits += 1
