"""A driver seen through the privacy boundary.

:class:`PrivateDriver` wraps any driver: what is appended or committed is protected
(:meth:`Boundary.protect`), what is read is revealed (:meth:`Boundary.reveal`); everything
else is the wrapped driver's. The engine, ``Run`` and the git driver's time travel
(``run.driver.as_of(commit).frame(topic)``) all read through it, so every driver is covered by
one implementation. ``tests/privacy/test_memory.py::
test_private_driver_forwards_the_whole_driver_contract`` fails when the driver contract gains
a method this class does not forward.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..drivers.base import Driver, Transaction
from .boundary import Boundary
from .columns import defer_input, defer_output, stored_columns
from .reads import LazyPlan

__all__ = ["PrivateDriver"]


class PrivateDriver(Driver):
    """``inner`` with personal fields encrypted on the way out and decrypted on the way in.

    Args:
        inner: the driver.
        boundary: the pipeline's :class:`~workbench.privacy.boundary.Boundary`.
        lazy: the engine's driver: which fields its steps read, per topic
            (:func:`~workbench.privacy.reads.plan_reads`): :meth:`read_batch` (the engine's
            reads) reveals only those (:mod:`workbench.privacy.lazy`), and a topic whose
            writers read no personal value is written without a protection pass. Every
            other read reveals everything.
    """

    def __init__(self, inner: Driver, boundary: Boundary, *, lazy: LazyPlan | None = None
                 ) -> None:
        self.inner = inner
        self.boundary = boundary
        self.lazy = lazy
        #: input topics a batch of which had a personal value opened (or plaintext personal
        #: values tagged): the topics they feed get the protection pass from then on
        self.opened: set[str] = set()
        #: a private in-process log (``memory://``): the declared sources whose records cross
        #: the engine as given, and the sinks that get them (``LazyPlan.deferred``)
        self._deferred: dict[str, Any] = {}
        self._deferred_sinks: dict[str, Any] = {}
        if lazy is not None and not boundary.seal and inner.scheme == "memory":
            self._deferred, self._deferred_sinks = lazy.deferred, lazy.deferred_sinks

    # -- attributes of the wrapped driver --------------------------------------------------------
    @property
    def scheme(self) -> str:  # type: ignore[override]
        return self.inner.scheme

    @property
    def url(self) -> str:  # type: ignore[override]
        return self.inner.url

    @property
    def default_partitions(self) -> int:  # type: ignore[override]
        return self.inner.default_partitions

    @property
    def durable_state(self) -> bool:  # type: ignore[override]
        return self.inner.durable_state

    @property
    def accepts_batches(self) -> bool:  # type: ignore[override]
        """Always: column batches are protected column by column (faster than records), then
        handed to a driver that takes rows as rows."""
        return True

    @property
    def stores_bytes(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.inner, "stores_bytes", False))

    @property
    def codecs(self) -> Any:
        return getattr(self.inner, "codecs", None)

    def use_serdes(self, codecs: Any) -> None:
        """Each topic's serdes, for the wrapped driver (:mod:`workbench.serde.topics`)."""
        self.inner.use_serdes(codecs)

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        attr = getattr(inner, name)
        if name == "send_outputs":
            def send_outputs(app_id: str, outputs: dict[tuple[str, int], Any]) -> None:
                attr(app_id, self._protect_outputs(outputs))
            return send_outputs
        if name == "as_of":
            def as_of(at: Any) -> PrivateDriver:
                return PrivateDriver(attr(at), self.boundary)
            return as_of
        return attr

    # -- log --------------------------------------------------------------------------------------
    def partitions(self, topic: str) -> int | None:
        return self.inner.partitions(topic)

    def create_topic(self, topic: str, partitions: int, *, kind: str = "source",
                     compact: bool = False) -> None:
        self.inner.create_topic(topic, partitions, kind=kind, compact=compact)

    def ensure_topic(self, topic: str, partitions: int | None, *, kind: str = "source",
                     compact: bool = False) -> int:
        return self.inner.ensure_topic(topic, partitions, kind=kind, compact=compact)

    def append(self, topic: str, partition: int, records: Iterable[Any]) -> None:
        self.inner.append(topic, partition, self.boundary.protect(topic, list(records)))

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> list[Any]:
        return self.boundary.reveal(topic, self.inner.read(topic, partition, offset,
                                                           max_records))

    def read_all(self, topic: str) -> list[Any]:
        return self.boundary.reveal(topic, self.inner.read_all(topic))

    def read_batch(self, topic: str, partition: int, offset: int, max_records: int) -> Any:
        batch = self.inner.read_batch(topic, partition, offset, max_records)
        lazy = self.lazy
        if lazy is not None and topic in lazy.reads:
            got = self.boundary.reveal_some(topic, batch, lazy.reads[topic],
                                            deferred=topic in self._deferred)
            if got is not None:
                out, opened = got
                if opened:
                    self.opened.add(topic)
                return out
        self.opened.add(topic)
        return self.boundary.reveal_any(topic, batch)

    def read_all_batch(self, topic: str) -> Any:
        return self.boundary.reveal_any(topic, self.inner.read_all_batch(topic))

    def append_batch(self, topic: str, partition: int, batch: Any) -> None:
        spec = self._deferred.get(topic)
        if spec is not None:
            kept = defer_input(self.boundary, spec, batch)
            if kept is not None:
                self.inner.append_batch(topic, partition, kept)
                return
        self.inner.append_batch(topic, partition,
                                self.boundary.protect_any(topic, batch, keep=self._keeps))

    def end_offset(self, topic: str, partition: int) -> int:
        return self.inner.end_offset(topic, partition)

    def has_records_from(self, topic: str, partition: int, offset: int) -> bool:
        return self.inner.has_records_from(topic, partition, offset)

    def topics(self) -> list[str]:
        return self.inner.topics()

    # -- transactions -----------------------------------------------------------------------------
    def committed(self, app_id: str, topic: str, partition: int) -> int:
        return self.inner.committed(app_id, topic, partition)

    @property
    def _keeps(self) -> bool:
        """True when the wrapped driver keeps the batches it is given as they are (the
        memory driver): what protect writes is then vouched for (``privacy/vouch.py``)."""
        return self.inner.scheme == "memory"

    def _clean(self, topic: str) -> bool:
        """True when ``topic`` is written only by steps that read no personal value and use
        nothing but their records (see :class:`~workbench.privacy.reads.LazyPlan`), and no
        record they read had a personal value opened: its records hold tokens as they were
        read, and no plaintext that could be personal."""
        lazy = self.lazy
        if lazy is None:
            return False
        inputs = lazy.clean.get(topic)
        return inputs is not None and self.opened.isdisjoint(inputs)

    def _protect_outputs(self, outputs: dict[tuple[str, int], Any]) -> dict[tuple[str, int], Any]:
        keeps = self._keeps
        read = self.lazy.reads if self.lazy is not None and keeps else {}
        stores = getattr(self.inner, "stores_columns", None) if keeps else None
        out = {}
        for (t, p), recs in outputs.items():
            as_columns = stores is not None and stores(t)
            spec = self._deferred_sinks.get(t)
            if spec is not None:  # (records of a declared source, untagged: see defer_output)
                kept = None if isinstance(recs, list) or not self._clean(t) else \
                    defer_output(self.boundary, spec, recs)
                out[t, p] = kept if kept is not None else self.boundary.protect_any(
                    t, recs, keep=t in read, columns=as_columns, source=spec)
                continue
            if not self._clean(t):
                out[t, p] = self.boundary.protect_any(t, recs, keep=t in read,
                                                      columns=as_columns)
            elif as_columns and t not in read and not isinstance(recs, list):
                out[t, p] = stored_columns(self.boundary, recs)  # tokens kept as objects
            else:
                out[t, p] = recs
        if not getattr(self.inner, "accepts_batches", False):
            out = {tp: recs if isinstance(recs, list) else recs.rows()
                   for tp, recs in out.items()}
        return out

    def commit(self, txn: Transaction) -> None:
        if txn.outputs:
            txn = Transaction(txn.app_id, self._protect_outputs(txn.outputs), txn.positions,
                              txn.metadata)
        self.inner.commit(txn)

    def committed_metadata(self, app_id: str) -> dict[str, Any]:
        return self.inner.committed_metadata(app_id)

    def bind(self, app_id: str) -> None:
        self.inner.bind(app_id)

    # -- membership -------------------------------------------------------------------------------
    def assign(self, app_id: str, topics: Iterable[str]) -> dict[str, list[int]]:
        return self.inner.assign(app_id, topics)

    def poll_membership(self) -> dict[str, list[int]] | None:
        return self.inner.poll_membership()

    def wants_commit(self) -> bool:
        return self.inner.wants_commit()

    def end_run(self) -> None:
        self.inner.end_run()

    def close(self) -> None:
        self.inner.close()

    # -- surfaces of some drivers (git) -----------------------------------------------------------
    def frame(self, topic: str) -> Any:
        """The committed records of ``topic`` as a DataFrame, personal fields revealed."""
        from ..frames import records_to_frame

        return records_to_frame(self.read_all(topic))

    def table(self, topic: str, key_name: str | None = None) -> Any:
        """The current contents of a table's changelog topic, personal fields revealed."""
        from ..frames import records_to_frame
        from ..preview import latest_per_key

        return records_to_frame(latest_per_key(self.read_all(topic)), key_name=key_name)

    def __repr__(self) -> str:
        return f"<PrivateDriver {self.inner!r}>"
