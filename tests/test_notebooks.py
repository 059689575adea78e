"""Execute every notebook with papermill: the tutorials are integration tests.

* The kernel is this interpreter (a kernelspec ``workbench-test`` is written to a temporary
  ``JUPYTER_PATH``), so the notebooks run against the code under test.
* Each cell has a timeout; a failing notebook is kept, executed up to the failure, under
  ``.artifacts/notebooks/``.
* ``03-promote`` runs once per available driver (memory, git, and Kafka / PostgreSQL when their
  drivers are registered and the services can be had); its final results must be identical to
  the in-memory run's (the notebook asserts it, and each run's results are compared here too).

Without papermill/ipykernel these tests skip with how to install them; with ``CI=true`` they
fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench._env import in_ci

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
ARTIFACTS = ROOT / ".artifacts" / "notebooks"
KERNEL = "workbench-test"
CELL_TIMEOUT = int(os.environ.get("WORKBENCH_NOTEBOOK_CELL_TIMEOUT", "600"))

pytestmark = pytest.mark.notebook

NOTEBOOKS = sorted(p.stem for p in NB_DIR.glob("*.ipynb"))
PROMOTE = "03-promote"


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        message = (f"{module} is not installed: pip install -e '.[notebook,test]' "
                   "(papermill, ipykernel, ipywidgets, matplotlib)")
        if in_ci():
            pytest.fail(message + " (CI=true: not skipping)", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def kernel_name(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kernelspec that starts this very interpreter (so the kernel sees the code under test
    whatever kernels are installed on the machine)."""
    for module in ("papermill", "ipykernel", "ipywidgets", "matplotlib"):
        _require(module)
    base = tmp_path_factory.mktemp("jupyter")
    spec_dir = base / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "workbench (tests)",
        "language": "python",
        "env": {"MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(base) + (os.pathsep + old if old else "")
    try:
        yield KERNEL
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old


def execute(name: str, kernel: str, tmp_path: Path, parameters: dict[str, Any] | None = None,
            tag: str = "") -> tuple[Path, float]:
    """Run ``notebooks/<name>.ipynb`` with papermill; return the executed notebook's path and
    the time taken. On failure, keep the executed notebook under ``.artifacts/notebooks/``."""
    import papermill

    out = tmp_path / f"{name}{tag}.ipynb"
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(NB_DIR / f"{name}.ipynb"), str(out), parameters=parameters or {},
            kernel_name=kernel, cwd=str(NB_DIR), execution_timeout=CELL_TIMEOUT,
            start_timeout=120, progress_bar=False, log_output=False,
        )
    except Exception as exc:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        kept = ARTIFACTS / out.name
        if out.exists():
            shutil.copyfile(out, kept)
        pytest.fail(f"notebook {name}{tag} failed (executed notebook: {kept}):\n{exc}",
                    pytrace=False)
    return out, time.perf_counter() - started


def _outputs_text(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                parts.append(f"ERROR {o.get('ename')}: {o.get('evalue')}")
            parts.append("".join(o.get("text", "")))
            data = o.get("data", {})
            parts.append("".join(data.get("text/plain", "")))
    return "\n".join(parts)


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n != PROMOTE])
def test_notebook(name: str, kernel_name: str, tmp_path: Path) -> None:
    out, seconds = execute(name, kernel_name, tmp_path)
    text = _outputs_text(out)
    assert "all checks passed" in text, f"{name}: its last cells did not report success"
    print(f"{name}: {seconds:.1f} s")


# -- the promotion notebook, once per driver ----------------------------------------------------
def _registered(scheme: str) -> bool:
    """Whether ``scheme://`` URLs resolve to a driver in this version."""
    from workbench import drivers

    factories = getattr(drivers, "_FACTORIES", {})
    return scheme in factories


_RESULTS: dict[str, Any] = {}


def _driver_url(driver: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if driver == "memory":
        return "memory://"
    scheme = {"git": "git", "kafka": "kafka", "postgresql": "postgresql"}[driver]
    if not _registered(scheme):
        pytest.skip(f"the {driver} driver is not registered in workbench.drivers yet; this run "
                    "starts once it is")
    if driver == "git":
        pytest.importorskip("dulwich", reason="pip install -e '.[git]'")
        return f"git://{tmp_path}/promote-repo"
    fixture = {"kafka": "kafka_url", "postgresql": "postgres_url"}[driver]
    try:
        url = request.getfixturevalue(fixture)
    except pytest.FixtureLookupError:
        pytest.skip(f"the {fixture!r} fixture (workbench.devservices.pytest_fixtures) is not "
                    "exposed in tests/conftest.py")
    return str(url)


@pytest.mark.parametrize("driver", [
    "memory",
    "git",
    pytest.param("kafka", marks=pytest.mark.kafka),
    pytest.param("postgresql", marks=pytest.mark.postgres),
])
def test_promote(driver: str, kernel_name: str, tmp_path: Path,
                 request: pytest.FixtureRequest) -> None:
    url = _driver_url(driver, request, tmp_path)
    results = tmp_path / "results.json"
    out, seconds = execute(PROMOTE, kernel_name, tmp_path,
                           {"driver": url, "results_path": str(results)}, tag=f"-{driver}")
    assert "results identical to memory://" in _outputs_text(out)
    got = json.loads(results.read_text())
    assert got["paid"]["data"], "no paid clicks"
    _RESULTS[driver] = got
    reference = _RESULTS.get("memory")
    if reference is not None:
        assert got == reference, f"{driver}: final results differ from memory://"
    print(f"{PROMOTE} on {driver}: {seconds:.1f} s")
