"""The :class:`KafkaDriver`: the driver contract (:mod:`workbench.drivers.base`) on the parts
of this package — topics, readers, end offsets, transactions, membership, dead letters."""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import DriverError, SerializationError
from ...serde import get_serde
from ..base import Driver, OutRec, ReadRec, Transaction
from .codec import Codecs
from .connection import Connection, get_logger
from .dead_letters import DeadLetters
from .ends import EndOffsets
from .membership import Membership
from .options import KafkaOptions
from .reader import Reader
from .topics import Topics
from .transactions import Transactions

__all__ = ["KafkaDriver"]

log = get_logger(__name__)

_OPEN: weakref.WeakSet[KafkaDriver] = weakref.WeakSet()


@atexit.register
def _close_open_drivers() -> None:  # pragma: no cover - runs at interpreter exit
    import logging

    from . import transactions

    transactions.AT_EXIT = True  # short waits: the broker may already be gone
    logging.raiseExceptions = False  # the streams handlers wrote to may be closed by now
    for driver in list(_OPEN):
        try:
            driver.close()
        except Exception:
            log.debug("closing %r at exit failed", driver, exc_info=True)


class KafkaDriver(Driver):
    """Topics, transactions and group membership on an Apache Kafka cluster.

    Args:
        url: ``kafka://host:port[,host:port][?option=value&...]`` (see the package docstring).
        config: more options, as in the URL.
    """

    scheme = "kafka"
    stores_bytes = True

    def __init__(self, url: str, *, config: Mapping[str, Any] | None = None) -> None:
        self.options = KafkaOptions.from_url(url, config)
        self._conn = Connection(url, self.options)
        self._ck = self._conn.ck
        #: the URL as shown (secrets redacted: it appears in reprs, messages and logs)
        self.url = self._conn.url
        self.default_partitions = self.options.partitions
        self.key_serde = get_serde(self.options.key_serde)
        self.value_serde = get_serde(self.options.value_serde)
        self._codec = Codecs(self.key_serde, self.value_serde)
        self._topics = Topics(self._conn)
        self._ends = EndOffsets(self._conn)
        self._dead = DeadLetters(self._topics, self.options.dead_letter)
        self._membership = Membership(self._conn, self._revoked)
        self._txns = Transactions(self._conn, self._topics, self._codec, self._ends,
                                  self._membership, self._dead)
        self._stream = Reader(self._conn, self._ends, "stream")
        self._bulk = Reader(self._conn, self._ends, "bulk", max_assigned=1)
        self._closed = False
        #: topics that are the only input of their tasks (the engine's read hints)
        self._sole: frozenset[str] = frozenset()
        _OPEN.add(self)

    @property
    def commits(self) -> int:
        """Transactions this driver committed."""
        return self._txns.commits

    # -- log ----------------------------------------------------------------------------------
    def partitions(self, topic: str) -> int | None:
        return self._topics.partitions(topic)

    def topics(self) -> list[str]:
        return self._topics.names()

    def ensure_topic(self, topic: str, partitions: int | None, *, kind: str = "source",
                     compact: bool = False) -> int:
        return self._topics.ensure(topic, partitions, kind=kind, compact=compact)

    def create_topic(self, topic: str, partitions: int, *, kind: str = "source",
                     compact: bool = False) -> None:
        self._topics.create(topic, partitions, kind=kind, compact=compact)

    def append(self, topic: str, partition: int, records: Iterable[OutRec]) -> None:
        self._txns.append(topic, partition, records)

    def use_serdes(self, codecs: Any) -> None:
        """Encode and decode each topic with its serdes (``TopicCodecs`` of the plan)."""
        super().use_serdes(codecs)
        self._codec.use(codecs)

    def _decode(self, topic: str, partition: int, msgs: list[Any], dead_letter: bool
                ) -> tuple[list[ReadRec], int]:
        """Decode messages; return the records and how many messages were used. A bad record
        stops decoding (returned first: raise) or, with ``dead_letter``, is queued for the
        dead-letter topic and skipped."""
        bad = None
        if dead_letter:
            def bad(msg: Any, exc: SerializationError) -> None:
                self._dead.add(topic, partition, msg, exc)
        return self._codec.for_topic(topic).decode(
            topic, partition, msgs, where=self.url, bad=bad,
            raw=self._topics.kind(topic) == "dead_letter")

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> list[ReadRec]:
        rows: list[ReadRec] = self._read(topic, partition, offset, max_records, batch=False)
        return rows

    def read_batch(self, topic: str, partition: int, offset: int, max_records: int) -> Any:
        """Like :meth:`read`, as a column batch. Topics with a value serde of their own are
        decoded a batch at a time (Protobuf messages of scalar fields straight into columns,
        see ``Codec.decode_batch``); a batch that does not decode as a whole or carries
        workbench's private headers, and other topics, go record by record."""
        if not self._codec.for_topic(topic).batched:
            return super().read_batch(topic, partition, offset, max_records)
        got = self._read(topic, partition, offset, max_records, batch=True)
        if isinstance(got, list):
            import numpy as np

            from ...runtime.batch import Batch

            rows, got = got, Batch.from_rows(got)
            if rows:
                got.seq = np.fromiter((r[3] for r in rows), dtype=np.int64, count=len(rows))
        return got

    def _read(self, topic: str, partition: int, offset: int, max_records: int, *,
              batch: bool) -> Any:
        key = (topic, partition)
        kind = self._topics.kind(topic)
        batch = batch and kind != "dead_letter"
        reader = self._bulk if kind == "changelog" else self._stream
        dead_letter = self.options.dead_letter is not None and kind == "source"
        start = offset
        offset = self._dead.resume_at(key, offset)
        settle = topic not in self._sole
        while True:
            msgs = reader.read(topic, partition, offset, max_records,
                               wait=offset < self._ends.known_end(key), settle=settle)
            if not msgs:
                return []
            if batch:
                decoded = self._codec.for_topic(topic).decode_batch(msgs)
                if decoded is not None:
                    return decoded
            try:
                records, used = self._decode(topic, partition, msgs, dead_letter)
            except SerializationError:
                reader.unread(key, msgs)
                raise
            reader.unread(key, msgs[used:])
            if used and len(records) < used:  # dead-lettered records: remember the tail
                last_good = records[-1][3] if records else None
                tail_from = start if last_good is None else last_good + 1
                tail_to = msgs[used - 1].offset() + 1
                if last_good is None or last_good < msgs[used - 1].offset():
                    self._dead.skipped_tail(key, tail_from, tail_to)
            if records:
                return records
            offset = msgs[used - 1].offset() + 1

    def read_hints(self, *, sole_inputs: Iterable[str] = ()) -> None:
        """What the engine tells about its reads: ``sole_inputs`` are topics whose partitions
        a task reads alone, so a read of them never waits for records not fetched yet (only
        tasks with several inputs must not run ahead of one of them)."""
        self._sole = frozenset(sole_inputs)

    def wait_for_data(self, timeout_s: float) -> bool:
        """Block until a record arrives for a partition the engine reads (at most
        ``timeout_s``): the engine's idle wait, which never sleeps while data is there."""
        return self._stream.wait(timeout_s)

    def read_all(self, topic: str) -> list[ReadRec]:
        count = self.partitions(topic)
        if count is None:
            raise DriverError(f"topic {topic!r} does not exist on {self.url}.")
        out: list[ReadRec] = []
        for p in range(count):
            offset, end = 0, self.end_offset(topic, p)
            while offset < end:
                msgs = self._bulk.read(topic, p, offset, 100_000, wait=True)
                records, used = self._decode(topic, p, msgs, dead_letter=False)
                out.extend(records)
                offset = msgs[used - 1].offset() + 1 if used else offset
        return out

    @property
    def read_seeks(self) -> int:
        """Reads that had to refetch from the broker (a seek): neither continuing the previous
        read of the partition nor re-reading what it returned."""
        return int(self._stream.seeks + self._bulk.seeks)

    def has_records_from(self, topic: str, partition: int, offset: int) -> bool:
        """From what was fetched when that settles it (records buffered after ``offset``, or
        the consumer's last fetch reached the partition's end), else from the broker. A live
        task reading several inputs asks this after every read, so it must not cost a round
        trip (or a scan of the log's tail) while records are streaming in."""
        key = (topic, partition)
        reader = self._bulk if self._topics.kind(topic) == "changelog" else self._stream
        if reader.buffered_at(key, offset) or offset < self._ends.known_written(key):
            return True
        consumer = reader.consumer
        if consumer is None:
            return offset < self.end_offset(topic, partition)
        return self._ends.more_committed(key, offset, consumer)

    def end_offset(self, topic: str, partition: int) -> int:
        return self._ends.end_offset(topic, partition,
                                     settle=self._topics.kind(topic) == "changelog")

    # -- transactions -------------------------------------------------------------------------
    def committed(self, app_id: str, topic: str, partition: int) -> int:
        return self._txns.committed(app_id, topic, partition)

    def committed_metadata(self, app_id: str) -> dict[str, Any]:
        """Metadata committed with the positions of this process's partitions."""
        return self._txns.committed_metadata(app_id)

    def wants_commit(self) -> bool:
        """True when a commit would write something although the engine has nothing to
        commit (dead-lettered records)."""
        return bool(self._dead.pending)

    def send_outputs(self, app_id: str, outputs: dict[tuple[str, int], list[OutRec]]) -> None:
        """Outputs the engine made during the commit interval: produced at once into the open
        transaction, visible with the next :meth:`commit` (aborted if it never comes)."""
        self._txns.send(app_id, outputs)

    def commit(self, txn: Transaction) -> None:
        """One Kafka transaction: outputs (sent before and in ``txn``), dead-lettered records,
        positions; retried as a whole on abortable errors,
        :class:`~workbench.errors.FencedError` when another process took over."""
        self._txns.commit(txn)

    # -- membership ---------------------------------------------------------------------------
    def assign(self, app_id: str, topics: Iterable[str]) -> dict[str, list[int]]:
        """Join the consumer group ``app_id`` and return the partitions this process owns.

        The transactional producer is initialized first, so a restarted ``instance=`` fences
        its predecessor (aborting its open transaction) before anything is read.
        """
        self._txns.ensure_producer(app_id)
        if not self._membership.joined(app_id):
            self._txns.forget_group_consumer(app_id)
        return self._membership.join(app_id, topics)

    def _revoked(self, gone: set[tuple[str, int]]) -> None:
        self._txns.forget(gone)
        self._dead.forget(gone)
        self._stream.release(gone)

    def poll_membership(self) -> dict[str, list[int]] | None:
        """Rebalance news for the engine, or ``None``.

        Call it only when everything processed so far is committed (right after
        :meth:`commit`). It serves the group's callbacks; after a revocation it waits (up to the
        session timeout) for the new assignment. A returned dict is the complete new ownership
        ``{topic: partitions}``: the engine drops the tasks whose partitions are gone (they are
        committed; nothing to flush), and creates, restores and positions (with
        :meth:`committed`) tasks for partitions new to it.
        """
        return self._membership.news()

    # -- lifecycle ----------------------------------------------------------------------------
    def end_run(self) -> None:
        """The engine is done with this driver (a run ended or stopped): commit dead letters
        still pending, leave the consumer group (a static member keeps its slot until the
        session timeout), drop the transactional producer. Reading keeps working; a new run
        joins again."""
        # outputs sent into a transaction the engine never committed (it stopped on an error)
        # must not ride along with the dead letters' commit: their positions were not committed
        self._txns.discard()
        try:
            self._txns.flush_dead_letters()
        except DriverError as exc:
            log.warning("committing dead-lettered records failed: %s", exc)
        self._membership.leave()
        self._dead.clear()
        self._txns.end_run()

    def close(self) -> None:
        """:meth:`end_run`, and close every client. Reading stays possible (for
        ``Run.frame``): readers reconnect on demand."""
        if self._closed:
            return
        self.end_run()
        self._closed = True
        _OPEN.discard(self)
        self._txns.close()
        self._stream.close()
        self._bulk.close()
        self._ends.close()

    def __repr__(self) -> str:
        return f"<KafkaDriver {self.url}>"


def connect_kafka(url: str) -> KafkaDriver:
    """The factory :func:`workbench.drivers.register_driver` uses for ``kafka://``."""
    return KafkaDriver(url)
