"""The driver contract: what every driver (memory, kafka, postgres, git) implements.

* **Log** — named topics with partitions; read a partition from an offset; append records.
* **Transaction** — :meth:`Driver.commit` atomically appends the outputs (sink, repartition and
  changelog records) and records the input positions; after a crash, restart sees exactly the
  last committed positions and outputs.
* **Membership** — :meth:`Driver.assign` says which partitions of the application's input
  topics this process owns now.

Records cross the contract as the engine's tuples ``(key, value, timestamp, seq, headers)``:
when written, ``seq`` is ignored (the driver assigns offsets); when read, it is the offset.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import DriverError

__all__ = ["Driver", "Transaction"]

OutRec = tuple[Any, Any, int, Any, Any]
#: the header that carries where a record of a repartition topic came from, on drivers that
#: store headers (written and read by ``runtime.origins``; drivers may recognise it)
ORIGIN_HEADER = "workbench.origin"
ReadRec = tuple[Any, Any, int, int, Any]


@dataclass
class Transaction:
    """One commit: everything in it becomes visible together, or nothing does.

    Attributes:
        app_id: the application (pipeline name).
        outputs: ``{(topic, partition): [(key, value, timestamp, _, headers), ...]}`` in order
            (the fourth element is ignored).
        positions: ``{(topic, partition): next offset to read}`` for the inputs consumed.
        metadata: small per-application data committed with the positions (for example the
            last emitted window-close time of emit-on-close windows).
    """

    app_id: str
    outputs: dict[tuple[str, int], list[OutRec]] = field(default_factory=dict)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def is_empty(self) -> bool:
        """True when committing would change nothing."""
        return not self.outputs and not self.positions and not self.metadata


class Driver(abc.ABC):
    """Base class of the drivers. See the module docstring for the contract."""

    scheme: str = ""
    url: str = ""
    #: default partition count for topics the driver creates without an explicit count
    default_partitions: int = 1
    #: whether state must be persisted (changelog records written at each commit); a private
    #: in-memory log that nobody can restart from sets it to False
    durable_state: bool = True
    #: whether the driver stores the bytes of keys and values (through each topic's serdes,
    #: :mod:`workbench.serde`); drivers that store Python objects get the records of typed
    #: topics already sent through their serdes once, as a reader of the bytes would see them
    stores_bytes: bool = False
    #: the serdes of the topics of the running plan (``workbench.serde.topics.TopicCodecs``),
    #: set by :meth:`use_serdes`; ``None``: every topic uses the driver's defaults
    codecs: Any = None
    #: whether :meth:`commit` takes column batches (``runtime.batch.Batch``) as well as row
    #: lists in ``Transaction.outputs``; otherwise the engine hands it rows
    accepts_batches: bool = False
    #: whether :meth:`commit` also takes :class:`~workbench.runtime.batch.BatchParts` (one
    #: partition's batches as made, concatenated by the driver if at all)
    accepts_batch_parts: bool = False

    # -- log ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def partitions(self, topic: str) -> int | None:
        """Partition count of ``topic``, or ``None`` if it does not exist."""

    @abc.abstractmethod
    def create_topic(self, topic: str, partitions: int, *, kind: str = "source",
                     compact: bool = False) -> None:
        """Create ``topic`` (no-op if it exists)."""

    def ensure_topic(self, topic: str, partitions: int | None, *, kind: str = "source",
                     compact: bool = False) -> int:
        """Create ``topic`` if missing; return its partition count."""
        existing = self.partitions(topic)
        if existing is not None:
            return existing
        count = partitions or self.default_partitions
        self.create_topic(topic, count, kind=kind, compact=compact)
        return count

    @abc.abstractmethod
    def append(self, topic: str, partition: int, records: Iterable[OutRec]) -> None:
        """Append records ``(key, value, timestamp, _, headers)`` to one partition outside any
        transaction (inputs for tests and demos)."""

    @abc.abstractmethod
    def read(self, topic: str, partition: int, offset: int, max_records: int) -> list[ReadRec]:
        """Committed records of ``topic``/``partition`` from ``offset``, at most
        ``max_records``."""

    def read_batch(self, topic: str, partition: int, offset: int, max_records: int) -> Any:
        """Like :meth:`read`, as a column batch (``runtime.batch.Batch``) whose ``seq`` holds
        the offsets. Drivers that decode into columns override it; by default it converts
        the rows of :meth:`read`."""
        import numpy as np

        from ..runtime.batch import Batch

        rows = self.read(topic, partition, offset, max_records)
        batch = Batch.from_rows(rows)
        if rows:
            batch.seq = np.fromiter((r[3] for r in rows), dtype=np.int64, count=len(rows))
        return batch

    def append_batch(self, topic: str, partition: int, batch: Any) -> None:
        """Like :meth:`append`, for a column batch (by default through its rows)."""
        self.append(topic, partition, batch.rows())

    @abc.abstractmethod
    def end_offset(self, topic: str, partition: int) -> int:
        """Offset after the last committed record of the partition."""

    def has_records_from(self, topic: str, partition: int, offset: int) -> bool:
        """Whether committed records exist at ``offset`` or after: the engine asks it for every
        input of a task that reads several, after each read, to know whether that input may
        hold back the others (Kafka Streams' interleaving by timestamp). Drivers that know it
        more cheaply than :meth:`end_offset` (from what they fetched) override it."""
        return offset < self.end_offset(topic, partition)

    def read_all(self, topic: str) -> list[ReadRec]:
        """Every committed record of ``topic``, partition by partition."""
        count = self.partitions(topic)
        if count is None:
            raise DriverError(f"topic {topic!r} does not exist on {self.url}.")
        out: list[ReadRec] = []
        for p in range(count):
            offset, end = 0, self.end_offset(topic, p)
            while offset < end:
                chunk = self.read(topic, p, offset, 100_000)
                if not chunk:
                    break
                out.extend(chunk)
                offset = chunk[-1][3] + 1
        return out

    def read_all_batch(self, topic: str) -> Any:
        """Every committed record of ``topic``, partition by partition, as one column batch
        (``runtime.batch.Batch``; ``seq`` holds the offsets)."""
        from ..runtime.batch import Batch

        count = self.partitions(topic)
        if count is None:
            raise DriverError(f"topic {topic!r} does not exist on {self.url}.")
        parts = []
        for p in range(count):
            offset, end = 0, self.end_offset(topic, p)
            while offset < end:
                chunk = self.read_batch(topic, p, offset, max(end - offset, 1))
                if not len(chunk):
                    break
                parts.append(chunk)
                offset = int(chunk.seq[-1]) + 1
        return Batch.concat(parts)

    def topics(self) -> list[str]:
        """Names of the topics the driver holds (where it can tell)."""
        return []

    def use_serdes(self, codecs: Any) -> None:
        """Use ``codecs`` (``workbench.serde.topics.TopicCodecs``: each topic's bound key and
        value serdes) for the plan's topics from now on. Drivers that store bytes encode and
        decode through them; the others keep Python objects (see :attr:`stores_bytes`)."""
        self.codecs = codecs

    # -- transactions -------------------------------------------------------------------------
    @abc.abstractmethod
    def committed(self, app_id: str, topic: str, partition: int) -> int:
        """The committed position (next offset to read) of an input partition; 0 if none."""

    @abc.abstractmethod
    def commit(self, txn: Transaction) -> None:
        """Apply the transaction atomically."""

    def committed_metadata(self, app_id: str) -> dict[str, Any]:
        """Metadata committed with the last transaction of ``app_id``."""
        return {}

    def bind(self, app_id: str) -> None:  # noqa: B027
        """Tell the driver which application will use it, before inputs are appended (drivers
        that keep per-application data, such as git's branch, use it). No-op by default."""

    # -- membership ---------------------------------------------------------------------------
    def assign(self, app_id: str, topics: Iterable[str]) -> dict[str, list[int]]:
        """Partitions of ``topics`` this process owns; by default all of them."""
        out: dict[str, list[int]] = {}
        for t in topics:
            count = self.partitions(t)
            out[t] = list(range(count or 0))
        return out

    def poll_membership(self) -> dict[str, list[int]] | None:
        """Membership news since the last call: the complete new ownership ``{topic:
        partitions}``, or ``None`` when nothing changed (always, by default). The engine calls it
        right after each commit, when everything it processed is committed."""
        return None

    def wants_commit(self) -> bool:
        """True when the driver has records of its own to commit (dead-lettered input) although
        the engine's transaction is empty."""
        return False

    def end_run(self) -> None:  # noqa: B027
        """The engine is done with this driver (a run ended or stopped): leave consumer
        groups, drop producers. Reading (``Run.frame``) must keep working. No-op by default."""

    def close(self) -> None:  # noqa: B027
        """Release connections and locks."""

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"
