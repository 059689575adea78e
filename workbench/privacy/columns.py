"""The column paths of :meth:`Boundary.protect_any` and :meth:`Boundary.reveal_any`.

A column batch (``runtime.batch.Batch``) whose values are records of scalars (``StructValues``,
or ``ObjectValues`` that convert to it) crosses the boundary one column at a time instead of
one record at a time:

* **reveal**: a column of numbers is skipped; an object column's distinct values are looked at
  once, each distinct token is opened once (or taken from the cache of opened tokens), the
  state of every subject in the batch is asked once, and the column is rebuilt by one
  mapping pass.
* **protect**: a column of tagged values becomes the tokens they were read with (a value
  that changed is sealed, through the token cache); plain columns are checked by their
  distinct values (the field-name rule, plain strings equal to a personal value seen lately);
  the containment rule (a string that contains a personal string of its record) is checked
  only where a column's longest string is long enough to contain a personal string of the
  batch.

* **inputs of a declared source** (protect): plaintext personal columns are tagged with the
  subject of their record (one handle per distinct subject), each distinct (subject, value)
  once and sealed once, the tagged value carrying its token (tokens are deterministic: the
  same as sealing every record's value), then handled as above.
* **records as dicts** (protect): records of one shape are taken apart in one pass (lists,
  no NumPy conversion) and written as copies with the sealed fields set; a driver that keeps
  the array (``keep``) gets it vouched for (:mod:`workbench.privacy.vouch`).

The result is exactly what the record walk of :class:`~workbench.privacy.boundary.Boundary`
gives (``tests/privacy/test_columns.py`` compares both on batches of every shape). Whatever
these paths do not handle returns ``None``, and the caller walks the records: nested values
(lists, dicts, tuples), tagged or token keys, windowed keys, table changes, a column mixing
tagged and plain strings (or tokens and plaintext), a source whose subject is a function or
missing, plaintext personal fields of a source being read, a field with a personal name
whose value lost its tag, and, on a private in-process log (``seal=False``, values kept as
tagged plaintext), any batch the walk would change beyond tagging a source's fields (see
:func:`protect_batch`; its reads: ``lazy._reveal_unsealed``).
"""

from __future__ import annotations

import logging
from collections import deque
from itertools import compress, filterfalse, repeat
from operator import attrgetter, contains, is_, itemgetter, methodcaller, setitem
from typing import TYPE_CHECKING, Any

import numpy as np

from ..runtime.batch import Batch, ObjectValues, StructValues, obj_array
from .crypto import PREFIX
from .keystore import FORGOTTEN, has_tombstone
from .spec import ERASED
from .tags import TAGGED, PersonalStr, tag
from .vouch import vouch, vouch_deferred, vouch_keys, vouch_unsealed

if TYPE_CHECKING:
    from .boundary import Boundary

__all__ = ["protect_batch", "reveal_batch", "stored_columns"]

log = logging.getLogger(__name__)
_NONE = type(None)
#: scalar classes that never carry personal data by themselves
_SCALARS = frozenset({str, int, float, bool, bytes, _NONE})
_TAGGED_OR_NONE = TAGGED | {_NONE}
_STR_OR_NONE = frozenset({PersonalStr, _NONE})
#: plaintext a declared source's personal field may hold for the column path (as tagged)
_TAGGABLE = frozenset({str, int, float, _NONE})
_ERASED_KEY = "<erased:"
_CACHE_MAX = 100_000


def _struct(batch: Batch) -> StructValues | None:
    """The batch's values as columns, or ``None`` when they are not records of one shape (or
    the keys need the record walk: windowed keys)."""
    if not isinstance(batch.keys, np.ndarray):
        return None
    values = batch.values
    if isinstance(values, StructValues):
        return values
    if isinstance(values, ObjectValues):
        return values.to_struct()
    return None


def _plain_keys(keys: np.ndarray, seen: dict[str, Any]) -> bool:
    """True when no key holds or may hold personal data (plain scalars, no token, none equal
    to a personal string seen lately)."""
    if keys.dtype != object:
        return True
    ks = keys.tolist()
    types = set(map(type, ks))
    if not types <= _SCALARS:
        return False
    if str in types:
        for k in set(ks):
            if k.__class__ is str and k.startswith(PREFIX):
                return False
        if seen and not seen.keys().isdisjoint(ks):
            return False
    return True


def _is_marker(x: str) -> bool:
    return x == ERASED or x.startswith(_ERASED_KEY)


# ============================================================================== reveal (in)
def reveal_batch(b: Boundary, topic: str, batch: Batch) -> Batch | None:
    """``batch`` with its tokens opened, or ``None`` when the record walk is needed."""
    if not b.seal or not len(batch):
        return None
    values = _struct(batch)
    if values is None:
        return None
    spec = b.sources.get(topic)
    if spec is not None and spec.key:
        return None  # plaintext keys of a declared source are tagged by the record walk
    if batch.keys.dtype == object:
        for k in set(map(type, batch.keys.tolist())):
            if k not in _SCALARS:
                return None
        for k in set(batch.keys.tolist()):
            if k.__class__ is str and k.startswith(PREFIX):
                return None
    personal = spec.fields if spec is not None else ()
    plans: list[tuple[str, list[Any]]] = []
    distinct: set[str] = set()
    cache = b._opened
    if len(cache) > _CACHE_MAX:
        cache.clear()
    for name, col in values.cols.items():
        if name.__class__ is not str or name.startswith(PREFIX):
            return None
        if col.dtype != object:
            if name in personal and len(col):
                return None  # plaintext personal numbers of a declared source: tagged
            continue
        lst = col.tolist()
        types = set(map(type, lst))
        if not types <= _SCALARS:
            return None  # nested or tagged values: the record walk
        if str not in types:
            if name in personal and types != {_NONE}:
                return None  # plaintext personal field of a declared source: tagged
            continue
        u = set(lst)
        unknown = u.difference(cache)  # not opened before: plain values, new tokens
        other = [y for y in unknown if not (y.__class__ is str and y.startswith(PREFIX))]
        if name in personal and any(not (y is None or (y.__class__ is str and _is_marker(y)))
                                    for y in other):
            return None  # plaintext personal field of a declared source: tagged
        if len(other) < len(u):
            plans.append((name, lst))
            distinct.update(u.difference(other) if other else u)
    if not plans:
        return batch
    get = _open_tokens(b, distinct)
    n = len(batch)
    new = {name: obj_array(list(map(get, lst, lst)), n) for name, lst in plans}
    return Batch(batch.keys, values.with_columns(new), batch.ts, batch.seq, batch.headers,
                 batch.time_field)


def _open_tokens(b: Boundary, tokens: set[str]) -> Any:
    """A function ``(value, default)`` giving each token's tagged plaintext (or ERASED), and
    ``default`` for other values: tokens opened before come from the cache, the others are
    opened; every subject's state is asked once for the batch."""
    cache = b._opened
    missing = tokens.difference(cache)
    known = tokens.difference(missing) if missing else tokens
    handles = set(map(_handle_of, map(cache.__getitem__, known)))
    parse = _parser()
    parsed = {y: parse(y) for y in missing}
    handles.update(t[0] for t in parsed.values())
    if not parsed and b.keys.all_live(handles):  # every token cached, every subject live
        found: dict[bytes, Any] = {}
        gone: set[bytes] = set()
    else:
        found = b.keys.keys_for(handles, create=False)
        gone = _gone(found)
    out: dict[str, Any] = {}  # what the cache does not give
    if gone:
        for y in known:
            if cache[y]._wb_h in gone:
                out[y] = ERASED
    seen = b._seen
    for y, (h, f, nonce, ct) in parsed.items():
        sk = found.get(h)
        if sk is not None and sk is not FORGOTTEN:
            value = tag(sk.open(f, nonce, ct, y), h, f, y)
            if value.__class__ in TAGGED:
                cache[y] = value
                if value.__class__ is PersonalStr:
                    seen[value] = value
            out[y] = value
            continue
        if sk is None and not b._warned:
            b._warned = True
            log.warning("personal data of a subject with no key and no tombstone in key store "
                        "%s reads as %s: is this the key store it was written with?",
                        b.keys.url, ERASED)
        out[y] = ERASED
    if not out:
        return cache.get
    mapping = dict(zip(known, map(cache.__getitem__, known)))
    mapping.update(out)
    return mapping.get


def _gone(found: dict[bytes, Any]) -> set[bytes]:
    """The handles of :meth:`KeyStore.keys_for`'s answer that have no key (forgotten or
    unknown), without a Python step per handle when there are none."""
    keys = list(found.values())
    if not any(map(is_, keys, repeat(FORGOTTEN))) and not any(map(is_, keys, repeat(None))):
        return set()
    return {h for h, sk in found.items() if sk is None or sk is FORGOTTEN}


_handle_of = attrgetter("_wb_h")
_token_of = attrgetter("_wb_t")
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_NO_TOKEN = (None, None)  # a text not in the cache of derived texts


def _parser() -> Any:
    from .boundary import _parse

    return _parse


# ============================================================================= protect (out)
def protect_batch(b: Boundary, topic: str, batch: Batch, *, keep: bool = False,
                  columns: bool = False, source: Any = None) -> Batch | None:
    """``batch`` with its personal values sealed, or ``None`` when the record walk is needed.
    On a private in-process log (``seal=False``) the values stay tagged plaintext: a batch
    passes when the walk would only tag a declared source's fields (no subject of it
    forgotten, no plain string equal to or containing a personal value), else ``None``.

    ``keep``: the driver keeps the records array it is given and the engine reads it back:
    the array is vouched for (:mod:`workbench.privacy.vouch`). ``columns``: the driver
    stores the topic's dict values as columns (``MemoryDriver.stores_columns``): records
    as dicts that all have the same fields in the same order are handed over as those
    columns (what the driver would make of them) instead of as copies of the records.
    ``source``: protect the records as that declared source's inputs (``Personal``)."""
    if not len(batch):
        return None
    spec = b.sources.get(topic) if source is None else source
    if spec is not None and spec.key:
        return None
    records: list[Any] | None = None
    values: StructValues | None = None
    cols_in: dict[str, Any] | None = None
    ordered = False  # every record has the first one's fields in its order
    if isinstance(batch.values, ObjectValues) and isinstance(batch.keys, np.ndarray):
        records = batch.values.arr.tolist()
        if columns and not keep:  # handed over as columns: those of one order only
            cols_in = _ordered_columns(records)
            ordered = cols_in is not None
        if not ordered:
            cols_in = _dict_columns(records)  # one pass, no conversion: replaced in copies
    if cols_in is None:
        records = None
        values = _struct(batch)
        if values is None:
            return None
        cols_in = values.cols
    from_seen: set[str] = set()  # columns of values taken from "seen" (_tag_source)
    live: dict[str, frozenset[bytes]] = {}  # columns tagged by _tag_source: their subjects, live
    kinds: dict[str, set[type]] = {}  # each list column's value types (for _as_struct)
    if spec is not None:  # inputs of a declared source: their plaintext personal fields
        cols_in = _tag_source(b, spec, cols_in, from_seen, live, kinds)
        if cols_in is None:
            return None
    seen = b._seen
    if len(seen) > _CACHE_MAX:
        seen.clear()
        from_seen.clear()  # (they are added again below)
    if not _plain_keys(batch.keys, seen):
        return None
    names = b.names
    tagged: list[tuple[str, list[Any], set[type]]] = []
    texts: list[tuple[str, list[Any], set[Any] | None]] = []  # (name, values, distinct)
    strs: dict[str, list[Any]] = {}  # the columns that may hold tokens (see vouch.py)
    tokens = False  # (unsealed, kept: a string column holds a token or a marker)
    hits: list[tuple[str, list[Any]]] = []  # plain strings equal to a personal one seen lately
    for name, col in cols_in.items():
        if name.__class__ is not str:
            return None
        if col.__class__ is np.ndarray:
            if col.dtype != object:
                if name in names and len(col):
                    return None  # a personal name holding plain numbers: the name rule
                continue
            lst = col.tolist()
        else:
            lst = col
        types = kinds.get(name)  # (known for the columns _tag_source took from its caches)
        if types is None:
            types = kinds[name] = set(map(type, lst))
        if types <= _SCALARS:
            if str not in types:
                if name in names and not types <= {_NONE}:
                    return None  # recomputed personal value: the field-name rule
                continue
            strs[name] = lst
            distinct = set(lst)
            personal = name in names
            if personal and not _only_protected(distinct, types):
                return None  # recomputed personal value: the field-name rule
            if keep and not b.seal and not tokens:
                tokens = _has_protected(distinct)
            if seen and not seen.keys().isdisjoint(distinct):
                lst = list(map(seen.get, lst, lst))  # they are that personal value
                hits.append((name, lst))
                if not personal:  # (a personal field's own strings are not searched)
                    texts.append((name, lst, None))
            elif not personal:
                texts.append((name, lst, distinct))
        elif types <= _TAGGED_OR_NONE:
            tagged.append((name, lst, types))
        else:
            return None
    if not tagged and not hits:
        return batch  # no personal value (and none hidden: checked above)
    from .boundary import _Walk

    w = _Walk()
    pend = w.pend
    new: dict[str, list[Any]] = {}
    firsts: dict[str, dict[Any, None]] = {}  # a tagged column's distinct values (by equality)
    handles: set[bytes] = set()  # (unsealed) the subjects of the tagged values
    if not b.seal:
        handles.update(*(tagged_handles(lst, types) for name, lst, types in tagged
                         if name not in live))
        if hits or not b.keys.none_forgotten(handles):
            return None  # plain strings that are personal values, or values to erase: the walk
        handles.update(next(iter(live.values()), ()))  # (_tag_source's: none forgotten)
    for name, lst, types in tagged:
        if not b.seal:
            out = list(lst)  # a private log keeps the tagged values
        elif _NONE in types:
            out = [None if x is None else x._wb_t for x in lst]
        else:
            out = list(map(_token_of, lst))
        if b.seal and None in out:  # values made or changed in the pipeline: sealed (token cache)
            for i, t in enumerate(out):
                if t is None:
                    x = lst[i]
                    if x is not None:
                        pend.append([out, i, x, False, x._wb_h, x._wb_f])
        if name in from_seen:
            pass  # they are the values "seen" holds
        elif types <= _STR_OR_NONE:
            first = firsts[name] = dict.fromkeys(lst)  # the first of equal values (as update
            seen.update(zip(first, first))  # would keep)
            seen.pop(None, None)  # type: ignore[call-overload]
        else:
            seen.update((x, x) for x in lst if x.__class__ is PersonalStr)
        new[name] = out
    for name, lst in hits:
        out = list(lst)
        for i, x in enumerate(lst):
            if x.__class__ is PersonalStr:
                if x._wb_t is not None:
                    out[i] = x._wb_t
                else:
                    pend.append([out, i, x, False, x._wb_h, x._wb_f])
        new[name] = out
    if texts:
        before = set(new)
        _contained(b, tagged, texts, new, pend, firsts)
        if not b.seal and (pend or set(new) != before):
            return None  # strings containing personal values: the walk tags them
    if pend:
        b._fill_sealed(w)
    n = len(batch)
    sealed: StructValues | ObjectValues
    struct = _as_struct(cols_in, new, n, names, kinds) if ordered else None
    if struct is not None:  # stored as columns: the driver's own layout, no copies
        sealed = struct
    elif records is not None:  # kept as records: what the log held before
        sealed = ObjectValues(obj_array(_replaced(records, new), n))
        if keep and b.seal:  # the driver reads this very array back: vouched for
            strs.update(new)
            vouch(sealed.arr, cols_in, strs, frozenset(names))
            if batch.keys.dtype == object:
                vouch_keys(batch.keys)
        elif keep and not tokens:  # (a private log's array: tagged plaintext, no token)
            vouch_unsealed(sealed.arr, cols_in, (name for name, _lst, _types in tagged),
                           handles)
            if batch.keys.dtype == object:
                vouch_keys(batch.keys)
    else:
        assert values is not None
        sealed = values.with_columns({name: obj_array(out, n) for name, out in new.items()})
        if isinstance(batch.values, ObjectValues):
            sealed = ObjectValues(sealed.objects())
    return Batch(batch.keys, sealed, batch.ts, batch.seq, batch.headers, batch.time_field)


def tagged_handles(lst: list[Any], types: set[type]) -> Any:
    """The subject handles of the tagged values of ``lst`` (value types ``types``)."""
    if types <= TAGGED:
        return map(_handle_of, lst)
    return (x._wb_h for x in lst if x.__class__ in TAGGED)


def _only_protected(values: set[Any], types: set[type] | None = None) -> bool:
    """True when every value is ``None``, a token or an erased marker (``types``: the
    values' types, when known: exact strings that are all tokens take one pass)."""
    if types is not None and types == {str} and \
            all(map(str.startswith, values, repeat(PREFIX))):
        return True
    strs = list(compress(values, map(str.__instancecheck__, values)))
    if len(strs) < len(values) - (None in values):
        return False
    return all(y.__class__ is str and _is_marker(y) for y in filterfalse(_IS_TOKEN, strs))


_IS_TOKEN = methodcaller("startswith", PREFIX)


def _has_protected(values: set[Any]) -> bool:
    """True when a string of ``values`` is a token or an erased marker."""
    strs = [y for y in values if y.__class__ is str] if len(values) < 64 else \
        list(compress(values, map(str.__instancecheck__, values)))
    return ERASED in strs or any(map(str.startswith, strs, repeat(PREFIX))) or \
        any(map(str.startswith, strs, repeat(_ERASED_KEY)))


def _dict_columns(records: list[Any]) -> dict[str, list[Any]] | None:
    """The fields of ``records`` as lists, when every record is a dict with the same fields
    (in any order), else ``None``."""
    if not records or records[0].__class__ is not dict:
        return None
    names = tuple(records[0])
    if not names or set(map(type, records)) != {dict} or \
            set(map(len, records)) != {len(names)}:
        return None
    try:  # one pass per field: cheaper than transposing tuples of every field
        return {f: list(map(itemgetter(f), records)) for f in names}
    except KeyError:
        return None


def _replaced(records: list[dict[str, Any]], cols: dict[str, Any]) -> list[dict[str, Any]]:
    """Copies of ``records`` (dicts that all have the fields of ``cols``) with the values of
    those fields replaced by the columns' (lists or arrays; the fields keep their order)."""
    out = list(map(dict.copy, records))
    for name, col in cols.items():
        deque(map(setitem, out, repeat(name),
                  col.tolist() if col.__class__ is np.ndarray else col), maxlen=0)
    return out


def _as_struct(cols: dict[str, Any], new: dict[str, list[Any]], n: int,
               personal: tuple[str, ...],
               kinds: dict[str, set[type]] | None = None) -> StructValues:
    """Records of one field order, taken apart by :func:`_ordered_columns` (``cols``), with
    the sealed columns ``new``, as the columns a driver that stores dict values as columns
    makes of them (``ObjectValues.to_struct``, with Arrow strings when pandas' are, but not
    for the columns holding tokens: a read reveals them). ``kinds``: the value types of the
    columns ``cols`` (lists); a sealed column (``new``) holds tokens, so it is an object
    column as ``column`` makes it."""
    from ..runtime.batch import struct_column
    from ..runtime.strings import arrow_is_pandas_string

    arrow = arrow_is_pandas_string()
    out = {f: obj_array(new[f], n) if f in new else struct_column(
               cols[f], arrow and f not in personal, kinds.get(f) if kinds else None)
           for f in cols}
    return StructValues(out, None, n)


def _ordered_columns(records: list[Any]) -> dict[str, list[Any]] | None:
    """The fields of ``records`` as lists when every record is a dict with the fields of the
    first in its order (what :func:`_as_struct` hands over as columns), else ``None``: the
    order checked by one set of field tuples (as ``ObjectValues.to_struct``), the values
    taken by one transposition (cheaper than a pass per field)."""
    first = records[0] if records else None
    if first.__class__ is not dict or not first:
        return None
    names = tuple(first)
    if set(map(type, records)) != _DICT or set(map(tuple, records)) != {names}:
        return None
    return dict(zip(names, map(list, zip(*map(dict.values, records)))))


_DICT = frozenset({dict})


def stored_columns(b: Boundary, batch: Batch) -> Batch:
    """``batch`` (records that pass as they are: a clean topic, see
    ``PrivateDriver._clean``) as the columns a driver that stores dict values as columns
    makes of them, except that the personal-named fields stay Python objects: they hold
    tokens, which a read reveals (no Arrow copy of ciphertext), as :func:`_as_struct` does
    for protected records. ``batch`` itself when its records are not dicts of one field
    order (the driver keeps those as records too)."""
    values = batch.values
    if values.__class__ is not ObjectValues or not len(batch):
        return batch
    cols = _ordered_columns(values.arr.tolist())
    if cols is None:
        return batch
    return Batch(batch.keys, _as_struct(cols, {}, len(batch), b.names), batch.ts, batch.seq,
                 batch.headers, batch.time_field)


# ================================================== private log: personal values left untagged
def defer_input(b: Boundary, spec: Any, batch: Batch) -> Batch | None:
    """A declared source's input batch for a private log, kept as the caller gave it (its
    personal fields plaintext, untagged), or ``None`` (protect it as usual): the records are
    dicts, each with a plain id in the subject field, no subject of the batch forgotten, the
    keys plain. The array is noted (:class:`~workbench.privacy.vouch.Deferred`), so the
    engine's read hands it over as it is to steps that carry the personal fields to their
    sinks without looking at them (``LazyPlan.deferred``); any other read of the log tags
    the plaintext then (the record walk of a declared source)."""
    values = batch.values
    if values.__class__ is not ObjectValues or not len(batch) or \
            batch.keys.__class__ is not np.ndarray or not _plain_keys(batch.keys, b._seen):
        return None
    recs = values.arr.tolist()
    if set(map(type, recs)) != _DICT:
        return None
    try:
        subjects, handles = _subject_handles(b, list(map(itemgetter(spec.subject), recs)))
    except (KeyError, TypeError):  # (a record without its subject, an unhashable subject)
        return None
    if subjects is None:
        return None
    found = frozenset(handles.values())
    if not b.keys.none_forgotten(found) or not vouch_deferred(values.arr, spec.fields, found):
        return None
    return batch


def defer_output(b: Boundary, spec: Any, batch: Batch) -> Batch | None:
    """What the sink of a private log gets from steps that carried a declared source's
    untagged records to it (``LazyPlan.deferred_sinks``): the batch as columns, the personal
    fields as they were given, beside the subject field (every reveal of a private log
    attributes a personal-named value that is not tagged to it, and erases it once that
    subject is forgotten: ``Boundary._tag_named``; tokens and markers there are opened or
    kept by the reveal as anywhere), or ``None`` (the protection pass decides: it tags them
    by the same field-name rule). The subjects were checked on the way in (plain ids, none
    forgotten: :func:`defer_input`) and the steps neither set nor move the subject field
    (checked again: plain ids, as a batch that was tagged on the way in may have none);
    what is checked here are the rules protect applies to a declared source's inputs, which
    these records skipped: no other string is a token, a marker, a personal string seen
    lately, or contains a personal string of the batch, and no other value is tagged or
    nested."""
    values = batch.values
    n = len(batch)
    if not n or batch.keys.__class__ is not np.ndarray or not _plain_keys(batch.keys, b._seen):
        return None
    if values.__class__ is ObjectValues:
        cols: dict[str, Any] | None = _ordered_columns(values.arr.tolist())
    elif values.__class__ is StructValues and values.present is None:
        cols = dict(values.cols)
    else:
        return None
    if cols is None or spec.subject not in cols:
        return None
    names = b.names
    kinds: dict[str, set[type]] = {}
    personal: list[Any] = []  # the personal columns (as they are: a reveal checks them)
    texts: list[list[str]] = []  # the distinct strings of each other column of strings
    for name, col in cols.items():
        if col.__class__ is np.ndarray:
            if col.dtype != object:
                if col.dtype.kind in "US" or (name in names and len(col)):
                    return None  # (numpy strings; plain personal numbers: protect tags them)
                continue
            if name in names:
                personal.append(col)
                continue
            col = col.tolist()
        elif col.__class__ is not list:
            return None  # (Arrow strings)
        if name in names:
            personal.append(col)
            continue
        types = kinds[name] = set(map(type, col))
        if name == spec.subject:
            if not types <= _ID_TYPES or not _plain_ids(list(set(col))):
                return None
        elif not types <= _SCALARS:
            return None  # tagged or nested values: protect
        elif str in types:
            distinct = set(col)
            if _has_protected(distinct) or not b._seen.keys().isdisjoint(distinct):
                return None
            texts.append([y for y in distinct if y.__class__ is str])
    if texts and personal:
        try:
            if not _contains_none(texts, [c.tolist() if c.__class__ is np.ndarray else c
                                          for c in personal]):
                return None
        except TypeError:  # (unhashable personal values: lists, dicts)
            return None
    if values.__class__ is StructValues:
        return batch
    return Batch(batch.keys, _as_struct(cols, {}, n, names, kinds), batch.ts, batch.seq,
                 batch.headers, batch.time_field)


_ID_TYPES = frozenset({str, int})
#: the containment check of :func:`defer_output` lists the substrings of the distinct texts
#: of a column while the sum of their squared lengths stays below this
_PARTS_MAX = 200_000


def _contains_none(texts: list[list[str]], personal: list[list[Any]]) -> bool:
    """True when no string of ``texts`` contains a string of the columns ``personal`` (3
    characters or more: the containment rule's); False also when that would take a search
    row by row (many long texts): the protection pass then decides."""
    for distinct in texts:
        if not distinct:
            continue
        parts = _substrings(distinct, _PARTS_MAX)
        if parts is None or not all(map(parts.isdisjoint, personal)):
            return False
    return True


def _substrings(distinct: list[str], bound: int) -> set[str] | None:
    """Every substring of 3 characters or more of the strings ``distinct`` (what the
    containment rule can match), or ``None`` when the sum of their squared lengths (an upper
    bound of how many there are) is over ``bound``."""
    if sum(map(len, distinct)) * max(map(len, distinct)) > bound:
        return None
    return {x[i:j] for x in distinct for i in range(len(x) - 2)
            for j in range(i + 3, len(x) + 1)}


def _tag_source(b: Boundary, spec: Any, cols: dict[str, Any], from_seen: set[str],
                live_out: dict[str, frozenset[bytes]],
                kinds_out: dict[str, set[type]] | None = None) -> dict[str, Any] | None:
    """``cols`` (lists or arrays) with a declared source's plaintext personal fields tagged
    with the subject of their record (``None``: the record walk decides; when a subject is
    missing or not a plain id, a field holds other types, or tokens and plaintext are
    mixed). The fields whose values were taken from the values seen lately are added to
    ``from_seen``; on a private log, when no subject of the batch is forgotten, ``live_out``
    gets each field tagged, with the handles of the batch's subjects; ``kinds_out`` gets the
    value types of the fields taken whole from a cache (every value a ``PersonalStr``)."""
    if not isinstance(spec.subject, str) or spec.subject not in cols:
        return None
    subjects: list[Any] | None = None
    handles: dict[Any, bytes] = {}
    rows: list[bytes] | None = None  # each record's subject handle
    found: dict[bytes, Any] | None = None  # the subjects' keys (made for new subjects)
    live = False  # no subject of the batch forgotten (or unknown)
    seen = b._seen
    by_field = b._by_field
    new: dict[str, list[Any]] = {}
    for f in spec.fields:
        col = cols.get(f)
        if col is None:
            continue
        lst = col.tolist() if col.__class__ is np.ndarray else col
        types = set(map(type, lst))
        if types <= {_NONE}:
            continue
        if not types <= _TAGGABLE:
            return None
        known = by_field.get(f) if types == _STR else None
        if known:  # every value tagged before, in this field: the same subject, once a batch
            tv = list(map(known.get, lst))
            if None not in tv:
                if subjects is None:
                    subjects, handles = _subject_handles(b, cols[spec.subject])
                    if subjects is None:
                        return None
                if found is None:
                    found = b.keys.keys_for(set(handles.values()), create=b.seal)
                    live = _live(b, found)
                if live:
                    if rows is None:
                        rows = list(map(handles.__getitem__, subjects))
                    if list(map(_handle_of, tv)) == rows:
                        new[f] = tv  # (plaintext checked when they were tagged)
                        if kinds_out is not None:  # (the caches hold PersonalStr for str)
                            kinds_out[f] = {PersonalStr}
                        continue
        if str in types and _has_protected(set(lst)):
            return None
        if subjects is None:
            subjects, handles = _subject_handles(b, cols[spec.subject])
            if subjects is None:
                return None
        if len(types - {_NONE}) == 1:  # (subject, value) pairs compare as the values do
            if found is None:
                found = b.keys.keys_for(set(handles.values()), create=b.seal)
                live = _live(b, found)
            if live and types == _STR and seen:
                # values seen lately with their subject, field and token: those values
                tv = list(map(seen.get, lst))
                if None not in tv:
                    if rows is None:
                        rows = list(map(handles.__getitem__, subjects))
                    if list(map(_handle_of, tv)) == rows and \
                            set(map(_field_of, tv)) == {f} and \
                            None not in map(_token_of, tv):
                        new[f] = tv
                        from_seen.add(f)
                        if kinds_out is not None:
                            kinds_out[f] = {PersonalStr}
                        continue
            new[f] = list(_seal_pairs(b, f, found, handles, subjects, lst,
                                      by_field if live and types == _STR else None))
        else:
            new[f] = [None if x is None else tag(x, handles[s], f, None)
                      for x, s in zip(lst, subjects)]
    if not new:
        return cols
    if live and not b.seal:
        live_out.update(dict.fromkeys(new, frozenset(handles.values())))
    return {**cols, **new}


_STR = frozenset({str})
_field_of = attrgetter("_wb_f")


def _live(b: Boundary, found: dict[bytes, Any]) -> bool:
    """True when every subject of ``found`` (:meth:`KeyStore.keys_for`'s answer) can have its
    values tagged as they are: it has a key (sealing), or is not forgotten (a private log,
    which makes no keys)."""
    return not _gone(found) if b.seal else not has_tombstone(found)


def _subject_handles(b: Boundary, col: Any) -> tuple[list[Any] | None, dict[Any, bytes]]:
    """(the subjects of a source's records as a list, ``{subject: handle}``), or
    ``(None, {})`` when a subject is not a plain id."""
    subjects = col.tolist() if col.__class__ is np.ndarray else col
    distinct = list(set(subjects))
    if not _plain_ids(distinct):
        return None, {}
    return subjects, b.keys.handles_of(distinct)


def _plain_ids(subjects: list[Any]) -> bool:
    """True when every subject is a plain ``str`` or ``int`` id (not a token, not a
    marker)."""
    kinds = set(map(type, subjects))
    if not kinds <= {str, int}:
        return False
    if str in kinds:
        strs = list(compress(subjects, map(str.__instancecheck__, subjects)))
        if ERASED in strs or any(map(str.startswith, strs, repeat(PREFIX))) or \
                any(map(str.startswith, strs, repeat(_ERASED_KEY))):
            return False
    return True


def _seal_pairs(b: Boundary, f: str, found: dict[bytes, Any], handles: dict[Any, bytes],
                subjects: list[Any], lst: list[Any],
                by_field: dict[str, dict[str, Any]] | None = None) -> Any:
    """Field ``f`` of a declared source's records (values of one type, or ``None``), tagged:
    each distinct (subject, value) pair once, and sealed once (through the token cache) when
    the subject has a key, the tagged value carrying its token as if it had been read from
    it. Tokens are deterministic (synthetic nonces), so this gives exactly the tokens that
    sealing every record's value would give. A forgotten subject's values carry no token:
    protect writes them as the marker."""
    cache = b._sealed
    if len(cache) > _CACHE_MAX:
        cache.clear()
    owner = dict(zip(lst, subjects))
    if list(map(owner.get, lst)) == subjects:  # each value has one subject (an email...)
        keyed: Any = owner.items()
        pairs: Any = lst
    else:
        pairs = list(zip(subjects, lst))
        keyed = ((p, p[0]) for p in set(pairs))
    tagged: dict[Any, Any] = {}
    for key, s in keyed:
        x = key if pairs is lst else key[1]
        if x is None:
            continue
        h = handles[s]
        sk = found.get(h)
        token = None
        if b.seal and sk is not None and sk is not FORGOTTEN:
            ck = (h, f, x.__class__, x)
            token = cache.get(ck)
            if token is None:
                token = cache[ck] = sk.seal(x, f)
        tagged[key] = tag(x, h, f, token)
    if by_field is not None and pairs is lst:  # one subject per value: kept by value
        known = by_field.get(f)
        if known is None or len(known) + len(tagged) > _CACHE_MAX:
            known = by_field[f] = {}
        known.update(tagged)
    return map(tagged.get, pairs)


def _contained(b: Boundary, tagged: list[tuple[str, list[Any], set[type]]],
               texts: list[tuple[str, list[Any], set[Any] | None]],
               new: dict[str, list[Any]], pend: list[list[Any]],
               firsts: dict[str, dict[Any, None]]) -> None:
    """The containment rule: a plain string that contains a personal string (3 characters or
    more) of its record is sealed under the subject of the first such personal string (in
    field order). A text column is searched row by row only for the personal columns holding
    a substring of one of its distinct values (every substring of 3 characters or more is
    listed when there are few; else the column is searched). ``firsts``: the distinct values
    of tagged columns that protect listed (compared in their place: they are equal)."""
    cols = [lst for _name, lst, types in tagged if PersonalStr in types]
    if not cols:
        return
    strings = [lst for _name, lst, types in tagged if types == {PersonalStr}]
    distinct_of = {id(lst): firsts.get(name, lst) for name, lst, _types in tagged}
    for name, lst, u in texts:
        if u is None:
            u = set(lst)
        distinct = list(filterfalse(_IS_TOKEN, compress(u, map(str.__instancecheck__, u))))
        if not distinct:
            continue
        parts = _substrings(distinct, max(4 * len(lst), 50_000))
        search = cols if parts is None else \
            [p for p in cols if not parts.isdisjoint(distinct_of[id(p)])]
        if not search:
            continue
        if len(search) == 1 and len(distinct) == len(u) and any(
                search[0] is c for c in strings) and \
                min(map(len, distinct_of[id(search[0])])) >= 3:
            _contained_strings(b, name, lst, search[0], new, pend)
            continue
        out: list[Any] | None = None
        for i, x in enumerate(lst):
            if x.__class__ is not str or x.startswith(PREFIX):
                continue
            for plist in search:
                p = plist[i]
                if p.__class__ is PersonalStr and len(p) >= 3 and p in x:
                    if out is None:
                        out = new.get(name)
                        if out is None:
                            out = new[name] = list(lst)
                    pend.append([out, i, x, False, p._wb_h, name])
                    break


def _contained_strings(b: Boundary, name: str, lst: list[Any], plist: list[Any],
                       new: dict[str, list[Any]], pend: list[list[Any]]) -> None:
    """:func:`_contained` for a column of plain strings (no token) searched for one column of
    personal strings of 3 characters or more (``f"Dear {e['name']}"``), without a Python
    step per record: the rows that contain their record's personal string are found by one
    ``map``, and their tokens come from the token cache by one ``map`` (the same keys as
    :meth:`Boundary._fill_sealed`); the others are sealed, and the rows of forgotten
    subjects are left to ``pend`` (the marker). When each distinct text has one personal
    string object in every row (``f"Dear {name}"`` for names read from tokens), this is
    done once per distinct text."""
    n = len(lst)
    done = new.get(name)  # plain strings equal to a personal one seen lately, sealed
    if (done is None or not any(p[0] is done for p in pend)) and \
            _contained_distinct(b, name, lst, plist, new):
        return
    idx = list(compress(range(n), map(contains, lst, plist)))
    if not idx:
        return
    out = new.get(name)
    if out is None:
        out = new[name] = list(lst)
    xs = list(map(lst.__getitem__, idx)) if len(idx) < n else lst
    hs = list(map(_handle_of, map(plist.__getitem__, idx) if len(idx) < n else plist))
    cache = b._sealed
    if len(cache) > _CACHE_MAX:
        cache.clear()
    toks = list(map(cache.get, zip(hs, repeat(name), repeat(str), xs)))
    if None not in toks and b.keys.all_live(hs):  # every token cached, every subject live
        found: dict[bytes, Any] = {}
        gone: set[bytes] = set()
    else:
        found = b.keys.keys_for(set(hs), create=b.seal)
        gone = _gone(found)
    if gone or None in toks:
        for j, t in enumerate(toks):
            h = hs[j]
            if h in gone:
                toks[j] = None
                pend.append([out, idx[j], xs[j], False, h, name])  # the marker
            elif t is None:
                ck = (h, name, str, xs[j])
                t = cache.get(ck)  # sealed for an earlier record of the batch
                toks[j] = t if t is not None else cache.setdefault(ck, found[h].seal(xs[j],
                                                                                   name))
    if len(idx) == n:
        out[:] = toks
    else:
        for i, t in zip(idx, toks):
            if t is not None:
                out[i] = t


def _contained_distinct(b: Boundary, name: str, lst: list[Any], plist: list[Any],
                        new: dict[str, list[Any]]) -> bool:
    """:func:`_contained_strings` by distinct texts; False (nothing done) when a text has
    different personal strings in different rows, or a subject has no key (the row path
    writes its markers). A text sealed before for the same subject takes its token from the
    cache of derived texts (``Boundary._derived``: by text, a lookup of a string whose hash
    is cached instead of a tuple key), the subjects' state asked as for every token."""
    pair = dict(zip(lst, plist))  # each text with the personal string of its last row
    if not all(map(is_, map(pair.__getitem__, lst), plist)):
        return False
    texts = list(pair)
    ps = list(pair.values())
    flags = list(map(contains, texts, ps))
    every = all(flags)
    if every:  # (the usual case: no index lists)
        xs = texts
        hs = list(map(_handle_of, ps))
    else:
        idx = list(compress(range(len(texts)), flags))
        if not idx:
            return True
        xs = list(map(texts.__getitem__, idx))
        hs = list(map(_handle_of, map(ps.__getitem__, idx)))
    # the texts sealed before, by text (a str key with its hash cached, not a tuple): their
    # tokens when they were sealed for the same subject (deterministic tokens: the same
    # (subject, field, text) gives the same token)
    derived = b._derived.get(name)
    if derived is None or len(derived) > _CACHE_MAX:
        derived = b._derived[name] = {}
    got = list(map(derived.get, xs, repeat(_NO_TOKEN)))
    toks = list(map(_SECOND, got))
    if list(map(_FIRST, got)) != hs:  # a text not seen, or seen for another subject
        toks = [t if g[0] == h else None for t, g, h in zip(toks, got, hs)]
    if None in toks or not b.keys.all_live(hs):
        found = b.keys.keys_for(set(hs), create=b.seal)
        if _gone(found):
            return False
        cache = b._sealed
        if len(cache) > _CACHE_MAX:
            cache.clear()
        for j, t in enumerate(toks):
            if t is None:
                h, x = hs[j], xs[j]
                ck = (h, name, str, x)
                t = cache.get(ck)
                if t is None:
                    t = cache[ck] = found[h].seal(x, name)
                toks[j] = t
                derived[x] = (h, t)
    sealed = dict(zip(xs, toks))
    out = new.get(name)
    if out is None:
        new[name] = list(map(sealed.__getitem__, lst)) if every else \
            list(map(sealed.get, lst, lst))
    else:
        out[:] = map(sealed.get, lst, out)
    return True
