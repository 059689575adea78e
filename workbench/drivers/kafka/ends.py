"""End offsets over transaction markers.

A transactional partition has offsets without records (commit/abort markers, aborted records).
The engine treats ``position == end_offset`` as "nothing left" and advances positions by ``last
offset + 1``, so the end offset the driver reports is the offset after the last *committed
record* below the last stable offset (LSO), not the LSO itself: found by reading the log's tail
backwards in growing steps, and cached (also from the readers' end-of-partition events and from
what this driver committed itself).
"""

from __future__ import annotations

import time
from typing import Any

from ...errors import DriverError
from .connection import Connection, consume, get_logger

__all__ = ["EndOffsets"]

log = get_logger(__name__)

Key = tuple[str, int]


class EndOffsets:
    """What the driver knows about where the committed records of each partition end."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._ends: dict[Key, tuple[int, int]] = {}  # (stable offset, data end)
        self._written: dict[Key, int] = {}  # end of our own committed records
        self._marked: dict[Key, int] = {}  # same, for transactional writes
        self._probe_consumer: Any = None
        self._hw_consumer: Any = None

    def close(self) -> None:
        for consumer in (self._probe_consumer, self._hw_consumer):
            if consumer is not None:
                consumer.close()
        self._probe_consumer = self._hw_consumer = None

    def _probe(self) -> Any:
        if self._probe_consumer is None:
            self._probe_consumer = self._conn.consumer("probe")
        return self._probe_consumer

    # -- what this driver wrote ---------------------------------------------------------------
    def wrote(self, key: Key, end: int, *, transactional: bool) -> None:
        """This driver's own records on ``key`` now end at ``end`` (committed or appended)."""
        self._written[key] = max(self._written.get(key, 0), end)
        if transactional:
            self._marked[key] = end

    def known_written(self, key: Key) -> int:
        """Offset after the last record this process wrote and committed to ``key`` (0)."""
        return self._written.get(key, 0)

    def known_end(self, key: Key) -> int:
        """The largest end this driver knows of without asking the broker."""
        known = self._ends.get(key)
        return max(known[1] if known else 0, self._written.get(key, 0))

    # -- asking the broker --------------------------------------------------------------------
    def stable_offset(self, topic: str, partition: int, *, committed: bool = True) -> int:
        """The last stable offset (``committed``) or the high watermark of a partition."""
        conn = self._conn
        tp = conn.ck.TopicPartition(topic, partition)
        stale = (conn.ck.KafkaError._UNKNOWN_PARTITION, conn.ck.KafkaError._UNKNOWN_TOPIC)

        def query() -> Any:
            consumer = self._probe() if committed else self._hw()
            try:
                return consumer.get_watermark_offsets(tp, timeout=conn.options.timeout)
            except conn.ck.KafkaException as exc:
                if exc.args and exc.args[0].code() in stale:
                    # seen after the broker was stopped and continued: the client's metadata
                    # kept the partition unknown; a new client asks afresh on the retry
                    self._reset(committed)
                raise

        _low, high = conn.retry(
            query, f"reading the end offset of {topic!r} partition {partition}")
        return int(high)

    def _hw(self) -> Any:
        if self._hw_consumer is None:
            self._hw_consumer = self._conn.consumer(
                "hw", extra={"isolation.level": "read_uncommitted"})
        return self._hw_consumer

    def _reset(self, committed: bool) -> None:
        consumer = self._probe_consumer if committed else self._hw_consumer
        if committed:
            self._probe_consumer = None
        else:
            self._hw_consumer = None
        if consumer is not None:
            try:
                consumer.close()
            except Exception:
                log.debug("closing a stale consumer failed", exc_info=True)

    def settled_stable_offset(self, topic: str, partition: int) -> int:
        """The last stable offset once no transaction is open on the partition.

        A changelog is read to restore a task that this process just took over. The previous
        owner's last transaction may be committed with its markers still on the way (the
        broker writes them asynchronously; its positions are already committed), or left open
        by a dead process (aborted at its timeout): either way, restoring up to the stable
        offset of that moment could miss state that belongs to the committed positions. Nobody
        else writes the partition now, so it settles; this waits for that (at most the
        transaction timeout and a little).
        """
        deadline = time.monotonic() + self._conn.options.transaction_timeout_ms / 1e3 + 5
        while True:
            stable = self.stable_offset(topic, partition)
            if stable >= self.stable_offset(topic, partition, committed=False):
                return stable
            if time.monotonic() > deadline:
                log.warning("%r partition %d still has an open transaction; restoring up to "
                            "offset %d", topic, partition, stable)
                return stable
            time.sleep(0.05)

    def more_committed(self, key: Key, offset: int, consumer: Any) -> bool:
        """Are there committed records at ``offset`` or after? From what the consumer's last
        fetch said when that settles it, else from the broker (one round trip)."""
        known = self._ends.get(key)
        try:
            _low, high = consumer.get_watermark_offsets(self._conn.ck.TopicPartition(*key),
                                                        cached=True)
        except self._conn.ck.KafkaException:
            high = -1
        if high is not None and high >= 0:
            if known is not None and high == known[0]:
                return offset < max(known[1], self._written.get(key, 0))
            if high <= offset:
                return False
        return offset < self.end_offset(*key)

    def _learn(self, key: Key, stable: int, data_end: int) -> None:
        known = self._ends.get(key)
        if known is None or stable >= known[0]:
            self._ends[key] = (stable, data_end)

    def learn_eof(self, key: Key, eof: int, since: int, last: int | None) -> None:
        """A reader reached the stable offset ``eof`` after reading from ``since``; ``last``
        is the offset of the last record it saw since then."""
        if last is not None:
            self._learn(key, eof, last + 1)
            return
        known = self._ends.get(key)
        if known is not None and known[1] <= since <= known[0]:
            self._learn(key, eof, known[1])  # no records in [data end, eof)

    def end_offset(self, topic: str, partition: int, *, settle: bool = False) -> int:
        """Offset after the last committed record of the partition (``settle``: wait until no
        transaction is open on it first, for changelogs)."""
        key = (topic, partition)
        if settle:
            stable = self.settled_stable_offset(topic, partition)
        else:
            stable = self.stable_offset(topic, partition)
        marked = self._marked.get(key)
        if marked is not None and stable == marked + 1:
            self._learn(key, stable, marked)  # only our commit marker after our records
        return max(self._data_end(key, stable), self._written.get(key, 0))

    def _data_end(self, key: Key, stable: int) -> int:
        """Offset after the last committed record below ``stable`` (exact: reads the log's
        tail backwards in growing steps until it finds a record)."""
        known = self._ends.get(key)
        if known is not None and known[0] >= stable:
            return known[1]
        return self._data_end_scan(key, stable, known)

    def _data_end_scan(self, key: Key, stable: int, known: tuple[int, int] | None) -> int:
        if stable <= 0:
            return 0
        floor = known[0] if known is not None else 0
        step = 1
        while True:
            start = max(stable - step, floor)
            last, eof = self._scan(key, start)
            if last is not None:
                self._learn(key, eof, last + 1)
                return last + 1
            if start <= floor:
                end = known[1] if known is not None else 0
                self._learn(key, eof, end)
                return end
            step *= 8

    def _scan(self, key: Key, start: int) -> tuple[int | None, int]:
        """Read ``key`` from ``start`` to its stable end: (last record offset or None, end)."""
        conn = self._conn
        probe = self._probe()
        tp = conn.ck.TopicPartition(key[0], key[1], start)
        eof_code = conn.ck.KafkaError._PARTITION_EOF
        last: int | None = None
        deadline = time.monotonic() + conn.options.timeout
        with conn.errors(f"reading the end of {key[0]!r} partition {key[1]}"):
            probe.assign([tp])
            try:
                while time.monotonic() < deadline:
                    for m in consume(probe, 0.1):
                        err = m.error()
                        if err is None:
                            last = m.offset()
                        elif err.code() == eof_code:
                            return last, m.offset()
                        else:
                            raise conn.ck.KafkaException(err)
            finally:
                probe.unassign()
        raise DriverError(f"reading the end of {key[0]!r} partition {key[1]} on {conn.url} "
                          "timed out.")
