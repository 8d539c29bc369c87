"""Sun: solar position against NREL SPA, clear sky against pvlib's Location, window cuts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib
import pytest

from hometwin.element import HomeContext, Window
from hometwin.services.sun.model import Sun, day_of_year, linke_turbidity_daily, linke_turbidity_monthly, solar_position_spa

SITES = [  # (latitude, longitude, altitude_m)
    (-26.2, 28.05, 1750.0),  # Johannesburg
    (59.91, 10.75, 20.0),  # Oslo
    (36.1, -79.95, 273.0),  # Greensboro (the pvlib TMY3 site)
    (1.35, 103.8, 15.0),  # Singapore: the sun passes near the zenith
]


def make_home(lat=-26.2, lon=28.05, alt=1750.0, start="2024-06-01T00:00:00Z", n_steps=3 * 1440,
              step_s=60, seed=0) -> HomeContext:
    return HomeContext(name="t", latitude=lat, longitude=lon, altitude_m=alt, timezone="UTC",
                       start=pd.Timestamp(start), step_s=step_s, n_steps=n_steps, seed=seed)


def run_windows(element, home: HomeContext, size: int, inputs=None) -> dict[str, np.ndarray]:
    parts = []
    for seq, i0 in enumerate(range(0, home.n_steps, size)):
        w = Window(seq=seq, i0=i0, n=min(size, home.n_steps - i0), dt_s=home.step_s, home=home)
        parts.append(element.signals(w, {} if inputs is None else {k: v[i0:i0 + w.n] for k, v in inputs.items()}))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@pytest.mark.parametrize("lat,lon,alt", SITES)
def test_solar_position_matches_nrel_spa(lat, lon, alt):
    times = pd.date_range("2024-01-01", "2025-01-01", freq="317min", tz="UTC")  # every time of day, all year
    ref = pvlib.solarposition.spa_python(times, lat, lon, alt, pressure=pvlib.atmosphere.alt2pres(alt),
                                         delta_t=None)
    got = solar_position_spa(times.as_unit("s").asi8, lat, lon, alt)
    for key in ("apparent_zenith", "zenith"):
        assert np.abs(got[key] - ref[key].to_numpy()).max() < 0.1
    daylight = ref["apparent_zenith"].to_numpy() < 89.0
    d_az = (got["azimuth"] - ref["azimuth"].to_numpy() + 180.0) % 360.0 - 180.0
    assert np.abs(d_az[daylight]).max() < 0.1
    # far better in fact: the slow SPA terms are interpolated from an hourly grid
    assert np.abs(got["zenith"] - ref["zenith"].to_numpy()).max() < 1e-4


@pytest.mark.parametrize("lat,lon,alt", SITES)
def test_clear_sky_matches_pvlib_location(lat, lon, alt):
    home = make_home(lat, lon, alt, start="2023-01-01T00:00:00Z", n_steps=365 * 24, step_s=3600)
    out = run_windows(Sun("sun", {}, home), home, 24 * 7)
    times = home.times(0, home.n_steps)
    cs = pvlib.location.Location(lat, lon, altitude=alt).get_clearsky(times)  # Ineichen + bundled Linke
    for key in ("ghi", "dni", "dhi"):
        ref = cs[key].to_numpy()
        bright = ref > 50.0
        assert np.abs(out[f"{key}_clear"][bright] / ref[bright] - 1).max() < 0.01, key
        assert np.abs(out[f"{key}_clear"] - ref).max() < 2.0, key  # W m-2, incl. sunrise/sunset
    assert np.all(out["ghi_clear"][cs["ghi"].to_numpy() == 0] == 0)
    extra = pvlib.irradiance.get_extra_radiation(times).to_numpy()
    np.testing.assert_allclose(out["dni_extra"], extra, rtol=1e-12)


def test_linke_turbidity_as_pvlib_lookup():
    times = pd.date_range("2024-01-01", "2025-12-31", freq="5D", tz="UTC")
    ref = pvlib.clearsky.lookup_linke_turbidity(times, 59.91, 10.75).to_numpy()
    got = linke_turbidity_daily(linke_turbidity_monthly(59.91, 10.75), times.as_unit("s").asi8)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_day_of_year_matches_pandas():
    times = pd.date_range("2023-12-30", "2024-12-31 23:00", freq="7h", tz="UTC")
    np.testing.assert_array_equal(day_of_year(times.as_unit("s").asi8), times.day_of_year)


@pytest.mark.parametrize("start", ["2024-06-01T00:00:00Z", "2024-03-30T22:07:00Z"])
def test_window_size_independence(start):
    home = make_home(start=start)
    sun = Sun("sun", {}, home)
    by_day = run_windows(sun, home, 1440)
    by_step = run_windows(Sun("sun", {}, home), home, 1)
    by_seven = run_windows(Sun("sun", {}, home), home, 7)
    for key in Sun.outputs:
        np.testing.assert_array_equal(by_step[key], by_day[key])
        np.testing.assert_array_equal(by_seven[key], by_day[key])
    # windows asked out of order (after a restore) give the same values
    sun2 = Sun("sun", {}, home)
    sun2.restore(sun.snapshot())
    w = Window(seq=9, i0=2000, n=500, dt_s=60, home=home)
    late = sun2.signals(w, {})
    early = sun2.signals(Window(seq=10, i0=10, n=3, dt_s=60, home=home), {})
    np.testing.assert_array_equal(late["ghi_clear"], by_day["ghi_clear"][2000:2500])
    np.testing.assert_array_equal(early["azimuth"], by_day["azimuth"][10:13])


def test_linke_override_and_night():
    home = make_home(n_steps=1440)
    low = run_windows(Sun("sun", {"linke_turbidity": 2.0}, home), home, 1440)
    high = run_windows(Sun("sun", {"linke_turbidity": 6.0}, home), home, 1440)
    assert low["ghi_clear"].max() > high["ghi_clear"].max() > 0
    night = low["apparent_zenith"] > 90.0
    assert night.any() and np.all(low["ghi_clear"][night] == 0) and np.all(low["dni_clear"][night] == 0)


def test_sun_element_positions_match_nrel_spa():
    """The element path: slow SPA terms cached in 32-day blocks, chunks across block edges."""
    home = make_home(lat=59.91, lon=10.75, alt=20.0, start="2024-01-28T13:00:00Z", n_steps=10 * 96, step_s=900)
    out = run_windows(Sun("sun", {}, home), home, 37)
    times = home.times(0, home.n_steps)
    ref = pvlib.solarposition.spa_python(times, 59.91, 10.75, 20.0, pressure=pvlib.atmosphere.alt2pres(20.0),
                                         delta_t=None)
    assert np.abs(out["apparent_zenith"] - ref["apparent_zenith"].to_numpy()).max() < 1e-4
    d_az = (out["azimuth"] - ref["azimuth"].to_numpy() + 180.0) % 360.0 - 180.0
    assert np.abs(d_az).max() < 1e-3
