"""The pipeline graph: one immutable :class:`Node` per step (definition layer, internal)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Node", "caller_site"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def caller_site() -> str:
    """``file:line`` of the first frame outside the workbench package (where a step is defined)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep):
            if "ipykernel_" in filename or filename.startswith("<ipython-input"):
                return f"notebook cell, line {frame.f_lineno}"
            short = filename
            if not filename.startswith("<"):
                try:
                    short = os.path.relpath(filename)
                except ValueError:
                    short = filename
                if short.startswith(".."):
                    short = filename
            return f"{short}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return "<unknown>"


@dataclass(eq=False, repr=False)
class Node:
    """One step of a pipeline.

    Attributes:
        id: position in the pipeline (creation order, so parents always have smaller ids).
        op: the kind of step (``"source"``, ``"map"``, ``"filter"``, ``"sink"``, ...).
        name: the step's unique name within its pipeline (explicit ``name=`` or a default).
        parents: upstream nodes; several for ``merge`` and joins.
        params: the step's specification (functions, topics, windows...).
        defined_at: ``file:line`` of the user code that created the step.
        key_changed: records may have a key other than the one their partition was chosen by.
        stateful: the step keeps state (and so needs co-partitioned input).
    """

    id: int
    op: str
    name: str
    parents: tuple[Node, ...]
    params: dict[str, Any] = field(default_factory=dict)
    defined_at: str = "<unknown>"
    key_changed: bool = False
    stateful: bool = False
    auto_named: bool = True
    cache: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<Node {self.name!r} op={self.op} at {self.defined_at}>"
