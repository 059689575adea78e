"""The HTTP surface of a running pipeline, on aiohttp (see ``docs/operations.md`` for why).

Endpoints (JSON unless said otherwise):

``GET /``                      status page (HTML; refreshes itself from ``/status.json``)
``GET /health``                200 while the processing loop turns (Kubernetes liveness)
``GET /ready``                 200 once partitions are assigned and state restored; 503 while
                               starting, rebalancing or stopping (Kubernetes readiness)
``GET /metrics``               Prometheus text format
``GET /status.json``           the numbers of the status page
``GET /tables``                the queryable tables and windowed stores
``GET /tables/NAME``           rows by key range: ``from_key``, ``to_key``, ``from``, ``to``
                               (window start, epoch ms or ISO-8601), ``limit`` (default 1000)
``GET /tables/NAME/KEY``       one key: a row (table) or its windows (``from``/``to``)

With several workers, a key held by another worker is fetched from it (the answer says which
worker in ``X-Workbench-Worker``), and a range query gathers the rows of every worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import WorkbenchError
from .views import NotFound, parse_key, parse_time

if TYPE_CHECKING:
    from .core import Service

__all__ = ["HttpServer", "parse_address", "read_workers"]

log = logging.getLogger(__name__)

FORWARDED = "X-Workbench-Forwarded"


def parse_address(address: str) -> tuple[str, int]:
    """``host:port``, ``:port`` or ``port`` → ``(host, port)`` (host defaults to 127.0.0.1)."""
    from ..errors import DefinitionError

    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise DefinitionError(f"--http {address!r}: use HOST:PORT, e.g. 127.0.0.1:8080.") from None
    if not 0 <= number <= 65535:
        raise DefinitionError(f"--http {address!r}: port out of range.")
    return host, number


def read_workers(directory: str | None) -> list[dict[str, Any]]:
    """The worker files of a supervisor's directory (address, owned partitions)."""
    if not directory:
        return []
    out = []
    for path in sorted(Path(directory).glob("worker-*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being replaced
    return out


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    from aiohttp import web

    return web.Response(text=json.dumps(body, default=repr), status=status,
                        content_type="application/json", headers=headers)


class HttpServer:
    """aiohttp in a background thread with its own event loop."""

    def __init__(self, service: Service, address: str) -> None:
        self.service = service
        self.host, self.port = parse_address(address)
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._session: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._workers: tuple[float, list[dict[str, Any]]] = (0.0, [])
        self.requests = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> str:
        """Bind and serve; return the base URL."""
        self._thread = threading.Thread(target=self._main, name="workbench-http", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            from ..errors import DefinitionError

            raise DefinitionError(f"cannot serve HTTP on {self.host}:{self.port}: "
                                  f"{self._error}") from self._error
        return self.url

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._setup())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._teardown())
            loop.close()

    async def _setup(self) -> None:
        from aiohttp import web

        app = web.Application()
        r = app.router
        r.add_get("/", self.page)
        r.add_get("/health", self.health)
        r.add_get("/ready", self.ready)
        r.add_get("/metrics", self.metrics)
        r.add_get("/status.json", self.status)
        r.add_get("/tables", self.tables)
        r.add_get("/tables/{name}", self.table_range)
        r.add_get("/tables/{name}/{key:.+}", self.table_key)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        port = self.port
        if server is not None and server.sockets:
            port = server.sockets[0].getsockname()[1]
        self.port = port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}"

    async def _teardown(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    # -- handlers -----------------------------------------------------------------------------
    async def health(self, request: Any) -> Any:
        ok, why = self.service.live()
        return _json({"status": "ok" if ok else "failing", "reason": why}, 200 if ok else 503)

    async def ready(self, request: Any) -> Any:
        ok, why = self.service.ready()
        return _json({"status": "ready" if ok else "not ready", "reason": why},
                     200 if ok else 503)

    async def metrics(self, request: Any) -> Any:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST

        resp = web.Response(body=self.service.metrics_text())
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def status(self, request: Any) -> Any:
        body = self.service.status_json()
        body["workers"] = [{"index": w.get("index"), "url": w.get("url"),
                            "ready": w.get("ready")} for w in self._peers(fresh=True)]
        return _json(body)

    async def page(self, request: Any) -> Any:
        from aiohttp import web

        from .status import render_page

        return web.Response(text=render_page(self.service), content_type="text/html")

    async def tables(self, request: Any) -> Any:
        return _json({"tables": self.service.tables()})

    def _bad(self, exc: Exception) -> Any:
        return _json({"error": str(exc)}, 400)

    def _not_found(self, exc: NotFound, name: str | None = None) -> Any:
        from .core import not_found_body

        body = not_found_body(exc)
        if exc.what == "key" and name is not None:
            body["table"] = name
            body["some_keys"] = [r["key"] for r in self.service.views.range(name, limit=20)]
        return _json(body, 404)

    async def table_key(self, request: Any) -> Any:
        svc = self.service
        name = request.match_info["name"]
        text = request.match_info["key"]
        try:
            info = svc.views.store(name)
            lo = parse_time(request.query.get("from"), "from")
            hi = parse_time(request.query.get("to"), "to")
        except NotFound as exc:
            return self._not_found(exc)
        except WorkbenchError as exc:
            return self._bad(exc)
        candidates = parse_key(text)
        for key in candidates:
            try:
                return _json(svc.get(name, key, time_from=lo, time_to=hi),
                             headers=self._me())
            except NotFound:
                continue
        # not here: ask the worker that holds the key's partition
        if not request.headers.get(FORWARDED):
            for key in candidates:
                p = svc.views.partition_of(name, key)
                if p is None or svc.views.holds(name, p):
                    continue
                owner = self._owner(info.subtopology, p)
                if owner is not None:
                    return await self._forward(owner, request)
        last = NotFound(f"table {info.step!r} has no key {text!r}"
                        + (" with windows in that time range." if lo is not None
                           or hi is not None else "."), what="key")
        return self._not_found(last, name)

    async def table_range(self, request: Any) -> Any:
        svc = self.service
        name = request.match_info["name"]
        q = request.query
        try:
            svc.views.store(name)
            kw: dict[str, Any] = {
                "from_key": _key_arg(q.get("from_key")), "to_key": _key_arg(q.get("to_key")),
                "time_from": parse_time(q.get("from"), "from"),
                "time_to": parse_time(q.get("to"), "to"),
                "limit": int(q.get("limit", "1000")),
            }
        except NotFound as exc:
            return self._not_found(exc)
        except (WorkbenchError, ValueError) as exc:
            return self._bad(exc)
        rows = svc.range(name, **kw)
        if not request.headers.get(FORWARDED):
            for peer in self._peers():
                if peer.get("index") == svc.worker_index:
                    continue
                got = await self._fetch_json(peer, str(request.rel_url))
                if isinstance(got, dict) and isinstance(got.get("rows"), list):
                    rows.extend(got["rows"])
            if len(self._peers()) > 1:
                from .views import _sort_key

                rows.sort(key=lambda r: (_sort_key(_hashable(r["key"])),
                                         r.get("window_start") or 0))
                rows = rows[:kw["limit"]]
        return _json({"table": name, "rows": rows}, headers=self._me())

    # -- workers ------------------------------------------------------------------------------
    def _me(self) -> dict[str, str]:
        index = self.service.worker_index
        return {} if index is None else {"X-Workbench-Worker": str(index)}

    def _peers(self, fresh: bool = False) -> list[dict[str, Any]]:
        at, workers = self._workers
        now = time.monotonic()
        if fresh or now - at > 0.5:
            workers = read_workers(self.service.worker_dir)
            self._workers = (now, workers)
        return workers

    def _owner(self, subtopology: int, partition: int) -> dict[str, Any] | None:
        for peer in self._peers(fresh=True):
            if peer.get("index") == self.service.worker_index:
                continue
            if partition in peer.get("owned", {}).get(str(subtopology), []):
                return peer
        return None

    async def _client(self) -> Any:
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._session

    async def _fetch_json(self, peer: dict[str, Any], path: str) -> Any:
        session = await self._client()
        try:
            async with session.get(peer["url"] + path, headers={FORWARDED: "1"}) as resp:
                return await resp.json()
        except Exception as exc:  # a worker going away: answer with what we have
            log.info("worker %s did not answer %s: %s", peer.get("index"), path, exc)
            return None

    async def _forward(self, peer: dict[str, Any], request: Any) -> Any:
        from aiohttp import web

        session = await self._client()
        try:
            async with session.get(peer["url"] + str(request.rel_url),
                                   headers={FORWARDED: "1"}) as resp:
                body = await resp.read()
                headers = {"X-Workbench-Worker": resp.headers.get("X-Workbench-Worker",
                                                                  str(peer.get("index")))}
                return web.Response(body=body, status=resp.status, headers=headers,
                                    content_type="application/json")
        except Exception as exc:
            return _json({"error": f"worker {peer.get('index')} holds that key but did not "
                                   f"answer: {exc}"}, 503)


def _key_arg(text: str | None) -> Any:
    if text is None:
        return None
    return parse_key(text)[-1]


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value
