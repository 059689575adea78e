"""Grouped running folds of the built-in aggregate functions on columns, exact as a
record-by-record Python loop.

The built-ins of ``agg()`` (``sum``, ``count``, ``min``, ``max``, ``mean``, ``first``,
``last``) and ``count()`` are folded per group in record order. Sums add in record order
(float addition is not associative, so a pairwise or compensated sum would differ from the
plain loop in the last bits); to stay vectorized, rows are processed in *lockstep*: step ``k``
adds the ``k``-th row of every group at once, so the number of NumPy operations is the size of
the largest group in the batch, not the number of rows. Counts need no loop at all.

An accumulator column set (:class:`Accs`) holds one entry per group: per part, a value array
and, where the function has an empty state (``min``, ``max``, ``first``, ``last``), a ``has``
mask; ``mean`` keeps a sum and a count. :func:`to_python` / :func:`from_python` convert one
group's accumulators to and from the row operators' accumulator objects, which are what
changelogs hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["VECTOR_FUNCS", "Accs", "Part", "fold", "from_python", "parts_of", "to_python"]

#: built-in functions computed on columns
VECTOR_FUNCS = frozenset({"sum", "count", "min", "max", "mean", "first", "last"})

Part = tuple[str | None, str | None, str]  # (output name or None for count(), column, func)


def parts_of(agg: Any) -> list[Part] | None:
    """The parts of an aggregation the engine can fold on columns, or ``None``."""
    if agg.reducer:
        return None
    if agg.kind == "count" and agg.finalize is None:
        return [(None, None, "count")]
    if agg.kind == "agg" and agg.parts and all(f in VECTOR_FUNCS for _o, _c, f in agg.parts):
        return list(agg.parts)
    return None


@dataclass
class Accs:
    """Accumulators of ``n`` groups: ``vals[i]`` (and ``has[i]``, ``cnt[i]``) per part."""

    vals: list[np.ndarray]
    has: list[np.ndarray | None]
    cnt: list[np.ndarray | None]

    def __len__(self) -> int:
        return len(self.vals[0]) if self.vals else 0

    def take(self, idx: Any) -> Accs:
        return Accs([v[idx] for v in self.vals],
                    [None if h is None else h[idx] for h in self.has],
                    [None if c is None else c[idx] for c in self.cnt])

    @staticmethod
    def concat(parts: Sequence[Accs]) -> Accs:
        first = parts[0]
        n = len(first.vals)
        vals = [_cat([p.vals[i] for p in parts]) for i in range(n)]
        has = [None if first.has[i] is None else np.concatenate([p.has[i] for p in parts])
               for i in range(n)]
        cnt = [None if first.cnt[i] is None else np.concatenate([p.cnt[i] for p in parts])
               for i in range(n)]
        return Accs(vals, has, cnt)


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    kinds = {a.dtype for a in arrays if len(a)}
    if len(kinds) <= 1:
        return np.concatenate(arrays) if kinds else arrays[0]
    # int and float accumulators of different groups stay Python objects (each its own type)
    return np.concatenate([a.astype(object) for a in arrays])


def empty(parts: Sequence[Part], n: int, dtypes: Sequence[Any] | None = None) -> Accs:
    """Fresh accumulators (``init()``) for ``n`` groups; ``dtypes`` per part (default
    ``int64``): a sum's zero takes its column's type, so that ``0 + x`` keeps ``x``'s type."""
    vals: list[np.ndarray] = []
    has: list[np.ndarray | None] = []
    cnt: list[np.ndarray | None] = []
    for i, (_out, _col, func) in enumerate(parts):
        dtype = dtypes[i] if dtypes is not None else np.int64
        if func == "count":
            vals.append(np.zeros(n, dtype=np.int64))
            has.append(None)
            cnt.append(None)
        elif func == "sum":
            vals.append(np.zeros(n, dtype=dtype))
            has.append(None)
            cnt.append(None)
        elif func == "mean":
            vals.append(np.zeros(n, dtype=dtype))
            has.append(None)
            cnt.append(np.zeros(n, dtype=np.int64))
        else:  # min, max, first, last
            vals.append(np.zeros(n, dtype=dtype) if dtype is not object
                        else np.full(n, None, dtype=object))
            has.append(np.zeros(n, dtype=bool))
            cnt.append(None)
    return Accs(vals, has, cnt)


def _promote(acc: np.ndarray, col: np.ndarray) -> np.ndarray:
    if acc.dtype == col.dtype or col.dtype.kind not in "if":
        return acc if col.dtype.kind in "if" else acc.astype(object)
    if acc.dtype.kind in "i" and col.dtype.kind == "f":
        return acc.astype(np.float64)
    return acc


def fold(parts: Sequence[Part], cols: Sequence[np.ndarray | None], present: np.ndarray | None,
         gid: np.ndarray, init: Accs, *, per_row: bool
         ) -> tuple[Accs, list[np.ndarray] | None, list[np.ndarray] | None]:
    """Fold rows into their groups.

    Args:
        parts: the aggregation's parts.
        cols: per part, the column of the rows (``None`` for a bare count).
        present: per row, False where the whole value is ``None`` (a bare count still counts
            it; the column functions skip it), or ``None`` when every value is present.
        gid: per row, its group (``0 .. len(init) - 1``); rows are in record order.
        init: the groups' accumulators before these rows (modified in place and returned).
        per_row: also return, per part, the published value after and before each row
            (``object`` arrays; ``None`` before a group's first value where that is empty).

    Returns:
        ``(final accumulators, after per row, before per row)``.
    """
    n = len(gid)
    groups = len(init)
    if n == 0:
        return init, ([] if per_row else None), ([] if per_row else None)
    # rows ordered by group (for running counts) and lockstep steps (for the other
    # functions): computed only when a part needs them
    grouped: tuple[np.ndarray, np.ndarray] | None = None
    steps: list[np.ndarray] = []
    if per_row or any(f != "count" for _o, _c, f in parts):
        order = np.argsort(gid, kind="stable")
        sizes = np.bincount(gid, minlength=groups)
        first_row = np.cumsum(sizes) - sizes
        grouped = (order, first_row)
        if any(f != "count" for _o, _c, f in parts):
            pos = np.empty(n, dtype=np.int64)
            pos[order] = np.arange(n, dtype=np.int64) - first_row[gid[order]]
            maxlen = int(sizes.max())
            by_pos = np.argsort(pos, kind="stable")
            bounds = np.searchsorted(pos[by_pos], np.arange(maxlen + 1))
            steps = [(by_pos[bounds[k]:bounds[k + 1]]) for k in range(maxlen)]
    live = np.ones(n, dtype=bool) if present is None else present
    after: list[np.ndarray] = []
    before: list[np.ndarray] = []
    for i, (_out, _col, func) in enumerate(parts):
        col = cols[i]
        acc = init.vals[i]
        if func == "count":
            # a bare count counts every record, also one whose value is None
            if col is None:
                counted = np.bincount(gid, minlength=groups)
                add = None
            else:
                add = (live & _not_null(col)).astype(np.int64)
                counted = _bincount_int(gid, add, groups)
            if per_row:
                # counts need no loop: the running count is the group's start plus a cumsum
                assert grouped is not None
                if add is None:
                    add = np.ones(n, dtype=np.int64)
                run = _grouped_cumsum_int(add, gid, *grouped)
                start = acc[gid]
                after.append((start + run).astype(object))
                before.append((start + run - add).astype(object))
            init.vals[i] = acc + counted
            continue
        assert col is not None
        usable = live & _not_null(col)
        acc = _promote(acc, col)
        has = init.has[i]
        cnt = init.cnt[i]
        if per_row:
            out_after = np.empty(n, dtype=object)
            out_before = np.empty(n, dtype=object)
        for rows in steps:
            g = gid[rows]
            x = col[rows]
            use = usable[rows]
            if func == "sum":
                old = acc[g]
                new = np.where(use, old + np.where(use, x, 0), old) if not use.all() \
                    else old + x
                acc[g] = new
                if per_row:
                    out_before[rows] = old.tolist()
                    out_after[rows] = new.tolist()
            elif func == "mean":
                assert cnt is not None
                old_s, old_c = acc[g], cnt[g]
                if use.all():
                    new_s, new_c = old_s + x, old_c + 1
                else:
                    new_s = np.where(use, old_s + np.where(use, x, 0), old_s)
                    new_c = old_c + use
                acc[g] = new_s
                cnt[g] = new_c
                if per_row:
                    out_before[rows] = _means(old_s, old_c)
                    out_after[rows] = _means(new_s, new_c)
            elif func in ("min", "max"):
                assert has is not None
                old_v, old_h = acc[g], has[g]
                better = (x < old_v) if func == "min" else (x > old_v)
                take = use & (~old_h | better)
                new_v = np.where(take, x, old_v)
                new_h = old_h | use
                acc[g] = new_v
                has[g] = new_h
                if per_row:
                    out_before[rows] = _maybe(old_v, old_h)
                    out_after[rows] = _maybe(new_v, new_h)
            else:  # first, last: the field of the first/last record, None included
                assert has is not None
                old_v, old_h = acc[g], has[g]
                take = live[rows] & ~old_h if func == "first" else live[rows]
                if acc.dtype != x.dtype:
                    acc = acc.astype(x.dtype if x.dtype != object and not has.any()
                                     else object)
                    old_v = acc[g]
                new_v = np.where(take, x, old_v) if x.dtype != object else _where_obj(
                    take, x, old_v)
                new_h = old_h | live[rows]
                acc[g] = new_v
                has[g] = new_h
                if per_row:
                    out_before[rows] = _maybe(old_v, old_h)
                    out_after[rows] = _maybe(new_v, new_h)
        init.vals[i] = acc
        if per_row:
            after.append(out_after)
            before.append(out_before)
    return init, (after if per_row else None), (before if per_row else None)


def _not_null(col: np.ndarray) -> np.ndarray:
    if col.dtype != object:
        return np.ones(len(col), dtype=bool)
    return np.array([x is not None for x in col.tolist()], dtype=bool)


def _bincount_int(gid: np.ndarray, add: np.ndarray, groups: int) -> np.ndarray:
    out = np.zeros(groups, dtype=np.int64)
    np.add.at(out, gid, add)
    return out


def _grouped_cumsum_int(add: np.ndarray, gid: np.ndarray, order: np.ndarray,
                        first_row: np.ndarray) -> np.ndarray:
    """Per row, the running sum of ``add`` within its group (integers: exact)."""
    sorted_add = add[order]
    csum = np.cumsum(sorted_add)
    g_sorted = gid[order]
    base = np.concatenate(([0], csum))[first_row[g_sorted]]
    run_sorted = csum - base
    run: np.ndarray = np.empty_like(run_sorted)
    run[order] = run_sorted
    return run


def _means(s: np.ndarray, c: np.ndarray) -> list[Any]:
    return [a / b if b else None for a, b in zip(s.tolist(), c.tolist())]


def _maybe(v: np.ndarray, h: np.ndarray) -> list[Any]:
    return [a if b else None for a, b in zip(v.tolist(), h.tolist())]


def _where_obj(take: np.ndarray, x: np.ndarray, old: np.ndarray) -> np.ndarray:
    out = old.astype(object)
    out[take] = x[take]
    return out


def published(parts: Sequence[Part], accs: Accs, i: int | None = None) -> list[np.ndarray]:
    """Per part, the published values of every group: typed columns where every value has
    one type, else ``object`` arrays with ``None`` for empty ``min``/``max``/``first``/
    ``last`` and a mean of nothing."""
    out: list[np.ndarray] = []
    for j, (_o, _c, func) in enumerate(parts):
        v = accs.vals[j]
        if func in ("count", "sum"):
            out.append(v)
        elif func == "mean":
            cnt = accs.cnt[j]
            assert cnt is not None
            if len(v) and cnt.all() and v.dtype.kind in "if":
                out.append(v / cnt)
            else:
                res = np.empty(len(v), dtype=object)
                res[:] = _means(v, cnt)
                out.append(res)
        else:
            has = accs.has[j]
            assert has is not None
            if has.all():
                out.append(v)
            else:
                res = np.empty(len(v), dtype=object)
                res[:] = _maybe(v, has)
                out.append(res)
    return out


# -- the row operators' accumulator objects ------------------------------------------------
def to_python(parts: Sequence[Part], accs: Accs) -> list[Any]:
    """Per group, the accumulator object the row operator keeps (``agg``: a dict by output
    name; ``count()``: an int)."""
    cols: list[list[Any]] = []
    for j, (_o, _c, func) in enumerate(parts):
        v = accs.vals[j].tolist()
        if func in ("count", "sum"):
            cols.append(v)
        elif func == "mean":
            cnt = accs.cnt[j]
            assert cnt is not None
            cols.append([[a, b] for a, b in zip(v, cnt.tolist())])
        elif func in ("min", "max"):
            has = accs.has[j]
            assert has is not None
            cols.append([a if b else None for a, b in zip(v, has.tolist())])
        else:
            has = accs.has[j]
            assert has is not None
            cols.append([[a] if b else [] for a, b in zip(v, has.tolist())])
    if parts[0][0] is None:  # count(): the accumulator is the count itself
        return cols[0]
    names = [p[0] for p in parts]
    return [dict(zip(names, row)) for row in zip(*cols)]


def from_python(parts: Sequence[Part], objs: Sequence[Any]) -> Accs:
    """Accumulators from the row operators' accumulator objects (see :func:`to_python`)."""
    from .batch import column

    n = len(objs)
    accs = empty(parts, n)
    if not n:
        return accs
    scalar = parts[0][0] is None
    for j, (out, _c, func) in enumerate(parts):
        items = [o if scalar else o[out] for o in objs]
        if func in ("count", "sum"):
            # mixed int and float sums stay Python objects, so each keeps its type
            accs.vals[j] = column(items)
        elif func == "mean":
            accs.vals[j] = _num([x[0] for x in items])
            accs.cnt[j] = np.array([x[1] for x in items], dtype=np.int64)
        elif func in ("min", "max"):
            has = np.array([x is not None for x in items], dtype=bool)
            accs.has[j] = has
            vals = [x if x is not None else 0 for x in items]
            accs.vals[j] = _num(vals)
        else:
            has = np.array([bool(x) for x in items], dtype=bool)
            accs.has[j] = has
            accs.vals[j] = column([x[0] if x else None for x in items])
    return accs


def _num(values: list[Any]) -> np.ndarray:
    from .batch import column

    return column(values)
