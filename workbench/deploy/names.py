"""Kubernetes names for pipelines and topics.

Object names must be DNS-1123 subdomains (lowercase letters, digits, ``-`` and ``.``, at most
253 characters); Services, and the labels that carry a StatefulSet pod's name, need DNS-1035
labels (a letter first, at most 63 characters). Kafka topic names may hold ``_`` and capitals, so
a ``KafkaTopic`` whose topic name is not a valid object name gets a derived name plus
``spec.topicName`` (what Strimzi recommends).
"""

from __future__ import annotations

import hashlib
import re

from ..errors import DefinitionError

__all__ = ["DNS1035_LABEL", "DNS1123_SUBDOMAIN", "object_name", "topic_object_name"]

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

#: room left in a 63-character label for a StatefulSet pod's ``-<ordinal>`` and a Job's suffix
MAX_BASE_NAME = 40


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def object_name(name: str, *, max_len: int = MAX_BASE_NAME) -> str:
    """A DNS-1035 label derived from ``name`` (a pipeline's name), at most ``max_len`` chars.

    >>> object_name("clickstream")
    'clickstream'
    >>> object_name("Shop_Orders v2")
    'shop-orders-v2-236afb81'
    """
    low = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    low = re.sub(r"-{2,}", "-", low)
    if not low:
        raise DefinitionError(f"cannot derive a Kubernetes name from {name!r}; pass --name.")
    if not low[0].isalpha():
        low = "p-" + low
    if low == name and len(low) <= max_len:
        return low
    suffix = "-" + _digest(name)
    return low[: max_len - len(suffix)].rstrip("-") + suffix


def topic_object_name(topic: str) -> tuple[str, bool]:
    """``(metadata.name, needs spec.topicName)`` of the ``KafkaTopic`` for Kafka topic ``topic``.

    >>> topic_object_name("clickstream-per-user-minute-store-changelog")
    ('clickstream-per-user-minute-store-changelog', False)
    >>> topic_object_name("Orders_EU")
    ('orders-eu-08e73c5c', True)
    """
    if len(topic) <= 253 and DNS1123_SUBDOMAIN.match(topic):
        return topic, False
    low = re.sub(r"[^a-z0-9.-]+", "-", topic.lower()).strip("-.") or "topic"
    suffix = "-" + _digest(topic)
    return low[: 253 - len(suffix)].rstrip("-.") + suffix, True
