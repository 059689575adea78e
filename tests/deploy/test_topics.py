"""The topics ``workbench deploy`` declares are the ones ``workbench run`` creates: the same
names, partition counts (checked against a real engine start) and settings (checked against the
real Kafka driver on a real broker)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from workbench.cli import main
from workbench.deploy.topics import resolve_topics
from workbench.drivers.memory import MemoryDriver
from workbench.errors import DefinitionError
from workbench.runtime.engine import Engine

from . import pipelines


def _engine_topics(plan: Any, driver: Any) -> dict[str, int]:
    Engine(plan, driver).start()
    return {t: driver.partitions(t) for t in driver.topics()}


@pytest.mark.parametrize(("default", "pinned", "override"), [
    (1, None, {}), (3, None, {}), (1, 4, {}), (2, None, {"clicks": 6, "profiles": 6}),
    (5, None, {"profiles": 2}),
])
def test_partitions_match_an_engine_start(default: int, pinned: int | None,
                                          override: dict[str, int]) -> None:
    plan = pipelines.shop(partitions=pinned).plan()
    topics = resolve_topics(plan, f"kafka://k:9092?partitions={default}", override)
    driver = MemoryDriver(default_partitions=default, durable_state=True)
    for name, count in override.items():  # sources that exist with these counts
        driver.create_topic(name, count, kind="source")
    engine = _engine_topics(plan, driver)
    assert {t.name: t.partitions for t in topics} == engine
    # every cluster topic of the plan, and the changelog of every store
    expected = {n for n, s in plan.topics.items() if s.kind != "preview"}
    assert {t.name for t in topics} == expected | {s.changelog for s in plan.stores}
    assert {t.name for t in topics if t.kind == "changelog"} == {s.changelog for s in plan.stores}


def test_settings_follow_the_kafka_driver_rules() -> None:
    plan = pipelines.pipeline.plan()
    topics = {t.name: t for t in resolve_topics(plan, "kafka://k:9092")}
    for t in topics.values():
        if t.kind == "changelog":
            assert t.config == {"cleanup.policy": "compact"}
        else:  # table sinks too: they keep their update history
            assert t.config == {"retention.ms": "-1"}
        assert t.replicas is None
    assert plan.topics["clicks-per-user"].compact  # a table sink ...
    assert "cleanup.policy" not in topics["clicks-per-user"].config  # ... is not compacted
    custom = resolve_topics(plan, "kafka://k:9092?retention_ms=default&replication=3")
    assert all(t.replicas == 3 for t in custom)
    assert all("retention.ms" not in t.config for t in custom)


def test_bad_overrides_are_clear_errors() -> None:
    plan = pipelines.pipeline.plan()
    with pytest.raises(DefinitionError, match=r"'click' is not a source topic.*Did you mean"):
        resolve_topics(plan, "kafka://k:9092", {"click": 3})
    with pytest.raises(DefinitionError, match="must be >= 1"):
        resolve_topics(plan, "kafka://k:9092", {"clicks": 0})
    with pytest.raises(DefinitionError, match="partitions='x'"):
        resolve_topics(plan, "kafka://k:9092?partitions=x")


# -- against a real broker ------------------------------------------------------------------
def _describe(kafka_url: str, names: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({"bootstrap.servers": kafka_url.split("://", 1)[1].split("?")[0]})
    meta = admin.list_topics(timeout=30).topics
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
    out = {}
    for res, fut in admin.describe_configs(resources).items():
        cfg = {k: v.value for k, v in fut.result(timeout=30).items()}
        out[res.name] = (len(meta[res.name].partitions), cfg)
    return out


@pytest.mark.kafka
@pytest.mark.parametrize("options", ["partitions=2", "partitions=3&retention_ms=86400000"])
def test_kafkatopics_match_what_the_kafka_driver_creates(kafka_url: str, options: str) -> None:
    """Start the engine on a real broker (the driver creates every topic), then compare each
    topic's partitions, cleanup.policy and retention.ms with what deploy declares."""
    from workbench.drivers.kafka import KafkaDriver

    sfx = uuid.uuid4().hex[:8]
    # topic names are global on the shared broker: unique ones for this run
    plan = pipelines.shop(name=f"deploy-{sfx}", sfx=f"-{sfx}").plan()
    url = f"{kafka_url}?{options}"
    declared = {t.name: t for t in resolve_topics(plan, url)}
    driver = KafkaDriver(url)
    try:
        Engine(plan, driver).start()
    finally:
        driver.end_run()
        driver.close()
    found = _describe(kafka_url, list(declared))
    for name, t in declared.items():
        count, cfg = found[name]
        assert count == t.partitions, name
        assert cfg["cleanup.policy"] == t.config.get("cleanup.policy", "delete"), name
        # without a retention.ms of its own a topic has the broker's default (7 days)
        assert cfg["retention.ms"] == t.config.get("retention.ms", "604800000"), name


@pytest.mark.kafka
def test_wait_topics_waits_checks_counts_and_names_what_is_missing(
        kafka_url: str, tmp_path: Any, capsys: Any) -> None:
    from workbench.drivers.kafka import KafkaDriver

    sfx = uuid.uuid4().hex[:8]
    module = tmp_path / f"pipe_{sfx}.py"
    module.write_text(
        "import workbench as wb\n"
        f"pipeline = wb.Pipeline('wait-{sfx}')\n"
        f"s = pipeline.source('in-{sfx}', key='k')\n"
        f"s.group_by('g').count(name='n').to('out-{sfx}')\n")
    target = f"{module}:pipeline"
    url = f"{kafka_url}?partitions=2"
    # nothing exists yet: times out naming the missing topics
    assert main(["deploy", "wait-topics", target, "--driver", url, "--timeout", "1",
                 "--interval", "0.2"]) == 1
    err = capsys.readouterr().err
    assert f"'in-{sfx}'" in err and f"'wait-{sfx}-n-store-changelog'" in err
    # the engine creates them: found
    from workbench.cli import load_pipeline

    driver = KafkaDriver(url)
    try:
        Engine(load_pipeline(target).plan(), driver).start()
    finally:
        driver.end_run()
        driver.close()
    assert main(["deploy", "wait-topics", target, "--driver", url, "--timeout", "30"]) == 0
    # a source declared with another count than it has: a clear error, not a wait
    assert main(["deploy", "wait-topics", target, "--driver", url, "--partitions",
                 f"in-{sfx}=4"]) == 1
    err = capsys.readouterr().err
    assert f"'in-{sfx}' has 2, needs 4" in err


def test_deploy_topics_prints_the_table(root: Any, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.chdir(root)
    url = "kafka://k:9092?partitions=4"
    assert main(["deploy", "topics", "tests/deploy/pipelines.py:pipeline", "--driver", url,
                 "--partitions", "clicks=8"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    expected = resolve_topics(pipelines.pipeline.plan(), url, {"clicks": 8})
    assert [(r[0], r[1], int(r[2])) for r in rows] == [(t.name, t.kind, t.partitions)
                                                       for t in expected]
    assert rows[0][:3] == ["clicks", "source", "8"] and rows[0][3] == "retention.ms=-1"
