"""pytest fixtures that start the dev services once per test session.

Expose them from ``tests/conftest.py``::

    from workbench.devservices.pytest_fixtures import (  # noqa: F401
        kafka_bootstrap, kafka_service, kafka_url, postgres_service, postgres_url,
        registry_service, registry_url)

``kafka_url`` is ``kafka://127.0.0.1:PORT``, ``kafka_bootstrap`` is ``127.0.0.1:PORT`` (for
``bootstrap.servers``), ``postgres_url`` is ``postgresql://postgres@127.0.0.1:PORT/postgres``,
``registry_url`` is ``http://127.0.0.1:PORT/apis/ccompat/v7`` (Apicurio Registry).

A service that is already running (``workbench dev up``) is reused and left running; one that a
fixture started is stopped at the end of the session, unless ``WORKBENCH_DEV_KEEP=1`` (then the
next run reuses it, ~10 s faster). PostgreSQL is installed with apt-get when missing only if
``WORKBENCH_DEV_INSTALL=1`` or ``CI=true`` (and the tests run as root).

When a service cannot be had (no Java/Maven, no PostgreSQL), the tests that need it are skipped
with a message saying how to enable them; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import pytest

from .._env import env_flag, in_ci
from ..errors import DriverUnavailableError
from . import ServiceInfo, down, up

__all__ = [
    "HOW_TO_ENABLE",
    "in_ci",
    "kafka_bootstrap",
    "kafka_service",
    "kafka_url",
    "postgres_service",
    "postgres_url",
    "registry_service",
    "registry_url",
    "require_module",
    "start_service",
]

HOW_TO_ENABLE = {
    "kafka": "install Java 17+ and Maven (`apt-get install -y openjdk-17-jdk-headless maven`); "
             "the first start downloads Kafka's jars from Maven Central (~1 min), later starts "
             "take ~10 s. Or start the broker yourself with `workbench dev up --only kafka`.",
    "postgres": "install PostgreSQL (`apt-get install -y postgresql`, as root), or run "
                "`workbench dev up --only postgres` as root (it installs it), or set "
                "WORKBENCH_DEV_INSTALL=1 to let the tests install it.",
    "registry": "install Java 17+ and Maven (`apt-get install -y openjdk-17-jdk-headless "
                "maven`); the first start downloads Apicurio Registry from Maven Central "
                "(109 MB). Or start it yourself with `workbench dev up --only registry`.",
}


_flag = env_flag


def _unavailable(message: str) -> None:
    if in_ci():
        pytest.fail(f"{message} (CI=true: not skipping)", pytrace=False)
    pytest.skip(message)


def require_module(name: str, how: str) -> ModuleType:
    """Import ``name`` or skip (fail on CI) with ``how`` to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        _unavailable(f"the Python package {name!r} is not installed: {how}")
        raise  # unreachable: skip/fail raise


def start_service(name: str) -> tuple[ServiceInfo, bool]:
    """``up()`` one service for tests; returns (info, started_here). Skips (fails on CI) with a
    how-to-enable message when it cannot be had."""
    try:
        info = up((name,), install=in_ci() or _flag("WORKBENCH_DEV_INSTALL"))[name]
    except DriverUnavailableError as exc:
        _unavailable(f"{name} is not available: {exc}\nHow to enable: {HOW_TO_ENABLE[name]}")
        raise  # unreachable
    return info, not info.already_running


def _service(name: str) -> Iterator[ServiceInfo]:
    info, started_here = start_service(name)
    try:
        yield info
    finally:
        if started_here and not _flag("WORKBENCH_DEV_KEEP"):
            down((name,))


@pytest.fixture(scope="session")
def kafka_service() -> Iterator[ServiceInfo]:
    """A running single-node Kafka broker (started if needed)."""
    yield from _service("kafka")


@pytest.fixture(scope="session")
def kafka_url(kafka_service: ServiceInfo) -> str:
    """``kafka://127.0.0.1:PORT``."""
    return kafka_service.url


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_service: ServiceInfo) -> str:
    """``127.0.0.1:PORT``, for ``bootstrap.servers``."""
    return kafka_service.address


@pytest.fixture(scope="session")
def postgres_service() -> Iterator[ServiceInfo]:
    """A running PostgreSQL server (started, and installed if allowed, if needed)."""
    yield from _service("postgres")


@pytest.fixture(scope="session")
def postgres_url(postgres_service: ServiceInfo) -> str:
    """``postgresql://postgres@127.0.0.1:PORT/postgres`` (trust authentication)."""
    return postgres_service.url


@pytest.fixture(scope="session")
def registry_service() -> Iterator[ServiceInfo]:
    """A running Schema Registry (Apicurio Registry; started if needed)."""
    yield from _service("registry")


@pytest.fixture(scope="session")
def registry_url(registry_service: ServiceInfo) -> str:
    """``http://127.0.0.1:PORT/apis/ccompat/v7`` (Confluent-compatible API)."""
    return registry_service.url
