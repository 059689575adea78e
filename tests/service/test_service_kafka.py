"""``workbench run --workers 2 --http`` on Kafka: see :mod:`tests.service.scenario`."""

from __future__ import annotations

from pathlib import Path

import pytest

from .scenario import run_scenario

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
pytest.importorskip("aiohttp")
pytest.importorskip("prometheus_client")


def test_two_workers_on_kafka(kafka_url: str, tmp_path: Path) -> None:
    run_scenario(tmp_path, kafka_url)
