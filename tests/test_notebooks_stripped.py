"""The notebooks are committed stripped: no outputs, no execution counts, no run metadata, and
each has one ``parameters`` cell (papermill injects parameters after it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = ["01-getting-started", "02-windows-and-joins", "03-promote", "04-debugging",
            "05-testing", "06-interop", "07-privacy", "08-external"]


def _load(path: Path) -> dict[str, Any]:
    nb: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return nb


def test_the_notebooks_are_there() -> None:
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stripped(path: Path) -> None:
    nb = _load(path)
    assert nb["nbformat"] == 4
    assert set(nb["metadata"]) <= {"kernelspec", "language_info"}, nb["metadata"].keys()
    for i, cell in enumerate(nb["cells"]):
        where = f"{path.name} cell {i}"
        assert set(cell.get("metadata", {})) <= {"tags"}, f"{where}: {cell['metadata']}"
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{where} has outputs"
            assert cell["execution_count"] is None, f"{where} has an execution count"
        assert "".join(cell["source"]).strip(), f"{where} is empty"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell(path: Path) -> None:
    nb = _load(path)
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    assert tagged[0]["cell_type"] == "code"
    code = "".join(tagged[0]["source"])
    compile(code, path.name, "exec")  # plain assignments papermill can override
    if path.stem == "03-promote":
        assert 'driver = "memory://"' in code


def test_nbstripout_verify() -> None:
    """The same check as ``nbstripout --verify`` (the tool CI runs), when it is installed."""
    exe = shutil.which("nbstripout") or str(Path(sys.executable).parent / "nbstripout")
    if not Path(exe).exists():
        pytest.importorskip("nbstripout", reason="pip install nbstripout (in the test extra)")
    proc = subprocess.run([exe, "--verify", *map(str, NOTEBOOKS)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# modules the notebooks use that are not distributions of the same name
_DISTRIBUTION = {"IPython": "ipykernel", "matplotlib_inline": "matplotlib"}


def _binder_distributions() -> set[str]:
    """What ``pip install -r binder/requirements.txt`` installs directly (workbench's own
    dependencies and the extras it names, plus the other lines)."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    names: set[str] = set()

    def add(requirement: str) -> None:
        name = re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0]
        if name:
            names.add(name.lower().replace("_", "-"))

    for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("."):
            for req in project["dependencies"]:
                add(req)
            wanted = re.findall(r"\[([^\]]*)\]", line)
            for extra in (wanted[0].split(",") if wanted else []):
                for req in extras[extra.strip()]:
                    add(req)
        else:
            add(line)
    return names


def test_binder_installs_what_the_notebooks_import() -> None:
    """Every module a notebook (or the pytest file notebook 05 runs) imports, and every
    ``python -m`` tool it starts, is installed by ``binder/requirements.txt``."""
    import ast
    import re

    installed = _binder_distributions()
    needed: dict[str, str] = {}
    sources = [(p.name, "\n".join("".join(c["source"]) for c in _load(p)["cells"]
                                  if c["cell_type"] == "code")) for p in NOTEBOOKS]
    sources.append(("test_my_pipeline.py", (ROOT / "notebooks" / "test_my_pipeline.py")
                    .read_text()))
    local = {p.stem for p in (ROOT / "examples").glob("*.py")} | {"workbench"}
    for name, code in sources:
        for node in ast.walk(ast.parse(code)):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules = [node.module]
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    needed.setdefault(_DISTRIBUTION.get(top, top).lower(), name)
        for tool in re.findall(r'"-m",\s*"([A-Za-z_]+)"', code):
            needed.setdefault(tool.lower(), name)
    missing = {dist: where for dist, where in needed.items() if dist not in installed}
    assert not missing, f"binder/requirements.txt does not install {missing}"
    assert "pytest" in needed  # notebook 05 runs pytest: the check above covers it
