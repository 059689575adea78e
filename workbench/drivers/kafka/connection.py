"""The connection to a Kafka cluster: client configurations, client factories, and the one
place where confluent-kafka's exceptions become workbench errors (with retries of the
transient ones).

Secrets never show: the driver's URL is kept redacted (:func:`workbench._urls.redact_url`),
every error text (librdkafka's included) passes through :func:`scrub`, and the loggers of this
package (librdkafka's log lines go through one of them) carry a filter that does the same.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

from ..._urls import redact_text, redact_url
from ...errors import (
    DefinitionError,
    DriverError,
    DriverUnavailableError,
    FencedError,
    SerializationError,
)
from .options import KafkaOptions, load_client
from .options import is_secret as _is_secret

__all__ = ["Connection", "consume", "get_logger", "scrub"]

_CHUNK = 10_000  # messages per consume() call


def consume(consumer: Any, timeout: float) -> list[Any]:
    """What ``consumer`` has now, else what arrives first within ``timeout`` seconds, plus
    what came with it. (``Consumer.consume(n, timeout)`` waits the whole timeout unless ``n``
    messages arrive: measured 500 ms for one message with a 0.5 s timeout, against 17 ms this
    way.)"""
    msgs: list[Any] = consumer.consume(_CHUNK, 0)
    if msgs or timeout <= 0:
        return msgs
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(_CHUNK - 1, 0)]

#: secret values of client settings seen by any driver of this process (kept out of messages)
_SECRETS: set[str] = set()
#: a property no librdkafka knows: validating a setting stops there, before any client exists
_SENTINEL = "workbench.validate.sentinel"
_CONFIGURATION = "https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md"


def scrub(text: str) -> str:
    """``text`` without secrets: URL passwords and secret ``name=value`` settings redacted,
    and any secret setting value of a driver of this process replaced by ``***``."""
    text = redact_text(text)
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class _Scrub(logging.Filter):
    """Removes secrets from log records (ours, and librdkafka's lines logged through us)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record: leave it to logging's own error handling
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = _Scrub()


def get_logger(name: str) -> logging.Logger:
    """The logger of a module of this package, with the secret filter."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


log = get_logger(__name__)
#: librdkafka's own log lines
client_log = get_logger("workbench.drivers.kafka.client")


class Connection:
    """Options, client factories and error translation shared by the driver's parts.

    Attributes:
        ck: the ``confluent_kafka`` module.
        options: the driver's settings.
        url: the driver URL as shown in messages.
        fenced: the :class:`FencedError` this process got, if any (it stays fenced).
    """

    def __init__(self, url: str, options: KafkaOptions) -> None:
        self.ck = load_client()
        self.options = options
        _SECRETS.update(s for s in options.secrets() if len(s) >= 4)
        self.url = redact_url(url)
        self.fenced: FencedError | None = None
        self._admin: Any = None
        self._check_settings()

    def _check_settings(self) -> None:
        """Every librdkafka setting of the URL is known to librdkafka and has a valid value
        (checked one by one without creating a client: the sentinel property after it stops
        the configuration with an error either way)."""
        sides = (("", self.options.client), ("producer.", self.options.producer),
                 ("consumer.", self.options.consumer))
        for prefix, settings in sides:
            for name, value in settings.items():
                try:
                    self.ck.Producer({name: value, _SENTINEL: "1"})
                except self.ck.KafkaException as exc:
                    err = exc.args[0]
                    if _SENTINEL in err.str():
                        continue
                    shown = "***" if _is_secret(name) else value
                    raise DefinitionError(
                        f"Kafka option {prefix + name}={shown!r} in {self.url!r}: "
                        f"{scrub(err.str())} (settings with a dot are librdkafka's; see "
                        f"{_CONFIGURATION}).") from None

    # -- clients ------------------------------------------------------------------------------
    def config(self, extra: Mapping[str, Any], role: Mapping[str, str]) -> dict[str, Any]:
        """A client configuration: defaults, ``extra``, the URL's client settings, ``role``'s."""
        cfg: dict[str, Any] = {
            "bootstrap.servers": self.options.bootstrap,
            "client.id": f"workbench-{os.getpid()}",
        }
        cfg.update(extra)
        cfg.update(self.options.client)
        cfg.update(role)
        return cfg

    def consumer(self, name: str, group: str | None = None,
                 extra: Mapping[str, Any] | None = None) -> Any:
        """A new ``read_committed`` consumer (its own group unless ``group`` is given)."""
        cfg = self.config({
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
        with self.errors("creating a Kafka consumer"):
            return self.ck.Consumer(cfg, logger=client_log)

    def producer_config(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        return self.config({
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "allow.auto.create.topics": False,
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
            **extra,
        }, self.options.producer)

    def producer(self, extra: Mapping[str, Any], action: str = "creating a producer") -> Any:
        with self.errors(action):
            return self.ck.Producer(self.producer_config(extra), logger=client_log)

    @property
    def admin(self) -> Any:
        """The admin client (created on first use)."""
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            cfg = self.config({"allow.auto.create.topics": False}, {})
            with self.errors("connecting"):
                self._admin = AdminClient(cfg, logger=client_log)
        return self._admin

    # -- errors -------------------------------------------------------------------------------
    def translate(self, exc: BaseException, action: str) -> DriverError:
        """The workbench error for a client exception raised while doing ``action`` (its text
        without secrets)."""
        if isinstance(exc, DriverError):
            return exc
        cls, message = self._classify(exc, action)
        return cls(scrub(message))

    def _classify(self, exc: BaseException, action: str) -> tuple[type[DriverError], str]:
        ck = self.ck
        err = exc.args[0] if exc.args and isinstance(exc.args[0], ck.KafkaError) else None
        if err is None:
            return DriverError, f"{action} on {self.url} failed: {exc}"
        code = err.code()
        E = ck.KafkaError
        fencing = {E._FENCED, E.PRODUCER_FENCED, E.INVALID_PRODUCER_EPOCH, E.ILLEGAL_GENERATION,
                   E.UNKNOWN_MEMBER_ID, E.FENCED_INSTANCE_ID, E.FENCED_MEMBER_EPOCH,
                   E.STALE_MEMBER_EPOCH}
        if code in fencing:
            return FencedError, (
                f"{action}: this process was fenced ({err.name()}: {err.str()}). Another process "
                "of the same application took over its partitions (or a newer instance with the "
                "same instance= started); it stops without committing, so nothing is written "
                "twice. Restart it to rejoin.")
        if code in (E._TRANSPORT, E._ALL_BROKERS_DOWN, E._RESOLVE):
            return DriverUnavailableError, (
                f"{action}: cannot reach the Kafka broker at {self.options.bootstrap} "
                f"({err.str()}). Is it running? For a local broker: workbench dev up.")
        if code == E._TIMED_OUT:
            return DriverUnavailableError, (
                f"{action}: the Kafka broker at {self.options.bootstrap} did not answer in time "
                f"({err.str()}). Is it running and reachable? For a local broker: "
                "workbench dev up.")
        return DriverError, f"{action} on {self.url} failed: {err.name()}: {err.str()}"

    def raise_(self, exc: BaseException, action: str) -> NoReturn:
        """Raise the workbench error for ``exc``; a fencing error is remembered."""
        error = self.translate(exc, action)
        if isinstance(error, FencedError):
            self.fenced = error
        raise error from (None if error is exc else exc)

    @contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Client exceptions inside the block become workbench errors naming ``action``."""
        try:
            yield
        except (self.ck.KafkaException, ValueError, TypeError, RuntimeError) as exc:
            if isinstance(exc, SerializationError | DefinitionError):
                raise
            self.raise_(exc, action)

    @property
    def transient(self) -> frozenset[int]:
        """Error codes that go away by themselves (leadership and coordinators moving, a topic
        that was just created, a transaction still being completed)."""
        E = self.ck.KafkaError
        return frozenset({
            E.NOT_LEADER_FOR_PARTITION, E.LEADER_NOT_AVAILABLE, E.UNKNOWN_TOPIC_OR_PART,
            E._UNKNOWN_PARTITION, E._UNKNOWN_TOPIC, E.NOT_COORDINATOR,
            E.COORDINATOR_LOAD_IN_PROGRESS, E.COORDINATOR_NOT_AVAILABLE, E.REQUEST_TIMED_OUT,
            E.NETWORK_EXCEPTION, E.UNSTABLE_OFFSET_COMMIT, E.CONCURRENT_TRANSACTIONS,
            E._TRANSPORT, E._TIMED_OUT, E._WAIT_COORD, E.KAFKA_STORAGE_ERROR,
        })

    def retry(self, fn: Callable[[], Any], action: str) -> Any:
        """Call ``fn``, retrying retriable client errors with backoff until the timeout."""
        deadline = time.monotonic() + self.options.timeout
        delay = 0.05
        while True:
            try:
                return fn()
            except self.ck.KafkaException as exc:
                err = exc.args[0] if exc.args else None
                retriable = err is not None and hasattr(err, "retriable") and not err.fatal() \
                    and (err.retriable() or err.code() in self.transient)
                if not retriable or time.monotonic() + delay > deadline:
                    self.raise_(exc, action)
                log.info("%s: %s; retrying in %.2f s", action, err, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
