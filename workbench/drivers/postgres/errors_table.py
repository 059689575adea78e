"""The errors table ``_errors``: rows workbench could not use, kept instead of stopping the run
(with ``errors=1``): source rows that are not valid JSON, and changes a table sink's table
refused (a constraint you added). One row per ``(topic, partition, position)``."""

from __future__ import annotations

import logging
from typing import Any

from .session import Session

__all__ = ["ErrorsTable"]

log = logging.getLogger(__name__)


class ErrorsTable:
    """Writes and reads ``_errors``."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def insert(self, conn: Any, topic: str, partition: int, position: str, source: str,
               message: str, row_text: str | None) -> None:
        """Keep a bad row (once per position) on ``conn``, inside its transaction if any, and
        log a warning."""
        conn.execute(self.s.sql.SQL(
            "INSERT INTO {}._errors (topic, partition, position, source, error, row_text) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING").format(self.s.qs()),
            (topic, partition, position, source, self.s.scrub(message), row_text))
        log.warning("%s (routed to %s._errors)", self.s.scrub(message), self.s.schema)

    def record(self, topic: str, partition: int, position: str, source: str, message: str,
               row_text: str | None) -> None:
        """:meth:`insert` on its own (autocommit), retried like any repeatable statement."""
        self.s.call(lambda c: self.insert(c, topic, partition, position, source, message,
                                          row_text), "recording a bad row")

    def rows(self) -> list[dict[str, Any]]:
        """The rows of the errors table, oldest first."""
        S, s = self.s.sql.SQL, self.s.qs()
        rows = self.s.call(lambda c: c.execute(S(
            "SELECT topic, partition, position, source, error, row_text FROM {}._errors "
            "ORDER BY id").format(s)).fetchall(), "reading the errors table")
        cols = ("topic", "partition", "position", "source", "error", "row")
        return [dict(zip(cols, r)) for r in rows]
