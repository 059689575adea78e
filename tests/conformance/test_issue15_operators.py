"""The operators of issue 15 against the real Kafka Streams 4.1.1, record by record.

Hand-written cases (``cases/tables_regrouped.json``, ``cogroup.json``, ``joins_global.json``,
``suppress.json``, ``versioned.json``, ``repartition.json``) whose recorded Kafka Streams
outputs are in ``expected/oracle_outputs.json``. A case is skipped ("operator lands with issue
15") while workbench's DSL lacks what it needs (:func:`spec_extra.missing_dsl`, checked with
``hasattr`` and signatures): the tests start running by themselves once the DSL grows. Each case
is then compared like every other (:func:`checks.check_case`): failure, outputs, end of input,
dropped records.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.checks import check_case
from tests.conformance.oracle import CASES_DIR, OracleServer, load_cases
from tests.conformance.spec_extra import missing_dsl

pytestmark = pytest.mark.conformance

#: the case files of issue 15's operators (foreign-key joins, which workbench has, are compared
#: with the wave-1 cases in test_conformance.py)
CASE_FILES = ["tables_regrouped.json", "cogroup.json", "joins_global.json", "suppress.json",
              "versioned.json", "repartition.json", "tables_filter.json", "split.json",
              "print.json"]
CASES = load_cases([CASES_DIR / f for f in CASE_FILES])
CASES_BY_NAME = {case["name"]: case for case in CASES}

#: cases workbench gets wrong once the operator exists: name -> reason (strict xfail)
KNOWN_MISMATCHES: dict[str, str] = {}


def _params() -> list[Any]:
    params = []
    for case in CASES:
        marks = []
        if case["name"] in KNOWN_MISMATCHES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_MISMATCHES[case["name"]]))
        params.append(pytest.param(case["name"], id=case["name"], marks=marks))
    return params


@pytest.mark.parametrize("name", _params())
def test_issue15_case(name: str, oracle: OracleServer) -> None:
    case = CASES_BY_NAME[name]
    missing = missing_dsl(case)
    if missing is not None:
        pytest.skip(f"operator lands with issue 15 (workbench has no {missing} yet)")
    check_case(oracle, case)

