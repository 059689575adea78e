"""One real-browser test: JupyterLab on loopback, notebook 1 in headless Chromium.

It starts JupyterLab (token-protected, 127.0.0.1, a random port) on a copy of the notebooks,
opens ``01-getting-started.ipynb`` in Debian's ``chromium`` driven by Playwright for Python
(pointed at ``/usr/bin/chromium``; Playwright's own browser downloads are never used), runs all
cells, and checks that the preview tables, the pipeline graph and the live view's final state
are visible. Screenshots go to ``.artifacts/browser/``.

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
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "notebook1-failure.png"))
            shutil.copyfile(lab["log"], ARTIFACTS / "jupyterlab.log")
            raise
        finally:
            context.close()
