"""Serdes: how a topic's keys and values become bytes and back.

Serdes belong to topics: ``p.source(topic, key=..., value=...)``, ``p.table(...)`` and
``stream.to(topic, key=..., value=...)`` choose them; a topic without one uses the driver's
default (JSON, or ``?key_serde=``/``?value_serde=`` of a ``kafka://`` URL). Every driver
partitions keyed records by the key serde's bytes (Kafka's murmur2), so a ``string()`` key lands
in the partition Java's ``StringSerializer`` puts it in.

>>> import workbench as wb
>>> wb.serde.string().serialize("k1"), wb.serde.long().serialize(1)
(b'k1', b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01')

=====================  ======================================================================
``json()``             compact UTF-8 JSON (the default)
``string()``           UTF-8 text (Java ``StringSerializer``)
``bytes()``            bytes as they are (``ByteArraySerializer``)
``long()``,            Java's big-endian numbers (``LongSerializer``, ``IntegerSerializer``,
``integer()``,         ``ShortSerializer``, ``DoubleSerializer``, ``FloatSerializer``), and
``short()``,           ``UUIDSerializer``
``double()``,
``float32()``,
``uuid()``
``avro(schema)``       Avro (fastavro); with ``registry=``: Confluent's wire format
``protobuf(Message)``  Protobuf; with ``registry=``: Confluent's wire format (message indexes)
``jsonschema(s)``      JSON checked against a JSON Schema; with ``registry=``: the wire format
``time_windowed``,     windowed keys in Kafka Streams' layouts (chosen automatically for the
``session_windowed``   windowed results of a topic whose key serde is not JSON)
=====================  ======================================================================

Schema Registry serdes take a :class:`SchemaRegistry` (or its URL), register the schema on
first write under the subject of their naming strategy (:mod:`.naming`) and read any schema id
they meet. The Avro, Protobuf and JSON Schema libraries load only when such a serde is made.
"""

from __future__ import annotations

from typing import Any

from ..errors import DefinitionError, did_you_mean
from .base import Serde, SerdeLike, TopicSerdes, as_serde
from .java import DoubleSerde, FloatSerde, IntegerSerde, LongSerde, ShortSerde, UUIDSerde
from .registry import SchemaRegistry
from .text import BytesSerde, JsonSerde, StringSerde
from .text import _json_default as _json_default
from .windowed import SessionWindowedSerde, TimeWindowedSerde

__all__ = [
    "BytesSerde",
    "JsonSerde",
    "SchemaRegistry",
    "Serde",
    "SerdeLike",
    "StringSerde",
    "TopicSerdes",
    "avro",
    "bytes",
    "double",
    "float32",
    "get_serde",
    "integer",
    "is_serde",
    "json",
    "jsonschema",
    "long",
    "protobuf",
    "session_windowed",
    "short",
    "string",
    "time_windowed",
    "uuid",
]

_SIMPLE: dict[str, type[Serde]] = {
    "json": JsonSerde, "string": StringSerde, "bytes": BytesSerde, "long": LongSerde,
    "integer": IntegerSerde, "short": ShortSerde, "double": DoubleSerde,
    "float32": FloatSerde, "uuid": UUIDSerde,
}


def json() -> Serde:
    """Compact UTF-8 JSON (the default serde)."""
    return JsonSerde()


def string() -> Serde:
    """UTF-8 text, as Java's ``StringSerializer``."""
    return StringSerde()


def bytes() -> Serde:
    """Raw bytes, unchanged."""
    return BytesSerde()


def long() -> Serde:
    """Java ``Long``: 8 bytes, big-endian."""
    return LongSerde()


def integer() -> Serde:
    """Java ``Integer``: 4 bytes, big-endian."""
    return IntegerSerde()


def short() -> Serde:
    """Java ``Short``: 2 bytes, big-endian."""
    return ShortSerde()


def double() -> Serde:
    """Java ``Double``: 8 bytes, IEEE 754 big-endian."""
    return DoubleSerde()


def float32() -> Serde:
    """Java ``Float``: 4 bytes, IEEE 754 big-endian."""
    return FloatSerde()


def uuid() -> Serde:
    """Java ``UUID``: its text, UTF-8."""
    return UUIDSerde()


def avro(schema: Any = None, **options: Any) -> Serde:
    """Avro; see :class:`~workbench.serde.avro_serde.AvroSerde` for ``registry=``, ``subject=``,
    ``naming=``, ``auto_register=``, ``use_latest=``."""
    from .avro_serde import AvroSerde

    return AvroSerde(schema, **options)


def protobuf(message: Any, **options: Any) -> Serde:
    """Protobuf; see :class:`~workbench.serde.protobuf_serde.ProtobufSerde`."""
    from .protobuf_serde import ProtobufSerde

    return ProtobufSerde(message, **options)


def jsonschema(schema: Any = None, **options: Any) -> Serde:
    """JSON Schema; see :class:`~workbench.serde.json_schema.JsonSchemaSerde`."""
    from .json_schema import JsonSchemaSerde

    return JsonSchemaSerde(schema, **options)


def time_windowed(inner: Any, size: Any) -> Serde:
    """Keys of time windows of ``size`` in Kafka Streams' ``TimeWindowedSerde`` layout."""
    from .._time import duration_ms

    return TimeWindowedSerde(get_serde(inner), duration_ms(size, "time_windowed size"))


def session_windowed(inner: Any) -> Serde:
    """Keys of session windows in Kafka Streams' ``SessionWindowedSerde`` layout."""
    return SessionWindowedSerde(get_serde(inner))


def is_serde(obj: Any) -> bool:
    """True for a :class:`Serde` or any object with ``serialize`` and ``deserialize``."""
    return isinstance(obj, Serde) or (
        callable(getattr(obj, "serialize", None)) and callable(getattr(obj, "deserialize", None))
        and not isinstance(obj, type))


def get_serde(spec: Any) -> Serde:
    """A serde from its name (``"json"``, ``"string"``, ``"bytes"``, ``"long"``,
    ``"integer"``, ``"short"``, ``"double"``, ``"float32"``, ``"uuid"``), or ``spec`` itself
    when it is a serde (an object with ``serialize`` and ``deserialize`` is wrapped)."""
    if isinstance(spec, str):
        cls = _SIMPLE.get(spec)
        if cls is None:
            raise DefinitionError(f"unknown serde {spec!r}." + did_you_mean(spec, _SIMPLE))
        return cls()
    if is_serde(spec):
        return as_serde(spec)
    raise DefinitionError(f"a serde needs serialize() and deserialize(), got {spec!r}.")
