"""``workbench forget``: a real subprocess against a directory key store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import workbench as wb


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_forget_from_the_command_line(tmp_path: Path) -> None:
    master = tmp_path / "master.key"
    made = _cli("forget", "--new-master-key", str(master))
    assert made.returncode == 0, made.stderr
    assert oct(master.stat().st_mode & 0o777) == "0o600"
    keys = wb.KeyStore(tmp_path / "keys", master=str(master))
    p = wb.Pipeline("cli", keys=keys)
    p.source("signups", key="user_id", sample=[
        {"user_id": f"u{i}", "email": f"e{i}@example.org"} for i in range(3)],
        personal=wb.Personal(subject="user_id", fields=["email"])).to("out")
    run = p.run("memory://privacy-cli")
    assert keys.counts() == (3, 0)
    out = _cli("forget", "u1", "u9", "--keys", str(tmp_path / "keys"),
               env={"WORKBENCH_MASTER_KEY_FILE": str(master)})
    assert out.returncode == 0, out.stderr
    assert "forgot 'u1'" in out.stdout and "forgot 'u9' (it had no key)" in out.stdout
    assert "2 subjects with a key, 2 forgotten" in out.stdout
    keys.clear_cache()  # another process forgot: this one sees it after its cache lifetime
    emails = run.frame("out").set_index("user_id")["email"]
    assert emails["u1"] == wb.ERASED and emails["u2"] == "e2@example.org"


def test_forget_needs_a_key_store_and_a_master_key(tmp_path: Path) -> None:
    env = {"WORKBENCH_MASTER_KEY": "", "WORKBENCH_MASTER_KEY_FILE": ""}
    out = _cli("forget", "u1", env=env)
    assert out.returncode != 0 and "--keys URL is required" in out.stderr
    out = _cli("forget", "u1", "--keys", str(tmp_path / "k"), env=env)
    assert out.returncode != 0 and "no master key" in out.stderr
