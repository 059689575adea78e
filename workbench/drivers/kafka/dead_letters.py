"""Dead-lettered input: records of source topics that cannot be read go, raw, to the
``dead_letter=`` topic in the same transaction as the positions that skip them."""

from __future__ import annotations

from typing import Any

from ...errors import SerializationError
from .codec import ERROR_HEADERS
from .connection import get_logger
from .topics import Topics

__all__ = ["DeadLetters"]

log = get_logger(__name__)

Key = tuple[str, int]
#: (topic, partition, offset, key bytes, value bytes, timestamp, headers)
DeadRecord = tuple[str, int, int, Any, Any, int, list[tuple[str, bytes]]]


class DeadLetters:
    """Dead-lettered records not committed yet, and the partition tails they skip.

    Args:
        topics: the driver's topics (the dead-letter topic is created on first use).
        target: the dead-letter topic, or ``None`` (bad records stop the run).
    """

    def __init__(self, topics: Topics, target: str | None) -> None:
        self._topics = topics
        self.target = target
        self.pending: list[DeadRecord] = []
        #: dead-lettered tails: (offset the skipped records start at, offset after them)
        self._skips: dict[Key, tuple[int, int]] = {}
        if target:
            topics.set_kind(target, "dead_letter")

    def add(self, topic: str, partition: int, msg: Any, exc: SerializationError) -> None:
        """Queue ``msg`` (unreadable: ``exc``) for the dead-letter topic."""
        target = self.target
        assert target is not None
        if not self._topics.known(target):
            self._topics.ensure(target, None, kind="dead_letter")
        try:
            headers = list(msg.headers() or ())
        except (ValueError, TypeError):  # header names that are not UTF-8: dropped, said so
            headers = [("workbench.error.headers", b"unreadable headers dropped")]
        headers += [(ERROR_HEADERS[0], str(exc).encode()), (ERROR_HEADERS[1], topic.encode()),
                    (ERROR_HEADERS[2], str(partition).encode()),
                    (ERROR_HEADERS[3], str(msg.offset()).encode())]
        self.pending.append((topic, partition, msg.offset(), msg.key(), msg.value(),
                             max(msg.timestamp()[1], 0), headers))
        log.warning("record at offset %d of %r partition %d goes to dead-letter topic %r: %s",
                    msg.offset(), topic, partition, target, exc)

    # -- skipped tails ------------------------------------------------------------------------
    def resume_at(self, key: Key, offset: int) -> int:
        """Where a read of ``key`` from ``offset`` really starts (past queued dead letters)."""
        skip = self._skips.get(key)
        if skip is not None:
            if skip[0] == offset:
                return skip[1]  # dead-lettered records already queued
            if offset > skip[1]:
                del self._skips[key]
        return offset

    def skipped_tail(self, key: Key, start: int, end: int) -> None:
        """Records of ``key`` in ``[start, end)`` were dead-lettered and nothing after them was
        read yet: a committed position at ``start`` may jump to ``end``."""
        self._skips[key] = (start, end)

    def skip_positions(self, positions: dict[Key, int], known: dict[Key, int]) -> None:
        """Move positions that stop where a dead-lettered tail starts past it."""
        for key, (frm, to) in self._skips.items():
            if positions.get(key, known.get(key)) == frm:
                positions[key] = to

    # -- lifecycle ----------------------------------------------------------------------------
    def committed(self) -> None:
        """The pending records were committed."""
        self.pending.clear()

    def keep_behind(self, positions: dict[Key, int]) -> None:
        """Keep only pending records behind these (committed) positions."""
        self.pending = [d for d in self.pending if d[2] < positions.get((d[0], d[1]), -1)]

    def forget(self, keys: set[Key]) -> None:
        """These partitions are no longer this process's."""
        for key in keys:
            self._skips.pop(key, None)
        self.pending = [d for d in self.pending if (d[0], d[1]) not in keys]

    def clear(self) -> None:
        self._skips.clear()
        self.pending.clear()
