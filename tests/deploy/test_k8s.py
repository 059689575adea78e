"""``workbench deploy k8s``: every generated manifest validates against the Kubernetes API
schemas and the CRDs' published schemas (see ``validate.py``), the topics are the plan's, the
workload, probes, ports, arguments and grace period are what ``workbench run`` needs, and the
driver URL never lands in a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from workbench._env import in_ci
from workbench.cli import main
from workbench.deploy.k8s import HTTP_PORT, K8sOptions, termination_grace_seconds
from workbench.deploy.topics import resolve_topics

from . import pipelines

TARGET = "tests/deploy/pipelines.py:pipeline"
ODD = "tests/deploy/pipelines.py:odd"
KAFKA = "kafka://my-cluster-kafka-bootstrap.kafka.svc:9092?partitions=3"
PG = "postgresql://app:s3cret@db.example:5432/shop"


@pytest.fixture(autouse=True)
def _at_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root)  # TARGETs and the build context are relative to the project root


@pytest.fixture(scope="module")
def validate() -> Any:
    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        msg = ("kubernetes-validate is not installed: pip install -e '.[dev]' (it ships the "
               "Kubernetes API schemas the manifests are checked against)")
        if in_ci():
            pytest.fail(msg + " (CI=true: not skipping)")
        pytest.skip(msg)
    from . import validate as module

    return module


def generate(out: Path, *args: str, target: str = TARGET, driver: str = KAFKA) -> Path:
    code = main(["deploy", "k8s", target, "--driver", driver, "--image",
                 "registry.example/shop:1.0", "--out", str(out), *args])
    assert code == 0
    return out


CASES = {
    "kafka-statefulset-keda": (KAFKA, TARGET, ["--replicas", "3", "--keda", "--write-secret"]),
    "kafka-deployment-2-workers": (KAFKA, TARGET, ["--replicas", "2", "--cpu", "2",
                                                   "--namespace", "streams", "--keda"]),
    "kafka-forced-deployment": (KAFKA, TARGET, ["--workload", "deployment", "--workers", "1"]),
    "kafka-job": (KAFKA, TARGET, ["--until", "end", "--write-secret"]),
    "kafka-odd-names": (KAFKA + "&replication=3&retention_ms=86400000", ODD,
                        ["--kafka-cluster", "prod", "--topic-namespace", "kafka",
                         "--partitions", "Raw_Events=12"]),
    "postgres-deployment": (PG, TARGET, ["--replicas", "2", "--write-secret"]),
    "postgres-job": (PG, TARGET, ["--until", "end", "--cpu", "500m", "--memory", "512Mi"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_manifest_validates(case: str, tmp_path: Path, validate: Any) -> None:
    driver, target, args = CASES[case]
    out = generate(tmp_path, *args, target=target, driver=driver)
    count = validate.validate_dir(out)
    files = validate.load_dir(out)
    assert count == sum(len(v) for v in files.values()) >= 2
    if driver.startswith("postgresql"):
        assert "kafkatopics.yaml" not in files  # the same, without topics
        assert not any(o["kind"] == "ScaledObject" for objs in files.values() for o in objs)


def test_the_validator_rejects_what_an_api_server_rejects(tmp_path: Path, validate: Any) -> None:
    """Each CRD and built-in check can fail (a validator that accepts everything proves
    nothing)."""
    import copy

    files = validate.load_dir(generate(tmp_path, "--keda"))

    def rejected(fname: str, change: Any, match: str) -> None:
        obj = copy.deepcopy(files[fname][0])
        change(obj)
        with pytest.raises(validate.ManifestError, match=match):
            validate.validate_object(obj, ("latest",))

    rejected("kafkatopics.yaml", lambda o: o["spec"].update(partitionz=3), "partitionz")
    rejected("kafkatopics.yaml", lambda o: o["spec"].update(partitions=0), "minimum of 1")
    rejected("kafkatopics.yaml", lambda o: o["metadata"].update(lables={}), "lables")
    rejected("podmonitor.yaml",
             lambda o: o["spec"]["podMetricsEndpoints"][0].update(interval="soon"), "soon")
    rejected("podmonitor.yaml",
             lambda o: o["spec"]["podMetricsEndpoints"][0].update(intervall="1s"), "intervall")
    rejected("scaledobject.yaml", lambda o: o["spec"]["scaleTargetRef"].pop("name"), "name")
    rejected("scaledobject.yaml",
             lambda o: o["spec"]["triggers"][0]["metadata"].update(lagThreshold=5), "string")
    rejected("statefulset.yaml", lambda o: o["spec"].update(replicas="3"), "integer")
    rejected("statefulset.yaml",
             lambda o: o["spec"]["template"]["spec"]["containers"][0].update(livenesProbe={}),
             "livenesProbe")
    rejected("statefulset.yaml", lambda o: o["spec"]["template"]["spec"]["containers"][0]
             ["livenessProbe"]["httpGet"].update(port="metrics"), "does not declare")
    rejected("statefulset.yaml",
             lambda o: o["spec"]["selector"]["matchLabels"].update(app="x"), "selector")
    rejected("service.yaml", lambda o: o["metadata"].update(name="Shop_1"), "DNS-1123")
    rejected("service.yaml", lambda o: o["metadata"]["labels"].update({"a/b/c": "x"}), "prefix")


def test_topics_in_the_manifests_are_the_plans(tmp_path: Path, validate: Any) -> None:
    files = validate.load_dir(generate(tmp_path, "--partitions", "clicks=6"))
    plan = pipelines.pipeline.plan()
    declared = {}
    for obj in files["kafkatopics.yaml"]:
        spec = obj["spec"]
        declared[spec.get("topicName", obj["metadata"]["name"])] = (
            spec["partitions"], spec.get("config", {}), obj["metadata"]["labels"])
    expected = {n for n, s in plan.topics.items() if s.kind != "preview"}
    assert set(declared) == expected | {s.changelog for s in plan.stores}
    for t in resolve_topics(plan, KAFKA, {"clicks": 6}):
        partitions, config, labels = declared[t.name]
        assert (partitions, config) == (t.partitions, t.config)
        assert labels["strimzi.io/cluster"] == "my-cluster"
        assert labels["workbench/topic-kind"] == t.kind
        if t.kind == "changelog":
            assert config == {"cleanup.policy": "compact"}
    assert declared["clicks"][0] == 6 and declared["profiles"][0] == 3
    assert declared["enriched"][0] == 2  # to(..., partitions=2)
    assert declared["shop-clicks-per-user-store-changelog"][0] == 6  # its task count


def test_topic_names_kubernetes_cannot_hold_keep_their_kafka_name(tmp_path: Path,
                                                                   validate: Any) -> None:
    files = validate.load_dir(generate(tmp_path, "--kafka-cluster", "c", target=ODD))
    by_topic = {o["spec"].get("topicName", o["metadata"]["name"]): o
                for o in files["kafkatopics.yaml"]}
    assert set(by_topic) == {"Raw_Events", "per_user_TOTALS", "Odd_Names-Per_User-repartition",
                             "Odd_Names-Per_User-store-changelog"}
    assert all(o["metadata"]["name"].islower() for o in by_topic.values())
    # the pipeline's name became a valid object name
    assert files["statefulset.yaml"][0]["metadata"]["name"].startswith("odd-names-")


def _workload(files: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (obj,) = [o for objs in files.values() for o in objs
              if o["kind"] in ("StatefulSet", "Deployment", "Job")]
    return obj


def test_pod_runs_workbench_run_with_probes_ports_and_grace(tmp_path: Path,
                                                             validate: Any) -> None:
    files = validate.load_dir(generate(tmp_path, "--replicas", "3", "--commit-interval", "1s"))
    sts = _workload(files)
    assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 3
    pod = sts["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["run", "tests/deploy/pipelines.py:pipeline", "--driver",
                         "$(WORKBENCH_DRIVER)", "--until", "forever", "--workers", "auto",
                         "--http", f"0.0.0.0:{HTTP_PORT}", "--commit-interval", "1s"]
    assert c["ports"] == [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    # a CPU limit of one core: --workers auto runs one worker, so the pod's stable name can be
    # the Kafka driver's static member id
    assert c["resources"]["limits"]["cpu"] == "1" == c["resources"]["requests"]["cpu"]
    env = {e["name"]: e for e in c["env"]}
    assert env["WORKBENCH_DRIVER"]["value"] == "$(WORKBENCH_DRIVER_URL)&instance=$(POD_NAME)"
    assert env["WORKBENCH_DRIVER_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "shop-driver", "key": "url"}}
    # SIGTERM: commit interval + a batch in hand bounded by the transaction timeout + closing
    assert pod["terminationGracePeriodSeconds"] == 1 + 10 + 5
    (init,) = pod["initContainers"]
    assert init["args"][:3] == ["deploy", "wait-topics", "tests/deploy/pipelines.py:pipeline"]
    assert files["podmonitor.yaml"][0]["spec"]["podMetricsEndpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "15s"}]
    services = {s["metadata"]["name"]: s for s in files["service.yaml"]}
    assert services["shop"]["spec"]["ports"][0]["targetPort"] == "http"
    assert services["shop-headless"]["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == "shop-headless"


def test_workload_kind_follows_the_workers_and_the_driver(tmp_path: Path, validate: Any,
                                                          capsys: Any) -> None:
    two = _workload(validate.load_dir(generate(tmp_path / "a", "--cpu", "2")))
    assert two["kind"] == "Deployment"  # two workers per pod cannot share one member id
    assert {e["name"] for e in two["spec"]["template"]["spec"]["containers"][0]["env"]} == {
        "WORKBENCH_DRIVER", "WORKBENCH_LOG_LEVEL"}
    pg = _workload(validate.load_dir(generate(tmp_path / "b", driver=PG)))
    assert pg["kind"] == "Deployment" and "initContainers" not in pg["spec"]["template"]["spec"]
    job = _workload(validate.load_dir(generate(tmp_path / "c", "--until", "end")))
    assert job["kind"] == "Job"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][4:6] == ["--until", "end"]
    assert "readinessProbe" not in job["spec"]["template"]["spec"]["containers"][0]
    assert main(["deploy", "k8s", TARGET, "--driver", KAFKA, "--image", "i", "--out",
                 str(tmp_path / "d"), "--workload", "statefulset", "--workers", "2"]) == 1
    assert "static member id" in capsys.readouterr().err


def test_regenerating_removes_files_it_no_longer_writes(tmp_path: Path) -> None:
    generate(tmp_path)
    (tmp_path / "mine.yaml").write_text("kind: ConfigMap\n")
    assert (tmp_path / "statefulset.yaml").exists()
    generate(tmp_path, "--workload", "deployment")
    assert not (tmp_path / "statefulset.yaml").exists()
    assert (tmp_path / "deployment.yaml").exists() and (tmp_path / "mine.yaml").exists()


def test_the_driver_url_and_its_secrets_stay_out_of_the_files(tmp_path: Path,
                                                              capsys: Any) -> None:
    url = ("kafka://my-cluster-kafka-bootstrap:9093?sasl.username=app&sasl.password=hunter2"
           "&security.protocol=SASL_SSL")
    generate(tmp_path / "k", "--keda", driver=url)
    generate(tmp_path / "p", driver=PG)
    printed = capsys.readouterr().out
    for path in [*(tmp_path / "k").iterdir(), *(tmp_path / "p").iterdir()]:
        text = path.read_text()
        assert "hunter2" not in text and "s3cret" not in text, path
        assert "sasl.username" not in text and "db.example" not in text, path
    assert "hunter2" not in printed and "s3cret" not in printed
    assert "kubectl create secret generic shop-driver --from-literal=url=" in printed
    # only when asked for, in its own file
    generate(tmp_path / "s", "--write-secret", driver=url)
    (secret,) = [p for p in (tmp_path / "s").iterdir() if "hunter2" in p.read_text()]
    assert secret.name == "secret.yaml"


def test_grace_period_matches_the_shutdown_path() -> None:
    def grace(driver: str, **kw: Any) -> int:
        return termination_grace_seconds(K8sOptions("p.py", driver, "img", **kw))

    assert grace(KAFKA) == 16  # 0.1 s commit interval + 10 s transaction timeout + 5 s
    assert grace(KAFKA + "&transaction_timeout_ms=30000", commit_interval="2s") == 37
    assert grace(PG) == 16
    assert grace(PG, grace_period=90) == 90


@pytest.mark.parametrize(("args", "message"), [
    (["--driver", "memory://"], "supports kafka:// and postgresql://"),
    (["--driver", "git:///tmp/repo"], "single writer"),
    (["--driver", "kafka://broker:9092"], "--kafka-cluster"),
    (["--driver", KAFKA, "--partitions", "clickz=3"], "Did you mean 'clicks'"),
    (["--driver", KAFKA, "--until", "end", "--replicas", "2"], "one bounded process"),
    (["--driver", PG, "--keda"], "--keda scales"),
    (["--driver", KAFKA, "--workers", "zero"], "--workers 'zero'"),
    (["--driver", KAFKA, "--cpu", "lots"], "--cpu 'lots'"),
    (["--driver", KAFKA, "--name", "Shop_1"], "--name 'Shop_1'"),
    (["--driver", KAFKA, "--namespace", "a.b"], "--namespace 'a.b'"),
])
def test_bad_requests_are_clear_errors(args: list[str], message: str, tmp_path: Path,
                                       capsys: Any) -> None:
    code = main(["deploy", "k8s", TARGET, "--image", "i", "--out", str(tmp_path), *args])
    assert code == 1
    assert message in capsys.readouterr().err


def test_target_outside_the_build_context_is_refused(tmp_path: Path, capsys: Any) -> None:
    pipe = tmp_path / "p.py"
    pipe.write_text("from tests.deploy.pipelines import pipeline\n")
    assert main(["deploy", "k8s", f"{pipe}:pipeline", "--driver", KAFKA, "--image", "i",
                 "--out", str(tmp_path / "o")]) == 1
    assert "outside the build context" in capsys.readouterr().err
