"""State stores: in-memory maps that record their changes for the commit.

The engine drains every store's changes at commit time and hands them to the driver inside the
same transaction as the outputs and input positions (as changelog records). On start, a store is
restored from its changelog before its task processes anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["KeyValueStore", "StateStore"]

_MISSING = object()


class StateStore:
    """Base class: a named store whose changes go to ``changelog``."""

    kind = "kv"
    #: a copy of another store, restored from its changelog and writing none (``StoreSpec``)
    shared = False

    def __init__(self, name: str, changelog: str) -> None:
        self.name = name
        self.changelog = changelog
        self._dirty: dict[Any, Any] = {}

    def drain_changes(self) -> list[tuple[Any, Any]]:
        """``[(store_key, value or None)]`` changed since the last drain, in change order."""
        if not self._dirty:
            return []
        out = [(self.encode_key(k), v) for k, v in self._dirty.items()]
        self._dirty = {}
        return out

    def discard_changes(self) -> None:
        """Forget the changes since the last drain without producing changelog records (for
        drivers whose state is not durable, such as a private ``memory://``)."""
        self._dirty = {}
        if getattr(self, "_meta_dirty", False):
            self._meta_dirty = False

    def encode_key(self, key: Any) -> Any:
        """The changelog key for a store key (JSON-friendly)."""
        return key

    def decode_key(self, key: Any) -> Any:
        """Inverse of :meth:`encode_key`."""
        return key

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        """Apply changelog ``(key, value)`` records in order; return how many were applied."""
        raise NotImplementedError


class KeyValueStore(StateStore):
    """A key-value store (``None`` values are deletes, like Kafka tombstones)."""

    kind = "kv"

    def __init__(self, name: str, changelog: str) -> None:
        super().__init__(name, changelog)
        self.data: dict[Any, Any] = {}

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key`` or ``default``."""
        return self.data.get(key, default)

    def put(self, key: Any, value: Any) -> None:
        """Set ``key`` (``None`` deletes it)."""
        if value is None:
            self.delete(key)
            return
        self.data[key] = value
        self._dirty.pop(key, None)
        self._dirty[key] = value

    def delete(self, key: Any) -> None:
        """Remove ``key`` (a tombstone in the changelog)."""
        self.data.pop(key, None)
        self._dirty.pop(key, None)
        self._dirty[key] = None

    def __contains__(self, key: Any) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(self.data)

    def items(self) -> Iterator[tuple[Any, Any]]:
        """All ``(key, value)`` pairs."""
        return iter(list(self.data.items()))

    def restore(self, records: Iterable[tuple[Any, Any]]) -> int:
        count = 0
        for k, v in records:
            key = self.decode_key(k)
            if v is None:
                self.data.pop(key, None)
            else:
                self.data[key] = v
            count += 1
        return count
