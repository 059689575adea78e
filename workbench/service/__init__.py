"""A pipeline promoted to a running service: health and readiness, Prometheus metrics,
queryable state (Python and HTTP), a status page, worker processes and clean shutdown.

The HTTP server (aiohttp) and metrics (prometheus_client) come with the optional extra
``pip install 'workbench[service]'``; queryable state in Python needs nothing more.
See ``docs/operations.md``.
"""

from __future__ import annotations

from .core import Service, ServiceRun, start
from .views import LeftRight, NotFound, StateViews
from .workers import cpu_limit

__all__ = ["LeftRight", "NotFound", "Service", "ServiceRun", "StateViews", "cpu_limit", "start"]
