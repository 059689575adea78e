"""A job for the stop/signal tests: windows that close on emit, a session aggregation, late
records beyond grace. Slow on purpose (``WB_SIGNAL_SLOW_S`` seconds per record) so a signal can
arrive in the middle of the input.

    workbench run tests/pipelines/signals_job.py:pipeline --driver URL --until end
"""

from __future__ import annotations

import os
import time
from typing import Any

import workbench as wb

APP = "signals"
SOURCE = "clicks"
SINKS = ("per-user", "per-user-late", "sessions")
EVENTS = int(os.environ.get("WB_SIGNAL_EVENTS", "3000"))


def events(n: int = EVENTS) -> list[dict[str, Any]]:
    """``n`` clicks of 7 users, 1 s apart; every 50th record is 30 s late (grace is 2 s)."""
    out = []
    for i in range(n):
        ts = 1_000_000 + 1_000 * i
        if i % 50 == 49:
            ts -= 30_000
        out.append({"user": f"u{i % 7}", "ts": ts, "amount": (i % 13) + 0.25})
    return out


def _slow(_value: Any) -> None:
    delay = float(os.environ.get("WB_SIGNAL_SLOW_S", "0"))
    if delay:
        time.sleep(delay)


def pipeline() -> wb.Pipeline:
    """The job (a factory, so the environment is read when the CLI loads it)."""
    p = wb.Pipeline(APP)
    clicks = p.source(SOURCE, key="user", time="ts", sample=events()).peek(_slow, name="slow")
    per_user = (clicks.group_by_key()
                      .window(wb.Tumbling("15s", grace="2s"), emit="close")
                      .agg(total=("amount", "sum"), n="count", name="per-user"))
    per_user.to("per-user")
    per_user.late.to("per-user-late")
    sessions = (clicks.group_by_key()
                      .window(wb.Session("8s", grace="1s"))
                      .count(name="sessions"))
    sessions.to("sessions")
    return p
