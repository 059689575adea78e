"""Producing: the transactional producer that commits the engine's transactions (outputs,
dead letters, ``send_offsets_to_transaction``, commit), committed positions and metadata, and
the plain producer of :meth:`KafkaDriver.append`.

Exactly-once as Kafka Streams' ``exactly_once_v2``: one transactional producer per driver (one
per process and application); the offsets go into the transaction with the consumer group
metadata of this process's group member, so a zombie whose generation is stale is refused.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from ...errors import DriverError, DriverUnavailableError, FencedError, SerializationError
from ...serde.bulk_json import bulk_json
from ..base import OutRec, Transaction
from .codec import Codecs
from .connection import Connection, get_logger, scrub
from .dead_letters import DeadLetters
from .ends import EndOffsets
from .membership import Membership
from .topics import Topics

#: seconds the exit hook's flushes and aborts wait (the broker may be gone by then: a test
#: session's broker is stopped before the interpreter exits)
EXIT_TIMEOUT_S = 2.0
AT_EXIT = False


def _wait_s(timeout: float) -> float:
    return min(timeout, EXIT_TIMEOUT_S) if AT_EXIT else timeout


__all__ = ["Transactions"]

log = get_logger(__name__)

Key = tuple[str, int]

#: the metadata key of one task's stream times (``stream_time.<subtopology>_<partition>``):
#: committed only with the offsets of that partition
_TASK_KEY = re.compile(r"^stream_time\..*_(\d+)$")
#: the broker's default ``offset.metadata.max.bytes``
METADATA_MAX_BYTES = 4096


def task_partition(key: str) -> int | None:
    """The partition of a task's metadata key, or ``None`` for a key of the application."""
    m = _TASK_KEY.match(key)
    return int(m.group(1)) if m else None


def split_metadata(metadata: dict[str, Any], partitions: set[int]) -> dict[int, str | None]:
    """The offset metadata of each partition number: the application's keys, and the task
    keys of that partition only (offset metadata is small: ``offset.metadata.max.bytes``)."""
    shared: dict[str, Any] = {}
    per: dict[int, dict[str, Any]] = {p: {} for p in partitions}
    for key, value in metadata.items():
        p = task_partition(key)
        if p is None:
            shared[key] = value
        elif p in per:
            per[p][key] = value
    out: dict[int, str | None] = {}
    for p, own in per.items():
        both = {**shared, **own}
        out[p] = json.dumps(both, separators=(",", ":"), sort_keys=True) if both else None
    return out


class Transactions:
    """The producers of one driver, and the positions it committed."""

    def __init__(self, conn: Connection, topics: Topics, codec: Codecs, ends: EndOffsets,
                 membership: Membership, dead: DeadLetters) -> None:
        self._conn = conn
        self._topics = topics
        self._codec = codec
        self._ends = ends
        self._membership = membership
        self._dead = dead
        self._producer: Any = None
        self._txn_id: str | None = None
        self._plain_producer: Any = None
        self._offset_consumers: dict[str, Any] = {}
        self._pending_written: dict[Key, int] = {}
        #: a transaction is open (outputs were sent ahead of the commit)
        self._open = False
        #: outputs sent into the open transaction: produced again if it must be redone
        self._sent: list[tuple[Key, list[OutRec]]] = []
        #: committed positions of the owned inputs
        self.positions: dict[Key, int] = {}
        #: the application's committed metadata, merged (the engine commits only changes; every
        #: transaction rewrites the metadata of every owned partition's offset)
        self._metadata: dict[str, Any] = {}
        self._metadata_app: str | None = None
        self.commits = 0
        self.closed = False
        #: a client call that ignores its timeout never returned: the producer is unusable
        self._stuck: str | None = None
        self._caller: _Caller | None = None  # for calls that may ignore their timeout

    # -- the transactional producer -----------------------------------------------------------
    def ensure_producer(self, app_id: str) -> Any:
        """The transactional producer of this process for ``app_id`` (initialized: an earlier
        producer with the same ``transactional.id`` is fenced and its open transaction
        aborted)."""
        conn = self._conn
        if conn.fenced is not None:
            raise conn.fenced
        if self.closed:
            raise DriverError(f"<KafkaDriver {conn.url}> is closed; connect again to run.")
        if self._producer is not None:
            if self._txn_id is not None and not self._txn_id.startswith(f"{app_id}-"):
                raise DriverError(f"<KafkaDriver {conn.url}> already commits for another "
                                  f"application ({self._txn_id!r}); use one driver per "
                                  "application.")
            return self._producer
        suffix = conn.options.instance or uuid.uuid4().hex
        txn_id = f"{app_id}-{suffix}"
        producer = conn.producer({
            "transactional.id": txn_id,
            "transaction.timeout.ms": conn.options.transaction_timeout_ms,
        }, "creating the transactional producer")
        conn.retry(lambda: producer.init_transactions(conn.options.timeout),
                   f"initializing transactions for {txn_id!r}")
        self._producer, self._txn_id = producer, txn_id
        log.debug("transactional producer %s ready", txn_id)
        return producer

    def drop_producer(self) -> None:
        self._producer = self._txn_id = None

    # -- committed positions ------------------------------------------------------------------
    def group_consumer(self, app_id: str) -> Any:
        """A consumer of group ``app_id`` (the member, if joined) for committed offsets."""
        if self._membership.joined(app_id):
            return self._membership.member
        consumer = self._offset_consumers.get(app_id)
        if consumer is None:
            consumer = self._offset_consumers[app_id] = self._conn.consumer("offsets", app_id)
        return consumer

    def forget_group_consumer(self, app_id: str) -> None:
        old = self._offset_consumers.pop(app_id, None)
        if old is not None:
            old.close()

    def fetch_committed(self, app_id: str, tps: list[Any], action: str) -> list[Any]:
        """Committed offsets (stable: OffsetFetch waits out pending transactional offsets
        under read_committed); a per-partition error is raised, and retried when transient
        (``UNSTABLE_OFFSET_COMMIT`` while the previous owner's transaction completes)."""
        consumer = self.group_consumer(app_id)
        conn = self._conn

        def fetch() -> list[Any]:
            got = consumer.committed(tps, timeout=conn.options.timeout)
            for tp in got:
                if tp.error is not None:
                    raise conn.ck.KafkaException(tp.error)
            return list(got)

        result: list[Any] = conn.retry(fetch, action)
        return result

    def committed(self, app_id: str, topic: str, partition: int) -> int:
        got = self.fetch_committed(
            app_id, [self._conn.ck.TopicPartition(topic, partition)],
            f"reading the committed position of {topic!r} partition {partition}")
        offset = got[0].offset
        offset = offset if offset >= 0 else 0
        if app_id == self._membership.group:
            self.positions[(topic, partition)] = offset
        return offset

    def committed_metadata(self, app_id: str) -> dict[str, Any]:
        """Metadata committed with the positions of this process's partitions, merged: the
        application's keys, and each task's keys from the offsets of its partition."""
        membership = self._membership
        if app_id != membership.group or not membership.owned:
            return {}
        tps = [self._conn.ck.TopicPartition(t, p) for t, p in sorted(membership.owned)]
        got = self.fetch_committed(app_id, tps, "reading committed metadata")
        out: dict[str, Any] = {}
        for tp in got:
            if not tp.metadata:
                continue
            try:
                found = json.loads(tp.metadata)
            except ValueError:
                continue
            if not isinstance(found, dict):
                continue
            for key, value in found.items():
                p = task_partition(key)
                if p is None or p == tp.partition:
                    out[key] = value
        self._metadata, self._metadata_app = dict(out), app_id
        return out

    def forget(self, keys: set[Key]) -> None:
        """These partitions are no longer this process's."""
        for key in keys:
            self.positions.pop(key, None)

    # -- committing ---------------------------------------------------------------------------
    def _begin(self, producer: Any) -> None:
        """Open a transaction (if none is), producing again what was sent into an aborted one."""
        if self._open:
            return
        self._pending_written = {}
        producer.begin_transaction()
        self._open = True
        for (topic, partition), records in self._sent:
            self.produce(producer, topic, partition, records, self._delivered)

    def send(self, app_id: str, outputs: dict[Key, list[OutRec]]) -> None:
        """Produce outputs into the open transaction (opened here), ahead of :meth:`commit`:
        the producer sends them while the engine goes on processing, so the commit only waits
        for the last acknowledgements, the offsets and the commit marker."""
        producer = self.ensure_producer(app_id)
        with self._conn.errors(f"producing outputs of {app_id!r}"):
            self._begin(producer)
            for key, records in outputs.items():
                if records:
                    self._sent.append((key, records))
                    self.produce(producer, key[0], key[1], records, self._delivered)
            producer.poll(0)  # serve delivery reports as they come

    def commit(self, txn: Transaction) -> None:
        """One Kafka transaction: the outputs sent since the last commit and ``txn``'s,
        dead-lettered records, positions; retried as a whole on abortable errors,
        :class:`FencedError` when another process took over."""
        conn = self._conn
        producer = self.ensure_producer(txn.app_id)
        if self._membership.changed:
            self.discard()
            raise FencedError(
                f"the consumer group {txn.app_id!r} rebalanced and the engine did not take the "
                "new assignment (poll_membership); stopping without committing.")
        offsets = self._offsets(txn)
        attempts = 0
        while True:
            try:
                self._commit_once(producer, txn, offsets)
                break
            except conn.ck.KafkaException as exc:
                err = exc.args[0]
                self._abort(producer)
                if isinstance(conn.translate(exc, ""), FencedError) or err.fatal() \
                        or attempts >= 3:
                    self._sent.clear()
                    conn.raise_(exc, f"committing a transaction of {txn.app_id!r}")
                attempts += 1
                log.warning("transaction of %r failed (%s); retrying (%d/3)", txn.app_id, err,
                            attempts)
                time.sleep(0.1 * attempts)
            except BaseException:
                self._abort(producer)
                self._sent.clear()
                raise
        self._sent.clear()
        for key, end in self._pending_written.items():
            self._ends.wrote(key, end, transactional=True)
        for tp in offsets:
            self.positions[(tp.topic, tp.partition)] = tp.offset
        self._metadata = self._merged(txn)
        self._dead.committed()
        self.commits += 1
        if self._membership.member is not None:
            self._membership.poll(0)  # serve heartbeats and rebalance callbacks between commits

    def discard(self) -> None:
        """Abort the open transaction, if any, and forget what was sent into it."""
        if self._open and self._producer is not None:
            self._abort(self._producer)
        self._open = False
        self._sent.clear()

    def offsets(self, txn: Transaction) -> dict[Key, int]:
        """Positions to commit: this process's known positions (so that every transaction
        carries the group generation that fences zombies), the engine's new ones, skipping
        dead-lettered tails."""
        positions: dict[Key, int] = {}
        owned = self._membership.owned
        if txn.app_id == self._membership.group and owned is not None:
            positions.update((k, v) for k, v in self.positions.items() if k in owned)
        positions.update(txn.positions)
        self._dead.skip_positions(positions, self.positions)
        return positions

    def _merged(self, txn: Transaction) -> dict[str, Any]:
        if txn.app_id != self._metadata_app:  # the base: what is committed now
            self._metadata, self._metadata_app = {}, txn.app_id
            if self._membership.joined(txn.app_id):
                self.committed_metadata(txn.app_id)
        return {**self._metadata, **txn.metadata}

    def _offsets(self, txn: Transaction) -> list[Any]:
        positions = self.offsets(txn)
        metadata = split_metadata(self._merged(txn), {p for _t, p in positions})
        for p, text in metadata.items():
            if text is not None and len(text.encode()) > METADATA_MAX_BYTES:
                log.warning("the metadata committed with partition %d is %d bytes; brokers "
                            "refuse more than offset.metadata.max.bytes (default %d)", p,
                            len(text.encode()), METADATA_MAX_BYTES)
        tp = self._conn.ck.TopicPartition
        out = []
        for (t, p), off in sorted(positions.items()):
            text = metadata[p]
            out.append(tp(t, p, off, metadata=text) if text is not None else tp(t, p, off))
        return out

    def _commit_once(self, producer: Any, txn: Transaction, offsets: list[Any]) -> None:
        options = self._conn.options
        self._begin(producer)
        for (topic, partition), records in txn.outputs.items():
            if records:
                self.produce(producer, topic, partition, records, self._delivered)
        for _topic, partition, _offset, kb, vb, ts, headers in self._dead.pending:
            target = self._dead.target
            assert target is not None
            count = self._topics.partitions(target) or 1
            producer.produce(target, vb, kb, partition % count, timestamp=ts, headers=headers)
        if offsets:
            membership = self._membership
            metadata = membership.member.consumer_group_metadata() \
                if membership.joined(txn.app_id) else \
                self.group_consumer(txn.app_id).consumer_group_metadata()
            self._bounded(lambda: self._retry_txn(lambda: producer.send_offsets_to_transaction(
                offsets, metadata, options.timeout)),
                f"committing a transaction of {txn.app_id!r}: sending its positions")
        remaining = producer.flush(options.timeout)
        if remaining:
            raise DriverUnavailableError(
                f"committing a transaction of {txn.app_id!r}: {remaining} records were not "
                f"delivered to {options.bootstrap} within {options.timeout:g} s.")
        self._retry_txn(lambda: producer.commit_transaction(options.timeout))
        self._open = False

    def _bounded(self, fn: Callable[[], Any], what: str) -> Any:
        """Run a client call that may block past its own timeout in a helper thread, and give
        up on it after the driver's ``timeout`` + 5 s. librdkafka's
        ``send_offsets_to_transaction`` waits for the group coordinator without a limit when
        the broker is gone (confluentinc/librdkafka#5456): without this, a job whose broker
        died stays blocked in its commit for ever (SIGTERM cannot interrupt it either)."""
        if self._stuck is not None:
            raise DriverUnavailableError(self._stuck)
        if self._caller is None:
            self._caller = _Caller()
        options = self._conn.options
        limit = options.timeout + 5
        outcome = self._caller.call(fn, limit)
        if outcome is None:
            self._stuck = (
                f"{what}: the Kafka client did not return within {limit:g} s (the driver's "
                f"timeout + 5 s); the broker at {options.bootstrap} is unreachable. Nothing of "
                "this transaction is committed; start the job again once the broker is back: it "
                "resumes at its last commit.")
            self._open = False
            raise DriverUnavailableError(self._stuck)
        ok, value = outcome
        if not ok:
            raise value
        return value

    def _retry_txn(self, fn: Callable[[], Any]) -> None:
        """Retry a transactional call while the client says it is retriable."""
        deadline = time.monotonic() + self._conn.options.timeout
        delay = 0.05
        while True:
            try:
                fn()
                return
            except self._conn.ck.KafkaException as exc:
                err = exc.args[0]
                if not err.retriable() or err.txn_requires_abort() or err.fatal() \
                        or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 1.0)

    def _abort(self, producer: Any) -> None:
        self._open = False
        if self._stuck is not None:  # an abort would wait behind the call that never returned
            return
        try:
            producer.abort_transaction(_wait_s(self._conn.options.timeout))
        except self._conn.ck.KafkaException as exc:  # fatal errors, or no transaction open
            log.debug("aborting the transaction failed: %s", exc)

    # -- producing records --------------------------------------------------------------------
    def produce(self, producer: Any, topic: str, partition: int, records: Iterable[OutRec],
                last_offset: Callable[[Any, Any], None] | None) -> None:
        """Produce records to one partition; ``last_offset`` is the delivery callback of the
        last one (its offset tells where this producer's records end)."""
        codec = self._codec.for_topic(topic)
        kind = self._topics.kind(topic)
        produce, encode, kenc, venc = producer.produce, codec.encode, codec.kenc, codec.venc
        needs_headers = codec.needs_headers
        records = records if isinstance(records, list) else list(records)
        if not records:
            return
        *head, tail = records
        # JSON values in one C call when they allow it (serde.bulk_json), else one by one
        bulk = bulk_json([r[1] for r in head]) if codec.json_values else None
        for i, rec in enumerate(head):
            key, value, ts, _seq, headers = rec
            if needs_headers(key, value, ts, headers):
                kb, vb, ts, hdrs = encode(topic, partition, kind, rec)
                _produce_one(producer, topic, partition, kb, vb, ts, hdrs, None)
                continue
            try:  # the common case, inline
                kb, vb = kenc(key), venc(value) if bulk is None else bulk[i]
            except SerializationError:
                encode(topic, partition, kind, rec)  # raises, saying where
                raise
            hdrs = list(headers) if headers else None  # a repartition record's origin
            try:
                produce(topic, vb, kb, partition, timestamp=ts, headers=hdrs)
            except BufferError:
                _produce_one(producer, topic, partition, kb, vb, ts, hdrs, None)
        kb, vb, ts, hdrs = encode(topic, partition, kind, tail)
        _produce_one(producer, topic, partition, kb, vb, ts, hdrs, last_offset)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            key = (msg.topic(), msg.partition())
            self._pending_written[key] = max(self._pending_written.get(key, 0),
                                             msg.offset() + 1)

    def append(self, topic: str, partition: int, records: Iterable[OutRec]) -> None:
        """Append records outside any transaction (inputs for tests and demos)."""
        conn = self._conn
        if self._plain_producer is None:
            self._plain_producer = conn.producer({})
        producer = self._plain_producer
        written: dict[Key, int] = {}
        failures: list[Any] = []

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(err)
            else:
                key = (msg.topic(), msg.partition())
                written[key] = max(written.get(key, 0), msg.offset() + 1)

        with conn.errors(f"appending to {topic!r} partition {partition}"):
            self.produce(producer, topic, partition, records, delivered)
            remaining = producer.flush(conn.options.timeout)
        if failures or remaining:
            cause = failures[0] if failures else f"{remaining} records not delivered in time"
            raise DriverError(f"appending to {topic!r} partition {partition} on {conn.url} "
                              f"failed: {scrub(str(cause))}")
        for key, end in written.items():
            self._ends.wrote(key, end, transactional=False)

    # -- lifecycle ----------------------------------------------------------------------------
    def flush_dead_letters(self) -> None:
        """Commit dead-lettered records the engine had no reason to commit (a run that ends
        with bad records): only those behind the committed positions, with the positions
        that skip them."""
        group = self._membership.group
        if not self._dead.pending or self._producer is None or self._conn.fenced is not None \
                or group is None:
            return
        self._dead.keep_behind(self.offsets(Transaction(group)))
        if self._dead.pending:
            self.commit(Transaction(group))

    def end_run(self) -> None:
        """Abort what was sent and not committed, forget the run's positions, drop the
        transactional producer, flush appends."""
        self.discard()
        self.positions.clear()
        self._metadata, self._metadata_app = {}, None
        self.drop_producer()
        if self._plain_producer is not None:
            self._plain_producer.flush(_wait_s(self._conn.options.timeout))

    def close(self) -> None:
        self.closed = True
        for consumer in self._offset_consumers.values():
            consumer.close()
        self._offset_consumers.clear()
        self._plain_producer = None


class _Caller:
    """One daemon thread that runs the calls handed to it, so that a caller can stop waiting
    for one that never returns (and a stuck call does not keep the process from exiting)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="workbench-kafka-txn", daemon=True).start()

    def _loop(self) -> None:
        while True:
            fn, box, done = self._jobs.get()
            try:
                box.append((True, fn()))
            except BaseException as exc:
                box.append((False, exc))
            finally:
                done.set()

    def call(self, fn: Callable[[], Any], limit: float) -> tuple[bool, Any] | None:
        """``(True, result)`` or ``(False, exception)``; ``None`` after ``limit`` seconds."""
        box: list[tuple[bool, Any]] = []
        done = threading.Event()
        self._jobs.put((fn, box, done))
        return box[0] if done.wait(limit) else None


def _produce_one(producer: Any, topic: str, partition: int, kb: bytes | None,
                 vb: bytes | None, ts: int, hdrs: list[tuple[str, bytes]] | None,
                 cb: Callable[[Any, Any], None] | None) -> None:
    while True:
        try:
            producer.produce(topic, vb, kb, partition, timestamp=ts, headers=hdrs,
                             on_delivery=cb)
            return
        except BufferError:  # the local queue is full: let deliveries drain
            producer.poll(0.05)
