"""Columns of nested values (lists, dicts, datetimes) kept decoded but not yet Python objects.

A serde that decodes a batch into columns (Protobuf's batch path,
:mod:`workbench.serde.protobuf_wire`) holds a nested field as a :class:`Lazy` tree: the leaf
values of the whole batch in flat lists or NumPy arrays, the number of values of each row
(list and map lengths, whether a message is set) and the function that builds the row values
from them. The column (:class:`NestedColumn`) makes its Python objects once, when something
reads them: a lambda step, an expression on the field, a frame, a serializer. A pipeline that
never reads the field never makes its dicts and lists.

:class:`NestedColumn` is an :class:`~workbench.runtime.strings.ArrowStrings` for the engine:
the same contract (selections are positions into the shared data; ``objects()`` gives the
``object`` array, made once and kept; a frame shows the objects exactly as a list of them
would be shown), so the engine's code for lazily made columns serves both.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from .strings import ArrowStrings

__all__ = ["Lazy", "NestedColumn", "force"]


class Lazy:
    """``fn(*args)`` made on demand (once): a column of ``n`` Python values. Arguments that
    are themselves :class:`Lazy` are made first."""

    __slots__ = ("args", "fn", "n")

    def __init__(self, n: int, fn: Callable[..., list[Any]], *args: Any) -> None:
        self.n = n
        self.fn = fn
        self.args = args

    def get(self) -> list[Any]:
        """The values (the arguments made first)."""
        return self.fn(*[a.get() if isinstance(a, Lazy) else a for a in self.args])

    def nbytes(self) -> int:
        """An estimate of the bytes its data holds (the lists and arrays it will be made of)."""
        total = 0
        for a in self.args:
            if isinstance(a, Lazy):
                total += a.nbytes()
            elif isinstance(a, np.ndarray):
                total += int(a.nbytes)
            elif isinstance(a, list) and a:
                total += sys.getsizeof(a) + len(a) * sys.getsizeof(a[0])
            elif hasattr(a, "__len__") and not isinstance(a, str | bytes | dict):
                total += 16 * len(a)  # (values held elsewhere: protobuf's containers)
        return total


def force(col: Any) -> Any:
    """``col``'s values when it is :class:`Lazy`, else ``col``."""
    return col.get() if isinstance(col, Lazy) else col


class _Base:
    """The data selections of a nested column index into, and its objects once made."""

    __slots__ = ("lazy", "objects")

    def __init__(self, lazy: Lazy) -> None:
        self.lazy = lazy
        self.objects: np.ndarray | None = None

    def get_objects(self) -> np.ndarray:
        got = self.objects
        if got is None:
            import gc

            out = np.empty(self.lazy.n, dtype=object)
            paused = gc.isenabled()
            if paused:  # (hundreds of thousands of acyclic dicts and lists: as the engine does)
                gc.disable()
            try:
                values = self.lazy.get()
            finally:
                if paused:
                    gc.enable()
            if len(values) != self.lazy.n:
                raise AssertionError(f"a nested column made {len(values)} values for "
                                     f"{self.lazy.n} rows")
            out[:] = values
            got = self.objects = out
            self.lazy = Lazy(self.lazy.n, list)  # (the data is no longer needed)
        return got


class NestedColumn(ArrowStrings):
    """A column of nested Python values (dicts, lists, datetimes, ``None``) made on demand from
    decoded data (a :class:`Lazy`) and the rows selected from it."""

    __slots__ = ()

    def __init__(self, base: Any, idx: np.ndarray | None = None) -> None:
        super().__init__(base, idx)

    @staticmethod
    def of(lazy: Any) -> NestedColumn:
        """The column of all ``lazy.n`` values of ``lazy``."""
        return NestedColumn(_Base(lazy))

    def _data(self) -> _Base:
        return cast(_Base, self.base)

    def __len__(self) -> int:
        return self._data().lazy.n if self.idx is None else len(self.idx)

    @property
    def nbytes(self) -> int:
        base = self._data()
        whole = (base.lazy.nbytes() if base.objects is None
                 else int(base.objects.nbytes) + 64 * len(base.objects))
        n = base.lazy.n
        if self.idx is None:
            return whole
        return int(self.idx.nbytes) + whole * len(self.idx) // max(1, n)

    def __repr__(self) -> str:
        return f"<NestedColumn {len(self)} rows>"

    def __getitem__(self, idx: Any) -> Any:
        got = super().__getitem__(idx)
        if isinstance(got, ArrowStrings):
            return NestedColumn(self.base, got.idx)
        return got

    def arrow(self) -> Any:
        """The values as an Arrow array (from the Python objects)."""
        import pyarrow as pa

        return pa.chunked_array([pa.array(self.objects().tolist())])

    @staticmethod
    def concat(parts: list[Any]) -> Any:  # type: ignore[override]
        """The parts one after the other: their positions when they select from the same data,
        else an ``object`` array of their values."""
        base = cast(_Base, parts[0].base)
        if all(isinstance(p, NestedColumn) and p._data() is base for p in parts):
            n = base.lazy.n if base.objects is None else len(base.objects)
            return NestedColumn(base, np.concatenate([
                np.arange(n, dtype=np.int64) if p.idx is None else p.idx for p in parts]))
        return np.concatenate([p.objects() for p in parts])

    def series(self, pd: Any) -> Any:
        """The pandas ``Series`` a frame shows: that of the ``object`` array of the values."""
        from ..frames import _column_series

        return _column_series(self.objects(), pd)
