"""The clock service cuts windows where the in-process engine does (no router needed)."""

from __future__ import annotations

from hometwin.engine import Engine
from hometwin.runtime.clock import Clock, replan_steps_of
from hometwin.spec import home_context, load_home
from conftest import EXAMPLES


def _engine_windows(home, until_s):
    eng = Engine(home, until_s=until_s)
    lengths = []
    while eng.i < eng.ctx.n_steps:
        rec = eng.step_window()
        lengths.append((rec.window.i0, rec.window.n))
    return lengths


def _clock_windows(home, until_s, starts):
    ctx = home_context(home, until_s)
    clk = Clock(ctx, speed="max", default_window=home.spec.clock.window, replan_steps=replan_steps_of(home, ctx))
    out = []
    for i0 in starts:
        clk.i = i0
        out.append((i0, clk.window_len()))
    return out


def test_clock_cuts_windows_at_the_strategy_replan_boundaries_like_the_engine():
    home = load_home(EXAMPLES / "cape-town-lp.yaml")
    ctx = home_context(home, 86400)
    assert replan_steps_of(home, ctx) > 0
    eng = _engine_windows(home, 86400)
    assert len(eng) > 1  # the strategy really cuts the day
    assert _clock_windows(home, 86400, [i0 for i0, _ in eng]) == eng


def test_no_strategy_no_cut():
    home = load_home(EXAMPLES / "cape-town.yaml")
    ctx = home_context(home, 2 * 86400)
    assert replan_steps_of(home, ctx) == 0
    assert _clock_windows(home, 2 * 86400, [0, 1440]) == [(0, 1440), (1440, 1440)]
