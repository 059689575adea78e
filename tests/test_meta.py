"""Meta-tests: import lightness, public API completeness, layering."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import workbench as wb

HEAVY = ("pandas", "numpy", "confluent_kafka", "psycopg", "dulwich", "ipywidgets", "tqdm",
         "IPython")


def test_import_workbench_is_light() -> None:
    code = ("import sys, workbench; p = workbench.Pipeline('x'); p.source('a').to('b'); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_all_is_complete_and_resolvable() -> None:
    for name in wb.__all__:
        assert getattr(wb, name) is not None, name
    public = {n for n in dir(wb) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(wb.__all__), public - set(wb.__all__)


LAYERS = {
    # module prefix -> modules it must not import (at module level)
    "workbench.errors": ("workbench.",),
    "workbench.types": ("workbench.pipeline", "workbench.stream", "workbench.runtime",
                        "workbench.drivers", "workbench.display"),
    "workbench.windows": ("workbench.pipeline", "workbench.stream", "workbench.runtime",
                          "workbench.drivers"),
    "workbench.stream": ("workbench.runtime", "workbench.drivers", "workbench.display"),
    "workbench.pipeline": ("workbench.runtime", "workbench.drivers", "workbench.display"),
    "workbench.table": ("workbench.runtime", "workbench.drivers", "workbench.display"),
    "workbench.plan": ("workbench.runtime", "workbench.drivers", "workbench.display"),
    "workbench.runtime": ("workbench.display", "workbench.pipeline", "workbench.stream",
                          "workbench.cli", "workbench.testing"),
    "workbench.drivers": ("workbench.runtime", "workbench.display", "workbench.pipeline",
                          "workbench.stream", "workbench.plan"),
    "workbench.display": ("workbench.runtime", "workbench.drivers"),
}


def _module_level_imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:  # module level only: lazy imports inside functions are allowed
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                pkg = base[: len(base) - node.level + (1 if path.name == "__init__.py" else 0)]
                name = ".".join(pkg + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_layers_import_downward_only() -> None:
    root = Path(wb.__file__).parent
    problems = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
        for prefix, banned in LAYERS.items():
            if module == prefix or module.startswith(prefix + "."):
                for imp in _module_level_imports(path, module):
                    if any(imp.startswith(b) for b in banned) and not imp.startswith(prefix):
                        problems.append(f"{module} imports {imp}")
    assert not problems, problems
