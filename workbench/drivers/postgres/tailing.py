"""Tailing: commits and appends ``NOTIFY`` the schema's channel; a listener blocks on
``LISTEN`` until one arrives, so an idle live run wakes when there is data instead of
polling."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from .naming import channel
from .session import Session

__all__ = ["Listener"]


class Listener:
    """A connection that LISTENs on the schema's channel."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self._conn: Any = None

    def wait(self, timeout_s: float) -> bool:
        """Block until a notification arrives (True) or ``timeout_s`` passes (False)."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self.s.new_connection()
                self._conn.execute(self.s.sql.SQL("LISTEN {}").format(
                    self.s.q(channel(self.s.schema))))
            got = False
            for _n in self._conn.notifies(timeout=timeout_s, stop_after=1):
                got = True
            return got
        except self.s.pg.Error:
            self.close()
            time.sleep(min(timeout_s, 0.5))
            return False

    def close(self) -> None:
        """Stop listening (the next :meth:`wait` listens again, e.g. on a new schema)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
