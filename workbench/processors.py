"""The Processor API, for what the DSL cannot say.

Subclass :class:`Processor` and add it with ``stream.process(MyProcessor, stores={...})``. One
instance runs per task (partition). It receives every record in ``process``, may read and write
its declared state stores, forward any number of records, and schedule punctuation on stream
time or wall-clock time.

>>> import workbench as wb
>>> class Dedupe(wb.Processor):
...     def init(self, ctx):
...         self.ctx = ctx
...         self.seen = ctx.store("seen")
...     def process(self, record):
...         if self.seen.get(record.key) is None:
...             self.seen.put(record.key, True)
...             self.ctx.forward(record)
>>> p = wb.Pipeline("dedupe")
>>> s = p.source("in", key="id", sample=[{"id": 1}, {"id": 1}, {"id": 2}])
>>> [r.key for r in s.process(Dedupe, stores={"seen": "kv"}).to_pandas().itertuples()]
[1, 2]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from .types import Record

__all__ = ["Processor", "ProcessorContext", "PunctuationType", "ValueAndTimestamp"]

PunctuationType = str  # "stream_time" | "wall_clock"


class ValueAndTimestamp(NamedTuple):
    """An entry of a timestamped key-value store (Kafka Streams' ``ValueAndTimestamp``)."""

    value: Any
    timestamp: int


class ProcessorContext(Protocol):
    """What a processor can do (implemented by the engine)."""

    @property
    def partition(self) -> int:
        """The task's partition."""
        ...

    @property
    def stream_time(self) -> int:
        """Largest record timestamp this processor has seen (-1 before the first)."""
        ...

    @property
    def wall_clock(self) -> int:
        """The engine clock's time in epoch ms (mocked in the test driver)."""
        ...

    def forward(self, record: Record | Any, value: Any = ..., timestamp: int | None = None
                ) -> None:
        """Emit a record downstream: a :class:`Record`, or ``forward(key, value[, timestamp])``
        (timestamp defaults to the current record's)."""
        ...

    def store(self, name: str) -> Any:
        """A declared state store, or a global table (``global_stores=``, read-only: get,
        ``in``, len, items):

        - ``"kv"``: get/put/delete/items;
        - ``"window"``: put(key, window_start, value), get(key, window_start), fetch(key,
          from, to), items();
        - ``"timestamped"`` (Kafka Streams' ``TimestampedKeyValueStore``): get(key) ->
          :class:`ValueAndTimestamp` or ``None``, put(key, value, timestamp), put_if_absent,
          delete, range(from, to), reverse_range, all(), reverse_all(), prefix_scan(prefix),
          in serialized-key order;
        - ``"session"`` or ``("session", retention)`` (Kafka Streams' ``SessionStore``):
          put(Windowed(key, start, end), value), remove(Windowed), fetch_session(key, start,
          end), find_sessions(key, earliest_end, latest_start), backward_find_sessions,
          fetch(key), backward_fetch(key) -> ``[(Windowed, value)]`` by end, then start
          descending (as Kafka's in-memory session store).

        See :mod:`workbench.runtime.process_stores`."""
        ...

    def schedule(self, interval: Any, kind: PunctuationType,
                 callback: Callable[[int], None]) -> None:
        """Call ``callback(time)`` every ``interval`` of stream time (``"stream_time"``,
        checked after each record) or of wall-clock time (``"wall_clock"``)."""
        ...


class Processor:
    """Base class for custom processors; override :meth:`process`, optionally :meth:`init`
    and :meth:`close`."""

    def init(self, ctx: ProcessorContext) -> None:
        """Called once per task before the first record, after state is restored."""
        self.ctx = ctx

    def process(self, record: Record) -> None:
        """Handle one record; call ``self.ctx.forward(...)`` to emit."""
        raise NotImplementedError

    def close(self) -> None:
        """Called when the task closes."""
