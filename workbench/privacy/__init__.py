"""Personal data, encrypted per person wherever it is stored, erased by deleting one key.

Crypto-shredding: each data subject's personal fields are encrypted (AES-256-GCM) with that
subject's own data key, kept in a key store outside the immutable logs and wrapped by a
master key; ``forget(subject)`` deletes the key, after which every copy of their personal
fields — in every topic, changelog, repartition topic, git commit and SQL table — reads as
``<erased>``. See ``docs/privacy.md``.

>>> import os, tempfile, workbench as wb
>>> keys = wb.KeyStore(tempfile.mkdtemp(), master=os.urandom(32))
>>> p = wb.Pipeline("crm", keys=keys)
>>> users = p.source("signups", key="user_id", sample=[
...     {"user_id": "u1", "email": "ann@example.com"},
...     {"user_id": "u2", "email": "bob@example.com"}],
...     personal=wb.Personal(subject="user_id", fields=["email"]))
>>> _ = users.to("copy")
>>> _ = wb.forget("u1", keys=keys)
>>> [r.value["email"] for r in p.run("memory://").records("copy")]
['<erased>', 'bob@example.com']

This package's modules import ``cryptography`` only when a key is used.
"""

from __future__ import annotations

from typing import Any

from .spec import ERASED, Personal

__all__ = ["ERASED", "KeyStore", "LocalMasterKey", "MasterKey", "Personal", "forget"]


def forget(subject: Any, *, keys: Any) -> bool:
    """Erase ``subject`` (a subject id such as ``"u42"``) from the key store ``keys``: its data
    key is deleted and a tombstone stops a new one being made. Every copy of its personal
    fields then reads as ``<erased>`` (running jobs: within the key store's ``ttl``). Returns
    True if a key existed.

    Args:
        subject: the subject id (the value of the ``Personal(subject=...)`` field).
        keys: a :class:`KeyStore`, or its URL/path (the master key then comes from the
            environment).
    """
    from .keystore import KeyStore

    store = keys if isinstance(keys, KeyStore) else KeyStore(keys)
    return store.forget(subject)


def __getattr__(name: str) -> Any:
    if name == "KeyStore":
        from .keystore import KeyStore

        return KeyStore
    if name in ("MasterKey", "LocalMasterKey"):
        from . import master

        return getattr(master, name)
    raise AttributeError(f"module 'workbench.privacy' has no attribute {name!r}")
