"""JSON Schema: JSON text validated against a schema (the ``jsonschema`` package), bare or in
Confluent's wire format through a Schema Registry."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..errors import DefinitionError, DriverUnavailableError, SerializationError
from .registry import SchemaRegistry
from .schemas import SchemaSerde
from .text import JsonSerde
from .wire import header, unframe

__all__ = ["JsonSchemaSerde"]


def load_jsonschema() -> Any:
    """``jsonschema``, imported on first use."""
    try:
        import jsonschema
    except ImportError as exc:
        raise DriverUnavailableError(
            "the JSON Schema serde needs jsonschema: install workbench[interop] "
            "(pip install 'workbench[interop]').") from exc
    return jsonschema


class JsonSchemaSerde(SchemaSerde):
    """JSON values checked against a JSON Schema.

    Args:
        schema: the JSON Schema (dict or JSON text); optional with a registry (the subject's
            latest schema is used).
        registry, subject, naming, auto_register, use_latest: as for
            :class:`~workbench.serde.avro_serde.AvroSerde` (the record name is the schema's
            ``title``).
        validate: validate values when reading too (default: only when writing).
    """

    name = "jsonschema"
    schema_type = "JSON"

    def __init__(self, schema: Any = None, *, registry: SchemaRegistry | str | None = None,
                 subject: str | None = None, naming: Any = "topic", auto_register: bool = True,
                 use_latest: bool = False, validate: bool = False) -> None:
        super().__init__(registry=registry, subject=subject, naming=naming,
                         auto_register=auto_register, use_latest=use_latest)
        if schema is None and registry is None:
            raise DefinitionError("wb.serde.jsonschema() needs a schema, or a registry to take "
                                  "the schema from.")
        self.validate_on_read = validate
        self._json = JsonSerde()
        self._schema: Any = None
        self._validator: Any = None
        if schema is not None:
            self._set_schema(json.loads(schema) if isinstance(schema, str) else schema)

    def _set_schema(self, schema: Any) -> None:
        js = load_jsonschema()
        if not isinstance(schema, dict | bool):
            raise DefinitionError(f"a JSON Schema is a dict (or JSON text), got {schema!r}.")
        cls = js.validators.validator_for(schema, default=js.Draft7Validator)
        try:
            cls.check_schema(schema)
        except js.SchemaError as exc:
            raise DefinitionError(f"not a valid JSON Schema: {exc.message}.") from None
        self._schema = schema
        self._validator = cls(schema)

    @property
    def schema(self) -> Any:
        return self._schema

    def has_schema(self) -> bool:
        return self._schema is not None

    def record_name(self) -> str | None:
        title = self._schema.get("title") if isinstance(self._schema, dict) else None
        return str(title) if title else None

    def schema_text(self) -> str:
        return json.dumps(self._schema, separators=(",", ":"))

    def adopt_latest(self, text: str) -> None:
        self._set_schema(json.loads(text))

    def _validate(self, obj: Any) -> None:
        errors = sorted(self._validator.iter_errors(obj), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            at = "/".join(str(p) for p in first.path) or "(the value)"
            raise SerializationError(f"{_short(obj)} does not match the JSON Schema"
                                     f"{self._where()} at {at}: {first.message}")

    def serialize(self, obj: Any) -> bytes | None:
        if obj is None:
            return None
        if self.registry is not None:
            schema_id = self.writer_id()
            self._validate(obj)
            return header(schema_id) + self._json.serialize(obj)  # type: ignore[operator]
        self._validate(obj)
        return self._json.serialize(obj)

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        return self.deserialize_many((data,))[0]

    def deserialize_many(self, items: Sequence[bytes | None]) -> list[Any]:
        loads = json.loads
        framed = self.registry is not None
        out: list[Any] = []
        for data in items:
            if data is None:
                out.append(None)
                continue
            if framed:
                schema_id = unframe(data)
                if self._schema is None:
                    found = self.registry.schema(schema_id)  # type: ignore[union-attr]
                    if found.type != "JSON":
                        raise SerializationError(f"schema id {schema_id} is a {found.type} "
                                                 "schema, not a JSON Schema")
                payload = data[5:]
            else:
                payload = data
            try:
                value = loads(payload)
            except (ValueError, UnicodeDecodeError) as exc:
                raise SerializationError(f"not valid JSON{self._where()}: {payload[:80]!r} "
                                         f"({exc})") from None
            if self.validate_on_read and self._validator is not None:
                self._validate(value)
            out.append(value)
        return out

    def check(self, obj: Any, *, topic: str = "", is_key: bool = False) -> Any:
        if obj is None:
            return None
        if self._validator is None:
            bound = self.for_topic(topic, is_key=is_key)
            assert isinstance(bound, JsonSchemaSerde)
            bound.writer_id()
            return bound.check(obj)
        self._validate(obj)
        return self._json.deserialize(self._json.serialize(obj))

    def __repr__(self) -> str:
        reg = f", registry={self.registry}" if self.registry is not None else ""
        return f"wb.serde.jsonschema({self.record_name() or 'schema'!r}{reg})"


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 120 else text[:117] + "..."
