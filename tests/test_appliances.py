"""Scheduled loads and the base load: energy, timers, duty cycles, switches, profiles, validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hometwin.registry import element_class
from hometwin.services.appliances import profiles
from hometwin.services.appliances.base_load import BaseLoad
from hometwin.services.appliances.scheduled import TV, Fridge, Kettle, Lights, Oven, ScheduledLoad
from conftest import make_ctx, shared, window

OSLO_DAY = dict(n_steps=1440, step_s=60, start="2025-01-15T00:00:00+01:00", tz="Europe/Oslo")


def day_request(el, ctx) -> np.ndarray:
    return el.request(window(ctx, 0, ctx.n_steps), {})


def test_oven_one_hour_at_2000_w_is_7_2_mj_exactly():
    ctx = make_ctx(**OSLO_DAY)
    oven = Oven("oven", {"timers": [{"start": "18:00", "end": "19:00"}]}, ctx)
    req = day_request(oven, ctx)
    assert req.sum() == -7_200_000.0
    assert (req[18 * 60:19 * 60] == -120_000.0).all() and (req[:18 * 60] == 0).all()


def test_oven_without_timers_and_switch_draws_nothing():
    ctx = make_ctx(**OSLO_DAY)
    assert (day_request(Oven("oven", {"timers": []}, ctx), ctx) == 0).all()


def test_timer_is_in_local_time_across_dst():
    ctx = make_ctx(n_steps=3 * 96, step_s=900, start="2025-03-29T00:00:00+01:00", tz="Europe/Oslo")
    tv = TV("tv", {"standby_w": 0}, ctx)
    req = day_request(tv, ctx)
    on = req < 0
    w = window(ctx, 0, ctx.n_steps)
    assert set(w.local_times[on].hour) == {19, 20, 21, 22}
    assert on.sum() == 3 * 16


def test_timer_starting_mid_step_counts_the_fraction():
    ctx = make_ctx(n_steps=8, step_s=900, start="2025-01-15T18:00:00+01:00", tz="Europe/Oslo")
    load = ScheduledLoad("x", {"power_w": 1000, "timers": [{"start": "18:10", "end": "18:50"}]}, ctx)
    req = day_request(load, ctx)
    assert req[:4] == pytest.approx([-300_000, -900_000, -900_000, -300_000])  # 5+15+15+5 min
    assert req.sum() == pytest.approx(-1000 * 40 * 60)


def test_standby_and_timer_power():
    ctx = make_ctx(**OSLO_DAY)
    load = ScheduledLoad("x", {"power_w": 100, "standby_w": 2,
                               "timers": [{"start": "08:00", "end": "09:00", "power_w": 400}]}, ctx)
    req = day_request(load, ctx)
    assert -req.sum() == pytest.approx((400 * 3600 + 2 * 23 * 3600))


def test_duty_cycle_average_power():
    ctx = make_ctx(n_steps=7 * 1440, step_s=60)
    fridge = Fridge("fridge", {}, ctx)
    req = day_request(fridge, ctx)
    assert -req.sum() / (7 * 86400) == pytest.approx(120 * 0.35, rel=1e-12)
    # 20-min cycle: on for 7 of every 20 minutes at 1-min steps
    assert (-req[:20] / 60 == [120] * 7 + [0] * 13).all()


@settings(max_examples=40, deadline=None)
@given(st.floats(1, 3600), st.floats(0.05, 1), st.floats(1, 120), st.floats(0, 100))
def test_duty_cycle_fraction_is_exact_over_whole_periods(dt_s, on, period_min, phase_min):
    period_s = period_min * 60
    n = int(np.ceil(10 * period_s / dt_s))
    t = 1.7e9 + np.arange(n) * dt_s
    f = profiles.duty_cycle_fraction(t, dt_s, period_s, on, phase_min * 60)
    assert ((f >= -1e-9) & (f <= 1 + 1e-9)).all()
    covered = n * dt_s
    assert (f * dt_s).sum() == pytest.approx(on * covered, abs=on * period_s + 1e-6)


def test_set_on_changes_the_next_request():
    ctx = make_ctx(**OSLO_DAY)
    oven = Oven("oven", {"timers": []}, ctx)
    w = window(ctx, 600, 10)
    assert (oven.request(w, {}) == 0).all()
    assert oven.set(on=True) == {"on": True}
    assert (oven.request(window(ctx, 610, 10), {}) == -120_000.0).all()
    oven.set(on=False)
    assert (oven.request(window(ctx, 620, 10), {}) == 0).all()


def test_settle_and_telemetry():
    ctx = make_ctx(**OSLO_DAY)
    kettle = Kettle("kettle", {"on": True}, ctx)
    w = window(ctx, 0, 5)
    kettle.settle(w, 2, kettle.request(w, {}))
    assert kettle.state["energy_j"] == 3 * 120_000.0 and kettle.telemetry()["power_w"] == 2000.0


def run_load(el_factory, ctx, size, snap_at=None) -> np.ndarray:
    el = el_factory()
    parts, i0 = [], 0
    while i0 < ctx.n_steps:
        n = min(size, ctx.n_steps - i0)
        w = window(ctx, i0, n)
        r = el.request(w, {})
        parts.append(r)
        el.settle(w, n - 1, r)
        if snap_at is not None and i0 <= snap_at < i0 + n:
            snap = el.snapshot()
            el = el_factory()
            el.restore(snap)
        i0 += n
    return np.concatenate(parts)


@pytest.mark.parametrize("kind, cfg", [
    ("fridge", {"duty_cycle": {"period_min": 17, "on_fraction": 0.4, "phase_min": 3}}),
    ("lights", {}), ("kettle", {}), ("tv", {}), ("oven", {}),
    ("scheduled_load", {"power_w": 500, "timers": [{"start": "23:10", "end": "01:20", "days": ["sat"]}]}),
    ("base_load", {"hourly_profile_w": list(range(0, 240, 10)), "noise_std": 0.3, "noise_step_min": 10}),
])
@pytest.mark.parametrize("size", [1, 7, 1440])
def test_window_size_independence(kind, cfg, size):
    ctx = make_ctx(n_steps=3 * 1440, step_s=60, start="2025-10-24T00:00:00+02:00", tz="Europe/Oslo", seed=9)
    cls = element_class(kind)
    ref = run_load(lambda: cls(kind, cfg, ctx), ctx, 3 * 1440)
    got = run_load(lambda: cls(kind, cfg, ctx), ctx, size, snap_at=1500)
    np.testing.assert_array_equal(got, ref)
    assert (ref <= 0).all() and ref.sum() < 0


def test_presets_defaults_per_day():
    ctx = make_ctx(**OSLO_DAY)
    kwh = {cls.kind: -day_request(cls(cls.kind, {}, ctx), ctx).sum() / 3.6e6
           for cls in (Oven, TV, Kettle, Lights, Fridge)}
    assert kwh == pytest.approx({"oven": 2.0, "tv": 0.5, "kettle": 0.2, "lights": 1.05, "fridge": 1.008})


def test_base_load_hourly_profile_in_local_time_and_constant():
    ctx = make_ctx(n_steps=24, step_s=3600, start="2025-07-01T00:00:00+02:00", tz="Europe/Oslo")
    prof = [0.0] * 24
    prof[18] = 1000.0
    req = day_request(BaseLoad("base", {"power_w": 100, "hourly_profile_w": prof}, ctx), ctx)
    assert (-req / 3600)[18] == 1100.0 and (-req / 3600)[17] == 100.0


def test_base_load_noise_is_seeded_and_mean_preserving():
    ctx = make_ctx(n_steps=60 * 1440, step_s=60, seed=2)
    a = day_request(BaseLoad("base", {"power_w": 500, "noise_std": 0.2}, ctx), ctx)
    b = day_request(BaseLoad("base", {"power_w": 500, "noise_std": 0.2}, ctx), ctx)
    c = day_request(BaseLoad("other", {"power_w": 500, "noise_std": 0.2}, ctx), ctx)
    assert (a == b).all() and not (a == c).all()
    assert -a.mean() / 60 == pytest.approx(500, rel=0.02)
    assert len(np.unique(a[:15])) == 1  # held for 15 minutes


def test_base_load_csv_profile_repeating_daily():
    path = shared("household_load", "emhass_ha_history_power_load_no_var_loads_W_2022-10-19_to_20_utc.csv")
    ctx = make_ctx(n_steps=2 * 1440, step_s=60, start="2025-03-03T00:00:00Z", tz="UTC")
    el = BaseLoad("base", {"power_w": 0, "profile": {"file": str(path), "repeat": "day"}}, ctx)
    p = -day_request(el, ctx) / 60
    frame = pd.read_csv(path)
    t = pd.to_datetime(frame["last_changed_utc"], format="ISO8601")
    first = frame["power_W"][(t.dt.hour == 19) & (t.dt.minute == 0)].iloc[0]
    assert p[19 * 60] == pytest.approx(max(first, 0.0))
    assert (p[:1440] == p[1440:]).all() and (p >= 0).all()
    assert 400 < p.mean() < 900  # the file's mean is 684 W (a few negative values clipped)


def test_base_load_csv_profile_repeating_yearly(tmp_path):
    path = tmp_path / "year.csv"
    path.write_text("time,power_w\n2023-01-01T00:00,100\n2023-07-01T00:00,300\n")
    ctx = make_ctx(n_steps=2, step_s=3600 * 24 * 182, start="2024-01-01T00:00:00Z", tz="UTC")
    p = -day_request(BaseLoad("b", {"power_w": 0, "profile": {"file": str(path)}}, ctx), ctx) / ctx.step_s
    assert list(p) == [100.0, 300.0]  # 2024-07-01: Feb 29 folds, so it is July 1 of the profile


@settings(max_examples=40, deadline=None)
@given(st.floats(max_value=0, allow_nan=False))
def test_non_positive_power_is_refused(power):
    for cls in (ScheduledLoad, Oven, TV):
        with pytest.raises(ValidationError) as exc:
            cls.Config.model_validate({"power_w": power})
        assert "power_w" in str(exc.value)


@settings(max_examples=40, deadline=None)
@given(st.floats(max_value=-1e-9, allow_nan=False))
def test_negative_standby_and_base_power_are_refused(value):
    with pytest.raises(ValidationError, match="standby_w"):
        ScheduledLoad.Config.model_validate({"standby_w": value})
    with pytest.raises(ValidationError, match="power_w"):
        BaseLoad.Config.model_validate({"power_w": value})


@settings(max_examples=40, deadline=None)
@given(st.integers(24, 99), st.integers(0, 59))
def test_bad_times_are_refused(hh, mm):
    if hh == 24 and mm == 0:
        return  # 24:00 is the end of the day
    with pytest.raises(ValidationError) as exc:
        ScheduledLoad.Config.model_validate({"timers": [{"start": f"{hh:02d}:{mm:02d}", "end": "01:00"}]})
    assert "timers.0.start" in str(exc.value)


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=8).filter(lambda s: s not in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")))
def test_unknown_weekday_is_refused(day):
    with pytest.raises(ValidationError) as exc:
        Lights.Config.model_validate({"timers": [{"start": "18:00", "end": "23:00", "days": [day]}]})
    assert "days" in str(exc.value)


@pytest.mark.parametrize("bad, field", [
    ({"duty_cycle": {"period_min": 0}}, "period_min"),
    ({"duty_cycle": {"on_fraction": 1.5}}, "on_fraction"),
    ({"timers": [{"start": "18:00", "end": "18:00"}]}, "timers"),
    ({"power_w": 100, "standby_w": 200}, "standby_w"),
    ({"powr_w": 100}, "powr_w"),
])
def test_bad_scheduled_configs_name_the_field(bad, field):
    with pytest.raises(ValidationError) as exc:
        ScheduledLoad.Config.model_validate(bad)
    assert field in str(exc.value)


@pytest.mark.parametrize("bad, field", [
    ({"hourly_profile_w": [1.0] * 23}, "hourly_profile_w"),
    ({"hourly_profile_w": [-1.0] * 24}, "hourly_profile_w"),
    ({"noise_std": 2}, "noise_std"),
    ({"noise_step_min": 7}, "noise_step_min"),
])
def test_bad_base_load_configs_name_the_field(bad, field):
    with pytest.raises(ValidationError) as exc:
        BaseLoad.Config.model_validate(bad)
    assert field in str(exc.value)


def test_base_load_noise_differs_between_days():
    ctx = make_ctx(n_steps=2 * 1440, step_s=60, seed=2)
    a = day_request(BaseLoad("base", {"power_w": 500, "noise_std": 0.2}, ctx), ctx)
    assert not np.allclose(a[:1440], a[1440:])
