"""Local services for development and tests: a real Apache Kafka broker, a real PostgreSQL and
a real Schema Registry (Apicurio Registry, Confluent-compatible API).

    >>> from workbench.devservices import up, down, status
    >>> info = up()                                   # doctest: +SKIP
    >>> info["kafka"].url, info["postgres"].url       # doctest: +SKIP
    ('kafka://127.0.0.1:39092', 'postgresql://postgres@127.0.0.1:41234/postgres')

Services run as daemons that outlive the calling process. Their state (one JSON file per
service with pid, port and URL), logs and data live in the state directory:
``$WORKBENCH_DEV_DIR``, else ``<repository root>/.workbench/dev``. ``up()`` is idempotent: a
second call, from any process, returns the running services. ``down()`` stops them and removes
their data; downloads stay cached in ``~/.cache/workbench`` (``$WORKBENCH_CACHE_DIR``).

Kafka needs Java 17+ and Maven (first run only: the jars come from Maven Central). PostgreSQL
needs Debian's ``postgresql`` package, which ``up(install=True)`` installs when run as root.
The Schema Registry (Apicurio Registry 3.0.9) needs Java 17+ and Maven too (first run only);
its URL is ``http://127.0.0.1:PORT/apis/ccompat/v7``.
A missing piece raises :class:`~workbench.errors.DriverUnavailableError` saying what to install.

The command line is ``workbench dev up [--only kafka|postgres|registry]``,
``workbench dev status`` and ``workbench dev down`` (also
``python -m workbench.devservices up|status|down``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import DefinitionError
from . import kafka as _kafka
from . import postgres as _postgres
from . import registry as _registry
from ._common import (
    Progress,
    ServiceInfo,
    default_state_dir,
    file_lock,
    pid_alive,
    port_open,
    read_state,
    remove_state,
    remove_tree,
    stop_pid,
    write_state,
)

__all__ = ["SERVICES", "ServiceInfo", "add_cli", "default_state_dir", "down", "status", "up"]

#: every service, in start order
SERVICES: tuple[str, ...] = ("kafka", "postgres", "registry")

#: seconds to wait for readiness after the process started (download/install not included)
DEFAULT_TIMEOUTS = {"kafka": 120.0, "postgres": 60.0, "registry": 120.0}
#: how each service is asked to stop: Kafka's controlled shutdown on SIGTERM; PostgreSQL's
#: "fast" shutdown is SIGINT (SIGTERM is "smart" and waits for every client to disconnect)
STOP_SIGNALS = {"kafka": signal.SIGTERM, "postgres": signal.SIGINT,
                "registry": signal.SIGTERM}
STOP_TIMEOUTS = {"kafka": 30.0, "postgres": 20.0, "registry": 20.0}


def _names(services: Iterable[str] | str) -> tuple[str, ...]:
    names = (services,) if isinstance(services, str) else tuple(services)
    for name in names:
        if name not in SERVICES:
            raise DefinitionError(
                f"unknown dev service {name!r}; choose from {', '.join(SERVICES)}.")
    return tuple(dict.fromkeys(names))


def _state_dir(state_dir: str | os.PathLike[str] | None) -> Path:
    path = Path(state_dir).expanduser().resolve() if state_dir else default_state_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _healthy(info: ServiceInfo, patience: float = 15.0) -> bool:
    """The recorded process is alive and its port answers. A live process whose port does not
    answer at once gets ``patience`` seconds (a loaded machine, a long GC pause): restarting
    a service that every running test shares would break them all."""
    import time

    marker = info.extra.get("marker")
    if not pid_alive(info.pid, marker if isinstance(marker, str) else None):
        return False
    deadline = time.monotonic() + patience
    while not port_open(info.port):
        if time.monotonic() > deadline or not pid_alive(
                info.pid, marker if isinstance(marker, str) else None):
            return False
        time.sleep(0.25)
    return True


def _timeout(name: str, timeout: float | None) -> float:
    if timeout is not None:
        return timeout
    env = os.environ.get("WORKBENCH_DEV_TIMEOUT")
    return float(env) if env else DEFAULT_TIMEOUTS[name]


def _up_one(name: str, state_dir: Path, install: bool, timeout: float | None,
            progress: Progress | None) -> ServiceInfo:
    with file_lock(state_dir / f".{name}.lock"):
        old = read_state(state_dir, name)
        if old is not None:
            if _healthy(old):
                return dataclasses.replace(old, already_running=True)
            _stop_and_clean(name, state_dir, old)
        if name == "kafka":
            info = _kafka.start(state_dir, timeout=_timeout(name, timeout), progress=progress)
        elif name == "registry":
            info = _registry.start(state_dir, timeout=_timeout(name, timeout),
                                   progress=progress)
        else:
            info = _postgres.start(state_dir, install=install, timeout=_timeout(name, timeout),
                                   progress=progress)
        write_state(state_dir, info)
        return info


def up(services: Iterable[str] | str = SERVICES,
       state_dir: str | os.PathLike[str] | None = None, *, install: bool = False,
       timeout: float | None = None, progress: Progress | None = None) -> dict[str, ServiceInfo]:
    """Start ``services`` (default: all) unless they are already running; return their info.

    Idempotent across processes: a service whose recorded pid is alive and whose port answers
    is returned as it is (``already_running=True``). Several services start in parallel.

    Args:
        install: allow installing missing system packages (PostgreSQL through apt-get, as root).
        timeout: seconds to wait for readiness (default 120 for Kafka and the registry, 60
            for PostgreSQL, or ``$WORKBENCH_DEV_TIMEOUT``).
        progress: called with one-line messages about slow steps (downloads, installs).

    Raises:
        DriverUnavailableError: Java/Maven/PostgreSQL missing, a download failed, or a service
            did not become ready (the message quotes the end of its log).
    """
    names = _names(services)
    path = _state_dir(state_dir)
    if len(names) == 1:
        return {names[0]: _up_one(names[0], path, install, timeout, progress)}
    with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="workbench-dev") as pool:
        futures = {n: pool.submit(_up_one, n, path, install, timeout, progress) for n in names}
        errors = [f.exception() for f in futures.values() if f.exception() is not None]
    if errors:
        raise errors[0]  # type: ignore[misc]
    return {n: f.result() for n, f in futures.items()}


def _stop_and_clean(name: str, state_dir: Path, info: ServiceInfo | None) -> None:
    if info is not None:
        marker = info.extra.get("marker")
        pgid = info.extra.get("pgid")
        stop_pid(info.pid, marker=marker if isinstance(marker, str) else None,
                 sig=STOP_SIGNALS[name], timeout=STOP_TIMEOUTS[name],
                 group=pgid if isinstance(pgid, int) else None)
        for key in ("home", "socket_dir"):
            value = info.extra.get(key)
            if isinstance(value, str) and value:
                remove_tree(Path(value))
    remove_tree(state_dir / name)
    remove_state(state_dir, name)


def down(services: Iterable[str] | str = SERVICES,
         state_dir: str | os.PathLike[str] | None = None) -> None:
    """Stop ``services`` (default: all) and remove their data (logs and downloads stay).
    Stopping a service that is not running is not an error."""
    names = _names(services)
    path = _state_dir(state_dir)

    def stop(name: str) -> None:
        with file_lock(path / f".{name}.lock"):
            _stop_and_clean(name, path, read_state(path, name))

    if len(names) == 1:
        stop(names[0])
        return
    with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="workbench-dev") as pool:
        for future in [pool.submit(stop, n) for n in names]:
            future.result()


def status(state_dir: str | os.PathLike[str] | None = None) -> dict[str, ServiceInfo | None]:
    """Every service's info if it is running (pid alive and port answering), else None."""
    path = Path(state_dir).expanduser().resolve() if state_dir else default_state_dir()
    result: dict[str, ServiceInfo | None] = {}
    for name in SERVICES:
        info = read_state(path, name) if path.is_dir() else None
        result[name] = info if info is not None and _healthy(info) else None
    return result


# --------------------------------------------------------------------------- command line


def _line(name: str, text: str) -> str:
    return f"{name:<10} {text}"


def _cmd_up(args: argparse.Namespace) -> int:
    names = tuple(args.only) if args.only else SERVICES

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    infos = up(names, args.state_dir, install=not args.no_install, progress=progress)
    for name in names:
        info = infos[name]
        how = (f"already running, pid {info.pid}" if info.already_running
               else f"started in {info.started_s:.1f} s")
        print(_line(name, f"{info.url}  ({how})"), flush=True)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    names = tuple(args.only) if args.only else SERVICES
    before = status(args.state_dir)
    down(names, args.state_dir)
    for name in names:
        print(_line(name, "stopped" if before.get(name) else "not running"))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    for name, info in status(args.state_dir).items():
        if info is None:
            print(_line(name, "not running"))
        else:
            print(_line(name, f"{info.url}  (pid {info.pid}, log {info.log_file})"))
    return 0


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``workbench dev up|down|status`` on the ``workbench`` command's subparsers."""
    dev = subparsers.add_parser(
        "dev", help="start/stop a local Kafka broker and PostgreSQL (for development and tests)",
        description="Local Apache Kafka and PostgreSQL for development and tests. State, logs "
                    "and data: $WORKBENCH_DEV_DIR or <repo>/.workbench/dev.")
    sub = dev.add_subparsers(dest="dev_command", required=True)
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument("--state-dir", default=None,
                       help="where pids, logs and data live (default: $WORKBENCH_DEV_DIR or "
                            "<repo>/.workbench/dev)")
    only = argparse.ArgumentParser(add_help=False)
    only.add_argument("--only", action="append", choices=SERVICES,
                      help="this service only (repeatable; default: all)")
    cmd_up = sub.add_parser("up", parents=[state, only],
                            help="start the services unless running; print their URLs")
    cmd_up.add_argument("--no-install", action="store_true",
                        help="do not apt-get install PostgreSQL when it is missing")
    cmd_up.set_defaults(func=_cmd_up)
    cmd_down = sub.add_parser("down", parents=[state, only],
                              help="stop the services and remove their data")
    cmd_down.set_defaults(func=_cmd_down)
    cmd_status = sub.add_parser("status", parents=[state], help="print what is running")
    cmd_status.set_defaults(func=_cmd_status)


def main(argv: list[str] | None = None) -> int:
    """``python -m workbench.devservices up|down|status``."""
    from ..errors import WorkbenchError

    parser = argparse.ArgumentParser(prog="python -m workbench.devservices")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_cli(subparsers)
    args = parser.parse_args(["dev", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except WorkbenchError as exc:
        print(f"workbench: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            print("interrupted", file=sys.stderr)
        return 130
