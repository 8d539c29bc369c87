"""Daily windows in local time: timers, time-of-use slots, load-shedding slots.

A :class:`DailyWindow` is ``start``–``end`` in the home's local wall-clock time
("HH:MM", end exclusive), optionally limited to some weekdays and months.  A
window whose end is not after its start crosses midnight: ``22:00``–``00:30``
covers 22:00 … 00:29:59 of the next morning.  ``end="24:00"`` means midnight at
the end of the day.  ``start == end`` is refused (ambiguous: empty or all day);
write ``00:00``–``24:00`` for the whole day.

Weekday and month filters apply to the day the window *starts* on: a Friday
22:00–02:00 slot also covers the first two hours of Saturday.

Masks are evaluated on local wall-clock time, so a 17:00 slot stays at 17:00
local on both sides of a DST change (its UTC hour moves).  On the spring-forward
day a slot inside the skipped hour is empty; on the autumn day the repeated hour
is in the slot twice.

Times can be given two ways:

* a tz-aware ``pandas.DatetimeIndex`` in the home's zone (``Window.local_times``), or
* a numpy int array of *local wall-clock seconds* (seconds since 1970-01-01 00:00
  of the local wall clock, i.e. UTC epoch seconds + UTC offset), which
  :class:`LocalClock` computes from ``Window.epoch_s`` without pandas — the fast
  path for 1-step windows.

Public API::

    parse_hhmm("22:30") -> 1350.0                    # minutes after local midnight
    DailyWindow(start="22:00", end="00:30", days=["fri"], months=[6, 7])
    daily_mask(local_times, start="22:00", end="00:30", days=None, months=None) -> bool ndarray
    window_mask(local_times, window) -> bool ndarray
    any_mask(local_times, windows) -> bool ndarray
    overlap_fraction(local_times, dt_s, window) -> float ndarray   # share of each step inside
    LocalClock("Europe/Oslo").wall_seconds(epoch_s) -> int64 ndarray
    wall_seconds(local_times) -> int64 ndarray
    minute_of_day(ws), weekday(ws), month(ws), day_of_month(ws), local_day(ws)
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Literal, Sequence, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, field_validator, model_validator

from hometwin.element import STRICT

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 1440
DAY_S = 86400
_HHMM_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")

LocalTimes = Union[pd.DatetimeIndex, np.ndarray]


@lru_cache(maxsize=4096)
def parse_hhmm(text: str) -> float:
    """``"HH:MM"`` (or ``"HH:MM:SS"``) → minutes after local midnight, 0 … 1440.

    ``"24:00"`` is allowed (end of day); anything else out of range raises
    ``ValueError`` naming the value.
    """
    if not isinstance(text, str):
        raise ValueError(f"must be a time 'HH:MM' (got {text!r})")
    match = _HHMM_RE.match(text)
    if not match:
        raise ValueError(f"must be a time 'HH:MM' (got {text!r})")
    hh, mm, ss = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    if mm > 59 or ss > 59 or hh > 24 or (hh == 24 and (mm or ss)):
        raise ValueError(f"must be a time between 00:00 and 24:00 (got {text!r})")
    return hh * 60 + mm + ss / 60.0


class DailyWindow(BaseModel):
    """A daily local-time window ``start``–``end`` (end exclusive; crosses midnight if end <= start)."""

    model_config = STRICT

    start: str = Field(description="[HH:MM] local start time")
    end: str = Field(description="[HH:MM] local end time (exclusive); 24:00 = end of day; "
                                 "end <= start crosses midnight")
    days: list[Weekday] | None = Field(None, description="weekdays the window starts on (None = every day)")
    months: list[int] | None = Field(None, description="months 1-12 the window starts in (None = every month)")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        parse_hhmm(value)
        return value

    @field_validator("months")
    @classmethod
    def _months(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            bad = [m for m in value if not 1 <= m <= 12]
            if bad:
                raise ValueError(f"months must be 1-12 (got {bad})")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> "DailyWindow":
        start, end = parse_hhmm(self.start), parse_hhmm(self.end)
        whole_day = start % MINUTES_PER_DAY == 0 and end == MINUTES_PER_DAY
        if start % MINUTES_PER_DAY == end % MINUTES_PER_DAY and not whole_day:
            raise ValueError(f"start and end are the same time ({self.start}-{self.end}); "
                             "use 00:00-24:00 for the whole day")
        return self

    @property
    def start_min(self) -> float:
        """Start in minutes after local midnight (0 ≤ start < 1440)."""
        return parse_hhmm(self.start) % MINUTES_PER_DAY

    @property
    def end_min(self) -> float:
        """End in minutes after the start day's midnight (> start; > 1440 when crossing midnight)."""
        end = parse_hhmm(self.end)
        return end if end > self.start_min else end + MINUTES_PER_DAY

    @property
    def duration_min(self) -> float:
        return self.end_min - self.start_min


# -- local wall-clock seconds ----------------------------------------------------------------

class LocalClock:
    """UTC epoch seconds → local wall-clock seconds of one IANA zone, numpy only.

    The zone's UTC offsets are tabulated (15-minute resolution, exact at the
    transitions of every real zone) for the years asked so far; a lookup is one
    ``searchsorted``.
    """

    def __init__(self, timezone: str):
        self.timezone = timezone
        self._years: tuple[int, int] | None = None
        self._edges = np.zeros(0, dtype=np.int64)  # epoch s where an offset starts
        self._offsets = np.zeros(0, dtype=np.int64)

    def _cover(self, lo_s: int, hi_s: int) -> None:
        y0 = int(np.datetime64(int(lo_s), "s").astype("datetime64[Y]").astype(int)) + 1970 - 1
        y1 = int(np.datetime64(int(hi_s), "s").astype("datetime64[Y]").astype(int)) + 1970 + 1
        if self._years is not None and self._years[0] <= y0 and y1 <= self._years[1]:
            return
        if self._years is not None:
            y0, y1 = min(y0, self._years[0]), max(y1, self._years[1])
        grid = pd.date_range(f"{y0}-01-01", f"{y1 + 1}-01-01", freq="15min", tz="UTC")
        local = grid.tz_convert(self.timezone)
        offsets = (local.tz_localize(None).as_unit("s").asi8 - grid.as_unit("s").asi8).astype(np.int64)
        change = np.flatnonzero(np.diff(offsets)) + 1
        idx = np.concatenate([[0], change])
        self._edges = grid.as_unit("s").asi8[idx].astype(np.int64)
        self._offsets = offsets[idx]
        self._years = (y0, y1)

    def offsets(self, epoch_s: np.ndarray) -> np.ndarray:
        """UTC offset in seconds at each epoch second."""
        epoch_s = np.asarray(epoch_s, dtype=np.int64)
        if epoch_s.size == 0:
            return np.zeros(0, dtype=np.int64)
        self._cover(int(epoch_s.min()), int(epoch_s.max()))
        i = np.searchsorted(self._edges, epoch_s, side="right") - 1
        return self._offsets[np.maximum(i, 0)]

    def wall_seconds(self, epoch_s: np.ndarray) -> np.ndarray:
        """Local wall-clock seconds (epoch + UTC offset) of each epoch second."""
        epoch_s = np.asarray(epoch_s, dtype=np.int64)
        return epoch_s + self.offsets(epoch_s)


def wall_seconds(local_times: LocalTimes) -> np.ndarray:
    """Local wall-clock seconds of tz-aware local timestamps (an int array is returned as is)."""
    if isinstance(local_times, pd.DatetimeIndex):
        if local_times.tz is None:
            raise ValueError("local_times must be tz-aware (the home's zone) or wall-clock seconds")
        return local_times.tz_localize(None).as_unit("s").asi8.astype(np.int64)
    return np.asarray(local_times, dtype=np.int64)


def local_day(ws: np.ndarray) -> np.ndarray:
    """Local day number (days since 1970-01-01 on the local calendar)."""
    return np.floor_divide(ws, DAY_S)


def minute_of_day(ws: np.ndarray) -> np.ndarray:
    """Minutes after local midnight (fractional)."""
    return np.mod(ws, DAY_S) / 60.0


def weekday(ws: np.ndarray) -> np.ndarray:
    """Local weekday, Monday = 0 … Sunday = 6 (1970-01-01 was a Thursday)."""
    return np.mod(local_day(ws) + 3, 7)


def month(ws: np.ndarray) -> np.ndarray:
    """Local month 1–12."""
    return local_day(ws).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12 + 1


def day_of_month(ws: np.ndarray) -> np.ndarray:
    """Local day of the month 1–31."""
    days = local_day(ws).astype("datetime64[D]")
    return (days - days.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1


# -- masks -------------------------------------------------------------------------------------

def _day_ok(ws_day: np.ndarray, days: Sequence[str] | None, months: Sequence[int] | None) -> np.ndarray:
    """True where the local day containing ``ws_day`` passes the weekday/month filter."""
    ok = np.ones(np.shape(ws_day), dtype=bool)
    if days is not None:
        ok &= np.isin(weekday(ws_day), [WEEKDAYS.index(d) for d in days])
    if months is not None:
        ok &= np.isin(month(ws_day), list(months))
    return ok


def window_mask(local_times: LocalTimes, window: DailyWindow) -> np.ndarray:
    """True where a local time lies in ``window`` (a :class:`DailyWindow`)."""
    ws = wall_seconds(local_times)
    minutes = minute_of_day(ws)
    s, e = window.start_min, window.end_min
    filtered = window.days is not None or window.months is not None
    if e <= MINUTES_PER_DAY:
        mask = (minutes >= s) & (minutes < e)
        return mask & _day_ok(ws, window.days, window.months) if filtered else mask
    today = minutes >= s  # the evening part, started today
    tomorrow = minutes < e - MINUTES_PER_DAY  # the morning part, started yesterday
    if filtered:
        today &= _day_ok(ws, window.days, window.months)
        tomorrow &= _day_ok(ws - DAY_S, window.days, window.months)
    return today | tomorrow


def daily_mask(local_times: LocalTimes, start: str = "00:00", end: str = "24:00",
               days: Sequence[str] | None = None, months: Sequence[int] | None = None) -> np.ndarray:
    """True where a local time lies in the daily window ``start``–``end``.

    Parameters
    ----------
    local_times : tz-aware DatetimeIndex in the home's zone, or local wall-clock seconds.
    start, end : "HH:MM" local; end exclusive; end <= start crosses midnight.
    days : weekdays ("mon" … "sun") the window starts on; None = every day.
    months : months (1–12) the window starts in; None = every month.
    """
    window = DailyWindow(start=start, end=end, days=list(days) if days is not None else None,
                         months=list(months) if months is not None else None)
    return window_mask(local_times, window)


def any_mask(local_times: LocalTimes, windows: Iterable[DailyWindow]) -> np.ndarray:
    """True where any of ``windows`` covers the local time."""
    ws = wall_seconds(local_times)
    mask = np.zeros(ws.shape, dtype=bool)
    for window in windows:
        mask |= window_mask(ws, window)
    return mask


def overlap_fraction(local_times: LocalTimes, dt_s: float, window: DailyWindow) -> np.ndarray:
    """Share (0–1) of each step ``[t, t + dt_s)`` of local wall-clock time inside ``window``.

    With steps aligned to the window's edges this equals :func:`window_mask`;
    a window starting mid-step counts the fraction.  Measured on the wall clock
    (a step spanning a DST jump is taken at its wall-clock length).
    """
    ws = wall_seconds(local_times)
    dt_min = dt_s / 60.0
    t0 = minute_of_day(ws)
    s, e = window.start_min, window.end_min
    filtered = window.days is not None or window.months is not None
    frac = np.zeros(ws.shape)
    # occurrences of the window started yesterday, today and tomorrow (relative to each step's day)
    for shift_days in (-1, 0, 1):
        shift = shift_days * MINUTES_PER_DAY
        part = np.clip(np.minimum(t0 + dt_min, e + shift) - np.maximum(t0, s + shift), 0.0, None)
        if filtered:
            part = np.where(_day_ok(ws + shift_days * DAY_S, window.days, window.months), part, 0.0)
        frac += part
    return np.clip(frac / dt_min, 0.0, 1.0)
