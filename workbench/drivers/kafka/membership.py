"""Group membership: which partitions this process owns.

The driver joins the consumer group ``<app>`` with the range assignor: every process subscribes
to the same topics, and the range assignor gives the same partition number of every topic with
the same partition count to the same member, so the partitions of a task (a sub-topology's
inputs, which are co-partitioned) always land together. The group member only holds
membership (its partitions are paused); reads go through the driver's readers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from ...errors import DriverError, DriverUnavailableError
from .connection import Connection, get_logger

__all__ = ["Membership"]

log = get_logger(__name__)

Key = tuple[str, int]


class Membership:
    """The consumer-group member of one application.

    Args:
        conn: the connection.
        on_revoked: called with the partitions this process lost (revoked or lost).
    """

    def __init__(self, conn: Connection, on_revoked: Callable[[set[Key]], None]) -> None:
        self._conn = conn
        self._on_revoked = on_revoked
        #: the group member (a consumer), while joined
        self.member: Any = None
        #: the application (group id) joined
        self.group: str | None = None
        #: partitions owned now (``None``: no assignment yet)
        self.owned: set[Key] | None = None
        #: a rebalance happened that the engine has not taken yet
        self.changed = False
        self._subscribed: list[str] = []
        self._assignments = 0  # assignments received (the group's callbacks count them)

    def joined(self, app_id: str) -> bool:
        """Whether this process is a member of ``app_id``'s group."""
        return self.member is not None and self.group == app_id

    def join(self, app_id: str, topics: Iterable[str]) -> dict[str, list[int]]:
        """Join (or re-subscribe in) the group ``app_id``; return the partitions owned."""
        names = sorted(set(topics))
        options = self._conn.options
        if self.member is not None and self.group != app_id:
            raise DriverError(f"<KafkaDriver {self._conn.url}> already runs application "
                              f"{self.group!r}; use one driver per application.")
        if self.member is None:
            extra: dict[str, Any] = {
                "partition.assignment.strategy": "range",
                "heartbeat.interval.ms": max(500, options.session_timeout_ms // 10),
                "enable.partition.eof": False,
            }
            if options.instance:
                extra["group.instance.id"] = options.instance
            self.member = self._conn.consumer("member", app_id, extra)
            self.group = app_id
        self._subscribed = names
        self.owned = None
        seen = self._assignments
        with self._conn.errors(f"joining consumer group {app_id!r}"):
            self.member.subscribe(names, on_assign=self._on_assign,
                                  on_revoke=self._on_revoke, on_lost=self._on_lost)
        deadline = time.monotonic() + options.timeout + options.session_timeout_ms / 1e3
        if not self._await_assignment(seen, deadline):
            raise DriverUnavailableError(
                f"joining consumer group {app_id!r} on {self._conn.url}: no partition "
                "assignment arrived in time.")
        self.changed = False
        return self.ownership()

    def _await_assignment(self, seen: int, deadline: float) -> bool:
        """Poll the group until an assignment newer than ``seen`` arrives (or the deadline)."""
        while self._assignments == seen:
            if time.monotonic() > deadline:
                return False
            self.poll(0.05)
        return True

    def poll(self, timeout: float) -> None:
        """Serve heartbeats and the group's callbacks."""
        member = self.member
        if member is None:
            return
        conn = self._conn
        with conn.errors(f"polling consumer group {self.group!r}"):
            msg = member.poll(timeout)
        if msg is not None and msg.error() is not None:
            err = msg.error()
            if err.fatal():
                conn.raise_(conn.ck.KafkaException(err), "consumer group membership")
            log.info("consumer group %r: %s", self.group, err)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        consumer.assign(partitions)
        consumer.pause(partitions)  # this consumer only holds membership; reads go elsewhere
        self.owned = {(tp.topic, tp.partition) for tp in partitions}
        self._assignments += 1
        self.changed = True
        log.info("consumer group %r: assigned %s", self.group, sorted(self.owned))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._drop(partitions)
        consumer.unassign()

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._drop(partitions)
        consumer.unassign()

    def _drop(self, partitions: list[Any]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.owned = (self.owned or set()) - gone
        self._on_revoked(gone)
        self.changed = True
        log.info("consumer group %r: revoked %s", self.group, sorted(gone))

    def ownership(self) -> dict[str, list[int]]:
        """The partitions owned now, ``{topic: partitions}`` for every subscribed topic."""
        owned = self.owned or set()
        return {t: sorted(p for tt, p in owned if tt == t) for t in self._subscribed}

    def news(self) -> dict[str, list[int]] | None:
        """Rebalance news (see :meth:`KafkaDriver.poll_membership`), or ``None``."""
        if self.member is None:
            return None
        self.poll(0)
        if not self.changed:
            return None
        if not self.owned:  # revoked: the assignment follows once every member has rejoined
            deadline = time.monotonic() + self._conn.options.session_timeout_ms / 1e3
            self._await_assignment(self._assignments, deadline)
        self.changed = False
        return self.ownership()

    def leave(self) -> None:
        """Leave the group (a static member keeps its slot until the session timeout)."""
        member, self.member = self.member, None
        if member is not None:
            try:
                member.close()
            except Exception:
                log.debug("leaving the consumer group failed", exc_info=True)
        self.group, self.owned, self._subscribed, self.changed = None, None, [], False
