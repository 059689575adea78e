"""A test driver for unit-testing pipelines, in the style of Kafka Streams' TopologyTestDriver.

Records are processed synchronously, exactly in the order you pipe them, and committed after
each one. Wall-clock time is mocked and moves only with :meth:`TestDriver.advance_wall_clock`.
Unlike a bounded run, open windows stay open until you call :meth:`TestDriver.end`.

>>> import workbench as wb
>>> from workbench.testing import TestDriver
>>> p = wb.Pipeline("t")
>>> _ = p.source("in").map(lambda v: v * 2).to("out")
>>> with TestDriver(p) as td:
...     td.input("in").pipe("k", 21, timestamp=5)
...     td.output("out").read_records()
[Record(key='k', value=42, timestamp=5, headers=None)]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._tracebacks import public
from .drivers.memory import MemoryDriver
from .errors import DefinitionError, did_you_mean
from .runtime.clock import ManualClock
from .types import Record

if TYPE_CHECKING:
    import pandas as pd

    from .pipeline import Pipeline

__all__ = ["TestDriver", "TestInput", "TestOutput"]


class TestDriver:
    """Drive a pipeline record by record.

    Args:
        pipeline: the pipeline under test.
        wall_clock_ms: initial mocked wall-clock time (epoch ms).
        partitions: partition count for every source topic (default 1, like TopologyTestDriver).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, pipeline: Pipeline, *, wall_clock_ms: int = 0,
                 partitions: int | None = None) -> None:
        from .runtime.engine import Engine

        self.pipeline = pipeline
        self.clock = ManualClock(wall_clock_ms)
        self.driver = MemoryDriver(default_partitions=partitions or 1)
        self.plan = pipeline.plan()
        self.engine = Engine(self.plan, self.driver, clock=self.clock,
                             commit_interval_ms=2**62)
        self.engine.start()
        self._outputs: dict[str, TestOutput] = {}
        self._closed = False

    def input(self, topic: str) -> TestInput:
        """The input topic ``topic`` (a source of the pipeline)."""
        if topic not in self.pipeline._sources:
            raise DefinitionError(f"{topic!r} is not a source topic of pipeline "
                                  f"{self.pipeline.name!r}."
                                  + did_you_mean(topic, self.pipeline._sources))
        return TestInput(self, topic)

    def output(self, topic: str) -> TestOutput:
        """The output topic ``topic`` (written with ``to()``); reading consumes records."""
        if topic not in self._outputs:
            known = [t for t, s in self.plan.topics.items() if s.kind in ("sink", "repartition")]
            dynamic = any(n.op == "topic_sink" and not n.params.get("topics")
                          for n in self.pipeline._nodes)  # topics created when named
            if topic not in self.plan.topics and not dynamic:
                raise DefinitionError(f"{topic!r} is not a topic of pipeline "
                                      f"{self.pipeline.name!r}." + did_you_mean(topic, known))
            self._outputs[topic] = TestOutput(self, topic)
        return self._outputs[topic]

    def _pipe(self, topic: str, key: Any, value: Any, timestamp: int | None,
              headers: Any = None) -> None:
        if self._closed:
            raise DefinitionError("this TestDriver is closed.")
        ts = self.clock.now_ms() if timestamp is None else int(timestamp)
        count = self.driver.partitions(topic)
        if count is None:  # a source no output reads: the run has no task for it
            spec = self.pipeline._sources[topic].params["spec"]
            count = self.driver.ensure_topic(topic, spec.partitions, kind="source")
        codecs = self.engine.codecs  # the topic's serdes: partitioning, values read back
        part = codecs.partitioner(topic).partition(key, count)
        self.driver.append(topic, part, codecs.normalize(topic, [(key, value, ts, None,
                                                                  headers)]))
        self.engine.process_available()

    @public
    def advance_wall_clock(self, ms: int) -> None:
        """Move mocked wall-clock time forward and run wall-clock punctuators."""
        self.clock.advance(ms)
        for task in self.engine.tasks:
            task.punctuate_wall(self.clock.now_ms())
        self.engine.commit()
        self.engine.process_available()

    @public
    def end(self) -> None:
        """End of input: close every open window and emit parked join results, as a bounded
        run does at its end (TopologyTestDriver has no such step)."""
        self.engine.finish()

    def close(self) -> None:
        """Close the pipeline's operators."""
        if not self._closed:
            self.engine.close()
            self._closed = True

    def __enter__(self) -> TestDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TestInput:
    """An input topic of a :class:`TestDriver`."""

    __test__ = False

    def __init__(self, driver: TestDriver, topic: str) -> None:
        self._driver = driver
        self.topic = topic

    @public
    def pipe(self, key: Any, value: Any, timestamp: int | None = None,
             headers: Any = None) -> None:
        """Pipe one record and process it (default timestamp: the mocked wall clock)."""
        self._driver._pipe(self.topic, key, value, timestamp, headers)

    @public
    def pipe_value(self, value: Any, timestamp: int | None = None) -> None:
        """Pipe one record with a ``None`` key."""
        self._driver._pipe(self.topic, None, value, timestamp)

    @public
    def pipe_records(self, records: Iterable[Any]) -> None:
        """Pipe ``Record``s or ``(key, value, timestamp)`` tuples, in order."""
        for r in records:
            if isinstance(r, Record):
                self._driver._pipe(self.topic, r.key, r.value, r.timestamp, r.headers)
            else:
                key, value, ts = r
                self._driver._pipe(self.topic, key, value, ts)

    @public
    def pipe_rows(self, rows: Any) -> None:
        """Pipe rows (a DataFrame or list of dicts) keyed and timestamped by the source's
        ``key=`` and ``time=``."""
        from .samples import normalize_sample, rows_to_records

        spec = self._driver.pipeline._sources[self.topic].params["spec"]
        data, _ = normalize_sample(rows, self.topic)
        for key, value, ts, _s, _h in rows_to_records(spec, data or [],
                                                  now_ms=self._driver.clock.now_ms()):
            self._driver._pipe(self.topic, key, value, ts)


class TestOutput:
    """An output topic of a :class:`TestDriver`; reads consume records, like
    ``TestOutputTopic``."""

    __test__ = False

    def __init__(self, driver: TestDriver, topic: str) -> None:
        self._driver = driver
        self.topic = topic
        self._read: dict[int, int] = {}

    def _fetch(self) -> list[Record]:
        drv = self._driver.driver
        count = drv.partitions(self.topic)
        if count is None:
            return []
        out: list[Record] = []
        for p in range(count):
            start = self._read.get(p, 0)
            recs = drv.read(self.topic, p, start, 2**31)
            if recs:
                self._read[p] = recs[-1][3] + 1
                out.extend(Record(k, v, t, h) for k, v, t, _o, h in recs)
        return out

    def read_records(self) -> list[Record]:
        """Every record not read yet, in order."""
        return self._fetch()

    def read_record(self) -> Record:
        """The next record; raises ``LookupError`` when there is none."""
        drv = self._driver.driver
        count = drv.partitions(self.topic) or 0
        for p in range(count):
            start = self._read.get(p, 0)
            recs = drv.read(self.topic, p, start, 1)
            if recs:
                self._read[p] = start + 1
                k, v, t, _o, h = recs[0]
                return Record(k, v, t, h)
        raise LookupError(f"no more records in output topic {self.topic!r}.")

    def read_values(self) -> list[Any]:
        """Values of the unread records."""
        return [r.value for r in self._fetch()]

    def read_key_values(self) -> list[tuple[Any, Any]]:
        """``(key, value)`` of the unread records."""
        return [(r.key, r.value) for r in self._fetch()]

    def read_frame(self) -> pd.DataFrame:
        """The unread records as a DataFrame."""
        from .frames import records_to_frame, topic_schema

        return records_to_frame(self._fetch(), topic_schema(self._driver.pipeline, self.topic))

    def is_empty(self) -> bool:
        """True when every record has been read."""
        drv = self._driver.driver
        count = drv.partitions(self.topic) or 0
        return all(drv.end_offset(self.topic, p) <= self._read.get(p, 0) for p in range(count))

    @property
    def queue_size(self) -> int:
        """Number of unread records."""
        drv = self._driver.driver
        count = drv.partitions(self.topic) or 0
        return sum(drv.end_offset(self.topic, p) - self._read.get(p, 0) for p in range(count))
