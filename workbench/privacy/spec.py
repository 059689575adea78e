"""``wb.Personal``: which fields of a source are personal data, and whose."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DefinitionError, did_you_mean

__all__ = ["ERASED", "Personal"]

#: what an erased personal value reads as, everywhere, after its subject was forgotten
ERASED = "<erased>"


@dataclass(frozen=True)
class Personal:
    """Marks a source's personal fields (``p.source(..., personal=wb.Personal(...))``).

    Args:
        subject: the field (or a function of the value) that names the person the record is
            about: their data is encrypted with their own key, and ``wb.forget(subject_id)``
            erases it everywhere.
        fields: the value's personal fields (encrypted outside the process).
        key: the record key is personal too: it is written as a keyed pseudonym (a
            deterministic token), so partitions, compaction, upserts and joins still work,
            and the link to the person disappears with their key.

    Example:
        >>> Personal(subject="user_id", fields=["email", "name"])
        Personal(subject='user_id', fields=('email', 'name'), key=False)
    """

    subject: str | Callable[[Any], Any]
    fields: Sequence[str] = ()
    key: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.subject, str) and self.subject) and not callable(self.subject):
            raise DefinitionError(f"Personal(subject={self.subject!r}): give the field that "
                                  "names the person, or a function of the value.")
        fields = (self.fields,) if isinstance(self.fields, str) else tuple(self.fields)
        for f in fields:
            if not isinstance(f, str) or not f:
                raise DefinitionError(f"Personal(fields=...): {f!r} is not a field name.")
        if len(set(fields)) != len(fields):
            raise DefinitionError(f"Personal(fields={list(fields)!r}) names a field twice.")
        if not fields and not self.key:
            raise DefinitionError("Personal(...) marks nothing: give fields=[...] or key=True.")
        object.__setattr__(self, "fields", fields)

    def check(self, topic: str, columns: Sequence[str] | None) -> None:
        """Fail at definition time when the sample lacks a named field."""
        if columns is None:
            return
        names = list(self.fields) + ([self.subject] if isinstance(self.subject, str) else [])
        for f in names:
            if f not in columns:
                raise DefinitionError(
                    f"source({topic!r}, personal=...): the sample has no field {f!r}."
                    + did_you_mean(f, list(columns)))

    def subject_of(self, value: Any, key: Any) -> Any:
        """The subject id of one record (``None`` if it has none)."""
        if callable(self.subject):
            return self.subject(value)
        if isinstance(value, dict):
            return value.get(self.subject)
        return None
