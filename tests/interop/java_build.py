"""Build and run the Java side of the interop tests and of ``notebooks/06-interop.ipynb``
(``java/``: the real Kafka clients, Kafka Streams' windowed serdes and partitioners, Apache
Avro; from Maven Central), like the
conformance oracle: ``mvn dependency:copy-dependencies`` into ``.build/lib`` (again only when
``pom.xml`` changes), ``javac`` into ``.build/classes`` (again only when a source changes).
Parallel test workers build once (a file lock)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from workbench._env import in_ci

HERE = Path(__file__).resolve().parent
JAVA_DIR = HERE / "java"
POM = JAVA_DIR / "pom.xml"
SOURCES = sorted((JAVA_DIR / "src" / "main" / "java").glob("*.java"))
BUILD = HERE / ".build"
JVM_FLAGS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx256m"]

__all__ = ["build", "require_java", "run_java"]


def require_java() -> None:
    """Skip (fail on CI) when java, javac or mvn is missing."""
    import pytest

    missing = [t for t in ("java", "javac", "mvn") if shutil.which(t) is None]
    if missing:
        message = (f"the Java interop tests need {', '.join(missing)}: apt-get install -y "
                   "openjdk-17-jdk-headless maven")
        if in_ci():
            pytest.fail(message + " (CI=true: not skipping)", pytrace=False)
        pytest.skip(message)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def build() -> str:
    """Build (if stale) and return the class path."""
    lib, classes = BUILD / "lib", BUILD / "classes"
    stamp, main = BUILD / "lib.stamp", classes / "Interop.class"
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.stat().st_mtime < POM.stat().st_mtime:
            shutil.rmtree(lib, ignore_errors=True)
            _run(["mvn", "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
                  "-DincludeScope=runtime", f"-DoutputDirectory={lib}"],
                 "fetching the interop program's jars with Maven")
            stamp.touch()
        newest = max([s.stat().st_mtime for s in SOURCES] + [stamp.stat().st_mtime])
        if not main.exists() or main.stat().st_mtime < newest:
            shutil.rmtree(classes, ignore_errors=True)
            classes.mkdir(parents=True)
            _run(["javac", "-nowarn", "-encoding", "UTF-8", "-cp", str(lib / "*"), "-d",
                  str(classes), *map(str, SOURCES)], "compiling the interop program")
    return os.pathsep.join([str(lib / "*"), str(classes)])


def run_java(*args: str, stdin: str = "", timeout: float = 300) -> list[dict[str, Any]]:
    """Run ``Interop <args>``; return its JSON output lines."""
    cmd = ["java", *JVM_FLAGS, "-cp", build(), "Interop", *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the Java interop program failed (exit {proc.returncode}): "
                           f"{' '.join(args)}\n{proc.stderr[-5000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


if __name__ == "__main__":  # python tests/interop/java_build.py COMMAND ARGS < stdin
    import sys

    for line in run_java(*sys.argv[1:], stdin=sys.stdin.read()):
        print(json.dumps(line))
