"""A stop is not the end on ``git://``: real SIGTERM and SIGINT sent to a ``workbench run ...
--driver git:///... --until end`` process in the middle of its input, then a restart, give the
outputs of one uninterrupted run (emit-on-close windows, sessions and ``late`` records), exit
code 0 both times, and a repository ``git fsck --strict`` finds clean."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("dulwich")

from tests.pipelines import signals_job
from tests.signals import outputs, reference_outputs, signal_then_restart
from workbench.drivers.git import GitDriver
from workbench.run import append_inputs


@pytest.mark.slow  # two runs of a job slowed to ~2 ms per record: ~10-20 s
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_then_restart_on_git_equals_one_run(sig: int, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    url = f"git://{repo}"
    loader = GitDriver(url, app=signals_job.APP)
    append_inputs(signals_job.pipeline(), loader, {signals_job.SOURCE: signals_job.events()})
    loader.close()

    def reader() -> GitDriver:
        return GitDriver(url, app=signals_job.APP)

    code, _proc = signal_then_restart(url, reader, sig)
    assert code == 0
    done = reader()
    got = outputs(done, signals_job.SINKS)
    assert done.committed(signals_job.APP, signals_job.SOURCE, 0) == signals_job.EVENTS
    done.close()
    expected = reference_outputs()
    assert got == expected
    assert got["per-user-late"], "the workload must have late records"
    # the stop committed: the branch shows two runs' worth of engine commits, no gap
    kinds = [c.kind for c in reader().history()]
    assert kinds[-1] == "append" and kinds.count("commit") >= 2
    git = shutil.which("git")
    if git is not None:
        fsck = subprocess.run([git, "-C", str(repo), "fsck", "--strict"], capture_output=True,
                              text=True)
        assert fsck.returncode == 0 and "error" not in fsck.stderr, fsck
