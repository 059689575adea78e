"""``git://`` URLs, their parameters, and branch names.

URLs name a local repository::

    git:///abs/path/to/repo          absolute path
    git://./relative/path/to/repo    relative to the current directory (also ../ and ~/)
    git:///repo?branch=NAME&segment_bytes=1048576&partitions=1&app=NAME&at=COMMIT&start_at=COMMIT

``git://host/path`` is git's network protocol; the driver does not speak it, so such URLs are
refused with a hint instead of creating ``./host/path``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from ..._urls import redact_url
from ...errors import DefinitionError, did_you_mean

__all__ = ["DEFAULT_COMPRESSION", "DEFAULT_SEGMENT_BYTES", "GitOptions", "branch_for",
           "check_branch", "parse_git_url"]

#: default segment size limit (bytes of JSON lines per segment file)
DEFAULT_SEGMENT_BYTES = 1 << 20
#: zlib level of loose objects (1: ~3x faster than git's default 6, ~15% larger; `git gc`
#: recompresses)
DEFAULT_COMPRESSION = 1
PARAMS = ("branch", "app", "at", "start_at", "segment_bytes", "partitions", "fsync",
          "compression", "lock_lease")
#: seconds after which a writer lock from another host, not renewed, is taken over
DEFAULT_LOCK_LEASE_S = 60.0
_HINT = "use 'git:///abs/path' (three slashes) or 'git://./relative/path'"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_git_url(url: str) -> tuple[str, dict[str, str]]:
    """Split a ``git://`` URL into the repository path and its query parameters.

    >>> parse_git_url("git:///tmp/repo?branch=main")
    ('/tmp/repo', {'branch': 'main'})
    >>> parse_git_url("git://./data/repo")
    ('./data/repo', {})

    Raises:
        DefinitionError: not a ``git://`` URL, no path, or a remote-looking URL
            (``git://host/path``).
    """
    shown = redact_url(url)
    if not isinstance(url, str) or not url.lower().startswith("git://"):
        raise DefinitionError(f"{shown!r} is not a git:// URL; {_HINT}.")
    rest = url[len("git://"):]
    rest, _, query = rest.partition("?")
    if not rest:
        raise DefinitionError(f"{shown!r}: no repository path; {_HINT}.")
    first = rest.split("/", 1)[0]
    if not rest.startswith("/") and first not in (".", "..", "~"):
        raise DefinitionError(
            f"{shown!r} looks like a remote git URL (git://HOST/PATH, git's network protocol); "
            f"the git driver works on a local repository: {_HINT}.")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    return unquote(rest), params


_REF_BAD = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def check_branch(name: str) -> str:
    """``name`` if git accepts it as a branch name, else :class:`DefinitionError`."""
    if (not name or _REF_BAD.search(name) or name.startswith(("/", "-", ".")) or
            name.endswith(("/", ".", ".lock")) or "/." in name or name == "@"):
        raise DefinitionError(f"branch {name!r} is not a valid git branch name (git "
                              "check-ref-format rules: no '..', spaces, '~^:?*[\\', leading "
                              "'-' or '.', ...).")
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
    lock_lease: float

    @classmethod
    def parse(cls, url: str, *, branch: str | None = None, app: str | None = None,
              at: Any = None, start_at: Any = None, segment_bytes: Any = None,
              partitions: Any = None, fsync: Any = None, compression: Any = None,
              lock_lease: Any = None) -> GitOptions:
        """Read ``url`` and the keyword arguments that override its parameters.

        Raises:
            DefinitionError: naming the URL (without secrets) and the parameter that is
                unknown, empty or not a valid value.
        """
        path, params = parse_git_url(url)
        shown = redact_url(url)
        for name in params:
            if name not in PARAMS:
                raise DefinitionError(f"{shown!r}: unknown parameter {name!r}."
                                      + did_you_mean(name, PARAMS))
        for name in ("branch", "app", "at", "start_at"):
            if params.get(name) == "":
                raise DefinitionError(f"{shown!r}: parameter {name!r} is empty; give a value "
                                      "or leave it out.")

        def pick(name: str, given: Any) -> Any:
            return given if given is not None else params.get(name)

        branch = pick("branch", branch)
        return cls(
            path=os.path.abspath(os.path.expanduser(path)),
            branch=check_branch(branch) if branch else None,
            app=pick("app", app) or None,
            at=pick("at", at),
            start_at=pick("start_at", start_at),
            segment_bytes=_int(shown, "segment_bytes", pick("segment_bytes", segment_bytes),
                               DEFAULT_SEGMENT_BYTES, low=1),
            partitions=_int(shown, "partitions", pick("partitions", partitions), 1, low=1),
            fsync=_bool(shown, "fsync", pick("fsync", fsync)),
            compression=_int(shown, "compression", pick("compression", compression),
                             DEFAULT_COMPRESSION, low=-1, high=9),
            lock_lease=_seconds(shown, "lock_lease", pick("lock_lease", lock_lease),
                                DEFAULT_LOCK_LEASE_S),
        )


def _int(url: str, name: str, value: Any, default: int, *, low: int,
         high: int | None = None) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise DefinitionError(f"{url!r}: parameter {name!r} must be an integer, got {value!r}.")
    try:
        n = int(value)
    except ValueError:
        raise DefinitionError(f"{url!r}: parameter {name!r} must be an integer, got "
                              f"{value!r}.") from None
    if high is not None and not low <= n <= high:
        raise DefinitionError(f"{url!r}: parameter {name!r} must be in {low}..{high} (zlib "
                              f"levels), got {n}.")
    if n < low:
        raise DefinitionError(f"{url!r}: parameter {name!r} must be >= {low}, got {n}.")
    return n


def _seconds(url: str, name: str, value: Any, default: float) -> float:
    if value is None:
        return default
    try:
        n = float(value)
    except (TypeError, ValueError):
        raise DefinitionError(f"{url!r}: parameter {name!r} must be a number of seconds, got "
                              f"{value!r}.") from None
    if not n >= 1:  # also NaN
        raise DefinitionError(f"{url!r}: parameter {name!r} must be >= 1 second, got {value!r}.")
    return n


def _bool(url: str, name: str, value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DefinitionError(f"{url!r}: parameter {name!r} must be 1/0 (true/false, yes/no, "
                          f"on/off), got {value!r}.")
