"""Reading partitions by explicit position: an assign-mode ``read_committed`` consumer with a
buffer per partition."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from itertools import groupby
from typing import Any

from ...errors import DriverError
from .connection import Connection, consume, get_logger
from .ends import EndOffsets

__all__ = ["Reader"]

log = get_logger(__name__)

MAX_BUFFERED = 100_000  # messages buffered per partition before its fetching pauses

Key = tuple[str, int]


class Reader:
    """An assign-mode ``read_committed`` consumer that reads partitions from explicit offsets.

    Messages of every assigned partition are buffered per partition, so that reading the
    partitions in turn never fetches twice. Continuing where the previous read of a partition
    stopped costs nothing, and so does reading again from inside the messages the previous
    read returned (a task that reads several inputs uses only a prefix of each read when it
    interleaves them by timestamp); any other offset is a seek (counted in ``seeks``).

    Args:
        conn: the connection.
        ends: end offsets (fed with the end-of-partition events this reader sees).
        name: names the consumer's group id.
        max_assigned: how many partitions may be assigned at once (older ones are released).
        max_buffered: messages buffered per partition before its fetching pauses.
    """

    def __init__(self, conn: Connection, ends: EndOffsets, name: str, *,
                 max_assigned: int | None = None, max_buffered: int = MAX_BUFFERED) -> None:
        self._conn = conn
        self._ends = ends
        self._name = name
        self._max_assigned = max_assigned
        self.max_buffered = max_buffered
        self._consumer: Any = None
        self._next: dict[Key, int] = {}  # offset a continuing read asks for
        self._buf: dict[Key, deque[Any]] = {}
        self._since: dict[Key, int] = {}  # offset the buffered stream started at
        self._last: dict[Key, int | None] = {}  # last record offset since then
        self._paused: set[Key] = set()  # full buffers: not fetched for now
        self._lent: dict[Key, list[Any]] = {}  # what the last read of a partition returned
        self.seeks = 0  # reads that had to refetch: neither continuing nor re-reading

    def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                consumer.close()
            except Exception:
                log.debug("closing consumer %s failed", self._name, exc_info=True)
        self._next.clear()
        self._buf.clear()
        self._since.clear()
        self._last.clear()
        self._paused.clear()
        self._lent.clear()

    def release(self, keys: Iterable[Key]) -> None:
        """Stop reading these partitions."""
        tp = self._conn.ck.TopicPartition
        drop = [k for k in keys if k in self._next]
        if not drop or self._consumer is None:
            return
        with self._conn.errors("unassigning partitions"):
            self._consumer.incremental_unassign([tp(t, p) for t, p in drop])
        for k in drop:
            for d in (self._next, self._buf, self._since, self._last, self._lent):
                d.pop(k, None)
            self._paused.discard(k)

    def _open(self) -> Any:
        if self._consumer is None:
            self._consumer = self._conn.consumer(self._name)
        return self._consumer

    @property
    def consumer(self) -> Any:
        """The consumer (None before the first read)."""
        return self._consumer

    def buffered_at(self, key: Key, offset: int) -> bool:
        """Whether messages at ``offset`` or after are buffered (fetched, not read yet)."""
        return self._next.get(key) == offset and bool(self._buf.get(key))

    def _position(self, key: Key, offset: int) -> None:
        """Make the buffered stream of ``key`` continue at ``offset``."""
        nxt = self._next.get(key)
        if nxt == offset:
            return
        lent = self._lent.pop(key, None)
        if lent and nxt is not None and lent[0].offset() <= offset < nxt:
            # re-reading the tail of the previous read: put it back, no refetch
            self._buf[key].extendleft(reversed([m for m in lent if m.offset() >= offset]))
            self._next[key] = offset
            return
        consumer = self._open()
        ck = self._conn.ck
        tp = ck.TopicPartition(key[0], key[1], offset)
        with self._conn.errors(f"reading {key[0]!r} partition {key[1]}"):
            if key in self._next:
                self.seeks += 1
                try:
                    consumer.seek(tp)
                except ck.KafkaException:  # not fetching yet: assign afresh
                    consumer.incremental_unassign([tp])
                    consumer.incremental_assign([tp])
            else:
                if self._max_assigned is not None and len(self._next) >= self._max_assigned:
                    self.release(list(self._next))
                consumer.incremental_assign([tp])
        self._next[key] = offset
        self._buf[key] = deque()
        self._since[key] = offset
        self._last[key] = None
        self._flow(key)

    def _fill(self, timeout: float) -> None:
        """One consume() call: buffer what arrives, learn end offsets from EOF events."""
        consumer = self._open()
        conn = self._conn
        with conn.errors("consuming"):
            msgs = consume(consumer, timeout)
        eof = conn.ck.KafkaError._PARTITION_EOF
        bufs, lasts = self._buf, self._last
        message = conn.ck.Message
        if msgs and not any(map(message.error, msgs)):
            # the common case, records only: buffered a run of one partition at a time, with
            # no Python step per message
            pos = 0
            for where, run in groupby(zip(map(message.topic, msgs),
                                          map(message.partition, msgs))):
                size = len(list(run))
                run_buf = bufs.get(where)
                if run_buf is not None:  # else released meanwhile
                    run_buf.extend(msgs[pos:pos + size])
                    lasts[where] = msgs[pos + size - 1].offset()
                pos += size
            msgs = []
        key: Key | None = None
        buf: deque[Any] | None = None
        last = None  # the last message buffered for key in this call
        for m in msgs:  # messages come in runs of one partition: look the buffer up per run
            topic, part = m.topic(), m.partition()
            if key is None or part != key[1] or topic != key[0]:
                if last is not None:
                    lasts[key] = last.offset()  # type: ignore[index]
                key, last = (topic, part), None
                buf = bufs.get(key)
            if buf is None:  # released meanwhile
                continue
            err = m.error()
            if err is None:
                buf.append(m)
                last = m
                continue
            if last is not None:
                lasts[key] = last.offset()
                last = None
            if err.code() == eof:
                self._ends.learn_eof(key, m.offset(), self._since[key], lasts[key])
            else:
                conn.raise_(conn.ck.KafkaException(err), f"reading {key[0]!r} partition {key[1]}")
        if last is not None:
            lasts[key] = last.offset()  # type: ignore[index]
        for k, b in bufs.items():
            if len(b) > self.max_buffered and k not in self._paused:
                self._flow(k)

    def _flow(self, key: Key) -> None:
        """Pause fetching a partition whose buffer is full (a partition nobody reads now must
        not fill memory), resume it once the buffer is half empty."""
        size = len(self._buf.get(key, ()))
        tp = [self._conn.ck.TopicPartition(*key)]
        with self._conn.errors("pausing or resuming a partition"):
            if key in self._paused and size <= self.max_buffered // 2:
                self._consumer.resume(tp)
                self._paused.discard(key)
            elif key not in self._paused and size > self.max_buffered:
                self._consumer.pause(tp)
                self._paused.add(key)

    def wait(self, timeout: float) -> bool:
        """Block until a message arrives for a partition being read (at most ``timeout``
        seconds); whether any is buffered now."""
        if any(self._buf.values()):
            return True
        if self._consumer is None:
            time.sleep(timeout)
            return False
        self._fill(timeout)
        return any(self._buf.values())

    def read(self, topic: str, partition: int, offset: int, max_records: int, *,
             wait: bool, settle: bool = True) -> list[Any]:
        """Up to ``max_records`` messages from ``offset``; with ``wait``, block until at least
        one arrives (the caller knows records exist there). With ``settle`` (a partition read
        together with others), an empty buffer also waits when committed records exist on the
        broker that were not fetched yet (Kafka Streams' enforced processing); a partition read
        alone is never held up for them (they come with the next read)."""
        key = (topic, partition)
        self._position(key, offset)
        buf = self._buf[key]
        if len(buf) < max_records:
            self._fill(0)  # take what the consumer holds already (after a re-read of the
            # previous read's tail the buffer may hold only that tail)
        if not buf:
            if not wait and settle:  # never pass a partition with data
                wait = self._ends.more_committed(key, offset, self._consumer)
            if not buf and wait:
                timeout = self._conn.options.timeout
                deadline = time.monotonic() + timeout
                while not buf:
                    if time.monotonic() > deadline:
                        raise DriverError(
                            f"reading {topic!r} partition {partition} from offset {offset}: "
                            f"committed records exist there but none arrived within "
                            f"{timeout:g} s from {self._conn.url}.")
                    self._fill(0.05)
        n = min(max_records, len(buf))
        out = [buf.popleft() for _ in range(n)]
        if out:
            self._next[key] = out[-1].offset() + 1
            self._lent[key] = out
        if key in self._paused:
            self._flow(key)
        return out

    def unread(self, key: Key, msgs: list[Any]) -> None:
        """Put back messages a read returned but the caller did not use."""
        if msgs:
            self._buf[key].extendleft(reversed(msgs))
            self._next[key] = msgs[0].offset()
            lent = self._lent.get(key)
            if lent:
                first = msgs[0].offset()
                self._lent[key] = [m for m in lent if m.offset() < first]
