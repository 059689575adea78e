"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) for development.

The broker's jars come from Maven Central: ``kafka-pom.xml`` (beside this file) is resolved once
with ``mvn -B -q dependency:copy-dependencies`` into ``<cache>/kafka-4.1.1/lib`` (cache:
``$WORKBENCH_CACHE_DIR`` or ``~/.cache/workbench``). The same one-time step formats a *template*
metadata directory with ``kafka.tools.StorageTool`` (static quorum, so the result does not depend
on ports); each start copies its ``bootstrap.checkpoint`` and writes a fresh ``meta.properties``
instead of starting a second JVM to format. See ``docs/services.md`` for the measured times.

JVM options follow Kafka's scripts: ``KAFKA_HEAP_OPTS`` and ``KAFKA_JVM_PERFORMANCE_OPTS``
replace the defaults below, ``KAFKA_OPTS`` is appended.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from importlib import resources
from pathlib import Path

from ..errors import DriverUnavailableError
from ._common import (
    Progress,
    ServiceInfo,
    cache_root,
    file_lock,
    free_port,
    log_tail,
    pid_alive,
    port_open,
    remove_tree,
    spawn_daemon,
    stop_pid,
    wait_until,
)

__all__ = ["KAFKA_VERSION", "MARKER", "ensure_jars", "kafka_cache_dir", "start"]

KAFKA_VERSION = "4.1.1"
#: found in the broker's command line; guards against recycled pids
MARKER = "kafka.Kafka"
STARTED_MESSAGE = "Kafka Server started"
NODE_ID = 1

DEFAULT_HEAP_OPTS = "-Xms128m -Xmx512m"
DEFAULT_PERF_OPTS = (
    "-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 "
    "-XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true "
    # C1 only: ~35% less CPU to start on 2 cores; plenty for a development broker
    "-XX:TieredStopAtLevel=1"
)

LOG4J2_PROPERTIES = """\
# written by workbench.devservices.kafka: warnings and errors, plus the start-up line
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""

_INSTALL_JAVA = ("install Java 17+ and Maven, e.g. `apt-get install -y openjdk-17-jdk-headless "
                 "maven`, or set JAVA_HOME")


def kafka_cache_dir() -> Path:
    return cache_root() / f"kafka-{KAFKA_VERSION}"


def _pom_text() -> str:
    return resources.files(__package__).joinpath("kafka-pom.xml").read_text(encoding="utf-8")


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    found = shutil.which("java")
    if not found:
        raise DriverUnavailableError(
            f"Kafka needs Java 17+, and no `java` is on PATH (JAVA_HOME is "
            f"{home!r}): {_INSTALL_JAVA}.")
    return found


def _check_java_version(java: str) -> None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DriverUnavailableError(f"`{java} -version` failed ({exc}): {_INSTALL_JAVA}.") \
            from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise DriverUnavailableError(
            f"cannot tell the version of {java!r} ({(out.stderr or out.stdout).strip()!r}); "
            f"Kafka {KAFKA_VERSION} needs Java 17+: {_INSTALL_JAVA}.")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    if major < 17:
        raise DriverUnavailableError(
            f"Kafka {KAFKA_VERSION}'s broker needs Java 17+, {java!r} is Java {major}: "
            f"{_INSTALL_JAVA}.")


def random_kafka_uuid() -> str:
    """What ``kafka-storage.sh random-uuid`` prints: 16 random bytes, URL-safe base64 without
    padding, never starting with ``-``."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def server_properties(*, port: int, controller_port: int, log_dir: Path) -> str:
    """``server.properties`` for one combined broker+controller on 127.0.0.1 with single-node
    settings for the internal topics (offsets, transactions, share state)."""
    return f"""\
# written by workbench.devservices.kafka (see docs/services.md)
process.roles=broker,controller
node.id={NODE_ID}
controller.quorum.voters={NODE_ID}@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={log_dir}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
auto.create.topics.enable=true
delete.topic.enable=true
"""


def ensure_jars(progress: Progress | None = None) -> Path:
    """Make sure the broker's jars and the formatted template are in the cache; return the cache
    folder (``lib/`` and ``template/`` inside). The first call downloads from Maven Central."""
    say = progress or (lambda _m: None)
    cache = kafka_cache_dir()
    pom = _pom_text()
    stamp = hashlib.sha256(pom.encode()).hexdigest()
    marker = cache / ".complete"
    if _cache_ok(cache, marker, stamp):
        return cache
    with file_lock(cache.parent / f".kafka-{KAFKA_VERSION}.lock"):
        if _cache_ok(cache, marker, stamp):
            return cache
        java = _java()
        _check_java_version(java)
        mvn = shutil.which("mvn")
        if not mvn:
            raise DriverUnavailableError(
                f"Kafka's jars are not cached yet ({cache}/lib) and `mvn` is not on PATH to "
                f"download them from Maven Central: {_INSTALL_JAVA}.")
        cache.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        (cache / "pom.xml").write_text(pom, encoding="utf-8")
        tmp_lib = cache / f"lib.tmp-{os.getpid()}"
        remove_tree(tmp_lib)
        say(f"kafka: downloading Kafka {KAFKA_VERSION} jars from Maven Central into "
            f"{cache}/lib (first run only, about a minute)")
        t0 = time.monotonic()
        cmd = [mvn, "-B", "-q", "-f", str(cache / "pom.xml"), "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={tmp_lib}"]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                                 cwd=cache, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise DriverUnavailableError(
                f"`{shlex.join(cmd)}` did not finish in 30 minutes: is Maven Central reachable "
                f"(proxy settings in ~/.m2/settings.xml)?") from exc
        jars = sorted(tmp_lib.glob("*.jar")) if tmp_lib.is_dir() else []
        if res.returncode != 0 or not any(j.name.startswith("kafka_2.13-") for j in jars):
            output = "\n".join((res.stdout + res.stderr).splitlines()[-30:])
            remove_tree(tmp_lib)
            raise DriverUnavailableError(
                f"downloading Kafka's jars failed (exit {res.returncode}): "
                f"`{shlex.join(cmd)}`. Check that Maven Central is reachable; the last lines:\n"
                f"{output}")
        remove_tree(cache / "lib")
        os.replace(tmp_lib, cache / "lib")
        say(f"kafka: {len(jars)} jars downloaded in {time.monotonic() - t0:.1f} s; "
            f"formatting the template metadata directory")
        _format_template(java, cache)
        marker.write_text(stamp + "\n")
    return cache


def _cache_ok(cache: Path, marker: Path, stamp: str) -> bool:
    try:
        return (marker.read_text().strip() == stamp
                and (cache / "template" / "bootstrap.checkpoint").is_file()
                and any((cache / "lib").glob("kafka_2.13-*.jar")))
    except OSError:
        return False


def _format_template(java: str, cache: Path) -> None:
    """Run ``kafka.tools.StorageTool format`` once (static quorum: no ``--standalone``), keep
    its ``bootstrap.checkpoint`` (the metadata.version and feature levels) for every start."""
    work = cache / f"format.tmp-{os.getpid()}"
    remove_tree(work)
    work.mkdir(parents=True)
    (work / "server.properties").write_text(
        server_properties(port=19092, controller_port=19093, log_dir=work / "data"))
    (work / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
    cmd = [java, "-Xmx256m", "-XX:TieredStopAtLevel=1",
           f"-Dlog4j2.configurationFile={work / 'log4j2.properties'}",
           "-cp", str(cache / "lib" / "*"), "kafka.tools.StorageTool", "format",
           "-t", random_kafka_uuid(), "-c", str(work / "server.properties")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=work,
                         stdin=subprocess.DEVNULL)
    checkpoint = work / "data" / "bootstrap.checkpoint"
    if res.returncode != 0 or not checkpoint.is_file():
        output = "\n".join((res.stdout + res.stderr).splitlines()[-30:])
        remove_tree(work)
        raise DriverUnavailableError(
            f"formatting Kafka's storage failed (exit {res.returncode}): `{shlex.join(cmd)}`:\n"
            f"{output}")
    template = cache / "template"
    remove_tree(template)
    template.mkdir()
    shutil.copy2(checkpoint, template / "bootstrap.checkpoint")
    shutil.copy2(work / "data" / "meta.properties", template / "meta.properties.formatted")
    remove_tree(work)


def _prepare_log_dir(cache: Path, data: Path) -> str:
    """What ``StorageTool format`` would write, from the template; returns the cluster id."""
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy2(cache / "template" / "bootstrap.checkpoint", data / "bootstrap.checkpoint")
    cluster_id = random_kafka_uuid()
    (data / "meta.properties").write_text(
        "# written by workbench.devservices.kafka, as `kafka-storage.sh format` would\n"
        f"version=1\nnode.id={NODE_ID}\ncluster.id={cluster_id}\n"
        f"directory.id={random_kafka_uuid()}\n")
    return cluster_id


def start(state_dir: Path, *, timeout: float = 120.0,
          progress: Progress | None = None) -> ServiceInfo:
    """Start a broker whose files live in ``state_dir/kafka`` and wait until it serves."""
    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    cache = ensure_jars(progress)
    java = _java()
    home = state_dir / "kafka"
    remove_tree(home)
    data = home / "data"
    cluster_id = _prepare_log_dir(cache, data)
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    (home / "server.properties").write_text(
        server_properties(port=port, controller_port=controller_port, log_dir=data))
    (home / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
    log_file = state_dir / "kafka.log"
    log_file.write_text("")
    argv = [
        java,
        *shlex.split(os.environ.get("KAFKA_HEAP_OPTS") or DEFAULT_HEAP_OPTS),
        *shlex.split(os.environ.get("KAFKA_JVM_PERFORMANCE_OPTS") or DEFAULT_PERF_OPTS),
        f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={home}",
        *shlex.split(os.environ.get("KAFKA_OPTS", "")),
        "-cp", str(cache / "lib" / "*"), MARKER, str(home / "server.properties"),
    ]
    say(f"kafka: starting the broker on 127.0.0.1:{port}")
    pid = spawn_daemon(argv, log_file=log_file, cwd=home)
    try:
        wait_until(
            lambda: _log_has(log_file, STARTED_MESSAGE) and port_open(port),
            timeout=timeout, alive=lambda: pid_alive(pid, MARKER),
            what=f"the Kafka broker (pid {pid}, port {port})", log_file=log_file,
            hint=_hint_for(log_file))
        _metadata_check(port, timeout=max(10.0, timeout - (time.monotonic() - t0)),
                        log_file=log_file)
    except BaseException:
        stop_pid(pid, marker=MARKER, timeout=10)
        raise
    pgid = _pgid(pid)
    return ServiceInfo(
        name="kafka", url=f"kafka://127.0.0.1:{port}", pid=pid, port=port,
        data_dir=str(data), log_file=str(log_file),
        started_s=round(time.monotonic() - t0, 2),
        extra={"controller_port": controller_port, "cluster_id": cluster_id,
               "version": KAFKA_VERSION, "pgid": pgid, "marker": MARKER},
    )


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _log_has(path: Path, text: str) -> bool:
    try:
        return text in path.read_text(errors="replace")
    except OSError:
        return False


def _hint_for(log_file: Path) -> str:
    tail = log_tail(log_file, 200)
    if "UnsupportedClassVersionError" in tail:
        return f"Hint: Kafka {KAFKA_VERSION} needs Java 17+ ({_INSTALL_JAVA})."
    if "Address already in use" in tail:
        return "Hint: a port was taken between picking it and binding it; run up() again."
    return ""


def _metadata_check(port: int, *, timeout: float, log_file: Path) -> None:
    """A Metadata request through confluent-kafka, when it is installed (optional)."""
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 3})
    deadline = time.monotonic() + timeout
    while True:
        try:
            md = admin.list_topics(timeout=5)
            if md.brokers:
                return
        except Exception as exc:  # KafkaException: transient while the broker settles
            if time.monotonic() > deadline:
                raise DriverUnavailableError(
                    f"the Kafka broker on 127.0.0.1:{port} accepts connections but does not "
                    f"answer a Metadata request ({exc}). Last lines of {log_file}:\n"
                    f"{log_tail(log_file)}") from exc
        if time.monotonic() > deadline:
            raise DriverUnavailableError(
                f"the Kafka broker on 127.0.0.1:{port} reports no brokers in its metadata. "
                f"Last lines of {log_file}:\n{log_tail(log_file)}")
        time.sleep(0.2)
