"""Noticing that a branch moved, without busy polling where the system allows.

A branch moves when a writer renames ``<ref>.lock`` over the loose ref file (or rewrites
``packed-refs``). On Linux, :class:`BranchWatch` waits on inotify (through ``ctypes``, no extra
package) for files renamed into or written in the ref's folder and the common git dir, and
wakes within a millisecond or so of a commit by another process. Elsewhere (or when inotify is
unavailable) it checks the ref files' stat every ``POLL_S``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["POLL_S", "BranchWatch"]

log = logging.getLogger(__name__)

#: how often the fallback checks the ref files
POLL_S = 0.005
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_libc: Any = None


def _inotify() -> Any:
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
                libc.inotify_init1.argtypes = [ctypes.c_int]
                libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p,
                                                   ctypes.c_uint32]
                _libc = libc
    return _libc


class BranchWatch:
    """Waits until ``token()`` (a cheap fingerprint of the ref files) changes.

    Args:
        folders: the folders whose changes may move the branch (the ref's folder, the common
            git dir for ``packed-refs``).
        token: returns the current fingerprint.
    """

    def __init__(self, folders: list[str], token: Callable[[], Any]) -> None:
        self.token = token
        self.fd = -1
        libc = _inotify()
        if libc:
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if fd >= 0:
                mask = _IN_MOVED_TO | _IN_CLOSE_WRITE | _IN_CREATE
                ok = all(libc.inotify_add_watch(fd, os.fsencode(f), mask) >= 0 for f in folders)
                if ok:
                    self.fd = fd
                else:
                    os.close(fd)
        if self.fd < 0:
            log.debug("inotify unavailable: watching %s by polling every %.0f ms", folders,
                      POLL_S * 1000)

    @property
    def notifies(self) -> bool:
        """True when the system notifies (inotify), False when this polls."""
        return self.fd >= 0

    def wait(self, since: Any, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the fingerprint to differ from ``since``; True if it
        did."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            if self.token() != since:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self.fd >= 0:
                ready, _, _ = select.select([self.fd], [], [], remaining)
                if ready:
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        while os.read(self.fd, 65536):
                            pass
            else:
                time.sleep(min(POLL_S, remaining))

    def close(self) -> None:
        """Stop watching."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
