"""``Stream.pipe``: real child processes (a Python script, jq, a program that crashes on the Nth
record, one that sleeps) fed JSON lines or length-prefixed bytes on stdin."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench._env import in_ci
from workbench.errors import DefinitionError, ProcessingError
from workbench.run import prepare

from .conftest import tool

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


def xs(n: int, key: Any = None) -> list[dict[str, Any]]:
    return [{"x": i, "k": key(i) if key else f"k{i % 3}", "ts": 1_000 + i} for i in range(n)]


def source(name: str, n: int = 20) -> tuple[wb.Pipeline, wb.Stream]:
    p = wb.Pipeline(name)
    return p, p.source("in", key="k", time="ts", sample=xs(n))


def values(run: wb.Run, topic: str = "out") -> list[Any]:
    return [r.value for r in run.records(topic)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not reaped) is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_python_script_one_output_per_input_in_order() -> None:
    p, s = source("pipe-echo", 50)
    s.pipe(tool("echo")).to("out")
    out = values(p.run("memory://"))
    assert [v["x"] for v in out] == list(range(50))
    assert all(v["y"] == 2 * v["x"] for v in out)
    assert len({v["pid"] for v in out}) == 1  # one long-lived process


def test_preview_shows_the_programs_output() -> None:
    _p, s = source("pipe-preview", 5)
    frame = s.pipe(tool("echo")).to_pandas()
    assert list(frame["y"]) == [0, 2, 4, 6, 8]
    assert list(frame["key"]) == ["k0", "k1", "k2", "k0", "k1"]


def test_jq_from_debian() -> None:
    if shutil.which("jq") is None:
        message = "jq is not installed (apt-get install -y jq; .ci/run installs it)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    p, s = source("pipe-jq", 30)
    s.pipe(["jq", "--unbuffered", "-c", "{x: .x, sq: (.x * .x)}"]).to("out")
    out = values(p.run("memory://"))
    assert out == [{"x": i, "sq": i * i} for i in range(30)]


def test_a_pool_keeps_every_key_on_one_process_in_order() -> None:
    p = wb.Pipeline("pipe-keys")
    recs = [{"k": f"user{i % 7}", "i": i // 7, "ts": i} for i in range(700)]
    s = p.source("in", key="k", time="ts", sample=recs)
    s.pipe(tool("keys"), workers=3).to("out")
    out = values(p.run("memory://", batch_size=64))
    assert [(v["k"], v["i"]) for v in out] == [(r["k"], r["i"]) for r in recs]  # input order
    assert all(v["ok"] for v in out)  # each process saw each of its keys in order
    by_key: dict[str, set[int]] = {}
    for v in out:
        by_key.setdefault(v["k"], set()).add(v["pid"])
    assert all(len(pids) == 1 for pids in by_key.values())
    assert len({pid for pids in by_key.values() for pid in pids}) > 1  # the work was shared


def test_many_outputs_per_input_with_envelopes() -> None:
    p = wb.Pipeline("pipe-many")
    s = p.source("in", sample=[{"n": n} for n in (2, 0, 3, 1)])
    s.pipe(tool("many"), outputs="many").to("out")
    out = values(p.run("memory://"))
    assert out == [{"n": 2, "j": 0}, {"n": 2, "j": 1}, {"n": 3, "j": 0}, {"n": 3, "j": 1},
                   {"n": 3, "j": 2}, {"n": 1, "j": 0}]


def test_bytes_framing_one_and_many() -> None:
    p = wb.Pipeline("pipe-bytes", )
    s = p.source("in", value="bytes", sample=[b"abc", b"", b"x\ny\x00z"])
    s.pipe(tool("bytes"), format="bytes").to("up", value="bytes")
    s.pipe(tool("bytes-many"), format="bytes", outputs="many").to("each", value="bytes")
    run = p.run("memory://")
    assert values(run, "up") == [b"ABC", b"", b"X\nY\x00Z"]
    assert values(run, "each") == [b"a", b"b", b"c", b"x", b"\n", b"y", b"\x00", b"z"]


def test_a_record_that_always_crashes_the_program_is_reported_with_its_offset(
        caplog: pytest.LogCaptureFixture) -> None:
    p, s = source("pipe-crash", 20)
    step = s.pipe(tool("crash", "7"), retries=2, backoff="10ms", name="scorer")
    step.to("out")
    caplog.set_level(logging.WARNING)
    with pytest.raises(ProcessingError) as info:
        p.run("memory://")
    err = info.value
    assert (err.step, err.topic, err.partition, err.offset) == ("scorer", "in", 0, 7)
    text = str(err)
    assert "exited with status 3" in text and "after 3 attempt(s)" in text
    assert "crashing on record 7" in text  # the program's last stderr lines
    assert "restarting it" in caplog.text


def test_a_crash_on_the_nth_record_is_retried_by_a_new_process(tmp_path: Path) -> None:
    p, s = source("pipe-crash-once", 20)
    s.pipe(tool("crash", "7", str(tmp_path / "crashed")), backoff="10ms").to("out")
    out = values(p.run("memory://"))
    assert [v["x"] for v in out] == list(range(20))  # nothing lost, nothing twice
    pids = [v["pid"] for v in out]
    assert pids[6] != pids[7] and len(set(pids)) == 2  # the record ran again in a new process


def test_failed_records_go_to_the_errors_output() -> None:
    p, s = source("pipe-route", 12)
    step = s.pipe(tool("crash", "4"), retries=1, backoff="1ms", on_error="route",
                  name="scorer")
    step.to("out")
    step.errors.to("bad")
    run = p.run("memory://")
    assert [v["x"] for v in values(run)] == [i for i in range(12) if i != 4]
    bad = run.records("bad")
    assert [r.value["x"] for r in bad] == [4]
    headers = dict(bad[0].headers)
    assert headers["workbench.error.step"] == b"scorer"
    assert headers["workbench.error.offset"] == b"4"
    assert headers["workbench.error.topic"] == b"in"
    assert headers["workbench.error.attempts"] == b"2"
    assert b"exited with status 3" in headers["workbench.error"]


def test_dead_letter_topic_and_skip() -> None:
    p, s = source("pipe-dlq", 6)
    s.pipe(tool("crash", "2"), retries=0, dead_letter="dlq").to("out")
    s.pipe(tool("crash", "3"), retries=0, on_error="skip", name="skipper").to("out2")
    run = p.run("memory://")
    assert [r.value["x"] for r in run.records("dlq")] == [2]
    assert [v["x"] for v in values(run, "out2")] == [0, 1, 2, 4, 5]
    assert run.engine.dropped_counts() == {"skipper": 1}


def test_a_hung_program_is_killed_and_the_record_retried(tmp_path: Path) -> None:
    p, s = source("pipe-hang-once", 10)
    s.pipe(tool("sleep", "3", "60", str(tmp_path / "slept")), timeout="500ms",
           backoff="10ms").to("out")
    began = time.monotonic()
    out = values(p.run("memory://"))
    assert time.monotonic() - began < 30
    assert [v["x"] for v in out] == list(range(10))
    assert len({v["pid"] for v in out}) == 2


def test_a_program_that_sleeps_on_every_try_is_reported() -> None:
    p, s = source("pipe-hang", 10)
    s.pipe(tool("sleep", "5", "60"), timeout="300ms", retries=1, backoff="1ms").to("out")
    with pytest.raises(ProcessingError) as info:
        p.run("memory://")
    assert info.value.offset == 5
    assert "did not answer within its timeout of 0.3 s" in str(info.value)


def test_stderr_goes_to_the_log_with_the_step_name(caplog: pytest.LogCaptureFixture) -> None:
    p, s = source("pipe-stderr", 3)
    s.pipe(tool("stderr"), name="chatty").to("out")
    caplog.set_level(logging.WARNING, logger="workbench.pipe")
    p.run("memory://")
    lines = [r.getMessage() for r in caplog.records if r.name == "workbench.pipe"]
    assert [line.split(": ", 1)[1] for line in lines] == ["saw 0", "saw 1", "saw 2"]
    assert all(line.startswith("step 'chatty' (pid ") for line in lines)


def test_no_shell_unless_asked(tmp_path: Path) -> None:
    _p, s = source("pipe-shell", 3)
    with pytest.raises(DefinitionError, match="needs shell=True"):
        s.pipe("cat | cat")
    out = s.pipe("cat | cat", shell=True).to_pandas()  # a shell joins the two cats
    assert list(out["x"]) == [0, 1, 2]


def test_a_missing_program_is_a_clear_error() -> None:
    p, s = source("pipe-missing", 3)
    s.pipe(["no-such-program-xyz"]).to("out")
    with pytest.raises(ProcessingError, match=r"cannot start 'no-such-program-xyz'.*on PATH"):
        p.run("memory://")


def test_children_stop_when_the_run_ends_or_stops() -> None:
    p, s = source("pipe-stop", 0)
    s.pipe(tool("echo"), workers=2).to("out")
    engine = prepare(p, "memory://", inputs={"in": xs(40)})
    engine.run_until_end()
    op = next(op for task in engine.tasks for op in task.external_ops())
    assert op.starts == 2 and op.pids() == []  # stopped at the end of the input
    engine.close()
    # an unbounded run: the children are running until the engine stops
    engine = prepare(p, "memory://")
    thread = threading.Thread(target=engine.run_forever, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    pids: list[int] = []
    while time.monotonic() < deadline and len(pids) < 2:
        ops = [op for task in engine.tasks for op in task.external_ops()]
        pids = ops[0].pids() if ops else []
        time.sleep(0.05)
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    engine.stop()
    thread.join(30)
    engine.close()
    assert not any(alive(pid) for pid in pids)


def test_argv_must_be_a_list() -> None:
    _p, s = source("pipe-args", 1)
    for bad, match in (([], "non-empty list"), ([1], "non-empty list"),
                       (["cat"], None)):
        if match is None:
            s.pipe(bad, format="jsonl")
            continue
        with pytest.raises(DefinitionError, match=match):
            s.pipe(bad)
    with pytest.raises(DefinitionError, match="format="):
        s.pipe(["cat"], format="csv")
    with pytest.raises(DefinitionError, match="outputs="):
        s.pipe(["cat"], outputs="all")
    with pytest.raises(DefinitionError, match="workers="):
        s.pipe(["cat"], workers=0)
