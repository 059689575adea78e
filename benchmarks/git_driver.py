"""Git-driver benchmark: P1 and P2 (the lambda pipelines of pipelines.py) into a git repository,
beside a plain JSON-lines program computing the same results: read the events from a JSON-lines
file, decode, run the plain-Python loop (``references.loop_*``, the same functions per record),
encode and write the output records ``{"key", "value", "timestamp"}`` as JSON lines.

Loading is excluded on both sides and reported on its own: the events are appended to the
repository through the driver (one git commit) and written to ``events.jsonl`` once, before
anything is timed. Each repeat of each side runs in a fresh process with fresh outputs (peak
RSS is its own); repeats alternate between the sides; medians are reported. Results are read
back once and checked (JSON lines against workbench, workbench against the in-memory loop,
late counts included); a difference exits 1. Both sides do all their work in this process (git
objects, files), so the CPU ratio is given too: the disk and the other processes on a shared
machine disturb it less than the wall clock. The note gives the repository's size (and, with
``--git-gc``, its size after ``git gc`` and whether ``git fsck --strict`` is clean).

    python benchmarks/git_driver.py [--events 1000000] [--repeat 3] [--only P1,P2]
                                    [--dir /tmp/x] [--git-gc] [--json PATH]

The target is P1 on git >= 0.3 x the JSON-lines program.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import pipelines  # noqa: E402
import references  # noqa: E402
import results  # noqa: E402
import workload  # noqa: E402

JSONL = "JSON lines + plain loop"


def du_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, f)).st_blocks * 512
    return total / 1e6


def git_url(workdir: Path) -> str:
    return f"git://{workdir / 'bench.git'}?branch=bench"


# ---------------------------------------------------------------- loading (not timed)
def load(workdir: Path, events: list[dict[str, Any]]) -> dict[str, float]:
    import workbench as wb
    from workbench.run import append_inputs

    d = wb.connect(git_url(workdir))
    t0 = time.perf_counter()
    append_inputs(pipelines.build("P1").pipeline, d, {"events": events})
    wb_s = time.perf_counter() - t0
    d.close()
    t0 = time.perf_counter()
    with open(workdir / "events.jsonl", "w", encoding="utf-8") as f:
        dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        for e in events:
            f.write(dumps(e))
            f.write("\n")
    return {"wb_load_s": wb_s, "ref_load_s": time.perf_counter() - t0}


# ---------------------------------------------------------------- (a) JSON lines
def _read(path: Path) -> Iterator[dict[str, Any]]:
    loads = json.JSONDecoder().decode
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield loads(line)


def jsonl_case(workdir: Path, case: str, rep: int) -> tuple[dict[str, Any], Path]:
    out = workdir / f"jsonl-{case.lower()}-{rep}.jsonl"
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    t0, c0 = time.perf_counter(), time.process_time()
    with open(out, "w", encoding="utf-8") as f:
        write = f.write
        if case == "P1":
            is_paid, add_cents = pipelines.is_paid, pipelines.add_cents
            for e in _read(workdir / "events.jsonl"):
                if is_paid(e):
                    v = add_cents(e)
                    write(dumps({"key": v["user_id"], "value": v, "timestamp": v["ts"]}))
                    write("\n")
            late = None
        else:
            windows, late = references.loop_p2(_read(workdir / "events.jsonl"))  # type: ignore[arg-type]
            end = workload.WINDOW
            for (u, s), (total, n) in windows.items():
                write(dumps({"key": {"key": u, "window_start": s, "window_end": s + end},
                             "value": {"total": total, "n": n}, "timestamp": s}))
                write("\n")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": seconds, "cpu_seconds": cpu, "late": late, "out_mb": du_mb(out)}, out


def _jsonl_result(case: str, path: Path, late: int | None) -> results.Canonical:
    if case == "P1":
        return results.from_rows("P1", [r["value"] for r in _read(path)])
    windows = {(r["key"]["key"], r["key"]["window_start"]): (r["value"]["total"],
                                                             r["value"]["n"])
               for r in _read(path)}
    return results.from_loop("P2", windows, late)


# ---------------------------------------------------------------- (b) workbench
def wb_case(workdir: Path, case: str, rep: int, result: str | None) -> dict[str, Any]:
    built = pipelines.build(case, sfx=f"-r{rep}")
    t0, c0 = time.perf_counter(), time.process_time()
    run = built.pipeline.run(git_url(workdir), progress=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"seconds": seconds, "cpu_seconds": cpu, "commits": run.stats.commits,
           "rss_mb": harness.peak_rss_mb()}
    if result:  # read back after measuring: the check's memory is not the run's
        late = run.stats.records_out.get(built.late, 0) if built.late else None
        results.from_frame(case, run.frame(built.sink), late).save(result)
    run.close()
    return out


def child(args: argparse.Namespace) -> dict[str, Any]:
    role, case = args.child
    workdir = Path(args.dir)
    with harness.gc_state(args.gc):
        if role == "jsonl":
            out, path = jsonl_case(workdir, case, args.rep)
        else:
            out = wb_case(workdir, case, args.rep, args.result)
    out.setdefault("rss_mb", harness.peak_rss_mb())
    if role == "jsonl":
        if args.result:
            _jsonl_result(case, path, out["late"]).save(args.result)
        path.unlink()
    return out


# ---------------------------------------------------------------- the parent
def parent(args: argparse.Namespace, workdir: Path) -> list[harness.Row]:
    n = args.events
    cases = args.only.split(",")
    events = workload.events(n)
    want = {"P1": results.from_loop("P1", *references.loop_p1(events)),
            "P2": results.from_loop("P2", *references.loop_p2(events))}
    loads = load(workdir, events)
    del events
    harness.progress(f"git: loaded {n:,} events: driver {loads['wb_load_s']:.1f} s, "
                     f"JSON lines {loads['ref_load_s']:.1f} s")
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    got: dict[tuple[str, str], results.Canonical] = {}
    for rep in range(args.repeat):
        for case in cases:
            for role in ("jsonl", "wb"):
                res = workdir / f"{role}-{case}.pickle"
                out = harness.run_child(Path(__file__), [
                    "--child", role, case, "--dir", str(workdir), "--rep", str(rep),
                    "--gc", args.gc] + (["--result", str(res)] if rep == 0 else []))
                runs.setdefault((role, case), []).append(out)
                harness.progress(f"git {case} {role} run {rep + 1}: {out['seconds']:.2f} s, "
                                 f"peak RSS {out['rss_mb']:.0f} MB")
                if rep == 0:
                    got[(role, case)] = results.Canonical.load(res)
    repo = workdir / "bench.git"
    size = f"repository {du_mb(repo):.0f} MB"
    git = shutil.which("git")
    if git and args.gc_repo:
        subprocess.run([git, "-C", str(repo), "gc", "-q"], check=True)
        fsck = subprocess.run([git, "-C", str(repo), "fsck", "--strict"], capture_output=True,
                              text=True)
        clean = fsck.returncode == 0 and not fsck.stderr.strip()
        size += f" ({du_mb(repo):.0f} MB after git gc; fsck {'clean' if clean else 'NOT clean'})"
    rows = []
    for case in cases:
        w, r = runs[("wb", case)], runs[("jsonl", case)]
        wc, rc = got[("wb", case)], got[("jsonl", case)]
        diffs = (results.differences(wc, rc, "workbench", "JSON lines")
                 + results.differences(wc, want[case], "workbench", "plain loop"))
        note = (f"load excluded: driver {loads['wb_load_s']:.1f} s, JSON lines "
                f"{loads['ref_load_s']:.1f} s; {w[0]['commits']} commits; {size}")
        if wc.late is not None:
            note += f"; late {wc.late:,}"
        rows.append(harness.Row(
            "git", case, "lambda, until end", JSONL, n,
            wb_s=statistics.median(x["seconds"] for x in w),
            ref_s=statistics.median(x["seconds"] for x in r),
            wb_cpu_s=statistics.median(x["cpu_seconds"] for x in w),
            ref_cpu_s=statistics.median(x["cpu_seconds"] for x in r),
            wb_rss_mb=max(x["rss_mb"] for x in w), ref_rss_mb=max(x["rss_mb"] for x in r),
            wb_times=[x["seconds"] for x in w], ref_times=[x["seconds"] for x in r],
            matched=not diffs, diffs=diffs, note=note, extra=dict(loads)))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.common_args(ap)
    ap.add_argument("--only", default="P1,P2")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--git-gc", dest="gc_repo", action="store_true",
                    help="also run git gc (slow: delta search) and git fsck, report the size")
    ap.add_argument("--child", nargs=2, metavar=("ROLE", "CASE"), help=argparse.SUPPRESS)
    ap.add_argument("--rep", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return 0
    meta = harness.conditions(args)
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="wb-bench-git-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        rows = parent(args, workdir)
    finally:
        if args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return harness.finish(rows, args, meta)


if __name__ == "__main__":
    sys.exit(main())
