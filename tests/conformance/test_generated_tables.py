"""Generated cases of global tables, versioned tables and the Processor API's stores:
workbench against the real Kafka Streams 4.1.1, record by record (strategies in
``generators_tables.py``, compared like the families of ``test_generated.py``, with the same
90% share of examples that must have output before the end of input).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given

from tests.conformance import generators
from tests.conformance import generators_tables as gen
from tests.conformance.checks import STATS, assert_same_failure
from tests.conformance.oracle import OracleServer
from tests.conformance.spec import run_case_full
from tests.conformance.test_generated import compare, examples, require_non_empty

pytestmark = pytest.mark.conformance

#: examples per family and run (times CONFORMANCE_SCALE); docs/conformance.md lists the same
EXAMPLES = {
    "foreign-key join, 3 partitions": 120,
    "global-table join": 120,
    "versioned stream-table join": 150,
    "versioned table-table join": 100,
    "processor session store": 100,
    "processor timestamped store": 100,
}


def by_input(outputs: list[dict[str, Any]]) -> dict[Any, list[str]]:
    """Outputs grouped by the input record that made them, each group sorted (records of one
    input may come from several tasks when topics have several partitions)."""
    grouped: dict[Any, list[str]] = {}
    for o in outputs:
        grouped.setdefault(o["in"], []).append(json.dumps(o, sort_keys=True))
    return {k: sorted(v) for k, v in grouped.items()}


@examples(EXAMPLES["foreign-key join, 3 partitions"])
@given(case=generators.foreign_key_cases())
def foreign_key_partitioned_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    """The foreign-key family with every topic in 3 partitions (subscriptions and answers cross
    between tasks): the oracle's outputs input by input, and the same input records dropped."""
    expected = oracle.run({**case, "flush": True})
    STATS.family("foreign-key join, 3 partitions").add(case, expected)
    actual = run_case_full(case, end_of_input=True, partitions=3)
    assert_same_failure(case, expected, actual)
    assert by_input(actual["outputs"]) == by_input(expected["outputs"]), json.dumps(case)
    assert {d["in"] for d in actual["dropped"]} == {d["in"] for d in expected["dropped"]}, \
        json.dumps(case)


@examples(EXAMPLES["global-table join"])
@given(case=gen.global_join_cases())
def global_join_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "global-table join", case)


@examples(EXAMPLES["versioned stream-table join"])
@given(case=gen.versioned_stream_table_cases())
def versioned_stream_table_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "versioned stream-table join", case)


@examples(EXAMPLES["versioned table-table join"])
@given(case=gen.versioned_table_table_cases())
def versioned_table_table_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "versioned table-table join", case)


def test_generated_foreign_key_join_three_partitions(oracle: OracleServer) -> None:
    foreign_key_partitioned_examples(oracle)
    require_non_empty("foreign-key join, 3 partitions")


def test_generated_global_join(oracle: OracleServer) -> None:
    global_join_examples(oracle)
    require_non_empty("global-table join")


def test_generated_versioned_stream_table_join(oracle: OracleServer) -> None:
    versioned_stream_table_examples(oracle)
    require_non_empty("versioned stream-table join")


def test_generated_versioned_table_table_join(oracle: OracleServer) -> None:
    versioned_table_table_examples(oracle)
    require_non_empty("versioned table-table join")


@examples(EXAMPLES["processor session store"])
@given(case=gen.session_store_cases())
def session_store_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "processor session store", case)


@examples(EXAMPLES["processor timestamped store"])
@given(case=gen.timestamped_store_cases())
def timestamped_store_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "processor timestamped store", case)


def test_generated_processor_session_store(oracle: OracleServer) -> None:
    session_store_examples(oracle)
    require_non_empty("processor session store")


def test_generated_processor_timestamped_store(oracle: OracleServer) -> None:
    timestamped_store_examples(oracle)
    require_non_empty("processor timestamped store")
