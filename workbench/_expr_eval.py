"""Evaluation of :mod:`workbench.expressions` on NumPy columns (imported when a batch needs it).

Columns are 1-D arrays: ``int64``/``float64``/``bool`` hold no nulls; ``object`` arrays hold
Python values with ``None`` as null. An operation on a column with nulls runs on the non-null
rows and leaves null elsewhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .expressions import _OPS, Expr, Getter

__all__ = ["as_bool_mask", "evaluate"]


def _homogeneous(values: list[Any]) -> np.ndarray | None:
    """A typed array for a list of non-null values of one numeric/bool type, else None."""
    if not values:
        return None
    types = set(map(type, values))
    if len(types) != 1:
        return None
    kind = next(iter(types))
    try:
        if kind is int:
            return np.array(values, dtype=np.int64)
        if kind is float:
            return np.array(values, dtype=np.float64)
        if kind is bool:
            return np.array(values, dtype=bool)
    except OverflowError:
        return None
    return None


def _prep(a: Any) -> tuple[Any, np.ndarray | None]:
    """``(values, null mask or None)``; object columns without nulls become typed when they
    can."""
    if not isinstance(a, np.ndarray) or a.dtype != object:
        return a, None
    items = a.tolist()
    nulls = [x is None for x in items]
    if any(nulls):
        return a, np.array(nulls, dtype=bool)
    typed = _homogeneous(items)
    return (typed if typed is not None else a), None


def _result(values: Any, nulls: np.ndarray | None, n: int) -> Any:
    if nulls is None:
        return values
    out = np.full(n, None, dtype=object)
    keep = ~nulls
    if np.ndim(values) == 0:
        out[keep] = values
    else:
        out[keep] = values.tolist() if isinstance(values, np.ndarray) else values
    return out


def _sub(a: Any, keep: np.ndarray | None) -> Any:
    if keep is None or not isinstance(a, np.ndarray):
        return a
    return a[keep]


def _binary(op: str, a: Any, b: Any, n: int) -> Any:
    a, an = _prep(a)
    b, bn = _prep(b)
    if op in ("&", "|"):
        return _logic(op, a, an, b, bn, n)
    if an is None and bn is None:
        return _apply(op, a, b)
    nulls = an if bn is None else bn if an is None else (an | bn)
    assert nulls is not None  # not both None: returned above
    keep = ~nulls
    a_sub, b_sub = _sub(a, keep), _sub(b, keep)
    if isinstance(a_sub, np.ndarray) and a_sub.dtype == object:
        a_sub = _homogeneous(a_sub.tolist()) if len(a_sub) else a_sub
        a_sub = a[keep] if a_sub is None else a_sub
    if isinstance(b_sub, np.ndarray) and b_sub.dtype == object:
        typed = _homogeneous(b_sub.tolist()) if len(b_sub) else None
        b_sub = b_sub if typed is None else typed
    return _result(_apply(op, a_sub, b_sub), nulls, n)


def _apply(op: str, a: Any, b: Any) -> Any:
    if op == "/":  # x / 0 is inf or nan, as in pandas (no warning per batch)
        with np.errstate(divide="ignore", invalid="ignore"):
            if _is_int(a) and _is_int(b):
                return np.true_divide(a, b)
            return _OPS[op](a, b)
    if _is_int(a) and _is_int(b):
        if op in ("//", "%") and np.any(np.asarray(b) == 0):
            raise ZeroDivisionError("integer division or modulo by zero")
        if op in ("+", "-", "*", "**") and not _fits_int64(op, a, b):
            # the exact result needs more than 64 bits: Python ints, as a function would get
            return _OPS[op](_objects(a), _objects(b))
    return _OPS[op](a, b)


_INT64_MAX = 2**63 - 1


def _bound(a: Any) -> int:
    """The largest absolute value of an integer column or scalar, as a Python int."""
    if isinstance(a, np.ndarray):
        if not len(a):
            return 0
        return max(abs(int(a.max())), abs(int(a.min())))
    return abs(int(a))


def _fits_int64(op: str, a: Any, b: Any) -> bool:
    ba, bb = _bound(a), _bound(b)
    if op in ("+", "-"):
        return ba + bb <= _INT64_MAX
    if op == "*":
        return ba * bb <= _INT64_MAX
    return bb < 64 and ba ** bb <= _INT64_MAX  # **


def _objects(a: Any) -> Any:
    return a.astype(object) if isinstance(a, np.ndarray) else a


def _is_int(a: Any) -> bool:
    if isinstance(a, np.ndarray):
        return a.dtype.kind in "iu"
    return isinstance(a, int) and not isinstance(a, bool)


def _truth(a: Any, nulls: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(value where not null, null mask) as bool arrays."""
    if np.ndim(a) == 0:
        if a is None:
            return np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
        return np.full(n, bool(a)), np.zeros(n, dtype=bool)
    if nulls is None:
        return a.astype(bool), np.zeros(n, dtype=bool)
    vals = np.array([bool(x) if x is not None else False for x in a.tolist()], dtype=bool)
    return vals, nulls


def _logic(op: str, a: Any, an: np.ndarray | None, b: Any, bn: np.ndarray | None,
           n: int) -> Any:
    av, an2 = _truth(a, an, n)
    bv, bn2 = _truth(b, bn, n)
    if op == "&":
        value = av & bv
        # SQL's three-valued logic: False & null = False
        nulls = (an2 & (bv | bn2)) | (bn2 & (av | an2))
    else:
        value = av | bv
        nulls = (an2 & ~bv) | (bn2 & ~av)
        nulls &= ~value
    if not nulls.any():
        return value
    out = value.astype(object)
    out[nulls] = None
    return out


def _unary(fn: Any, a: Any, n: int) -> Any:
    a, nulls = _prep(a)
    if nulls is None:
        return fn(a)
    keep = ~nulls
    sub = a[keep]
    typed = _homogeneous(sub.tolist())
    return _result(fn(sub if typed is None else typed), nulls, n)


def _round(a: Any, decimals: int) -> Any:
    if isinstance(a, np.ndarray):
        if a.dtype.kind == "f":
            return np.round(a, decimals)
        if a.dtype.kind in "iub":
            return a
        return np.array([round(x, decimals) for x in a.tolist()], dtype=object)
    return round(a, decimals)


def _cast(a: Any, to: type) -> Any:
    if not isinstance(a, np.ndarray):
        return to(a)
    if to is str:
        return np.array([str(x) for x in a.tolist()], dtype=object)
    if to is int:
        if a.dtype.kind == "f":
            bad = ~np.isfinite(a)
            if bad.any():
                raise ValueError(f"cannot convert {a[bad][0]!r} to int")
            return np.trunc(a).astype(np.int64)
        if a.dtype == object:
            return np.array([int(x) for x in a.tolist()], dtype=np.int64)
        return a.astype(np.int64)
    if to is float:
        return a.astype(np.float64) if a.dtype != object else np.array(
            [float(x) for x in a.tolist()], dtype=np.float64)
    return a.astype(bool) if a.dtype != object else np.array(
        [bool(x) for x in a.tolist()], dtype=bool)


def _isin(a: Any, values: tuple[Any, ...]) -> Any:
    if isinstance(a, np.ndarray) and a.dtype != object:
        return np.isin(a, np.array(values, dtype=object).astype(a.dtype)
                       if all(type(v) in (int, float, bool) for v in values) else values)
    wanted = set(values)
    return np.array([x in wanted for x in a.tolist()], dtype=bool)


_STR = {
    "lower": lambda s: s.lower(),
    "upper": lambda s: s.upper(),
    "strip": lambda s: s.strip(),
    "len": len,
}


def _str(a: Any, fn: str, args: tuple[Any, ...], n: int) -> Any:
    if not isinstance(a, np.ndarray):
        a = np.full(n, a, dtype=object)
    items = a.tolist()
    if fn in _STR:
        f = _STR[fn]
        out = [None if x is None else f(x) for x in items]
    elif fn == "contains":
        out = [None if x is None else args[0] in x for x in items]
    elif fn == "startswith":
        out = [None if x is None else x.startswith(args[0]) for x in items]
    elif fn == "endswith":
        out = [None if x is None else x.endswith(args[0]) for x in items]
    else:  # slice
        lo, hi = args
        out = [None if x is None else x[lo:hi] for x in items]
    typed = _homogeneous(out) if None not in out else None
    return typed if typed is not None else np.array(out, dtype=object) if out and not any(
        isinstance(x, tuple | list) for x in out) else np.fromiter(out, dtype=object,
                                                                    count=len(out))


_SCALAR_TYPES = frozenset({int, float, bool, str})


def _eval(e: Expr, get: Getter, n: int) -> Any:
    op, args = e.op, e.args
    if op == "col":
        return get(args[0])
    if op == "lit":
        return args[0]
    if op in _OPS:
        return _binary(op, _eval(args[0], get, n), _eval(args[1], get, n), n)
    if op == "~":
        return _unary(lambda a: np.logical_not(a) if a.dtype == bool else np.invert(a),
                      _as_array(_eval(args[0], get, n), n), n)
    if op == "neg":
        return _unary(np.negative, _as_array(_eval(args[0], get, n), n), n)
    if op == "abs":
        return _unary(np.abs, _as_array(_eval(args[0], get, n), n), n)
    if op == "round":
        return _unary(lambda a: _round(a, args[1]), _as_array(_eval(args[0], get, n), n), n)
    if op == "cast":
        return _unary(lambda a: _cast(a, args[1]), _as_array(_eval(args[0], get, n), n), n)
    if op == "is_null" or op == "not_null":
        a, nulls = _prep(_as_array(_eval(args[0], get, n), n))
        m = nulls if nulls is not None else np.zeros(n, dtype=bool)
        return m if op == "is_null" else ~m
    if op == "fill_null":
        a, nulls = _prep(_as_array(_eval(args[0], get, n), n))
        if nulls is None:
            return a
        fill = _as_array(_eval(args[1], get, n), n)
        out = a.copy()
        out[nulls] = fill[nulls]
        typed = _homogeneous(out.tolist())
        return typed if typed is not None else out
    if op == "isin":
        return _unary(lambda a: _isin(a, args[1]), _as_array(_eval(args[0], get, n), n), n)
    if op == "str":
        return _str(_eval(args[0], get, n), args[1], args[2], n)
    if op == "when":
        cond, cnulls = _prep(_as_array(_eval(args[0], get, n), n))
        mask, _nulls = _truth(cond, cnulls, n)
        a = _as_array(_eval(args[1], get, n), n)
        b = _as_array(_eval(args[2], get, n), n)
        if a.dtype != b.dtype:
            a, b = a.astype(object), b.astype(object)
        return np.where(mask, a, b)
    raise ValueError(f"unknown expression operator {op!r}")  # pragma: no cover


def _as_array(a: Any, n: int) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    if a is None or not (a.__class__ in _SCALAR_TYPES or isinstance(a, np.generic)):
        # (a subclass of str or int, such as a personal value's tagged class or an enum,
        # stays the object it is: a typed array would keep its plain value only)
        out = np.empty(n, dtype=object)
        out.fill(a)
        return out
    return np.full(n, a)


def evaluate(e: Expr, get: Getter, n: int) -> np.ndarray:
    """``e`` over ``n`` rows (see :meth:`workbench.expressions.Expr.evaluate`)."""
    return _as_array(_eval(e, get, n), n)


def as_bool_mask(a: np.ndarray) -> np.ndarray:
    """A filter's keep mask: True where the condition is True (nulls and False dropped)."""
    if a.dtype == bool:
        return a
    if a.dtype == object:
        return np.array([x is True or (x.__class__ is not bool and x is not None
                                       and _strict_true(x)) for x in a.tolist()], dtype=bool)
    return a.astype(bool)


def _strict_true(x: Any) -> bool:
    try:
        return bool(x)
    except ValueError:
        raise TypeError(f"a filter condition gave {type(x).__name__}, not True/False") from None
