"""Outages: eskom-calendar load-shedding schedules, daily slots, explicit intervals, random outages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hometwin.schedule import LocalClock
from hometwin.services.grid import outages as out
from hometwin.services.grid.model import Grid
from conftest import make_ctx, shared, window

SAST = "Africa/Johannesburg"
CPT1 = ("loadshedding", "eskom_calendar_schedule_city-of-cape-town-area-1.csv")
STELL = ("loadshedding", "eskom_calendar_schedule_western-cape-stellenbosch.csv")


def january_wall_s() -> np.ndarray:
    """Every minute of January 2023 (31 days) in local wall-clock seconds."""
    epoch = pd.date_range("2023-01-01", periods=31 * 1440, freq="min", tz=SAST).as_unit("s").asi8
    return LocalClock(SAST).wall_seconds(epoch)


# SOURCES.md §3a: 1.85, 3.71, 5.65, 7.5 h/day at stages 1-4 (= the file's slot hours / 31 days).
@pytest.mark.parametrize("area", [CPT1, STELL])
@pytest.mark.parametrize("stage, hours", [(1, 57.5 / 31), (2, 115 / 31), (3, 175 / 31), (4, 232.5 / 31)])
def test_hours_off_per_day_at_stages_1_to_4(area, stage, hours):
    table = out.read_loadshedding_schedule(str(shared(*area)), stage)
    off_h_per_day = out.schedule_mask(january_wall_s(), table).sum() / 60 / 31
    assert off_h_per_day == pytest.approx(hours, abs=1e-9)
    assert round(off_h_per_day, 2) == {1: 1.85, 2: 3.71, 3: 5.65, 4: 7.5}[stage]


def test_stage_8_counts_overlapping_slots_once():
    """SOURCES.md's ~13.8 h at stage 8 adds slot lengths; overlapping slots are off once: 13.53 h."""
    table = out.read_loadshedding_schedule(str(shared(*CPT1)), 8)
    slot_hours = sum(e - s for _, s, e in table.slots) / 60 / 31
    off = out.schedule_mask(january_wall_s(), table).sum() / 60 / 31
    assert slot_hours == pytest.approx(13.758, abs=1e-3)
    assert off == pytest.approx(13.532, abs=1e-3)


def test_slot_crossing_midnight_in_the_real_file():
    """Cape Town area 1, stage 1: the slot of the 24th is 22:00-00:30."""
    ctx = make_ctx(n_steps=6 * 60, step_s=60, start="2023-01-24T21:00:00+02:00", tz=SAST)
    g = Grid("grid", {"outages": {"schedule": {"file": str(shared(*CPT1)), "stage": 1}}}, ctx)
    w = window(ctx, 0, ctx.n_steps)
    avail = pd.Series(g.signals(w, {})["grid_available"], index=w.local_times.tz_localize(None))
    assert avail["2023-01-24 21:59"] == 1 and avail["2023-01-24 22:00"] == 0
    assert avail["2023-01-25 00:29"] == 0 and avail["2023-01-25 00:30"] == 1
    assert (1 - avail).sum() == 150


def test_slot_of_the_31st_spills_into_the_next_month(tmp_path):
    path = tmp_path / "area.csv"
    path.write_text("date_of_month,start_time,finsh_time,stage\n31,23:00,01:00,2\n1,12:00,12:30,2\n")
    table = out.read_loadshedding_schedule(str(path), 2)
    epoch = pd.date_range("2023-01-31 22:00", periods=16 * 60, freq="min", tz=SAST).as_unit("s").asi8
    off = pd.Series(out.schedule_mask(LocalClock(SAST).wall_seconds(epoch), table),
                    index=pd.date_range("2023-01-31 22:00", periods=16 * 60, freq="min"))
    assert off["2023-01-31 23:00"] and off["2023-02-01 00:59"] and not off["2023-02-01 01:00"]
    assert off["2023-02-01 12:00"] and off.sum() == 150


def test_unknown_stage_and_bad_file_are_clear(tmp_path):
    with pytest.raises(ValueError, match="no slots at stage"):
        path = tmp_path / "a.csv"
        path.write_text("date_of_month,start_time,finsh_time,stage\n1,10:00,12:00,1\n")
        out.read_loadshedding_schedule(str(path), 3)
    with pytest.raises(ValueError, match="not found"):
        out.read_loadshedding_schedule(str(tmp_path / "nope.csv"), 1)


def test_daily_slot_crossing_midnight_and_intervals_in_local_time():
    ctx = make_ctx(n_steps=2 * 1440, step_s=60, start="2025-06-01T00:00:00+02:00", tz="Europe/Oslo")
    cfg = {"outages": {"daily": [{"start": "22:00", "end": "00:30"}],
                       "intervals": [{"start": "2025-06-01T10:00", "end": "2025-06-01T11:15"}]}}
    g = Grid("grid", cfg, ctx)
    w = window(ctx, 0, ctx.n_steps)
    off = pd.Series(g.signals(w, {})["grid_available"] == 0, index=w.local_times.tz_localize(None))
    assert off["2025-06-01 00:00"] and off["2025-06-01 00:29"] and not off["2025-06-01 00:30"]
    assert off["2025-06-01 10:00"] and off["2025-06-01 11:14"] and not off["2025-06-01 11:15"]
    assert off.sum() == 30 + 75 + 150 + 120


def seed_ctx(seed: int, days: int = 366) -> object:
    return make_ctx(n_steps=days * 96, step_s=900, start="2024-01-01T00:00:00Z", seed=seed)


def random_mask(seed: int, per_year: float = 12, mean_h: float = 3, size: int = 96) -> np.ndarray:
    ctx = seed_ctx(seed)
    g = Grid("grid", {"outages": {"random": {"per_year": per_year, "mean_duration_h": mean_h}}}, ctx)
    parts = []
    for i0 in range(0, ctx.n_steps, size):
        w = window(ctx, i0, min(size, ctx.n_steps - i0))
        parts.append(g.signals(w, {})["grid_available"])
    return np.concatenate(parts) == 0


def test_random_outages_reproducible_per_seed_and_window_size():
    a = random_mask(seed=3)
    assert a.any()
    assert (a == random_mask(seed=3, size=1000)).all()
    assert (a == random_mask(seed=3, size=7)).all()
    assert not (a == random_mask(seed=4)).all()


def test_random_outages_frequency_and_duration_over_many_years():
    per_year, mean_h, years = 6.0, 4.0, 150
    t0 = 0
    t1 = int(years * out.DAYS_PER_YEAR * 86400)
    found = out.random_outages(seed=12345, t0_s=t0, t1_s=t1, per_year=per_year, mean_duration_h=mean_h)
    found = found[found[:, 0] >= t0]  # started in the span
    n = len(found)
    expected = per_year * years
    assert abs(n - expected) < 4 * np.sqrt(expected)  # Poisson: sd = sqrt(900) = 30
    durations_h = (found[:, 1] - found[:, 0]) / 3600
    assert durations_h.mean() == pytest.approx(mean_h, rel=4 / np.sqrt(n))  # exponential: sd = mean
    assert np.median(durations_h) == pytest.approx(mean_h * np.log(2), rel=0.15)


def test_random_outages_off_fraction_matches_rate_times_duration():
    mask = random_mask(seed=11, per_year=50, mean_h=2)
    # expected fraction ≈ 50 × 2 h / 8784 h = 1.14 %; one year is noisy: within a factor 1.5
    assert 0.0114 / 1.5 < mask.mean() < 0.0114 * 1.5


def test_outage_that_started_days_earlier_still_counts():
    """Outages are drawn by start day; a long one reaches into later days (lookback)."""
    found = out.random_outages(seed=1, t0_s=0, t1_s=400 * 86400, per_year=20, mean_duration_h=30)
    long = found[(found[:, 1] - found[:, 0]) > 2 * 86400]
    assert len(long)
    a, b = long[0]
    probe = np.array([b - 600.0])
    later = out.random_outages(seed=1, t0_s=probe[0], t1_s=probe[0] + 1, per_year=20, mean_duration_h=30)
    starts, ends = out.merge_intervals([tuple(x) for x in later])
    assert out.in_intervals(probe, starts, ends).all()


def test_days_draw_independent_outages():
    """Each day has its own stream: start times within the day are not repeated day after day."""
    found = out.random_outages(seed=8, t0_s=0, t1_s=200 * 86400, per_year=365, mean_duration_h=1)
    seconds_into_day = np.mod(found[:, 0], 86400)
    assert len(np.unique(np.round(seconds_into_day))) == len(found) > 100
