"""The ``workbench`` command.

    workbench run TARGET [--driver URL] [--until end|forever] [--commit-interval 100ms]
    workbench graph TARGET [--format text|dot|mermaid|svg|plan]
    workbench dev up|down|status     (local Kafka and PostgreSQL for exploration and tests)
    workbench version

TARGET is ``module:attribute`` or ``path/to/file.py:attribute`` (attribute defaults to
``pipeline``); the attribute is a :class:`~workbench.Pipeline` or a function returning one.
Logging: ``--log-level`` or ``WORKBENCH_LOG_LEVEL`` (default WARNING).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from .errors import DefinitionError, WorkbenchError
from .pipeline import Pipeline

__all__ = ["load_pipeline", "main"]

log = logging.getLogger("workbench.cli")


def load_pipeline(target: str) -> Pipeline:
    """Load a pipeline from ``module:attr`` or ``file.py:attr``."""
    spec, _, attr = target.partition(":")
    attr = attr or "pipeline"
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        if not os.path.exists(path):
            raise DefinitionError(f"no such file: {spec!r}.")
        sys.path.insert(0, os.path.dirname(path))
        mod_spec = importlib.util.spec_from_file_location(
            os.path.splitext(os.path.basename(path))[0], path)
        if mod_spec is None or mod_spec.loader is None:
            raise DefinitionError(f"cannot import {spec!r}.")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_spec.name] = module
        mod_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(spec)
    obj: Any = getattr(module, attr, None)
    if obj is None:
        names = [n for n in dir(module) if isinstance(getattr(module, n), Pipeline)]
        hint = f" Pipelines in it: {names}." if names else ""
        raise DefinitionError(f"{spec!r} has no attribute {attr!r}.{hint}")
    if not isinstance(obj, Pipeline) and callable(obj):
        obj = obj()
    if not isinstance(obj, Pipeline):
        raise DefinitionError(f"{target!r} is {type(obj).__name__}, not a workbench.Pipeline.")
    return obj


def _cmd_run(args: argparse.Namespace) -> int:
    from .run import prepare

    pipeline = load_pipeline(args.target)
    engine = prepare(pipeline, args.driver, commit_interval=args.commit_interval,
                     batch_size=args.batch_size)

    received: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        if received:  # a second signal: leave at once, without committing
            log.warning("received %s again: exiting without committing",
                        signal.Signals(signum).name)
            os._exit(128 + signum)
        received.append(signum)
        log.warning("received %s: finishing the batch, committing, exiting (send it again to "
                    "exit at once)", signal.Signals(signum).name)
        engine.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if args.until == "end":
            engine.run_until_end()
        else:
            engine.run_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        engine.close()
        engine.driver.end_run()  # flush, leave the consumer group
    stats = engine.stats
    outs = ", ".join(f"{t}={n}" for t, n in sorted(stats.records_out.items())
                     if pipeline.plan().topics[t].kind == "sink")
    print(f"{pipeline.name}: {stats.records_in} records in, {stats.commits} commits"
          + (f"; out: {outs}" if outs else ""))
    return 0


def _cmd_graph(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.target)
    if args.format == "dot":
        print(pipeline.to_dot())
    elif args.format == "mermaid":
        print(pipeline.to_mermaid())
    elif args.format == "svg":
        print(pipeline.to_svg())
    elif args.format == "plan":
        print(pipeline.plan().describe())
    else:
        print(repr(pipeline))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__.split("\n")[0])
    parser.add_argument("--log-level", default=os.environ.get("WORKBENCH_LOG_LEVEL", "WARNING"),
                        help="DEBUG, INFO, WARNING (default; or WORKBENCH_LOG_LEVEL), ERROR")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a pipeline as a batch job or a long-running job")
    run.add_argument("target", help="module:attr or file.py:attr (a Pipeline)")
    run.add_argument("--driver", default="memory://", help="driver URL (default memory://)")
    run.add_argument("--until", choices=["end", "forever"], default="end",
                     help="end: process what is there, flush, commit, exit (default); "
                          "forever: run until SIGTERM/SIGINT")
    run.add_argument("--commit-interval", default="100ms")
    run.add_argument("--batch-size", type=int, default=10_000,
                     help="most records read per input partition and poll (default 10000)")
    run.set_defaults(func=_cmd_run)
    graph = sub.add_parser("graph", help="print the pipeline graph")
    graph.add_argument("target")
    graph.add_argument("--format", choices=["text", "dot", "mermaid", "svg", "plan"],
                       default="text")
    graph.set_defaults(func=_cmd_graph)
    from .devservices import add_cli

    add_cli(sub)
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=lambda _a: print(__import__("workbench").__version__) or 0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workbench`` command."""
    args = _parser().parse_args(argv)
    level = getattr(logging, str(args.log_level).upper(), None)
    if not isinstance(level, int):
        print(f"workbench: unknown log level {args.log_level!r}", file=sys.stderr)
        return 2
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result: int = args.func(args)
        return result
    except WorkbenchError as exc:
        print(f"workbench: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
