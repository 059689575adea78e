"""``git://`` URLs, their parameters, and branch names.

URLs::

    git:///abs/path/to/repo          absolute path
    git://relative/path/to/repo      relative to the current directory
    git:///repo?branch=NAME&segment_bytes=1048576&partitions=1&app=NAME&at=COMMIT&start_at=COMMIT
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from ...errors import DefinitionError

__all__ = ["DEFAULT_COMPRESSION", "DEFAULT_SEGMENT_BYTES", "GitOptions", "branch_for",
           "check_branch", "parse_git_url"]

#: default segment size limit (bytes of JSON lines per segment file)
DEFAULT_SEGMENT_BYTES = 1 << 20
#: zlib level of loose objects (1: ~3x faster than git's default 6, ~15% larger; `git gc`
#: recompresses)
DEFAULT_COMPRESSION = 1
PARAMS = ("branch", "app", "at", "start_at", "segment_bytes", "partitions", "fsync",
          "compression")


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


def check_branch(name: str) -> str:
    """``name`` if git accepts it as a branch name, else :class:`DefinitionError`."""
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


@dataclass(frozen=True)
class GitOptions:
    """A ``git://`` URL's settings, from its query parameters and keyword arguments (keywords
    win). See :class:`~workbench.drivers.git.GitDriver` for their meaning."""

    path: str
    branch: str | None
    app: str | None
    at: Any
    start_at: Any
    segment_bytes: int
    partitions: int
    fsync: bool
    compression: int

    @classmethod
    def parse(cls, url: str, *, branch: str | None = None, app: str | None = None,
              at: Any = None, start_at: Any = None, segment_bytes: int | None = None,
              partitions: int | None = None, fsync: bool | None = None,
              compression: int | None = None) -> GitOptions:
        """Read ``url`` and the keyword arguments that override its parameters."""
        path, params = parse_git_url(url)
        unknown = set(params) - set(PARAMS)
        if unknown:
            raise DefinitionError(f"{url!r}: unknown parameter(s) {sorted(unknown)}; known: "
                                  f"{', '.join(PARAMS)}.")
        seg = int(segment_bytes or params.get("segment_bytes") or DEFAULT_SEGMENT_BYTES)
        if seg < 1:
            raise DefinitionError(f"{url!r}: segment_bytes must be >= 1.")
        if fsync is None:
            fsync = params.get("fsync", "0").lower() in ("1", "true", "yes")
        branch = branch or params.get("branch") or None
        return cls(
            path=os.path.abspath(os.path.expanduser(path)),
            branch=check_branch(branch) if branch else None,
            app=app or params.get("app") or None,
            at=at if at is not None else params.get("at") or None,
            start_at=start_at if start_at is not None else params.get("start_at") or None,
            segment_bytes=seg,
            partitions=int(partitions or params.get("partitions") or 1),
            fsync=bool(fsync),
            compression=int(compression if compression is not None
                            else params.get("compression", DEFAULT_COMPRESSION)),
        )
