"""Comparing workbench with the Kafka Streams oracle, case by case.

:func:`check_case` runs a case on both sides, configured as workbench behaves
(:func:`spec.workbench_reference`), and compares three things:

- **the outputs**, record by record and in order (key, window, value, timestamp, and the input
  record that produced each);
- **the end of input**: workbench's ``TestDriver.end()`` against the oracle's flush record
  (``"flush": true``, a record far enough in the future that every window closes and every
  parked join record expires; its outputs are tagged ``"in": "end"``);
- **the dropped records**: for each input record, whether Kafka Streams' task-level
  ``dropped-records-total`` grew and whether workbench dropped it (an aggregation's ``late``
  output, with its ``workbench.dropped`` header; a join's or table's drop counter), under the
  rules of :func:`dropped_differences`.

:data:`STATS` counts, per family of generated cases, how many examples ran and how many had
output; ``conftest.py`` prints it at the end of the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conformance.oracle import OracleServer, format_output
from tests.conformance.spec import foreign_key, run_case_full, workbench_reference

__all__ = [
    "STATS",
    "FamilyStats",
    "assert_same_dropped",
    "assert_same_failure",
    "assert_same_output",
    "check_case",
    "compare",
    "closed_windows",
    "dropped_differences",
]


def closed_windows(case: dict[str, Any]) -> bool:
    """Sliding windows and sessions include their end: print them as ``[start,end]``."""
    window = case["topology"].get("window") or {}
    return window.get("type") in ("sliding", "session")


# ---------------------------------------------------------------------------------- outputs
def _describe(case: dict[str, Any], records: list[dict[str, Any]], i: int) -> str:
    if i >= len(records):
        return "(no more output)"
    return format_output(records[i], closed_windows(case))


def _inputs(case: dict[str, Any]) -> list[str]:
    return [f"  #{i} {r['topic']}: {r['key']} -> {r['value']} @{r['ts']}"
            for i, r in enumerate(case["records"])]


def _case_json(case: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in case.items() if k != "note"}, separators=(",", ":"))


def assert_same_output(case: dict[str, Any], expected: list[dict[str, Any]],
                       actual: list[dict[str, Any]], reasons: list[str] | None = None) -> None:
    """Fail with a readable diff unless workbench's outputs equal the oracle's."""
    if actual == expected:
        return
    first = next((i for i, (e, a) in enumerate(zip(expected, actual)) if e != a),
                 min(len(expected), len(actual)))
    lines = [
        f"case {case['name']!r}: workbench differs from Kafka Streams at output #{first}",
        f"  Kafka Streams: {_describe(case, expected, first)}",
        f"  workbench:     {_describe(case, actual, first)}",
    ]
    if reasons:
        lines.append(f"  (oracle configured as workbench behaves: {'; '.join(reasons)})")
    lines.append("inputs:")
    lines += _inputs(case)
    width = max([len(_describe(case, expected, i)) for i in range(len(expected))] + [13])
    lines.append(f"all outputs (#end: the end of input):\n  {'Kafka Streams':{width}}   workbench")
    for i in range(max(len(expected), len(actual))):
        same = i < len(expected) and i < len(actual) and expected[i] == actual[i]
        mark = "  " if same else "!="
        left = _describe(case, expected, i)
        lines.append(f"  {left:{width}} {mark} {_describe(case, actual, i)}")
    lines.append(f"case JSON: {_case_json(case)}")
    pytest.fail("\n".join(lines), pytrace=False)


# ---------------------------------------------------------------------------- dropped records
def _stream_times(case: dict[str, Any]) -> list[int]:
    """The aggregation's stream time after each input record (max timestamp of the records
    with a key; a record with a ``None`` key does not advance it)."""
    times, now = [], -1
    for record in case["records"]:
        if record["key"] is not None:
            now = max(now, record["ts"])
        times.append(now)
    return times


def _expected_reason(topology: dict[str, Any], record: dict[str, Any]) -> str:
    """The ``workbench.dropped`` header an aggregation's late record must carry."""
    key = record["key"]
    if topology["op"] == "agg" and topology.get("group_by", "key") == "fk":
        key = foreign_key(record["value"])
    if key is None:
        return "null-key"
    # time and session windows aggregate None values (FINDINGS D6); sliding windows and
    # non-windowed aggregations drop them
    window = topology.get("window") or {"type": "sliding"}
    if record["value"] is None and window["type"] == "sliding":
        return "null-value"
    return "late"


def dropped_differences(case: dict[str, Any], oracle: dict[str, Any],
                        workbench: dict[str, Any]) -> list[str]:
    """How the dropped records differ, beyond what Kafka Streams counts differently by design.

    Kafka Streams' ``dropped-records-total`` counts drop *events* (a late record once per
    window it missed, a ``None`` value that is also too old for a join store twice), workbench
    counts dropped *records*: so what is compared is *which* input records were dropped. The
    differences allowed (``docs/conformance.md``):

    - a ``group_by`` whose new key is ``None`` (``"group_by": "fk"``): Kafka drops the record
      silently in the repartition, workbench sends it to ``late`` with ``null-key``;
    - session windows: a record whose merged session ends exactly at the close time (stream
      time - gap - grace) is aggregated and forwarded by both, but Kafka's session store
      (retention gap + grace) refuses to keep it and counts it as dropped as well.

    Each late record's ``workbench.dropped`` header must also match the record (``null-key``,
    ``null-value`` or ``late``).
    """
    topo = case["topology"]
    records = case["records"]
    kafka = {d["in"]: d["count"] for d in oracle["dropped"]}
    ours: dict[Any, int] = {}
    problems: list[str] = []
    for d in workbench["dropped"]:
        index = d["in"]
        reasons = d.get("reasons", [])
        if index == "end":
            problems.append(f"workbench dropped {d['count']} record(s) at the end of input")
            continue
        if (topo["op"] in ("table_group_by", "table_filter") and reasons
                and set(reasons) == {"null-key"}):
            continue  # a row in no group: Kafka drops it silently in the repartition (D22)
        if topo["op"] in ("window_agg", "agg"):
            want = _expected_reason(topo, records[index])
            if any(reason != want for reason in reasons):
                problems.append(f"#{index}: late output says {reasons}, expected {want!r}")
            if topo["op"] == "agg" and want == "null-key" and topo.get("group_by") == "fk":
                continue  # Kafka drops it silently in the repartition
            if d["count"] != 1:
                problems.append(f"#{index}: one input record reached late {d['count']} times")
        ours[index] = d["count"]
    window = topo.get("window") or {}
    times = _stream_times(case) if window.get("type") == "session" else []
    for index in sorted(set(kafka) | set(ours), key=str):
        k, w = kafka.get(index, 0), ours.get(index, 0)
        if (k > 0) == (w > 0):
            continue
        if times and w == 0 and _session_at_close_time(case, times, index, workbench):
            continue
        problems.append(f"#{index}: Kafka Streams dropped {k}, workbench {w}")
    return problems


def _session_at_close_time(case: dict[str, Any], times: list[int], index: Any,
                           workbench: dict[str, Any]) -> bool:
    """Did input ``index`` put a session that ends exactly at the close time?"""
    window = case["topology"]["window"]
    close = times[index] - window.get("grace", 0) - window["gap"]
    return any(o["in"] == index and o["value"] is not None and o["end"] == close
               for o in workbench["outputs"])


def assert_same_dropped(case: dict[str, Any], oracle: dict[str, Any],
                        workbench: dict[str, Any], reasons: list[str] | None = None) -> None:
    """Fail with the differences unless the dropped records agree (:func:`dropped_differences`)."""
    problems = dropped_differences(case, oracle, workbench)
    if not problems:
        return
    fmt = json.dumps
    lines = [f"case {case['name']!r}: workbench drops other records than Kafka Streams:"]
    lines += [f"  {p}" for p in problems]
    if reasons:
        lines.append(f"  (oracle configured as workbench behaves: {'; '.join(reasons)})")
    lines.append(f"  Kafka Streams dropped-records per input: {fmt(oracle['dropped'])}")
    lines.append(f"  workbench late output / drop counters:   {fmt(workbench['dropped'])}")
    lines.append("inputs:")
    lines += _inputs(case)
    lines.append(f"case JSON: {_case_json(case)}")
    pytest.fail("\n".join(lines), pytrace=False)


def assert_same_failure(case: dict[str, Any], oracle: dict[str, Any],
                        workbench: dict[str, Any]) -> None:
    """Both stop at the same input record (e.g. a full suppress buffer), or neither does."""
    expected, actual = oracle.get("failure"), workbench.get("failure")
    if (expected or {}).get("in") == (actual or {}).get("in"):
        return

    def say(failure: dict[str, Any] | None) -> str:
        if failure is None:
            return "no failure"
        return f"failed at #{failure['in']}: {failure['error']}"

    pytest.fail(f"case {case['name']!r}: Kafka Streams {say(expected)}; workbench {say(actual)}\n"
                f"case JSON: {_case_json(case)}", pytrace=False)


def compare(case: dict[str, Any], expected: dict[str, Any], actual: dict[str, Any],
            reasons: list[str] | None = None) -> None:
    """Compare the oracle's result with workbench's: failure, outputs, dropped records."""
    assert_same_failure(case, expected, actual)
    assert_same_output(case, expected["outputs"], actual["outputs"], reasons)
    assert_same_dropped(case, expected, actual, reasons)


# -------------------------------------------------------------------------------- one case
def check_case(oracle: OracleServer, case: dict[str, Any],
               stats: FamilyStats | None = None) -> dict[str, Any]:
    """Run ``case`` on the oracle (as workbench is compared) and on workbench; compare whether
    and where they fail, the outputs (end of input included, unless the case says
    ``"end_of_input": false``) and the dropped records. Returns the oracle's result; counts the
    case in ``stats``."""
    reference, reasons = workbench_reference(case)
    flush = case.get("end_of_input", True)
    expected = oracle.run({**reference, "flush": flush})
    if stats is not None:
        stats.add(case, expected)
    actual = run_case_full(reference, end_of_input=flush)
    compare(case, expected, actual, reasons)
    return expected


# ------------------------------------------------------------------------------------ stats
def variant(case: dict[str, Any]) -> str:
    """The part of a family a case belongs to (emit mode, join kind, aggregation)."""
    topo = case["topology"]
    if topo["op"] == "window_agg":
        return f"emit={topo.get('emit', 'update')}"
    if topo["op"].startswith("join_"):
        return str(topo.get("how", "inner"))
    if topo["op"] == "agg":
        return f"{topo.get('agg', 'count')} by {topo.get('group_by', 'key')}"
    return str(topo["op"])


@dataclass
class FamilyStats:
    """What one family of generated cases produced in this run."""

    name: str
    examples: int = 0
    non_empty: int = 0
    end_output: int = 0
    dropped: int = 0
    excluded: int = 0
    variants: dict[str, list[int]] = field(default_factory=dict)

    def add(self, case: dict[str, Any], oracle: dict[str, Any]) -> None:
        outputs = oracle["outputs"]
        before_end = any(o["in"] != "end" for o in outputs)
        self.examples += 1
        self.non_empty += before_end
        self.end_output += any(o["in"] == "end" for o in outputs)
        self.dropped += bool(oracle["dropped"])
        counts = self.variants.setdefault(variant(case), [0, 0])
        counts[0] += 1
        counts[1] += before_end

    @property
    def share(self) -> float:
        return self.non_empty / self.examples if self.examples else 0.0

    def line(self) -> str:
        parts = ", ".join(f"{name} {ne}/{n}" for name, (n, ne) in sorted(self.variants.items()))
        excluded = f", {self.excluded} excluded" if self.excluded else ""
        return (f"{self.name:<22} {self.non_empty:>4}/{self.examples:<4} non-empty "
                f"({100 * self.share:5.1f}%), {self.end_output:>4} with end-of-input output, "
                f"{self.dropped:>4} with dropped records{excluded}  [{parts}]")


@dataclass
class Stats:
    """Every family's :class:`FamilyStats` in this test session."""

    families: dict[str, FamilyStats] = field(default_factory=dict)

    def family(self, name: str) -> FamilyStats:
        return self.families.setdefault(name, FamilyStats(name))

    def lines(self) -> list[str]:
        total = sum(f.examples for f in self.families.values())
        non_empty = sum(f.non_empty for f in self.families.values())
        return [f.line() for f in self.families.values()] + [
            f"{'all generated':<22} {non_empty:>4}/{total:<4} non-empty "
            f"({100 * non_empty / max(1, total):5.1f}%)"]


#: the generated families of this test session (printed by ``conftest.py``)
STATS = Stats()
