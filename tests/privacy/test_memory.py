"""Crypto-shredding on the memory driver: what is stored, what is read, what a forget does."""

from __future__ import annotations

import base64
import os
import time
import uuid
from pathlib import Path

import pytest

import workbench as wb
from workbench.drivers import connect
from workbench.errors import DefinitionError, ProcessingError, SerializationError
from workbench.privacy.crypto import PREFIX, TOKEN_VERSION, parse_token
from workbench.privacy.driver import PrivateDriver

from .helpers import build, keystore, people, plaintexts, scan


def _raw_blobs(driver: PrivateDriver) -> list[bytes]:
    """Everything the memory driver holds, as text (its in-process storage)."""
    inner = driver.inner
    return [repr(inner.read_all(t)).encode() for t in inner.topics()]


def _named() -> str:
    return f"memory://privacy-{uuid.uuid4().hex[:8]}"


def test_memory_holds_no_plaintext_and_reads_plaintext(tmp_path: Path) -> None:
    rows = people()
    keys = keystore(tmp_path)
    run = build("crm", keys, rows).run(_named())
    assert isinstance(run.driver, PrivateDriver)
    assert set(run.driver.inner.topics()) >= {"signups", "signups-enriched", "by-digit",
                                              "crm-by-digit-store-changelog"}
    assert scan(_raw_blobs(run.driver), plaintexts(rows)) == []
    frame = run.frame("signups-enriched").set_index("user_id")
    assert frame.loc["u7", "email"] == "secret-mail-7@example.org"
    assert frame.loc["u7", "shout"] == "SECRETNAME7 ZZYZX"          # derived: tag kept
    assert frame.loc["u7", "greeting"] == "hello Secretname7 Zzyzx"  # contains a personal value
    agg = run.frame("by-digit").groupby("key").last()
    assert "secret-mail-7@example.org" in agg.loc["7", "emails"]
    assert keys.counts() == (len(rows), 0)


def test_forget_erases_one_subject_everywhere(tmp_path: Path) -> None:
    rows = people()
    keys = keystore(tmp_path)
    url = _named()
    p = build("crm", keys, rows)
    run = p.run(url)
    assert wb.forget("u7", keys=keys) is True
    frame = run.frame("signups-enriched").set_index("user_id")
    for col in ("email", "name", "ip", "shout", "greeting"):
        assert frame.loc["u7", col] == wb.ERASED, col
    assert frame.loc["u8", "email"] == "secret-mail-8@example.org"
    assert frame.loc["u7", "amount"] == 7 * 1.5  # not personal: untouched
    agg = run.frame("by-digit").groupby("key").last()
    emails = agg.loc["7", "emails"]
    assert wb.ERASED in emails and "secret-mail-17@example.org" in emails
    assert "secret-mail-7@example.org" not in emails
    # no key material is left for u7: the store has a tombstone, one fewer key
    assert keys.counts() == (len(rows) - 1, 1)
    assert keys.is_forgotten("u7")
    # a restart restores the aggregate from its changelog: u7 stays erased, and new records
    # of u7 are never encrypted under a new key
    more = people(3, start=5, ts0=5_000)  # u5, u6, u7 again
    run2 = build("crm", keys).run(url, inputs={"signups": more})
    assert keys.counts() == (len(rows) - 1, 1)
    agg2 = run2.frame("by-digit").groupby("key").last()
    assert agg2.loc["7", "emails"].count(wb.ERASED) == 2
    assert agg2.loc["5", "n"] == 5
    assert scan(_raw_blobs(run2.driver), plaintexts(rows + more)) == []


def test_preview_shows_erased_after_forget(tmp_path: Path) -> None:
    keys = keystore(tmp_path)
    p = wb.Pipeline("pv", keys=keys)
    users = p.source("signups", key="user_id", sample=people(3),
                     personal=wb.Personal(subject="user_id", fields=["email"]))
    before = users.to_pandas().set_index("user_id")
    assert before.loc["u1", "email"] == "secret-mail-1@example.org"
    wb.forget("u1", keys=keys)
    after = users.to_pandas().set_index("user_id")
    assert after.loc["u1", "email"] == wb.ERASED
    assert after.loc["u2", "email"] == "secret-mail-2@example.org"


def test_personal_key_is_a_deterministic_pseudonym(tmp_path: Path) -> None:
    keys = keystore(tmp_path)
    p = wb.Pipeline("pk", keys=keys)
    rows = [{"email": f"k{i % 5}@example.org", "n": i, "ts": i} for i in range(20)]
    src = p.source("logins", key="email", time="ts", sample=rows, partitions=3,
                   personal=wb.Personal(subject="email", fields=["email"], key=True))
    src.group_by_key().agg(n="count").to("per-email")
    run = p.run(_named())
    raw = run.driver.inner.read_all("per-email")
    assert all(r[0].startswith(PREFIX) for r in raw)
    # the same plaintext key always gives the same stored key (compaction, upserts, joins)
    assert len({r[0] for r in raw}) == 5
    frame = run.frame("per-email")
    counts = dict(zip(frame.iloc[:, 0], frame["n"]))
    assert counts["k1@example.org"] == 4
    wb.forget("k1@example.org", keys=keys)
    keys_after = set(run.frame("per-email").iloc[:, 0])
    erased = [k for k in keys_after if k.startswith("<erased:")]
    assert len(erased) == 1 and "k2@example.org" in keys_after


def _retoken(token: str, handle: bytes | None = None, field: str | None = None) -> str:
    """The same ciphertext relabelled with another subject or field."""
    h, f, nonce, ct = parse_token(token)
    h, f = handle or h, field or f
    fb = f.encode()
    raw = bytes([TOKEN_VERSION]) + h + bytes([len(fb)]) + fb + nonce + ct
    return PREFIX + base64.b64encode(raw).decode()


def test_ciphertext_cannot_move_to_another_person_or_field(tmp_path: Path) -> None:
    keys = keystore(tmp_path)
    run = build("mv", keys, people(2)).run(_named())
    inner = run.driver.inner
    t = "signups"
    (k, v, ts, _o, h), (_k1, v1, _t1, _o1, _h1) = inner.read(t, 0, 0, 2)
    other = parse_token(v1["email"])[0]
    cases = [
        {**v, "name": _retoken(v["email"], field="name")},     # relabelled as another field
        {**v, "email": _retoken(v["email"], handle=other)},    # moved to another person
        {**v, "email": v["email"][:-4] + ("AAAA" if not v["email"].endswith("AAAA")
                                          else "BBBB")},        # edited
    ]
    for i, bad in enumerate(cases):
        inner.append(t, 0, [(k, bad, ts, None, h)])
        with pytest.raises(SerializationError):
            run.driver.read(t, 0, 2 + i, 1)


def test_name_rule_needs_a_subject(tmp_path: Path) -> None:
    keys = keystore(tmp_path)
    p = wb.Pipeline("nr", keys=keys)
    users = p.source("signups", key="user_id", sample=people(2),
                     personal=wb.Personal(subject="user_id", fields=["email"]))
    users.map(lambda v: {"email": str(v["email"]).join("<>")}).to("bad")
    with pytest.raises(ProcessingError, match="names no subject"):
        p.run(_named())


def test_definition_errors(tmp_path: Path) -> None:
    p = wb.Pipeline("d")
    with pytest.raises(DefinitionError, match="need a key store"):
        p.source("a", personal=wb.Personal(subject="id", fields=["x"]))
    q = wb.Pipeline("d", keys=keystore(tmp_path))
    with pytest.raises(DefinitionError, match="no field 'emial'"):
        q.source("a", sample=[{"id": 1, "email": "x"}],
                 personal=wb.Personal(subject="id", fields=["emial"]))
    with pytest.raises(DefinitionError, match="marks nothing"):
        wb.Personal(subject="id")
    with pytest.raises(DefinitionError, match="master key"):
        wb.KeyStore(tmp_path / "k2", master=os.urandom(16))


def test_forget_reaches_other_processes_within_ttl(tmp_path: Path) -> None:
    master = os.urandom(32)
    job = wb.KeyStore(tmp_path / "keys", master=master, ttl=0.3)
    p = wb.Pipeline("ttl", keys=job)
    p.source("signups", key="user_id", sample=people(2),
             personal=wb.Personal(subject="user_id", fields=["email"])).to("out")
    run = p.run(_named())
    assert set(run.frame("out")["email"]) == {"secret-mail-0@example.org",
                                              "secret-mail-1@example.org"}
    # another process's key store object (the CLI): this one's cache is not told
    other = wb.KeyStore(tmp_path / "keys", master=master)
    assert other.handle("u0") in job._cache  # the job holds u0's key, for at most ttl
    other.backend.forget(other.handle("u0"))  # as `workbench forget` in another process
    assert run.frame("out").set_index("user_id").loc["u0", "email"] != wb.ERASED
    time.sleep(0.35)
    assert run.frame("out").set_index("user_id").loc["u0", "email"] == wb.ERASED


def test_private_driver_forwards_the_whole_driver_contract() -> None:
    from workbench.drivers.base import Driver

    public = {n for n, v in vars(Driver).items() if callable(v) and not n.startswith("_")}
    missing = {n for n in public if n not in vars(PrivateDriver)}
    assert not missing, (f"PrivateDriver does not forward {sorted(missing)}: add them to "
                         "workbench/privacy/driver.py (protect what is written, reveal what "
                         "is read)")


def test_pipeline_without_keys_is_not_wrapped() -> None:
    p = wb.Pipeline("plain")
    p.source("a", sample=[{"x": 1}]).to("b")
    run = p.run("memory://")
    assert not isinstance(run.driver, PrivateDriver)
    assert not isinstance(connect("memory://"), PrivateDriver)


def test_windowed_aggregation_grouped_by_a_personal_field(tmp_path: Path) -> None:
    """A personal grouping column is a keyed pseudonym inside windowed keys, changelogs and
    repartition topics; after a forget the window's key reads <erased:...>."""
    keys = keystore(tmp_path)
    p = wb.Pipeline("win", keys=keys)
    rows = [{"user_id": f"u{i % 4}", "email": f"w{i % 4}@example.org", "ts": 1_000 * i}
            for i in range(24)]
    src = p.source("visits", key="user_id", time="ts", sample=rows,
                   personal=wb.Personal(subject="user_id", fields=["email"]))
    (src.group_by("email").window(wb.Tumbling("10s")).agg(n="count", name="per-email")
        .to("visits-per-email"))
    run = p.run(_named())
    inner = run.driver.inner
    stored = [t for t in inner.topics() if t != "visits"]
    assert any("repartition" in t for t in stored) and any("changelog" in t for t in stored)
    assert scan([repr(inner.read_all(t)).encode() for t in stored],
                [f"w{i}@example.org".encode() for i in range(4)]) == []
    frame = run.frame("visits-per-email")
    assert set(frame.iloc[:, 0]) == {f"w{i}@example.org" for i in range(4)}
    wb.forget("u1", keys=keys)
    after = run.frame("visits-per-email")
    erased = {k for k in after.iloc[:, 0] if k.startswith("<erased:")}
    assert len(erased) == 1 and "w2@example.org" in set(after.iloc[:, 0])
    assert len(after) == len(frame) and list(after["n"]) == list(frame["n"])
