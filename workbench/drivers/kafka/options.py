"""Settings of the Kafka driver, parsed from its URL, and the lazy import of confluent-kafka.

URL: ``kafka://host:port[,host:port][?option=value&...]``. Every part is checked here, so a
mistake is a :class:`~workbench.errors.DefinitionError` naming the part and the accepted form
before anything connects. Messages show the URL through :func:`workbench._urls.redact_url`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..._urls import SECRET_PARAMS, redact_url
from ...errors import DefinitionError, DriverUnavailableError, did_you_mean
from ...serde import get_serde

__all__ = ["KafkaOptions", "is_secret", "load_client"]

FORM = "'kafka://host:port[,host:port][?option=value&...]'"
#: a librdkafka property name: lower-case words joined by dots
_PROPERTY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?)$")


def load_client() -> Any:
    """confluent_kafka, imported on first use."""
    try:
        import confluent_kafka
    except ImportError as exc:
        raise DriverUnavailableError(
            "the Kafka driver needs confluent-kafka: install workbench[kafka] "
            "(pip install 'workbench[kafka]')."
        ) from exc
    return confluent_kafka


def is_secret(name: str) -> bool:
    """Whether a client option holds a secret (``sasl.password``, ``ssl.key.password``...)."""
    low = name.lower()
    return any(word in low for word in SECRET_PARAMS)


#: the options of the driver itself: (accepted form, check)
_FORMS = {
    "partitions": "an integer >= 1",
    "replication": "-1 (the broker's default) or an integer >= 1",
    "retention_ms": "-1 (keep forever), 'default' (the broker's) or an integer >= 0",
    "dead_letter": "a topic name",
    "instance": "a name for this process",
    "session_timeout_ms": "an integer >= 1 (milliseconds)",
    "transaction_timeout_ms": "an integer >= 1 (milliseconds)",
    "timeout": "a number of seconds > 0",
    "key_serde": "a serde name ('json', 'string', 'bytes', 'long', 'integer', 'double', ...)",
    "value_serde": "a serde name ('json', 'string', 'bytes', 'long', 'integer', 'double', ...)",
}


@dataclass(frozen=True)
class KafkaOptions:
    """Settings of a :class:`~workbench.drivers.kafka.KafkaDriver`, parsed from its URL (see
    the package docstring). The repr hides secret client settings."""

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

    @classmethod
    def from_url(cls, url: str, config: Mapping[str, Any] | None = None) -> KafkaOptions:
        """Parse ``kafka://host:port[,host:port]?option=value`` (``config`` adds options).

        >>> KafkaOptions.from_url("kafka://127.0.0.1:9092?partitions=3").partitions
        3

        Raises:
            DefinitionError: naming the part of the URL (shown without secrets) that is wrong
                and the form it accepts.
        """
        shown = redact_url(url) if isinstance(url, str) else repr(url)
        if not isinstance(url, str):
            raise DefinitionError(f"a Kafka URL must be a string like {FORM}, got {shown}.")
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme.lower() != "kafka" or not parts.netloc:
            raise DefinitionError(f"Kafka URL {shown!r} must look like {FORM}.")
        if parts.username is not None or parts.password is not None:
            raise DefinitionError(
                f"Kafka URL {shown!r}: credentials do not go before the host; use "
                "'?security.protocol=SASL_SSL&sasl.mechanism=PLAIN&sasl.username=USER"
                "&sasl.password=SECRET' (librdkafka settings).")
        if parts.path not in ("", "/") or parts.fragment:
            raise DefinitionError(f"Kafka URL {shown!r} has a path or fragment "
                                  f"({parts.path or '#' + parts.fragment!r}); the form is {FORM}.")
        bootstrap = _bootstrap(unquote(parts.netloc), shown)
        items: list[tuple[str, Any]] = parse_qsl(parts.query, keep_blank_values=True)
        seen: set[str] = set()
        for name, _raw in items:
            if name in seen:
                raise DefinitionError(f"Kafka URL {shown!r} gives option {name!r} twice.")
            seen.add(name)
        items += list((config or {}).items())
        known = set(_FORMS)
        changes: dict[str, Any] = {}
        client: dict[str, str] = {}
        producer: dict[str, str] = {}
        consumer: dict[str, str] = {}
        for name, raw in items:
            if not isinstance(name, str) or not name:
                raise DefinitionError(f"Kafka URL {shown!r}: an option without a name; use "
                                      "'?option=value'.")
            if name in known:
                changes[name] = _convert(shown, name, raw)
                continue
            if "." not in name:
                raise DefinitionError(f"unknown Kafka driver option {name!r} in {shown!r}."
                                      + did_you_mean(name, sorted(known))
                                      + " Settings with a dot are librdkafka's "
                                      "(e.g. 'linger.ms=20', 'producer.acks=all').")
            target, prop = client, name
            if name.startswith("producer."):
                target, prop = producer, name[len("producer."):]
            elif name.startswith("consumer."):
                target, prop = consumer, name[len("consumer."):]
            if not _PROPERTY.match(prop):
                raise DefinitionError(
                    f"Kafka option {name!r} in {shown!r} is not a librdkafka setting name "
                    "(lower-case words joined by dots, e.g. 'linger.ms', 'sasl.username'; "
                    "'producer.'/'consumer.' in front for one side).")
            if raw is None or (not isinstance(raw, bool | int | float | str)):
                raise DefinitionError(f"Kafka option {name!r} in {shown!r} needs a value "
                                      "(a string or number).")
            target[prop] = str(raw).lower() if isinstance(raw, bool) else str(raw)
        return replace(cls(bootstrap=bootstrap), client=client, producer=producer,
                       consumer=consumer, **changes)

    def secrets(self) -> list[str]:
        """The values of secret client settings (to keep them out of messages)."""
        return [v for d in (self.client, self.producer, self.consumer)
                for k, v in d.items() if is_secret(k) and v]

    def __repr__(self) -> str:
        def hide(d: dict[str, str]) -> dict[str, str]:
            return {k: "***" if is_secret(k) else v for k, v in d.items()}

        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("client", "producer", "consumer"):
            shown[name] = hide(shown[name])
        return "KafkaOptions(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def _bootstrap(netloc: str, shown: str) -> str:
    """``host:port[,host:port]`` checked: every host named, every port a number 1-65535."""
    entries = netloc.split(",")
    for entry in entries:
        host, port = entry, None
        m = re.match(r"^(\[[^\]]*\]|[^:]*)(?::(.*))?$", entry)
        if m:
            host, port = m.group(1), m.group(2)
        if not host:
            raise DefinitionError(f"Kafka URL {shown!r}: a broker without a host name "
                                  f"({entry!r}); the form is {FORM}.")
        if not _HOST.match(host):
            raise DefinitionError(f"Kafka URL {shown!r}: {host!r} is not a host name or IP "
                                  f"address; the form is {FORM}.")
        if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise DefinitionError(f"Kafka URL {shown!r}: port {port!r} of {host!r} is not a "
                                  f"number from 1 to 65535; the form is {FORM}.")
    return netloc


def _convert(shown: str, name: str, raw: Any) -> Any:
    """The value of the driver option ``name`` (a string from the URL, or a config value)."""
    form = _FORMS[name]

    def bad() -> DefinitionError:
        return DefinitionError(f"Kafka driver option {name}={raw!r} in {shown!r} must be "
                               f"{form}.")

    text = str(raw).strip() if raw is not None else ""
    if name in ("key_serde", "value_serde"):
        if not text:
            raise bad()
        try:
            get_serde(text)
        except DefinitionError as exc:
            raise DefinitionError(f"Kafka driver option {name}={raw!r} in {shown!r}: {exc} "
                                  f"It must be {form}.") from None
        return text
    if name in ("dead_letter", "instance"):
        if not text or any(c.isspace() for c in text):
            raise bad()
        return text
    if name == "retention_ms" and text == "default":
        return None
    if name == "timeout":
        try:
            value = float(text)
        except ValueError:
            raise bad() from None
        if not math.isfinite(value) or value <= 0:
            raise bad()
        return value
    if isinstance(raw, bool) or not re.fullmatch(r"-?\d+", text):
        raise bad()
    number = int(text)
    low = {"partitions": 1, "replication": -1, "retention_ms": -1}.get(name, 1)
    if number < low or (name == "replication" and number == 0):
        raise bad()
    return number
