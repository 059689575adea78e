"""The workbench command, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

PIPELINE = '''
import workbench as wb
pipeline = wb.Pipeline("cli-test")
pipeline.source("in", sample=[{"n": n} for n in range(5)]).filter(
    lambda v: v["n"] % 2 == 0).to("even")
'''


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed ``workbench`` command (as users run it: the current folder is not on
    ``sys.path``), or ``python -P -m workbench.cli`` without it."""
    script = Path(sys.executable).parent / "workbench"
    argv = [str(script)] if script.exists() else [sys.executable, "-P", "-m", "workbench.cli"]
    return subprocess.run([*argv, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


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


# -- issue 10: one-line errors, no shadowing of the standard library, readable help ----------
def _one_line_error(out: subprocess.CompletedProcess[str], text: str) -> None:
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], out.stderr


def test_syntax_error_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text('import workbench as wb\npipeline = wb.Pipeline("x"\n')
    _one_line_error(run_cli("run", "job.py", cwd=tmp_path), "syntax error in")
    assert "job.py line 2" in run_cli("run", "job.py", cwd=tmp_path).stderr


def test_missing_modules_are_one_line(tmp_path: Path) -> None:
    _one_line_error(run_cli("run", "no_such_module:pipeline", cwd=tmp_path),
                    "no module named 'no_such_module'")
    (tmp_path / "job.py").write_text("import no_such_dependency\n")
    _one_line_error(run_cli("run", "job.py", cwd=tmp_path),
                    "imports 'no_such_dependency', which is not installed")
    (tmp_path / "boom.py").write_text("x = 1\nraise RuntimeError('no config')\n")
    _one_line_error(run_cli("run", "boom.py", cwd=tmp_path),
                    "boom.py line 2 failed: RuntimeError: no config")


def test_empty_targets_are_one_line(tmp_path: Path) -> None:
    _one_line_error(run_cli("run", "", cwd=tmp_path), "empty TARGET")
    _one_line_error(run_cli("run", ":pipeline", cwd=tmp_path), "empty TARGET")
    (tmp_path / "empty.py").write_text("")
    _one_line_error(run_cli("run", "empty.py", cwd=tmp_path), "has no attribute 'pipeline'")


@pytest.mark.parametrize("name", ["json.py", "logging.py"])
def test_a_pipeline_file_does_not_shadow_the_standard_library(tmp_path: Path,
                                                             name: str) -> None:
    (tmp_path / name).write_text(PIPELINE)
    out = run_cli("--log-level", "DEBUG", "run", name, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "cli-test: 5 records in" in out.stdout
    # a module beside it can still be imported by the pipeline file
    (tmp_path / "helpers.py").write_text("EVEN = 2\n")
    (tmp_path / name).write_text(PIPELINE.replace("import workbench as wb",
                                                  "import workbench as wb\nimport helpers"))
    assert run_cli("run", name, cwd=tmp_path).returncode == 0


def test_help_explains_target_and_commit_interval(tmp_path: Path) -> None:
    top = run_cli("--help", cwd=tmp_path)
    assert top.returncode == 0
    assert "`" not in top.stdout and ":class:" not in top.stdout
    assert "TARGET names a pipeline: module:attr, path/to/file.py:attr" in top.stdout
    assert "examples:" in top.stdout and "--workers auto --http" in top.stdout
    run = run_cli("run", "--help", cwd=tmp_path)
    text = " ".join(run.stdout.split())
    assert "`" not in run.stdout
    assert "--commit-interval DURATION time between commits" in text
    assert "TARGET module:attr, path/to/file.py:attr or notebook.ipynb:attr" in text


# -- issue 12: the CLI for batch jobs and scripts --------------------------------------------
FILE_JOB = '''
import workbench as wb

def make(threshold=0, name="files"):
    p = wb.Pipeline(name)
    p.source("clicks", key="user", time="ts").filter(
        lambda v: v["amount"] > threshold).to("big")
    return p
'''


def _clicks() -> pd.DataFrame:
    return pd.DataFrame({"user": ["a", "b", "a", "c"], "ts": [1, 2, 3, 4],
                         "amount": [5, 50, 500, 5000]})


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_input_files_params_and_output(tmp_path: Path, ext: str) -> None:
    (tmp_path / "job.py").write_text(FILE_JOB)
    frame = _clicks()
    path = tmp_path / f"clicks.{ext}"
    if ext == "csv":
        frame.to_csv(path, index=False)
    elif ext == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        pytest.importorskip("pyarrow")
        frame.to_parquet(path)
    out = run_cli("run", "job.py:make", "--input", f"clicks=clicks.{ext}", "-p", "threshold=40",
                  "-p", "name=files-test", "--output", "out", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "files-test: 4 records in" in out.stdout
    got = pd.read_csv(tmp_path / "out" / "big.csv")
    assert list(got["amount"]) == [50, 500, 5000]
    assert list(got["key"]) == ["b", "a", "c"]


def test_output_formats_and_bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(FILE_JOB)
    _clicks().to_csv(tmp_path / "c.csv", index=False)
    out = run_cli("run", "job.py:make", "--input", "clicks=c.csv", "--output", "o",
                  "--output-format", "jsonl", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(pd.read_json(tmp_path / "o" / "big.jsonl", lines=True)) == 4
    _one_line_error(run_cli("run", "job.py:make", "--input", "click=c.csv", cwd=tmp_path),
                    "'click' is not a source of pipeline 'files'")
    _one_line_error(run_cli("run", "job.py:make", "--input", "clicks=c.txt", cwd=tmp_path),
                    "unknown format '.txt'")
    _one_line_error(run_cli("run", "job.py:make", "-p", "nope", cwd=tmp_path),
                    "-p NAME=VALUE")
    (tmp_path / "plain.py").write_text(PIPELINE)
    _one_line_error(run_cli("run", "plain.py", "-p", "x=1", cwd=tmp_path),
                    "is a Pipeline, not a function")


def test_empty_sources_warn(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(FILE_JOB)
    out = run_cli("run", "job.py:make", cwd=tmp_path)
    assert out.returncode == 0
    assert "every source of files is empty (clicks)" in out.stderr
    assert "--input TOPIC=PATH" in out.stderr


def test_log_options_anywhere_and_json_logs(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(PIPELINE)
    out = run_cli("run", "job.py", "--log-format", "json", "--driver", "memory://",
                  "--log-level=DEBUG", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    assert any(r["message"].startswith("engine started") and r["level"] == "DEBUG"
               for r in lines)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in lines)
    bad = run_cli("run", "job.py", "--log-format", "xml", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown log format" in bad.stderr


NOTEBOOK_CELLS = [
    ("import workbench as wb\n%matplotlib inline", []),
    ("threshold = 0\nname = 'nb'", ["parameters"]),
    ("def build():\n    p = wb.Pipeline(name)\n"
     "    p.source('n', sample=[{'v': i} for i in range(10)]).filter(\n"
     "        lambda r: r['v'] >= threshold).to('kept')\n    return p\n\npipeline = build()", []),
    ("raise RuntimeError('cells after the pipeline must not run')", []),
]


def test_notebook_target_with_injected_parameters(tmp_path: Path) -> None:
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": tags}, "source": src,
                     "outputs": [], "execution_count": None} for src, tags in NOTEBOOK_CELLS],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "nb.ipynb").write_text(json.dumps(nb))
    out = run_cli("run", "nb.ipynb", "-p", "threshold=7", "-p", "name='from-cli'",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "from-cli: 10 records in" in out.stdout and "kept=3" in out.stdout
    out = run_cli("run", "nb.ipynb:build", cwd=tmp_path)
    assert out.returncode == 0 and "nb: 10 records in" in out.stdout and "kept=10" in out.stdout
    _one_line_error(run_cli("run", "nb.ipynb:missing", cwd=tmp_path),
                    "cells after the pipeline must not run")
