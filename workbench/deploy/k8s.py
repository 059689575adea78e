"""Kubernetes manifests generated from a pipeline's plan.

:func:`render_k8s` returns ``{file name: [object, ...]}``; :func:`write_k8s` writes them as YAML
with a generated ``Tiltfile`` (:mod:`workbench.deploy.tilt`). What is generated and why:

* ``kafkatopics.yaml`` (kafka only): a Strimzi ``KafkaTopic`` for every source, sink,
  repartition and changelog topic, with the partitions and settings the engine and the Kafka
  driver would give it (:mod:`workbench.deploy.topics`).
* ``statefulset.yaml`` or ``deployment.yaml``: the long-running pipeline, ``workbench run TARGET
  --driver $(WORKBENCH_DRIVER) --until forever --workers auto --http 0.0.0.0:8080``. On Kafka,
  when each pod runs exactly one worker (``--workers 1``, or ``auto`` under a CPU limit of at most
  one core), a **StatefulSet** gives every pod a stable name that becomes the Kafka driver's
  ``instance`` (static group membership and a stable ``transactional.id``): a restarted pod
  takes its own partitions back without a rebalance, so no other pod gives up tasks and restores
  their state from changelogs, and its predecessor's open transaction is fenced at once instead
  of after the transaction timeout. Otherwise (several workers per pod would share one instance
  id; PostgreSQL leases partitions with advisory locks and needs no identity) a **Deployment**.
* ``job.yaml`` instead, for ``--until end`` (promotion to a batch job).
* ``service.yaml``: the HTTP views, status page and metrics (plus the StatefulSet's headless
  Service); ``podmonitor.yaml``: a Prometheus Operator ``PodMonitor`` on ``/metrics``;
  ``scaledobject.yaml`` (``--keda``, kafka only): a KEDA ``ScaledObject`` on the consumer
  group's lag; ``secret.yaml`` only with ``--write-secret`` (it holds the driver URL).

The driver URL never appears in a manifest: containers read it from the Secret
``<name>-driver`` (key ``url``) into ``WORKBENCH_DRIVER``, and Kubernetes expands
``$(WORKBENCH_DRIVER)`` in the arguments when it starts the container.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .._time import duration_ms
from .._urls import redact_url
from ..errors import DefinitionError
from .names import DNS1035_LABEL, MAX_BASE_NAME, object_name, topic_object_name
from .topics import DeployTopic, resolve_topics

if TYPE_CHECKING:
    from ..plan import Plan

__all__ = ["HTTP_PORT", "K8sOptions", "render_k8s", "termination_grace_seconds"]

Manifest = dict[str, Any]

HTTP_PORT = 8080
#: the image's non-root user (see the Dockerfile)
RUN_AS_USER = 10001
#: seconds the shutdown path needs beyond the batch in hand: close the producer and consumer
#: (leave the group), stop the HTTP server
CLOSE_SECONDS = 5
#: seconds a batch in hand may take when the driver sets no bound (a Kafka transaction is
#: aborted by the broker after ``transaction_timeout_ms``, which bounds it there)
DEFAULT_BATCH_SECONDS = 10
SCHEMES = ("kafka", "postgresql", "postgres")


@dataclass(frozen=True)
class K8sOptions:
    """What ``workbench deploy k8s`` was asked for (see ``workbench deploy k8s --help``)."""

    target: str
    driver: str
    image: str
    replicas: int = 1
    name: str | None = None
    namespace: str | None = None
    workers: str = "auto"
    cpu: str = "1"
    memory: str = "1Gi"
    until: str = "forever"
    commit_interval: str = "100ms"
    partitions: dict[str, int] = field(default_factory=dict)
    kafka_cluster: str | None = None
    topic_namespace: str | None = None
    keda: bool = False
    keda_max_replicas: int | None = None
    lag_threshold: int = 1000
    grace_period: int | None = None
    startup_seconds: int = 600
    workload: str = "auto"
    write_secret: bool = False
    pipelines_dir: str | None = None

    @property
    def scheme(self) -> str:
        """The driver URL's scheme."""
        return urlsplit(self.driver).scheme.lower()


def termination_grace_seconds(opts: K8sOptions) -> int:
    """Seconds between SIGTERM and SIGKILL that ``workbench run``'s shutdown path needs: the
    commit interval, the batch in hand (bounded on Kafka by the transaction timeout), then
    closing the clients and the HTTP server.

    >>> termination_grace_seconds(K8sOptions("p.py", "kafka://k:9092", "img"))
    16
    >>> termination_grace_seconds(K8sOptions("p.py", "kafka://k:9092?transaction_timeout_ms=60000",
    ...                                      "img", commit_interval="1s"))
    66
    """
    if opts.grace_period is not None:
        return opts.grace_period
    batch = float(DEFAULT_BATCH_SECONDS)
    if opts.scheme == "kafka":
        from ..drivers.kafka import KafkaOptions

        batch = KafkaOptions.from_url(opts.driver).transaction_timeout_ms / 1000
    commit = duration_ms(opts.commit_interval, "commit_interval") / 1000
    return math.ceil(commit + batch + CLOSE_SECONDS)


def _cpu_cores(cpu: str) -> float:
    text = str(cpu).strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise DefinitionError(f"--cpu {cpu!r}: use cores ('1', '0.5') or millicores "
                              "('500m').") from None


def _one_worker_per_pod(opts: K8sOptions) -> bool:
    if opts.workers == "auto":
        return _cpu_cores(opts.cpu) <= 1  # auto rounds the CPU limit up, at least 1
    return opts.workers == "1"


def workload_kind(opts: K8sOptions) -> str:
    """``"StatefulSet"``, ``"Deployment"`` or ``"Job"`` (see the module docstring)."""
    if opts.until == "end":
        return "Job"
    if opts.workload == "deployment":
        return "Deployment"
    if opts.workload == "statefulset":
        if opts.scheme == "kafka" and not _one_worker_per_pod(opts):
            raise DefinitionError(
                "--workload statefulset on kafka gives each pod one static member id; with "
                f"--workers {opts.workers} and --cpu {opts.cpu} a pod runs several workers. "
                "Use --workers 1 (scale with --replicas) or --workload deployment.")
        return "StatefulSet"
    return "StatefulSet" if opts.scheme == "kafka" and _one_worker_per_pod(opts) else "Deployment"


def _strimzi_cluster(opts: K8sOptions) -> str:
    if opts.kafka_cluster:
        return opts.kafka_cluster
    host = _bootstrap(opts.driver).split(",")[0].split(":")[0].split(".")[0]
    if host.endswith("-kafka-bootstrap"):
        return host[: -len("-kafka-bootstrap")]
    raise DefinitionError(
        f"cannot tell the Strimzi cluster from {redact_url(opts.driver)!r} (a Strimzi bootstrap "
        "service is named <cluster>-kafka-bootstrap); pass --kafka-cluster NAME.")


def _bootstrap(url: str) -> str:
    """The ``host:port[,host:port]`` list of a ``kafka://`` URL, without credentials."""
    return unquote(urlsplit(url).netloc).rsplit("@", 1)[-1]


def _meta(name: str, opts: K8sOptions, labels: dict[str, str],
          namespace: str | None = None) -> Manifest:
    meta: Manifest = {"name": name}
    ns = namespace if namespace is not None else opts.namespace
    if ns:
        meta["namespace"] = ns
    meta["labels"] = dict(labels)
    return meta


class _Render:
    """Builds the objects of one pipeline; one method per file."""

    def __init__(self, plan: Plan, opts: K8sOptions) -> None:
        if opts.scheme not in SCHEMES:
            raise DefinitionError(
                f"workbench deploy k8s supports kafka:// and postgresql:// drivers, not "
                f"{opts.scheme}:// ({redact_url(opts.driver)!r}): memory:// lives in one process "
                "and git:// has a single writer on a local path.")
        if opts.replicas < 1:
            raise DefinitionError(f"--replicas {opts.replicas}: must be >= 1.")
        if opts.until not in ("forever", "end"):
            raise DefinitionError(f"--until {opts.until!r}: use 'forever' or 'end'.")
        if opts.workers != "auto" and not (opts.workers.isdigit() and int(opts.workers) >= 1):
            raise DefinitionError(f"--workers {opts.workers!r}: use a number >= 1 or 'auto'.")
        for label, value in (("--name", opts.name), ("--namespace", opts.namespace),
                             ("--topic-namespace", opts.topic_namespace)):
            if value is not None and (len(value) > MAX_BASE_NAME
                                      or not DNS1035_LABEL.match(value)):
                raise DefinitionError(
                    f"{label} {value!r}: use lowercase letters, digits and '-', starting with a "
                    f"letter, at most {MAX_BASE_NAME} characters.")
        self.plan = plan
        self.opts = opts
        self.name = opts.name or object_name(plan.app_id)
        self.kind = workload_kind(opts)
        self.secret = f"{self.name}-driver"
        self.selector = {"app.kubernetes.io/name": "workbench",
                         "app.kubernetes.io/instance": self.name}
        self.labels = {**self.selector, "app.kubernetes.io/component": "pipeline",
                       "app.kubernetes.io/managed-by": "workbench-deploy"}
        self.topics: list[DeployTopic] = (
            resolve_topics(plan, opts.driver, opts.partitions) if opts.scheme == "kafka" else [])

    # -- topics -------------------------------------------------------------------------------
    def kafka_topics(self) -> list[Manifest]:
        cluster = _strimzi_cluster(self.opts)
        ns = self.opts.topic_namespace or self.opts.namespace
        out = []
        for t in self.topics:
            obj_name, renamed = topic_object_name(t.name)
            labels = {"strimzi.io/cluster": cluster, **self.labels,
                      "workbench/topic-kind": t.kind}
            spec: Manifest = {}
            if renamed:
                spec["topicName"] = t.name
            spec["partitions"] = t.partitions
            if t.replicas is not None:
                spec["replicas"] = t.replicas
            if t.config:
                spec["config"] = dict(t.config)
            out.append({"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaTopic",
                        "metadata": _meta(obj_name, self.opts, labels, ns), "spec": spec})
        return out

    # -- the pod ------------------------------------------------------------------------------
    def args(self) -> list[str]:
        o = self.opts
        return ["run", o.target, "--driver", "$(WORKBENCH_DRIVER)",
                "--until", o.until, "--workers", o.workers,
                "--http", f"0.0.0.0:{HTTP_PORT}", "--commit-interval", o.commit_interval]

    def env(self) -> list[Manifest]:
        url_ref = {"secretKeyRef": {"name": self.secret, "key": "url"}}
        env: list[Manifest] = []
        if self.kind == "StatefulSet":
            # the pod's stable name is the Kafka driver's instance: static group membership
            sep = "&" if urlsplit(self.opts.driver).query else "?"
            env += [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "WORKBENCH_DRIVER_URL", "valueFrom": url_ref},
                    {"name": "WORKBENCH_DRIVER",
                     "value": f"$(WORKBENCH_DRIVER_URL){sep}instance=$(POD_NAME)"}]
        else:
            env.append({"name": "WORKBENCH_DRIVER", "valueFrom": url_ref})
        env.append({"name": "WORKBENCH_LOG_LEVEL", "value": "INFO"})
        return env

    def container(self) -> Manifest:
        http = {"path": "/health", "port": "http"}
        c: Manifest = {
            "name": "pipeline",
            "image": self.opts.image,
            "imagePullPolicy": "IfNotPresent",
            "args": self.args(),
            "env": self.env(),
            "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
            # /health fails while restoring state is not done: give the start its own budget
            "startupProbe": {"httpGet": http, "periodSeconds": 5, "timeoutSeconds": 3,
                             "failureThreshold": max(1, math.ceil(self.opts.startup_seconds / 5))},
            "livenessProbe": {"httpGet": http, "periodSeconds": 10, "timeoutSeconds": 3,
                              "failureThreshold": 3},
        }
        if self.kind != "Job":
            c["readinessProbe"] = {"httpGet": {"path": "/ready", "port": "http"},
                                   "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 2}
        res = {"cpu": self.opts.cpu, "memory": self.opts.memory}
        c["resources"] = {"requests": dict(res), "limits": dict(res)}
        c["securityContext"] = {"allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}}
        c["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
        return c

    def pod(self, restart: str = "Always") -> Manifest:
        spec: Manifest = {
            "terminationGracePeriodSeconds": termination_grace_seconds(self.opts),
            "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER,
                                "runAsGroup": RUN_AS_USER, "fsGroup": RUN_AS_USER,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [self.container()],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        }
        if restart != "Always":
            spec["restartPolicy"] = restart
        if self.topics:
            spec["initContainers"] = [self.wait_topics()]
        return {"metadata": {"labels": dict(self.labels)}, "spec": spec}

    def wait_topics(self) -> Manifest:
        """An init container that waits until the cluster has every topic of the plan with its
        partitions (Strimzi creates them asynchronously; a topic the engine created first would
        get the driver's default count)."""
        c = self.container()
        args = ["deploy", "wait-topics", self.opts.target, "--driver", "$(WORKBENCH_DRIVER)",
                "--timeout", "300"]
        for topic, count in sorted(self.opts.partitions.items()):
            args += ["--partitions", f"{topic}={count}"]
        init: Manifest = {"name": "wait-topics", "image": c["image"],
                          "imagePullPolicy": c["imagePullPolicy"], "args": args,
                          "env": c["env"], "resources": c["resources"],
                          "securityContext": c["securityContext"],
                          "volumeMounts": c["volumeMounts"]}
        return init

    # -- workloads ----------------------------------------------------------------------------
    def workload(self) -> Manifest:
        if self.kind == "Job":
            if self.opts.replicas > 1:
                raise DefinitionError(
                    f"--until end runs one bounded process; --replicas {self.opts.replicas} "
                    "would start members that leave the group as they finish. Use --workers "
                    "to split the work inside the pod.")
            return {"apiVersion": "batch/v1", "kind": "Job",
                    "metadata": _meta(f"{self.name}-run", self.opts, self.labels),
                    "spec": {"backoffLimit": 3, "parallelism": 1, "completions": 1,
                             "ttlSecondsAfterFinished": 86400,
                             "template": self.pod(restart="Never")}}
        spec: Manifest = {"replicas": self.opts.replicas,
                          "selector": {"matchLabels": dict(self.selector)}}
        if self.kind == "StatefulSet":
            spec["serviceName"] = f"{self.name}-headless"
            spec["podManagementPolicy"] = "Parallel"  # members join together: one rebalance
            spec["updateStrategy"] = {"type": "RollingUpdate"}
        else:
            spec["strategy"] = {"type": "RollingUpdate",
                                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
        spec["template"] = self.pod()
        return {"apiVersion": "apps/v1", "kind": self.kind,
                "metadata": _meta(self.name, self.opts, self.labels), "spec": spec}

    def services(self) -> list[Manifest]:
        port = {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}
        out = [{"apiVersion": "v1", "kind": "Service",
                "metadata": _meta(self.name, self.opts, self.labels),
                "spec": {"type": "ClusterIP", "selector": dict(self.selector),
                         "ports": [dict(port)]}}]
        if self.kind == "StatefulSet":
            out.append({"apiVersion": "v1", "kind": "Service",
                        "metadata": _meta(f"{self.name}-headless", self.opts, self.labels),
                        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                                 "selector": dict(self.selector), "ports": [dict(port)]}})
        return out

    def pod_monitor(self) -> Manifest:
        return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
                "metadata": _meta(self.name, self.opts, self.labels),
                "spec": {"selector": {"matchLabels": dict(self.selector)},
                         "podMetricsEndpoints": [{"port": "http", "path": "/metrics",
                                                  "interval": "15s"}]}}

    def scaled_object(self) -> Manifest:
        inputs = [t for t in self.topics if t.kind in ("source", "repartition")]
        most = max((t.partitions for t in inputs), default=1)
        workers = (math.ceil(_cpu_cores(self.opts.cpu)) if self.opts.workers == "auto"
                   else int(self.opts.workers))
        ceiling = max(1, math.ceil(most / workers))  # more members than partitions idle
        top = min(self.opts.keda_max_replicas or ceiling, ceiling)
        return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                "metadata": _meta(self.name, self.opts, self.labels),
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": self.kind,
                                            "name": self.name},
                         "minReplicaCount": min(self.opts.replicas, top),
                         "maxReplicaCount": top,
                         "pollingInterval": 15, "cooldownPeriod": 300,
                         "triggers": [{"type": "kafka", "metadata": {
                             # host:port only: credentials stay in the Secret
                             "bootstrapServers": _bootstrap(self.opts.driver),
                             "consumerGroup": self.plan.app_id,
                             "lagThreshold": str(self.opts.lag_threshold),
                             "offsetResetPolicy": "earliest",
                             "allowIdleConsumers": "false"}}]}}

    def secret_object(self) -> Manifest:
        data = {"url": self.opts.driver}
        return {"apiVersion": "v1", "kind": "Secret",
                "metadata": _meta(self.secret, self.opts, self.labels),
                "type": "Opaque", "stringData": data}


def render_k8s(plan: Plan, opts: K8sOptions) -> dict[str, list[Manifest]]:
    """``{file name: objects}`` for ``plan`` deployed as ``opts`` says (see the module
    docstring)."""
    r = _Render(plan, opts)
    files: dict[str, list[Manifest]] = {}
    if r.topics:
        files["kafkatopics.yaml"] = r.kafka_topics()
    files[f"{r.kind.lower()}.yaml"] = [r.workload()]
    if r.kind != "Job":
        files["service.yaml"] = r.services()
    files["podmonitor.yaml"] = [r.pod_monitor()]
    if opts.keda:
        if opts.scheme != "kafka" or r.kind == "Job":
            raise DefinitionError("--keda scales a long-running kafka:// pipeline on its consumer "
                                  "lag; it does not apply to postgresql:// or --until end.")
        files["scaledobject.yaml"] = [r.scaled_object()]
    if opts.write_secret:
        files["secret.yaml"] = [r.secret_object()]
    return files


def secret_command(plan: Plan, opts: K8sOptions) -> str:
    """The ``kubectl`` command that creates the Secret, with the URL's secrets redacted."""
    r = _Render(plan, opts)
    ns = f" -n {opts.namespace}" if opts.namespace else ""
    return (f"kubectl{ns} create secret generic {r.secret} "
            f"--from-literal=url='{redact_url(opts.driver)}'")
