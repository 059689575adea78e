"""The one error hierarchy of workbench.

Every exception workbench raises on purpose is a :class:`WorkbenchError`::

    WorkbenchError
    ├── DefinitionError          the pipeline, as written, cannot work
    ├── DriverError              a driver (log, transaction, membership) failed
    │   ├── DriverUnavailableError   the service is not reachable / not installed
    │   ├── SerializationError       a record could not be (de)serialized
    │   └── FencedError              another process took over this application's work
    ├── StateError               state could not be restored or is inconsistent
    └── ProcessingError          a user function failed on a record

Messages quote values with ``!r`` and end with a hint where one helps. Runtime errors name the
step, the record's topic/partition/offset and the line where the step was defined.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "DefinitionError",
    "DriverError",
    "DriverUnavailableError",
    "FencedError",
    "ProcessingError",
    "SerializationError",
    "StateError",
    "WorkbenchError",
    "did_you_mean",
]


class WorkbenchError(Exception):
    """Base class of every error workbench raises on purpose; catch this to catch them all."""


class DefinitionError(WorkbenchError, ValueError):
    """The pipeline definition is wrong: a misspelt column, a non-callable, a duplicate step name,
    an unknown driver URL. Raised while building the pipeline, before anything runs; the message
    says what to change."""


class DriverError(WorkbenchError):
    """A driver failed to read, write or commit. The run stopped without committing the current
    transaction, so restarting resumes from the last commit."""


class DriverUnavailableError(DriverError):
    """The driver's service or client library is missing or unreachable. The message says how to
    install or start it (for local services: ``workbench dev up``)."""


class SerializationError(DriverError):
    """A record's key or value could not be serialized or deserialized. The message names the
    topic, partition and offset; configure a dead-letter route to keep going past bad records."""


class FencedError(DriverError):
    """Another process with the same application id took over this process's work (its
    transactions are fenced). This process stops its tasks instead of writing duplicates."""


class StateError(WorkbenchError):
    """A state store could not be restored, or state is inconsistent with the plan (for example,
    a stateful step was renamed). The message names the store."""


class ProcessingError(WorkbenchError):
    """A user function raised while processing a record.

    Attributes:
        step: name of the step whose function failed.
        topic, partition, offset: where the input record that led to the failure came from
            (``None`` when unknown, for example for records created inside the pipeline).
        defined_at: ``file:line`` where the step was defined.
        source_topic, source_partition, source_offset: when the record was read from a
            repartition topic, the position of the input record it came from (through any
            number of repartition topics), else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        step: str | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        defined_at: str | None = None,
        source: tuple[str | None, int | None, int | None] | None = None,
    ) -> None:
        super().__init__(message)
        self.step = step
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.defined_at = defined_at
        self.source_topic, self.source_partition, self.source_offset = (
            source if source is not None else (None, None, None))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest of ``choices``, or a list of the choices."""
    options = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=0.5)
    if close:
        return f" Did you mean {close[0]!r}?"
    if options:
        shown = ", ".join(repr(o) for o in options[:12])
        more = ", ..." if len(options) > 12 else ""
        return f" Available: {shown}{more}."
    return ""
