"""The git driver: topics, state and positions in a git repository, one git commit per commit.

URLs::

    git:///abs/path/to/repo          absolute path
    git://relative/path/to/repo      relative to the current directory
    git:///repo?branch=NAME&segment_bytes=1048576&partitions=1&app=NAME&at=COMMIT&start_at=COMMIT

The repository is created (bare) when the path is missing or an empty directory; an existing
repository, bare or not, is used as it is (the driver writes only its branch and never touches a
working tree). dulwich does the git work, so no ``git`` binary is needed; the result is an
ordinary repository (``git log``, ``git diff``, ``git fsck``, ``git gc`` work on it).

Layout of a commit's tree::

    topics/<topic>/topic.json                     {"partitions": N, "kind": ..., "compact": ...}
    topics/<topic>/<partition>/<base-offset>.jsonl   one JSON object per record (below)
    positions/<app>.json                          {"app":..., "positions": {topic: {p: next}},
                                                   "metadata": {...}}

A record is one line ``{"key": K, "value": V, "timestamp": T}`` (JSON serde), with ``"window":
[start, end]`` when the key is a :class:`~workbench.windows.Windowed` (``K`` is then its group
key), ``"old": O`` when the value is a table :class:`~workbench.types.Change` (``V`` is its new
value) and ``"headers": [[name, text | {"base64": ...} | null], ...]`` when there are headers.
Keys that are JSON arrays come back as tuples (a list is never a key). Segment files are named
by the offset of their first record (20 digits, as Kafka names its segments) and roll at
``segment_bytes``; a small segment is rewritten when appended to only while the rewrite costs
at most about twice the appended bytes, so write amplification stays logarithmic.

Branches: every engine commit (:meth:`GitDriver.commit`) becomes one git commit on the branch
``workbench/<app>`` (or ``?branch=``): the sink, repartition and changelog records it appends,
the input positions and metadata. :meth:`append` (inputs outside transactions) makes one git
commit per call. Reads see the branch head only. Without ``?branch=`` or ``?app=``, the branch is
known when the engine first names its application (:meth:`assign`); ``create_topic`` and
``append`` calls before that are kept and committed then.

Time travel: :meth:`GitDriver.history` lists a branch's commits; :meth:`GitDriver.as_of` (or
``GitDriver(url, at=...)``) is a read-only view of the branch at a commit or time;
``GitDriver(url, branch="replay", start_at=commit)`` starts a new branch at an old commit, so a
changed pipeline can be replayed from there and compared.

One writer at a time: a writer holds ``<git dir>/workbench.lock`` (pid, host, start time); a
lock whose process is dead is taken over with a warning; readers never lock.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import datetime as _dt
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote

from ..errors import (
    DefinitionError,
    DriverError,
    DriverUnavailableError,
    FencedError,
    SerializationError,
)
from ..serde import _json_default
from ..types import Change
from ..windows import Windowed
from .base import Driver, OutRec, ReadRec, Transaction

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["GitCommit", "GitDriver", "parse_git_url"]

log = logging.getLogger(__name__)

#: default segment size limit (bytes of JSON lines per segment file)
DEFAULT_SEGMENT_BYTES = 1 << 20
#: zlib level of loose objects (1: ~3x faster than git's default 6, ~15% larger; `git gc`
#: recompresses)
DEFAULT_COMPRESSION = 1
FORMAT = "workbench-jsonl/1"
IDENTITY = b"workbench <workbench@localhost>"
LOCK_NAME = "workbench.lock"

_SEGMENT_RE = re.compile(r"^(\d{20})\.jsonl$")
_PARTITION_RE = re.compile(r"^(0|[1-9]\d*)$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]{4,40}$")
_TREE_MODE = 0o040000
_BLOB_MODE = 0o100644
_READ_CACHE_BYTES = 96 << 20


def _dulwich() -> Any:
    """The dulwich modules the driver uses (imported on first use)."""
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


# ------------------------------------------------------------------------------------- URLs
def parse_git_url(url: str) -> tuple[str, dict[str, str]]:
    """Split a ``git://`` URL into the repository path and its query parameters.

    >>> parse_git_url("git:///tmp/repo?branch=main")
    ('/tmp/repo', {'branch': 'main'})
    >>> parse_git_url("git://data/repo")
    ('data/repo', {})
    """
    if not url.lower().startswith("git://"):
        raise DefinitionError(f"{url!r} is not a git:// URL; use 'git:///abs/path' or "
                              "'git://relative/path'.")
    rest = url[len("git://"):]
    rest, _, query = rest.partition("?")
    if not rest:
        raise DefinitionError(f"{url!r}: no repository path; use 'git:///abs/path' or "
                              "'git://relative/path'.")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    return unquote(rest), params


_REF_BAD = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def _check_branch(name: str) -> str:
    if (not name or _REF_BAD.search(name) or name.startswith(("/", "-", ".")) or
            name.endswith(("/", ".", ".lock")) or "/." in name or name == "@"):
        raise DefinitionError(f"{name!r} is not a valid git branch name.")
    return name


def branch_for(app_id: str) -> str:
    """The default branch of an application: ``workbench/<app>`` (invalid characters → ``-``)."""
    safe = re.sub(r"[\x00-\x20\x7f~^:?*\[\\/]", "-", app_id).strip(".-") or "app"
    safe = re.sub(r"\.{2,}", ".", safe).replace("@{", "-{")
    if safe.endswith(".lock"):
        safe = safe[:-5] + "-lock"
    return f"workbench/{safe}"


def _fname(name: str) -> str:
    """A topic or app name as a tree entry name (percent-quoted where needed)."""
    return quote(name, safe="")


# ----------------------------------------------------------------------------- record format
# records are acyclic: no circular-reference bookkeeping (a cycle ends in RecursionError)
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False,
                            default=_json_default)
_enc = _encoder.encode
_loads = json.loads


def _tuplify(value: Any) -> Any:
    if type(value) is list:
        return tuple(_tuplify(v) for v in value)
    return value


def _encode_headers(headers: Any) -> list[Any]:
    out = []
    for name, value in headers:
        if value is None:
            out.append([name, None])
            continue
        if isinstance(value, str):
            value = value.encode()
        try:
            out.append([name, bytes(value).decode()])
        except UnicodeDecodeError:
            out.append([name, {"base64": base64.b64encode(bytes(value)).decode()}])
    return out


def _decode_headers(raw: Any) -> tuple[tuple[str, bytes | None], ...]:
    out: list[tuple[str, bytes | None]] = []
    for name, value in raw:
        if value is None:
            out.append((name, None))
        elif isinstance(value, dict):
            out.append((name, base64.b64decode(value["base64"])))
        else:
            out.append((name, value.encode()))
    return tuple(out)


def _record_obj(k: Any, v: Any, t: Any, h: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    if type(k) is Windowed:
        obj["key"] = k.key
        obj["window"] = [k.window_start, k.window_end]
    else:
        obj["key"] = k
    if type(v) is Change:
        obj["value"] = v.new
        obj["old"] = v.old
    else:
        obj["value"] = v
    obj["timestamp"] = t
    if h is not None:
        obj["headers"] = _encode_headers(h)
    return obj


_SEP = '},{"key":'
_SEP_NL = '}\n{"key":'


def encode_records(records: Iterable[OutRec]) -> tuple[bytes, int]:
    """Records ``(key, value, timestamp, _, headers)`` → JSON lines (bytes) and their count.

    The whole batch is encoded by one call of the C encoder as a JSON array of record
    objects, which is then cut into lines at the ``},{"key":`` between records; where a value
    holds that text too (the count tells), records are encoded one by one instead.
    """
    batch = records if isinstance(records, list) else list(records)
    n = len(batch)
    if not n:
        return b"", 0
    if n <= _ENCODE_CHUNK:
        return _encode_chunk(batch), n
    return b"".join(data for data, _n in iter_encoded(batch)), n


_ENCODE_CHUNK = 16_384


def iter_encoded(batch: list[OutRec]) -> Iterator[tuple[bytes, int]]:
    """:func:`encode_records` chunk by chunk (bounded memory for large appends)."""
    for i in range(0, len(batch), _ENCODE_CHUNK):
        chunk = batch[i:i + _ENCODE_CHUNK]
        yield _encode_chunk(chunk), len(chunk)


def _encode_chunk(batch: list[OutRec]) -> bytes:
    objs = [{"key": k, "value": v, "timestamp": t}
            if h is None and type(v) is not Change and type(k) is not Windowed
            else _record_obj(k, v, t, h)
            for k, v, t, _s, h in batch]
    text = _enc(objs)
    if text.count(_SEP) == len(objs) - 1:
        body = text[1:-1].replace(_SEP, _SEP_NL)
    else:
        body = "\n".join(map(_enc, objs))
    return (body + "\n").encode()


def _decode_one(o: Any, offset: int) -> ReadRec:
    if type(o) is not dict or "key" not in o or "value" not in o or "timestamp" not in o:
        raise ValueError("not a record object with key, value and timestamp")
    k = o["key"]
    if type(k) is list:
        k = _tuplify(k)
    w = o.get("window")
    if w is not None:
        k = Windowed(k, w[0], w[1])
    v = o["value"]
    if "old" in o:
        v = Change(v, o["old"])
    t = o["timestamp"]
    if type(t) is not int:
        raise ValueError(f"timestamp {t!r} is not an integer")
    h = o.get("headers")
    return (k, v, t, offset, None if h is None else _decode_headers(h))


def decode_lines(lines: list[bytes], first_offset: int) -> list[ReadRec]:
    """JSON lines → records ``(key, value, timestamp, offset, headers)``. Raises ``ValueError``
    (with ``.line`` = index of the bad line) on a malformed line."""
    try:
        objs = _loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        objs = None
    if objs is None or len(objs) != len(lines):
        for i, line in enumerate(lines):
            try:
                _loads(line)
            except ValueError as exc:
                err = ValueError(f"not valid JSON ({exc})")
                err.line = i  # type: ignore[attr-defined]
                raise err from None
        err = ValueError("more than one JSON value on a line")
        err.line = 0  # type: ignore[attr-defined]
        raise err
    if all(type(o) is dict and len(o) == 3 for o in objs):
        try:
            return [((k if type(k := o["key"]) is not list else _tuplify(k)), o["value"],
                     o["timestamp"], off, None)
                    for off, o in enumerate(objs, first_offset)]
        except KeyError:
            pass
    out: list[ReadRec] = []
    append = out.append
    for i, o in enumerate(objs):
        try:
            append(_decode_one(o, first_offset + i))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            err = ValueError(str(exc))
            err.line = i  # type: ignore[attr-defined]
            raise err from None
    return out


# ----------------------------------------------------------------------------- the index
class _Seg:
    """One segment file: first offset, record count, size, blob id; ``data`` (bytes) is kept
    for small segments of a writer, which may still be rewritten with appended records."""

    __slots__ = ("base", "count", "data", "nbytes", "sha")

    def __init__(self, base: int, count: int, nbytes: int, sha: bytes | None,
                 data: bytes | None = None) -> None:
        self.base = base
        self.count = count
        self.nbytes = nbytes
        self.sha = sha
        self.data = data

    @property
    def name(self) -> str:
        return f"{self.base:020d}.jsonl"


class _Part:
    """A partition: its segments in offset order and the id of its tree."""

    __slots__ = ("bases", "segs", "tree_sha")

    def __init__(self, segs: list[_Seg] | None = None, tree_sha: bytes | None = None) -> None:
        self.segs = segs or []
        self.bases = [s.base for s in self.segs]
        self.tree_sha = tree_sha

    @property
    def end(self) -> int:
        if not self.segs:
            return 0
        last = self.segs[-1]
        return last.base + last.count


@dataclass
class _Topic:
    name: str
    partitions: int
    kind: str
    compact: bool
    parts: list[_Part]
    meta_sha: bytes | None = None
    tree_sha: bytes | None = None


@dataclass
class _State:
    """What a commit holds, as the driver reads it."""

    head: bytes | None = None
    root: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)
    topics: dict[str, _Topic] = field(default_factory=dict)
    positions_tree: dict[bytes, bytes] = field(default_factory=dict)  # file name -> blob id
    positions: dict[str, dict[str, Any]] = field(default_factory=dict)  # app -> parsed doc


@dataclass(frozen=True)
class GitCommit:
    """One commit of a branch, as :meth:`GitDriver.history` lists it.

    Attributes:
        id: the commit id (40 hex digits).
        time: when it was made (UTC, millisecond precision).
        message: the first line of the commit message.
        positions: input positions of the application after the commit,
            ``{topic: {partition: next offset}}``.
        records: records appended per topic by the commit.
        kind: ``"commit"`` (an engine commit), ``"append"`` (inputs) or ``"other"``.
    """

    id: str
    time: _dt.datetime
    message: str
    positions: dict[str, dict[int, int]]
    records: dict[str, int]
    kind: str

    def __str__(self) -> str:
        return f"{self.id[:12]} {self.time.isoformat(timespec='milliseconds')} {self.message}"


class _LineCache:
    """Decoded segment lines by blob id, least recently used first out, bounded in bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self._items: OrderedDict[bytes, tuple[int, Any]] = OrderedDict()

    def get(self, sha: bytes) -> list[bytes] | None:
        item = self._items.get(sha)
        if item is None:
            return None
        self._items.move_to_end(sha)
        size, value = item
        if isinstance(value, bytes):
            value = value.split(b"\n")
            value.pop()
            grown = size + 64 * len(value)
            self._items[sha] = (grown, value)
            self.size += grown - size
        return value  # type: ignore[no-any-return]

    def put(self, sha: bytes, data: bytes | list[bytes], size: int) -> None:
        if sha in self._items:
            return
        self._items[sha] = (size, data)
        self.size += size
        while self.size > self.budget and len(self._items) > 1:
            _, (old, _v) = self._items.popitem(last=False)
            self.size -= old


# ------------------------------------------------------------------------------ the lock
def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), where /proc tells."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if fields and fields[0] in ("Z", "X"):
        return "dead"
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    now = _proc_start(pid)
    if now == "dead":
        return False
    return not (start is not None and now is not None and now != start)


class _WriterLock:
    """``<git dir>/workbench.lock``: pid, host and start time of the one writer."""

    def __init__(self, git_dir: str, url: str) -> None:
        self.path = os.path.join(git_dir, LOCK_NAME)
        self.url = url
        self.token: str | None = None
        self._finalizer: Any = None

    def _read(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        try:
            info = json.loads(text)
            if not isinstance(info, dict):
                raise ValueError
            return info
        except ValueError:
            return {"corrupt": text[:200]}

    @property
    def held(self) -> bool:
        return self.token is not None

    def acquire(self, branch: str | None) -> None:
        if self.token is not None:
            return
        token = uuid.uuid4().hex
        me: dict[str, Any] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"),
            "proc_start": _proc_start(os.getpid()),
            "branch": branch,
            "token": token,
        }
        tmp = f"{self.path}.{token}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(me, f)
        try:
            for _attempt in range(5):
                try:
                    os.link(tmp, self.path)  # atomic: creates the lock with its content or fails
                except FileExistsError:
                    other = self._read()
                    if other is None:
                        continue  # released meanwhile
                    self._take_over_or_raise(other, me)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
                    continue
                self.token = token
                self._finalizer = weakref.finalize(self, _release_lock, self.path, token)
                return
            raise DriverError(f"{self.url}: could not take the writer lock {self.path} "
                              "(other processes keep taking it).")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _take_over_or_raise(self, other: dict[str, Any], me: dict[str, Any]) -> None:
        if "corrupt" in other:
            try:
                age = time.time() - os.stat(self.path).st_mtime
            except FileNotFoundError:
                return
            if age < 10:
                raise DriverError(f"{self.url}: the writer lock {self.path} is being written "
                                  "by another process; try again.")
            warnings.warn(f"{self.url}: taking over the unreadable writer lock {self.path}.",
                          RuntimeWarning, stacklevel=5)
            return
        pid, host = other.get("pid"), other.get("host")
        if host == me["host"] and pid == me["pid"]:
            log.info("%s: taking over the writer lock from another driver of this process",
                     self.url)
            return
        if host == me["host"] and isinstance(pid, int) and not _pid_alive(
                pid, other.get("proc_start")):
            msg = (f"{self.url}: taking over a stale writer lock: process {pid} on {host} "
                   f"(since {other.get('started')}) is gone; the branch resumes at its last "
                   "commit.")
            log.warning(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=5)
            return
        where = "on this host" if host == me["host"] else f"on host {host!r}"
        raise DriverError(
            f"{self.url} is locked by another writer: process {pid} {where}, since "
            f"{other.get('started')} (branch {other.get('branch')!r}). One process writes a "
            f"repository at a time; stop that process, or delete {self.path} if it is gone.")

    def check(self) -> None:
        """Raise :class:`FencedError` unless this driver still holds the lock."""
        if self.token is None:
            return
        info = self._read()
        if info is None or info.get("token") != self.token:
            self.token = None
            if self._finalizer is not None:
                self._finalizer.detach()
            holder = "nobody" if info is None else (
                f"process {info.get('pid')} on {info.get('host')}")
            raise FencedError(f"{self.url}: this driver lost the writer lock {self.path} "
                              f"(now held by {holder}); it stops writing.")

    def release(self) -> None:
        if self.token is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        _release_lock(self.path, self.token)
        self.token = None


def _release_lock(path: str, token: str) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            info = json.loads(f.read())
        if isinstance(info, dict) and info.get("token") == token:
            os.unlink(path)
    except (OSError, ValueError):
        pass


# ------------------------------------------------------------------------------ the driver
class GitDriver(Driver):
    """Topics, state and positions in a git repository (see the module docstring).

    Args:
        url: ``git:///abs/path`` or ``git://relative/path`` (query parameters as keywords).
        branch: the branch to read and write (default ``workbench/<app>``).
        app: bind to ``workbench/<app>`` now instead of when the engine names its app.
        at: a commit id, :class:`GitCommit`, time (datetime, ISO text, epoch ms) — a read-only
            view of the branch as of then.
        start_at: a commit to start ``branch`` at when it does not exist yet (replays).
        segment_bytes: size at which segment files roll.
        partitions: partition count of topics created without one.
        fsync: fsync object files and the branch ref (durable across power loss; slower).
            Without it a commit survives the process being killed, not the machine losing
            power.
        compression: zlib level of loose objects.
        create: create the repository when the path is missing.
    """

    scheme = "git"

    def __init__(self, url: str, *, branch: str | None = None, app: str | None = None,
                 at: Any = None, start_at: Any = None, segment_bytes: int | None = None,
                 partitions: int | None = None, fsync: bool | None = None,
                 compression: int | None = None, create: bool = True) -> None:
        path, params = parse_git_url(url)
        unknown = set(params) - {"branch", "app", "at", "start_at", "segment_bytes",
                                 "partitions", "fsync", "compression"}
        if unknown:
            raise DefinitionError(f"{url!r}: unknown parameter(s) {sorted(unknown)}; known: "
                                  "branch, app, at, start_at, segment_bytes, partitions, fsync, "
                                  "compression.")
        self.url = url
        self.path = os.path.abspath(os.path.expanduser(path))
        branch = branch or params.get("branch") or None
        app = app or params.get("app") or None
        at = at if at is not None else params.get("at") or None
        start_at = start_at if start_at is not None else params.get("start_at") or None
        self.segment_bytes = int(segment_bytes or params.get("segment_bytes")
                                 or DEFAULT_SEGMENT_BYTES)
        if self.segment_bytes < 1:
            raise DefinitionError(f"{url!r}: segment_bytes must be >= 1.")
        self.default_partitions = int(partitions or params.get("partitions") or 1)
        if fsync is None:
            fsync = params.get("fsync", "0").lower() in ("1", "true", "yes")
        self.fsync = bool(fsync)
        self.compression = int(compression if compression is not None
                               else params.get("compression", DEFAULT_COMPRESSION))
        self._d = _dulwich()
        self.repo = self._open_repo(create=create and at is None)
        self.git_dir = self.repo.controldir()
        store = self.repo.object_store
        store.loose_compression_level = self.compression
        store.fsync_object_files = self.fsync
        self._lock = _WriterLock(self.git_dir, url)
        self._mutex = threading.RLock()
        self._cache = _LineCache(_READ_CACHE_BYTES)
        self._explicit_branch = _check_branch(branch) if branch else None
        self.branch: str | None = self._explicit_branch
        self.app_id: str | None = app
        self.read_only = False
        self._pinned: bytes | None = None
        self._start_at = start_at
        self._state = _State()
        self._staged: dict[str, tuple[int, str, bool]] = {}   # topics created, not committed
        self._queued: list[tuple[str, int, list[OutRec]]] = []  # appends before binding
        self._last_refresh = 0.0
        self._view_of: GitDriver | None = None
        self.commits = 0
        if self.branch is None and app is not None:
            self.branch = branch_for(app)
        if at is not None:
            self.read_only = True
            self._pinned = self._resolve(at)
            self._state = self._load(self._pinned, None)
        elif self.branch is not None:
            self._bind_branch()

    # -- opening ------------------------------------------------------------------------------
    def _open_repo(self, *, create: bool) -> Any:
        d = self._d
        path = self.path
        try:
            return d.Repo(path)
        except d.NotGitRepository_:
            pass
        except FileNotFoundError:
            pass
        if os.path.isdir(path) and os.listdir(path):
            raise DriverError(f"{self.url}: {path} exists and is neither a git repository nor "
                              "empty; point the URL at a repository or a new path.")
        if not create:
            raise DriverError(f"{self.url}: no git repository at {path}.")
        os.makedirs(path, exist_ok=True)
        log.info("creating a bare git repository at %s", path)
        return d.Repo.init_bare(path)

    @property
    def _ref(self) -> bytes:
        assert self.branch is not None
        return b"refs/heads/" + self.branch.encode()

    def _branch_head(self, branch: str | None = None) -> bytes | None:
        ref = b"refs/heads/" + (branch or self.branch or "").encode()
        try:
            return self.repo.refs[ref]  # type: ignore[no-any-return]
        except KeyError:
            return None

    def bind(self, app_id: str) -> None:
        """Name the application before anything runs: without an explicit branch, the driver
        reads and writes ``workbench/<app_id>``. Called by the engine's first app-naming call
        (:meth:`assign`, :meth:`committed`, :meth:`commit`) when nobody called it earlier."""
        with self._mutex:
            if self.app_id is None:
                self.app_id = app_id
            if self.branch is not None:
                return
            self.branch = branch_for(app_id)
            self._bind_branch()
            if self._queued:
                self._acquire()
                queued, self._queued = self._queued, []
                for topic, partition, records in queued:
                    self._append_commit(topic, partition, records)

    def _bind_branch(self) -> None:
        head = self._branch_head()
        if head is None and self._start_at is not None:
            start = self._resolve(self._start_at, branch=None)
            self._acquire()
            head = self._branch_head()
            if head is None:
                self._update_ref(None, start)
                log.info("%s: branch %s starts at %s", self.url, self.branch,
                         start.decode()[:12])
                head = start
        elif head is not None and self._start_at is not None:
            start = self._resolve(self._start_at, branch=None)
            if not self._is_ancestor(start, head):
                raise DriverError(f"{self.url}: branch {self.branch!r} exists and does not "
                                  f"descend from start_at {start.decode()[:12]}; pick a new "
                                  "branch name.")
        self._state = self._load(head, self._state if self._state.head else None)
        self._last_refresh = time.monotonic()
        if self._lock.held:
            self._load_open_tails()
        for topic, (count, _k, _c) in list(self._staged.items()):
            existing = self._state.topics.get(topic)
            if existing is None:
                continue
            if existing.partitions != count:
                raise DriverError(
                    f"{self.url}: topic {topic!r} has {existing.partitions} partitions on "
                    f"branch {self.branch!r}, but this run created it with {count} before the "
                    "branch was known; name the app in the URL (?app=NAME) so the driver reads "
                    "the branch first.")
            del self._staged[topic]

    def _is_ancestor(self, old: bytes, new: bytes) -> bool:
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

    def _acquire(self) -> None:
        if self.read_only:
            raise DriverError(f"{self.url}: this is a read-only view"
                              + (f" at {self._pinned.decode()[:12]}" if self._pinned else "")
                              + "; open the branch (without at=) to write.")
        if self._lock.held:
            return
        self._lock.acquire(self.branch)
        self._cleanup_after_crash()
        head = self._branch_head() if self.branch else None
        if self.branch is not None and head != self._state.head:
            self._state = self._load(head, self._state)
        self._load_open_tails()

    def _cleanup_after_crash(self) -> None:
        """Remove lock files a killed writer left (we hold the writer lock, so they are
        stale): dulwich writes objects and refs through ``<name>.lock`` files."""
        objects = os.path.join(self.git_dir, "objects")
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
        if self.branch is not None:
            ref_lock = os.path.join(self.git_dir, "refs", "heads", *self.branch.split("/"))
            with contextlib.suppress(OSError):
                os.unlink(ref_lock + ".lock")
                removed += 1
        if removed:
            log.warning("%s: removed %d lock files left by a crashed writer", self.url, removed)

    # -- loading a commit ---------------------------------------------------------------------
    def _where(self, path: str) -> str:
        at = self._state.head.decode()[:12] if self._state.head else "?"
        return f"{self.url}: {path} (branch {self.branch!r}, commit {at})"

    def _object(self, sha: bytes, path: str, kind: bytes) -> Any:
        try:
            obj = self.repo.object_store[sha]
        except KeyError:
            raise DriverError(f"{self._where(path)}: object {sha.decode()} is missing from the "
                              "repository.") from None
        if obj.type_name != kind:
            what = "a folder" if kind == b"tree" else "a file"
            raise DriverError(f"{self._where(path)}: expected {what}, found a "
                              f"{obj.type_name.decode()}; a foreign entry in the data folders.")
        return obj

    def _blob_data(self, sha: bytes, path: str) -> bytes:
        return self._object(sha, path, b"blob").as_raw_string()  # type: ignore[no-any-return]

    def _load(self, head: bytes | None, previous: _State | None) -> _State:
        state = _State(head=head)
        if head is None:
            return state
        try:
            commit = self.repo[head]
        except KeyError:
            raise DriverError(f"{self.url}: commit {head.decode()} is missing.") from None
        root = self._object(commit.tree, "/", b"tree")
        state.root = {e.path: (e.mode, e.sha) for e in root.items()}
        old_topics = previous.topics if previous else {}
        topics_entry = state.root.get(b"topics")
        if topics_entry is not None:
            topics_tree = self._object(topics_entry[1], "topics/", b"tree")
            for e in topics_tree.items():
                name = unquote(e.path.decode())
                if e.mode != _TREE_MODE:
                    raise DriverError(f"{self._where('topics/' + e.path.decode())}: a file "
                                      "where topic folders belong (foreign file).")
                old = old_topics.get(name)
                if old is not None and old.tree_sha == e.sha:
                    state.topics[name] = old
                else:
                    state.topics[name] = self._load_topic(name, e.sha, old)
        pos_entry = state.root.get(b"positions")
        if pos_entry is not None:
            pos_tree = self._object(pos_entry[1], "positions/", b"tree")
            for e in pos_tree.items():
                fname = e.path.decode()
                if not fname.endswith(".json") or e.mode == _TREE_MODE:
                    raise DriverError(f"{self._where('positions/' + fname)}: not a positions "
                                      "file (foreign file in the data folders).")
                state.positions_tree[e.path] = e.sha
        return state

    def _load_topic(self, name: str, tree_sha: bytes, old: _Topic | None) -> _Topic:
        folder = f"topics/{_fname(name)}"
        tree = self._object(tree_sha, folder + "/", b"tree")
        entries = {e.path.decode(): e for e in tree.items()}
        meta_e = entries.pop("topic.json", None)
        if meta_e is None:
            raise DriverError(f"{self._where(folder + '/')}: topic.json is missing (a folder "
                              "workbench did not write?).")
        raw = self._blob_data(meta_e.sha, folder + "/topic.json")
        try:
            meta = json.loads(raw)
            count = int(meta["partitions"])
            if count < 1:
                raise ValueError("partitions < 1")
        except (ValueError, KeyError, TypeError) as exc:
            raise DriverError(f"{self._where(folder + '/topic.json')}: corrupt ({exc}).") from None
        parts = [_Part() for _ in range(count)]
        for fname, e in entries.items():
            m = _PARTITION_RE.match(fname)
            if m is None or int(fname) >= count or e.mode != _TREE_MODE:
                raise DriverError(f"{self._where(folder + '/' + fname)}: unexpected entry in "
                                  f"topic {name!r} ({count} partitions): a foreign or corrupt "
                                  "file in the data folders.")
            p = int(fname)
            if old is not None and p < len(old.parts) and old.parts[p].tree_sha == e.sha:
                parts[p] = old.parts[p]
            else:
                parts[p] = self._load_part(f"{folder}/{fname}", e.sha)
        return _Topic(name, count, str(meta.get("kind", "source")), bool(meta.get("compact")),
                      parts, meta_e.sha, tree_sha)

    def _load_part(self, folder: str, tree_sha: bytes) -> _Part:
        tree = self._object(tree_sha, folder + "/", b"tree")
        found: list[tuple[int, bytes, str]] = []
        for e in tree.items():
            fname = e.path.decode()
            m = _SEGMENT_RE.match(fname)
            if m is None or e.mode == _TREE_MODE:
                raise DriverError(f"{self._where(folder + '/' + fname)}: not a segment file "
                                  "(<20-digit offset>.jsonl): a foreign or corrupt file in the "
                                  "data folders.")
            found.append((int(m.group(1)), e.sha, fname))
        found.sort()
        segs: list[_Seg] = []
        for i, (base, sha, fname) in enumerate(found):
            if i + 1 < len(found):
                count = found[i + 1][0] - base
                if count <= 0:
                    raise DriverError(f"{self._where(folder + '/' + fname)}: overlapping "
                                      "segments.")
                segs.append(_Seg(base, count, -1, sha))
            else:
                data = self._blob_data(sha, f"{folder}/{fname}")
                if data and not data.endswith(b"\n"):
                    raise DriverError(f"{self._where(folder + '/' + fname)}: corrupt segment "
                                      "(the last line is incomplete).")
                segs.append(_Seg(base, data.count(b"\n"), len(data), sha))
                self._cache.put(sha, data, len(data))
        if segs and segs[0].base != 0:
            raise DriverError(f"{self._where(folder + '/' + found[0][2])}: the first segment "
                              "must start at offset 0 (missing segments?).")
        return _Part(segs, tree_sha)

    def _load_open_tails(self) -> None:
        """A writer keeps the bytes of small tail segments, which appends may rewrite."""
        for topic in self._state.topics.values():
            for p, part in enumerate(topic.parts):
                for seg in reversed(part.segs):
                    if seg.data is not None:
                        break
                    data = self._blob_data(
                        seg.sha or b"", f"topics/{_fname(topic.name)}/{p}/{seg.name}")
                    seg.nbytes = len(data)
                    if seg.nbytes >= self.segment_bytes:
                        break
                    seg.data = data

    # -- resolving commits and times ----------------------------------------------------------
    def _resolve(self, at: Any, branch: str | None = None) -> bytes:
        """A commit id for ``at``: a :class:`GitCommit`, (abbreviated) commit id, a branch name,
        or a time (datetime, pandas Timestamp, ISO text, epoch ms) on ``branch``."""
        if isinstance(at, GitCommit):
            return at.id.encode()
        if isinstance(at, bytes):
            at = at.decode()
        if isinstance(at, str) and _HEX_RE.match(at):
            sha = self._expand_sha(at)
            if sha is not None:
                return sha
        if isinstance(at, str):
            ref = b"refs/heads/" + at.encode()
            if ref in self.repo.refs:
                return self.repo.refs[ref]  # type: ignore[no-any-return]
        when = _to_ms(at)
        if when is None:
            raise DefinitionError(f"{self.url}: cannot resolve {at!r} to a commit: give a "
                                  "commit id, a GitCommit, a branch name or a time.")
        branch = branch or self.branch
        if branch is None:
            raise DefinitionError(f"{self.url}: a time ({at!r}) needs a branch; name it "
                                  "(branch=... or app=...).")
        for c in self._walk(self._branch_head(branch)):
            if _commit_ms(c) <= when:
                return c.id  # type: ignore[no-any-return]
        raise DriverError(f"{self.url}: branch {branch!r} has no commit at or before {at!r}.")

    def _expand_sha(self, prefix: str) -> bytes | None:
        prefix = prefix.lower()
        if len(prefix) == 40:
            sha = prefix.encode()
            return sha if sha in self.repo.object_store else None
        matches = set()
        for ref in self.repo.refs.allkeys():
            if not ref.startswith(b"refs/heads/"):
                continue
            for c in self._walk(self.repo.refs[ref]):
                if c.id.decode().startswith(prefix):
                    matches.add(c.id)
        if len(matches) > 1:
            raise DefinitionError(f"{self.url}: commit id {prefix!r} is ambiguous.")
        return matches.pop() if matches else None

    def _walk(self, head: bytes | None) -> Iterator[Any]:
        while head is not None:
            c = self.repo[head]
            yield c
            head = c.parents[0] if c.parents else None

    # -- log ----------------------------------------------------------------------------------
    def _maybe_refresh(self) -> None:
        """A reader (no lock, not pinned) follows the branch head, at most every 50 ms."""
        if self._lock.held or self._pinned is not None or self.branch is None:
            return
        now = time.monotonic()
        if now - self._last_refresh < 0.05:
            return
        self._last_refresh = now
        head = self._branch_head()
        if head != self._state.head:
            self._state = self._load(head, self._state)

    def refresh(self) -> None:
        """Re-read the branch head (readers follow it automatically)."""
        with self._mutex:
            self._last_refresh = 0.0
            self._maybe_refresh()

    def partitions(self, topic: str) -> int | None:
        with self._mutex:
            self._maybe_refresh()
            t = self._state.topics.get(topic)
            if t is not None:
                return t.partitions
            staged = self._staged.get(topic)
            return None if staged is None else staged[0]

    def topics(self) -> list[str]:
        with self._mutex:
            self._maybe_refresh()
            return sorted({*self._state.topics, *self._staged})

    def create_topic(self, topic: str, partitions: int, *, kind: str = "source",
                     compact: bool = False) -> None:
        if partitions < 1:
            raise DefinitionError(f"topic {topic!r}: partitions must be >= 1, got {partitions}.")
        if not topic or "\x00" in topic:
            raise DefinitionError(f"{topic!r} is not a valid topic name.")
        with self._mutex:
            if self.read_only:
                self._acquire()  # raises
            if topic in self._state.topics or topic in self._staged:
                return
            # committed with the next commit (an append or an engine commit)
            self._staged[topic] = (partitions, kind, compact)

    def _part(self, topic: str, partition: int) -> _Part | None:
        """The committed partition (``None``: the topic is only staged)."""
        t = self._state.topics.get(topic)
        if t is None:
            staged = self._staged.get(topic)
            if staged is None:
                raise DriverError(f"topic {topic!r} does not exist on {self.url}"
                                  + (f" (branch {self.branch!r})." if self.branch else "."))
            count = staged[0]
        else:
            count = t.partitions
        if not 0 <= partition < count:
            raise DriverError(f"topic {topic!r} has {count} partitions; there is no "
                              f"partition {partition}.")
        return None if t is None else t.parts[partition]

    def _need_branch(self) -> None:
        if self.branch is None and self._pinned is None:
            raise DriverError(
                f"{self.url}: which branch? Name it in the URL (?app=NAME reads "
                "workbench/NAME, ?branch=NAME any branch), or run a pipeline on the driver first.")

    def append(self, topic: str, partition: int, records: Iterable[OutRec]) -> None:
        batch = records if isinstance(records, list) else list(records)
        with self._mutex:
            if self.read_only:
                self._acquire()  # raises
            self._part(topic, partition)
            if self.branch is None:
                self._queued.append((topic, partition, batch))
                return
            self._acquire()
            self._append_commit(topic, partition, batch)

    def _append_commit(self, topic: str, partition: int, batch: list[OutRec]) -> None:
        if not batch and not self._staged:
            return
        n = len(batch)
        msg = (f"workbench: append {n} record{'s' if n != 1 else ''} to {topic}/{partition}\n\n"
               f"Workbench-Kind: append\n"
               f"Workbench-Records: {_fmt_counts({topic: n} if n else {})}\n")
        self._commit_tree({(topic, partition): batch}, {}, msg)

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> list[ReadRec]:
        with self._mutex:
            self._maybe_refresh()
            part = self._part(topic, partition)
            if part is None or max_records <= 0 or offset >= part.end:
                return []
            if offset < 0:
                raise DriverError(f"{topic}/{partition}: negative offset {offset}.")
            end = min(part.end, offset + max_records)
            i = bisect.bisect_right(part.bases, offset) - 1
            out: list[ReadRec] = []
            pos = offset
            while pos < end:
                seg = part.segs[i]
                lines = self._lines(topic, partition, seg)
                start = pos - seg.base
                stop = min(seg.count, end - seg.base)
                chunk = lines[start:stop]
                try:
                    out.extend(decode_lines(chunk, pos))
                except ValueError as exc:
                    line = getattr(exc, "line", 0) + start + 1
                    raise DriverError(
                        f"{self._where(f'topics/{_fname(topic)}/{partition}/{seg.name}')}: "
                        f"corrupt record on line {line} (offset {seg.base + line - 1}): "
                        f"{exc}") from None
                pos = seg.base + stop
                i += 1
            return out

    def _lines(self, topic: str, partition: int, seg: _Seg) -> list[bytes]:
        assert seg.sha is not None
        lines = self._cache.get(seg.sha)
        if lines is None:
            path = f"topics/{_fname(topic)}/{partition}/{seg.name}"
            data = seg.data if seg.data is not None else self._blob_data(seg.sha, path)
            if data and not data.endswith(b"\n"):
                raise DriverError(f"{self._where(path)}: corrupt segment (the last line is "
                                  "incomplete).")
            lines = data.split(b"\n")
            lines.pop()
            if len(lines) != seg.count:
                raise DriverError(f"{self._where(path)}: corrupt segment: {len(lines)} records "
                                  f"where the next segment's offset says {seg.count}.")
            self._cache.put(seg.sha, lines, len(data) + 64 * len(lines))
        return lines

    def end_offset(self, topic: str, partition: int) -> int:
        with self._mutex:
            self._maybe_refresh()
            part = self._part(topic, partition)
            return 0 if part is None else part.end

    # -- transactions -------------------------------------------------------------------------
    def _positions_doc(self, app_id: str) -> dict[str, Any]:
        state = self._state
        doc = state.positions.get(app_id)
        if doc is None:
            fname = (_fname(app_id) + ".json").encode()
            sha = state.positions_tree.get(fname)
            if sha is None:
                doc = {"app": app_id, "positions": {}, "metadata": {}}
            else:
                path = f"positions/{fname.decode()}"
                raw = self._blob_data(sha, path)
                try:
                    doc = json.loads(raw)
                    if not isinstance(doc.get("positions"), dict):
                        raise ValueError("no 'positions' object")
                    doc.setdefault("metadata", {})
                except (ValueError, AttributeError) as exc:
                    raise DriverError(f"{self._where(path)}: corrupt positions file "
                                      f"({exc}).") from None
            state.positions[app_id] = doc
        return doc

    def committed(self, app_id: str, topic: str, partition: int) -> int:
        with self._mutex:
            if self.branch is None and self._pinned is None:
                self.bind(app_id)
            self._maybe_refresh()
            per_topic = self._positions_doc(app_id)["positions"].get(topic, {})
            return int(per_topic.get(str(partition), 0))

    def committed_metadata(self, app_id: str) -> dict[str, Any]:
        with self._mutex:
            if self.branch is None and self._pinned is None:
                self.bind(app_id)
            self._maybe_refresh()
            return dict(self._positions_doc(app_id).get("metadata", {}))

    def assign(self, app_id: str, topics: Iterable[str]) -> dict[str, list[int]]:
        """The git driver has one writer: taking the writer lock makes this process own every
        partition."""
        with self._mutex:
            if self.branch is None:
                self.bind(app_id)
            if not self.read_only:
                self._acquire()
            return super().assign(app_id, topics)

    def commit(self, txn: Transaction) -> None:
        with self._mutex:
            if self.branch is None:
                self.bind(txn.app_id)
            self._acquire()
            for (topic, partition) in txn.outputs:
                self._part(topic, partition)  # validate before changing anything
            doc = None
            if txn.positions or txn.metadata:
                old = self._positions_doc(txn.app_id)
                positions: dict[str, dict[str, int]] = {
                    t: dict(ps) for t, ps in old["positions"].items()}
                metadata: dict[str, Any] = dict(old.get("metadata", {}))
                for (topic, partition), offset in txn.positions.items():
                    positions.setdefault(topic, {})[str(partition)] = int(offset)
                metadata.update(txn.metadata)
                doc = {"app": txn.app_id, "positions": positions, "metadata": metadata}
            counts: dict[str, int] = {}
            for (topic, _p), recs in txn.outputs.items():
                counts[topic] = counts.get(topic, 0) + len(recs)
            total = sum(counts.values())
            pos_text = ", ".join(f"{t}/{p}={o}" for (t, p), o in sorted(txn.positions.items()))
            if len(txn.positions) > 6:
                head = sorted(txn.positions.items())[:6]
                pos_text = ", ".join(f"{t}/{p}={o}" for (t, p), o in head) + ", ..."
            detail = ", ".join(f"{t}: {n}" for t, n in sorted(counts.items()))
            subject = f"workbench {txn.app_id}: +{total} records"
            if detail:
                subject += f" ({detail})"
            if pos_text:
                subject += f", positions {pos_text}"
            msg = (f"{subject}\n\nWorkbench-Kind: commit\nWorkbench-App: {txn.app_id}\n"
                   f"Workbench-Records: {_fmt_counts(counts)}\n")
            self._commit_tree(txn.outputs, {txn.app_id: doc} if doc else {}, msg)

    def _encoded(self, topic: str, partition: int, records: list[OutRec]
                 ) -> Iterator[tuple[bytes, int]]:
        try:
            yield from iter_encoded(records)
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(
                f"{self.url}: cannot write a record of {topic}/{partition} as JSON: {exc}. "
                "Keys and values go through the JSON serde.") from None

    # -- writing a commit ---------------------------------------------------------------------
    def _plan_segments(self, part: _Part, data: bytes, count: int
                       ) -> tuple[list[_Seg], list[_Seg]]:
        """The partition's segments after appending ``data`` (``count`` lines), and the new
        segments (blobs to write). Segments hold up to ``segment_bytes``; a small tail segment
        is rewritten with new records only while that costs at most twice the appended bytes
        (and small neighbours merge the same way), so every byte is rewritten O(log) times."""
        limit = self.segment_bytes
        segs = list(part.segs)
        new: list[_Seg] = []
        base = part.end
        n = len(data)
        pos = 0
        if segs:
            last = segs[-1]
            if last.data is not None and last.nbytes < limit:
                cut = _cut(data, 0, limit - last.nbytes)
                if last.nbytes <= 2 * cut:
                    k = data.count(b"\n", 0, cut)
                    merged = _Seg(last.base, last.count + k, last.nbytes + cut, None,
                                  last.data + data[:cut])
                    segs[-1] = merged
                    new.append(merged)
                    base += k
                    pos = cut
        while pos < n:
            cut = _cut(data, pos, limit)
            k = data.count(b"\n", pos, cut) if (pos or cut < n) else count
            seg = _Seg(base, k, cut - pos, None, data[pos:cut] if (pos or cut < n) else data)
            segs.append(seg)
            new.append(seg)
            base += k
            pos = cut
        while len(segs) >= 2:
            a, b = segs[-2], segs[-1]
            if (a.data is None or b.data is None or a.nbytes >= limit
                    or a.nbytes + b.nbytes > limit or a.nbytes > 2 * b.nbytes):
                break
            m = _Seg(a.base, a.count + b.count, a.nbytes + b.nbytes, None, a.data + b.data)
            segs[-2:] = [m]
            new = [s for s in new if s is not a and s is not b]
            new.append(m)
        return segs, new

    def _commit_tree(self, outputs: dict[tuple[str, int], list[OutRec]],
                     docs: dict[str, dict[str, Any]], message: str) -> None:
        """Write the new objects, one commit and the branch ref (compare-and-swap). Records
        are encoded chunk by chunk and full segments written as soon as they are full, so a
        large append does not hold all of its JSON in memory."""
        d = self._d
        self._lock.check()
        state = self._state
        store = self.repo.object_store
        add = store.add_object
        limit = self.segment_bytes
        # partitions
        new_parts: dict[tuple[str, int], _Part] = {}
        written: list[_Seg] = []
        def write(seg: _Seg) -> None:
            assert seg.data is not None
            blob = d.Blob.from_string(seg.data)
            add(blob)
            seg.sha = blob.id
            written.append(seg)
            if seg.nbytes >= limit:  # full: never rewritten, the read cache may keep it
                self._cache.put(blob.id, seg.data, seg.nbytes)
                seg.data = None

        for (topic, partition), records in outputs.items():
            if not records:
                continue
            t = state.topics.get(topic)
            part = t.parts[partition] if t is not None else _Part()
            for data, count in self._encoded(topic, partition, records):
                segs, _fresh = self._plan_segments(part, data, count)
                for seg in segs:
                    if seg.sha is None and seg.nbytes >= limit:
                        write(seg)
                part = _Part(segs)
            segs = part.segs
            for seg in segs:
                if seg.sha is None:
                    write(seg)
            tree = d.Tree()
            for seg in segs:
                assert seg.sha is not None
                tree.add(seg.name.encode(), _BLOB_MODE, seg.sha)
            add(tree)
            new_parts[(topic, partition)] = _Part(segs, tree.id)
        # topics
        touched = {t for t, _p in new_parts} | set(self._staged)
        new_topics: dict[str, _Topic] = {}
        for name in touched:
            t = state.topics.get(name)
            if t is None:
                count, kind, compact = self._staged[name]
                meta = json.dumps({"partitions": count, "kind": kind, "compact": compact,
                                   "format": FORMAT}, indent=1).encode() + b"\n"
                mblob = d.Blob.from_string(meta)
                add(mblob)
                t = _Topic(name, count, kind, compact, [_Part() for _ in range(count)],
                           mblob.id, None)
            parts = [new_parts.get((name, p), part) for p, part in enumerate(t.parts)]
            tree = d.Tree()
            assert t.meta_sha is not None
            tree.add(b"topic.json", _BLOB_MODE, t.meta_sha)
            for p, part in enumerate(parts):
                if part.tree_sha is not None:
                    tree.add(str(p).encode(), _TREE_MODE, part.tree_sha)
            add(tree)
            new_topics[name] = _Topic(name, t.partitions, t.kind, t.compact, parts, t.meta_sha,
                                      tree.id)
        root = dict(state.root)
        if new_topics:
            all_topics = {**state.topics, **new_topics}
            ttree = d.Tree()
            for name, t in all_topics.items():
                assert t.tree_sha is not None
                ttree.add(_fname(name).encode(), _TREE_MODE, t.tree_sha)
            add(ttree)
            root[b"topics"] = (_TREE_MODE, ttree.id)
        pos_tree = dict(state.positions_tree)
        if docs:
            for app_id, doc in docs.items():
                blob = d.Blob.from_string(json.dumps(doc, indent=1, sort_keys=True).encode()
                                          + b"\n")
                add(blob)
                pos_tree[(_fname(app_id) + ".json").encode()] = blob.id
            ptree = d.Tree()
            for fname, sha in pos_tree.items():
                ptree.add(fname, _BLOB_MODE, sha)
            add(ptree)
            root[b"positions"] = (_TREE_MODE, ptree.id)
        rtree = d.Tree()
        for entry, (mode, sha) in root.items():
            rtree.add(entry, mode, sha)
        add(rtree)
        commit = d.Commit()
        commit.tree = rtree.id
        commit.parents = [state.head] if state.head else []
        commit.author = commit.committer = IDENTITY
        now_ms = int(time.time() * 1000)
        commit.commit_time = commit.author_time = now_ms // 1000
        commit.commit_timezone = commit.author_timezone = 0
        commit.encoding = b"UTF-8"
        commit.message = (message + f"Workbench-Time: {now_ms}\n").encode()
        add(commit)
        self._update_ref(state.head, commit.id)
        self._set_head_if_unborn()
        # apply to the in-memory index only now that the commit is in
        for seg in written:
            if seg.data is not None:
                assert seg.sha is not None
                self._cache.put(seg.sha, seg.data, seg.nbytes)
        state.topics.update(new_topics)
        state.root = root
        state.positions_tree = pos_tree
        for app_id, doc in docs.items():
            state.positions[app_id] = doc
        state.head = commit.id
        self._staged.clear()
        self.commits += 1

    def _update_ref(self, expected: bytes | None, new: bytes) -> None:
        """Move the branch from ``expected`` to ``new`` (compare-and-swap), as git does it: write
        ``<ref>.lock``, check the current value while holding it, rename it over the ref."""
        assert self.branch is not None
        path = os.path.join(self.git_dir, "refs", "heads", *self.branch.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lock = path + ".lock"
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise FencedError(f"{self.url}: {lock} exists: another process is updating branch "
                              f"{self.branch!r}; stopping without committing.") from None
        try:
            if self._branch_head() != expected:
                raise FencedError(f"{self.url}: branch {self.branch!r} moved under this writer "
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

    def _set_head_if_unborn(self) -> None:
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
            self.repo.refs.set_symbolic_ref(b"HEAD", self._ref)

    # -- time travel --------------------------------------------------------------------------
    def history(self, app: str | None = None, *, branch: str | None = None,
                limit: int | None = None) -> list[GitCommit]:
        """The commits of the branch, newest first (``git log`` order), with the positions of
        ``app`` after each. The branch: ``branch``, else this driver's branch (when it was
        named explicitly or ``app`` is not given), else ``workbench/<app>``."""
        with self._mutex:
            if branch is None:
                if self._explicit_branch is not None or app is None:
                    branch = self.branch
                if branch is None and app is not None:
                    branch = branch_for(app)
            if branch is None and self._pinned is None:
                raise DefinitionError(f"{self.url}: history() needs an app or a branch.")
            app = app or self.app_id
            head = self._pinned if (self._pinned and branch == self.branch) else \
                self._branch_head(branch)
            out: list[GitCommit] = []
            for c in self._walk(head):
                out.append(self._describe(c, app))
                if limit is not None and len(out) >= limit:
                    break
            return out

    def _describe(self, c: Any, app: str | None) -> GitCommit:
        text = c.message.decode("utf-8", errors="replace")
        subject = text.split("\n", 1)[0]
        trailers = dict(re.findall(r"^(Workbench-[A-Za-z]+): (.*)$", text, flags=re.M))
        records: dict[str, int] = {}
        for item in trailers.get("Workbench-Records", "").split():
            name, _, n = item.rpartition("=")
            if name and n.isdigit():
                records[unquote(name)] = int(n)
        ms = _commit_ms(c)
        positions: dict[str, dict[int, int]] = {}
        app = app or trailers.get("Workbench-App")
        if app is not None:
            raw = self._positions_at(c.tree, app)
            if raw is not None:
                positions = {t: {int(p): int(o) for p, o in ps.items()}
                             for t, ps in raw.get("positions", {}).items()}
        return GitCommit(
            id=c.id.decode(),
            time=_dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC),
            message=subject,
            positions=positions,
            records=records,
            kind=trailers.get("Workbench-Kind", "other"),
        )

    def _positions_at(self, tree_sha: bytes, app: str) -> dict[str, Any] | None:
        try:
            root = self.repo[tree_sha]
            _mode, ptree = root[b"positions"]
            _mode, blob = self.repo[ptree][(_fname(app) + ".json").encode()]
            doc = json.loads(self.repo[blob].as_raw_string())
            return doc if isinstance(doc, dict) else None
        except (KeyError, ValueError):
            return None

    def as_of(self, at: Any) -> GitDriver:
        """A read-only view of the branch as of ``at``: a commit id (or :class:`GitCommit`),
        or a time (datetime, pandas Timestamp, ISO text, epoch ms): the last commit at or
        before it."""
        with self._mutex:
            sha = self._resolve(at)
            view = GitDriver.__new__(GitDriver)
            view.__dict__.update(self.__dict__)
            view._lock = _WriterLock(self.git_dir, self.url)
            view._mutex = threading.RLock()
            view._cache = self._cache
            view.read_only = True
            view._pinned = sha
            view._staged = {}
            view._queued = []
            view._view_of = self
            view._state = view._load(sha, self._state)
            view.url = f"{self.url.split('?')[0]}?at={sha.decode()}"
            return view

    @property
    def head(self) -> str | None:
        """The commit this driver reads (the branch head, or the pinned commit)."""
        with self._mutex:
            self._maybe_refresh()
            return self._state.head.decode() if self._state.head else None

    def frame(self, topic: str) -> pd.DataFrame:
        """The committed records of ``topic`` as a DataFrame (as ``Run.frame`` shows them)."""
        from ..frames import records_to_frame

        return records_to_frame(self.read_all(topic))

    def table(self, topic: str, key_name: str | None = None) -> pd.DataFrame:
        """The current contents of a table's changelog topic: the last record per key,
        deletes removed (as a table's preview shows them)."""
        from ..frames import records_to_frame
        from ..preview import latest_per_key

        return records_to_frame(latest_per_key(self.read_all(topic)), key_name=key_name)

    def read_all(self, topic: str) -> list[ReadRec]:
        with self._mutex:
            self._need_branch()
            return super().read_all(topic)

    # -- housekeeping -------------------------------------------------------------------------
    def pack(self) -> None:
        """Pack loose objects (what ``git gc`` does, without delta compression)."""
        with self._mutex:
            self.repo.object_store.pack_loose_objects()

    def close(self) -> None:
        """Release the writer lock and open pack files. Idempotent; a closed driver still
        reads, and takes the lock again if it writes."""
        with self._mutex:
            if self._queued:
                warnings.warn(
                    f"{self.url}: closing with {len(self._queued)} append(s) that were never "
                    "committed because no branch was named (use ?app=NAME or ?branch=NAME).",
                    RuntimeWarning, stacklevel=2)
                self._queued = []
            self._lock.release()
            if self._view_of is None:
                with contextlib.suppress(Exception):
                    self.repo.close()

    def __repr__(self) -> str:
        where = self.branch or "?"
        if self._pinned is not None:
            where += f" @ {self._pinned.decode()[:12]}"
        return f"<GitDriver {self.path} [{where}]>"


def _cut(data: bytes, start: int, want: int) -> int:
    """The end (exclusive) of the line that reaches ``start + want`` bytes, or the end."""
    i = data.find(b"\n", start + max(want, 1) - 1)
    return len(data) if i < 0 else i + 1


def _fmt_counts(counts: dict[str, int]) -> str:
    return " ".join(f"{_fname(t)}={n}" for t, n in sorted(counts.items())) or "-"


def _commit_ms(c: Any) -> int:
    m = re.search(rb"^Workbench-Time: (\d+)$", c.message, flags=re.M)
    return int(m.group(1)) if m else int(c.commit_time) * 1000


def _to_ms(at: Any) -> int | None:
    """Epoch milliseconds of a time given as datetime, pandas Timestamp, ISO text or number."""
    if isinstance(at, bool):
        return None
    if isinstance(at, int | float):
        return int(at)
    if isinstance(at, _dt.datetime):
        if at.tzinfo is None:
            at = at.replace(tzinfo=_dt.UTC)
        return int(at.timestamp() * 1000)
    if isinstance(at, str):
        try:
            parsed = _dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            return None
        return _to_ms(parsed)
    ts = getattr(at, "to_pydatetime", None)
    if callable(ts):
        return _to_ms(ts())
    return None
