"""How long a transaction may stay open on a driver (the default of ``max_transaction``).

* **Kafka**: the broker aborts a transaction open longer than the producer's
  ``transaction.timeout.ms`` (the driver's ``transaction_timeout_ms``, 10 s by default), and
  the consumer group drops a member that does not poll for ``max.poll.interval.ms`` (300 s;
  the driver polls its group member at each commit). The default is half of the smaller.
* **PostgreSQL**: a commit is one SQL transaction whose statements the server cancels after
  ``statement_timeout``; when one is set, the default is half of it.
* Otherwise (memory, git, PostgreSQL without a statement timeout): 30 s, so that even a slow
  run commits regularly.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["DEFAULT_LIMIT_MS", "FRACTION", "transaction_limit_ms"]

log = logging.getLogger(__name__)

#: the default when the driver sets no limit of its own
DEFAULT_LIMIT_MS = 30_000
#: the share of a driver's own limit that ``max_transaction`` defaults to
FRACTION = 0.5
#: librdkafka's default ``max.poll.interval.ms``
KAFKA_MAX_POLL_INTERVAL_MS = 300_000


def _as_ms(value: Any) -> int | None:
    try:
        ms = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return ms if ms > 0 else None


def _kafka_limit(driver: Any) -> tuple[int, str] | None:
    options = getattr(driver, "options", None)
    txn = getattr(options, "transaction_timeout_ms", None)
    if txn is None:
        return None
    settings: dict[str, Any] = {}
    for part in ("client", "consumer"):
        settings.update(getattr(options, part, {}) or {})
    txn = _as_ms(settings.get("transaction.timeout.ms")) or int(txn)
    producer = getattr(options, "producer", {}) or {}
    txn = _as_ms(producer.get("transaction.timeout.ms")) or txn
    poll = _as_ms(settings.get("max.poll.interval.ms")) or KAFKA_MAX_POLL_INTERVAL_MS
    if poll < txn:
        return poll, f"max.poll.interval.ms={poll}"
    return txn, f"transaction.timeout.ms={txn}"


def _postgres_limit(driver: Any) -> tuple[int, str] | None:
    session = getattr(driver, "session", None)
    if session is None or not hasattr(session, "call"):
        return None
    try:
        shown = session.call(
            lambda c: c.execute("SELECT setting FROM pg_settings WHERE name = "
                                "'statement_timeout'").fetchone()[0],
            "reading statement_timeout")
    except Exception as exc:  # a limit we cannot read is no limit; the run goes on
        log.debug("could not read statement_timeout: %s", exc)
        return None
    ms = _as_ms(shown)  # pg_settings gives milliseconds
    return (ms, f"statement_timeout={ms}ms") if ms else None


def transaction_limit_ms(driver: Any) -> tuple[int, str]:
    """The default ``max_transaction`` for ``driver`` (ms) and a few words saying where it
    comes from (for logs and the docs)."""
    inner = getattr(driver, "inner", driver)  # a privacy wrapper: the driver it wraps
    scheme = getattr(inner, "scheme", "")
    own: tuple[int, str] | None = None
    if scheme == "kafka":
        own = _kafka_limit(inner)
    elif scheme == "postgresql":
        own = _postgres_limit(inner)
    if own is None:
        return DEFAULT_LIMIT_MS, f"no limit from the {scheme or 'driver'} driver"
    ms, why = own
    return max(1, int(ms * FRACTION)), f"{FRACTION:g} x {why}"
