"""Generated cases (hypothesis): workbench against the real Kafka Streams 4.1.1, record by record.

Eleven families (``generators.py``): windowed counts and sums (tumbling, hopping, sliding,
session; emit on update and on close), non-windowed aggregations, tables, and every join
(stream-stream inner/left/outer, stream-table inner/left, table-table inner/left/outer,
foreign-key inner/left). Each example is compared by :func:`checks.check_case`: outputs, the
end of input, dropped records.

Each family must have output (before the end of input) in at least :data:`MIN_NON_EMPTY` of its
examples, so that the comparisons are not of nothing with nothing; the counts are printed at
the end of the run. ``CONFORMANCE_SCALE=4`` runs four times as many examples. On CI the
examples are derandomized (the same every run); locally, hypothesis keeps failing examples in
its database and replays them first.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.conformance import generators as gen
from tests.conformance.checks import STATS, check_case
from tests.conformance.oracle import OracleServer
from workbench._env import in_ci

pytestmark = pytest.mark.conformance

#: share of a family's examples that must produce output before the end of input
MIN_NON_EMPTY = 0.9
#: below this many examples (CONFORMANCE_SCALE < 1) the share is printed but not enforced
MIN_EXAMPLES_FOR_SHARE = 40
SCALE = float(os.environ.get("CONFORMANCE_SCALE", "1"))

#: examples per family and run (times CONFORMANCE_SCALE); docs/conformance.md lists the same
EXAMPLES = {
    "tumbling": 150,
    "hopping": 150,
    "sliding": 200,
    "session, emit=update": 150,
    "session, emit=close": 100,  # compared with the RocksDB store: slower per example
    "aggregation": 100,
    "table": 50,
    "stream-stream join": 250,
    "stream-table join": 150,
    "table-table join": 150,
    "foreign-key join": 150,
}


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


def compare(oracle: OracleServer, family: str, case: dict[str, Any]) -> None:
    """Compare one generated example of ``family`` (counted in ``STATS``)."""
    stats = STATS.family(family)
    check_case(oracle, case, stats)


def require_non_empty(family: str) -> None:
    """Fail unless enough of the family's examples had output before the end of input."""
    stats = STATS.family(family)
    if stats.examples >= MIN_EXAMPLES_FOR_SHARE:
        assert stats.share >= MIN_NON_EMPTY, (
            f"only {stats.non_empty} of {stats.examples} generated {family} examples had "
            f"output before the end of input (at least {MIN_NON_EMPTY:.0%} needed): "
            "reshape the generator in tests/conformance/generators.py")


# One hypothesis function per family (each its own entry in hypothesis' example database),
# called by a test that then checks the share of non-empty examples.
@examples(EXAMPLES["tumbling"])
@given(case=gen.windowed_cases("tumbling"))
def tumbling_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "tumbling", case)


@examples(EXAMPLES["hopping"])
@given(case=gen.windowed_cases("hopping"))
def hopping_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "hopping", case)


@examples(EXAMPLES["sliding"])
@given(case=gen.windowed_cases("sliding"))
def sliding_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "sliding", case)


@examples(EXAMPLES["session, emit=update"])
@given(case=gen.windowed_cases("session", "update"))
def session_update_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "session, emit=update", case)


@examples(EXAMPLES["session, emit=close"])
@given(case=gen.windowed_cases("session", "close"))
def session_close_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "session, emit=close", case)


@examples(EXAMPLES["aggregation"])
@given(case=gen.aggregation_cases())
def aggregation_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "aggregation", case)


@examples(EXAMPLES["table"])
@given(case=gen.table_cases())
def table_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "table", case)


@examples(EXAMPLES["stream-stream join"])
@given(case=gen.stream_stream_cases())
def stream_stream_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "stream-stream join", case)


@examples(EXAMPLES["stream-table join"])
@given(case=gen.stream_table_cases())
def stream_table_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "stream-table join", case)


@examples(EXAMPLES["table-table join"])
@given(case=gen.table_table_cases())
def table_table_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "table-table join", case)


@examples(EXAMPLES["foreign-key join"])
@given(case=gen.foreign_key_cases())
def foreign_key_examples(oracle: OracleServer, case: dict[str, Any]) -> None:
    compare(oracle, "foreign-key join", case)


def test_generated_tumbling(oracle: OracleServer) -> None:
    tumbling_examples(oracle)
    require_non_empty("tumbling")


def test_generated_hopping(oracle: OracleServer) -> None:
    hopping_examples(oracle)
    require_non_empty("hopping")


def test_generated_sliding(oracle: OracleServer) -> None:
    sliding_examples(oracle)
    require_non_empty("sliding")


def test_generated_session_update(oracle: OracleServer) -> None:
    session_update_examples(oracle)
    require_non_empty("session, emit=update")


def test_generated_session_close(oracle: OracleServer) -> None:
    session_close_examples(oracle)
    require_non_empty("session, emit=close")


def test_generated_aggregation(oracle: OracleServer) -> None:
    aggregation_examples(oracle)
    require_non_empty("aggregation")


def test_generated_table(oracle: OracleServer) -> None:
    table_examples(oracle)
    require_non_empty("table")


def test_generated_stream_stream_join(oracle: OracleServer) -> None:
    stream_stream_examples(oracle)
    require_non_empty("stream-stream join")


def test_generated_stream_table_join(oracle: OracleServer) -> None:
    stream_table_examples(oracle)
    require_non_empty("stream-table join")


def test_generated_table_table_join(oracle: OracleServer) -> None:
    table_table_examples(oracle)
    require_non_empty("table-table join")


def test_generated_foreign_key_join(oracle: OracleServer) -> None:
    foreign_key_examples(oracle)
    require_non_empty("foreign-key join")
