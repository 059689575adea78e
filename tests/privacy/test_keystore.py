"""Key stores, tokens and tags, without a pipeline."""

from __future__ import annotations

import os
import pickle
import threading
import time
from pathlib import Path

import pytest

import workbench as wb
from workbench.errors import SerializationError
from workbench.privacy.crypto import PREFIX, SubjectKey, parse_token
from workbench.privacy.master import LocalMasterKey
from workbench.privacy.stores import FORGOTTEN
from workbench.privacy.tags import PersonalStr, tag, tag_of


def test_tokens_are_deterministic_per_subject_and_typed() -> None:
    a, b = SubjectKey(b"a" * 16, os.urandom(32)), SubjectKey(b"b" * 16, os.urandom(32))
    t1, t2 = a.seal("ann@example.org", "email"), a.seal("ann@example.org", "email")
    assert t1 == t2 and t1.startswith(PREFIX)
    assert b.seal("ann@example.org", "email") != t1       # another subject's key
    assert a.seal("ann@example.org", "name") != t1        # another field
    for value in ("x", 42, 2.5, b"\x00\x01", True, None, {"a": [1, 2]}):
        _h, f, nonce, ct = parse_token(a.seal(value, "f"))
        assert a.open(f, nonce, ct) == value and type(a.open(f, nonce, ct)) is type(value)
    assert len(parse_token(t1)[0]) == 16


def test_malformed_tokens_are_serialization_errors() -> None:
    for bad in (PREFIX, PREFIX + "!!!", PREFIX + "AAAA"):
        with pytest.raises(SerializationError, match="malformed"):
            parse_token(bad)


def test_tags_follow_string_methods_and_pickle() -> None:
    s = tag("Ann Lee", b"h" * 16, "name", None)
    assert isinstance(s, PersonalStr) and s == "Ann Lee"
    for derived in (s.upper(), s.lower(), s[:3], s + "!", "Dear " + s, s.replace("A", "E"),
                    s.strip(), s.split()[0], s.title()):
        assert tag_of(derived) == (b"h" * 16, "name"), derived
    assert tag_of(f"Dear {s}") is None  # f-strings drop the tag (the containment rule helps)
    back = pickle.loads(pickle.dumps(s))
    assert back == s and tag_of(back) == (b"h" * 16, "name")


def test_directory_store_forget_is_durable_and_final(tmp_path: Path) -> None:
    master = os.urandom(32)
    ks = wb.KeyStore(tmp_path / "k", master=master)
    h = ks.handle("u1")
    key = ks.keys_for([h], create=True)[h]
    assert key is not FORGOTTEN and (tmp_path / "k" / "keys" / h.hex()).exists()
    assert "u1" not in "".join(os.listdir(tmp_path / "k" / "keys"))  # handles, not ids
    assert ks.forget("u1") is True
    assert not (tmp_path / "k" / "keys" / h.hex()).exists()
    assert (tmp_path / "k" / "forgotten" / h.hex()).stat().st_size == 0  # holds no key
    # a fresh object (another process) never makes a key for a forgotten subject
    other = wb.KeyStore(tmp_path / "k", master=master)
    assert other.keys_for([h], create=True)[h] is FORGOTTEN
    assert not (tmp_path / "k" / "keys" / h.hex()).exists()
    assert other.forget("u1") is False


def test_directory_store_create_and_forget_race(tmp_path: Path) -> None:
    """Many threads create keys for subjects while others forget them: afterwards no
    forgotten subject has a key file."""
    master = os.urandom(32)
    stores = [wb.KeyStore(tmp_path / "k", master=master) for _ in range(4)]
    subjects = [f"s{i}" for i in range(60)]
    handles = {s: stores[0].handle(s) for s in subjects}

    def create(ks: wb.KeyStore) -> None:
        ks.keys_for([handles[s] for s in subjects], create=True)

    def forget(ks: wb.KeyStore) -> None:
        for s in subjects[::2]:
            ks.forget(s)

    threads = [threading.Thread(target=create, args=(stores[i],)) for i in (0, 1)] + [
        threading.Thread(target=forget, args=(stores[i],)) for i in (2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    left = set(os.listdir(tmp_path / "k" / "keys"))
    for s in subjects[::2]:
        assert handles[s].hex() not in left
    create(stores[0])
    assert stores[0].counts() == (30, 30)


@pytest.mark.postgres
def test_postgres_store_create_and_forget_race(postgres_url: str) -> None:
    """The same race on a PostgreSQL key store (one connection per store object, as in
    separate processes): the advisory lock per handle leaves no key of a forgotten subject,
    and the deleted keys are gone from the table."""
    import uuid

    import psycopg

    master = os.urandom(32)
    schema = f"keys_race_{uuid.uuid4().hex[:8]}"
    stores = [wb.KeyStore(f"{postgres_url}?schema={schema}", master=master) for _ in range(4)]
    subjects = [f"s{i}" for i in range(60)]
    handles = {s: stores[0].handle(s) for s in subjects}
    try:
        def create(ks: wb.KeyStore) -> None:
            for i in range(0, 60, 6):  # several transactions, interleaving with the forgets
                ks.keys_for([handles[s] for s in subjects[i:i + 6]], create=True)

        def forget(ks: wb.KeyStore) -> None:
            for s in subjects[::2]:
                ks.forget(s)

        threads = [threading.Thread(target=create, args=(stores[i],)) for i in (0, 1)] + [
            threading.Thread(target=forget, args=(stores[i],)) for i in (2, 3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            left = {bytes(h) for (h,) in conn.execute(
                f'SELECT handle FROM "{schema}".workbench_keys').fetchall()}
        for s in subjects[::2]:
            assert handles[s] not in left
        create(stores[0])
        assert stores[0].counts() == (30, 30)
        assert stores[1].keys_for([handles["s0"]], create=True)[handles["s0"]] is FORGOTTEN
    finally:
        for ks in stores:
            ks.close()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.postgres
def test_postgres_vacuum_waits_for_older_transactions(postgres_url: str) -> None:
    """VACUUM FULL keeps a deleted key while a transaction older than the forget is open:
    ``vacuum_full`` says so (and how many), and reports 0 once that transaction ended."""
    import uuid

    import psycopg

    from workbench.privacy.stores import PostgresBackend

    schema = f"keys_vac_{uuid.uuid4().hex[:8]}"
    ks = wb.KeyStore(f"{postgres_url}?schema={schema}", master=os.urandom(32))
    backend = ks.backend
    assert isinstance(backend, PostgresBackend)
    old = psycopg.connect(postgres_url)
    try:
        ks.keys_for([ks.handle("a"), ks.handle("b")], create=True)
        old.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        old.execute("SELECT 1")  # a snapshot older than the forget
        assert ks.forget("a")
        assert backend.vacuum_full(timeout=0.3) == 1
        old.rollback()
        assert backend.vacuum_full() == 0
    finally:
        old.close()
        ks.close()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_wrong_master_key_is_a_clear_error(tmp_path: Path) -> None:
    ks = wb.KeyStore(tmp_path / "k", master=os.urandom(32))
    ks.keys_for([ks.handle("u1")], create=True)
    with pytest.raises(SerializationError, match="another master key"):
        wb.KeyStore(tmp_path / "k", master=os.urandom(32)).handle("u1")


def test_master_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "master.key"
    key = LocalMasterKey.generate(path)
    monkeypatch.setenv("WORKBENCH_MASTER_KEY_FILE", str(path))
    monkeypatch.delenv("WORKBENCH_MASTER_KEY", raising=False)
    assert wb.KeyStore(tmp_path / "k").master.fingerprint == key.fingerprint
    monkeypatch.setenv("WORKBENCH_MASTER_KEY", path.read_text())
    assert wb.KeyStore(tmp_path / "k").master.fingerprint == key.fingerprint
    assert path.read_text().strip() not in repr(key)  # reprs show a fingerprint, never the key


def test_boundary_walks_every_container(tmp_path: Path) -> None:
    """Tagged values inside dicts, lists, tuples, sets, windowed keys, table changes and
    state-key wrappers are sealed, and read back as they were."""
    from workbench.keys import key_id
    from workbench.privacy.boundary import Boundary
    from workbench.types import Change
    from workbench.windows import Windowed

    ks = wb.KeyStore(tmp_path / "k", master=os.urandom(32))
    b = Boundary(ks, {})
    h = ks.handle("u1")
    e = tag("ann@example.org", h, "email", None)
    records = [
        (Windowed(e, 0, 10), {"a": [e, (e, 1)], "s": {e}, "f": frozenset([e])}, 1, 0, None),
        (key_id(e), Change({"email": e}, None), 2, 1, None),
        ([key_id(e), 0], None, 3, 2, None),
    ]
    sealed = b.protect("t", records)
    assert "ann@example.org" not in repr(sealed)
    opened = Boundary(ks, {}).reveal("t", sealed)
    assert opened[0][0] == Windowed("ann@example.org", 0, 10)
    assert opened[0][1] == {"a": [e, (e, 1)], "s": {e}, "f": frozenset([e])}
    assert opened[1][0] == "ann@example.org" and opened[1][1] == Change({"email": e}, None)
    assert opened[2][0] == ["ann@example.org", 0]
    ks.forget("u1")
    erased = Boundary(ks, {}).reveal("t", sealed)
    assert erased[0][1]["a"] == [wb.ERASED, (wb.ERASED, 1)]
    assert erased[1][1] == Change({"email": wb.ERASED}, None)
    assert erased[0][0][0].startswith("<erased:")


def test_cached_keys_expire_after_ttl_when_the_whole_batch_is_cached(tmp_path: Path) -> None:
    """A batch whose subjects are all cached is answered in one pass, but never past the
    ttl: a forget by another process (the backend alone) shows within ttl."""
    keys = wb.KeyStore(tmp_path / "keys", master=os.urandom(32), ttl=0.3)
    hs = [keys.handle(f"s{i}") for i in range(5)]
    made = keys.keys_for(hs, create=True)
    assert all(made[h] is not None and made[h] is not FORGOTTEN for h in hs)
    keys.backend.forget(hs[2])  # another process
    again = keys.keys_for(hs, create=False)  # from the cache (within ttl: allowed)
    assert [again[h] for h in hs] == [made[h] for h in hs]
    time.sleep(0.35)
    later = keys.keys_for(set(hs), create=False)
    assert later[hs[2]] is FORGOTTEN
    assert all(later[h].handle == h for h in hs if h != hs[2])
    keys.forget("s4")  # through the process: at once, whatever the ttl
    assert keys.keys_for(hs, create=False)[hs[4]] is FORGOTTEN


def test_all_live_is_the_cache_while_every_key_is_fresh(tmp_path: Path) -> None:
    """``KeyStore.all_live`` (one set operation: the column paths' check of a batch's
    subjects) says True only while every handle's cached entry is a key that has not
    expired: a forget through any KeyStore object of the process shows at once, one by
    another process (the backend alone) within ttl, and an emptied cache asks again."""
    master = os.urandom(32)
    keys = wb.KeyStore(tmp_path / "keys", master=master, ttl=0.3)
    other = wb.KeyStore(tmp_path / "keys", master=master)  # another object, same store
    hs = [keys.handle(f"s{i}") for i in range(6)]
    assert not keys.all_live(hs)  # nothing cached yet
    keys.keys_for(hs, create=True)
    assert keys.all_live(hs) and keys.all_live(set(hs[:2]))
    other.forget("s1")  # through the process: at once
    assert not keys.all_live(hs) and not keys.all_live([hs[1]]) and keys.all_live(hs[2:])
    keys.backend.forget(hs[3])  # another process: the cache may answer within ttl
    assert keys.all_live(hs[2:])
    time.sleep(0.35)
    assert not keys.all_live(hs[2:])  # a cached key expired: keys_for decides
    got = keys.keys_for(hs[2:], create=False)
    assert got[hs[3]] is FORGOTTEN
    assert keys.all_live([hs[2], hs[4], hs[5]]) and not keys.all_live(hs[2:])
    keys.clear_cache()
    assert not keys.all_live([hs[2]])


def test_subjects_without_a_key_are_remembered_for_ttl_and_still_get_one(
        tmp_path: Path) -> None:
    """A subject with no key and no tombstone (never written: what a private ``memory://``
    run asks about every batch) is cached for ttl like a key, so the backend is not read
    once per batch; a later ``create=True`` still makes its key (cached or not), and a
    tombstone written by another process shows once ttl has passed."""
    master = os.urandom(32)
    keys = wb.KeyStore(tmp_path / "keys", master=master, ttl=0.3)
    hs = [keys.handle(f"s{i}") for i in range(4)]
    assert keys.keys_for(hs, create=False) == dict.fromkeys(hs)
    keys.backend.forget(hs[0])  # another process, within ttl: the cache answers
    assert keys.keys_for(hs, create=False) == dict.fromkeys(hs)  # (one pass, no backend)
    made = keys.keys_for(hs[1:], create=True)  # every entry cached as "no key": made now
    assert all(isinstance(v, SubjectKey) for v in made.values())
    assert keys.keys_for(hs[2:], create=False) == {h: made[h] for h in hs[2:]}
    fresh = wb.KeyStore(tmp_path / "keys", master=master)  # written to the store: the same
    for h, k in fresh.keys_for(hs[1:], create=False).items():  # keys (equal tokens)
        assert k.seal("x@example.org", "email") == made[h].seal("x@example.org", "email")
    time.sleep(0.35)
    assert keys.keys_for([hs[0]], create=False) == {hs[0]: FORGOTTEN}
    one = wb.KeyStore(tmp_path / "keys", master=master, ttl=60)
    h = one.handle("new")
    assert one.keys_for([h], create=False) == {h: None}
    assert isinstance(one.keys_for([h, hs[1]], create=True)[h], SubjectKey)  # the slow path
