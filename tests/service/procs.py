"""Helpers: real ``workbench run`` processes with ``--http``, and HTTP reads of them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 10) -> tuple[int, Any, dict[str, str]]:
    """``(status, body, headers)``; the body is parsed when it is JSON."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status, raw, headers = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        status, raw, headers = err.code, err.read(), dict(err.headers)
    text = raw.decode()
    try:
        return status, json.loads(text), headers
    except ValueError:
        return status, text, headers


class Job:
    """A ``workbench run ... --http`` subprocess."""

    def __init__(self, args: list[str], cwd: Path, *, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"job-{self.port}.log"
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", *args, "--http", f"127.0.0.1:{self.port}"],
            cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log.read_text()

    def get(self, path: str) -> tuple[int, Any, dict[str, str]]:
        return http_get(self.base + path)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the job exited with {self.proc.returncode}:\n"
                                     + self.output())
            try:
                if self.get("/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("the job did not become ready:\n" + self.output())

    def wait_for(self, check: Any, timeout: float = 120, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
                if last:
                    return last
            except (OSError, KeyError, AssertionError) as exc:
                last = exc
            if self.proc.poll() is not None:
                raise AssertionError(f"the job exited with {self.proc.returncode} while "
                                     f"waiting for {what}:\n" + self.output())
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r}):\n"
                             + self.output())

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._log.close()


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples of a Prometheus text, parsed with prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(values: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    found = False
    for (n, lab), v in values.items():
        d = dict(lab)
        if n == name and all(d.get(k) == val for k, val in labels.items()):
            total += v
            found = True
    assert found, f"no sample {name}{labels}"
    return total
