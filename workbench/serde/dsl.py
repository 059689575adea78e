"""The serde arguments of the DSL (``p.source``/``p.table``/``to`` with ``key=``/``value=``)
and the definition-time check of a typed source's sample."""

from __future__ import annotations

from typing import Any

from ..errors import DefinitionError, DriverUnavailableError, SerializationError
from . import get_serde, is_serde
from .base import Serde

__all__ = ["check_sample", "check_sample_keys", "sample_columns", "serde_arg", "split_key",
           "value_serde"]


def split_key(key: Any, where: str) -> tuple[Any, Serde | None]:
    """``key=`` of a source: a field name or function, a serde, or ``(field or function,
    serde)``. Returns the field/function part and the serde."""
    if isinstance(key, tuple) and len(key) == 2 and is_serde(key[1]):
        return key[0], _serde(key[1], where, "key")
    if is_serde(key):
        return None, _serde(key, where, "key")
    return key, None


def value_serde(value: Any, where: str) -> Serde | None:
    """``value=``: a serde (or a serde's name), or ``None``."""
    return serde_arg(value, where, "value")


def serde_arg(spec: Any, where: str, what: str) -> Serde | None:
    """A ``key=``/``value=`` serde argument (a serde or a serde's name), or ``None``."""
    if spec is None:
        return None
    return _serde(spec, where, what)


def _serde(spec: Any, where: str, what: str) -> Serde:
    try:
        return get_serde(spec)
    except DefinitionError as exc:
        raise DefinitionError(f"{where}, {what}=...): {exc} Use a serde such as "
                              f"wb.serde.string() or wb.serde.avro(schema).") from None


def sample_columns(rows: list[Any] | None, columns: list[str] | None) -> list[str] | None:
    """The columns of checked rows: the given ones, then fields the serde added (Avro
    defaults), in the order of the first row that has them."""
    if not rows:
        return columns
    out = list(columns or [])
    for row in rows:
        if isinstance(row, dict):
            out.extend(k for k in row if k not in out)
    return out or columns


def check_sample(rows: list[Any] | None, serde: Serde | None, topic: str,
                 where: str, skip: set[str] | None = None) -> list[Any] | None:
    """The sample's rows as a reader of the topic would read them back through ``serde``
    (typed: Avro's defaults filled in, logical types decoded); a row that does not fit the
    schema is a :class:`DefinitionError` naming the row. A registry serde without a schema of
    its own is checked against the subject's latest schema, when the registry answers. With
    ``skip`` (a table's key and time fields), rows whose other fields are all empty are
    tombstones and stay as they are."""
    if not rows or serde is None:
        return rows
    if not serde.offline:
        try:
            probe = serde.for_topic(topic, is_key=False)
            probe.writer_id()  # type: ignore[attr-defined]
        except (DriverUnavailableError, SerializationError) as exc:
            import warnings

            warnings.warn(f"{where}: the sample is not checked against a schema: {exc}",
                          stacklevel=4)
            return rows
        serde = probe
    out = []
    for index, row in enumerate(rows):
        if row is None or (skip is not None and isinstance(row, dict) and row and all(
                v is None for k, v in row.items() if k not in skip)):
            out.append(row)
            continue
        try:
            out.append(serde.check(row, topic=topic, is_key=False))
        except SerializationError as exc:
            raise DefinitionError(f"{where}: row {index} of the sample does not fit the value "
                                  f"serde {serde!r}: {exc}") from None
    return out


def check_sample_keys(rows: list[Any] | None, field: Any, serde: Serde | None, topic: str,
                      where: str) -> None:
    """Each sample row's key (its ``field``) must be writable by the key serde: a
    :class:`DefinitionError` naming the row otherwise."""
    if not rows or serde is None or not isinstance(field, str):
        return
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or row.get(field) is None:
            continue
        try:
            serde.check(row[field], topic=topic, is_key=True)
        except SerializationError as exc:
            raise DefinitionError(f"{where}: the key {row[field]!r} of row {index} of the "
                                  f"sample does not fit the key serde {serde!r}: {exc}") \
                from None
