"""Comparable forms of every side's result, and the check that they are equal.

Each case has one canonical form, a sorted DataFrame with fixed columns and dtypes plus the late
count:

* ``copy``: ``key, timestamp, user_id, ts, amount, page`` (a raw copy of the events);
* ``P1``: ``key, timestamp, user_id, ts, amount, page, amount_cents``;
* ``P2``: ``user_id, window_start, total_cents, n`` (the total in whole cents: float sums of
  cents added in a different order may differ in the last bit);
* ``P3``: ``country, window_start, n``;
* ``P4``: ``user_id, start, end, n`` (the latest value of each session; merged-away sessions,
  whose latest value is a tombstone, are gone).

:func:`differences` lists the first rows that differ; the scripts exit non-zero when any
reference's result differs from workbench's.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = {
    "copy": {"key": "int64", "timestamp": "int64", "user_id": "int64", "ts": "int64",
             "amount": "float64", "page": "str"},
    "P1": {"key": "int64", "timestamp": "int64", "user_id": "int64", "ts": "int64",
           "amount": "float64", "page": "str", "amount_cents": "int64"},
    "P2": {"user_id": "int64", "window_start": "int64", "total_cents": "int64", "n": "int64"},
    "P3": {"country": "str", "window_start": "int64", "n": "int64"},
    "P4": {"user_id": "int64", "start": "int64", "end": "int64", "n": "int64"},
}


@dataclass
class Canonical:
    """One side's result in the case's canonical form."""

    case: str
    frame: pd.DataFrame
    late: int | None

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def load(path: str | Path) -> Canonical:
        with open(path, "rb") as f:
            obj = pickle.load(f)
        assert isinstance(obj, Canonical)
        return obj


def _finish(case: str, frame: pd.DataFrame, late: int | None) -> Canonical:
    cols = COLUMNS[case]
    frame = frame[list(cols)].astype(cols)
    frame = frame.sort_values(list(cols), kind="stable").reset_index(drop=True)
    return Canonical(case, frame, late)


def _ms(col: pd.Series) -> pd.Series:
    """Epoch milliseconds of a datetime column (any unit), or the column if numeric."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return (col - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    return col


def _cents(col: pd.Series) -> pd.Series:
    return (col.astype("float64") * 100).round()


def from_rows(case: str, rows: list[dict[str, Any]], late: int | None = None) -> Canonical:
    """From event-like dicts (P1, copy): key and timestamp are ``user_id`` and ``ts``."""
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS[case] if c not in
                                        ("key", "timestamp")])
    frame["key"] = frame["user_id"]
    frame["timestamp"] = frame["ts"]
    return _finish(case, frame, late)


def from_loop(case: str, result: Any, late: int | None) -> Canonical:
    """From a ``references.loop_*`` result."""
    if case in ("P1", "copy"):
        return from_rows(case, result, late)
    items = list(result.items())
    if case == "P2":
        frame = pd.DataFrame([(u, s, round(v[0] * 100), v[1]) for (u, s), v in items],
                             columns=list(COLUMNS["P2"]))
    elif case == "P3":
        frame = pd.DataFrame([(c, s, v) for (c, s), v in items], columns=list(COLUMNS["P3"]))
    else:
        frame = pd.DataFrame([(*k, v) for k, v in items], columns=list(COLUMNS["P4"]))
    return _finish(case, frame, late)


def from_pandas(case: str, result: pd.DataFrame, late: int | None) -> Canonical:
    """From a ``references.pandas_*`` result."""
    if case == "P1":
        frame = result.assign(key=result["user_id"], timestamp=result["ts"])
    elif case == "P2":
        frame = result.reset_index()
        frame["total_cents"] = _cents(frame["total"])
    elif case == "P3":
        frame = result.reset_index()
    else:
        frame = result
    return _finish(case, frame, late)


def from_frame(case: str, frame: pd.DataFrame, late: int | None) -> Canonical:
    """From workbench's ``run.frame(sink)`` (windowed keys: the first column is the key)."""
    frame = frame.copy()
    if case in ("P1", "copy"):
        frame["timestamp"] = _ms(frame["timestamp"])
        return _finish(case, frame, late)
    key = frame.columns[0]
    value = "n" if "n" in frame.columns else "value"
    frame["window_start"] = _ms(frame["window_start"])
    if case == "P2":
        frame = frame.rename(columns={key: "user_id"})
        frame["total_cents"] = _cents(frame["total"])
    elif case == "P3":
        frame = frame.rename(columns={key: "country", value: "n"})
    else:
        frame["window_end"] = _ms(frame["window_end"])
        frame = frame.rename(columns={key: "user_id", value: "n", "window_start": "start",
                                      "window_end": "end"})
        frame = frame.drop_duplicates(["user_id", "start", "end"], keep="last")
        frame = frame[frame["n"].notna()]
    return _finish(case, frame, late)


def differences(a: Canonical, b: Canonical, name_a: str, name_b: str,
                limit: int = 5) -> list[str]:
    """What differs between two results of the same case (empty when they are equal)."""
    out: list[str] = []
    if a.late != b.late:
        out.append(f"late records: {name_a} {a.late}, {name_b} {b.late}")
    fa, fb = a.frame, b.frame
    if len(fa) == len(fb) and fa.equals(fb):
        return out
    cols = list(fa.columns)
    fa = fa.assign(_dup=fa.groupby(cols, sort=False).cumcount())
    fb = fb.assign(_dup=fb.groupby(cols, sort=False).cumcount())
    m = fa.merge(fb, how="outer", on=[*cols, "_dup"], indicator=True)
    only_a = m[m["_merge"] == "left_only"][cols]
    only_b = m[m["_merge"] == "right_only"][cols]
    out.append(f"{len(fa):,} rows in {name_a}, {len(fb):,} in {name_b}; {len(only_a):,} only in "
               f"{name_a}, {len(only_b):,} only in {name_b}")
    for label, rows in ((name_a, only_a), (name_b, only_b)):
        for row in rows.head(limit).itertuples(index=False):
            out.append(f"  only in {label}: {dict(zip(cols, row))}")
    return out
