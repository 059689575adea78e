"""``pipe``: a pool of long-lived child processes, fed records on stdin.

A record goes to worker ``hash(key) % workers`` (keyless records by position), so every
record of a key is handled by the same process, in order. Each worker writes its records ahead
(up to the step's queue) and matches outputs to them in order: with ``outputs="one"`` each
output answers the oldest unanswered record; with ``outputs="many"`` the program answers with
envelopes (jsonl) or frames ending in the end marker (bytes).

A child that exits, closes its output or does not answer its oldest record within the step's
timeout (then it is killed) is **restarted** after the step's back-off (doubling while it
keeps failing), and every record it had not answered is sent again. Only the record it was
working on counts an attempt; after ``retries`` more, that record is reported (with its topic,
partition and offset, and the program's last stderr lines) as ``on_error`` says.
"""

from __future__ import annotations

import json
import logging
import queue
import time
import zlib
from collections import deque
from typing import Any

from ...calls import PipeSpec
from ...errors import ProcessingError
from .base import ExternalOp, Pending
from .children import Child, frame_bytes

__all__ = ["PipeOp"]

log = logging.getLogger("workbench.pipe")


class _Entry:
    """A record sent to a worker and not answered yet."""

    __slots__ = ("attempts", "data", "id", "pending", "row")

    def __init__(self, pending: Pending, row: int, data: bytes, ident: int) -> None:
        self.pending = pending
        self.row = row
        self.data = data
        self.id = ident
        self.attempts = 0


class _Worker:
    """One slot of the pool: its child (when running) and the records it has to answer."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.child: Child | None = None
        self.generation = 0
        self.inflight: deque[_Entry] = deque()
        #: when the oldest record became the one the child works on
        self.head_since: float | None = None
        #: outputs of the oldest record so far (``outputs="many"``)
        self.collected: list[Any] = []
        self.failures = 0  # consecutive crashes/hangs (back-off)
        self.restart_at: float | None = None
        self.next_id = 0


def _json_default(obj: Any) -> Any:
    item = getattr(obj, "item", None)  # NumPy scalars
    if item is not None:
        return item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _key_slot(key: Any, row: int, workers: int) -> int:
    if key is None:
        return row % workers
    text = repr(key) if key.__class__ in (str, int) else json.dumps(
        key, sort_keys=True, default=repr)
    return zlib.crc32(text.encode()) % workers


class PipeOp(ExternalOp):
    """The operator of ``pipe`` (one pool per task)."""

    def __init__(self, name: str, defined_at: str, app_id: str, task: Any,
                 spec: PipeSpec) -> None:
        super().__init__(name, defined_at, app_id, task, spec, spec.queue)
        self.pipe: PipeSpec = spec
        self.flat = spec.outputs == "many"
        self.lanes = spec.workers
        self.events: queue.SimpleQueue[tuple[int, int, str, Any]] = queue.SimpleQueue()
        self.workers = [_Worker(i) for i in range(spec.workers)]
        #: children started (restarts included)
        self.starts = 0

    def init(self, ctx: Any) -> None:
        """Start the children with the task, before its first transaction: a program that
        takes long to start (imports, a model to load) does so outside any transaction."""
        super().init(ctx)
        for w in self.workers:
            if w.child is None:
                self._start(w)

    # -- the sizer's view ---------------------------------------------------------------------
    def running_since(self) -> float | None:
        starts = [w.head_since for w in self.workers if w.inflight and w.head_since]
        return min(starts) if starts else None

    def flush_estimate(self) -> float:
        deepest = max((len(w.inflight) for w in self.workers), default=0)
        return deepest * self.latency_s() if deepest else 0.0

    # -- sending ------------------------------------------------------------------------------
    def _encode(self, value: Any, ident: int) -> bytes:
        spec = self.pipe
        if spec.format == "bytes":
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"format='bytes' needs bytes values, got "
                                f"{type(value).__name__}")
            return frame_bytes(bytes(value))
        if spec.outputs == "many":
            value = {"id": ident, "value": value}
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          default=_json_default).encode() + b"\n"

    def _start_batch(self, pending: Pending) -> None:
        batch = pending.batch
        values = batch.values.objects().tolist()
        keys = batch.key_objects().tolist() if len(self.workers) > 1 else None
        out: dict[int, list[bytes]] = {}
        for row, value in enumerate(values):
            w = self.workers[0 if keys is None else _key_slot(keys[row], row, len(self.workers))]
            ident = w.next_id
            w.next_id += 1
            try:
                data = self._encode(value, ident)
            except (TypeError, ValueError) as exc:  # cannot be sent: no use retrying
                self._fail_row(pending, row, f"{type(exc).__name__}: {exc}", 0, exc)
                continue
            if not w.inflight:
                w.head_since = time.monotonic()
            w.inflight.append(_Entry(pending, row, data, ident))
            out.setdefault(w.index, []).append(data)
        for index, frames in out.items():
            w = self.workers[index]
            if w.child is None and w.restart_at is None:
                self._start(w)  # sends every record in flight
            elif w.child is not None:
                w.child.send(b"".join(frames))

    def _start(self, w: _Worker) -> None:
        w.generation += 1
        w.collected = []
        try:
            w.child = Child(self.pipe, self.name, w.index, w.generation, self.events)
        except OSError as exc:
            raise ProcessingError(
                f"step {self.name!r} (defined at {self.defined_at}) cannot start "
                f"{self.pipe.program!r}: {exc}. Is the program installed and on PATH (or give "
                "its path)? A command line for a shell needs shell=True.",
                step=self.name, defined_at=self.defined_at) from exc
        self.starts += 1
        w.restart_at = None
        if w.inflight:
            w.head_since = time.monotonic()
            w.child.send(b"".join(e.data for e in w.inflight))

    # -- receiving ----------------------------------------------------------------------------
    def _gather(self, timeout: float) -> None:
        self._service()
        wait = min(timeout, self._next_deadline())
        try:
            item = self.events.get(timeout=wait) if wait > 0 else self.events.get_nowait()
        except queue.Empty:
            self._service()
            return
        while True:
            worker, generation, kind, payload = item
            w = self.workers[worker]
            if generation == w.generation and w.child is not None:
                if kind == "eof":
                    self._failed(w, self._exit_reason(w))
                else:
                    self._answer(w, kind, payload)
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                break
        self._service()

    def _next_deadline(self) -> float:
        """Seconds until a restart is due or a child's oldest record times out."""
        now = time.monotonic()
        soonest = 3600.0
        for w in self.workers:
            if w.restart_at is not None and w.inflight:
                soonest = min(soonest, w.restart_at - now)
            if w.child is not None and w.inflight and w.head_since and self.timeout_s:
                soonest = min(soonest, w.head_since + self.timeout_s - now)
        return max(0.0, soonest)

    def _service(self) -> None:
        """Restart children whose back-off is over; kill those that hang."""
        now = time.monotonic()
        for w in self.workers:
            if w.child is None and w.restart_at is not None and w.inflight and \
                    now >= w.restart_at:
                self._start(w)
            elif (w.child is not None and w.inflight and w.head_since is not None
                  and self.timeout_s is not None and now - w.head_since > self.timeout_s):
                w.child.kill()
                self._failed(w, f"did not answer within its timeout of {self.timeout_s:g} s "
                                "(killed; does it flush its output after each record? "
                                "python -u, jq --unbuffered)")

    def _answer(self, w: _Worker, kind: str, payload: Any) -> None:
        if not w.inflight:
            self._protocol(w, f"it wrote output no record asked for: {_short(payload)}")
            return
        head = w.inflight[0]
        many = self.pipe.outputs == "many"
        if kind == "line":
            try:
                value = json.loads(payload)
            except ValueError:
                self._protocol(w, f"it wrote a line that is not JSON: {_short(payload)}",
                               head)
                return
            if not many:
                self._done(w, value)
                return
            if not isinstance(value, dict) or value.get("id") != head.id:
                self._protocol(w, f"it wrote {_short(payload)} where an envelope "
                                  f'{{"id": {head.id}, ...}} was due', head)
                return
            if value.get("end"):
                self._done(w, w.collected)
            elif "error" in value:
                w.inflight.popleft()
                self._advance(w)
                self._fail_row(head.pending, head.row, f"the program reported: "
                               f"{value['error']}", head.attempts + 1)
            elif "value" in value:
                w.collected.append(value["value"])
            else:
                self._protocol(w, f"envelope {_short(payload)} has no value, end or error",
                               head)
        elif kind == "frame":
            if many:
                w.collected.append(payload)
            else:
                self._done(w, payload)
        elif kind == "end":
            if many:
                self._done(w, w.collected)
            else:
                self._protocol(w, "it wrote an end marker with outputs='one'", head)

    def _done(self, w: _Worker, result: Any) -> None:
        head = w.inflight.popleft()
        now = time.monotonic()
        if w.head_since is not None:
            self.latency.observe(now - w.head_since)
        w.failures = 0
        self._advance(w)
        self._finish_row(head.pending, head.row, result)

    def _advance(self, w: _Worker) -> None:
        w.collected = []
        w.head_since = time.monotonic() if w.inflight else None

    def _protocol(self, w: _Worker, what: str, head: _Entry | None = None) -> None:
        """The program broke the framing: the record fails (retrying would not help)."""
        if head is None:
            raise ProcessingError(f"step {self.name!r} (defined at {self.defined_at}): "
                                  f"{self.pipe.program!r} broke the protocol: {what}. See "
                                  "docs/external.md for the framing.",
                                  step=self.name, defined_at=self.defined_at)
        w.inflight.popleft()
        self._advance(w)
        self._fail_row(head.pending, head.row, f"{self.pipe.program!r} broke the protocol: "
                       f"{what}", head.attempts + 1)

    # -- failures -----------------------------------------------------------------------------
    def _exit_reason(self, w: _Worker) -> str:
        child = w.child
        assert child is not None
        status = child.exit_status()
        if status is None:
            child.kill()
            return "closed its output (killed)"
        return f"exited with status {status}"

    def _failed(self, w: _Worker, reason: str) -> None:
        """Worker ``w``'s child is gone (``reason``): charge its current record an attempt,
        give up on it after the retries, schedule the restart."""
        child = w.child
        assert child is not None
        tail = list(child.stderr_tail)
        w.child = None
        w.generation += 1  # what the old child still sends is stale
        w.collected = []
        w.failures += 1
        delay = self.pipe.retry.delay_ms(w.failures) / 1000
        w.restart_at = time.monotonic() + delay
        if w.inflight:
            log.warning("step %r: %r (pid %d) %s; restarting it in %.3g s",
                        self.name, self.pipe.program, child.pid, reason, delay)
        head = w.inflight[0] if w.inflight else None
        if head is None:
            return
        head.attempts += 1
        if head.attempts > self.pipe.retry.retries:
            w.inflight.popleft()
            self._advance(w)
            stderr = f"; its last stderr lines: {' | '.join(tail)}" if tail else ""
            self._fail_row(head.pending, head.row,
                           f"{self.pipe.program!r} (pid {child.pid}) {reason} while working "
                           f"on this record{stderr}", head.attempts)

    def _shutdown(self) -> None:
        for w in self.workers:
            child, w.child = w.child, None
            w.generation += 1
            w.restart_at = None
            if child is not None:
                child.stop()

    def pids(self) -> list[int]:
        """Process ids of the running children (tests, tools)."""
        return [w.child.pid for w in self.workers if w.child is not None]


def _short(payload: Any, limit: int = 120) -> str:
    text = repr(payload)
    return text if len(text) <= limit else text[: limit - 3] + "..."
