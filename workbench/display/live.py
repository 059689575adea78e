"""A live view of a running pipeline.

``run = p.start(driver)`` runs the pipeline in a background thread and returns a
:class:`LiveRun`; in a notebook it also displays a view that refreshes about twice a second
(``workbench.options.live_interval``): per-step record counts, the tail of every output topic,
stream time and lag (source records not processed yet), with a **Stop** button. ``run.stop()``
stops it from code. When the run ends the view is replaced by a static render of its final
state, so a saved or papermill-executed notebook shows the result; ``run.wait()`` waits for the
end and returns the :class:`~workbench.run.Run`.

``p.run(driver, live=True)`` runs in the foreground with the same view (interrupt the kernel to
stop it: a cell that is still executing cannot receive button clicks).

Everything that touches the driver or the engine happens in the engine's own thread (drivers
need not be thread-safe); other threads read the last :class:`Snapshot`.

>>> import workbench as wb
>>> from workbench.display.live import start
>>> p = wb.Pipeline("live-doc")
>>> _ = p.source("in", sample=[{"n": i} for i in range(3)]).to("out")
>>> run = start(p, "memory://", until="end", display=False)
>>> result = run.wait(timeout=30)
>>> run.status, run.snapshot().outputs["out"].total
('finished', 3)
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._tracebacks import public
from .frame import plural

if TYPE_CHECKING:
    import pandas as pd

    from ..frames import FrameSchema
    from ..pipeline import Pipeline
    from ..run import Run
    from ..runtime.engine import Engine

__all__ = ["LiveRun", "OutputTail", "Snapshot", "StepCount", "live_driver", "render_html",
           "render_text", "run_live", "start"]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.5
DEFAULT_TAIL = 5
DEFAULT_MAX_RECORDS = 1_000_000


def _option(name: str, default: Any) -> Any:
    from ..preview import options

    return getattr(options, name, default)


# -- snapshots --------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepCount:
    """Records into and out of one operator (a fused chain of stateless steps counts as one;
    a sink's ``records_out`` is what it wrote)."""

    step: str
    records_in: int
    records_out: int


@dataclass(frozen=True)
class OutputTail:
    """An output topic: how many records it holds and the last few (oldest first)."""

    topic: str
    total: int
    tail: list[Any]
    schema: FrameSchema | None = None

    def frame(self) -> pd.DataFrame:
        """The tail as a DataFrame (the columns every surface shows for this topic)."""
        from ..frames import records_to_frame

        return records_to_frame(self.tail, self.schema)


@dataclass(frozen=True)
class Snapshot:
    """The state of a live run at one moment."""

    pipeline: str
    driver: str
    status: str
    records_in: int
    commits: int
    elapsed_s: float
    stream_time: int
    lag: int
    steps: list[StepCount] = field(default_factory=list)
    outputs: dict[str, OutputTail] = field(default_factory=dict)
    error: str | None = None
    taken_at: float = 0.0
    #: source records processed (``records_in`` also counts internal topics)
    source_records: int = 0
    #: processed records whose results are not committed yet
    pending_commit: bool = False
    #: ``{operator part name: "user" | "internal"}`` for labelling step rows
    step_kinds: dict[str, str] = field(default_factory=dict)
    #: the batch sizer's choice: records one transaction may read now (``stats.batch_limit``)
    batch_limit: int = 0
    #: the last transaction's duration and the limit it stays inside (ms; 0: none yet)
    transaction_ms: float = 0.0
    max_transaction_ms: float = 0.0
    #: records in the queues of external steps (``pipe``, ``map_async``)
    external_in_flight: int = 0
    #: commits per second (last 10 s), mean records per poll, and the p50/p99 of the last 100
    #: commits' latency (ms: the oldest record read to the end of its commit)
    commit_rate: float = 0.0
    batch_records: float = 0.0
    latency_ms: tuple[float, float] = (0.0, 0.0)

    @property
    def rate(self) -> float:
        """Source records per second since the start."""
        return self.source_records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def counts(self) -> dict[str, int]:
        """``{step: records out}``."""
        return {s.step: s.records_out for s in self.steps}

    def sizing(self) -> str:
        """The batch sizer's figures, the commit rate and the commit latency in a few words
        (empty before the run starts)."""
        if not self.batch_limit:
            return ""
        text = f"batch {self.batch_limit:,}"
        if self.max_transaction_ms:
            last = f"{self.transaction_ms:,.0f}" if self.transaction_ms else "-"
            text += f" · transaction {last} / {self.max_transaction_ms:,.0f} ms"
        if self.external_in_flight:
            text += f" · {self.external_in_flight:,} in flight"
        if self.batch_records:
            text += f" · mean read {self.batch_records:,.0f}"
        if self.commits:
            text += (f" · {self.commit_rate:.1f} commits/s · commit latency p50 "
                     f"{self.latency_ms[0]:,.0f} / p99 {self.latency_ms[1]:,.0f} ms")
        return text


def _fmt_time(ms: int) -> str:
    from .._time import format_ms

    return format_ms(ms)


_LIVE_STYLE = (
    "<style>"
    ".wb-live{font-family:var(--jp-ui-font-family,sans-serif);font-size:12px;"
    "color:var(--jp-ui-font-color1,inherit)}"
    ".wb-live .wb-status{display:inline-block;padding:0 6px;border-radius:3px;"
    "border:1px solid rgba(128,128,128,.5)}"
    ".wb-live .wb-status-running{background:rgba(80,140,220,.18)}"
    ".wb-live .wb-status-finished{background:rgba(60,170,90,.2)}"
    ".wb-live .wb-status-stopped{background:rgba(200,160,40,.2)}"
    ".wb-live .wb-status-failed{background:rgba(220,60,60,.25)}"
    ".wb-live table.wb-steps{border-collapse:collapse;margin:4px 0}"
    ".wb-live table.wb-steps td,.wb-live table.wb-steps th{padding:1px 8px;text-align:right;"
    "border-bottom:1px solid var(--jp-border-color2,rgba(128,128,128,.3))}"
    ".wb-live table.wb-steps td:first-child,.wb-live table.wb-steps th:first-child"
    "{text-align:left}"
    ".wb-live .wb-outputs{display:flex;flex-wrap:wrap;gap:12px}"
    "</style>"
)


def shown_steps(snap: Snapshot) -> list[tuple[str, StepCount]]:
    """The step rows a view shows: ``(label, counts)``, labelled with the user's step names (a
    fused chain of stateless steps as ``a → b → c``); internal operators (repartition topics'
    reader and writer, unnamed ``changes()`` and ``group_by`` plumbing) are left out."""
    names = snap.step_kinds
    rows = []
    for s in snap.steps:
        kept = [part for part in s.step.split("+") if names.get(part) == "user"]
        if kept:
            rows.append((" → ".join(kept), s))
    return rows


def render_html(snap: Snapshot, *, width: int | None = None) -> str:
    """The snapshot as HTML (escaped; readable in light and dark themes)."""
    from .frame import frame_html

    width = width or int(_option("display_width", 80))
    status = html.escape(snap.status)
    head = (f"<div><b>{html.escape(snap.pipeline)}</b> on {html.escape(snap.driver)} "
            f'<span class="wb-status wb-status-{status}">{status}</span></div>')
    meta = (f'<div class="wb-meta">{plural(snap.source_records, "source record")} · '
            f"{snap.rate:,.0f} rec/s · "
            f"{plural(snap.commits, 'commit')} · stream time {_fmt_time(snap.stream_time)} · "
            f"lag {snap.lag:,} · {snap.elapsed_s:.1f} s</div>")
    if snap.sizing():
        meta += f'<div class="wb-meta wb-sizing">{html.escape(snap.sizing())}</div>'
    parts = [_LIVE_STYLE, '<div class="wb-live">', head, meta]
    if snap.error:
        parts.append(f'<pre class="wb-error">{html.escape(snap.error)}</pre>')
    steps = shown_steps(snap)
    if steps:
        parts.append('<table class="wb-steps"><thead><tr><th>step</th><th>in</th>'
                     "<th>out</th></tr></thead><tbody>")
        for label, s in steps:
            parts.append(f"<tr><td>{html.escape(label)}</td><td>{s.records_in:,}</td>"
                         f"<td>{s.records_out:,}</td></tr>")
        parts.append("</tbody></table>")
    if snap.outputs:
        parts.append('<div class="wb-outputs">')
        for out in snap.outputs.values():
            parts.append(frame_html(out.frame(), title=f"topic {out.topic}",
                                    total_rows=out.total, rows=max(len(out.tail), 1),
                                    width=width, which="last"))
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def render_text(snap: Snapshot) -> str:
    """The snapshot as plain text."""
    lines = [f"{snap.pipeline} on {snap.driver}: {snap.status} · "
             f"{plural(snap.source_records, 'source record')}"
             f" · {plural(snap.commits, 'commit')} · stream time {_fmt_time(snap.stream_time)} · "
             f"lag {snap.lag:,} · {snap.elapsed_s:.1f} s"]
    if snap.sizing():
        lines.append(f"  {snap.sizing()}")
    if snap.error:
        lines.append(f"error: {snap.error}")
    for label, s in shown_steps(snap):
        lines.append(f"  {label:<40} in {s.records_in:>10,}  out {s.records_out:>10,}")
    for out in snap.outputs.values():
        lines.append(f"  topic {out.topic}: {plural(out.total, 'record')}")
    return "\n".join(lines)


# -- instrumentation --------------------------------------------------------------------------
class _Counter:
    __slots__ = ("n_in", "n_out")

    def __init__(self) -> None:
        self.n_in = 0
        self.n_out = 0


def _batch_len(out: Any) -> int:
    if out is None:
        return 0
    if isinstance(out, list):
        if out and (isinstance(out[0], list) or hasattr(out[0], "seq")):
            return sum(len(b) for b in out)  # a split: one batch per branch
        return len(out)  # rows of a row operator
    return len(out)  # a column batch


def _instrument(engine: Engine) -> dict[str, _Counter]:
    """Count records in and out of every operator of the engine's tasks (summed over
    partitions), by wrapping each operator's ``process`` and ``end``."""
    counters: dict[str, _Counter] = {}
    for task in sorted(engine.tasks, key=lambda t: (t.subtopology.id, t.partition)):
        for rn in task.nodes:
            op = rn.op
            if getattr(op, "_wb_counted", False):
                continue
            name = getattr(op, "name", "?")
            counter = counters.setdefault(name, _Counter())
            process, end = op.process, op.end
            sink = op.__class__.__name__ == "CollectOp"

            def counted_process(batch: Any, port: int, *, _p: Any = process,
                                _c: _Counter = counter, _sink: bool = sink) -> Any:
                n = _batch_len(batch)
                _c.n_in += n
                out = _p(batch, port)
                _c.n_out += n if _sink else _batch_len(out)
                return out

            def counted_end(*, _e: Any = end, _c: _Counter = counter) -> Any:
                out = _e()
                _c.n_out += _batch_len(out)
                return out

            op.process = counted_process  # type: ignore[method-assign]
            op.end = counted_end  # type: ignore[method-assign]
            op._wb_counted = True  # type: ignore[attr-defined]
    return counters


def _step_kinds(pipeline: Pipeline, counters: Mapping[str, Any]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for name in counters:
        for part in name.split("+"):
            node = pipeline._names.get(part)
            internal = node is None or (node.auto_named and node.op in ("table_changes",
                                                                         "group_by"))
            kinds[part] = "internal" if internal else "user"
    return kinds


# -- the live run -----------------------------------------------------------------------------
class LiveRun:
    """A pipeline running in a background thread (see the module docstring).

    Attributes:
        pipeline: the pipeline.
        engine: its engine (do not call it from another thread while the run is going).
        status: ``"starting"``, ``"running"``, ``"finished"``, ``"stopped"`` or ``"failed"``.
        error: the exception that ended a failed run.
    """

    def __init__(self, pipeline: Pipeline, engine: Engine, until: str | None, *,
                 interval: float | None = None, tail: int | None = None) -> None:
        self.pipeline = pipeline
        self.engine = engine
        self.until = until
        self.interval = float(_option("live_interval", DEFAULT_INTERVAL)
                              if interval is None else interval)
        self.tail = int(_option("live_tail_rows", DEFAULT_TAIL) if tail is None else tail)
        self.status = "starting"
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested = False
        self._started_at = time.perf_counter()
        self._snapshot: Snapshot | None = None
        self._last_taken = 0.0
        self._changed = True
        self._refresh = False
        self._snap_seq = 0
        self._cond = threading.Condition()
        self._done = threading.Event()
        self._listeners: list[Callable[[Snapshot], None]] = []
        self._view: _View | None = None
        self._run: Run | None = None
        engine.start()
        self._counters = _instrument(engine)
        self._step_kinds = _step_kinds(pipeline, self._counters)
        self._wrap_poll()
        engine.on_commit.append(self._on_commit)
        self._take_snapshot()

    # -- engine-thread side -------------------------------------------------------------------
    def _wrap_poll(self) -> None:
        engine = self.engine
        poll = engine.poll

        def polled(limits: Any = None) -> int:
            n = poll(limits)
            if n:
                self._changed = True
            if self._refresh:
                self._refresh = False
                self._take_snapshot()
            elif self._changed:
                self._maybe_snapshot()
            return n

        engine.poll = polled  # type: ignore[method-assign]

    def _on_commit(self, engine: Engine) -> None:
        self._changed = True
        self._maybe_snapshot()

    def _maybe_snapshot(self) -> None:
        now = time.perf_counter()
        if now - self._last_taken >= self.interval:
            self._take_snapshot()

    def _take_snapshot(self, status: str | None = None) -> Snapshot:
        from .._urls import redact_text, redact_url
        from ..frames import topic_schema
        from ..progress import source_backlog, source_position

        engine = self.engine
        driver = engine.driver
        outputs: dict[str, OutputTail] = {}
        for topic in self.pipeline.sinks:
            count = driver.partitions(topic)
            if count is None:
                outputs[topic] = OutputTail(topic, 0, [])
                continue
            total = 0
            tail: list[Any] = []
            first_offset = getattr(driver, "first_offset", None)
            for p in range(count):
                end = driver.end_offset(topic, p)
                total += end
                if end and self.tail:
                    start = max(0, end - self.tail)
                    if first_offset is not None:  # a bounded log keeps its last records
                        start = max(start, first_offset(topic, p))
                    tail.extend(driver.read(topic, p, start, end - start))
            if count > 1:
                tail.sort(key=lambda r: (r[2], r[3]))
            outputs[topic] = OutputTail(topic, total, tail[-self.tail:] if self.tail else [],
                                        topic_schema(self.pipeline, topic))
        try:
            lag = source_backlog(engine)
        except Exception:
            lag = self._snapshot.lag if self._snapshot is not None else 0
        stats = engine.stats
        err = self.error
        snap = Snapshot(
            pipeline=self.pipeline.name,
            driver=redact_url(driver.url),
            status=status or self.status,
            records_in=stats.records_in,
            commits=stats.commits,
            elapsed_s=time.perf_counter() - self._started_at,
            stream_time=engine.stream_time,
            lag=lag,
            steps=[StepCount(n, c.n_in, c.n_out) for n, c in self._counters.items()],
            outputs=outputs,
            error=None if err is None else redact_text(f"{type(err).__name__}: {err}"),
            taken_at=time.time(),
            source_records=source_position(engine),
            pending_commit=bool(getattr(engine, "_uncommitted", False)),
            step_kinds=self._step_kinds,
            batch_limit=stats.batch_limit,
            transaction_ms=stats.transaction_ms[-1] if stats.transaction_ms else 0.0,
            max_transaction_ms=stats.max_transaction_ms,
            external_in_flight=stats.external_in_flight,
            commit_rate=stats.commit_rate(), batch_records=stats.batch_size(),
            latency_ms=(stats.latency_ms(0.5), stats.latency_ms(0.99)),
        )
        with self._cond:
            self._snapshot = snap
            self._snap_seq += 1
            self._cond.notify_all()
        self._last_taken = time.perf_counter()
        self._changed = False
        for listener in list(self._listeners):
            try:
                listener(snap)
            except Exception:
                log.exception("live view update failed")
        return snap

    def _main(self) -> None:
        from ..progress import run_engine

        self.status = "running"
        try:
            run_engine(self.engine, self.until, force=False)
            self.status = "stopped" if self._stop_requested else "finished"
        except BaseException as exc:
            self.error = exc
            self.status = "failed"
            from .._urls import redact_text

            log.error("pipeline %s failed: %s", self.pipeline.name, redact_text(str(exc)))
        finally:
            try:
                self.engine.close()
            finally:
                try:
                    self._take_snapshot()
                finally:
                    self._done.set()
                    with self._cond:
                        self._cond.notify_all()

    def _launch(self) -> LiveRun:
        self._thread = threading.Thread(target=self._main, name=f"workbench-{self.pipeline.name}",
                                        daemon=True)
        self._thread.start()
        return self

    # -- user side ----------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True once the run has ended (finished, stopped or failed)."""
        return self._done.is_set()

    @property
    def running(self) -> bool:
        """True while the run is going."""
        return not self._done.is_set()

    def snapshot(self) -> Snapshot:
        """The last snapshot (refreshed about every ``interval`` seconds while running)."""
        assert self._snapshot is not None
        return self._snapshot

    def on_update(self, fn: Callable[[Snapshot], None]) -> None:
        """Call ``fn(snapshot)`` after each snapshot (in the engine's thread)."""
        self._listeners.append(fn)

    @public
    def wait(self, timeout: float | None = None) -> Run:
        """Wait for the end of the run and return its :class:`~workbench.run.Run`; re-raise the
        error of a failed run.

        Raises:
            TimeoutError: the run did not end within ``timeout`` seconds.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"pipeline {self.pipeline.name!r} still running after "
                               f"{timeout} s; call run.stop() to stop it.")
        if self._thread is not None:
            self._thread.join()
        if self._view is not None:
            self._view.finish(self.snapshot())
        if self.error is not None:
            raise self.error
        return self.result

    def wait_idle(self, timeout: float | None = 60) -> LiveRun:
        """Wait until every record the source topics hold is processed and committed (lag 0,
        judged by a snapshot taken after this call), or the run ended; return this run.

        Raises:
            TimeoutError: still behind after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seq = self._snap_seq
            self._refresh = True
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            def ready(seq: int = seq) -> bool:
                return self._snap_seq > seq or self.done

            with self._cond:
                fresh = self._cond.wait_for(ready, left)
            if self.done:
                return self
            if not fresh:
                raise TimeoutError(f"pipeline {self.pipeline.name!r} still behind after "
                                   f"{timeout} s (lag {self.snapshot().lag:,}).")
            snap = self.snapshot()
            if snap.lag == 0 and not snap.pending_commit:
                return self

    def stop(self, timeout: float | None = 60) -> Run:
        """Stop after the current batch (the engine commits first) and return the
        :class:`~workbench.run.Run`."""
        if not self.done:
            self._stop_requested = True
            self.engine.stop()
        return self.wait(timeout)

    @property
    def result(self) -> Run:
        """The :class:`~workbench.run.Run` (committed outputs, read through the driver)."""
        if self._run is None:
            from ..run import Run

            self._run = Run(self.pipeline, self.engine.driver, self.engine.plan, self.engine)
        return self._run

    def frame(self, topic: str) -> pd.DataFrame:
        """The committed records of ``topic`` (call after :meth:`wait`/:meth:`stop`)."""
        return self.result.frame(topic)

    def frames(self) -> dict[str, pd.DataFrame]:
        """``{topic: frame}`` of every output (call after :meth:`wait`/:meth:`stop`)."""
        return self.result.frames()

    @property
    def stats(self) -> Any:
        """The engine's counters."""
        return self.engine.stats

    def __repr__(self) -> str:
        s = self.snapshot()
        return (f"<LiveRun {self.pipeline.name!r} on {s.driver}: {s.status}, "
                f"{s.source_records:,} source records, lag {s.lag:,}>")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        snap = self.snapshot()
        return {"text/plain": render_text(snap), "text/html": render_html(snap)}


# -- notebook view ----------------------------------------------------------------------------
def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


class _View:
    """The notebook output of a live run: an ipywidgets view (live updates from the engine
    thread through widget state) plus an HTML fallback in the same output, replaced by a
    static render of the final state when the run ends."""

    def __init__(self, run: LiveRun, *, button: bool) -> None:
        from IPython.display import display

        self.run = run
        self.widgets: dict[str, Any] = {}
        snap = run.snapshot()
        bundle: dict[str, Any] = {"text/plain": render_text(snap),
                                  "text/html": render_html(snap)}
        try:
            import ipywidgets as w
        except ImportError:
            w = None
        if w is not None:
            body = w.HTML(value=render_html(snap))
            children: list[Any] = []
            if button:
                stop = w.Button(description="Stop", icon="stop", button_style="danger",
                                tooltip="stop the pipeline after its current batch")
                stop.on_click(lambda _b: self._stop_clicked())
                children.append(stop)
            box = w.VBox([*children, body])
            self.widgets = {"body": body, "box": box}
            if button:
                self.widgets["stop"] = children[0]
            wb = box._repr_mimebundle_()
            if isinstance(wb, tuple):
                wb = wb[0]
            if wb:
                bundle.update(wb)
                bundle["text/plain"] = render_text(snap)
        self.handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        self._finished = False
        self._lock = threading.Lock()
        run.on_update(self.update)

    def _stop_clicked(self) -> None:
        stop = self.widgets.get("stop")
        if stop is not None:
            stop.disabled = True
            stop.description = "Stopping…"
        self.run._stop_requested = True
        self.run.engine.stop()

    def update(self, snap: Snapshot) -> None:
        body = self.widgets.get("body")
        if body is not None:
            body.value = render_html(snap)
        elif not self._finished and self.handle is not None:
            self.handle.update({"text/plain": render_text(snap),
                                "text/html": render_html(snap)}, raw=True)
        if snap.status in ("finished", "stopped", "failed"):
            self.finish(snap)

    def finish(self, snap: Snapshot) -> None:
        """Replace the view by the static final render (idempotent per call site)."""
        stop = self.widgets.get("stop")
        if stop is not None:
            stop.disabled = True
            stop.description = snap.status.capitalize()
        body = self.widgets.get("body")
        if body is not None:
            body.value = render_html(snap)
        if self.handle is not None:
            with self._lock:
                self.handle.update({"text/plain": render_text(snap),
                                    "text/html": render_html(snap)}, raw=True)
        self._finished = True


# -- entry points (called by Pipeline.start / Pipeline.run(live=True)) ------------------------
def live_driver(driver: Any, until: str | None) -> Any:
    """The driver a live run uses for ``driver``: a run without an end (``until=None``) on the
    private ``memory://`` keeps the last ``options.live_max_records`` records of each partition
    (``memory://?max_records=N``; 0 keeps everything), so it does not hold every record its
    topics ever had. A named log (``memory://NAME``, shared in the process), a URL that sets
    ``max_records`` itself, a driver object and other drivers are used as given."""
    from urllib.parse import parse_qsl

    from ..errors import DefinitionError

    if until is not None or not isinstance(driver, str) or not driver.startswith("memory://"):
        return driver
    name, _, query = driver[len("memory://"):].partition("?")
    if name.strip("/") or any(k == "max_records" for k, _v in parse_qsl(query)):
        return driver
    limit = _option("live_max_records", DEFAULT_MAX_RECORDS)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise DefinitionError(f"workbench.options.live_max_records={limit!r}: use a whole "
                              "number of records per partition (0: keep everything).")
    if not limit:
        return driver
    return f"memory://?{query + '&' if query else ''}max_records={limit}"


def _prepare(pipeline: Pipeline, driver: Any, inputs: Mapping[str, Any] | None,
             commit_interval: str | int, clock: Any, batch_size: int,
             max_transaction: str | int | None = None, until: str | None = None) -> Engine:
    from ..run import prepare

    return prepare(pipeline, live_driver(driver, until), inputs=inputs,
                   commit_interval=commit_interval, clock=clock, batch_size=batch_size,
                   max_transaction=max_transaction)


def start(
    pipeline: Pipeline,
    driver: Any = "memory://",
    inputs: Mapping[str, Any] | None = None,
    until: str | None = None,
    *,
    commit_interval: str | int = "100ms",
    clock: Any = None,
    batch_size: int = 10_000,
    display: bool | None = None,
    interval: float | None = None,
    tail: int | None = None,
    max_transaction: str | int | None = None,
) -> LiveRun:
    """Start ``pipeline`` in a background thread and return the :class:`LiveRun`.

    Args:
        until: ``None`` (default) runs until :meth:`LiveRun.stop`; ``"end"`` stops at the end of
            what the sources hold now (windows closed, as a bounded run). A run without an end
            on the private ``memory://`` keeps the last ``options.live_max_records``
            (1,000,000) records of each partition (see :func:`live_driver`).
        display: show the live view (default: when running in a notebook kernel).
        interval: seconds between view updates (default ``options.live_interval`` = 0.5).
        tail: records shown per output topic (default ``options.live_tail_rows`` = 5).
        Other arguments as for :meth:`Pipeline.run`.
    """
    from ..errors import DefinitionError

    if until not in ("end", None):
        raise DefinitionError(f"until={until!r}: use 'end' (bounded run) or None (run until "
                              "stopped).")
    engine = _prepare(pipeline, driver, inputs, commit_interval, clock, batch_size,
                      max_transaction, until)
    run = LiveRun(pipeline, engine, until, interval=interval, tail=tail)
    if display if display is not None else _in_kernel():
        run._view = _View(run, button=True)
    return run._launch()


def run_live(
    pipeline: Pipeline,
    driver: Any = "memory://",
    inputs: Mapping[str, Any] | None = None,
    until: str | None = "end",
    *,
    commit_interval: str | int = "100ms",
    clock: Any = None,
    batch_size: int = 10_000,
    display: bool | None = None,
    interval: float | None = None,
    tail: int | None = None,
    max_transaction: str | int | None = None,
) -> Run:
    """Run in the foreground with the live view (``Pipeline.run(..., live=True)``); an
    interrupt (the kernel's stop button, Ctrl-C) stops the run after its current batch and
    returns what was committed."""
    from ..errors import DefinitionError

    if until not in ("end", None):
        raise DefinitionError(f"until={until!r}: use 'end' (bounded run) or None (run until "
                              "stopped).")
    engine = _prepare(pipeline, driver, inputs, commit_interval, clock, batch_size,
                      max_transaction, until)
    run = LiveRun(pipeline, engine, until, interval=interval, tail=tail)
    view: _View | None = None
    if display if display is not None else _in_kernel():
        view = run._view = _View(run, button=False)
    run._launch()
    try:
        while not run._done.wait(run.interval):
            pass
    except KeyboardInterrupt:
        log.info("interrupted: stopping %s after its current batch", pipeline.name)
        run._stop_requested = True
        engine.stop()
        run._done.wait()
    if view is not None:
        view.finish(run.snapshot())
    return run.wait()
