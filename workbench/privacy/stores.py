"""Where wrapped data keys live: a local directory, or a PostgreSQL table.

A backend keeps, per subject handle (16 bytes, see :mod:`workbench.privacy.keystore`), either
a **wrapped data key** or a **tombstone** (the subject was forgotten: no key, and none is ever
made again). It knows nothing of master keys or subjects' ids.

* :class:`DirectoryBackend` — one file per subject (``keys/<hex handle>``), written to a
  temporary file, fsynced, then linked into place (first writer wins) and the directory
  fsynced; a forget writes ``forgotten/<hex handle>`` (fsynced), unlinks the key file and
  fsyncs the directory.
* :class:`PostgresBackend` — tables ``workbench_keys(handle, wrapped, created_at)`` and
  ``workbench_forgotten(handle, forgotten_at)``; a forget is one committed transaction that
  DELETEs the key row and INSERTs the tombstone. Creation and forget of one handle are
  serialized by a transaction-scoped advisory lock, so a key made concurrently with a forget
  never survives it.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._urls import redact_text, redact_url
from ..errors import DefinitionError, DriverUnavailableError

__all__ = ["FORGOTTEN", "DirectoryBackend", "KeyBackend", "PostgresBackend", "open_backend"]


class _Forgotten:
    __slots__ = ()

    def __repr__(self) -> str:
        return "FORGOTTEN"


#: what a backend returns for a forgotten subject (a tombstone: no key)
FORGOTTEN: Any = _Forgotten()


class KeyBackend(Protocol):
    """Storage of wrapped data keys and tombstones, by handle."""

    url: str

    def get_many(self, handles: Iterable[bytes]) -> dict[bytes, Any]:
        """``{handle: wrapped key bytes | FORGOTTEN}`` for the handles known (others absent)."""
        ...

    def create_many(self, wrapped: dict[bytes, bytes]) -> dict[bytes, Any]:
        """Store keys for handles that have neither key nor tombstone, durably; return, for
        every handle asked, the key that is stored now (this one or an earlier writer's) or
        ``FORGOTTEN``."""
        ...

    def forget(self, handle: bytes) -> bool:
        """Delete the handle's key (durably) and leave a tombstone; True if a key existed."""
        ...

    def counts(self) -> tuple[int, int]:
        """``(keys, tombstones)``."""
        ...

    def tombstones(self) -> list[bytes]:
        """Every forgotten handle (asked once per key cache lifetime by a running job whose
        steps leave personal fields encrypted, see :mod:`workbench.privacy.lazy`)."""
        ...

    def close(self) -> None: ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryBackend:
    """Keys as files in a local directory (see the module docstring).

    Args:
        path: the directory (created if missing, mode 0700).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)
        self.url = f"file://{self.root.resolve()}"
        self.keys = self.root / "keys"
        self.gone = self.root / "forgotten"
        self.tmp = self.root / "tmp"
        for d in (self.root, self.keys, self.gone, self.tmp):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _name(self, handle: bytes) -> str:
        return handle.hex()

    def get_many(self, handles: Iterable[bytes]) -> dict[bytes, Any]:
        out: dict[bytes, Any] = {}
        for h in handles:
            name = self._name(h)
            if (self.gone / name).exists():
                out[h] = FORGOTTEN
                continue
            with contextlib.suppress(FileNotFoundError):
                out[h] = (self.keys / name).read_bytes()
        return out

    def create_many(self, wrapped: dict[bytes, bytes]) -> dict[bytes, Any]:
        out: dict[bytes, Any] = {}
        written: list[tuple[bytes, Path]] = []
        with self._lock:
            for h, blob in wrapped.items():
                name = self._name(h)
                if (self.gone / name).exists():
                    out[h] = FORGOTTEN
                    continue
                tmp = self.tmp / f"{name}.{os.getpid()}.{threading.get_ident()}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, blob)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                written.append((h, tmp))
            for h, tmp in written:
                final = self.keys / self._name(h)
                with contextlib.suppress(FileExistsError):  # another writer was first
                    os.link(tmp, final)
                os.unlink(tmp)
            if written:
                _fsync_dir(self.keys)
            for h, _tmp in written:
                name = self._name(h)
                if (self.gone / name).exists():  # forgotten while we wrote: never keep it
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.keys / name)
                    _fsync_dir(self.keys)
                    out[h] = FORGOTTEN
                else:
                    out[h] = (self.keys / name).read_bytes()
        return out

    def forget(self, handle: bytes) -> bool:
        name = self._name(handle)
        with self._lock:
            fd = os.open(self.gone / name, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(self.gone)
            try:
                os.unlink(self.keys / name)
                existed = True
            except FileNotFoundError:
                existed = False
            _fsync_dir(self.keys)
        return existed

    def counts(self) -> tuple[int, int]:
        return len(os.listdir(self.keys)), len(os.listdir(self.gone))

    def tombstones(self) -> list[bytes]:
        out = []
        for name in os.listdir(self.gone):
            with contextlib.suppress(ValueError):
                out.append(bytes.fromhex(name))
        return out

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<DirectoryBackend {self.root}>"


class PostgresBackend:
    """Keys in PostgreSQL tables (see the module docstring).

    Args:
        url: ``postgresql://user@host:port/db``; ``?schema=NAME`` picks the schema of the two
            tables (default ``public``).
    """

    def __init__(self, url: str) -> None:
        try:
            import psycopg
            from psycopg import sql
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise DriverUnavailableError(
                "a PostgreSQL key store needs psycopg 3: pip install 'workbench[postgres]'."
            ) from exc
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", "public")
        self.url = redact_url(url)
        self._dsn = urlunsplit(parts._replace(query=urlencode(query)))
        self._pg = psycopg
        self._sql = sql
        self._lock = threading.Lock()
        s = sql.Identifier(schema)
        self._keys = sql.SQL("{}.workbench_keys").format(s)
        self._gone = sql.SQL("{}.workbench_forgotten").format(s)
        try:
            self._conn = psycopg.connect(self._dsn, autocommit=True)
        except psycopg.Error as exc:
            raise DriverUnavailableError(
                f"key store {self.url}: cannot connect: {redact_text(str(exc))}") from None
        with self._conn.transaction():
            self._conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
            self._conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (handle bytea PRIMARY KEY, wrapped bytea NOT "
                "NULL, created_at timestamptz NOT NULL DEFAULT now())").format(self._keys))
            self._conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (handle bytea PRIMARY KEY, forgotten_at "
                "timestamptz NOT NULL DEFAULT now())").format(self._gone))

    def _lock_handles(self, cur: Any, handles: list[bytes]) -> None:
        ids = sorted({int.from_bytes(h[:8], "big", signed=True) for h in handles})
        cur.execute("SELECT pg_advisory_xact_lock(x) FROM unnest(%s::bigint[]) AS x", (ids,))

    def get_many(self, handles: Iterable[bytes]) -> dict[bytes, Any]:
        hs = list(handles)
        if not hs:
            return {}
        out: dict[bytes, Any] = {}
        with self._lock, self._conn.cursor() as cur:
            cur.execute(self._sql.SQL("SELECT handle, wrapped FROM {} WHERE handle = ANY(%s)")
                        .format(self._keys), (hs,))
            for h, w in cur.fetchall():
                out[bytes(h)] = bytes(w)
            cur.execute(self._sql.SQL("SELECT handle FROM {} WHERE handle = ANY(%s)")
                        .format(self._gone), (hs,))
            for (h,) in cur.fetchall():
                out[bytes(h)] = FORGOTTEN
        return out

    def create_many(self, wrapped: dict[bytes, bytes]) -> dict[bytes, Any]:
        if not wrapped:
            return {}
        hs = list(wrapped)
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            self._lock_handles(cur, hs)
            cur.execute(self._sql.SQL("SELECT handle FROM {} WHERE handle = ANY(%s)")
                        .format(self._gone), (hs,))
            gone = {bytes(h) for (h,) in cur.fetchall()}
            new = [(h, wrapped[h]) for h in hs if h not in gone]
            if new:
                cur.executemany(self._sql.SQL(
                    "INSERT INTO {} (handle, wrapped) VALUES (%s, %s) ON CONFLICT (handle) "
                    "DO NOTHING").format(self._keys), new)
            cur.execute(self._sql.SQL("SELECT handle, wrapped FROM {} WHERE handle = ANY(%s)")
                        .format(self._keys), (hs,))
            out: dict[bytes, Any] = {bytes(h): bytes(w) for h, w in cur.fetchall()}
        for h in gone:
            out[h] = FORGOTTEN
        return out

    def forget(self, handle: bytes) -> bool:
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            self._lock_handles(cur, [handle])
            cur.execute(self._sql.SQL("DELETE FROM {} WHERE handle = %s").format(self._keys),
                        (handle,))
            existed = cur.rowcount > 0
            cur.execute(self._sql.SQL(
                "INSERT INTO {} (handle) VALUES (%s) ON CONFLICT (handle) DO NOTHING")
                .format(self._gone), (handle,))
        return existed

    def vacuum_full(self, timeout: float = 60.0) -> int:
        """``VACUUM FULL`` the key table: rewrite it so deleted keys' bytes leave its data
        file (see docs/privacy.md: the WAL and backups still hold them).

        A deleted row is copied into the new file as long as a transaction of the database
        that began before the delete is still open (PostgreSQL's xmin horizon): the vacuum is
        repeated, with growing pauses, until the server reports no such row or ``timeout``
        seconds have passed. Returns the number of deleted rows still kept (0: none; -1: the
        server's report could not be read, e.g. messages in another language)."""
        pattern = re.compile(r"(\d+) dead row versions cannot be removed yet")
        deadline = time.monotonic() + timeout
        pause = 0.1
        while True:
            notes: list[str] = []

            def handler(diag: Any, notes: list[str] = notes) -> None:
                notes.append(diag.message_detail or "")

            with self._lock:
                self._conn.add_notice_handler(handler)
                try:
                    self._conn.execute(self._sql.SQL("VACUUM (FULL, VERBOSE) {}").format(
                        self._keys))
                finally:
                    self._conn.remove_notice_handler(handler)
            found = [int(m.group(1)) for n in notes for m in [pattern.search(n)] if m]
            if not found:
                return -1
            kept = max(found)
            if kept == 0 or time.monotonic() + pause > deadline:
                return kept
            time.sleep(pause)
            pause = min(pause * 2, 5.0)

    def relation_path(self) -> str:
        """The key table's data file, relative to the server's data directory."""
        with self._lock:
            row = self._conn.execute(self._sql.SQL("SELECT pg_relation_filepath(%s)"),
                                     (self._keys.as_string(self._conn),)).fetchone()
        return str(row[0]) if row else ""

    def counts(self) -> tuple[int, int]:
        with self._lock:
            k = self._conn.execute(self._sql.SQL("SELECT count(*) FROM {}")
                                   .format(self._keys)).fetchone()
            g = self._conn.execute(self._sql.SQL("SELECT count(*) FROM {}")
                                   .format(self._gone)).fetchone()
        return int(k[0] if k else 0), int(g[0] if g else 0)

    def tombstones(self) -> list[bytes]:
        with self._lock:
            rows = self._conn.execute(self._sql.SQL("SELECT handle FROM {}")
                                      .format(self._gone)).fetchall()
        return [bytes(h) for (h,) in rows]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()

    def __repr__(self) -> str:
        return f"<PostgresBackend {self.url}>"


def open_backend(where: str | os.PathLike[str]) -> KeyBackend:
    """A backend for ``postgresql://...``, ``file:///dir`` or a directory path."""
    text = os.fspath(where)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresBackend(text)
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        raise DefinitionError(f"key store {redact_url(text)!r}: use postgresql://..., "
                              "file:///DIR or a directory path.")
    return DirectoryBackend(text)
