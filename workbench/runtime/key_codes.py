"""Numbering a column of record keys for the column operators: equal keys get equal numbers.

A column operator may group keys by Python equality only where equality is identity
(:func:`~workbench.keys.key_id`): ``str``, ``int`` and ``None`` keys. Checking the type of every
key and hashing every key costs two passes over Python objects per batch. Keys usually repeat
the same few objects (a country column, a key taken from a table's values), so
:func:`object_key_codes` first groups the column by object identity — the objects' addresses,
read as an ``int64`` column without touching the objects — and checks types and hashes values
once per distinct object. When most objects are distinct it falls back to one type pass and
one hash pass.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

__all__ = ["object_key_codes"]

_IDENTITY = (str, int, type(None))


def _addresses(arr: np.ndarray) -> np.ndarray:
    """The object addresses of an ``object`` array (CPython: the array holds pointers)."""
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    raw = (ctypes.c_int64 * len(arr)).from_address(arr.ctypes.data)
    out: np.ndarray = np.ctypeslib.as_array(raw).astype(np.int64)  # a copy
    return out


def object_key_codes(keys: np.ndarray) -> tuple[np.ndarray, list[Any]] | None:
    """``(codes, values)`` for an ``object`` key column: ``values[codes[i]] == keys[i]``, in
    order of first appearance, ``-1`` for ``None``; ``None`` when some key is not ``str``,
    ``int`` or ``None`` (its equality is not its identity: the row path handles it)."""
    import pandas as pd

    n = len(keys)
    if n == 0:
        return np.empty(0, dtype=np.int64), []
    if ctypes.sizeof(ctypes.c_void_p) == 8:
        addr = _addresses(keys)
        few = len(np.unique(addr[:256])) * 4 <= min(n, 256)  # a sample says whether to try
        by_object, addresses = pd.factorize(addr) if few else (addr, addr)
        m = len(addresses)
        if few and m * 4 <= n:  # few distinct objects: check and hash each once
            first = np.empty(m, dtype=np.int64)
            first[by_object[::-1]] = np.arange(n - 1, -1, -1, dtype=np.int64)
            objects = keys[first].tolist()
            if not set(map(type, objects)) <= set(_IDENTITY):
                return None
            numbers: dict[Any, int] = {}
            per_object = np.fromiter(
                (-1 if o is None else numbers.setdefault(o, len(numbers)) for o in objects),
                dtype=np.int64, count=m)
            return per_object[by_object], list(numbers)
    if not set(map(type, keys.tolist())) <= set(_IDENTITY):
        return None
    codes, uniques = pd.factorize(keys)
    return codes.astype(np.int64, copy=False), uniques.tolist()
