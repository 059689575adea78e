"""Arrays the boundary wrote itself: their check on the way back in is known beforehand.

:func:`workbench.privacy.columns.protect_batch` hands a driver record arrays it built: every
record a dict of scalars with the same fields, every personal-named field a token, a marker or
``None``. A driver that keeps Python objects (``memory://NAME``) stores that very array and
reads give slices of it (NumPy views whose ``base`` is the array). The lazy reveal
(:mod:`workbench.privacy.lazy`) would check every value of the fields left encrypted again on
each read; for a view of an array vouched for here, it compares instead what was noted when the
array was written:

* ``fields``: the records' fields; ``personal``: those that hold only tokens, markers or
  ``None`` (the personal-named ones, checked by protect);
* ``tokens``: the fields holding at least one token (a step reading one needs it opened);
* ``marks``: the tombstone marks (first 27 characters) of every token in the array: a read
  whose key store's tombstones meet them takes the full check, which erases those tokens.

Only arrays that own their memory are vouched for (a view's ``base`` would cover rows that
were not checked), and the entry goes when the array is freed (a weak reference), so an ``id``
reused by a new array never inherits it. Nothing in workbench writes into an array or a record
a driver holds: a step whose function could do so is not followed (``reads.py``) and gets the
full reveal, which copies what it changes.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from itertools import compress, repeat
from operator import itemgetter
from typing import Any

import numpy as np

from .crypto import PREFIX

__all__ = ["Vouched", "keys_plain", "lookup", "vouch", "vouch_keys"]


@dataclass(frozen=True)
class Vouched:
    """What is known of every record of a vouched array (see the module docstring)."""

    fields: frozenset[str]
    personal: frozenset[str]
    tokens: frozenset[str]
    marks: frozenset[str]


#: id(array) -> (weak reference to it, what is known; None for a keys array without tokens)
_VOUCHED: dict[int, tuple[Any, Vouched | None]] = {}
_MARK = itemgetter(slice(0, 27))  # a token's tombstone mark (KeyStore.tombstone_marks)
_PLAIN_KEYS = Vouched(frozenset(), frozenset(), frozenset(), frozenset())


def _drop(key: int, _ref: Any) -> None:
    _VOUCHED.pop(key, None)


def _add(arr: np.ndarray, what: Vouched) -> None:
    if arr.__class__ is not np.ndarray or arr.base is not None or arr.dtype != object:
        return
    key = id(arr)
    _VOUCHED[key] = (weakref.ref(arr, functools.partial(_drop, key)), what)


def lookup(arr: Any) -> Vouched | None:
    """What is known of ``arr`` (an array or a view of one) when it was vouched for."""
    if arr.__class__ is not np.ndarray:
        return None
    owner = arr if arr.base is None else arr.base
    got = _VOUCHED.get(id(owner))
    if got is None or got[0]() is not owner:
        return None
    return got[1]


def vouch(arr: np.ndarray, fields: Any, cols: dict[str, list[Any]],
          personal: frozenset[str]) -> None:
    """Note that ``arr`` holds records with the fields ``fields``, the values of the ones
    that are not numbers being ``cols`` (lists), the fields ``personal`` holding only tokens,
    markers or ``None``."""
    tokens: set[str] = set()
    marks: set[str] = set()
    for name, col in cols.items():
        distinct = [y for y in set(col) if y.__class__ is str]
        found = set(map(_MARK, compress(distinct, map(str.startswith, distinct,
                                                        repeat(PREFIX)))))
        if found:
            tokens.add(name)
            marks.update(found)
    fields = frozenset(fields)
    _add(arr, Vouched(fields, personal & fields, frozenset(tokens), frozenset(marks)))


def vouch_keys(keys: Any) -> None:
    """Note that ``keys`` (an object array) holds plain scalar keys, none a token."""
    if isinstance(keys, np.ndarray):
        _add(keys, _PLAIN_KEYS)


def keys_plain(keys: Any) -> bool:
    """True when ``keys`` is (a view of) a keys array vouched for."""
    return lookup(keys) is _PLAIN_KEYS
