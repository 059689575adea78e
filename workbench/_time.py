"""Durations and timestamps: everything becomes epoch milliseconds (int) inside workbench."""

from __future__ import annotations

import datetime as _dt
import math
import re
from typing import Any

from .errors import DefinitionError

DurationLike = str | int | float | _dt.timedelta

_UNITS = {
    "ms": 1,
    "s": 1000,
    "sec": 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|sec|s|min|m|h|d)\s*$")


def duration_ms(value: Any, what: str = "duration") -> int:
    """Convert ``"5s"``, ``"1.5m"``, ``timedelta`` or milliseconds into whole milliseconds.

    >>> duration_ms("5s"), duration_ms("2m"), duration_ms(250)
    (5000, 120000, 250)
    """
    if isinstance(value, bool):
        raise DefinitionError(f"{what} must be a duration, got {value!r}.")
    if isinstance(value, _dt.timedelta):
        ms = value / _dt.timedelta(milliseconds=1)
    elif isinstance(value, int | float):
        ms = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise DefinitionError(
                f"{what} {value!r} is not a duration. Use e.g. '500ms', '5s', '10m', '1h', '1d', "
                "a timedelta or milliseconds."
            )
        ms = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise DefinitionError(
            f"{what} must be a string like '5s', a timedelta or milliseconds, got {value!r}."
        )
    if not math.isfinite(ms) or ms > MAX_MS:
        raise DefinitionError(f"{what} must be a finite duration (at most {MAX_MS} ms, about "
                              f"3,000 years), got {value!r}.")
    if ms < 0 or ms != int(ms):
        raise DefinitionError(f"{what} must be a whole, non-negative number of ms, got {value!r}.")
    return int(ms)


#: the largest epoch-ms timestamp accepted: 10**14 ms is the year 5138; larger values are
#: almost always micro- or nanoseconds mistaken for milliseconds
MAX_MS = 10**14


def check_ms(t: int) -> int:
    """``t`` if it is a plausible epoch-ms timestamp, else a ``ValueError`` that says what is
    wrong (negative, or micro/nanoseconds mistaken for milliseconds).

    >>> check_ms(1_700_000_000_000)
    1700000000000
    """
    if 0 <= t <= MAX_MS:
        return t
    if t < 0:
        raise ValueError(f"negative timestamp {t} (before 1970); event times must be >= 0 ms "
                         "since the epoch, as in Kafka")
    unit = "nanoseconds" if t >= 10**17 else "microseconds"
    factor = 1_000_000 if unit == "nanoseconds" else 1_000
    raise ValueError(
        f"timestamp {t} is too large for epoch milliseconds (that would be after the year "
        f"5138); it looks like {unit} since the epoch. Divide by {factor:,} (or give time= a "
        f"function, e.g. lambda v: v['ts'] // {factor}), or convert the column with "
        f"pd.to_datetime(..., unit='{'ns' if factor == 1_000_000 else 'us'}')")


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def to_epoch_ms(value: Any) -> int:
    """Convert a timestamp-like value to epoch milliseconds.

    Accepts int/float epoch milliseconds, ``datetime`` (naive means UTC), pandas ``Timestamp``,
    numpy ``datetime64`` and ISO-8601 strings.

    >>> to_epoch_ms("2024-01-01T00:00:00Z")
    1704067200000
    """
    if isinstance(value, bool):
        raise TypeError(f"not a timestamp: {value!r}")
    if isinstance(value, int):
        return check_ms(value)
    if isinstance(value, float):
        if value != value:  # NaN
            raise TypeError("timestamp is missing (NaN)")
        if not math.isfinite(value):
            raise TypeError(f"timestamp is not finite ({value!r})")
        return check_ms(int(value))
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return check_ms(int((value - _EPOCH) // _dt.timedelta(milliseconds=1)))
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return check_ms(int(text))
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            return to_epoch_ms(_dt.datetime.fromisoformat(text))
        except ValueError:
            raise TypeError(f"not a timestamp: {value!r}") from None
    as_ms = getattr(value, "value", None)  # pandas Timestamp: ns since epoch
    if isinstance(as_ms, int) and hasattr(value, "tz_localize"):
        return check_ms(as_ms // 1_000_000)
    if type(value).__name__ == "datetime64":
        return check_ms(int(value.astype("datetime64[ms]").astype("int64")))
    if hasattr(value, "__int__"):  # numpy integers
        return to_epoch_ms(int(value)) if not isinstance(value, int) else check_ms(value)
    raise TypeError(f"not a timestamp: {value!r}")


def format_ms(ms: Any) -> str:
    """An epoch-millisecond timestamp as a UTC date for messages and views (``"–"`` for
    none, the number itself when it is not a valid time).

    >>> format_ms(1700000001852)
    '2023-11-14 22:13:21.852 UTC'
    """
    if ms is None or (isinstance(ms, int) and ms < 0):
        return "–"
    try:
        t = _EPOCH + _dt.timedelta(milliseconds=int(ms))
    except (OverflowError, ValueError, TypeError):
        return repr(ms)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d} UTC"
