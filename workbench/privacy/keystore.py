"""The key store: per-subject data keys, a short-lived cache, and forgetting.

* A subject (a person: ``"u42"``) is known to the store and to the logs only by its
  **handle**, ``HMAC-SHA256(index key, subject id)[:16]``; the index key is a random secret
  kept (wrapped by the master key) in the store itself. Neither the logs nor the store hold
  subject ids.
* Each subject has a random 32-byte **data key**, wrapped by the master key; it is made the
  first time the subject's data is written, and never again once the subject is forgotten
  (the backend keeps a tombstone with no key).
* Keys are **cached** for ``ttl`` seconds (default 30) and at most ``max_cached`` subjects:
  a forget made elsewhere (another process, ``workbench forget``) takes effect in a running
  job within ``ttl`` seconds; a forget through this object takes effect at once in every
  ``KeyStore`` object of this process that uses the same backend. Tombstones are cached for
  good (a forgotten subject is forgotten forever).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
import weakref
from collections.abc import Collection, Iterable, Mapping
from itertools import repeat
from operator import is_, itemgetter
from typing import Any

from .crypto import PREFIX, TOKEN_VERSION, SubjectKey
from .master import MasterKey, master_key
from .stores import FORGOTTEN, KeyBackend, open_backend

__all__ = ["FORGOTTEN", "KeyStore", "epoch", "has_tombstone", "subject_text", "token_mark"]

#: reserved handle of the index key (an HMAC never yields 16 zero bytes in practice)
_INDEX = bytes(16)
_VALUE = itemgetter(1)  # of a cache entry (expires, key or FORGOTTEN)
_stores: weakref.WeakSet[KeyStore] = weakref.WeakSet()
_epoch = [0]


def epoch() -> int:
    """A number that grows with every forget in this process (caches of previews use it)."""
    return _epoch[0]


def token_mark(handle: bytes) -> str:
    """The first 27 characters of every token of the subject ``handle`` (see
    :meth:`KeyStore.tombstone_marks`)."""
    head = base64.b64encode(bytes([TOKEN_VERSION]) + handle + b"\0").decode("ascii")
    return PREFIX + head[:22]


def subject_text(subject: Any) -> bytes:
    """The bytes a subject id is identified by (``42`` and ``"42"`` are one subject)."""
    if isinstance(subject, bytes):
        return subject
    return str.__str__(subject).encode("utf-8") if isinstance(subject, str) else \
        str(subject).encode("utf-8")


def has_tombstone(found: Mapping[bytes, Any]) -> bool:
    """True when an answer of :meth:`KeyStore.keys_for` holds a forgotten subject."""
    return any(map(is_, found.values(), repeat(FORGOTTEN)))


class KeyStore:
    """Per-subject data keys in a backend (PostgreSQL or a local directory).

    Args:
        where: ``postgresql://user@host:port/db`` (``?schema=``), ``file:///dir`` or a
            directory path, or a backend object (see :mod:`workbench.privacy.stores`).
        master: the master key: a :class:`~workbench.privacy.master.MasterKey` (an external
            KMS), 32 bytes, base64 text or a key file; default ``$WORKBENCH_MASTER_KEY`` or
            the file ``$WORKBENCH_MASTER_KEY_FILE``.
        ttl: seconds a data key stays cached: the bound on how long a running job keeps using
            the key of a subject forgotten by another process.
        max_cached: most subjects whose keys are cached at once.

    Example:
        >>> import tempfile, os
        >>> ks = KeyStore(tempfile.mkdtemp(), master=os.urandom(32))
        >>> ks.forget("u42")
        False
        >>> ks.is_forgotten("u42")
        True
    """

    def __init__(self, where: str | os.PathLike[str] | KeyBackend, *,
                 master: MasterKey | bytes | str | os.PathLike[str] | None = None,
                 ttl: float = 30.0, max_cached: int = 100_000) -> None:
        self.backend: KeyBackend = (
            where if not isinstance(where, str | os.PathLike) else open_backend(where))
        self.master = master_key(master)
        self.ttl = float(ttl)
        self.max_cached = int(max_cached)
        self._cache: dict[bytes, tuple[float, Any]] = {}
        #: no cached key expires before this (tombstones never do): until then a batch whose
        #: subjects are all cached is answered by one lookup pass (see keys_for)
        self._fresh_until = float("inf")
        #: the handles whose cached entry is a key (not a tombstone): while no cached key has
        #: expired (``_fresh_until``), a batch whose subjects are all in it is live (all_live)
        self._live: set[bytes] = set()
        self._cleared = 0  # clear_cache calls (none_forgotten's memos are void after one)
        self._lock = threading.Lock()
        self._index: bytes | None = None
        self._handles: dict[bytes, bytes] = {}
        self._by_id: dict[Any, bytes] = {}  # plain str/int subject ids (handles_of)
        #: the token caches of the boundaries using this store (``boundary.Boundary``):
        #: ``(sealed, opened, seen, by field, by field unsealed, derived)``; by field: a
        #: declared source's field -> {plaintext: its tagged value, with subject handle and
        #: token} (``columns._tag_source``), for sealing boundaries; by field unsealed: the
        #: same without tokens, for private in-process logs; derived: a field -> {text
        #: containing a personal string: (its subject's handle, its token)}
        #: (``columns._contained_distinct``)
        self.token_caches: tuple[dict[Any, Any], ...] = ({}, {}, {}, {}, {}, {})
        #: forgotten handles known to this process, and the start of their tokens
        #: (:meth:`tombstone_marks`); listed from the backend again after ``ttl`` seconds
        self._marks: set[str] = set()
        self._marks_until = float("-inf")
        #: values of columns a run left encrypted that were checked (``privacy/lazy.py``):
        #: ``[not a forgotten subject's token, also a token/marker/None, len(marks) then]``
        self.passed: list[Any] = [set(), set(), -1]
        _stores.add(self)

    @property
    def url(self) -> str:
        """Where the keys are (without secrets)."""
        return self.backend.url

    # -- handles --------------------------------------------------------------------------------
    def _index_key(self) -> bytes:
        if self._index is None:
            found = self.backend.get_many([_INDEX]).get(_INDEX)
            if found is None:
                blob = self.master.wrap(os.urandom(32), _INDEX)
                found = self.backend.create_many({_INDEX: blob})[_INDEX]
            self._index = self.master.unwrap(found, _INDEX)
        return self._index

    def handle(self, subject: Any) -> bytes:
        """The subject's handle (16 bytes): how logs and the store name it."""
        text = subject_text(subject)
        h = self._handles.get(text)
        if h is None:
            h = hmac.new(self._index_key(), b"subject|" + text, hashlib.sha256).digest()[:16]
            if len(self._handles) >= self.max_cached:
                self._handles.clear()
            self._handles[text] = h
        return h

    def handles_of(self, subjects: list[Any]) -> dict[Any, bytes]:
        """``{subject: handle}`` for plain ids (``str`` or ``int``, distinct), through a cache
        by id: a batch whose subjects were all seen costs one lookup pass."""
        by_id = self._by_id
        got = list(map(by_id.get, subjects))
        if None in got:
            if len(by_id) + len(subjects) > self.max_cached:
                by_id.clear()
            for i, h in enumerate(got):
                if h is None:
                    s = subjects[i]
                    got[i] = by_id[s] = self.handle(s)
        return dict(zip(subjects, got))

    # -- keys -----------------------------------------------------------------------------------
    def keys_for(self, handles: Iterable[bytes], *, create: bool) -> dict[bytes, Any]:
        """``{handle: SubjectKey | FORGOTTEN | None}`` for one batch: one cache pass, then one
        backend read (and, with ``create``, one write) for the handles missing. ``None`` (no
        key, no tombstone: a subject never written) is cached for ``ttl`` too, so a private
        ``memory://`` run, which makes no keys, asks the backend once per subject and ttl,
        not once per batch; ``create`` makes the keys of such subjects all the same."""
        now = time.monotonic()
        cache = self._cache
        if now < self._fresh_until:  # every cached entry is valid: one pass for the batch
            if not isinstance(handles, list | tuple):
                handles = list(handles)
            hits: list[Any] = list(map(cache.get, handles))
            if None not in hits:
                values = list(map(_VALUE, hits))
                if not create or None not in values:
                    return dict(zip(handles, values))
        else:
            self._drop_expired(now)
        out: dict[bytes, Any] = {}
        missing: list[bytes] = []
        for h in handles:
            hit = cache.get(h)
            if hit is not None and (hit[1] is FORGOTTEN or hit[0] > now) and \
                    not (create and hit[1] is None):
                out[h] = hit[1]
            else:
                missing.append(h)
        if not missing:
            return out
        found = self.backend.get_many(missing)
        if create:
            absent = [h for h in missing if h not in found]
            if absent:
                self._index_key()  # the index key first, so it is never raced by data keys
                made = self.backend.create_many(
                    {h: self.master.wrap(os.urandom(32), h) for h in absent})
                found.update(made)
        with self._lock:
            if len(cache) + len(missing) > self.max_cached:
                for old in list(cache)[:len(cache) + len(missing) - self.max_cached]:
                    del cache[old]
                    self._live.discard(old)
            expires = now + self.ttl
            self._fresh_until = min(self._fresh_until, expires)
            for h in missing:
                got = found.get(h)
                if got is None:  # no key yet: remembered for ttl (a forget elsewhere shows
                    cache[h] = (expires, None)  # within ttl, as for cached keys)
                    self._live.discard(h)
                    out[h] = None
                    continue
                if got is FORGOTTEN:
                    value = FORGOTTEN
                    self._marks.add(token_mark(h))
                    self._live.discard(h)
                else:
                    value = SubjectKey(h, self.master.unwrap(got, h))
                    self._live.add(h)
                cache[h] = (expires, value)
                out[h] = value
        return out

    def all_live(self, handles: Iterable[bytes]) -> bool:
        """True when every subject of ``handles`` has a key, answered from the cache by one
        set operation: no cached key has expired (the ``ttl`` bound, as :meth:`keys_for`)
        and every handle's cached entry is a key. False means "ask :meth:`keys_for`" (a
        handle not cached, expired, forgotten, or unknown), never that a subject is live.
        A forget through any ``KeyStore`` of this process removes the handle at once."""
        return time.monotonic() < self._fresh_until and self._live.issuperset(handles)

    def none_forgotten(self, handles: Collection[bytes], memo: list[Any] | None = None) -> bool:
        """True when no subject of ``handles`` is forgotten (a subject without a key is not:
        a private log makes none), as :meth:`keys_for` answers. ``memo``: a list kept with
        ``handles`` (empty at first); a True answer is noted there and given again without a
        pass over ``handles`` until a forget through a ``KeyStore`` of this process, a
        :meth:`clear_cache`, or the first cached entry expiring (the ``ttl`` bound) could
        make :meth:`keys_for` answer otherwise."""
        if not handles:
            return True
        stamp = (self, _epoch[0], self._cleared)
        if memo and memo[0] == stamp and time.monotonic() < memo[1]:
            return True
        if has_tombstone(self.keys_for(handles, create=False)):
            return False
        if memo is not None:
            memo[:] = [stamp, self._fresh_until]
        return True

    def tombstone_marks(self) -> frozenset[str] | set[str] | None:
        """The first 27 characters of the tokens of every forgotten subject (the token
        prefix, then the base64 of the token version and the first 124 bits of the handle),
        listed from the backend at most ``ttl`` seconds ago and including every forget
        through a ``KeyStore`` of this process; ``None`` when the backend cannot list its
        tombstones. A token whose start is in it belongs to a forgotten subject."""
        if time.monotonic() >= self._marks_until:
            listed = getattr(self.backend, "tombstones", None)
            if listed is None:
                return None
            now = time.monotonic()
            found = listed()
            with self._lock:
                self._marks.update(map(token_mark, found))
                self._marks_until = now + self.ttl
        return self._marks

    def forget(self, subject: Any) -> bool:
        """Erase a subject: delete its data key (durably) and leave a tombstone, so none is
        ever made again. Every copy of its personal fields, in every topic, changelog, git
        commit and table, then reads as ``<erased>``. Returns True if a key existed."""
        h = self.handle(subject)
        existed = self.backend.forget(h)
        _epoch[0] += 1
        for store in list(_stores):
            if store.backend.url == self.backend.url:
                with store._lock:
                    store._cache[h] = (float("inf"), FORGOTTEN)
                    store._live.discard(h)
                    store._marks.add(token_mark(h))
                for cache in store.token_caches:  # no plaintext of theirs kept in memory
                    cache.clear()
        return existed

    def is_forgotten(self, subject: Any) -> bool:
        """True when the subject was forgotten (asks the backend, not the cache)."""
        h = self.handle(subject)
        return self.backend.get_many([h]).get(h) is FORGOTTEN

    def counts(self) -> tuple[int, int]:
        """``(subjects with a key, forgotten subjects)``."""
        keys, gone = self.backend.counts()
        index = 1 if self.backend.get_many([_INDEX]).get(_INDEX) is not None else 0
        return keys - index, gone

    def _drop_expired(self, now: float) -> None:
        """Drop the cached keys that expired (read again from the backend when a batch needs
        them) and note when the next one expires."""
        with self._lock:
            cache = self._cache
            for h in [h for h, (t, v) in cache.items() if t <= now and v is not FORGOTTEN]:
                del cache[h]
                self._live.discard(h)
            self._fresh_until = min((t for t, v in cache.values() if v is not FORGOTTEN),
                                    default=float("inf"))

    def clear_cache(self) -> None:
        """Drop cached keys (the next batch reads the backend)."""
        with self._lock:
            self._cache.clear()
            self._live.clear()
            self._cleared += 1

    def close(self) -> None:
        """Release the backend's connection."""
        self.backend.close()

    def __repr__(self) -> str:
        return f"<KeyStore {self.url} master={self.master.fingerprint} ttl={self.ttl:g}s>"
