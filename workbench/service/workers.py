"""Worker processes: how many (:func:`cpu_limit`) and how they run together
(:class:`Supervisor`).

``--workers N`` starts N ``workbench run`` processes (the GIL makes threads useless for this
work). Each is a consumer-group member on Kafka or a partition lessee on PostgreSQL and serves
its own HTTP port on 127.0.0.1; the supervisor serves the public ``--http`` address: ``/health``
and ``/ready`` answer for all workers, ``/metrics`` merges theirs (label ``worker``), queries are
answered by a worker (which fetches a key from the worker that holds it). Signals go to the
supervisor, which passes them on; the workers stop together.

``--workers auto`` is the CPU limit of the container, :func:`cpu_limit`.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuLimit", "cpu_limit", "worker_driver_url"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CpuLimit:
    """A worker count and why."""

    count: int
    reason: str


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_lines(root: Path) -> list[tuple[str, list[str], str]]:
    text = _read(root / "proc" / "self" / "cgroup") or ""
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out.append((parts[0], parts[1].split(",") if parts[1] else [], parts[2]))
    return out


def _ancestors(base: Path, rel: str) -> list[Path]:
    """``base/rel`` and each of its parents up to ``base`` (nearest first)."""
    rel = rel.strip("/")
    parts = rel.split("/") if rel else []
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _v2_limit(root: Path) -> tuple[float, str] | None:
    base = root / "sys" / "fs" / "cgroup"
    rel = next((p for h, c, p in _cgroup_lines(root) if h == "0" and not c), None)
    if rel is None and not (base / "cpu.max").exists():
        return None
    best: tuple[float, str] | None = None
    for d in _ancestors(base, rel or "/"):
        text = _read(d / "cpu.max")
        if text is None:
            continue
        fields = text.split()
        if not fields or fields[0] == "max":
            continue
        try:
            quota = float(fields[0])
            period = float(fields[1]) if len(fields) > 1 else 100_000.0
        except ValueError:
            continue
        if quota > 0 and period > 0 and (best is None or quota / period < best[0]):
            shown = "/" + str(d.relative_to(root))
            best = (quota / period, f"cgroup v2 {shown}/cpu.max = {text}")
    return best


def _v1_limit(root: Path) -> tuple[float, str] | None:
    rel = next((p for _h, c, p in _cgroup_lines(root) if "cpu" in c), None)
    best: tuple[float, str] | None = None
    for mount in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
        base = root / "sys" / "fs" / "cgroup" / mount
        if not base.is_dir():
            continue
        for d in _ancestors(base, rel or "/"):
            quota_text = _read(d / "cpu.cfs_quota_us")
            period_text = _read(d / "cpu.cfs_period_us")
            if quota_text is None or period_text is None:
                continue
            try:
                quota, period = float(quota_text), float(period_text)
            except ValueError:
                continue
            if quota > 0 and period > 0 and (best is None or quota / period < best[0]):
                shown = "/" + str(d.relative_to(root))
                best = (quota / period, f"cgroup v1 {shown}/cpu.cfs_quota_us = {quota_text}, "
                                        f"cpu.cfs_period_us = {period_text}")
        if best is not None:
            break
    return best


def cpu_limit(root: str | os.PathLike[str] = "/") -> CpuLimit:
    """The number of CPUs this process may use, rounded up, at least 1, and why.

    The smallest of: the cgroup v2 ``cpu.max`` quota of the process's cgroup and its parents,
    the cgroup v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``, the CPU affinity mask
    (``taskset``), and the CPU count. ``root`` lets tests point at a fake ``/proc`` and
    ``/sys/fs/cgroup`` tree (the affinity mask and CPU count are this process's own).

    >>> cpu_limit().count >= 1
    True
    """
    base = Path(root)
    options: list[tuple[float, str]] = []
    quota = _v2_limit(base) or _v1_limit(base)
    if quota is not None:
        options.append(quota)
    try:
        affinity = len(os.sched_getaffinity(0))
        options.append((float(affinity), f"CPU affinity mask: {affinity} CPUs"))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        pass
    count = os.cpu_count() or 1
    options.append((float(count), f"CPU count: {count}"))
    value, reason = min(options, key=lambda o: o[0])
    n = max(1, math.ceil(value - 1e-9))
    others = "; ".join(r for v, r in options if r != reason)
    return CpuLimit(n, f"{reason} → {n} worker{'s' if n != 1 else ''}"
                       + (f" (also: {others})" if others else ""))


def worker_driver_url(url: str, workers: int) -> str:
    """The driver URL a worker gets: on PostgreSQL ``members=N`` (each worker leases its share
    of the partitions), unless the URL sets it. Not ``takeover=1``: a worker that polls for
    free partitions before the others have leased theirs would take them all, and the
    supervisor stops every worker when one dies anyway."""
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.setdefault("members", str(workers))
    return urlunsplit(parts._replace(query=urlencode(query)))
