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

import json
from typing import Any

import pytest

from tests.conformance.checks import check_case
from tests.conformance.oracle import CASES_DIR, OracleServer, load_cases, load_expected
from tests.conformance.spec import run_case_full
from tests.conformance.spec_extra import missing_dsl

pytestmark = pytest.mark.conformance

#: the case files of issue 15's operators (foreign-key joins, which workbench has, are compared
#: with the wave-1 cases in test_conformance.py)
CASE_FILES = ["tables_regrouped.json", "cogroup.json", "joins_global.json", "suppress.json",
              "versioned.json", "repartition.json", "tables_filter.json", "split.json",
              "print.json", "processor_stores.json"]
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



FK_CASES = [c for c in load_cases([CASES_DIR / "joins_fk.json"])]


@pytest.mark.parametrize("name", [c["name"] for c in FK_CASES])
def test_foreign_key_join_on_three_partitions(name: str) -> None:
    """Issue 15 item 3: the foreign-key join runs on many partitions (its subscription and
    response topics partitioned like its tables). With every topic in 3 partitions, each input
    record gives the oracle's outputs (recorded, ``expected/``), the records of one input
    compared as a multiset: they may come from several tasks."""
    case = next(c for c in FK_CASES if c["name"] == name)
    expected = load_expected()[name]["outputs"]
    got = run_case_full(case, partitions=3)["outputs"]

    def by_input(outputs: list[dict[str, Any]]) -> dict[Any, list[str]]:
        grouped: dict[Any, list[str]] = {}
        for o in outputs:
            grouped.setdefault(o["in"], []).append(json.dumps(o, sort_keys=True))
        return {k: sorted(v) for k, v in grouped.items()}

    assert by_input(got) == by_input(expected)
