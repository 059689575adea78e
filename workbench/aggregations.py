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

__all__ = ["BUILTINS", "SUBTRACTABLE", "Aggregation", "agg_spec", "aggregate_spec", "count_spec",
           "reduce_spec", "table_agg_spec", "table_aggregate_spec", "table_count_spec",
           "table_reduce_spec"]


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
    #: ``agg``: the named parts ``(output, column or None, function)``; the engine computes
    #: these built-ins on whole columns
    parts: tuple[tuple[str, str | None, str], ...] = ()
    #: re-grouped tables (``table.group_by(...)``): ``subtract(acc, value)`` takes a value out
    #: of its old group (Kafka Streams' subtractor); ``None`` for stream aggregations
    subtract: Callable[[Any, Any], Any] | None = None


def count_spec() -> Aggregation:
    """Number of records. Time and session windows count records with a ``None`` value (as
    Kafka Streams does); sliding windows and non-windowed counts route them to ``late``."""
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
    return _compile_agg(parts, tuple(named))


_SIMPLE = {"sum", "count", "min", "max"}  # accumulator == published value


def _compile_agg(parts: list[tuple[str, str | None, str]], fields: tuple[str, ...]
                 ) -> Aggregation:
    """Generate ``init``/``add``/``merge``/``finalize`` specialised for these named
    aggregations (one dict literal per update, fields read once), which is several times faster
    than a generic loop over the parts. ``None`` values: a bare ``count`` counts the record,
    column aggregations skip it; ``None`` fields are skipped too."""
    env: dict[str, Any] = {"_missing": _missing_field, "_fin": {}}
    columns = sorted({c for _o, c, _f in parts if c is not None})
    col_var = {c: f"x{i}" for i, c in enumerate(columns)}
    for c, var in col_var.items():
        env[f"c_{var}"] = c
    init_items, add_items, none_items, merge_items, fin_items = [], [], [], [], []
    simple = all(f in _SIMPLE for _o, _c, f in parts)
    for out, col, func in parts:
        key = repr(out)
        a = f"acc[{key}]"
        b = f"other[{key}]"
        if col is None:  # bare count: every record
            init_items.append(f"{key}: 0")
            add_items.append(f"{key}: {a} + 1")
            none_items.append(f"{key}: {a} + 1")
            merge_items.append(f"{key}: {a} + {b}")
            fin_items.append(f"{key}: {a}")
            continue
        x = col_var[col]
        none_items.append(f"{key}: {a}")
        if func == "sum":
            init_items.append(f"{key}: 0")
            add_items.append(f"{key}: {a} if {x} is None else {a} + {x}")
            merge_items.append(f"{key}: {a} + {b}")
        elif func == "count":
            init_items.append(f"{key}: 0")
            add_items.append(f"{key}: {a} if {x} is None else {a} + 1")
            merge_items.append(f"{key}: {a} + {b}")
        elif func in ("min", "max"):
            op = "<" if func == "min" else ">"
            init_items.append(f"{key}: None")
            add_items.append(f"{key}: {a} if {x} is None or ({a} is not None and not {x} {op} "
                             f"{a}) else {x}")
            merge_items.append(f"{key}: {a} if {b} is None or ({a} is not None and not {b} "
                               f"{op} {a}) else {b}")
        elif func == "mean":
            init_items.append(f"{key}: [0, 0]")
            add_items.append(f"{key}: {a} if {x} is None else [{a}[0] + {x}, {a}[1] + 1]")
            merge_items.append(f"{key}: [{a}[0] + {b}[0], {a}[1] + {b}[1]]")
        elif func == "first":
            init_items.append(f"{key}: []")
            add_items.append(f"{key}: {a} if {a} else [{x}]")
            merge_items.append(f"{key}: {a} or {b}")
        elif func == "last":
            init_items.append(f"{key}: []")
            add_items.append(f"{key}: [{x}]")
            merge_items.append(f"{key}: {b} or {a}")
        elif func == "list":
            init_items.append(f"{key}: []")
            add_items.append(f"{key}: [*{a}, {x}]")
            merge_items.append(f"{key}: [*{a}, *{b}]")
        env["_fin"][out] = BUILTINS[func][3]
        fin_items.append(f"{key}: _fin[{key}]({a})" if func not in _SIMPLE else f"{key}: {a}")
    reads = []
    for var in col_var.values():
        reads += ["    try:", f"        {var} = v[c_{var}]",
                  "    except (KeyError, TypeError, IndexError):",
                  f"        _missing(c_{var}, v)"]
    code = "\n".join([
        "def init():",
        f"    return {{{', '.join(init_items)}}}",
        "def add(acc, v):",
        "    if v is None:",
        f"        return {{{', '.join(none_items)}}}",
        *reads,
        f"    return {{{', '.join(add_items)}}}",
        "def merge(acc, other):",
        f"    return {{{', '.join(merge_items)}}}",
        "def finalize(acc):",
        f"    return {{{', '.join(fin_items)}}}",
    ])
    exec(compile(code, "<workbench agg>", "exec"), env)
    return Aggregation("agg", env["init"], env["add"], env["merge"],
                       None if simple else env["finalize"], fields=fields, parts=tuple(parts))


def _missing_field(column: str, value: Any) -> None:
    fields = list(value) if isinstance(value, dict) else []
    raise KeyError(f"agg(): field {column!r} missing from {value!r}."
                   + did_you_mean(column, fields))


# -- re-grouped tables: the same aggregations with a subtractor -----------------------------------
#: built-in ``agg`` functions whose subtractor is derived (min, max, first and last cannot take a
#: value back out without the group's other values: they need a subtractor from the user)
SUBTRACTABLE = frozenset({"sum", "count", "mean", "list"})


def _check_fn(fn: Any, what: str) -> None:
    if not callable(fn):
        raise DefinitionError(f"{what} must be a function, got {fn!r}.")


def table_count_spec() -> Aggregation:
    """Rows per group of a re-grouped table: ``+1`` when a row joins a group, ``-1`` when it
    leaves (a count that reaches 0 stays, as ``0``: Kafka Streams' ``KGroupedTable.count``)."""
    return Aggregation("count", lambda: 0, lambda acc, _v: acc + 1,
                       subtract=lambda acc, _v: acc - 1)


def table_reduce_spec(add: Callable[[Any, Any], Any],
                      subtract: Callable[[Any, Any], Any]) -> Aggregation:
    """``add(aggregate, value)`` when a row joins a group (its first row is the aggregate),
    ``subtract(aggregate, value)`` when it leaves."""
    _check_fn(add, "reduce(add, subtract): add")
    _check_fn(subtract, "reduce(add, subtract): subtract")
    return Aggregation("reduce", lambda: None, add, reducer=True, subtract=subtract)


def table_aggregate_spec(init: Any, add: Callable[[Any, Any], Any],
                         subtract: Callable[[Any, Any], Any]) -> Aggregation:
    """``init`` (a value or a zero-argument function), ``add(aggregate, value)`` when a row
    joins a group and ``subtract(aggregate, value)`` when it leaves."""
    _check_fn(subtract, "aggregate(init, add, subtract): subtract")
    from dataclasses import replace

    return replace(aggregate_spec(init, add), subtract=subtract)


def table_agg_spec(named: Mapping[str, Any], columns: list[str] | None) -> Aggregation:
    """pandas-style named aggregations of a re-grouped table, each with its subtractor:
    derived for ``sum``, ``count``, ``mean`` and ``list`` (one equal element removed); ``min``,
    ``max``, ``first`` and ``last`` need one from the user as a third element,
    ``low=("price", "min", subtract)``, where ``subtract(current, value)`` returns the part's
    new value once ``value`` has left the group."""
    plain: dict[str, Any] = {}
    custom: dict[str, Callable[[Any, Any], Any]] = {}
    for out, spec in named.items():
        if isinstance(spec, tuple) and len(spec) == 3:
            column, func, sub = spec
            if not callable(sub):
                raise DefinitionError(f"agg({out}=({column!r}, {func!r}, ...)): the third "
                                      f"element must be a subtractor function, got {sub!r}.")
            custom[out] = sub
            spec = (column, func)
        plain[out] = spec
    agg = agg_spec(plain, columns)
    for out, _column, func in agg.parts:
        if func not in SUBTRACTABLE and out not in custom:
            raise DefinitionError(
                f"agg({out}=(..., {func!r})): a re-grouped table takes a row back out of its "
                f"old group when the row changes, and {func!r} cannot be undone without the "
                "group's other rows. Give a subtractor as a third element, "
                f"{out}=(column, {func!r}, lambda current, value: ...), or use "
                "aggregate(init, add, subtract).")
    from dataclasses import replace

    return replace(agg, subtract=_compile_subtract(list(agg.parts), custom))


def _list_remove(acc: list[Any], x: Any) -> list[Any]:
    out = list(acc)
    for i, y in enumerate(out):
        if y == x or (y is x):
            del out[i]
            break
    return out


def _wrap_one(value: Any) -> list[Any]:
    return [] if value is None else [value]


def _compile_subtract(parts: list[tuple[str, str | None, str]],
                      custom: Mapping[str, Callable[[Any, Any], Any]]) -> Callable[[Any, Any], Any]:
    """The subtractor of a re-grouped ``agg``: the inverse of ``_compile_agg``'s ``add``."""
    env: dict[str, Any] = {"_missing": _missing_field, "_sub": dict(custom),
                           "_remove": _list_remove, "_wrap": _wrap_one}
    columns = sorted({c for _o, c, _f in parts if c is not None})
    col_var = {c: f"x{i}" for i, c in enumerate(columns)}
    for c, var in col_var.items():
        env[f"c_{var}"] = c
    items = []
    for out, col, func in parts:
        key = repr(out)
        a = f"acc[{key}]"
        if col is None:  # bare count
            items.append(f"{key}: {a} - 1")
            continue
        x = col_var[col]
        if out in custom:
            if func in ("first", "last"):  # accumulator [value] or []
                call = f"_wrap(_sub[{key}]({a}[0] if {a} else None, {x}))"
            else:
                call = f"_sub[{key}]({a}, {x})"
            items.append(f"{key}: {a} if {x} is None else {call}")
        elif func == "sum":
            items.append(f"{key}: {a} if {x} is None else {a} - {x}")
        elif func == "count":
            items.append(f"{key}: {a} if {x} is None else {a} - 1")
        elif func == "mean":
            items.append(f"{key}: {a} if {x} is None else [{a}[0] - {x}, {a}[1] - 1]")
        elif func == "list":
            items.append(f"{key}: _remove({a}, {x})")
        else:  # pragma: no cover - table_agg_spec refuses these
            raise DefinitionError(f"agg(): {func!r} has no subtractor")
    reads = []
    for var in col_var.values():
        reads += ["    try:", f"        {var} = v[c_{var}]",
                  "    except (KeyError, TypeError, IndexError):",
                  f"        _missing(c_{var}, v)"]
    code = "\n".join([
        "def subtract(acc, v):",
        "    if v is None:",
        "        return acc",
        *reads,
        f"    return {{{', '.join(items)}}}",
    ])
    exec(compile(code, "<workbench agg subtract>", "exec"), env)
    subtract: Callable[[Any, Any], Any] = env["subtract"]
    return subtract
