"""Strategies in closed loop in the engine: LP vs self-consumption vs perfect foresight; load-shedding backup."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from conftest import EXAMPLES, shared
from homes import SUN, WEATHER, battery, grid, home
from hometwin.services.inverter.strategies.base import StrategyError
from hometwin.studies.compare import compare_strategies, run_strategy, with_strategy
from hometwin.spec import load_home


def spot_home(duration: str = "30d", start: str = "2025-02-01T00:00:00"):
    prices = str(shared("spot_prices", "epex_NO3_hourly_eur_mwh_2025-01-24_to_2026-08-21.csv"))
    profile = [0] * 6 + [800, 1200, 600] + [200] * 7 + [900, 1500, 1500, 1000, 600, 300, 100, 0]
    els = [SUN, WEATHER,
           {"name": "roof", "kind": "pv", "config": {"capacity_kwp": 8.0, "tilt_deg": 40, "azimuth_deg": 180}},
           battery(capacity_kwh=10.0, soc_initial=0.5),
           {"name": "inverter", "kind": "inverter", "config": {"ac_power_kw": 6.0}},
           grid(currency="NOK", tariff={"type": "series", "file": prices, "format": "epex_wide", "unit": "per_mwh",
                                        "scale": 11.5, "adder_per_kwh": 0.45},
                export_tariff={"type": "flat", "price_per_kwh": 0.4}),
           {"name": "house", "kind": "base_load", "config": {"power_w": 500, "hourly_profile_w": profile, "noise_std": 0.2}}]
    return home(els, start=start, duration=duration, step_s=900, tz="Europe/Oslo", lat=63.43, lon=10.39)


@pytest.mark.slow  # a long run: closed-loop optimisation over a month (docs/testing.md)
def test_closed_loop_month_lp_vs_self_consumption_and_bound():
    rows = compare_strategies(spot_home(), ["self_consumption", "lp", "lp_forecast_error", "perfect_foresight"])
    sc, lp, lpe, pf = (rows[k] for k in ("self_consumption", "lp", "lp_forecast_error", "perfect_foresight"))
    print("\nFebruary 2025, NO3, 15-min steps (energy cost, NOK):")
    for name, r in rows.items():
        print(f"  {name:18s} {r['energy_cost']:9.2f}  gap {r['gap']:+.2%}  cycles {r['battery_cycles']:.1f}"
              f"  solve median {r.get('solve_median_ms', 0):.1f} ms")
    # the bound is the LP optimum of the run and the simulated reference follows it
    assert pf["energy_cost"] == pytest.approx(pf["bound"], rel=2e-3)
    assert lp["energy_cost"] <= sc["energy_cost"]
    assert lpe["energy_cost"] <= sc["energy_cost"]
    assert lp["gap"] < 0.03  # perfect forecasts: within 3 % of perfect foresight
    assert lp["energy_cost"] >= pf["bound"] - 1e-6 * abs(pf["bound"]) - 0.05
    # with forecast error the gap is reported (printed above), and it is larger than with perfect forecasts
    assert lpe["gap"] >= lp["gap"] - 1e-3


@pytest.mark.slow  # a long run: closed-loop optimisation over days, 22 s at load 6 (docs/testing.md)
def test_load_shedding_backup_leaves_less_unserved_than_self_consumption():
    h = load_home(EXAMPLES / "cape-town-lp.yaml")
    week = 7 * 86400
    sc = run_strategy(h, "self_consumption", until_s=week)
    bk = run_strategy(h, "backup", until_s=week)
    lp = run_strategy(h, {"type": "lp", "forecast": {"perfect": False}}, until_s=week)
    print(f"\nCape Town, a week of daily load-shedding: unserved self-consumption {sc['unserved_kwh']:.2f} kWh, "
          f"backup {bk['unserved_kwh']:.2f} kWh, LP {lp['unserved_kwh']:.2f} kWh")
    assert sc["unserved_kwh"] > 0.5
    assert bk["unserved_kwh"] < sc["unserved_kwh"]
    assert lp["unserved_kwh"] < sc["unserved_kwh"]


def test_strategy_config_is_validated_with_the_field_named():
    with pytest.raises(ValidationError, match="setback_c"):
        with_strategy(spot_home("1d"), {"type": "mpc", "comfort": {"comfort_c": 18, "setback_c": 20}})
    with pytest.raises(ValidationError, match="expected tags: 'rules', 'lp', 'mpc'"):
        with_strategy(spot_home("1d"), {"type": "nonsense"})


def test_reserve_above_battery_max_is_explained():
    h = spot_home("1d")
    h.spec.elements[3].config.soc_max = 0.9
    with pytest.raises(StrategyError, match=r"strategy.reserve_soc: 0.95 is above the battery's soc_max 0.9"):
        run_strategy(h, {"type": "rules", "battery": "backup", "reserve_soc": 0.95})
    with pytest.raises(StrategyError, match=r"soc_floor/target: 0.95 is above the battery's soc_max 0.9"):
        run_strategy(h, {"type": "lp", "reserve_soc": 0.95})


def test_forecast_error_is_seeded_and_day_ahead_prices_do_not_peek():
    from hometwin.engine import Engine
    from hometwin.services.inverter.strategies.forecast import Forecaster
    from hometwin.services.inverter.strategies.config import ForecastConfig

    eng = Engine(spot_home("5d"))
    inv = eng.inverter
    f1 = Forecaster(inv, ForecastConfig()).forecast(4, 48 * 3600, 900)  # issued at 01:00 local
    f2 = Forecaster(inv, ForecastConfig()).forecast(4, 48 * 3600, 900)
    true = Forecaster(inv, None, perfect=True).forecast(4, 48 * 3600, 900)
    assert np.array_equal(f1.pv_kw, f2.pv_kw) and np.array_equal(f1.load_kw, f2.load_kw)
    assert not np.allclose(f1.load_kw, true.load_kw)
    assert f1.load_kw[0] == pytest.approx(true.load_kw[0])  # no error at lead 0
    # at 01:00 only today's prices are published: later days repeat today's
    known = 96 - 4
    assert np.allclose(f1.price_import[:known], true.price_import[:known])
    assert np.allclose(f1.price_import[96:96 + known], true.price_import[:known])
    assert not np.allclose(f1.price_import[known:], true.price_import[known:])
    late = Forecaster(inv, ForecastConfig()).forecast(56, 48 * 3600, 900)  # 14:00: tomorrow is published
    true_late = Forecaster(inv, None, perfect=True).forecast(56, 48 * 3600, 900)
    assert np.allclose(late.price_import[:96 + 40], true_late.price_import[:96 + 40])
