"""Settings of the Kafka driver, parsed from its URL, and the lazy import of confluent-kafka."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ...errors import DefinitionError, DriverUnavailableError, did_you_mean
from ...serde import get_serde

__all__ = ["KafkaOptions", "load_client"]


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


@dataclass(frozen=True)
class KafkaOptions:
    """Settings of a :class:`~workbench.drivers.kafka.KafkaDriver`, parsed from its URL (see
    the package docstring)."""

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
