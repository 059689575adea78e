"""workbench.devservices: a real Kafka broker and a real PostgreSQL, started through ``up()``.

The unmarked tests need no service. The ``kafka`` / ``postgres`` tests start the services
(skipped with a how-to-enable message when Java/Maven or PostgreSQL are missing; failed on CI).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from workbench.devservices import (
    SERVICES,
    ServiceInfo,
    _common,
    add_cli,
    down,
    kafka,
    postgres,
    pytest_fixtures,
    status,
    up,
)
from workbench.devservices.pytest_fixtures import in_ci, require_module
from workbench.errors import DefinitionError, DriverUnavailableError

ROOT = Path(__file__).resolve().parents[2]

# the session fixtures (tests/conftest.py may expose the same ones; both share one service)
kafka_service = pytest_fixtures.kafka_service
kafka_url = pytest_fixtures.kafka_url
kafka_bootstrap = pytest_fixtures.kafka_bootstrap
postgres_service = pytest_fixtures.postgres_service
postgres_url = pytest_fixtures.postgres_url


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="workbench")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = int(args.func(args))
    return code, capsys.readouterr().out


# --------------------------------------------------------------------------- no service needed


def test_unknown_service_is_a_definition_error(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="kafka, postgres"):
        up(("kafak",), tmp_path)


def test_status_of_an_empty_state_dir(tmp_path: Path) -> None:
    assert status(tmp_path) == {name: None for name in SERVICES}


def test_stale_state_is_not_running_and_down_cleans_it(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    info = ServiceInfo(name="kafka", url="kafka://127.0.0.1:1", pid=dead.pid, port=1,
                       data_dir=str(tmp_path / "kafka" / "data"),
                       log_file=str(tmp_path / "kafka.log"), started_s=1.0,
                       extra={"marker": "kafka.Kafka"})
    (tmp_path / "kafka" / "data").mkdir(parents=True)
    _common.write_state(tmp_path, info)
    assert _common.read_state(tmp_path, "kafka") == info
    assert status(tmp_path)["kafka"] is None
    down(state_dir=tmp_path)
    assert not (tmp_path / "kafka.json").exists()
    assert not (tmp_path / "kafka").exists()


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WORKBENCH_DEV_DIR", str(tmp_path / "x"))
    assert _common.default_state_dir() == (tmp_path / "x").resolve()
    monkeypatch.delenv("WORKBENCH_DEV_DIR")
    monkeypatch.chdir(ROOT / "tests")
    assert _common.default_state_dir() == ROOT / ".workbench" / "dev"


def test_free_ports_are_free_and_not_the_defaults() -> None:
    ports = {_common.free_port() for _ in range(20)}
    assert not ports & {5432, 9092, 9093}
    assert not any(_common.port_open(p) for p in ports)


def test_daemon_outlives_its_launcher_and_stops(tmp_path: Path) -> None:
    log = tmp_path / "d.log"
    pid = _common.spawn_daemon(["sh", "-c", "echo hello; exec sleep 60"], log_file=log,
                               cwd=tmp_path)
    try:
        assert _common.pid_alive(pid, "sleep 60")
        assert not _common.pid_alive(pid, "something else")
        assert os.getsid(pid) != os.getsid(0)  # its own session
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # not our child: nothing to reap
        deadline = time.monotonic() + 10
        while "hello" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "hello" in log.read_text()
    finally:
        assert _common.stop_pid(pid, marker="sleep 60", timeout=5)
    assert not _common.pid_alive(pid)
    assert not _common.stop_pid(pid, marker="sleep 60")


def test_a_port_that_never_opens_quotes_the_log(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    with pytest.raises(DriverUnavailableError, match="did not become ready") as err:
        _common.wait_until(lambda: _common.port_open(_common.free_port()), timeout=0.3,
                           alive=lambda: True, what="the service", log_file=log)
    text = str(err.value)
    assert "line 99" in text and "line 70" in text and "line 69" not in text


def test_a_process_that_dies_quotes_the_log(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    pid = _common.spawn_daemon(["sh", "-c", "echo boom: bad config; exit 3"], log_file=log,
                               cwd=tmp_path)
    with pytest.raises(DriverUnavailableError, match="exited during start-up") as err:
        _common.wait_until(lambda: False, timeout=30, alive=lambda: _common.pid_alive(pid),
                           what="the service", log_file=log)
    assert "boom: bad config" in str(err.value)


def test_kafka_without_java_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))  # a cold cache
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(DriverUnavailableError, match="Java 17") as err:
        up(("kafka",), tmp_path / "state")
    assert "apt-get install" in str(err.value)


def test_kafka_without_maven_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java here")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(os.path.realpath(java))
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(DriverUnavailableError, match="`mvn` is not on PATH"):
        up(("kafka",), tmp_path / "state")


def test_postgres_missing_without_install_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WORKBENCH_PG_BINDIR", str(tmp_path / "nowhere"))
    assert postgres.find_bindir() is None
    with pytest.raises(DriverUnavailableError, match="apt-get install -y postgresql"):
        up(("postgres",), tmp_path / "state", install=False)


def test_kafka_uuids_look_like_kafkas() -> None:
    ids = {kafka.random_kafka_uuid() for _ in range(200)}
    assert len(ids) == 200
    for text in ids:
        assert len(text) == 22 and not text.startswith("-")
        assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_server_properties_are_single_node(tmp_path: Path) -> None:
    text = kafka.server_properties(port=1234, controller_port=1235, log_dir=tmp_path)
    props = dict(line.split("=", 1) for line in text.splitlines()
                 if line and not line.startswith("#"))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:1234,CONTROLLER://127.0.0.1:1235"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:1235"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr", "default.replication.factor"):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_cli_status_and_down_on_an_empty_state_dir(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run_cli(["dev", "status", "--state-dir", str(tmp_path)], capsys)
    assert code == 0
    assert out.splitlines() == ["kafka      not running", "postgres   not running",
                                "registry   not running"]
    code, out = _run_cli(["dev", "down", "--only", "kafka", "--state-dir", str(tmp_path)],
                         capsys)
    assert (code, out) == (0, "kafka      not running\n")


# --------------------------------------------------------------------------- PostgreSQL


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` with psycopg if installed, else with the ``psql`` client."""
    try:
        import psycopg
    except ImportError:
        psql = shutil.which("psql") or str((postgres.find_bindir() or Path("/nonexistent"))
                                           / "psql")
        res = subprocess.run([psql, url, "-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                              "-c", sql], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return [tuple(line.split("\t")) for line in res.stdout.splitlines() if line]
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql)
        return [tuple(str(v) for v in row) for row in cur.fetchall()] if cur.description else []


@pytest.mark.postgres
def test_postgres_up_is_idempotent_and_serves_queries(postgres_service: ServiceInfo,
                                                      postgres_url: str) -> None:
    info = postgres_service
    assert info.url == postgres_url
    assert info.url == f"postgresql://postgres@127.0.0.1:{info.port}/postgres"
    assert info.port not in (5432,)
    again = up(("postgres",))["postgres"]
    assert again.already_running
    assert (again.url, again.pid, again.data_dir) == (info.url, info.pid, info.data_dir)
    assert status()["postgres"] == dataclasses.replace(info, already_running=False)
    table = f"t_{uuid.uuid4().hex[:8]}"
    _query(postgres_url, f"CREATE TABLE {table} (k text PRIMARY KEY, v int)")
    _query(postgres_url, f"INSERT INTO {table} VALUES ('a', 1), ('b', 2)")
    assert _query(postgres_url, f"SELECT k, v FROM {table} ORDER BY k") == [("a", "1"), ("b", "2")]
    assert _query(postgres_url, "SHOW max_prepared_transactions") == [("20",)]
    _query(postgres_url, f"DROP TABLE {table}")


@pytest.mark.postgres
def test_a_second_process_finds_the_running_server(postgres_service: ServiceInfo,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "workbench.devservices", "up", "--only",
                          "postgres"], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == (f"postgres   {postgres_service.url}  "
                          f"(already running, pid {postgres_service.pid})\n")
    code, out = _run_cli(["dev", "status"], capsys)
    assert code == 0 and f"postgres   {postgres_service.url}  (pid {postgres_service.pid}" in out


@pytest.mark.postgres
def test_postgres_down_stops_it_and_removes_its_data(postgres_service: ServiceInfo,
                                                     tmp_path: Path) -> None:
    # a second, private cluster: the session's one stays up for the other tests
    state = tmp_path / "dev"
    info = up(("postgres",), state, install=in_ci())["postgres"]
    assert not info.already_running and info.port != postgres_service.port
    assert _query(info.url, "SELECT 41 + 1") == [("42",)]
    assert Path(info.data_dir).is_dir()
    down(("postgres",), state)
    assert not _common.pid_alive(info.pid)
    assert not Path(info.data_dir).exists()
    assert status(state)["postgres"] is None
    assert Path(info.log_file).is_file()  # logs stay for post-mortems


# --------------------------------------------------------------------------- Kafka


@pytest.mark.kafka
def test_kafka_up_is_idempotent(kafka_service: ServiceInfo, kafka_url: str,
                                kafka_bootstrap: str) -> None:
    assert kafka_url == f"kafka://127.0.0.1:{kafka_service.port}" == kafka_service.url
    assert kafka_bootstrap == f"127.0.0.1:{kafka_service.port}"
    assert kafka_service.port not in (9092, 9093)
    again = up(("kafka",))["kafka"]
    assert again.already_running
    assert (again.url, again.pid) == (kafka_service.url, kafka_service.pid)
    state = json.loads((Path(kafka_service.log_file).parent / "kafka.json").read_text())
    assert state["pid"] == kafka_service.pid and state["url"] == kafka_url


@pytest.mark.kafka
def test_kafka_transactions_read_committed(kafka_bootstrap: str) -> None:
    ck = require_module("confluent_kafka", "`.venv/bin/pip install confluent-kafka` "
                                           "(the `kafka` extra)")
    admin_mod = require_module("confluent_kafka.admin", "`pip install confluent-kafka`")
    topic = f"wb-tx-{uuid.uuid4().hex[:8]}"
    admin = admin_mod.AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([admin_mod.NewTopic(topic, 1, 1)]).values():
        future.result(30)

    producer = ck.Producer({"bootstrap.servers": kafka_bootstrap,
                            "transactional.id": f"wb-test-{topic}", "log_level": 3})
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic, key=b"k1", value=b"committed")
    producer.commit_transaction(60)
    producer.begin_transaction()
    producer.produce(topic, key=b"k2", value=b"aborted")
    producer.flush(30)
    producer.abort_transaction(60)
    producer.begin_transaction()
    producer.produce(topic, key=b"k3", value=b"committed too")
    producer.commit_transaction(60)

    def consume(isolation: str, want: int) -> list[bytes]:
        consumer = ck.Consumer({"bootstrap.servers": kafka_bootstrap,
                                "group.id": f"wb-{isolation}-{topic}",
                                "isolation.level": isolation, "auto.offset.reset": "earliest",
                                "enable.auto.commit": False, "log_level": 3})
        consumer.subscribe([topic])
        values: list[bytes] = []
        deadline = time.monotonic() + 60
        try:
            while len(values) < want and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                assert msg.error() is None, msg.error()
                values.append(msg.value())
            # nothing more arrives
            extra = consumer.poll(1.0)
            assert extra is None or extra.error() is not None, extra.value()
        finally:
            consumer.close()
        return values

    assert consume("read_committed", 2) == [b"committed", b"committed too"]
    assert consume("read_uncommitted", 3) == [b"committed", b"aborted", b"committed too"]


# --------------------------------------------------------------------------- Schema Registry


@pytest.mark.registry
def test_registry_up_is_idempotent_and_serves_the_ccompat_api(
        registry_service: ServiceInfo, registry_url: str) -> None:
    import urllib.request

    assert registry_url.endswith("/apis/ccompat/v7") and registry_service.name == "registry"
    again = up(("registry",))["registry"]
    assert again.already_running and again.pid == registry_service.pid
    with urllib.request.urlopen(registry_url + "/subjects", timeout=10) as resp:
        assert isinstance(json.loads(resp.read()), list)
    assert status()["registry"] is not None


def test_registry_without_java_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    from workbench.devservices import registry

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(registry, "app_dir", lambda: tmp_path / "cache")
    with pytest.raises(DriverUnavailableError, match="mvn"):
        up(("registry",), tmp_path / "state")


def test_a_process_seen_while_it_execs_is_alive_with_its_marker() -> None:
    # /proc/PID/cmdline reads empty for a moment during exec: a check landing there must
    # still see the daemon (CI once failed to stop one that had just exec'd)
    for _ in range(30):
        proc = subprocess.Popen(["sh", "-c", "echo x >/dev/null; exec sleep 30"])
        try:
            assert all(_common.pid_alive(proc.pid, "sleep 30") for _ in range(100))
        finally:
            proc.kill()
            proc.wait()
