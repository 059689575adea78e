"""The JSON-friendly encoding of record keys, shared by changelogs and drivers.

Tuples become lists, a :class:`~workbench.windows.Windowed` key becomes
``{"windowed": [key, start, end]}`` and a frozenset ``{"frozenset": [...]}``; :func:`decode_key`
turns them back (and passes keys that were never encoded through).
"""

from __future__ import annotations

from typing import Any

from .windows import Windowed

__all__ = ["SCALARS", "KeyId", "decode_key", "encode_key", "key_id", "unwrap_key"]

SCALARS = (str, int, float, bool, type(None))


class KeyId:
    """A record key as state stores, joins and caches see it: identified by its serialized
    bytes, as Kafka Streams identifies keys.

    Python's ``==`` merges keys that differ on the wire (``1 == 1.0 == True``, ``(1,) ==
    (1.0,)``; ``nan != nan``), so a stateful step keys its state by :func:`key_id` of a record's
    key. Strings, integers and ``None`` are their own identity (their ``==`` agrees with their
    bytes); every other key is wrapped in a ``KeyId`` whose equality, hash and order are those
    of its JSON bytes (``1.0`` → ``1.0``, ``True`` → ``true``). Lists and dicts, unhashable in
    Python, are usable keys this way. Outputs always carry the original key (:func:`unwrap_key`).

    >>> key_id(1) == key_id(1.0), key_id(1.0) == key_id(1.00), key_id(True) == key_id(1)
    (False, True, False)
    """

    __slots__ = ("_hash", "data", "key")

    def __init__(self, key: Any, data: bytes) -> None:
        self.key = key
        self.data = data
        self._hash = hash(data)

    def __eq__(self, other: object) -> bool:
        return other.__class__ is KeyId and other.data == self.data  # type: ignore[attr-defined]

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __lt__(self, other: object) -> bool:
        if other.__class__ is KeyId:
            return self.data < other.data  # type: ignore[attr-defined, no-any-return]
        return NotImplemented

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return repr(self.key)


def _identity_bytes(key: Any) -> bytes:
    import json

    from .serde import _json_default

    return json.dumps(encode_key(key), separators=(",", ":"), ensure_ascii=False,
                      sort_keys=True, default=_json_default).encode()


def key_id(key: Any) -> Any:
    """The identity of ``key`` in state: the key itself for ``str``, ``int`` (not ``bool``) and
    ``None``, else a :class:`KeyId` of its serialized bytes. Idempotent."""
    cls = key.__class__
    if cls is str or cls is int or key is None or cls is KeyId:
        return key
    return KeyId(key, _identity_bytes(key))


def unwrap_key(key: Any) -> Any:
    """The original key behind :func:`key_id` (also inside a windowed key)."""
    cls = key.__class__
    if cls is KeyId:
        return key.key
    if cls is Windowed and key[0].__class__ is KeyId:
        return Windowed(key[0].key, key[1], key[2])
    return key


def encode_key(key: Any) -> Any:
    """A JSON-friendly form of ``key`` that :func:`decode_key` turns back into the same value.

    >>> encode_key(Windowed(("a", 1), 0, 10))
    {'windowed': [['a', 1], 0, 10]}
    """
    if key.__class__ in SCALARS:
        return key
    if key.__class__ is KeyId:
        return encode_key(key.key)
    if isinstance(key, Windowed):
        return {"windowed": [encode_key(key.key), key.window_start, key.window_end]}
    if isinstance(key, tuple):
        return [encode_key(x) for x in key]
    if isinstance(key, frozenset):
        return {"frozenset": [encode_key(x) for x in key]}
    return key


def decode_key(key: Any) -> Any:
    """Inverse of :func:`encode_key`.

    >>> decode_key({"windowed": [["a", 1], 0, 10]})
    Windowed(key=('a', 1), window_start=0, window_end=10)
    """
    if key.__class__ in SCALARS:
        return key
    if isinstance(key, list):
        return tuple(decode_key(x) for x in key)
    if isinstance(key, dict) and len(key) == 1:
        if "windowed" in key:
            k, start, end = key["windowed"]
            return Windowed(decode_key(k), start, end)
        if "frozenset" in key:
            return frozenset(decode_key(x) for x in key["frozenset"])
    return key
