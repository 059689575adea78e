"""The git driver: the driver contract over a repository (see the package docstring)."""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..._urls import redact_url
from ...errors import DefinitionError, DriverError, FencedError, SerializationError
from ..base import Driver, OutRec, ReadRec, Transaction
from .codec import HeaderError, decode_lines, iter_encoded
from .commit import Prepared, append_message, commit_message, finish_commit, prepare_part
from .history import describe_kind, resolve
from .lock import WriterLock
from .options import GitOptions, branch_for
from .repo import BranchMoved, Repository
from .segments import LineCache, Part, Seg
from .travel import TimeTravel
from .tree import State, TreeReader, entry_name
from .watch import BranchWatch

__all__ = ["GitDriver"]

log = logging.getLogger(__name__)

_READ_CACHE_BYTES = 96 << 20
#: the driver checks whether its branch moved at most this often (a stat of the ref file)
REFRESH_S = 0.01



class GitDriver(TimeTravel, Driver):
    """Topics, state and positions in a git repository (see the package docstring).

    Args:
        url: ``git:///abs/path`` or ``git://./relative/path`` (query parameters as keywords).
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
        lock_lease: seconds after which a writer lock held by a process on another host, and
            not renewed by it, is taken over (default 60).
        create: create the repository when the path is missing.
    """

    scheme = "git"

    def __init__(self, url: str, *, branch: str | None = None, app: str | None = None,
                 at: Any = None, start_at: Any = None, segment_bytes: int | None = None,
                 partitions: int | None = None, fsync: bool | None = None,
                 compression: int | None = None, lock_lease: float | None = None,
                 create: bool = True) -> None:
        opts = GitOptions.parse(url, branch=branch, app=app, at=at, start_at=start_at,
                                segment_bytes=segment_bytes, partitions=partitions,
                                fsync=fsync, compression=compression, lock_lease=lock_lease)
        self.url = url
        #: the URL as messages and the repr show it (secrets redacted)
        self.shown_url = redact_url(url)
        self.path = opts.path
        self.segment_bytes = opts.segment_bytes
        self.default_partitions = opts.partitions
        self.fsync = opts.fsync
        self.compression = opts.compression
        self.store = Repository(opts.path, self.shown_url, create=create and opts.at is None,
                                fsync=opts.fsync, compression=opts.compression)
        self.repo = self.store.repo
        self.git_dir = self.store.git_dir
        self._lock = WriterLock(self.store.common_dir, self.shown_url, opts.lock_lease)
        self._mutex = threading.RLock()
        self._cache = LineCache(_READ_CACHE_BYTES)
        self._reader = TreeReader(self.store, self._cache, self._where)
        self._explicit_branch = opts.branch
        self.branch: str | None = opts.branch
        self.app_id: str | None = opts.app
        self.read_only = False
        self._pinned: bytes | None = None
        self._start_at = opts.start_at
        self._state = State()
        self._staged: dict[str, tuple[int, str, bool]] = {}   # topics created, not committed
        self._queued: list[tuple[str, int, list[OutRec]]] = []  # appends before binding
        self._last_refresh = 0.0
        self._seen_token: Any = None
        self._watch: BranchWatch | None = None
        self._view_of: GitDriver | None = None
        #: git commits this driver made, and how many of them it had to redo on top of a
        #: branch another process moved first
        self.commits = 0
        self.rebases = 0
        if self.branch is None and opts.app is not None:
            self.branch = branch_for(opts.app)
        if opts.at is not None:
            self.read_only = True
            self._pinned = resolve(self.store, opts.at, self.branch)
            self._state = self._reader.load(self._pinned, None)
        elif self.branch is not None:
            self._bind_branch()

    # -- binding a branch ---------------------------------------------------------------------
    def _where(self, path: str, head: bytes | None = None) -> str:
        at = head.decode()[:12] if head else "?"
        return f"{self.shown_url}: {path} (branch {self.branch!r}, commit {at})"

    def _branch_head(self, branch: str | None = None) -> bytes | None:
        return self.store.head(branch or self.branch)

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
                self._need_writable()
                queued, self._queued = self._queued, []
                for topic, partition, records in queued:
                    self._append_commit(topic, partition, records)

    def _bind_branch(self) -> None:
        assert self.branch is not None
        head = self._branch_head()
        if head is None and self._start_at is not None:
            start = resolve(self.store, self._start_at, self.branch)
            self._need_writable()
            with contextlib.suppress(BranchMoved):  # somebody created it meanwhile: fine
                self.store.update_ref(self.branch, None, start)
            head = self._branch_head()
            if head == start:
                log.info("%s: branch %s starts at %s", self.shown_url, self.branch,
                         start.decode()[:12])
                head = start
        elif head is not None and self._start_at is not None:
            start = resolve(self.store, self._start_at, self.branch)
            if not self.store.is_ancestor(start, head):
                raise DriverError(f"{self.shown_url}: branch {self.branch!r} exists and does not "
                                  f"descend from start_at {start.decode()[:12]}; pick a new "
                                  "branch name.")
        self._state = self._reader.load(head, self._state if self._state.head else None)
        self._last_refresh = time.monotonic()
        self._reconcile_staged()

    def _reconcile_staged(self) -> None:
        """Topics created here that the branch now holds are no longer staged (and must have
        the same partition count)."""
        for topic, (count, _k, _c) in list(self._staged.items()):
            existing = self._state.topics.get(topic)
            if existing is None:
                continue
            if existing.partitions != count:
                raise DriverError(
                    f"{self.shown_url}: topic {topic!r} has {existing.partitions} partitions on "
                    f"branch {self.branch!r}, but this run created it with {count} before the "
                    "branch was known; name the app in the URL (?app=NAME) so the driver reads "
                    "the branch first.")
            del self._staged[topic]

    def _need_writable(self) -> None:
        if self.read_only:
            raise DriverError(f"{self.shown_url}: this is a read-only view"
                              + (f" at {self._pinned.decode()[:12]}" if self._pinned else "")
                              + "; open the branch (without at=) to write.")

    def _acquire(self) -> None:
        """Take the writer lock (engine commits need it; appends do not)."""
        self._need_writable()
        if self._lock.held:
            return
        self._lock.acquire(self.branch)
        removed = self.store.cleanup_after_crash(self.branch)
        if removed:
            log.warning("%s: removed %d files left by a crashed writer", self.shown_url,
                        removed)
        self._refresh_now()

    # -- following the branch -----------------------------------------------------------------
    def _refresh_now(self) -> bool:
        """Load the branch head if it moved (appends or engine commits of other processes);
        True if it did."""
        if self._pinned is not None or self.branch is None:
            return False
        self._last_refresh = time.monotonic()
        token = self.store.head_token(self.branch)
        if token == self._seen_token:
            return False
        self._seen_token = token
        head = self._branch_head()
        if head == self._state.head:
            return False
        if self._lock.held:
            self._check_only_appends(self._state.head, head)
        self._state = self._reader.load(head, self._state)
        self._reconcile_staged()
        return True

    def _maybe_refresh(self) -> None:
        """Follow the branch head (checked at most every ``REFRESH_S``; a stat of the ref)."""
        if time.monotonic() - self._last_refresh >= REFRESH_S:
            self._refresh_now()

    def wait_for_data(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for another process to move the branch (appended records,
        say); True if it did. Uses inotify where available (no busy polling), else checks the
        ref every few milliseconds. The engine calls it when it has nothing to do."""
        with self._mutex:
            self._lock.renew()
            if self._pinned is not None or self.branch is None:
                watch = None
            else:
                if self._refresh_now():
                    return True
                if self._watch is None:
                    branch = self.branch
                    self._watch = BranchWatch(
                        [os.path.dirname(self.store.ref_path(branch)), self.store.common_dir],
                        lambda: self.store.head_token(branch))
                watch, since = self._watch, self._seen_token
        if watch is None:
            time.sleep(max(0.0, timeout_s))
            return False
        if not watch.wait(since, timeout_s):
            return False
        with self._mutex:
            return self._refresh_now()

    def refresh(self) -> None:
        """Re-read the branch head now (the driver follows it by itself, checking at most every
        ``REFRESH_S``)."""
        with self._mutex:
            self._refresh_now()

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
            self._need_writable()
            if topic in self._state.topics or topic in self._staged:
                return
            # committed with the next commit (an append or an engine commit)
            self._staged[topic] = (partitions, kind, compact)

    def _part(self, topic: str, partition: int) -> Part | None:
        """The committed partition (``None``: the topic is only staged)."""
        t = self._state.topics.get(topic)
        if t is None:
            staged = self._staged.get(topic)
            if staged is None:
                raise DriverError(f"topic {topic!r} does not exist on {self.shown_url}"
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
                f"{self.shown_url}: which branch? Name it in the URL (?app=NAME reads "
                "workbench/NAME, ?branch=NAME any branch), or run a pipeline on the driver first.")

    def append(self, topic: str, partition: int, records: Iterable[OutRec]) -> None:
        """Append records to one partition as one git commit ("append"). Appends need no
        writer lock: any number of processes may append while a job runs; each moves the
        branch by compare-and-swap and, when another process moved it first, redoes its
        commit on the new head."""
        batch = records if isinstance(records, list) else list(records)
        with self._mutex:
            self._need_writable()
            self._part(topic, partition)
            if self.branch is None:
                self._queued.append((topic, partition, batch))
                return
            self._append_commit(topic, partition, batch)

    def _append_commit(self, topic: str, partition: int, batch: list[OutRec]) -> None:
        if not batch and not self._staged:
            return
        self._write({(topic, partition): batch}, {},
                    append_message(topic, partition, len(batch)))

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
                    path = f"topics/{entry_name(topic)}/{partition}/{seg.name}"
                    raise DriverError(
                        f"{self._where(path, self._state.head)}: corrupt record on line {line} "
                        f"(offset {seg.base + line - 1}): {exc}") from None
                pos = seg.base + stop
                i += 1
            return out

    def _lines(self, topic: str, partition: int, seg: Seg) -> list[bytes]:
        return self._reader.lines(self._state, topic, partition, seg)

    def end_offset(self, topic: str, partition: int) -> int:
        with self._mutex:
            self._maybe_refresh()
            part = self._part(topic, partition)
            return 0 if part is None else part.end

    # -- transactions -------------------------------------------------------------------------
    def _positions_doc(self, app_id: str) -> dict[str, Any]:
        return self._reader.positions_doc(self._state, app_id)

    def committed(self, app_id: str, topic: str, partition: int) -> int:
        with self._mutex:
            if self.branch is None and self._pinned is None:
                self.bind(app_id)
            self._maybe_refresh()
            per_topic = self._positions_doc(app_id)["positions"].get(topic, {})
            offset = int(per_topic.get(str(partition), 0))
            t = self._state.topics.get(topic)
            end = t.parts[partition].end if t is not None and partition < t.partitions else 0
            if not 0 <= offset <= end:
                path = f"positions/{entry_name(app_id)}.json"
                raise DriverError(
                    f"{self._where(path, self._state.head)}: app {app_id!r} has committed "
                    f"topic {topic!r} partition {partition} up to position {offset}, but the "
                    f"partition ends at {end}: the log was rewritten or the positions file "
                    "edited. Restore the branch to a consistent commit (see `git reflog`), or "
                    "replay on a new branch (start_at=...).")
            return offset

    def _check_position(self, topic: str, partition: int, offset: int, appended: int) -> None:
        """A position to commit must lie within the partition's log (its committed end plus
        what this commit appends to it)."""
        part = self._part(topic, partition)
        end = (0 if part is None else part.end) + appended
        if type(offset) is not int or not 0 <= offset <= end:
            problem = "is negative" if isinstance(offset, int) and offset < 0 else (
                f"is beyond the end of the log (it ends at {end})")
            raise DriverError(
                f"{self.shown_url}: topic {topic!r} partition {partition}: position "
                f"{offset!r} {problem} on branch {self.branch!r}; committed positions lie "
                f"between 0 and the end offset ({end}).")

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
            for (topic, partition), offset in txn.positions.items():
                self._check_position(topic, partition, offset,
                                     len(txn.outputs.get((topic, partition), ())))
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
            self._write(txn.outputs, {txn.app_id: doc} if doc else {}, commit_message(txn))

    def _encoded(self, topic: str, partition: int, records: list[OutRec]
                 ) -> Iterator[tuple[bytes, int]]:
        try:
            yield from iter_encoded(records)
        except HeaderError as exc:
            raise SerializationError(f"{self.shown_url}: cannot write a record of "
                                     f"{topic}/{partition}: {exc}.") from None
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(
                f"{self.shown_url}: cannot write a record of {topic}/{partition} as JSON: {exc}. "
                "Keys and values go through the JSON serde.") from None

    def _write(self, outputs: dict[tuple[str, int], list[OutRec]],
               docs: dict[str, dict[str, Any]], message: str) -> None:
        """One git commit on the branch.

        The new segments and partition trees are written first, on the branch head as this
        driver knows it (the expensive part). Then the branch's ref lock is taken; if another
        process moved the branch meanwhile, the new head is loaded (a writer holding the
        writer lock accepts only appends in between: another writer's commit fences it) and
        the partitions somebody else appended to are written again; then the trees above,
        the commit, and the ref. Nobody can move the branch while the ref lock is held, so a
        commit never has to start over."""
        assert self.branch is not None
        self._refresh_now()  # a stat: most of the time, the head did not move
        if self._lock.held:
            self._lock.check()
            self._lock.renew()
        prepared: dict[tuple[str, int], Prepared] = {}
        self._prepare(outputs, prepared, None)
        with self.store.lock_ref(self.branch) as ref:
            if self._lock.held:
                self._lock.check()
            if ref.head != self._state.head:
                self._catch_up(self._state.head, ref.head)
                self.rebases += 1
                self._prepare(outputs, prepared, ref.touch)
            finish_commit(self.store, self._state, ref, prepared=prepared, docs=docs,
                          staged=self._staged, message=message, cache=self._cache)
        self._staged.clear()
        self.commits += 1

    def _prepare(self, outputs: dict[tuple[str, int], list[OutRec]],
                 prepared: dict[tuple[str, int], Prepared],
                 alive: Callable[[], None] | None) -> None:
        """Write the new segments and tree of every partition in ``outputs`` whose prepared
        version does not extend its current tree."""
        for (topic, partition), records in outputs.items():
            if not records:
                continue
            t = self._state.topics.get(topic)
            part = t.parts[partition] if t is not None else Part()
            prep = prepared.get((topic, partition))
            if prep is not None and prep.base == part.tree_sha:
                continue
            if t is not None:
                self._reader.open_tails(self._state, t, partition, self.segment_bytes)
            prepared[(topic, partition)] = prepare_part(
                self.store, part, self._encoded(topic, partition, records),
                segment_bytes=self.segment_bytes, cache=self._cache, alive=alive)

    def _catch_up(self, old: bytes | None, new: bytes | None) -> None:
        """Load the head another process moved the branch to (a lock holder checks that it
        only missed appends)."""
        if self._lock.held:
            self._check_only_appends(old, new)
        self._state = self._reader.load(new, self._state)
        self._reconcile_staged()

    def _check_only_appends(self, old: bytes | None, new: bytes | None) -> None:
        """The writer (lock holder) may follow the branch from ``old`` to ``new`` only if
        everything in between is an append (inputs of other processes); anything else means
        another process writes this branch, and this one is fenced."""
        self._lock.check()  # FencedError if another writer took the lock over
        others = []
        found = old is None
        for c in self.store.walk(new):
            if c.id == old:
                found = True
                break
            if describe_kind(c) != "append":
                others.append(c)
        if others or not found:
            what = (f"commit {others[-1].id.decode()[:12]} is not an append" if others
                    else f"{(old or b'?').decode()[:12]} is no longer on it")
            raise FencedError(
                f"{self.shown_url}: branch {self.branch!r} moved under this writer and {what}: "
                "another process writes it; stopping without committing.")

    def read_all(self, topic: str) -> list[ReadRec]:
        with self._mutex:
            self._need_branch()
            return super().read_all(topic)

    # -- housekeeping -------------------------------------------------------------------------
    def pack(self) -> int:
        """Pack the loose objects (what ``git gc`` does, without delta compression; safe to
        kill at any point); returns how many were packed."""
        with self._mutex:
            return self.store.pack()

    def close(self) -> None:
        """Release the writer lock and open pack files. Idempotent; a closed driver still
        reads, and takes the lock again if it writes."""
        with self._mutex:
            if self._queued:
                warnings.warn(
                    f"{self.shown_url}: closing with {len(self._queued)} append(s) that were never "
                    "committed because no branch was named (use ?app=NAME or ?branch=NAME).",
                    RuntimeWarning, stacklevel=2)
                self._queued = []
            self._lock.release()
            if self._watch is not None:
                self._watch.close()
                self._watch = None
            if self._view_of is None:
                self.store.close()

    def __repr__(self) -> str:
        where = self.branch or "?"
        if self._pinned is not None:
            where += f" @ {self._pinned.decode()[:12]}"
        return f"<GitDriver {self.shown_url} [{where}]>"
