"""The engine: tasks, operators on micro-batches, state stores, stream time, the commit loop.

Importing this package registers the stateful operators (windows, tables, joins, processors)
in :data:`workbench.runtime.task.OPERATOR_FACTORIES`.
"""

from __future__ import annotations

from . import (  # noqa: F401  (registration)
    external,
    fk_ops,
    global_ops,
    join_ops,
    processor_ops,
    regroup_ops,
    sink_ops,
    suppress_ops,
    table_ops,
    window_ops,
)
from .clock import Clock, ManualClock, SystemClock
from .engine import Engine, EngineStats
from .task import OPERATOR_FACTORIES, OpContext, Task

__all__ = ["OPERATOR_FACTORIES", "Clock", "Engine", "EngineStats", "ManualClock", "OpContext",
           "SystemClock", "Task"]
