"""Single-step windows cut from a day computed at once (``ChunkCache.of_time``) give the very values the
element computes for the window alone — bit for bit — and a ``set`` takes effect at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hometwin.element import Window
from hometwin.registry import element_class
from hometwin.spec import home_context, load_home

SPEC = Path(__file__).resolve().parents[1] / "examples" / "homes" / "cape-town.yaml"


def _element(name: str):  # type: ignore[no-untyped-def]
    home = load_home(SPEC)
    ctx = home_context(home, 3 * 86400)
    spec = next(e for e in home.spec.elements if e.name == name)
    return element_class(spec.kind)(spec.name, spec.config, ctx), ctx


def _windows(ctx, i0: int, count: int):  # type: ignore[no-untyped-def]
    return [Window(seq=i, i0=i0 + i, n=1, dt_s=ctx.step_s, home=ctx) for i in range(count)]


def _same(a, b) -> bool:  # type: ignore[no-untyped-def]
    a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
    return len(a) == len(b) and all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(a, b))


def test_scheduled_load_steps_equal_their_direct_values_across_midnight_and_a_set() -> None:
    oven, ctx = _element("oven")
    steps = _windows(ctx, 1380, 120)  # 23:00 … 01:00 local: the chunk ends and a new one starts
    for w in steps[:60]:
        assert _same(oven.power(w), oven.power_at(w.epoch_s, w.dt_s))
    on = oven.power(steps[60])
    oven.set(on=True)  # a new config object: the cached day is dropped
    after = oven.power(steps[60])
    assert after[0] == oven.config.power_w and after[0] != on[0]
    for w in steps[60:]:
        assert _same(oven.power(w), oven.power_at(w.epoch_s, w.dt_s))


def test_geyser_draws_and_grid_arrays_match_the_window_alone() -> None:
    geyser, ctx = _element("geyser")
    grid, _ = _element("grid")
    drawn = 0.0
    for w in _windows(ctx, 0, 1500):  # a day and an hour of single steps
        got = geyser.draws(w)
        assert _same(got, geyser.draws_at(w.epoch_s, w.dt_s))
        drawn += float(got[0][0])
        assert _same(grid._window_arrays(w), grid._arrays_at(w.epoch_s, w.dt_s))
    # the EU 812/2013 cycle M draws its taps every day: the single steps really saw them
    assert drawn > 50.0
