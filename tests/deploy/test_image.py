"""Build the Dockerfile with buildah and run the image with podman (Debian's packages; there is
no Docker engine here), then check it as the manifests use it: non-root, ``workbench run`` works,
HEALTHCHECK kept, and SIGTERM (``podman stop``, as the kubelet stops a pod) ends a long-running
Kafka job with status 0 within the manifests' ``terminationGracePeriodSeconds``.

Opt-in: ``WORKBENCH_IMAGE_TEST=1`` (it apt-installs buildah, podman, runc and debootstrap when
missing and run as root, bootstraps a Debian base image, and takes ~5 minutes). No registry
other than Debian's and PyPI is reachable here, so the base image ``debian:bookworm-slim`` is
replaced by one made with ``debootstrap --variant=minbase bookworm`` from Debian's packages
(``--build-arg BASE_IMAGE=localhost/debian:bookworm-slim``). What this sandbox needs and a
normal host does not: vfs storage, chroot isolation for builds, runc instead of crun (crun
refuses this kernel's hybrid cgroups) and explicit ulimits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from workbench._env import env_flag
from workbench.deploy.k8s import K8sOptions, termination_grace_seconds

pytestmark = [pytest.mark.slow, pytest.mark.image]

ROOT = Path(__file__).resolve().parents[2]
BASE = "localhost/debian:bookworm-slim"
IMAGE = "localhost/workbench:test"
BUILDAH = ["buildah", "--storage-driver", "vfs"]
PODMAN = ["podman", "--storage-driver", "vfs", "--runtime", "runc"]
# the manifests' securityContext: read-only root filesystem with /tmp writable, no
# capabilities, no privilege escalation (the image's user is already 10001)
RUN = [*PODMAN, "run", "--rm", "--network", "host", "--ulimit", "nofile=20000:20000",
       "--ulimit", "nproc=4096:4096", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
       "--security-opt", "no-new-privileges"]
CA = "/etc/ssl/certs/ca-certificates.crt"


def _sh(cmd: list[str], timeout: float = 900, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          **kw)  # type: ignore[call-overload, no-any-return]


@pytest.fixture(scope="module")
def image() -> str:
    if not env_flag("WORKBENCH_IMAGE_TEST"):
        pytest.skip("builds the container image (~5 min): set WORKBENCH_IMAGE_TEST=1")
    missing = [t for t in ("buildah", "podman", "runc", "debootstrap") if not shutil.which(t)]
    if missing:
        if os.geteuid() != 0:
            pytest.fail(f"{missing} missing: apt-get install -y buildah podman runc debootstrap")
        _sh(["apt-get", "update", "-q"])
        got = _sh(["apt-get", "install", "-y", "-q", "buildah", "podman", "runc",
                   "debootstrap"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        assert got.returncode == 0, got.stderr[-2000:]
    if _sh([*BUILDAH, "inspect", "--type", "image", BASE]).returncode != 0:
        rootfs = Path(f"/tmp/workbench-rootfs-{uuid.uuid4().hex[:6]}")
        try:
            got = _sh(["debootstrap", "--variant=minbase", "bookworm", str(rootfs),
                       "http://deb.debian.org/debian"])
            assert got.returncode == 0, got.stdout[-2000:] + got.stderr[-2000:]
            ctr = _sh([*BUILDAH, "from", "scratch"]).stdout.strip()
            tar = rootfs.with_suffix(".tar")
            _sh(["tar", "-C", str(rootfs), "-cf", str(tar), "."])
            for cmd in (["add", ctr, str(tar), "/"],
                        ["config", "--cmd", '["bash"]', "--env",
                         "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", ctr],
                        ["commit", "--rm", ctr, BASE]):
                got = _sh([*BUILDAH, *cmd])
                assert got.returncode == 0, got.stderr[-2000:]
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
            rootfs.with_suffix(".tar").unlink(missing_ok=True)
    cmd = [*BUILDAH, "bud", "--format", "docker", "--layers", "--isolation", "chroot",
           "--pull-never", "--build-arg", f"BASE_IMAGE={BASE}", "-t", IMAGE]
    if Path(CA).exists():  # this sandbox's TLS proxy: the Dockerfile's documented CA secret
        cmd += ["--secret", f"id=ca-certificates,src={CA}"]
    started = time.monotonic()
    got = _sh([*cmd, str(ROOT)], timeout=1800)
    assert got.returncode == 0, got.stdout[-4000:] + got.stderr[-4000:]
    print(f"image built in {time.monotonic() - started:.0f} s")
    return IMAGE


def test_image_config_user_healthcheck_entrypoint(image: str) -> None:
    got = _sh([*BUILDAH, "inspect", "--type", "image", image])
    cfg = json.loads(got.stdout)["Docker"]["config"]
    assert cfg["User"] == "10001:10001"
    assert cfg["Entrypoint"] == ["tini", "--", "workbench"]
    assert cfg["Healthcheck"]["Test"] == ["CMD", "python3", "-m",
                                          "workbench.deploy.healthcheck"]
    assert "8080/tcp" in cfg["ExposedPorts"]


def test_image_runs_a_bounded_pipeline_as_non_root(image: str) -> None:
    got = _sh([*RUN, image, "run", "examples/clickstream.py:pipeline", "--driver", "memory://",
               "--until", "end"], timeout=300)
    assert got.returncode == 0, got.stderr[-3000:]
    assert "clickstream: 776 records in" in got.stdout
    who = _sh([*RUN, "--entrypoint", "id", image], timeout=120)
    assert who.stdout.startswith("uid=10001(workbench)")
    health = _sh([*RUN, "--entrypoint", "python3", image, "-m", "workbench.deploy.healthcheck"],
                 timeout=120)
    assert health.returncode == 1 and "8080/health" in health.stderr  # nothing listens


@pytest.mark.kafka
def test_healthcheck_and_sigterm_on_a_kafka_service(image: str, kafka_url: str) -> None:
    """The container as the manifests run it (``--until forever --workers 1 --http``): its
    HEALTHCHECK passes while it serves; SIGTERM ends it with status 0 within the grace
    period."""
    import socket

    grace = termination_grace_seconds(K8sOptions("p.py", kafka_url, image))
    name = f"wb-{uuid.uuid4().hex[:8]}"
    with socket.socket() as s:  # host network: a free port instead of 8080
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [*RUN, "--name", name, "-e", f"WORKBENCH_HEALTH_URL=http://127.0.0.1:{port}/health",
         image, "run", "examples/clickstream.py:pipeline", "--driver",
         f"{kafka_url}?partitions=2", "--until", "forever", "--workers", "1",
         "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:  # start, create topics, join the group
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            health = _sh([*PODMAN, "exec", name, "python3", "-m",
                          "workbench.deploy.healthcheck"], timeout=60)
            if health.returncode == 0:
                break
            assert time.monotonic() < deadline, health.stderr
            time.sleep(2)
        started = time.monotonic()
        stop = _sh([*PODMAN, "stop", "-t", str(grace), name], timeout=grace + 60)
        _out, err = proc.communicate(timeout=grace + 60)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stop.returncode == 0, stop.stderr
    assert proc.returncode == 0, err[-3000:]
    assert took < grace, f"stopped after {took:.1f} s, grace period {grace} s"
    assert "received SIGTERM" in err
