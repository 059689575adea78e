"""The git driver: the driver contract over a repository (see the package docstring)."""

from __future__ import annotations

import bisect
import logging
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..._urls import redact_url
from ...errors import DefinitionError, DriverError, SerializationError
from ..base import Driver, OutRec, ReadRec, Transaction
from .codec import HeaderError, decode_lines, iter_encoded
from .commit import append_message, commit_message, write_commit
from .history import GitCommit, describe, resolve
from .lock import WriterLock
from .options import GitOptions, branch_for
from .repo import Repository
from .segments import LineCache, Part, Seg
from .tree import State, TreeReader, entry_name

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["GitDriver"]

log = logging.getLogger(__name__)

_READ_CACHE_BYTES = 96 << 20


class GitDriver(Driver):
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
        create: create the repository when the path is missing.
    """

    scheme = "git"

    def __init__(self, url: str, *, branch: str | None = None, app: str | None = None,
                 at: Any = None, start_at: Any = None, segment_bytes: int | None = None,
                 partitions: int | None = None, fsync: bool | None = None,
                 compression: int | None = None, create: bool = True) -> None:
        opts = GitOptions.parse(url, branch=branch, app=app, at=at, start_at=start_at,
                                segment_bytes=segment_bytes, partitions=partitions,
                                fsync=fsync, compression=compression)
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
        self._lock = WriterLock(self.store.common_dir, self.shown_url)
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
        self._view_of: GitDriver | None = None
        self.commits = 0
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
                self._acquire()
                queued, self._queued = self._queued, []
                for topic, partition, records in queued:
                    self._append_commit(topic, partition, records)

    def _bind_branch(self) -> None:
        assert self.branch is not None
        head = self._branch_head()
        if head is None and self._start_at is not None:
            start = resolve(self.store, self._start_at, self.branch)
            self._acquire()
            head = self._branch_head()
            if head is None:
                self.store.update_ref(self.branch, None, start)
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
        if self._lock.held:
            self._reader.load_open_tails(self._state, self.segment_bytes)
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

    def _acquire(self) -> None:
        if self.read_only:
            raise DriverError(f"{self.shown_url}: this is a read-only view"
                              + (f" at {self._pinned.decode()[:12]}" if self._pinned else "")
                              + "; open the branch (without at=) to write.")
        if self._lock.held:
            return
        self._lock.acquire(self.branch)
        removed = self.store.cleanup_after_crash(self.branch)
        if removed:
            log.warning("%s: removed %d lock files left by a crashed writer", self.shown_url,
                        removed)
        head = self._branch_head() if self.branch else None
        if self.branch is not None and head != self._state.head:
            self._state = self._reader.load(head, self._state)
        self._reader.load_open_tails(self._state, self.segment_bytes)

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
            self._state = self._reader.load(head, self._state)

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
        self._write({(topic, partition): batch}, {}, append_message(topic, partition,
                                                                    len(batch)))

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
        """One git commit on the branch (the writer lock is held)."""
        assert self.branch is not None
        self._lock.check()
        self.store.refuse_checked_out(self.branch)
        write_commit(self.store, self._state, self.branch, outputs=outputs, docs=docs,
                     staged=self._staged, message=message, segment_bytes=self.segment_bytes,
                     cache=self._cache, encode=self._encoded)
        self._staged.clear()
        self.commits += 1

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
                raise DefinitionError(f"{self.shown_url}: history() needs an app or a branch.")
            app = app or self.app_id
            head = self._pinned if (self._pinned and branch == self.branch) else \
                self._branch_head(branch)
            out: list[GitCommit] = []
            for c in self.store.walk(head):
                out.append(describe(self.store, c, app))
                if limit is not None and len(out) >= limit:
                    break
            return out

    def as_of(self, at: Any) -> GitDriver:
        """A read-only view of the branch as of ``at``: a commit id (or :class:`GitCommit`),
        or a time (datetime, pandas Timestamp, ISO text, epoch ms): the last commit at or
        before it."""
        with self._mutex:
            sha = resolve(self.store, at, self.branch)
            view = GitDriver.__new__(GitDriver)
            view.__dict__.update(self.__dict__)
            view._lock = WriterLock(self.store.common_dir, self.shown_url)
            view._mutex = threading.RLock()
            view._reader = TreeReader(self.store, self._cache, view._where)
            view.read_only = True
            view._pinned = sha
            view._staged = {}
            view._queued = []
            view._view_of = self
            view._state = view._reader.load(sha, self._state)
            view.url = f"{self.url.split('?')[0]}?at={sha.decode()}"
            view.shown_url = redact_url(view.url)
            return view

    @property
    def head(self) -> str | None:
        """The commit this driver reads (the branch head, or the pinned commit)."""
        with self._mutex:
            self._maybe_refresh()
            return self._state.head.decode() if self._state.head else None

    def frame(self, topic: str) -> pd.DataFrame:
        """The committed records of ``topic`` as a DataFrame (as ``Run.frame`` shows them)."""
        from ...frames import records_to_frame

        return records_to_frame(self.read_all(topic))

    def table(self, topic: str, key_name: str | None = None) -> pd.DataFrame:
        """The current contents of a table's changelog topic: the last record per key,
        deletes removed (as a table's preview shows them)."""
        from ...frames import records_to_frame
        from ...preview import latest_per_key

        return records_to_frame(latest_per_key(self.read_all(topic)), key_name=key_name)

    def read_all(self, topic: str) -> list[ReadRec]:
        with self._mutex:
            self._need_branch()
            return super().read_all(topic)

    # -- housekeeping -------------------------------------------------------------------------
    def pack(self) -> None:
        """Pack loose objects (what ``git gc`` does, without delta compression)."""
        with self._mutex:
            self.store.pack()

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
            if self._view_of is None:
                self.store.close()

    def __repr__(self) -> str:
        where = self.branch or "?"
        if self._pinned is not None:
            where += f" @ {self._pinned.decode()[:12]}"
        return f"<GitDriver {self.shown_url} [{where}]>"
