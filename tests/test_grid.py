"""Grid element: signals, limits, settlement counters, window-size independence, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hometwin.registry import element_class
from hometwin.services.grid.model import Grid
from conftest import make_ctx, shared, window

FULL = {
    "import_limit_kw": 12, "export_limit_kw": 0,
    "tariff": {"type": "time_of_use", "default_price_per_kwh": 0.2,
               "periods": [{"start": "17:00", "end": "21:00", "price_per_kwh": 0.6}]},
    "export_tariff": {"type": "flat", "price_per_kwh": 0.05},
    "fixed_daily_charge": 0.3,
    "outages": {"daily": [{"start": "22:00", "end": "00:30", "days": ["fri"]}],
                "random": {"per_year": 40, "mean_duration_h": 5},
                "intervals": [{"start": "2023-01-03T10:00", "end": "2023-01-03T13:00"}]},
}


def test_registry_and_contract():
    cls = element_class("grid")
    assert cls is Grid and cls.role.value == "grid" and cls.inputs == ()
    assert set(cls.outputs) == {"grid_available", "price_import", "price_export", "import_limit_w", "export_limit_w"}


def test_signals_defaults_unlimited_and_available(ctx):
    g = Grid("grid", {}, ctx)
    w = window(ctx, 0, 60)
    sig = g.signals(w, {})
    assert set(sig) == set(Grid.outputs) and all(v.shape == (60,) for v in sig.values())
    assert (sig["grid_available"] == 1.0).all() and sig["grid_available"].dtype == float
    assert np.isinf(sig["import_limit_w"]).all() and np.isinf(sig["export_limit_w"]).all()
    assert (g.request(w, sig) == 0).all()


def test_limits_in_watts(ctx):
    sig = Grid("grid", {"import_limit_kw": 11.5, "export_limit_kw": 0}, ctx).signals(window(ctx, 0, 3), {})
    assert (sig["import_limit_w"] == 11500.0).all() and (sig["export_limit_w"] == 0.0).all()


def run_grid(ctx, cfg, size, snap_at=None, flow=None):
    g = Grid("grid", cfg, ctx)
    out = {k: [] for k in Grid.outputs}
    flow = np.zeros(ctx.n_steps) if flow is None else flow
    i0 = 0
    while i0 < ctx.n_steps:
        n = min(size, ctx.n_steps - i0)
        w = window(ctx, i0, n)
        sig = g.signals(w, {})
        for k in out:
            out[k].append(sig[k])
        g.settle(w, n - 1, flow[i0:i0 + n])
        if snap_at is not None and i0 <= snap_at < i0 + n:
            snap = g.snapshot()
            g = Grid("grid", {}, ctx)
            g.restore(snap)
        i0 += n
    return {k: np.concatenate(v) for k, v in out.items()}, g


@pytest.mark.parametrize("size", [1, 7, 1440])
def test_window_size_independence_and_restore(size):
    ctx = make_ctx(n_steps=3 * 1440, start="2023-01-01T00:00:00+02:00", tz="Africa/Johannesburg", seed=5)
    cfg = dict(FULL, outages=dict(FULL["outages"], schedule={
        "file": str(shared("loadshedding", "eskom_calendar_schedule_city-of-cape-town-area-1.csv")), "stage": 4}))
    flow = np.sin(np.arange(ctx.n_steps) / 50.0) * 3e5
    ref, g_ref = run_grid(ctx, cfg, 4320, flow=flow)
    got, g = run_grid(ctx, cfg, size, snap_at=2000, flow=flow)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    assert 0 < ref["grid_available"].mean() < 1
    for key in ("import_j", "export_j", "import_cost", "export_revenue"):
        assert g.state[key] == pytest.approx(g_ref.state[key], rel=1e-12)
    assert g.state["fixed_charges"] == g_ref.state["fixed_charges"] == pytest.approx(0.9)
    assert g.state["outage_steps"] == g_ref.state["outage_steps"] == int((ref["grid_available"] == 0).sum())


def test_settle_counters_and_telemetry(ctx):
    g = Grid("grid", {"tariff": {"type": "flat", "price_per_kwh": 0.25}}, ctx)
    w = window(ctx, 0, 4)
    g.settle(w, 2, np.array([60_000.0, -30_000.0, 120_000.0, 999.0]))  # step 3 not settled
    assert g.state["import_j"] == 180_000.0 and g.state["export_j"] == 30_000.0
    assert g.state["import_cost"] == pytest.approx(180_000 / 3.6e6 * 0.25)
    tel = g.telemetry()
    assert tel["import_power_w"] == 2000.0 and tel["export_power_w"] == 0.0 and tel["available"] == 1.0


def test_set_changes_the_next_window(ctx):
    g = Grid("grid", {}, ctx)
    g.set(import_limit_kw=5)
    assert (g.signals(window(ctx, 0, 2), {})["import_limit_w"] == 5000.0).all()


@settings(max_examples=30, deadline=None)
@given(st.floats(max_value=0, allow_nan=False))
def test_non_positive_import_limit_is_refused(limit):
    with pytest.raises(ValidationError) as exc:
        Grid.Config.model_validate({"import_limit_kw": limit})
    assert "import_limit_kw" in str(exc.value)


@settings(max_examples=30, deadline=None)
@given(st.floats(max_value=-1e-9, allow_nan=False))
def test_negative_export_limit_and_charge_are_refused(value):
    for field in ("export_limit_kw", "fixed_daily_charge"):
        with pytest.raises(ValidationError) as exc:
            Grid.Config.model_validate({field: value})
        assert field in str(exc.value)


@pytest.mark.parametrize("bad, field", [
    ({"outages": {"daily": [{"start": "22:00", "end": "24:30"}]}}, "end"),
    ({"outages": {"random": {"per_year": -1, "mean_duration_h": 2}}}, "per_year"),
    ({"outages": {"schedule": {"file": "x.csv", "stage": 9}}}, "stage"),
    ({"outages": {"intervals": [{"start": "2025-01-02T00:00", "end": "2025-01-01T00:00"}]}}, "intervals"),
    ({"tarif": {"type": "flat"}}, "tarif"),
])
def test_bad_outage_config_names_the_field(bad, field):
    with pytest.raises(ValidationError) as exc:
        Grid.Config.model_validate(bad)
    assert field in str(exc.value)
