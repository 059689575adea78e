"""A child process of a ``pipe`` step: started without a shell (unless asked), fed frames on
stdin by a writer thread, its stdout read by a reader thread that splits it into frames, its
stderr logged line by line with the step's name.

Framing (see ``docs/external.md``):

* ``jsonl``: one JSON text per line (UTF-8, ``\\n``-terminated);
* ``bytes``: a 4-byte big-endian length, then that many bytes; the length ``0xFFFFFFFF``
  with no bytes is the **end marker** (``outputs="many"``: the outputs of one input are done).

Events go to the operator's queue as ``(worker, generation, kind, payload)``: ``"line"`` (a
line of jsonl output), ``"frame"`` (bytes output), ``"end"`` (a bytes end marker) and
``"eof"`` (stdout closed: the child exited or closed it).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import struct
import subprocess
import threading
import weakref
from collections import deque
from typing import Any

from ...calls import PipeSpec

__all__ = ["END_MARKER", "Child", "frame_bytes"]

log = logging.getLogger("workbench.pipe")

#: the bytes framing's end marker (a length no frame has)
END_MARKER = b"\xff\xff\xff\xff"
_LENGTH = struct.Struct(">I")
#: seconds a child gets to exit after its stdin closes, and again after SIGTERM
GRACE_S = 1.0

_LIVE: weakref.WeakSet[Child] = weakref.WeakSet()


def frame_bytes(data: bytes) -> bytes:
    """``data`` as one frame of the bytes framing."""
    return _LENGTH.pack(len(data)) + data


def _kill_all() -> None:  # at interpreter exit: no child outlives the engine's process
    for child in list(_LIVE):
        with contextlib.suppress(Exception):
            child.kill()


atexit.register(_kill_all)


class Child:
    """One running child process.

    Args:
        spec: the step's spec (program, framing, environment).
        step: the step's name (log lines, thread names).
        worker: the worker slot it fills.
        generation: counts the starts of this slot; events of an older generation are stale.
        events: where the reader threads put what they read.
    """

    def __init__(self, spec: PipeSpec, step: str, worker: int, generation: int,
                 events: queue.SimpleQueue[tuple[int, int, str, Any]]) -> None:
        self.spec = spec
        self.step = step
        self.worker = worker
        self.generation = generation
        self.events = events
        #: the last lines the child wrote on stderr (for error messages)
        self.stderr_tail: deque[str] = deque(maxlen=10)
        env = dict(os.environ) if spec.env is None else dict(spec.env)
        for k, v in spec.extra_env.items():
            env.setdefault(k, v)
        argv: Any = spec.argv if spec.shell else list(spec.argv)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, shell=spec.shell, env=env,
                                     cwd=spec.cwd)
        self.pid = self.proc.pid
        _LIVE.add(self)
        self._out: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        name = f"workbench-{step}-{worker}"
        reader = self._read_lines if spec.format == "jsonl" else self._read_frames
        for target, suffix in ((self._write, "in"), (reader, "out"), (self._log_err, "err")):
            threading.Thread(target=target, name=f"{name}-{suffix}", daemon=True).start()

    # -- threads ------------------------------------------------------------------------------
    def _write(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while True:
                data = self._out.get()
                if data is None:
                    break
                stdin.write(data)
                stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the child is gone: its reader reports the end of its output
        finally:
            with contextlib.suppress(OSError, ValueError):
                stdin.close()

    def _put(self, kind: str, payload: Any) -> None:
        self.events.put((self.worker, self.generation, kind, payload))

    def _read_lines(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for line in stdout:
                self._put("line", line)
        except (OSError, ValueError):
            pass
        self._put("eof", None)

    def _read_frames(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                head = stdout.read(4)
                if len(head) < 4:
                    break
                if head == END_MARKER:
                    self._put("end", None)
                    continue
                (size,) = _LENGTH.unpack(head)
                data = stdout.read(size)
                if len(data) < size:
                    break
                self._put("frame", data)
        except (OSError, ValueError):
            pass
        self._put("eof", None)

    def _log_err(self) -> None:
        stderr = self.proc.stderr
        assert stderr is not None
        try:
            for raw in stderr:
                text = raw.decode(errors="replace").rstrip("\r\n")
                self.stderr_tail.append(text)
                log.warning("step %r (pid %d): %s", self.step, self.pid, text)
        except (OSError, ValueError):
            pass

    # -- control ------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Write ``data`` to the child's stdin (in order; by the writer thread)."""
        self._out.put(data)

    def exit_status(self, wait_s: float = 0.5) -> int | None:
        """The child's exit status (``None``: still running after ``wait_s``)."""
        try:
            return self.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL (a hung child)."""
        self._out.put(None)
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        _LIVE.discard(self)

    def stop(self) -> None:
        """Close stdin and let the child exit; SIGTERM after :data:`GRACE_S`, SIGKILL after
        another."""
        self._out.put(None)
        try:
            self.proc.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                self.proc.terminate()
            try:
                self.proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                self.kill()
        _LIVE.discard(self)
