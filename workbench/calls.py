"""External steps, definition side: the specs of :meth:`Stream.map_async
<workbench.stream.Stream.map_async>`, ``flat_map_async`` and ``pipe``, and :func:`call_info`,
what a called function can learn about the call it serves (its idempotency key).

The engine side lives in :mod:`workbench.runtime.external`. External calls are
**at-least-once**: a call may be made again after a retry, a crash or a restart (the outputs
they lead to are still exactly-once on Kafka, PostgreSQL and git). A function that changes
something outside should pass :attr:`CallInfo.key` along (an HTTP ``Idempotency-Key`` header,
a unique column), so a repeated call does no harm.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ._time import duration_ms
from .errors import DefinitionError

__all__ = ["AsyncSpec", "CallInfo", "PipeSpec", "Retry", "call_info", "check_on_error"]

#: what a step does with a record whose call failed after its retries
ON_ERROR = ("raise", "skip", "route")


@dataclass(frozen=True)
class Retry:
    """How a call is retried: each attempt may take ``timeout_ms`` (``None``: what the
    transaction limit leaves, half of ``max_transaction``); a failed attempt is retried up to
    ``retries`` times, after ``backoff_ms``, doubling each time up to ``max_backoff_ms``."""

    timeout_ms: int | None = None
    retries: int = 2
    backoff_ms: int = 100
    max_backoff_ms: int = 5_000

    def delay_ms(self, attempt: int) -> int:
        """The pause before attempt ``attempt + 1`` (``attempt`` >= 1 attempts were made)."""
        return int(min(self.max_backoff_ms, self.backoff_ms * 2 ** max(0, attempt - 1)))

    def worst_case_ms(self, timeout_ms: int) -> int:
        """The longest one record can take when every attempt times out after
        ``timeout_ms``."""
        pauses = sum(self.delay_ms(a) for a in range(1, self.retries + 1))
        return timeout_ms * (self.retries + 1) + pauses

    @staticmethod
    def parse(step: str, timeout: Any, retries: Any, backoff: Any) -> Retry:
        """Check and convert the ``timeout=``, ``retries=``, ``backoff=`` arguments."""
        timeout_ms = None if timeout is None else duration_ms(timeout, f"{step}(timeout=)")
        if timeout_ms is not None and timeout_ms < 1:
            raise DefinitionError(f"{step}(timeout={timeout!r}): a timeout must be at least "
                                  "1 ms (None: half of the transaction limit).")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise DefinitionError(f"{step}(retries={retries!r}): the number of retries is an "
                                  "integer >= 0.")
        backoff_ms = duration_ms(backoff, f"{step}(backoff=)")
        if backoff_ms < 0:
            raise DefinitionError(f"{step}(backoff={backoff!r}) must not be negative.")
        return Retry(timeout_ms, retries, backoff_ms)


def check_on_error(step: str, on_error: Any, dead_letter: Any) -> str:
    """The ``on_error=`` mode of a step (``dead_letter=`` implies ``"route"``)."""
    if on_error not in ON_ERROR:
        raise DefinitionError(f"{step}(on_error={on_error!r}): use 'raise' (stop the run, "
                              "the default), 'skip' (drop the record, counted) or 'route' "
                              "(send it to the step's .errors output).")
    if dead_letter is not None:
        if on_error == "skip":
            raise DefinitionError(f"{step}(on_error='skip', dead_letter=...): a skipped record "
                                  "goes nowhere; drop one of them.")
        return "route"
    return str(on_error)


def _positive_int(step: str, what: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DefinitionError(f"{step}({what}={value!r}) must be an integer >= 1.")
    return value


@dataclass(frozen=True)
class AsyncSpec:
    """``map_async`` / ``flat_map_async``: ``fn`` (an ``async def`` or a plain callable, run
    in a thread pool), at most ``concurrency`` calls at a time, at most ``queue`` records in
    flight (read but not finished)."""

    fn: Callable[..., Any]
    concurrency: int
    queue: int
    retry: Retry
    on_error: str
    with_record: bool = False
    flat: bool = False

    @staticmethod
    def build(step: str, fn: Any, *, concurrency: Any, queue: Any, timeout: Any,
              retries: Any, backoff: Any, on_error: Any, dead_letter: Any,
              with_record: bool, flat: bool) -> AsyncSpec:
        """Check the arguments of ``step`` (``map_async`` or ``flat_map_async``)."""
        if not callable(fn):
            raise DefinitionError(f"{step}() needs a function (an async def or a callable), "
                                  f"got {fn!r} of type {type(fn).__name__}.")
        concurrency = _positive_int(step, "concurrency", concurrency)
        queue = concurrency if queue is None else _positive_int(step, "queue", queue)
        if queue < concurrency:
            raise DefinitionError(f"{step}(queue={queue}, concurrency={concurrency}): the "
                                  "queue holds the calls in flight, so it needs at least "
                                  "`concurrency` places.")
        return AsyncSpec(fn, concurrency, queue, Retry.parse(step, timeout, retries, backoff),
                         check_on_error(step, on_error, dead_letter), with_record, flat)


FORMATS = ("jsonl", "bytes")
OUTPUTS = ("one", "many")


@dataclass(frozen=True)
class PipeSpec:
    """``pipe``: long-lived child processes (``workers`` of them) fed records on stdin.

    ``format="jsonl"``: one JSON value per line; ``"bytes"``: frames of a 4-byte big-endian
    length and the bytes. ``outputs="one"``: exactly one output per input, in order;
    ``"many"``: zero or more outputs per input followed by an end marker (see
    ``docs/external.md``)."""

    argv: tuple[str, ...] | str
    format: str
    outputs: str
    workers: int
    queue: int
    retry: Retry
    on_error: str
    shell: bool = False
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    #: extra environment for the children, on top of the process's (``env=`` replaces it)
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def program(self) -> str:
        """The program, as shown in messages."""
        return self.argv if isinstance(self.argv, str) else " ".join(self.argv)

    @staticmethod
    def build(argv: Any, *, format: str, outputs: str, workers: Any, queue: Any,
              timeout: Any, retries: Any, backoff: Any, on_error: Any, dead_letter: Any,
              shell: bool, env: Any, cwd: Any) -> PipeSpec:
        """Check the arguments of ``pipe``."""
        if shell:
            if not isinstance(argv, str) or not argv.strip():
                raise DefinitionError(f"pipe({argv!r}, shell=True) needs the command line as "
                                      "one string.")
            program: tuple[str, ...] | str = argv
        else:
            if isinstance(argv, str):
                raise DefinitionError(
                    f"pipe({argv!r}): pass the program and its arguments as a list, e.g. "
                    f"pipe({argv.split()!r}); a command line for a shell needs shell=True.")
            if not isinstance(argv, Sequence) or not argv or not all(
                    isinstance(a, str) for a in argv):
                raise DefinitionError(f"pipe({argv!r}): the program and its arguments are a "
                                      "non-empty list of strings, e.g. ['python', 'score.py'].")
            program = tuple(argv)
        if format not in FORMATS:
            raise DefinitionError(f"pipe(format={format!r}): use 'jsonl' (one JSON value per "
                                  "line) or 'bytes' (length-prefixed frames).")
        if outputs not in OUTPUTS:
            raise DefinitionError(f"pipe(outputs={outputs!r}): use 'one' (one output per "
                                  "input) or 'many' (zero or more, then an end marker).")
        workers = _positive_int("pipe", "workers", workers)
        queue = 16 * workers if queue is None else _positive_int("pipe", "queue", queue)
        if env is not None and not (isinstance(env, Mapping) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
            raise DefinitionError(f"pipe(env={env!r}): the environment is a dict of strings.")
        if cwd is not None and not isinstance(cwd, str):
            cwd = str(cwd)
        return PipeSpec(program, format, outputs, workers, queue,
                        Retry.parse("pipe", timeout, retries, backoff),
                        check_on_error("pipe", on_error, dead_letter), shell,
                        None if env is None else dict(env), cwd,
                        {"PYTHONUNBUFFERED": "1"})

    def found(self) -> bool:
        """Whether the program can be found (``PATH`` or a path); shells are not checked."""
        if self.shell:
            return True
        assert isinstance(self.argv, tuple)
        return shutil.which(self.argv[0], path=(self.env or {}).get("PATH")) is not None


@dataclass(frozen=True)
class CallInfo:
    """What a function called by ``map_async``/``flat_map_async`` can learn about its call
    (:func:`call_info`).

    Attributes:
        key: the **idempotency key**: ``<app>/<step>/<topic>/<partition>/<offset>`` of the
            input record (plus ``/<n>`` when one input record led to several calls of the
            step). The same record gets the same key after a retry, a crash or a restart.
        attempt: 1 for the first attempt, 2 for the first retry...
        step: the step's name.
        topic, partition, offset: where the input record came from (``None`` for records
            made inside the pipeline without a position).
    """

    key: str
    attempt: int
    step: str
    topic: str | None
    partition: int | None
    offset: int | None


_CURRENT: ContextVar[CallInfo | None] = ContextVar("workbench_call", default=None)


def call_info() -> CallInfo:
    """The :class:`CallInfo` of the call being served, inside a function run by
    ``map_async`` / ``flat_map_async``.

    >>> # async def fetch(v):
    >>> #     headers = {"Idempotency-Key": wb.call_info().key}
    """
    info = _CURRENT.get()
    if info is None:
        raise LookupError("call_info() is only available inside a function that "
                          "map_async()/flat_map_async() calls.")
    return info


def _set_call(info: CallInfo | None) -> Any:
    """Make ``info`` the current call (engine side); returns the token to reset it."""
    return _CURRENT.set(info)
