"""Tariffs: TOU in local time across DST, EPEX/long spot-price files, fixed daily charges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from hometwin.services.grid import tariffs as tf
from hometwin.services.grid.model import Grid
from conftest import make_ctx, shared, window

NO3 = ("spot_prices", "epex_NO3_hourly_eur_mwh_2025-01-24_to_2026-08-21.csv")
BE = ("spot_prices", "entsoe_BE_dayahead_eur_kwh_2022_to_2024-07_local_time.csv")
TOU = {"type": "time_of_use", "default_price_per_kwh": 0.10,
       "periods": [{"start": "17:00", "end": "21:00", "price_per_kwh": 0.50}]}


def grid_signals(cfg: dict, start: str, n: int, step_s: int = 900, tz: str = "Europe/Oslo"):
    ctx = make_ctx(n_steps=n, step_s=step_s, start=start, tz=tz)
    g = Grid("grid", cfg, ctx)
    w = window(ctx, 0, n)
    return w, g.signals(w, {})


@pytest.mark.parametrize("day, utc_peak_start", [
    ("2025-03-29", 16), ("2025-03-31", 15),  # spring: CET then CEST
    ("2025-10-25", 15), ("2025-10-27", 16),  # autumn: CEST then CET
])
def test_tou_peak_stays_at_17_local_across_dst(day, utc_peak_start):
    w, sig = grid_signals({"tariff": TOU}, f"{day}T00:00:00Z", 96)
    peak = sig["price_import"] == 0.50
    local = w.local_times[peak]
    assert peak.sum() == 16  # 4 h of 15-min steps
    assert local.hour.min() == 17 and local.hour.max() == 20
    assert w.times[peak].hour.min() == utc_peak_start
    assert (sig["price_import"][~peak] == 0.10).all()


@pytest.mark.parametrize("start", ["2025-03-29T12:00:00Z", "2025-10-25T12:00:00Z"])
def test_tou_over_the_change_day_itself(start):
    w, sig = grid_signals({"tariff": TOU}, start, 4 * 72)
    peak = sig["price_import"] == 0.50
    assert set(w.local_times[peak].hour) == {17, 18, 19, 20}
    assert peak.sum() == 3 * 16  # three evenings of 4 h, whatever the UTC offset


def test_tou_first_matching_period_wins_and_weekdays_filter():
    cfg = {"type": "time_of_use", "default_price_per_kwh": 0.1, "periods": [
        {"start": "07:00", "end": "09:00", "days": ["sat", "sun"], "price_per_kwh": 0.2},
        {"start": "06:00", "end": "10:00", "price_per_kwh": 0.3}]}
    w, sig = grid_signals({"tariff": cfg}, "2025-06-05T22:00:00Z", 4 * 72, tz="Europe/Oslo")  # Fri-Sun local
    p = pd.Series(sig["price_import"], index=w.local_times)

    def at(text: str) -> float:
        return p.loc[pd.Timestamp(text, tz="Europe/Oslo")]

    assert at("2025-06-06 07:30") == 0.3  # Friday: no weekend period
    assert at("2025-06-07 07:30") == 0.2  # Saturday: the weekend period comes first
    assert at("2025-06-08 08:45") == 0.2 and at("2025-06-08 09:00") == 0.3
    assert at("2025-06-07 06:30") == 0.3
    assert at("2025-06-07 12:00") == 0.1


def test_no3_series_known_hours():
    path = str(shared(*NO3))
    cfg = {"tariff": {"type": "series", "file": path, "unit": "per_mwh"}}
    # 2025-01-24 08-09 local (07:00 UTC) = 23.09 EUR/MWh, 17-18 local = 12.83 in the file
    w, sig = grid_signals(cfg, "2025-01-24T00:00:00Z", 24, step_s=3600)
    assert sig["price_import"][7] == pytest.approx(0.02309, abs=1e-12)
    assert sig["price_import"][16] == pytest.approx(0.01283, abs=1e-12)
    # a step's price is the price of the hour containing its start (1-min steps)
    w, sig = grid_signals(cfg, "2025-01-24T07:00:00Z", 120, step_s=60)
    assert (sig["price_import"][:60] == 23.09 / 1000).all() and (sig["price_import"][60:] == 39.35 / 1000).all()


def test_no3_series_scale_and_adder():
    cfg = {"tariff": {"type": "series", "file": str(shared(*NO3)), "scale": 11.5, "adder_per_kwh": 0.45}}
    w, sig = grid_signals(cfg, "2025-01-24T07:00:00Z", 1, step_s=60)
    assert sig["price_import"][0] == pytest.approx(23.09 / 1000 * 11.5 + 0.45, abs=1e-12)


def test_no3_spring_forward_day_2025_03_30():
    series = tf.read_epex_wide(str(shared(*NO3)), "Europe/Oslo")
    utc = pd.date_range("2025-03-29T23:00:00Z", periods=23, freq="h")  # the 23 local hours
    values, covered = series.lookup(utc.as_unit("s").asi8)
    assert covered.all()
    local = utc.tz_convert("Europe/Oslo")
    got = dict(zip(local.hour, values))
    assert 2 not in got  # 02:00 does not exist
    row = [12.31, 12.69, 9.37, 9.37, 4.2, 9.8, 6.45, 8.68, 11.4, 12.53, 18.57, 16.67, 14.62, 4.73, 6.04,
           9.38, 13.81, 11.1, 14.15, 20.22, 33.75, 21.55, 31.74, 22.62]
    for hour in got:
        assert got[hour] == row[hour]  # every existing hour has its own column; 02-03 (a filler) is dropped


def test_no3_fall_back_day_2025_10_26():
    series = tf.read_epex_wide(str(shared(*NO3)), "Europe/Oslo")
    utc = pd.date_range("2025-10-25T22:00:00Z", periods=25, freq="h")  # the 25 local hours
    values, covered = series.lookup(utc.as_unit("s").asi8)
    assert covered.all()
    local = utc.tz_convert("Europe/Oslo")
    assert list(local.hour[:5]) == [0, 1, 2, 2, 3]
    assert values[2] == values[3] == 3.21  # the repeated 02:00 hour: column 02-03 on the wall clock
    assert values[4] == 3.65 and values[0] == 11.81 and values[-1] == 22.14


def test_no3_run_outside_the_file_is_a_clear_error():
    ctx = make_ctx(n_steps=2 * 1440, start="2026-08-21T12:00:00Z", tz="Europe/Oslo")
    with pytest.raises(ValueError) as exc:
        Grid("grid", {"tariff": {"type": "series", "file": str(shared(*NO3))}}, ctx)
    msg = str(exc.value)
    assert "epex_NO3_hourly" in msg and "2026-08-22T00:00:00+02:00" in msg and "2026-08-23" in msg


def test_no3_gap_day_2026_06_23_is_an_error():
    ctx = make_ctx(n_steps=3 * 24, step_s=3600, start="2026-06-22T00:00:00Z", tz="Europe/Oslo")
    with pytest.raises(ValueError, match=r"2026-06-23T00:00:00\+02:00 to 2026-06-24T00:00:00\+02:00"):
        Grid("grid", {"tariff": {"type": "series", "file": str(shared(*NO3))}}, ctx)


def test_missing_file_is_named():
    ctx = make_ctx()
    with pytest.raises(ValueError, match="no_such_prices.csv"):
        Grid("grid", {"tariff": {"type": "series", "file": "no_such_prices.csv"}}, ctx)


def test_long_format_naive_local_with_dst_rows():
    """The BE file: naive local times, a blank spring 02:00 and a doubled autumn 02:00 (two prices)."""
    tariff = tf.SeriesTariff(file=str(shared(*BE)), unit="per_kwh", timezone="Europe/Brussels",
                             time_format="%d%b%Y %H:%M:%S")
    series = tf.load_series(tariff, tariff.file, "UTC")
    utc = pd.date_range("2022-10-30T00:00:00Z", periods=2, freq="h")  # 02:00 CEST, 02:00 CET
    values, covered = series.lookup(utc.as_unit("s").asi8)
    assert covered.all() and values[0] == pytest.approx(0.1002200012207031) and values[1] == pytest.approx(0.0999300003051758)
    utc = pd.date_range("2022-03-27T00:00:00Z", periods=2, freq="h")  # 01:00 CET, 03:00 CEST
    values, covered = series.lookup(utc.as_unit("s").asi8)
    assert covered.all() and values[0] == pytest.approx(0.2219299926757813) and values[1] == pytest.approx(0.2140200042724609)
    assert not series.gaps(int(series.starts[0]), int(series.ends[-1]))


def test_long_format_with_offsets_and_the_multi_zone_file(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("time,price\n2025-01-01T00:00:00+01:00,100\n2025-01-01T01:00:00+01:00,200\n"
                    "2025-01-01T02:00:00+01:00,300\n")
    w, sig = grid_signals({"tariff": {"type": "series", "file": str(path)}}, "2024-12-31T23:00:00Z", 3,
                          step_s=3600)
    assert list(sig["price_import"]) == [0.1, 0.2, 0.3]
    cfg = {"type": "series", "file": str(shared("spot_prices", "entsoe_dayahead_eur_mwh_2019_2020_NO1_SE1_FI_DK1_DE_NL_FR_ES.csv")),
           "value_column": "NO1"}
    w, sig = grid_signals({"tariff": cfg}, "2019-01-01T00:00:00Z", 1, step_s=3600)
    assert sig["price_import"][0] == pytest.approx(0.04925)


def test_export_defaults_to_flat_zero_and_flat_import():
    w, sig = grid_signals({"tariff": {"type": "flat", "price_per_kwh": 0.25}}, "2025-01-01T00:00:00Z", 10)
    assert (sig["price_import"] == 0.25).all() and (sig["price_export"] == 0.0).all()


def test_fixed_daily_charge_once_per_local_day_any_window():
    ctx = make_ctx(n_steps=3 * 96, step_s=900, start="2025-03-29T23:00:00Z", tz="Europe/Oslo")  # local midnight
    totals = []
    for size in (1, 7, 96, 3 * 96):
        g = Grid("grid", {"fixed_daily_charge": 0.4}, ctx)
        for i0 in range(0, ctx.n_steps, size):
            w = window(ctx, i0, min(size, ctx.n_steps - i0))
            g.settle(w, w.n - 1, np.zeros(w.n))
        totals.append(g.state["fixed_charges"])
    # 72 h from local midnight on 29 March: 30 March has 23 h, so the run touches 4 local days
    assert totals == [pytest.approx(1.6)] * 4


def test_cost_counters():
    ctx = make_ctx(n_steps=4, step_s=900)
    g = Grid("grid", {"tariff": {"type": "flat", "price_per_kwh": 0.3},
                      "export_tariff": {"type": "flat", "price_per_kwh": 0.05}}, ctx)
    w = window(ctx, 0, 4)
    g.settle(w, 3, np.array([3.6e6, 3.6e6, -3.6e6, 0.0]))
    assert g.state["import_cost"] == pytest.approx(0.6) and g.state["export_revenue"] == pytest.approx(0.05)


@pytest.mark.parametrize("bad, field", [
    ({"type": "time_of_use", "periods": [{"start": "25:00", "end": "26:00", "price_per_kwh": 1}]}, "start"),
    ({"type": "time_of_use", "periods": [{"start": "17:00", "end": "21:00", "days": ["funday"],
                                          "price_per_kwh": 1}]}, "days"),
    ({"type": "series", "file": "x.csv", "scale": 0}, "scale"),
    ({"type": "spot"}, "type"),
])
def test_bad_tariffs_name_the_field(bad, field):
    with pytest.raises(ValidationError) as exc:
        Grid.Config.model_validate({"tariff": bad})
    assert field in str(exc.value)
