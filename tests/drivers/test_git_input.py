"""The git driver with bad or unusual input: URLs and their parameters, names git rejects as
tree entries, header values, NaN/Infinity, positions beyond the end of a log, a branch that is
checked out in a working tree, secrets in what the driver shows."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dulwich")

import workbench as wb
from workbench._urls import redact_url
from workbench.drivers import Transaction
from workbench.drivers.git import GitDriver, parse_git_url
from workbench.errors import DefinitionError, DriverError, SerializationError

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="the git binary is not installed")


def git(repo: str | Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert GIT is not None
    return subprocess.run([GIT, "-C", str(repo), *args], capture_output=True, text=True,
                          check=check)


def fsck(repo: str | Path) -> subprocess.CompletedProcess[str]:
    return git(repo, "fsck", "--strict", "--no-dangling", check=False)


def recs(n: int, start: int = 0) -> list[tuple[Any, Any, int, int, None]]:
    return [(f"k{i % 7}", {"i": i}, 1_000 + i, 0, None) for i in range(start, start + n)]


# ------------------------------------------------------------------------------- URLs
@pytest.mark.parametrize("url", [
    "git://host/path", "git://example.com/repo.git", "git://localhost:9418/repo",
    "git://github.com/org/repo", "git://data/repo",
])
def test_remote_looking_urls_are_rejected_with_a_hint(url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DefinitionError, match=r"remote.*git:///abs/path.*git://\./"):
        GitDriver(url)
    with pytest.raises(DefinitionError, match="remote"):
        wb.connect(url)
    assert not list(tmp_path.iterdir())  # nothing was created


def test_relative_urls_start_with_a_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_git_url("git://./data/repo") == ("./data/repo", {})
    assert parse_git_url("git://../up/repo?app=a") == ("../up/repo", {"app": "a"})
    d = wb.connect("git://./data/repo?app=a")
    assert isinstance(d, GitDriver) and d.path == str(tmp_path / "data" / "repo")
    d.close()


@pytest.mark.parametrize(("query", "pattern"), [
    ("segment_bytes=abc", r"segment_bytes.*'abc'"),
    ("segment_bytes=0", r"segment_bytes.*>= 1"),
    ("partitions=x", r"partitions.*'x'"),
    ("partitions=0", r"partitions.*>= 1"),
    ("compression=fast", r"compression.*'fast'"),
    ("compression=12", r"compression.*-1\.\.9"),
    ("fsync=maybe", r"fsync.*'maybe'"),
    ("lock_lease=soon", r"lock_lease.*seconds.*'soon'"),
    ("lock_lease=0", r"lock_lease.*>= 1 second"),
    ("app=", r"app.*empty"),
    ("branch=a..b", r"branch.*not a valid git branch"),
    ("segment_byte=10", r"unknown parameter 'segment_byte'.*Did you mean 'segment_bytes'"),
    ("members=x", r"unknown parameter 'members'"),
])
def test_bad_url_parameters_name_the_parameter(tmp_path: Path, query: str, pattern: str) -> None:
    with pytest.raises(DefinitionError, match=pattern):
        GitDriver(f"git://{tmp_path}/repo?{query}")
    assert not (tmp_path / "repo").exists()


def test_bad_keyword_arguments_name_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match=r"segment_bytes.*'abc'"):
        GitDriver(f"git://{tmp_path}/repo", segment_bytes="abc")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match=r"partitions.*>= 1"):
        GitDriver(f"git://{tmp_path}/repo", partitions=0)


def test_messages_and_repr_show_the_url_without_secrets(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError) as info:
        GitDriver(f"git://{tmp_path}/repo?password=hunter2")
    assert "hunter2" not in str(info.value) and "password=***" in str(info.value)
    with pytest.raises(DefinitionError) as info:
        GitDriver("git://alice:hunter2@host/repo")
    assert "hunter2" not in str(info.value) and "alice:***@" in str(info.value)
    d = GitDriver(f"git://{tmp_path}/repo?app=a")
    assert repr(d) == f"<GitDriver {redact_url(d.url)} [workbench/a]>"
    d.close()


# ------------------------------------------------------------------------------- names
NAMES = [".", "..", ".git", ".GIT", ".git.", "git~1", "GIT~1", ".gitmodules", ".gitattributes",
         "gitmod~1", ".hidden", "a/b", "~", "%2E", "a b", "é"]


@needs_git
def test_names_git_rejects_as_tree_entries_are_encoded(tmp_path: Path) -> None:
    for i, name in enumerate(NAMES):
        repo = tmp_path / f"repo{i}"
        d = GitDriver(f"git://{repo}", app=name)
        d.create_topic(name, 1)
        d.create_topic(f"{name}-store-changelog", 1, kind="changelog", compact=True)
        d.append(name, 0, recs(3))
        d.commit(Transaction(name, outputs={(f"{name}-store-changelog", 0): recs(1)},
                             positions={(name, 0): 3}, metadata={"m": name}))
        d.close()
        check = fsck(repo)
        assert check.returncode == 0 and not check.stderr, (name, check.stderr)
        r = GitDriver(f"git://{repo}", app=name)
        assert r.topics() == sorted([name, f"{name}-store-changelog"])
        assert r.committed(name, name, 0) == 3 and r.committed_metadata(name) == {"m": name}
        assert [x[:3] for x in r.read_all(name)] == [x[:3] for x in recs(3)]
        assert r.history()[0].records == {f"{name}-store-changelog": 1}
        assert r.history()[0].positions == {name: {0: 3}}
        r.close()


def test_names_with_line_breaks_stay_out_of_the_commit_trailers(tmp_path: Path) -> None:
    name = "evil\nWorkbench-Kind: append"
    d = GitDriver(f"git://{tmp_path}/repo", branch="b")
    d.create_topic(name, 1)
    d.commit(Transaction(name, outputs={(name, 0): recs(2)}))
    h = d.history(name)[0]
    assert h.kind == "commit" and h.records == {name: 2}
    d.close()


# ------------------------------------------------------------------------------- values
def test_header_values_round_trip_by_type(tmp_path: Path) -> None:
    d = GitDriver(f"git://{tmp_path}/repo", app="a")
    d.create_topic("t", 1)
    headers = (("s", "text é"), ("b", b"abc"), ("bin", b"\xff\x00"), ("i", 1), ("zero", 0),
               ("big", 2**70), ("neg", -5), ("f", 1.5), ("t", True), ("n", None), ("e", b""))
    d.append("t", 0, [("k", "v", 1, 0, headers)])
    got = GitDriver(f"git://{tmp_path}/repo", app="a").read("t", 0, 0, 1)[0][4]
    assert got == headers
    assert [type(v) for _n, v in got] == [type(v) for _n, v in headers]
    # NaN and the infinities are header values like any other float
    d.append("t", 0, [("k", "v", 2, 0, (("nan", float("nan")), ("inf", float("-inf"))))])
    (_n, nan), (_i, inf) = GitDriver(f"git://{tmp_path}/repo", app="a").read("t", 0, 1, 1)[0][4]
    assert math.isnan(nan) and inf == float("-inf")
    d.close()


def test_old_header_format_still_reads(tmp_path: Path) -> None:
    """Segments written before header types were kept: text and base64 read as bytes."""
    from workbench.drivers.git.codec import decode_lines

    line = b'{"key":"k","value":1,"timestamp":5,"headers":[["a","x"],["b",{"base64":"/wA="}]]}'
    assert decode_lines([line], 0)[0][4] == (("a", b"x"), ("b", b"\xff\x00"))


def test_unstorable_header_values_are_named(tmp_path: Path) -> None:
    d = GitDriver(f"git://{tmp_path}/repo", app="a")
    d.create_topic("t", 1)
    with pytest.raises(SerializationError, match=r"t/0.*header 'obj'.*object"):
        d.append("t", 0, [("k", "v", 1, 0, (("obj", object()),))])
    d.close()


def test_nan_and_infinity_round_trip(tmp_path: Path) -> None:
    nan, inf = float("nan"), float("inf")
    d = GitDriver(f"git://{tmp_path}/repo", app="a")
    d.create_topic("t", 1)
    values = [nan, inf, -inf, {"x": nan, "y": {"z": [inf, -inf, 1.0]}}, [nan]]
    d.append("t", 0, [("k", v, i, 0, None) for i, v in enumerate(values)])
    got = [r[1] for r in GitDriver(f"git://{tmp_path}/repo", app="a").read_all("t")]
    assert math.isnan(got[0]) and got[1] == inf and got[2] == -inf
    assert math.isnan(got[3]["x"]) and got[3]["y"] == {"z": [inf, -inf, 1.0]}
    assert math.isnan(got[4][0])
    # the segment holds Python json's tokens
    line = d.store.blob(d._state.topics["t"].parts[0].segs[0].sha or b"", "t")
    assert b"NaN" in line and b"-Infinity" in line
    d.close()


def test_nan_through_a_pipeline_equals_memory(tmp_path: Path) -> None:
    rows = [{"k": "a", "x": float("nan"), "ts": 1}, {"k": "a", "x": float("inf"), "ts": 2},
            {"k": "b", "x": -float("inf"), "ts": 3}, {"k": "b", "x": 2.0, "ts": 4}]
    p = wb.Pipeline("nan")
    p.source("in", key="k", time="ts").map(lambda v: {**v, "y": {"x": v["x"]}}).to("out")
    mem = [r[:3] for r in p.run("memory://", inputs={"in": rows}).driver.read_all("out")]
    run = p.run(f"git://{tmp_path}/repo", inputs={"in": rows})
    got = [r[:3] for r in run.driver.read_all("out")]
    run.driver.close()
    assert json.dumps(got) == json.dumps(mem)  # NaN == NaN only as text


# ------------------------------------------------------------------------------- positions
def test_committing_positions_beyond_the_end_of_a_log_is_an_error(tmp_path: Path) -> None:
    d = GitDriver(f"git://{tmp_path}/repo", app="a")
    d.create_topic("in", 2)
    d.append("in", 1, recs(5))
    with pytest.raises(DriverError, match=r"'in' partition 1.*position 6.*ends at 5"):
        d.commit(Transaction("a", positions={("in", 1): 6}))
    with pytest.raises(DriverError, match=r"'in' partition 0.*position 1.*ends at 0"):
        d.commit(Transaction("a", positions={("in", 0): 1}))
    with pytest.raises(DriverError, match=r"'in' partition 0.*position -1"):
        d.commit(Transaction("a", positions={("in", 0): -1}))
    d.commit(Transaction("a", positions={("in", 1): 5}))  # the end itself is fine
    assert d.committed("a", "in", 1) == 5
    d.close()


def test_stored_positions_beyond_the_end_of_a_log_are_an_error(tmp_path: Path) -> None:
    """A positions file edited (or a log rewritten) by hand: restart refuses to skip."""
    from tests.drivers.test_git import _put

    url = f"git://{tmp_path}/repo"
    d = GitDriver(url, app="a")
    d.create_topic("in", 1)
    d.append("in", 0, recs(5))
    d.commit(Transaction("a", positions={("in", 0): 5}))
    d.close()
    doc = {"app": "a", "positions": {"in": {"0": 9}}, "metadata": {}}
    _put(url, "workbench/a", "positions/a.json", json.dumps(doc).encode())
    with pytest.raises(DriverError, match=r"positions/a\.json.*'in' partition 0.*9.*ends at 5"):
        GitDriver(url, app="a").committed("a", "in", 0)


# ------------------------------------------------------------------------------- working trees
@needs_git
def test_a_branch_checked_out_in_a_working_tree_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "notes.txt").write_text("mine\n")
    git(work, "add", "notes.txt")
    git(work, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "-m", "notes")
    url = f"git://{work}"
    with pytest.raises(DriverError, match=r"'main' is checked out in .*work.*branch="):
        d = GitDriver(url, branch="main")
        d.create_topic("t", 1)
        d.append("t", 0, recs(1))
    # the default branch is not checked out: fine, and the working tree stays clean
    d = GitDriver(url, app="a")
    d.create_topic("t", 1)
    d.append("t", 0, recs(2))
    assert git(work, "status", "--porcelain").stdout == ""
    # someone checks the branch out while the driver runs: its next commit is refused
    git(work, "checkout", "-q", "workbench/a")
    with pytest.raises(DriverError, match=r"'workbench/a' is checked out"):
        d.append("t", 0, recs(1, 2))
    git(work, "checkout", "-q", "main")
    d.append("t", 0, recs(1, 2))
    assert d.end_offset("t", 0) == 3
    # a linked working tree counts too
    git(work, "worktree", "add", "-q", str(tmp_path / "linked"), "workbench/a")
    with pytest.raises(DriverError, match=r"checked out in .*linked"):
        d.append("t", 0, recs(1, 3))
    d.close()
    assert fsck(work).returncode == 0


@needs_git
def test_an_unborn_checked_out_branch_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    d = GitDriver(f"git://{work}", branch="main")
    d.create_topic("t", 1)
    with pytest.raises(DriverError, match="'main' is checked out"):
        d.append("t", 0, recs(1))
    d.close()
