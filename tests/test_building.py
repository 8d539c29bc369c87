"""Building thermal model (services/heating/building.py) and panel heaters (heater.py).

    outdoor ──H_ao── air (C_a) ──H_am── mass (C_m) ──H_mo── outdoor
                      ▲ heater, gains
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from hometwin.element import HomeContext, Window
from hometwin.services.heating.building import Building, BuildingConfig, heat_up_time_s
from hometwin.services.heating.heater import SpaceHeater


def make_ctx(n_steps: int = 1440, step_s: int = 60, tz: str = "Europe/Oslo", seed: int = 0) -> HomeContext:
    return HomeContext(name="t", latitude=63.43, longitude=10.39, altitude_m=0.0, timezone=tz,
                       start=pd.Timestamp("2025-01-01T00:00:00Z"), step_s=step_s, n_steps=n_steps, seed=seed)


def signals(i0: int, n: int, step_s: int = 60, temp: float | None = None) -> dict[str, np.ndarray]:
    """Synthetic weather: daily temperature swing and a crude sun (south at noon)."""
    t = (i0 + np.arange(n)) * step_s / 86400.0
    frac = t % 1.0
    day = np.sin(np.pi * np.clip((frac - 0.3) / 0.4, 0, 1))
    zen = np.where(day > 0, 90.0 - 40.0 * day, 100.0)
    return {"temp_air": np.full(n, temp) if temp is not None else 2.0 + 6.0 * np.sin(2 * np.pi * (frac - 0.4)),
            "ghi": 500.0 * day, "dni": 600.0 * day, "dhi": 100.0 * day, "apparent_zenith": zen,
            "azimuth": 90.0 + 180.0 * np.clip((frac - 0.3) / 0.4, 0, 1)}


def drive(el, n_total: int, window: int, sig=signals, served=None) -> np.ndarray:
    out, i, seq = [], 0, 0
    while i < n_total:
        n = min(window, n_total - i)
        w = Window(seq=seq, i0=i, n=n, dt_s=el.home.step_s, home=el.home)
        req = el.request(w, sig(i, n, el.home.step_s))
        got = req if served is None else served(i, req)
        el.settle(w, n - 1, got)
        out.append(got)
        i, seq = i + n, seq + 1
    return np.concatenate(out)


def test_smarthjem_loss_coefficient_143_w_per_k_at_20_k():
    b = Building.from_config(BuildingConfig(preset="smarthjem"))
    # Hold the house 20 K above outdoors in steady state: the heat needed is the loss.
    ctx = make_ctx(n_steps=1440 * 30)
    h = SpaceHeater("h", {"building": {"preset": "smarthjem", "temp_initial_c": 0.0}, "mode": "off"}, ctx)
    q = 20.0 * 143.0
    x = b.simulate([0.0], 60, np.zeros(1440 * 10), np.full(1440 * 10, q))
    ua = q / (x[-1, 0] - 0.0)
    assert ua == pytest.approx(143.0, rel=0.05)
    assert b.ua == pytest.approx(143.0, rel=0.05)
    assert h.params()["ua_w_k"] == pytest.approx(b.ua)


def test_smarthjem_heats_15_to_20_in_45_to_75_minutes_with_4_kw_at_5_c():
    ctx = make_ctx()
    h = SpaceHeater("h", {"building": {"preset": "smarthjem", "temp_initial_c": 15.0}, "power_kw": 4.0,
                          "mode": "on", "comfort_c": 20.0, "hysteresis_k": 0.2}, ctx)
    temps = []
    for i in range(120):
        w = Window(seq=i, i0=i, n=1, dt_s=60, home=ctx)
        req = h.request(w, {"temp_air": np.array([5.0])})
        assert req[0] == pytest.approx(-4000.0 * 60) or temps[-1] > 19.0
        h.settle(w, 0, req)
        temps.append(h.state["temp_indoor"])
    minutes = int(np.argmax(np.array(temps) >= 20.0)) + 1
    assert 45 <= minutes <= 75
    b = Building.from_config(BuildingConfig(preset="smarthjem"))
    assert 45 * 60 <= heat_up_time_s(b.c_air, b.ua, 4000.0, 5.0, 15.0, 20.0) <= 75 * 60


def test_exact_discretisation_one_long_step_equals_many_short_ones():
    b = Building.from_config(BuildingConfig(preset="modern"))
    x60 = b.simulate([18.0, 19.0], 60, np.full(60, -5.0), np.full(60, 3000.0), np.full(60, 200.0), np.full(60, 50.0))
    x3600 = b.simulate([18.0, 19.0], 3600, np.array([-5.0]), np.array([3000.0]), np.array([200.0]), np.array([50.0]))
    np.testing.assert_allclose(x60[-1], x3600[-1], atol=1e-9)
    # stable for any step: a week-long step goes to the steady state, never beyond
    xw = b.simulate([18.0, 19.0], 7 * 86400 * 10, np.array([0.0]), np.array([1000.0]))
    assert np.all(np.isfinite(xw)) and xw[-1, 0] == pytest.approx(1000.0 / b.ua, rel=1e-3)


@pytest.mark.slow  # a year of one-minute steps
@pytest.mark.parametrize("preset", ["smarthjem", "modern"])
def test_building_conserves_energy_over_a_year(preset):
    ctx = make_ctx(n_steps=1440 * 365)
    h = SpaceHeater("h", {"building": {"preset": preset}, "power_kw": 6.0}, ctx)
    drive(h, ctx.n_steps, 1440)
    eb = h.energy_balance()
    gross = eb["heat_in_j"] + eb["gains_j"] + eb["loss_j"]
    assert eb["heat_in_j"] > 0 and eb["loss_j"] > 0
    assert abs(eb["residual_j"]) <= 1e-3 * gross
    assert abs(eb["residual_j"]) <= 1e-6 * gross  # exact integrals: rounding only
    assert eb["heat_in_j"] == pytest.approx(eb["elec_j"])  # resistive: COP 1


@pytest.mark.parametrize("preset", ["smarthjem", "modern"])
def test_window_size_independence(preset):
    cfg = {"building": {"preset": preset, "temp_initial_c": 16.0}, "power_kw": 3.0,
           "presence": [{"start": "06:30", "end": "22:00"}], "min_on_min": 3}
    a = SpaceHeater("h", cfg, make_ctx())
    b = SpaceHeater("h", cfg, make_ctx())
    ea = drive(a, 1440, 1)
    eb = drive(b, 1440, 1440)
    np.testing.assert_allclose(ea, eb, rtol=0, atol=1e-9)
    assert a.state["temp_indoor"] == pytest.approx(b.state["temp_indoor"], abs=1e-9)
    assert (ea < 0).any()


def test_shortfall_leaves_the_house_colder():
    cfg = {"building": {"preset": "smarthjem", "temp_initial_c": 15.0}, "mode": "on", "comfort_c": 21.0}
    full = SpaceHeater("h", cfg, make_ctx())
    short = SpaceHeater("h", cfg, make_ctx())
    drive(full, 240, 60, sig=lambda i, n, s: signals(i, n, s, temp=0.0))
    # an outage from step 30 to 90: the inverter settles the window at the first short step
    i, seq = 0, 0
    while i < 240:
        w = Window(seq=seq, i0=i, n=min(60, 240 - i), dt_s=60, home=short.home)
        req = short.request(w, signals(i, w.n, 60, temp=0.0))
        steps = i + np.arange(w.n)
        got = np.where((steps >= 30) & (steps < 90), 0.0, req)
        k = int(np.flatnonzero(got != req)[0]) if (got != req).any() else w.n - 1
        short.settle(w, k, got)
        i, seq = i + k + 1, seq + 1
    assert short.state["temp_indoor"] < full.state["temp_indoor"] - 0.1
    assert short.state["elec_j"] < full.state["elec_j"]


def test_plan_hooks_and_params():
    ctx = make_ctx()
    h = SpaceHeater("h", {"building": {"preset": "modern"}, "mode": "on", "comfort_c": 21.0}, ctx)
    p = h.params()
    assert p["A"].shape == (2, 2) and p["B"].shape == (2, 1) and p["E"].shape == (2, 3)
    assert p["max_heat_w"] == 4000.0 and np.all(p["cop"](np.array([-10.0, 5.0])) == 1.0)
    h.set_plan(0, heat_w=np.zeros(120))
    w = Window(seq=0, i0=0, n=240, dt_s=60, home=ctx)
    req = h.request(w, signals(0, 240, temp=-10.0))
    assert np.all(req[:120] == 0.0)
    h.set_plan(0, setpoint_c=np.full(240, 10.0))
    assert np.all(h.request(w, signals(0, 240, temp=-10.0)) == 0.0)  # 10 °C wanted, house is 20 °C
    h.clear_plan()
    h.set(setpoint_c=25.0)
    assert h.request(w, signals(0, 240, temp=-10.0))[0] < 0


@settings(max_examples=25, deadline=None)
@given(field=st.sampled_from(["volume_m3", "area_m2", "heat_recovery", "mass_capacity_kj_k"]),
       value=st.floats(min_value=-1e6, max_value=0.0))
def test_bad_building_values_raise_naming_the_field(field, value):
    cfg = {"preset": "smarthjem"}
    if field == "area_m2":
        cfg["surfaces"] = [{"name": "wall", "area_m2": value, "u_w_m2k": 0.2}]
    elif field == "heat_recovery":
        cfg[field] = 1.0 - value + 1e-9  # >= 1 is not a heat exchanger
    elif field == "mass_capacity_kj_k":
        if value == 0.0:
            value = -1.0
        cfg[field] = value
    else:
        cfg[field] = value
    with pytest.raises(ValidationError) as err:
        BuildingConfig.model_validate(cfg)
    assert field in str(err.value)


def test_bad_thermostat_config_names_the_field():
    with pytest.raises(ValidationError, match="setback_c"):
        SpaceHeater.Config.model_validate({"comfort_c": 18, "setback_c": 20})
    with pytest.raises(ValidationError, match="power_kw"):
        SpaceHeater.Config.model_validate({"power_kw": -1})
