"""Progress bars (``tqdm.auto``) for runs: a widget in a notebook, text in a terminal.

A bounded run shows a bar over the source records it will process when there are at least
``workbench.options.progress_min_records`` of them (default 50,000); an unbounded run
(``until=None``) shows a counter. ``workbench.options.progress = False`` switches every bar off,
``True`` (the default) lets the threshold decide (unbounded runs show their counter only in a
notebook or a terminal), and ``"always"`` shows a bar for every run.
Without ``tqdm`` installed nothing is shown.

The lead's ``workbench.run.execute`` calls :func:`run_engine` instead of calling
``engine.run_until_end()`` / ``engine.run_forever()`` directly:

>>> import workbench as wb
>>> from workbench.progress import run_engine
>>> from workbench.run import prepare
>>> p = wb.Pipeline("prog")
>>> _ = p.source("in", sample=[{"n": i} for i in range(5)]).to("out")
>>> engine = prepare(p, "memory://")
>>> run_engine(engine, "end")   # 5 records: below the threshold, no bar
5
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime.engine import Engine

__all__ = ["enabled", "progress_bar", "run_engine", "source_backlog", "source_position"]

log = logging.getLogger(__name__)

#: defaults used when ``workbench.options`` has no such field
DEFAULT_MIN_RECORDS = 50_000


def _option(name: str, default: Any) -> Any:
    from .preview import options

    return getattr(options, name, default)


def _interactive() -> bool:
    """In a notebook kernel, or writing to a terminal (not a log file of a service)."""
    import sys

    ip = sys.modules.get("IPython")
    if ip is not None:
        shell = ip.get_ipython()
        if shell is not None and getattr(shell, "kernel", None) is not None:
            return True
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


def enabled(total: int | None) -> bool:
    """Whether a run over ``total`` source records (``None``: unbounded) shows a bar."""
    setting = _option("progress", True)
    if setting is False or setting is None:
        return False
    if setting == "always":
        return True
    if total is None:  # a counter for runs until stopped, where someone can see it
        return _interactive()
    return total >= int(_option("progress_min_records", DEFAULT_MIN_RECORDS))


def _tqdm() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the notebook extra
        return None
    return tqdm


class _NullBar:
    """Stands in for a bar when progress is off."""

    n = 0
    total = None

    def update(self, n: int = 1) -> None:
        self.n += n

    def refresh(self) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


@contextlib.contextmanager
def progress_bar(total: int | None, *, desc: str = "", unit: str = "rec",
                 force: bool | None = None) -> Iterator[Any]:
    """A ``tqdm.auto`` bar over ``total`` items (``None``: a counter), or a do-nothing bar when
    progress is off (``force`` overrides the options: True shows, False hides)."""
    show = enabled(total) if force is None else force
    tqdm = _tqdm() if show else None
    if tqdm is None:
        yield _NullBar()
        return
    bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=True,
               dynamic_ncols=True, mininterval=0.5)
    try:
        yield bar
    finally:
        bar.close()


def _positions(engine: Engine) -> dict[tuple[str, int], int]:
    positions: dict[tuple[str, int], int] = getattr(engine, "positions", None) or getattr(
        engine, "_positions", {})
    return positions


def source_position(engine: Engine) -> int:
    """Records of the source topics the engine has processed (summed over partitions)."""
    topics = engine.plan.topics
    return sum(pos for (t, _p), pos in _positions(engine).items()
               if topics.get(t) is not None and topics[t].kind == "source")


def source_backlog(engine: Engine) -> int:
    """Records the source topics hold that the engine has not processed yet (the lag)."""
    topics = engine.plan.topics
    positions = _positions(engine)
    lag = 0
    for (t, p), end in engine.end_offsets().items():
        spec = topics.get(t)
        if spec is not None and spec.kind == "source":
            lag += max(0, end - positions.get((t, p), 0))
    return lag


def run_engine(engine: Engine, until: str | None = "end", *, desc: str | None = None,
               force: bool | None = None,
               progress: Callable[[int], None] | None = None) -> int:
    """Run ``engine`` bounded (``until="end"``) or until stopped (``None``) with a progress
    bar when :func:`enabled`; return the source records processed by this call.

    Args:
        engine: a prepared engine (``workbench.run.prepare``).
        until: ``"end"`` or ``None``.
        desc: the bar's label (default: the application id).
        force: True/False to show/hide the bar whatever the options say.
        progress: also called with each batch's record count.
    """
    engine.start()
    start = source_position(engine)
    total = source_backlog(engine) if until == "end" else None
    label = desc or engine.plan.app_id
    with progress_bar(total, desc=label, force=force) as bar:
        def tick(n: int) -> None:
            done = source_position(engine) - start
            if done != bar.n:
                bar.update(done - bar.n)
            if progress is not None:
                progress(n)

        if until == "end":
            engine.run_until_end(progress=tick)
        else:
            engine.run_forever(progress=tick)
        tick(0)
    return source_position(engine) - start
