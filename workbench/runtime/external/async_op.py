"""``map_async`` / ``flat_map_async``: slow calls with at most ``concurrency`` at a time.

Each operator runs an event loop in a thread of its own. An ``async def`` runs on that loop; a
plain function runs in a thread pool of ``concurrency`` threads driven by the loop. Every
attempt may take the step's timeout (``asyncio.wait_for``; a function in a thread cannot be
stopped, so it keeps its thread until it returns, and a new attempt waits for a free one); a
failed attempt is retried after the step's back-off. Finished calls go back to the engine's
thread through a queue; results are put in input order there.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from ...calls import AsyncSpec, CallInfo, _set_call
from ...types import Record
from ..batch import Batch, ObjectValues, obj_array
from ..operators import _as_record_result
from .base import ExternalOp, Pending

__all__ = ["AsyncMapOp"]

#: (pending, row, ok, result or error text, attempts, seconds since the first attempt began,
#: exception)
Done = tuple[Pending, int, bool, Any, int, float, BaseException | None]


def _is_async(fn: Callable[..., Any]) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004  (objects with an async __call__)
    return (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
            or inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call))


def _call_in_thread(fn: Callable[[Any], Any], arg: Any, info: CallInfo, flat: bool) -> Any:
    token = _set_call(info)
    try:
        result = fn(arg)
        return list(result) if flat else result
    finally:
        token.var.reset(token)


class _Runner:
    """An event loop thread running one step's calls."""

    def __init__(self, op: AsyncMapOp) -> None:
        spec: AsyncSpec = op.spec
        self.fn = spec.fn
        self.flat = spec.flat
        self.retry = spec.retry
        self.timeout_s = op.timeout_s
        self.done = op.done
        self.running = op.running
        self.is_async = _is_async(spec.fn)
        self.loop = asyncio.new_event_loop()
        self.sem = asyncio.Semaphore(spec.concurrency)
        self.executor = None if self.is_async else ThreadPoolExecutor(
            spec.concurrency, thread_name_prefix=f"workbench-{op.name}")
        self.tasks: set[asyncio.Task[None]] = set()
        self.ids = itertools.count()
        self.thread = threading.Thread(target=self._serve, name=f"workbench-{op.name}-loop",
                                       daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, pending: Pending, args: list[Any], infos: list[CallInfo]) -> None:
        """Start the calls of ``pending`` (thread-safe)."""
        self.loop.call_soon_threadsafe(self._spawn, pending, args, infos)

    def _spawn(self, pending: Pending, args: list[Any], infos: list[CallInfo]) -> None:
        for row, (arg, info) in enumerate(zip(args, infos)):
            task = self.loop.create_task(self._one(pending, row, arg, info))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _one(self, pending: Pending, row: int, arg: Any, info: CallInfo) -> None:
        attempt = 0
        cid = next(self.ids)
        first: float | None = None  # the record's first attempt began (its latency counts
        try:                        # every attempt and back-off)
            while True:
                attempt += 1
                error: BaseException | None = None
                result: Any = None
                async with self.sem:
                    if first is None:
                        first = time.monotonic()
                        self.running[cid] = first
                    try:
                        call = self._attempt(arg, replace(info, attempt=attempt))
                        if self.timeout_s is None:
                            result = await call
                        else:
                            result = await asyncio.wait_for(call, self.timeout_s)
                    except TimeoutError as exc:
                        error = exc if str(exc) else TimeoutError(
                            f"the call took longer than its timeout of {self.timeout_s:g} s")
                    except Exception as exc:
                        error = exc
                assert first is not None
                seconds = time.monotonic() - first
                if error is None:
                    self.done.put((pending, row, True, result, attempt, seconds, None))
                    return
                if attempt > self.retry.retries:
                    text = f"{type(error).__name__}: {error}"
                    self.done.put((pending, row, False, text, attempt, seconds, error))
                    return
                await asyncio.sleep(self.retry.delay_ms(attempt) / 1000)
        finally:
            self.running.pop(cid, None)

    async def _attempt(self, arg: Any, info: CallInfo) -> Any:
        if not self.is_async:
            return await self.loop.run_in_executor(self.executor, _call_in_thread, self.fn,
                                                   arg, info, self.flat)
        token = _set_call(info)
        try:
            made = self.fn(arg)
            if inspect.isasyncgen(made):
                return [item async for item in made]
            result = await made
            return list(result) if self.flat else result
        finally:
            token.var.reset(token)

    def stop(self) -> None:
        """Cancel what runs and stop the loop and the threads."""
        def cancel() -> None:
            for task in list(self.tasks):
                task.cancel()
            self.loop.stop()

        if self.loop.is_running():
            self.loop.call_soon_threadsafe(cancel)
            self.thread.join(timeout=5)
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        if not self.loop.is_running():
            self.loop.close()


class AsyncMapOp(ExternalOp):
    """The operator of ``map_async`` / ``flat_map_async`` (one per task)."""

    def __init__(self, name: str, defined_at: str, app_id: str, task: Any,
                 spec: AsyncSpec) -> None:
        super().__init__(name, defined_at, app_id, task, spec, spec.queue)
        self.flat = spec.flat
        self.lanes = spec.concurrency
        self.with_record = spec.with_record
        self.done: queue.SimpleQueue[Done] = queue.SimpleQueue()
        #: when each record being called began its first attempt (written by the loop thread)
        self.running: dict[int, float] = {}
        self._runner: _Runner | None = None

    def running_since(self) -> float | None:
        starts = list(self.running.values())
        return min(starts) if starts else None

    def _start_batch(self, pending: Pending) -> None:
        if self._runner is None:
            self._runner = _Runner(self)
        infos = self.call_infos(pending)
        if self.with_record:
            args: list[Any] = [Record(k, v, t, h) for k, v, t, _s, h in pending.batch.rows()]
        else:
            args = pending.batch.values.objects().tolist()
        self._runner.submit(pending, args, infos)

    def _gather(self, timeout: float) -> None:
        done = self.done
        try:
            item = done.get(timeout=timeout) if timeout > 0 else done.get_nowait()
        except queue.Empty:
            return
        while True:
            pending, row, ok, result, attempts, seconds, error = item
            self.latency.observe(seconds)
            if ok:
                if self.with_record:
                    result = self._record_result(pending, row, result)
                self._finish_row(pending, row, result)
            else:
                self._fail_row(pending, row, result, attempts, error)
            try:
                item = done.get_nowait()
            except queue.Empty:
                return

    def _record_result(self, pending: Pending, row: int, result: Any) -> Any:
        """With ``with_record``: the output as ``(key, value, timestamp, headers)``."""
        batch = pending.batch
        k = batch.key_objects()[row]
        t = int(batch.ts[row])
        h = None if batch.headers is None else batch.headers[row]
        if self.flat:
            return [_as_record_result(r, k, t, h) for r in result]
        return _as_record_result(result, k, t, h)

    def _with_results(self, out: Batch, values: list[Any]) -> Batch:
        if not self.with_record:
            return super()._with_results(out, values)
        n = len(values)
        keys = obj_array((r[0] for r in values), n)
        vals = obj_array((r[1] for r in values), n)
        ts = np.fromiter((int(r[2]) for r in values), dtype=np.int64, count=n)
        headers = [r[3] for r in values]
        return Batch(keys, ObjectValues(vals), ts, out.seq,
                     obj_array(headers, n) if any(h is not None for h in headers) else None)

    def _shutdown(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop()
