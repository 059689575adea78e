"""The single-writer lock: ``<git dir>/workbench.lock``.

A writer holds the lock file (JSON with pid, host, start time, process start time, branch and
a token) from its first write until it closes. A second writer gets a :class:`DriverError`
naming the holder. A lock whose process is gone (same host, pid dead or reused) is taken over
with a ``RuntimeWarning``. Another driver of the same
process takes the lock over silently and the older one is fenced (:meth:`WriterLock.check`).
A lock from another host is a lease: its holder renews it (the file's mtime) while it runs, and
one not renewed for ``lock_lease`` seconds is taken over with a warning (the old holder, if it
was alive after all, is fenced at its next commit). Readers and appenders never lock.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
import time
import uuid
import warnings
import weakref
from typing import Any

from ...errors import DriverError, FencedError
from .repo import write_failed

__all__ = ["DEFAULT_LEASE_S", "LOCK_NAME", "WriterLock"]

log = logging.getLogger(__name__)

LOCK_NAME = "workbench.lock"
#: a lock from another host not renewed for this long is taken over (``?lock_lease=``)
DEFAULT_LEASE_S = 60.0


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), where /proc tells."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if fields and fields[0] in ("Z", "X"):
        return "dead"
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    now = _proc_start(pid)
    if now == "dead":
        return False
    return not (start is not None and now is not None and now != start)


class WriterLock:
    """``<git dir>/workbench.lock``: pid, host and start time of the one writer."""

    def __init__(self, git_dir: str, url: str, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.path = os.path.join(git_dir, LOCK_NAME)
        self.url = url
        self.lease_s = lease_s
        self._renewed = 0.0
        self.token: str | None = None
        self._finalizer: Any = None

    def _read(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        try:
            info = json.loads(text)
            if not isinstance(info, dict):
                raise ValueError
            return info
        except ValueError:
            return {"corrupt": text[:200]}

    @property
    def held(self) -> bool:
        return self.token is not None

    def acquire(self, branch: str | None) -> None:
        if self.token is not None:
            return
        token = uuid.uuid4().hex
        me: dict[str, Any] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"),
            "proc_start": _proc_start(os.getpid()),
            "branch": branch,
            "token": token,
        }
        tmp = f"{self.path}.{token}.tmp"
        try:
            try:
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(me, f)
            except OSError as exc:
                raise write_failed(self.url, "write the writer lock", tmp, exc) from exc
            for _attempt in range(5):
                try:
                    os.link(tmp, self.path)  # atomic: creates the lock with its content or fails
                except FileExistsError:
                    other = self._read()
                    if other is None:
                        continue  # released meanwhile
                    self._take_over_or_raise(other, me)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
                    continue
                self.token = token
                self._renewed = time.monotonic()
                self._finalizer = weakref.finalize(self, _release_lock, self.path, token)
                return
            raise DriverError(f"{self.url}: could not take the writer lock {self.path} "
                              "(other processes keep taking it).")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _take_over_or_raise(self, other: dict[str, Any], me: dict[str, Any]) -> None:
        if "corrupt" in other:
            try:
                age = time.time() - os.stat(self.path).st_mtime
            except FileNotFoundError:
                return
            if age < 10:
                raise DriverError(f"{self.url}: the writer lock {self.path} is being written "
                                  "by another process; try again.")
            warnings.warn(f"{self.url}: taking over the unreadable writer lock {self.path}.",
                          RuntimeWarning, stacklevel=5)
            return
        pid, host = other.get("pid"), other.get("host")
        if host == me["host"] and pid == me["pid"]:
            log.info("%s: taking over the writer lock from another driver of this process",
                     self.url)
            return
        if host == me["host"] and isinstance(pid, int) and not _pid_alive(
                pid, other.get("proc_start")):
            msg = (f"{self.url}: taking over a stale writer lock: process {pid} on {host} "
                   f"(since {other.get('started')}) is gone; the branch resumes at its last "
                   "commit.")
            log.warning(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=5)
            return
        if host != me["host"]:
            # another host: its pid means nothing here; the lease (the lock file's mtime,
            # renewed by a live writer) tells
            try:
                age = time.time() - os.stat(self.path).st_mtime
            except FileNotFoundError:
                return
            if age > self.lease_s:
                msg = (f"{self.url}: taking over a stale writer lock: process {pid} on host "
                       f"{host!r} (since {other.get('started')}) has not renewed it for "
                       f"{age:.0f} s (lock_lease={self.lease_s:g} s); the branch resumes at its "
                       "last commit.")
                log.warning(msg)
                warnings.warn(msg, RuntimeWarning, stacklevel=5)
                return
            raise DriverError(
                f"{self.url} is locked by another writer: process {pid} on host {host!r}, "
                f"since {other.get('started')} (branch {other.get('branch')!r}), renewed "
                f"{max(age, 0):.0f} s ago. One process writes a repository at a time; a live "
                f"writer renews its lock, and one not renewed for lock_lease="
                f"{self.lease_s:g} s is taken over (the hosts' clocks must agree within that). "
                f"Stop that process, wait, or delete {self.path} if it is gone.")
        raise DriverError(
            f"{self.url} is locked by another writer: process {pid} on this host, since "
            f"{other.get('started')} (branch {other.get('branch')!r}). One process writes a "
            f"repository at a time; stop that process, or delete {self.path} if it is gone.")

    def renew(self) -> None:
        """Tell writers on other hosts that this one is alive (touch the lock file; at most
        every quarter of the lease)."""
        if self.token is None:
            return
        now = time.monotonic()
        if now - self._renewed < min(self.lease_s / 4, 10.0):
            return
        self._renewed = now
        with contextlib.suppress(OSError):
            os.utime(self.path)

    def check(self) -> None:
        """Raise :class:`FencedError` unless this driver still holds the lock."""
        if self.token is None:
            return
        info = self._read()
        if info is None or info.get("token") != self.token:
            self.token = None
            if self._finalizer is not None:
                self._finalizer.detach()
            holder = "nobody" if info is None else (
                f"process {info.get('pid')} on {info.get('host')}")
            raise FencedError(f"{self.url}: this driver lost the writer lock {self.path} "
                              f"(now held by {holder}); it stops writing.")

    def release(self) -> None:
        if self.token is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        _release_lock(self.path, self.token)
        self.token = None


def _release_lock(path: str, token: str) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            info = json.loads(f.read())
        if isinstance(info, dict) and info.get("token") == token:
            os.unlink(path)
    except (OSError, ValueError):
        pass
