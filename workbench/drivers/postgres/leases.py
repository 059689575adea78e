"""Membership: partitions are leased with session advisory locks.

The lock key is ``(schema, app, partition number)`` — the partition number, not the topic, so
the co-partitioned inputs of a task (a stream and the table it joins) always go together. A
dead worker's session ends and its locks with it, so another worker can take its partitions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from ...errors import FencedError
from .naming import lock_key, signed64
from .session import Session

__all__ = ["Leases"]

log = logging.getLogger(__name__)

#: how long a reconnected worker waits for its old session's leases to be released
RETAKE_S = 5.0


class Leases:
    """This process's partition leases.

    Attributes:
        poll_interval_s: ``poll()`` looks for free partitions at most this often.
    """

    def __init__(self, session: Session, partitions: Callable[[str], int | None]) -> None:
        self.s = session
        self._partitions = partitions
        self.leases: dict[str, set[int]] = {}  # app -> partition numbers leased
        self._assigned: dict[str, list[str]] = {}  # app -> topics of the last assign()
        self.poll_interval_s = 1.0
        self._last_poll = 0.0
        session.after_reconnect.append(self.retake)

    def assign(self, app_id: str, topics: Iterable[str]) -> dict[str, list[int]]:
        """Lease free partitions (at most ``ceil(P / members)`` with ``members=``); partitions
        already leased by this driver are kept."""
        counts = {t: self._partitions(t) or 0 for t in topics}
        self._assigned[app_id] = list(counts)
        total = max(counts.values(), default=0)
        mine = self.leases.setdefault(app_id, set())
        members = self.s.options.members
        cap = -(-total // members) if members > 0 else total
        for p in range(total):
            if p in mine:
                continue
            if len(mine) >= cap:
                break
            if self._try_lock(lock_key("lease", self.s.schema, app_id, p)):
                mine.add(p)
        log.info("application %r: leased partitions %s of %d", app_id, sorted(mine), total)
        return {t: sorted(p for p in mine if p < c) for t, c in counts.items()}

    def _try_lock(self, key: int) -> bool:
        def lease(conn: Any) -> bool:
            return bool(conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])

        return bool(self.s.call(lease, "leasing partitions"))

    def retake(self, conn: Any) -> None:
        """After a reconnect: take this process's leases back (their locks die with the old
        session, which may take a moment to end after it was cut off); another worker holding
        one after ``RETAKE_S`` fences this process."""
        for app, parts in self.leases.items():
            for p in sorted(parts):
                key = lock_key("lease", self.s.schema, app, p)
                deadline = time.monotonic() + RETAKE_S
                while not (got := conn.execute("SELECT pg_try_advisory_lock(%s)",
                                               (key,)).fetchone()[0]):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                if not got:
                    raise FencedError(
                        f"partition {p} of application {app!r} was taken over by another "
                        "worker while this one was disconnected; stop this process (its "
                        "uncommitted work is discarded) and restart it to get new partitions."
                    )

    def poll(self, takeover: bool) -> dict[str, list[int]] | None:
        """With ``takeover``: lease the partitions that became free (their worker died, or
        stopped), up to ⌈P / live workers⌉, and return the new ownership; else ``None``."""
        if not takeover or not self._assigned:
            return None
        now = time.monotonic()
        if now - self._last_poll < self.poll_interval_s:
            return None
        self._last_poll = now
        changed = False
        for app_id, topics in self._assigned.items():
            mine = self.leases.setdefault(app_id, set())
            total = max((self._partitions(t) or 0 for t in topics), default=0)
            keys = {lock_key("lease", self.s.schema, app_id, p): p for p in range(total)}
            rows = self.s.call(lambda c: c.execute(
                "SELECT DISTINCT pid, classid::bigint, objid::bigint FROM pg_locks WHERE "
                "locktype = 'advisory' AND granted AND pid <> pg_backend_pid()").fetchall(),
                "reading leases")
            held = {keys.get(signed64((cls << 32) | obj)): pid for pid, cls, obj in rows}
            held.pop(None, None)
            others = len(set(held.values()))
            cap = -(-total // (others + 1))
            for p in range(total):
                if len(mine) >= cap:
                    break
                if p in mine or p in held:
                    continue
                if self._try_lock(lock_key("lease", self.s.schema, app_id, p)):
                    mine.add(p)
                    changed = True
        if not changed:
            return None
        out: dict[str, list[int]] = {}
        for app_id, topics in self._assigned.items():
            mine = self.leases.get(app_id, set())
            for t in topics:
                out[t] = sorted(p for p in mine if p < (self._partitions(t) or 0))
        log.info("took over partitions: %s", out)
        return out

    def end_run(self) -> None:
        """Give up every lease (the run is over)."""
        for app_id in list(self.leases):
            self.release(app_id)
        self._assigned.clear()

    def release(self, app_id: str) -> None:
        """Give up this process's partitions of ``app_id``."""
        for p in sorted(self.leases.pop(app_id, set())):
            try:
                self.s.conn.execute("SELECT pg_advisory_unlock(%s)",
                                    (lock_key("lease", self.s.schema, app_id, p),))
            except self.s.pg.Error:
                break  # the session is gone, and its locks with it

    def forget(self) -> None:
        """Drop the bookkeeping (the connection, and its locks, are closed)."""
        self.leases.clear()
