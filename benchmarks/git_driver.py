"""Git-driver benchmark: workloads P1 and P2 (see workload.py) into a fresh git repository, beside
a reference that runs the same pipeline on the memory driver and writes its output as JSON lines
to plain files, in the same process. Prints records/s, the ratio, repository size on disk (and
after ``git gc``), the number of commits and peak RSS.

    python benchmarks/git_driver.py [--events 1000000] [--only P1,P2] [--dir /tmp/x] [--gc]

Each case runs in its own child process (so peak RSS is the case's own): first the git run,
whose end-to-end time includes appending the inputs to the repository (one git commit), then
the reference. Numbers, not pass/fail; the target is P1 git >= 0.3 x the reference.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import memory_driver as md
import workload

from workbench.drivers.git import GitDriver
from workbench.run import append_inputs
from workbench.runtime.engine import gc_paused

PIPELINES = {"P1": md.wb_p1, "P2": md.wb_p2}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def du_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, f)).st_blocks * 512
    return total / 1e6


def write_jsonl(run: Any, folder: Path) -> int:
    """The reference's persistence: every sink partition as a JSON-lines file."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for topic in run.pipeline.sinks:
        count = run.driver.partitions(topic) or 0
        for p in range(count):
            with open(folder / f"{topic}-{p}.jsonl", "w", encoding="utf-8") as f:
                for k, v, t, _o, _h in run.driver.read(topic, p, 0, 1 << 62):
                    f.write(json.dumps({"key": k, "value": v, "timestamp": t},
                                       separators=(",", ":"), ensure_ascii=False,
                                       default=list))
                    f.write("\n")
                    n += 1
    return n


def case(name: str, events_n: int, workdir: Path, gc: bool) -> dict[str, Any]:
    events = workload.events(events_n)
    out: dict[str, Any] = {"case": name, "events": events_n, "rss_data_mb": rss_mb()}
    build = PIPELINES[name]
    repo = workdir / f"{name.lower()}.git"
    shutil.rmtree(repo, ignore_errors=True)
    url = f"git://{repo}"

    # -- git: append the inputs (one commit), then the run (one commit per engine commit)
    with gc_paused():
        t0 = time.perf_counter()
        driver = GitDriver(url, app=build().name)
        append_inputs(build(), driver, {"events": events})
        t1 = time.perf_counter()
        run = build().run(driver)
        t2 = time.perf_counter()
    out["git_append_s"] = t1 - t0
    out["git_run_s"] = t2 - t1
    out["git_total_s"] = t2 - t0
    out["engine_commits"] = run.engine.stats.commits
    out["records_out"] = dict(run.engine.stats.records_out)
    out["git_commits"] = len(driver.history(build().name))
    out["rss_git_mb"] = rss_mb()
    driver.close()
    del run, driver
    out["repo_mb"] = du_mb(repo)
    git = shutil.which("git")
    if git and gc:
        t = time.perf_counter()
        subprocess.run([git, "-C", str(repo), "gc", "-q"], check=True)
        out["gc_s"] = time.perf_counter() - t
        out["repo_gc_mb"] = du_mb(repo)
        fsck = subprocess.run([git, "-C", str(repo), "fsck", "--strict"], capture_output=True,
                              text=True)
        out["fsck_ok"] = fsck.returncode == 0 and not fsck.stderr.strip()

    # -- reference: the memory driver, then the output as JSON lines in plain files
    with gc_paused():
        t0 = time.perf_counter()
        ref = build().run("memory://", inputs={"events": events})
        t1 = time.perf_counter()
        lines = write_jsonl(ref, workdir / f"{name.lower()}-jsonl")
        t2 = time.perf_counter()
    out["ref_memory_s"] = t1 - t0
    out["ref_write_s"] = t2 - t1
    out["ref_total_s"] = t2 - t0
    out["ref_lines"] = lines
    out["jsonl_mb"] = du_mb(workdir / f"{name.lower()}-jsonl")
    return out


def report(r: dict[str, Any]) -> str:
    n = r["events"]
    ratio = r["ref_total_s"] / r["git_total_s"]
    lines = [
        f"{r['case']}: git {n / r['git_total_s']:>9,.0f} rec/s ({r['git_total_s']:.2f} s = "
        f"append inputs {r['git_append_s']:.2f} s + run {r['git_run_s']:.2f} s) | reference "
        f"{n / r['ref_total_s']:>9,.0f} rec/s ({r['ref_total_s']:.2f} s = memory run "
        f"{r['ref_memory_s']:.2f} s + JSON lines {r['ref_write_s']:.2f} s) | ratio {ratio:.2f}",
        f"    run only (inputs already in git): {n / r['git_run_s']:,.0f} rec/s, ratio to the "
        f"reference {r['ref_total_s'] / r['git_run_s']:.2f}",
        f"    out {r['records_out']} | engine commits {r['engine_commits']}, git commits "
        f"{r['git_commits']} (+1 for the inputs)",
        f"    repository {r['repo_mb']:.0f} MB"
        + (f", {r['repo_gc_mb']:.0f} MB after git gc ({r['gc_s']:.1f} s), fsck "
           f"{'clean' if r['fsck_ok'] else 'NOT CLEAN'}" if "repo_gc_mb" in r else "")
        + f" | reference JSON lines {r['jsonl_mb']:.0f} MB",
        f"    peak RSS: {r['rss_data_mb']:.0f} MB after generating the events, "
        f"{r['rss_git_mb']:.0f} MB after the git run",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--only", default="P1,P2")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--gc", action="store_true",
                    help="also run git gc (slow: delta search) and git fsck, report the size")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args()
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="wb-git-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.case:
        result = case(args.case, args.events, workdir, args.gc)
        print(json.dumps(result))
        return 0
    print(f"events={args.events:,} python={sys.version.split()[0]} work folder {workdir}")
    for name in args.only.split(","):
        cmd = [sys.executable, __file__, "--case", name, "--events", str(args.events),
               "--dir", str(workdir)] + (["--gc"] if args.gc else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-3000:]}")
            return 1
        print(report(json.loads(proc.stdout.strip().splitlines()[-1])), flush=True)
    if args.dir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
