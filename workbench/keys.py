"""The JSON-friendly encoding of record keys, shared by changelogs and drivers.

Tuples become lists, a :class:`~workbench.windows.Windowed` key becomes
``{"windowed": [key, start, end]}`` and a frozenset ``{"frozenset": [...]}``; :func:`decode_key`
turns them back (and passes keys that were never encoded through).
"""

from __future__ import annotations

from typing import Any

from .windows import Windowed

__all__ = ["SCALARS", "decode_key", "encode_key"]

SCALARS = (str, int, float, bool, type(None))


def encode_key(key: Any) -> Any:
    """A JSON-friendly form of ``key`` that :func:`decode_key` turns back into the same value.

    >>> encode_key(Windowed(("a", 1), 0, 10))
    {'windowed': [['a', 1], 0, 10]}
    """
    if key.__class__ in SCALARS:
        return key
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
