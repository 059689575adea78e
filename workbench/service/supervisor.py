"""The supervisor of ``--workers N``: starts N worker processes, serves the public HTTP address
for all of them, passes signals on and stops them together (see :mod:`.workers`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any

from .core import WORKER_DIR_ENV, WORKER_INDEX_ENV
from .http import parse_address, read_workers

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the worker gets SIGTERM if the supervisor dies (kill -9)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Supervisor:
    """Runs ``argv`` (a ``workbench run`` command line, without ``--workers``/``--http``) as
    ``count`` workers.

    Each worker runs in its own session (so a terminal's Ctrl-C reaches only the supervisor,
    which passes it on once) and dies with the supervisor.
    """

    def __init__(self, argv: list[str], count: int, http: str | None) -> None:
        self.argv = argv
        self.count = count
        self.http = http
        self.dir = tempfile.mkdtemp(prefix="workbench-workers-")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.signals = 0
        self.exit_code: int | None = None
        self._rr = 0
        self._session: Any = None

    # -- processes ----------------------------------------------------------------------------
    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, WORKER_DIR_ENV: self.dir, WORKER_INDEX_ENV: str(index)}
        argv = [sys.executable, "-m", "workbench.cli", *self.argv, "--workers", "1"]
        if self.http is not None:
            argv += ["--http", "127.0.0.1:0"]
        return subprocess.Popen(argv, env=env, start_new_session=True,
                                preexec_fn=_die_with_parent)

    def _signal_all(self, signum: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signum)

    def _on_signal(self, signum: int) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            log.warning("received %s: stopping %d workers (each finishes its batch and "
                        "commits)", name, len(self.procs))
        else:
            log.warning("received %s again: workers exit at once without committing", name)
            self.exit_code = 128 + signum
        self._signal_all(signum)

    async def _watch(self) -> int:
        failed: int | None = None
        while True:
            codes = [p.poll() for p in self.procs]
            if all(c is not None for c in codes):
                break
            bad = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if bad and failed is None and self.signals == 0:
                i, code = bad[0]
                log.error("worker %d exited with status %s: stopping the others", i, code)
                failed = 1
                self.signals = 1
                self._signal_all(signal.SIGTERM)
            await asyncio.sleep(0.1)
        if self.exit_code is not None:
            return self.exit_code
        if failed is not None:
            return failed
        bad_codes = [int(p.returncode or 0) for p in self.procs if p.returncode]
        return bad_codes[0] if bad_codes else 0

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        runner = None
        if self.http is not None:
            runner = await self._serve()
        self.procs = [self._spawn(i) for i in range(self.count)]
        log.info("started %d workers: pids %s", self.count, [p.pid for p in self.procs])
        try:
            return await self._watch()
        finally:
            if self._session is not None:
                await self._session.close()
            if runner is not None:
                await runner.cleanup()

    def run(self) -> int:
        """Start the workers, serve, wait; return the exit status."""
        try:
            return asyncio.run(self._main())
        finally:
            self._signal_all(signal.SIGKILL)
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)

    # -- HTTP ---------------------------------------------------------------------------------
    async def _serve(self) -> Any:
        from aiohttp import web

        app = web.Application()
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/ready", self.ready)
        r.add_get("/metrics", self.metrics)
        r.add_get("/status.json", self.status)
        r.add_get("/workers", self.workers)
        r.add_get("/{tail:.*}", self.proxy)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = parse_address(self.http or "")
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        log.info("supervisor serving http://%s:%d", host, port)
        return runner

    async def _client(self) -> Any:
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._session

    async def _get(self, url: str) -> tuple[int, bytes, dict[str, str]]:
        session = await self._client()
        try:
            async with session.get(url, headers={}) as resp:
                return resp.status, await resp.read(), dict(resp.headers)
        except Exception as exc:
            return 503, json.dumps({"error": str(exc)}).encode(), {}

    def _workers(self) -> list[dict[str, Any]]:
        return read_workers(self.dir)

    async def _each(self, path: str) -> list[tuple[dict[str, Any], int, bytes]]:
        workers = self._workers()
        results = await asyncio.gather(*(self._get(w["url"] + path) for w in workers))
        return [(w, status, body) for w, (status, body, _h) in zip(workers, results)]

    def _missing(self) -> list[int]:
        have = {w.get("index") for w in self._workers()}
        return [i for i in range(self.count) if i not in have]

    async def _all_ok(self, path: str) -> Any:
        from aiohttp import web

        answers = await self._each(path)
        missing = self._missing()
        per = {str(w.get("index")): {"status": status, **_loads(body)}
               for w, status, body in answers}
        for i in missing:
            per[str(i)] = {"status": 503, "reason": "starting"}
        dead = [i for i, p in enumerate(self.procs) if p.poll() is not None]
        for i in dead:
            per[str(i)] = {"status": 503, "reason": f"exited with {self.procs[i].returncode}"}
        ok = bool(answers) and not missing and not dead and all(
            s == 200 for _w, s, _b in answers)
        return web.Response(text=json.dumps({"status": "ok" if ok else "failing",
                                             "workers": per}),
                            status=200 if ok else 503, content_type="application/json")

    async def health(self, request: Any) -> Any:
        return await self._all_ok("/health")

    async def ready(self, request: Any) -> Any:
        return await self._all_ok("/ready")

    async def workers(self, request: Any) -> Any:
        from aiohttp import web

        body = [{**w, "alive": self.procs[w["index"]].poll() is None
                 if w.get("index") is not None and w["index"] < len(self.procs) else False}
                for w in self._workers()]
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def metrics(self, request: Any) -> Any:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST

        texts = {str(w.get("index")): body.decode() for w, status, body
                 in await self._each("/metrics") if status == 200}
        resp = web.Response(body=merge_metrics(texts))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def status(self, request: Any) -> Any:
        from aiohttp import web

        parts = [(w, _loads(body)) for w, status, body in await self._each("/status.json")
                 if status == 200]
        body = combine_status([p for _w, p in parts])
        body["workers"] = [{"index": w.get("index"), "url": w.get("url"),
                            "ready": p.get("ready")} for w, p in parts]
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def proxy(self, request: Any) -> Any:
        """``/`` and ``/tables...``: answered by one worker (round robin; it fetches from the
        others what it does not hold)."""
        from aiohttp import web

        workers = [w for w in self._workers() if w.get("ready")] or self._workers()
        if not workers:
            return web.Response(text=json.dumps({"error": "no worker is up yet"}), status=503,
                                content_type="application/json")
        self._rr += 1
        w = workers[self._rr % len(workers)]
        status, body, headers = await self._get(w["url"] + str(request.rel_url))
        keep = {k: v for k, v in headers.items()
                if k.lower() in ("content-type", "x-workbench-worker")}
        keep.setdefault("X-Workbench-Worker", str(w.get("index")))
        return web.Response(body=body, status=status, headers=keep)


def _loads(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def combine_status(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The status page numbers of several workers, added up."""
    if not parts:
        return {"status": "starting", "live": False, "ready": False, "steps": [],
                "ready_reason": "no worker answered"}
    out = dict(parts[0])
    for key in ("records_in", "commits", "lag", "tasks"):
        out[key] = sum(p.get(key) or 0 for p in parts)
    out["stream_time"] = max(p.get("stream_time", -1) for p in parts)
    out["commit_ms_p50"] = max((p.get("commit_ms_p50") or 0) for p in parts)
    out["commit_ms_p99"] = max((p.get("commit_ms_p99") or 0) for p in parts)
    out["live"] = all(p.get("live") for p in parts)
    out["ready"] = all(p.get("ready") for p in parts)
    out["ready_reason"] = "; ".join(str(p.get("ready_reason")) for p in parts)
    steps: dict[tuple[str, str], dict[str, Any]] = {}
    for p in parts:
        for st in p.get("steps", []):
            k = (st["step"], st["kind"])
            if k not in steps:
                steps[k] = dict(st)
                continue
            for f in ("records", "lag", "dropped"):
                if st.get(f) is not None:
                    steps[k][f] = (steps[k].get(f) or 0) + st[f]
    out["steps"] = list(steps.values())
    out.pop("worker", None)
    return out


def merge_metrics(texts: dict[str, str]) -> bytes:
    """Several workers' Prometheus texts as one, each sample labelled ``worker``."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics_core import Metric
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    for worker, text in sorted(texts.items()):
        for fam in text_string_to_metric_families(text):
            merged = families.get(fam.name)
            if merged is None:
                merged = families[fam.name] = Metric(fam.name, fam.documentation, fam.type,
                                                     fam.unit)
            for s in fam.samples:
                merged.add_sample(s.name, {**s.labels, "worker": worker}, s.value,
                                  s.timestamp, s.exemplar)

    class _Merged:
        def collect(self) -> list[Metric]:
            return list(families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())  # type: ignore[arg-type]
    return bytes(generate_latest(registry))


