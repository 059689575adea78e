"""Writing one commit: segment blobs, trees, the commit object, then the branch ref.

A commit writes its objects first (:meth:`~.repo.Repository.add`: a temporary file renamed
into place), then moves the branch with a compare-and-swap; only then does the in-memory
:class:`State` change. It is written in two steps: :func:`prepare_part` writes a partition's
new segments and tree (the expensive part: encoding, compressing); :func:`finish_commit` the
trees above them, the commit and the ref. When another process moved the branch first (an
append), only the second step is redone, on the new head. ``kill -9`` at any point leaves
the branch at the last commit; the objects of an unfinished commit are "dangling" and
``git gc`` prunes them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..base import Transaction
from .repo import BLOB_MODE, TREE_MODE, LockedRef, Repository
from .segments import LineCache, Part, Seg, plan_segments
from .tree import FORMAT, State, Topic, entry_name

__all__ = ["Prepared", "append_message", "commit_message", "finish_commit", "fmt_counts",
           "prepare_part"]

IDENTITY = b"workbench <workbench@localhost>"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")



def fmt_counts(counts: dict[str, int]) -> str:
    """``Workbench-Records`` trailer text: ``topic=n`` pairs (topic names quoted)."""
    return " ".join(f"{entry_name(t)}={n}" for t, n in sorted(counts.items())) or "-"


def _oneline(text: str) -> str:
    """``text`` without line breaks or other control characters (for a subject line)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


def append_message(topic: str, partition: int, n: int) -> str:
    """The message of a commit made by ``append`` (inputs outside transactions)."""
    return (f"workbench: append {n} record{'s' if n != 1 else ''} to "
            f"{_oneline(topic)}/{partition}\n\n"
            f"Workbench-Kind: append\n"
            f"Workbench-Records: {fmt_counts({topic: n} if n else {})}\n")


def commit_message(txn: Transaction) -> str:
    """The message of an engine commit: a subject with record counts and positions, and
    ``Workbench-*`` trailers."""
    counts: dict[str, int] = {}
    for (topic, _p), recs in txn.outputs.items():
        counts[topic] = counts.get(topic, 0) + len(recs)
    total = sum(counts.values())
    shown = sorted(txn.positions.items())
    pos_text = ", ".join(f"{_oneline(t)}/{p}={o}" for (t, p), o in shown[:6])
    if len(shown) > 6:
        pos_text += ", ..."
    detail = ", ".join(f"{_oneline(t)}: {n}" for t, n in sorted(counts.items()))
    subject = f"workbench {_oneline(txn.app_id)}: +{total} records"
    if detail:
        subject += f" ({detail})"
    if pos_text:
        subject += f", positions {pos_text}"
    return (f"{subject}\n\nWorkbench-Kind: commit\nWorkbench-App: {entry_name(txn.app_id)}\n"
            f"Workbench-Records: {fmt_counts(counts)}\n")


class Prepared:
    """A partition's new segments and tree, written as objects but not yet committed.
    ``base`` is the id of the partition tree they extend (``None``: the partition was empty),
    so a commit redone on a moved branch reuses them while that tree is unchanged."""

    __slots__ = ("base", "part", "written")

    def __init__(self, base: bytes | None, part: Part, written: list[Seg]) -> None:
        self.base = base
        self.part = part
        self.written = written


def prepare_part(repo: Repository, part: Part, chunks: Iterator[tuple[bytes, int]], *,
                 segment_bytes: int, cache: LineCache,
                 alive: Callable[[], None] | None = None) -> Prepared:
    """Append encoded records (``chunks`` of JSON lines and their counts) to ``part``: write
    the new segment blobs (full ones as soon as they are full, so a large append does not hold
    all of its JSON in memory) and the partition's tree. ``alive()`` is called after each
    chunk (a holder of the ref lock touches it)."""
    d = repo.d
    limit = segment_bytes
    written: list[Seg] = []

    def write(seg: Seg) -> None:
        assert seg.data is not None
        blob = d.Blob.from_string(seg.data)
        repo.add(blob)
        seg.sha = blob.id
        written.append(seg)
        if seg.nbytes >= limit:  # full: never rewritten, the read cache may keep it
            cache.put(blob.id, seg.data, seg.nbytes)
            seg.data = None

    base = part.tree_sha
    for data, count in chunks:
        segs, _fresh = plan_segments(part, data, count, limit)
        for seg in segs:
            if seg.sha is None and seg.nbytes >= limit:
                write(seg)
        part = Part(segs)
        if alive is not None:
            alive()
    segs = part.segs
    for seg in segs:
        if seg.sha is None:
            write(seg)
    tree = d.Tree()
    for seg in segs:
        assert seg.sha is not None
        tree.add(seg.name.encode(), BLOB_MODE, seg.sha)
    repo.add(tree)
    return Prepared(base, Part(segs, tree.id), written)


def finish_commit(repo: Repository, state: State, ref: LockedRef, *,
                  prepared: dict[tuple[str, int], Prepared],
                  docs: dict[str, dict[str, Any]],
                  staged: dict[str, tuple[int, str, bool]],
                  message: str, cache: LineCache) -> bytes:
    """Write the trees above the prepared partitions and the commit, move the branch; then
    apply the commit to ``state``.

    Args:
        repo: where to write.
        state: the state at ``ref.head`` (updated in place once the ref moved).
        ref: the branch, locked by this process.
        prepared: new partitions per ``(topic, partition)``, prepared on ``state``.
        docs: new positions documents per app.
        staged: topics created since the last commit ``{name: (partitions, kind, compact)}``.
        message: the commit message (a ``Workbench-Time`` trailer is added).
        cache: receives the bytes of the segments written.

    Returns:
        The id of the new commit.
    """
    d = repo.d
    add = repo.add
    new_parts = {key: prep.part for key, prep in prepared.items()}
    # topics
    touched = {t for t, _p in new_parts} | set(staged)
    new_topics: dict[str, Topic] = {}
    for name in touched:
        t = state.topics.get(name)
        if t is None:
            count, kind, compact = staged[name]
            meta = json.dumps({"partitions": count, "kind": kind, "compact": compact,
                               "format": FORMAT}, indent=1).encode() + b"\n"
            mblob = d.Blob.from_string(meta)
            add(mblob)
            t = Topic(name, count, kind, compact, [Part() for _ in range(count)], mblob.id, None)
        parts = [new_parts.get((name, p), part) for p, part in enumerate(t.parts)]
        tree = d.Tree()
        assert t.meta_sha is not None
        tree.add(b"topic.json", BLOB_MODE, t.meta_sha)
        for p, part in enumerate(parts):
            if part.tree_sha is not None:
                tree.add(str(p).encode(), TREE_MODE, part.tree_sha)
        add(tree)
        new_topics[name] = Topic(name, t.partitions, t.kind, t.compact, parts, t.meta_sha,
                                 tree.id)
    root = dict(state.root)
    if new_topics:
        all_topics = {**state.topics, **new_topics}
        ttree = d.Tree()
        for name, t in all_topics.items():
            assert t.tree_sha is not None
            ttree.add(entry_name(name).encode(), TREE_MODE, t.tree_sha)
        add(ttree)
        root[b"topics"] = (TREE_MODE, ttree.id)
    pos_tree = dict(state.positions_tree)
    if docs:
        for app_id, doc in docs.items():
            blob = d.Blob.from_string(json.dumps(doc, indent=1, sort_keys=True).encode()
                                      + b"\n")
            add(blob)
            pos_tree[app_id] = blob.id
        ptree = d.Tree()
        for app_id, sha in pos_tree.items():
            ptree.add((entry_name(app_id) + ".json").encode(), BLOB_MODE, sha)
        add(ptree)
        root[b"positions"] = (TREE_MODE, ptree.id)
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
    assert ref.head == state.head, "the state must be the locked branch's head"
    ref.set(commit.id)
    repo.set_head_if_unborn(ref.branch)
    # apply to the in-memory index only now that the commit is in
    for prep in prepared.values():
        for seg in prep.written:
            if seg.data is not None:
                assert seg.sha is not None
                cache.put(seg.sha, seg.data, seg.nbytes)
    state.topics.update(new_topics)
    state.root = root
    state.positions_tree = pos_tree
    for app_id, doc in docs.items():
        state.positions[app_id] = doc
    state.head = commit.id
    return commit.id  # type: ignore[no-any-return]
