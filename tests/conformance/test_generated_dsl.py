"""Generated cases of the rest of the DSL (issue 15, part A), workbench against the real Kafka
Streams 4.1.1, record by record: re-grouped tables, cogroup, suppress, repartition and
``to(topic function)``, table filters and ``split``. Strategies in ``generators_dsl.py``; the
comparison, the 90% non-empty rule and the counts printed at the end are those of
``test_generated.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from tests.conformance import generators_dsl as gen
from tests.conformance.oracle import OracleServer
from tests.conformance.test_generated import compare, examples, require_non_empty

pytestmark = pytest.mark.conformance

#: examples per family and run (times CONFORMANCE_SCALE); docs/conformance.md lists the same
EXAMPLES_DSL = {
    "re-grouped table": 150,
    "cogroup": 150,
    "suppress": 200,
    "repartition, topic fn": 100,
    "table filter": 150,
    "split": 100,
    "print": 50,
}


@examples(EXAMPLES_DSL["re-grouped table"])
@given(case=gen.regroup_cases())
def regroup_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "re-grouped table", case)


def test_generated_regrouped_table(oracle: OracleServer) -> None:
    regroup_examples(oracle)
    require_non_empty("re-grouped table")


@examples(EXAMPLES_DSL["cogroup"])
@given(case=gen.cogroup_cases())
def cogroup_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "cogroup", case)


def test_generated_cogroup(oracle: OracleServer) -> None:
    cogroup_examples(oracle)
    require_non_empty("cogroup")


@examples(EXAMPLES_DSL["suppress"])
@given(case=gen.suppress_cases())
def suppress_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "suppress", case)


def test_generated_suppress(oracle: OracleServer) -> None:
    suppress_examples(oracle)
    require_non_empty("suppress")


@examples(EXAMPLES_DSL["repartition, topic fn"])
@given(case=gen.repartition_cases())
def repartition_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "repartition, topic fn", case)


def test_generated_repartition_and_topic_function(oracle: OracleServer) -> None:
    repartition_examples(oracle)
    require_non_empty("repartition, topic fn")


@examples(EXAMPLES_DSL["table filter"])
@given(case=gen.table_filter_cases())
def table_filter_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "table filter", case)


def test_generated_table_filter(oracle: OracleServer) -> None:
    table_filter_examples(oracle)
    require_non_empty("table filter")


@examples(EXAMPLES_DSL["split"])
@given(case=gen.split_cases())
def split_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "split", case)


def test_generated_split(oracle: OracleServer) -> None:
    split_examples(oracle)
    require_non_empty("split")


@examples(EXAMPLES_DSL["print"])
@given(case=gen.print_cases())
def print_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "print", case)


def test_generated_print(oracle: OracleServer) -> None:
    print_examples(oracle)
    require_non_empty("print")
