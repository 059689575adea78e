"""workbench against the real Kafka Streams 4.1.1 (TopologyTestDriver), record by record.

- Every hand-written case (``cases/*.json``): workbench's output must equal the oracle's, in
  order (key, window, value, timestamp, and the input record that produced it).
- Generated cases (hypothesis): windowed counts and sums (tumbling, hopping, sliding, session;
  emit on update and on close), non-windowed aggregations, tables, and every join (stream-stream
  inner/left/outer, stream-table inner/left, table-table inner/left/outer, foreign-key
  inner/left) over several keys, out-of-order and late records, ``None`` keys and values.

The oracle runs live in one JVM for the whole session (``OracleServer``). Where workbench
deliberately differs from TopologyTestDriver's default configuration, the case is compared with
the oracle configured the way workbench behaves (:func:`spec.workbench_reference`; see
``docs/conformance.md``). Without Java 17 and Maven the tests skip, except on CI (``CI=true``),
where that is a failure.

``CONFORMANCE_SCALE=4 pytest -m conformance`` runs four times as many generated examples.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conformance.oracle import (
    OracleServer,
    build_oracle,
    format_output,
    load_cases,
    oracle_available,
)
from tests.conformance.spec import run_case, workbench_reference
from tests.conftest import in_ci

pytestmark = pytest.mark.conformance

HOW_TO_ENABLE = (
    "install OpenJDK 17 (java, javac) and Maven (mvn) and put them on PATH; the first run "
    "downloads Kafka Streams 4.1.1 from Maven Central (see tests/conformance/README.md)"
)

#: Cases found by the generated tests, kept as fixed regressions (same format as cases/*.json).
REGRESSION_CASES: list[dict[str, Any]] = [
    {"name": "regression-session-close-tie-by-start",
     "note": "two sessions with the same end close at one record: Kafka Streams' default store "
             "(RocksDB) emits them by (end, start, key), so C@[0,1] before A@[1,1] (the "
             "in-memory store with a long retention emits them by (end, key))",
     "topology": {"op": "window_agg", "window": {"type": "session", "gap": 2}, "agg": "count",
                  "emit": "close"},
     "records": [{"topic": "in", "key": "C", "value": "0", "ts": 0},
                 {"topic": "in", "key": "A", "value": "0", "ts": 1},
                 {"topic": "in", "key": "C", "value": "0", "ts": 1},
                 {"topic": "in", "key": "A", "value": "0", "ts": 4}]},
]

CASES = load_cases() + REGRESSION_CASES
CASES_BY_NAME = {case["name"]: case for case in CASES}

#: Cases workbench still gets wrong: name -> reason (strict xfail: remove the entry once fixed).
KNOWN_MISMATCHES: dict[str, str] = {}


def _oracle_unusable(message: str) -> None:
    """Skip locally; fail on CI, where the oracle is required."""
    if in_ci():
        pytest.fail(f"CI=true and the Kafka Streams oracle is not usable: {message}",
                    pytrace=False)
    pytest.skip(f"Kafka Streams oracle not usable: {message}; to enable it, {HOW_TO_ENABLE}")


@pytest.fixture(scope="session")
def oracle() -> Iterator[OracleServer]:
    """One Kafka Streams JVM for the whole test session."""
    ok, why = oracle_available()
    if not ok:
        _oracle_unusable(why)
    try:
        build_oracle()
        server = OracleServer()
    except (RuntimeError, OSError) as exc:
        _oracle_unusable(f"building or starting it failed:\n{exc}")
    with server:
        yield server


@pytest.fixture(scope="session")
def hand_written(oracle: OracleServer) -> dict[str, list[dict[str, Any]]]:
    """The oracle's output for every hand-written case, run as workbench is compared."""
    return {case["name"]: oracle.run(workbench_reference(case)[0])["outputs"] for case in CASES}


# ------------------------------------------------------------------------------- comparing
def _closed(case: dict[str, Any]) -> bool:
    window = case["topology"].get("window") or {}
    return window.get("type") in ("sliding", "session")


def _describe(case: dict[str, Any], records: list[dict[str, Any]], i: int) -> str:
    if i >= len(records):
        return "(no more output)"
    return format_output(records[i], _closed(case))


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
    lines += [f"  #{i} {r['topic']}: {r['key']} -> {r['value']} @{r['ts']}"
              for i, r in enumerate(case["records"])]
    width = max([len(_describe(case, expected, i)) for i in range(len(expected))] + [13])
    lines.append(f"all outputs:\n  {'Kafka Streams':{width}}   workbench")
    for i in range(max(len(expected), len(actual))):
        same = i < len(expected) and i < len(actual) and expected[i] == actual[i]
        mark = "  " if same else "!="
        left = _describe(case, expected, i)
        lines.append(f"  {left:{width}} {mark} {_describe(case, actual, i)}")
    case_json = json.dumps({k: v for k, v in case.items() if k != "note"}, separators=(",", ":"))
    lines.append(f"case JSON: {case_json}")
    pytest.fail("\n".join(lines), pytrace=False)


def check_case(oracle: OracleServer, case: dict[str, Any]) -> None:
    """Run ``case`` on the oracle (as workbench is compared) and on workbench; compare."""
    reference, reasons = workbench_reference(case)
    expected = oracle.run(reference)["outputs"]
    assert_same_output(case, expected, run_case(reference), reasons)


# ------------------------------------------------------------------------ hand-written cases
def _case_params() -> list[Any]:
    params = []
    for case in CASES:
        marks = []
        if case["name"] in KNOWN_MISMATCHES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_MISMATCHES[case["name"]]))
        params.append(pytest.param(case["name"], id=case["name"], marks=marks))
    return params


@pytest.mark.parametrize("name", _case_params())
def test_hand_written_case(name: str, hand_written: dict[str, list[dict[str, Any]]]) -> None:
    case = CASES_BY_NAME[name]
    reference, reasons = workbench_reference(case)
    assert_same_output(case, hand_written[name], run_case(reference), reasons)


def test_time_window_suppress_equals_emit_close(
    oracle: OracleServer, hand_written: dict[str, list[dict[str, Any]]]
) -> None:
    """workbench has no ``suppress()``; for time windows Kafka Streams' ``suppress
    (untilWindowCloses)`` and ``onWindowClose`` (long retention) emit the same records, which
    is why comparing suppress cases with ``emit="close"`` is fair for them."""
    checked = 0
    for case in CASES:
        topo = case["topology"]
        if topo["op"] != "window_agg" or topo.get("emit") != "suppress":
            continue
        if topo["window"]["type"] not in ("tumbling", "hopping"):
            continue
        assert oracle.run(case)["outputs"] == hand_written[case["name"]], case["name"]
        checked += 1
    assert checked >= 3


# -------------------------------------------------------------------------- generated cases
SCALE = float(os.environ.get("CONFORMANCE_SCALE", "1"))


def examples(n: int) -> settings:
    """Hypothesis settings: ``n`` examples (times ``CONFORMANCE_SCALE``), no deadline,
    derandomized on CI."""
    ci = in_ci()
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        derandomize=ci,
        database=None if ci else settings().database,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _key(keys: str, null_one_in: int) -> st.SearchStrategy[str | None]:
    """One of ``keys`` (one letter each), or ``None`` about once in ``null_one_in`` draws."""
    n = len(keys) * (null_one_in - 1)
    return st.integers(0, n).map(lambda i: None if i == n else keys[i % len(keys)])


def _flag(one_in: int) -> st.SearchStrategy[bool]:
    return st.integers(0, one_in - 1).map(lambda i: i == one_in - 1)


@st.composite
def timed(draw: st.DrawFn, events: st.SearchStrategy[Any], max_size: int = 14,
          max_step: int = 8, max_late: int = 25, min_size: int = 1) -> list[tuple[int, Any]]:
    """``[(ts, event)]``: time mostly moves forward by up to ``max_step``; about a third of the
    records are out of order, up to ``max_late`` behind the latest timestamp."""
    steps = draw(st.lists(
        st.tuples(st.integers(0, max_step),
                  st.one_of(st.just(0), st.just(0), st.integers(1, max_late)),
                  events),
        min_size=min_size, max_size=max_size))
    start = draw(st.integers(0, 30))
    now, out = start, []
    for step, late, event in steps:
        now += step
        out.append((max(0, now - late), event))
    return out


def _case(name: str, topology: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "topology": topology, "records": records}


# -- windowed aggregations
AGG_VALUE = st.integers(0, 20).map(lambda i: None if i == 20 else str(i))


@st.composite
def windowed_cases(draw: st.DrawFn, kind: str, emit: str | None = None) -> dict[str, Any]:
    window: dict[str, Any] = {"type": kind}
    if kind == "tumbling":
        window["size"] = draw(st.integers(1, 20))
    elif kind == "hopping":
        window["size"] = draw(st.integers(2, 20))
        window["advance"] = draw(st.integers(1, window["size"]))
    elif kind == "sliding":
        window["difference"] = draw(st.integers(1, 15))
    else:
        window["gap"] = draw(st.integers(1, 10))
    grace = draw(st.one_of(st.none(), st.integers(0, 15)))
    if grace is not None:
        window["grace"] = grace
    topology = {"op": "window_agg", "window": window,
                "agg": draw(st.sampled_from(["count", "sum"])),
                "emit": emit or draw(st.sampled_from(["update", "close"]))}
    events = draw(timed(st.tuples(_key("ABC", 10), AGG_VALUE)))
    records = [{"topic": "in", "key": k, "value": v, "ts": ts} for ts, (k, v) in events]
    return _case(f"generated-{kind}", topology, records)


@examples(150)
@given(case=windowed_cases("tumbling"))
def test_generated_tumbling(oracle: OracleServer, case: dict[str, Any]) -> None:
    check_case(oracle, case)


@examples(150)
@given(case=windowed_cases("hopping"))
def test_generated_hopping(oracle: OracleServer, case: dict[str, Any]) -> None:
    check_case(oracle, case)


@examples(200)
@given(case=windowed_cases("sliding"))
def test_generated_sliding(oracle: OracleServer, case: dict[str, Any]) -> None:
    check_case(oracle, case)


@examples(150)
@given(case=windowed_cases("session", "update"))
def test_generated_session_update(oracle: OracleServer, case: dict[str, Any]) -> None:
    check_case(oracle, case)


# Compared with the RocksDB store (see spec.workbench_reference): slower, fewer examples.
@examples(80)
@given(case=windowed_cases("session", "close"))
def test_generated_session_close(oracle: OracleServer, case: dict[str, Any]) -> None:
    check_case(oracle, case)


# -- non-windowed aggregations and tables
@st.composite
def aggregation_cases(draw: st.DrawFn) -> dict[str, Any]:
    group_by = draw(st.sampled_from(["key", "fk"]))
    topology = {"op": "agg", "agg": draw(st.sampled_from(["count", "sum", "reduce_concat"])),
                "group_by": group_by}
    if group_by == "key":
        value = AGG_VALUE
    else:  # "<fk>|<n>", or no foreign key, or None
        value = st.tuples(st.integers(0, 9), AGG_VALUE).map(
            lambda fv: fv[1] if fv[1] is None or fv[0] == 9 else f"{'xyz'[fv[0] % 3]}|{fv[1]}")
    events = draw(timed(st.tuples(_key("ABC", 10), value), max_late=10))
    records = [{"topic": "in", "key": k, "value": v, "ts": ts} for ts, (k, v) in events]
    return _case("generated-agg", topology, records)


@examples(100)
@given(case=aggregation_cases())
def test_generated_aggregation(oracle: OracleServer, case: dict[str, Any]) -> None:
    check_case(oracle, case)


@st.composite
def table_cases(draw: st.DrawFn) -> dict[str, Any]:
    events = draw(timed(st.tuples(_key("ABC", 10), _flag(4)), max_late=10))
    records = [{"topic": "in", "key": k, "value": None if tomb else f"v{i}", "ts": ts}
               for i, (ts, (k, tomb)) in enumerate(events)]
    return _case("generated-table", {"op": "table"}, records)


@examples(50)
@given(case=table_cases())
def test_generated_table(oracle: OracleServer, case: dict[str, Any]) -> None:
    check_case(oracle, case)


# -- joins
def _two_sided(events: list[tuple[int, Any]]) -> list[dict[str, Any]]:
    """Records of ``(is_right, key, is_null)`` events; values are unique (``L3``, ``r5``), so
    join results show which records met."""
    records = []
    for i, (ts, (right, key, null)) in enumerate(events):
        value = None if null else (f"r{i}" if right else f"L{i}")
        records.append({"topic": "right" if right else "left", "key": key, "value": value,
                        "ts": ts})
    return records


@st.composite
def stream_stream_cases(draw: st.DrawFn) -> dict[str, Any]:
    topology = {"op": "join_ss", "how": draw(st.sampled_from(["inner", "left", "outer"])),
                "before": draw(st.integers(0, 12)), "after": draw(st.integers(0, 12)),
                "grace": draw(st.integers(0, 8))}
    events = draw(timed(st.tuples(st.booleans(), _key("KJ", 10), _flag(12)),
                        max_size=16, min_size=3))
    return _case("generated-ss", topology, _two_sided(events))


@examples(250)
@given(case=stream_stream_cases())
def test_generated_stream_stream_join(oracle: OracleServer, case: dict[str, Any]) -> None:
    check_case(oracle, case)


@st.composite
def stream_table_cases(draw: st.DrawFn) -> dict[str, Any]:
    topology = {"op": "join_st", "how": draw(st.sampled_from(["inner", "left"]))}
    events = draw(timed(st.tuples(st.booleans(), _key("ABC", 10), _flag(5)),
                        max_size=16, min_size=3))
    return _case("generated-st", topology, _two_sided(events))


@examples(120)
@given(case=stream_table_cases())
def test_generated_stream_table_join(oracle: OracleServer, case: dict[str, Any]) -> None:
    check_case(oracle, case)


@st.composite
def table_table_cases(draw: st.DrawFn) -> dict[str, Any]:
    topology = {"op": "join_tt", "how": draw(st.sampled_from(["inner", "left", "outer"]))}
    events = draw(timed(st.tuples(st.booleans(), _key("ABC", 12), _flag(4)),
                        max_size=16, min_size=3))
    return _case("generated-tt", topology, _two_sided(events))


@examples(150)
@given(case=table_table_cases())
def test_generated_table_table_join(oracle: OracleServer, case: dict[str, Any]) -> None:
    check_case(oracle, case)


@st.composite
def foreign_key_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Left: orders ``o1..o4`` whose value ``c2|L7`` names customer ``c2`` (or no customer,
    or a tombstone); right: customers ``c1..c3`` (tombstones too)."""
    topology = {"op": "join_fk", "how": draw(st.sampled_from(["inner", "left"]))}
    event = st.tuples(st.booleans(), st.integers(1, 4), st.integers(0, 3), _flag(5))
    events = draw(timed(event, max_size=16, max_late=10, min_size=3))
    records = []
    for i, (ts, (right, n, fk, null)) in enumerate(events):
        if right:
            key, value = f"c{max(1, n - 1)}", None if null else f"r{i}"
        else:
            key = f"o{n}"
            value = None if null else (f"L{i}" if fk == 0 else f"c{fk}|L{i}")
        records.append({"topic": "right" if right else "left", "key": key, "value": value,
                        "ts": ts})
    return _case("generated-fk", topology, records)


@examples(150)
@given(case=foreign_key_cases())
def test_generated_foreign_key_join(oracle: OracleServer, case: dict[str, Any]) -> None:
    check_case(oracle, case)
