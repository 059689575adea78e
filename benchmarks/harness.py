"""What every benchmark script shares: one set of measuring conditions, child processes, result
rows, the table and the ``--json`` output.

Conditions (the same for workbench and every reference):

* each side of each case runs in a fresh child process, so its peak RSS is its own; the peak
  is reset (``/proc/self/clear_refs``) once the input is in memory and the warm-up is done, so
  it covers the timed runs, input included (the input's own size is reported beside it);
* the input is built before anything is timed and then frozen out of the collector's sight
  (``gc.freeze()``); the timed runs execute with the cyclic GC in the state ``--gc`` names:
  ``paused`` (default; workbench's ``Pipeline.run`` pauses it anyway while records flow) or
  ``enabled`` (the reference then pays for collections that workbench's run avoids inside
  ``Pipeline.run``: the output says so);
* in-process cases run once untimed (the warm-up: imports, caches; its result is the one that
  is checked), then ``--repeat`` timed runs, and the median is reported. Driver cases cannot
  rerun on the same outputs: each repeat is a fresh child process with fresh outputs, on both
  sides, with no warm-up on either side.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# ---------------------------------------------------------------- memory
def _status_kb(field_name: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def peak_rss_mb() -> float:
    """This process's peak resident memory since start or the last :func:`reset_peak`."""
    return _status_kb("VmHWM") / 1024


def rss_mb() -> float:
    """This process's resident memory now."""
    return _status_kb("VmRSS") / 1024


def reset_peak() -> None:
    """Start counting the peak RSS from now (Linux ``clear_refs``; a no-op elsewhere)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


# ---------------------------------------------------------------- GC and timing
@contextlib.contextmanager
def gc_state(mode: str) -> Iterator[None]:
    """Run the block with the cyclic GC ``paused`` or ``enabled``."""
    was = gc.isenabled()
    if mode == "paused":
        gc.disable()
    elif mode == "enabled":
        gc.enable()
    else:
        raise ValueError(f"--gc {mode!r}: use paused or enabled")
    try:
        yield
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()


def input_ready() -> None:
    """Call once the input is built: collect, then keep the input out of later collections."""
    gc.collect()
    gc.freeze()


def measure(fn: Callable[[], Any], repeat: int, gc_mode: str,
            check: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """One untimed warm-up run of ``fn`` (whose result goes to ``check``), then ``repeat``
    timed runs under ``gc_mode``: median seconds (wall clock and CPU), all times, the peak RSS
    of the timed runs (counted from the end of the warm-up and check) and the RSS with just
    the input."""
    base = rss_mb()
    with gc_state(gc_mode):
        result = fn()
    if check is not None:
        check(result)
    del result
    gc.collect()
    reset_peak()
    times, cpu = [], []
    for _ in range(repeat):
        gc.collect()
        with gc_state(gc_mode):
            t0, c0 = time.perf_counter(), time.process_time()
            result = fn()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            del result
    return {"seconds": statistics.median(times), "times": times, "rss_mb": peak_rss_mb(),
            "input_mb": base, "cpu_seconds": statistics.median(cpu)}


# ---------------------------------------------------------------- rows
@dataclass
class Row:
    """One line of the table: a workbench measurement beside one reference."""

    driver: str
    case: str
    workbench: str          # what ran, e.g. "lambda + run.frame"
    reference: str         # e.g. "plain loop", "pandas", "raw copy loop"
    events: int
    wb_s: float | None = None
    ref_s: float | None = None
    wb_cpu_s: float | None = None   # CPU seconds (in-process cases only)
    ref_cpu_s: float | None = None
    wb_rss_mb: float | None = None
    ref_rss_mb: float | None = None
    wb_input_mb: float | None = None
    ref_input_mb: float | None = None
    matched: bool | None = None   # None: not checked (say why in note)
    note: str = ""
    error: str = ""               # a side failed: the row has no result (exit status 1)
    diffs: list[str] = field(default_factory=list)
    wb_times: list[float] = field(default_factory=list)
    ref_times: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def wb_rate(self) -> float | None:
        return self.events / self.wb_s if self.wb_s else None

    @property
    def ref_rate(self) -> float | None:
        return self.events / self.ref_s if self.ref_s else None

    @property
    def ratio(self) -> float | None:
        if self.wb_s and self.ref_s:
            return self.ref_s / self.wb_s
        return None

    @property
    def cpu_ratio(self) -> float | None:
        if self.wb_cpu_s and self.ref_cpu_s:
            return self.ref_cpu_s / self.wb_cpu_s
        return None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(wb_rate=self.wb_rate, ref_rate=self.ref_rate, ratio=self.ratio,
                 cpu_ratio=self.cpu_ratio)
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> Row:
        names = Row.__dataclass_fields__
        return Row(**{k: v for k, v in d.items() if k in names})


def write_json(path: str | None, rows: list[Row], meta: dict[str, Any]) -> None:
    """``--json PATH``: the rows and the conditions, for ``bench.py``."""
    if path:
        Path(path).write_text(json.dumps({"meta": meta, "rows": [r.to_json() for r in rows]},
                                         indent=1))


def read_json(path: str | Path) -> tuple[dict[str, Any], list[Row]]:
    data = json.loads(Path(path).read_text())
    return data["meta"], [Row.from_json(r) for r in data["rows"]]


# ---------------------------------------------------------------- the table
def _rate(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    return f"{v / 1e3:,.0f} k"


def _mb(peak: float | None, inp: float | None) -> str:
    if peak is None:
        return "-"
    return f"{peak:,.0f}" + (f" ({inp:,.0f})" if inp is not None else "")


def table(rows: list[Row]) -> str:
    """The rows as one aligned text table (rates in records/s; RSS in MB, input in brackets;
    ratio = workbench rate / reference rate, by wall clock and, for in-process cases, by CPU
    time, which other processes on a shared machine disturb less)."""
    head = ["driver", "case", "workbench", "rec/s", "RSS MB (input)", "reference", "rec/s",
            "RSS MB (input)", "ratio", "CPU ratio", "match", "notes"]
    body = []
    for r in rows:
        match = "ERROR" if r.error else {True: "yes", False: "NO", None: "-"}[r.matched]
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        cpu = f"{r.cpu_ratio:.2f}" if r.cpu_ratio is not None else "-"
        body.append([r.driver, r.case, r.workbench, _rate(r.wb_rate),
                     _mb(r.wb_rss_mb, r.wb_input_mb), r.reference, _rate(r.ref_rate),
                     _mb(r.ref_rss_mb, r.ref_input_mb), ratio, cpu, match, r.note])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    right = {3, 4, 6, 7, 8, 9}

    def fmt(cells: list[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    lines = [fmt(head), fmt(["-" * w for w in widths])]
    lines += [fmt(b) for b in body]
    for r in rows:
        if r.matched is False:
            lines.append(f"MISMATCH {r.driver} {r.case} {r.workbench} vs {r.reference}:")
            lines += ["    " + d for d in r.diffs[:12]]
        if r.error:
            lines.append(f"ERROR {r.driver} {r.case} {r.workbench} vs {r.reference}:")
            lines += ["    " + x for x in r.error.strip().splitlines()[-12:]]
    return "\n".join(lines)


def conditions(args: argparse.Namespace) -> dict[str, Any]:
    """Date, commit, load average and the settings, for the header."""
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            commit += " (with uncommitted changes)"
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit,
            "load": os.getloadavg(), "cores": os.cpu_count(),
            "python": sys.version.split()[0], "events": getattr(args, "events", None),
            "repeat": getattr(args, "repeat", None), "gc": getattr(args, "gc", None)}


def header(meta: dict[str, Any]) -> str:
    load = " ".join(f"{x:.1f}" for x in meta["load"])
    return (f"{meta['date']} | commit {meta['commit']} | load average {load} on "
            f"{meta['cores']} cores | python {meta['python']} | events {meta['events']:,} | "
            f"medians of {meta['repeat']} | GC {meta['gc']} during timed runs")


def common_args(ap: argparse.ArgumentParser, events: int = 1_000_000) -> None:
    """The options every script supports."""
    ap.add_argument("--events", type=int, default=events)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per side (median)")
    ap.add_argument("--gc", choices=("paused", "enabled"), default="paused",
                    help="the cyclic GC's state during the timed runs, on every side")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    ap.add_argument("--quiet", action="store_true",
                    help="print progress only (to stderr), not the table")


# ---------------------------------------------------------------- children
def run_child(script: Path, args: list[str], timeout: float = 3600) -> dict[str, Any]:
    """Run ``script args`` in a fresh interpreter; its last stdout line is a JSON object."""
    proc = subprocess.run([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                          text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed (status {proc.returncode})"
                           f"\n{proc.stdout[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def finish(rows: list[Row], args: argparse.Namespace, meta: dict[str, Any]) -> int:
    """Print the table (unless ``--quiet``), write ``--json``; 1 when any result differs or
    any side failed."""
    write_json(args.json, rows, meta)
    if not args.quiet:
        print(header(meta))
        print(table(rows))
    bad = [r for r in rows if r.matched is False or r.error]
    for r in bad:
        what = "; ".join(r.diffs[:3]) if r.matched is False else r.error.strip()[-300:]
        progress(f"{'MISMATCH' if r.matched is False else 'ERROR'} {r.driver} {r.case} "
                 f"{r.workbench} vs {r.reference}: {what}")
    return 1 if bad else 0
