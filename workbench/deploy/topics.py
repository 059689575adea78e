"""The topics a pipeline needs on a cluster, resolved from its plan as the engine would.

Partition counts follow :meth:`workbench.runtime.engine.Engine.start`: a source keeps the count
it is given (``--partitions TOPIC=N``, ``p.source(..., partitions=N)``, else the driver's default,
the URL's ``partitions`` option); each sub-topology runs max(its external inputs' counts) tasks;
its outputs take ``to(..., partitions=N)`` or that count; its changelogs take that count. Topic
settings follow :meth:`workbench.drivers.kafka.KafkaDriver.create_topic`: only changelogs are
compacted (``cleanup.policy=compact``), every other topic keeps its records
(``retention.ms`` from the URL's ``retention_ms``, ``-1`` by default), and the replication factor
is the URL's ``replication`` (``-1``: the broker's default).

``tests/deploy/test_topics.py`` checks both against a real engine run and a real broker, so
the manifests cannot drift from what ``workbench run`` would create.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from ..errors import DefinitionError, did_you_mean

if TYPE_CHECKING:
    from ..plan import Plan

__all__ = ["DeployTopic", "default_partitions", "kafka_topic_settings", "resolve_topics"]

#: kinds of plan topics that exist on a cluster (previews are notebook-only)
CLUSTER_KINDS = ("source", "sink", "repartition", "changelog")


@dataclass(frozen=True)
class DeployTopic:
    """One topic as it must exist on the cluster.

    ``config`` holds the topic-level settings (strings, as Kafka's admin API takes them);
    ``replicas`` is ``None`` for the broker's default replication factor.
    """

    name: str
    kind: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    replicas: int | None = None


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def default_partitions(url: str) -> int:
    """The partition count the driver of ``url`` gives a topic created without one (its URL's
    ``partitions`` option, default 1)."""
    raw = _query(url).get("partitions", "1") or "1"
    try:
        count = int(raw)
    except ValueError:
        raise DefinitionError(f"driver option partitions={raw!r} must be a number.") from None
    if count < 1:
        raise DefinitionError(f"driver option partitions={count} must be >= 1.")
    return count


def kafka_topic_settings(url: str, kind: str, compact: bool) -> tuple[dict[str, str], int | None]:
    """``(config, replicas)`` the Kafka driver of ``url`` gives a topic of ``kind`` it creates.

    >>> kafka_topic_settings("kafka://k:9092", "changelog", True)
    ({'cleanup.policy': 'compact'}, None)
    >>> kafka_topic_settings("kafka://k:9092?retention_ms=default&replication=3", "sink", False)
    ({}, 3)
    """
    from ..drivers.kafka import KafkaOptions

    options = KafkaOptions.from_url(url)
    compact = compact and kind == "changelog"
    config = {"cleanup.policy": "compact"} if compact else {}
    if not compact and options.retention_ms is not None:
        config["retention.ms"] = str(options.retention_ms)
    replicas = options.replication if options.replication > 0 else None
    return config, replicas


def resolve_topics(plan: Plan, url: str,
                   partitions: Mapping[str, int] | None = None) -> list[DeployTopic]:
    """Every topic of ``plan`` that must exist on the cluster of driver ``url``, with its
    partition count and settings, in plan order (sources first).

    Args:
        plan: the compiled pipeline.
        url: the driver URL (its ``partitions``, ``replication`` and ``retention_ms`` options
            count).
        partitions: partition counts of source topics, overriding the pipeline's and the
            driver's default (``None`` key not allowed).

    Raises:
        DefinitionError: an override names a topic that is not a source of the plan, or a count
            below 1.
    """
    overrides = dict(partitions or {})
    sources = [n for n, s in plan.topics.items() if s.kind == "source"]
    for name, count in overrides.items():
        if name not in sources:
            raise DefinitionError(
                f"--partitions {name}={count}: {name!r} is not a source topic of pipeline "
                f"{plan.app_id!r}; sources: {sources}." + did_you_mean(name, sources))
        if count < 1:
            raise DefinitionError(f"--partitions {name}={count}: must be >= 1.")
    default = default_partitions(url)
    scheme = urlsplit(url).scheme.lower()
    counts: dict[str, int] = {}
    kinds: dict[str, tuple[str, bool]] = {}
    for name in sources:
        counts[name] = overrides.get(name) or plan.topics[name].partitions or default
        kinds[name] = ("source", False)
    pending = list(plan.subtopologies)
    while pending:
        progressed = False
        for st in list(pending):
            external = [t for t in st.inputs if t not in st.outputs]
            if not all(t in counts for t in external):
                continue
            count = max((counts[t] for t in external), default=1)
            for t in st.outputs:
                spec = plan.topics[t]
                if t not in counts and spec.kind in CLUSTER_KINDS:
                    counts[t] = spec.partitions or count
                    kinds[t] = (spec.kind, spec.compact)
            for s in st.stores:
                counts[s.changelog] = count
                kinds[s.changelog] = ("changelog", True)
            pending.remove(st)
            progressed = True
        if not progressed:
            missing = sorted({t for st in pending for t in st.inputs if t not in counts})
            raise DefinitionError(f"cannot resolve partition counts of topics {missing}.")
    out = []
    for name in [*sources, *(t for t in counts if t not in sources)]:
        kind, compact = kinds[name]
        if scheme == "kafka":
            config, replicas = kafka_topic_settings(url, kind, compact)
        else:
            config, replicas = ({"cleanup.policy": "compact"} if kind == "changelog" else {}), None
        out.append(DeployTopic(name, kind, counts[name], config, replicas))
    return out
