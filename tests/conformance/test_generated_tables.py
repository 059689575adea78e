"""Generated cases of global tables, versioned tables and the Processor API's stores:
workbench against the real Kafka Streams 4.1.1, record by record (strategies in
``generators_tables.py``, compared like the families of ``test_generated.py``, with the same
90% share of examples that must have output before the end of input).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from tests.conformance import generators_tables as gen
from tests.conformance.oracle import OracleServer
from tests.conformance.test_generated import compare, examples, require_non_empty

pytestmark = pytest.mark.conformance

#: examples per family and run (times CONFORMANCE_SCALE); docs/conformance.md lists the same
EXAMPLES = {
    "global-table join": 120,
    "versioned stream-table join": 150,
    "versioned table-table join": 100,
}


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


def test_generated_global_join(oracle: OracleServer) -> None:
    global_join_examples(oracle)
    require_non_empty("global-table join")


def test_generated_versioned_stream_table_join(oracle: OracleServer) -> None:
    versioned_stream_table_examples(oracle)
    require_non_empty("versioned stream-table join")


def test_generated_versioned_table_table_join(oracle: OracleServer) -> None:
    versioned_table_table_examples(oracle)
    require_non_empty("versioned table-table join")
