"""Weather: reproducible and window-independent stochastic weather, physical bounds, file sources."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pvlib
import pytest
from pydantic import ValidationError

from hometwin.element import HomeContext, Window
from hometwin.services.sun.model import Sun
from hometwin.services.weather.model import (
    Weather, clear_sky_index_kasten_czeplak, okta_distribution, okta_transition_matrix, typical_year_seconds)

TMY3 = os.path.join(os.path.dirname(pvlib.__file__), "data", "723170TYA.CSV")


def make_home(lat=-26.2, lon=28.05, alt=1750.0, start="2024-06-01T00:00:00Z", n_steps=3 * 1440,
              step_s=60, seed=7) -> HomeContext:
    return HomeContext(name="t", latitude=lat, longitude=lon, altitude_m=alt, timezone="UTC",
                       start=pd.Timestamp(start), step_s=step_s, n_steps=n_steps, seed=seed)


def sun_signals(home: HomeContext) -> dict[str, np.ndarray]:
    sun = Sun("sun", {}, home)
    parts = [sun.signals(Window(seq=0, i0=i0, n=min(1440, home.n_steps - i0), dt_s=home.step_s, home=home), {})
             for i0 in range(0, home.n_steps, 1440)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def run(weather: Weather, home: HomeContext, sun: dict[str, np.ndarray], size: int, order=None) -> dict[str, np.ndarray]:
    starts = list(range(0, home.n_steps, size))
    got = {}
    for seq, i0 in enumerate(order(starts) if order else starts):
        n = min(size, home.n_steps - i0)
        got[i0] = weather.signals(Window(seq=seq, i0=i0, n=n, dt_s=home.step_s, home=home),
                                  {k: v[i0:i0 + n] for k, v in sun.items()})
    parts = [got[i0] for i0 in starts]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@pytest.fixture(scope="module")
def three_days():
    home = make_home()
    sun = sun_signals(home)
    return home, sun, run(Weather("weather", {}, home), home, sun, 1440)


def test_reproducible_and_seeded(three_days):
    home, sun, ref = three_days
    again = run(Weather("weather", {}, home), home, sun, 1440)
    for key in Weather.outputs:
        np.testing.assert_array_equal(again[key], ref[key])
    other_home = make_home(seed=8)
    other = run(Weather("weather", {}, other_home), other_home, sun, 1440)
    assert not np.array_equal(other["cloud_cover"], ref["cloud_cover"])
    assert not np.array_equal(other["temp_air"], ref["temp_air"])
    # the element name is part of the seed, too
    named = run(Weather("weather-2", {}, home), home, sun, 1440)
    assert not np.array_equal(named["temp_air"], ref["temp_air"])


@pytest.mark.parametrize("size", [1, 7, 1440, 1000])
def test_window_cuts_identical(three_days, size):
    home, sun, ref = three_days
    got = run(Weather("weather", {}, home), home, sun, size)
    for key in Weather.outputs:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)


def test_snapshot_restore_and_any_order(three_days):
    home, sun, ref = three_days
    first = Weather("weather", {}, home)
    run(first, home, sun, 1440)
    restored = Weather("weather", {}, home)
    restored.restore(first.snapshot())
    got = run(restored, home, sun, 500, order=lambda s: list(reversed(s)))  # last window first
    for key in Weather.outputs:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)


def test_physical_bounds(three_days):
    home, sun, out = three_days
    assert np.all((out["cloud_cover"] >= 0) & (out["cloud_cover"] <= 1))
    assert np.all(out["ghi"] <= sun["ghi_clear"] * 1.0 + 1e-9)
    assert np.all(out["ghi"] >= 0) and np.all(out["dni"] >= 0) and np.all(out["dhi"] >= 0)
    closure = out["dhi"] + out["dni"] * np.cos(np.radians(sun["zenith"]))
    np.testing.assert_allclose(closure, out["ghi"], atol=1e-6)
    assert np.all(out["ghi"][sun["zenith"] > 90.5] == 0)
    assert np.all(out["wind_speed"] >= 0) and out["wind_speed"].mean() < 15
    # ramps: cloud cover changes at most 3 oktas per 15-minute cloud step
    assert np.abs(np.diff(out["cloud_cover"])).max() <= 3 / 8 / 15 + 1e-12


def test_okta_chain_keeps_its_climatology():
    pi = okta_distribution(0.45, 1.0)
    P = okta_transition_matrix(pi, 0.3)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_allclose(pi @ P, pi, atol=1e-12)  # stationary
    assert abs(pi @ np.arange(9) / 8 - 0.45) < 1e-12
    assert pi[0] > pi[4] and pi[8] > pi[4]  # mostly clear or overcast
    assert clear_sky_index_kasten_czeplak(np.array([0.0, 1.0])).tolist() == [1.0, 0.25]


def test_year_climate_southern_hemisphere():
    home = make_home(start="2023-01-01T00:00:00Z", n_steps=365 * 24, step_s=3600, seed=3)
    sun = sun_signals(home)
    out = run(Weather("weather", {"source": {"type": "stochastic", "temp_mean_c": 16.0, "temp_seasonal_amplitude_c": 5.0}}, home),
              home, sun, 24 * 10)
    times = home.times(0, home.n_steps)
    monthly = pd.Series(out["temp_air"], index=times).groupby(times.month).mean()
    assert monthly[[12, 1, 2]].mean() > monthly[[6, 7, 8]].mean() + 6  # summer in January
    assert 14.0 < out["temp_air"].mean() < 18.0
    assert monthly.min() > 5 and monthly.max() < 27
    # daily cycle: the warmest hour of the mean day is in the afternoon (local solar time)
    solar_hour = ((times.hour + 28.05 / 15.0) % 24).astype(int)
    by_hour = pd.Series(out["temp_air"]).groupby(solar_hour).mean()
    assert 13 <= by_hour.idxmax() <= 17 and by_hour.idxmin() <= 6
    assert 0.25 < out["cloud_cover"].mean() < 0.65
    # sunny inland site: a plausible annual GHI
    assert 1400 < out["ghi"].sum() / 1000 < 2300


def test_northern_defaults_from_latitude():
    home = make_home(lat=59.91, lon=10.75, alt=20.0, start="2023-01-01T00:00:00Z", n_steps=365 * 24,
                     step_s=3600, seed=1)
    out = run(Weather("weather", {}, home), home, sun_signals(home), 24 * 30)
    times = home.times(0, home.n_steps)
    monthly = pd.Series(out["temp_air"], index=times).groupby(times.month).mean()
    assert monthly[[6, 7, 8]].mean() > monthly[[12, 1, 2]].mean() + 12
    assert -10 < monthly[[1]].iloc[0] < 5 and 10 < monthly[[7]].iloc[0] < 25


@pytest.mark.slow  # a year of one-minute steps
@pytest.mark.parametrize("interpolation", ["linear", "hold"])
def test_tmy3_reproduces_annual_sums(interpolation):
    data, meta = pvlib.iotools.read_tmy3(TMY3, map_variables=True)
    # a non-leap year starting at local standard midnight of the file (UTC-5)
    home = make_home(lat=meta["latitude"], lon=meta["longitude"], alt=meta["altitude"],
                     start="2023-01-01T05:00:00Z", n_steps=365 * 1440, seed=0)
    wx = Weather("weather", {"source": {"type": "tmy3", "path": TMY3, "interpolation": interpolation}}, home)
    sun = Sun("sun", {}, home)
    total = {"ghi": 0.0, "dni": 0.0, "temp_air": 0.0}
    for d in range(365):
        w = Window(seq=d, i0=d * 1440, n=1440, dt_s=60, home=home)
        out = wx.signals(w, sun.signals(w, {}))
        for key in total:
            total[key] += out[key].sum() / 60.0
    assert total["ghi"] == pytest.approx(data["ghi"].sum(), rel=0.01)
    assert total["dni"] == pytest.approx(data["dni"].sum(), rel=0.01)
    assert total["temp_air"] / 8760 == pytest.approx(data["temp_air"].mean(), abs=0.05)


def test_tmy3_alignment_hour_ending():
    """The hour stamped 13:00 local standard time covers 12:00-13:00: hold gives it from 12:00 on."""
    data, meta = pvlib.iotools.read_tmy3(TMY3, map_variables=True)
    home = make_home(lat=meta["latitude"], lon=meta["longitude"], alt=meta["altitude"],
                     start="2023-07-01T17:00:00Z", n_steps=60, seed=0)  # 12:00-13:00 EST
    wx = Weather("weather", {"source": {"type": "tmy3", "path": TMY3, "interpolation": "hold"}}, home)
    out = run(wx, home, sun_signals(home), 60)
    row = (31 + 28 + 31 + 30 + 31 + 30) * 24 + 12  # 1 July, the hour ending 13:00
    assert np.all(out["ghi"] == data["ghi"].iloc[row])
    # Feb 29 of a leap year reads Feb 28 of the typical year
    feb28 = typical_year_seconds(np.array([pd.Timestamp("2024-02-28T12:00Z").timestamp()], dtype=np.int64), 0)
    feb29 = typical_year_seconds(np.array([pd.Timestamp("2024-02-29T12:00Z").timestamp()], dtype=np.int64), 0)
    mar1 = typical_year_seconds(np.array([pd.Timestamp("2024-03-01T12:00Z").timestamp()], dtype=np.int64), 0)
    assert feb28 == feb29 and mar1 - feb28 == 86400


def test_csv_source(tmp_path):
    times = pd.date_range("2024-06-01T00:00+02:00", periods=49, freq="1h")
    frame = pd.DataFrame({"time": times.strftime("%Y-%m-%dT%H:%M:%S%z"), "ghi": np.arange(49.0) * 10,
                          "dni": 1.0, "dhi": 2.0, "temp_air": 20.0 + np.arange(49.0)})
    frame.to_csv(tmp_path / "wx.csv", index=False)
    home = HomeContext(name="t", latitude=-26.2, longitude=28.05, altitude_m=0, timezone="UTC",
                       start=pd.Timestamp("2024-06-01T08:00:00Z"), step_s=60, n_steps=24 * 60, seed=0,
                       base_dir=str(tmp_path))
    sun = sun_signals(home)
    wx = Weather("weather", {"source": {"type": "csv", "path": "wx.csv"}}, home)
    out = run(wx, home, sun, 90)
    # 08:00Z is the 11th row (00:00+02:00 = 22:00Z the day before); linear between rows
    assert out["ghi"][0] == 100.0 and out["ghi"][30] == pytest.approx(105.0) and out["ghi"][60] == 110.0
    assert out["temp_air"][120] == 32.0 and np.all(out["wind_speed"] == 1.0)
    assert np.all(out["ghi"][sun["apparent_zenith"] >= 90] == 0)  # after sunset (17:30 local)
    assert np.all((out["cloud_cover"] >= 0) & (out["cloud_cover"] <= 1))


def test_file_errors(tmp_path):
    home = make_home()
    with pytest.raises(ValueError, match="nope.csv"):
        Weather("weather", {"source": {"type": "tmy3", "path": str(tmp_path / "nope.csv")}}, home)
    pd.DataFrame({"time": ["2024-06-01T00:00Z"], "ghi": [1.0], "dhi": [1.0], "temp_air": [1.0]}).to_csv(
        tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: missing column 'dni'"):
        Weather("weather", {"source": {"type": "csv", "path": str(tmp_path / "bad.csv")}}, home)
    pd.DataFrame({"time": ["2024-06-01T00:00Z", "2024-06-01T01:00Z"], "ghi": 1.0, "dni": 1.0, "dhi": 1.0,
                  "temp_air": 1.0}).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match=r"short\.csv: covers"):
        Weather("weather", {"source": {"type": "csv", "path": str(tmp_path / "short.csv")}}, home)


def test_config_validation():
    with pytest.raises(ValidationError):
        Weather.Config.model_validate({"source": {"type": "stochastic", "cloud_step_s": 7 * 60}})
    with pytest.raises(ValidationError):
        Weather.Config.model_validate({"source": {"type": "radar"}})
    with pytest.raises(ValidationError):
        Weather.Config.model_validate({"source": {"type": "stochastic", "cloud_cover_mean": 1.5}})
    with pytest.raises(ValidationError):
        Weather.Config.model_validate({"source": {"type": "tmy3"}})  # path required
    assert Weather.Config().source.type == "stochastic"


def test_day_blocks_draw_disjoint_random_numbers():
    from hometwin.services.weather.model import block_rng

    day0, day1 = block_rng(11, 0).random(300), block_rng(11, 1).random(300)
    assert not set(day0.tolist()) & set(day1.tolist())
