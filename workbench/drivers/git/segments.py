"""The log of one partition: segment files, how appends roll them, and a cache of their lines.

Segment files are named by the offset of their first record (20 digits, as Kafka names its
segments) and roll at ``segment_bytes``. A small tail segment is rewritten with new records
only while that costs at most about twice the appended bytes (small neighbours merge the same
way), so a trickle of small commits rewrites each byte O(log) times, not once per commit.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

__all__ = ["LineCache", "Part", "Seg", "plan_segments"]

SEGMENT_RE = re.compile(r"^(\d{20})\.jsonl$")


class Seg:
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
        """The file name: ``<20-digit first offset>.jsonl``."""
        return f"{self.base:020d}.jsonl"


class Part:
    """A partition: its segments in offset order and the id of its tree."""

    __slots__ = ("bases", "segs", "tree_sha")

    def __init__(self, segs: list[Seg] | None = None, tree_sha: bytes | None = None) -> None:
        self.segs = segs or []
        self.bases = [s.base for s in self.segs]
        self.tree_sha = tree_sha

    @property
    def end(self) -> int:
        """The offset after the last record."""
        if not self.segs:
            return 0
        last = self.segs[-1]
        return last.base + last.count


def cut(data: bytes, start: int, want: int) -> int:
    """The end (exclusive) of the line that reaches ``start + want`` bytes, or the end."""
    i = data.find(b"\n", start + max(want, 1) - 1)
    return len(data) if i < 0 else i + 1


def plan_segments(part: Part, data: bytes, count: int, limit: int) -> tuple[list[Seg], list[Seg]]:
    """The partition's segments after appending ``data`` (``count`` lines), and the new
    segments (blobs to write). Segments hold up to ``limit`` bytes; a small tail segment is
    rewritten with new records only while that costs at most twice the appended bytes (and
    small neighbours merge the same way), so every byte is rewritten O(log) times."""
    segs = list(part.segs)
    new: list[Seg] = []
    base = part.end
    n = len(data)
    pos = 0
    if segs:
        last = segs[-1]
        if last.data is not None and last.nbytes < limit:
            end = cut(data, 0, limit - last.nbytes)
            if last.nbytes <= 2 * end:
                k = data.count(b"\n", 0, end)
                merged = Seg(last.base, last.count + k, last.nbytes + end, None,
                             last.data + data[:end])
                segs[-1] = merged
                new.append(merged)
                base += k
                pos = end
    while pos < n:
        end = cut(data, pos, limit)
        k = data.count(b"\n", pos, end) if (pos or end < n) else count
        seg = Seg(base, k, end - pos, None, data[pos:end] if (pos or end < n) else data)
        segs.append(seg)
        new.append(seg)
        base += k
        pos = end
    while len(segs) >= 2:
        a, b = segs[-2], segs[-1]
        if (a.data is None or b.data is None or a.nbytes >= limit
                or a.nbytes + b.nbytes > limit or a.nbytes > 2 * b.nbytes):
            break
        m = Seg(a.base, a.count + b.count, a.nbytes + b.nbytes, None, a.data + b.data)
        segs[-2:] = [m]
        new = [s for s in new if s is not a and s is not b]
        new.append(m)
    return segs, new


class LineCache:
    """Decoded segment lines by blob id, least recently used first out, bounded in bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self._items: OrderedDict[bytes, tuple[int, Any]] = OrderedDict()

    def get(self, sha: bytes) -> list[bytes] | None:
        """The lines of blob ``sha``, or ``None`` when not cached."""
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
        """Keep the bytes (split into lines on first use) or lines of blob ``sha``."""
        if sha in self._items:
            return
        self._items[sha] = (size, data)
        self.size += size
        while self.size > self.budget and len(self._items) > 1:
            _, (old, _v) = self._items.popitem(last=False)
            self.size -= old
