"""Checks of argument values shared by the DSL, the run helpers and the engine."""

from __future__ import annotations

from .errors import DefinitionError

__all__ = ["check_batch_size", "check_partitions"]


def check_partitions(partitions: object, where: str) -> int | None:
    """``partitions=`` must be ``None`` or a whole number >= 1."""
    if partitions is None:
        return None
    if partitions.__class__ is not int or partitions < 1:  # type: ignore[operator]
        hint = " (a number, not a string)" if isinstance(partitions, str) else ""
        raise DefinitionError(f"{where}: partitions must be a whole number >= 1{hint}, got "
                              f"{partitions!r}.")
    return partitions  # type: ignore[return-value]


def check_batch_size(batch_size: object) -> int:
    """``batch_size=`` must be a whole number >= 1."""
    if batch_size.__class__ is not int or batch_size < 1:  # type: ignore[operator]
        raise DefinitionError(f"batch_size must be a whole number >= 1 (records per input "
                              f"partition and poll), got {batch_size!r}.")
    return batch_size  # type: ignore[return-value]
