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
#: needs Kafka, a Schema Registry and Java: run by test_interop_notebook with the services' URLs
INTEROP = "06-interop"


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


#: what the HTML export of an executed notebook must show without a kernel or widget manager
#: (nbconvert renders a widget output's widget view first, so the fallbacks are outputs of
#: their own): the live view's final state, the scrubber's static snapshot, previews, the graph
STATIC_FALLBACKS = {
    "01-getting-started": ['class="wb-live"', "wb-status-finished", 'class="wb-preview"',
                           "<svg", "topic paid-clicks"],
    "02-windows-and-joins": ['class="wb-preview"', "<svg", "22:14:00"],
    "04-debugging": ["wb-scrubber-fallback", "static snapshot of the offset scrubber at offset "
                     "120", "input offset 120 of 400", 'class="wb-preview"'],
    "05-testing": ['class="wb-pipeline"'],
}


def export_html(path: Path) -> str:
    """The executed notebook as nbconvert's HTML (what GitHub-like viewers and offline pages
    show); kept under ``.artifacts/notebooks/``."""
    import nbconvert
    import nbformat

    body, _resources = nbconvert.HTMLExporter().from_notebook_node(
        nbformat.read(str(path), as_version=4))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{path.stem}.html").write_text(body, encoding="utf-8")
    return str(body)


def export_html_outputs(path: Path) -> str:
    """Every output of the executed notebook, in every MIME type (HTML included)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return json.dumps([c.get("outputs", []) for c in nb["cells"]])


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n not in (PROMOTE, INTEROP)])
def test_notebook(name: str, kernel_name: str, tmp_path: Path) -> None:
    out, seconds = execute(name, kernel_name, tmp_path)
    text = _outputs_text(out)
    assert "all checks passed" in text, f"{name}: its last cells did not report success"
    html = export_html(out)
    for marker in STATIC_FALLBACKS.get(name, []):
        assert marker in html, f"{name}: the HTML export lacks {marker!r}"
    assert "Traceback" not in text and "Error" not in "".join(
        line for line in text.splitlines() if line.startswith("ERROR")), text[-2000:]
    print(f"{name}: {seconds:.1f} s")


@pytest.mark.kafka
@pytest.mark.registry
def test_interop_notebook(kernel_name: str, tmp_path: Path, kafka_url: str,
                          registry_url: str) -> None:
    """06-interop: a Java producer's Avro read, previewed and promoted to Protobuf."""
    from tests.interop.java_build import require_java

    require_java()
    out, seconds = execute(INTEROP, kernel_name, tmp_path,
                           {"kafka_url": kafka_url, "registry_url": registry_url})
    text = _outputs_text(out)
    assert "all checks passed" in text and "Traceback" not in text, text[-2000:]
    assert "totals placed as Java places keys: True" in text
    print(f"{INTEROP}: {seconds:.1f} s")


# -- cells run out of order and twice -------------------------------------------------------------
def _cell(nb: Any, text: str) -> int:
    """Index of the one code cell whose source contains ``text``."""
    found = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and text in c.source]
    assert len(found) == 1, f"{text!r}: {found}"
    return found[0]


def test_cells_run_out_of_order_and_twice(kernel_name: str, tmp_path: Path) -> None:
    """Notebook 1 as a user runs it: steps' cells run again (edited or not), a later cell
    before an earlier one, the checks twice; they still pass and the pipeline holds one step
    per name. (Running the cell that creates the pipeline again starts a new pipeline, as
    ``p = wb.Pipeline(...)`` says: the cells below it are then run again too.)"""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(NB_DIR / "01-getting-started.ipynb"), as_version=4)
    c = {key: _cell(nb, text) for key, text in {
        "params": 'data_dir = "../examples/data"', "imports": "import workbench as wb",
        "source": "clicks = p.source(", "paid": "paid = clicks.filter(",
        "cents": "with_cents = paid.assign(", "split": "sizes = with_cents.split(",
        "totals": "totals = with_cents.group_by(", "graph": "print(p.to_mermaid())",
        "run": "run = p.run(driver)", "start": "live = p.start(", "wait": "live.wait(",
        "checks": 'print("all checks passed")'}.items()}
    edited = nb.cells[c["paid"]].source.replace('wb.col("amount") > 0',
                                                'wb.col("amount") > 100')
    assert edited != nb.cells[c["paid"]].source
    extra = [
        nbformat.v4.new_code_cell(edited),  # the cell of 'paid', edited
        nbformat.v4.new_code_cell("assert len(with_cents.to_pandas()) == "
                                  "int((clicks_df.amount > 100).sum())"),  # downstream follows
        nbformat.v4.new_code_cell(nb.cells[c["paid"]].source),  # and back again
        nbformat.v4.new_code_cell(
            "assert p.steps.count('paid') == p.steps.count('totals') == 1, p.steps\n"
            "assert sorted(p.sinks) == ['big-purchases', 'paid-clicks', 'user-totals']\n"
            "print('one step per name')"),
    ]
    nb.cells.extend(extra)
    n = len(nb.cells)
    order = [c["params"], c["imports"], c["source"], c["paid"], c["cents"],
             c["totals"],                     # before the split's cell
             c["split"], c["paid"], c["cents"],  # 'paid' and 'cents' again
             n - 4, n - 3, n - 2,              # edited, checked downstream, restored
             c["source"], c["paid"], c["cents"],  # a new pipeline, and its steps again
             c["totals"], c["split"], c["cents"], c["totals"], c["split"],
             c["graph"], c["run"], c["start"], c["wait"], c["checks"], n - 1, c["checks"]]
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(NB_DIR)}})
    outputs: list[str] = []
    with client.setup_kernel():
        for index in order:
            cell = client.execute_cell(nb.cells[index], index)
            for o in cell.get("outputs", []):
                if o.get("output_type") == "error":
                    pytest.fail(f"cell {index} failed: {o.get('ename')}: {o.get('evalue')}",
                                pytrace=False)
                outputs.append("".join(o.get("text", "")))
    text = "\n".join(outputs)
    assert text.count("all checks passed") == 2 and "one step per name" in text


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
        url = str(request.getfixturevalue(fixture))
    except pytest.FixtureLookupError:
        pytest.skip(f"the {fixture!r} fixture (workbench.devservices.pytest_fixtures) is not "
                    "exposed in tests/conftest.py")
    if driver == "postgresql":  # a password the saved outputs must not show (trust auth: unused)
        scheme, rest = url.split("://", 1)
        user, host = rest.split("@", 1)
        url = f"{scheme}://{user.split(':')[0]}:{SECRET}@{host}"
    return url


SECRET = "SeCrEt123"


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
    text = _outputs_text(out)
    assert "results identical to memory://" in text
    assert SECRET not in text, "a saved output shows the driver URL's password"
    assert SECRET not in export_html_outputs(out)
    got = json.loads(results.read_text())
    assert got["paid"]["data"], "no paid clicks"
    _RESULTS[driver] = got
    reference = _RESULTS.get("memory")
    if reference is not None:
        assert got == reference, f"{driver}: final results differ from memory://"
    print(f"{PROMOTE} on {driver}: {seconds:.1f} s")
