"""The benchmark workload (deterministic for a seed), shared by every benchmark script.

N click events ``{user_id 0..9999, ts (epoch ms), amount, page}``:

* ``ts`` starts at 1_700_000_000_000 and grows by 0..20 ms per record (about 10,000 s of event
  time per 1,000,000 events, so each user has about one event every 100 s);
* ``LATE_WITHIN_GRACE`` (1%) of the records are pulled back 1..5,000 ms: behind stream time, but
  within the pipelines' 5 s grace, so a window still counts them;
* ``LATE_BEYOND_GRACE`` (0.5%) are pulled back 6,000..120,000 ms: beyond grace. Whether such a
  record is dropped depends on the step: a 60 s tumbling window drops it when its window has
  closed (window end <= stream time - grace), a 30 s session when the session it would join
  ended more than gap + grace before stream time. Every script counts the dropped records
  (``.late``) on both sides and checks that the counts are equal;
* ``amount`` has 2 decimals, ``|amount|`` in 0.01..500, 5% negative; ``page`` one of 20.

A profiles table of 10,000 rows ``{user_id, country one of 30, tier one of 3}``.

P1: filter amount > 0, add amount_cents = round(amount * 100).
P2: P1, then per user_id 60 s tumbling event-time windows, grace 5 s, sum(amount) and count,
    final results (emit on close); late records to ``.late``.
P3: P1 joined with profiles by user_id, then per country 60 s tumbling counts (grace 5 s).
P4: per user_id session windows with a 30 s gap (grace 5 s), count per session (emit on update).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

START_MS = 1_700_000_000_000
USERS = 10_000
PAGES = [f"/page/{i}" for i in range(20)]
COUNTRIES = [f"C{i:02d}" for i in range(30)]
TIERS = ["free", "pro", "enterprise"]
LATE_WITHIN_GRACE = 0.01   # pulled back 1..5,000 ms
LATE_BEYOND_GRACE = 0.005  # pulled back 6,000..120,000 ms

WINDOW = 60_000  # P2, P3 tumbling windows
GRACE = 5_000    # every window's grace
GAP = 30_000     # P4 session gap


def event_columns(n: int, seed: int = 42) -> dict[str, list[Any]]:
    """``n`` click events as columns ``user_id, ts, amount, page`` (see the module docstring)."""
    rng = random.Random(seed)
    users: list[int] = []
    stamps: list[int] = []
    amounts: list[float] = []
    pages: list[str] = []
    ts = START_MS
    rand, randint = rng.random, rng.randint
    within = LATE_WITHIN_GRACE
    beyond = LATE_WITHIN_GRACE + LATE_BEYOND_GRACE
    for _ in range(n):
        ts += randint(0, 20)
        r = rand()
        if r < within:
            t = ts - randint(1, 5_000)
        elif r < beyond:
            t = ts - randint(6_000, 120_000)
        else:
            t = ts
        cents = randint(1, 50_000)
        if rand() < 0.05:
            cents = -cents
        users.append(randint(0, USERS - 1))
        stamps.append(t)
        amounts.append(cents / 100)
        pages.append(PAGES[randint(0, 19)])
    return {"user_id": users, "ts": stamps, "amount": amounts, "page": pages}


def events(n: int, seed: int = 42) -> list[dict[str, Any]]:
    """``n`` click events as a list of dicts (the same data as :func:`event_columns`)."""
    c = event_columns(n, seed)
    return [{"user_id": u, "ts": t, "amount": a, "page": p}
            for u, t, a, p in zip(c["user_id"], c["ts"], c["amount"], c["page"])]


def events_frame(n: int, seed: int = 42) -> pd.DataFrame:
    """``n`` click events as a DataFrame (the same data as :func:`events`)."""
    import numpy as np
    import pandas as pd

    c = event_columns(n, seed)
    return pd.DataFrame({"user_id": np.array(c.pop("user_id"), dtype="int64"),
                         "ts": np.array(c.pop("ts"), dtype="int64"),
                         "amount": np.array(c.pop("amount"), dtype="float64"),
                         "page": pd.array(c.pop("page"), dtype="str")})


def profiles(seed: int = 7) -> list[dict[str, Any]]:
    """The 10,000-row profiles table."""
    rng = random.Random(seed)
    return [
        {"user_id": u, "country": COUNTRIES[rng.randint(0, 29)], "tier": TIERS[rng.randint(0, 2)]}
        for u in range(USERS)
    ]


def profiles_frame(seed: int = 7) -> pd.DataFrame:
    """The profiles table as a DataFrame."""
    import pandas as pd

    return pd.DataFrame(profiles(seed))


def split_by_partition(rows: list[dict[str, Any]], partitions: int,
                       key: str = "user_id") -> list[list[dict[str, Any]]]:
    """The rows each partition of a ``partitions``-partition topic holds when they are appended
    keyed by ``key`` (workbench's Java-compatible murmur2 of the JSON key), in order."""
    if partitions == 1:
        return [rows]
    from workbench.partitioning import partition_for
    from workbench.serde import get_serde

    serialize = get_serde("json").serialize
    memo: dict[Any, int] = {}
    parts: list[list[dict[str, Any]]] = [[] for _ in range(partitions)]
    for r in rows:
        k = r[key]
        p = memo.get(k)
        if p is None:
            data = serialize(k)
            p = memo[k] = 0 if data is None else partition_for(data, partitions)
        parts[p].append(r)
    return parts
