"""Memory-driver benchmarks: P1-P4 (see workload.py) on ``memory://``, each beside the references
that compute the same result, under the same conditions (see harness.py).

For each case:

* workbench, lambda pipeline (``pipelines.py``) + ``run.frame(sink)``, input a list of dicts,
  beside a plain-Python loop calling the same functions per record (``references.loop_*``);
* the same workbench run beside pandas computing the same result from a DataFrame;
* workbench, column-expression pipeline + ``run.frame(sink)``, input the DataFrame, beside
  pandas: "n/a" until ``wb.col`` exists;
* ``frame``: ``run.frame()`` of P1's sink alone beside pandas building the same DataFrame from
  column arrays.

Every side runs in its own child process; every reference's result is checked against
workbench's (late counts included) and any difference exits 1, printing the first rows.

    python benchmarks/memory_driver.py [--events 1000000] [--repeat 3] [--only P1,P2,frame]
                                       [--gc paused|enabled] [--json PATH] [--quiet]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import pipelines  # noqa: E402
import references  # noqa: E402
import results  # noqa: E402
import workload  # noqa: E402

import workbench as wb  # noqa: E402

wb.options.progress = False  # bars would disturb the timings

SIDES = ("loop", "wb-lambda", "pandas", "wb-expr")
LABEL = {"loop": "plain loop (same functions)", "pandas": "pandas",
         "wb-lambda": "lambda + run.frame", "wb-expr": "wb.col + run.frame",
         "wb-frame": "run.frame(p1) alone", "pandas-frame": "pandas DataFrame from columns"}


# ---------------------------------------------------------------- one side, in a child process
def _workbench(case: str, variant: str, events: Any, profiles: Any
               ) -> Callable[[], tuple[Any, int | None]]:
    def run() -> tuple[Any, int | None]:
        built = pipelines.build(case, variant)
        inputs = {"events": events}
        if built.profiles:
            inputs[built.profiles] = profiles
        r = built.pipeline.run("memory://", inputs=inputs)
        frame = r.frame(built.sink)
        late = r.stats.records_out.get(built.late, 0) if built.late else None
        return frame, late
    return run


def _frame_sides(side: str, n: int) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    """``run.frame("p1")`` of a finished P1 run, or pandas building the same frame."""
    import numpy as np
    import pandas as pd

    events = workload.events(n)
    if side == "wb-frame":
        built = pipelines.build("P1")
        run = built.pipeline.run("memory://", inputs={"events": events})
        del events
        # the first whole read merges the sink log's segments (later reads are views of it):
        # every timed call starts from the log as the run left it, as the first call does
        logs = run.driver._logs[built.sink]
        for log in logs:
            log._seal()
        as_run = [(list(log.segments), list(log.starts)) for log in logs]

        def fn() -> Any:
            for log, (segments, starts) in zip(logs, as_run):
                log.segments, log.starts = list(segments), list(starts)
            return run.frame(built.sink)
        return fn, lambda frame: None

    rows, _ = references.loop_p1(events)
    del events
    cols = {c: [r[c] for r in rows] for c in ("user_id", "ts", "amount", "page", "amount_cents")}
    del rows
    arrays = {"key": np.array(cols["user_id"], dtype="int64"),
              "timestamp": np.array(cols["ts"], dtype="int64"),
              "user_id": np.array(cols.pop("user_id"), dtype="int64"),
              "ts": np.array(cols.pop("ts"), dtype="int64"),
              "amount": np.array(cols.pop("amount"), dtype="float64"),
              "page": np.array(cols.pop("page"), dtype=object),
              "amount_cents": np.array(cols.pop("amount_cents"), dtype="int64")}

    def build() -> Any:
        data = dict(arrays)
        data["timestamp"] = pd.Series(arrays["timestamp"].astype("datetime64[ms]")
                                      ).dt.tz_localize("UTC")
        return pd.DataFrame(data)
    return build, lambda frame: None


def child(case: str, side: str, n: int, repeat: int, gc_mode: str, result_path: str
          ) -> dict[str, Any]:
    """Measure one side of one case; save its canonical result to ``result_path``."""
    def save(canon: results.Canonical) -> None:
        canon.save(result_path)

    if case == "frame":
        fn, _ = _frame_sides(side, n)
        harness.input_ready()
        return harness.measure(fn, repeat, gc_mode,
                               check=lambda f: save(results.from_frame("P1", f, None)))
    table_input = side in ("pandas", "wb-expr")
    events = workload.events_frame(n) if table_input else workload.events(n)
    profiles = workload.profiles_frame() if table_input else workload.profiles()
    harness.input_ready()
    if side == "loop":
        fn: Callable[[], Any] = {
            "P1": lambda: references.loop_p1(events),
            "P2": lambda: references.loop_p2(events),
            "P3": lambda: references.loop_p3(events, profiles),
            "P4": lambda: references.loop_p4(events),
        }[case]
        return harness.measure(fn, repeat, gc_mode,
                               check=lambda r: save(results.from_loop(case, *r)))
    if side == "pandas":
        fn = {
            "P1": lambda: references.pandas_p1(events),
            "P2": lambda: references.pandas_p2(events),
            "P3": lambda: references.pandas_p3(events, profiles),
            "P4": lambda: references.pandas_p4(events),
        }[case]
        return harness.measure(fn, repeat, gc_mode,
                               check=lambda r: save(results.from_pandas(case, *r)))
    variant = "lambda" if side == "wb-lambda" else "expr"
    return harness.measure(_workbench(case, variant, events, profiles), repeat, gc_mode,
                           check=lambda r: save(results.from_frame(case, *r)))


# ---------------------------------------------------------------- the parent
Side = tuple[dict[str, Any] | None, results.Canonical | None, str]


def _side(args: argparse.Namespace, case: str, side: str, tmp: Path) -> Side:
    """Measure one side in a child: its numbers, its result and "" (or None, None and the
    error: a failing side becomes an ERROR row, the others still run)."""
    harness.progress(f"memory {case} {side} ...")
    path = tmp / f"{case}-{side}.pickle"
    try:
        out = harness.run_child(Path(__file__), [
            "--child", case, side, "--events", str(args.events), "--repeat", str(args.repeat),
            "--gc", args.gc, "--result", str(path)])
    except (RuntimeError, OSError, ValueError) as exc:
        harness.progress(f"memory {case} {side}: FAILED {exc}")
        return None, None, str(exc)
    harness.progress(f"memory {case} {side}: {out['seconds']:.2f} s (median of "
                     f"{', '.join(f'{t:.2f}' for t in out['times'])}), peak RSS "
                     f"{out['rss_mb']:.0f} MB")
    return out, results.Canonical.load(path), ""


def _row(case: str, wb_side: str, ref_side: str, n: int, wb_got: Side | None, ref_got: Side,
         note: str = "") -> harness.Row:
    """The row of ``wb_side`` beside ``ref_side`` (``wb_got`` None: not available)."""
    row = harness.Row("memory", case, LABEL[wb_side], LABEL[ref_side], n, note=note)
    w, wc, w_err = wb_got if wb_got is not None else (None, None, "")
    r, rc, r_err = ref_got
    row.error = "\n".join(e for e in (w_err, r_err) if e)
    if r is not None:
        row.ref_s, row.ref_cpu_s, row.ref_times = r["seconds"], r["cpu_seconds"], r["times"]
        row.ref_rss_mb, row.ref_input_mb = r["rss_mb"], r["input_mb"]
    if w is not None and wc is not None:
        row.wb_s, row.wb_rss_mb, row.wb_input_mb = w["seconds"], w["rss_mb"], w["input_mb"]
        row.wb_cpu_s = w["cpu_seconds"]
        row.wb_times = w["times"]
    if wc is not None and rc is not None:
        row.diffs = results.differences(wc, rc, "workbench", LABEL[ref_side])
        row.matched = not row.diffs
        if rc.late is not None:
            row.note = (row.note + " " if row.note else "") + f"late {rc.late:,}"
    return row


def parent(args: argparse.Namespace) -> list[harness.Row]:
    n = args.events
    rows: list[harness.Row] = []
    have_expr = pipelines.expressions_available()
    with tempfile.TemporaryDirectory(prefix="wb-bench-memory-") as d:
        tmp = Path(d)
        for case in args.only.split(","):
            if case == "frame":
                rows.append(_row("frame", "wb-frame", "pandas-frame", n,
                                 _side(args, case, "wb-frame", tmp),
                                 _side(args, case, "pandas-frame", tmp),
                                 "RSS includes the P1 run"))
                continue
            got = {s: _side(args, case, s, tmp) for s in SIDES
                   if s != "wb-expr" or have_expr}
            rows.append(_row(case, "wb-lambda", "loop", n, got["wb-lambda"], got["loop"]))
            rows.append(_row(case, "wb-lambda", "pandas", n, got["wb-lambda"], got["pandas"]))
            rows.append(_row(case, "wb-expr", "pandas", n, got.get("wb-expr"), got["pandas"],
                             "" if have_expr else pipelines.NO_EXPRESSIONS))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.common_args(ap)
    ap.add_argument("--only", default="P1,P2,P3,P4,frame",
                    help="comma-separated cases: P1, P2, P3, P4, frame")
    ap.add_argument("--child", nargs=2, metavar=("CASE", "SIDE"), help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        out = child(args.child[0], args.child[1], args.events, args.repeat, args.gc,
                    args.result)
        print(json.dumps(out), flush=True)
        return 0
    unknown = set(args.only.split(",")) - {*pipelines.CASES, "frame"}
    if unknown:
        ap.error(f"--only: unknown case(s) {', '.join(sorted(unknown))}")
    meta = harness.conditions(args)
    rows = parent(args)
    return harness.finish(rows, args, meta)


if __name__ == "__main__":
    sys.exit(main())
