"""Helpers shared by the Kafka and PostgreSQL dev services: state files, ports, daemons, locks.

Stdlib only. Nothing here knows about a particular service.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DriverUnavailableError

__all__ = [
    "Progress",
    "ServiceInfo",
    "cache_root",
    "default_state_dir",
    "file_lock",
    "free_port",
    "log_tail",
    "pid_alive",
    "port_open",
    "read_state",
    "remove_tree",
    "remove_state",
    "spawn_daemon",
    "stop_pid",
    "wait_until",
    "write_state",
]

Progress = Callable[[str], None]

#: lines of a service's log quoted in errors
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class ServiceInfo:
    """A running dev service.

    Attributes:
        name: ``"kafka"`` or ``"postgres"``.
        url: ``kafka://127.0.0.1:PORT`` or ``postgresql://postgres@127.0.0.1:PORT/postgres``.
        pid: process id of the broker JVM / the postmaster.
        port: the client port on 127.0.0.1.
        data_dir: where the service keeps its data (removed by ``down()``).
        log_file: the service's stdout/stderr.
        started_s: seconds the start took (download and install included, when they happened).
        already_running: ``True`` when ``up()`` found the service running and started nothing.
    """

    name: str
    url: str
    pid: int
    port: int
    data_dir: str
    log_file: str
    started_s: float
    already_running: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, e.g. for Kafka's ``bootstrap.servers``."""
        return f"127.0.0.1:{self.port}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("already_running")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceInfo:
        return cls(
            name=str(data["name"]), url=str(data["url"]), pid=int(data["pid"]),
            port=int(data["port"]), data_dir=str(data["data_dir"]),
            log_file=str(data["log_file"]), started_s=float(data["started_s"]),
            extra=dict(data.get("extra") or {}),
        )


# --------------------------------------------------------------------------- locations


def default_state_dir() -> Path:
    """``$WORKBENCH_DEV_DIR``, else ``<repository root>/.workbench/dev`` (the nearest parent of
    the working directory holding ``.git``), else ``<cwd>/.workbench/dev``."""
    env = os.environ.get("WORKBENCH_DEV_DIR")
    if env:
        return Path(env).expanduser().resolve()
    cwd = Path.cwd().resolve()
    for parent in (cwd, *cwd.parents):
        if (parent / ".git").exists():
            return parent / ".workbench" / "dev"
    return cwd / ".workbench" / "dev"


def cache_root() -> Path:
    """``$WORKBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/workbench``, else ``~/.cache/workbench``:
    downloads and templates reused across runs (never removed by ``down()``)."""
    env = os.environ.get("WORKBENCH_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "workbench").resolve()


# --------------------------------------------------------------------------- state files


def _state_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.json"


def read_state(state_dir: Path, name: str) -> ServiceInfo | None:
    path = _state_file(state_dir, name)
    try:
        return ServiceInfo.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(state_dir: Path, info: ServiceInfo) -> None:
    path = _state_file(state_dir, info.name)
    tmp = path.with_suffix(f".json.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(info.to_json(), indent=2) + "\n")
    os.replace(tmp, path)


def remove_state(state_dir: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        _state_file(state_dir, name).unlink()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing), held for the ``with`` block: two
    processes running ``up()`` at once start one service, not two."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (never 9092/9093/5432)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in (5432, 9092, 9093):
            return port
    raise OSError("no free TCP port on 127.0.0.1")  # pragma: no cover


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int, marker: str | None = None) -> bool:
    """True if process ``pid`` exists, is not a zombie and (when ``marker`` is given) has
    ``marker`` in its command line, which guards against a recycled pid."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user (the postgres user, when we are not root)
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                return False
            if marker is not None:
                return marker in _cmdline(proc)
        except (OSError, IndexError):
            return False
    return True


def _cmdline(proc: Path) -> str:
    """The command line of ``/proc/PID``. It reads empty for a moment while the process
    execs (``sh -c '...; exec server'``: the new image has no arguments mapped yet), so an
    empty read is retried for up to half a second before it counts."""
    for _ in range(50):
        raw = (proc / "cmdline").read_bytes()
        if raw:
            return raw.replace(b"\0", b" ").decode(errors="replace")
        time.sleep(0.01)
    return ""


def spawn_daemon(argv: Sequence[str], *, log_file: Path, cwd: Path,
                 env: dict[str, str] | None = None, user: int | None = None,
                 group: int | None = None) -> int:
    """Start ``argv`` as a daemon that outlives this process and return its pid.

    The command runs in a new session (its own process group, no controlling terminal) with
    stdin from /dev/null and stdout+stderr appended to ``log_file`` (``>&2``: the launcher's
    stdout is the pipe that returns the pid). A throw-away ``/bin/sh`` forks it and exits at
    once, so the daemon is not this process's child: nothing to reap, no zombie, no
    ``ResourceWarning``. ``user``/``group`` (uid/gid, root only) run it as that OS user, with
    no supplementary groups.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        launcher = subprocess.Popen(
            ["/bin/sh", "-c", 'exec 0</dev/null; "$@" >&2 & echo $!', "workbench-dev", *argv],
            stdout=subprocess.PIPE, stderr=log, cwd=cwd, env=env, start_new_session=True,
            user=user, group=group, extra_groups=[] if user is not None else None,
            close_fds=True,
        )
    try:
        out, _ = launcher.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - /bin/sh does not hang
        launcher.kill()
        launcher.communicate()
        raise
    try:
        return int(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:  # pragma: no cover
        raise DriverUnavailableError(
            f"could not start {argv[0]!r}: the launcher printed {out!r}; "
            f"see {log_file}.") from exc


def stop_pid(pid: int, *, marker: str | None, sig: int = signal.SIGTERM,
             timeout: float = 30.0, group: int | None = None) -> bool:
    """Send ``sig`` to ``pid``, wait up to ``timeout`` seconds, then SIGKILL it (and, when
    ``group`` is given, the rest of its process group). Returns True if it had been running."""
    if not pid_alive(pid, marker):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if group is not None and group > 1 and group != os.getpgrp():
        # leftovers of the daemon's own session (postgres backends after a SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    for _ in range(100):
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    return True


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"({path} is empty)"


def wait_until(check: Callable[[], bool], *, timeout: float, alive: Callable[[], bool],
               what: str, log_file: Path, hint: str = "") -> None:
    """Poll ``check`` until it is true; raise DriverUnavailableError with the log's last lines
    when ``alive`` turns false (the process died) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if check():
            return
        if not alive():
            raise DriverUnavailableError(
                f"{what} exited during start-up. Last {LOG_TAIL_LINES} lines of {log_file}:\n"
                f"{log_tail(log_file)}" + (f"\n{hint}" if hint else ""))
        if time.monotonic() > deadline:
            raise DriverUnavailableError(
                f"{what} did not become ready within {timeout:.0f} s. Last {LOG_TAIL_LINES} "
                f"lines of {log_file}:\n{log_tail(log_file)}" + (f"\n{hint}" if hint else ""))
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
