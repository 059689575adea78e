"""A Schema Registry client (Confluent's REST API), through confluent-kafka's
``SchemaRegistryClient``, with the caches and error translation the serdes need.

Works with Confluent's server and with Apicurio Registry's Confluent-compatible API
(``http://host:port/apis/ccompat/v7``); see ``docs/interop.md`` for their differences.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .._urls import redact_url
from ..errors import DefinitionError, DriverUnavailableError, SerializationError

__all__ = ["RegisteredSchema", "SchemaRegistry", "load_registry_client"]

T = TypeVar("T")


def load_registry_client() -> Any:
    """``confluent_kafka.schema_registry``, imported on first use."""
    try:
        from confluent_kafka import schema_registry
    except ImportError as exc:
        raise DriverUnavailableError(
            "Schema Registry serdes need confluent-kafka with its schema registry client: "
            "install workbench[interop] (pip install 'workbench[interop]').") from exc
    return schema_registry


class RegisteredSchema:
    """A schema as the registry knows it: ``id``, ``text``, ``type`` (``AVRO``, ``PROTOBUF``,
    ``JSON``) and the subject/version it was found under (when known)."""

    __slots__ = ("id", "references", "subject", "text", "type", "version")

    def __init__(self, schema_id: int, text: str, schema_type: str, subject: str | None = None,
                 version: int | None = None, references: list[Any] | None = None) -> None:
        self.id = schema_id
        self.text = text
        self.type = schema_type
        self.subject = subject
        self.version = version
        self.references = references or []

    def __repr__(self) -> str:
        return f"<RegisteredSchema id={self.id} {self.type} subject={self.subject!r}>"


class SchemaRegistry:
    """A Schema Registry at ``url`` (Confluent's REST API).

    >>> sr = SchemaRegistry("http://127.0.0.1:8081/apis/ccompat/v7")  # doctest: +SKIP

    Args:
        url: the API's base URL; basic-auth credentials may be given as ``http://user:pw@...``
            (never shown: reprs and messages redact them).
        config: more settings of confluent-kafka's ``SchemaRegistryClient`` (``basic.auth.
            user.info``, ``ssl.ca.location``, ...).
        normalize: ask the registry to normalize schemas when registering.
    """

    def __init__(self, url: str, *, config: dict[str, Any] | None = None,
                 normalize: bool = False) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise DefinitionError(f"a Schema Registry URL starts with http:// or https://, got "
                                  f"{redact_url(str(url))!r}.")
        self.url = url.rstrip("/")
        self.config = dict(config or {})
        self.normalize = normalize
        self._client: Any = None
        self._lock = threading.Lock()
        self._by_id: dict[int, RegisteredSchema] = {}
        self._registered: dict[tuple[str, str, str, bool], int] = {}

    # -- client -------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """confluent-kafka's ``SchemaRegistryClient`` (created on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    sr = load_registry_client()
                    self._client = sr.SchemaRegistryClient({"url": self.url, **self.config})
        return self._client

    def _call(self, what: str, fn: Callable[[], T], *, missing: str | None = None) -> T:
        """Run a registry call; its failures as workbench errors naming ``what``."""
        sr = load_registry_client()
        try:
            return fn()
        except sr.SchemaRegistryError as exc:
            status = getattr(exc, "http_status_code", None)
            text = str(getattr(exc, "error_message", exc))
            if status == 404 and missing is not None:
                raise SerializationError(f"{missing} ({text})") from None
            if status in (409, 422):
                raise SerializationError(f"the Schema Registry at {self} refused {what}: "
                                         f"{text} (HTTP {status})") from None
            if status in (401, 403):
                raise DriverUnavailableError(f"the Schema Registry at {self} refused access "
                                             f"while {what} (HTTP {status}): check the "
                                             "credentials.") from None
            raise DriverUnavailableError(f"the Schema Registry at {self} failed while {what}: "
                                         f"{text} (HTTP {status})") from None
        except (SerializationError, DriverUnavailableError):
            raise
        except Exception as exc:  # connection refused, timeouts, TLS
            raise DriverUnavailableError(
                f"cannot reach the Schema Registry at {self} while {what}: "
                f"{type(exc).__name__}: {redact_url(str(exc))}. Is it running? "
                "(`workbench dev up` starts one.)") from None

    # -- schemas ------------------------------------------------------------------------------
    def register(self, subject: str, text: str, schema_type: str,
                 references: list[Any] | None = None) -> int:
        """Register a schema under ``subject`` (idempotent); return its id."""
        key = (subject, schema_type, text, True)
        found = self._registered.get(key)
        if found is not None:
            return found
        sr = load_registry_client()
        schema = sr.Schema(text, schema_type, references or [])
        schema_id = int(self._call(
            f"registering a {schema_type} schema under subject {subject!r}",
            lambda: self.client.register_schema(subject, schema,
                                                normalize_schemas=self.normalize)))
        self._registered[key] = schema_id
        self._by_id.setdefault(schema_id, RegisteredSchema(schema_id, text, schema_type,
                                                           subject, None, references))
        return schema_id

    def lookup(self, subject: str, text: str, schema_type: str,
               references: list[Any] | None = None) -> int:
        """The id of a schema already registered under ``subject`` (no registration)."""
        key = (subject, schema_type, text, False)
        found = self._registered.get(key)
        if found is not None:
            return found
        sr = load_registry_client()
        schema = sr.Schema(text, schema_type, references or [])
        got = self._call(
            f"looking up a {schema_type} schema under subject {subject!r}",
            lambda: self.client.lookup_schema(subject, schema, normalize_schemas=self.normalize),
            missing=f"the schema is not registered under subject {subject!r} of {self} "
                    "(auto_register=False); register it first or allow auto_register")
        schema_id = int(got.schema_id)
        self._registered[key] = schema_id
        return schema_id

    def schema(self, schema_id: int) -> RegisteredSchema:
        """The schema with id ``schema_id`` (cached: ids never change)."""
        found = self._by_id.get(schema_id)
        if found is not None:
            return found
        got = self._call(f"fetching schema id {schema_id}",
                         lambda: self.client.get_schema(schema_id),
                         missing=f"schema id {schema_id} is unknown to the Schema Registry "
                                 f"at {self}")
        found = RegisteredSchema(schema_id, got.schema_str, got.schema_type or "AVRO",
                                 references=list(got.references or []))
        self._by_id[schema_id] = found
        return found

    def latest(self, subject: str) -> RegisteredSchema:
        """The latest version registered under ``subject``."""
        got = self._call(f"reading the latest version of subject {subject!r}",
                         lambda: self.client.get_latest_version(subject),
                         missing=f"subject {subject!r} has no schema in the Schema Registry "
                                 f"at {self}")
        schema = got.schema
        found = RegisteredSchema(int(got.schema_id), schema.schema_str,
                                 schema.schema_type or "AVRO", got.subject, got.version,
                                 list(schema.references or []))
        self._by_id.setdefault(found.id, found)
        return found

    def subjects(self) -> list[str]:
        """Every subject."""
        return list(self._call("listing subjects", lambda: self.client.get_subjects()))

    def set_compatibility(self, level: str, subject: str | None = None) -> None:
        """Set the compatibility level (``BACKWARD``, ``FORWARD``, ``FULL``, ``NONE``, with
        ``_TRANSITIVE`` variants) of ``subject``, or the global default."""
        self._call(f"setting compatibility {level!r}",
                   lambda: self.client.set_compatibility(subject_name=subject, level=level))

    def __str__(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"SchemaRegistry({redact_url(self.url)!r})"
