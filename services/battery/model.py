"""Battery: usable capacity, SoC window, power limits, efficiencies, taper, self-discharge.

The battery is *dispatched* by the inverter: for each window the inverter asks,
per step, how much DC energy it would like the battery to absorb or supply, and
the battery answers with what it can do, step by step, from its own state
(:meth:`Battery.dispatch`).  The answer is tentative; :meth:`Battery.settle`
commits the state through the step the window was settled at.

All energies here are at the battery's DC terminals, in joules per step.  The
inverter's conversion between the AC bus and the terminals is the inverter's.
Inside the battery, ``stored += eta_charge * charge - discharge / eta_discharge
- self_discharge``; the difference to the terminal energies is the battery's
own loss.  Self-discharge acts on the usable window only down to ``soc_min``
(below it the BMS-protected reserve carries it), so the SoC never leaves
``[soc_min, soc_max]`` once inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from hometwin.flex import BatteryFlex
from hometwin.element import Element, ElementConfig, Role, Window
from hometwin.units import J_PER_KWH

MONTH_S = 30.4375 * 86400


class BatteryConfig(ElementConfig):
    capacity_kwh: Annotated[float, Field(gt=0, le=10_000, description="[kWh] usable capacity")] = 10.0
    soc_min: Annotated[float, Field(ge=0, lt=1, description="[0-1] lowest SoC the BMS allows")] = 0.1
    soc_max: Annotated[float, Field(gt=0, le=1, description="[0-1] highest SoC the BMS allows")] = 1.0
    soc_initial: Annotated[float, Field(ge=0, le=1, description="[0-1] SoC at the start of the run")] = 0.5
    charge_power_kw: Annotated[float, Field(gt=0, le=10_000, description="[kW] max charge power (DC)")] = 5.0
    discharge_power_kw: Annotated[float, Field(gt=0, le=10_000, description="[kW] max discharge power (DC)")] = 5.0
    charge_efficiency: Annotated[float, Field(gt=0, le=1, description="[0-1] stored / charged")] = 0.97
    discharge_efficiency: Annotated[float, Field(gt=0, le=1, description="[0-1] delivered / taken from store")] = 0.97
    taper_soc: Annotated[float, Field(gt=0, le=1, description="[0-1] above this SoC the charge power tapers linearly")] = 0.9
    taper_min_ratio: Annotated[float, Field(ge=0, le=1, description="[0-1] charge power left at soc_max, as a share of the max")] = 0.1
    self_discharge_pct_per_month: Annotated[float, Field(ge=0, le=50, description="[%/month] of the stored energy")] = 2.0

    @model_validator(mode="after")
    def _window(self) -> "BatteryConfig":
        if self.soc_min >= self.soc_max:
            raise ValueError(f"soc_min: must be < soc_max ({self.soc_max}) (got {self.soc_min})")
        if not self.soc_min <= self.soc_initial <= self.soc_max:
            raise ValueError(f"soc_initial: must be within [soc_min, soc_max] = [{self.soc_min}, {self.soc_max}] "
                             f"(got {self.soc_initial})")
        return self


@dataclass
class DispatchResult:
    """What the battery can do in a window, per step (DC terminal joules, all ≥ 0)."""

    charge_j: np.ndarray  # absorbed from surplus (PV)
    grid_charge_j: np.ndarray  # absorbed from the grid
    discharge_j: np.ndarray  # supplied
    stored_j: np.ndarray  # stored energy at the end of each step
    loss_j: np.ndarray  # internal loss (efficiency + self-discharge)


class Battery(Element):
    """A stationary battery (Li-ion by default) behind the hybrid inverter."""

    kind = "battery"
    role = Role.storage
    Config = BatteryConfig
    settable = ("soc_min", "soc_max", "charge_power_kw", "discharge_power_kw", "taper_soc",
                "self_discharge_pct_per_month")

    def setup(self) -> None:
        c = self.config
        self.capacity_j = c.capacity_kwh * J_PER_KWH
        if "stored_j" not in self.state:
            self.state.update(stored_j=c.soc_initial * self.capacity_j, charged_j=0.0, discharged_j=0.0,
                              loss_j=0.0, last_power_w=0.0)

    # -- dispatch (tentative) -----------------------------------------------------------------
    def dispatch(self, dt_s: float, charge_j: np.ndarray, discharge_j: np.ndarray,
                 grid_charge_j: np.ndarray | None = None, soc_floor: np.ndarray | float | None = None,
                 grid_target_soc: np.ndarray | float | None = None,
                 stored_j: float | None = None) -> DispatchResult:
        """Serve the inverter's wishes step by step from the current state, without committing.

        Parameters
        ----------
        dt_s : step length [s]
        charge_j : DC energy offered for charging from surplus, per step [J, ≥ 0]
        discharge_j : DC energy wanted from the battery, per step [J, ≥ 0]
        grid_charge_j : DC energy offered for charging from the grid, per step [J, ≥ 0];
            absorbed only while the SoC is below ``grid_target_soc``
        soc_floor : lowest SoC discharging may reach this step (≥ soc_min) [0-1]
        grid_target_soc : SoC up to which grid charging is accepted [0-1]
        stored_j : start from this stored energy instead of the committed state
        """
        c = self.config
        n = len(charge_j)
        cap = self.capacity_j
        floor = _per_step(soc_floor, c.soc_min, n)
        target = _per_step(grid_target_soc, 0.0, n)
        gch = np.zeros(n) if grid_charge_j is None else np.asarray(grid_charge_j, dtype=float)
        e_min = np.maximum(floor, c.soc_min) * cap
        e_gt = np.minimum(target, c.soc_max) * cap
        e_max = c.soc_max * cap
        e_taper = c.taper_soc * cap
        p_ch = c.charge_power_kw * 1000.0 * dt_s
        p_dis = c.discharge_power_kw * 1000.0 * dt_s
        eta_c, eta_d = c.charge_efficiency, c.discharge_efficiency
        keep = (1.0 - c.self_discharge_pct_per_month / 100.0) ** (dt_s / MONTH_S)
        # Linear taper: full power at taper_soc, taper_min_ratio × power at soc_max.
        span = max(e_max - e_taper, 1e-9)
        slope = (1.0 - c.taper_min_ratio) * p_ch / span

        out_c = np.zeros(n)
        out_g = np.zeros(n)
        out_d = np.zeros(n)
        out_e = np.zeros(n)
        out_l = np.zeros(n)
        e_bms = c.soc_min * cap  # self-discharge never takes the usable SoC below soc_min
        e = self.state["stored_j"] if stored_j is None else float(stored_j)
        ch_l, dis_l, g_l = charge_j.tolist(), discharge_j.tolist(), gch.tolist()
        emin_l, egt_l = e_min.tolist(), e_gt.tolist()
        for i in range(n):
            e0 = e
            if e > e_bms:
                e *= keep
                if e < e_bms:
                    e = e_bms
            loss = e0 - e
            want_c, want_g, want_d = ch_l[i], g_l[i], dis_l[i]
            if want_d > 0.0:
                room = (e - emin_l[i]) * eta_d
                d = want_d if want_d < p_dis else p_dis
                if d > room:
                    d = room if room > 0.0 else 0.0
                if d > 0.0:
                    e -= d / eta_d
                    loss += d / eta_d - d
                    out_d[i] = d
            if want_c > 0.0 or want_g > 0.0:
                limit = p_ch if e <= e_taper else p_ch - slope * (e - e_taper)
                room = (e_max - e) / eta_c
                if room < 0.0:
                    room = 0.0
                c_ = want_c if want_c < limit else limit
                if c_ > room:
                    c_ = room
                if c_ > 0.0:
                    e += c_ * eta_c
                    loss += c_ - c_ * eta_c
                    out_c[i] = c_
                    limit -= c_
                if want_g > 0.0 and limit > 0.0 and e < egt_l[i]:
                    g = want_g if want_g < limit else limit
                    groom = (egt_l[i] - e) / eta_c
                    if g > groom:
                        g = groom
                    if g > 0.0:
                        e += g * eta_c
                        loss += g - g * eta_c
                        out_g[i] = g
            out_e[i] = e
            out_l[i] = loss
        result = DispatchResult(out_c, out_g, out_d, out_e, out_l)
        self._pending = result
        return result

    def settle(self, w: Window, k: int, served: np.ndarray) -> None:
        """Commit the last :meth:`dispatch` through step ``k`` (``served``: terminal flow, +discharge)."""
        result = getattr(self, "_pending", None)
        if result is None:
            return
        self._pending = None
        s = slice(0, k + 1)
        st = self.state
        st["stored_j"] = float(result.stored_j[k])
        st["charged_j"] += float(result.charge_j[s].sum() + result.grid_charge_j[s].sum())
        st["discharged_j"] += float(result.discharge_j[s].sum())
        st["loss_j"] += float(result.loss_j[s].sum())
        st["last_power_w"] = float((result.discharge_j[k] - result.charge_j[k] - result.grid_charge_j[k]) / w.dt_s)

    # -- state ----------------------------------------------------------------------------------
    @property
    def soc(self) -> float:
        return self.state["stored_j"] / self.capacity_j

    def equivalent_full_cycles(self) -> float:
        """Throughput (charged + discharged) / (2 × usable capacity)."""
        return (self.state["charged_j"] + self.state["discharged_j"]) / (2.0 * self.capacity_j)

    def telemetry(self) -> dict[str, float]:
        return {"soc": self.soc, "power_w": self.state["last_power_w"],
                "energy_stored_j": self.state["stored_j"], "cycles": self.equivalent_full_cycles()}

    def flexibility(self) -> BatteryFlex:
        """The battery as a planner sees it (see :mod:`hometwin.flex`)."""
        return BatteryFlex(**self.params())

    def params(self) -> dict[str, float]:
        """The numbers a planner needs (flexibility description, SI units)."""
        c = self.config
        return {"capacity_j": self.capacity_j, "soc_min": c.soc_min, "soc_max": c.soc_max,
                "charge_power_w": c.charge_power_kw * 1000.0, "discharge_power_w": c.discharge_power_kw * 1000.0,
                "charge_efficiency": c.charge_efficiency, "discharge_efficiency": c.discharge_efficiency,
                "stored_j": self.state["stored_j"]}


def _per_step(value: np.ndarray | float | None, default: float, n: int) -> np.ndarray:
    if value is None:
        return np.full(n, default)
    arr = np.asarray(value, dtype=float)
    return np.full(n, float(arr)) if arr.ndim == 0 else arr
