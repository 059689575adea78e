"""One real-browser test: JupyterLab on loopback, notebook 1 in headless Chromium.

It starts JupyterLab (token-protected, 127.0.0.1, a random port) on a copy of the notebooks,
opens ``01-getting-started.ipynb`` in Debian's ``chromium`` driven by Playwright for Python
(pointed at ``/usr/bin/chromium``; Playwright's own browser downloads are never used), runs all
cells, and checks that the preview tables, the pipeline graph and the live view's final state
are visible. Then it does what a user does all day: edits the cell of the named step ``paid``,
runs it again (no "duplicate step name"), runs the next cell, and checks that both previews
show the new rows; and it adds a cell with the offset scrubber, whose widget renders while its
static fallback (kept for nbconvert and GitHub) is emptied. Screenshots go to
``.artifacts/browser/``.

To enable it::

    apt-get update && apt-get install -y chromium      # as root
    pip install -e '.[notebook,test]'                  # jupyterlab, playwright, ipykernel, ...

Skipped with that message when something is missing; with ``CI=true`` it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench._env import in_ci

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / ".artifacts" / "browser"
NOTEBOOK = "01-getting-started.ipynb"
HOW_TO = ("apt-get update && apt-get install -y chromium (as root); "
          "pip install -e '.[notebook,test]' (jupyterlab, playwright)")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]

pytestmark = [pytest.mark.notebook, pytest.mark.slow]


def _unavailable(what: str) -> None:
    message = f"{what}; to enable the browser test: {HOW_TO}"
    if in_ci():
        pytest.fail(message + " (CI=true: not skipping)", pytrace=False)
    pytest.skip(message)


def _chromium() -> str:
    for candidate in (os.environ.get("WORKBENCH_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    _unavailable("Debian's chromium is not installed")
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """JupyterLab on 127.0.0.1 serving a copy of the notebooks; its kernel is this
    interpreter."""
    for module in ("jupyterlab", "ipykernel", "ipywidgets", "playwright"):
        try:
            __import__(module)
        except ImportError:
            _unavailable(f"the Python package {module!r} is not installed")
    work = tmp_path / "work"
    shutil.copytree(ROOT / "notebooks", work / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copytree(ROOT / "examples" / "data", work / "examples" / "data")
    data = tmp_path / "jupyter-data"
    spec = data / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # render every cell (no windowing), so the checks see the whole notebook
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    apputils = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    apputils.mkdir(parents=True)
    (apputils / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {
        **os.environ,
        "JUPYTER_DATA_DIR": str(data),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    port, token = _free_port(), uuid.uuid4().hex
    log = (tmp_path / "jupyterlab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
         "--LabApp.news_url=", "--ServerApp.open_browser=False",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                log.flush()
                pytest.fail("JupyterLab exited:\n" + (tmp_path / "jupyterlab.log").read_text())
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start in 120 s:\n"
                                + (tmp_path / "jupyterlab.log").read_text())
                time.sleep(0.5)
        yield {"base": base, "token": token, "work": work, "log": tmp_path / "jupyterlab.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_notebook_1_in_jupyterlab(lab: dict[str, Any], tmp_path: Path) -> None:
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = f"{lab['base']}/lab/tree/notebooks/{NOTEBOOK}?token={lab['token']}"
    started = time.perf_counter()
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=chromium, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000})
        page = context.pages[0] if context.pages else context.new_page()
        try:
            page.set_default_timeout(60_000)
            page.goto(url)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            # the kernel is up when the status bar says so
            page.locator(".jp-StatusBar-Widget", has_text="Idle").first.wait_for(
                timeout=180_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            page.locator(".jp-OutputArea-output", has_text="all checks passed").wait_for(
                timeout=300_000)
            seconds = time.perf_counter() - started

            errors = page.locator(".jp-OutputArea-output[data-mime-type="
                                  "'application/vnd.jupyter.stderr'] >> text=Traceback")
            assert errors.count() == 0, "a cell raised"

            previews = page.locator(".jp-OutputArea-output .wb-preview table")
            assert previews.count() >= 6, previews.count()
            first = previews.first
            first.scroll_into_view_if_needed()
            assert first.is_visible()
            assert first.locator("th").first.inner_text().startswith("key")
            page.screenshot(path=str(ARTIFACTS / "notebook1-preview.png"))

            graph = page.locator(".jp-OutputArea-output .wb-pipeline svg").first
            graph.scroll_into_view_if_needed()
            assert graph.is_visible()
            box = graph.bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 100
            assert graph.locator("text").count() > 5  # labelled boxes
            page.screenshot(path=str(ARTIFACTS / "notebook1-graph.png"))

            live = page.locator(".jp-OutputArea-output .wb-live").first
            live.scroll_into_view_if_needed()
            assert live.is_visible() and "finished" in live.inner_text()
            page.screenshot(path=str(ARTIFACTS / "notebook1-live.png"))
            print(f"notebook 1 ran in JupyterLab/Chromium in {seconds:.1f} s")

            _edit_and_rerun_a_named_step(page)
            _scrubber_replaces_its_fallback(page)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "notebook1-failure.png"))
            shutil.copyfile(lab["log"], ARTIFACTS / "jupyterlab.log")
            raise
        finally:
            context.close()


def _code_cell(page: Any, text: str) -> Any:
    """The notebook's code cell whose editor contains ``text``."""
    cell = page.locator(".jp-Notebook .jp-CodeCell").filter(
        has=page.locator(".jp-InputArea-editor", has_text=text))
    assert cell.count() == 1, f"{text!r}: {cell.count()} cells"
    return cell.first


def _replace_source(page: Any, cell: Any, code: str) -> None:
    cell.scroll_into_view_if_needed()
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(code)


def _run(page: Any, cell: Any) -> None:
    """Run ``cell`` (Shift+Enter) and wait until its prompt shows it ran again."""
    before = cell.locator(".jp-InputPrompt").first.inner_text()
    cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(
        "([el, before]) => { const t = el.innerText; return t !== before && !t.includes('*'); }",
        arg=[cell.locator(".jp-InputPrompt").first.element_handle(), before], timeout=120_000)


def _edit_and_rerun_a_named_step(page: Any) -> None:
    """Edit the cell of step 'paid' and run it again, then the cell below: both previews show
    the new rows (250 clicks over 100 instead of 366 paid ones), and no cell errs."""
    paid = _code_cell(page, 'paid = clicks.filter(')
    assert "366 rows" in paid.locator(".jp-OutputArea-output").first.inner_text()
    _replace_source(page, paid,
                    'paid = clicks.filter(wb.col("amount") > 100, name="paid")\npaid')
    _run(page, paid)
    output = paid.locator(".jp-OutputArea-output").first
    output.locator(".wb-meta", has_text="250 rows").wait_for(timeout=60_000)
    assert "DefinitionError" not in output.inner_text()
    assert "duplicate" not in output.inner_text()
    output.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "notebook1-rerun-paid.png"))
    cents = _code_cell(page, "with_cents = paid.assign(")
    _run(page, cents)
    out = cents.locator(".jp-OutputArea-output").first
    out.locator(".wb-meta", has_text="250 rows").wait_for(timeout=60_000)
    assert "Error" not in out.inner_text()
    out.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "notebook1-rerun-downstream.png"))


def _scrubber_replaces_its_fallback(page: Any) -> None:
    """A new cell shows the scrubber: the widget renders, and its static fallback (an output
    of its own, for viewers without widgets) is emptied once the frontend counts the view."""
    last = page.locator(".jp-Notebook .jp-CodeCell").last
    last.locator(".cm-content").click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below
    page.keyboard.press("Enter")
    page.keyboard.insert_text("scrub = wb.debug.scrubber(p, offset=5)\nscrub")
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    new = cells.nth(cells.count() - 1)  # fixed now: Shift+Enter adds another cell below
    page.keyboard.press("Shift+Enter")
    slider = new.locator(".widget-slider").first
    slider.wait_for(timeout=120_000)
    assert slider.is_visible()
    new.locator(".wb-preview", has_text="input offset 5").first.wait_for(timeout=60_000)
    page.wait_for_function(
        "el => el.querySelectorAll('.wb-scrubber-fallback').length === 0",
        arg=new.element_handle(), timeout=60_000)
    new.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "notebook1-scrubber.png"))
