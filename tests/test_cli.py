"""The workbench command, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PIPELINE = '''
import workbench as wb
pipeline = wb.Pipeline("cli-test")
pipeline.source("in", sample=[{"n": n} for n in range(5)]).filter(
    lambda v: v["n"] % 2 == 0).to("even")
'''


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_run_batch_job(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(PIPELINE)
    out = run_cli("run", "job.py:pipeline", "--driver", "memory://", "--until", "end",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "cli-test: 5 records in" in out.stdout and "even=3" in out.stdout


def test_graph_formats(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(PIPELINE)
    assert "digraph" in run_cli("graph", "job.py", "--format", "dot", cwd=tmp_path).stdout
    assert run_cli("graph", "job.py", "--format", "mermaid", cwd=tmp_path).stdout.startswith(
        "flowchart LR")
    assert "Sub-topology 0" in run_cli("graph", "job.py", "--format", "plan",
                                       cwd=tmp_path).stdout


def test_errors_and_log_level(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(PIPELINE)
    out = run_cli("run", "job.py:nothing", cwd=tmp_path)
    assert out.returncode == 1 and "has no attribute 'nothing'" in out.stderr
    out = run_cli("--log-level", "LOUD", "run", "job.py", cwd=tmp_path)
    assert out.returncode == 2 and "unknown log level" in out.stderr
    out = run_cli("--log-level", "DEBUG", "run", "job.py", cwd=tmp_path)
    assert out.returncode == 0 and "engine started" in out.stderr
