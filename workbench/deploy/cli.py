"""``workbench deploy``: deployment artefacts generated from a pipeline's plan.

    workbench deploy k8s TARGET --driver URL --image IMG [--replicas N] --out DIR
    workbench deploy topics TARGET --driver URL            (the topics the cluster needs)
    workbench deploy wait-topics TARGET --driver URL       (init container: wait for them)

Registered on the ``workbench`` command by :func:`add_cli`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from .._urls import redact_url
from ..errors import DefinitionError, DriverError

__all__ = ["add_cli"]

log = logging.getLogger(__name__)

EXAMPLE = """example:
  workbench deploy k8s pipelines.py:clickstream \\
      --driver kafka://my-cluster-kafka-bootstrap:9092 \\
      --image registry.example/clickstream:1.0 --replicas 3 --out deploy/
  kubectl create secret generic clickstream-driver --from-literal=url=... (printed)
  kubectl apply -f deploy/      # or: cd deploy && WORKBENCH_DRIVER=... tilt up
"""


def _partitions(values: list[str] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in values or ():
        topic, sep, count = item.rpartition("=")
        if not sep or not topic or not count.isdigit():
            raise DefinitionError(f"--partitions {item!r}: use TOPIC=N (a source topic).")
        out[topic] = int(count)
    return out


def _cmd_k8s(args: argparse.Namespace) -> int:
    from ..cli import load_pipeline
    from .k8s import K8sOptions, secret_command
    from .output import write_k8s

    pipeline = load_pipeline(args.target)
    opts = K8sOptions(
        target=args.target, driver=args.driver, image=args.image, replicas=args.replicas,
        name=args.name, namespace=args.namespace, workers=args.workers, cpu=args.cpu,
        memory=args.memory, until=args.until, commit_interval=args.commit_interval,
        partitions=_partitions(args.partitions), kafka_cluster=args.kafka_cluster,
        topic_namespace=args.topic_namespace, keda=args.keda,
        keda_max_replicas=args.keda_max_replicas, lag_threshold=args.lag_threshold,
        grace_period=args.grace_period, startup_seconds=args.startup_seconds,
        workload=args.workload, write_secret=args.write_secret)
    written = write_k8s(pipeline, opts, args.out, context=args.context)
    for path in written:
        print(f"wrote {path}")
    if not args.write_secret:
        print("\nThe manifests read the driver URL from a Secret; create it with:\n  "
              + secret_command(pipeline.plan(), opts)
              + "\n(the URL above is redacted: put the real one in)")
    return 0


def _cmd_topics(args: argparse.Namespace) -> int:
    from ..cli import load_pipeline
    from .topics import resolve_topics

    plan = load_pipeline(args.target).plan()
    for t in resolve_topics(plan, args.driver, _partitions(args.partitions)):
        config = ",".join(f"{k}={v}" for k, v in t.config.items())
        print(f"{t.name}\t{t.kind}\t{t.partitions}\t{config}")
    return 0


def _cmd_wait_topics(args: argparse.Namespace) -> int:
    from ..cli import load_pipeline
    from ..drivers import connect
    from .topics import resolve_topics

    plan = load_pipeline(args.target).plan()
    expected = {t.name: t.partitions for t in
                resolve_topics(plan, args.driver, _partitions(args.partitions))}
    driver = connect(args.driver)
    deadline = time.monotonic() + args.timeout
    try:
        while True:
            found = {name: driver.partitions(name) for name in expected}
            wrong = {n: c for n, c in found.items() if c is not None and c != expected[n]}
            if wrong:
                raise DriverError(
                    "topics exist with other partition counts than the plan needs on "
                    f"{redact_url(args.driver)}: "
                    + ", ".join(f"{n!r} has {c}, needs {expected[n]}" for n, c in wrong.items())
                    + ". Fix the KafkaTopic resources or pass --partitions as at deploy time.")
            missing = sorted(n for n, c in found.items() if c is None)
            if not missing:
                print(f"all {len(expected)} topics of {plan.app_id!r} are there")
                return 0
            if time.monotonic() > deadline:
                raise DriverError(f"after {args.timeout:g} s these topics are still missing on "
                                  f"{redact_url(args.driver)}: {missing}. Is the Strimzi Topic "
                                  "Operator running and are the KafkaTopic resources Ready?")
            log.info("waiting for topics %s", missing)
            time.sleep(args.interval)
    finally:
        driver.close()


def add_cli(subparsers: Any) -> None:
    """Register ``workbench deploy ...`` on the ``workbench`` command's subparsers."""
    deploy = subparsers.add_parser(
        "deploy", help="generate deployment artefacts (Kubernetes manifests, Tiltfile)",
        description="Deployment artefacts generated from a pipeline's plan.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = deploy.add_subparsers(dest="deploy_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("target", help="module:attr or file.py:attr (a Pipeline)")
    common.add_argument("--driver", required=True, help="kafka://... or postgresql://... URL")
    common.add_argument("--partitions", action="append", metavar="TOPIC=N",
                        help="partitions of a source topic (repeatable; default: the "
                             "pipeline's, else the URL's partitions option, else 1)")

    k8s = sub.add_parser("k8s", parents=[common], help="Kubernetes manifests and a Tiltfile",
                         epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    k8s.add_argument("--image", required=True, help="the image to run (built from Dockerfile)")
    k8s.add_argument("--out", required=True, help="directory to write into")
    k8s.add_argument("--replicas", type=int, default=1, help="pods (default 1)")
    k8s.add_argument("--workers", default="auto",
                     help="worker processes per pod: N or auto (the CPU limit; default)")
    k8s.add_argument("--cpu", default="1", help="CPU request and limit per pod (default 1)")
    k8s.add_argument("--memory", default="1Gi", help="memory request and limit (default 1Gi)")
    k8s.add_argument("--until", choices=["forever", "end"], default="forever",
                     help="forever: a long-running workload (default); end: a batch Job")
    k8s.add_argument("--commit-interval", default="100ms")
    k8s.add_argument("--name", help="object name (default: from the pipeline's name)")
    k8s.add_argument("--namespace", help="namespace of the objects (default: kubectl's)")
    k8s.add_argument("--kafka-cluster",
                     help="Strimzi cluster name (default: from <cluster>-kafka-bootstrap)")
    k8s.add_argument("--topic-namespace",
                     help="namespace of the KafkaTopic resources (default: --namespace)")
    k8s.add_argument("--workload", choices=["auto", "statefulset", "deployment"],
                     default="auto", help="auto: StatefulSet on kafka with one worker per pod "
                                          "(static membership), else Deployment")
    k8s.add_argument("--keda", action="store_true",
                     help="add a KEDA ScaledObject on the consumer group's lag")
    k8s.add_argument("--keda-max-replicas", type=int)
    k8s.add_argument("--lag-threshold", type=int, default=1000,
                     help="KEDA: lag per replica that triggers scaling out (default 1000)")
    k8s.add_argument("--grace-period", type=int,
                     help="terminationGracePeriodSeconds (default: commit interval + batch "
                          "budget + 5 s)")
    k8s.add_argument("--startup-seconds", type=int, default=600,
                     help="time allowed for start-up and state restore (default 600)")
    k8s.add_argument("--context", default=".",
                     help="Docker build context, the project root (default .)")
    k8s.add_argument("--write-secret", action="store_true",
                     help="also write secret.yaml with the driver URL (it holds credentials: "
                          "keep it out of version control)")
    k8s.set_defaults(func=_cmd_k8s)

    topics = sub.add_parser("topics", parents=[common],
                            help="print the topics the cluster needs (name, kind, partitions, "
                                 "config)")
    topics.set_defaults(func=_cmd_topics)

    wait = sub.add_parser("wait-topics", parents=[common],
                          help="wait until every topic exists with its partitions (an init "
                               "container)")
    wait.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    wait.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)
    wait.set_defaults(func=_cmd_wait_topics)


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["deploy", *sys.argv[1:]]))
