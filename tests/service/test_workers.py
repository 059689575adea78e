"""``--workers auto``: the CPU limit from cgroup v2 and v1 files, the affinity mask and the CPU
count."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.errors import DefinitionError
from workbench.service.runner import resolve_workers
from workbench.service.workers import cpu_limit, worker_driver_url


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _host_cpus() -> int:
    return min(len(os.sched_getaffinity(0)), os.cpu_count() or 1)


def test_cgroup_v2_quota_rounds_up(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "proc/self/cgroup": "0::/kubepods/pod1/ctr\n",
        "sys/fs/cgroup/cpu.max": "max 100000\n",
        "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "150000 100000\n",
    })
    limit = cpu_limit(root)
    assert limit.count == min(2, _host_cpus())
    if _host_cpus() >= 2:
        assert "cgroup v2 /sys/fs/cgroup/kubepods/pod1/ctr/cpu.max = 150000 100000" in \
            limit.reason


def test_cgroup_v2_parent_limit_counts(tmp_path: Path) -> None:
    # the container's own cgroup is unlimited, its parent allows half a CPU
    root = _tree(tmp_path, {
        "proc/self/cgroup": "0::/pod/ctr\n",
        "sys/fs/cgroup/pod/cpu.max": "50000 100000\n",
        "sys/fs/cgroup/pod/ctr/cpu.max": "max 100000\n",
    })
    limit = cpu_limit(root)
    assert limit.count == 1 and "/sys/fs/cgroup/pod/cpu.max = 50000 100000" in limit.reason


def test_cgroup_v2_namespaced_root(tmp_path: Path) -> None:
    # inside a cgroup namespace the process's cgroup is "/" and cpu.max sits at the top
    root = _tree(tmp_path, {"proc/self/cgroup": "0::/\n",
                            "sys/fs/cgroup/cpu.max": "100000 100000\n"})
    assert cpu_limit(root).count == 1


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "proc/self/cgroup": "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
        "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "100000\n",
        "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
    })
    limit = cpu_limit(root)
    assert limit.count == 1
    assert "cgroup v1 /sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us = 100000" in \
        limit.reason


def test_cgroup_v1_unlimited_falls_back_to_cpus(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "proc/self/cgroup": "4:cpu,cpuacct:/\n",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    limit = cpu_limit(root)
    assert limit.count == _host_cpus()
    assert "cgroup" not in limit.reason.split("(also")[0]


def test_no_cgroup_files(tmp_path: Path) -> None:
    limit = cpu_limit(tmp_path)
    assert limit.count == _host_cpus()
    assert "CPU" in limit.reason


def test_affinity_mask_with_taskset() -> None:
    taskset = shutil.which("taskset")
    if taskset is None:
        pytest.skip("taskset (util-linux) is not installed")
    cpu = sorted(os.sched_getaffinity(0))[0]
    code = ("from workbench.service.workers import cpu_limit; l = cpu_limit('/nonexistent'); "
            "print(l.count); print(l.reason)")
    out = subprocess.run([taskset, "-c", str(cpu), sys.executable, "-c", code],
                         capture_output=True, text=True, check=True, timeout=60)
    count, reason = out.stdout.splitlines()[:2]
    assert count == "1" and reason.startswith("CPU affinity mask: 1 CPUs"), out.stdout


def test_workers_need_a_shared_driver() -> None:
    assert resolve_workers("auto", "memory://") == (1, "memory:// runs in one process")
    assert resolve_workers("1", "git:///tmp/x")[0] == 1
    with pytest.raises(DefinitionError, match="memory:// cannot be shared"):
        resolve_workers("2", "memory://")
    with pytest.raises(DefinitionError, match="a number or 'auto'"):
        resolve_workers("two", "kafka://h:9092")
    assert resolve_workers("3", "kafka://h:9092") == (3, "--workers")


def test_postgres_workers_lease_their_share() -> None:
    url = worker_driver_url("postgresql://u@h:5432/db?schema=s", 2)
    assert "members=2" in url and "takeover" not in url and "schema=s" in url
    assert "members=5" in worker_driver_url("postgresql://h/db?members=5", 2)
    assert worker_driver_url("kafka://h:9092", 2) == "kafka://h:9092"
