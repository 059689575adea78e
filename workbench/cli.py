"""The workbench command: run a pipeline as a batch job or a service, draw it, start local
Kafka and PostgreSQL.

TARGET names a pipeline: module:attr, path/to/file.py:attr or notebook.ipynb:attr (attr
defaults to "pipeline"). The attribute is a workbench.Pipeline or a function returning one;
-p NAME=VALUE passes parameters to that function, or to a notebook (injected after its cell
tagged "parameters", as papermill does; the cells after the one that defines attr do not run).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from .errors import WorkbenchError
from .pipeline import Pipeline

__all__ = ["load_pipeline", "main"]

log = logging.getLogger("workbench.cli")

EXAMPLES = """\
examples:
  workbench run jobs.py:clickstream --input clicks=data/clicks.csv --output out/
      a batch job: append the file to topic clicks, process everything, close the open
      windows, commit, write each output topic to out/<topic>.csv
  workbench run jobs.py:clickstream --driver kafka://127.0.0.1:9092 --until forever \\
          --workers auto --http 127.0.0.1:8080
      a service: one worker per CPU the container may use; GET /health, /ready, /metrics,
      /tables/NAME/KEY on port 8080; SIGTERM or Ctrl-C finishes the batch, commits, exits 0
  workbench run notebooks/03-promote.ipynb:build -p suffix=prod --driver postgresql://...
      promote the pipeline a notebook defines, without copying its code
  workbench graph jobs.py:clickstream --format mermaid
  workbench dev up          (a local Kafka broker and PostgreSQL server)

--log-level LEVEL and --log-format text|json may appear anywhere on the line (or set
WORKBENCH_LOG_LEVEL / WORKBENCH_LOG_FORMAT). Documentation: docs/operations.md.
"""

RUN_HELP = """\
Run a pipeline. --until end (default) is a batch job: process what the source topics hold,
close the open windows, commit and exit. --until forever is a service: poll for new records and
commit every --commit-interval until SIGTERM or SIGINT (which finish the batch in hand, commit
and exit 0; windows stay open for the next run). Because a batch job closes its windows at the
end of its input, input split over two batch runs gives other windows than one run over all of
it when a window spans the split: resume a job whose windows must carry over with --until
forever.
"""


def load_pipeline(target: str, params: dict[str, Any] | None = None) -> Pipeline:
    """Load a pipeline from ``module:attr``, ``file.py:attr`` or ``notebook.ipynb:attr`` (see
    :func:`workbench.service.targets.load_target`)."""
    from .service.targets import load_target

    return load_target(target, params)


def _cmd_run(args: argparse.Namespace) -> int:
    from .service.runner import run_command

    return run_command(args)


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
    parser = argparse.ArgumentParser(
        prog="workbench", description=__doc__, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (default), ERROR")
    parser.add_argument("--log-format", help="text (default) or json (one JSON object a line)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run a pipeline as a batch job or a service",
                         description=RUN_HELP, epilog=EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("target", metavar="TARGET",
                     help="module:attr, path/to/file.py:attr or notebook.ipynb:attr (attr "
                          "defaults to pipeline): a Pipeline or a function returning one")
    run.add_argument("--driver", default="memory://", metavar="URL",
                     help="memory:// (default), kafka://HOST:PORT, postgresql://..., "
                          "git:///PATH")
    run.add_argument("--until", choices=["end", "forever"], default="end",
                     help="end: batch job (default); forever: run until SIGTERM/SIGINT")
    run.add_argument("--commit-interval", default="100ms", metavar="DURATION",
                     help="time between commits, e.g. 100ms (default), 1s: outputs become "
                          "visible to readers and positions are saved at each commit; "
                          "longer means bigger transactions and fewer of them")
    run.add_argument("--batch-size", type=int, default=10_000, metavar="N",
                     help="most records read per input partition and poll (default 10000)")
    run.add_argument("--input", action="append", metavar="TOPIC=PATH",
                     help="append a CSV, JSON-lines or Parquet file to a source topic before "
                          "the run (repeatable)")
    run.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                     help="a parameter of the pipeline function or notebook (repeatable; "
                          "Python literals are parsed, anything else is a string)")
    run.add_argument("--output", metavar="DIR",
                     help="after the run, write each output topic to DIR/<topic>.<format>")
    run.add_argument("--output-format", choices=["csv", "jsonl", "parquet"], default="csv")
    run.add_argument("--http", metavar="HOST:PORT",
                     help="serve /health, /ready, /metrics, /tables and a status page "
                          "(needs the service extra)")
    run.add_argument("--workers", default="1", metavar="N|auto",
                     help="worker processes (kafka and postgresql); auto: the container's "
                          "CPU limit (cgroup quota, affinity mask, CPU count)")
    run.add_argument("--liveness-timeout", type=float, default=30.0, metavar="SECONDS",
                     help="/health fails when the processing loop has not turned for this "
                          "long (default 30)")
    run.set_defaults(func=_cmd_run)
    graph = sub.add_parser("graph", help="print the pipeline graph")
    graph.add_argument("target", metavar="TARGET")
    graph.add_argument("--format", choices=["text", "dot", "mermaid", "svg", "plan"],
                       default="text")
    graph.set_defaults(func=_cmd_graph)
    from .devservices import add_cli

    add_cli(sub)
    # -- workbench deploy (workbench/deploy/cli.py) --
    from .deploy.cli import add_cli as add_deploy_cli

    add_deploy_cli(sub)
    # -- workbench forget (workbench/privacy/cli.py) --
    from .privacy.cli import add_cli as add_forget_cli

    add_forget_cli(sub)
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=lambda _a: print(__import__("workbench").__version__) or 0)
    return parser


def _global_options(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Take ``--log-level``/``--log-format`` out of ``argv`` wherever they are."""
    rest: list[str] = []
    found: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in ("--log-level", "--log-format"):
            if not eq:
                if i + 1 >= len(argv):
                    rest.append(arg)  # argparse reports the missing value
                    break
                value = argv[i + 1]
                i += 1
            found[name[2:].replace("-", "_")] = value
        elif arg == "--":
            rest.extend(argv[i:])
            break
        else:
            rest.append(arg)
        i += 1
    return rest, found


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time (UTC, ISO-8601), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def _configure_logging(level_name: str, fmt: str) -> None:
    level = getattr(logging, level_name.upper(), None)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workbench`` command."""
    rest, found = _global_options(list(sys.argv[1:] if argv is None else argv))
    args = _parser().parse_args(rest)
    level_name = found.get("log_level") or os.environ.get("WORKBENCH_LOG_LEVEL") or "WARNING"
    fmt = (found.get("log_format") or os.environ.get("WORKBENCH_LOG_FORMAT") or "text").lower()
    if not isinstance(getattr(logging, level_name.upper(), None), int):
        print(f"workbench: unknown log level {level_name!r} (use DEBUG, INFO, WARNING, ERROR)",
              file=sys.stderr)
        return 2
    if fmt not in ("text", "json"):
        print(f"workbench: unknown log format {fmt!r} (use text or json)", file=sys.stderr)
        return 2
    args.log_level, args.log_format = level_name.upper(), fmt
    _configure_logging(level_name, fmt)
    try:
        result: int = args.func(args)
        return result
    except WorkbenchError as exc:
        log.debug("details", exc_info=True)
        print(f"workbench: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
