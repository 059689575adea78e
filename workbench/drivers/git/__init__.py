"""The git driver: topics, state and positions in a git repository, one git commit per commit.

URLs::

    git:///abs/path/to/repo          absolute path
    git://./relative/path/to/repo    relative to the current directory (git://host/path: refused)
    git:///repo?branch=NAME&segment_bytes=1048576&partitions=1&app=NAME&at=COMMIT&start_at=COMMIT

The repository is created (bare) when the path is missing or an empty directory; an existing
repository, bare or not, is used as it is (the driver writes only its branch, never touches a
working tree, and refuses a branch that a working tree has checked out). dulwich does the git
work, so no ``git`` binary is needed; the result is an ordinary repository (``git log``,
``git diff``, ``git fsck --strict``, ``git gc`` work on it).

Branches: every engine commit (:meth:`GitDriver.commit`) becomes one git commit on the branch
``workbench/<app>`` (or ``?branch=``): the sink, repartition and changelog records it appends,
the input positions and metadata. :meth:`GitDriver.append` (inputs outside transactions) makes
one git commit per call. Reads see the branch head only. Without ``?branch=`` or ``?app=``, the
branch is known when the engine first names its application (:meth:`GitDriver.assign`);
``create_topic`` and ``append`` calls before that are kept and committed then.

Time travel: :meth:`GitDriver.history` lists a branch's commits; :meth:`GitDriver.as_of` (or
``GitDriver(url, at=...)``) is a read-only view of the branch at a commit or time;
``GitDriver(url, branch="replay", start_at=commit)`` starts a new branch at an old commit, so a
changed pipeline can be replayed from there and compared.

One writer at a time: a writer (engine commits) holds ``<git dir>/workbench.lock`` (pid, host,
start time); a lock whose process is dead is taken over with a warning. Readers and appenders
never lock: other processes may append inputs while a job runs, and the job notices them
(:meth:`GitDriver.wait_for_data`, inotify) and commits on top of them.

The modules, one job each:

========== ==========================================================================
options    ``git://`` URLs, their parameters, branch names
codec      records ↔ JSON lines (segment file contents)
segments   a partition's segment files, how appends roll them, the line cache
repo       the repository over dulwich: opening, objects, refs (compare-and-swap)
tree       reading a commit's tree into the driver's index (and checking it)
commit     writing one commit: blobs, trees, commit object, ref
lock       the single-writer lock file
watch      noticing that a branch moved (inotify, else polling the ref)
history    commits as :class:`GitCommit`, resolving commit ids and times
travel     history, views as of a commit, DataFrames (mixed into the driver)
driver     :class:`GitDriver`: the driver contract over those
========== ==========================================================================

Importing this package does not import dulwich; creating a driver does.
"""

from __future__ import annotations

from .codec import decode_lines, encode_records, iter_encoded
from .driver import GitDriver
from .history import GitCommit
from .lock import LOCK_NAME
from .options import DEFAULT_COMPRESSION, DEFAULT_SEGMENT_BYTES, branch_for, parse_git_url
from .tree import FORMAT

__all__ = [
    "DEFAULT_COMPRESSION",
    "DEFAULT_SEGMENT_BYTES",
    "FORMAT",
    "LOCK_NAME",
    "GitCommit",
    "GitDriver",
    "branch_for",
    "decode_lines",
    "encode_records",
    "iter_encoded",
    "parse_git_url",
]
