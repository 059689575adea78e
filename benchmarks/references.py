"""The references the benchmarks compare workbench with, computing the same results.

* ``loop_*``: plain Python over a list of dicts, calling the same user functions per record as
  the lambda pipelines (:func:`pipelines.is_paid`, :func:`pipelines.add_cents`), with the
  stream-time rules of Kafka Streams that workbench follows (``docs/semantics.md``):

  - tumbling windows (P2, P3): a step's stream time is the largest timestamp it has seen
    (itself included); a record is late when its window ended at or before stream time - grace;
  - sessions (P4): a record is late when the session it would form or join ends before
    stream time - grace - gap; sessions that ended at or before (largest session end stored so
    far) - (gap + grace) have left the store and no longer merge.

  Stream time is per partition (per task): ``partitions`` > 1 splits the input as the driver
  would.
* ``pandas_*``: the same results from a DataFrame, vectorized (stream time is a running
  maximum). Sessions need the store's sequential rules only for records more than grace behind
  stream time (0.5% of the workload): :func:`pandas_p4` resolves the few sessions those touch
  with a short loop, everything else with group-bys.

Every function returns ``(result, late_count)``; ``results.py`` turns results into comparable
frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines import add_cents, is_paid
from workload import GAP, GRACE, WINDOW, split_by_partition

if TYPE_CHECKING:
    import pandas as pd

NO_TS = -(1 << 62)


# ---------------------------------------------------------------- plain-Python loops
def loop_p1(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], None]:
    """P1: the paid events with ``amount_cents``."""
    out = []
    append = out.append
    for e in events:
        if is_paid(e):
            append(add_cents(e))
    return out, None


def loop_p2(events: list[dict[str, Any]], partitions: int = 1
            ) -> tuple[dict[tuple[int, int], list[Any]], int]:
    """P2: ``{(user_id, window_start): [total, n]}`` of the closed windows, and the late count."""
    windows: dict[tuple[int, int], list[Any]] = {}
    late = 0
    for part in split_by_partition(events, partitions):
        st = NO_TS
        for e in part:
            if not is_paid(e):
                continue
            e = add_cents(e)
            t = e["ts"]
            if t > st:
                st = t
            start = t - t % WINDOW
            if start + WINDOW <= st - GRACE:
                late += 1
                continue
            k = (e["user_id"], start)
            acc = windows.get(k)
            if acc is None:
                windows[k] = [e["amount"], 1]
            else:
                acc[0] += e["amount"]
                acc[1] += 1
    return windows, late


def loop_p3(events: list[dict[str, Any]], profiles: list[dict[str, Any]]
            ) -> tuple[dict[tuple[str, int], int], int]:
    """P3: ``{(country, window_start): n}`` of the closed windows, and the late count."""
    by_user = {p["user_id"]: p for p in profiles}
    windows: dict[tuple[str, int], int] = {}
    late = 0
    st = NO_TS
    for e in events:
        if not is_paid(e):
            continue
        profile = by_user.get(e["user_id"])
        if profile is None:
            continue
        e = {**add_cents(e), **profile}
        t = e["ts"]
        if t > st:
            st = t
        start = t - t % WINDOW
        if start + WINDOW <= st - GRACE:
            late += 1
            continue
        k = (e["country"], start)
        windows[k] = windows.get(k, 0) + 1
    return windows, late


def loop_p4(events: list[dict[str, Any]]) -> tuple[dict[tuple[int, int, int], int], int]:
    """P4: ``{(user_id, start, end): n}`` as the sink's latest values say (merged sessions
    deleted), and the late count."""
    out: dict[tuple[int, int, int], int] = {}
    sessions: dict[int, list[list[int]]] = {}  # user -> [[start, end, n]] by end, visible only
    st = observed = NO_TS
    late = 0
    retention = GAP + GRACE
    for e in events:
        t = e["ts"]
        u = e["user_id"]
        visible = observed - retention
        if t > st:
            st = t
        found = sessions.get(u)
        if found is None:
            found = sessions[u] = []
        while found and found[0][1] <= visible:  # left the store: never merges again
            del found[0]
        ms = me = t
        n = 1
        first = nmerged = 0
        lo, hi = t - GAP, t + GAP
        for i, x in enumerate(found):
            if x[1] < lo:
                continue
            if x[0] > hi:
                break
            if not nmerged:
                first = i
            nmerged += 1
            n += x[2]
            if x[0] < ms:
                ms = x[0]
            if x[1] > me:
                me = x[1]
        if me < st - GRACE - GAP:
            late += 1
            continue
        if nmerged:
            for x in found[first:first + nmerged]:
                del out[(u, x[0], x[1])]
            del found[first:first + nmerged]
        i = first if nmerged else 0
        while i < len(found) and found[i][1] < me:
            i += 1
        found.insert(i, [ms, me, n])
        out[(u, ms, me)] = n
        if me > observed:
            observed = me
    return out, late


# ---------------------------------------------------------------- pandas
def pandas_p1(df: pd.DataFrame) -> tuple[pd.DataFrame, None]:
    """P1 from the events frame."""
    paid = df[df["amount"] > 0]
    return paid.assign(amount_cents=(paid["amount"] * 100).round()), None


def _closed_windows(df: pd.DataFrame, by: str, aggs: dict[str, Any]) -> tuple[pd.DataFrame, int]:
    start = df["ts"] - df["ts"] % WINDOW
    late = (start + WINDOW) <= (df["ts"].cummax() - GRACE)
    ok = df[~late].assign(window_start=start[~late])
    return ok.groupby([by, "window_start"], sort=False).agg(**aggs), int(late.sum())


def pandas_p2(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """P2 from the events frame: closed windows and the late count."""
    paid = df[df["amount"] > 0]
    return _closed_windows(paid, "user_id",
                           {"total": ("amount", "sum"), "n": ("amount", "size")})


def pandas_p3(df: pd.DataFrame, profiles: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """P3 from the events and profiles frames (an inner merge keeps the events' order)."""
    joined = df[df["amount"] > 0].merge(profiles, on="user_id", how="inner", sort=False)
    return _closed_windows(joined, "country", {"n": ("ts", "size")})


def pandas_p4(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """P4 from the events frame: ``user_id, start, end, n`` per session, and the late count.

    A user's events that lie within the gap of each other (a "segment") can only ever form
    sessions among themselves. A segment in which no record arrived more than grace behind
    stream time is exactly one session; the others (a few thousand records) are replayed with
    the store's rules.
    """
    import numpy as np
    import pandas as pd

    ts = df["ts"].to_numpy()
    users = df["user_id"].to_numpy()
    n = len(ts)
    st = np.maximum.accumulate(ts) if n else ts
    st_prev = np.concatenate(([NO_TS], st[:-1])) if n else ts
    special = ts <= st_prev - GRACE  # may be late, or meet a session that left the store
    order = np.lexsort((ts, users))
    u_sorted, t_sorted = users[order], ts[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (u_sorted[1:] != u_sorted[:-1]) | (np.diff(t_sorted) > GAP)
    seg = np.empty(n, dtype=np.int64)
    seg[order] = np.cumsum(new) - 1
    replay = np.isin(seg, np.unique(seg[special]))
    plain = pd.DataFrame({"user_id": users[~replay], "ts": ts[~replay], "seg": seg[~replay]})
    sessions = plain.groupby("seg", sort=False).agg(
        user_id=("user_id", "first"), start=("ts", "min"), end=("ts", "max"), n=("ts", "size"))
    idx = np.flatnonzero(replay)
    found_by_seg: dict[int, list[list[int]]] = {}
    out: dict[tuple[int, int, int], int] = {}
    late = 0
    retention = GAP + GRACE
    for u, t, sp, stp in zip(users[idx].tolist(), ts[idx].tolist(), seg[idx].tolist(),
                             st_prev[idx].tolist()):
        found = found_by_seg.setdefault(sp, [])
        visible = stp - retention  # the largest session end stored so far is stream time
        ms = me = t
        cnt = 1
        merged = [x for x in found if x[1] > visible and x[1] >= t - GAP and x[0] <= t + GAP]
        for x in merged:
            cnt += x[2]
            ms = min(ms, x[0])
            me = max(me, x[1])
        if me < max(stp, t) - GRACE - GAP:
            late += 1
            continue
        for x in merged:
            found.remove(x)
            del out[(u, x[0], x[1])]
        found.append([ms, me, cnt])
        out[(u, ms, me)] = cnt
    replayed = pd.DataFrame([(u, s, e, c) for (u, s, e), c in out.items()],
                            columns=["user_id", "start", "end", "n"])
    frame = pd.concat([sessions.reset_index(drop=True), replayed], ignore_index=True)
    return frame, late
