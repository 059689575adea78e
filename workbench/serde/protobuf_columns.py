"""Protobuf messages into Python values a field at a time, by converters compiled once per
message type from its descriptor (no generic walk over the descriptor per message). This is
the message-by-message path; batches of 512 messages or more are parsed at once by
:mod:`~workbench.serde.protobuf_wire`, to the same values.

What the values are (the same for a dict per message and for columns):

* every field of the message, in descriptor order; scalars as protobuf gives them (a
  proto3 ``optional`` or oneof scalar that is not set reads as its default, as the attribute
  does); enums by name, a number the enum does not name stays the number;
* a singular message field: ``None`` when not set, a ``google.protobuf.Timestamp`` as a UTC
  ``datetime``, any other message as a dict of its fields (recursively);
* repeated fields as lists, maps as dicts (message and enum values converted as above).

A column is computed for all messages at once: attribute getters mapped over the messages,
nested messages gathered (the set ones, or every element of every repeated field) and
converted as one column of their own, then put back in place. Per message only the dicts
themselves are built, by a constructor made for the message type's field names.
"""

from __future__ import annotations

import datetime as _dt
import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from itertools import accumulate, chain, islice, repeat
from operator import attrgetter, floordiv, itemgetter, methodcaller
from typing import Any

from ..errors import SerializationError

__all__ = ["datetimes", "dict_maker", "field_values", "gc_paused", "message_values", "split",
           "timestamps"]

Column = Callable[[list[Any]], list[Any]]

TIMESTAMP = "google.protobuf.Timestamp"
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_TD = _dt.timedelta
#: the seconds ``datetime.fromtimestamp`` takes (0001-01-01 to 9999-12-31 23:59:59 UTC)
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799
_seconds, _nanos = attrgetter("seconds"), attrgetter("nanos")
_all = itemgetter(slice(None))


class EnumNames(dict[int, Any]):
    """Enum numbers to names; a number the enum does not name stays the number."""

    def __missing__(self, number: int) -> int:
        return number


def enum_names(enum: Any) -> EnumNames:
    """The names of ``enum``'s numbers (with aliases, the name ``values_by_number`` gives)."""
    by_number = enum.values_by_number  # (its items() may give another alias than get())
    return EnumNames({v.number: by_number.get(v.number).name for v in enum.values})


def is_repeated(field: Any) -> bool:
    rep = getattr(field, "is_repeated", None)
    return bool(rep) if rep is not None else field.label == 3


def is_map(field: Any) -> bool:
    mt = field.message_type
    return mt is not None and mt.GetOptions().map_entry


def utc(seconds: int, nanos: int) -> _dt.datetime:
    """A Timestamp's ``seconds`` and ``nanos`` as a UTC ``datetime`` (microseconds)."""
    return _dt.datetime.fromtimestamp(seconds, _dt.UTC) + _dt.timedelta(
        microseconds=nanos // 1000)


def timestamps(msgs: list[Any]) -> list[_dt.datetime]:
    """``Timestamp`` messages as UTC datetimes (:func:`utc` of each), without a Python loop.
    One out of the range of ``datetime`` is a :class:`SerializationError`."""
    return datetimes(list(map(_seconds, msgs)), list(map(_nanos, msgs)))


def datetimes(secs: list[int], nanos: list[int]) -> list[_dt.datetime]:
    """:func:`utc` of each pair of ``secs`` and ``nanos``, without a Python loop. One out of
    the range of ``datetime`` is a :class:`SerializationError`."""
    micros = map(floordiv, nanos, repeat(1000))
    try:
        if secs and min(secs) > -_FLOAT_EXACT and max(secs) < _FLOAT_EXACT:
            return _from_floats(secs, nanos)
        if secs and (min(secs) < _MIN_SECONDS or max(secs) > _MAX_SECONDS):
            return list(map(utc, secs, micros))  # raises as utc() does
        # the same instants as utc() (its seconds are in range): the epoch plus the seconds
        # and microseconds, one timedelta each
        return list(map(_EPOCH.__add__, map(_TD, repeat(0), secs, micros)))
    except (ValueError, OverflowError, OSError) as exc:
        bad = next(((s, n) for s, n in zip(secs, nanos) if not _converts(s, n)), None)
        what = f"seconds={bad[0]} nanos={bad[1]}" if bad is not None else "a value"
        raise SerializationError(f"a google.protobuf.Timestamp with {what} is not a date "
                                 f"between 0001-01-01 and 9999-12-31 ({exc})") from None


#: seconds below which ``seconds + micros / 1e6`` (nanos an int32) is a float whose error is
#: under 2**-22 s, so that ``fromtimestamp`` (rounding half-even to the microsecond) gives
#: exactly :func:`utc`'s instant
_FLOAT_EXACT = 2**31


def _from_floats(secs: list[int], nanos: list[int]) -> list[_dt.datetime]:
    """:func:`utc` of each pair, through one float timestamp each (``fromtimestamp`` is faster
    than adding a ``timedelta``; exact in the range of :data:`_FLOAT_EXACT`)."""
    import numpy as np

    stamps = np.array(secs, np.int64) + (np.array(nanos, np.int64) // 1000) / 1e6
    return list(map(_dt.datetime.fromtimestamp, stamps.tolist(), repeat(_dt.UTC)))


def _converts(seconds: int, nanos: int) -> bool:
    try:
        utc(seconds, nanos)
    except (ValueError, OverflowError, OSError):
        return False
    return True


def split(flat: list[Any], lengths: Iterable[int]) -> list[list[Any]]:
    """``flat`` cut into consecutive lists of ``lengths``."""
    bounds = list(accumulate(lengths, initial=0))
    return list(map(flat.__getitem__, map(slice, bounds, islice(bounds, 1, None))))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused (restored after): converting a batch makes
    hundreds of thousands of dicts and lists without cycles, and the collections they would
    trigger walk the whole heap (as the engine, which pauses it while records flow, found)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def dict_maker(names: tuple[str, ...]) -> Callable[..., dict[str, Any]]:
    """A function of ``len(names)`` arguments returning ``{names[0]: arg0, ...}`` (a dict
    display: faster than ``dict(zip(names, args))``)."""
    params = ", ".join(f"_{i}" for i in range(len(names)))
    items = ", ".join(f"{name!r}: _{i}" for i, name in enumerate(names))
    code = f"lambda {params}: {{{items}}}"
    maker: Callable[..., dict[str, Any]] = eval(code, {"__builtins__": {}})
    return maker


@lru_cache(maxsize=1024)
def _message_plan(descriptor: Any) -> tuple[tuple[str, ...], tuple[Column, ...], Any]:
    """The field names of a message type, one column converter per field, and the dict maker."""
    names = tuple(f.name for f in descriptor.fields)
    return names, tuple(field_values(f) for f in descriptor.fields), dict_maker(names)


def message_values(descriptor: Any, msgs: list[Any]) -> list[dict[str, Any]]:
    """Messages of type ``descriptor`` (none ``None``) as dicts of every field."""
    if not msgs:  # (and a recursive message type ends where the data ends)
        return []
    names, columns, make = _message_plan(descriptor)
    if not names:
        return [{} for _ in msgs]
    return list(map(make, *[column(msgs) for column in columns]))


def _nested_values(descriptor: Any) -> Column:
    """Messages of type ``descriptor`` as a message field shows them: Timestamps as UTC
    datetimes, others as dicts."""
    if descriptor.full_name == TIMESTAMP:
        return timestamps
    return lambda msgs: message_values(descriptor, msgs)


def field_values(field: Any) -> Column:
    """The converter of one field: its value in each message of a list (none ``None``)."""
    get = attrgetter(field.name)
    if field.message_type is None:
        names = enum_names(field.enum_type) if field.enum_type is not None else None
        if not is_repeated(field):
            if names is None:
                return lambda msgs: list(map(get, msgs))
            return lambda msgs: list(map(names.__getitem__, map(get, msgs)))
        if names is None:
            return lambda msgs: list(map(_all, map(get, msgs)))
        return lambda msgs: [list(map(names.__getitem__, v)) for v in map(get, msgs)]
    if is_map(field):
        return _map_values(field, get)
    nested = _nested_values(field.message_type)
    if is_repeated(field):
        def repeated_messages(msgs: list[Any]) -> list[Any]:
            containers = list(map(get, msgs))
            return split(nested(list(chain.from_iterable(containers))), map(len, containers))
        return repeated_messages

    has = methodcaller("HasField", field.name)

    def singular_message(msgs: list[Any]) -> list[Any]:
        present = list(map(has, msgs))
        if all(present):
            return nested(list(map(get, msgs)))
        values = iter(nested([get(m) for m, p in zip(msgs, present) if p]))
        return [next(values) if p else None for p in present]
    return singular_message


def _map_values(field: Any, get: Any) -> Column:
    value = field.message_type.fields_by_name["value"]
    if value.message_type is None:
        if value.enum_type is None:
            return lambda msgs: [{k: v[k] for k in v} for v in map(get, msgs)]
        names = enum_names(value.enum_type)
        return lambda msgs: [{k: names[v[k]] for k in v} for v in map(get, msgs)]
    nested = _nested_values(value.message_type)

    def message_map(msgs: list[Any]) -> list[Any]:
        containers = list(map(get, msgs))
        keys = [list(v) for v in containers]
        flat = nested([v[k] for v, ks in zip(containers, keys) for k in ks])
        it = iter(flat)
        return [dict(zip(ks, islice(it, len(ks)))) for ks in keys]
    return message_map
