"""Short tracebacks: a failing user function's error ends in the user's frame.

When a step's function raises, the engine raises :class:`~workbench.errors.ProcessingError`
(naming the step, the record and where the step was defined) from the user's exception, deep
inside the engine. The public entry points (``Pipeline.run``, ``to_pandas``, the test driver,
the debugger, ``LiveRun.wait``) re-raise it through :func:`public` with a traceback that goes
from the caller's line straight to the user's own frames, so the last lines a reader sees are
their code and the workbench message. The entry point's own frame is marked
``__tracebackhide__`` (IPython and pytest hide it). ``WORKBENCH_FULL_TRACEBACKS=1`` keeps every
frame (for debugging workbench itself).
"""

from __future__ import annotations

import functools
import linecache
import os
import types
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["describe", "public", "user_traceback"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

F = TypeVar("F", bound=Callable[..., Any])


def _internal(filename: str) -> bool:
    if filename.startswith("<workbench"):
        return True
    if filename.startswith("<"):
        return False
    return os.path.abspath(filename).startswith(_PACKAGE_DIR)


def user_traceback(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The part of ``tb`` from the first frame outside workbench on (``None`` when every frame
    is workbench's)."""
    while tb is not None and _internal(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


def _full() -> bool:
    return os.environ.get("WORKBENCH_FULL_TRACEBACKS", "") not in ("", "0", "false", "no")


def shorten(exc: BaseException) -> types.TracebackType | None:
    """The traceback to re-raise ``exc`` with: the user's frames of the exception that caused a
    :class:`~workbench.errors.ProcessingError` (its cause then keeps only its message)."""
    cause = exc.__cause__
    if cause is None:
        return None
    tb = user_traceback(cause.__traceback__)
    cause.__traceback__ = None
    return tb


def public(fn: F) -> F:
    """Decorate a public entry point: a :class:`~workbench.errors.ProcessingError` leaving it
    gets the short traceback described in the module docstring."""
    from .errors import ProcessingError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        try:
            return fn(*args, **kwargs)
        except ProcessingError as exc:
            if _full() or getattr(exc, "_wb_short", False):
                raise
            exc._wb_short = True  # type: ignore[attr-defined]
            raise exc.with_traceback(shorten(exc)) from exc.__cause__

    return wrapper  # type: ignore[return-value]


def _site(tb: types.TracebackType) -> str:
    from ._nodes import describe_site

    last = tb
    while last.tb_next is not None:
        last = last.tb_next
    code = last.tb_frame.f_code
    where = describe_site(code.co_filename, last.tb_lineno)
    line = linecache.getline(code.co_filename, last.tb_lineno).strip()
    return f"  in {code.co_name} at {where}" + (f":\n    {line}" if line else "")


def describe(exc: BaseException) -> str:
    """``exc``'s message, and the user's line where the error happened when there is one (for
    previews that show an error instead of a traceback)."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if cause is not None:
        tb = user_traceback(cause.__traceback__)
        if tb is None and getattr(exc, "_wb_short", False):
            tb = user_traceback(exc.__traceback__)
        if tb is not None:
            text += "\n" + _site(tb)
    return text
