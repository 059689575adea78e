"""A table's current values in numbered slots, for looking up a whole column of keys at once.

The stream-table join keeps the table it joins with in a :class:`~.table_ops.TableStore`
(``data``: key identity -> value; the store's changelog and restore work on it). The column
operator (:mod:`.join_vec`) mirrors that dict in a :class:`TableSlots`:

* every key ever put gets a slot (``slot[key]``); a deleted key keeps its slot, marked absent,
  so positions never move (the join builds new slots from the store when most are deleted);
* ``lookup(keys)`` finds the slots of a key column with one hash-table probe per key in C
  (a pandas ``Index`` over the slots' keys, built again when many keys were added since);
* ``vals`` holds the values by slot (``None``: absent), so the table values of a batch are one
  array gather;
* ``columns()`` gives the values as named columns by slot when every present value is a dict
  with the same fields in the same order (the shape ``{**stream, **table}`` merges column-wise);
  updates patch only the slots they changed.

Keys must be ``str`` or ``int`` (their identity is themselves, :func:`~workbench.keys.key_id`);
the join sends batches with other keys through the row operator and rebuilds the slots from the
store afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .batch import column, obj_array

__all__ = ["TableSlots"]

class TableSlots:
    """See the module docstring."""

    __slots__ = ("_bad", "_cols", "_dirty", "_index", "_indexed", "_int_index", "_names",
                 "keys", "live", "n", "slot", "vals")

    def __init__(self) -> None:
        self.slot: dict[Any, int] = {}
        self.keys: list[Any] = []
        self.n = 0
        self.vals = np.empty(16, dtype=object)
        self.live = np.zeros(16, dtype=bool)
        self._index: Any = None  # pandas Index over keys[:_indexed]
        self._indexed = 0
        self._int_index = False
        #: field names of the dict values and their columns by slot (``None``: not built)
        self._names: tuple[str, ...] | None = None
        self._cols: dict[str, np.ndarray] | None = None
        #: slots changed since the columns were last brought up to date
        self._dirty: list[np.ndarray] = []
        #: slots whose present value does not have the columns' shape
        self._bad: set[int] = set()

    @staticmethod
    def from_dict(data: dict[Any, Any]) -> TableSlots:
        """Slots for a store's ``data`` (keys in the dict's order)."""
        t = TableSlots()
        if data:
            t.put(list(data), list(data.values()))
        return t

    # -- updates ------------------------------------------------------------------------------
    def _grow(self, n: int) -> None:
        cap = len(self.vals)
        if n <= cap:
            return
        cap = max(n, 2 * cap)
        vals = np.empty(cap, dtype=object)
        vals[:self.n] = self.vals[:self.n]
        live = np.zeros(cap, dtype=bool)
        live[:self.n] = self.live[:self.n]
        self.vals, self.live = vals, live
        if self._cols is not None:
            self._cols = {f: _grown(c, cap, self.n) for f, c in self._cols.items()}

    def put(self, keys: Sequence[Any], values: Sequence[Any]) -> None:
        """Apply ``table[keys[i]] = values[i]`` in order (``None``: delete)."""
        get = self.slot.get
        found = list(map(get, keys))
        if None in found:
            for i, s in enumerate(found):
                if s is None:
                    k = keys[i]
                    s = self.slot.get(k)
                    if s is None:
                        s = self.slot[k] = len(self.keys)
                        self.keys.append(k)
                    found[i] = s
            self._grow(len(self.keys))
            self.n = len(self.keys)
        slots = np.array(found, dtype=np.int64)
        vals = obj_array(values, len(slots))
        if len(slots) > 1:  # the last value of each slot wins
            _u, first_rev = np.unique(slots[::-1], return_index=True)
            last = len(slots) - 1 - first_rev
            slots, vals = slots[last], vals[last]
        self.vals[slots] = vals
        self.live[slots] = np.fromiter((v is not None for v in vals.tolist()), dtype=bool,
                                       count=len(vals))
        if self._cols is not None or self._names is not None:
            self._dirty.append(slots)

    # -- reading ------------------------------------------------------------------------------
    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The slot of each key whose value is present, else -1 (``keys``: an ``int64`` array,
        or ``object`` of ``str``/``int``/``None``)."""
        n = self.n
        if not n:
            return np.full(len(keys), -1, dtype=np.int64)
        if self._index is None or n - self._indexed > max(64, self._indexed // 8):
            self._build_index()
        index = self._index
        if keys.dtype == np.int64 and self._int_index:
            pos = index.get_indexer(keys)
        else:
            import pandas as pd

            if self._int_index:
                index = self._object_index()
            q = keys if keys.dtype == object else keys.astype(object)
            pos = index.get_indexer(pd.Index(q, dtype=object, copy=False))
        pos = pos.astype(np.int64, copy=False)
        if self._indexed < n:  # keys added since the index was built
            miss = np.flatnonzero(pos < 0)
            if len(miss):
                get = self.slot.get
                pos[miss] = [get(k, -1) for k in keys[miss].tolist()]
        hit = pos >= 0
        if hit.any():
            gone = hit.copy()
            gone[hit] = ~self.live[pos[hit]]
            if gone.any():
                pos[gone] = -1
        out: np.ndarray = pos
        return out

    def _build_index(self) -> None:
        import pandas as pd

        keys = column(self.keys)
        self._int_index = keys.dtype == np.int64
        self._index = pd.Index(keys, dtype=keys.dtype, copy=False)
        self._indexed = len(keys)

    def _object_index(self) -> Any:
        import pandas as pd

        return pd.Index(obj_array(self.keys[:self._indexed], self._indexed), dtype=object)

    def values_at(self, pos: np.ndarray) -> np.ndarray:
        """The values at slots ``pos`` (``None`` where ``pos`` is -1)."""
        out = self.vals[np.where(pos >= 0, pos, 0)] if self.n else np.full(len(pos), None)
        miss = pos < 0
        if miss.any():
            out = out.copy()
            out[miss] = None
        return out

    def columns(self) -> dict[str, np.ndarray] | None:
        """The present values as columns by slot, when every one is a dict with the same fields
        in the same order, else ``None``."""
        if self._cols is None:
            self._build_columns()
        elif self._dirty:
            self._patch(np.unique(np.concatenate(self._dirty)))
        self._dirty = []
        if self._bad or self._cols is None:
            return None
        return self._cols

    def _build_columns(self) -> None:
        n = self.n
        idx = np.flatnonzero(self.live[:n])
        vals = self.vals[idx].tolist()
        self._bad = set()
        if not vals:
            self._names = None
            self._cols = {}
            return
        names = tuple(vals[0]) if vals[0].__class__ is dict else ()
        self._names = names
        ok = [v.__class__ is dict and tuple(v) == names for v in vals]
        if not all(ok):
            self._bad = {s for s, good in zip(idx.tolist(), ok) if not good}
            vals = [v for v, good in zip(vals, ok) if good]
            idx = idx[np.array(ok, dtype=bool)]
        cap = len(self.vals)
        cols = {}
        for f in names:
            col = _shared_strings(column([v[f] for v in vals]))
            full = np.empty(cap, dtype=col.dtype) if col.dtype == object else np.zeros(
                cap, dtype=col.dtype)
            full[idx] = col
            cols[f] = full
        self._cols = cols

    def _patch(self, slots: np.ndarray) -> None:
        """Bring the columns up to date for the values at ``slots``."""
        vals = self.vals[slots].tolist()
        names = self._names
        bad = self._bad
        good: list[int] = []
        gvals: list[dict[str, Any]] = []
        for s, v in zip(slots.tolist(), vals):
            if v is None:
                bad.discard(s)
            elif v.__class__ is dict and names is not None and tuple(v) == names:
                bad.discard(s)
                good.append(s)
                gvals.append(v)
            else:
                bad.add(s)
        if names is None:  # the table had no values when the columns were built
            self._cols = None
            self._build_columns()
            return
        if not gvals:
            return
        assert self._cols is not None
        at = np.array(good, dtype=np.int64)
        for f in names:
            new = column([v[f] for v in gvals])
            col = self._cols[f]
            if col.dtype != object and new.dtype != col.dtype:
                col = self._cols[f] = col.astype(object)
            col[at] = new


def _grown(col: np.ndarray, cap: int, n: int) -> np.ndarray:
    out = np.empty(cap, dtype=col.dtype) if col.dtype == object else np.zeros(cap, col.dtype)
    out[:n] = col[:n]
    return out


def _shared_strings(col: np.ndarray) -> np.ndarray:
    """An ``object`` column of strings with equal strings as one object (a table's repeated
    values, such as a country, then group and hash as few objects downstream); other columns
    as they are."""
    if col.dtype != object or not len(col):
        return col
    if set(map(type, col.tolist())) != {str}:  # exactly str: equal values are alike
        return col
    import pandas as pd

    codes, uniques = pd.factorize(col)
    if len(uniques) * 2 > len(col):
        return col
    first = np.empty(len(uniques), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(col) - 1, -1, -1, dtype=np.int64)
    shared: np.ndarray = col[first][codes]
    return shared
