"""workbench against the real Kafka Streams 4.1.1 (TopologyTestDriver): the hand-written cases.

Every hand-written case (``cases/*.json``, plus the regressions below) is compared by
:func:`checks.check_case`: workbench's outputs must equal the oracle's, in order (key, window,
value, timestamp, and the input record that produced it), the end of input included (the
oracle's flush record, see ``checks.py``), and both must drop the same input records. The
generated cases are in ``test_generated.py``.

Where workbench deliberately differs from TopologyTestDriver's default configuration, the case
is compared with the oracle configured the way workbench behaves
(:func:`spec.workbench_reference`; see ``docs/conformance.md``). Without Java 17 and Maven the
tests skip, except on CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.checks import compare
from tests.conformance.oracle import CASES_DIR, OracleServer, load_cases
from tests.conformance.spec import run_case_full, workbench_reference

pytestmark = pytest.mark.conformance

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

#: the case files of the operators workbench has had since wave 1 (the cases of issue 15's
#: operators are compared by test_issue15_operators.py)
CASE_FILES = ["aggregations.json", "tables.json", "windows_tumbling.json",
              "windows_hopping.json", "windows_sliding.json", "windows_session.json",
              "joins_stream_stream.json", "joins_stream_table.json", "joins_table_table.json",
              "joins_fk.json"]
CASES = load_cases([CASES_DIR / f for f in CASE_FILES]) + REGRESSION_CASES
CASES_BY_NAME = {case["name"]: case for case in CASES}

#: Cases workbench still gets wrong: name -> reason (strict xfail: remove the entry once fixed).
KNOWN_MISMATCHES: dict[str, str] = {}


@pytest.fixture(scope="session")
def hand_written(oracle: OracleServer) -> dict[str, dict[str, Any]]:
    """The oracle's result for every hand-written case, run as workbench is compared, with the
    end-of-input flush (unless the case says ``"end_of_input": false``)."""
    return {case["name"]: oracle.run({**workbench_reference(case)[0],
                                      "flush": case.get("end_of_input", True)})
            for case in CASES}


# ------------------------------------------------------------------------ hand-written cases
def _case_params() -> list[Any]:
    params = []
    for case in CASES:
        marks = []
        if case["name"] in KNOWN_MISMATCHES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_MISMATCHES[case["name"]]))
        params.append(pytest.param(case["name"], id=case["name"], marks=marks))
    return params


@pytest.mark.parametrize("serdes", ["json", "string+avro"])
@pytest.mark.parametrize("name", _case_params())
def test_hand_written_case(name: str, serdes: str,
                           hand_written: dict[str, dict[str, Any]]) -> None:
    """Each case with workbench's default serdes (JSON) and with String keys and Avro values
    on every source, table and output topic (spec.typed_topics)."""
    case = CASES_BY_NAME[name]
    reference, reasons = workbench_reference(case)
    expected = hand_written[name]
    actual = run_case_full(reference, end_of_input=case.get("end_of_input", True),
                           serdes=serdes)
    compare(case, expected, actual, reasons)


def test_time_window_suppress_equals_emit_close(
    oracle: OracleServer, hand_written: dict[str, dict[str, Any]]
) -> None:
    """workbench has no ``suppress()`` yet; for time windows Kafka Streams' ``suppress
    (untilWindowCloses)`` and ``onWindowClose`` (long retention) emit the same records, which
    is why comparing suppress cases with ``emit="close"`` is fair for them."""
    checked = 0
    for case in CASES:
        topo = case["topology"]
        if topo["op"] != "window_agg" or topo.get("emit") != "suppress":
            continue
        if topo["window"]["type"] not in ("tumbling", "hopping"):
            continue
        expected = [o for o in hand_written[case["name"]]["outputs"] if o["in"] != "end"]
        assert oracle.run(case)["outputs"] == expected, case["name"]
        checked += 1
    assert checked >= 3
