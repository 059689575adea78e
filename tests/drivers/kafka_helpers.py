"""Helpers of the Kafka driver tests: a broker for the session, the pipelines and data the
tests share, and a worker entry point that runs a pipeline in a subprocess (crash and scale-out
tests kill it with ``kill -9``).

Broker: ``WORKBENCH_KAFKA_URL`` if set, else ``workbench.devservices.up(("kafka",))`` where that
exists, else a throwaway single-node KRaft broker started here from Apache Kafka's jars on Maven
Central (Java 17 and Maven needed; the jars are cached in ``~/.cache/workbench-tests``).

    python tests/drivers/kafka_helpers.py worker URL PIPELINE SUFFIX [--until end|forever]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

import workbench as wb  # noqa: E402

KAFKA_VERSION = "4.1.1"
HOWTO = ("Kafka tests need a broker: install Java 17 and Maven (apt-get install -y "
         "openjdk-17-jdk-headless maven) so the tests can start one from Maven Central, or run "
         "`workbench dev up`, or set WORKBENCH_KAFKA_URL=kafka://host:port.")


def register() -> None:
    """Make ``kafka://`` URLs resolve (until ``workbench/drivers/__init__.py`` does it)."""
    from workbench.drivers import _FACTORIES, register_driver
    from workbench.drivers.kafka import connect_kafka

    if "kafka" not in _FACTORIES:
        register_driver("kafka", connect_kafka)


# -- the broker --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>dev.workbench</groupId><artifactId>kafka-test-broker</artifactId><version>1</version>
<packaging>pom</packaging><dependencies>
<dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
<version>{v}</version></dependency>
<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
<version>2.24.3</version></dependency>
<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
<version>2.24.3</version></dependency></dependencies>
<build><pluginManagement><plugins><plugin><groupId>org.apache.maven.plugins</groupId>
<artifactId>maven-dependency-plugin</artifactId><version>3.6.1</version></plugin></plugins>
</pluginManagement></build></project>"""

SERVER = """process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
log.cleaner.dedupe.buffer.size=16777216
"""

LOG4J = """status=warn
appender.console.type=Console
appender.console.name=STDOUT
appender.console.layout.type=PatternLayout
appender.console.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
logger.started.name=kafka.server.KafkaRaftServer
logger.started.level=INFO
"""


class LocalBroker:
    """A throwaway single-node KRaft broker (Apache Kafka's jars from Maven Central)."""

    def __init__(self) -> None:
        if not shutil.which("java") or not shutil.which("mvn"):
            raise RuntimeError(HOWTO)
        self.lib = self._jars()
        self.dir = Path(tempfile.mkdtemp(prefix="wb-kafka-"))
        self.port, self.cport = free_port(), free_port()
        (self.dir / "server.properties").write_text(
            SERVER.format(port=self.port, cport=self.cport, data=self.dir / "data"))
        (self.dir / "log4j2.properties").write_text(LOG4J)
        self.proc: subprocess.Popen[bytes] | None = None
        started = time.monotonic()
        self._format()
        self.start()
        self.start_seconds = time.monotonic() - started

    @staticmethod
    def _jars() -> Path:
        lib = Path.home() / ".cache" / "workbench-tests" / f"kafka-{KAFKA_VERSION}-lib"
        if lib.is_dir() and any(lib.glob("kafka_2.13-*.jar")):
            return lib
        build = Path(tempfile.mkdtemp(prefix="wb-kafka-pom-"))
        (build / "pom.xml").write_text(POM.format(v=KAFKA_VERSION))
        tmp = lib.with_name(lib.name + f".tmp{os.getpid()}")
        subprocess.run(["mvn", "-B", "-q", "dependency:copy-dependencies",
                        "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
                       cwd=build, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lib.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(lib)
        except OSError:  # another session got there first
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(build, ignore_errors=True)
        return lib

    def _java(self, *args: str) -> list[str]:
        return ["java", "-cp", f"{self.lib}/*",
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}", *args]

    def _format(self) -> None:
        while True:
            cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            if not cid.startswith("-"):
                break
        subprocess.run(self._java("kafka.tools.StorageTool", "format", "-t", cid, "-c",
                                  str(self.dir / "server.properties")),
                       check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.dir / "broker.log", "ab")  # noqa: SIM115 - the broker keeps it
        cmd = self._java("-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                         "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
                         f"-Dkafka.logs.dir={self.dir}", "kafka.Kafka",
                         str(self.dir / "server.properties"))
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while b"Kafka Server started" not in (self.dir / "broker.log").read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.dir / "broker.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the Kafka broker did not start:\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def broker_url() -> tuple[str, LocalBroker | None]:
    """A running broker: (URL, the broker if started here)."""
    env = os.environ.get("WORKBENCH_KAFKA_URL")
    if env:
        return env, None
    try:
        from workbench.devservices import up  # type: ignore[attr-defined]
    except ImportError:
        up = None
    if up is not None:
        try:
            return str(up(("kafka",))["kafka"].url), None
        except Exception as exc:  # fall back to a private broker
            print(f"workbench.devservices could not start kafka: {exc}", file=sys.stderr)
    broker = LocalBroker()
    return broker.url, broker


_BROKER: dict[str, Any] = {}


def session_broker() -> str:
    """The URL of the broker every Kafka test of this process shares (started once; stopped
    at exit). Raises RuntimeError with a how-to when none can be started."""
    if "url" not in _BROKER:
        if "error" in _BROKER:
            raise RuntimeError(_BROKER["error"])
        try:
            import confluent_kafka  # noqa: F401
        except ImportError:
            _BROKER["error"] = "confluent-kafka is not installed: pip install 'workbench[kafka]'."
            raise RuntimeError(_BROKER["error"]) from None
        try:
            url, broker = broker_url()
        except Exception as exc:
            _BROKER["error"] = f"{HOWTO} ({exc})"
            raise RuntimeError(_BROKER["error"]) from exc
        _BROKER["url"], _BROKER["broker"] = url, broker
        if broker is not None:
            import atexit

            atexit.register(broker.destroy)
            print(f"\nKafka {KAFKA_VERSION} broker started in {broker.start_seconds:.1f} s at "
                  f"{url}", file=sys.stderr)
    return str(_BROKER["url"])


def with_options(url: str, **opts: Any) -> str:
    if not opts:
        return url
    q = "&".join(f"{k}={v}" for k, v in opts.items())
    return url + ("&" if "?" in url else "?") + q


class BouncingBroker:
    """A private single-node broker for fault tests (never the shared one): started through
    ``workbench.devservices`` in a temporary state directory, then killed (``kill -9``),
    stopped (``SIGSTOP``/``SIGCONT``) and started again on the same port and data by this test.
    Only the broker's own pid is ever signalled."""

    def __init__(self, state_dir: Path) -> None:
        from workbench.devservices import up

        self.state_dir = state_dir
        info = up(("kafka",), state_dir=state_dir)["kafka"]
        self.url, self.port, self.pid = info.url, info.port, info.pid
        self.log_file = Path(info.log_file)
        self.argv = [a.decode() for a in
                     Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0") if a]
        self.cwd = Path(os.readlink(f"/proc/{self.pid}/cwd"))
        self.starts: list[float] = []  # seconds each restart took

    def alive(self) -> bool:
        from workbench.devservices._common import pid_alive

        return pid_alive(self.pid, "kafka.Kafka")

    def kill(self) -> None:
        """``kill -9`` the broker and wait until it is gone."""
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Start the broker again (same command, port and data) and wait until it serves."""
        from workbench.devservices._common import port_open, spawn_daemon, wait_until

        t0 = time.monotonic()
        before = self.log_file.read_bytes().count(b"Kafka Server started")
        self.pid = spawn_daemon(self.argv, log_file=self.log_file, cwd=self.cwd)
        wait_until(lambda: self.log_file.read_bytes().count(b"Kafka Server started") > before
                   and port_open(self.port), timeout=180, alive=self.alive,
                   what=f"the restarted broker (pid {self.pid})", log_file=self.log_file)
        self.starts.append(time.monotonic() - t0)

    def destroy(self) -> None:
        if self.alive():
            self.resume()
            os.kill(self.pid, signal.SIGKILL)
        shutil.rmtree(self.state_dir, ignore_errors=True)


# -- data and pipelines ----------------------------------------------------------------------
BASE_TS = 1_700_000_000_000


def crash_inputs(n: int, seed: int = 1) -> dict[str, list[dict[str, Any]]]:
    """``n`` orders and ``n // 4`` payments, keyed by user. Orders come in rounds of 400: 300
    in time order, then 100 that are 10 s late: their window is the previous one, closed by
    stream time (grace 200 ms) but still in the window store (retention 10.2 s), so stream
    time alone decides that they go to ``late-<suffix>``. A restart lands inside a late
    stretch of some partition a quarter of the time; its first records are late only if the
    task's stream time was restored (it is committed with the positions)."""
    rng = random.Random(seed)
    orders = [{"user": f"u{rng.randrange(50)}",
               "ts": BASE_TS + 10 * i - (10_000 if i % 400 >= 300 else 0),
               "amount": rng.randrange(1, 10_000) / 100} for i in range(n)]
    payments = [{"user": f"u{rng.randrange(50)}", "ts": BASE_TS + 40 * i + 5,
                 "paid": rng.randrange(1, 100)} for i in range(n // 4)]
    return {"orders": orders, "payments": payments}


def crash_pipeline(suffix: str, emit: str = "close") -> wb.Pipeline:
    """Windowed + joined: per-user 10 s tumbling sums (final values) and the records that came
    too late for them, the late records of the same windows emitting on update, a stream-stream
    join of orders and payments within 50 ms, and per-user
    running counts of the joined pairs."""
    p = wb.Pipeline(f"crash-{suffix}" if emit == "close" else f"scale-{suffix}")
    orders = p.source(f"orders-{suffix}", key="user", time="ts", partitions=3)
    payments = p.source(f"payments-{suffix}", key="user", time="ts", partitions=3)
    per_second = (orders.group_by_key()
                        .window(wb.Tumbling("10s", grace="200ms"), emit=emit)
                        .agg(total=("amount", "sum"), n="count", name="per-second"))
    per_second.to(f"per-second-{suffix}")
    per_second.late.to(f"late-{suffix}")
    # emit-on-update windows have no recorded close time: after a restart only the restored
    # stream time tells which of their records are late
    (orders.group_by_key()
           .window(wb.Tumbling("10s", grace="200ms"), emit="update")
           .count(name="updates")
           .late.to(f"late-updates-{suffix}"))
    joined = orders.join(payments, within="50ms", name="paid",
                         combine=lambda o, pay: {**o, "paid": pay["paid"]})
    joined.to(f"joined-{suffix}")
    (joined.group_by_key().count(name="pairs").changes().to(f"pairs-{suffix}"))
    return p


def crash_sinks(suffix: str) -> list[str]:
    return [f"per-second-{suffix}", f"late-{suffix}", f"late-updates-{suffix}",
            f"joined-{suffix}", f"pairs-{suffix}"]


def scale_pipeline(suffix: str) -> wb.Pipeline:
    """The crash pipeline with windows that emit every update: an unbounded run's output is
    then complete without the end-of-input flush (scale-out workers run unbounded)."""
    return crash_pipeline(suffix, emit="update")


def fk_inputs(n: int = 3000, seed: int = 2) -> dict[str, list[dict[str, Any]]]:
    """Orders (``n`` updates of 400 order ids, each naming a user; some deleted) and users
    (``n // 3`` updates of 150 users; some deleted). Every value is unique (``v``), so a stale
    answer of a foreign-key join can never pass for a current one."""
    rng = random.Random(seed)
    orders: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {"order": f"o{rng.randrange(400)}", "ts": BASE_TS + 10 * i}
        if rng.random() >= 0.05:
            row.update(user=f"u{rng.randrange(160)}", qty=rng.randint(1, 9), v=i)
        orders.append(row)
    users: list[dict[str, Any]] = []
    for i in range(n // 3):
        row = {"user": f"u{rng.randrange(150)}", "ts": BASE_TS + 30 * i + 5}
        if rng.random() >= 0.05:
            row.update(country=f"C{rng.randrange(7)}", v=i)
        users.append(row)
    return {"orders": orders, "users": users}


def fk_pipeline(suffix: str) -> wb.Pipeline:
    """Orders joined with users by the user an order names (foreign-key joins, inner and left:
    subscription and response topics between the two tables' sub-topologies) and the same
    orders' changes joined with a global table of the users."""
    p = wb.Pipeline(f"fk-{suffix}")
    orders = p.table(f"orders-{suffix}", key="order", time="ts", partitions=3)
    users = p.table(f"users-{suffix}", key="user", time="ts", partitions=3)
    for how in ("inner", "left"):
        orders.join(users, on=lambda o: o.get("user"), how=how, name=f"fk-{how}").to(
            f"fk-{how}-{suffix}")
    everyone = p.global_table(f"gusers-{suffix}", key="user", time="ts", partitions=3)
    orders.changes().filter(lambda o: o is not None).join(
        everyone, on="user", how="left", name="g-left").to(f"g-left-{suffix}")
    return p


def fk_sinks(suffix: str) -> list[str]:
    return [f"fk-inner-{suffix}", f"fk-left-{suffix}", f"g-left-{suffix}"]


PIPELINES = {"crash": crash_pipeline, "scale": scale_pipeline, "fk": fk_pipeline}


def signals_pipeline(suffix: str | None = None) -> wb.Pipeline:
    """``tests/pipelines/signals_job.py`` with every name suffixed (``suffix``, else
    ``$WB_KAFKA_SIGNAL_SUFFIX``): the shared broker keeps topics and consumer groups between
    test runs. ``workbench run tests/drivers/kafka_helpers.py:signals_pipeline`` loads it."""
    from tests.pipelines import signals_job

    sfx = suffix if suffix is not None else os.environ["WB_KAFKA_SIGNAL_SUFFIX"]
    p = wb.Pipeline(f"{signals_job.APP}-{sfx}")
    clicks = p.source(f"{signals_job.SOURCE}-{sfx}", key="user", time="ts").peek(
        signals_job._slow, name="slow")
    per_user = (clicks.group_by_key()
                      .window(wb.Tumbling("15s", grace="2s"), emit="close")
                      .agg(total=("amount", "sum"), n="count", name="per-user"))
    per_user.to(f"per-user-{sfx}")
    per_user.late.to(f"per-user-late-{sfx}")
    sessions = (clicks.group_by_key()
                      .window(wb.Session("8s", grace="1s"))
                      .count(name="sessions"))
    sessions.to(f"sessions-{sfx}")
    return p


def membership_engine_class() -> type:
    """The engine class for several processes (it reacts to ``driver.poll_membership()``)."""
    from workbench.runtime.engine import Engine

    return Engine


def canonical(records: list[Any]) -> list[str]:
    """Records as sorted JSON lines (key, value, timestamp): equal lists mean the same
    records, each as often (no duplicate, no gap)."""
    out = []
    for r in records:
        key = list(r.key) if isinstance(r.key, tuple) else r.key
        out.append(json.dumps([key, r.value, r.timestamp], sort_keys=True, default=str))
    return sorted(out)


# -- worker --------------------------------------------------------------------------------------
def worker(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("pipeline", choices=sorted(PIPELINES))
    ap.add_argument("suffix")
    ap.add_argument("--until", default="end", choices=["end", "forever"])
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("workbench.drivers.kafka").setLevel(logging.INFO)
    register()
    pipeline = PIPELINES[args.pipeline](args.suffix)
    if args.until == "end":
        pipeline.run(args.url, until="end")
        return 0
    from workbench.drivers import connect

    engine = membership_engine_class()(pipeline.plan(), connect(args.url))
    signal.signal(signal.SIGTERM, lambda *_: engine.stop())
    try:
        engine.run_forever()
    finally:
        engine.close()
        engine.driver.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        sys.exit(worker(sys.argv[2:]))
    print(__doc__)
    sys.exit(2)
