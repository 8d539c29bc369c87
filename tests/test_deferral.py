"""Deferrable appliances in closed loop: strategies move smart appliances' starts to cheap hours."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared
from homes import SUN, WEATHER, grid, home
from hometwin.engine import Engine
from hometwin.studies.compare import run_strategy, with_strategy

KWH = 3.6e6
TOU = {"type": "time_of_use", "default_price_per_kwh": 3.20, "periods": [
    {"start": "06:00", "end": "09:00", "price_per_kwh": 6.60},
    {"start": "17:00", "end": "20:00", "price_per_kwh": 6.60},
    {"start": "22:00", "end": "06:00", "price_per_kwh": 2.30}]}
APPLIANCES = {"washer": ("washing_machine", 12.0), "dishwasher": ("dishwasher", 10.0)}


def appliance_home(smart: bool, tariff: dict | None = None, days: int = 7, tz: str = "Africa/Johannesburg",
                   start: str = "2025-03-03T00:00:00", currency: str = "ZAR"):
    els = [SUN, WEATHER, {"name": "inverter", "kind": "inverter", "config": {"ac_power_kw": 5.0}},
           grid(currency=currency, tariff=tariff or TOU, export_tariff={"type": "flat", "price_per_kwh": 0.5}),
           {"name": "house", "kind": "base_load", "config": {"power_w": 300}}]
    for name, (kind, delay) in APPLIANCES.items():
        els.append({"name": name, "kind": kind, "config": {"smart": smart, "max_delay_h": delay, "starts_per_day": 1.0}})
    return home(els, start=start, duration=f"{days}d", step_s=300, tz=tz)


def run(h, strategy, window=None):
    """Run with ``strategy``; every defer_to call recorded as (appliance, drawn start, new start)."""
    eng = Engine(with_strategy(h, strategy), window=window)
    calls = []
    for name in APPLIANCES:
        el = eng.elements[name]

        def spy(orig, new, _el=el, _name=name, _real=el.defer_to):
            calls.append((_name, float(orig), float(new)))
            return _real(orig, new)

        el.defer_to = spy
    res = eng.run()
    return res, calls, eng.inverter.strategy


def appliance_figures(res) -> dict[str, tuple[float, float]]:
    """(energy kWh, energy × import price) of each appliance over the run."""
    f = res.frame
    out = {}
    for name in APPLIANCES:
        e = -f[f"el.{name}_j"].to_numpy() / KWH
        out[name] = (float(e.sum()), float((e * f["price_import"].to_numpy()).sum()))
    return out


@pytest.mark.parametrize("strategy", ["lp", {"type": "rules", "battery": "self_consumption", "defer_appliances": True},
                                      {"type": "heating_mpc", "horizon_h": 8, "replan_min": 60}])
@pytest.mark.slow  # a long run: closed-loop optimisation over days, 9-12 s at load 6 (docs/testing.md)
def test_smart_appliances_run_cheaper_on_time_of_use(strategy):
    base, base_calls, _ = run(appliance_home(False), strategy)
    smart, calls, strat = run(appliance_home(True), strategy)
    b, s = appliance_figures(base), appliance_figures(smart)
    print(f"\n{strategy}: " + ", ".join(f"{n} {b[n][1]:.2f} → {s[n][1]:.2f} ZAR ({s[n][1] / b[n][1] - 1:+.1%})"
                                      for n in APPLIANCES)
          + f"; run energy cost {base.kpis()['energy_cost']:.2f} → {smart.kpis()['energy_cost']:.2f} ZAR")
    assert not base_calls  # smart: false appliances are never moved
    assert calls
    for name, (kind, delay) in APPLIANCES.items():
        assert s[name][0] == pytest.approx(b[name][0], rel=1e-9)  # same cycles, same energy, just moved
        assert s[name][1] < 0.8 * b[name][1]  # and cheaper
    for name, orig, new in calls:  # never earlier, never beyond max_delay_h
        assert 0.0 <= new - orig <= APPLIANCES[name][1] * 3600.0
    for (name, orig), new in strat.appliance_scheduler().decisions.items():
        assert 0 <= new - orig <= APPLIANCES[name][1] * 3600
    assert smart.kpis()["energy_cost"] < base.kpis()["energy_cost"]
    assert any(strat.plan.starts.values()) or strat.appliance_scheduler().decisions


@pytest.mark.slow  # a long run: closed-loop optimisation over days, 15 s at load 6 (docs/testing.md)
def test_spot_prices_day_ahead_forecast_not_the_true_future():
    prices = str(shared("spot_prices", "epex_NO3_hourly_eur_mwh_2025-01-24_to_2026-08-21.csv"))
    spot = {"type": "series", "file": prices, "format": "epex_wide", "unit": "per_mwh", "scale": 11.5,
            "adder_per_kwh": 0.45}
    kw = dict(tariff=spot, tz="Europe/Oslo", start="2025-02-03T00:00:00", currency="NOK", days=7)
    base = appliance_figures(run(appliance_home(False, **kw), "lp_forecast_error")[0])
    smart = appliance_figures(run(appliance_home(True, **kw), "lp_forecast_error")[0])
    bound = appliance_figures(run(appliance_home(True, **kw), {"type": "lp", "forecast": {"perfect": True}})[0])
    cost = lambda d: sum(v[1] for v in d.values())  # noqa: E731
    print(f"\nNO3 spot, 7 days: appliances {cost(base):.2f} NOK as drawn, {cost(smart):.2f} NOK deferred on the "
          f"day-ahead forecast ({cost(smart) / cost(base) - 1:+.1%}), {cost(bound):.2f} NOK on perfect prices")
    assert cost(smart) < cost(base)
    assert cost(bound) <= cost(smart) + 1e-9  # knowing the prices can only help
    for name in APPLIANCES:
        assert smart[name][0] == pytest.approx(base[name][0], rel=1e-9)


def test_deferral_is_window_size_independent_and_deterministic():
    h = appliance_home(True, days=3)
    a, ca, _ = run(h, "lp")
    b, cb, _ = run(h, "lp", window=7)
    c, cc, _ = run(h, "lp", window=1000)
    assert ca == cb == cc
    for x in (b, c):
        for col in ("cost", "el.washer_j", "el.dishwasher_j", "grid_import_j"):
            assert np.array_equal(a.frame[col].to_numpy(), x.frame[col].to_numpy()), col


def test_rules_do_not_defer_unless_asked():
    res, calls, strat = run(appliance_home(True, days=2), "self_consumption")
    assert not calls and strat.appliance_scheduler() is None
