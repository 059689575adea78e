"""A cheap estimate of the memory a column batch holds (for ``Engine(max_buffered_bytes=)``).

NumPy columns count their ``nbytes``. An ``object`` column counts its pointers plus, for the
Python objects they point to, the mean size of a few evenly spaced samples (each measured one
level deep: a dict's or tuple's own size plus its values') times the rows. The cost does not
grow with the rows of a batch: no deep ``sizeof`` of every record. Objects shared between
batches are counted in each, so the estimate errs on the high side.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .batch import ChangeValues, ObjectValues, StructValues, WindowedKeys
from .strings import ArrowStrings

__all__ = ["batch_nbytes", "column_nbytes", "object_nbytes"]

#: object values sampled per object column
SAMPLES = 8

_getsizeof = sys.getsizeof


def object_nbytes(value: Any) -> int:
    """The size of ``value`` and, for a dict, list or tuple, of its items (one level)."""
    size = _getsizeof(value)
    if isinstance(value, dict):
        size += sum(map(_getsizeof, value.values()))
    elif isinstance(value, list | tuple):
        size += sum(map(_getsizeof, value))
    return size


def column_nbytes(arr: Any) -> int:
    """The estimated bytes of one column (a NumPy array)."""
    if not isinstance(arr, np.ndarray):
        return int(arr.nbytes) if isinstance(arr, ArrowStrings) else 0
    n = len(arr)
    size = int(arr.nbytes)
    if arr.dtype != object or n == 0:
        return size
    step = max(1, n // SAMPLES)
    sample = arr[::step][:SAMPLES].tolist()
    return size + n * sum(map(object_nbytes, sample)) // len(sample)


def _values_nbytes(values: Any) -> int:
    if isinstance(values, ObjectValues):
        return column_nbytes(values.arr)
    if isinstance(values, StructValues):
        return sum(map(column_nbytes, values.cols.values())) + column_nbytes(values.present)
    if isinstance(values, ChangeValues):
        return _values_nbytes(values.new) + _values_nbytes(values.old)
    return 0


def batch_nbytes(batch: Any) -> int:
    """The estimated bytes of a :class:`~workbench.runtime.batch.Batch`'s columns."""
    keys = batch.keys
    if isinstance(keys, WindowedKeys):
        size = column_nbytes(keys.inner) + keys.start.nbytes + keys.end.nbytes
    else:
        size = column_nbytes(keys)
    size += _values_nbytes(batch.values) + column_nbytes(batch.ts) + column_nbytes(batch.seq)
    if batch.headers is not None:
        size += column_nbytes(batch.headers)
    return int(size)
