"""The git driver: record format, segments, commits, reads, locking, corrupt data, plain git."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dulwich")

import workbench as wb
from workbench.drivers import (
    _FACTORIES,
    Transaction,
    register_driver,
)
from workbench.drivers.git import GitDriver, branch_for, parse_git_url
from workbench.errors import (
    DefinitionError,
    DriverError,
    DriverUnavailableError,
    FencedError,
)
from workbench.types import Change
from workbench.windows import Windowed

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="the git binary is not installed")


@pytest.fixture(autouse=True)
def _git_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    """``git://`` URLs resolve to the git driver (until drivers/__init__ registers it)."""
    if "git" not in _FACTORIES:
        monkeypatch.setitem(_FACTORIES, "git", GitDriver)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"git://{tmp_path}/repo"


def git(repo: str | Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert GIT is not None
    return subprocess.run([GIT, "-C", str(repo), *args], capture_output=True, text=True,
                          check=check)


def recs(n: int, start: int = 0) -> list[tuple[Any, Any, int, int, None]]:
    return [(f"k{i % 7}", {"i": i, "s": "x" * (i % 13)}, 1_000 + i, 0, None)
            for i in range(start, start + n)]


def plain(records: list[Any]) -> list[tuple[Any, Any, int]]:
    return [(r[0], r[1], r[2]) for r in records]


# ------------------------------------------------------------------------------- URLs, opening
def test_parse_url() -> None:
    assert parse_git_url("git:///abs/repo") == ("/abs/repo", {})
    assert parse_git_url("git://./rel/repo?branch=x&segment_bytes=10") == (
        "./rel/repo", {"branch": "x", "segment_bytes": "10"})
    with pytest.raises(DefinitionError, match="no repository path"):
        parse_git_url("git://")
    with pytest.raises(DefinitionError, match="unknown parameter"):
        GitDriver("git:///tmp/x?colour=red")


def test_branch_names() -> None:
    assert branch_for("shop") == "workbench/shop"
    assert branch_for("my app: v2") == "workbench/my-app--v2"
    with pytest.raises(DefinitionError, match="not a valid git branch"):
        GitDriver("git:///tmp/whatever?branch=a..b")


def test_creates_a_bare_repository_and_relative_urls(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    d = wb.connect("git://./data/repo?app=a")
    assert isinstance(d, GitDriver)
    assert d.path == str(tmp_path / "data" / "repo")
    assert (tmp_path / "data" / "repo" / "HEAD").exists()  # bare: the git dir itself
    d.close()


def test_refuses_a_non_empty_non_repository(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "file.txt").write_text("hi")
    with pytest.raises(DriverError, match="neither a git repository nor empty"):
        GitDriver(f"git://{tmp_path}/stuff")


def test_uses_an_existing_non_bare_repository(tmp_path: Path) -> None:
    from dulwich.repo import Repo

    Repo.init(str(tmp_path / "work"), mkdir=True)
    d = GitDriver(f"git://{tmp_path}/work?app=a")
    d.create_topic("t", 1)
    d.append("t", 0, recs(3))
    assert plain(d.read("t", 0, 0, 10)) == plain(recs(3))
    assert d.git_dir == str(tmp_path / "work" / ".git")
    assert not (tmp_path / "work" / "topics").exists()  # the working tree is never touched
    d.close()


def test_import_is_light_and_missing_dulwich_is_explained() -> None:
    code = ("import sys, workbench.drivers.git; print('dulwich' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
    code = ("import sys; sys.modules['dulwich'] = None\n"
            "from workbench.drivers.git import GitDriver\n"
            "from workbench.errors import DriverUnavailableError\n"
            "try:\n    GitDriver('git:///tmp/nowhere-x')\n"
            "except DriverUnavailableError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert "workbench[git]" in out.stdout
    assert issubclass(DriverUnavailableError, DriverError)


# ------------------------------------------------------------------------------- records
def test_record_round_trip_keeps_types(url: str) -> None:
    d = GitDriver(url, app="a")
    d.create_topic("t", 1)
    records = [
        ("k", {"a": 1, "f": 0.1}, 10, 0, None),
        (None, None, 11, 0, None),
        (("a", 1), [1, 2], 12, 0, None),
        (Windowed("u", 0, 60_000), {"n": 1}, 13, 0, None),
        (Windowed(("u", 2), 5, 9), None, 13, 0, None),
        ("t", Change({"x": 1}, None), 14, 0, None),
        ("t", Change(None, {"x": 1}), 14, 0, None),
        ("h", "v", 15, 0, (("trace", b"abc"), ("bin", b"\xff\x00"), ("none", None))),
        ("nl", "line\nbreak \u2028 é \"q\" },{\"key\":", 16, 0, None),
        ("nested", [{"key": 1}, {"key": 2}], 17, 0, None),
        (3, 1.5, 18, 0, None),
    ]
    d.append("t", 0, records)
    out = GitDriver(url, app="a").read("t", 0, 0, 100)
    assert [r[3] for r in out] == list(range(len(records)))
    for got, want in zip(out, records, strict=True):
        assert got[:3] == want[:3]
        assert type(got[0]) is type(want[0])
        assert type(got[1]) is type(want[1])
        assert got[4] == want[4]
    d.close()


def test_segments_roll_and_reads_span_them(url: str, tmp_path: Path) -> None:
    d = GitDriver(url + "?segment_bytes=300", app="a")
    d.create_topic("t", 2)
    for i in range(10):
        d.append("t", 1, recs(10, 10 * i))
    part = d._state.topics["t"].parts[1]
    assert len(part.segs) > 5
    assert all(s.nbytes <= 300 + 60 or s.nbytes == -1 for s in part.segs)
    assert d.end_offset("t", 1) == 100 and d.end_offset("t", 0) == 0
    everything = d.read("t", 1, 0, 1000)
    assert plain(everything) == plain(recs(100))
    assert [r[3] for r in everything] == list(range(100))
    assert plain(d.read("t", 1, 37, 50)) == plain(recs(100)[37:87])
    assert d.read("t", 1, 100, 10) == [] and d.read("t", 0, 0, 10) == []
    # a new driver rebuilds the index from the tree
    again = GitDriver(url, app="a")
    assert plain(again.read_all("t")) == plain(recs(100))
    assert again.partitions("t") == 2 and again.topics() == ["t"]
    d.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_appends_and_encoding_chunks(url: str, seed: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Appends of random sizes, encoded in chunks of 7 records, into 150-byte segments: every
    record reads back at its offset, from this driver and from a fresh one."""
    import random

    import workbench.drivers.git.codec as git_module

    monkeypatch.setattr(git_module, "_ENCODE_CHUNK", 7)
    rng = random.Random(seed)
    d = GitDriver(url + "?segment_bytes=150", app="a")
    d.create_topic("t", 1)
    data = recs(400)
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 2, 3, 30, 61, 100])
        if rng.random() < 0.5:
            d.append("t", 0, data[pos:pos + n])
        else:
            d.commit(Transaction("a", outputs={("t", 0): data[pos:pos + n]}))
        pos += n
        start = rng.randrange(pos)
        assert plain(d.read("t", 0, start, 50)) == plain(data[start:min(pos, start + 50)])
    assert plain(GitDriver(url, app="a").read_all("t")) == plain(data)
    d.close()


def test_small_appends_rewrite_logarithmically(url: str) -> None:
    """Many one-record commits: segments stay few, and the bytes of all blob versions ever
    written stay within a small factor of the data (rewriting the tail segment on every commit
    would write n^2/2 records: 100x the data here)."""
    from dulwich.repo import Repo

    d = GitDriver(url + "?segment_bytes=65536", app="a")
    d.create_topic("t", 1)
    n = 200
    for i in range(n):
        d.append("t", 0, recs(1, i))
    part = d._state.topics["t"].parts[0]
    assert len(part.segs) <= 10
    assert plain(d.read("t", 0, 0, n)) == plain(recs(n))
    repo = Repo(d.path)
    seen: set[bytes] = set()
    total = 0
    for c in d.store.walk(repo.refs[b"refs/heads/workbench/a"]):
        tree = repo[repo[repo[repo[c.tree][b"topics"][1]][b"t"][1]][b"0"][1]]
        for e in tree.items():
            if e.sha not in seen:
                seen.add(e.sha)
                total += len(repo[e.sha].as_raw_string())
    data = sum(s.nbytes for s in part.segs)
    assert total < 12 * data, (total, data)
    d.close()


# ------------------------------------------------------------------------------- commits
def test_commit_is_atomic_and_persists_positions(url: str) -> None:
    d = GitDriver(url)  # branch from the app named by the first transaction
    d.create_topic("in", 1)
    d.create_topic("out", 2, kind="sink")
    d.create_topic("app-store-changelog", 2, kind="changelog", compact=True)
    d.append("in", 0, recs(5))  # kept until the branch is known
    assert d.branch is None
    txn = Transaction("app", outputs={("out", 0): recs(2), ("out", 1): recs(3),
                                      ("app-store-changelog", 1): [("k", [1, 2], 0, 0, None)]},
                      positions={("in", 0): 5}, metadata={"close": 123})
    d.commit(txn)
    assert d.branch == "workbench/app"
    assert d.committed("app", "in", 0) == 5 and d.committed("other", "in", 0) == 0
    assert d.committed_metadata("app") == {"close": 123}
    d.close()
    r = GitDriver(url, app="app")
    assert r.committed("app", "in", 0) == 5 and r.committed_metadata("app") == {"close": 123}
    assert plain(r.read("in", 0, 0, 10)) == plain(recs(5))
    assert [len(r.read("out", p, 0, 10)) for p in (0, 1)] == [2, 3]
    assert r.read("app-store-changelog", 1, 0, 1)[0][:2] == ("k", [1, 2])
    hist = r.history()
    assert [h.kind for h in hist] == ["commit", "append"]
    assert hist[0].positions == {"in": {0: 5}}
    assert hist[0].records == {"out": 5, "app-store-changelog": 1}
    assert hist[0].message.startswith("workbench app: +6 records (app-store-changelog: 1, "
                                      "out: 5), positions in/0=5")
    with pytest.raises(DriverError, match="no partition 2"):
        d.commit(Transaction("app", outputs={("out", 2): recs(1)}))
    r.close()


def test_readers_see_committed_data_only_and_follow_the_head(url: str) -> None:
    w = GitDriver(url, app="a")
    w.create_topic("t", 1)
    w.append("t", 0, recs(3))
    r = GitDriver(url, app="a")
    assert r.end_offset("t", 0) == 3
    w.commit(Transaction("a", outputs={("t", 0): recs(2, 3)}))
    r.refresh()
    assert r.end_offset("t", 0) == 5
    assert not r._lock.held
    w.close()
    r.close()


def test_unbound_append_needs_a_branch(url: str) -> None:
    d = GitDriver(url)
    d.create_topic("t", 1)
    d.append("t", 0, recs(2))
    with pytest.raises(DriverError, match="which branch"):
        d.read_all("t")
    with pytest.warns(RuntimeWarning, match="never committed"):
        d.close()


def test_partition_count_mismatch_at_bind(url: str) -> None:
    d = GitDriver(url, app="a")
    d.create_topic("t", 2)
    d.append("t", 0, recs(1))
    d.close()
    u = GitDriver(url)
    u.create_topic("t", 3)
    with pytest.raises(DriverError, match="has 2 partitions"):
        u.assign("a", ["t"])
    u.close()


def test_empty_commit_objects_and_topics_created_with_the_next_commit(url: str) -> None:
    d = GitDriver(url, app="a")
    d.create_topic("t", 1)
    assert d.head is None  # creating a topic alone commits nothing
    d.commit(Transaction("a", positions={("t", 0): 0}))
    assert d.partitions("t") == 1 and d.head is not None
    assert GitDriver(url, app="a").partitions("t") == 1
    d.close()


# ------------------------------------------------------------------------------- locking
def _lock_path(url: str) -> Path:
    return Path(parse_git_url(url)[0]) / "workbench.lock"


def test_readers_and_appenders_never_lock_and_writers_do(url: str) -> None:
    w = GitDriver(url, app="a")
    w.create_topic("t", 1)
    w.append("t", 0, recs(1))
    assert not _lock_path(url).exists()  # appends need no writer lock
    w.commit(Transaction("a", positions={("t", 0): 1}))
    info = json.loads(_lock_path(url).read_text())
    assert info["pid"] == os.getpid() and info["branch"] == "workbench/a"
    w.close()
    assert not _lock_path(url).exists()
    r = GitDriver(url, app="a")
    assert r.read_all("t") and not _lock_path(url).exists()
    r.close()


def test_a_live_writer_elsewhere_blocks_a_second_writer(url: str, tmp_path: Path) -> None:
    GitDriver(url, app="a").close()
    script = (f"import sys, time; from workbench.drivers.git import GitDriver\n"
              f"d = GitDriver({url!r}, app='a'); d.assign('a', []); print('locked', flush=True)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        d = GitDriver(url, app="a")
        with pytest.raises(DriverError, match=f"locked by another writer: process {proc.pid}"):
            d.assign("a", [])
        assert d.read_all  # reading is fine meanwhile
    finally:
        proc.kill()
        proc.wait()
    # the holder died with kill -9: its lock is stale and taken over with a warning
    with pytest.warns(RuntimeWarning, match=f"stale writer lock: process {proc.pid}"):
        d.assign("a", [])
    assert json.loads(_lock_path(url).read_text())["pid"] == os.getpid()
    d.close()


def test_lock_on_another_host_is_respected(url: str) -> None:
    GitDriver(url, app="a").close()
    _lock_path(url).write_text(json.dumps({"pid": 1, "host": "elsewhere", "token": "x",
                                           "started": "then"}))
    with pytest.raises(DriverError, match="host 'elsewhere'"):
        GitDriver(url, app="a").assign("a", [])


def test_same_process_takeover_fences_the_old_driver(url: str) -> None:
    first = GitDriver(url, app="a")
    first.create_topic("t", 1)
    first.append("t", 0, recs(1))
    first.assign("a", ["t"])
    second = GitDriver(url, app="a")
    second.assign("a", ["t"])  # takes the lock over silently (same process)
    second.append("t", 0, recs(1, 1))
    with pytest.raises(FencedError, match="lost the writer lock"):
        first.commit(Transaction("a", outputs={("t", 0): recs(1, 2)}))
    assert second.end_offset("t", 0) == 2
    second.close()
    first.close()


def test_leftover_files_of_a_killed_writer_are_removed(url: str) -> None:
    d = GitDriver(url, app="a")
    d.create_topic("t", 1)
    d.append("t", 0, recs(1))
    d.close()
    root = Path(parse_git_url(url)[0])
    (root / "objects" / "ab").mkdir(exist_ok=True)
    old_object_lock = root / "objects" / "ab" / ("c" * 38 + ".lock")
    old_object_lock.write_bytes(b"half an object (dulwich's writer)")
    (root / "workbench-tmp").mkdir(exist_ok=True)
    old_tmp = root / "workbench-tmp" / "obj-1-1"
    old_tmp.write_bytes(b"half an object")
    fresh_tmp = root / "workbench-tmp" / "obj-2-1"  # may belong to a live appender
    fresh_tmp.write_bytes(b"being written")
    for path in (old_object_lock, old_tmp):
        os.utime(path, (1, 1))
    ref_lock = root / "refs" / "heads" / "workbench" / "a.lock"
    ref_lock.write_text("0" * 40)
    os.utime(ref_lock, (1, 1))
    d = GitDriver(url, app="a")
    d.assign("a", ["t"])
    d.append("t", 0, recs(1, 1))  # would wait for the ref lock if it stayed
    assert not ref_lock.exists() and not old_object_lock.exists() and not old_tmp.exists()
    assert fresh_tmp.exists()
    d.close()


def test_a_fresh_ref_lock_is_waited_for_then_taken_as_stale(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``<ref>.lock`` is held for microseconds by a live process: a writer waits for it,
    and removes it once it is older than STALE_LOCK_S (a process died holding it)."""
    import workbench.drivers.git.repo as repo_module

    monkeypatch.setattr(repo_module, "STALE_LOCK_S", 0.3)
    d = GitDriver(url, app="a")
    d.create_topic("t", 1)
    d.append("t", 0, recs(1))
    ref_lock = Path(parse_git_url(url)[0]) / "refs" / "heads" / "workbench" / "a.lock"
    ref_lock.write_text("0" * 40)
    d.append("t", 0, recs(1, 1))
    assert not ref_lock.exists() and d.end_offset("t", 0) == 2
    d.close()


# ------------------------------------------------------------------------------- bad data
def _put(url: str, branch: str, path: str, data: bytes | None) -> None:
    """Commit ``data`` at ``path`` (``None``: delete) on ``branch``, like a user might."""
    from dulwich.object_store import commit_tree_changes
    from dulwich.objects import Blob, Commit
    from dulwich.repo import Repo

    repo = Repo(parse_git_url(url)[0])
    ref = b"refs/heads/" + branch.encode()
    head = repo.refs[ref]
    changes: list[tuple[bytes, int | None, bytes | None]]
    if data is None:
        changes = [(path.encode(), None, None)]
    else:
        blob = Blob.from_string(data)
        repo.object_store.add_object(blob)
        changes = [(path.encode(), 0o100644, blob.id)]
    tree = commit_tree_changes(repo.object_store, repo[repo[head].tree], changes)
    c = Commit()
    c.tree, c.parents = tree, [head]
    c.author = c.committer = b"someone <s@example.com>"
    c.commit_time = c.author_time = 1
    c.commit_timezone = c.author_timezone = 0
    c.message = b"manual edit\n"
    repo.object_store.add_object(c)
    repo.refs[ref] = c.id


def _seeded(url: str) -> None:
    d = GitDriver(url + "?segment_bytes=100", app="a")
    d.create_topic("t", 1)
    d.append("t", 0, recs(10))
    d.close()


@pytest.mark.parametrize(("path", "data", "message"), [
    ("topics/t/0/notes.txt", b"hello\n", r"topics/t/0/notes\.txt.*not a segment file"),
    ("topics/t/7/00000000000000000000.jsonl", b"{}\n", r"topics/t/7.*unexpected entry"),
    ("topics/t/README", b"hi\n", r"topics/t/README.*unexpected entry"),
    ("topics/t/topic.json", b"{not json", r"topics/t/topic\.json.*corrupt"),
    ("topics/x/0/00000000000000000000.jsonl", b"{}\n", r"topics/x/.*topic\.json is missing"),
    ("positions/a.txt", b"{}", r"positions/a\.txt.*not a positions file"),
    ("topics/stray.csv", b"a,b\n", r"topics/stray\.csv.*foreign file"),
])
def test_foreign_files_are_named(url: str, path: str, data: bytes, message: str) -> None:
    _seeded(url)
    _put(url, "workbench/a", path, data)
    with pytest.raises(DriverError, match=message):
        GitDriver(url, app="a")


def test_corrupt_records_are_named_with_their_line(url: str) -> None:
    _seeded(url)
    d = GitDriver(url, app="a")
    segs = d._state.topics["t"].parts[0].segs
    name = segs[0].name
    raw = b"".join(d._lines("t", 0, segs[0])[i] + b"\n" for i in range(segs[0].count))
    lines = raw.split(b"\n")
    lines[1] = b'{"key": "k1", "value": oops}'
    _put(url, "workbench/a", f"topics/t/0/{name}", b"\n".join(lines))
    r = GitDriver(url, app="a")
    with pytest.raises(DriverError, match=rf"topics/t/0/{name}.*line 2 \(offset 1\)"):
        r.read("t", 0, 0, 100)
    # a record object without a timestamp
    lines[1] = b'{"key": "k1", "value": 1}'
    _put(url, "workbench/a", f"topics/t/0/{name}", b"\n".join(lines))
    with pytest.raises(DriverError, match=rf"{name}.*line 2.*key, value and timestamp"):
        GitDriver(url, app="a").read("t", 0, 0, 100)
    # a segment whose line count disagrees with the next segment's offset
    _put(url, "workbench/a", f"topics/t/0/{name}", b"\n".join(lines[:1]) + b"\n")
    with pytest.raises(DriverError, match=rf"{name} \(branch.*corrupt segment: 1 records"):
        GitDriver(url, app="a").read("t", 0, 0, 100)
    _put(url, "workbench/a", "positions/a.json", b"[1, 2]")
    with pytest.raises(DriverError, match=r"positions/a\.json.*corrupt positions"):
        GitDriver(url, app="a").committed("a", "t", 0)


# ------------------------------------------------------------------------------- plain git
@needs_git
def test_plain_git_reads_the_repository(url: str) -> None:
    d = GitDriver(url + "?segment_bytes=200", app="a")
    d.create_topic("t", 1)
    d.append("t", 0, recs(20))
    d.commit(Transaction("a", outputs={("t", 0): recs(5, 20)}, positions={("t", 0): 25}))
    d.close()
    repo = parse_git_url(url)[0]
    log = git(repo, "log", "--format=%s", "workbench/a").stdout.splitlines()
    assert log == ["workbench a: +5 records (t: 5), positions t/0=25",
                   "workbench: append 20 records to t/0"]
    assert git(repo, "log", "--oneline").stdout.count("\n") == 2  # HEAD is the first branch
    fsck = git(repo, "fsck", "--strict", "--no-dangling")
    assert fsck.returncode == 0 and fsck.stdout == "" and fsck.stderr == "", fsck
    first = git(repo, "show", "workbench/a:topics/t/0/00000000000000000000.jsonl").stdout
    assert json.loads(first.splitlines()[0]) == {"key": "k0", "value": {"i": 0, "s": ""},
                                                 "timestamp": 1000}
    diff = git(repo, "diff", "--stat", "workbench/a~1", "workbench/a").stdout
    assert "positions/a.json" in diff
    positions = json.loads(git(repo, "show", "workbench/a:positions/a.json").stdout)
    assert positions["positions"] == {"t": {"0": 25}}
    # packed by git gc, still readable
    git(repo, "gc", "-q")
    assert not [p for p in Path(repo, "objects").iterdir() if len(p.name) == 2]
    again = GitDriver(url, app="a")
    assert plain(again.read_all("t")) == plain(recs(25))
    again.append("t", 0, recs(1, 25))
    assert git(repo, "fsck", "--strict").returncode == 0
    again.close()


def test_pack_keeps_the_repository_readable(url: str) -> None:
    d = GitDriver(url + "?segment_bytes=200", app="a")
    d.create_topic("t", 1)
    for i in range(5):
        d.append("t", 0, recs(10, 10 * i))
    d.pack()
    d.close()
    assert plain(GitDriver(url, app="a").read_all("t")) == plain(recs(50))


# ------------------------------------------------------------------------------- time travel
def test_history_as_of_and_start_at(url: str) -> None:
    d = GitDriver(url, app="a")
    d.create_topic("t", 1)
    for i in range(3):
        d.append("t", 0, recs(2, 2 * i))
    hist = d.history()
    assert len(hist) == 3 and hist[0].time >= hist[-1].time
    old = d.as_of(hist[1].id)
    assert old.end_offset("t", 0) == 4 and old.read_only
    assert d.as_of(hist[2].id[:8]).end_offset("t", 0) == 2
    assert d.as_of(hist[2]).end_offset("t", 0) == 2
    assert d.as_of(hist[0].time).end_offset("t", 0) == 6
    with pytest.raises(DriverError, match="read-only view"):
        old.append("t", 0, recs(1))
    with pytest.raises(DriverError, match="no commit at or before"):
        d.as_of(0)
    pinned = GitDriver(url, at=hist[2].id)
    assert pinned.end_offset("t", 0) == 2 and pinned.history()[0].id == hist[2].id
    # a new branch starting at an old commit
    replay = GitDriver(url, branch="replay", start_at=hist[1].id)
    assert replay.end_offset("t", 0) == 4
    replay.append("t", 0, recs(1, 100))
    assert replay.end_offset("t", 0) == 5 and d.end_offset("t", 0) == 6
    assert [h.id for h in replay.history()[1:]] == [h.id for h in hist[1:]]
    replay.close()
    again = GitDriver(url, branch="replay", start_at=hist[1].id)  # restart: ancestor, fine
    assert again.end_offset("t", 0) == 5
    again.close()
    with pytest.raises(DriverError, match="does not descend from start_at"):
        GitDriver(url, branch="replay", start_at=hist[0].id)
    d.close()


def test_frame_and_table_helpers(url: str) -> None:
    d = GitDriver(url, app="a")
    d.create_topic("t", 1)
    d.append("t", 0, [("a", {"n": 1}, 1, 0, None), ("b", {"n": 2}, 2, 0, None),
                      ("a", {"n": 3}, 3, 0, None), ("b", None, 4, 0, None)])
    assert list(d.frame("t")["n"].fillna(-1)) == [1, 2, 3, -1]
    table = d.table("t", key_name="user")
    assert list(table["user"]) == ["a"] and list(table["n"]) == [3]
    d.close()


def test_register_driver_line_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The line drivers/__init__.py needs (see docs/drivers/git.md)."""
    monkeypatch.delitem(_FACTORIES, "git", raising=False)

    def _git(url: str) -> Any:
        from workbench.drivers.git import GitDriver

        return GitDriver(url)

    register_driver("git", _git)
    d = wb.connect(f"git://{tmp_path}/r?app=x")
    assert isinstance(d, GitDriver) and d.branch == "workbench/x"
    d.close()


def test_warns_nothing_on_a_clean_run(url: str) -> None:
    p = wb.Pipeline("quiet")
    p.source("in", key="k").to("out")
    gc.collect()  # earlier tests' garbage must not warn (ResourceWarning) inside the block
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = p.run(url, inputs={"in": [{"k": 1, "v": 2}]})
        assert run.driver.read_all("out")[0][:2] == (1, {"k": 1, "v": 2})
        run.driver.close()
