"""Daily windows in local time: timers, time-of-use slots, load-shedding slots.

A :class:`DailyWindow` is ``start``–``end`` in the home's local wall-clock time
("HH:MM", end exclusive), optionally limited to some weekdays and months.  A
window whose end is not after its start crosses midnight: ``22:00``–``00:30``
covers 22:00 … 00:29:59 of the next morning.  ``end="24:00"`` means midnight at
the end of the day.  ``start == end`` is refused (ambiguous: empty or all day);
write ``00:00``–``24:00`` for the whole day.

Weekday and month filters apply to the day the window *starts* on: a Friday
22:00–02:00 slot also covers the first two hours of Saturday.

Masks are evaluated on tz-aware local timestamps (``Window.local_times``), so a
17:00 slot stays at 17:00 local on both sides of a DST change (its UTC hour
moves).  On the spring-forward day a slot inside the skipped hour is simply
empty; on the autumn day the repeated hour is in the slot twice.

Public API::

    parse_hhmm("22:30") -> 1350            # minutes after local midnight
    DailyWindow(start="22:00", end="00:30", days=["fri"], months=[6, 7])
    daily_mask(local_times, start="22:00", end="00:30", days=None, months=None) -> bool ndarray
    window_mask(local_times, window) -> bool ndarray
    any_mask(local_times, windows) -> bool ndarray
    local_minutes(local_times) -> float ndarray   # minutes after local midnight (with seconds)
    overlap_fraction(local_times, dt_s, window) -> float ndarray  # share of each step inside
"""

from __future__ import annotations

import re
from typing import Iterable, Literal, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")
MINUTES_PER_DAY = 1440


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

    model_config = ConfigDict(extra="forbid")

    start: str = Field(description="[HH:MM] local start time")
    end: str = Field(description="[HH:MM] local end time (exclusive); 24:00 = end of day")
    days: list[Weekday] | None = Field(None, description="weekdays the window starts on (None = every day)")
    months: list[int] | None = Field(None, description="months 1-12 the window starts in (None = all)")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        parse_hhmm(value)
        return value

    @field_validator("months")
    @classmethod
    def _months(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return value
        bad = [m for m in value if not 1 <= m <= 12]
        if bad:
            raise ValueError(f"months must be 1-12 (got {bad})")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> "DailyWindow":
        if parse_hhmm(self.start) % MINUTES_PER_DAY == parse_hhmm(self.end) % MINUTES_PER_DAY:
            raise ValueError(f"start and end are the same time ({self.start}-{self.end}); "
                             "use 00:00-24:00 for the whole day")
        return self

    @property
    def start_min(self) -> float:
        return parse_hhmm(self.start) % MINUTES_PER_DAY

    @property
    def end_min(self) -> float:
        end = parse_hhmm(self.end)
        return end if end > self.start_min else end + MINUTES_PER_DAY

    @property
    def duration_min(self) -> float:
        return self.end_min - self.start_min


def local_minutes(local_times: pd.DatetimeIndex) -> np.ndarray:
    """Minutes after local midnight (fractional) of tz-aware local timestamps."""
    return (local_times.hour.to_numpy() * 60 + local_times.minute.to_numpy()
            + local_times.second.to_numpy() / 60.0).astype(float)


def _day_ok(weekday: np.ndarray, month: np.ndarray, days: Sequence[str] | None,
            months: Sequence[int] | None) -> np.ndarray:
    ok = np.ones(weekday.shape, dtype=bool)
    if days is not None:
        ok &= np.isin(weekday, [WEEKDAYS.index(d) for d in days])
    if months is not None:
        ok &= np.isin(month, list(months))
    return ok


def _prev_day(weekday: np.ndarray, local_times: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Weekday and month of the previous local day (for windows crossing midnight)."""
    prev = (local_times.normalize() - pd.Timedelta(hours=12))
    return prev.weekday.to_numpy(), prev.month.to_numpy()


def daily_mask(local_times: pd.DatetimeIndex, start: str = "00:00", end: str = "24:00",
               days: Sequence[str] | None = None, months: Sequence[int] | None = None) -> np.ndarray:
    """True where a local timestamp lies in the daily window ``start``–``end``.

    Parameters
    ----------
    local_times : tz-aware DatetimeIndex in the home's time zone (``Window.local_times``).
    start, end : "HH:MM" local; end exclusive; end <= start crosses midnight.
    days : weekdays ("mon" … "sun") the window starts on; None = every day.
    months : months (1–12) the window starts in; None = every month.
    """
    return window_mask(local_times, DailyWindow(start=start, end=end, days=list(days) if days else None,
                                                months=list(months) if months else None))


def window_mask(local_times: pd.DatetimeIndex, window: DailyWindow) -> np.ndarray:
    """Boolean mask of ``window`` (a :class:`DailyWindow`) over ``local_times``."""
    minutes = local_minutes(local_times)
    s, e = window.start_min, window.end_min
    filtered = window.days is not None or window.months is not None
    weekday = local_times.weekday.to_numpy() if filtered else None
    month = local_times.month.to_numpy() if filtered else None
    if e <= MINUTES_PER_DAY:
        mask = (minutes >= s) & (minutes < e)
        if filtered:
            mask &= _day_ok(weekday, month, window.days, window.months)
        return mask
    today = minutes >= s  # the evening part, started today
    tomorrow = minutes < e - MINUTES_PER_DAY  # the morning part, started yesterday
    if filtered:
        today &= _day_ok(weekday, month, window.days, window.months)
        pw, pm = _prev_day(weekday, local_times)
        tomorrow &= _day_ok(pw, pm, window.days, window.months)
    return today | tomorrow


def any_mask(local_times: pd.DatetimeIndex, windows: Iterable[DailyWindow]) -> np.ndarray:
    """True where any of ``windows`` covers the timestamp."""
    mask = np.zeros(len(local_times), dtype=bool)
    for window in windows:
        mask |= window_mask(local_times, window)
    return mask


def overlap_fraction(local_times: pd.DatetimeIndex, dt_s: float, window: DailyWindow) -> np.ndarray:
    """Share (0–1) of each step ``[t, t + dt_s)`` that lies inside ``window``.

    Exact for steps that do not span a DST change or a day filter boundary;
    with steps aligned to the window's edges it equals :func:`window_mask`.
    The step is measured in local wall-clock minutes from its start.
    """
    dt_min = dt_s / 60.0
    t0 = local_minutes(local_times)
    s, e = window.start_min, window.end_min
    frac = np.zeros(len(t0))
    # the window's occurrences relative to each step's local day: yesterday's, today's, tomorrow's
    for shift in (-MINUTES_PER_DAY, 0.0, MINUTES_PER_DAY):
        lo = np.maximum(t0, s + shift)
        hi = np.minimum(t0 + dt_min, e + shift)
        part = np.clip(hi - lo, 0.0, None)
        if window.days is not None or window.months is not None:
            day = local_times.normalize() + pd.Timedelta(hours=12) + pd.Timedelta(minutes=shift)
            part = np.where(_day_ok(day.weekday.to_numpy(), day.month.to_numpy(), window.days, window.months),
                            part, 0.0)
        frac += part
    return np.clip(frac / dt_min, 0.0, 1.0)
