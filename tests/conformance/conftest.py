"""The Kafka Streams oracle for the whole test session, and the generated-case summary.

One JVM (:class:`OracleServer`) serves every conformance test. Without Java 17 and Maven the
tests that need it skip with a message saying how to enable them, except on CI (``CI=true``),
where that is a failure. At the end of the run, the number of generated examples per family
and how many of them had output are printed (``checks.STATS``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

import pytest

from tests.conformance.checks import STATS
from tests.conformance.oracle import OracleServer, build_oracle, oracle_available
from workbench._env import in_ci

HOW_TO_ENABLE = (
    "install OpenJDK 17 (java, javac) and Maven (mvn) and put them on PATH; the first run "
    "downloads Kafka Streams 4.1.1 from Maven Central (see tests/conformance/README.md)"
)


def oracle_unusable(message: str) -> NoReturn:
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
        oracle_unusable(why)
    try:
        build_oracle()
        server = OracleServer()
    except (RuntimeError, OSError) as exc:
        oracle_unusable(f"building or starting it failed:\n{exc}")
    with server:
        yield server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how many generated examples each family ran and how many had output."""
    if not STATS.families:
        return
    terminalreporter.write_sep("-", "conformance: generated examples (output before the end "
                                    "of input / all)")
    for line in STATS.lines():
        terminalreporter.write_line(line)
