"""Heat pump (services/heating/heat_pump.py): COP bounds, hplib vs KEYMARK, energy, windows, control."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from hometwin.element import Window
from hometwin.services.heating.heat_pump import HeatPump, carnot_cop
from test_building import drive, make_ctx, signals

SHARED = Path(os.environ.get("HOMETWIN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CTC = "CTC EcoAir 408 1x230V"

CONFIGS = {
    "carnot": {},
    "air_air": {"type": "air_air", "carnot_fraction": 0.5, "cop_min": 2.5},
    "hplib_on_off": {"model": CTC},
    "table": {"cop_table": [{"temp_air_c": -20, "cop": 1.8, "heat_kw": 4}, {"temp_air_c": -7, "cop": 2.6, "heat_kw": 5},
                            {"temp_air_c": 7, "cop": 4.2, "heat_kw": 6}, {"temp_air_c": 20, "cop": 6.0, "heat_kw": 7}]},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cop_within_physical_bounds_from_minus_25_to_35(name):
    hp = HeatPump("hp", CONFIGS[name], make_ctx())
    t = np.linspace(-25.0, 35.0, 241)
    sp = np.full_like(t, 21.0)
    cop, heat = hp.cop_and_capacity(t, sp)
    limit = carnot_cop(hp.supply_temp(t, sp), t)
    assert np.all(cop <= limit + 1e-12)
    assert np.all(cop >= 1.0)
    assert np.all(heat >= 0.0)
    # the whole unit, backup heater included, over a cold year: heat / electricity >= 1
    hp2 = HeatPump("hp", {**CONFIGS[name], "building": {"preset": "modern"}}, make_ctx(n_steps=1440 * 10))
    drive(hp2, 1440 * 10, 1440, sig=lambda i, n, s: {**signals(i, n, s), "temp_air": np.linspace(-25, 35, n)})
    eb = hp2.energy_balance()
    assert eb["heat_in_j"] >= eb["elec_j"] > 0


def test_carnot_limit_formula():
    assert carnot_cop(35.0, -5.0) == pytest.approx(308.15 / 40.0)
    assert np.isinf(carnot_cop(20.0, 25.0))


def _keymark_points() -> pd.DataFrame:
    raw = pd.read_csv(SHARED / "heat_pump" / "keymark_raw_CTC_EcoAir_408_via_hplib_input.csv")
    avg = raw[(raw["climate"] == 3) & raw["temperature"].isin([4, 5])]
    # EN 14825 average climate: (Pdh, COP) var names per Tj and the supply temperature of each application
    rows = []
    for tj, pdh, cop, low, medium in ((-7, "EN14825_008", "EN14825_009", 34, 52), (2, "EN14825_010", "EN14825_011", 30, 42),
                                     (7, "EN14825_012", "EN14825_013", 27, 36), (12, "EN14825_014", "EN14825_015", 24, 30)):
        for code, supply in ((4, low), (5, medium)):
            sel = avg[avg["temperature"] == code]
            rows.append({"tj": tj, "supply": supply,
                         "pdh_kw": float(sel[sel["varName"] == pdh]["value"].iloc[0]),
                         "cop": float(sel[sel["varName"] == cop]["value"].iloc[0])})
    return pd.DataFrame(rows)


def test_hplib_model_matches_keymark_test_points():
    pts = _keymark_points()
    hp = HeatPump("hp", {"model": CTC}, make_ctx())
    heat, cop = hp.performance(pts["tj"].to_numpy(float), pts["supply"].to_numpy(float))
    err_cop = np.abs(cop / pts["cop"] - 1.0)
    err_p = np.abs(heat / 1000.0 / pts["pdh_kw"] - 1.0)
    assert err_cop.mean() < 0.15 and err_cop.max() < 0.30
    assert err_p.mean() < 0.15 and err_p.max() < 0.30
    # and the KEYMARK COPs themselves never beat Carnot (sanity of the comparison)
    assert np.all(pts["cop"] < carnot_cop(pts["supply"], pts["tj"]))


@pytest.mark.slow  # a year of one-minute steps
def test_heat_pump_conserves_energy_over_a_year():
    ctx = make_ctx(n_steps=1440 * 365)
    hp = HeatPump("hp", {"building": {"preset": "modern"}, "heat_power_kw": 5.0}, ctx)
    drive(hp, ctx.n_steps, 1440, sig=lambda i, n, s: {**signals(i, n, s),
                                                      "temp_air": 5.0 - 12.0 * np.cos(2 * np.pi * (i + np.arange(n)) / (1440 * 365))
                                                      + 4.0 * np.sin(2 * np.pi * (i + np.arange(n)) / 1440)})
    eb = hp.energy_balance()
    # electricity + heat taken from the outdoor air + gains − losses = change of stored heat
    lhs = eb["elec_j"] + eb["ambient_heat_j"] + eb["gains_j"] - eb["loss_j"]
    assert abs(lhs - eb["stored_change_j"]) <= 1e-3 * (eb["heat_in_j"] + eb["gains_j"])
    assert eb["ambient_heat_j"] > eb["elec_j"] > 0  # seasonal COP > 2


@pytest.mark.parametrize("name", ["carnot", "hplib_on_off"])
def test_window_size_independence(name):
    cfg = {**CONFIGS[name], "building": {"preset": "modern", "temp_initial_c": 17.0},
           "presence": [{"start": "06:00", "end": "08:00"}, {"start": "16:00", "end": "23:00"}]}
    sig = lambda i, n, s: {**signals(i, n, s), "temp_air": signals(i, n, s)["temp_air"] - 10.0}
    a = HeatPump("hp", cfg, make_ctx())
    b = HeatPump("hp", cfg, make_ctx())
    ea, eb = drive(a, 1440, 1, sig=sig), drive(b, 1440, 1440, sig=sig)
    np.testing.assert_allclose(ea, eb, rtol=0, atol=1e-9)
    assert (ea < 0).any()
    assert a.state["temp_indoor"] == pytest.approx(b.state["temp_indoor"], abs=1e-9)


def test_min_on_and_off_times_hold():
    ctx = make_ctx()
    hp = HeatPump("hp", {"building": {"preset": "smarthjem"}, "min_on_min": 10, "min_off_min": 15,
                         "min_modulation": 1.0, "backup_kw": 0, "hysteresis_k": 0.5}, ctx)
    on = []
    for i in range(1440):
        w = Window(seq=i, i0=i, n=1, dt_s=60, home=ctx)
        hp.settle(w, 0, hp.request(w, {"temp_air": np.array([0.0])}))
        on.append(hp.state["on"])
    on = np.array(on, dtype=int)
    edges = np.flatnonzero(np.diff(on)) + 1
    runs = np.diff(edges)
    kinds = on[edges[:-1]]
    assert len(edges) > 4
    assert runs[kinds == 1].min() >= 10 and runs[kinds == 0].min() >= 15


def test_shortfall_leaves_the_house_colder():
    cfg = {"building": {"preset": "modern", "temp_initial_c": 17.0}, "mode": "on"}
    sig = lambda i, n, s: signals(i, n, s, temp=-5.0)
    full = HeatPump("hp", cfg, make_ctx())
    half = HeatPump("hp", cfg, make_ctx())
    drive(full, 1440, 60, sig=sig)
    drive(half, 1440, 60, sig=sig, served=lambda i, req: req * 0.5)
    assert half.state["temp_indoor"] < full.state["temp_indoor"] - 0.05


def test_params_for_the_optimizer():
    hp = HeatPump("hp", {"building": {"preset": "modern"}}, make_ctx())
    p = hp.params()
    assert p["states"] == ["temp_indoor", "temp_mass"]
    cop = p["cop"](np.array([-20.0, 0.0, 10.0]))
    assert np.all(np.diff(cop) > 0) and p["max_power_w"] < p["max_heat_w"]
    assert p["ua_w_k"] > 0 and p["c_mass_j_k"] > p["c_air_j_k"]


@pytest.mark.parametrize("cfg, field", [
    ({"cop_table": [{"temp_air_c": -20, "cop": 2, "heat_kw": 4}, {"temp_air_c": 10, "cop": 4, "heat_kw": 6}]}, "cop_table"),
    ({"cop_table": [{"temp_air_c": 0, "cop": 2, "heat_kw": 4}, {"temp_air_c": -5, "cop": 4, "heat_kw": 6}]}, "cop_table"),
    ({"model": "No Such Pump 9000"}, "model"),
    ({"comfort_c": 120}, "comfort_c"),
    ({"heat_power_kw": -3}, "heat_power_kw"),
    ({"building": {"volume_m3": -1, "preset": "modern"}}, "volume_m3"),
])
def test_bad_configs_are_refused_naming_the_field(cfg, field):
    with pytest.raises(ValidationError) as err:
        HeatPump.Config.model_validate(cfg)
    assert field in str(err.value)
