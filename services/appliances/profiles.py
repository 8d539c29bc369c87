"""Pure functions for appliance power: timers, duty cycles, hourly and file profiles.

Arrays in, arrays out.  Times are UTC epoch seconds (``epoch_s``) or local
wall-clock seconds (``wall_s``, see :mod:`hometwin.schedule`); power in W,
energy in J, fractions 0–1 of a step.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from hometwin.datafiles import DataFileError, checked_column, mtime_key, parse_errors, read_text, shown
from hometwin.schedule import DAY_S, DailyWindow, overlap_fraction

WEEK_S = 7 * DAY_S
YEAR_S = 365 * DAY_S


def duty_cycle_fraction(epoch_s: np.ndarray, dt_s: float, period_s: float, on_fraction: float,
                        phase_s: float = 0.0) -> np.ndarray:
    """Share of each step ``[t, t + dt_s)`` during which a periodic cycle is on.

    The cycle is on for the first ``on_fraction · period_s`` of every period;
    periods start at ``phase_s`` (mod ``period_s``) after the Unix epoch, so the
    result depends only on time, never on how the run is cut into windows.
    Exact for any step length: it is the difference of the cumulative on-time
    ``F(x) = floor(x / P) · on · P + min(x mod P, on · P)``.
    """
    on_s = on_fraction * period_s

    def cumulative(x: np.ndarray) -> np.ndarray:
        return np.floor_divide(x, period_s) * on_s + np.minimum(np.mod(x, period_s), on_s)

    # F(x + kP) = F(x) + k·on·P: reduce to the first period for precision at epoch-sized x
    x0 = np.mod(np.asarray(epoch_s) - phase_s, period_s)
    return np.clip((cumulative(x0 + dt_s) - cumulative(x0)) / dt_s, 0.0, 1.0)


def timer_power(wall_s: np.ndarray, dt_s: float, timers: Sequence[DailyWindow],
                powers_w: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(mean running power [W], running fraction) per step from daily timers.

    Overlapping timers do not add up: the step takes the timer with the most
    energy (an appliance runs at one power at a time).
    """
    power = np.zeros(np.shape(wall_s))
    frac = np.zeros(np.shape(wall_s))
    for timer, p in zip(timers, powers_w):
        f = overlap_fraction(wall_s, dt_s, timer)
        better = f * p > power
        power = np.where(better, f * p, power)
        frac = np.where(better, f, frac)
    return power, frac


def mean_power(active_power_w: np.ndarray, active_fraction: np.ndarray, standby_w: float) -> np.ndarray:
    """Mean power over a step: running power for its share, standby for the rest."""
    return active_power_w + standby_w * (1.0 - active_fraction)


def hourly_profile(wall_s: np.ndarray, profile_w: Sequence[float]) -> np.ndarray:
    """Power [W] of a 24-value local-hour profile at each step's start."""
    hour = np.mod(wall_s, DAY_S) // 3600
    return np.asarray(profile_w, dtype=float)[hour.astype(np.int64)]


# -- power profiles from CSV files ------------------------------------------------------------

@dataclass(frozen=True)
class CyclicProfile:
    """A step function of power over a repeating period (day, week or 365-day year).

    ``keys`` are seconds into the period (local wall clock), sorted; ``values`` W.
    Before the first key of a period the last value of the previous period holds.
    """

    keys: np.ndarray
    values: np.ndarray
    period_s: int
    origin: Literal["day", "week", "year"]
    source: str

    def at(self, wall_s: np.ndarray) -> np.ndarray:
        """Power [W] at local wall-clock seconds."""
        key = period_key(np.asarray(wall_s, dtype=np.int64), self.origin)
        idx = np.searchsorted(self.keys, key, side="right") - 1
        return self.values[idx]  # idx == -1 wraps to the last value: cyclic


def period_key(wall_s: np.ndarray, repeat: Literal["day", "week", "year"]) -> np.ndarray:
    """Seconds into the local day, week (Monday 00:00) or year (Jan 1; Feb 29 folds onto Mar 1)."""
    if repeat == "day":
        return np.mod(wall_s, DAY_S)
    if repeat == "week":
        return np.mod(wall_s + 3 * DAY_S, WEEK_S)  # 1970-01-01 was a Thursday
    days = np.floor_divide(wall_s, DAY_S).astype("datetime64[D]")
    year_start = days.astype("datetime64[Y]").astype("datetime64[D]")
    doy = (days - year_start).astype(np.int64)
    leap = _is_leap(year_start)
    doy = np.where(leap & (doy >= 59), doy - 1, doy)  # Feb 29 and after: same key as a common year
    return doy * DAY_S + np.mod(wall_s, DAY_S)


def _is_leap(year_start: np.ndarray) -> np.ndarray:
    year = year_start.astype("datetime64[Y]").astype(np.int64) + 1970
    return (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))


def read_power_profile(path: str, timezone: str, repeat: Literal["day", "week", "year"] = "year",
                       time_column: str | None = None, value_column: str | None = None) -> CyclicProfile:
    """Read a CSV of time + power [W] as a cyclic profile in the home's local time.

    Times with an offset are converted to ``timezone``; naive times are taken
    as local wall-clock times.  The value column defaults to ``power_w`` (any
    case), else the second column.
    """
    return _read_profile_cached(path, mtime_key(path), timezone, repeat, time_column, value_column)


#: Largest power [W] in a profile file: 1 MW, beyond any home's connection.
MAX_PROFILE_W = 1e6


@lru_cache(maxsize=16)
def _read_profile_cached(path: str, mtime: tuple[float, int], timezone: str, repeat: str,
                         time_column: str | None, value_column: str | None) -> CyclicProfile:
    what = "power profile file"
    text = read_text(path, what)  # bounded, regular files only (hometwin.datafiles)
    with parse_errors(path, what):
        frame = pd.read_csv(io.StringIO(text))
    if len(frame.columns) == 0:
        raise DataFileError(f"{what} {shown(path)}: no columns")
    tcol = time_column or frame.columns[0]
    if value_column is None:
        lower = {str(c).lower(): c for c in frame.columns}
        value_column = lower.get("power_w", frame.columns[1] if len(frame.columns) > 1 else None)
    for col in (tcol, value_column):
        if col is None or col not in frame.columns:
            names = ", ".join(shown(c) for c in list(frame.columns)[:30])
            raise DataFileError(f"{path}: no column {shown(col)} (columns: {names})")
    frame = frame[[tcol, value_column]].dropna()
    with parse_errors(path, what):
        times = pd.DatetimeIndex(pd.to_datetime(frame[tcol].astype(str), format="mixed"))
    if times.tz is not None:
        times = times.tz_convert(timezone).tz_localize(None)
    wall = times.as_unit("s").asi8.astype(np.int64)
    keys = period_key(wall, repeat)  # type: ignore[arg-type]
    values = checked_column(frame, value_column, path, what, -MAX_PROFILE_W, MAX_PROFILE_W, " W")
    order = np.argsort(keys, kind="stable")
    period = {"day": DAY_S, "week": WEEK_S, "year": YEAR_S}[repeat]
    return CyclicProfile(keys[order], values[order], period, repeat, path)  # type: ignore[arg-type]
