"""workbench: notebook-first stream processing with Kafka Streams semantics.

Build a pipeline step by step, preview every step as a pandas DataFrame, then run the same graph
on ``memory://``, and later on Kafka, PostgreSQL or a git repository.

>>> import workbench as wb
>>> p = wb.Pipeline("hello")
>>> nums = p.source("numbers", sample=[{"n": 1}, {"n": 2}, {"n": 3}])
>>> _ = nums.filter(lambda v: v["n"] % 2).to("odd")
>>> [r.value for r in p.run("memory://").records("odd")]
[{'n': 1}, {'n': 3}]

Importing workbench loads neither pandas nor any driver's client library; they load when used.
"""

from __future__ import annotations

import logging
import typing

from .calls import CallInfo, call_info
from .cogroup import CogroupedStream, cogroup
from .drivers import connect
from .errors import (
    DefinitionError,
    DriverError,
    DriverUnavailableError,
    FencedError,
    ProcessingError,
    SerializationError,
    StateError,
    WorkbenchError,
)
from .expressions import Expr, col, lit, when
from .global_table import GlobalTable
from .grouped import GroupedStream, WindowedStream
from .grouped_table import GroupedTable
from .pipeline import Pipeline
from .preview import options
from .privacy import ERASED, Personal, forget
from .processors import Processor, ProcessorContext, ValueAndTimestamp
from .stream import Branches, Stream
from .suppress import TimeLimit
from .table import Table
from .types import Change, Record
from .windows import Hopping, Session, Sliding, Tumbling, Windowed

__version__ = "0.1.0"

__all__ = [
    "Branches",
    "CallInfo",
    "Change",
    "CogroupedStream",
    "Expr",
    "GlobalTable",
    "GroupedStream",
    "GroupedTable",
    "Hopping",
    "Processor",
    "ProcessorContext",
    "Session",
    "Sliding",
    "Table",
    "TimeLimit",
    "Tumbling",
    "ValueAndTimestamp",
    "WindowedStream",
    "Windowed",
    "DefinitionError",
    "ERASED",
    "KeyStore",
    "Personal",
    "forget",
    "DriverError",
    "DriverUnavailableError",
    "FencedError",
    "Pipeline",
    "ProcessingError",
    "Record",
    "Run",
    "SchemaRegistry",
    "SerializationError",
    "StateError",
    "Stream",
    "WorkbenchError",
    "__version__",
    "call_info",
    "cogroup",
    "col",
    "connect",
    "debug",
    "lit",
    "options",
    "serde",
    "testing",
    "when",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> typing.Any:
    if name == "Run":
        from .run import Run

        return Run
    if name == "KeyStore":
        from .privacy.keystore import KeyStore

        return KeyStore
    if name == "SchemaRegistry":
        from .serde import SchemaRegistry

        return SchemaRegistry
    if name in ("testing", "debug", "serde"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
