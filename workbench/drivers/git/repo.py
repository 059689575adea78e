"""The repository on disk, over dulwich: opening or creating it, objects, and branch refs.

dulwich is imported on first use (``import workbench`` stays light). Refs move by
compare-and-swap as git moves them: write ``<ref>.lock``, check the current value while holding
it, rename it over the ref.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from ...errors import DefinitionError, DriverError, DriverUnavailableError, FencedError

__all__ = ["BranchMoved", "LockedRef", "Repository", "dulwich"]

log = logging.getLogger(__name__)

#: a ``<ref>.lock`` (or an object ``.lock``) older than this was left by a killed process: a
#: live one holds it for microseconds (check, write 41 bytes, rename)
STALE_LOCK_S = 5.0
#: temporary object files older than this were left by a killed process
STALE_TMP_S = 60.0
TMP_DIR = "workbench-tmp"
_tmp_names = itertools.count()


def write_failed(name: str, what: str, path: str, exc: OSError) -> DriverError:
    """A :class:`DriverError` for an operating-system error while writing ``path`` (a full
    disk, a read-only file system, a quota...), with the errno name and what to do. The
    branch is never moved past a failed write, so the repository stays consistent."""
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    hint = {
        errno.ENOSPC: "free space on that file system and run again: the job resumes at its "
                      "last commit",
        errno.EDQUOT: "raise the disk quota (or free space) and run again: the job resumes at "
                      "its last commit",
        errno.EROFS: "the file system is read-only; open the repository read-only (?at=...) "
                     "or move it",
        errno.EACCES: "this process may not write there; check the owner and mode",
    }.get(exc.errno or 0, "the branch stays at its last commit; fix the cause and run again")
    err = DriverError(f"{name}: cannot {what} {path}: {exc.strerror or exc} ({code}); "
                      f"nothing was committed: {hint}.")
    err.errno = exc.errno  # type: ignore[attr-defined]
    err.path = path  # type: ignore[attr-defined]
    return err


class BranchMoved(FencedError):
    """The branch is not where this writer last saw it: another process committed (an
    appender, or another writer). Attributes: ``branch``, ``expected`` and ``head`` (commit
    ids, or ``None``)."""

    def __init__(self, message: str, branch: str, expected: bytes | None,
                 head: bytes | None) -> None:
        super().__init__(message)
        self.branch = branch
        self.expected = expected
        self.head = head

TREE_MODE = 0o040000
BLOB_MODE = 0o100644


def dulwich() -> Any:
    """The dulwich classes the driver uses (imported on first use)."""
    try:
        from dulwich import objects, repo
        from dulwich.errors import NotGitRepository
    except ImportError:  # pragma: no cover - depends on the environment
        raise DriverUnavailableError(
            "the git driver needs dulwich: pip install 'workbench[git]'"
        ) from None

    class _D:
        Repo = repo.Repo
        Blob = objects.Blob
        Tree = objects.Tree
        Commit = objects.Commit
        NotGitRepository_ = NotGitRepository

    return _D


class Repository:
    """A git repository: objects, branch heads, history walks.

    Args:
        path: the repository (a bare repository, or a working tree with ``.git``).
        name: how messages name it (the redacted URL).
        create: create a bare repository when ``path`` is missing or an empty directory.
        fsync: fsync object files and refs.
        compression: zlib level of loose objects.
    """

    def __init__(self, path: str, name: str, *, create: bool, fsync: bool,
                 compression: int) -> None:
        self.d = dulwich()
        self.path = path
        self.name = name
        self.fsync = fsync
        self.repo = self._open(create)
        self.git_dir: str = self.repo.controldir()
        #: where objects, refs and the writer lock live (the git dir, or for a linked working
        #: tree the main repository's)
        self.common_dir: str = self.repo.commondir()
        self.tmp_dir = os.path.join(self.common_dir, TMP_DIR)
        self._bare: bool | None = None
        self.compression = compression
        store = self.repo.object_store
        store.loose_compression_level = compression
        store.fsync_object_files = fsync

    def _open(self, create: bool) -> Any:
        d, path = self.d, self.path
        try:
            return d.Repo(path)
        except d.NotGitRepository_:
            pass
        except FileNotFoundError:
            pass
        if os.path.isdir(path) and os.listdir(path):
            raise DriverError(f"{self.name}: {path} exists and is neither a git repository nor "
                              "empty; point the URL at a repository or a new path.")
        if not create:
            raise DriverError(f"{self.name}: no git repository at {path}.")
        os.makedirs(path, exist_ok=True)
        log.info("creating a bare git repository at %s", path)
        return d.Repo.init_bare(path)

    @property
    def bare(self) -> bool:
        """Whether the repository has no working tree."""
        return bool(self.repo.bare)

    # -- objects ------------------------------------------------------------------------------
    def object(self, sha: bytes, kind: bytes, where: str) -> Any:
        """The object ``sha``, which must be a ``kind`` (``b"tree"``, ``b"blob"``, ...);
        ``where`` names its place in messages."""
        try:
            obj = self.repo.object_store[sha]
        except KeyError:
            raise DriverError(f"{where}: object {sha.decode()} is missing from the "
                              "repository.") from None
        if obj.type_name != kind:
            what = "a folder" if kind == b"tree" else "a file"
            raise DriverError(f"{where}: expected {what}, found a "
                              f"{obj.type_name.decode()}; a foreign entry in the data folders.")
        return obj

    def blob(self, sha: bytes, where: str) -> bytes:
        """The contents of blob ``sha``."""
        return self.object(sha, b"blob", where).as_raw_string()  # type: ignore[no-any-return]

    def add(self, obj: Any) -> None:
        """Write a loose object: its compressed bytes go to a temporary file (in
        ``<git dir>/workbench-tmp``), which is renamed into ``objects/``. Objects are named
        by their content, so processes writing the same object at once do no harm (no lock
        files, unlike dulwich's own writer, which refuses while another one's lock exists)."""
        hexsha = obj.id.decode()
        folder = os.path.join(self.common_dir, "objects", hexsha[:2])
        path = os.path.join(folder, hexsha[2:])
        try:
            os.utime(path)  # present: freshen it (as git does, against a concurrent prune)
            return
        except FileNotFoundError:
            pass
        except PermissionError:
            return  # present, owned by someone else
        data = obj.as_legacy_object(compression_level=self.compression)
        tmp = os.path.join(self.tmp_dir, f"obj-{os.getpid()}-{next(_tmp_names)}")
        try:
            self._write_object(tmp, folder, path, data)
        except OSError as exc:
            raise write_failed(self.name, "write object", path, exc) from exc

    def _write_object(self, tmp: str, folder: str, path: str, data: bytes) -> None:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileNotFoundError:
            os.makedirs(self.tmp_dir, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.fsync:
                os.fsync(fd)
            os.close(fd)
            fd = -1
            try:
                os.replace(tmp, path)
            except FileNotFoundError:
                os.makedirs(folder, exist_ok=True)
                os.replace(tmp, path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def commit(self, sha: bytes) -> Any:
        """The commit object ``sha``."""
        try:
            return self.repo[sha]
        except KeyError:
            raise DriverError(f"{self.name}: commit {sha.decode()} is missing.") from None

    # -- refs ---------------------------------------------------------------------------------
    def head(self, branch: str | None) -> bytes | None:
        """The commit ``branch`` points at, or ``None``."""
        if not branch:
            return None
        try:
            with open(self.ref_path(branch), "rb") as f:
                text = f.read().strip()
            if len(text) == 40:
                return text
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass
        ref = b"refs/heads/" + branch.encode()
        try:
            return self.repo.refs[ref]  # type: ignore[no-any-return]
        except KeyError:
            return None

    def head_token(self, branch: str) -> tuple[int, ...]:
        """Changes whenever ``branch`` may have moved: the inode, mtime and size of its loose
        ref file and of ``packed-refs`` (two stats, no reads)."""
        token: list[int] = []
        for path in (self.ref_path(branch), os.path.join(self.common_dir, "packed-refs")):
            try:
                st = os.stat(path)
            except OSError:
                token += (0, 0, 0)
                continue
            token += (st.st_ino, st.st_mtime_ns, st.st_size)
        return tuple(token)

    def has_branch(self, branch: str) -> bool:
        """Whether ``refs/heads/<branch>`` exists."""
        return (b"refs/heads/" + branch.encode()) in self.repo.refs

    def ref_path(self, branch: str) -> str:
        """The loose ref file of ``branch`` (refs live in the common git dir)."""
        return os.path.join(self.common_dir, "refs", "heads", *branch.split("/"))

    def checked_out(self, branch: str) -> str | None:
        """The working tree in which ``branch`` is checked out (its ``HEAD`` names it, born or
        not), or ``None``. The main working tree counts unless the repository is bare; linked
        working trees (``git worktree add``) always count."""
        want = b"ref: refs/heads/" + branch.encode()
        common = self.common_dir
        if not self._is_bare_config() and _head_names(os.path.join(common, "HEAD"), want):
            return self._main_worktree(common)
        linked = os.path.join(common, "worktrees")
        try:
            names = sorted(os.listdir(linked))
        except OSError:
            return None
        for name in names:
            admin = os.path.join(linked, name)
            if _head_names(os.path.join(admin, "HEAD"), want):
                try:
                    with open(os.path.join(admin, "gitdir"), encoding="utf-8") as f:
                        return os.path.dirname(f.read().strip())
                except OSError:
                    return admin
        return None

    def _is_bare_config(self) -> bool:
        if self._bare is None:  # read once: repositories do not change bareness while open
            try:
                config = self.repo.get_config()
                self._bare = bool(config.get_boolean(b"core", b"bare", self.repo.bare))
            except (KeyError, ValueError, OSError):
                self._bare = bool(self.repo.bare)
        return self._bare

    def _main_worktree(self, common: str) -> str:
        with contextlib.suppress(KeyError, OSError, ValueError):
            configured = self.repo.get_config().get(b"core", b"worktree")
            if configured:
                return os.path.normpath(os.path.join(common, configured.decode()))
        if os.path.basename(os.path.normpath(common)) == ".git":
            return os.path.dirname(os.path.normpath(common))
        return common

    def refuse_checked_out(self, branch: str) -> None:
        """Raise :class:`DriverError` when ``branch`` is checked out in a working tree:
        committing to it would leave that tree's index and files behind the branch, and the
        next ``git commit -a`` there would delete the data."""
        where = self.checked_out(branch)
        if where is not None:
            raise DriverError(
                f"{self.name}: branch {branch!r} is checked out in {where}; committing to it "
                "would leave that working tree's index and files behind the branch (a later "
                "`git commit -a` there would delete the data). Write another branch (the "
                "default is workbench/<app>; ?branch=NAME picks one), or switch that working "
                f"tree to another branch (git -C {where} switch <other>).")

    def lock_ref(self, branch: str) -> LockedRef:
        """Take ``<ref>.lock`` of ``branch`` (as git does): while it is held nobody else moves
        the branch. A lock held by another process is waited for; one older than
        ``STALE_LOCK_S`` was left by a killed process and is removed (a holder that works
        longer calls :meth:`LockedRef.touch`). A branch checked out in a working tree is
        refused (:meth:`refuse_checked_out`). Use it as a context manager; :meth:`LockedRef.set`
        moves the branch, leaving the block without it releases the lock unchanged."""
        self.refuse_checked_out(branch)
        lock = self.ref_path(branch) + ".lock"
        try:
            fd = self._take_ref_lock(branch, lock)
        except OSError as exc:
            raise write_failed(self.name, "lock branch ref", lock, exc) from exc
        return LockedRef(self, branch, lock, fd)

    def update_ref(self, branch: str, expected: bytes | None, new: bytes) -> None:
        """Move ``branch`` from ``expected`` to ``new`` (compare-and-swap under the ref lock);
        :class:`BranchMoved` when the branch is not at ``expected``."""
        with self.lock_ref(branch) as ref:
            if ref.head != expected:
                raise BranchMoved(
                    f"{self.name}: branch {branch!r} moved under this writer (now at "
                    f"{ref.head.decode()[:12] if ref.head else 'nothing'}, expected "
                    f"{expected.decode()[:12] if expected else 'nothing'}).",
                    branch, expected, ref.head)
            ref.set(new)

    def _take_ref_lock(self, branch: str, lock: str) -> int:
        os.makedirs(os.path.dirname(lock), exist_ok=True)
        delay = 0.0005
        while True:
            try:
                return os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pass
            try:
                age = time.time() - os.stat(lock).st_mtime
            except FileNotFoundError:
                continue  # released meanwhile
            if age > STALE_LOCK_S:
                log.warning("%s: removing %s, left %.0f s ago by a process that died while "
                            "moving branch %r", self.name, lock, age, branch)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock)
                continue
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def set_head_if_unborn(self, branch: str) -> None:
        """A repository this driver created points HEAD at its first branch, so a plain
        ``git log`` in it shows something."""
        try:
            self.repo.refs[b"HEAD"]
            return
        except KeyError:
            pass
        if not self.repo.bare:
            return
        with contextlib.suppress(Exception):
            self.repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/" + branch.encode())

    def cleanup_after_crash(self, branch: str | None) -> int:
        """Remove what killed processes left: temporary object files older than
        ``STALE_TMP_S``, ``.lock`` files in ``objects/`` (dulwich's own object writer) and the
        branch's ``<ref>.lock`` older than ``STALE_LOCK_S`` (younger ones may belong to a live
        appender). The caller holds the writer lock. Returns how many files were removed."""
        now = time.time()
        removed = 0

        def remove_if_old(path: str, age: float) -> None:
            nonlocal removed
            with contextlib.suppress(OSError):
                if now - os.stat(path).st_mtime > age:
                    os.unlink(path)
                    removed += 1

        with contextlib.suppress(OSError):
            for name in os.listdir(self.tmp_dir):
                remove_if_old(os.path.join(self.tmp_dir, name), STALE_TMP_S)
        objects = os.path.join(self.common_dir, "objects")
        with contextlib.suppress(OSError):
            for sub in os.listdir(objects):
                if len(sub) != 2:
                    continue
                folder = os.path.join(objects, sub)
                with contextlib.suppress(OSError):
                    for name in os.listdir(folder):
                        if name.endswith(".lock"):
                            remove_if_old(os.path.join(folder, name), STALE_LOCK_S)
        pack_dir = os.path.join(objects, "pack")
        with contextlib.suppress(OSError):
            names = set(os.listdir(pack_dir))
            for name in names:
                path = os.path.join(pack_dir, name)
                if name.startswith("tmp_") or name.endswith(".lock"):
                    remove_if_old(path, STALE_TMP_S)  # git's or dulwich's unfinished packs
                elif name.endswith(".pack") and name[:-5] + ".idx" not in names:
                    remove_if_old(path, STALE_LOCK_S)  # a packer died before the index
        if branch is not None:
            remove_if_old(self.ref_path(branch) + ".lock", STALE_LOCK_S)
        return removed

    # -- history ------------------------------------------------------------------------------
    def walk(self, head: bytes | None) -> Iterator[Any]:
        """Commits from ``head`` along first parents, newest first."""
        while head is not None:
            c = self.repo[head]
            yield c
            head = c.parents[0] if c.parents else None

    def is_ancestor(self, old: bytes, new: bytes) -> bool:
        """Whether commit ``old`` is ``new`` or one of its ancestors."""
        todo = [new]
        visited: set[bytes] = set()
        while todo:
            c = todo.pop()
            if c == old:
                return True
            if c in visited:
                continue
            visited.add(c)
            todo.extend(self.repo[c].parents)
        return False

    def expand_sha(self, prefix: str) -> bytes | None:
        """The commit whose id starts with ``prefix`` (among the branches' history)."""
        prefix = prefix.lower()
        if len(prefix) == 40:
            sha = prefix.encode()
            return sha if sha in self.repo.object_store else None
        matches = set()
        for ref in self.repo.refs.allkeys():
            if not ref.startswith(b"refs/heads/"):
                continue
            for c in self.walk(self.repo.refs[ref]):
                if c.id.decode().startswith(prefix):
                    matches.add(c.id)
        if len(matches) > 1:
            raise DefinitionError(f"{self.name}: commit id {prefix!r} is ambiguous.")
        return matches.pop() if matches else None

    # -- housekeeping -------------------------------------------------------------------------
    def pack(self) -> int:
        """Pack the loose objects (what ``git gc`` does, without delta compression); returns
        how many were packed.

        As git does it, and safe to kill at any point: the pack and its index are written to
        temporary files outside ``objects/``, then renamed into ``objects/pack/`` (pack, then
        index: readers use a pack only once its index is there), and only then are the loose
        copies deleted. Objects added meanwhile stay loose."""
        from dulwich.pack import write_pack

        store = self.repo.object_store
        objects_dir = os.path.join(self.common_dir, "objects")
        loose: list[tuple[str, Any]] = []
        for sub in sorted(os.listdir(objects_dir)):
            if len(sub) != 2 or not _is_hex(sub):
                continue
            folder = os.path.join(objects_dir, sub)
            for name in os.listdir(folder):
                if len(name) == 38 and _is_hex(name):
                    with contextlib.suppress(KeyError, FileNotFoundError):
                        loose.append((os.path.join(folder, name),
                                      store[(sub + name).encode()]))
        if not loose:
            return 0
        os.makedirs(self.tmp_dir, exist_ok=True)
        tmp = os.path.join(self.tmp_dir, f"pack-{os.getpid()}-{next(_tmp_names)}")
        pack_dir = os.path.join(objects_dir, "pack")
        try:
            data_sum, _idx_sum = write_pack(tmp, [obj for _p, obj in loose],
                                            object_format=store.object_format,
                                            compression_level=self.compression)
            os.makedirs(pack_dir, exist_ok=True)
            base = os.path.join(pack_dir, f"pack-{data_sum.hex()}")
            for ext in (".pack", ".idx"):
                if self.fsync:
                    with open(tmp + ext, "rb") as f:
                        os.fsync(f.fileno())
                os.chmod(tmp + ext, 0o444)
                os.utime(tmp + ext)  # fresh: the cleanup spares a new pack awaiting its index
                os.replace(tmp + ext, base + ext)
        except OSError as exc:
            for ext in (".pack", ".idx"):
                with contextlib.suppress(OSError):
                    os.unlink(tmp + ext)
            raise write_failed(self.name, "write pack", pack_dir, exc) from exc
        for path, _obj in loose:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        for folder in {os.path.dirname(path) for path, _obj in loose}:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only when empty
        return len(loose)

    def close(self) -> None:
        """Close open pack files."""
        with contextlib.suppress(Exception):
            self.repo.close()


class LockedRef:
    """A branch whose ``<ref>.lock`` this process holds (see :meth:`Repository.lock_ref`).

    Attributes:
        head: the commit the branch points at (read under the lock), or ``None``.
    """

    def __init__(self, repo: Repository, branch: str, lock: str, fd: int) -> None:
        self.repo = repo
        self.branch = branch
        self.lock = lock
        self.fd = fd
        self.head = repo.head(branch)

    def touch(self) -> None:
        """Tell waiting processes that the lock is alive (a holder working for seconds)."""
        with contextlib.suppress(OSError):
            os.utime(self.lock)

    def set(self, new: bytes) -> None:
        """Point the branch at ``new`` and release the lock (rename it over the ref)."""
        try:
            if os.write(self.fd, new + b"\n") != len(new) + 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if self.repo.fsync:
                os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
            os.replace(self.lock, self.repo.ref_path(self.branch))
        except OSError as exc:
            self.release()
            raise write_failed(self.repo.name, "write branch ref", self.lock, exc) from exc
        self.head = new

    def release(self) -> None:
        """Give the lock up without moving the branch (idempotent)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lock)

    def __enter__(self) -> LockedRef:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _head_names(path: str, want: bytes) -> bool:
    """Whether the HEAD file at ``path`` is the symbolic ref ``want``."""
    try:
        with open(path, "rb") as f:
            return f.read().strip() == want
    except OSError:
        return False


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
