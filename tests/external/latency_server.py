"""A local HTTP server whose latency a test changes while a pipeline calls it.

``GET /double?x=N`` answers ``{"y": 2N}`` after the current latency. The latency follows a
schedule of ``(requests, seconds)`` steps (the first ``requests`` requests take ``seconds``,
then the next step...) or is set directly (:meth:`LatencyServer.set`). Every request's
``Idempotency-Key`` header is recorded, so tests can see repeated calls.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["LatencyServer"]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        owner = self.server.owner
        query = parse_qs(urlsplit(self.path).query)
        x = int(query.get("x", ["0"])[0])
        delay = owner._next_delay(self.headers.get("Idempotency-Key"))
        time.sleep(delay)
        body = json.dumps({"y": 2 * x}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller is gone (a test killed it)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    owner: LatencyServer


class LatencyServer:
    """The server, on 127.0.0.1 and a free port, serving in a thread."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self._lock = threading.Lock()
        self.latency_s = latency_s
        self.schedule: list[tuple[int, float]] = []
        self.requests = 0
        self.keys: list[str | None] = []
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def set(self, latency_s: float) -> None:
        """Every request from now takes ``latency_s``."""
        with self._lock:
            self.latency_s = latency_s
            self.schedule = []

    def follow(self, schedule: list[tuple[int, float]], then: float) -> None:
        """Requests take the latencies of ``schedule`` in turn, then ``then``."""
        with self._lock:
            self.schedule = list(schedule)
            self.latency_s = then

    def _next_delay(self, key: str | None) -> float:
        with self._lock:
            self.requests += 1
            self.keys.append(key)
            n = self.requests
            for count, seconds in self.schedule:
                if n <= count:
                    return seconds
                n -= count
            return self.latency_s

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":  # a server for a pipeline in another process: prints its URL
    import sys

    server = LatencyServer(float(sys.argv[1]) if len(sys.argv) > 1 else 0.0)
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.close()
