"""Protobuf (the ``protobuf`` package): the bare message, or Confluent's wire format (with
message indexes) through a Schema Registry.

Values are dicts by default (every field of the message, nested messages as dicts, enums by
name, ``google.protobuf.Timestamp`` as a UTC ``datetime``); ``as_dict=False`` keeps message
objects. Writing takes a message or a dict. :func:`message_class` makes a message class
without ``protoc`` (for notebooks and tests).
"""

from __future__ import annotations

import base64
import datetime as _dt
from collections.abc import Mapping, Sequence
from functools import lru_cache, partial
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any, cast

from ..errors import DefinitionError, DriverUnavailableError, SerializationError
from ..runtime.nested import Lazy, force
from .protobuf_columns import field_values, gc_paused, is_map, is_repeated, message_values
from .protobuf_wire import columns as flat_columns
from .protobuf_wire import rows as flat_rows
from .registry import SchemaRegistry
from .schemas import SchemaSerde
from .wire import decode_indexes, encode_indexes, header, unframe

__all__ = ["ProtobufSerde", "message_class", "message_to_dict"]

_BUILTIN = ("google/protobuf/", "confluent/", "google/type/")


def load_protobuf() -> Any:
    """``google.protobuf``, imported on first use."""
    try:
        import google.protobuf
    except ImportError as exc:
        raise DriverUnavailableError(
            "the Protobuf serde needs protobuf: install workbench[interop] "
            "(pip install 'workbench[interop]').") from exc
    return google.protobuf


_SCALARS = {
    "double": 1, "float": 2, "int64": 3, "uint64": 4, "int32": 5, "fixed64": 6, "fixed32": 7,
    "bool": 8, "string": 9, "bytes": 12, "uint32": 13, "sfixed32": 15, "sfixed64": 16,
    "sint32": 17, "sint64": 18,
}


def message_class(name: str, fields: Mapping[str, str], *, package: str = "workbench") -> Any:
    """A proto3 message class with scalar fields, built without ``protoc``.

    >>> Total = message_class("Total", {"customer": "string", "total": "double"})
    >>> Total(customer="c1", total=2.5).SerializeToString()
    b'\\n\\x02c1\\x11\\x00\\x00\\x00\\x00\\x00\\x00\\x04@'

    Args:
        name: the message name.
        fields: ``{field: type}`` in field-number order; types are proto3 scalar names
            (``string``, ``int64``, ``double``, ``bool``, ``bytes``, ...), ``repeated <type>``
            for lists.
        package: the proto package (the file is ``<package>/<name>.proto``).
    """
    load_protobuf()
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}/{name}.proto", package=package,
                                             syntax="proto3")
    msg = fdp.message_type.add(name=name)
    for number, (field, kind) in enumerate(fields.items(), start=1):
        repeated = kind.startswith("repeated ")
        base = kind.removeprefix("repeated ").strip()
        if base not in _SCALARS:
            raise DefinitionError(f"field {field!r}: {kind!r} is not a proto3 scalar type; use "
                                  f"one of {', '.join(_SCALARS)}.")
        msg.field.add(name=field, number=number, type=_SCALARS[base],
                      label=3 if repeated else 1, json_name=field)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))


_first = itemgetter(0)

#: the fewest messages parsed as one batch (protobuf_wire): its fixed cost, a few NumPy calls
#: per field and nesting level (~0.1-0.6 ms), is repaid from about 500 messages on
FLAT_MIN = 512

#: column types of scalar fields by ``FieldDescriptor.cpp_type`` (int32, int64, uint32, double,
#: float, bool, string/bytes); uint64 (4) is left out: it may not fit an int64
_NUMPY_TYPES = {1: "int64", 2: "int64", 3: "int64", 5: "float64", 6: "float64", 7: "bool",
                9: "object"}


def message_to_dict(msg: Any) -> dict[str, Any]:
    """Every field of ``msg`` as a dict (nested messages as dicts or ``None`` when unset,
    enums by name, ``Timestamp`` as a UTC ``datetime``; see
    :mod:`~workbench.serde.protobuf_columns`)."""
    return message_values(msg.DESCRIPTOR, [msg])[0]


@lru_cache(maxsize=256)
def _column_plan(descriptor: Any) -> tuple[tuple[str, Any, str | None], ...]:
    """The column converter of each field of a message type, and the NumPy type of its column:
    a typed array for scalars (not enums, not uint64, which may not fit an int64), else a list
    as :func:`message_to_dict` gives the values (``None``)."""
    plan: list[tuple[str, Any, str | None]] = []
    for field in descriptor.fields:
        dtype = _NUMPY_TYPES.get(field.cpp_type)
        if field.enum_type is None and not is_repeated(field) and dtype is not None:
            plan.append((field.name, partial(_array, attrgetter(field.name), dtype), dtype))
        else:
            plan.append((field.name, field_values(field), None))
    return tuple(plan)


def _array(get: Any, dtype: str, msgs: list[Any]) -> Any:
    return _typed(map(get, msgs), dtype, len(msgs))


def _typed(values: Any, dtype: str, n: int | None = None) -> Any:
    import numpy as np

    return np.fromiter(values, dtype, len(values) if n is None else n)


def _lazy_or_typed(col: Any, dtype: str | None) -> Any:
    """A column of the flat path as the engine takes it: a nested field's values made on
    demand (:class:`~workbench.runtime.nested.NestedColumn`), a scalar's typed or a list."""
    if isinstance(col, Lazy):
        from ..runtime.nested import NestedColumn

        return NestedColumn.of(col)
    return col if dtype is None else _typed(col, dtype)


def _with_nones(values: list[Any], present: list[bool]) -> list[Any]:
    """``values`` placed where ``present``, ``None`` elsewhere."""
    it = iter(values)
    return [next(it) if p else None for p in present]


def _fill(msg: Any, data: Mapping[str, Any]) -> None:
    fields = msg.DESCRIPTOR.fields_by_name
    for name, value in data.items():
        field = fields.get(name)
        if field is None:
            raise SerializationError(f"message {msg.DESCRIPTOR.full_name} has no field "
                                     f"{name!r}; fields: {', '.join(fields)}")
        if value is None:
            continue
        if field.message_type is not None and not is_repeated(field):
            _fill_message(getattr(msg, name), value)
        elif is_map(field):
            target = getattr(msg, name)
            for k, v in value.items():
                if field.message_type.fields_by_name["value"].message_type is not None:
                    _fill_message(target[k], v)
                else:
                    target[k] = v
        elif is_repeated(field):
            target = getattr(msg, name)
            for v in value:
                if field.message_type is not None:
                    _fill_message(target.add(), v)
                else:
                    target.append(v)
        else:
            item = getattr(value, "item", None)  # numpy scalars
            if callable(item):
                value = item()
            setattr(msg, name, value)


def _fill_message(target: Any, value: Any) -> None:
    """A message field's (or element's, or map value's) ``target`` set from ``value``: a
    ``datetime`` for a Timestamp, a dict of its fields, or a message."""
    if target.DESCRIPTOR.full_name == "google.protobuf.Timestamp" and isinstance(
            value, _dt.datetime):
        target.FromDatetime(value)
    elif isinstance(value, Mapping):
        target.SetInParent()  # (set, even as an empty message)
        _fill(target, value)
    else:
        target.CopyFrom(value)


def _indexes(descriptor: Any) -> list[int]:
    """Where a message type sits in its file: top-level index, then nested indexes."""
    path: list[int] = []
    d = descriptor
    while d.containing_type is not None:
        parent = d.containing_type
        path.append(list(parent.nested_types).index(d))
        d = parent
    path.append(list(d.file.message_types_by_name.values()).index(d))
    return path[::-1]


class ProtobufSerde(SchemaSerde):
    """Protobuf values or keys of one message type.

    Args:
        message: the generated message class (or one from :func:`message_class`).
        registry, subject, naming, auto_register, use_latest: as for
            :class:`~workbench.serde.avro_serde.AvroSerde`; the schema registered is the message's
            file descriptor (base64, as confluent-kafka's Python serializer registers it), with
            its imports registered as references (Google's well-known types are skipped).
        as_dict: read messages as dicts (default) or as message objects.
    """

    name = "protobuf"
    schema_type = "PROTOBUF"

    def __init__(self, message: Any, *, registry: SchemaRegistry | str | None = None,
                 subject: str | None = None, naming: Any = "topic", auto_register: bool = True,
                 use_latest: bool = False, as_dict: bool = True) -> None:
        super().__init__(registry=registry, subject=subject, naming=naming,
                         auto_register=auto_register, use_latest=use_latest)
        load_protobuf()
        if not (isinstance(message, type) and hasattr(message, "DESCRIPTOR")
                and hasattr(message, "FromString")):
            raise DefinitionError(f"wb.serde.protobuf() takes a message class (generated by "
                                  f"protoc, or from message_class()), got {message!r}.")
        self.message = message
        self.as_dict = as_dict
        self._index_list = _indexes(message.DESCRIPTOR)
        self._index_bytes = encode_indexes(self._index_list)

    def has_schema(self) -> bool:
        return True

    def record_name(self) -> str | None:
        return str(self.message.DESCRIPTOR.full_name)

    def schema_text(self) -> str:
        return base64.standard_b64encode(self.message.DESCRIPTOR.file.serialized_pb).decode()

    def references(self) -> list[Any]:
        assert self.registry is not None
        return self._refs(self.message.DESCRIPTOR.file)

    def _refs(self, file: Any) -> list[Any]:
        from .registry import load_registry_client

        sr = load_registry_client()
        assert self.registry is not None
        refs = []
        for dep in file.dependencies:
            if dep.name.startswith(_BUILTIN):
                continue
            text = base64.standard_b64encode(dep.serialized_pb).decode()
            self.registry.register(dep.name, text, "PROTOBUF", self._refs(dep))
            version = self.registry.latest(dep.name).version
            refs.append(sr.SchemaReference(dep.name, dep.name, version))
        return refs

    def _message(self, obj: Any) -> Any:
        if isinstance(obj, self.message):
            return obj
        if isinstance(obj, Mapping):
            msg = self.message()
            try:
                _fill(msg, obj)
            except SerializationError:
                raise
            except (TypeError, ValueError, AttributeError) as exc:
                raise SerializationError(f"{obj!r} does not fit message "
                                         f"{self.message.DESCRIPTOR.full_name}{self._where()}: "
                                         f"{exc}") from None
            return msg
        raise SerializationError(f"the Protobuf serde writes {self.message.__name__} messages "
                                 f"or dicts, got {type(obj).__name__}{self._where()}")

    def serialize(self, obj: Any) -> bytes | None:
        if obj is None:
            return None
        payload: bytes = self._message(obj).SerializeToString()
        if self.registry is None:
            return bytes(payload)
        return header(self.writer_id()) + self._index_bytes + payload

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        return self.deserialize_many((data,))[0]

    def deserialize_many(self, items: Sequence[bytes | None]) -> list[Any]:
        with gc_paused():
            return self._dicts(items)

    def _dicts(self, items: Sequence[bytes | None]) -> list[Any]:
        descriptor = self.message.DESCRIPTOR
        if self.as_dict and len(items) >= FLAT_MIN:
            flat = self._flat(items)
            if flat is not None:
                n = len(items) if flat[1] is None else sum(flat[1])
                rows = flat_rows(descriptor, flat[0], n)
                return rows if flat[1] is None else _with_nones(rows, flat[1])
        return self._dicts_per_message(items)

    def _dicts_per_message(self, items: Sequence[bytes | None]) -> list[Any]:
        """:meth:`deserialize_many` by parsing each message."""
        descriptor = self.message.DESCRIPTOR
        out = self._parse_many(items)
        if not self.as_dict:
            return out
        if None not in out:
            return message_values(descriptor, out)
        dicts = iter(message_values(descriptor, [m for m in out if m is not None]))
        return [None if m is None else next(dicts) for m in out]

    def _flat(self, items: Sequence[bytes | None]
              ) -> tuple[list[list[Any]], list[bool] | None] | None:
        """The columns of the messages by :mod:`~workbench.serde.protobuf_wire` (the batch
        parsed at once) and where they are (``None``: all ``items``), or ``None`` where this
        batch is parsed message by message (a message framed otherwise, not well-formed, ...)."""
        present = None
        live = items
        if None in items:
            present = [m is not None for m in items]
            live = [m for m in items if m is not None]
        if len(live) < FLAT_MIN:
            return None
        frame = self._index_bytes if self.registry is not None else None
        try:  # (framed: the header checked and cut off by flat_columns, in NumPy)
            cols = flat_columns(self.message.DESCRIPTOR, cast("Sequence[bytes]", live), frame)
        except TypeError:
            return None  # (not bytes: the message-by-message path says so)
        return None if cols is None else (cols, present)

    def _parse_many(self, items: Sequence[bytes | None]) -> list[Any]:
        """The messages (``None`` for ``None``)."""
        from google.protobuf.message import DecodeError

        parse = self.message.FromString
        framed = self.registry is not None
        ib = self._index_bytes
        start = 5 + len(ib)
        out: list[Any] = []
        try:  # the common case, without a Python loop: every message there, framed with our
            # message's indexes (or bare)
            if None not in items:
                whole = cast("Sequence[bytes]", items)
                if not framed:
                    out = list(map(parse, whole))
                elif set(map(_first, whole)) == {0} and all(
                        map(bytes.startswith, whole, repeat(ib), repeat(5))):
                    out = list(map(parse, map(itemgetter(slice(start, None)), whole)))
        except (DecodeError, IndexError, TypeError):
            out = []  # the loop below names the message
        if len(out) != len(items):
            out = self._parse_one_by_one(items)
        return out

    def _parse_one_by_one(self, items: Sequence[bytes | None]) -> list[Any]:
        from google.protobuf.message import DecodeError

        parse = self.message.FromString
        framed = self.registry is not None
        ib = self._index_bytes
        start = 5 + len(ib)
        out: list[Any] = []
        append = out.append
        for data in items:
            if data is None:
                append(None)
                continue
            try:
                if not framed:
                    msg = parse(data)
                elif data[:1] == b"\x00" and data[5:start] == ib:  # the common case
                    msg = parse(data[start:])
                else:
                    unframe(data)
                    indexes, pos = decode_indexes(data, 5)
                    if indexes != self._index_list:
                        raise SerializationError(
                            f"the message has indexes {indexes}, which is not "
                            f"{self.message.DESCRIPTOR.full_name}{self._where()}")
                    msg = parse(data[pos:])
            except DecodeError as exc:
                raise SerializationError(f"not a {self.message.DESCRIPTOR.full_name} message"
                                         f"{self._where()}: {exc} ({data[:40]!r})") from None
            append(msg)
        return out

    @property
    def columnar(self) -> bool:
        """Read as dicts: every field is gathered into a column without a dict per message."""
        return self.as_dict

    def deserialize_columns(self, items: Sequence[bytes | None]
                            ) -> tuple[dict[str, Any], list[bool]] | None:
        """Messages straight into columns, one field at a time (no dict per message): typed
        NumPy arrays for scalar fields (``int64``, ``float64``, ``bool``, ``object`` for text
        and bytes), enum names, lists; nested messages, maps and repeated enums as
        :func:`message_to_dict` shows them. With a ``None`` value, lists with ``None``.
        A batch of :data:`FLAT_MIN` messages or more is parsed at once
        (:mod:`~workbench.serde.protobuf_wire`), a smaller one (or one that path hands back)
        message by message."""
        if not self.as_dict:
            return super().deserialize_columns(items)
        with gc_paused():
            return self._columns(items)

    def _columns(self, items: Sequence[bytes | None]) -> tuple[dict[str, Any], list[bool]]:
        plan = _column_plan(self.message.DESCRIPTOR)
        flat = self._flat(items) if len(items) >= FLAT_MIN else None
        if flat is not None:
            cols, where = flat
            if where is None:
                return {name: _lazy_or_typed(col, dtype)
                        for (name, _, dtype), col in zip(plan, cols)}, [True] * len(items)
            return {name: _with_nones(force(col), where)
                    for (name, _, _), col in zip(plan, cols)}, where
        return self._columns_per_message(items)

    def _columns_per_message(self, items: Sequence[bytes | None]
                             ) -> tuple[dict[str, Any], list[bool]]:
        """:meth:`deserialize_columns` by parsing each message (the path for what
        :mod:`~workbench.serde.protobuf_wire` hands back)."""
        plan = _column_plan(self.message.DESCRIPTOR)
        msgs = self._parse_many(items)
        present = [m is not None for m in msgs]
        if all(present):
            return {name: column(msgs) for name, column, _ in plan}, present
        live = [m for m in msgs if m is not None]
        cols: dict[str, Any] = {}
        for name, column, _ in plan:
            col = column(live) if live else []
            got = iter(col if isinstance(col, list) else col.tolist())  # Python values
            cols[name] = [None if m is None else next(got) for m in msgs]
        return cols, present

    def check(self, obj: Any, *, topic: str = "", is_key: bool = False) -> Any:
        if obj is None:
            return None
        msg = self.message.FromString(self._message(obj).SerializeToString())
        return message_to_dict(msg) if self.as_dict else msg

    def __repr__(self) -> str:
        reg = f", registry={self.registry}" if self.registry is not None else ""
        return f"wb.serde.protobuf({self.message.DESCRIPTOR.full_name}{reg})"
