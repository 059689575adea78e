"""``workbench run``: one process (optionally serving HTTP) or a supervisor of workers.

Shutdown: the first SIGTERM or SIGINT makes ``/ready`` fail, stops polling, lets the engine
finish the batch in hand and commit (windows stay open: a stop is not the end of the input),
then the driver leaves its consumer group and closes its producer, the HTTP server stops and the
process exits 0. A second signal exits at once (status 128 + signal number) without committing:
the uncommitted batch is processed again after a restart, exactly once.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from ..errors import DefinitionError

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from ..runtime.engine import Engine
    from .core import Service

__all__ = ["run_command"]

log = logging.getLogger("workbench.cli")

SHARED_SCHEMES = ("kafka", "postgresql", "postgres")


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else url


def resolve_workers(value: str, driver_url: str) -> tuple[int, str]:
    """``--workers N|auto`` → (count, why)."""
    from .workers import cpu_limit

    scheme = _scheme(driver_url)
    if value == "auto":
        if scheme not in SHARED_SCHEMES:
            return 1, f"{scheme}:// runs in one process"
        limit = cpu_limit()
        return limit.count, limit.reason
    try:
        count = int(value)
    except ValueError:
        raise DefinitionError(f"--workers {value!r}: use a number or 'auto'.") from None
    if count < 1:
        raise DefinitionError(f"--workers {value!r}: at least 1.")
    if count > 1 and scheme not in SHARED_SCHEMES:
        raise DefinitionError(f"--workers {count}: {scheme}:// cannot be shared by several "
                              "processes; use kafka:// or postgresql://, or --workers 1.")
    return count, "--workers"


def _install_signals(engine: Engine, service: Service | None) -> dict[int, Any]:
    """SIGTERM/SIGINT handlers for a run; returns the previous handlers."""
    state = {"count": 0}

    def handler(signum: int, _frame: Any) -> None:
        state["count"] += 1
        name = signal.Signals(signum).name
        if state["count"] > 1:
            log.warning("received %s again: exiting at once without committing", name)
            sys.stderr.flush()
            os._exit(128 + signum)
        log.warning("received %s: finishing the batch, committing, exiting", name)
        if service is not None and service.status == "running":
            service.status = "stopping"
        engine.stop()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def _worker_argv(args: argparse.Namespace, driver: str) -> list[str]:
    argv = ["run", args.target, "--driver", driver, "--until", args.until,
            "--commit-interval", str(args.commit_interval), "--batch-size", str(args.batch_size),
            "--log-level", args.log_level,
            "--log-format", args.log_format,
            "--liveness-timeout", str(args.liveness_timeout)]
    for p in args.param or []:
        argv += ["-p", p]
    return argv


def _supervise(args: argparse.Namespace, count: int, pipeline: Pipeline) -> int:
    from ..drivers import connect
    from .batch import load_inputs, write_outputs
    from .supervisor import Supervisor
    from .workers import worker_driver_url

    files = dict(args.inputs)
    if files:  # appended once, by the supervisor, before any worker starts
        with connect(args.driver) as drv:
            from ..run import append_inputs

            drv.bind(pipeline.plan().app_id)
            inputs = load_inputs(pipeline, files, drv.scheme) or {}
            append_inputs(pipeline, drv, inputs)
    sup = Supervisor(_worker_argv(args, worker_driver_url(args.driver, count)), count,
                     args.http)
    code = sup.run()
    if code == 0 and args.output:
        with connect(args.driver) as drv:
            for topic, path in write_outputs(pipeline, drv, args.output,
                                             args.output_format).items():
                print(f"{topic}: {path}")
    return code


def run_command(args: argparse.Namespace) -> int:
    """Implementation of ``workbench run``."""
    from ..run import prepare
    from .batch import empty_sources, load_inputs, parse_inputs, write_outputs
    from .targets import load_target, parse_params

    params = parse_params(args.param)
    args.inputs = parse_inputs(args.input)
    pipeline = load_target(args.target, params)
    count, why = resolve_workers(args.workers, args.driver)
    if args.workers == "auto":
        print(f"workbench: --workers auto: {count} (from {why})", file=sys.stderr)
    if count > 1:
        return _supervise(args, count, pipeline)
    if args.http is not None:
        for module in ("aiohttp", "prometheus_client"):
            try:
                __import__(module)
            except ImportError:
                raise DefinitionError(f"--http needs the service extra: pip install "
                                      f"'workbench[service]' (missing {module}).") from None
    inputs = load_inputs(pipeline, args.inputs, _scheme(args.driver))
    engine = prepare(pipeline, args.driver, inputs=inputs, commit_interval=args.commit_interval,
                     batch_size=args.batch_size)
    if empty_sources(pipeline, engine.driver):
        log.warning("every source of %s is empty (%s): nothing to process; append records or "
                    "give files with --input TOPIC=PATH", pipeline.name,
                    ", ".join(pipeline._sources))
    service = None
    if args.http is not None or os.environ.get("WORKBENCH_WORKER_DIR"):
        from .core import Service

        service = Service(pipeline, engine, liveness_timeout_s=args.liveness_timeout)
    previous = _install_signals(engine, service)
    failed = False
    try:
        if service is not None and args.http is not None:
            service.start_http(args.http)
            print(f"workbench: serving {pipeline.name} on {service.http.url}"  # type: ignore
                  , file=sys.stderr, flush=True)
        engine.start()
        if service is not None:
            service.after_start()
        if args.until == "end":
            engine.run_until_end()
        else:
            engine.run_forever()
        if service is not None:
            service.status = "stopped"
    except BaseException as exc:
        failed = True
        if service is not None:
            service.status = "failed"
            service.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        engine.stats.phase = "stopped"
        if service is not None:
            service.views.settle()
        try:
            engine.close()
            engine.driver.end_run()  # flush, leave the consumer group
        finally:
            if service is not None:
                service.stop_http()
    stats = engine.stats
    if not failed and args.output:
        for topic, path in write_outputs(pipeline, engine.driver, args.output,
                                         args.output_format).items():
            print(f"{topic}: {path}")
    outs = ", ".join(f"{t}={n}" for t, n in sorted(stats.records_out.items())
                     if pipeline.plan().topics[t].kind == "sink")
    print(f"{pipeline.name}: {stats.records_in} records in, {stats.commits} commits"
          + (f"; out: {outs}" if outs else ""), flush=True)
    return 0
