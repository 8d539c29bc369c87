"""Geyser (services/appliances/geyser.py): EU 812/2013 draws, thermostat limits, energy, windows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from hometwin.element import HomeContext, Window
from hometwin.services.appliances.geyser import C_WATER, QREF_KWH, TAPPING_CYCLES, TAPPING_RAW, Geyser

SHARED = Path(os.environ.get("HOMETWIN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def make_ctx(n_steps: int = 1440, step_s: int = 60, seed: int = 0) -> HomeContext:
    return HomeContext(name="t", latitude=-33.92, longitude=18.42, altitude_m=0.0, timezone="Africa/Johannesburg",
                       start=pd.Timestamp("2024-12-31T22:00:00Z"), step_s=step_s, n_steps=n_steps, seed=seed)


def drive(el, n_total: int, window: int, served=None, record=None) -> np.ndarray:
    out, i, seq = [], 0, 0
    while i < n_total:
        n = min(window, n_total - i)
        w = Window(seq=seq, i0=i, n=n, dt_s=el.home.step_s, home=el.home)
        req = el.request(w, {})
        got = req if served is None else served(i, req)
        el.settle(w, n - 1, got)
        if record is not None:
            record(el)
        out.append(got)
        i, seq = i + n, seq + 1
    return np.concatenate(out)


def test_embedded_tapping_cycles_match_the_shared_csv():
    csv = pd.read_csv(SHARED / "dhw" / "eu_812-2013_tapping_profiles_S_M_L_from_BESMod.csv")
    for name, taps in TAPPING_CYCLES.items():
        ref = csv[csv["profile"] == name]
        assert len(ref) == len(taps)
        np.testing.assert_array_equal(taps[:, 0], ref["start_s_of_day"].to_numpy())
        np.testing.assert_allclose([r[1] for r in TAPPING_RAW[name]], ref["Q_tap_kWh"], rtol=1e-12)
        np.testing.assert_allclose([r[2] for r in TAPPING_RAW[name]], ref["flow_l_per_min_approx"], rtol=1e-12)
        np.testing.assert_allclose(taps[:, 3], ref["T_m_C"])
        np.testing.assert_allclose(taps[:, 1], ref["duration_s"], atol=1.5)  # BESMod rounds up
        q = (taps[:, 2] * C_WATER * (taps[:, 3] - 10.0)).sum() / 3.6e6
        assert q == pytest.approx(QREF_KWH[name], rel=1e-9)
        assert ref["Q_tap_kWh"].sum() == pytest.approx(QREF_KWH[name])


@pytest.mark.parametrize("profile, nodes, litres", [("M", 1, 150), ("L", 1, 300), ("M", 6, 150), ("L", 6, 200)])
def test_a_day_of_the_standard_profile_uses_its_energy_plus_standing_losses(profile, nodes, litres):
    g = Geyser("g", {"profile": profile, "nodes": nodes, "tank_volume_l": litres, "element_kw": 3.0}, make_ctx())
    drive(g, 1440, 1440)
    eb = g.energy_balance()
    assert eb["unmet_j"] == 0.0
    assert eb["draw_j"] / 3.6e6 == pytest.approx(QREF_KWH[profile], rel=1e-6)
    expected = QREF_KWH[profile] * 3.6e6 + eb["loss_j"]
    assert abs(eb["elec_j"] - expected) <= 0.10 * expected


@pytest.mark.parametrize("nodes, step_s", [(1, 60), (1, 900), (8, 60), (8, 900)])
def test_never_above_setpoint_plus_hysteresis_with_the_element_on(nodes, step_s):
    ctx = make_ctx(n_steps=86400 * 3 // step_s, step_s=step_s)
    g = Geyser("g", {"profile": "L", "nodes": nodes, "setpoint_c": 55, "hysteresis_k": 4, "element_kw": 6,
                     "temp_initial_c": 20}, ctx)
    seen = []
    drive(g, ctx.n_steps, 1, record=lambda el: seen.append((max(el.state["temps"]), el.state["power_w"])))
    temps, power = np.array(seen).T
    assert power.max() > 0
    assert temps[power > 0].max() <= 55 + 4 + 1e-9
    assert temps.max() <= 55 + 1e-9  # the thermostat opens mid-step: never above the setpoint


@pytest.mark.slow  # a year of one-minute steps
@pytest.mark.parametrize("nodes", [1, 4])
def test_geyser_conserves_energy_over_a_year(nodes):
    ctx = make_ctx(n_steps=1440 * 365)
    g = Geyser("g", {"profile": "stochastic", "nodes": nodes, "timers": [{"start": "10:00", "end": "16:00"},
                                                                         {"start": "22:00", "end": "05:00"}]}, ctx)
    drive(g, ctx.n_steps, 1440)
    eb = g.energy_balance()
    assert abs(eb["residual_j"]) <= 1e-3 * (eb["elec_j"] + eb["draw_j"] + eb["loss_j"])
    assert eb["elec_j"] > 0 and eb["draw_j"] > 0 and eb["loss_j"] > 0


@pytest.mark.parametrize("profile, nodes", [("M", 1), ("stochastic", 1), ("stochastic", 5)])
def test_window_size_independence(profile, nodes):
    cfg = {"profile": profile, "nodes": nodes, "temp_initial_c": 50.0, "timers": [{"start": "04:00", "end": "20:00"}]}
    a, b = Geyser("g", cfg, make_ctx()), Geyser("g", cfg, make_ctx())
    ea, eb = drive(a, 1440, 1), drive(b, 1440, 1440)
    np.testing.assert_allclose(ea, eb, rtol=0, atol=1e-9)
    np.testing.assert_allclose(a.state["temps"], b.state["temps"], atol=1e-9)
    assert (ea < 0).any()


def test_shortfall_leaves_the_tank_colder():
    cfg = {"profile": "M", "temp_initial_c": 40.0}
    full, short = Geyser("g", cfg, make_ctx()), Geyser("g", cfg, make_ctx())
    drive(full, 1440, 60)
    drive(short, 1440, 60, served=lambda i, req: req if i >= 600 else np.zeros_like(req))
    assert short.temp_water < full.temp_water - 0.1 or short.state["unmet_j"] > full.state["unmet_j"]
    assert short.state["elec_j"] < full.state["elec_j"]


def test_cold_tank_gives_what_it_has_and_counts_the_rest_unmet():
    g = Geyser("g", {"profile": "L", "mode": "off", "temp_initial_c": 30.0}, make_ctx())
    drive(g, 1440, 1440)
    eb = g.energy_balance()
    assert eb["unmet_j"] > 0 and eb["elec_j"] == 0.0
    assert min(g.state["temps"]) >= 10.0 - 1e-9  # never colder than the mains water (above ambient loss)


def test_stochastic_profile_is_seeded():
    a = drive(Geyser("g", {"profile": "stochastic"}, make_ctx(seed=1)), 1440, 1440)
    b = drive(Geyser("g", {"profile": "stochastic"}, make_ctx(seed=1)), 1440, 1440)
    c = drive(Geyser("g", {"profile": "stochastic"}, make_ctx(seed=2)), 1440, 1440)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@settings(max_examples=30, deadline=None)
@given(field=st.sampled_from(["tank_volume_l", "element_kw", "setpoint_c", "ua_w_k"]),
       value=st.one_of(st.floats(max_value=-1e-6, min_value=-1e9), st.floats(min_value=100.0, max_value=1e4)))
def test_bad_values_are_refused_naming_the_field(field, value):
    if field in ("tank_volume_l", "element_kw", "ua_w_k") and value > 0:
        value = -value
    with pytest.raises(ValidationError) as err:
        Geyser.Config.model_validate({field: value})
    assert field in str(err.value)


def test_thermostat_forecast_cools_through_the_hysteresis_then_reheats():
    """From a full tank with no draws, the element stays off until standing losses take the tank below
    setpoint − hysteresis — written out: τ·ln((60−20)/(55−20)) with τ = m·c/UA = 116.3 h, i.e. 15.5 h — and
    then puts the 5 K back (0.87 kWh, plus what is lost while heating).  The live state is not touched."""
    ctx = make_ctx(n_steps=1440, step_s=60)
    g = Geyser("g", {"profile": "none", "ua_w_k": 1.5, "temp_ambient_c": 20.0, "setpoint_c": 60.0, "hysteresis_k": 5.0,
                     "element_kw": 3.0, "tank_volume_l": 150.0}, ctx)
    before = dict(g.state)
    w = Window(seq=0, i0=0, n=1440, dt_s=60, home=ctx)
    elec = g.thermostat_forecast(w, 60.0)
    on = np.flatnonzero(elec > 0)
    tau_h = 150.0 * C_WATER / 1.5 / 3600.0
    assert on[0] / 60.0 == pytest.approx(tau_h * np.log(40.0 / 35.0), abs=2 / 60)
    # the 5 K, plus what the tank loses (at ~57.5 °C) while the element runs
    lost_while_on = 1.5 * (57.5 - 20.0) * len(on) * 60.0
    assert elec.sum() == pytest.approx(150.0 * C_WATER * 5.0 + lost_while_on, rel=0.005)
    assert (elec <= 3000.0 * 60 + 1e-6).all()
    assert g.state == before
    # the tank at 50 °C with the element already on heats at once; draws of the wrong length are refused
    assert g.thermostat_forecast(w, 50.0, on=True)[0] == pytest.approx(3000.0 * 60)
    with pytest.raises(ValueError, match="thermostat_forecast: draws need 1440 values each"):
        g.thermostat_forecast(w, 60.0, draws=(np.zeros(10), np.zeros(10)))
