"""``protect`` and ``reveal``: personal fields cross the driver boundary encrypted.

:class:`Boundary` is built from a plan (its sources' ``personal=`` specs and the pipeline's
key store) and works on whole batches of records ``(key, value, timestamp, seq, headers)``
or column batches (records of scalars column by column, see :mod:`workbench.privacy.columns`;
other batches through their rows):

* :meth:`Boundary.protect` (on the way out: sink, repartition and changelog records, and
  inputs appended through workbench): every tagged personal value (see
  :mod:`workbench.privacy.tags`) anywhere in a key or value — nested in lists, dicts,
  windowed keys and table changes — becomes a token under its own subject's key (an
  unchanged value reuses the token it was read from; keys get deterministic tokens). A value
  in a top-level field whose name is a declared personal field is protected even when it
  lost its tag (it was recomputed), under the subject of the record (the first tagged value
  in it, else its subject field). Subjects that were forgotten are written as ``<erased>``.
  Keys are looked up once per subject per batch; new subjects get a key.
* :meth:`Boundary.reveal` (on the way in: inputs, changelog restores, ``Run.frame``): every
  token decrypts to a tagged plaintext; a forgotten subject's fields read as ``<erased>``
  (keys as ``<erased:PSEUDONYM>``), never an exception. A declared source's plaintext
  personal fields (written by a producer outside workbench) are tagged, or erased.

Containers read from a driver are never changed in place: a record whose values change is
rebuilt, the others are passed through as they are.
"""

from __future__ import annotations

import binascii
import functools
import gc
import logging
import operator
from collections.abc import Mapping
from typing import Any, TypeVar

from ..errors import ProcessingError
from ..keys import KeyId
from .columns import protect_batch, reveal_batch
from .crypto import PREFIX, TOKEN_VERSION, parse_token, short_pseudonym
from .keystore import FORGOTTEN, KeyStore
from .spec import ERASED, Personal
from .tags import TAGGED, PersonalFloat, PersonalInt, PersonalStr, tag

__all__ = ["Boundary", "erased_key"]

log = logging.getLogger(__name__)
_PLAIN = frozenset({int, float, bool, type(None), bytes})
_ERASED_KEY = "<erased:"
_CACHE_MAX = 100_000
_BASE: dict[type, type] = {str: str, PersonalStr: str, int: int, PersonalInt: int,
                           float: float, PersonalFloat: float}


_F = TypeVar("_F", bound=Any)
_a2b = binascii.a2b_base64
_PLEN = len(PREFIX)


def _parse(token: str) -> tuple[bytes, str, bytes, bytes]:
    """:func:`parse_token`, inlined for the common well-formed case."""
    try:
        raw = _a2b(token[_PLEN:])
        n = raw[17]
        if raw[0] == TOKEN_VERSION and len(raw) >= 47 + n:
            return raw[1:17], raw[18:18 + n].decode(), raw[18 + n:30 + n], raw[30 + n:]
    except (binascii.Error, IndexError, UnicodeDecodeError):
        pass
    return parse_token(token)


def _gc_paused(method: _F) -> _F:
    """Run ``method`` with the cyclic garbage collector paused (restored after): a batch
    makes hundreds of thousands of small containers (tagged values, pending slots, rebuilt
    records) that hold no cycles, and each of the collections they would trigger walks the
    whole heap (measured: 75% of a 100,000-record input append)."""

    @functools.wraps(method)
    def paused(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():
            return method(*args, **kwargs)
        gc.disable()
        try:
            return method(*args, **kwargs)
        finally:
            gc.enable()

    return paused  # type: ignore[return-value]


def _untagged(x: Any) -> bool:
    """True for a value a personal field holds that is not protected yet: not ``None``, not
    tagged, not a token or a marker."""
    return x is not None and x.__class__ not in TAGGED and not (
        x.__class__ is str and (x.startswith(PREFIX) or _is_marker(x)))


def erased_key(token: str) -> str:
    """What a forgotten subject's personal key reads as: distinct per key, unlinkable."""
    return f"{_ERASED_KEY}{short_pseudonym(token)}>"


def _is_marker(x: Any) -> bool:
    return x == ERASED or (x.__class__ is str and x.startswith(_ERASED_KEY))


class _Opaque:
    """A personal value of a type that cannot carry a tag (bool, dict, list), on its way to
    being sealed (only inside :meth:`Boundary.protect`)."""

    __slots__ = ("_wb_f", "_wb_h", "_wb_t", "value")

    def __init__(self, value: Any, h: bytes, f: str) -> None:
        self.value = value
        self._wb_h = h
        self._wb_f = f
        self._wb_t = None


_SEALABLE: frozenset[Any] = TAGGED | {_Opaque}


def _records(out: list[Any], given: list[Any]) -> list[Any]:
    """``out`` as record tuples; ``given`` itself when no record changed (so a column batch
    that holds no personal data is passed on as it is)."""
    if all(map(operator.is_, out, given)):
        return given
    return [r if r.__class__ is tuple else tuple(r) for r in out]


def _as_batch(like: Any, rows: list[Any]) -> Any:
    """A column batch of the same class as ``like`` holding ``rows`` (its ``seq`` and
    ``time_field`` kept)."""
    if not len(like):
        return like
    out = type(like).from_rows(rows)
    out.seq = like.seq
    out.time_field = like.time_field  # the timestamps are still those of that field
    return out


class _FirstOf(tuple[Any, ...]):
    """Rebuild marker: the single element itself (an unwrapped ``KeyId``)."""


def _rebuild(cls: type, items: list[Any]) -> Any:
    if cls is _FirstOf:
        return items[0]
    if cls is set or cls is frozenset:
        return cls(items)
    return tuple(items) if cls is tuple else tuple.__new__(cls, items)


class _Walk:
    """One batch's walk: pending leaves and tuple rebuilds (see :class:`Boundary`)."""

    __slots__ = ("first", "pend", "tuples")

    def __init__(self) -> None:
        self.pend: list[list[Any]] = []   # [holder, slot, value, det, handle, field]
        self.tuples: list[tuple[Any, Any, list[Any], type]] = []
        self.first: bytes | None = None


class Boundary:
    """Encrypts personal fields on the way out and decrypts them on the way in.

    Args:
        keys: the key store.
        sources: ``{source topic: Personal}``.
        seal: False for a private in-process log (a preview): values stay plaintext objects,
            only forgotten subjects' values are replaced by the marker.
    """

    def __init__(self, keys: KeyStore, sources: Mapping[str, Personal], *,
                 seal: bool = True) -> None:
        self.keys = keys
        self.sources = dict(sources)
        self.names = tuple(dict.fromkeys(f for p in self.sources.values() for f in p.fields))
        self.subject_fields = tuple(dict.fromkeys(
            p.subject for p in self.sources.values() if isinstance(p.subject, str)))
        self.seal = seal
        self._warned = False
        #: tokens made and opened, by value and by token (tokens are deterministic): a value
        #: seen again costs a dict lookup, not an AES-GCM call. Bounded by ``_CACHE_MAX``.
        #: Shared by every boundary of the key store object in this process (emptied by a
        #: forget through it; a forgotten subject's cached values are never served anyway:
        #: each batch asks the state of its subjects).
        caches = keys.token_caches
        self._sealed: dict[tuple[bytes, str, type, Any], str] = caches[0]
        self._opened: dict[str, Any] = caches[1]
        #: personal strings seen lately, by plaintext: a plain string equal to one of them is
        #: treated as that personal value (it lost its tag: a store's key identity, a JSON
        #: round trip, ``str()``). Bounded by ``_CACHE_MAX``.
        self._seen: dict[str, Any] = caches[2]
        #: a declared source's field -> {plaintext str: its tagged value (subject handle,
        #: field, token)}: inputs seen before are tagged by lookup passes
        #: (:func:`~workbench.privacy.columns._tag_source`). Bounded by ``_CACHE_MAX`` each.
        #: A private log keeps its own (tagged values without tokens, made without keys).
        self._by_field: dict[str, dict[str, Any]] = caches[3] if seal else caches[4]
        #: a field -> {plain text that contains a personal string: (the handle of the
        #: subject it was sealed for, its token)}: ``f"Dear {name}"`` seen again costs a
        #: lookup by its text (:func:`~workbench.privacy.columns._contained_distinct`)
        self._derived: dict[str, dict[str, tuple[bytes, str]]] = caches[5]
        #: values of columns left encrypted that were checked (:mod:`workbench.privacy.lazy`),
        #: also shared by the boundaries of the key store object
        self._passed: list[Any] = keys.passed

    # ============================================================ rows or column batches
    @_gc_paused
    def protect_any(self, topic: str, data: Any, *, keep: bool = False,
                    columns: bool = False, source: Personal | None = None) -> Any:
        """:meth:`protect` for a list of records or a column batch (returned as the same);
        ``keep``: the driver keeps the batch and the engine reads it back; ``columns``: the
        driver stores the topic's values as columns (see
        :func:`~workbench.privacy.columns.protect_batch`); ``source``: protect the records
        as a declared source's inputs (a private log's sink that got them untagged)."""
        if isinstance(data, list):
            return self.protect(topic, data, source=source)
        fast = protect_batch(self, topic, data, keep=keep, columns=columns, source=source)
        if fast is not None:
            return fast
        rows = data.rows()
        out = self.protect(topic, rows, source=source)
        return data if out is rows else _as_batch(data, out)

    def reveal_some(self, topic: str, batch: Any, fields: frozenset[str], *,
                    deferred: bool = False) -> Any:
        """``(batch, opened)`` with only the columns ``fields`` revealed (the others keep
        their tokens), or ``None``: see :func:`workbench.privacy.lazy.reveal_lazy`
        (``deferred``: the reader's plan carries ``topic``'s personal fields to its sinks
        unread, so a private log's inputs kept as given may pass as they are)."""
        from .lazy import reveal_lazy

        return reveal_lazy(self, topic, batch, fields, deferred=deferred)

    @_gc_paused
    def reveal_any(self, topic: str, data: Any) -> Any:
        """:meth:`reveal` for a list of records or a column batch (returned as the same)."""
        if isinstance(data, list):
            return self.reveal(topic, data)
        fast = reveal_batch(self, topic, data)
        if fast is not None:
            return fast
        rows = data.rows()
        out = self.reveal(topic, rows)
        return data if out is rows else _as_batch(data, out)

    # ======================================================================== protect (out)
    @_gc_paused
    def protect(self, topic: str, records: list[Any], *,
                source: Personal | None = None) -> list[Any]:
        """Records about to be written to ``topic``, with personal values encrypted."""
        if not records:
            return records
        spec = self.sources.get(topic) if source is None else source
        if spec is not None:
            records = self._tag_plain(spec, topic, records, erase=False)
        w = _Walk()
        out: list[Any] = []
        names = self.names
        seen = self._seen
        if len(seen) > _CACHE_MAX:
            seen.clear()
        for rec in records:
            k, v = rec[0], rec[1]
            w.first = None
            holder: list[Any] | None = None
            kc = k.__class__
            if kc is KeyId:  # a state key in a changelog: its key, as JSON writes it
                k = k.key
                kc = k.__class__
                holder = list(rec)
                holder[0] = k
            if kc is str and seen:
                k = seen.get(k, k)  # a personal value that lost its tag (key identity bytes)
                kc = k.__class__
            if kc in _SEALABLE:
                if holder is None:
                    holder = list(rec)
                w.first = k._wb_h
                w.pend.append([holder, 0, k, True, k._wb_h, k._wb_f])
            elif kc is not str and kc not in _PLAIN:
                nk = self._seal(k, w, True)
                if nk is not k:
                    if holder is None:
                        holder = list(rec)
                    self._place(holder, 0, nk, w)
            vc = v.__class__
            if vc is dict:
                nv = self._seal_dict(v, w, False)
                if names or w.first is not None:
                    nv = self._name_rule(v, nv, w, topic, rec)
                if nv is not v:
                    if holder is None:
                        holder = list(rec)
                    holder[1] = nv
            elif vc in _SEALABLE or (vc is str and v in seen):
                if holder is None:
                    holder = list(rec)
                self._leaf(seen.get(v, v) if vc is str else v, holder, 1, w, False)
            elif vc is not str and vc not in _PLAIN:
                nv = self._seal(v, w, False)
                if nv is not v:
                    if holder is None:
                        holder = list(rec)
                    self._place(holder, 1, nv, w)
            out.append(rec if holder is None else holder)
        if w.pend:
            self._fill_sealed(w)
        self._finish(w)
        return _records(out, records)

    def _leaf(self, x: Any, holder: Any, slot: Any, w: _Walk, det: bool) -> None:
        if x.__class__ is PersonalStr:
            self._seen[x] = x
        if w.first is None:
            w.first = x._wb_h
        if self.seal and x._wb_t is not None:
            holder[slot] = x._wb_t  # unchanged since it was read: its token as it was
            return
        w.pend.append([holder, slot, x, det, x._wb_h, x._wb_f])

    def _seal(self, x: Any, w: _Walk, det: bool) -> Any:
        cls = x.__class__
        if cls is KeyId:
            inner = x.key
            ic = inner.__class__
            if ic in _SEALABLE or (ic is str and inner in self._seen):
                box = [inner]
                self._leaf(self._seen.get(inner, inner) if ic is str else inner, box, 0, w,
                           True)
                return ("tuple", box, _FirstOf)
            y = self._seal(inner, w, det)
            return x if y is inner else y
        if cls is dict:
            return self._seal_dict(x, w, det)
        if cls is list:
            return self._seal_list(x, w, det)
        if isinstance(x, tuple) or cls is set or cls is frozenset:
            items = self._seal_list(list(x), w, det, copy=False)
            if items is None:
                return x
            return ("tuple", items, cls)
        return x

    def _seal_list(self, xs: list[Any], w: _Walk, det: bool, copy: bool = True) -> Any:
        out: list[Any] | None = None
        seen = self._seen
        for i, x in enumerate(xs):
            cls = x.__class__
            if cls is str:
                if x not in seen:
                    continue
                x = seen[x]
                cls = PersonalStr
            elif cls in _PLAIN:
                continue
            if out is None:
                out = list(xs) if copy else xs
            if cls in _SEALABLE:
                self._leaf(x, out, i, w, det)
            else:
                y = self._seal(x, w, det)
                if y is not x:
                    self._place(out, i, y, w)
        if out is None:
            return xs if copy else None
        return out

    def _seal_dict(self, d: dict[Any, Any], w: _Walk, det: bool) -> Any:
        out: dict[Any, Any] | None = None
        seen = self._seen
        for k, x in d.items():
            if k.__class__ in TAGGED:
                return self._seal_dict_keys(d, w, det)
            cls = x.__class__
            if cls is str:
                if x not in seen:
                    continue
                x = seen[x]
                cls = PersonalStr
            elif cls in _PLAIN:
                continue
            if cls in _SEALABLE:
                if out is None:
                    out = dict(d)
                self._leaf(x, out, k, w, det)
            else:
                y = self._seal(x, w, det)
                if y is not x:
                    if out is None:
                        out = dict(d)
                    self._place(out, k, y, w)
        return d if out is None else out

    def _seal_dict_keys(self, d: dict[Any, Any], w: _Walk, det: bool) -> dict[Any, Any]:
        """A dict with personal keys: keys are sealed at once (rare: a state keyed by a
        personal value)."""
        keys = [k for k in d if k.__class__ in TAGGED]
        found = self.keys.keys_for({k._wb_h for k in keys}, create=self.seal)
        out: dict[Any, Any] = {}
        for k, x in d.items():
            nk = k
            if k.__class__ in TAGGED:
                sk = found.get(k._wb_h)
                if sk is FORGOTTEN:
                    nk = ERASED
                elif sk is not None and self.seal:
                    nk = sk.seal_key(k, k._wb_f)
            out[nk] = x
        return self._seal_dict(out, w, det) if any(
            x.__class__ not in _PLAIN and x.__class__ is not str for x in out.values()) else out

    def _place(self, holder: Any, slot: Any, y: Any, w: _Walk) -> None:
        if y.__class__ is tuple and len(y) == 3 and y[0] == "tuple" and isinstance(y[2], type):
            holder[slot] = None
            w.tuples.append((holder, slot, y[1], y[2]))
        else:
            holder[slot] = y

    def _finish(self, w: _Walk) -> None:
        for holder, slot, items, cls in w.tuples:
            holder[slot] = _rebuild(cls, items)

    def _name_rule(self, orig: dict[str, Any], nv: dict[str, Any], w: _Walk, topic: str,
                   rec: Any) -> dict[str, Any]:
        """Values recomputed from personal data lost their tags; protect them anyway when
        (a) their field has the name of a declared personal field, or (b) they are strings
        that contain a personal string of the same record (f-strings, joins, concatenation)."""
        names = self.names
        for f in names:
            x = orig.get(f)
            if x is None:
                continue
            cls = x.__class__
            if cls in _SEALABLE or (cls is str and (x.startswith(PREFIX) or _is_marker(x))):
                continue
            if cls in (dict, list, tuple) and nv.get(f) is not x:
                continue  # tagged values inside were sealed
            h = w.first or self._subject_handle(orig)
            if h is None:
                raise ProcessingError(
                    f"topic {topic!r}: field {f!r} has the name of a personal field but its "
                    f"record names no subject (no personal value and no "
                    f"{' or '.join(map(repr, self.subject_fields))} field), so it cannot be "
                    "encrypted for anyone. Keep the subject field in the value, or rename "
                    "the field.", topic=topic)
            if nv is orig:
                nv = dict(orig)
            w.pend.append([nv, f, x, False, h, f])
        if w.first is None:
            return nv
        found = [x for x in orig.values() if x.__class__ is PersonalStr and len(x) >= 3]
        if not found:
            return nv
        shortest = min(map(len, found))
        for f, x in orig.items():
            if x.__class__ is not str or len(x) < shortest or f in names or \
                    x.startswith(PREFIX):
                continue
            for p in found:
                if p in x:
                    if nv is orig:
                        nv = dict(orig)
                    w.pend.append([nv, f, x, False, p._wb_h, f])
                    break
        return nv

    def _subject_handle(self, value: dict[str, Any]) -> bytes | None:
        for sf in self.subject_fields:
            s = value.get(sf)
            if s is not None and not (s.__class__ is str and (
                    s.startswith(PREFIX) or _is_marker(s))):
                return self.keys.handle(s)
        return None

    def _fill_sealed(self, w: _Walk) -> None:
        found = self.keys.keys_for({p[4] for p in w.pend}, create=self.seal)
        cache = self._sealed
        if len(cache) > _CACHE_MAX:
            cache.clear()
        for holder, slot, x, _det, h, f in w.pend:
            if x.__class__ is _Opaque:
                x = x.value
            sk = found.get(h)
            if sk is FORGOTTEN:
                holder[slot] = ERASED
            elif not self.seal or sk is None:
                holder[slot] = x
            else:
                base = _BASE.get(x.__class__)
                if base is None:
                    holder[slot] = sk.seal(x, f)
                    continue
                ck = (h, f, base, x)
                token = cache.get(ck)
                if token is None:
                    token = cache[ck] = sk.seal(x, f)
                holder[slot] = token

    # ========================================================================== reveal (in)
    @_gc_paused
    def reveal(self, topic: str, records: list[Any]) -> list[Any]:
        """Records read from ``topic``, with personal values decrypted (and tagged)."""
        if not records:
            return records
        spec = self.sources.get(topic)
        if spec is not None:
            records = self._tag_plain(spec, topic, records, erase=True)
        elif not self.seal and self.names:
            records = self._tag_named(topic, records)
        w = _Walk()
        out: list[Any] = []
        #: (dict, field) of values taken from the cache of opened tokens: their subjects'
        #: state is checked once for the batch, after the walk
        hits: list[tuple[dict[str, Any], str]] = []
        if len(self._opened) > _CACHE_MAX:
            self._opened.clear()
        for rec in records:
            k, v = rec[0], rec[1]
            holder: list[Any] | None = None
            kc = k.__class__
            if (kc is str and k.startswith(PREFIX)) or kc in TAGGED:
                holder = list(rec)
                w.pend.append([holder, 0, k, True, None, None])
            elif kc is not str and kc not in _PLAIN:
                nk = self._open(k, w, True)
                if nk is not k:
                    holder = list(rec)
                    self._place(holder, 0, nk, w)
            vc = v.__class__
            if vc is dict:
                nv = self._open_flat(v, w, hits)
                if nv is None:  # nested values: the general walk
                    nv = self._open(v, w, False)
                if nv is not v:
                    if holder is None:
                        holder = list(rec)
                    holder[1] = nv
            elif (vc is str and v.startswith(PREFIX)) or vc in TAGGED:
                if holder is None:
                    holder = list(rec)
                w.pend.append([holder, 1, v, False, None, None])
            elif vc is not str and vc not in _PLAIN:
                nv = self._open(v, w, False)
                if nv is not v:
                    if holder is None:
                        holder = list(rec)
                    self._place(holder, 1, nv, w)
            out.append(rec if holder is None else holder)
        if w.pend or hits:
            self._fill_opened(w, hits)
        self._finish(w)
        return _records(out, records)

    def _open_flat(self, d: dict[Any, Any], w: _Walk,
                   hits: list[tuple[dict[str, Any], str]]) -> Any:
        """The common case of :meth:`reveal`: a dict of scalars. Tokens seen before are
        replaced at once from the cache; ``None`` when a value is nested (or a key odd)."""
        cache = self._opened
        out: dict[Any, Any] | None = None
        mark = len(w.pend)
        for f, y in d.items():
            yc = y.__class__
            if yc is str:
                if not y.startswith(PREFIX):
                    if f.__class__ is not str or f.startswith(PREFIX):
                        break
                    continue
                if out is None:
                    out = dict(d)
                hit = cache.get(y)
                if hit is None:
                    w.pend.append([out, f, y, False, None, None])
                else:
                    out[f] = hit
                    hits.append((out, f))
            elif yc in _PLAIN:
                continue
            elif yc in TAGGED:
                if out is None:
                    out = dict(d)
                w.pend.append([out, f, y, False, None, None])
            else:
                break
        else:
            return d if out is None else out
        del w.pend[mark:]
        if out is not None:
            del hits[len(hits) - sum(1 for h in hits[::-1] if h[0] is out):]
        return None

    def _open(self, x: Any, w: _Walk, det: bool) -> Any:
        cls = x.__class__
        if cls is dict:
            out: Any = None
            odd_keys = False
            for k, y in x.items():
                if k.__class__ is not str or k.startswith(PREFIX):
                    odd_keys = True
                yc = y.__class__
                if yc is str:
                    if not y.startswith(PREFIX):
                        continue
                    if out is None:
                        out = dict(x)
                    w.pend.append([out, k, y, False, None, None])
                elif yc in TAGGED:
                    if out is None:
                        out = dict(x)
                    w.pend.append([out, k, y, False, None, None])
                elif yc not in _PLAIN:
                    z = self._open(y, w, False)
                    if z is not y:
                        if out is None:
                            out = dict(x)
                        self._place(out, k, z, w)
            if odd_keys and any(
                    (k.__class__ is str and k.startswith(PREFIX)) or k.__class__ in TAGGED
                    for k in x):
                return self._open_dict_keys(x if out is None else out, w)
            return x if out is None else out
        if cls is list or isinstance(x, tuple) or cls is set or cls is frozenset:
            items: list[Any] | None = None
            for i, y in enumerate(x):
                yc = y.__class__
                if (yc is str and y.startswith(PREFIX)) or yc in TAGGED:
                    if items is None:
                        items = list(x)
                    w.pend.append([items, i, y, det, None, None])
                elif yc is not str and yc not in _PLAIN:
                    z = self._open(y, w, det)
                    if z is not y:
                        if items is None:
                            items = list(x)
                        self._place(items, i, z, w)
            if items is None:
                return x
            return items if cls is list else ("tuple", items, cls)
        return x

    def _open_dict_keys(self, d: dict[Any, Any], w: _Walk) -> dict[Any, Any]:
        tmp = _Walk()
        keys = list(d)
        holder = list(keys)
        for i, k in enumerate(keys):
            if (k.__class__ is str and k.startswith(PREFIX)) or k.__class__ in TAGGED:
                tmp.pend.append([holder, i, k, True, None, None])
        self._fill_opened(tmp)
        return dict(zip(holder, d.values()))

    def _fill_opened(self, w: _Walk,
                     hits: list[tuple[dict[str, Any], str]] | None = None) -> None:
        parsed: list[Any] = []
        handles: set[bytes] = set()
        if hits:
            handles.update(d[f]._wb_h for d, f in hits)
        cache = self._opened
        if len(cache) > _CACHE_MAX:
            cache.clear()
        for p in w.pend:
            x = p[2]
            if x.__class__ in TAGGED:  # a tagged object kept in memory
                handles.add(x._wb_h)
                parsed.append(None)
                continue
            hit = cache.get(x)
            if hit is not None:
                handles.add(hit._wb_h)
                parsed.append(hit)
                continue
            t = _parse(x)
            handles.add(t[0])
            parsed.append(t)
        found = self.keys.keys_for(handles, create=False)
        if hits:
            gone = {h for h in handles if found.get(h) is None or found[h] is FORGOTTEN}
            if gone:
                for d, f in hits:
                    if d[f]._wb_h in gone:
                        d[f] = ERASED
        for p, t in zip(w.pend, parsed):
            holder, slot, x, det = p[0], p[1], p[2], p[3]
            if t is None:
                if found.get(x._wb_h) is FORGOTTEN:
                    holder[slot] = ERASED
                continue
            if t.__class__ is not tuple:  # a token decrypted before
                sk = found.get(t._wb_h)
                if sk is not None and sk is not FORGOTTEN:
                    holder[slot] = t
                    continue
                h = t._wb_h
            else:
                h, f, nonce, ct = t
                sk = found.get(h)
                if sk is not None and sk is not FORGOTTEN:
                    value = tag(sk.open(f, nonce, ct, x), h, f, x)
                    if value.__class__ in TAGGED:
                        cache[x] = value
                        if value.__class__ is PersonalStr:
                            self._seen[value] = value
                    holder[slot] = value
                    continue
            if sk is None and not self._warned:
                self._warned = True
                log.warning("personal data of a subject with no key and no tombstone in "
                            "key store %s reads as %s: is this the key store it was "
                            "written with?", self.keys.url, ERASED)
            holder[slot] = erased_key(x) if det else ERASED

    def _tag_named(self, topic: str, records: list[Any]) -> list[Any]:
        """A private log's records with a value that is not tagged in a personal-named field
        (the field-name rule leaves it as it is there; a sink that got a declared source's
        records as given, ``columns.defer_output``): each such value tagged with the subject
        protect seals it for on the other drivers (the first tagged value's in the record,
        else its subject field's: :meth:`_subject_handle`, as in :meth:`_name_rule`), or the
        marker once that subject is forgotten. Tokens, markers and ``None`` are left to the
        walk."""
        names = self.names
        todo: list[tuple[int, bytes]] = []
        for i, rec in enumerate(records):
            v = rec[1]
            if v.__class__ is not dict:
                continue
            for f in names:
                x = v.get(f)
                if _untagged(x):
                    break
            else:
                continue
            h = next((y._wb_h for y in v.values() if y.__class__ in TAGGED), None) or \
                self._subject_handle(v)
            if h is not None:  # (protect refuses a record with neither: none is written)
                todo.append((i, h))
        if not todo:
            return records
        found = self.keys.keys_for({h for _i, h in todo}, create=False)
        out = list(records)
        for i, h in todo:
            holder = list(records[i])
            nv = dict(holder[1])
            gone = found.get(h) is FORGOTTEN
            for f in names:
                x = nv.get(f)
                if _untagged(x):
                    nv[f] = ERASED if gone else tag(x, h, f, None)
            holder[1] = nv
            out[i] = tuple(holder)
        return out

    # ================================================================ declared sources
    def _tag_plain(self, spec: Personal, topic: str, records: list[Any], *,
                   erase: bool) -> list[Any]:
        """Tag a declared source's plaintext personal fields (and key) with their subject;
        with ``erase``, a forgotten subject's fields become the marker right away."""
        fields = spec.fields
        rows: list[tuple[list[Any], bytes]] = []
        out: list[Any] = []
        handle = self.keys.handle
        for rec in records:
            v = rec[1]
            if v.__class__ is dict and not spec.key:
                for f in fields:  # every personal field already a token (or absent): as is
                    x = v.get(f)
                    if x is not None and not (x.__class__ is str and x.startswith(PREFIX)):
                        break
                else:
                    out.append(rec)
                    continue
            subject = spec.subject_of(v, rec[0])
            if subject is None or (subject.__class__ is str and (
                    subject.startswith(PREFIX) or _is_marker(subject))) or \
                    subject.__class__ in TAGGED:
                out.append(rec)  # no subject, or already protected/tagged
                continue
            h = handle(subject)
            holder = list(rec)
            if isinstance(v, dict):
                nv = dict(v)
                for f in fields:
                    x = nv.get(f)
                    if _untagged(x):
                        nv[f] = tag(x, h, f, None) if x.__class__ in (str, int, float) else \
                            _Opaque(x, h, f)
                holder[1] = nv
            k = rec[0]
            if spec.key and k is not None and k.__class__ not in TAGGED and not (
                    k.__class__ is str and k.startswith(PREFIX)):
                holder[0] = tag(k, h, "$key", None)
            rows.append((holder, h))
            out.append(holder)
        if rows:
            found = self.keys.keys_for({h for _r, h in rows}, create=False) if erase else {}
            for holder, h in rows:
                v = holder[1]
                if found.get(h) is FORGOTTEN:
                    if isinstance(v, dict):
                        holder[1] = {f: (ERASED if f in fields and x is not None else x)
                                     for f, x in v.items()}
                    if holder[0].__class__ in TAGGED:
                        holder[0] = ERASED
                elif isinstance(v, dict):
                    for f in fields:
                        x = v.get(f)
                        if x.__class__ is _Opaque:
                            v[f] = x.value if erase else x
        return [r if r.__class__ is tuple else tuple(r) for r in out]
