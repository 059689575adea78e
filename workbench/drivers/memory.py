"""The in-memory driver: a real partitioned log with offsets and transactional commits, in the
process. ``memory://`` is a fresh, private log; ``memory://NAME`` is shared by every
``connect("memory://NAME")`` in the process, so a second run resumes where the first committed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from ..errors import DefinitionError, DriverError
from .base import Driver, OutRec, ReadRec, Transaction

__all__ = ["MemoryDriver"]

_NAMED: dict[str, MemoryDriver] = {}
_KEY, _VALUE, _TS, _HEADERS = (itemgetter(i) for i in (0, 1, 2, 4))


class _PartitionLog:
    """One partition, stored as columns: few long-lived container objects per record, so the
    cyclic garbage collector has little to scan even with millions of records."""

    __slots__ = ("headers", "keys", "timestamps", "values")

    def __init__(self) -> None:
        self.keys: list[Any] = []
        self.values: list[Any] = []
        self.timestamps: list[int] = []
        self.headers: list[Any] = []

    def __len__(self) -> int:
        return len(self.keys)

    def extend(self, records: Iterable[OutRec]) -> None:
        batch = records if isinstance(records, list) else list(records)
        self.keys.extend(map(_KEY, batch))
        self.values.extend(map(_VALUE, batch))
        self.timestamps.extend(map(_TS, batch))
        self.headers.extend(map(_HEADERS, batch))

    def read(self, offset: int, count: int) -> list[ReadRec]:
        end = min(offset + count, len(self.keys))
        if offset >= end:
            return []
        return list(zip(self.keys[offset:end], self.values[offset:end],
                        self.timestamps[offset:end], range(offset, end),
                        self.headers[offset:end]))
_NAMED_LOCK = threading.Lock()


class MemoryDriver(Driver):
    """Topics as lists in memory; a commit appends outputs and moves positions atomically."""

    scheme = "memory"

    def __init__(self, name: str = "", *, default_partitions: int = 1,
                 durable_state: bool = True) -> None:
        self.name = name
        self.url = f"memory://{name}"
        # ``connect("memory://")`` makes a private log nobody can restart from: no changelogs
        self.durable_state = durable_state
        self.default_partitions = default_partitions
        self._logs: dict[str, list[_PartitionLog]] = {}
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
                self._logs[topic] = [_PartitionLog() for _ in range(partitions)]
                self._kinds[topic] = kind

    def topics(self) -> list[str]:
        return sorted(self._logs)

    def _partition(self, topic: str, partition: int) -> _PartitionLog:
        try:
            return self._logs[topic][partition]
        except KeyError:
            raise DriverError(f"topic {topic!r} does not exist on {self.url}.") from None
        except IndexError:
            raise DriverError(
                f"topic {topic!r} has {len(self._logs[topic])} partitions; "
                f"there is no partition {partition}."
            ) from None

    def append(self, topic: str, partition: int, records: Iterable[OutRec]) -> None:
        with self._lock:
            self._partition(topic, partition).extend(records)

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> list[ReadRec]:
        return self._partition(topic, partition).read(offset, max_records)

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
                self._logs[topic][partition].extend(records)
            for (topic, partition), offset in txn.positions.items():
                self._positions[(txn.app_id, topic, partition)] = offset
            if txn.metadata:
                self._metadata.setdefault(txn.app_id, {}).update(txn.metadata)
            self.commits += 1
