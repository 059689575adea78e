"""The pipeline graph: one immutable :class:`Node` per step (definition layer, internal)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Node", "caller_site", "current_execution", "describe_site"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _notebook_cell(filename: str) -> str | None:
    """``"cell In[7]"`` for code that IPython compiled from cell ``[7]``, else ``None``."""
    ip_module = sys.modules.get("IPython")
    if ip_module is None:
        return None
    try:
        shell = ip_module.get_ipython()
        label = shell.compile.format_code_name(filename) if shell is not None else None
    except Exception:
        label = None
    if label:
        return f"{label[0].lower()} {label[1]}"
    if "ipykernel_" in filename or filename.startswith("<ipython-input"):
        return "notebook cell"
    return None


def describe_site(filename: str, lineno: int) -> str:
    """Where code is, for messages: ``cell In[7], line 3`` in IPython and Jupyter (the number
    in the cell's prompt), else ``path:line`` (relative to the working directory when below
    it)."""
    cell = _notebook_cell(filename)
    if cell is not None:
        return f"{cell}, line {lineno}"
    short = filename
    if not filename.startswith("<"):
        try:
            short = os.path.relpath(filename)
        except ValueError:
            short = filename
        if short.startswith(".."):
            short = filename
    return f"{short}:{lineno}"


def current_execution() -> int | None:
    """The number of the IPython/Jupyter cell execution running now (``None`` outside IPython,
    where a whole script is one execution)."""
    ip_module = sys.modules.get("IPython")
    if ip_module is None:
        return None
    try:
        shell = ip_module.get_ipython()
    except Exception:
        return None
    count = getattr(shell, "execution_count", None) if shell is not None else None
    return count if isinstance(count, int) else None


def caller_site() -> str:
    """Where the first frame outside the workbench package is (where a step is defined), as
    :func:`describe_site` says it."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep):
            return describe_site(filename, frame.f_lineno)
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
        auto_named: the name is a default (``filter-2``), not one the user chose.
        execution: the notebook/IPython cell execution that defined the step (``None`` outside
            IPython: a script is one execution). A step defined again in a later execution
            replaces this one (see ``Pipeline`` in ``pipeline.py``).
        inherits_key: ``key_changed`` follows the parents' (recomputed when one is redefined).
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
    execution: int | None = None
    inherits_key: bool = False

    def __repr__(self) -> str:
        return f"<Node {self.name!r} op={self.op} at {self.defined_at}>"
