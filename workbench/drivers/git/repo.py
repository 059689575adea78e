"""The repository on disk, over dulwich: opening or creating it, objects, and branch refs.

dulwich is imported on first use (``import workbench`` stays light). Refs move by
compare-and-swap as git moves them: write ``<ref>.lock``, check the current value while holding
it, rename it over the ref.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from ...errors import DefinitionError, DriverError, DriverUnavailableError, FencedError

__all__ = ["Repository", "dulwich"]

log = logging.getLogger(__name__)

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
        """Write an object (through a lock file renamed into place, by dulwich)."""
        self.repo.object_store.add_object(obj)

    def commit(self, sha: bytes) -> Any:
        """The commit object ``sha``."""
        try:
            return self.repo[sha]
        except KeyError:
            raise DriverError(f"{self.name}: commit {sha.decode()} is missing.") from None

    # -- refs ---------------------------------------------------------------------------------
    def head(self, branch: str | None) -> bytes | None:
        """The commit ``branch`` points at, or ``None``."""
        ref = b"refs/heads/" + (branch or "").encode()
        try:
            return self.repo.refs[ref]  # type: ignore[no-any-return]
        except KeyError:
            return None

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
        try:
            config = self.repo.get_config()
            return bool(config.get_boolean(b"core", b"bare", self.repo.bare))
        except (KeyError, ValueError, OSError):
            return bool(self.repo.bare)

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

    def update_ref(self, branch: str, expected: bytes | None, new: bytes) -> None:
        """Move ``branch`` from ``expected`` to ``new`` (compare-and-swap), as git does it: write
        ``<ref>.lock``, check the current value while holding it, rename it over the ref.
        A branch checked out in a working tree is refused (:meth:`refuse_checked_out`)."""
        self.refuse_checked_out(branch)
        path = self.ref_path(branch)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lock = path + ".lock"
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise FencedError(f"{self.name}: {lock} exists: another process is updating branch "
                              f"{branch!r}; stopping without committing.") from None
        try:
            if self.head(branch) != expected:
                raise FencedError(f"{self.name}: branch {branch!r} moved under this writer "
                                  "(another process wrote it); stopping without committing.")
            os.write(fd, new + b"\n")
            if self.fsync:
                os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(lock, path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
            raise

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
        """Remove lock files a killed writer left (the caller holds the writer lock, so they
        are stale): dulwich writes objects and refs through ``<name>.lock`` files. Returns how
        many were removed."""
        objects = os.path.join(self.common_dir, "objects")
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for sub in os.listdir(objects):
                if len(sub) != 2:
                    continue
                d = os.path.join(objects, sub)
                with contextlib.suppress(OSError):
                    for name in os.listdir(d):
                        if name.endswith(".lock"):
                            with contextlib.suppress(OSError):
                                os.unlink(os.path.join(d, name))
                                removed += 1
        if branch is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.ref_path(branch) + ".lock")
                removed += 1
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
    def pack(self) -> None:
        """Pack loose objects (what ``git gc`` does, without delta compression)."""
        self.repo.object_store.pack_loose_objects()

    def close(self) -> None:
        """Close open pack files."""
        with contextlib.suppress(Exception):
            self.repo.close()


def _head_names(path: str, want: bytes) -> bool:
    """Whether the HEAD file at ``path`` is the symbolic ref ``want``."""
    try:
        with open(path, "rb") as f:
            return f.read().strip() == want
    except OSError:
        return False
