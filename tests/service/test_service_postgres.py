"""``workbench run --workers 2 --http`` on PostgreSQL (partition leases): see
:mod:`tests.service.scenario`."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from .scenario import run_scenario

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
pytest.importorskip("aiohttp")
pytest.importorskip("prometheus_client")


def test_two_workers_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    from workbench.drivers import connect

    url = postgres_url + ("&" if "?" in postgres_url else "?") + \
        f"schema=svc_{uuid.uuid4().hex[:10]}"
    try:
        run_scenario(tmp_path, url)
    finally:
        driver = connect(url)
        driver.drop_schema()  # type: ignore[attr-defined]
        driver.close()
