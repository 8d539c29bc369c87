"""Rule-based strategies: self-consumption, automatic time-of-use, load-shedding-aware backup.

Heating under rules is the thermostat with timer that the heating elements run
themselves (comfort inside their presence windows, set-back outside): the rules
strategy sends them no plan.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from hometwin.services.inverter.strategies.base import Plan, Strategy, StrategyError
from hometwin.services.inverter.strategies.forecast import Forecaster
from hometwin.services.inverter.strategies.lp import battery_flex
from hometwin.flex import BatteryFlex
from hometwin.units import J_PER_KWH



class RulesStrategy(Strategy):
    name = "rules"

    def __init__(self, config: Any, inverter: Any):
        super().__init__(config, inverter)
        self.name = f"rules:{config.battery}"
        self.replan_steps = max(1, int(round(config.replan_min * 60 / inverter.home.step_s)))
        self.forecaster = Forecaster(inverter, config.forecast)
        if config.battery == "time_of_use" and config.target_soc <= 0:
            raise StrategyError("strategy.target_soc: time_of_use needs a target above 0")

    def make_plan(self, w: Any, signals: Mapping[str, np.ndarray]) -> Plan:
        c = self.config
        home = self.inverter.home
        t0 = int(w.epoch_s[0])
        params = battery_flex(self.inverter)
        if c.battery == "self_consumption" or params is None:
            return Plan(t0_s=t0, dt_s=home.step_s, n=1, info={"rule": "self_consumption"})
        if params is not None and c.battery == "time_of_use" and c.target_soc > params.soc_max + 1e-9:
            raise StrategyError(f"strategy.target_soc: {c.target_soc} is above the battery's soc_max {params.soc_max}")
        if c.battery == "backup" and c.reserve_soc > params.soc_max + 1e-9:
            raise StrategyError(f"strategy.reserve_soc: {c.reserve_soc} is above the battery's soc_max {params.soc_max}")
        fc = self.forecaster.forecast(w.i0, 24 * 3600.0, home.step_s)
        n = fc.n
        floor = np.zeros(n)
        charge = np.full(n, np.nan)
        discharge = np.full(n, np.nan)
        imp = np.full(n, np.nan)
        if c.battery == "time_of_use":
            steps_h = max(1, int(round(3600 / fc.dt_s)))
            order = np.argsort(fc.price_import)
            cheap = np.zeros(n, dtype=bool)
            cheap[order[: c.cheap_hours * steps_h]] = True
            dear = np.zeros(n, dtype=bool)
            dear[order[::-1][: c.expensive_hours * steps_h]] = True
            # cheap: grid-charge up to target; dear: discharge freely; between: keep what is there
            soc = params.stored_j / params.capacity_j
            floor = np.where(dear, 0.0, np.where(cheap, c.target_soc, min(soc, c.target_soc)))
            floor[cheap] = c.target_soc
            rate = params.charge_power_w
            charge = np.where(cheap, rate, np.nan)
            imp = np.where(cheap, rate, np.nan)
            discharge = np.where(cheap, 0.0, np.nan)
        elif c.battery == "backup":
            floor = self._backup_floor(fc, params)
            soc = params.stored_j / params.capacity_j
            need = floor[0] if n else 0.0
            if soc < need - 1e-3 and fc.available[0]:
                rate = params.charge_power_w
                charge[:1] = rate
                imp[:1] = rate
                discharge[:1] = 0.0
        return Plan(t0_s=fc.t0_s, dt_s=fc.dt_s, n=n, charge_w=charge, discharge_w=discharge, import_w=imp,
                    export_w=np.full(n, np.nan), soc_floor=floor, grid_target_soc=np.maximum(floor, 0.0),
                    info={"rule": c.battery})

    def _backup_floor(self, fc: Any, params: BatteryFlex) -> np.ndarray:
        """SoC floor per step: the reserve, raised before each announced outage to what rides it through."""
        c = self.config
        n = fc.n
        cap = params.capacity_j / J_PER_KWH
        eta = params.discharge_efficiency * self.inverter.config.battery_efficiency
        soc_min, soc_max = params.soc_min, params.soc_max
        avail = fc.available
        floor = np.where(avail, c.reserve_soc, 0.0)
        lead = int(round(c.outage_lead_h * 3600 / fc.dt_s))
        load = fc.load_kw if c.critical_load_kw is None else np.full(n, c.critical_load_kw)
        i = 0
        while i < n:
            if avail[i]:
                i += 1
                continue
            j = i
            while j < n and not avail[j]:
                j += 1
            deficit = np.maximum(load[i:j] - fc.pv_kw[i:j], 0.0).sum() * fc.dt_h
            target = min(soc_max, soc_min + c.margin * deficit / eta / cap)
            a = max(0, i - lead)
            floor[a:i] = np.maximum(floor[a:i], target)
            i = j
        return floor
