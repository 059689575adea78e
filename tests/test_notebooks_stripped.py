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
            "05-testing"]


def _load(path: Path) -> dict[str, Any]:
    nb: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return nb


def test_the_five_notebooks_are_there() -> None:
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
