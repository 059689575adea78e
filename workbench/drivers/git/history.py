"""A branch's history: commits as :class:`GitCommit`, and resolving commit ids and times.

Engine commits carry ``Workbench-*`` trailers (kind, app, records per topic, time in ms); the
positions of an application after a commit are read from that commit's tree.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass
from typing import Any

from ...errors import DefinitionError, DriverError
from .repo import Repository
from .tree import entry_name, entry_unname

__all__ = ["GitCommit", "commit_ms", "describe", "describe_kind", "resolve", "to_ms"]

_HEX_RE = re.compile(r"^[0-9a-fA-F]{4,40}$")


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


def describe(repo: Repository, c: Any, app: str | None) -> GitCommit:
    """A commit object as a :class:`GitCommit`, with the positions of ``app`` (default: the
    app named in the commit's trailers)."""
    text = c.message.decode("utf-8", errors="replace")
    subject = text.split("\n", 1)[0]
    trailers = dict(re.findall(r"^(Workbench-[A-Za-z]+): (.*)$", text, flags=re.M))
    records: dict[str, int] = {}
    for item in trailers.get("Workbench-Records", "").split():
        name, _, n = item.rpartition("=")
        if name and n.isdigit():
            records[entry_unname(name)] = int(n)
    ms = commit_ms(c)
    positions: dict[str, dict[int, int]] = {}
    named = trailers.get("Workbench-App")
    app = app or (entry_unname(named) if named is not None else None)
    if app is not None:
        raw = _positions_at(repo, c.tree, app)
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


def describe_kind(c: Any) -> str:
    """The ``Workbench-Kind`` of commit ``c``: ``"commit"``, ``"append"`` or ``"other"``."""
    m = re.search(rb"^Workbench-Kind: ([a-z]+)$", c.message, flags=re.M)
    return m.group(1).decode() if m else "other"


def _positions_at(repo: Repository, tree_sha: bytes, app: str) -> dict[str, Any] | None:
    try:
        root = repo.repo[tree_sha]
        _mode, ptree = root[b"positions"]
        want = entry_name(app) + ".json"
        for e in repo.repo[ptree].items():
            fname = e.path.decode()
            if fname == want or entry_unname(fname) == app + ".json":
                doc = json.loads(repo.repo[e.sha].as_raw_string())
                break
        else:
            return None
        return doc if isinstance(doc, dict) else None
    except (KeyError, ValueError):
        return None


def resolve(repo: Repository, at: Any, branch: str | None) -> bytes:
    """A commit id for ``at``: a :class:`GitCommit`, (abbreviated) commit id, a branch name,
    or a time (datetime, pandas Timestamp, ISO text, epoch ms) on ``branch``."""
    if isinstance(at, GitCommit):
        return at.id.encode()
    if isinstance(at, bytes):
        at = at.decode()
    if isinstance(at, str) and _HEX_RE.match(at):
        sha = repo.expand_sha(at)
        if sha is not None:
            return sha
    if isinstance(at, str) and repo.has_branch(at):
        head = repo.head(at)
        assert head is not None
        return head
    when = to_ms(at)
    if when is None:
        raise DefinitionError(f"{repo.name}: cannot resolve {at!r} to a commit: give a "
                              "commit id, a GitCommit, a branch name or a time.")
    if branch is None:
        raise DefinitionError(f"{repo.name}: a time ({at!r}) needs a branch; name it "
                              "(branch=... or app=...).")
    for c in repo.walk(repo.head(branch)):
        if commit_ms(c) <= when:
            return c.id  # type: ignore[no-any-return]
    raise DriverError(f"{repo.name}: branch {branch!r} has no commit at or before {at!r}.")


def commit_ms(c: Any) -> int:
    """When commit ``c`` was made, in epoch ms (its ``Workbench-Time`` trailer, else its
    commit time)."""
    m = re.search(rb"^Workbench-Time: (\d+)$", c.message, flags=re.M)
    return int(m.group(1)) if m else int(c.commit_time) * 1000


def to_ms(at: Any) -> int | None:
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
        return to_ms(parsed)
    ts = getattr(at, "to_pydatetime", None)
    if callable(ts):
        return to_ms(ts())
    return None
