"""The serde contract: what turns a topic's keys or values into bytes and back.

A :class:`Serde` belongs to a topic (the plan records each topic's key and value serde; see
:mod:`workbench.serde.topics`). Drivers that store bytes (Kafka) encode and decode through it;
every driver partitions keyed records by the bytes of the key serde, as Java's producer does.

A serde that needs to know where it writes (a Schema Registry serde names its subject after the
topic) is *bound* to a topic with :meth:`Serde.for_topic`; the bound serde is what encodes and
decodes. That binding is the one place where a topic's bytes are made, so it is also where a
later layer (encryption of personal fields) wraps it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ..errors import SerializationError

__all__ = ["Serde", "SerdeLike", "TopicSerdes"]


@runtime_checkable
class SerdeLike(Protocol):
    """Anything with ``serialize(obj) -> bytes | None`` and ``deserialize(bytes | None)``."""

    def serialize(self, obj: Any) -> bytes | None: ...

    def deserialize(self, data: bytes | None) -> Any: ...


class Serde:
    """Base class of workbench's serdes. ``None`` always maps to ``None`` (tombstones).

    Subclasses implement :meth:`serialize` and :meth:`deserialize`; the other methods have
    defaults built on them.
    """

    #: short name shown in plans, reprs and messages
    name: str = "serde"

    def serialize(self, obj: Any) -> bytes | None:
        """The bytes of ``obj`` (``None`` for ``None``); raises :class:`SerializationError`."""
        raise NotImplementedError

    def deserialize(self, data: bytes | None) -> Any:
        """The object ``data`` holds (``None`` for ``None``); raises
        :class:`SerializationError`."""
        raise NotImplementedError

    def deserialize_many(self, items: Sequence[bytes | None]) -> list[Any]:
        """Decode many messages (one Python object each); subclasses make it faster."""
        decode = self.deserialize
        return [decode(x) for x in items]

    def deserialize_columns(self, items: Sequence[bytes | None]
                            ) -> tuple[dict[str, Any], list[bool]] | None:
        """Decode many messages into columns, ``({field: values}, present)`` (``present[i]``
        is False for a ``None`` value; values a list, or a NumPy array already typed), when
        every value is a record with the same fields; else ``None`` (use
        :meth:`deserialize_many`). Drivers decoding a batch into columns call this first."""
        values = self.deserialize_many(items)
        return _columns(values)

    @property
    def columnar(self) -> bool:
        """True when :meth:`deserialize_columns` reads fields straight into columns, without a
        Python object per message: a driver then decodes a batch of values into columns, else
        into one object per value (columns are made from those when a step asks for them)."""
        return False

    def for_topic(self, topic: str, *, is_key: bool) -> Serde:
        """This serde as used for the keys (``is_key``) or values of ``topic``. Serdes whose
        bytes depend on the topic (Schema Registry subjects) return a bound copy."""
        return self

    def check(self, obj: Any, *, topic: str = "", is_key: bool = False) -> Any:
        """Definition-time check of a sample value: what a reader of the topic would get back
        (the round trip through the bytes). Raises :class:`SerializationError` saying why
        ``obj`` does not fit."""
        bound = self.for_topic(topic, is_key=is_key)
        return bound.deserialize(bound.serialize(obj))

    @property
    def offline(self) -> bool:
        """True when :meth:`check` works without a network service (no registry look-up)."""
        return True

    def __repr__(self) -> str:
        return f"wb.serde.{self.name}()"


def _columns(values: list[Any]) -> tuple[dict[str, list[Any]], list[bool]] | None:
    """Dict values with the same fields as columns (``None`` values: absent rows)."""
    present = [v is not None for v in values]
    first = next((v for v in values if v is not None), None)
    if first.__class__ is not dict:
        return None
    names = list(first)
    cols: dict[str, list[Any]] = {n: [] for n in names}
    appends = [(n, cols[n].append) for n in names]
    width = len(names)
    for v in values:
        if v is None:
            for _n, add in appends:
                add(None)
            continue
        if v.__class__ is not dict or len(v) != width:
            return None
        try:
            for n, add in appends:
                add(v[n])
        except KeyError:
            return None
    return cols, present


class _Adapter(Serde):
    """A user's object with ``serialize``/``deserialize`` seen as a :class:`Serde`."""

    def __init__(self, inner: SerdeLike) -> None:
        self.inner = inner
        self.name = str(getattr(inner, "name", type(inner).__name__))

    def serialize(self, obj: Any) -> bytes | None:
        if obj is None:
            return None
        try:
            data = self.inner.serialize(obj)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(f"serde {self.name!r} cannot encode {obj!r}: "
                                     f"{type(exc).__name__}: {exc}") from exc
        if data is not None and not isinstance(data, bytes | bytearray | memoryview):
            raise SerializationError(f"serde {self.name!r} returned {type(data).__name__}, "
                                     "not bytes")
        return bytes(data) if data is not None else None

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            return self.inner.deserialize(data)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(f"serde {self.name!r} cannot decode {data[:40]!r}: "
                                     f"{type(exc).__name__}: {exc}") from exc

    def __repr__(self) -> str:
        return repr(self.inner)


def as_serde(obj: SerdeLike) -> Serde:
    """``obj`` as a :class:`Serde` (a user's serializer/deserializer pair is wrapped)."""
    return obj if isinstance(obj, Serde) else _Adapter(obj)


class TopicSerdes:
    """The bound key and value serdes of one topic: the encode/decode hook of that topic.

    Attributes:
        topic: the topic.
        key, value: bound serdes (:meth:`Serde.for_topic`).
        default: True when both are the driver-wide defaults (nothing was chosen for it).
    """

    __slots__ = ("default", "key", "topic", "value")

    def __init__(self, topic: str, key: Serde, value: Serde, *, default: bool = False) -> None:
        self.topic = topic
        self.key = key
        self.value = value
        self.default = default

    def __repr__(self) -> str:
        return f"TopicSerdes({self.topic!r}, key={self.key!r}, value={self.value!r})"
