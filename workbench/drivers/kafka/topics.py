"""Topics on the cluster (admin client): partition counts, listing, creation with the
driver's retention and compaction rules, and the kind of each topic the driver knows."""

from __future__ import annotations

import time

from ...errors import DefinitionError, DriverError
from .connection import Connection

__all__ = ["Topics"]


class Topics:
    """Topic metadata and creation. Looking a topic up never creates it (the clients run with
    ``allow.auto.create.topics=false``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._counts: dict[str, int] = {}
        self._kinds: dict[str, str] = {}

    def kind(self, topic: str) -> str:
        """What the topic is to this driver: ``source`` (default), ``sink``, ``repartition``,
        ``changelog`` or ``dead_letter``."""
        return self._kinds.get(topic, "source")

    def set_kind(self, topic: str, kind: str) -> None:
        """Record ``kind`` unless the topic already has one."""
        self._kinds.setdefault(topic, kind)

    def known(self, topic: str) -> bool:
        """Whether the partition count of ``topic`` is known (it exists)."""
        return topic in self._counts

    def partitions(self, topic: str) -> int | None:
        """Partition count of ``topic``, or ``None`` if it does not exist."""
        count = self._counts.get(topic)
        if count is not None:
            return count
        conn = self._conn
        with conn.errors(f"looking up topic {topic!r}"):
            md = conn.admin.list_topics(topic=topic, timeout=conn.options.timeout)
        info = md.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            return None
        self._counts[topic] = len(info.partitions)
        return self._counts[topic]

    def names(self) -> list[str]:
        """Every topic on the cluster but Kafka's internal ones."""
        conn = self._conn
        with conn.errors("listing topics"):
            md = conn.admin.list_topics(timeout=conn.options.timeout)
        return sorted(t for t in md.topics if not t.startswith("__"))

    def ensure(self, topic: str, partitions: int | None, *, kind: str = "source",
               compact: bool = False) -> int:
        """Create ``topic`` if missing (``partitions``, else the ``partitions=`` option);
        return its partition count."""
        self.set_kind(topic, kind)
        existing = self.partitions(topic)
        if existing is not None:
            return existing
        count = partitions or self._conn.options.partitions
        self.create(topic, count, kind=kind, compact=compact)
        return count

    def create(self, topic: str, partitions: int, *, kind: str = "source",
               compact: bool = False) -> None:
        """Create ``topic`` (no-op if it exists) and wait until the metadata shows it."""
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        conn, options = self._conn, self._conn.options
        if partitions < 1:
            raise DefinitionError(f"topic {topic!r}: partitions must be >= 1, got {partitions}.")
        self.set_kind(topic, kind)
        # only changelogs are compacted: a table sink (Table.to) keeps its whole update history,
        # as the topic a Kafka Streams app writes with toStream().to() does by default
        compact = compact and kind == "changelog"
        config = {"cleanup.policy": "compact"} if compact else {}
        if not compact and options.retention_ms is not None:
            # Kafka deletes records by their timestamps: replayed history (a notebook's sample
            # data) would vanish within minutes under the broker's default 7 days
            config["retention.ms"] = str(options.retention_ms)
        new = NewTopic(topic, num_partitions=partitions,
                       replication_factor=options.replication, config=config)
        with conn.errors(f"creating topic {topic!r}"):
            futures = conn.admin.create_topics([new], request_timeout=options.timeout)
            try:
                futures[topic].result()
            except conn.ck.KafkaException as exc:
                if exc.args[0].code() != conn.ck.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        deadline = time.monotonic() + options.timeout
        while self.partitions(topic) is None:  # metadata propagates asynchronously
            if time.monotonic() > deadline:
                raise DriverError(f"topic {topic!r} was created on {conn.url} but does not show "
                                  "up in the metadata.")
            time.sleep(0.05)
