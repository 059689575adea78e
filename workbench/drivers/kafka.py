"""The Kafka driver: ``kafka://host:port[,host:port][?option=value&...]`` (confluent-kafka).

Topics map 1:1 to Kafka topics; keys and values go through serdes (JSON by default); record
timestamps and headers are kept. The engine chooses every partition itself (Kafka's murmur2 rule,
:mod:`workbench.partitioning`), so the driver produces to explicit partitions; the producer is
still configured with ``partitioner=murmur2_random`` so that anything it places agrees with the
Java client.

**Exactly-once, like Kafka Streams' exactly_once_v2.** One transactional producer per driver
(one per process and application). :meth:`KafkaDriver.commit` runs one transaction: produce every
output (sinks, repartition and changelog records), ``send_offsets_to_transaction`` with the
input positions and the consumer group metadata of this process's group member, commit. The
group metadata fences zombies: a process that lost its partitions in a rebalance has a stale
generation, so its transaction is refused (:class:`~workbench.errors.FencedError`) and nothing it
wrote becomes visible. With ``instance=NAME`` the ``transactional.id`` is stable
(``<app>-<NAME>``) and the group membership static (``group.instance.id``): a restarted instance
fences its predecessor's producer at once and aborts its open transaction, instead of waiting
for the transaction timeout; it takes its partitions back without a rebalance.

**Reading.** Every consumer reads ``read_committed``. The engine reads by explicit position; a
transactional partition has gaps (commit markers, aborted records), so :meth:`end_offset` is the
offset after the last *committed record* below the last stable offset (found from the log,
cached), not the raw last stable offset: "position == end" then still means "nothing left".
After a commit the driver knows where its own records end, so reads see the driver's own
commits at once (the broker writes transaction markers asynchronously).

**Membership.** :meth:`assign` joins the consumer group ``<app>`` with the range assignor: every
process subscribes to the same topics, and the range assignor gives the same partition number of
every topic with the same partition count to the same member, so the partitions of a task (a
sub-topology's inputs, which are co-partitioned) always land together. :meth:`poll_membership`
reports rebalances to the engine (see its docstring for the engine's side).

**Bad input.** A record that cannot be deserialized stops the run with a
:class:`~workbench.errors.SerializationError` naming topic, partition and offset; with
``dead_letter=TOPIC`` records of source topics go to that topic instead (raw bytes, the error in
``workbench.error*`` headers) in the same transaction as the position that skips them.

**Topics the driver creates** keep their records (``retention.ms=-1``; ``retention_ms=N`` or
``default`` for the broker's): Kafka deletes by record timestamp, so replayed history would
otherwise vanish within minutes. Changelog topics are compacted.

URL options: ``partitions`` (default count of topics the driver creates, 1), ``replication``
(-1: the broker's default), ``retention_ms``, ``dead_letter``, ``instance``,
``session_timeout_ms`` (10000),
``transaction_timeout_ms`` (10000), ``timeout`` (seconds to wait for the broker, 60),
``key_serde``/``value_serde`` (``json``); any option with a dot is a librdkafka setting for
every client, or only for the producer/consumers with a ``producer.``/``consumer.`` prefix.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import (
    DefinitionError,
    DriverError,
    DriverUnavailableError,
    FencedError,
    SerializationError,
    did_you_mean,
)
from ..serde import get_serde
from ..types import Change
from ..windows import Windowed
from .base import Driver, OutRec, ReadRec, Transaction

__all__ = ["KafkaDriver", "KafkaOptions"]

log = logging.getLogger(__name__)

#: header that carries a timestamp librdkafka cannot send (it reads 0 as "now")
TS_HEADER = "workbench.timestamp"
#: headers that keep Python types JSON loses: windowed keys, table changes
KEY_TYPE_HEADER = "workbench.key.type"
VALUE_TYPE_HEADER = "workbench.value.type"
#: headers of a dead-letter record
ERROR_HEADERS = ("workbench.error", "workbench.error.topic", "workbench.error.partition",
                 "workbench.error.offset")
_PRIVATE_HEADERS = frozenset({TS_HEADER, KEY_TYPE_HEADER, VALUE_TYPE_HEADER})

_CHUNK = 10_000  # messages per consume() call
_MAX_BUFFERED = 100_000  # messages buffered per partition before its fetching pauses


def _client() -> Any:
    """confluent_kafka, imported on first use."""
    try:
        import confluent_kafka
    except ImportError as exc:
        raise DriverUnavailableError(
            "the Kafka driver needs confluent-kafka: install workbench[kafka] "
            "(pip install 'workbench[kafka]')."
        ) from exc
    return confluent_kafka


# -- options --------------------------------------------------------------------------------
@dataclass(frozen=True)
class KafkaOptions:
    """Settings of a :class:`KafkaDriver`, parsed from its URL (see the module docstring)."""

    bootstrap: str
    partitions: int = 1
    replication: int = -1
    retention_ms: int | None = -1
    dead_letter: str | None = None
    instance: str | None = None
    session_timeout_ms: int = 10_000
    transaction_timeout_ms: int = 10_000
    timeout: float = 60.0
    key_serde: str = "json"
    value_serde: str = "json"
    client: dict[str, str] = field(default_factory=dict)
    producer: dict[str, str] = field(default_factory=dict)
    consumer: dict[str, str] = field(default_factory=dict)

    _INTS = ("partitions", "replication", "session_timeout_ms", "transaction_timeout_ms",
             "retention_ms")

    @classmethod
    def from_url(cls, url: str, config: Mapping[str, Any] | None = None) -> KafkaOptions:
        """Parse ``kafka://host:port[,host:port]?option=value`` (``config`` adds options).

        >>> KafkaOptions.from_url("kafka://127.0.0.1:9092?partitions=3").partitions
        3
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "kafka" or not parts.netloc:
            raise DefinitionError(f"Kafka URL {url!r} must look like "
                                  "'kafka://host:port[,host:port][?option=value]'.")
        opts = cls(bootstrap=unquote(parts.netloc))
        items: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
        items.update(config or {})
        known = {f for f in cls.__dataclass_fields__ if f not in
                 ("bootstrap", "client", "producer", "consumer")}
        changes: dict[str, Any] = {}
        client, producer, consumer = {}, {}, {}
        for name, raw in items.items():
            if name.startswith("producer."):
                producer[name[len("producer."):]] = str(raw)
            elif name.startswith("consumer."):
                consumer[name[len("consumer."):]] = str(raw)
            elif "." in name:
                client[name] = str(raw)
            elif name in known:
                changes[name] = cls._convert(url, name, raw)
            else:
                raise DefinitionError(f"unknown Kafka driver option {name!r} in {url!r}."
                                      + did_you_mean(name, sorted(known)))
        return replace(opts, client=client, producer=producer, consumer=consumer, **changes)

    @classmethod
    def _convert(cls, url: str, name: str, raw: Any) -> Any:
        try:
            if name == "retention_ms" and str(raw) == "default":
                return None
            if name in cls._INTS:
                return int(raw)
            if name == "timeout":
                return float(raw)
        except (TypeError, ValueError):
            raise DefinitionError(f"Kafka driver option {name}={raw!r} in {url!r} must be a "
                                  "number.") from None
        if name in ("key_serde", "value_serde"):
            get_serde(str(raw))  # validates the name
        return str(raw) or None


# -- one consumer reading partitions by position ----------------------------------------------
class _Reader:
    """An assign-mode ``read_committed`` consumer that reads partitions from explicit offsets.

    Messages of every assigned partition are buffered per partition, so that reading the
    partitions in turn never fetches twice. Continuing where the previous read of a partition
    stopped costs nothing; any other offset is a seek.
    """

    def __init__(self, driver: KafkaDriver, name: str, *, max_assigned: int | None = None) -> None:
        self._driver = driver
        self._name = name
        self._max_assigned = max_assigned
        self._consumer: Any = None
        self._next: dict[tuple[str, int], int] = {}  # offset a continuing read asks for
        self._buf: dict[tuple[str, int], deque[Any]] = {}
        self._since: dict[tuple[str, int], int] = {}  # offset the buffered stream started at
        self._last: dict[tuple[str, int], int | None] = {}  # last record offset since then
        self._paused: set[tuple[str, int]] = set()  # full buffers: not fetched for now

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

    def release(self, keys: Iterable[tuple[str, int]]) -> None:
        """Stop reading these partitions."""
        tp = self._driver._ck.TopicPartition
        drop = [k for k in keys if k in self._next]
        if not drop or self._consumer is None:
            return
        with self._driver._errors("unassigning partitions"):
            self._consumer.incremental_unassign([tp(t, p) for t, p in drop])
        for k in drop:
            for d in (self._next, self._buf, self._since, self._last):
                d.pop(k, None)
            self._paused.discard(k)

    def _open(self) -> Any:
        if self._consumer is None:
            self._consumer = self._driver._new_consumer(self._name)
        return self._consumer

    def _position(self, key: tuple[str, int], offset: int) -> None:
        """Make the buffered stream of ``key`` continue at ``offset``."""
        if self._next.get(key) == offset:
            return
        consumer = self._open()
        tp = self._driver._ck.TopicPartition(key[0], key[1], offset)
        with self._driver._errors(f"reading {key[0]!r} partition {key[1]}"):
            if key in self._next:
                try:
                    consumer.seek(tp)
                except self._driver._ck.KafkaException:  # not fetching yet: assign afresh
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
        with self._driver._errors("consuming"):
            msgs = consumer.consume(_CHUNK, timeout)
        eof = self._driver._ck.KafkaError._PARTITION_EOF
        bufs, lasts = self._buf, self._last
        key: tuple[str, int] | None = None
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
                self._driver._learn_eof(key, m.offset(), self._since[key], lasts[key])
            else:
                self._driver._raise(self._driver._ck.KafkaException(err),
                                    f"reading {key[0]!r} partition {key[1]}")
        if last is not None:
            lasts[key] = last.offset()  # type: ignore[index]
        for k, b in bufs.items():
            if len(b) > _MAX_BUFFERED and k not in self._paused:
                self._flow(k)

    def _flow(self, key: tuple[str, int]) -> None:
        """Pause fetching a partition whose buffer is full (a partition nobody reads now must
        not fill memory), resume it once the buffer is half empty."""
        size = len(self._buf.get(key, ()))
        tp = [self._driver._ck.TopicPartition(*key)]
        with self._driver._errors("pausing or resuming a partition"):
            if key in self._paused and size <= _MAX_BUFFERED // 2:
                self._consumer.resume(tp)
                self._paused.discard(key)
            elif key not in self._paused and size > _MAX_BUFFERED:
                self._consumer.pause(tp)
                self._paused.add(key)

    def read(self, topic: str, partition: int, offset: int, max_records: int, *,
             wait: bool) -> list[Any]:
        """Up to ``max_records`` messages from ``offset``; with ``wait``, block until at least
        one arrives (the caller knows records exist there)."""
        key = (topic, partition)
        self._position(key, offset)
        buf = self._buf[key]
        if not buf:
            self._fill(0)
            if not buf and not wait:  # as Kafka Streams: never pass a partition with data
                wait = self._driver._more_committed(key, offset, self._consumer)
            if not buf and wait:
                deadline = time.monotonic() + self._driver.options.timeout
                while not buf:
                    if time.monotonic() > deadline:
                        raise DriverError(
                            f"reading {topic!r} partition {partition} from offset {offset}: "
                            f"committed records exist there but none arrived within "
                            f"{self._driver.options.timeout:g} s from {self._driver.url}.")
                    self._fill(0.05)
        n = min(max_records, len(buf))
        out = [buf.popleft() for _ in range(n)]
        if out:
            self._next[key] = out[-1].offset() + 1
        if key in self._paused:
            self._flow(key)
        return out

    def unread(self, key: tuple[str, int], msgs: list[Any]) -> None:
        """Put back messages a read returned but the caller did not use."""
        if msgs:
            self._buf[key].extendleft(reversed(msgs))
            self._next[key] = msgs[0].offset()


# -- the driver -------------------------------------------------------------------------------
_OPEN: weakref.WeakSet[KafkaDriver] = weakref.WeakSet()


@atexit.register
def _close_open_drivers() -> None:  # pragma: no cover - runs at interpreter exit
    for driver in list(_OPEN):
        try:
            driver.close()
        except Exception:
            log.debug("closing %r at exit failed", driver, exc_info=True)


class KafkaDriver(Driver):
    """Topics, transactions and group membership on an Apache Kafka cluster.

    Args:
        url: ``kafka://host:port[,host:port][?option=value&...]`` (see the module docstring).
        config: more options, as in the URL.
    """

    scheme = "kafka"

    def __init__(self, url: str, *, config: Mapping[str, Any] | None = None) -> None:
        self._ck = _client()
        self.options = KafkaOptions.from_url(url, config)
        self.url = url
        self.default_partitions = self.options.partitions
        self.key_serde = get_serde(self.options.key_serde)
        self.value_serde = get_serde(self.options.value_serde)
        self._json_keys = self.key_serde.name == "json"
        self._json_values = self.value_serde.name == "json"
        codec = _Json()
        #: decoded keys by their bytes (JSON keys repeat; the codec fills it)
        self._known_keys: dict[bytes, Any] = codec.keys if self._json_keys else {}
        self._kenc: Callable[[Any], bytes | None] = codec.dumps_key if self._json_keys \
            else self.key_serde.serialize
        self._kdec: Callable[[bytes | None], Any] = codec.loads_key if self._json_keys \
            else _key_decoder(self.key_serde)
        self._venc: Callable[[Any], bytes | None] = codec.dumps if self._json_values \
            else self.value_serde.serialize
        self._vdec: Callable[[bytes | None], Any] = codec.loads if self._json_values \
            else self.value_serde.deserialize
        self._admin_client: Any = None
        self._plain_producer: Any = None
        self._producer: Any = None
        self._txn_id: str | None = None
        self._fenced: FencedError | None = None
        self._member: Any = None
        self._group: str | None = None
        self._subscribed: list[str] = []
        self._owned: set[tuple[str, int]] | None = None
        self._assignments = 0  # assignments received (the group's callbacks count them)
        self._changed = False
        self._offset_consumers: dict[str, Any] = {}
        self._stream = _Reader(self, "stream")
        self._bulk = _Reader(self, "bulk", max_assigned=1)
        self._probe_consumer: Any = None
        self._hw_consumer: Any = None
        self._counts: dict[str, int] = {}
        self._kinds: dict[str, str] = {}
        self._ends: dict[tuple[str, int], tuple[int, int]] = {}  # (stable offset, data end)
        self._written: dict[tuple[str, int], int] = {}  # end of our own committed records
        self._marked: dict[tuple[str, int], int] = {}  # same, for transactional writes
        self._pending_written: dict[tuple[str, int], int] = {}
        self._positions: dict[tuple[str, int], int] = {}  # committed positions (owned inputs)
        # dead-lettered records not committed yet: (topic, partition, offset, key, value, ts,
        # headers)
        self._dead: list[tuple[str, int, int, Any, Any, int, list[tuple[str, bytes]]]] = []
        self._skips: dict[tuple[str, int], tuple[int, int]] = {}  # dead-lettered tails
        self._closed = False
        self.commits = 0
        if self.options.dead_letter:
            self._kinds[self.options.dead_letter] = "dead_letter"
        _OPEN.add(self)

    # -- clients ------------------------------------------------------------------------------
    def _config(self, extra: Mapping[str, Any], role: dict[str, str]) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "bootstrap.servers": self.options.bootstrap,
            "client.id": f"workbench-{os.getpid()}",
        }
        cfg.update(extra)
        cfg.update(self.options.client)
        cfg.update(role)
        return cfg

    def _new_consumer(self, name: str, group: str | None = None,
                      extra: Mapping[str, Any] | None = None) -> Any:
        cfg = self._config({
            "group.id": group or f"workbench-{name}-{uuid.uuid4().hex[:12]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "allow.auto.create.topics": False,
            "fetch.wait.max.ms": 10,
            "queued.max.messages.kbytes": 32768,
            "session.timeout.ms": self.options.session_timeout_ms,
            **(extra or {}),
        }, self.options.consumer)
        with self._errors("creating a Kafka consumer"):
            return self._ck.Consumer(cfg, logger=log)

    @property
    def _admin(self) -> Any:
        if self._admin_client is None:
            from confluent_kafka.admin import AdminClient

            cfg = self._config({"allow.auto.create.topics": False}, {})
            with self._errors("connecting"):
                self._admin_client = AdminClient(cfg, logger=log)
        return self._admin_client

    def _probe(self) -> Any:
        if self._probe_consumer is None:
            self._probe_consumer = self._new_consumer("probe")
        return self._probe_consumer

    def _producer_config(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        return self._config({
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "allow.auto.create.topics": False,
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
            **extra,
        }, self.options.producer)

    def _ensure_producer(self, app_id: str) -> Any:
        """The transactional producer of this process for ``app_id`` (initialized: an earlier
        producer with the same ``transactional.id`` is fenced and its open transaction
        aborted)."""
        if self._fenced is not None:
            raise self._fenced
        if self._closed:
            raise DriverError(f"{self!r} is closed; connect again to run.")
        if self._producer is not None:
            if self._txn_id is not None and not self._txn_id.startswith(f"{app_id}-"):
                raise DriverError(f"{self!r} already commits for another application "
                                  f"({self._txn_id!r}); use one driver per application.")
            return self._producer
        suffix = self.options.instance or uuid.uuid4().hex
        txn_id = f"{app_id}-{suffix}"
        cfg = self._producer_config({
            "transactional.id": txn_id,
            "transaction.timeout.ms": self.options.transaction_timeout_ms,
        })
        with self._errors("creating the transactional producer"):
            producer = self._ck.Producer(cfg, logger=log)
        self._retry(lambda: producer.init_transactions(self.options.timeout),
                    f"initializing transactions for {txn_id!r}")
        self._producer, self._txn_id = producer, txn_id
        log.debug("transactional producer %s ready", txn_id)
        return producer

    # -- errors (the one place client exceptions become workbench errors) ---------------------
    def _translate(self, exc: BaseException, action: str) -> DriverError:
        ck = self._ck
        err = exc.args[0] if exc.args and isinstance(exc.args[0], ck.KafkaError) else None
        if isinstance(exc, DriverError):
            return exc
        if err is None:
            return DriverError(f"{action} on {self.url} failed: {exc}")
        code = err.code()
        E = ck.KafkaError
        fencing = {E._FENCED, E.PRODUCER_FENCED, E.INVALID_PRODUCER_EPOCH, E.ILLEGAL_GENERATION,
                   E.UNKNOWN_MEMBER_ID, E.FENCED_INSTANCE_ID, E.FENCED_MEMBER_EPOCH,
                   E.STALE_MEMBER_EPOCH}
        if code in fencing:
            return FencedError(
                f"{action}: this process was fenced ({err.name()}: {err.str()}). Another process "
                "of the same application took over its partitions (or a newer instance with the "
                "same instance= started); it stops without committing, so nothing is written "
                "twice. Restart it to rejoin.")
        if code in (E._TRANSPORT, E._ALL_BROKERS_DOWN, E._RESOLVE):
            return DriverUnavailableError(
                f"{action}: cannot reach the Kafka broker at {self.options.bootstrap} "
                f"({err.str()}). Is it running? For a local broker: workbench dev up.")
        if code == E._TIMED_OUT:
            return DriverUnavailableError(
                f"{action}: the Kafka broker at {self.options.bootstrap} did not answer in time "
                f"({err.str()}). Is it running and reachable? For a local broker: "
                "workbench dev up.")
        return DriverError(f"{action} on {self.url} failed: {err.name()}: {err.str()}")

    def _raise(self, exc: BaseException, action: str) -> NoReturn:
        error = self._translate(exc, action)
        if isinstance(error, FencedError) and self._producer is not None:
            self._fenced = error
        raise error from (None if error is exc else exc)

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (self._ck.KafkaException, ValueError, TypeError, RuntimeError) as exc:
            if isinstance(exc, SerializationError | DefinitionError):
                raise
            self._raise(exc, action)

    @property
    def _transient(self) -> frozenset[int]:
        """Error codes that go away by themselves (leadership and coordinators moving, a topic
        that was just created, a transaction still being completed)."""
        E = self._ck.KafkaError
        return frozenset({
            E.NOT_LEADER_FOR_PARTITION, E.LEADER_NOT_AVAILABLE, E.UNKNOWN_TOPIC_OR_PART,
            E._UNKNOWN_PARTITION, E._UNKNOWN_TOPIC, E.NOT_COORDINATOR,
            E.COORDINATOR_LOAD_IN_PROGRESS, E.COORDINATOR_NOT_AVAILABLE, E.REQUEST_TIMED_OUT,
            E.NETWORK_EXCEPTION, E.UNSTABLE_OFFSET_COMMIT, E.CONCURRENT_TRANSACTIONS,
            E._TRANSPORT, E._TIMED_OUT, E._WAIT_COORD, E.KAFKA_STORAGE_ERROR,
        })

    def _retry(self, fn: Callable[[], Any], action: str) -> Any:
        """Call ``fn``, retrying retriable client errors with backoff until the timeout."""
        deadline = time.monotonic() + self.options.timeout
        delay = 0.05
        while True:
            try:
                return fn()
            except self._ck.KafkaException as exc:
                err = exc.args[0] if exc.args else None
                retriable = err is not None and hasattr(err, "retriable") and not err.fatal() \
                    and (err.retriable() or err.code() in self._transient)
                if not retriable or time.monotonic() + delay > deadline:
                    self._raise(exc, action)
                log.info("%s: %s; retrying in %.2f s", action, err, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- log ----------------------------------------------------------------------------------
    def partitions(self, topic: str) -> int | None:
        count = self._counts.get(topic)
        if count is not None:
            return count
        with self._errors(f"looking up topic {topic!r}"):
            md = self._admin.list_topics(topic=topic, timeout=self.options.timeout)
        info = md.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            return None
        self._counts[topic] = len(info.partitions)
        return self._counts[topic]

    def topics(self) -> list[str]:
        with self._errors("listing topics"):
            md = self._admin.list_topics(timeout=self.options.timeout)
        return sorted(t for t in md.topics if not t.startswith("__"))

    def ensure_topic(self, topic: str, partitions: int | None, *, kind: str = "source",
                     compact: bool = False) -> int:
        self._kinds.setdefault(topic, kind)
        return super().ensure_topic(topic, partitions, kind=kind, compact=compact)

    def create_topic(self, topic: str, partitions: int, *, kind: str = "source",
                     compact: bool = False) -> None:
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        if partitions < 1:
            raise DefinitionError(f"topic {topic!r}: partitions must be >= 1, got {partitions}.")
        self._kinds.setdefault(topic, kind)
        # only changelogs are compacted: a table sink (Table.to) keeps its whole update history,
        # as the topic a Kafka Streams app writes with toStream().to() does by default
        compact = compact and kind == "changelog"
        config = {"cleanup.policy": "compact"} if compact else {}
        if not compact and self.options.retention_ms is not None:
            # Kafka deletes records by their timestamps: replayed history (a notebook's sample
            # data) would vanish within minutes under the broker's default 7 days
            config["retention.ms"] = str(self.options.retention_ms)
        new = NewTopic(topic, num_partitions=partitions,
                       replication_factor=self.options.replication, config=config)
        with self._errors(f"creating topic {topic!r}"):
            futures = self._admin.create_topics([new], request_timeout=self.options.timeout)
            try:
                futures[topic].result()
            except self._ck.KafkaException as exc:
                if exc.args[0].code() != self._ck.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        deadline = time.monotonic() + self.options.timeout
        while self.partitions(topic) is None:  # metadata propagates asynchronously
            if time.monotonic() > deadline:
                raise DriverError(f"topic {topic!r} was created on {self.url} but does not show "
                                  "up in the metadata.")
            time.sleep(0.05)

    def _encode(self, topic: str, partition: int, kind: str, record: OutRec
                ) -> tuple[bytes | None, bytes | None, int, list[tuple[str, bytes]] | None]:
        key, value, ts, _seq, headers = record
        hdrs = list(headers) if headers else None
        try:
            if self._json_keys and type(key) is Windowed:
                hdrs = [*(hdrs or ()), (KEY_TYPE_HEADER, b"windowed")]
            kb = self._kenc(key)
            if self._json_values and type(value) is Change:
                hdrs = [*(hdrs or ()), (VALUE_TYPE_HEADER, b"change")]
            vb = self._venc(value)
        except SerializationError as exc:
            raise SerializationError(
                f"cannot write a record with key {key!r} to {topic!r} partition {partition} "
                f"({kind} topic): {exc}") from exc
        if ts is None or ts <= 0:
            hdrs = [*(hdrs or ()), (TS_HEADER, str(-1 if ts is None else ts).encode())]
        return kb, vb, ts if ts is not None and ts > 0 else 0, hdrs

    def _produce(self, producer: Any, topic: str, partition: int, records: Iterable[OutRec],
                 last_offset: Callable[[Any, Any], None] | None) -> None:
        """Produce records to one partition; ``last_offset`` is the delivery callback of the
        last one (its offset tells where this producer's records end)."""
        kind = self._kinds.get(topic, "source")
        produce, encode, kenc, venc = producer.produce, self._encode, self._kenc, self._venc
        records = records if isinstance(records, list) else list(records)
        if not records:
            return
        *head, tail = records
        for rec in head:
            key, value, ts, _seq, headers = rec
            if headers or ts is None or ts <= 0 or type(key) is Windowed \
                    or type(value) is Change:
                kb, vb, ts, hdrs = encode(topic, partition, kind, rec)
                self._produce_one(producer, topic, partition, kb, vb, ts, hdrs, None)
                continue
            try:  # the common case, inline
                kb, vb = kenc(key), venc(value)
            except SerializationError:
                encode(topic, partition, kind, rec)  # raises, saying where
                raise
            try:
                produce(topic, vb, kb, partition, timestamp=ts)
            except BufferError:
                self._produce_one(producer, topic, partition, kb, vb, ts, None, None)
        kb, vb, ts, hdrs = encode(topic, partition, kind, tail)
        self._produce_one(producer, topic, partition, kb, vb, ts, hdrs, last_offset)

    @staticmethod
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

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            key = (msg.topic(), msg.partition())
            self._pending_written[key] = max(self._pending_written.get(key, 0),
                                             msg.offset() + 1)

    def append(self, topic: str, partition: int, records: Iterable[OutRec]) -> None:
        if self._plain_producer is None:
            with self._errors("creating a producer"):
                self._plain_producer = self._ck.Producer(self._producer_config({}), logger=log)
        producer = self._plain_producer
        self._pending_written = {}
        failures: list[Any] = []

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(err)
            else:
                self._delivered(err, msg)

        with self._errors(f"appending to {topic!r} partition {partition}"):
            self._produce(producer, topic, partition, records, delivered)
            remaining = producer.flush(self.options.timeout)
        if failures or remaining:
            cause = failures[0] if failures else f"{remaining} records not delivered in time"
            raise DriverError(f"appending to {topic!r} partition {partition} on {self.url} "
                              f"failed: {cause}")
        for key, end in self._pending_written.items():
            self._written[key] = max(self._written.get(key, 0), end)

    # reading ---------------------------------------------------------------------------------
    def _decode(self, topic: str, partition: int, msgs: list[Any], dead_letter: bool
                ) -> tuple[list[ReadRec], int]:
        """Decode messages; return the records and how many messages were used. A bad record
        stops decoding (returned first: raise) or, with ``dead_letter``, is queued for the
        dead-letter topic and skipped."""
        kdes, vdes, known = self._kdec, self._vdec, self._known_keys
        if self._kinds.get(topic) == "dead_letter":  # bad records, as they were
            kdes = vdes = _raw
            known = {}
        known_keys = known.get
        out: list[ReadRec] = []
        append = out.append
        for used, m in enumerate(msgs):
            try:
                kb = m.key()
                key = known_keys(kb)
                if key is None and kb is not None:
                    key = kdes(kb)
                value = vdes(m.value())
            except SerializationError as exc:
                if dead_letter:
                    self._to_dead_letter(topic, partition, m, exc)
                    continue
                if out:
                    return out, used  # hand out the good records first
                raise SerializationError(
                    f"cannot read the record at offset {m.offset()} of {topic!r} partition "
                    f"{partition} on {self.url}: {exc}. Fix or remove it, or route bad records "
                    "to a dead-letter topic with ?dead_letter=TOPIC.") from exc
            ts = m.timestamp()[1]
            headers = m.headers()
            if headers:
                key, value, ts, headers = self._strip_headers(key, value, ts, headers)
            append((key, value, ts, m.offset(), headers))
        return out, len(msgs)

    @staticmethod
    def _strip_headers(key: Any, value: Any, ts: int, headers: list[tuple[str, bytes]]
                       ) -> tuple[Any, Any, int, Any]:
        kept = []
        for name, raw in headers:
            if name not in _PRIVATE_HEADERS:
                kept.append((name, raw))
            elif name == TS_HEADER:
                ts = int(raw)
            elif name == KEY_TYPE_HEADER and raw == b"windowed" and isinstance(key, tuple):
                key = Windowed(*key)
            elif name == VALUE_TYPE_HEADER and raw == b"change" and isinstance(value, list):
                value = Change(*value)
        return key, value, ts, tuple(kept) if kept else None

    def _to_dead_letter(self, topic: str, partition: int, msg: Any, exc: Exception) -> None:
        target = self.options.dead_letter
        assert target is not None
        if target not in self._counts:
            self.ensure_topic(target, None, kind="dead_letter")
        headers = list(msg.headers() or ())
        headers += [(ERROR_HEADERS[0], str(exc).encode()), (ERROR_HEADERS[1], topic.encode()),
                    (ERROR_HEADERS[2], str(partition).encode()),
                    (ERROR_HEADERS[3], str(msg.offset()).encode())]
        self._dead.append((topic, partition, msg.offset(), msg.key(), msg.value(),
                           max(msg.timestamp()[1], 0), headers))
        log.warning("record at offset %d of %r partition %d goes to dead-letter topic %r: %s",
                    msg.offset(), topic, partition, target, exc)

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> list[ReadRec]:
        key = (topic, partition)
        kind = self._kinds.get(topic, "source")
        reader = self._bulk if kind == "changelog" else self._stream
        dead_letter = self.options.dead_letter is not None and kind == "source"
        skip = self._skips.get(key)
        start = offset
        if skip is not None:
            if skip[0] == offset:
                offset = skip[1]  # dead-lettered records already queued
            elif offset > skip[1]:
                del self._skips[key]
        while True:
            msgs = reader.read(topic, partition, offset, max_records,
                               wait=offset < self._known_end(key))
            if not msgs:
                return []
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
                    self._skips[key] = (tail_from, tail_to)
            if records:
                return records
            offset = msgs[used - 1].offset() + 1

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

    # end offsets -----------------------------------------------------------------------------
    def _stable_offset(self, topic: str, partition: int, *, committed: bool = True) -> int:
        """The last stable offset (``committed``) or the high watermark of a partition."""
        tp = self._ck.TopicPartition(topic, partition)
        if committed:
            consumer = self._probe()
        else:
            if self._hw_consumer is None:
                self._hw_consumer = self._new_consumer(
                    "hw", extra={"isolation.level": "read_uncommitted"})
            consumer = self._hw_consumer
        _low, high = self._retry(
            lambda: consumer.get_watermark_offsets(tp, timeout=self.options.timeout),
            f"reading the end offset of {topic!r} partition {partition}")
        return int(high)

    def _settled_stable_offset(self, topic: str, partition: int) -> int:
        """The last stable offset once no transaction is open on the partition.

        A changelog is read to restore a task that this process just took over. The previous
        owner's last transaction may be committed with its markers still on the way (the
        broker writes them asynchronously; its positions are already committed), or left open
        by a dead process (aborted at its timeout): either way, restoring up to the stable
        offset of that moment could miss state that belongs to the committed positions. Nobody
        else writes the partition now, so it settles; this waits for that (at most the
        transaction timeout and a little).
        """
        deadline = time.monotonic() + self.options.transaction_timeout_ms / 1e3 + 5
        while True:
            stable = self._stable_offset(topic, partition)
            if stable >= self._stable_offset(topic, partition, committed=False):
                return stable
            if time.monotonic() > deadline:
                log.warning("%r partition %d still has an open transaction; restoring up to "
                            "offset %d", topic, partition, stable)
                return stable
            time.sleep(0.05)

    def _more_committed(self, key: tuple[str, int], offset: int, consumer: Any) -> bool:
        """Are there committed records at ``offset`` or after? From what the consumer's last
        fetch said when that settles it, else from the broker (one round trip)."""
        known = self._ends.get(key)
        try:
            _low, high = consumer.get_watermark_offsets(self._ck.TopicPartition(*key),
                                                        cached=True)
        except self._ck.KafkaException:
            high = -1
        if high is not None and high >= 0:
            if known is not None and high == known[0]:
                return offset < max(known[1], self._written.get(key, 0))
            if high <= offset:
                return False
        return offset < self.end_offset(*key)

    def _known_end(self, key: tuple[str, int]) -> int:
        known = self._ends.get(key)
        return max(known[1] if known else 0, self._written.get(key, 0))

    def _learn(self, key: tuple[str, int], stable: int, data_end: int) -> None:
        known = self._ends.get(key)
        if known is None or stable >= known[0]:
            self._ends[key] = (stable, data_end)

    def _learn_eof(self, key: tuple[str, int], eof: int, since: int, last: int | None) -> None:
        """A reader reached the stable offset ``eof`` after reading from ``since``."""
        if last is not None:
            self._learn(key, eof, last + 1)
            return
        known = self._ends.get(key)
        if known is not None and known[1] <= since <= known[0]:
            self._learn(key, eof, known[1])  # no records in [data end, eof)

    def end_offset(self, topic: str, partition: int) -> int:
        key = (topic, partition)
        if self._kinds.get(topic) == "changelog":
            stable = self._settled_stable_offset(topic, partition)
        else:
            stable = self._stable_offset(topic, partition)
        marked = self._marked.get(key)
        if marked is not None and stable == marked + 1:
            self._learn(key, stable, marked)  # only our commit marker after our records
        return max(self._data_end(key, stable), self._written.get(key, 0))

    def _data_end(self, key: tuple[str, int], stable: int) -> int:
        """Offset after the last committed record below ``stable`` (exact: reads the log's
        tail backwards in growing steps until it finds a record)."""
        known = self._ends.get(key)
        if known is not None and known[0] >= stable:
            return known[1]
        return self._data_end_scan(key, stable, known)

    def _data_end_scan(self, key: tuple[str, int], stable: int,
                       known: tuple[int, int] | None) -> int:
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

    def _scan(self, key: tuple[str, int], start: int) -> tuple[int | None, int]:
        """Read ``key`` from ``start`` to its stable end: (last record offset or None, end)."""
        probe = self._probe()
        tp = self._ck.TopicPartition(key[0], key[1], start)
        eof_code = self._ck.KafkaError._PARTITION_EOF
        last: int | None = None
        deadline = time.monotonic() + self.options.timeout
        with self._errors(f"reading the end of {key[0]!r} partition {key[1]}"):
            probe.assign([tp])
            try:
                while time.monotonic() < deadline:
                    for m in probe.consume(_CHUNK, 0.1):
                        err = m.error()
                        if err is None:
                            last = m.offset()
                        elif err.code() == eof_code:
                            return last, m.offset()
                        else:
                            raise self._ck.KafkaException(err)
            finally:
                probe.unassign()
        raise DriverError(f"reading the end of {key[0]!r} partition {key[1]} on {self.url} "
                          "timed out.")

    # -- transactions -------------------------------------------------------------------------
    def _group_consumer(self, app_id: str) -> Any:
        if self._member is not None and self._group == app_id:
            return self._member
        consumer = self._offset_consumers.get(app_id)
        if consumer is None:
            consumer = self._offset_consumers[app_id] = self._new_consumer("offsets", app_id)
        return consumer

    def _fetch_committed(self, app_id: str, tps: list[Any], action: str) -> list[Any]:
        """Committed offsets (stable: OffsetFetch waits out pending transactional offsets
        under read_committed); a per-partition error is raised, and retried when transient
        (``UNSTABLE_OFFSET_COMMIT`` while the previous owner's transaction completes)."""
        consumer = self._group_consumer(app_id)

        def fetch() -> list[Any]:
            got = consumer.committed(tps, timeout=self.options.timeout)
            for tp in got:
                if tp.error is not None:
                    raise self._ck.KafkaException(tp.error)
            return list(got)

        result: list[Any] = self._retry(fetch, action)
        return result

    def committed(self, app_id: str, topic: str, partition: int) -> int:
        got = self._fetch_committed(
            app_id, [self._ck.TopicPartition(topic, partition)],
            f"reading the committed position of {topic!r} partition {partition}")
        offset = got[0].offset
        offset = offset if offset >= 0 else 0
        if app_id == self._group:
            self._positions[(topic, partition)] = offset
        return offset

    def committed_metadata(self, app_id: str) -> dict[str, Any]:
        """Metadata committed with the positions of this process's partitions."""
        if app_id != self._group or not self._owned:
            return {}
        tps = [self._ck.TopicPartition(t, p) for t, p in sorted(self._owned)]
        got = self._fetch_committed(app_id, tps, "reading committed metadata")
        out: dict[str, Any] = {}
        for tp in got:
            if tp.metadata:
                try:
                    out.update(json.loads(tp.metadata))
                except ValueError:
                    continue
        return out

    def wants_commit(self) -> bool:
        """True when a commit would write something although the engine has nothing to
        commit (dead-lettered records)."""
        return bool(self._dead)

    def commit(self, txn: Transaction) -> None:
        """One Kafka transaction: outputs, dead-lettered records, positions; retried as a whole
        on abortable errors, :class:`FencedError` when another process took over."""
        producer = self._ensure_producer(txn.app_id)
        if self._changed:
            raise FencedError(
                f"the consumer group {txn.app_id!r} rebalanced and the engine did not take the "
                "new assignment (poll_membership); stopping without committing.")
        offsets = self._offsets(txn)
        attempts = 0
        while True:
            try:
                self._commit_once(producer, txn, offsets)
                break
            except self._ck.KafkaException as exc:
                err = exc.args[0]
                self._abort(producer)
                if isinstance(self._translate(exc, ""), FencedError) or err.fatal() \
                        or attempts >= 3:
                    self._raise(exc, f"committing a transaction of {txn.app_id!r}")
                attempts += 1
                log.warning("transaction of %r failed (%s); retrying (%d/3)", txn.app_id, err,
                            attempts)
                time.sleep(0.1 * attempts)
            except BaseException:
                self._abort(producer)
                raise
        for key, end in self._pending_written.items():
            self._written[key] = max(self._written.get(key, 0), end)
            self._marked[key] = end
        for tp in offsets:
            self._positions[(tp.topic, tp.partition)] = tp.offset
        self._dead.clear()
        self.commits += 1
        if self._member is not None:
            self._poll_member(0)  # serve heartbeats and rebalance callbacks between commits

    def _offsets(self, txn: Transaction) -> list[Any]:
        """Positions to commit: this process's known positions (so that every transaction
        carries the group generation that fences zombies), the engine's new ones, skipping
        dead-lettered tails."""
        positions: dict[tuple[str, int], int] = {}
        if txn.app_id == self._group and self._owned is not None:
            positions.update((k, v) for k, v in self._positions.items() if k in self._owned)
        positions.update(txn.positions)
        for key, (frm, to) in self._skips.items():
            if positions.get(key, self._positions.get(key)) == frm:
                positions[key] = to
        meta = json.dumps(txn.metadata, separators=(",", ":")) if txn.metadata else None
        tp = self._ck.TopicPartition
        return [tp(t, p, off, metadata=meta) if meta else tp(t, p, off)
                for (t, p), off in sorted(positions.items())]

    def _commit_once(self, producer: Any, txn: Transaction, offsets: list[Any]) -> None:
        self._pending_written = {}
        producer.begin_transaction()
        for (topic, partition), records in txn.outputs.items():
            if records:
                self._produce(producer, topic, partition, records, self._delivered)
        for _topic, partition, _offset, kb, vb, ts, headers in self._dead:
            target = self.options.dead_letter
            assert target is not None
            count = self.partitions(target) or 1
            producer.produce(target, vb, kb, partition % count, timestamp=ts, headers=headers)
        if offsets:
            member = self._member if self._member is not None and \
                self._group == txn.app_id else None
            metadata = member.consumer_group_metadata() if member is not None else \
                self._group_consumer(txn.app_id).consumer_group_metadata()
            self._retry_txn(lambda: producer.send_offsets_to_transaction(
                offsets, metadata, self.options.timeout))
        remaining = producer.flush(self.options.timeout)
        if remaining:
            raise DriverUnavailableError(
                f"committing a transaction of {txn.app_id!r}: {remaining} records were not "
                f"delivered to {self.options.bootstrap} within {self.options.timeout:g} s.")
        self._retry_txn(lambda: producer.commit_transaction(self.options.timeout))

    def _retry_txn(self, fn: Callable[[], Any]) -> None:
        """Retry a transactional call while the client says it is retriable."""
        deadline = time.monotonic() + self.options.timeout
        delay = 0.05
        while True:
            try:
                fn()
                return
            except self._ck.KafkaException as exc:
                err = exc.args[0]
                if not err.retriable() or err.txn_requires_abort() or err.fatal() \
                        or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 1.0)

    def _abort(self, producer: Any) -> None:
        try:
            producer.abort_transaction(self.options.timeout)
        except self._ck.KafkaException as exc:  # fatal errors, or no transaction open
            log.debug("aborting the transaction failed: %s", exc)

    # -- membership ---------------------------------------------------------------------------
    def assign(self, app_id: str, topics: Iterable[str]) -> dict[str, list[int]]:
        """Join the consumer group ``app_id`` and return the partitions this process owns.

        The transactional producer is initialized first, so a restarted ``instance=`` fences
        its predecessor (aborting its open transaction) before anything is read.
        """
        names = sorted(set(topics))
        self._ensure_producer(app_id)
        if self._member is not None and self._group != app_id:
            raise DriverError(f"{self!r} already runs application {self._group!r}; use one "
                              "driver per application.")
        if self._member is None:
            extra: dict[str, Any] = {
                "partition.assignment.strategy": "range",
                "heartbeat.interval.ms": max(500, self.options.session_timeout_ms // 10),
                "enable.partition.eof": False,
            }
            if self.options.instance:
                extra["group.instance.id"] = self.options.instance
            self._member = self._new_consumer("member", app_id, extra)
            self._group = app_id
            old = self._offset_consumers.pop(app_id, None)
            if old is not None:
                old.close()
        self._subscribed = names
        self._owned = None
        seen = self._assignments
        with self._errors(f"joining consumer group {app_id!r}"):
            self._member.subscribe(names, on_assign=self._on_assign,
                                   on_revoke=self._on_revoke, on_lost=self._on_lost)
        deadline = time.monotonic() + self.options.timeout + self.options.session_timeout_ms / 1e3
        if not self._await_assignment(seen, deadline):
            raise DriverUnavailableError(
                f"joining consumer group {app_id!r} on {self.url}: no partition assignment "
                "arrived in time.")
        self._changed = False
        return self._ownership()

    def _await_assignment(self, seen: int, deadline: float) -> bool:
        """Poll the group until an assignment newer than ``seen`` arrives (or the deadline)."""
        while self._assignments == seen:
            if time.monotonic() > deadline:
                return False
            self._poll_member(0.05)
        return True

    def _poll_member(self, timeout: float) -> None:
        member = self._member
        if member is None:
            return
        with self._errors(f"polling consumer group {self._group!r}"):
            msg = member.poll(timeout)
        if msg is not None and msg.error() is not None:
            err = msg.error()
            if err.fatal():
                self._raise(self._ck.KafkaException(err), "consumer group membership")
            log.info("consumer group %r: %s", self._group, err)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        consumer.assign(partitions)
        consumer.pause(partitions)  # this consumer only holds membership; reads go elsewhere
        self._owned = {(tp.topic, tp.partition) for tp in partitions}
        self._assignments += 1
        self._changed = True
        log.info("consumer group %r: assigned %s", self._group, sorted(self._owned))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._drop(partitions)
        consumer.unassign()

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._drop(partitions)
        consumer.unassign()

    def _drop(self, partitions: list[Any]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._owned = (self._owned or set()) - gone
        for key in gone:
            self._positions.pop(key, None)
            self._skips.pop(key, None)
        self._dead = [d for d in self._dead if (d[0], d[1]) not in gone]
        self._stream.release(gone)
        self._changed = True
        log.info("consumer group %r: revoked %s", self._group, sorted(gone))

    def _ownership(self) -> dict[str, list[int]]:
        owned = self._owned or set()
        return {t: sorted(p for tt, p in owned if tt == t) for t in self._subscribed}

    def poll_membership(self) -> dict[str, list[int]] | None:
        """Rebalance news for the engine, or ``None``.

        Call it only when everything processed so far is committed (right after
        :meth:`commit`). It serves the group's callbacks; after a revocation it waits (up to the
        session timeout) for the new assignment. A returned dict is the complete new ownership
        ``{topic: partitions}``: the engine drops the tasks whose partitions are gone (they are
        committed; nothing to flush), and creates, restores and positions (with
        :meth:`committed`) tasks for partitions new to it.
        """
        if self._member is None:
            return None
        self._poll_member(0)
        if not self._changed:
            return None
        if not self._owned:  # revoked: the assignment follows once every member has rejoined
            deadline = time.monotonic() + self.options.session_timeout_ms / 1e3
            self._await_assignment(self._assignments, deadline)
        self._changed = False
        return self._ownership()

    # -- lifecycle ----------------------------------------------------------------------------
    def _flush_dead_letters(self) -> None:
        """Commit dead-lettered records the engine had no reason to commit (a run that ends
        with bad records): only those behind the committed positions, with the positions
        that skip them."""
        if not self._dead or self._producer is None or self._fenced is not None \
                or self._group is None:
            return
        positions = {(tp.topic, tp.partition): tp.offset
                     for tp in self._offsets(Transaction(self._group))}
        self._dead = [d for d in self._dead if d[2] < positions.get((d[0], d[1]), -1)]
        if self._dead:
            self.commit(Transaction(self._group))

    def end_run(self) -> None:
        """The engine is done with this driver (a run ended or stopped): commit dead letters
        still pending, leave the consumer group (a static member keeps its slot until the
        session timeout), drop the transactional producer. Reading keeps working; a new run
        joins again."""
        try:
            self._flush_dead_letters()
        except DriverError as exc:
            log.warning("committing dead-lettered records failed: %s", exc)
        member, self._member = self._member, None
        if member is not None:
            try:
                member.close()
            except Exception:
                log.debug("leaving the consumer group failed", exc_info=True)
        self._group, self._owned, self._subscribed, self._changed = None, None, [], False
        self._positions.clear()
        self._skips.clear()
        self._dead.clear()
        self._producer = self._txn_id = None
        if self._plain_producer is not None:
            self._plain_producer.flush(self.options.timeout)

    def close(self) -> None:
        """:meth:`end_run`, and close every client. Reading stays possible (for
        ``Run.frame``): readers reconnect on demand."""
        if self._closed:
            return
        self.end_run()
        self._closed = True
        _OPEN.discard(self)
        for consumer in self._offset_consumers.values():
            consumer.close()
        self._offset_consumers.clear()
        self._plain_producer = None
        self._stream.close()
        self._bulk.close()
        for consumer in (self._probe_consumer, self._hw_consumer):
            if consumer is not None:
                consumer.close()
        self._probe_consumer = self._hw_consumer = None

    def __repr__(self) -> str:
        return f"<KafkaDriver {self.url}>"


def _raw(data: bytes | None) -> bytes | None:
    return data


def _key_decoder(serde: Any) -> Callable[[bytes | None], Any]:
    def decode(data: bytes | None) -> Any:
        key = serde.deserialize(data)
        return _tuplify(key) if type(key) is list else key
    return decode


class _Json:
    """:class:`~workbench.serde.JsonSerde`'s bytes, faster: the C encoder and scanner without
    the Python layers around them, and caches for keys (they repeat). Anything unusual falls
    back to ``JsonSerde`` itself (same bytes, same errors)."""

    _MAX_CACHE = 100_000

    def __init__(self) -> None:
        from json import encoder

        from ..serde import JsonSerde, _json_default

        self._slow = JsonSerde()
        make = encoder.c_make_encoder  # type: ignore[attr-defined]
        self._enc = None if make is None else make(
            None, _json_default, encoder.encode_basestring, None, ":", ",", False, False, True)
        self._scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
        self._key_bytes: dict[str | int, bytes] = {}
        self.keys: dict[bytes, Any] = {}

    def dumps(self, obj: Any) -> bytes | None:
        if obj is None:
            return None
        if self._enc is not None:
            try:
                return "".join(self._enc(obj, 0)).encode()
            except (TypeError, ValueError, RecursionError):
                pass
        return self._slow.serialize(obj)  # the same bytes, or JsonSerde's error

    def loads(self, data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            text = data.decode()
            obj, end = self._scan(text, 0)
            if end == len(text):
                return obj
        except (ValueError, StopIteration):
            pass
        return self._slow.deserialize(data)  # whitespace, other encodings, errors

    def dumps_key(self, key: Any) -> bytes | None:
        if type(key) is not str and type(key) is not int:  # 1, 1.0, True: equal, other bytes
            return self.dumps(key)
        data = self._key_bytes.get(key)
        if data is None:
            data = self.dumps(key)
            if len(self._key_bytes) >= self._MAX_CACHE:
                self._key_bytes.clear()
            self._key_bytes[key] = data  # type: ignore[assignment]
        return data

    def loads_key(self, data: bytes | None) -> Any:
        if data is None:
            return None
        key = self.keys.get(data)
        if key is None:
            key = self.loads(data)
            if type(key) is list:
                key = _tuplify(key)
            elif type(key) is dict:
                return key  # unhashable: not cached
            if len(self.keys) >= self._MAX_CACHE:
                self.keys.clear()
            self.keys[data] = key
        return key


def _tuplify(value: Any) -> Any:
    """Lists back to tuples (a key read from JSON; lists can never be keys)."""
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def connect_kafka(url: str) -> KafkaDriver:
    """The factory :func:`workbench.drivers.register_driver` uses for ``kafka://``."""
    return KafkaDriver(url)
