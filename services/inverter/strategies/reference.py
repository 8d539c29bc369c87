"""The perfect-foresight reference: one optimum over the whole run with the true future.

Not a strategy a real home could run — it reads the future from the shadow
models without error — but the bound every strategy is measured against
(``gap = (cost − bound) / |bound|``).  It solves once, at the first window, over
all remaining steps, and the inverter then follows that plan like any other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hometwin.services.inverter.strategies.base import Strategy
from hometwin.services.inverter.strategies.forecast import Forecaster
from hometwin.services.inverter.strategies.lp import lp_plan


class PerfectForesight(Strategy):
    name = "perfect_foresight"

    def __init__(self, config: Any, inverter: Any):
        super().__init__(config, inverter)
        home = inverter.home
        # the bound is the first solve over the whole run; the plan the inverter follows is re-solved
        # daily from the actual state (still with the true future) so model details the LP leaves out
        # (taper, self-discharge, sub-step variation) cannot accumulate
        self.replan_steps = max(1, min(home.n_steps, 86400 // home.step_s))
        self.forecaster = Forecaster(inverter, None, perfect=True)
        self.bound: float = float("nan")  # the optimal energy cost of the run (LP objective's cost part)

    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(), "bound": float(self.bound)}

    def restore(self, snap: Any) -> None:
        super().restore(snap)
        self.bound = float(snap.get("bound", float("nan")))

    def make_plan(self, w: Any, signals: Any) -> Any:
        cfg = self.config

        class _Cfg:  # what lp_plan reads
            step_min = max(cfg.step_min, self.inverter.home.step_s / 60.0)
            horizon_h = self.inverter.home.n_steps * self.inverter.home.step_s / 3600.0
            wear_cost_per_kwh = cfg.wear_cost_per_kwh
            terminal_value_per_kwh = 0.0
            reserve_soc = None
            outage_reserve = True
            outage_margin_h = 0.0  # the true future: outages exactly as they come, no reserve beyond need
            outage_reserve_factor = 1.0
            value_of_lost_load_per_kwh = cfg.value_of_lost_load_per_kwh
            integer = cfg.integer

        saved, self.config = self.config, _Cfg
        try:
            plan = lp_plan(self, w, perfect=True, horizon_s=(self.inverter.home.n_steps - w.i0) * self.inverter.home.step_s)
        finally:
            self.config = saved
        if not np.isfinite(self.bound):
            self.bound = float(plan.cost)
        return plan


def optimum_cost(home: Any, until_s: int | None = None, step_min: float = 15.0) -> float:
    """The perfect-foresight bound of ``home`` (energy cost over the run), without simulating it."""
    from hometwin.engine import Engine
    from hometwin.services.inverter.strategies.config import PerfectForesightConfig

    eng = Engine(home, until_s=until_s)
    inv = eng.inverter
    pf = PerfectForesight(PerfectForesightConfig(step_min=step_min), inv)
    from hometwin.element import Window

    w = Window(seq=0, i0=0, n=1, dt_s=eng.ctx.step_s, home=eng.ctx)
    pf.make_plan(w, {})
    return pf.bound
