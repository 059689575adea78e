"""Fixtures of the external-work tests: the child program, a local HTTP server whose latency
the tests change, and helpers to run a pipeline on ``memory://``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .latency_server import LatencyServer

TOOL = Path(__file__).with_name("programs") / "tool.py"


def tool(*args: str) -> list[str]:
    """argv of the test program (``programs/tool.py``) in ``mode``."""
    return [sys.executable, str(TOOL), *args]


@pytest.fixture
def latency_server() -> Iterator[LatencyServer]:
    """A local HTTP server answering ``/double?x=N`` with ``{"y": 2N}`` after its latency."""
    server = LatencyServer()
    try:
        yield server
    finally:
        server.close()
