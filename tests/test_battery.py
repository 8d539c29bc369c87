"""Battery model: SoC window, power limits, taper, efficiencies, self-discharge, cycles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hometwin.services.battery.model import Battery, BatteryConfig
from conftest import make_ctx, window

KWH_J = 3.6e6  # J in a kWh, written out: the test does not take the model's constant


def battery(**cfg) -> Battery:
    return Battery("battery", cfg, make_ctx())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-6000, 6000), min_size=1, max_size=300), st.floats(0.1, 0.9), st.floats(0.0, 0.5))
def test_soc_window_and_power_limits_hold(powers, soc0, floor):
    b = battery(capacity_kwh=2.0, soc_min=0.1, soc_max=0.95, soc_initial=max(soc0, 0.1) if soc0 <= 0.95 else 0.95,
                charge_power_kw=3.0, discharge_power_kw=4.0)
    p = np.array(powers)
    dt = 60.0
    res = b.dispatch(dt, np.maximum(p, 0) * dt, np.maximum(-p, 0) * dt, soc_floor=floor)
    soc = res.stored_j / b.capacity_j
    assert soc.min() >= min(0.1, b.soc) - 1e-12 and soc.min() >= 0.1 - 1e-12
    assert soc.max() <= 0.95 + 1e-12
    assert (res.charge_j <= 3000 * dt + 1e-9).all()
    assert (res.discharge_j <= 4000 * dt + 1e-9).all()
    assert (res.charge_j >= 0).all() and (res.discharge_j >= 0).all()
    # never below the floor by discharging
    dis = res.discharge_j > 0
    assert (soc[dis] >= max(floor, 0.1) - 1e-9).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5000, 5000), min_size=1, max_size=200))
def test_internal_energy_is_conserved(powers):
    b = battery(capacity_kwh=5.0, charge_efficiency=0.93, discharge_efficiency=0.96, self_discharge_pct_per_month=3)
    p = np.array(powers) * 60
    e0 = b.state["stored_j"]
    res = b.dispatch(60.0, np.maximum(p, 0), np.maximum(-p, 0))
    # stored change = charged − discharged − internal losses
    delta = res.stored_j[-1] - e0
    assert delta == pytest.approx(res.charge_j.sum() - res.discharge_j.sum() - res.loss_j.sum(), abs=1e-6)


def test_full_charge_time_matches_capacity_over_power_and_efficiency():
    # 10 kWh usable, 10 % → 90 % at 2 kW with 95 % charge efficiency and no taper:
    # 8 kWh stored needs 8 / 0.95 = 8.421 kWh at the terminals = 4.2105 h at 2 kW.
    b = battery(capacity_kwh=10, soc_min=0.1, soc_max=0.9, soc_initial=0.1, charge_power_kw=2,
                charge_efficiency=0.95, taper_soc=0.9, self_discharge_pct_per_month=0)
    res = b.dispatch(60.0, np.full(400, 10_000 * 60.0), np.zeros(400))
    full = np.flatnonzero(res.stored_j >= 0.9 * b.capacity_j - 1e-6)[0]
    assert (full + 1) / 60 == pytest.approx(8 / 0.95 / 2, abs=1 / 60)


def test_taper_reduces_charge_power_near_full():
    b = battery(capacity_kwh=10, soc_initial=0.95, taper_soc=0.9, taper_min_ratio=0.1, charge_power_kw=5,
                self_discharge_pct_per_month=0)
    res = b.dispatch(60.0, np.full(1, 1e9), np.zeros(1))
    # at SoC 0.95 halfway up the taper: limit = 5 kW × (1 − 0.9 × 0.5) = 2.75 kW
    assert res.charge_j[0] / 60 == pytest.approx(2750, rel=1e-9)


def test_self_discharge_rate():
    b = battery(capacity_kwh=10, soc_initial=1.0, self_discharge_pct_per_month=2.0)
    steps = 730  # one month (30.4375 days) in 730 steps
    res = b.dispatch(30.4375 * 86400 / steps, np.zeros(steps), np.zeros(steps))
    assert res.stored_j[-1] / b.capacity_j == pytest.approx(0.98, rel=1e-9)


def test_settle_commits_only_through_k_and_cycles_count_throughput():
    ctx = make_ctx()
    b = Battery("b", {"capacity_kwh": 1.0, "soc_initial": 0.5, "self_discharge_pct_per_month": 0}, ctx)
    w = window(ctx, 0, 10)
    res = b.dispatch(60.0, np.full(10, 6000.0), np.zeros(10))
    b.settle(w, 3, np.zeros(4))
    assert b.state["stored_j"] == res.stored_j[3]
    assert b.state["charged_j"] == pytest.approx(4 * 6000.0)
    assert b.equivalent_full_cycles() == pytest.approx(4 * 6000.0 / (2 * KWH_J))


def test_window_cut_does_not_change_the_trajectory():
    ctx = make_ctx()
    rng = np.random.default_rng(3)
    p = rng.normal(0, 3000, 500) * 60
    whole = Battery("b", {}, ctx)
    res = whole.dispatch(60.0, np.maximum(p, 0), np.maximum(-p, 0))
    pieces = Battery("b", {}, ctx)
    out = []
    for i0 in range(0, 500, 7):
        sl = slice(i0, min(i0 + 7, 500))
        r = pieces.dispatch(60.0, np.maximum(p[sl], 0), np.maximum(-p[sl], 0))
        pieces.settle(window(ctx, i0, len(r.stored_j)), len(r.stored_j) - 1, np.zeros(len(r.stored_j)))
        out.append(r.stored_j)
    assert np.array_equal(np.concatenate(out), res.stored_j)


@pytest.mark.parametrize("field,value", [("capacity_kwh", -5), ("capacity_kwh", 0), ("soc_min", 1.2),
                                         ("charge_efficiency", 1.5), ("soc_initial", -0.1)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValidationError) as exc:
        BatteryConfig(**{field: value})
    assert field in str(exc.value)


def test_soc_window_contradiction_is_explained():
    with pytest.raises(ValidationError, match="soc_min: must be < soc_max"):
        BatteryConfig(soc_min=0.9, soc_max=0.5)
