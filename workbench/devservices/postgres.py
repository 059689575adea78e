"""A throw-away PostgreSQL cluster for development, from Debian's ``postgresql`` package.

The server binaries live in ``/usr/lib/postgresql/<major>/bin`` (not on PATH; override with
``$WORKBENCH_PG_BINDIR``). When they are missing and ``install=True``, root runs
``apt-get update`` and ``apt-get install -y --no-install-recommends postgresql``.

The cluster is ``initdb``-ed once per major version into a template in the cache
(``~/.cache/workbench/postgres-<major>/template``); each start copies the template. As root,
everything runs as the ``postgres`` OS user (``initdb`` and ``postgres`` refuse root), the data
folder is chowned to it. Authentication is ``trust``, the server listens on 127.0.0.1 only, its
socket folder is beside the data, and durability is off (``fsync=off``: a test cluster).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import DriverUnavailableError
from ._common import (
    Progress,
    ServiceInfo,
    cache_root,
    file_lock,
    free_port,
    pid_alive,
    remove_tree,
    spawn_daemon,
    stop_pid,
    wait_until,
)

__all__ = ["find_bindir", "install_postgres", "start"]

OS_USER = "postgres"
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    # a test cluster: nothing survives an OS crash anyway
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # two-phase commit available to drivers that want it
    "max_prepared_transactions": "20",
    "max_connections": "100",
}

_HOW_TO_INSTALL = ("install the server with `apt-get install -y postgresql` (as root; Debian/"
                   "Ubuntu), or run `workbench dev up` as root, which installs it, or point "
                   "$WORKBENCH_PG_BINDIR at a folder holding initdb, postgres and pg_isready")


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` with ``initdb`` (or ``$WORKBENCH_PG_BINDIR``, or
    the folder of an ``initdb`` on PATH); None if there is none."""
    env = os.environ.get("WORKBENCH_PG_BINDIR")
    if env:
        return Path(env) if (Path(env) / "initdb").exists() else None

    def major(path: str) -> tuple[int, str]:
        name = Path(path).parent.parent.name
        return (int(name) if name.isdigit() else -1, name)

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def install_postgres(progress: Progress | None = None) -> Path:
    """``apt-get update`` + ``apt-get install -y --no-install-recommends postgresql`` (root
    only); return the binaries' folder."""
    say = progress or (lambda _m: None)
    if os.geteuid() != 0:
        raise DriverUnavailableError(
            "PostgreSQL's server binaries (initdb, postgres) are not installed and this process "
            f"is not root, so it cannot install them: {_HOW_TO_INSTALL}.")
    apt = shutil.which("apt-get")
    if not apt:
        raise DriverUnavailableError(
            f"PostgreSQL's server binaries are not installed and there is no apt-get here: "
            f"{_HOW_TO_INSTALL}.")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([apt, "update", "-q"],
                [apt, "install", "-y", "-q", "--no-install-recommends", "postgresql"]):
        say(f"postgres: running `{' '.join(['apt-get', *cmd[1:]])}`")
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800,
                                 stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise DriverUnavailableError(
                f"`{' '.join(cmd)}` did not finish in 30 minutes: {_HOW_TO_INSTALL}.") from exc
        if res.returncode != 0:
            output = "\n".join((res.stdout + res.stderr).splitlines()[-30:])
            raise DriverUnavailableError(
                f"`{' '.join(cmd)}` failed (exit {res.returncode}):\n{output}\n"
                f"{_HOW_TO_INSTALL}.")
    bindir = find_bindir()
    if bindir is None:
        raise DriverUnavailableError(
            "`apt-get install postgresql` succeeded but no /usr/lib/postgresql/*/bin/initdb "
            f"exists: {_HOW_TO_INSTALL}.")
    return bindir


def _os_user() -> pwd.struct_passwd | None:
    """The ``postgres`` account when running as root (initdb/postgres refuse root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        raise DriverUnavailableError(
            "running as root, PostgreSQL must run as another OS user, and there is no "
            f"{OS_USER!r} user: create it (`useradd --system {OS_USER}`) or reinstall the "
            "`postgresql-common` package.") from None


def _chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    os.chown(path, user.pw_uid, user.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def _user_can_write(path: Path, user: pwd.struct_passwd | None) -> bool:
    if user is None:
        return True
    res = subprocess.run(["/bin/sh", "-c", 'test -w "$1" && test -x "$1"', "sh", str(path)],
                         user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                         capture_output=True, cwd="/")
    return res.returncode == 0


def _user_env(user: pwd.struct_passwd | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LC_ALL", "C.UTF-8")
    if user is not None:
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    return env


def _run_as(cmd: list[str], user: pwd.struct_passwd | None, cwd: Path,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    if user is None:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                              env=_user_env(None), stdin=subprocess.DEVNULL)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=_user_env(user), stdin=subprocess.DEVNULL,
                          user=user.pw_uid, group=user.pw_gid, extra_groups=[])


def _make_data_dir(bindir: Path, data: Path, user: pwd.struct_passwd | None,
                   say: Progress) -> None:
    """Copy the cached template cluster into ``data``, initdb-ing the template first if needed."""
    major = bindir.parent.name
    cache = cache_root() / f"postgres-{major}"
    template = cache / "template"
    if not (template / "PG_VERSION").is_file():
        with file_lock(cache_root() / f".postgres-{major}.lock"):
            if not (template / "PG_VERSION").is_file():
                say(f"postgres: initdb (PostgreSQL {major}, first run only)")
                res = _run_as([str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                               "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync",
                               "--no-instructions"], user, cwd=data.parent)
                if res.returncode != 0:
                    raise DriverUnavailableError(
                        f"initdb failed (exit {res.returncode}):\n"
                        + "\n".join((res.stdout + res.stderr).splitlines()[-30:]))
                tmp = cache / f"template.tmp-{os.getpid()}"
                remove_tree(tmp)
                cache.mkdir(parents=True, exist_ok=True)
                shutil.copytree(data, tmp, symlinks=True)
                remove_tree(template)
                os.replace(tmp, template)
                return
    shutil.copytree(template, data, symlinks=True)
    os.chmod(data, 0o700)
    _chown_tree(data, user)


def start(state_dir: Path, *, install: bool = False, timeout: float = 60.0,
          progress: Progress | None = None) -> ServiceInfo:
    """Start a cluster whose files live in ``state_dir/postgres`` and wait for ``pg_isready``."""
    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    bindir = find_bindir()
    if bindir is None:
        if not install:
            raise DriverUnavailableError(
                "PostgreSQL's server binaries were not found (no /usr/lib/postgresql/*/bin/"
                f"initdb): {_HOW_TO_INSTALL}.")
        bindir = install_postgres(progress)
    user = _os_user()
    home = state_dir / "postgres"
    remove_tree(home)
    home.mkdir(parents=True)
    temp_home = False
    if user is not None:
        os.chown(home, user.pw_uid, user.pw_gid)
        if not _user_can_write(home, user):
            # a parent folder is closed to the postgres user (e.g. under /root): use /tmp
            remove_tree(home)
            home = Path(tempfile.mkdtemp(prefix="workbench-pg-"))
            os.chown(home, user.pw_uid, user.pw_gid)
            temp_home = True
    socket_dir = home / "run"
    if len(str(socket_dir)) > 80:  # sun_path holds 107 bytes, "/.s.PGSQL.NNNNN" included
        socket_dir = Path(tempfile.mkdtemp(prefix="wb-pgsock-"))
    else:
        socket_dir.mkdir()
    if user is not None:
        os.chown(socket_dir, user.pw_uid, user.pw_gid)
    data = home / "data"
    try:
        _make_data_dir(bindir, data, user, say)
        port = free_port()
        argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                "-c", f"unix_socket_directories={socket_dir}"]
        for key, value in SERVER_SETTINGS.items():
            argv += ["-c", f"{key}={value}"]
        log_file = state_dir / "postgres.log"
        log_file.write_text("")
        say(f"postgres: starting the server on 127.0.0.1:{port}")
        pid = spawn_daemon(argv, log_file=log_file, cwd=home, env=_user_env(user),
                           user=user.pw_uid if user else None,
                           group=user.pw_gid if user else None)
    except BaseException:
        _cleanup_dirs(home, socket_dir)
        raise
    marker = f"-D {data}"
    isready = [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
               "-d", "postgres", "-t", "2", "-q"]

    def ready() -> bool:
        try:
            return subprocess.run(isready, capture_output=True, timeout=10,
                                  env=_user_env(None)).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    try:
        wait_until(ready, timeout=timeout, alive=lambda: pid_alive(pid, marker),
                   what=f"PostgreSQL (pid {pid}, port {port})", log_file=log_file)
    except BaseException:
        stop_pid(pid, marker=marker, sig=2, timeout=10)
        _cleanup_dirs(home, socket_dir)
        raise
    try:
        pgid: int | None = os.getpgid(pid)
    except OSError:
        pgid = None
    return ServiceInfo(
        name="postgres", url=f"postgresql://postgres@127.0.0.1:{port}/postgres", pid=pid,
        port=port, data_dir=str(data), log_file=str(log_file),
        started_s=round(time.monotonic() - t0, 2),
        extra={"home": str(home), "socket_dir": str(socket_dir), "temp_home": temp_home,
               "bindir": str(bindir), "version": bindir.parent.name, "pgid": pgid,
               "marker": marker},
    )


def _cleanup_dirs(home: Path, socket_dir: Path) -> None:
    remove_tree(home)
    if not str(socket_dir).startswith(str(home)):
        remove_tree(socket_dir)
