"""Records to Kafka messages and back: each topic's key and value serdes (the driver's
defaults, JSON unless the URL says otherwise, with a fast path; or the serdes the plan gives the
topic, :mod:`workbench.serde.topics`), record timestamps, and the private headers that carry what
Kafka or JSON would lose. :class:`Codecs` holds one :class:`Codec` per topic: the one place
where the driver turns records into bytes and back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ...errors import SerializationError
from ...serde import Serde
from ...types import Change
from ...windows import Windowed
from ..base import ORIGIN_HEADER, OutRec, ReadRec

__all__ = ["ERROR_HEADERS", "KEY_TYPE_HEADER", "TS_HEADER", "VALUE_TYPE_HEADER", "Codec",
           "Codecs"]

#: header that carries a timestamp librdkafka cannot send (it reads 0 as "now")
TS_HEADER = "workbench.timestamp"
#: headers that keep Python types JSON loses: windowed keys, table changes
KEY_TYPE_HEADER = "workbench.key.type"
VALUE_TYPE_HEADER = "workbench.value.type"
#: headers of a dead-letter record
ERROR_HEADERS = ("workbench.error", "workbench.error.topic", "workbench.error.partition",
                 "workbench.error.offset")
_PRIVATE_HEADERS = frozenset({TS_HEADER, KEY_TYPE_HEADER, VALUE_TYPE_HEADER})

try:  # JSON values a batch at a time (the kafka extra installs it; without it: record by record)
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is part of the kafka extra
    _orjson = None  # type: ignore[assignment]

#: a run of this many bytes that are digits or ``-`` may be an integer orjson reads inexactly
_WIDE_RUN = 20
#: the ASCII digits and ``-`` become ``0``, every other byte a space
_DIGITS = bytes(48 if 48 <= i <= 57 or i == 45 else 32 for i in range(256))
_WIDE = b"0" * _WIDE_RUN


def _json_values(vbs: list[bytes | None]) -> list[Any] | None:
    """The JSON values of ``vbs`` as orjson reads them, when that is exactly what the standard
    library reads: ``None`` when a message may hold an integer beyond 64 bits (orjson would
    make it a float; see :func:`_may_hold_wide_integers`); raises (``TypeError`` for a ``None``
    value, ``ValueError`` for anything orjson refuses: ``NaN``, a lone surrogate, deep
    nesting...) so that the record-by-record path decides those records exactly and names a
    bad one."""
    if _may_hold_wide_integers(vbs):
        return None
    return list(map(_orjson.loads, vbs))  # type: ignore[arg-type]


def _may_hold_wide_integers(vbs: list[bytes | None]) -> bool:
    """Whether a message may hold an integer orjson reads as a float: above ``2**64 - 1``
    (20 digits or more) or below ``-2**63`` (a minus and 19 digits or more). Both need 20 bytes
    in a row that are digits or ``-``, so a batch of shorter messages needs no look at its
    bytes; else one ``translate`` of the joined bytes finds such runs (an integer that fits,
    a date or a phone number in a string may match too: those batches just go record by
    record). A ``None`` message raises ``TypeError``."""
    if max(map(len, vbs), default=0) < _WIDE_RUN:  # type: ignore[arg-type]
        return False
    return _WIDE in b" ".join(vbs).translate(_DIGITS)  # type: ignore[arg-type]


#: what a bad message becomes when it is not raised: ``bad(message, error)``
OnBad = Callable[[Any, SerializationError], None]

Headers = list[tuple[str, bytes]]


class Codecs:
    """The :class:`Codec` of each topic: the driver's default one, or one built from the
    serdes the running plan gives a topic (:meth:`use`)."""

    def __init__(self, key_serde: Serde, value_serde: Serde) -> None:
        self.default = Codec(key_serde, value_serde)
        self._topics: Any = None
        self._by_topic: dict[str, Codec] = {}

    def use(self, codecs: Any) -> None:
        """Take each topic's serdes from ``codecs`` (``workbench.serde.topics.TopicCodecs``)."""
        self._topics = codecs
        self._by_topic = {}

    def for_topic(self, topic: str) -> Codec:
        """The codec of ``topic``."""
        codec = self._by_topic.get(topic)
        if codec is None:
            found = self._topics.by_topic.get(topic) if self._topics is not None else None
            codec = self.default if found is None or found.default else \
                Codec(found.key, found.value)
            self._by_topic[topic] = codec
        return codec


class Codec:
    """Encodes records for one topic's serdes and decodes messages back into records.

    Args:
        key_serde, value_serde: the serdes of keys and values.
    """

    def __init__(self, key_serde: Serde, value_serde: Serde) -> None:
        self.json_keys = key_serde.name == "json"
        self.json_values = value_serde.name == "json"
        fast = _Json()
        #: decoded keys by their bytes (JSON keys repeat; the codec fills it)
        self.known_keys: dict[bytes, Any] = fast.keys if self.json_keys else {}
        self.kenc: Callable[[Any], bytes | None] = fast.dumps_key if self.json_keys \
            else key_serde.serialize
        self.kdec: Callable[[bytes | None], Any] = fast.loads_key if self.json_keys \
            else _key_decoder(key_serde)
        self.venc: Callable[[Any], bytes | None] = fast.dumps if self.json_values \
            else value_serde.serialize
        self.vdec: Callable[[bytes | None], Any] = fast.loads if self.json_values \
            else value_serde.deserialize
        self.value_serde = value_serde
        #: values are decoded a batch at a time: typed values (a serde of the topic's own), and
        #: JSON values with orjson (the standard library's results exactly, see _json_values)
        self.batched = not self.json_values or _orjson is not None

    # -- writing ------------------------------------------------------------------------------
    def needs_headers(self, key: Any, value: Any, ts: int | None, headers: Any) -> bool:
        """Whether a record takes :meth:`encode`'s full path (headers, private headers); a
        record of a repartition topic whose only header is its origin does not."""
        return (bool(headers) and not (len(headers) == 1 and headers[0][0] == ORIGIN_HEADER)) \
            or ts is None or ts <= 0 or type(key) is Windowed or type(value) is Change

    def encode(self, topic: str, partition: int, kind: str, record: OutRec
               ) -> tuple[bytes | None, bytes | None, int, Headers | None]:
        """``(key bytes, value bytes, timestamp, headers)`` of a record; a
        :class:`SerializationError` names the topic and partition."""
        key, value, ts, _seq, headers = record
        hdrs = list(headers) if headers else None
        try:
            if self.json_keys and type(key) is Windowed:
                hdrs = [*(hdrs or ()), (KEY_TYPE_HEADER, b"windowed")]
            kb = self.kenc(key)
            if self.json_values and type(value) is Change:
                hdrs = [*(hdrs or ()), (VALUE_TYPE_HEADER, b"change")]
            vb = self.venc(value)
        except SerializationError as exc:
            raise SerializationError(
                f"cannot write a record with key {key!r} to {topic!r} partition {partition} "
                f"({kind} topic): {exc}") from exc
        if ts is None or ts <= 0:
            hdrs = [*(hdrs or ()), (TS_HEADER, str(-1 if ts is None else ts).encode())]
        return kb, vb, ts if ts is not None and ts > 0 else 0, hdrs

    # -- reading ------------------------------------------------------------------------------
    def decode(self, topic: str, partition: int, msgs: list[Any], *, raw: bool, where: str,
               bad: OnBad | None) -> tuple[list[ReadRec], int]:
        """Decode messages; return the records and how many messages were used.

        Everything that interprets the bytes (serdes, key checks, private headers) runs inside
        the bad-record handling. A bad message stops decoding (the good records before it are
        returned first; then it raises a :class:`SerializationError` naming ``where``, topic,
        partition and offset) or, with ``bad``, is handed to it and skipped. ``raw`` keeps
        keys, values and headers as they are (dead-letter topics).
        """
        kdes, vdes, known = self.kdec, self.vdec, self.known_keys
        if raw:  # bad records, as they were
            kdes = vdes = _raw
            known = {}
        known_keys = known.get
        out: list[ReadRec] = []
        append = out.append
        for used, m in enumerate(msgs):
            try:  # everything that interprets the message's bytes, headers included
                kb = m.key()
                key = known_keys(kb)
                if key is None and kb is not None:
                    key = kdes(kb)
                value = vdes(m.value())
                ts = m.timestamp()[1]
                headers = m.headers()
                if headers and not raw and not (len(headers) == 1
                                                and headers[0][0] == ORIGIN_HEADER):
                    key, value, ts, headers = _strip_headers(key, value, ts, headers)
            except (SerializationError, ValueError, TypeError, RecursionError) as caught:
                exc = caught if isinstance(caught, SerializationError) else \
                    SerializationError(_describe(caught))
                if bad is not None:
                    bad(m, exc)
                    continue
                if out:
                    return out, used  # hand out the good records first
                raise SerializationError(
                    f"cannot read the record at offset {m.offset()} of {topic!r} partition "
                    f"{partition} on {where}: {exc}. Fix or remove it, or route bad records "
                    "to a dead-letter topic with ?dead_letter=TOPIC.") from caught
            append((key, value, ts, m.offset(), tuple(headers) if raw and headers else headers))
        return out, len(msgs)


    def decode_batch(self, msgs: list[Any]) -> Any:
        """All of ``msgs`` as one column batch (``runtime.batch.Batch``, offsets as ``seq``):
        values through the serde's batch decoding, into columns when the serde reads fields
        straight into them (:attr:`Serde.columnar`), else one object per value; headers kept.
        ``None`` when a message carries one of workbench's private headers or anything does
        not decode: :meth:`decode` then takes them one by one, and names or dead-letters the
        bad record."""
        import numpy as np
        from confluent_kafka import Message

        from ...runtime.batch import Batch, ObjectValues, StructValues, column, obj_array
        from ...runtime.strings import ArrowStrings  # (and runtime/nested.py's columns)

        n = len(msgs)
        try:
            hdrs: list[Any] = list(map(Message.headers, msgs))
            headers = None
            if any(hdrs):
                if any(name in _PRIVATE_HEADERS for h in hdrs if h for name, _v in h):
                    return None  # workbench's own headers: decode() applies them
                headers = obj_array([tuple(h) if h else h for h in hdrs], n)
            keys = self._keys(list(map(Message.key, msgs)))
            vbs = list(map(Message.value, msgs))
            ts = np.fromiter((t[1] for t in map(Message.timestamp, msgs)), np.int64, n)
            offsets = np.fromiter(map(Message.offset, msgs), np.int64, n)
            serde = self.value_serde
            values: Any = None
            if self.json_values:
                got = _json_values(vbs)
                if got is None:
                    return None
                values = ObjectValues(obj_array(got, n))
            elif serde.columnar:
                found = serde.deserialize_columns(vbs)
                if found is not None:
                    cols, present = found
                    kept: dict[str, Any] = {f: c if isinstance(c, np.ndarray | ArrowStrings)
                                            else column(c) for f, c in cols.items()}
                    values = StructValues(kept, None if all(present) else np.array(present),
                                          n)
            if values is None:
                values = ObjectValues(obj_array(serde.deserialize_many(vbs), n))
        except (SerializationError, ValueError, TypeError, RecursionError):
            return None
        return Batch(keys, values, ts, offsets, headers)

    def _keys(self, kbs: list[bytes | None]) -> Any:
        """The keys of a batch: each distinct key's bytes decoded once when they decode to
        immutable scalars (records then share them), else each key on its own."""
        from ...runtime.batch import obj_array

        kdes = self.kdec
        distinct = dict.fromkeys(kbs)
        shared = True
        for kb in distinct:
            key = None if kb is None else kdes(kb)
            if key.__class__ not in _SCALARS:
                shared = False
                break
            distinct[kb] = key
        if shared:
            return obj_array(map(distinct.__getitem__, kbs), len(kbs))
        return obj_array((None if kb is None else kdes(kb) for kb in kbs), len(kbs))


#: decoded keys that records may share
_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})


def _strip_headers(key: Any, value: Any, ts: int, headers: Headers
                   ) -> tuple[Any, Any, int, Any]:
    """Apply and remove the private headers; a private header with a value workbench never
    writes (a record forged by another producer) is a :class:`SerializationError`."""
    kept = []
    for name, raw in headers:
        if name not in _PRIVATE_HEADERS:
            kept.append((name, raw))
        elif name == TS_HEADER:
            ts = _header_timestamp(raw)
        elif name == KEY_TYPE_HEADER:
            if raw != b"windowed":
                raise SerializationError(f"header {name!r} is {raw!r}; workbench writes only "
                                         "b'windowed' there")
            if not (isinstance(key, tuple) and len(key) == 3 and _is_int(key[1])
                    and _is_int(key[2])):
                raise SerializationError(f"header {name!r} says the key is windowed, but the "
                                         f"key {_short(key)} is not [key, window_start, "
                                         "window_end] with integer bounds")
            key = Windowed(*key)
        elif name == VALUE_TYPE_HEADER:
            if raw != b"change":
                raise SerializationError(f"header {name!r} is {raw!r}; workbench writes only "
                                         "b'change' there")
            if not (isinstance(value, list) and len(value) == 2):
                raise SerializationError(f"header {name!r} says the value is a table change, "
                                         f"but the value {_short(value)} is not [new, old]")
            value = Change(*value)
    return key, value, ts, tuple(kept) if kept else None


_INT64 = 1 << 63


def _header_timestamp(raw: bytes | None) -> int:
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else ""
    if text.lstrip("-").isdigit() and len(text) < 21:
        ts = int(text)
        if -_INT64 <= ts < _INT64:
            return ts
    raise SerializationError(f"header {TS_HEADER!r} must hold an integer timestamp in "
                             f"milliseconds, got {raw!r}")


def _is_int(x: Any) -> bool:
    return type(x) is int


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(exc: BaseException) -> str:
    """The text of an unexpected decoding failure (it becomes a SerializationError)."""
    if isinstance(exc, RecursionError):
        return "the record is nested too deeply to decode"
    if isinstance(exc, UnicodeDecodeError):
        return f"not valid UTF-8 ({exc})"
    return f"malformed record ({type(exc).__name__}: {exc})"


def _check_key(key: Any) -> Any:
    """``key``, if it can be a key (hashable); a JSON object cannot."""
    try:
        hash(key)
    except TypeError:
        what = "a JSON object" if type(key) is dict else f"{_short(key)}"
        raise SerializationError(f"{what} cannot be a key: keys are strings, numbers, "
                                 f"booleans or lists of them (got {_short(key)})") from None
    return key


def _raw(data: bytes | None) -> bytes | None:
    return data


def _key_decoder(serde: Serde) -> Callable[[bytes | None], Any]:
    def decode(data: bytes | None) -> Any:
        key = serde.deserialize(data)
        if type(key) is dict:  # an Avro/Protobuf record key: state identifies it by bytes
            return key
        return _check_key(_tuplify(key) if type(key) is list else key)
    return decode


class _Json:
    """:class:`~workbench.serde.JsonSerde`'s bytes, faster: the C encoder and scanner without
    the Python layers around them, and caches for keys (they repeat). Anything unusual falls
    back to ``JsonSerde`` itself (same bytes, same errors)."""

    _MAX_CACHE = 100_000

    def __init__(self) -> None:
        from json import encoder

        from ...serde import JsonSerde, _json_default

        self._slow = JsonSerde()
        make = encoder.c_make_encoder  # type: ignore[attr-defined]
        self._enc = None if make is None else make(
            None, _json_default, encoder.encode_basestring, None, ":", ",", False, False, True)
        self._scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
        self._key_bytes: dict[str | int, bytes] = {}
        self.keys: dict[bytes, Any] = {}

    def dumps(self, obj: Any) -> bytes | None:
        if obj is None:
            return None
        if self._enc is not None:
            try:
                return "".join(self._enc(obj, 0)).encode()
            except (TypeError, ValueError, RecursionError):
                pass
        return self._slow.serialize(obj)  # the same bytes, or JsonSerde's error

    def loads(self, data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            text = data.decode()
            obj, end = self._scan(text, 0)
            if end == len(text):
                return obj
        except (ValueError, StopIteration):
            pass
        return self._slow.deserialize(data)  # whitespace, other encodings, errors

    def dumps_key(self, key: Any) -> bytes | None:
        if type(key) is not str and type(key) is not int:  # 1, 1.0, True: equal, other bytes
            return self.dumps(key)
        data = self._key_bytes.get(key)
        if data is None:
            data = self.dumps(key)
            if len(self._key_bytes) >= self._MAX_CACHE:
                self._key_bytes.clear()
            self._key_bytes[key] = data  # type: ignore[assignment]
        return data

    def loads_key(self, data: bytes | None) -> Any:
        if data is None:
            return None
        key = self.keys.get(data)
        if key is None:
            key = self.loads(data)
            if type(key) is list:
                key = _check_key(_tuplify(key))
            elif type(key) is dict:
                _check_key(key)  # raises: a JSON object cannot be a key
            if len(self.keys) >= self._MAX_CACHE:
                self.keys.clear()
            self.keys[data] = key
        return key


def _tuplify(value: Any) -> Any:
    """Lists back to tuples (a key read from JSON; lists can never be keys)."""
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value
