"""``make bench``: every benchmark script, one table.

Runs ``memory_driver.py`` (P1-P4 and ``run.frame``), then, when ``workbench dev status`` shows
the services running, ``kafka_driver.py`` and ``postgres_driver.py`` against them, and
``git_driver.py`` (a temporary repository). Each script runs its cases in fresh processes and
writes its rows with ``--json``; this prints the conditions (date, commit, load average before
and after) and one table of all rows. Exit status 1 when any result differs from its reference
or a script fails.

    python benchmarks/bench.py [--events 1000000] [--repeat 3] [--gc paused|enabled]
                               [--only memory,kafka,postgresql,git] [--driver-events N]
                               [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402

SCRIPTS = {"memory": "memory_driver.py", "kafka": "kafka_driver.py",
           "postgresql": "postgres_driver.py", "git": "git_driver.py"}
SERVICE = {"kafka": "kafka", "postgresql": "postgres"}


def services() -> dict[str, str | None]:
    """``{service: url or None}`` as ``workbench dev status`` reports them."""
    from workbench.devservices import status

    return {name: (info.url if info is not None else None) for name, info in status().items()}


def run_script(name: str, args: argparse.Namespace, urls: dict[str, str | None],
               tmp: Path) -> tuple[list[harness.Row], str | None]:
    """Run one script; its rows, or an error message."""
    events = args.events if name == "memory" else (args.driver_events or args.events)
    out = tmp / f"{name}.json"
    cmd = [sys.executable, str(HERE / SCRIPTS[name]), "--events", str(events),
           "--repeat", str(args.repeat), "--gc", args.gc, "--json", str(out), "--quiet"]
    if name in SERVICE:
        cmd += ["--url", str(urls[SERVICE[name]])]
    harness.progress(f"== {name}: {' '.join(cmd[1:])}")
    proc = subprocess.run(cmd)
    if not out.exists():
        return [], f"{SCRIPTS[name]} failed (status {proc.returncode}); see its output above"
    _meta, rows = harness.read_json(out)
    return rows, None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.common_args(ap)
    ap.add_argument("--only", default="memory,kafka,postgresql,git")
    ap.add_argument("--driver-events", type=int, default=None,
                    help="events for the kafka, postgresql and git cases (default: --events)")
    args = ap.parse_args()
    meta = harness.conditions(args)
    urls = services()
    rows: list[harness.Row] = []
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wb-bench-") as d:
        for name in args.only.split(","):
            if name not in SCRIPTS:
                errors.append(f"unknown benchmark {name!r}; one of {', '.join(SCRIPTS)}")
                continue
            if name in SERVICE and urls.get(SERVICE[name]) is None:
                rows.append(harness.Row(name, "-", "-", "-", 0, note=(
                    f"n/a: {SERVICE[name]} not running (`workbench dev status`; start it with "
                    "`workbench dev up`)")))
                continue
            got, err = run_script(name, args, urls, Path(d))
            rows += got
            if err:
                errors.append(err)
                rows.append(harness.Row(name, "-", "-", "-", 0, note=f"FAILED: {err}"))
    meta["load_after"] = os.getloadavg()
    print()
    print(harness.header(meta) + " | load average after "
          + " ".join(f"{x:.1f}" for x in meta["load_after"]))
    if args.driver_events and args.driver_events != args.events:
        print(f"(kafka, postgresql and git: {args.driver_events:,} events)")
    print(harness.table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"meta": meta, "rows": [r.to_json() for r in rows]}, indent=1))
    bad = [r for r in rows if r.matched is False]
    for e in errors:
        print(f"ERROR: {e}", file=sys.stderr)
    return 1 if bad or errors else 0


if __name__ == "__main__":
    sys.exit(main())
