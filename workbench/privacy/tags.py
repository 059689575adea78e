"""Personal values inside the engine: plaintext that remembers whose it is.

A personal value read from a topic becomes a :class:`PersonalStr` (or ``PersonalInt``,
``PersonalFloat``): it *is* the plaintext (``"ann@example.com" == value``, ``len``, slicing,
``in``, pandas all work), and carries its subject's handle, its source field and the token it
was decrypted from. Whatever a step does with the value object itself — pass it through a
``map``/``filter``, copy it in a join, collect it in ``agg("list")``, keep it as
``agg("first")``/``"last"``/``"min"``/``"max"``, group by it — it keeps its tag, so the
boundary encrypts it again under the same subject's key (an unchanged value reuses its token).

String methods that derive a new string from one personal string (``upper``, ``lower``,
``strip``, ``replace``, slicing, ``+``, ``%``, ``split`` ...) return tagged strings too. What
drops the tag: f-strings, ``str.join``, ``str()``/``format()``, arithmetic on numbers,
``json.dumps`` and any C function that builds a new object. A value built that way is still
protected when it is written in a field whose name is a personal field's name (see
``docs/privacy.md``); elsewhere it is not personal to the engine.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TAGGED", "PersonalFloat", "PersonalInt", "PersonalStr", "tag", "tag_of"]


def _rebuild(cls: type, base: Any, h: bytes, f: str, t: str | None) -> Any:
    return tag(base, h, f, t)


class PersonalStr(str):
    """A personal string (see the module docstring)."""

    __slots__ = ("_wb_f", "_wb_h", "_wb_t")
    _wb_h: bytes
    _wb_f: str
    _wb_t: str | None

    def __reduce__(self) -> Any:
        return (_rebuild, (PersonalStr, str(self), self._wb_h, self._wb_f, None))

    def __repr__(self) -> str:
        return str.__repr__(self)

    def _same(self, out: Any) -> Any:
        if out.__class__ is str:
            return tag(out, self._wb_h, self._wb_f, None)
        if out.__class__ is list:
            return [tag(x, self._wb_h, self._wb_f, None) if x.__class__ is str else x
                    for x in out]
        return out

    def __getitem__(self, i: Any) -> Any:
        return self._same(str.__getitem__(self, i))

    def __add__(self, other: Any) -> Any:
        return self._same(str.__add__(self, other))

    def __radd__(self, other: Any) -> Any:
        if not isinstance(other, str):
            return NotImplemented
        return self._same(str.__add__(other, self))

    def __mod__(self, other: Any) -> Any:
        return self._same(str.__mod__(self, other))

    def upper(self) -> Any:
        return self._same(str.upper(self))

    def lower(self) -> Any:
        return self._same(str.lower(self))

    def casefold(self) -> Any:
        return self._same(str.casefold(self))

    def title(self) -> Any:
        return self._same(str.title(self))

    def capitalize(self) -> Any:
        return self._same(str.capitalize(self))

    def strip(self, chars: Any = None) -> Any:
        return self._same(str.strip(self, chars))

    def lstrip(self, chars: Any = None) -> Any:
        return self._same(str.lstrip(self, chars))

    def rstrip(self, chars: Any = None) -> Any:
        return self._same(str.rstrip(self, chars))

    def replace(self, old: Any, new: Any, count: Any = -1) -> Any:
        return self._same(str.replace(self, old, new, count))

    def format(self, *args: Any, **kwargs: Any) -> Any:
        return self._same(str.format(self, *args, **kwargs))

    def split(self, sep: Any = None, maxsplit: Any = -1) -> Any:
        return self._same(str.split(self, sep, maxsplit))

    def rsplit(self, sep: Any = None, maxsplit: Any = -1) -> Any:
        return self._same(str.rsplit(self, sep, maxsplit))

    def partition(self, sep: Any) -> Any:
        return tuple(self._same(list(str.partition(self, sep))))


class PersonalInt(int):
    """A personal integer (arithmetic on it gives plain ints)."""

    _wb_h: bytes
    _wb_f: str
    _wb_t: str | None

    def __reduce__(self) -> Any:
        return (_rebuild, (PersonalInt, int(self), self._wb_h, self._wb_f, None))

    def __repr__(self) -> str:
        return int.__repr__(self)


class PersonalFloat(float):
    """A personal float (arithmetic on it gives plain floats)."""

    __slots__ = ("_wb_f", "_wb_h", "_wb_t")
    _wb_h: bytes
    _wb_f: str
    _wb_t: str | None

    def __reduce__(self) -> Any:
        return (_rebuild, (PersonalFloat, float(self), self._wb_h, self._wb_f, None))

    def __repr__(self) -> str:
        return float.__repr__(self)


#: the tagged classes (``value.__class__ in TAGGED`` is the fast test)
TAGGED: frozenset[Any] = frozenset({PersonalStr, PersonalInt, PersonalFloat})
_CLASSES: dict[type, type] = {str: PersonalStr, int: PersonalInt, float: PersonalFloat}
_new_str = str.__new__
_new_int = int.__new__
_new_float = float.__new__


def tag(value: Any, handle: bytes, field: str, token: str | None) -> Any:
    """``value`` tagged as personal data of subject ``handle``, source field ``field``
    (``token``: the ciphertext it came from, reused if it is written unchanged). Values of
    other types (bool, None, dict, list) are returned as they are: they are not tracked."""
    cls = value.__class__
    if cls in TAGGED:
        base = cls.__mro__[1]
        value = base(value)
        cls = base
    if cls is str:
        out: Any = _new_str(PersonalStr, value)
    elif cls is int:
        out = _new_int(PersonalInt, value)
    elif cls is float:
        out = _new_float(PersonalFloat, value)
    else:
        return value
    out._wb_h = handle
    out._wb_f = field
    out._wb_t = token
    return out


def tag_of(value: Any) -> tuple[bytes, str] | None:
    """``(handle, field)`` of a tagged value, else ``None``."""
    if value.__class__ in TAGGED:
        return value._wb_h, value._wb_f
    return None
