"""Issue 16 acceptance on every driver: known personal strings for many subjects are written,
the raw storage is searched (Kafka log segment files, every git object decompressed,
PostgreSQL tables read with plain SQL, the memory driver's lists) and no plaintext is found;
after a forget, no key material is left for the subject, and reads, restarts, replays and git
time travel all show ``<erased>`` for that subject only.

A non-personal canary string travels in the same records: the scan must find it, so a scan
that sees nothing (compression, a wrong directory) fails instead of passing.
"""

from __future__ import annotations

import os
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench.privacy.stores import DirectoryBackend, PostgresBackend

from .helpers import SUBJECTS, files_under, scan

pytestmark = pytest.mark.slow


@dataclass
class Target:
    """A driver under test: its URL, the raw storage reader, the key store."""

    url: str
    raw: Callable[[tuple[str, ...]], list[bytes]]
    keys: wb.KeyStore
    key_entries: Callable[[], dict[bytes, bytes]]
    key_files: Callable[[], list[bytes]]
    after_forget: Callable[[], None] = lambda: None


def _people(tag: str, n: int, start: int = 0, ts0: int = 1_000) -> list[dict[str, Any]]:
    return [{"user_id": f"u{i}", "email": f"mail-{tag}-{i}@example.org",
             "name": f"Name{tag}x{i}", "ip": f"10.{i % 200}.{tag[:2]}.{i % 7}",
             "canary": f"canary-{tag}-{i}", "amount": i * 1.5, "ts": ts0 + i}
            for i in range(start, start + n)]


def _profiles(tag: str, n: int) -> list[dict[str, Any]]:
    return [{"user_id": f"u{i}", "phone": f"+99-{tag}-{i:04d}", "ts": i} for i in range(n)]


def _secrets(rows: list[dict[str, Any]]) -> list[bytes]:
    out: list[bytes] = []
    for r in rows:
        out += [r["email"].encode(), r["name"].encode(), r["name"].upper().encode(),
                r["ip"].encode()]
        if "phone" in r:
            out.append(r["phone"].encode())
    return out


def _pipeline(app: str, prefix: str, keys: wb.KeyStore) -> wb.Pipeline:
    p = wb.Pipeline(app, keys=keys)
    users = p.source(f"{prefix}-signups", key="user_id", time="ts",
                     personal=wb.Personal(subject="user_id", fields=["email", "name", "ip"]))
    users.map(lambda v: {**v, "shout": v["name"].upper(),
                         "greeting": f"hello {v['name']}"}).to(f"{prefix}-enriched")
    (users.group_by(lambda v: v["user_id"][-1])
          .agg(emails=("email", "list"), first=("name", "first"), last=("ip", "last"),
               n="count", name="by-digit")
          .to(f"{prefix}-by-digit"))
    # a stream-table join copies a personal field of the table into the stream's records
    profiles = p.table(f"{prefix}-profiles", key="user_id", time="ts",
                       personal=wb.Personal(subject="user_id", fields=["phone"]))
    users.join(profiles, combine=lambda u, pr: {"user_id": u["user_id"],
                                                "phone_seen": pr["phone"]}
               ).to(f"{prefix}-joined")
    return p


def _dir_keys(tmp: Path) -> tuple[wb.KeyStore, Any, Any]:
    keys = wb.KeyStore(tmp / "keys", master=os.urandom(32))
    assert isinstance(keys.backend, DirectoryBackend)

    def entries() -> dict[bytes, bytes]:
        return {bytes.fromhex(f.name): f.read_bytes() for f in (tmp / "keys" / "keys").iterdir()}

    return keys, entries, lambda: files_under(tmp / "keys")


@pytest.fixture(params=["memory", "kafka", "postgres", "git"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    kind = request.param
    if kind == "memory":
        keys, entries, files = _dir_keys(tmp_path)
        url = f"memory://privacy-{uuid.uuid4().hex[:8]}"
        drv = wb.connect(url)

        def raw_memory(_names: tuple[str, ...]) -> list[bytes]:
            return [repr(drv.read_all(t)).encode() for t in drv.topics()]

        yield Target(url, raw_memory, keys, entries, files)
    elif kind == "kafka":
        info = request.getfixturevalue("kafka_service")
        keys, entries, files = _dir_keys(tmp_path)
        data = Path(info.data_dir)

        def raw_kafka(names: tuple[str, ...]) -> list[bytes]:
            """The log segment files of the test's topics (``<topic>-<partition>`` folders;
            the shared broker holds other tests' data too, far too much to read)."""
            return [b for d in data.iterdir() if d.is_dir() and d.name.startswith(names)
                    for b in files_under(d)]

        yield Target(info.url, raw_kafka, keys, entries, files)
    elif kind == "postgres":
        pg_url = request.getfixturevalue("postgres_url")
        schema = f"keys_{uuid.uuid4().hex[:8]}"
        keys = wb.KeyStore(f"{pg_url}?schema={schema}", master=os.urandom(32))
        backend = keys.backend
        assert isinstance(backend, PostgresBackend)
        import psycopg

        def raw_pg(_names: tuple[str, ...]) -> list[bytes]:
            out: list[bytes] = []
            with psycopg.connect(pg_url, autocommit=True) as conn:
                tables = conn.execute(
                    "SELECT table_schema, table_name, table_type FROM information_schema.tables "
                    "WHERE table_schema IN (%s, %s)", (f"data_{schema}", schema)).fetchall()
                # logs, views of stream sinks, and upserted table sinks are all read
                assert any(k == "BASE TABLE" and not t.startswith("_") and s != schema
                           for s, t, k in tables), tables
                for s, t, _k in tables:
                    rows = conn.execute(
                        f'SELECT t::text FROM "{s}"."{t}" AS t').fetchall()
                    out.append("\n".join(r[0] for r in rows).encode())
            return out

        def key_rows() -> dict[bytes, bytes]:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                rows = conn.execute(
                    f'SELECT handle, wrapped FROM "{schema}".workbench_keys').fetchall()
            return {bytes(h): bytes(w) for h, w in rows}

        def key_files() -> list[bytes]:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                data_dir = conn.execute("SHOW data_directory").fetchone()[0]
                conn.execute("CHECKPOINT")  # the table's pages reach its data file
            path = Path(data_dir) / backend.relation_path()
            return [path.read_bytes()]

        # one schema for every application of the test, so a replay reads the same topics
        yield Target(f"{pg_url}?schema=data_{schema}", raw_pg, keys, key_rows, key_files,
                     after_forget=backend.vacuum_full)
        keys.close()
    else:
        keys, entries, files = _dir_keys(tmp_path)
        repo = tmp_path / "repo"

        def raw_git(_names: tuple[str, ...]) -> list[bytes]:
            from dulwich.repo import Repo

            out = files_under(repo)
            r = Repo(str(repo))
            for sha in r.object_store:
                out.append(r.object_store[sha].as_raw_string())
            for path in repo.rglob("*"):  # loose objects, decompressed by hand as well
                if path.is_file() and len(path.parent.name) == 2 and \
                        path.parent.parent.name == "objects":
                    out.append(zlib.decompress(path.read_bytes()))
            return out

        # one branch for every application of the test, so a replay reads the same topics
        yield Target(f"git://{repo}?branch=privacy", raw_git, keys, entries, files)


def _by_user(frame: Any) -> Any:
    return frame.drop_duplicates("user_id", keep="last").set_index("user_id")


def test_no_plaintext_at_rest_and_forget_erases_everywhere(target: Target) -> None:
    tag = uuid.uuid4().hex[:6]
    prefix, app = f"pv{tag}", f"privacy-{tag}"
    rows = _people(tag, SUBJECTS)
    secrets = _secrets(rows) + [r["phone"].encode() for r in _profiles(tag, SUBJECTS)]
    run = _pipeline(app, prefix, target.keys).run(target.url, inputs={
        f"{prefix}-signups": rows, f"{prefix}-profiles": _profiles(tag, SUBJECTS)})
    try:
        raw = target.raw((prefix, app))
        assert scan(raw, [f"canary-{tag}-7".encode()]), "the scan must see the stored data"
        assert scan(raw, secrets) == []
        enriched = _by_user(run.frame(f"{prefix}-enriched"))
        assert enriched.loc["u7", "email"] == f"mail-{tag}-7@example.org"
        assert enriched.loc["u7", "greeting"] == f"hello Name{tag}x7"
        joined = _by_user(run.frame(f"{prefix}-joined"))
        assert joined.loc["u7", "phone_seen"] == f"+99-{tag}-0007"
        history = run.driver.history() if target.url.startswith("git") else []

        u7 = target.keys.handle("u7")
        wrapped = target.key_entries()[u7]
        assert scan(target.key_files(), [wrapped])  # the scan sees stored keys
        assert wb.forget("u7", keys=target.keys)
        target.after_forget()
        # no key material for u7 is left in the key store: no entry, and its wrapped key's
        # bytes are in no file of the store (PostgreSQL: the table's data file after VACUUM
        # FULL, see docs/privacy.md for WAL and backups)
        assert u7 not in target.key_entries()
        assert scan(target.key_files(), [wrapped]) == []
        assert target.keys.is_forgotten("u7")
        assert target.keys.counts() == (SUBJECTS - 1, 1)

        def check(r: Any) -> None:
            enriched = _by_user(r.frame(f"{prefix}-enriched"))
            for col in ("email", "name", "ip", "shout", "greeting"):
                assert enriched.loc["u7", col] == wb.ERASED, col
            assert enriched.loc["u8", "email"] == f"mail-{tag}-8@example.org"
            assert enriched.loc["u7", "canary"] == f"canary-{tag}-7"
            joined = _by_user(r.frame(f"{prefix}-joined"))
            assert joined.loc["u7", "phone_seen"] == wb.ERASED
            assert joined.loc["u8", "phone_seen"] == f"+99-{tag}-0008"
            agg = r.frame(f"{prefix}-by-digit").groupby("key").last()
            assert f"mail-{tag}-17@example.org" in agg.loc["7", "emails"]
            assert f"mail-{tag}-7@example.org" not in agg.loc["7", "emails"]

        check(run)
        # time travel: the first commit that holds the data shows the marker too
        if history:
            checked = 0
            for commit in reversed(history):  # oldest first: the first commit with outputs
                try:
                    frame = run.driver.as_of(commit).frame(f"{prefix}-enriched")
                except wb.DriverError:
                    continue
                mine = frame[frame["user_id"] == "u7"]
                if len(mine):
                    assert set(mine["email"]) == {wb.ERASED}
                    assert f"mail-{tag}-8@example.org" in set(frame["email"])
                    checked += 1
            assert checked and checked < len(history) + 1
    finally:
        run.close()

    # restart: new records of u7 and u5; state restored from the changelog keeps u7 erased,
    # and no key is made again for u7
    more = _people(tag, 3, start=5, ts0=9_000)
    run2 = _pipeline(app, prefix, target.keys).run(
        target.url, inputs={f"{prefix}-signups": more})
    try:
        assert target.keys.counts() == (SUBJECTS - 1, 1)
        agg = run2.frame(f"{prefix}-by-digit").groupby("key").last()
        assert agg.loc["7", "emails"].count(wb.ERASED) == 2
        assert agg.loc["5", "n"] == 5
        assert scan(target.raw((prefix, app)), _secrets(rows + more) + secrets) == []
    finally:
        run2.close()

    # replay: another application reads the source from the beginning
    replay = wb.Pipeline(f"{app}-replay", keys=target.keys)
    replay.source(f"{prefix}-signups", key="user_id",
                  personal=wb.Personal(subject="user_id", fields=["email", "name", "ip"])
                  ).to(f"{prefix}-replayed")
    run4 = replay.run(target.url)
    try:
        again = run4.frame(f"{prefix}-replayed")
        mine = again[again["user_id"] == "u7"]
        assert len(mine) == 2 and set(mine["email"]) == {wb.ERASED}
        assert f"mail-{tag}-8@example.org" in set(again["email"])
    finally:
        run4.close()
