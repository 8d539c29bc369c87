"""The perfect-foresight reference: one optimum over the whole run with the true future.

Not a strategy a real home could run — it reads the future from the shadow models without error —
but the bound every strategy is measured against.  It plans **every** flexible element of the home
in one LP over all remaining steps (see :mod:`.bound`): the battery, each heat pump or heater with
its building, the geysers with their draws, and (before each plan, on the true prices) the smart
appliances' starts.  Its objective is the score the comparison gives every strategy: energy cost
+ unserved energy × the value of lost load + K·h outside the comfort band while someone is home ×
``comfort_weight_per_kh``.

``bound`` is that score of the first solve, over the whole run (the geysers' soft penalties left
out: they are not scored).  The inverter then follows the plan, re-solved every ``replan_min``
from the state reached, still with the true future, over ``replan_horizon_h`` (72 h: the battery,
the building and the tank all turn over within a day; ``None``: the rest of the run), so the
details the 15-minute model leaves out (taper, sub-step load peaks, the minute-by-minute weather)
cannot accumulate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hometwin.flex import HeatPlan
from hometwin.services.inverter.strategies.base import Plan, Strategy
from hometwin.services.inverter.strategies.forecast import Forecaster
from hometwin.services.inverter.strategies.lp import (BatteryModel, DispatchProblem, battery_flex, plan_from_dispatch,
                                                      solve_dispatch)


class PerfectForesight(Strategy):
    name = "perfect_foresight"

    def __init__(self, config: Any, inverter: Any):
        super().__init__(config, inverter)
        home = inverter.home
        replan_s = float(getattr(config, "replan_min", 60.0)) * 60.0
        self.replan_steps = max(1, min(home.n_steps, int(round(replan_s / home.step_s))))
        self.forecaster = Forecaster(inverter, None, perfect=True)
        self.bound: float = float("nan")  # the optimal score of the run (first solve)
        self.bound_parts: dict[str, float] = {}
        self.voll_per_kwh: float = float("nan")  # the value of lost load the plans price unserved energy at
        self._blocks: list[Any] = []
        self.pf_config = config

    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(), "bound": float(self.bound), "voll_per_kwh": float(self.voll_per_kwh),
                "bound_parts": {k: float(v) for k, v in self.bound_parts.items()}}

    def restore(self, snap: Any) -> None:
        super().restore(snap)
        self.bound = float(snap.get("bound", float("nan")))
        self.voll_per_kwh = float(snap.get("voll_per_kwh", float("nan")))
        self.bound_parts = {str(k): float(v) for k, v in (snap.get("bound_parts") or {}).items()}

    # -- the plan -------------------------------------------------------------------------------
    def thermal_blocks(self, fc: Any) -> list[Any]:
        from hometwin.services.inverter.strategies.bound import heat_blocks

        cfg = self.pf_config
        self._blocks = heat_blocks(self, fc, cfg.comfort, cfg.comfort_weight_per_kh)
        out: list[Any] = list(self._blocks)
        if self.hot_water is not None:
            out += self.hot_water.blocks(fc)
        return out

    def thermal_plan(self, plan: Plan, sol: Any, fc: Any) -> None:
        if self.hot_water is not None:
            self.hot_water.store(plan, sol)
        for blk in self._blocks:
            th = sol.thermal[blk.name]
            plan.power_w[blk.name] = th["power_kw"] * 1000.0
            plan.setpoints[blk.name] = th["temp"][1:]
            plan.info.setdefault("heat_kw", {})[blk.name] = th["heat_kw"]

    def apply_thermal(self, w: Any) -> None:
        """Each heated element runs the planned heat (the thermostat bypassed), from this window on."""
        from hometwin.services.inverter.strategies.bound import heated_elements

        plan = self.plan
        if plan is None:
            return
        k = max(1, plan.dt_s // self.inverter.home.step_s)
        for name, (el, _) in heated_elements(self.inverter).items():
            heat = plan.info.get("heat_kw", {}).get(name)
            if heat is not None:
                el.command(HeatPlan(w.i0, heat_w=np.repeat(np.maximum(np.asarray(heat), 0.0) * 1000.0, k)))

    def make_plan(self, w: Any, signals: Any) -> Any:
        cfg = self.config
        home = self.inverter.home
        if self.hot_water is not None and not self.hot_water.geysers():
            self.hot_water = None  # no geyser in this home: nothing to plan

        horizon_s = (home.n_steps - w.i0) * home.step_s
        first = not np.isfinite(self.bound)
        if first and horizon_s > cfg.joint_max_days * 86400 and self._blocks_bound():
            first = False  # the bound came from blocks; the plans look ahead replan_horizon_h
        if not first and cfg.replan_horizon_h is not None:
            horizon_s = min(horizon_s, cfg.replan_horizon_h * 3600.0)
        step_s = max(cfg.step_min * 60.0, float(home.step_s))
        fc = self.forecaster.forecast(w.i0, horizon_s, step_s, perfect=True)
        port = battery_flex(self.inverter)
        bm, soc0 = None, 0.0
        if port is not None:
            bm = BatteryModel.from_flex(port, self.inverter)
            soc0 = port.stored_j / port.capacity_j
        # the true future: outages exactly as they come (no grid exchange in them, unserved load at the VoLL),
        # no reserve beyond need, nothing stored is worth anything after the run
        prob = DispatchProblem(dt_h=fc.dt_h, pv_kw=fc.pv_kw, load_kw=fc.load_kw, price_import=fc.price_import,
                               price_export=fc.price_export, soc0=soc0, battery=bm, available=fc.available,
                               import_limit_kw=fc.import_limit_kw, export_limit_kw=fc.export_limit_kw,
                               wear_cost_per_kwh=cfg.wear_cost_per_kwh, terminal_value_per_kwh=0.0,
                               unserved_penalty_per_kwh=cfg.value_of_lost_load_per_kwh,
                               thermal=self.thermal_blocks(fc), integer=cfg.integer, mip_rel_gap=cfg.mip_rel_gap)
        sol = solve_dispatch(prob, time_limit_s=None)
        plan = plan_from_dispatch(sol, fc.t0_s, fc.dt_s)
        plan.info["forecast"] = fc
        plan.info["dispatch"] = sol
        self.thermal_plan(plan, sol, fc)
        if first:
            self.bound_parts = self.score_parts(plan)
            self.bound = float(sum(self.bound_parts.values()))
        return plan

    def _blocks_bound(self) -> bool:
        """The bound of a long run from blocks (:func:`.bound.blocks_bound`); False where the home has what
        the blocks do not relax (geysers, smart appliances): then the joint LP it is."""
        from hometwin.services.inverter.strategies.bound import blocks_bound

        cfg = self.pf_config
        try:
            d = blocks_bound(self.inverter, self.forecaster, cfg.block_days, max(cfg.step_min, 0.0), cfg.comfort,
                             cfg.comfort_weight_per_kh, cfg.value_of_lost_load_per_kwh)
        except ValueError:
            return False
        self.bound_parts = {k: float(v) for k, v in d["parts"].items()}
        self.bound = float(d["bound"])
        self.voll_per_kwh = float(d["voll_per_kwh"])
        return True

    def score_parts(self, plan: Plan) -> dict[str, float]:
        """The plan's score as the comparison counts it: energy cost, lost load, discomfort."""
        sol = plan.info["dispatch"]
        fc = plan.info["forecast"]
        voll = self.pf_config.value_of_lost_load_per_kwh
        if voll is None:  # solve_dispatch's default
            voll = 10.0 * float(max(np.max(np.abs(fc.price_import)), np.max(np.abs(fc.price_export)), 0.0)) + 10.0
        self.voll_per_kwh = float(voll)
        comfort = sum(blk.comfort_cost(sol.thermal[blk.name], sol.dt_h) for blk in self._blocks)
        return {"energy_cost": float(sol.energy_cost),
                "lost_load_cost": float(np.sum(sol.unserved_kw) * sol.dt_h * voll),
                "comfort_cost": float(comfort)}
