"""A running pipeline as a service: health, readiness, metrics and queryable state over an
:class:`~workbench.runtime.engine.Engine`.

:class:`Service` attaches to an engine before it starts: it registers the queryable state
(:class:`~workbench.service.views.StateViews`) as a state listener and a commit hook that copies
counters into a metrics snapshot. Everything that touches the engine or the driver happens on the
engine's thread; HTTP handlers and Python callers in other threads read only what the hooks
published (the left-right views and immutable snapshots).

In Python, on a running job::

    svc = workbench.service.start(pipeline, "kafka://127.0.0.1:9092", http="127.0.0.1:8080")
    svc.get("user-totals", "u42")          # the same reads as GET /tables/user-totals/u42
    svc.stop(); svc.wait()
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .metrics import MetricsSnapshot, SnapshotTaker
from .views import NotFound, StateViews

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from ..run import Run
    from ..runtime.engine import Engine
    from .http import HttpServer

__all__ = ["Service", "ServiceRun", "start"]

log = logging.getLogger(__name__)

#: environment variable naming the directory where the workers of one supervisor publish their
#: address and the partitions they own (set by ``--workers``)
WORKER_DIR_ENV = "WORKBENCH_WORKER_DIR"
WORKER_INDEX_ENV = "WORKBENCH_WORKER_INDEX"


class Service:
    """Health, readiness, metrics and queryable state of one engine.

    Args:
        pipeline: the pipeline the engine runs (for the status page's drawing).
        engine: the engine, not started yet (so restored state is seen).
        liveness_timeout_s: ``/health`` fails when the processing loop has not turned for this
            long.
        rebalance_grace_s: ``/ready`` fails while the engine has waited this long in the
            driver's membership poll (a rebalance in progress).
    """

    def __init__(self, pipeline: Pipeline, engine: Engine, *, liveness_timeout_s: float = 30.0,
                 rebalance_grace_s: float = 0.1, lag_interval_s: float = 1.0,
                 worker_dir: str | None = None, worker_index: int | None = None) -> None:
        self.pipeline = pipeline
        self.engine = engine
        self.liveness_timeout_s = liveness_timeout_s
        self.rebalance_grace_s = rebalance_grace_s
        self.views = StateViews(engine.plan, partition_of=self._partition_of,
                                task_counts=lambda: dict(engine.task_counts))
        self.metrics = SnapshotTaker(engine, lag_interval_s=lag_interval_s)
        self._snapshot = self.metrics.snapshot
        self._registry: Any = None
        self.status = "starting"  # running, stopping, stopped, finished, failed
        self.error: str | None = None
        self.http: HttpServer | None = None
        self.worker_dir = worker_dir if worker_dir is not None else os.environ.get(
            WORKER_DIR_ENV)
        index = worker_index if worker_index is not None else os.environ.get(WORKER_INDEX_ENV)
        self.worker_index = int(index) if index not in (None, "") else None
        self._owned_sig: Any = None
        self._state_sizes: dict[str, tuple[int, int]] = {}
        self._state_at = 0.0
        engine.state_listeners.append(self.views)
        engine.on_interval.append(self._on_commit)

    # -- engine thread ------------------------------------------------------------------------
    def _partition_of(self, key: Any, count: int, subtopology: int) -> int:
        """The task partition of ``key``: where the sub-topology's input topics put it (by
        their key serde's bytes, :mod:`workbench.serde.topics`)."""
        engine = self.engine
        inputs = next((st.inputs for st in engine.plan.subtopologies if st.id == subtopology),
                      ())
        if engine.codecs is None or not inputs:
            return engine.partitioner.partition(key, count, 0)
        return int(engine.codecs.partitioner(inputs[0]).partition(key, count, 0))

    def _on_commit(self, engine: Engine) -> None:
        self.views.catch_up()
        self._snapshot = self.metrics.take()
        self._publish_ownership()

    def after_start(self) -> None:
        """Call on the engine's thread once ``engine.start()`` returned."""
        self.status = "running"
        self._snapshot = self.metrics.take(force_lag=True)
        self._publish_ownership()

    def _publish_ownership(self) -> None:
        tasks = sorted((t.subtopology.id, t.partition) for t in self.engine.tasks)
        if tasks == self._owned_sig:
            return
        self._owned_sig = tasks
        self.views.set_owned(tasks)
        self._write_worker_file()

    def _write_worker_file(self) -> None:
        if not self.worker_dir or self.worker_index is None or self.http is None:
            return
        owned: dict[str, list[int]] = {}
        for st, p in self._owned_sig or ():
            owned.setdefault(str(st), []).append(p)
        path = Path(self.worker_dir) / f"worker-{self.worker_index}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"index": self.worker_index, "pid": os.getpid(),
                                   "url": self.http.url, "owned": owned,
                                   "ready": self.ready()[0]}))
        os.replace(tmp, path)

    # -- any thread ---------------------------------------------------------------------------
    def snapshot(self) -> MetricsSnapshot:
        """The last metrics snapshot."""
        return self._snapshot

    def live(self) -> tuple[bool, str]:
        """Liveness: the processing loop turned within ``liveness_timeout_s``."""
        if self.status == "failed":
            return False, f"the processing loop failed: {self.error}"
        if self.status in ("stopped", "finished"):
            return True, self.status
        age = time.monotonic() - self.engine.stats.loop_at
        if age > self.liveness_timeout_s:
            return False, (f"the processing loop has not turned for {age:.1f} s "
                           f"(limit {self.liveness_timeout_s:g} s)")
        return True, f"loop turned {age:.2f} s ago"

    def ready(self) -> tuple[bool, str]:
        """Readiness: partitions assigned, state restored, no rebalance in progress, not
        stopping."""
        phase = self.engine.stats.phase
        if self.status != "running":
            return False, self.status
        if phase != "running":
            return False, phase
        wait = self.engine.membership_wait_s
        if wait > self.rebalance_grace_s:
            return False, f"rebalancing (waiting for an assignment for {wait:.1f} s)"
        return True, "ready"

    def state_sizes(self) -> dict[str, tuple[int, int]]:
        """``{store: (rows, approximate bytes)}``, recomputed at most every 5 s."""
        now = time.monotonic()
        if now - self._state_at > 5.0:
            self._state_sizes = self.views.sizes()
            self._state_at = now
        return self._state_sizes

    def registry(self) -> Any:
        """The ``prometheus_client`` registry of this service."""
        if self._registry is None:
            from .metrics import build_registry

            self._registry = build_registry(self.snapshot, self.state_sizes,
                                            lambda: self.ready()[0])
        return self._registry

    def metrics_text(self) -> bytes:
        """The Prometheus text exposition."""
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry()))

    # -- queries (any thread) -----------------------------------------------------------------
    def tables(self) -> list[dict[str, Any]]:
        """The queryable stores."""
        return self.views.describe()

    def get(self, name: str, key: Any, *, time_from: int | None = None,
            time_to: int | None = None) -> Any:
        """The committed row of ``key`` in table ``name`` (a dict), or the list of its windows
        for a windowed store. Raises :class:`~workbench.service.views.NotFound`."""
        rows = self.views.get(name, key, time_from=time_from, time_to=time_to)
        if self.views.store(name).kind == "table":
            return rows[0]
        return rows

    def range(self, name: str, **kw: Any) -> list[dict[str, Any]]:
        """Rows of table ``name`` by key range (see :meth:`StateViews.range`)."""
        return self.views.range(name, **kw)

    # -- HTTP ---------------------------------------------------------------------------------
    def start_http(self, address: str) -> str:
        """Serve HTTP on ``host:port`` (port 0: any free port) in a background thread; return
        its base URL."""
        from .http import HttpServer

        self.http = HttpServer(self, address)
        url = self.http.start()
        log.debug("serving %s on %s", self.pipeline.name, url)
        self._write_worker_file()
        return url

    def stop_http(self) -> None:
        """Stop the HTTP server (after the last commit)."""
        if self.http is not None:
            self.http.stop()

    # -- status page data ---------------------------------------------------------------------
    def status_json(self) -> dict[str, Any]:
        """What the status page shows (refreshed in place)."""
        s = self._snapshot
        plan = self.engine.plan
        steps = []
        for topic, spec in plan.topics.items():
            if spec.kind == "source":
                steps.append({"step": topic, "kind": "source",
                              "records": s.records_in.get(topic, 0),
                              "lag": sum(n for (t, _p), n in s.lag.items() if t == topic)})
        sizes = self.state_sizes()
        for info in sorted(self.views.stores.values(), key=lambda i: i.step):
            rows = sizes.get(info.step, (0, 0))[0]
            steps.append({"step": info.step, "kind": info.kind, "records": rows,
                          "dropped": s.dropped.get(info.step, 0)})
        for step, n in sorted(s.dropped.items()):
            if not any(x["step"] == step for x in steps):
                steps.append({"step": step, "kind": "step", "records": None, "dropped": n})
        for topic, spec in plan.topics.items():
            if spec.kind == "sink":
                steps.append({"step": topic, "kind": "sink",
                              "records": s.records_out.get(topic, 0)})
        durations = self.engine.stats.commit_ms
        recent = list(itertools.islice(durations, max(0, len(durations) - 200), None))
        ordered = sorted(recent)
        live, live_why = self.live()
        ready, ready_why = self.ready()
        return {
            "pipeline": s.pipeline, "driver": s.driver, "status": self.status,
            "live": live, "live_reason": live_why, "ready": ready, "ready_reason": ready_why,
            "worker": self.worker_index, "records_in": s.source_records, "commits": s.commits,
            "lag": sum(s.lag.values()), "stream_time": s.stream_time_ms,
            "commit_ms_p50": ordered[len(ordered) // 2] if ordered else None,
            "commit_ms_p99": ordered[int(len(ordered) * 0.99)] if ordered else None,
            "tasks": s.tasks, "steps": steps, "error": self.error,
        }


class ServiceRun:
    """A pipeline running as a service in a background thread (see :func:`start`)."""

    def __init__(self, service: Service, until: str | None) -> None:
        self.service = service
        self.until = until
        self.engine = service.engine
        self._done = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="workbench-service",
                                        daemon=True)
        self._started = threading.Event()

    @property
    def url(self) -> str | None:
        """The HTTP base URL, if serving."""
        return self.service.http.url if self.service.http is not None else None

    def _main(self) -> None:
        engine = self.engine
        svc = self.service
        try:
            engine.start()
            svc.after_start()
            self._started.set()
            if self.until == "end":
                engine.run_until_end()
                svc.status = "finished"
            else:
                engine.run_forever()
                svc.status = "stopped"
        except BaseException as exc:  # reported through .error and /health
            self.error = exc
            svc.error = f"{type(exc).__name__}: {exc}"
            svc.status = "failed"
            svc.metrics.errors += 1
            log.error("pipeline %s failed: %s", engine.plan.app_id, exc)
        finally:
            self._started.set()
            engine.stats.phase = "stopped"
            svc.views.settle()
            try:
                engine.close()
                engine.driver.end_run()
            finally:
                self._done.set()

    def start(self) -> ServiceRun:
        """Start the engine thread; return once the engine has started (or failed)."""
        self._thread.start()
        self._started.wait()
        return self

    def get(self, name: str, key: Any, **kw: Any) -> Any:
        """See :meth:`Service.get`."""
        return self.service.get(name, key, **kw)

    def range(self, name: str, **kw: Any) -> list[dict[str, Any]]:
        """See :meth:`Service.range`."""
        return self.service.range(name, **kw)

    def tables(self) -> list[dict[str, Any]]:
        """See :meth:`Service.tables`."""
        return self.service.tables()

    def stop(self) -> None:
        """Finish the batch in hand, commit and stop (windows stay open)."""
        if self.service.status == "running":
            self.service.status = "stopping"
        self.engine.stop()

    def wait(self, timeout: float | None = None) -> Run:
        """Wait for the end of the run (and stop HTTP); return its :class:`~workbench.Run`."""
        from ..run import Run

        if not self._done.wait(timeout):
            raise TimeoutError(f"the pipeline is still running after {timeout} s.")
        self.service.stop_http()
        if self.error is not None:
            raise self.error
        return Run(self.service.pipeline, self.engine.driver, self.engine.plan, self.engine)

    def __enter__(self) -> ServiceRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._done.wait(60)
        self.service.stop_http()


def start(pipeline: Pipeline, driver: Any = "memory://", *, http: str | None = None,
          until: str | None = None, inputs: Any = None, commit_interval: str | int = "100ms",
          on_engine: Callable[[Engine], None] | None = None, **service_kw: Any) -> ServiceRun:
    """Run ``pipeline`` on ``driver`` in a background thread as a service: queryable state in
    Python (``.get``, ``.range``) and, with ``http="host:port"``, over HTTP.

    ``until="end"`` makes it a bounded run; by default it runs until :meth:`ServiceRun.stop`.
    """
    from ..run import prepare

    engine = prepare(pipeline, driver, inputs=inputs, commit_interval=commit_interval)
    if on_engine is not None:
        on_engine(engine)
    service = Service(pipeline, engine, **service_kw)
    if http is not None:
        service.start_http(http)
    return ServiceRun(service, until).start()


def not_found_body(exc: NotFound) -> dict[str, Any]:
    """The JSON body of a 404."""
    body: dict[str, Any] = {"error": str(exc), "not_found": exc.what}
    if exc.what == "store":
        body["tables"] = exc.known
    return body
