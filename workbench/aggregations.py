"""Aggregation specs: ``count``, ``reduce``, ``aggregate(init, add)`` and pandas-style ``agg``.

An :class:`Aggregation` is pure data plus functions: ``init()`` makes an empty accumulator,
``add(acc, value)`` folds a value in, ``merge(a, b)`` combines two accumulators (session
windows), ``finalize(acc)`` turns an accumulator into the published value. Accumulators of the
built-ins are JSON-friendly, so they can live in changelogs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import DefinitionError, did_you_mean

__all__ = ["BUILTINS", "Aggregation", "agg_spec", "aggregate_spec", "count_spec", "reduce_spec"]


@dataclass(frozen=True)
class Aggregation:
    """How to fold values into an aggregate."""

    kind: str
    init: Callable[[], Any]
    add: Callable[[Any, Any], Any]
    merge: Callable[[Any, Any], Any] | None = None
    finalize: Callable[[Any], Any] | None = None
    #: ``reduce``: the first value is the aggregate (``init`` is not used)
    reducer: bool = False
    #: names of the output fields (``agg``), for previews
    fields: tuple[str, ...] = ()


def count_spec() -> Aggregation:
    """Number of records (records with a ``None`` value are not counted)."""
    return Aggregation("count", lambda: 0, lambda acc, _v: acc + 1, lambda a, b: a + b)


def reduce_spec(fn: Callable[[Any, Any], Any]) -> Aggregation:
    """``fn(aggregate, value)``; the first value of a key starts the aggregate."""
    if not callable(fn):
        raise DefinitionError(f"reduce() needs a function (aggregate, value) -> aggregate, got "
                              f"{fn!r}.")
    return Aggregation("reduce", lambda: None, fn, fn, reducer=True)


def aggregate_spec(init: Any, add: Callable[[Any, Any], Any],
                   merge: Callable[[Any, Any], Any] | None = None) -> Aggregation:
    """``init`` (a value, or a zero-argument function such as ``list``) and
    ``add(aggregate, value)``; ``merge(a, b)`` is needed for session windows."""
    if not callable(add):
        raise DefinitionError(f"aggregate() needs add=(aggregate, value) -> aggregate, got "
                              f"{add!r}.")
    if merge is not None and not callable(merge):
        raise DefinitionError(f"aggregate(merge=...) must be a function, got {merge!r}.")
    if callable(init):
        make = init
    else:
        import copy

        def make() -> Any:
            return copy.deepcopy(init)

    return Aggregation("aggregate", make, add, merge)


# built-in aggregate functions for agg(): (init, add, merge, finalize)
def _sum_add(acc: Any, x: Any) -> Any:
    return acc if x is None else acc + x


def _min_add(acc: Any, x: Any) -> Any:
    return acc if x is None else (x if acc is None or x < acc else acc)


def _max_add(acc: Any, x: Any) -> Any:
    return acc if x is None else (x if acc is None or x > acc else acc)


def _mean_add(acc: list[Any], x: Any) -> list[Any]:
    return acc if x is None else [acc[0] + x, acc[1] + 1]


def _first_add(acc: list[Any], x: Any) -> list[Any]:
    return acc if acc else [x]


def _list_add(acc: list[Any], x: Any) -> list[Any]:
    return [*acc, x]


BUILTINS: dict[str, tuple[Callable[[], Any], Callable[[Any, Any], Any],
                          Callable[[Any, Any], Any], Callable[[Any], Any]]] = {
    "sum": (lambda: 0, _sum_add, lambda a, b: a + b, lambda a: a),
    "count": (lambda: 0, lambda acc, x: acc if x is None else acc + 1, lambda a, b: a + b,
              lambda a: a),
    "min": (lambda: None, _min_add, lambda a, b: _min_add(a, b), lambda a: a),
    "max": (lambda: None, _max_add, lambda a, b: _max_add(a, b), lambda a: a),
    "mean": (lambda: [0, 0], _mean_add, lambda a, b: [a[0] + b[0], a[1] + b[1]],
             lambda a: a[0] / a[1] if a[1] else None),
    "first": (lambda: [], _first_add, lambda a, b: a or b, lambda a: a[0] if a else None),
    "last": (lambda: [], lambda acc, x: [x], lambda a, b: b or a,
             lambda a: a[0] if a else None),
    "list": (lambda: [], _list_add, lambda a, b: [*a, *b], lambda a: list(a)),
}


def agg_spec(named: Mapping[str, Any], columns: list[str] | None) -> Aggregation:
    """pandas-style named aggregations: ``total=("amount", "sum")``, ``n="count"``.

    A bare ``"count"`` counts records; ``(column, "count")`` counts non-null values.
    """
    if not named:
        raise DefinitionError('agg() needs named aggregations, e.g. agg(total=("amount", '
                              '"sum"), n="count").')
    parts: list[tuple[str, str | None, str]] = []
    for out, spec in named.items():
        if spec == "count" or spec == "size":
            parts.append((out, None, "count"))
            continue
        if (not isinstance(spec, tuple) or len(spec) != 2 or not isinstance(spec[0], str)
                or not isinstance(spec[1], str)):
            raise DefinitionError(
                f"agg({out}={spec!r}): use (column, function) with a function among "
                f"{sorted(BUILTINS)}, or 'count'."
            )
        column, func = spec
        if func not in BUILTINS:
            raise DefinitionError(f"agg({out}=({column!r}, {func!r})): unknown function."
                                  + did_you_mean(func, BUILTINS))
        if columns is not None and column not in columns:
            raise DefinitionError(f"agg({out}=({column!r}, {func!r})): the records have no "
                                  f"field {column!r}." + did_you_mean(column, columns))
        parts.append((out, column, func))
    funcs = [(out, col, BUILTINS[f]) for out, col, f in parts]

    def init() -> dict[str, Any]:
        return {out: fns[0]() for out, _c, fns in funcs}

    def add(acc: dict[str, Any], value: Any) -> dict[str, Any]:
        new = dict(acc)
        for out, col, fns in funcs:
            if col is None:
                new[out] = acc[out] + 1
            else:
                try:
                    x = value[col]
                except (KeyError, TypeError):
                    fields = list(value) if isinstance(value, dict) else []
                    raise KeyError(f"agg({out}=...): field {col!r} missing from {value!r}."
                                   + did_you_mean(col, fields)) from None
                new[out] = fns[1](acc[out], x)
        return new

    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return {out: (a[out] + b[out] if col is None else fns[2](a[out], b[out]))
                for out, col, fns in funcs}

    def finalize(acc: dict[str, Any]) -> dict[str, Any]:
        return {out: fns[3](acc[out]) for out, _c, fns in funcs}

    return Aggregation("agg", init, add, merge, finalize, fields=tuple(named))
