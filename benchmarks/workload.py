"""The benchmark workload (deterministic for a seed), shared by every benchmark script.

N events ``{user_id 0..9999, ts_ms from 1_700_000_000_000 growing 0..20 ms per record with 1%
pulled back 1..5000 ms (late), amount (2 decimals, |amount| in 0.01..500, 5% negative), page one
of 20}``; a profiles table of 10,000 rows ``{user_id, country one of 30, tier one of 3}``.

P1: filter amount > 0, add amount_cents.
P2: P1, then per user_id 60 s tumbling event-time windows, grace 5 s, sum(amount) and count,
    final results (emit on close).
P3: P1 joined with profiles by user_id, then per country 60 s tumbling count.
P4: per user_id session windows with a 30 s gap, count per session.
"""

from __future__ import annotations

import random
from typing import Any

START_MS = 1_700_000_000_000
USERS = 10_000
PAGES = [f"/page/{i}" for i in range(20)]
COUNTRIES = [f"C{i:02d}" for i in range(30)]
TIERS = ["free", "pro", "enterprise"]


def events(n: int, seed: int = 42) -> list[dict[str, Any]]:
    """``n`` click events (see the module docstring)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    ts = START_MS
    rand, randint = rng.random, rng.randint
    for _ in range(n):
        ts += randint(0, 20)
        t = ts - randint(1, 5000) if rand() < 0.01 else ts
        cents = randint(1, 50_000)
        if rand() < 0.05:
            cents = -cents
        out.append({
            "user_id": randint(0, USERS - 1),
            "ts": t,
            "amount": cents / 100,
            "page": PAGES[randint(0, 19)],
        })
    return out


def profiles(seed: int = 7) -> list[dict[str, Any]]:
    """The 10,000-row profiles table."""
    rng = random.Random(seed)
    return [
        {"user_id": u, "country": COUNTRIES[rng.randint(0, 29)], "tier": TIERS[rng.randint(0, 2)]}
        for u in range(USERS)
    ]
