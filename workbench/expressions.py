"""Column expressions: ``wb.col("amount") > 0``, evaluated on whole column batches.

Expressions are the first choice for the common steps; they run vectorized (NumPy) on the
engine's column batches instead of calling a Python function per record::

    paid = events.filter(wb.col("amount") > 0)
    paid = paid.assign(cents=(wb.col("amount") * 100).round(), big=wb.col("amount") > 100)
    slim = paid.select("user_id", "cents", day=wb.col("ts") // 86_400_000)

What an expression can do: arithmetic (``+ - * / // % **``, unary ``-``), comparisons
(``== != < <= > >=``), logic (``& | ~``; Python's ``and``/``or``/``not`` cannot be overloaded
and raise), ``abs()``, ``round(n)``, ``is_null()``, ``not_null()``, ``fill_null(v)``,
``isin(values)``, ``between(lo, hi)``, ``cast(int|float|str|bool)``, string functions under
``.str`` (``lower``, ``upper``, ``strip``, ``len``, ``contains``, ``startswith``, ``endswith``,
``slice``), ``wb.when(cond).then(a).otherwise(b)``, ``wb.lit(value)`` and ``alias(name)``.

**Missing values.** A field that holds ``None`` is *null*. Arithmetic and comparisons with a
null give null (as in SQL, Polars and pandas' nullable types); ``filter`` keeps only rows whose
condition is ``True``, so nulls are dropped. NaN is an ordinary float (``NaN > 0`` is False).

**Numbers.** Integer and float columns are NumPy ``int64``/``float64``; ``round(n)`` follows
NumPy (half to even, like Python's ``round`` for ``n == 0``; for ``n > 0`` NumPy rounds the
scaled binary value, which can differ from Python's decimal-exact ``round`` in the last digit)
and returns a float, as pandas does; ``int64`` arithmetic wraps on overflow as in NumPy.

Why a small expression system of our own rather than Polars or Arrow compute expressions:
workbench's batches are NumPy columns that hold arbitrary Python objects as well (keys, nested
values, the results of lambdas), its results must equal a plain-Python computation exactly
(sums in record order, ``1`` kept apart from ``1.0``), and it converts to pandas without a copy;
Polars and Arrow would need conversions at every boundary and a heavy dependency
(measurements in ``docs/performance.md``). The set above is deliberately small; anything else
is a ``map`` away.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .errors import DefinitionError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Expr", "col", "lit", "when"]

Getter = Callable[[str], "np.ndarray"]


class Expr:
    """A column expression (build one with :func:`col`, :func:`lit` or :func:`when`)."""

    __slots__ = ("_alias", "args", "op")

    def __init__(self, op: str, args: tuple[Any, ...], alias: str | None = None) -> None:
        self.op = op
        self.args = args
        self._alias = alias

    # -- introspection ------------------------------------------------------------------------
    @property
    def name(self) -> str | None:
        """The output name: the alias, or the field name of a bare ``col(...)``."""
        if self._alias is not None:
            return self._alias
        if self.op == "col":
            return str(self.args[0])
        return None

    def columns(self) -> set[str]:
        """The fields the expression reads."""
        if self.op == "col":
            return {self.args[0]}
        out: set[str] = set()
        for a in self.args:
            if isinstance(a, Expr):
                out |= a.columns()
            elif isinstance(a, tuple):
                for x in a:
                    if isinstance(x, Expr):
                        out |= x.columns()
        return out

    def alias(self, name: str) -> Expr:
        """The same expression under another output name (for ``select``)."""
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"alias() needs a non-empty string, got {name!r}.")
        return Expr(self.op, self.args, name)

    def __bool__(self) -> bool:
        raise TypeError(
            f"the expression {self!r} has no truth value: combine conditions with & and | "
            "(with parentheses) and negate with ~, not with and/or/not.")

    def __repr__(self) -> str:
        text = _render(self)
        return f"{text}.alias({self._alias!r})" if self._alias else text

    # -- operators ----------------------------------------------------------------------------
    def __add__(self, o: Any) -> Expr: return _bin("+", self, o)
    def __radd__(self, o: Any) -> Expr: return _bin("+", o, self)
    def __sub__(self, o: Any) -> Expr: return _bin("-", self, o)
    def __rsub__(self, o: Any) -> Expr: return _bin("-", o, self)
    def __mul__(self, o: Any) -> Expr: return _bin("*", self, o)
    def __rmul__(self, o: Any) -> Expr: return _bin("*", o, self)
    def __truediv__(self, o: Any) -> Expr: return _bin("/", self, o)
    def __rtruediv__(self, o: Any) -> Expr: return _bin("/", o, self)
    def __floordiv__(self, o: Any) -> Expr: return _bin("//", self, o)
    def __rfloordiv__(self, o: Any) -> Expr: return _bin("//", o, self)
    def __mod__(self, o: Any) -> Expr: return _bin("%", self, o)
    def __rmod__(self, o: Any) -> Expr: return _bin("%", o, self)
    def __pow__(self, o: Any) -> Expr: return _bin("**", self, o)
    def __rpow__(self, o: Any) -> Expr: return _bin("**", o, self)
    def __eq__(self, o: Any) -> Expr: return _bin("==", self, o)  # type: ignore[override]
    def __ne__(self, o: Any) -> Expr: return _bin("!=", self, o)  # type: ignore[override]
    def __lt__(self, o: Any) -> Expr: return _bin("<", self, o)
    def __le__(self, o: Any) -> Expr: return _bin("<=", self, o)
    def __gt__(self, o: Any) -> Expr: return _bin(">", self, o)
    def __ge__(self, o: Any) -> Expr: return _bin(">=", self, o)
    def __and__(self, o: Any) -> Expr: return _bin("&", self, o)
    def __rand__(self, o: Any) -> Expr: return _bin("&", o, self)
    def __or__(self, o: Any) -> Expr: return _bin("|", self, o)
    def __ror__(self, o: Any) -> Expr: return _bin("|", o, self)
    def __invert__(self) -> Expr: return Expr("~", (self,))
    def __neg__(self) -> Expr: return Expr("neg", (self,))
    def __abs__(self) -> Expr: return Expr("abs", (self,))
    __hash__ = None  # type: ignore[assignment]

    # -- functions ----------------------------------------------------------------------------
    def abs(self) -> Expr:
        """Absolute value."""
        return Expr("abs", (self,))

    def round(self, decimals: int = 0) -> Expr:
        """Round to ``decimals`` places (NumPy's half-to-even; a float result)."""
        if not isinstance(decimals, int) or isinstance(decimals, bool):
            raise DefinitionError(f"round() needs an int number of decimals, got {decimals!r}.")
        return Expr("round", (self, decimals))

    def is_null(self) -> Expr:
        """True where the field is ``None``."""
        return Expr("is_null", (self,))

    def not_null(self) -> Expr:
        """True where the field is not ``None``."""
        return Expr("not_null", (self,))

    def fill_null(self, value: Any) -> Expr:
        """``value`` where the field is ``None``."""
        return Expr("fill_null", (self, _wrap(value)))

    def isin(self, values: Iterable[Any]) -> Expr:
        """True where the field equals one of ``values``."""
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise DefinitionError(f"isin() needs a collection of values, got {values!r}.")
        return Expr("isin", (self, tuple(values)))

    def between(self, low: Any, high: Any) -> Expr:
        """``low <= field <= high``."""
        between: Expr = (self >= low) & (self <= high)
        return between

    def cast(self, to: type) -> Expr:
        """Convert to ``int``, ``float``, ``str`` or ``bool``."""
        if to not in (int, float, str, bool):
            raise DefinitionError(f"cast() converts to int, float, str or bool, not {to!r}.")
        return Expr("cast", (self, to))

    @property
    def str(self) -> _StrNamespace:
        """String functions: ``col("page").str.startswith("/checkout")``."""
        return _StrNamespace(self)

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, get: Getter, n: int) -> np.ndarray:
        """The expression's value for ``n`` rows whose fields ``get(name)`` returns (a 1-D
        array). Null is ``None`` in an ``object`` array."""
        from ._expr_eval import evaluate

        return evaluate(self, get, n)


class _StrNamespace:
    __slots__ = ("_e",)

    def __init__(self, e: Expr) -> None:
        self._e = e

    def lower(self) -> Expr:
        return Expr("str", (self._e, "lower", ()))

    def upper(self) -> Expr:
        return Expr("str", (self._e, "upper", ()))

    def strip(self) -> Expr:
        return Expr("str", (self._e, "strip", ()))

    def len(self) -> Expr:
        return Expr("str", (self._e, "len", ()))

    def contains(self, text: str) -> Expr:
        return Expr("str", (self._e, "contains", (text,)))

    def startswith(self, text: str) -> Expr:
        return Expr("str", (self._e, "startswith", (text,)))

    def endswith(self, text: str) -> Expr:
        return Expr("str", (self._e, "endswith", (text,)))

    def slice(self, start: int | None = None, stop: int | None = None) -> Expr:
        return Expr("str", (self._e, "slice", (start, stop)))


class _When:
    __slots__ = ("_cond",)

    def __init__(self, cond: Expr) -> None:
        self._cond = cond

    def then(self, value: Any) -> _Then:
        return _Then(self._cond, _wrap(value))


class _Then:
    __slots__ = ("_cond", "_value")

    def __init__(self, cond: Expr, value: Expr) -> None:
        self._cond = cond
        self._value = value

    def otherwise(self, value: Any) -> Expr:
        return Expr("when", (self._cond, self._value, _wrap(value)))


def col(name: str) -> Expr:
    """The field ``name`` of each record's value.

    >>> import workbench as wb
    >>> wb.col("amount") * 100
    col('amount') * 100
    """
    if not isinstance(name, str) or not name:
        raise DefinitionError(f"col() needs a field name (a non-empty string), got {name!r}.")
    return Expr("col", (name,))


def lit(value: Any) -> Expr:
    """A constant."""
    return Expr("lit", (value,))


def when(condition: Expr) -> _When:
    """``when(cond).then(a).otherwise(b)``: ``a`` where ``cond`` is True, else ``b``."""
    if not isinstance(condition, Expr):
        raise DefinitionError(f"when() needs an expression, got {condition!r}.")
    return _When(condition)


def _wrap(value: Any) -> Expr:
    return value if isinstance(value, Expr) else Expr("lit", (value,))


def _bin(op: str, a: Any, b: Any) -> Expr:
    return Expr(op, (_wrap(a), _wrap(b)))


_PRECEDENCE = {"|": 1, "&": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
               "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "**": 8}


def _render(e: Any, parent: int = 0) -> str:
    if not isinstance(e, Expr):
        return repr(e)
    op, args = e.op, e.args
    if op == "col":
        return f"col({args[0]!r})"
    if op == "lit":
        return repr(args[0])
    if op in _PRECEDENCE:
        p = _PRECEDENCE[op]
        text = f"{_render(args[0], p)} {op} {_render(args[1], p + 1)}"
        return f"({text})" if p < parent else text
    if op == "~":
        return f"~{_render(args[0], 9)}"
    if op == "neg":
        return f"-{_render(args[0], 9)}"
    if op == "str":
        inner = ", ".join(repr(a) for a in args[2])
        return f"{_render(args[0], 9)}.str.{args[1]}({inner})"
    if op == "when":
        return (f"when({_render(args[0])}).then({_render(args[1])})"
                f".otherwise({_render(args[2])})")
    if op == "cast":
        return f"{_render(args[0], 9)}.cast({args[1].__name__})"
    rest = ", ".join(_render(a) for a in args[1:])
    return f"{_render(args[0], 9)}.{op}({rest})"


# keep ``operator`` referenced for the evaluator's table
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow,
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge, "&": operator.and_, "|": operator.or_,
}
