"""Drivers: where a pipeline's topics, state and positions live.

:func:`connect` resolves a URL to a driver. Drivers import their client libraries lazily, so
``import workbench`` stays light.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import DefinitionError, did_you_mean
from .base import Driver, Transaction

__all__ = ["Driver", "Transaction", "connect", "register_driver"]

_FACTORIES: dict[str, Any] = {}


def register_driver(scheme: str, factory: Any) -> None:
    """Make ``scheme://...`` URLs resolve through ``factory(url)``."""
    _FACTORIES[scheme] = factory


def _memory(url: str) -> Driver:
    import re
    from urllib.parse import parse_qsl

    from .memory import MemoryDriver

    rest = url[len("memory://"):]
    name, _, query = rest.partition("?")
    name = name.strip("/")
    if name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise DefinitionError(
            f"driver URL {url!r}: the name of a memory log ({name!r}) may contain only letters, "
            "digits, '.', '_' and '-'; use 'memory://' (private) or 'memory://NAME' (shared in "
            "this process).")
    given: dict[str, int] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in ("partitions", "max_records"):
            raise DefinitionError(
                f"driver URL {url!r}: unknown parameter {key!r}; memory:// accepts only "
                "partitions=N (the default partition count of topics it creates) and "
                "max_records=N (records each partition keeps at least; older ones are dropped).")
        low = 1 if key == "partitions" else 0
        if not value.isdigit() or int(value) < low:
            raise DefinitionError(
                f"driver URL {url!r}: {key}={value!r} must be a whole number >= {low}.")
        given[key] = int(value)
    partitions = given.get("partitions")
    if not name:
        return MemoryDriver(durable_state=False, default_partitions=partitions or 1,
                            max_records=given.get("max_records", 0))
    driver = MemoryDriver.named(name)
    if partitions is not None:
        driver.default_partitions = partitions
    if "max_records" in given:
        driver.set_max_records(given["max_records"])
    return driver


register_driver("memory", _memory)


def _git(url: str) -> Driver:
    from .git import GitDriver

    return GitDriver(url)


register_driver("git", _git)


def _postgres(url: str) -> Driver:
    from .postgres import PostgresDriver

    return PostgresDriver(url)


register_driver("postgresql", _postgres)
register_driver("postgres", _postgres)


def _kafka(url: str) -> Driver:
    from .kafka import KafkaDriver

    return KafkaDriver(url)


register_driver("kafka", _kafka)

_PLANNED: dict[str, str] = {
}


def connect(url: str | Driver) -> Driver:
    """Return the driver for ``url`` (``memory://``, ``memory://NAME``, ...), or ``url`` itself
    if it already is a driver.

    Raises:
        DefinitionError: the URL's scheme is unknown or not available in this version.
    """
    if isinstance(url, Driver):
        return url
    if not isinstance(url, str) or "://" not in url:
        raise DefinitionError(
            f"driver URL {url!r} is not a URL; use e.g. 'memory://', 'kafka://127.0.0.1:9092', "
            "'postgresql://user@host:5432/db' or 'git:///path/to/repo'."
        )
    scheme = urlsplit(url).scheme.lower()
    factory = _FACTORIES.get(scheme)
    if factory is None:
        if scheme in _PLANNED:
            raise DefinitionError(
                f"driver URL {url!r}: {_PLANNED[scheme]} is not available in this version of "
                "workbench yet; use 'memory://'."
            )
        raise DefinitionError(
            f"unknown driver scheme {scheme!r} in {url!r}."
            + did_you_mean(scheme, [*_FACTORIES, *_PLANNED])
        )
    driver: Driver = factory(url)
    return driver
