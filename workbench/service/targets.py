"""Loading a pipeline for ``workbench run``/``graph``: a TARGET is ``module:attr``,
``path/to/file.py:attr`` or ``notebook.ipynb:attr`` (attr defaults to ``pipeline``), naming a
:class:`~workbench.Pipeline` or a function returning one.

* A file is loaded under a private module name, and its folder is added at the **end** of
  ``sys.path``: a pipeline file called ``json.py`` or ``logging.py`` never shadows the standard
  library, and modules beside it can still be imported.
* A notebook's code cells run in order, with ``-p`` parameters injected after the cell tagged
  ``parameters`` (as papermill does), until a cell defines ``attr``; the cells after it (runs,
  checks, plots) do not run. IPython magics and shell lines (``%``, ``!``) are skipped.
* ``-p NAME=VALUE`` values are Python literals when they parse as one (``3``, ``True``,
  ``'x'``, ``[1, 2]``), else strings. A function target gets the ones its signature names.

Errors (no such file, a syntax error, a module that is not there, an empty target) raise
:class:`~workbench.errors.DefinitionError` with one line saying what and where.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import itertools
import json
import os
import sys
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import DefinitionError

if TYPE_CHECKING:
    from ..pipeline import Pipeline

__all__ = ["load_target", "parse_params"]

_counter = itertools.count(1)


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["n=3", "name=shop"]`` → ``{"n": 3, "name": "shop"}``.

    >>> parse_params(["n=3", "name=shop", "flag=True", "url=kafka://h:9092"])
    {'n': 3, 'name': 'shop', 'flag': True, 'url': 'kafka://h:9092'}
    """
    out: dict[str, Any] = {}
    for item in items or []:
        name, eq, text = item.partition("=")
        name = name.strip()
        if not eq or not name.isidentifier():
            raise DefinitionError(f"-p {item!r}: use -p NAME=VALUE with NAME a Python "
                                  "identifier.")
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = text
    return out


def _syntax_error(exc: SyntaxError, where: str) -> DefinitionError:
    line = f" line {exc.lineno}" if exc.lineno else ""
    return DefinitionError(f"syntax error in {where}{line}: {exc.msg}.")


def _load_error(exc: BaseException, where: str) -> DefinitionError:
    if isinstance(exc, SyntaxError):
        return _syntax_error(exc, where)
    if isinstance(exc, ModuleNotFoundError):
        return DefinitionError(f"{where} imports {exc.name!r}, which is not installed or not "
                               "on the path.")
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in (where, "<notebook>") or \
                tb.tb_frame.f_code.co_filename.endswith(os.path.basename(where)):
            line = tb.tb_lineno
        tb = tb.tb_next
    at = f" line {line}" if line else ""
    return DefinitionError(f"loading {where}{at} failed: {type(exc).__name__}: {exc}")


def _load_file(path: str) -> types.ModuleType:
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.append(folder)  # after the standard library: json.py must not shadow json
    stem = os.path.splitext(os.path.basename(path))[0]
    name = f"_workbench_target_{next(_counter)}_{stem if stem.isidentifier() else 'file'}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DefinitionError(f"cannot import {path!r}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except DefinitionError:
        raise
    except Exception as exc:
        sys.modules.pop(name, None)
        raise _load_error(exc, path) from exc
    return module


def _load_module(spec: str) -> types.ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name == spec or spec.startswith(f"{exc.name}."):
            raise DefinitionError(f"no module named {spec!r} (give a file as path/to/file.py "
                                  "or a module on the Python path).") from exc
        raise _load_error(exc, spec) from exc
    except Exception as exc:
        raise _load_error(exc, spec) from exc


def _code_cells(path: str) -> list[tuple[str, list[str]]]:
    try:
        with open(path, encoding="utf-8") as f:
            nb = json.load(f)
    except ValueError as exc:
        raise DefinitionError(f"{path} is not a notebook (invalid JSON: {exc}).") from exc
    cells = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        text = "".join(src) if isinstance(src, list) else str(src)
        tags = list(cell.get("metadata", {}).get("tags", []))
        cells.append((text, tags))
    return cells


def _strip_magics(text: str) -> str:
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            lines.append(line[: len(line) - len(stripped)] + "pass  # " + stripped)
        else:
            lines.append(line)
    return "\n".join(lines)


def _load_notebook(path: str, attr: str, params: Mapping[str, Any]) -> dict[str, Any]:
    from ..pipeline import Pipeline

    cells = _code_cells(path)
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.append(folder)
    namespace: dict[str, Any] = {"__name__": "__workbench_notebook__", "__file__": path}
    has_parameters = any("parameters" in tags for _t, tags in cells)
    if params and not has_parameters:
        raise DefinitionError(f"{path} has no cell tagged 'parameters', so -p cannot set "
                              f"{sorted(params)}.")
    injected = "".join(f"{k} = {v!r}\n" for k, v in params.items())
    old_cwd = os.getcwd()
    os.chdir(folder or ".")  # as Jupyter and papermill run a notebook: from its folder
    try:
        for number, (text, tags) in enumerate(cells, 1):
            where = f"{path} cell {number}"
            try:
                code = compile(_strip_magics(text), where, "exec")
                exec(code, namespace)
                if "parameters" in tags and injected:
                    exec(compile(injected, f"{path} injected parameters", "exec"), namespace)
            except DefinitionError:
                raise
            except Exception as exc:
                err = _load_error(exc, where)
                raise err from exc
            obj = namespace.get(attr)
            if isinstance(obj, Pipeline) or (callable(obj) and attr in namespace):
                break
    finally:
        os.chdir(old_cwd)
    return namespace


def _call(factory: Any, params: Mapping[str, Any], target: str) -> Any:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return factory()
    takes_all = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    kwargs = {k: v for k, v in params.items() if takes_all or k in sig.parameters}
    missing = [n for n, p in sig.parameters.items()
               if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and n not in kwargs]
    if missing:
        raise DefinitionError(f"{target} needs parameters {missing}: pass them with "
                              f"-p NAME=VALUE.")
    return factory(**kwargs)


def load_target(target: str, params: Mapping[str, Any] | None = None) -> Pipeline:
    """The pipeline named by ``target`` (see the module docstring)."""
    from ..pipeline import Pipeline

    params = dict(params or {})
    spec, _, attr = target.strip().rpartition(":") if target.count(":") else (target, "", "")
    spec = spec.strip()
    attr = attr.strip() or "pipeline"
    if not spec:
        raise DefinitionError(f"empty TARGET {target!r}: give module:attr, file.py:attr or "
                              "notebook.ipynb:attr.")
    used_params = False
    if spec.endswith(".ipynb"):
        path = os.path.abspath(spec)
        if not os.path.exists(path):
            raise DefinitionError(f"no such notebook: {spec!r}.")
        namespace = _load_notebook(path, attr, params)
        used_params = True
        source = f"notebook {spec}"
    elif spec.endswith(".py") or os.sep in spec or (os.altsep and os.altsep in spec):
        path = os.path.abspath(spec)
        if not os.path.exists(path):
            raise DefinitionError(f"no such file: {spec!r}.")
        namespace = vars(_load_file(path))
        source = spec
    else:
        namespace = vars(_load_module(spec))
        source = f"module {spec}"
    obj: Any = namespace.get(attr)
    if obj is None:
        names = sorted(n for n, v in namespace.items()
                       if isinstance(v, Pipeline) and not n.startswith("_"))
        hint = f" Pipelines in it: {names}." if names else ""
        raise DefinitionError(f"{source} has no attribute {attr!r}.{hint}")
    if not isinstance(obj, Pipeline) and callable(obj):
        try:
            obj = _call(obj, params, f"{spec}:{attr}")
        except DefinitionError:
            raise
        except Exception as exc:
            raise _load_error(exc, spec) from exc
        used_params = True
    if not isinstance(obj, Pipeline):
        raise DefinitionError(f"{target!r} is {type(obj).__name__}, not a workbench.Pipeline.")
    if params and not used_params:
        raise DefinitionError(f"-p {sorted(params)}: {target} is a Pipeline, not a function "
                              "or notebook that takes parameters.")
    return obj
