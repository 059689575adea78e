"""Facts about the environment the process runs in, decided in one place."""

from __future__ import annotations

import os

__all__ = ["env_flag", "in_ci"]

_TRUE = ("1", "true", "yes", "on")


def env_flag(name: str) -> bool:
    """True when environment variable ``name`` is set to 1/true/yes/on (any case, spaces
    ignored)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def in_ci() -> bool:
    """True on CI (``CI=true``, or 1/yes/on): a missing service, tool or library is then a
    failure, never a skip."""
    return env_flag("CI")
