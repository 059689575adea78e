"""The status page at ``/`` in headless Chromium (Debian's, driven by Playwright, as
``tests/browser/`` does): the drawing, the counts and the refresh in place."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.browser.test_jupyterlab import ARTIFACTS, CHROMIUM_FLAGS, _chromium, _unavailable

from .procs import Job

pytestmark = [pytest.mark.slow]

JOB = '''
import workbench as wb
pipeline = wb.Pipeline("status-page")
clicks = pipeline.source("clicks", key="user", time="ts", sample=[
    {"user": f"u{i % 4}", "ts": 1000 * i, "amount": i} for i in range(40)])
clicks.group_by("user").agg(total=("amount", "sum"), name="totals").to("totals")
'''


def test_status_page_in_chromium(tmp_path: Path) -> None:
    chromium = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the Python package 'playwright' is not installed")
    (tmp_path / "job.py").write_text(JOB)
    job = Job(["run", "job.py", "--until", "forever"], tmp_path)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        job.wait_ready()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            try:
                page.goto(job.base + "/")
                page.locator("#records", has_text="40").wait_for(timeout=30_000)
                assert page.locator("#ready").inner_text() == "ready"
                assert page.locator("#status").inner_text() == "running"
                rows = page.locator("#steps tr")
                texts = [rows.nth(i).inner_text() for i in range(rows.count())]
                assert any(t.startswith("clicks") and "40" in t for t in texts), texts
                assert any(t.startswith("totals") and "table" in t for t in texts), texts
                graph = page.locator(".graph svg")
                box = graph.bounding_box()
                assert box is not None and box["width"] > 200 and box["height"] > 50
                assert graph.locator("text").count() > 3
                first = page.locator("#updated").inner_text()
                page.wait_for_function(
                    f"document.getElementById('updated').textContent !== {first!r}",
                    timeout=10_000)  # refreshed in place, without a reload
                page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
                job.signal(signal.SIGTERM)
                page.locator("#status", has_text="unreachable").wait_for(timeout=60_000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "status-page-failure.png"))
                raise
            finally:
                browser.close()
        assert job.wait(60) == 0
    finally:
        job.kill()
