"""Subject naming strategies: which Schema Registry subject a topic's schema is registered
under (Confluent's ``key.subject.name.strategy`` / ``value.subject.name.strategy``).

=====================  ==========================  ===============================
strategy               Java class                  subject
=====================  ==========================  ===============================
``"topic"`` (default)  ``TopicNameStrategy``       ``<topic>-key`` / ``<topic>-value``
``"record"``           ``RecordNameStrategy``      the record's full name
``"topic_record"``     ``TopicRecordNameStrategy`` ``<topic>-<record full name>``
=====================  ==========================  ===============================

A strategy may also be a function ``(topic, is_key, record_name) -> subject``.

>>> topic_name("orders", False, "shop.Order"), topic_record_name("orders", False, "shop.Order")
('orders-value', 'orders-shop.Order')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import DefinitionError, SerializationError, did_you_mean

__all__ = ["STRATEGIES", "NamingStrategy", "record_name", "resolve_strategy", "topic_name",
           "topic_record_name"]

NamingStrategy = Callable[[str, bool, "str | None"], str]


def topic_name(topic: str, is_key: bool, record: str | None) -> str:
    """``<topic>-key`` or ``<topic>-value``."""
    return f"{topic}-{'key' if is_key else 'value'}"


def _need_record(record: str | None, strategy: str) -> str:
    if not record:
        raise SerializationError(f"the {strategy!r} subject naming strategy needs a named "
                                 "schema (an Avro record, a Protobuf message, a JSON Schema "
                                 "with a 'title')")
    return record


def record_name(topic: str, is_key: bool, record: str | None) -> str:
    """The record's full name."""
    return _need_record(record, "record")


def topic_record_name(topic: str, is_key: bool, record: str | None) -> str:
    """``<topic>-<record full name>``."""
    return f"{topic}-{_need_record(record, 'topic_record')}"


STRATEGIES: dict[str, NamingStrategy] = {
    "topic": topic_name,
    "record": record_name,
    "topic_record": topic_record_name,
}


def resolve_strategy(strategy: Any) -> NamingStrategy:
    """A strategy name or function as a function."""
    if callable(strategy):
        return strategy  # type: ignore[no-any-return]
    if isinstance(strategy, str) and strategy in STRATEGIES:
        return STRATEGIES[strategy]
    raise DefinitionError(f"unknown subject naming strategy {strategy!r}; use 'topic', "
                          "'record', 'topic_record' or a function (topic, is_key, "
                          "record_name) -> subject." + did_you_mean(str(strategy), STRATEGIES))
