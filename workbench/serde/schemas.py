"""What the Schema Registry serdes (Avro, Protobuf, JSON Schema) share: the registry, the
subject naming, the writer's schema id, and the framing (:mod:`.wire`)."""

from __future__ import annotations

from typing import Any

from ..errors import DefinitionError, SerializationError
from .base import Serde
from .naming import resolve_strategy
from .registry import SchemaRegistry

__all__ = ["SchemaSerde"]


class SchemaSerde(Serde):
    """Base of the serdes that can use a Schema Registry.

    Without a registry a serde writes its bare payload (raw Avro binary, the Protobuf message,
    JSON text). With one it writes Confluent's wire format: on write, the schema is registered
    under the topic's subject (``auto_register=True``) or looked up, or the subject's latest
    version is used (``use_latest=True``, or when the serde has no schema of its own); on read,
    the writer's schema is fetched by the id in the message.
    """

    schema_type = "AVRO"

    def __init__(self, *, registry: SchemaRegistry | str | None = None,
                 subject: str | None = None, naming: Any = "topic",
                 auto_register: bool = True, use_latest: bool = False) -> None:
        if isinstance(registry, str):
            registry = SchemaRegistry(registry)
        if registry is not None and not isinstance(registry, SchemaRegistry):
            raise DefinitionError(f"registry= takes a wb.SchemaRegistry or its URL, got "
                                  f"{registry!r}.")
        if subject is not None and (not isinstance(subject, str) or not subject):
            raise DefinitionError(f"subject= must be a non-empty string, got {subject!r}.")
        self.registry = registry
        self.subject = subject
        self.naming = resolve_strategy(naming)
        self.auto_register = bool(auto_register)
        self.use_latest = bool(use_latest)
        #: set by :meth:`for_topic`
        self.topic: str | None = None
        self.is_key = False
        self._writer_id: int | None = None

    # -- binding ------------------------------------------------------------------------------
    def for_topic(self, topic: str, *, is_key: bool) -> Serde:
        if self.registry is None or (self.topic == topic and self.is_key == is_key):
            return self
        bound = self._copy()
        bound.topic, bound.is_key = topic, is_key
        bound._writer_id = None
        return bound

    def _copy(self) -> SchemaSerde:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def subject_name(self) -> str:
        """The subject this serde's schema is registered under, for its topic."""
        if self.subject is not None:
            return self.subject
        if self.topic is None:
            raise SerializationError(f"{self!r} is not bound to a topic (no subject to "
                                     "register its schema under)")
        return self.naming(self.topic, self.is_key, self.record_name())

    @property
    def offline(self) -> bool:
        return self.registry is None or self.has_schema()

    # -- what subclasses provide ----------------------------------------------------------------
    def has_schema(self) -> bool:
        """True when the serde has a schema of its own (else the subject's latest is used)."""
        raise NotImplementedError

    def record_name(self) -> str | None:
        """The full name of the schema's record/message (for the record naming strategies)."""
        return None

    def schema_text(self) -> str:
        """The schema as registered."""
        raise NotImplementedError

    def references(self) -> list[Any]:
        return []

    def adopt_latest(self, text: str) -> None:
        """Take the subject's latest schema as this serde's writer schema."""
        raise NotImplementedError

    # -- the writer's id ------------------------------------------------------------------------
    def writer_id(self) -> int:
        """The schema id written in front of every message (registered once, then cached)."""
        if self._writer_id is not None:
            return self._writer_id
        registry = self.registry
        assert registry is not None
        subject = self.subject_name()
        if self.use_latest or not self.has_schema():
            latest = registry.latest(subject)
            if latest.type != self.schema_type:
                raise SerializationError(f"subject {subject!r} holds a {latest.type} schema, "
                                         f"not {self.schema_type}")
            if not self.has_schema():
                self.adopt_latest(latest.text)
            self._writer_id = latest.id
        elif self.auto_register:
            self._writer_id = registry.register(subject, self.schema_text(), self.schema_type,
                                                self.references())
        else:
            self._writer_id = registry.lookup(subject, self.schema_text(), self.schema_type,
                                              self.references())
        return self._writer_id

    def _where(self) -> str:
        if self.topic is None:
            return ""
        return f" ({'key' if self.is_key else 'value'} of topic {self.topic!r})"
