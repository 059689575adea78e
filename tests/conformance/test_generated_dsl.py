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
