"""External work: steps that wait for something outside the engine.

* :mod:`.async_op` — ``map_async`` / ``flat_map_async``: calls on an event loop (or a thread
  pool), at most ``concurrency`` at a time, with timeouts and retries;
* :mod:`.pipe` and :mod:`.children` — ``pipe``: a pool of long-lived child processes fed
  records on stdin (JSON lines or length-prefixed bytes);
* :mod:`.base` — what they share: an ordered queue of the records in flight, bounded;
  results leave in input order, and a commit waits for the calls of the records it commits;
* :mod:`.sizer` — the batch sizer: how many records the engine reads per poll, so that every
  transaction stays inside ``max_transaction`` (:mod:`.limits`: the driver's default).

The calls themselves are at-least-once (a retry, a crash or a restart can repeat one); the
outputs they lead to are exactly-once like any other. ``docs/external.md`` tells the whole
story.
"""

from __future__ import annotations

from typing import Any

from ..task import OPERATOR_FACTORIES, OpContext
from .async_op import AsyncMapOp
from .base import ExternalOp
from .pipe import PipeOp
from .sizer import BatchSizer

__all__ = ["AsyncMapOp", "BatchSizer", "ExternalOp", "PipeOp"]


def _async_op(pn: Any, ctx: OpContext) -> AsyncMapOp:
    node = pn.node
    return AsyncMapOp(pn.name, node.defined_at, ctx.app_id, ctx.task, node.params["spec"])


def _pipe_op(pn: Any, ctx: OpContext) -> PipeOp:
    node = pn.node
    return PipeOp(pn.name, node.defined_at, ctx.app_id, ctx.task, node.params["spec"])


OPERATOR_FACTORIES["map_async"] = _async_op
OPERATOR_FACTORIES["flat_map_async"] = _async_op
OPERATOR_FACTORIES["pipe"] = _pipe_op
