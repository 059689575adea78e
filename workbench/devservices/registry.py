"""A real Schema Registry for development and tests: Apicurio Registry 3.0.9, whose
Confluent-compatible API (``/apis/ccompat/v7``) confluent-kafka's ``SchemaRegistryClient``
speaks.

Its application comes from Maven Central (``io.apicurio:apicurio-registry-app:3.0.9``,
classifier ``all``, type ``tar.gz``), fetched once with ``mvn -B -q dependency:copy`` into
``<cache>/apicurio-3.0.9`` (cache: ``$WORKBENCH_CACHE_DIR`` or ``~/.cache/workbench``) and
unpacked there; it runs on Java 17 with in-memory storage (every start is empty). About 4 s
to start on an idle machine and ~260 MB of memory. ``APICURIO_JAVA_OPTS`` replaces the JVM
options below.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tarfile
import time
import urllib.request
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
from .kafka import _check_java_version, _java

__all__ = ["APICURIO_VERSION", "MARKER", "ccompat_url", "ensure_app", "start"]

APICURIO_VERSION = "3.0.9"
ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
RUNNER = f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
#: found in the registry's command line; guards against recycled pids
MARKER = RUNNER
DEFAULT_JAVA_OPTS = "-Xms64m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
_INSTALL = ("install Java 17+ and Maven, e.g. `apt-get install -y openjdk-17-jdk-headless "
            "maven`")


def ccompat_url(port: int) -> str:
    """The Confluent-compatible API of a registry on 127.0.0.1:``port``."""
    return f"http://127.0.0.1:{port}/apis/ccompat/v7"


def app_dir() -> Path:
    return cache_root() / f"apicurio-{APICURIO_VERSION}"


def ensure_app(progress: Progress | None = None) -> Path:
    """The unpacked application (the folder holding the runner jar); the first call downloads
    it from Maven Central (109 MB)."""
    say = progress or (lambda _m: None)
    home = app_dir()
    if (home / "app" / RUNNER).is_file():
        return home / "app"
    with file_lock(home.parent / f".apicurio-{APICURIO_VERSION}.lock"):
        if (home / "app" / RUNNER).is_file():
            return home / "app"
        mvn = shutil.which("mvn")
        if not mvn:
            raise DriverUnavailableError(
                f"Apicurio Registry is not cached yet ({home}) and `mvn` is not on PATH to "
                f"download it from Maven Central: {_INSTALL}.")
        home.mkdir(parents=True, exist_ok=True)
        dl = home / f"dl.tmp-{os.getpid()}"
        remove_tree(dl)
        say(f"registry: downloading Apicurio Registry {APICURIO_VERSION} from Maven Central "
            f"into {home} (first run only, 109 MB)")
        cmd = [mvn, "-B", "-q", "dependency:copy", f"-Dartifact={ARTIFACT}",
               f"-DoutputDirectory={dl}"]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=home,
                                 stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise DriverUnavailableError(f"`{shlex.join(cmd)}` did not finish in 30 minutes: "
                                         "is Maven Central reachable?") from exc
        tars = sorted(dl.glob("*.tar.gz")) if dl.is_dir() else []
        if res.returncode != 0 or not tars:
            output = "\n".join((res.stdout + res.stderr).splitlines()[-30:])
            remove_tree(dl)
            raise DriverUnavailableError(
                f"downloading Apicurio Registry failed (exit {res.returncode}): "
                f"`{shlex.join(cmd)}`. The last lines:\n{output}")
        tmp = home / f"app.tmp-{os.getpid()}"
        remove_tree(tmp)
        with tarfile.open(tars[0]) as tar:
            tar.extractall(tmp, filter="data")
        remove_tree(dl)
        if not (tmp / RUNNER).is_file():
            remove_tree(tmp)
            raise DriverUnavailableError(f"{ARTIFACT} did not contain {RUNNER}.")
        remove_tree(home / "app")
        os.replace(tmp, home / "app")
    return home / "app"


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(ccompat_url(port) + "/subjects", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def start(state_dir: Path, *, timeout: float = 120.0,
          progress: Progress | None = None) -> ServiceInfo:
    """Start a registry whose log lives in ``state_dir`` and wait until its API answers."""
    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    app = ensure_app(progress)
    java = _java()
    _check_java_version(java)
    home = state_dir / "registry"
    remove_tree(home)
    home.mkdir(parents=True)
    port = free_port()
    log_file = state_dir / "registry.log"
    log_file.write_text("")
    argv = [java, *shlex.split(os.environ.get("APICURIO_JAVA_OPTS") or DEFAULT_JAVA_OPTS),
            f"-Dquarkus.http.port={port}", "-Dquarkus.http.host=127.0.0.1",
            "-jar", str(app / RUNNER)]
    say(f"registry: starting Apicurio Registry on 127.0.0.1:{port}")
    pid = spawn_daemon(argv, log_file=log_file, cwd=home)
    try:
        wait_until(lambda: _answers(port), timeout=timeout,
                   alive=lambda: pid_alive(pid, MARKER),
                   what=f"Apicurio Registry (pid {pid}, port {port})", log_file=log_file,
                   hint="Hint: Apicurio Registry 3.0.9 needs Java 17+.")
    except BaseException:
        stop_pid(pid, marker=MARKER, timeout=10)
        raise
    try:
        pgid: int | None = os.getpgid(pid)
    except OSError:
        pgid = None
    return ServiceInfo(
        name="registry", url=ccompat_url(port), pid=pid, port=port, data_dir=str(home),
        log_file=str(log_file), started_s=round(time.monotonic() - t0, 2),
        extra={"version": APICURIO_VERSION, "pgid": pgid, "marker": MARKER},
    )
