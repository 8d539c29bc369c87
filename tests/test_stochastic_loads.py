"""Stochastic appliances (services/appliances/stochastic.py): geometric starts, seeding, windows, smart hook."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from hometwin.element import HomeContext, Window
from hometwin.services.appliances.stochastic import Cooking, Dishwasher, Dryer, StochasticLoad, WashingMachine

CLASSES = [WashingMachine, Dryer, Dishwasher, Cooking, StochasticLoad]


def make_ctx(n_steps: int = 1440, step_s: int = 60, seed: int = 0, tz: str = "Europe/Oslo") -> HomeContext:
    return HomeContext(name="t", latitude=63.4, longitude=10.4, altitude_m=0.0, timezone=tz,
                       start=pd.Timestamp("2025-03-29T23:00:00Z"), step_s=step_s, n_steps=n_steps, seed=seed)


def drive(el, n_total: int, window: int) -> np.ndarray:
    out, i, seq = [], 0, 0
    while i < n_total:
        n = min(window, n_total - i)
        w = Window(seq=seq, i0=i, n=n, dt_s=el.home.step_s, home=el.home)
        req = el.request(w, {})
        el.settle(w, n - 1, req)
        out.append(req)
        i, seq = i + n, seq + 1
    return np.concatenate(out)


@pytest.mark.parametrize("cls", CLASSES)
def test_starts_per_day_follow_the_geometric_distribution(cls):
    el = cls("app", {}, make_ctx(seed=42))
    m = el.config.starts_per_day
    counts = np.array([el.starts_on(d) for d in range(20_000, 30_000)])
    p = 1.0 / (1.0 + m)
    var = (1 - p) / p**2
    assert counts.mean() == pytest.approx(m, abs=4.0 * np.sqrt(var / counts.size))
    assert counts.var() == pytest.approx(var, rel=0.12)
    # the frequencies of 0, 1, 2 starts match P(k) = (1-p)^k p
    for k in range(3):
        assert np.mean(counts == k) == pytest.approx((1 - p) ** k * p, abs=0.02)


def test_same_seed_same_year_other_seed_other_year():
    a = drive(WashingMachine("wm", {}, make_ctx(seed=5)), 1440 * 365, 1440)
    b = drive(WashingMachine("wm", {}, make_ctx(seed=5)), 1440 * 365, 1440)
    c = drive(WashingMachine("wm", {}, make_ctx(seed=6)), 1440 * 365, 1440)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("cls", [WashingMachine, Dishwasher])
def test_window_size_independence_and_carry_over(cls):
    ctx = make_ctx(n_steps=1440 * 3)  # spans the spring DST change in Oslo
    cfg = {"starts_per_day": 3.0, "hourly_weights": [1.0] * 24}
    ea = drive(cls("app", cfg, ctx), 1440 * 3, 1)
    eb = drive(cls("app", cfg, ctx), 1440 * 3, 1440)
    ec = drive(cls("app", cfg, ctx), 1440 * 3, 7)
    np.testing.assert_allclose(ea, eb, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ea, ec, rtol=0, atol=1e-9)
    assert (ea < 0).any()


def test_energy_is_starts_times_cycle_energy():
    ctx = make_ctx(n_steps=1440 * 60)
    el = Dryer("d", {}, ctx)
    energy = -drive(el, ctx.n_steps, 1440).sum()
    e0, e1 = float(ctx.epoch_s(0, 1)[0]), float(ctx.epoch_s(ctx.n_steps - 1, 1)[0] + 60)
    starts = el.cycle_starts(e0, e1)
    inside = starts[(starts >= e0) & (starts + el.cycle_s <= e1)]
    partial = len(starts) - len(inside)
    assert energy >= len(inside) * el.cycle_j - 1e-6
    assert energy <= (len(inside) + partial) * el.cycle_j + 1e-6
    assert el.cycle_j == pytest.approx((2500 * 60 + 1200 * 30 + 150 * 10) * 60)


def test_smart_defer_moves_a_cycle_later():
    ctx = make_ctx(n_steps=1440 * 2)
    cfg = {"starts_per_day": 2.0, "smart": True, "max_delay_h": 6}
    el = Dishwasher("dw", cfg, ctx)
    e0 = float(ctx.epoch_s(0, 1)[0])
    upcoming = []
    day = 0
    while not upcoming:
        upcoming = el.upcoming_starts(e0 + day * 86400, e0 + (day + 1) * 86400)
        day += 1
    first = upcoming[0]
    before = el.energy(Window(seq=0, i0=0, n=ctx.n_steps, dt_s=60, home=ctx)).sum()
    el.defer_to(first["start_epoch_s"], first["start_epoch_s"] + 3 * 3600)
    after = el.energy(Window(seq=0, i0=0, n=ctx.n_steps, dt_s=60, home=ctx))
    assert after.sum() == pytest.approx(before)  # same energy, later
    moved = el.upcoming_starts(first["start_epoch_s"], first["start_epoch_s"] + 86400)
    assert any(u["planned_epoch_s"] == first["start_epoch_s"] + 3 * 3600 for u in moved)
    with pytest.raises(ValueError, match="later"):
        el.defer_to(first["start_epoch_s"], first["start_epoch_s"] - 60)
    with pytest.raises(ValueError, match="smart"):
        Dishwasher("dw", {}, ctx).defer_to(first["start_epoch_s"], first["start_epoch_s"] + 60)


@pytest.mark.parametrize("cfg, field", [
    ({"starts_per_day": -1}, "starts_per_day"),
    ({"hourly_weights": [1.0] * 23}, "hourly_weights"),
    ({"hourly_weights": [0.0] * 24}, "hourly_weights"),
    ({"phases": []}, "phases"),
    ({"phases": [{"duration_min": -5, "power_w": 100}]}, "duration_min"),
    ({"colour": "red"}, "colour"),
])
def test_bad_configs_are_refused_naming_the_field(cfg, field):
    with pytest.raises(ValidationError) as err:
        WashingMachine.Config.model_validate(cfg)
    assert field in str(err.value)
