"""Avro (fastavro): raw binary, or Confluent's wire format through a Schema Registry.

Values are what fastavro reads: records as dicts, logical types as Python types
(``timestamp-millis`` → ``datetime`` in UTC, ``decimal`` → ``Decimal``, ``uuid`` → ``UUID``...).
A reader schema different from the writer's is resolved by Avro's rules (fields added with a
default, fields removed, promoted numbers, aliases).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

from ..errors import DefinitionError, DriverUnavailableError, SerializationError
from .registry import SchemaRegistry
from .schemas import SchemaSerde
from .wire import header, unframe

__all__ = ["AvroSerde", "load_fastavro"]

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def load_fastavro() -> Any:
    """fastavro, imported on first use."""
    try:
        import fastavro
    except ImportError as exc:
        raise DriverUnavailableError(
            "the Avro serde needs fastavro: install workbench[interop] "
            "(pip install 'workbench[interop]').") from exc
    return fastavro


def _schema_obj(schema: Any) -> Any:
    if isinstance(schema, str):
        text = schema.strip()
        if text in _PRIMITIVES:
            return text
        try:
            return json.loads(text)
        except ValueError as exc:
            raise DefinitionError(f"an Avro schema must be JSON (or a primitive type name), got "
                                  f"{schema[:80]!r}: {exc}.") from None
    if isinstance(schema, dict | list):
        return schema
    raise DefinitionError(f"an Avro schema is a dict, a list (a union) or JSON text, got "
                          f"{type(schema).__name__}.")


def _parse(fastavro: Any, schema: Any) -> Any:
    try:
        return fastavro.parse_schema(schema, named_schemas={})
    except Exception as exc:  # fastavro's SchemaParseException and friends
        raise DefinitionError(f"not a valid Avro schema: {type(exc).__name__}: {exc}.") \
            from None


class AvroSerde(SchemaSerde):
    """Avro values or keys.

    Args:
        schema: the Avro schema (dict, list or JSON text). It is the writer's schema when
            writing and the reader's schema when reading (schema evolution). Optional with a
            registry: then the subject's latest schema is used for writing and the writer's
            schema for reading.
        registry: a :class:`~workbench.serde.SchemaRegistry` (or its URL): Confluent's wire
            format. Without it, raw Avro binary (both sides must know the schema).
        subject: the subject to register under (default: from ``naming``).
        naming: ``"topic"`` (default), ``"record"``, ``"topic_record"`` or a function.
        auto_register: register the schema on first write (default); else look it up.
        use_latest: write with the subject's latest schema instead of ``schema``.
    """

    name = "avro"
    schema_type = "AVRO"

    def __init__(self, schema: Any = None, *, registry: SchemaRegistry | str | None = None,
                 subject: str | None = None, naming: Any = "topic", auto_register: bool = True,
                 use_latest: bool = False) -> None:
        super().__init__(registry=registry, subject=subject, naming=naming,
                         auto_register=auto_register, use_latest=use_latest)
        if schema is None and registry is None:
            raise DefinitionError("wb.serde.avro() needs a schema, or a registry to take the "
                                  "writer's schema from.")
        self._schema = None if schema is None else _schema_obj(schema)
        self._parsed: Any = None
        self._text: str | None = None
        self._writers: dict[int, Any] = {}
        if self._schema is not None:
            self._parsed = _parse(load_fastavro(), self._schema)

    # -- schema -------------------------------------------------------------------------------
    @property
    def schema(self) -> Any:
        """The serde's own schema (``None``: taken from the registry)."""
        return self._schema

    def has_schema(self) -> bool:
        return self._parsed is not None

    def record_name(self) -> str | None:
        s = self._parsed
        if isinstance(s, dict) and s.get("type") in ("record", "enum", "fixed"):
            return str(s["name"])
        return None

    def schema_text(self) -> str:
        if self._text is None:
            self._text = json.dumps(self._schema, separators=(",", ":"))
        return self._text

    def adopt_latest(self, text: str) -> None:
        self._schema = json.loads(text)
        self._parsed = _parse(load_fastavro(), self._schema)
        self._text = text

    def _copy(self) -> AvroSerde:
        clone = super()._copy()
        assert isinstance(clone, AvroSerde)
        clone._writers = {}
        return clone

    # -- encoding -----------------------------------------------------------------------------
    def _payload(self, obj: Any) -> bytes:
        fastavro = load_fastavro()
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, self._parsed, obj)
        except Exception as exc:
            raise SerializationError(self._why_not(obj, exc)) from None
        return buf.getvalue()

    def _why_not(self, obj: Any, exc: BaseException | None = None) -> str:
        from fastavro.validation import ValidationError, validate

        try:
            validate(obj, self._parsed, raise_errors=True)
        except ValidationError as verr:
            detail = "; ".join(str(e) for e in verr.errors) or str(verr)
            return f"{_short(obj)} does not match the Avro schema{self._where()}: {detail}"
        except Exception as other:
            exc = exc or other
        return (f"cannot encode {_short(obj)} with the Avro schema{self._where()}: "
                f"{type(exc).__name__}: {exc}")

    def serialize(self, obj: Any) -> bytes | None:
        if obj is None:
            return None
        if self.registry is None:
            return self._payload(obj)
        schema_id = self.writer_id()  # may adopt the subject's latest schema first
        return header(schema_id) + self._payload(obj)

    # -- decoding -----------------------------------------------------------------------------
    def _writer(self, schema_id: int) -> tuple[Any, Any]:
        """The writer's parsed schema for ``schema_id``, and the reader schema to resolve it
        to (``None`` when it is the writer's)."""
        pair = self._writers.get(schema_id)
        if pair is None:
            assert self.registry is not None
            found = self.registry.schema(schema_id)
            if found.type != "AVRO":
                raise SerializationError(f"schema id {schema_id} is a {found.type} schema, "
                                         "not Avro")
            try:
                text = json.loads(found.text)
                parsed = load_fastavro().parse_schema(text, named_schemas={})
            except Exception as exc:
                raise SerializationError(f"schema id {schema_id} is not a valid Avro schema: "
                                         f"{exc}") from None
            # no schema of our own, or the writer's: read as written
            same = self._parsed is None or self._parsed == parsed
            pair = (parsed, None if same else self._parsed)
            self._writers[schema_id] = pair
        return pair

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        if self.registry is None:
            return self.deserialize_many((data,))[0]
        schema_id = unframe(data)
        writer, reader = self._writers.get(schema_id) or self._writer(schema_id)
        buf = io.BytesIO(data)
        buf.seek(5)
        try:
            value = load_fastavro().schemaless_reader(buf, writer, reader)
        except Exception as exc:
            raise SerializationError(self._bad(data, exc, schema_id=schema_id)) from None
        if buf.tell() != len(data):
            raise SerializationError(self._bad(data, None, len(data) - buf.tell(),
                                               schema_id=schema_id))
        return value

    def deserialize_many(self, items: Sequence[bytes | None]) -> list[Any]:
        read = load_fastavro().schemaless_reader
        BytesIO = io.BytesIO
        out: list[Any] = []
        append = out.append
        if self.registry is None:
            schema = self._parsed
            for data in items:
                if data is None:
                    append(None)
                    continue
                try:
                    buf = BytesIO(data)
                    append(read(buf, schema, None))
                except Exception as exc:
                    raise SerializationError(self._bad(data, exc)) from None
                if buf.tell() != len(data):
                    raise SerializationError(self._bad(data, None, len(data) - buf.tell()))
            return out
        writers = self._writers
        for data in items:
            if data is None:
                append(None)
                continue
            schema_id = unframe(data)
            writer, reader = writers.get(schema_id) or self._writer(schema_id)
            try:
                buf = BytesIO(data)
                buf.seek(5)
                append(read(buf, writer, reader))
            except Exception as exc:
                raise SerializationError(self._bad(data, exc, schema_id=schema_id)) from None
            if buf.tell() != len(data):
                raise SerializationError(self._bad(data, None, len(data) - buf.tell(),
                                                   schema_id=schema_id))
        return out

    def _bad(self, data: bytes, exc: BaseException | None, extra: int = 0,
             schema_id: int | None = None) -> str:
        what = f"schema id {schema_id}" if schema_id is not None else "the Avro schema"
        if exc is None:
            return (f"not an Avro record of {what}{self._where()}: {extra} bytes left over "
                    f"({data[:40]!r})")
        return (f"cannot decode {data[:40]!r} with {what}{self._where()}: "
                f"{type(exc).__name__}: {exc}")

    # -- definition time ----------------------------------------------------------------------
    def check(self, obj: Any, *, topic: str = "", is_key: bool = False) -> Any:
        if obj is None:
            return None
        if self._parsed is None:
            bound = self.for_topic(topic, is_key=is_key)
            assert isinstance(bound, AvroSerde)
            bound.writer_id()  # adopts the subject's latest schema
            return bound.check(obj)
        fastavro = load_fastavro()
        payload = self._payload(obj)
        return fastavro.schemaless_reader(io.BytesIO(payload), self._parsed, None)

    def __repr__(self) -> str:
        what = self.record_name() or (self.schema_text()[:40] if self._schema is not None
                                      else "schema from the registry")
        reg = f", registry={self.registry}" if self.registry is not None else ""
        return f"wb.serde.avro({what!r}{reg})"


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 120 else text[:117] + "..."
