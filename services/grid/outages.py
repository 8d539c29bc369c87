"""Grid outages: explicit intervals, daily load-shedding slots, area schedules, random outages.

Every source gives a boolean mask over a window's steps (True = the grid is
off).  A step is off when its *start* lies in an outage.

Load-shedding area schedules use the eskom-calendar layout
``date_of_month,start_time,finsh_time,stage`` (SOURCES.md §3a): times are local,
the schedule repeats every month, the rows with ``stage == N`` are the complete
set of slots at stage N, and a slot whose finish is not after its start crosses
midnight into the next day (which may be the 1st of the next month).

Random outages are a pure function of time: the outages that *start* on UTC
day ``d`` are drawn from ``counter_rng(seed, d)`` — a Poisson number with mean
``per_year / 365.25``, uniform start times in the day, exponential durations
(truncated at 30 means, a probability of e^-30).
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, model_validator

from hometwin.datafiles import DataFileError, checked_column, mtime_key, parse_errors, read_text
from hometwin.element import DataFile, DateTime, STRICT
from hometwin.noise import counter_rng
from hometwin.schedule import DAY_S, DailyWindow, day_of_month, minute_of_day, parse_hhmm
from hometwin.services.grid.sources.eskomsepush import EskomSePushOutages

DAYS_PER_YEAR = 365.25
MAX_DURATION_MEANS = 30.0


class _Strict(BaseModel):
    model_config = STRICT


class OutageInterval(_Strict):
    """One outage from ``start`` to ``end`` (naive times are the home's local time)."""

    start: DateTime = Field(description="outage start (naive = home's local time)")
    end: DateTime = Field(description="outage end, exclusive (naive = home's local time)")

    @model_validator(mode="after")
    def _order(self) -> "OutageInterval":
        a, b = pd.Timestamp(self.start), pd.Timestamp(self.end)
        if (a.tzinfo is None) != (b.tzinfo is None):
            raise ValueError("start and end must both have an offset or both be naive")
        if b <= a:
            raise ValueError(f"end must be after start (got {self.start} to {self.end})")
        return self


class ScheduleOutages(_Strict):
    """A load-shedding area schedule (eskom-calendar CSV) at a fixed stage."""

    file: DataFile = Field(description="eskom-calendar area CSV; relative paths resolve against the spec's folder")
    stage: int = Field(ge=1, le=8, description="[-] load-shedding stage 1-8")


class RandomOutages(_Strict):
    """Unplanned outages: Poisson starts, exponential durations."""

    per_year: float = Field(ge=0, le=8760, description="[1 a-1] expected number of outages per year (at most one an hour)")
    mean_duration_h: float = Field(gt=0, le=720, description="[h] mean outage duration")


class OutageConfig(_Strict):
    """All outage sources; the grid is off when any of them says so."""

    intervals: list[OutageInterval] = Field(default_factory=list, description="explicit outages")
    daily: list[DailyWindow] = Field(default_factory=list, description="daily load-shedding slots (local time)")
    schedule: ScheduleOutages | None = Field(None, description="load-shedding area schedule at a stage")
    eskomsepush: EskomSePushOutages | None = Field(None, description=(
        "the load-shedding events EskomSePush announces for an area (token; docs/data-sources.md)"))
    random: RandomOutages | None = Field(None, description="random outages")


# -- explicit intervals ---------------------------------------------------------------------------

def intervals_epoch(intervals: list[OutageInterval], timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) in UTC epoch seconds, merged and sorted."""
    pairs = []
    for iv in intervals:
        a, b = pd.Timestamp(iv.start), pd.Timestamp(iv.end)
        if a.tzinfo is None:
            a = a.tz_localize(timezone, ambiguous=True, nonexistent="shift_forward")
            b = b.tz_localize(timezone, ambiguous=True, nonexistent="shift_forward")
        pairs.append((int(a.timestamp()), int(b.timestamp())))
    return merge_intervals(pairs)


def merge_intervals(pairs: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Union of half-open intervals as sorted, disjoint (starts, ends)."""
    starts, ends = [], []
    for a, b in sorted(pairs):
        if starts and a <= ends[-1]:
            ends[-1] = max(ends[-1], b)
        else:
            starts.append(a)
            ends.append(b)
    return np.asarray(starts, dtype=float), np.asarray(ends, dtype=float)


def in_intervals(epoch_s: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """True where ``epoch_s`` lies in one of the disjoint sorted intervals ``[starts, ends)``."""
    if len(starts) == 0:
        return np.zeros(np.shape(epoch_s), dtype=bool)
    idx = np.searchsorted(starts, epoch_s, side="right") - 1
    return (idx >= 0) & (epoch_s < ends[np.maximum(idx, 0)])


# -- load-shedding area schedules -----------------------------------------------------------------

@dataclass(frozen=True)
class StageTable:
    """Minute-of-day tables of one stage: ``today[dom, minute]`` and ``spill[dom, minute]``.

    ``today`` marks the slots that start on day-of-month ``dom``; ``spill`` the
    part after midnight of slots that started on ``dom`` (used on the next day).
    Index 0 is unused (days of the month are 1–31).
    """

    today: np.ndarray  # bool (32, 1440)
    spill: np.ndarray  # bool (32, 1440)
    slots: tuple[tuple[int, float, float], ...]  # (date_of_month, start_min, end_min>start)


def read_loadshedding_schedule(path: str, stage: int) -> StageTable:
    """Slots of ``stage`` from an eskom-calendar area CSV, as minute tables (read bounded, see
    :mod:`hometwin.datafiles`)."""
    return _read_schedule_cached(path, mtime_key(path), stage)


@lru_cache(maxsize=16)
def _read_schedule_cached(path: str, mtime: tuple[float, int], stage: int) -> StageTable:
    what = "load-shedding schedule file"
    text = read_text(path, what)
    with parse_errors(path, what):
        frame = pd.read_csv(io.StringIO(text), dtype=str)
    need = ["date_of_month", "start_time", "finsh_time", "stage"]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise DataFileError(f"{path}: missing columns {missing} (expected {','.join(need)})")
    stages = checked_column(frame, "stage", path, what, 0, 8)
    rows = frame[stages == stage]
    if rows.empty:
        raise DataFileError(f"{path}: no slots at stage {stage} "
                            f"(stages in the file: {sorted(set(stages[~np.isnan(stages)].astype(int).tolist()))})")
    doms = checked_column(rows, "date_of_month", path, what, 1, 31)
    today = np.zeros((32, 1440), dtype=bool)
    spill = np.zeros((32, 1440), dtype=bool)
    slots = []
    for line, dom_f, start_s, end_s in zip(rows.index, doms, rows["start_time"], rows["finsh_time"]):
        dom = int(dom_f)
        with parse_errors(path, f"{what} (line {int(line) + 2})"):
            s, e = parse_hhmm(start_s), parse_hhmm(end_s)
        if e <= s:
            e += 1440
        slots.append((dom, s, e))
        today[dom, int(np.ceil(s)):int(np.ceil(min(e, 1440)))] = True
        if e > 1440:
            spill[dom, :int(np.ceil(e - 1440))] = True
    return StageTable(today, spill, tuple(slots))


def schedule_mask(wall_s: np.ndarray, table: StageTable) -> np.ndarray:
    """True where local wall-clock seconds fall in a slot of the stage table."""
    minute = np.minimum(minute_of_day(wall_s).astype(np.int64), 1439)
    dom = day_of_month(wall_s)
    prev_dom = day_of_month(wall_s - DAY_S)
    return table.today[dom, minute] | table.spill[prev_dom, minute]


# -- random outages -------------------------------------------------------------------------------

def random_outages_of_day(seed: int, day: int, per_year: float, mean_duration_h: float) -> np.ndarray:
    """Outages starting on UTC day ``day`` (days since 1970): array of (start, end) epoch seconds."""
    rng = counter_rng(seed, day)
    count = rng.poisson(per_year / DAYS_PER_YEAR)
    if count == 0:
        return np.zeros((0, 2))
    starts = day * DAY_S + rng.uniform(0.0, DAY_S, count)
    mean_s = mean_duration_h * 3600.0
    durations = np.minimum(rng.exponential(mean_s, count), MAX_DURATION_MEANS * mean_s)
    return np.column_stack([starts, starts + durations])


def random_outages(seed: int, t0_s: float, t1_s: float, per_year: float,
                   mean_duration_h: float) -> np.ndarray:
    """All random outages overlapping ``[t0_s, t1_s)``: array of (start, end) epoch seconds."""
    lookback = int(np.ceil(MAX_DURATION_MEANS * mean_duration_h * 3600.0 / DAY_S))
    d0, d1 = int(t0_s // DAY_S) - lookback, int(t1_s // DAY_S)
    found = [random_outages_of_day(seed, d, per_year, mean_duration_h) for d in range(d0, d1 + 1)]
    out = np.concatenate(found) if found else np.zeros((0, 2))
    return out[(out[:, 1] > t0_s) & (out[:, 0] < t1_s)]
