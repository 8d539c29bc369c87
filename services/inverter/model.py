"""Hybrid inverter: converts, limits, and balances every joule of a window.

The inverter is the home's balancer (DESIGN.md, tick protocol stage 4–6).  For
one window it

1. takes the DC offers of the PV arrays (clipped at the MPPT input rating) and
   converts them to AC with PVWatts' part-load efficiency curve
   (``pvlib.inverter.pvwatts``), clipped at the AC rating;
2. nets them against the loads' requests;
3. decides, per step and from its work mode (or a strategy's plan), what it
   would like the battery to absorb or supply — a :class:`BatteryPolicy` —
   and asks the battery, which answers step by step from its own state;
4. settles the rest with the grid within its availability and limits, exports
   or curtails a surplus, and reports what could not be served;
5. finds the first step at which a *stateful* load was short (a geyser that
   got nothing) and settles the window there.

Everything is vectorised over the window except the battery's own step loop.
All quantities are joules per step unless the name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Generator, Literal, Mapping, Protocol

import numpy as np
from pydantic import Field, model_validator

from hometwin.element import Element, ElementConfig, Role, Signals, Window
from hometwin.results import FLOW_COLUMNS  # noqa: F401  (the columns a Settlement's flows carry)
from hometwin.schedule import DailyWindow
from hometwin.flex import BatteryPolicy
from hometwin.solar import pv_to_ac
from hometwin.services.inverter.strategies.config import StrategyConfig
from hometwin.services.inverter.strategies.modes import mode_policy
from hometwin.units import J_PER_KWH


WorkMode = Literal["self_use", "time_of_use", "backup", "export_first"]


class TouSlot(DailyWindow):
    """A time-of-use slot (Sunsynk/Deye style): inside it the battery is kept at or above
    ``target_soc``; with ``grid_charge`` it is charged from the grid up to that SoC; with
    ``discharge_kw`` it is discharged (also to export) down to it."""

    target_soc: Annotated[float, Field(ge=0, le=1, description="[0-1] SoC floor / grid-charge target")] = 0.2
    grid_charge: bool = Field(False, description="charge from the grid up to target_soc in this slot")
    grid_charge_kw: Annotated[float | None, Field(gt=0, description="[kW] grid-charge power (default: battery_power_kw)")] = None
    discharge_kw: Annotated[float, Field(ge=0, description="[kW] forced discharge power (0 = only to cover load)")] = 0.0


class InverterConfig(ElementConfig):
    ac_power_kw: Annotated[float, Field(gt=0, le=10_000, description="[kW] AC output rating")] = 5.0
    pv_dc_max_kw: Annotated[float | None, Field(gt=0, le=10_000, description="[kW] MPPT DC input rating (default 1.3 × AC); "
                                                     "DC beyond AC rating / pv_efficiency is clipped (curtailed) anyway")] = None
    pv_efficiency: Annotated[float, Field(gt=0.5, le=1, description="[0-1] nominal PV DC→AC efficiency (PVWatts curve)")] = 0.96
    battery_power_kw: Annotated[float | None, Field(gt=0, le=10_000, description="[kW] battery converter rating (default AC rating)")] = None
    battery_efficiency: Annotated[float, Field(gt=0.5, le=1, description="[0-1] battery↔AC conversion efficiency, each way")] = 0.95
    export_limit_kw: Annotated[float | None, Field(ge=0, le=10_000, description="[kW] inverter export limit (None = grid's limit)")] = None
    mode: WorkMode = Field("self_use", description="work mode: self_use, time_of_use, backup, export_first")
    reserve_soc: Annotated[float, Field(ge=0, le=1, description="[0-1] backup mode: SoC kept for outages")] = 0.3
    slots: list[TouSlot] = Field(default_factory=list, description="time_of_use slots (local time)")
    strategy: StrategyConfig | None = Field(None, description="optimizer strategy (rules, lp, mpc, heating_mpc, heating_qp, "
                                            "perfect_foresight); None = the work mode alone")

    @model_validator(mode="after")
    def _mode_needs(self) -> "InverterConfig":
        if self.mode == "time_of_use" and not self.slots:
            raise ValueError("slots: time_of_use mode needs at least one slot")
        return self


class BatteryPort(Protocol):
    """The battery as the inverter sees it: the model in-process, an RPC proxy over WAMP."""

    def dispatch(self, dt_s: float, charge_j: np.ndarray, discharge_j: np.ndarray,
                 grid_charge_j: np.ndarray | None = None, soc_floor: np.ndarray | float | None = None,
                 grid_target_soc: np.ndarray | float | None = None) -> Any: ...

    def params(self) -> dict[str, float]: ...


@dataclass
class Settlement:
    """The inverter's answer for one window, cut at step ``k`` (arrays have ``k + 1`` steps)."""

    k: int
    served: dict[str, np.ndarray]  # element name → joules per step (signed, as requested)
    flows: dict[str, np.ndarray]  # the window's home flows (see FLOW_COLUMNS)
    battery_result: Any = None
    shortfall: dict[str, np.ndarray] = field(default_factory=dict)


class Inverter(Element):
    """Hybrid inverter with battery converter, work modes and islanding."""

    kind = "inverter"
    role = Role.converter
    Config = InverterConfig
    settable = ("mode", "reserve_soc", "slots", "export_limit_kw")

    def setup(self) -> None:
        c = self.config
        self.ac_w = c.ac_power_kw * 1000.0
        self.pv_dc_max_w = (c.pv_dc_max_kw or 1.3 * c.ac_power_kw) * 1000.0
        self.batt_w = (c.battery_power_kw or c.ac_power_kw) * 1000.0
        # PVWatts inverter: pdc0 chosen so that its AC clip equals our AC rating.
        self.pdc0 = self.ac_w / c.pv_efficiency
        self.roster: Mapping[str, Any] = getattr(self, "roster", {})
        self.strategy: Any = None  # set by the optimizer (hometwin.services.inverter.strategies)
        if c.strategy is not None:
            from hometwin.services.inverter.strategies.factory import make_strategy

            self.strategy = make_strategy(c.strategy, self)
        self.state.setdefault("last_flows_w", {})

    # -- snapshots ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Config and state, plus the strategy's state (its plan, integral action …) under ``strategy``."""
        snap = super().snapshot()
        if self.strategy is not None:
            snap["strategy"] = self.strategy.snapshot()
        return snap

    def restore(self, snap: Mapping[str, Any]) -> None:
        """Continue from :meth:`snapshot`: the strategy (rebuilt from the config) takes its state back."""
        super().restore(snap)
        if self.strategy is not None and snap.get("strategy") is not None:
            self.strategy.restore(snap["strategy"])

    # -- strategy hooks -----------------------------------------------------------------------
    def bind_roster(self, roster: Mapping[str, Any]) -> None:
        """The other elements as ports (models in-process, RPC proxies over WAMP): the strategy
        reads their ``describe()``/``params()`` and sends them plans (``apply_plan``)."""
        self.roster = roster

    def prepare(self, w: Window, signals: Signals) -> None:
        """Window boundary, before the loads' requests: the strategy replans when due."""
        if self.strategy is not None:
            self.strategy.prepare(w, signals)

    # -- policy -------------------------------------------------------------------------------
    def policy(self, w: Window, signals: Signals, battery: Mapping[str, float] | None) -> BatteryPolicy:
        """The battery policy of this window from the work mode (or the active strategy)."""
        if self.strategy is not None:
            return self.strategy.policy(w, signals, battery, self)
        return mode_policy(self.config, w, signals, self.batt_w)

    # -- balance ------------------------------------------------------------------------------
    def balance(self, w: Window, requests: Mapping[str, np.ndarray], roles: Mapping[str, Role],
                stateful: Mapping[str, bool], signals: Signals, battery: BatteryPort | None) -> Settlement:
        """Net, dispatch and settle one window (see the module docstring)."""
        steps = self.balance_steps(w, requests, roles, stateful, signals,
                                   battery.params() if battery is not None else None)
        try:
            ask = next(steps)
            while True:
                ask = steps.send(battery.dispatch(*ask))  # type: ignore[union-attr]
        except StopIteration as done:
            return done.value

    def balance_steps(self, w: Window, requests: Mapping[str, np.ndarray], roles: Mapping[str, Role],
                      stateful: Mapping[str, bool], signals: Signals,
                      battery: Mapping[str, float] | None) -> Generator[tuple[Any, ...], Any, Settlement]:
        """:meth:`balance` as a generator: yields the battery's ``dispatch`` arguments once (when
        ``battery``, its ``params()``, is given), takes the answer and returns the Settlement —
        so a service can make the dispatch an asynchronous RPC without a thread."""
        n, dt = w.n, float(w.dt_s)
        sources = [name for name, role in roles.items() if role == Role.source]
        loads = [name for name, role in roles.items() if role == Role.load]
        pv_offer = _sum([requests[s] for s in sources], n)
        demand = -_sum([requests[s] for s in loads], n)  # ≥ 0

        available = _signal(signals, "grid_available", n, 0.0) > 0.5
        imp_lim = np.where(available, _signal(signals, "import_limit_w", n, np.inf) * dt, 0.0)
        exp_w = _signal(signals, "export_limit_w", n, np.inf)
        if self.config.export_limit_kw is not None:
            exp_w = np.minimum(exp_w, self.config.export_limit_kw * 1000.0)
        exp_lim = np.where(available, exp_w * dt, 0.0)

        # DC above pdc0 yields no more AC (the PVWatts curve reaches the AC rating there): the
        # inverter does not take it (clipping), so it is curtailed, not converted and lost.
        pv_dc = np.minimum(pv_offer, min(self.pv_dc_max_w, self.pdc0) * dt)
        pv_ac = pv_to_ac(pv_dc / dt, self.pdc0, self.config.pv_efficiency) * dt
        net = pv_ac - demand
        surplus = np.maximum(net, 0.0)
        deficit = np.maximum(-net, 0.0)

        eta = self.config.battery_efficiency
        batt_max = self.batt_w * dt
        ac_max = self.ac_w * dt
        if battery is not None:
            pol = self.policy(w, signals, battery)
            charge_ac = np.where(pol.charge_from_surplus, np.minimum(surplus, batt_max), 0.0)
            if pol.export_first:
                charge_ac = np.minimum(charge_ac, np.maximum(surplus - exp_lim, 0.0))
            if pol.charge_limit_j is not None:
                charge_ac = np.minimum(charge_ac, pol.charge_limit_j)
            gc_active = (pol.grid_charge_j > 0) & available
            grid_ac = np.where(gc_active, np.minimum(pol.grid_charge_j, np.maximum(batt_max - charge_ac, 0.0)), 0.0)
            grid_ac = np.minimum(grid_ac, np.maximum(imp_lim - deficit, 0.0))
            if pol.charge_limit_j is not None:
                grid_ac = np.minimum(grid_ac, np.maximum(pol.charge_limit_j - charge_ac, 0.0))
            want_dis = np.maximum(deficit, np.minimum(pol.force_discharge_j, deficit + np.maximum(exp_lim - surplus, 0.0)))
            if pol.discharge_limit_j is not None:  # a plan's cap, lifted where the grid cannot cover the deficit
                want_dis = np.minimum(want_dis, np.maximum(pol.discharge_limit_j, deficit - imp_lim))
            # A grid-charge slot holds the battery back, but not where the grid cannot cover the
            # deficit (an import limit): there grid_ac is 0 and the battery serves what it can.
            want_dis = np.where(gc_active, np.minimum(want_dis, np.maximum(deficit - imp_lim, 0.0)), want_dis)
            # Discharging (forced, into the export) and charging from the surplus in one step would
            # only run the PV through the battery's losses: a step does one or the other.
            charge_ac = np.where(want_dis > 0, 0.0, charge_ac)
            want_dis = np.minimum(np.minimum(want_dis, batt_max), np.maximum(ac_max - pv_ac, 0.0))
            res = yield (dt, charge_ac * eta, want_dis / eta, grid_ac * eta, pol.soc_floor, pol.grid_target_soc)
            c_dc, g_dc, d_dc = np.asarray(res.charge_j), np.asarray(res.grid_charge_j), np.asarray(res.discharge_j)
        else:
            res = None
            c_dc = g_dc = d_dc = np.zeros(n)
        c_ac, g_ac, d_ac = c_dc / eta, g_dc / eta, d_dc * eta

        r = pv_ac + d_ac - demand - c_ac - g_ac
        export = np.minimum(np.maximum(r, 0.0), exp_lim)
        curtail_ac = np.maximum(r, 0.0) - export
        grid_in = np.minimum(np.maximum(-r, 0.0), imp_lim)
        unserved = np.maximum(-r, 0.0) - grid_in
        pv_ac_taken = pv_ac - curtail_ac
        share_pv = np.divide(pv_ac_taken, pv_ac, out=np.zeros(n), where=pv_ac > 0)
        pv_dc_taken = pv_dc * share_pv
        share_pv_dc = np.divide(pv_dc_taken, pv_offer, out=np.zeros(n), where=pv_offer > 0)
        share_load = np.divide(demand - unserved, demand, out=np.ones(n), where=demand > 0)

        # Settle at the first step where a stateful load was short.
        k = n - 1
        short = unserved > 1e-9 * np.maximum(demand, 1.0)
        if short.any():
            for name in loads:
                if stateful.get(name) and requests[name].any():
                    hit = np.flatnonzero(short & (requests[name] < 0))
                    if hit.size:
                        k = min(k, int(hit[0]))
        s = slice(0, k + 1)

        served: dict[str, np.ndarray] = {}
        shortfall: dict[str, np.ndarray] = {}
        for name in sources:
            served[name] = (requests[name] * share_pv_dc)[s]
        for name in loads:
            served[name] = (requests[name] * share_load)[s]
            shortfall[name] = (requests[name] - requests[name] * share_load)[s]
        loss = (pv_dc_taken - pv_ac_taken) + (c_ac - c_dc) + (g_ac - g_dc) + (d_dc - d_ac)
        p_imp = _signal(signals, "price_import", n, 0.0)
        p_exp = _signal(signals, "price_export", n, 0.0)
        flows = {
            "pv_offered_j": pv_offer, "pv_dc_j": pv_dc_taken, "pv_ac_j": pv_ac_taken,
            "curtailed_j": pv_offer - pv_dc_taken, "load_j": demand - unserved, "unserved_j": unserved,
            "battery_charge_j": c_dc + g_dc, "battery_discharge_j": d_dc,
            "grid_import_j": grid_in, "grid_export_j": export, "loss_j": loss,
            "grid_available": available.astype(float), "price_import": p_imp, "price_export": p_exp,
            "cost": (grid_in * p_imp - export * p_exp) / J_PER_KWH,
        }
        flows = {key: np.asarray(val, dtype=float)[s] for key, val in flows.items()}
        for name, role in roles.items():
            if role == Role.storage:
                served[name] = flows["battery_discharge_j"] - flows["battery_charge_j"]
            elif role == Role.grid:
                served[name] = flows["grid_import_j"] - flows["grid_export_j"]
        return Settlement(k=k, served=served, flows=flows, battery_result=res, shortfall=shortfall)

    def settle(self, w: Window, k: int, served: np.ndarray) -> None:
        """The inverter keeps no energy state (its counters live in the results)."""

    def remember(self, w: Window, flows: Mapping[str, np.ndarray]) -> None:
        """Last step's flows in W, for telemetry."""
        self.state["last_flows_w"] = {key: float(val[-1]) / w.dt_s for key, val in flows.items()
                                      if key.endswith("_j")}

    def telemetry(self) -> dict[str, float]:
        return dict(self.state.get("last_flows_w", {}))


def _sum(arrays: list[np.ndarray], n: int) -> np.ndarray:
    """Element-wise sum in a fixed order (bit-identical whatever the window length)."""
    total = np.zeros(n)
    for arr in arrays:
        total = total + arr
    return total


def _signal(signals: Signals, name: str, n: int, default: float) -> np.ndarray:
    value = signals.get(name)
    if value is None:
        return np.full(n, default)
    return np.asarray(value, dtype=float)
