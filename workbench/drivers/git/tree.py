"""What a commit holds, read from its tree.

Layout of a commit's tree::

    topics/<topic>/topic.json                     {"partitions": N, "kind": ..., "compact": ...}
    topics/<topic>/<partition>/<base-offset>.jsonl   one JSON object per record (see codec)
    positions/<app>.json                          {"app":..., "positions": {topic: {p: next}},
                                                   "metadata": {...}}

Opening a commit reads the tree objects and the last segment of each partition, not the data.
A file the driver did not write in ``topics/`` or ``positions/`` raises a :class:`DriverError`
naming it; entries at the top level other than those two are left alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from ...errors import DriverError
from .repo import TREE_MODE, Repository
from .segments import SEGMENT_RE, LineCache, Part, Seg

__all__ = ["FORMAT", "State", "Topic", "TreeReader", "entry_name", "entry_unname"]

FORMAT = "workbench-jsonl/1"
_PARTITION_RE = re.compile(r"^(0|[1-9]\d*)$")


def entry_name(name: str) -> str:
    """A topic or app name as a tree entry name: percent-quoted where needed, plus a leading
    ``.`` and every ``~``, so that no name becomes an entry ``git fsck --strict`` rejects
    (``.``, ``..``, ``.git`` in any case, ``git~1``, a folder named ``.gitmodules``...).

    >>> [entry_name(n) for n in (".git", "..", "GIT~1", "a.b", "a/b", "per-user")]
    ['%2Egit', '%2E.', 'GIT%7E1', 'a.b', 'a%2Fb', 'per-user']
    """
    quoted = quote(name, safe="").replace("~", "%7E")
    return "%2E" + quoted[1:] if quoted.startswith(".") else quoted


def entry_unname(entry: str) -> str:
    """The topic or app name of a tree entry name (inverse of :func:`entry_name`)."""
    return unquote(entry)


@dataclass
class Topic:
    """A topic as a commit holds it."""

    name: str
    partitions: int
    kind: str
    compact: bool
    parts: list[Part]
    meta_sha: bytes | None = None
    tree_sha: bytes | None = None


@dataclass
class State:
    """What a commit holds, as the driver reads it."""

    head: bytes | None = None
    root: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)
    topics: dict[str, Topic] = field(default_factory=dict)
    positions_tree: dict[str, bytes] = field(default_factory=dict)  # app -> blob id
    positions: dict[str, dict[str, Any]] = field(default_factory=dict)  # app -> parsed doc


class TreeReader:
    """Reads commits into :class:`State` objects, checking that the data folders hold only what
    the driver writes.

    Args:
        repo: the repository.
        cache: where the bytes of the segments it reads go.
        where: ``where(path, commit)`` → the text naming a path of a commit in messages.
    """

    def __init__(self, repo: Repository, cache: LineCache,
                 where: Callable[[str, bytes | None], str]) -> None:
        self.repo = repo
        self.cache = cache
        self.where = where

    def load(self, head: bytes | None, previous: State | None) -> State:
        """The state at commit ``head``, reusing unchanged topics and partitions of
        ``previous``."""
        state = State(head=head)
        if head is None:
            return state
        here = self._here(head)
        commit = self.repo.commit(head)
        root = self.repo.object(commit.tree, b"tree", here("/"))
        state.root = {e.path: (e.mode, e.sha) for e in root.items()}
        old_topics = previous.topics if previous else {}
        topics_entry = state.root.get(b"topics")
        if topics_entry is not None:
            topics_tree = self.repo.object(topics_entry[1], b"tree", here("topics/"))
            for e in topics_tree.items():
                name = entry_unname(e.path.decode())
                if e.mode != TREE_MODE:
                    raise DriverError(f"{here('topics/' + e.path.decode())}: a file "
                                      "where topic folders belong (foreign file).")
                old = old_topics.get(name)
                if old is not None and old.tree_sha == e.sha:
                    state.topics[name] = old
                else:
                    state.topics[name] = self._load_topic(name, e.sha, old, here)
        pos_entry = state.root.get(b"positions")
        if pos_entry is not None:
            pos_tree = self.repo.object(pos_entry[1], b"tree", here("positions/"))
            for e in pos_tree.items():
                fname = e.path.decode()
                if not fname.endswith(".json") or e.mode == TREE_MODE:
                    raise DriverError(f"{here('positions/' + fname)}: not a positions "
                                      "file (foreign file in the data folders).")
                state.positions_tree[entry_unname(fname[:-5])] = e.sha
        return state

    def _here(self, head: bytes | None) -> Callable[[str], str]:
        return lambda path: self.where(path, head)

    def _load_topic(self, name: str, tree_sha: bytes, old: Topic | None,
                    here: Callable[[str], str]) -> Topic:
        folder = f"topics/{entry_name(name)}"
        tree = self.repo.object(tree_sha, b"tree", here(folder + "/"))
        entries = {e.path.decode(): e for e in tree.items()}
        meta_e = entries.pop("topic.json", None)
        if meta_e is None:
            raise DriverError(f"{here(folder + '/')}: topic.json is missing (a folder "
                              "workbench did not write?).")
        raw = self.repo.blob(meta_e.sha, here(folder + "/topic.json"))
        try:
            meta = json.loads(raw)
            count = int(meta["partitions"])
            if count < 1:
                raise ValueError("partitions < 1")
        except (ValueError, KeyError, TypeError) as exc:
            raise DriverError(f"{here(folder + '/topic.json')}: corrupt ({exc}).") from None
        parts = [Part() for _ in range(count)]
        for fname, e in entries.items():
            m = _PARTITION_RE.match(fname)
            if m is None or int(fname) >= count or e.mode != TREE_MODE:
                raise DriverError(f"{here(folder + '/' + fname)}: unexpected entry in "
                                  f"topic {name!r} ({count} partitions): a foreign or corrupt "
                                  "file in the data folders.")
            p = int(fname)
            before = old.parts[p] if old is not None and p < len(old.parts) else None
            if before is not None and before.tree_sha == e.sha:
                parts[p] = before
            else:
                parts[p] = self._load_part(f"{folder}/{fname}", e.sha, here, before)
        return Topic(name, count, str(meta.get("kind", "source")), bool(meta.get("compact")),
                     parts, meta_e.sha, tree_sha)

    def _load_part(self, folder: str, tree_sha: bytes, here: Callable[[str], str],
                   old: Part | None = None) -> Part:
        tree = self.repo.object(tree_sha, b"tree", here(folder + "/"))
        found: list[tuple[int, bytes, str]] = []
        for e in tree.items():
            fname = e.path.decode()
            m = SEGMENT_RE.match(fname)
            if m is None or e.mode == TREE_MODE:
                raise DriverError(f"{here(folder + '/' + fname)}: not a segment file "
                                  "(<20-digit offset>.jsonl): a foreign or corrupt file in the "
                                  "data folders.")
            found.append((int(m.group(1)), e.sha, fname))
        found.sort()
        known = {(s.base, s.sha): s for s in old.segs} if old is not None else {}
        segs: list[Seg] = []
        for i, (base, sha, fname) in enumerate(found):
            seen = known.get((base, sha))
            if i + 1 < len(found):
                count = found[i + 1][0] - base
                if count <= 0:
                    raise DriverError(f"{here(folder + '/' + fname)}: overlapping segments.")
                if seen is not None:
                    segs.append(Seg(base, count, seen.nbytes, sha, seen.data))
                else:
                    segs.append(Seg(base, count, -1, sha))
            elif seen is not None:  # the same last segment as before: no need to read it
                segs.append(Seg(base, seen.count, seen.nbytes, sha, seen.data))
            else:
                data = self.repo.blob(sha, here(f"{folder}/{fname}"))
                if data and not data.endswith(b"\n"):
                    raise DriverError(f"{here(folder + '/' + fname)}: corrupt segment "
                                      "(the last line is incomplete).")
                segs.append(Seg(base, data.count(b"\n"), len(data), sha))
                self.cache.put(sha, data, len(data))
        if segs and segs[0].base != 0:
            raise DriverError(f"{here(folder + '/' + found[0][2])}: the first segment "
                              "must start at offset 0 (missing segments?).")
        return Part(segs, tree_sha)

    def open_tails(self, state: State, topic: Topic, partition: int,
                   segment_bytes: int) -> None:
        """Keep the bytes of a partition's small tail segments, which an append may rewrite
        (read on a partition's first write)."""
        part = topic.parts[partition]
        for seg in reversed(part.segs):
            if seg.data is not None:
                break
            path = f"topics/{entry_name(topic.name)}/{partition}/{seg.name}"
            data = self.repo.blob(seg.sha or b"", self.where(path, state.head))
            seg.nbytes = len(data)
            if seg.nbytes >= segment_bytes:
                break
            seg.data = data

    def lines(self, state: State, topic: str, partition: int, seg: Seg) -> list[bytes]:
        """The lines of segment ``seg`` (from the cache, or read and checked)."""
        assert seg.sha is not None
        lines = self.cache.get(seg.sha)
        if lines is None:
            path = f"topics/{entry_name(topic)}/{partition}/{seg.name}"
            where = self.where(path, state.head)
            data = seg.data if seg.data is not None else self.repo.blob(seg.sha, where)
            if data and not data.endswith(b"\n"):
                raise DriverError(f"{where}: corrupt segment (the last line is incomplete).")
            lines = data.split(b"\n")
            lines.pop()
            if len(lines) != seg.count:
                raise DriverError(f"{where}: corrupt segment: {len(lines)} records "
                                  f"where the next segment's offset says {seg.count}.")
            self.cache.put(seg.sha, lines, len(data) + 64 * len(lines))
        return lines

    def positions_doc(self, state: State, app_id: str) -> dict[str, Any]:
        """The positions document of ``app_id`` (empty when the app never committed)."""
        doc = state.positions.get(app_id)
        if doc is None:
            sha = state.positions_tree.get(app_id)
            if sha is None:
                doc = {"app": app_id, "positions": {}, "metadata": {}}
            else:
                path = f"positions/{entry_name(app_id)}.json"
                where = self.where(path, state.head)
                raw = self.repo.blob(sha, where)
                try:
                    doc = json.loads(raw)
                    if not isinstance(doc.get("positions"), dict):
                        raise ValueError("no 'positions' object")
                    doc.setdefault("metadata", {})
                except (ValueError, AttributeError) as exc:
                    raise DriverError(f"{where}: corrupt positions file ({exc}).") from None
            state.positions[app_id] = doc
        return doc
