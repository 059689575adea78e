"""The benchmarks' own honesty: the workload has records beyond grace, every reference computes
what workbench computes (late counts included), and a difference fails the script.

Timings are never asserted here (see docs/performance.md); these tests check the checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402
import pipelines  # noqa: E402
import references  # noqa: E402
import results  # noqa: E402
import workload  # noqa: E402

import workbench as wb  # noqa: E402

N = 12_000


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return workload.events(N)


def _workbench(case: str, events: list[dict]) -> results.Canonical:
    built = pipelines.build(case)
    inputs = {"events": events}
    if built.profiles:
        inputs[built.profiles] = workload.profiles()
    run = built.pipeline.run("memory://", inputs=inputs, progress=False)
    late = run.stats.records_out.get(built.late, 0) if built.late else None
    return results.from_frame(case, run.frame(built.sink), late)


def test_workload_has_records_beyond_grace(events: list[dict]) -> None:
    import numpy as np

    ts = np.array([e["ts"] for e in events])
    behind = np.maximum.accumulate(ts) - ts
    beyond = int((behind > workload.GRACE).sum())
    assert 0.003 * N < beyond < 0.008 * N
    assert behind.max() > 60_000
    frame = workload.events_frame(N)
    assert frame.to_dict("records") == events


@pytest.mark.parametrize("case", pipelines.CASES)
def test_references_equal_workbench(case: str, events: list[dict]) -> None:
    got = _workbench(case, events)
    profiles = workload.profiles()
    frame = workload.events_frame(N)
    loop = {"P1": lambda: references.loop_p1(events), "P2": lambda: references.loop_p2(events),
            "P3": lambda: references.loop_p3(events, profiles),
            "P4": lambda: references.loop_p4(events)}[case]()
    pdf = {"P1": lambda: references.pandas_p1(frame), "P2": lambda: references.pandas_p2(frame),
           "P3": lambda: references.pandas_p3(frame, workload.profiles_frame()),
           "P4": lambda: references.pandas_p4(frame)}[case]()
    assert results.differences(got, results.from_loop(case, *loop), "wb", "loop") == []
    assert results.differences(got, results.from_pandas(case, *pdf), "wb", "pandas") == []
    if case != "P1":
        assert got.late and got.late > 0  # records beyond grace really are dropped


def test_loop_p2_per_partition_matches_kafka_tasks(events: list[dict]) -> None:
    """Stream time is per task: the 3-partition reference equals workbench on 3 partitions."""
    built = pipelines.build("P2", partitions=3)
    run = built.pipeline.run("memory://", inputs={"events": events}, progress=False)
    got = results.from_frame("P2", run.frame(built.sink), run.stats.records_out.get(built.late))
    want = results.from_loop("P2", *references.loop_p2(events, 3))
    assert results.differences(got, want, "wb", "loop") == []


def test_differences_name_the_rows_and_the_late_counts(events: list[dict]) -> None:
    a = results.from_loop("P2", *references.loop_p2(events))
    frame = a.frame.drop(index=3).reset_index(drop=True)
    b = results.Canonical("P2", frame, (a.late or 0) + 1)
    diffs = results.differences(a, b, "workbench", "pandas")
    assert diffs[0].startswith("late records: workbench")
    assert "1 only in workbench, 0 only in pandas" in diffs[1]
    assert "only in workbench: {'user_id':" in diffs[2]


def test_a_mismatch_fails_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    row = harness.Row("memory", "P1", "lambda", "loop", 10, wb_s=1.0, ref_s=0.5,
                      matched=False, diffs=["late records: workbench 1, loop 2"])
    ok = harness.Row("memory", "P2", "lambda", "loop", 10, wb_s=1.0, ref_s=0.5, matched=True)
    args = type("A", (), {"json": None, "quiet": False})()
    meta = {"date": "d", "commit": "c", "load": (1.0, 1.0, 1.0), "cores": 2, "python": "3",
            "events": 10, "repeat": 1, "gc": "paused"}
    assert harness.finish([ok], args, meta) == 0
    assert harness.finish([ok, row], args, meta) == 1
    out = capsys.readouterr()
    assert "MISMATCH memory P1" in out.out and "NO" in out.out


@pytest.mark.slow
def test_memory_script_writes_checked_rows(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(BENCH / "memory_driver.py"), "--events", "3000",
                           "--repeat", "1", "--only", "P2,frame", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["case"], r["reference"]) for r in rows] == [
        ("P2", "plain loop (same functions)"), ("P2", "pandas"), ("P2", "pandas"),
        ("frame", "pandas DataFrame from columns")]
    expr = hasattr(wb, "col")
    for r in rows:
        if r["workbench"] == "wb.col + run.frame" and not expr:
            assert r["matched"] is None and r["note"].startswith("n/a")
        else:
            assert r["matched"] is True and r["wb_s"] > 0 and r["ref_s"] > 0
    assert "GC paused during timed runs" in proc.stdout


def test_external_io_rows_are_checked() -> None:
    """benchmarks/external_io.py: the map_async row and its asyncio reference both deliver
    every record (in order, for the reference), and the batch rows count every record."""
    import external_io

    row = external_io.queue_row(0.001, 4, 8, 60)
    assert row["records"] == 60 and row["rate"] > 0 and row["txn_max_ms"] > 0
    ref = external_io.queue_reference(0.001, 4, 8, 60)
    assert ref["rate"] > 0
    loop = external_io.batch_reference(50)
    assert loop["reference"] and loop["records"] == 50
    batch = external_io.batch_row("memory://", 10, 50, "1h")
    assert batch["commits"] >= 5 and batch["records"] == 50


def test_lambda_pairs_checks_both_sides(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import lambda_pairs

    monkeypatch.setattr(sys, "argv", ["lambda_pairs.py", "--case", "P1", "--events", "2000",
                                      "--pairs", "1"])
    assert lambda_pairs.main() == 0
    assert "paired CPU ratios" in capsys.readouterr().out
    loop_p1 = references.loop_p1
    monkeypatch.setattr(references, "loop_p1", lambda events: (loop_p1(events)[0][1:], None))
    assert lambda_pairs.main() == 1
    out = capsys.readouterr().out
    assert "RESULTS DIFFER" in out and "paired CPU ratios" not in out


def test_privacy_compares_both_sides(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``benchmarks/privacy.py`` checks the private side's frame against the plain side's
    in every case, and exits 1 when they differ."""
    import privacy

    monkeypatch.setattr(sys, "argv", ["privacy.py", "--events", "2000", "--repeat", "1"])
    privacy.main()
    out = capsys.readouterr().out
    assert "private memory://" in out and "private, expressions" in out
    assert "DIFFER" not in out
    p1 = privacy.p1

    def fewer(keys: object = None, greet: bool = False, suffix: str = "",
              expr: bool = False) -> object:
        import workbench as wb

        if keys is None:
            return p1(keys, greet, suffix, expr)
        p = wb.Pipeline(f"bench-privacy-p1{suffix}", keys=keys)
        (p.source(f"events{suffix}", key="user_id", time="ts",
                  personal=wb.Personal(subject="user_id", fields=["email", "name", "ip"]))
          .filter(lambda e: e["amount"] > 1)
          .map(lambda e: {**e, "amount_cents": round(e["amount"] * 100)})
          .to(f"p1{suffix}"))
        return p

    monkeypatch.setattr(privacy, "p1", fewer)
    with pytest.raises(SystemExit) as exit_:
        privacy.main()
    assert exit_.value.code == 1
    assert "RESULTS DIFFER" in capsys.readouterr().out
