"""Running a pipeline: ``Pipeline.run(...)`` → :class:`Run`, whose results are read back through
the driver (``run.frame(topic)``), so what you see is what the driver committed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._time import duration_ms
from .drivers import connect
from .drivers.base import Driver
from .errors import DefinitionError, did_you_mean
from .samples import input_batch, normalize_sample, rows_to_records
from .types import Record

if TYPE_CHECKING:
    import pandas as pd

    from .pipeline import Pipeline
    from .plan import Plan
    from .runtime.engine import Engine

__all__ = ["Run", "append_inputs", "execute", "prepare"]

log = logging.getLogger(__name__)


class Run:
    """The result of :meth:`Pipeline.run`: committed outputs, read back through the driver.

    Attributes:
        pipeline: the pipeline that ran.
        driver: the driver it ran on.
        plan: the compiled plan.
        engine: the engine (statistics in ``engine.stats``).
    """

    def __init__(self, pipeline: Pipeline, driver: Driver, plan: Plan, engine: Engine,
                 source_records: int | None = None) -> None:
        self.pipeline = pipeline
        self.driver = driver
        self.plan = plan
        self.engine = engine
        #: records this run read from the source topics (``records_in`` also counts records
        #: re-read from internal topics)
        self.source_records = source_records

    def _check_topic(self, topic: str) -> None:
        if self.driver.partitions(topic) is None:
            known = [t for t in self.plan.topics if self.plan.topics[t].kind in ("sink", "source")]
            from ._urls import redact_url

            raise DefinitionError(f"no topic {topic!r} on {redact_url(self.driver.url)}."
                                  + did_you_mean(topic, known))

    def records(self, topic: str) -> list[Record]:
        """The committed records of ``topic`` (partition by partition, in offset order)."""
        self._check_topic(topic)
        return [Record(k, v, t, h) for k, v, t, _o, h in self.driver.read_all(topic)]

    def frame(self, topic: str) -> pd.DataFrame:
        """The committed records of ``topic`` as a DataFrame: key, timestamp (UTC), values."""
        from .frames import batch_frame, topic_schema

        self._check_topic(topic)
        return batch_frame(self.driver.read_all_batch(topic),
                           topic_schema(self.pipeline, topic))

    def frames(self) -> dict[str, pd.DataFrame]:
        """``{topic: frame}`` for every topic the pipeline writes."""
        return {t: self.frame(t) for t in self.pipeline.sinks}

    @property
    def stats(self) -> Any:
        """Counters: records in/out, commits, commit durations."""
        return self.engine.stats

    def stop(self) -> None:
        """Stop a running pipeline after its current batch (it commits first)."""
        self.engine.stop()

    def close(self) -> None:
        """Release the driver (connections, the git driver's writer lock)."""
        self.driver.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def summary(self) -> str:
        """One line: source records read, records re-read from internal topics, commits and
        records written per output topic (the driver URL without its secrets)."""
        from ._urls import redact_url
        from .display.frame import plural

        s = self.engine.stats
        read = self.source_records
        if read is None:
            from .progress import source_position

            read = source_position(self.engine)
        internal = max(0, s.records_in - read)
        outs = ", ".join(f"{t}: {n:,}" for t, n in s.records_out.items()
                         if self.plan.topics.get(t) and self.plan.topics[t].kind == "sink")
        text = (f"{self.pipeline.name!r} on {redact_url(self.driver.url)}: "
                f"{plural(read, 'source record')} read")
        if internal:
            text += f" (+{plural(internal, 'record')} re-read from internal topics)"
        return text + f", {plural(s.commits, 'commit')}; written {{{outs}}}"

    def __repr__(self) -> str:
        return f"<Run {self.summary()}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from .display import run_bundle

        return run_bundle(self)


def append_inputs(pipeline: Pipeline, driver: Driver, inputs: Mapping[str, Any],
                  *, copy: bool = False, limit: int | None = None) -> dict[str, int]:
    """Append ``{topic: frame | records | path}`` to the pipeline's source topics through the
    driver, keyed and timestamped as each source says; return how many records each got."""
    from .privacy.hooks import attach_pipeline
    from .runtime.clock import SystemClock
    from .serde.topics import codecs_for, source_topics

    driver = attach_pipeline(pipeline, driver)  # personal fields are encrypted on the way in
    sources = pipeline._sources
    codecs = codecs_for(source_topics(sources), driver)  # each source topic's serdes
    now = SystemClock().now_ms()
    counts: dict[str, int] = {}
    for topic, data in inputs.items():
        node = sources.get(topic)
        if node is None:
            raise DefinitionError(f"inputs: {topic!r} is not a source topic of pipeline "
                                  f"{pipeline.name!r}." + did_you_mean(topic, sources))
        spec = node.params["spec"]
        if limit is not None and hasattr(data, "iloc"):
            data = data.iloc[:limit]
        elif limit is not None and isinstance(data, list):
            data = data[:limit]
        partitioner = codecs.partitioner(topic)
        count = driver.ensure_topic(topic, spec.partitions, kind="source")
        # a typed topic on a driver of Python objects goes through its serdes record by record
        typed = not driver.stores_bytes and codecs.typed(topic)
        batch = None if typed else input_batch(spec, data, now_ms=now, copy=copy)
        if batch is not None:
            _append_batch(driver, topic, count, batch, partitioner)
            counts[topic] = len(batch)
            continue
        rows, _cols = normalize_sample(data, topic) if not isinstance(data, list) else (data, None)
        rows = rows or []
        if limit is not None:
            rows = rows[:limit]
        records = rows_to_records(spec, rows, now_ms=now, copy=copy)
        if not driver.stores_bytes:
            records = codecs.normalize(topic, records)
        if count == 1:
            driver.append(topic, 0, records)
        else:
            parts: dict[int, list[Any]] = {}
            for i, rec in enumerate(records):
                parts.setdefault(partitioner.partition(rec[0], count, i), []).append(rec)
            for p, recs in sorted(parts.items()):
                driver.append(topic, p, recs)
        counts[topic] = len(records)
    return counts


def _append_batch(driver: Driver, topic: str, count: int, batch: Any,
                  partitioner: Any) -> None:
    """Append an input batch, split by key over ``count`` partitions (keyless records go
    round-robin by position, as the row path does)."""
    import numpy as np

    if count == 1:
        driver.append_batch(topic, 0, batch)
        return
    part = partitioner.partition
    where = np.fromiter((part(k, count, i) for i, k in enumerate(batch.keys.tolist())),
                        dtype=np.int64, count=len(batch))
    for p in range(count):
        mask = where == p
        if mask.any():
            driver.append_batch(topic, p, batch.take(mask))


def prepare(
    pipeline: Pipeline,
    driver: str | Driver,
    *,
    inputs: Mapping[str, Any] | None = None,
    commit_interval: str | int = "100ms",
    clock: Any = None,
    batch_size: int = 10_000,
    max_transaction: str | int | None = None,
) -> Engine:
    """Connect, compile, append inputs (or, on ``memory://``, the samples) and build the
    engine without running it (for the CLI, background runs and tools)."""
    from ._checks import check_batch_size
    from .runtime.engine import Engine

    check_batch_size(batch_size)
    limit_ms = max_transaction_ms(max_transaction)
    from .privacy.hooks import attach_plan

    drv = connect(driver)
    plan = pipeline.plan()
    drv.bind(plan.app_id)
    # the run's privacy boundary (if the pipeline has a key store), for its inputs and its
    # engine alike: a private memory:// may then keep inputs the plan's steps never read as
    # given (``LazyPlan.deferred``)
    drv = attach_plan(plan, drv)
    if inputs is not None:
        append_inputs(pipeline, drv, inputs)
    elif drv.scheme == "memory":
        samples = {t: n.params["spec"].sample for t, n in pipeline._sources.items()
                   if n.params["spec"].sample is not None and drv.partitions(t) is None}
        append_inputs(pipeline, drv, samples, copy=True)
    return Engine(plan, drv, clock=clock,
                  commit_interval_ms=duration_ms(commit_interval, "commit_interval"),
                  batch_size=batch_size, key_serde=getattr(drv, "key_serde", "json"),
                  max_transaction_ms=limit_ms)


def max_transaction_ms(value: str | int | None) -> int | None:
    """``max_transaction=`` in ms (``None``: ``WORKBENCH_MAX_TRANSACTION``, else the driver's
    default)."""
    import os

    if value is None:
        value = os.environ.get("WORKBENCH_MAX_TRANSACTION") or None
    if value is None:
        return None
    ms = duration_ms(value, "max_transaction")
    if ms < 1:
        raise DefinitionError(f"max_transaction={value!r} must be at least 1 ms.")
    return ms


def execute(
    pipeline: Pipeline,
    driver: str | Driver,
    *,
    inputs: Mapping[str, Any] | None,
    until: str | None,
    commit_interval: str | int,
    clock: Any,
    batch_size: int,
    progress: bool | None = None,
    max_transaction: str | int | None = None,
) -> Run:
    """Implementation of :meth:`Pipeline.run`."""
    if until not in ("end", None):
        raise DefinitionError(f"until={until!r}: use 'end' (bounded run) or None (run until "
                              "stopped).")
    from .runtime.engine import gc_paused

    with gc_paused():
        engine = prepare(pipeline, driver, inputs=inputs, commit_interval=commit_interval,
                         clock=clock, batch_size=batch_size, max_transaction=max_transaction)
        read: int | None = None
        try:
            from .progress import run_engine, source_position

            engine.start()
            start = source_position(engine)
            if until == "end":
                read = run_engine(engine, until, force=progress)
            else:
                try:
                    read = run_engine(engine, None, force=progress)
                except KeyboardInterrupt:
                    # the interrupted batch is not committed: restart resumes at the last commit
                    log.info("interrupted; the last commit stands")
                    read = source_position(engine) - start
        finally:
            engine.close()
            engine.driver.end_run()  # leave the consumer group: the next run must not wait
    return Run(pipeline, engine.driver, engine.plan, engine, source_records=read)
