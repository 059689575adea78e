"""Kafka Streams conformance oracle: run JSON test cases on the real TopologyTestDriver.

The Java side (``oracle/src/main/java/Oracle.java``) builds one Kafka Streams topology per case,
pipes the case's records in the given order through ``TopologyTestDriver`` (Kafka Streams 4.1.1)
and reports every output record together with the index of the input record that caused it.
All cases run in one JVM: one JSON case per line on stdin, one JSON result per line on stdout.

Typical use::

    from tests.conformance.oracle import oracle_available, run_cases, load_cases
    ok, why = oracle_available()
    outputs = run_cases(load_cases())        # one list of output dicts per case

Only the standard library is used. The case format is described in ``README.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ORACLE_DIR = HERE / "oracle"
POM = ORACLE_DIR / "pom.xml"
SOURCE_DIR = ORACLE_DIR / "src" / "main" / "java"
SOURCES = sorted(SOURCE_DIR.glob("*.java"))
CASES_DIR = HERE / "cases"
DEFAULT_BUILD_DIR = HERE / ".build"
EXPECTED_FILE = HERE / "expected" / "oracle_outputs.json"

#: JVM flags: a short-lived process, so favour start-up over peak throughput.
JVM_FLAGS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss4m", "-Xmx512m"]
#: a tmpfs for Kafka Streams' state directories, if the machine has one
SHM = "/dev/shm"

__all__ = [
    "CASES_DIR",
    "DEFAULT_BUILD_DIR",
    "EXPECTED_FILE",
    "OracleServer",
    "build_oracle",
    "format_output",
    "load_cases",
    "load_expected",
    "oracle_available",
    "recorded_form",
    "run_cases",
    "run_cases_full",
]


def oracle_available() -> tuple[bool, str]:
    """Whether the tools needed to build and run the oracle (java, javac, mvn) are present."""
    missing = [tool for tool in ("java", "javac", "mvn") if shutil.which(tool) is None]
    if missing:
        return False, "not on PATH: " + ", ".join(missing)
    return True, "java, javac and mvn found"


@contextlib.contextmanager
def _build_lock(build_dir: Path) -> Iterator[None]:
    """An exclusive lock on the build directory, so parallel test workers build only once."""
    build_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(build_dir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )


def build_oracle(build_dir: Path | None = None) -> Path:
    """Build the oracle into ``build_dir`` (default ``tests/conformance/.build``) and return it.

    Idempotent: the jars are fetched again only when ``pom.xml`` is newer than the last fetch,
    and the Java sources are recompiled only when one of them (or the jars) is newer than
    ``Oracle.class``.
    """
    ok, why = oracle_available()
    if not ok:
        raise RuntimeError(f"cannot build the Kafka Streams oracle: {why}")
    build_dir = Path(build_dir) if build_dir is not None else DEFAULT_BUILD_DIR
    build_dir = build_dir.resolve()
    lib, classes = build_dir / "lib", build_dir / "classes"
    lib_stamp, class_file = build_dir / "lib.stamp", classes / "Oracle.class"
    with _build_lock(build_dir):
        if not lib_stamp.exists() or lib_stamp.stat().st_mtime < POM.stat().st_mtime:
            if lib.exists():
                shutil.rmtree(lib)
            _run(
                [
                    "mvn",
                    "-B",
                    "-q",
                    "-f",
                    str(POM),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={lib}",
                ],
                "fetching the oracle's jars with Maven",
            )
            lib_stamp.touch()
        if not class_file.exists() or class_file.stat().st_mtime < max(
            [source.stat().st_mtime for source in SOURCES] + [lib_stamp.stat().st_mtime]
        ):
            if classes.exists():
                shutil.rmtree(classes)
            classes.mkdir(parents=True)
            _run(
                [
                    "javac",
                    "-nowarn",
                    "-encoding",
                    "UTF-8",
                    "-cp",
                    str(lib / "*"),
                    "-d",
                    str(classes),
                    *[str(source) for source in SOURCES],
                ],
                "compiling the oracle's Java sources",
            )
    return build_dir


def _java_command(build: Path) -> list[str]:
    """The command line that starts the oracle JVM from the build directory ``build``.

    Kafka Streams' state directories go to ``/dev/shm`` (a tmpfs) when it is writable: RocksDB
    stores flush at every TopologyTestDriver commit, about 50 ms a record on a real disk.
    """
    classpath = os.pathsep.join([str(build / "lib" / "*"), str(build / "classes")])
    flags = list(JVM_FLAGS)
    if os.path.isdir(SHM) and os.access(SHM, os.W_OK | os.X_OK):
        flags.append(f"-Doracle.state.root={SHM}")
    return ["java", *flags, "-cp", classpath, "Oracle"]


def _case_lines(cases: list[dict[str, Any]]) -> str:
    lines = []
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or "topology" not in case or "records" not in case:
            raise ValueError(f"case #{i} needs 'topology' and 'records': {case!r:.200}")
        lines.append(json.dumps(case, separators=(",", ":")))
    return "\n".join(lines) + "\n"


def run_cases_full(
    cases: list[dict[str, Any]],
    build_dir: Path | None = None,
    timeout: float = 600.0,
) -> list[dict[str, Any]]:
    """Run all ``cases`` in one JVM; per case return ``{"name", "outputs", "dropped"}`` (and
    ``"failure": {"in", "error"}`` if Kafka Streams stopped while processing record ``in``).

    ``outputs`` is the list of output records (see README.md); ``dropped`` lists
    ``{"in": index, "count": n}`` for input records that raised Kafka Streams' task-level
    ``dropped-records-total`` metric (null keys, late or expired records, ...).
    Raises RuntimeError if the JVM fails or any case fails inside the JVM.
    """
    if not cases:
        return []
    cmd = _java_command(build_oracle(build_dir))
    try:
        proc = subprocess.run(
            cmd, input=_case_lines(cases), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raw = exc.stderr
        stderr = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or "")
        raise RuntimeError(
            f"Kafka Streams oracle timed out after {timeout}s\n--- stderr ---\n{stderr}"
        ) from exc
    if proc.returncode != 0:
        raise RuntimeError(
            f"Kafka Streams oracle JVM failed (exit {proc.returncode})\n"
            f"--- stderr ---\n{proc.stderr}\n"
            f"--- stdout (last 2000 chars) ---\n{proc.stdout[-2000:]}"
        )
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if len(results) != len(cases):
        raise RuntimeError(
            f"Kafka Streams oracle returned {len(results)} results for {len(cases)} cases\n"
            f"--- stderr ---\n{proc.stderr}"
        )
    errors = [
        f"case #{i} {case.get('name')!r}:\n{result['error']}"
        for i, (case, result) in enumerate(zip(cases, results))
        if "error" in result
    ]
    if errors:
        joined = "\n".join(errors)
        raise RuntimeError(
            f"Kafka Streams oracle failed on {len(errors)} case(s):\n{joined}\n"
            f"--- JVM stderr ---\n{proc.stderr}"
        )
    return results


class OracleServer:
    """One long-lived oracle JVM that answers cases one at a time (for generated cases).

    The oracle reads one JSON case per line and answers each with one JSON line, flushed, so a
    single JVM can serve any number of cases without paying its start-up (about 1 s) again::

        with OracleServer() as oracle:
            result = oracle.run(case)   # {"name", "outputs", "dropped"}

    A case that fails inside the JVM raises RuntimeError with the Java stack trace; the server
    stays usable. If the JVM dies, the next call raises RuntimeError.
    """

    def __init__(self, build_dir: Path | None = None) -> None:
        cmd = _java_command(build_oracle(build_dir))
        # stderr goes to a file, so a chatty JVM can never block on a full pipe
        self._stderr_file = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self._proc: subprocess.Popen[str] | None = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self.cases_run = 0

    def run(self, case: dict[str, Any]) -> dict[str, Any]:
        """Run one case; return ``{"name", "outputs", "dropped"}``."""
        proc = self._proc
        if proc is None:
            raise RuntimeError("the oracle server is closed")
        line = _case_lines([case])
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(line)
            proc.stdin.flush()
            answer = proc.stdout.readline()
        except (BrokenPipeError, OSError) as exc:
            raise RuntimeError(f"Kafka Streams oracle JVM died\n{self._stderr()}") from exc
        if not answer:
            raise RuntimeError(f"Kafka Streams oracle JVM died\n{self._stderr()}")
        result: dict[str, Any] = json.loads(answer)
        self.cases_run += 1
        if "error" in result:
            raise RuntimeError(
                f"Kafka Streams oracle failed on case {case.get('name')!r}:\n{result['error']}"
            )
        return result

    def run_many(self, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run several cases in this JVM, in order."""
        return [self.run(case) for case in cases]

    def _stderr(self) -> str:
        """Stop the JVM and return what it wrote to stderr."""
        self._stop()
        try:
            self._stderr_file.seek(0)
            return "--- stderr ---\n" + self._stderr_file.read()[-5000:]
        except (OSError, ValueError):
            return ""
        finally:
            self._stderr_file.close()

    def close(self) -> None:
        """Stop the JVM (end of input makes the oracle exit and delete its state)."""
        self._stop()
        self._stderr_file.close()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    def __enter__(self) -> OracleServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_cases(
    cases: list[dict[str, Any]], build_dir: Path | None = None
) -> list[list[dict[str, Any]]]:
    """Run all ``cases`` in one JVM and return, per case, the list of output records."""
    return [result["outputs"] for result in run_cases_full(cases, build_dir)]


def load_cases(paths: list[Path] | None = None) -> list[dict[str, Any]]:
    """Load cases from JSON files (each holding a list of cases); default: ``cases/*.json``."""
    files = sorted(CASES_DIR.glob("*.json")) if paths is None else [Path(p) for p in paths]
    cases: list[dict[str, Any]] = []
    for file in files:
        data = json.loads(file.read_text(encoding="utf-8"))
        for case in data if isinstance(data, list) else [data]:
            cases.append(case)
    names = [str(c.get("name")) for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate case names: {duplicates}")
    return cases


def format_output(record: dict[str, Any], closed_windows: bool = False) -> str:
    """One output record as ``#in [topic: ]key@[start,end) -> value @ts`` (for reports).

    ``closed_windows``: print ``[start,end]`` (sliding and session windows include their end).
    """
    key = "null" if record["key"] is None else record["key"]
    if "topic" in record:
        key = f"{record['topic']}: {key}"
    if "start" in record:
        key = f"{key}@[{record['start']},{record['end']}{']' if closed_windows else ')'}"
    value = "null" if record["value"] is None else record["value"]
    return f"#{record['in']} {key} -> {value} @{record['ts']}"


def _closed_windows(case: dict[str, Any]) -> bool:
    window = case.get("topology", {}).get("window", {})
    return window.get("type") in ("sliding", "session")


def recorded_form(result: dict[str, Any]) -> dict[str, Any]:
    """What ``expected/oracle_outputs.json`` keeps of a result: outputs, dropped, and the
    failure if Kafka Streams stopped."""
    entry = {"outputs": result["outputs"], "dropped": result["dropped"]}
    if "failure" in result:
        entry["failure"] = result["failure"]
    return entry


def record_expected(cases: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
    """Write the oracle's results to ``expected/oracle_outputs.json`` (name -> outputs, dropped)."""
    EXPECTED_FILE.parent.mkdir(exist_ok=True)
    lines = ["{"]
    for i, (case, result) in enumerate(zip(cases, results)):
        entry = recorded_form(result)
        body = json.dumps(entry, separators=(", ", ": "))
        lines.append(f"  {json.dumps(case['name'])}: {body}" + ("," if i < len(cases) - 1 else ""))
    lines.append("}")
    EXPECTED_FILE.write_text("\n".join(lines) + "\n", encoding="utf-8")


def load_expected() -> dict[str, dict[str, Any]]:
    """The recorded oracle results (``expected/oracle_outputs.json``), by case name."""
    expected: dict[str, dict[str, Any]] = json.loads(EXPECTED_FILE.read_text(encoding="utf-8"))
    return expected


def _main(argv: list[str]) -> int:
    """``python -m tests.conformance.oracle [--json|--record] [-k substring] [case files...]``.

    Without options, prints every case's output in a readable form. ``--json`` prints the raw
    results; ``--record`` (all cases only) rewrites ``expected/oracle_outputs.json``.
    """
    as_json = "--json" in argv
    record = "--record" in argv
    argv = [a for a in argv if a not in ("--json", "--record")]
    pattern = None
    if "-k" in argv:
        i = argv.index("-k")
        pattern = argv[i + 1]
        del argv[i : i + 2]
    if record and (argv or pattern):
        print("--record runs all cases; do not combine it with files or -k", file=sys.stderr)
        return 2
    cases = load_cases([Path(a) for a in argv] if argv else None)
    if pattern:
        cases = [c for c in cases if pattern in c.get("name", "")]
    started = time.monotonic()
    results = run_cases_full(cases)
    elapsed = time.monotonic() - started
    if record:
        record_expected(cases, results)
        print(f"wrote {EXPECTED_FILE}", file=sys.stderr)
    elif as_json:
        json.dump(results, sys.stdout, indent=1)
        print()
    else:
        for case, result in zip(cases, results):
            print(f"== {result['name']}")
            for out in result["outputs"]:
                print("   " + format_output(out, _closed_windows(case)))
            if result["dropped"]:
                dropped = ", ".join(f"#{d['in']}x{d['count']}" for d in result["dropped"])
                print("   dropped: " + dropped)
            if "failure" in result:
                failure = result["failure"]
                print(f"   failed at #{failure['in']}: {failure['error']}")
    print(f"{len(cases)} cases in {elapsed:.2f}s (one JVM)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
