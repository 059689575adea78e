"""Shared fixtures: small deterministic click data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from workbench._env import in_ci  # noqa: F401  (re-exported for the tests)
from workbench.devservices.pytest_fixtures import (  # noqa: F401  (session fixtures)
    kafka_bootstrap,
    kafka_service,
    kafka_url,
    postgres_service,
    postgres_url,
    registry_service,
    registry_url,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture
def clicks() -> list[dict[str, Any]]:
    """Twenty clicks by three users, one per 10 ms, amounts -1.5..2.5."""
    return [
        {"user_id": f"u{i % 3}", "ts": 1_000 + 10 * i, "amount": (i % 5) - 1.5,
         "page": f"/p/{i % 4}"}
        for i in range(20)
    ]


@pytest.fixture
def root() -> Path:
    return ROOT


