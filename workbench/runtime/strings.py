"""String columns held by Apache Arrow: what a DataFrame's ``str`` column already is.

A DataFrame input with an Arrow-backed string column (pandas' default ``str`` dtype) keeps that
column as an :class:`ArrowStrings` inside a :class:`~workbench.runtime.batch.StructValues`.
Moving rows (a filter's mask, a slice of a log, a concatenation for ``run.frame``) is Arrow's
filter/take/slice, and ``run.frame`` wraps the Arrow data in the frame without a copy. Python
``str`` objects are made only when something reads the values themselves (a lambda step, an
expression on the column, a key, a serializer): once per column, one ``str`` per distinct value
when there are few (Arrow's dictionary encoding, then a take), and kept.

The class behaves like a 1-D ``object`` NumPy array for the code that reads columns
(``dtype``, ``len``, indexing, ``tolist``, ``np.asarray``, comparisons and NumPy functions
see the Python objects), so a consumer that does not know it still works, at the cost of
making the objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ArrowStrings", "pandas_string_dtype", "plain"]

_OBJECT = np.dtype(object)
#: rows looked at to decide whether the values repeat (dictionary-encode before making strs)
_PROBE = 2_000


class _Base:
    """The Arrow data that selections of a column index into, and its ``str`` objects once
    made."""

    __slots__ = ("arr", "objects")

    def __init__(self, arr: Any) -> None:
        self.arr = arr  # a pyarrow.ChunkedArray of string or large_string
        self.objects: np.ndarray | None = None

    def get_objects(self) -> np.ndarray:
        got = self.objects
        if got is None:
            got = self.objects = _to_objects(self.arr)
        return got


class ArrowStrings:
    """A string column without missing values: Arrow data and the rows selected from it.

    Selecting rows (a mask, a slice, an index array) only selects positions (``idx``, NumPy);
    concatenating selections of the same data concatenates positions. The strings are copied
    once, when a frame or a consumer needs them (:meth:`arrow`, :meth:`objects`)."""

    __slots__ = ("_objects", "base", "idx")
    dtype = _OBJECT
    ndim = 1
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, base: _Base, idx: np.ndarray | None = None) -> None:
        self.base = base
        #: the selected positions in ``base.arr`` (``None``: all of them, in order)
        self.idx = idx
        self._objects: np.ndarray | None = None

    @staticmethod
    def of(arr: Any) -> ArrowStrings:
        """The column of an Arrow string array (or chunked array)."""
        import pyarrow as pa

        if not isinstance(arr, pa.ChunkedArray):
            arr = pa.chunked_array([arr])
        return ArrowStrings(_Base(arr))

    # -- the array protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.base.arr) if self.idx is None else len(self.idx)

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    @property
    def size(self) -> int:
        return len(self)

    @property
    def nbytes(self) -> int:
        total = int(self.base.arr.nbytes)
        if self.idx is None:
            return total
        return int(self.idx.nbytes) + total * len(self.idx) // max(1, len(self.base.arr))

    def __repr__(self) -> str:
        return f"<ArrowStrings {len(self)} rows, {self.base.arr.type}>"

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, (int, np.integer)):
            return self.objects()[idx]
        n = len(self)
        if isinstance(idx, slice):
            start, stop, step = idx.indices(n)
            if self.idx is None and step == 1:
                pos = np.arange(start, max(start, stop), dtype=np.int64)
            else:
                pos = (np.arange(n, dtype=np.int64) if self.idx is None else self.idx)[idx]
            return ArrowStrings(self.base, pos)
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if len(idx) != n:
                raise IndexError(f"boolean index of length {len(idx)} for {n} rows")
            pos = np.flatnonzero(idx) if self.idx is None else self.idx[idx]
            return ArrowStrings(self.base, pos)
        if idx.dtype.kind not in "iu":
            raise IndexError(f"cannot index a string column with {idx.dtype}")
        if len(idx) and idx.min() < 0:
            idx = np.where(idx < 0, idx + n, idx)
        if len(idx) and idx.max() >= n:
            raise IndexError(f"index {int(idx.max())} is out of bounds for {n} rows")
        return ArrowStrings(self.base, idx.astype(np.int64) if self.idx is None
                            else self.idx[idx])

    def arrow(self) -> Any:
        """The selected rows as one Arrow chunked array."""
        import pyarrow as pa

        arr = self.base.arr
        if self.idx is None:
            return arr
        idx = self.idx
        if len(idx) * 8 > len(arr) and (len(idx) < 2 or bool((np.diff(idx) > 0).all())):
            # increasing positions, many of them (a filter's survivors): Arrow's filter copies
            # about twice as fast as its take
            mask = np.zeros(len(arr), dtype=bool)
            mask[idx] = True
            taken = arr.filter(pa.array(mask))
        else:
            taken = arr.take(pa.array(idx))
        # a ChunkedArray's take and filter are chunked too
        return taken if isinstance(taken, pa.ChunkedArray) else pa.chunked_array([taken])

    def objects(self) -> np.ndarray:
        """The values as an ``object`` array of ``str`` (made once, then kept)."""
        got = self._objects
        if got is None:
            whole = self.base.get_objects()
            got = self._objects = whole if self.idx is None else whole[self.idx]
        return got

    def tolist(self) -> list[Any]:
        return self.objects().tolist()  # type: ignore[no-any-return]

    def __iter__(self) -> Any:
        return iter(self.tolist())

    def astype(self, dtype: Any, copy: bool = True) -> np.ndarray:
        return self.objects().astype(dtype, copy=copy)

    def copy(self) -> ArrowStrings:
        return self  # immutable

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        got = self.objects()
        return got if dtype is None or np.dtype(dtype) == _OBJECT else got.astype(dtype)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        args = [plain(a) for a in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(plain(o) for o in kwargs["out"])
        return getattr(ufunc, method)(*args, **kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return func(*_plain_all(args), **{k: _plain_all(v) for k, v in kwargs.items()})

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        return self.objects() == plain(other)

    def __ne__(self, other: Any) -> Any:  # type: ignore[override]
        return self.objects() != plain(other)

    def __lt__(self, other: Any) -> Any:
        return self.objects() < plain(other)

    def __le__(self, other: Any) -> Any:
        return self.objects() <= plain(other)

    def __gt__(self, other: Any) -> Any:
        return self.objects() > plain(other)

    def __ge__(self, other: Any) -> Any:
        return self.objects() >= plain(other)

    def __add__(self, other: Any) -> Any:
        return self.objects() + plain(other)

    def __radd__(self, other: Any) -> Any:
        return plain(other) + self.objects()

    # -- what the engine uses ---------------------------------------------------------------
    @staticmethod
    def concat(parts: list[ArrowStrings]) -> ArrowStrings:
        """The parts one after the other: their positions when they select from the same data,
        else the Arrow chunks of each (no string is copied twice)."""
        import pyarrow as pa

        other = next((type(p) for p in parts if type(p) is not ArrowStrings), None)
        if other is not None:  # (a subclass's parts: runtime/nested.py)
            return other.concat(parts)  # type: ignore[no-any-return]
        base = parts[0].base
        if all(p.base is base for p in parts):
            whole = len(base.arr)
            return ArrowStrings(base, np.concatenate([
                np.arange(whole, dtype=np.int64) if p.idx is None else p.idx for p in parts]))
        arrays = [p.arrow() for p in parts]
        types = {a.type for a in arrays}
        kind = types.pop() if len(types) == 1 else pa.large_string()
        chunks = [c if c.type == kind else c.cast(kind) for a in arrays for c in a.chunks]
        return ArrowStrings.of(pa.chunked_array(chunks, kind))

    def series(self, pd: Any) -> Any:
        """A pandas ``Series`` of this column, with the dtype pandas gives a list of ``str``
        (its default string dtype), built from the Arrow data."""
        import pyarrow as pa

        dtype = pandas_string_dtype()
        if not isinstance(dtype, pd.StringDtype) or dtype.storage != "pyarrow":
            return pd.Series(self.objects(), dtype=dtype)  # pandas without Arrow strings
        arr = self.arrow()
        if arr.type != pa.large_string():
            arr = arr.cast(pa.large_string())
        return pd.Series(pd.arrays.ArrowStringArray(arr, dtype=dtype), copy=False)


#: pandas' default dtype of a column of ``str`` (asked once per process)
_STRING_DTYPE: list[Any] = []


def pandas_string_dtype() -> Any:
    """The dtype pandas gives a list of ``str`` (its default string dtype: Arrow's ``str``
    since pandas 3, ``object`` before unless ``future.infer_string`` is set), asked once per
    process: every frame column of strings and every stored string field needs it."""
    if not _STRING_DTYPE:
        import pandas as pd

        _STRING_DTYPE.append(pd.Series(["x"]).dtype)
    return _STRING_DTYPE[0]


def arrow_is_pandas_string() -> bool:
    """Whether pandas' default string dtype holds Arrow strings (see
    :func:`pandas_string_dtype`)."""
    import pandas as pd

    dtype = pandas_string_dtype()
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"


def plain(col: Any) -> np.ndarray:
    """``col`` as NumPy sees it: an :class:`ArrowStrings` becomes its ``object`` array."""
    return col.objects() if isinstance(col, ArrowStrings) else col  # type: ignore[no-any-return]


def _plain_all(x: Any) -> Any:
    if isinstance(x, ArrowStrings):
        return x.objects()
    if isinstance(x, (list, tuple)):
        return type(x)(_plain_all(v) for v in x)
    return x


def _to_objects(arr: Any) -> np.ndarray:
    """``str`` per row; one ``str`` per distinct value when the values repeat."""
    import pyarrow.compute as pc

    n = len(arr)
    out = np.empty(n, dtype=object)
    if n == 0:
        return out
    whole = arr.combine_chunks()
    if n >= 10_000 and len(pc.unique(whole.slice(0, _PROBE))) <= _PROBE // 10:
        encoded = whole.dictionary_encode()
        words = np.empty(len(encoded.dictionary), dtype=object)
        words[:] = encoded.dictionary.to_pylist()
        return words[encoded.indices.to_numpy(zero_copy_only=False)]  # type: ignore[no-any-return]
    out[:] = whole.to_pylist()
    return out


def from_series(series: Any) -> ArrowStrings | None:
    """A DataFrame column as :class:`ArrowStrings` when pandas holds it as Arrow strings
    without missing values, else ``None``."""
    import pandas as pd

    arrow_types = tuple(t for t in (getattr(pd.arrays, "ArrowStringArray", None),
                                    getattr(pd.arrays, "ArrowExtensionArray", None)) if t)
    if not isinstance(series.array, arrow_types):
        return None
    import pyarrow as pa

    arr = series.array.__arrow_array__()
    if not isinstance(arr, pa.ChunkedArray):
        arr = pa.chunked_array([arr])
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    if arr.null_count:
        return None
    return ArrowStrings.of(arr)
