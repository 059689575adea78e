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

A private in-process log (``seal=False``) keeps tagged plaintext instead of tokens; for the
arrays protect builds there (:class:`Unsealed`) the note says which fields hold tagged values
(only tagged values or ``None``; the others hold plain scalars, no token) and the subject
handles of those values: a read of a view then only asks whether one of those subjects was
forgotten since
(:meth:`~workbench.privacy.keystore.KeyStore.none_forgotten`, remembered until a forget or the
``ttl`` bound), instead of collecting the handles of every value again.

A private log may also keep a declared source's records exactly as the caller gave them, their
personal fields plaintext and not tagged, when the plan's steps carry them to its sinks
without looking at them (``LazyPlan.deferred``): :class:`Deferred` notes such an array with
the handles of its subjects, so the engine's read hands the records over as they are while
none of those subjects is forgotten (the sinks then hold the plaintext beside the subject
field; every reveal of a private log attributes a plain value in a personal-named field to
the record's subject field, and erases it once that subject is forgotten).

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

__all__ = ["Deferred", "Unsealed", "Vouched", "keys_plain", "lookup", "vouch", "vouch_deferred",
           "vouch_keys", "vouch_unsealed"]


@dataclass(frozen=True)
class Vouched:
    """What is known of every record of a vouched array (see the module docstring)."""

    fields: frozenset[str]
    personal: frozenset[str]
    tokens: frozenset[str]
    marks: frozenset[str]


@dataclass(frozen=True)
class Unsealed:
    """What is known of every record of an array of a private log (see the module docstring):
    flat dicts of scalars and tagged values with the fields ``fields``, no token anywhere."""

    fields: frozenset[str]
    #: the fields whose values are tagged (or ``None``); the others hold plain scalars
    tagged: frozenset[str]
    #: the subject handles of every tagged value (a superset is fine)
    handles: frozenset[bytes]
    #: KeyStore.none_forgotten's memo for ``handles``
    memo: list[Any]


@dataclass(frozen=True)
class Deferred:
    """What is known of an array of a private log holding a declared source's records as the
    caller gave them (plaintext personal fields, not tagged: ``LazyPlan.deferred``): dicts
    whose subject field holds a plain id, of the subjects ``handles``, none of them forgotten
    when it was written."""

    #: the source's personal fields (the engine's read passes them untagged only to steps
    #: that read none of them)
    personal: frozenset[str]
    handles: frozenset[bytes]
    #: KeyStore.none_forgotten's memo for ``handles``
    memo: list[Any]


#: id(array) -> (weak reference to it, what is known; None for a keys array without tokens)
_VOUCHED: dict[int, tuple[Any, Vouched | Unsealed | Deferred | None]] = {}
_MARK = itemgetter(slice(0, 27))  # a token's tombstone mark (KeyStore.tombstone_marks)
_PLAIN_KEYS = Vouched(frozenset(), frozenset(), frozenset(), frozenset())


def _drop(key: int, _ref: Any) -> None:
    _VOUCHED.pop(key, None)


def _add(arr: np.ndarray, what: Vouched | Unsealed | Deferred) -> bool:
    """Note ``what`` for ``arr``; False when it cannot be (not an object array that owns its
    memory)."""
    if arr.__class__ is not np.ndarray or arr.base is not None or arr.dtype != object:
        return False
    key = id(arr)
    _VOUCHED[key] = (weakref.ref(arr, functools.partial(_drop, key)), what)
    return True


def lookup(arr: Any) -> Vouched | Unsealed | Deferred | None:
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


def vouch_unsealed(arr: np.ndarray, fields: Any, tagged: Any, handles: Any) -> None:
    """Note that ``arr`` (an array of a private log) holds flat records with the fields
    ``fields`` and no token, the fields ``tagged`` holding tagged values (of the subjects
    ``handles``) or ``None``, the others plain scalars."""
    _add(arr, Unsealed(frozenset(fields), frozenset(tagged), frozenset(handles), []))


def vouch_deferred(arr: np.ndarray, personal: Any, handles: Any) -> bool:
    """Note that ``arr`` (an array of a private log) holds a declared source's records as
    given, with the personal fields ``personal`` untagged, of the subjects ``handles``
    (see :class:`Deferred`). False when it cannot be noted (a view)."""
    return _add(arr, Deferred(frozenset(personal), frozenset(handles), []))


def vouch_keys(keys: Any) -> None:
    """Note that ``keys`` (an object array) holds plain scalar keys, none a token."""
    if isinstance(keys, np.ndarray):
        _add(keys, _PLAIN_KEYS)


def keys_plain(keys: Any) -> bool:
    """True when ``keys`` is (a view of) a keys array vouched for."""
    return lookup(keys) is _PLAIN_KEYS
