"""Protobuf messages into columns without a Python object per message: the batch parsed once.

The payloads of a batch are joined and parsed by protobuf (upb, in C) *once*, as one message
of a "flat" type made from the message type: the same field numbers and scalar types, every
scalar field ``repeated``, a message field a singular field of its type's flat type.
Protobuf's wire format merges concatenated messages (repeated fields append, a message met
again merges), so each repeated field of the flat message holds the values of that field of
every message, in order, at any depth. What it loses, which message each value came from, a
walk over the field tags of the joined bytes gives back, in NumPy across all messages at once
(:func:`_field_counts`): how many values of each field each message holds, and where each
nested message lies, for the walk of the next level.

The values are those of :mod:`~workbench.serde.protobuf_columns` (``FromString`` then
converting each message). A top-level scalar field's come as a list; a nested, repeated or
map field's as a :class:`~workbench.runtime.nested.Lazy`: the decoded leaf values (in
protobuf's arrays) and counts, made into dicts, lists and datetimes when read.

Whatever this path does not handle exactly, it hands back (:func:`columns` returns ``None``)
and the caller parses message by message: a type that is not proto3, a payload that is not
well-formed or framed otherwise (the message-by-message path names it), a
singular field or a oneof present more than once in one message (protobuf merges or keeps the
last), a field with another wire type than its type's, a group, a Timestamp out of
``datetime``'s range, a map entry with an unknown field (upb then keeps the whole entry
aside, out of the map). Other unknown fields are skipped, as protobuf keeps them aside.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache
from itertools import islice
from typing import Any

from ..errors import SerializationError
from ..runtime.nested import Lazy, force
from .protobuf_columns import (
    _FLOAT_EXACT,
    TIMESTAMP,
    datetimes,
    enum_names,
    is_map,
    is_repeated,
)

__all__ = ["columns", "rows"]

_GROUP, _MESSAGE, _BYTES, _STRING, _ENUM, _INT32 = 10, 11, 12, 9, 14, 5
#: wire type of each scalar ``FieldDescriptor.type``: fixed64 1, fixed32 5, varint 0
_FIXED64 = {1, 6, 16}
_FIXED32 = {2, 7, 15}
_counter = itertools.count()
#: protobuf's limit on nesting (its parser's default recursion limit)
_MAX_DEPTH = 100
#: by a run's length (0 to 8 bytes): the high bit of each of its bytes, in a little-endian
#: 64-bit number of the eight bytes from its start
_HIGH_BITS = [0x8080808080808080 & ((1 << 8 * n) - 1) for n in range(9)]
#: what the tag walk does with a field besides counting it (_Tables.special)
_SLOW, _LONG, _PACKED, _NESTED = 1, 2, 4, 8


class _Fallback(Exception):
    """This batch is not for the flat path: parse message by message."""


def columns(descriptor: Any, payloads: Sequence[bytes], frame: bytes | None = None
            ) -> list[Any] | None:
    """The value of every field of ``descriptor`` (in descriptor order) in each of the
    ``payloads`` (bare, well-formed messages; with ``frame``, the message indexes of
    Confluent's wire format, each payload framed: a zero byte, a 4-byte schema id, ``frame``,
    then the message): lists for scalar fields, a :class:`~workbench.runtime.nested.Lazy` for
    the others (nested messages, lists, maps: their decoded values, made into Python objects
    on demand); ``None`` when this batch must be parsed message by message (see the module
    doc; also a payload framed otherwise)."""
    try:
        plan = _plan(descriptor)
        if plan is None:
            return None
        return _columns(plan, payloads, frame)
    except (_Fallback, IndexError):  # (IndexError: bytes the walk did not expect; protobuf,
        return None  # message by message, has the last word)


def rows(descriptor: Any, cols: list[Any], n: int) -> list[dict[str, Any]]:
    """The dict of each of the ``n`` messages from :func:`columns`."""
    plan = _plan(descriptor)
    assert plan is not None
    if plan.rows is None:
        return [{} for _ in range(n)]
    return plan.rows(*map(force, cols))  # type: ignore[no-any-return]


class _Plan:
    """What reading one message type flat takes: the flat class, each field's slot and
    allowed wire types, and how its values become a column."""

    def __init__(self, descriptor: Any) -> None:
        self.descriptor = descriptor
        self.fields = list(descriptor.fields)
        self.names = tuple(f.name for f in self.fields)
        self.rows = rows_maker(self.names) if self.names else None
        self.flat: Any = None
        self.timestamp = descriptor.full_name == TIMESTAMP
        self.map_entry = bool(descriptor.GetOptions().map_entry)
        top = max((f.number for f in self.fields), default=0)
        self.slot_of = [-1] * (top + 1)
        self.allowed = []
        self.varint_packed = []  # per slot: a packed run of varints counts its last bytes
        self.fixed_size = []  # per slot: 4 or 8 for packed fixed-size scalars, else 0
        oneofs: dict[Any, list[int]] = {}
        self.single: list[int] = []  # slots that hold at most one value per message
        for slot, f in enumerate(self.fields):
            self.slot_of[f.number] = slot
            rep = is_repeated(f)
            if f.type in (_MESSAGE, _BYTES, _STRING):
                wires, size = {2}, 0
            else:
                wire = 1 if f.type in _FIXED64 else 5 if f.type in _FIXED32 else 0
                wires = {wire, 2} if rep else {wire}
                size = {1: 8, 5: 4}.get(wire, 0)
            self.allowed.append(sum(1 << w for w in wires))
            self.varint_packed.append(rep and f.type not in (_MESSAGE, _BYTES, _STRING)
                                      and size == 0)
            self.fixed_size.append(size if rep else 0)
            if f.containing_oneof is not None:
                oneofs.setdefault(f.containing_oneof.full_name, []).append(slot)
            elif not rep:
                self.single.append(slot)
        self.oneofs = list(oneofs.values())
        self.nested: list[_Plan | None] = [None] * len(self.fields)
        self._tables: Any = None

    def tables(self) -> Any:
        """NumPy lookup tables of the walk (:func:`_field_counts`), made once."""
        if self._tables is None:
            self._tables = _Tables(self)
        return self._tables


class _Tables:
    """Per slot (``k``, the last, for an unknown field) and per first byte of a field's tag."""

    def __init__(self, plan: _Plan) -> None:
        import numpy as np

        k = len(plan.fields)
        slots = [k if s < 0 else s for s in plan.slot_of]
        self.slot_of = np.array([*slots, k], np.int64)  # by field number; past the end: k
        self.allowed = np.array([*plan.allowed, 0xFF], np.int64)
        self.fixed = np.array([*plan.fixed_size, 0], np.int64)
        self.packable = np.array([*(v or f > 0 for v, f in zip(plan.varint_packed,
                                                                plan.fixed_size)), False])
        # by a field's first two bytes (``tag << 8 | next``), when the tag is one byte (fields
        # 1 to 15) valid for the type: the length of the field when its value's varint (or
        # length) is one byte or fixed, else 0; and what else the walk does with it (bits:
        # _SLOW the general step, _step; _LONG a varint longer than a byte, one skip; _PACKED
        # count a packed run's elements; _NESTED a message field's value: where it is)
        advance = np.zeros((256, 256), np.int64)
        special = np.full((256, 256), _SLOW, np.uint8)
        slot = [k] * 256
        small = np.arange(256) < 0x80
        message = [n is not None for n in plan.nested] + [False]
        for tag in range(128):
            number, wire = tag >> 3, tag & 7
            s = slots[number] if number < len(slots) else k
            if number == 0 or wire not in (0, 1, 2, 5) or not (self.allowed[s] >> wire) & 1:
                continue
            slot[tag] = s
            if wire == 0:
                advance[tag] = np.where(small, 2, 0)
                special[tag] = np.where(small, 0, _LONG)
            elif wire == 2:
                advance[tag] = np.where(small, 2 + np.arange(256), 0)
                kind = _PACKED if self.packable[s] else _NESTED if message[s] else 0
                special[tag] = np.where(small, kind, _SLOW)
            else:
                advance[tag] = 9 if wire == 1 else 5
                special[tag] = 0
        self.advance = advance.reshape(-1)
        self.special = special.reshape(-1)
        self.message = np.array(message)
        self.slot = np.array(slot, np.int64)


@lru_cache(maxsize=256)
def _plan(descriptor: Any) -> _Plan | None:
    """The plan of ``descriptor`` and of every message type under it (``None`` when one of them
    is not proto3 or has a group)."""
    plans: dict[str, _Plan] = {}
    if not _collect(descriptor, plans):
        return None
    _flat_classes(list(plans.values()))
    return plans[descriptor.full_name]


def _collect(descriptor: Any, plans: dict[str, _Plan]) -> bool:
    if descriptor.full_name in plans:
        return True
    if not _proto3(descriptor.file):
        return False
    plan = plans[descriptor.full_name] = _Plan(descriptor)
    for slot, f in enumerate(plan.fields):
        if f.type == _GROUP:
            return False
        if f.message_type is not None:
            if not _collect(f.message_type, plans):
                return False
            plan.nested[slot] = plans[f.message_type.full_name]
    return True


@lru_cache(maxsize=256)
def _proto3(file: Any) -> bool:
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    return bool(proto.syntax == "proto3")


def _flat_classes(plans: list[_Plan]) -> None:
    """One flat message class per plan, in a file and pool of their own: each field repeated,
    enums as int32, a message field a *singular* field of the nested type's flat class, so
    that every occurrence of it in the batch merges into one message (whose repeated fields
    then hold the values of all of them, in order)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    package = f"workbench_flat{next(_counter)}"
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}/flat.proto", package=package,
                                             syntax="proto3")
    names = {id(plan): f"F{i}" for i, plan in enumerate(plans)}
    for plan in plans:
        msg = fdp.message_type.add(name=names[id(plan)])
        for f, nested in zip(plan.fields, plan.nested):
            if nested is not None:
                msg.field.add(name=f.name, number=f.number, type=_MESSAGE, label=1,
                              type_name=f".{package}.{names[id(nested)]}")
            else:
                kind = _INT32 if f.type == _ENUM else f.type
                msg.field.add(name=f.name, number=f.number, type=kind, label=3)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    for plan in plans:
        plan.flat = message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"{package}.{names[id(plan)]}"))


def _columns(plan: _Plan, payloads: Sequence[bytes], frame: bytes | None) -> list[list[Any]]:
    import numpy as np
    from google.protobuf.message import DecodeError

    n = len(payloads)
    if not n:
        return [[] for _ in plan.fields]
    joined = b"".join(payloads)
    lengths = np.fromiter(map(len, payloads), np.int64, n)
    if frame is not None:
        joined, lengths = _unframed(joined, lengths, frame)
    ends = np.cumsum(lengths)
    buf = np.frombuffer(joined + bytes(16), np.uint8)
    try:
        flat = plan.flat.FromString(joined)
    except DecodeError:
        raise _Fallback from None
    return _level(plan, flat, buf, ends - lengths, ends, 0)


def _unframed(joined: bytes, lengths: Any, frame: bytes) -> tuple[bytes, Any]:
    """The messages of ``joined`` payloads of ``lengths`` in Confluent's wire format with the
    message indexes ``frame``, joined without their headers, and their lengths; raises
    :class:`_Fallback` where one is framed otherwise."""
    import numpy as np

    size = 5 + len(frame)
    if (lengths < size).any():
        raise _Fallback
    raw = np.frombuffer(joined, np.uint8)
    header = (np.cumsum(lengths) - lengths)[:, None] + np.arange(size)
    found = raw[header]
    if found[:, 0].any() or (found[:, 5:] != np.frombuffer(frame, np.uint8)).any():
        raise _Fallback  # (the magic byte 0, then the schema id, then these indexes)
    keep = np.ones(len(raw), bool)
    keep[header] = False
    return raw[keep].tobytes(), lengths - size


def _level(plan: _Plan, flat: Any, buf: Any, starts: Any, ends: Any, depth: int
           ) -> list[Any]:
    """The columns of the messages of ``plan``'s type at ``starts``-``ends`` of ``buf``, all of
    whose values ``flat`` (their merge, parsed by protobuf) holds: a list of values for a
    singular scalar field, a :class:`Lazy` for the others."""
    n = len(starts)
    if not n:  # (where a recursive type's data ends)
        return [[] for _ in plan.fields]
    if depth > _MAX_DEPTH:
        raise _Fallback
    counts, within = _field_counts(plan, buf, starts, ends)
    out: list[Any] = []
    for slot, f in enumerate(plan.fields):
        per = counts[:, slot]
        nested = plan.nested[slot]
        if nested is not None:
            sub_starts, sub_ends = within[slot]
            sub = getattr(flat, f.name)
            if is_map(f):
                keys, vals = _entry_columns(nested, sub, buf, sub_starts, sub_ends, depth + 1)
                out.append(Lazy(n, _maps, keys, vals, per))
                continue
            converted = _values_of(nested, sub, buf, sub_starts, sub_ends, depth + 1)
            if is_repeated(f):
                out.append(Lazy(n, _split, converted, per))
            else:
                out.append(Lazy(n, _place, converted, per, n, None))
            continue
        got = getattr(flat, f.name)
        if len(got) != int(per.sum()):
            raise _Fallback  # protobuf read the bytes otherwise than the walk did
        if depth:  # a nested message's: the values stay in protobuf's array until read
            out.append(_column(f, Lazy(len(got), _all, got), per, n, True))
        else:
            out.append(_column(f, got[:], per, n, False))
    return out


def _column(f: Any, values: Any, per: Any, n: int, nested: bool) -> Any:
    """A scalar field's column from its ``values`` (a list, or a :class:`Lazy` one): a
    :class:`Lazy` for a repeated field and for any field of a nested message (its rows are
    made with the nested values), else a list."""
    size = values.n if isinstance(values, Lazy) else len(values)
    if f.enum_type is not None:
        names = enum_names(f.enum_type)
        values = Lazy(size, _named, names, values)
        default = names[f.default_value] if not is_repeated(f) else None
    else:
        default = f.default_value
    if is_repeated(f):
        return Lazy(n, _split, values, per)
    if nested:
        return Lazy(n, _place, values, per, n, default)
    return _place(force(values), per, n, default)


def _all(container: Any) -> list[Any]:
    """A repeated field's values (protobuf's container) as a list."""
    return container[:]  # type: ignore[no-any-return]


def _named(names: Any, values: list[int]) -> list[Any]:
    return list(map(names.__getitem__, values))


def _maps(keys: list[Any], values: list[Any], per: Any) -> list[dict[Any, Any]]:
    """Consecutive ``per`` (NumPy) pairs of ``keys`` and ``values`` as dicts."""
    pairs = zip(keys, values)
    return [dict(islice(pairs, c)) for c in per.tolist()]


def _split(values: list[Any], per: Any) -> list[list[Any]]:
    """``values`` cut into consecutive lists of ``per`` (NumPy) values."""
    if not len(per):
        return []
    k = int(per[0])
    if (per == k).all():
        if not k:
            return [[] for _ in range(len(per))]
        return [values[i:i + k] for i in range(0, len(values), k)]
    bounds = [0, *per.cumsum().tolist()]
    return [values[a:b] for a, b in zip(bounds, islice(bounds, 1, None))]


def _place(values: list[Any], per: Any, n: int, default: Any) -> list[Any]:
    """A singular field's values where present, ``default`` where not."""
    if len(values) == n:
        return values
    import numpy as np

    out = np.empty(n, dtype=object)
    out.fill(default)
    present = np.flatnonzero(per)
    fill = np.empty(len(values), dtype=object)
    fill[:] = values
    out[present] = fill
    result: list[Any] = out.tolist()
    return result


def _values_of(plan: _Plan, flat: Any, buf: Any, starts: Any, ends: Any, depth: int
               ) -> Any:
    """Nested messages of ``plan``'s type as a message field shows them (a :class:`Lazy`,
    or a list)."""
    cols = _level(plan, flat, buf, starts, ends, depth)
    n = len(starts)
    if plan.timestamp:
        secs, nanos = cols
        given = secs
        while isinstance(given, Lazy):  # (down to the seconds set; where unset: 0)
            given = given.args[0]
        import numpy as np

        given = np.fromiter(given, np.int64, len(given))
        if not len(given) or (given.min() > -_FLOAT_EXACT and given.max() < _FLOAT_EXACT):
            return Lazy(n, datetimes, secs, nanos)  # (all of them convert)
        try:
            return datetimes(force(secs), force(nanos))
        except SerializationError:
            raise _Fallback from None  # (the message-by-message path names it)
    if plan.rows is None:
        return [{} for _ in range(n)]
    return Lazy(n, plan.rows, *cols)


def _entry_columns(plan: _Plan, flat: Any, buf: Any, starts: Any, ends: Any, depth: int
                   ) -> list[Any]:
    """Map entries' keys and values; an entry without its message value has the message's
    defaults (as protobuf's map gives it), not ``None``."""
    cols = _level(plan, flat, buf, starts, ends, depth)
    nested = plan.nested[1]
    if nested is not None:
        if depth + 1 > _MAX_DEPTH:
            raise _Fallback  # (now: the default message, made later, is one level deeper)
        cols[1] = Lazy(len(starts), _with_defaults, cols[1], nested, buf, depth + 1)
    return cols


def _with_defaults(values: list[Any], nested: _Plan, buf: Any, depth: int) -> list[Any]:
    """``values`` with the default message (its dict, or datetime) for each ``None``."""
    import numpy as np

    if None not in values:
        return values
    missing = [i for i, v in enumerate(values) if v is None]
    none = np.zeros(len(missing), np.int64)  # (empty messages)
    defaults = force(_values_of(nested, nested.flat(), buf, none, none, depth))
    values = list(values)
    for i, d in zip(missing, defaults):
        values[i] = d
    return values


def rows_maker(names: tuple[str, ...]) -> Any:
    """A function of ``len(names)`` columns returning a dict per row (``{names[0]: c0[i],
    ...}``), by one list comprehension."""
    cols = ", ".join(f"c{i}" for i in range(len(names)))
    row = ", ".join(f"v{i}" for i in range(len(names)))
    items = ", ".join(f"{name!r}: v{i}" for i, name in enumerate(names))
    loop = f"zip({cols})" if len(names) > 1 else "c0"
    code = f"lambda {cols}: [{{{items}}} for {row}{',' if len(names) == 1 else ''} in {loop}]"
    if len(names) == 1:
        code = f"lambda c0: [{{{items}}} for v0 in c0]"
    return eval(code, {"__builtins__": {"zip": zip}})


def _field_counts(plan: _Plan, buf: Any, starts: Any, ends: Any
                  ) -> tuple[Any, dict[int, tuple[Any, Any]]]:
    """How many values of each field (columns, in slot order) each message at ``starts`` to
    ``ends`` of ``buf`` holds (a packed run counts its elements), by walking the field tags of
    all of them at once; and where the value of each occurrence of a message field is (by
    slot: starts and ends, in the order of the bytes). Raises :class:`_Fallback` where the
    bytes are not a well-formed message of the type (protobuf, parsing message by message,
    then says what is wrong)."""
    import numpy as np

    n, k = len(starts), len(plan.fields)
    msg = np.arange(n)
    live = starts < ends
    pos, end = starts, ends
    if not live.all():
        pos, msg, end = starts[live], msg[live], ends[live]
    t = plan.tables()
    cells: list[Any] = []  # per step: the message and slot of each field (msg * (k + 1) + slot)
    extra: list[tuple[Any, Any]] = []  # cells of fields with other than one value, the rest
    found: list[tuple[Any, Any, Any]] = []
    row = msg * (k + 1)
    # each byte with the next, as one big-endian 16-bit number (a view: no copy)
    pairs = np.ndarray((len(buf) - 1,), ">u2", buf, 0, (1,))
    while pos.size:
        key = pairs[pos].astype(np.intp)  # (NumPy indexes by intp arrays much faster)
        b = key >> 8
        nxt = pos + t.advance[key]
        slot = t.slot[b]
        spec = t.special[key]
        sp = np.flatnonzero(spec)
        if sp.size:
            kind = spec[sp]
            at = sp[kind == _LONG]
            if at.size:  # a one-byte tag, then a varint longer than a byte
                nxt[at] = _skip_varint(buf, pos[at] + 1)
            at = sp[kind == _NESTED]
            if at.size:
                found.append((slot[at], pos[at] + 2, nxt[at]))
            at = sp[kind == _PACKED]
            if at.size:
                count = np.ones(len(at), np.int64)
                _packed_counts(buf, slot[at], np.arange(len(at)), pos[at] + 2,
                               nxt[at] - pos[at] - 2, count, t.fixed)
                extra.append((row[at] + slot[at], count - 1))
            at = sp[kind == _SLOW]
            if at.size:  # a longer tag or length, or not valid for the type (fails there)
                nxt[at], slot[at], count, vstart = _step(buf, pos[at], t)
                more = np.flatnonzero(count != 1)
                if more.size:
                    extra.append((row[at[more]] + slot[at[more]], count[more] - 1))
                m = np.flatnonzero(t.message[slot[at]])
                if m.size:
                    found.append((slot[at[m]], vstart[m], nxt[at[m]]))
        cells.append(row + slot)
        left = end - nxt
        least = left.min()
        if least > 0:
            pos = nxt
            continue
        if least < 0:
            raise _Fallback
        keep = left > 0
        pos, msg, end = nxt[keep], msg[keep], end[keep]
        row = msg * (k + 1)
    if not cells:
        return np.zeros((n, k), np.int64), _within(plan, [])
    counts = np.bincount(np.concatenate(cells), None, n * (k + 1))
    if extra:
        counts = counts + np.bincount(np.concatenate([c for c, _ in extra]),
                                      np.concatenate([w for _, w in extra]),
                                      n * (k + 1)).astype(np.int64)
    counts = counts.astype(np.int64).reshape(n, k + 1)
    if plan.map_entry and counts[:, k].any():
        raise _Fallback  # upb keeps a map entry with unknown fields aside, not in the map
    counts = counts[:, :k]
    if plan.single and counts[:, plan.single].max() > 1:
        raise _Fallback  # protobuf keeps the last value (merges a message)
    for group in plan.oneofs:
        if counts[:, group].sum(axis=1).max() > 1:
            raise _Fallback  # protobuf keeps the last member set
    return counts, _within(plan, found)


def _within(plan: _Plan, found: list[tuple[Any, Any, Any]]) -> dict[int, tuple[Any, Any]]:
    """The starts and ends of each message field's values, by slot, in the order of the bytes
    (each walk step found them in message order: runs that a stable sort merges)."""
    import numpy as np

    slots = [s for s, nested in enumerate(plan.nested) if nested is not None]
    if not found:
        none = np.zeros(0, np.int64)
        return {s: (none, none) for s in slots}
    slot = np.concatenate([f[0] for f in found])
    start = np.concatenate([f[1] for f in found])
    end = np.concatenate([f[2] for f in found])
    out = {}
    for s in slots:
        mine = np.flatnonzero(slot == s) if len(slots) > 1 else np.arange(len(slot))
        order = mine[np.argsort(start[mine], kind="stable")]
        out[s] = (start[order], end[order])
    return out


def _step(buf: Any, pos: Any, t: Any) -> tuple[Any, Any, Any, Any]:
    """One field of each message at ``pos``, any tag: the positions after them, their slots
    (``k`` for an unknown field), value counts and where length-delimited values start."""
    import numpy as np

    tag, pos = _varint(buf, pos)
    wire = (tag & np.uint64(7)).astype(np.int64)
    field = tag >> np.uint64(3)
    nxt = pos.copy()
    length = np.zeros(len(pos), np.int64)
    if (wire == 0).any():
        w = np.flatnonzero(wire == 0)
        nxt[w] = _skip_varint(buf, pos[w])
    nxt[wire == 1] += 8
    nxt[wire == 5] += 4
    w = np.flatnonzero(wire == 2)
    if w.size:
        size, start = _varint(buf, pos[w])
        if (size >= np.uint64(1 << 31)).any():
            raise _Fallback
        length[w] = size.astype(np.int64)
        pos[w] = start  # (where a length-delimited value starts)
        nxt[w] = start + length[w]
    if ((wire == 3) | (wire == 4) | (wire > 5) | (field == 0)).any():
        raise _Fallback
    top = len(t.slot_of) - 1
    slot = t.slot_of[np.minimum(field, np.uint64(top)).astype(np.int64)]
    if (((t.allowed[slot] >> wire) & 1) == 0).any():
        raise _Fallback  # a known field with another wire type than its type's
    count = np.ones(len(pos), np.int64)
    packed = np.flatnonzero((wire == 2) & t.packable[slot])
    if packed.size:
        _packed_counts(buf, slot, packed, pos, length, count, t.fixed)
    return nxt, slot, count, pos


def _packed_counts(buf: Any, slots: Any, p: Any, starts: Any, lengths: Any, count: Any,
                   fixed: Any) -> None:
    """The number of elements of each packed run ``p`` (indexes into the other arrays) into
    ``count``."""
    import numpy as np

    if p.size and (starts[p] + lengths[p] > len(buf) - 16).any():
        raise _Fallback  # (past the end: the walk would find it too)
    size = fixed[slots[p]]
    fx = p[size > 0]
    if fx.size:
        if (lengths[fx] % fixed[slots[fx]]).any():
            raise _Fallback
        count[fx] = lengths[fx] // fixed[slots[fx]]
    vp = p[size == 0]
    if vp.size:  # a varint's last byte is below 0x80
        ln = lengths[vp]
        at = starts[vp]
        found = np.empty(len(vp), np.int64)
        short = np.flatnonzero(ln <= 8)
        if short.size:  # the bytes below 0x80 among a run's (up to eight) as bits of a number
            words = np.ndarray((len(buf) - 7,), "<u8", buf, 0, (1,))
            high = np.array(_HIGH_BITS, np.uint64)[ln[short]]
            ends_high = ~words[at[short]] & high
            found[short] = np.bitwise_count(ends_high)
        longer = np.flatnonzero(ln > 8)
        if longer.size:
            lon = ln[longer]
            run = np.repeat(np.arange(len(longer)), lon)
            offset = np.arange(int(lon.sum())) - np.repeat(np.cumsum(lon) - lon, lon)
            last = buf[at[longer][run] + offset] < 0x80
            found[longer] = np.bincount(run, last, len(longer)).astype(np.int64)
        count[vp] = found
        ends = at + ln
        if (ln > 0).any() and (buf[ends[ln > 0] - 1] >= 0x80).any():
            raise _Fallback  # a truncated varint


def _skip_varint(buf: Any, pos: Any) -> Any:
    """The positions after the varints at ``pos``: the first byte without its high bit, found
    in the eight bytes from each position read as one number (a view of ``buf``), or in the
    two after them."""
    import numpy as np

    words = np.ndarray((len(buf) - 7,), "<u8", buf, 0, (1,))
    stop = ~words[pos] & np.uint64(0x8080808080808080)  # the high bits that are not set
    first = stop & (~stop + np.uint64(1))  # the lowest of them (0: none in eight bytes)
    size = ((np.frexp(first.astype(np.float64))[1] - 1) >> 3) + 1  # (its bit's byte, + 1)
    longer = np.flatnonzero(size == 0)
    if longer.size:  # nine or ten bytes
        ninth, tenth = buf[pos[longer] + 8], buf[pos[longer] + 9]
        if ((ninth >= 0x80) & (tenth >= 0x80)).any():
            raise _Fallback  # a varint longer than ten bytes
        size[longer] = np.where(ninth < 0x80, 9, 10)
    return pos + size


def _varint(buf: Any, pos: Any) -> tuple[Any, Any]:
    """The varints at ``pos`` (uint64) and the positions after them."""
    import numpy as np

    b = buf[pos]
    value = (b & 0x7F).astype(np.uint64)
    after = pos + 1
    more = np.flatnonzero(b >= 0x80)
    if more.size:  # longer varints: their ten bytes at once
        j = np.arange(10)
        window = buf[pos[more][:, None] + j]
        last = window < 0x80
        if not last.any(axis=1).all():
            raise _Fallback  # a varint longer than ten bytes
        length = last.argmax(axis=1) + 1
        parts = (window & 0x7F).astype(np.uint64) << (7 * j).astype(np.uint64)
        parts[j >= length[:, None]] = 0
        value[more] = np.bitwise_or.reduce(parts, axis=1)
        after[more] += length - 1
    return value, after
