"""Prometheus metrics of a running pipeline (``/metrics``), with ``prometheus_client``.

Nothing is counted per record: the engine already counts, and at each commit the service copies
its counters into a :class:`MetricsSnapshot` on the engine's thread (consumer lag, which asks the
driver for end offsets, at most once per ``lag_interval_s``). A scrape renders the last snapshot
from the HTTP thread, so the cost of metrics is one small dict copy per commit.

Names follow Prometheus' conventions (``workbench_`` prefix, ``_total`` counters, base units):

=========================================  =======  =========================================
metric                                     type     labels
=========================================  =======  =========================================
``workbench_info``                         gauge    pipeline, driver (credentials redacted)
``workbench_records_in_total``             counter  topic (sources and internal topics)
``workbench_records_out_total``            counter  topic, kind (sink, repartition, changelog)
``workbench_commits_total``                counter
``workbench_commit_duration_seconds``      histo.
``workbench_consumer_lag_records``         gauge    topic, partition (source partitions)
``workbench_dropped_records_total``        counter  step (late or invalid records, sent to the
                                                    step's ``late`` output, never lost)
``workbench_dead_letters_total``           counter  topic (bad input sent to the dead-letter
                                                    topic since the start)
``workbench_errors_total``                 counter  (processing errors that stopped the loop)
``workbench_state_entries``                gauge    store (rows held by this process)
``workbench_state_bytes``                  gauge    store (approximate JSON size)
``workbench_rebalances_total``             counter
``workbench_tasks``                        gauge
``workbench_stream_time_seconds``          gauge    (largest stream time of the tasks)
``workbench_last_commit_timestamp_seconds``  gauge
``workbench_batch_limit_records``          gauge    (the batch sizer's limit per transaction)
``workbench_transaction_seconds``          gauge    (the last transaction; and ``max_``: its limit)
``workbench_batch_records``                gauge    (mean records per non-empty poll)
``workbench_commit_rate``                  gauge    (commits per second, last 10 s)
``workbench_commit_latency_seconds``       gauge    quantile (0.5, 0.99: oldest record read to
                                                    the end of its commit, last 100 commits)
``workbench_e2e_latency_seconds``          gauge    quantile (0.5, 0.99: wall clock at commit
                                                    minus the newest event time committed)
``workbench_ready``                        gauge    1 when ``/ready`` answers 200
``process_*``, ``python_*``                         prometheus_client's process and platform
=========================================  =======  =========================================
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..runtime.engine import Engine

__all__ = ["BUCKETS", "MetricsSnapshot", "SnapshotTaker", "build_registry"]

#: commit duration histogram buckets, seconds
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class MetricsSnapshot:
    """Numbers copied from the engine at a commit (immutable once published)."""

    pipeline: str = ""
    driver: str = ""
    records_in: dict[str, int] = field(default_factory=dict)
    records_out: dict[str, int] = field(default_factory=dict)
    topic_kinds: dict[str, str] = field(default_factory=dict)
    commits: int = 0
    commit_buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    commit_count: int = 0
    commit_sum_s: float = 0.0
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    state: dict[str, tuple[int, int]] = field(default_factory=dict)
    rebalances: int = 0
    tasks: int = 0
    stream_time_ms: int = -1
    last_commit_s: float = 0.0
    source_records: int = 0
    #: the batch sizer's choice (records per transaction), the limit and the last
    #: transaction's duration (seconds; 0: none yet)
    batch_limit: int = 0
    max_transaction_s: float = 0.0
    transaction_s: float = 0.0
    #: mean records per non-empty poll, commits per second (last 10 s), and the p50/p99 of
    #: the last 100 commits' latencies (seconds): commit (oldest record read to the end of its
    #: commit) and end-to-end (wall clock at the commit minus the newest event time)
    batch_records: float = 0.0
    commit_rate: float = 0.0
    commit_latency_s: tuple[float, float] = (0.0, 0.0)
    e2e_latency_s: tuple[float, float] = (0.0, 0.0)


class SnapshotTaker:
    """Builds snapshots on the engine's thread (call :meth:`take` from a commit hook)."""

    def __init__(self, engine: Engine, *, lag_interval_s: float = 1.0) -> None:
        from .._urls import redact_url

        self.engine = engine
        self.lag_interval_s = lag_interval_s
        self.snapshot = MetricsSnapshot(engine.plan.app_id, redact_url(engine.driver.url))
        self._seen_commits = 0
        self._buckets = [0] * len(BUCKETS)
        self._count = 0
        self._sum = 0.0
        self._lag: dict[tuple[str, int], int] = {}
        self._lag_at = 0.0
        self._ends: dict[tuple[str, int], int] = {}
        self._dead_start: dict[tuple[str, int], int] | None = None
        self.errors = 0
        self.state_sizes: Any = None  # () -> {store: (rows, bytes)}, set by the service

    def _commit_histogram(self) -> None:
        stats = self.engine.stats
        durations = stats.commit_ms  # the last 10,000; stats.commits counts every commit
        new = min(stats.commits - self._seen_commits, len(durations))
        for ms in itertools.islice(durations, len(durations) - new, None):
            s = ms / 1000.0
            self._count += 1
            self._sum += s
            for i, bound in enumerate(BUCKETS):
                if s <= bound:
                    self._buckets[i] += 1
        self._seen_commits = stats.commits

    def _consumer_lag(self, force: bool) -> None:
        """Lag = end offset - position per source partition; positions are read at every
        snapshot, end offsets (a broker or database round trip) at most every
        ``lag_interval_s``."""
        engine = self.engine
        topics = engine.plan.topics
        positions = {k: pos for k, pos in engine.input_positions().items()
                     if topics[k[0]].kind == "source"}
        now = time.monotonic()
        if force or now - self._lag_at >= self.lag_interval_s or any(
                k not in self._ends for k in positions):
            self._lag_at = now
            self._ends = {k: engine.driver.end_offset(*k) for k in positions}
        self._lag = {k: max(0, self._ends.get(k, pos) - pos) for k, pos in positions.items()}

    def _dead_letters(self) -> dict[str, int]:
        topic = getattr(getattr(self.engine.driver, "options", None), "dead_letter", None)
        if not topic:
            return {}
        driver = self.engine.driver
        count = driver.partitions(topic) or 0
        ends = {(topic, p): driver.end_offset(topic, p) for p in range(count)}
        if self._dead_start is None:
            self._dead_start = ends
        return {topic: sum(e - self._dead_start.get(k, 0) for k, e in ends.items())}

    def take(self, *, force_lag: bool = False) -> MetricsSnapshot:
        """A new snapshot from the engine's counters (engine thread only)."""
        engine = self.engine
        stats = engine.stats
        self._commit_histogram()
        self._consumer_lag(force_lag)
        topics = engine.plan.topics
        snap = MetricsSnapshot(
            pipeline=self.snapshot.pipeline, driver=self.snapshot.driver,
            records_in=dict(stats.records_in_by_topic), records_out=dict(stats.records_out),
            topic_kinds={t: s.kind for t, s in topics.items()},
            commits=stats.commits, commit_buckets=list(self._buckets),
            commit_count=self._count, commit_sum_s=self._sum, lag=dict(self._lag),
            dropped=engine.dropped_counts(), dead_letters=self._dead_letters(),
            errors=self.errors, rebalances=stats.rebalances, tasks=len(engine.tasks),
            stream_time_ms=engine.stream_time, last_commit_s=time.time(),
            source_records=sum(n for t, n in stats.records_in_by_topic.items()
                               if t in topics and topics[t].kind == "source"),
            batch_limit=stats.batch_limit, max_transaction_s=stats.max_transaction_ms / 1000,
            transaction_s=stats.transaction_ms[-1] / 1000 if stats.transaction_ms else 0.0,
            batch_records=stats.batch_size(), commit_rate=stats.commit_rate(),
            commit_latency_s=(stats.latency_ms(0.5) / 1000, stats.latency_ms(0.99) / 1000),
            e2e_latency_s=(stats.latency_ms(0.5, kind="e2e") / 1000,
                           stats.latency_ms(0.99, kind="e2e") / 1000),
        )
        snap.state = self.snapshot.state
        self.snapshot = snap
        return snap


def build_registry(get_snapshot: Any, get_state: Any, is_ready: Any) -> Any:
    """A ``prometheus_client`` registry rendering ``get_snapshot()`` at each scrape, with the
    process and platform collectors."""
    from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    class _Collector:
        def collect(self) -> Iterator[Any]:
            s: MetricsSnapshot = get_snapshot()
            info = GaugeMetricFamily("workbench_info", "The pipeline and its driver.",
                                     labels=["pipeline", "driver"])
            info.add_metric([s.pipeline, s.driver], 1)
            yield info
            rin = CounterMetricFamily("workbench_records_in",
                                      "Records read, per input topic.", labels=["topic"])
            for t, n in sorted(s.records_in.items()):
                rin.add_metric([t], n)
            yield rin
            rout = CounterMetricFamily("workbench_records_out",
                                       "Records written (committed), per topic.",
                                       labels=["topic", "kind"])
            for t, n in sorted(s.records_out.items()):
                rout.add_metric([t, s.topic_kinds.get(t, "other")], n)
            yield rout
            yield CounterMetricFamily("workbench_commits", "Transactions committed.",
                                      value=s.commits)
            hist = HistogramMetricFamily("workbench_commit_duration_seconds",
                                         "Time to build and commit one transaction.")
            buckets = [(str(b), c) for b, c in zip(BUCKETS, s.commit_buckets)]
            buckets.append(("+Inf", s.commit_count))
            hist.add_metric([], buckets, s.commit_sum_s)
            yield hist
            lag = GaugeMetricFamily("workbench_consumer_lag_records",
                                    "Source records not processed yet, per partition.",
                                    labels=["topic", "partition"])
            for (t, p), n in sorted(s.lag.items()):
                lag.add_metric([t, str(p)], n)
            yield lag
            dropped = CounterMetricFamily(
                "workbench_dropped_records",
                "Records a step did not process normally (late beyond grace, null key or "
                "value), sent to its late output.", labels=["step"])
            for step, n in sorted(s.dropped.items()):
                dropped.add_metric([step], n)
            yield dropped
            dead = CounterMetricFamily("workbench_dead_letters",
                                       "Bad input records sent to the dead-letter topic.",
                                       labels=["topic"])
            for t, n in sorted(s.dead_letters.items()):
                dead.add_metric([t], n)
            yield dead
            yield CounterMetricFamily("workbench_errors",
                                      "Processing errors that stopped the loop.",
                                      value=s.errors)
            entries = GaugeMetricFamily("workbench_state_entries",
                                        "Rows of a queryable store held by this process.",
                                        labels=["store"])
            size = GaugeMetricFamily("workbench_state_bytes",
                                     "Approximate JSON size of a queryable store's rows.",
                                     labels=["store"])
            for store, (rows, nbytes) in sorted(get_state().items()):
                entries.add_metric([store], rows)
                size.add_metric([store], nbytes)
            yield entries
            yield size
            yield CounterMetricFamily("workbench_rebalances",
                                      "Membership changes applied (tasks moved).",
                                      value=s.rebalances)
            yield GaugeMetricFamily("workbench_tasks", "Tasks running in this process.",
                                    value=s.tasks)
            yield GaugeMetricFamily("workbench_stream_time_seconds",
                                    "Largest stream time of the tasks (event time).",
                                    value=max(s.stream_time_ms, 0) / 1000.0)
            yield GaugeMetricFamily("workbench_last_commit_timestamp_seconds",
                                    "Wall-clock time of the last commit.",
                                    value=s.last_commit_s)
            yield GaugeMetricFamily("workbench_batch_limit_records",
                                    "Records the batch sizer lets one transaction read now.",
                                    value=s.batch_limit)
            yield GaugeMetricFamily("workbench_transaction_seconds",
                                    "Duration of the last transaction (first record read to "
                                    "end of commit).", value=s.transaction_s)
            yield GaugeMetricFamily("workbench_max_transaction_seconds",
                                    "The limit transactions are kept inside.",
                                    value=s.max_transaction_s)
            yield GaugeMetricFamily("workbench_batch_records",
                                    "Mean records per non-empty poll (last 100 polls).",
                                    value=s.batch_records)
            yield GaugeMetricFamily("workbench_commit_rate",
                                    "Commits per second over the last 10 seconds.",
                                    value=s.commit_rate)
            for name, pair, what in (
                    ("workbench_commit_latency_seconds", s.commit_latency_s,
                     "From reading the oldest record a commit made visible to the end of "
                     "that commit, over the last 100 commits."),
                    ("workbench_e2e_latency_seconds", s.e2e_latency_s,
                     "Wall clock at a commit minus the newest event time it committed, over "
                     "the last 100 commits (large when replaying history).")):
                quantiles = GaugeMetricFamily(name, what, labels=["quantile"])
                quantiles.add_metric(["0.5"], pair[0])
                quantiles.add_metric(["0.99"], pair[1])
                yield quantiles
            yield GaugeMetricFamily("workbench_ready", "1 when /ready answers 200.",
                                    value=1 if is_ready() else 0)

    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(_Collector())  # type: ignore[arg-type]
    return registry
