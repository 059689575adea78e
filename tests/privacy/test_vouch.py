"""Arrays the boundary wrote itself and a driver keeps (``memory://NAME``) are read back by
the engine without checking every value again (``workbench/privacy/vouch.py``): what was noted
when they were written must still decide as the check would (forgotten subjects, fields that
another pipeline declares personal, tokens in a field a step reads)."""

from __future__ import annotations

import gc
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench.drivers import connect
from workbench.privacy import vouch
from workbench.privacy.crypto import PREFIX
from workbench.run import append_inputs

from .helpers import paid_cents, people

FIELDS = ["email", "name", "ip"]


def _pipeline(keys: Any, name: str = "vouch", fields: list[str] = FIELDS,
              step: Any = None) -> wb.Pipeline:
    return paid_cents(keys, name, fields=fields, step=step)


def _keys(tmp: Path) -> wb.KeyStore:
    return wb.KeyStore(tmp / "keys", master=os.urandom(32))


def _raw(drv: Any, topic: str) -> list[dict[str, Any]]:
    return [r[1] for r in drv.read_all(topic)]


def test_what_protect_hands_the_memory_driver_is_vouched_for(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    rows = people(12)
    drv = connect(f"memory://vouch-{uuid.uuid4().hex[:8]}")
    p = _pipeline(keys)
    append_inputs(p, drv, {"signups": rows})
    part = drv.read_batch("signups", 0, 3, 5)  # a slice: a view of the stored array
    known = vouch.lookup(part.values.arr)
    assert known is not None
    assert known.tokens == set(FIELDS) and known.personal == set(FIELDS)
    assert known.fields == set(rows[0])
    assert len(known.marks) == 12  # one per subject
    assert vouch.keys_plain(part.keys)
    assert vouch.lookup(part.values.arr.copy()) is None  # not what protect wrote
    # records a producer outside workbench wrote are not vouched for
    drv.append("signups", 0, [(r["user_id"], r, r["ts"], 0, None) for r in people(2, 50)])
    assert vouch.lookup(drv.read_batch("signups", 0, 12, 2).values.arr) is None
    run = p.run(drv)
    out = _raw(drv, "out")
    assert len(out) == 12  # 10 of the first rows, 2 of the producer's
    for v in out:  # the producer's plaintext was sealed, the vouched tokens passed through
        assert all(v[f].startswith(PREFIX) for f in FIELDS), v
    assert run.frame("out")["email"].tolist()[-1] == "secret-mail-51@example.org"


def test_the_entry_goes_with_the_array() -> None:
    import numpy as np

    arr = np.empty(3, dtype=object)
    arr[:] = [{"a": 1}, {"a": 2}, {"a": 3}]
    vouch.vouch(arr, ["a"], {}, frozenset())
    assert vouch.lookup(arr[1:]) is not None
    key = id(arr)
    gc.collect()  # (arrays of earlier tests freed now, not below)
    before = len(vouch._VOUCHED)
    del arr
    gc.collect()
    assert key not in vouch._VOUCHED and len(vouch._VOUCHED) == before - 1
    view = np.empty(4, dtype=object)[1:]
    vouch.vouch(view, ["a"], {}, frozenset())  # a view is never vouched for: its base
    assert vouch.lookup(view) is None           # holds rows that were not checked


def test_a_forget_after_the_write_still_erases_the_tokens_passed_through(
        tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    drv = connect(f"memory://vouch-{uuid.uuid4().hex[:8]}")
    p = _pipeline(keys)
    append_inputs(p, drv, {"signups": people(12)})
    assert vouch.lookup(drv.read_batch("signups", 0, 0, 12).values.arr) is not None
    wb.forget("u5", keys=keys)
    p.run(drv)
    out = {v["user_id"]: v for v in _raw(drv, "out")}
    assert [out["u5"][f] for f in FIELDS] == [wb.ERASED] * 3
    assert out["u6"]["email"].startswith(PREFIX)


def test_a_field_another_pipeline_declares_personal_is_checked(tmp_path: Path) -> None:
    """The writer declared email, name and ip; a reader that also declares ``note`` must
    find the plaintext there and seal it, although the array is vouched for."""
    keys = _keys(tmp_path)
    rows = [{**r, "note": f"call {r['user_id']} at home"} for r in people(8)]
    drv = connect(f"memory://vouch-{uuid.uuid4().hex[:8]}")
    append_inputs(_pipeline(keys), drv, {"signups": rows})
    reader = _pipeline(keys, "vouch-reader", [*FIELDS, "note"])
    run = reader.run(drv)
    assert run.driver.lazy.reads["signups"] == {"amount", "ts"}
    out = _raw(drv, "out")
    assert len(out) == 6
    for v in out:
        assert v["note"].startswith(PREFIX), v["note"]
    assert run.frame("out")["note"].tolist()[0] == "call u2 at home"


def test_fields_read_are_opened_in_copies_of_the_records(tmp_path: Path) -> None:
    """A step reading ``name``: the vouched array's tokens are opened in copies (the stored
    records keep their tokens); the same from records the driver was handed as rows (not
    vouched: the check, then the same opening)."""
    keys = _keys(tmp_path)

    def greet(e: Any) -> Any:
        return {**e, "greeting": f"Dear {e['name']}"}

    rows = people(8)
    first = connect(f"memory://vouch-{uuid.uuid4().hex[:8]}")
    p = _pipeline(keys, step=greet)
    append_inputs(p, first, {"signups": rows})
    stored = _raw(first, "signups")
    second = connect(f"memory://vouch-{uuid.uuid4().hex[:8]}")
    second.create_topic("signups", 1)
    second.append("signups", 0, [(v["user_id"], v, v["ts"], 0, None) for v in stored])
    assert vouch.lookup(second.read_batch("signups", 0, 0, 8).values.arr) is None
    for drv in (first, second):
        run = p.run(drv)
        assert run.driver.lazy.reads["signups"] == {"amount", "ts", "name"}
        assert "signups" in run.driver.opened
        assert all(v["name"].startswith(PREFIX) for v in _raw(drv, "signups"))
        out = _raw(drv, "out")
        assert len(out) == 6
        for v in out:
            assert v["greeting"].startswith(PREFIX) and v["name"].startswith(PREFIX)
            assert v["email"] == stored[int(v["user_id"][1:])]["email"]
        assert run.frame("out")["greeting"].tolist()[0] == "Dear Secretname2 Zzyzx"


def test_tokens_opened_from_the_cache_of_a_subject_forgotten_elsewhere_are_erased(
        tmp_path: Path) -> None:
    """A step reading ``name`` of a vouched array takes the opened values from the cache
    (``lazy._open_cached``) only while their subjects have keys: a subject forgotten by
    another process, whose key expired from the cache before its tombstone was listed
    again, reads as ``<erased>``."""
    keys = _keys(tmp_path)

    def greet(e: Any) -> Any:
        return {**e, "greeting": f"Dear {e['name']}"}

    drv = connect(f"memory://vouch-{uuid.uuid4().hex[:8]}")
    again = connect(f"memory://vouch-{uuid.uuid4().hex[:8]}")
    p = _pipeline(keys, step=greet)
    append_inputs(p, drv, {"signups": people(12)})
    append_inputs(p, again, {"signups": people(12)})
    p.run(drv)  # opens every name: the cache of opened tokens holds them
    assert keys.token_caches[1]
    keys.tombstone_marks()
    keys._marks_until = float("inf")  # the tombstones were listed just before the forget
    keys.backend.forget(keys.handle("u5"))  # another process: this one's caches stay
    keys.clear_cache()  # ...until its cached key expires
    assert keys.token_caches[1]
    p.run(again)
    out = {v["user_id"]: v for v in _raw(again, "out")}
    assert out["u5"]["name"] == wb.ERASED  # the step saw the marker
    assert out["u5"]["greeting"] == f"Dear {wb.ERASED}"
    assert out["u6"]["greeting"].startswith(PREFIX)


@pytest.mark.parametrize("relisted", [False, True])
def test_a_subject_forgotten_elsewhere_is_erased_once_its_cached_key_expires(
        tmp_path: Path, relisted: bool) -> None:
    """A step reading ``name`` with every cache warm (opened and sealed tokens, keys): the
    subjects' state is one check of the key cache (``KeyStore.all_live``), so a subject
    forgotten by another process shows as ``<erased>`` once its cached key expires (ttl),
    never as its plaintext or a token made from it: through the cache of opened tokens
    (``lazy._open_cached``, tombstones not listed again yet) and through the column path
    (``columns._open_tokens``, tombstones listed again)."""
    keys = wb.KeyStore(tmp_path / "keys", master=os.urandom(32), ttl=0.5)

    def greet(e: Any) -> Any:
        return {**e, "greeting": f"Dear {e['name']}"}

    p = _pipeline(keys, step=greet)
    drives = [connect(f"memory://vouch-{uuid.uuid4().hex[:8]}") for _ in range(3)]
    for drv in drives:
        append_inputs(p, drv, {"signups": people(12)})
    p.run(drives[0])  # every cache warm
    p.run(drives[1])
    assert keys.token_caches[1] and keys.all_live([keys.handle("u5")])
    if not relisted:
        keys.tombstone_marks()
        keys._marks_until = float("inf")  # the tombstones were listed just before the forget
    keys.backend.forget(keys.handle("u5"))  # another process: this one's caches stay
    time.sleep(0.55)
    assert keys.token_caches[1] and keys.token_caches[0]
    p.run(drives[2])
    out = {v["user_id"]: v for v in _raw(drives[2], "out")}
    assert out["u5"]["name"] == wb.ERASED  # the step saw the marker
    assert out["u5"]["greeting"] == f"Dear {wb.ERASED}"
    assert out["u6"]["greeting"].startswith(PREFIX) and out["u6"]["name"].startswith(PREFIX)
    assert "Secretname5" not in repr(_raw(drives[2], "out"))


def _private_rows(n: int) -> list[Any]:
    return [(f"u{i}", {"user_id": f"u{i % 7}", "email": f"e{i % 7}@example.org",
                       "name": None if i % 5 == 4 else f"Name {i % 7}", "n": i}, i, i, None)
            for i in range(n)]


def test_a_private_logs_array_is_read_back_by_asking_only_for_forgets(tmp_path: Path) -> None:
    """``seal=False`` (a private ``memory://``): the array protect builds of a declared
    source's inputs is noted (fields, the tagged ones, their subjects' handles); a view of it
    passes the engine's read as it is, while none of those subjects is forgotten. A forget
    (through this process, another process's with the cache cleared, or seen when the ttl
    ends) sends the read to the walk, which erases that subject's values."""
    from workbench.privacy.boundary import Boundary
    from workbench.privacy.columns import protect_batch
    from workbench.privacy.lazy import reveal_lazy
    from workbench.privacy.tags import PersonalStr
    from workbench.runtime.batch import Batch, ObjectValues

    keys = wb.KeyStore(tmp_path / "keys", master=os.urandom(32), ttl=3600)
    spec = {"signups": wb.Personal(subject="user_id", fields=["email", "name"])}
    private = Boundary(keys, spec, seal=False)
    rows = _private_rows(30)
    stored = protect_batch(private, "signups", Batch.from_rows(rows), keep=True)
    assert stored is not None and isinstance(stored.values, ObjectValues)
    known = vouch.lookup(stored.values.arr)
    assert isinstance(known, vouch.Unsealed)
    assert known.fields == {"user_id", "email", "name", "n"}
    assert known.tagged == {"email", "name"}
    assert known.handles == {keys.handle(f"u{j}") for j in range(7)}

    def read(reads: frozenset[str], start: int = 3, end: int = 17) -> Any:
        view = Batch(stored.keys[start:end], ObjectValues(stored.values.arr[start:end]),
                     stored.ts[start:end], stored.seq[start:end], None)
        return reveal_lazy(private, "signups", view, reads), view

    got, view = read(frozenset({"n"}))
    assert got is not None and got[0] is view and got[1] is False
    got, view = read(frozenset({"name"}))
    assert got is not None and got[0] is view and got[1] is True
    assert known.memo  # the answer is remembered: no pass over the handles next time
    # a token in a field that is not personal (copied by a step): not vouched for, the read
    # takes the walk (which opens it)
    token = Boundary(keys, spec).protect("signups", rows[:1])[0][1]["email"]
    assert token.startswith(PREFIX)
    copied = [(k, {**v, "ref": token}, t, q, h) for k, v, t, q, h in rows]
    with_token = protect_batch(private, "signups", Batch.from_rows(copied), keep=True)
    assert with_token is not None and vouch.lookup(with_token.values.arr) is None
    # another pipeline declaring a field personal that the array holds untagged: the walk
    other = Boundary(keys, {"signups": wb.Personal(subject="user_id", fields=["n"])},
                     seal=False)
    view = read(frozenset())[1]
    assert reveal_lazy(other, "signups", view, frozenset()) is None
    # a forget through this process: the walk, which erases u3's values
    wb.forget("u3", keys=keys)
    assert read(frozenset())[0] is None
    walked = private.reveal("signups", view.rows())
    assert {r[1]["email"] for r in walked if r[1]["user_id"] == "u3"} == {wb.ERASED}
    assert {r[1]["email"].__class__ for r in walked if r[1]["user_id"] != "u3"} == \
        {PersonalStr}
    # another process's forget: seen once this process's cache is cleared ...
    stored = protect_batch(private, "signups", Batch.from_rows(
        [r for r in rows if r[1]["user_id"] != "u3"]), keep=True)
    assert stored is not None
    assert read(frozenset(), 0, 9)[0] is not None
    keys.backend.forget(keys.handle("u5"))
    assert read(frozenset(), 0, 9)[0] is not None  # (cached for ttl, as keys_for is)
    keys.clear_cache()
    assert read(frozenset(), 0, 9)[0] is None
    # ... or when the ttl ends
    short = wb.KeyStore(tmp_path / "keys", master=keys.master, ttl=1.0)
    quick = Boundary(short, spec, seal=False)
    stored = protect_batch(quick, "signups", Batch.from_rows(
        [r for r in rows if r[1]["user_id"] in ("u1", "u2")]), keep=True)
    assert stored is not None
    view = read(frozenset(), 0, 5)[1]
    assert reveal_lazy(quick, "signups", view, frozenset()) is not None  # (now remembered)
    keys.backend.forget(keys.handle("u2"))
    time.sleep(1.1)
    assert reveal_lazy(quick, "signups", view, frozenset()) is None
