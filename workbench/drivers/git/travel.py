"""Time travel on a git driver: a branch's history, read-only views as of a commit or time,
and DataFrames of topics and tables (mixed into :class:`~.driver.GitDriver`)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Self

from ..._urls import redact_url
from ...errors import DefinitionError
from .history import GitCommit, describe, resolve
from .lock import WriterLock
from .options import branch_for
from .tree import TreeReader

if TYPE_CHECKING:
    import pandas as pd

    from ..base import ReadRec
    from .repo import Repository
    from .segments import LineCache
    from .tree import State

__all__ = ["TimeTravel"]


class TimeTravel:
    """:meth:`history`, :meth:`as_of`, :attr:`head`, :meth:`frame` and :meth:`table`."""

    if TYPE_CHECKING:  # provided by GitDriver
        url: str
        shown_url: str
        branch: str | None
        app_id: str | None
        read_only: bool
        store: Repository
        _mutex: threading.RLock
        _explicit_branch: str | None
        _pinned: bytes | None
        _state: State
        _cache: LineCache
        _reader: TreeReader
        _lock: WriterLock
        _staged: dict[str, tuple[int, str, bool]]
        _queued: list[Any]
        _watch: Any
        _view_of: Any

        def _branch_head(self, branch: str | None = None) -> bytes | None: ...
        def _maybe_refresh(self) -> None: ...
        def _where(self, path: str, head: bytes | None = None) -> str: ...
        def read_all(self, topic: str) -> list[ReadRec]: ...

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

    def as_of(self, at: Any) -> Self:
        """A read-only view of the branch as of ``at``: a commit id (or :class:`GitCommit`),
        or a time (datetime, pandas Timestamp, ISO text, epoch ms): the last commit at or
        before it."""
        with self._mutex:
            sha = resolve(self.store, at, self.branch)
            view = type(self).__new__(type(self))
            view.__dict__.update(self.__dict__)
            view._lock = WriterLock(self.store.common_dir, self.shown_url, self._lock.lease_s)
            view._mutex = threading.RLock()
            view._reader = TreeReader(self.store, self._cache, view._where)
            view.read_only = True
            view._pinned = sha
            view._staged = {}
            view._queued = []
            view._watch = None
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

