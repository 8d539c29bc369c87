"""Heating MPC after SmartHjem (NTNU 2014), optionally joint with the battery; geyser scheduling.

Building block (one per heat pump / heater, from its ``ThermalFlex``): the linear
state-space model ``ẋ = A_c x + B_c [T_out, Q_air, Q_mass]`` (1 or 2 states,
air first), discretised exactly for the planning step.  Decision: electric power
``P[t] ∈ [0, P_max]``, heat ``COP[t]·P[t]`` into the air (or split into the mass
as the building says).  Comfort: ``T_air ≥ lower[t] − s_lo`` and
``T_air ≤ upper[t] + s_hi`` with slacks ``s ≥ 0`` priced at
``comfort_weight`` per K·h — the slacks keep the problem feasible whatever
happens (the thesis's "comfort temperature" slack).  The band comes from a
presence schedule (``comfort_c`` at home, ``setback_c`` away, upper = lower +
``band_k``).  The thesis's quadratic terms become linear ones (HiGHS LP):
price × energy vs. comfort weight × K·h — raising the price weight (lowering
``comfort_weight``) trades comfort for money, as in the thesis.

Integral action: after each plan the MPC compares the measured indoor
temperature with what its model predicted for that moment and integrates the
error into a heat bias ``q_bias`` [W] on the air node (``q_bias += gain·UA·e``),
which removes steady-state offsets from model mismatch (tested with a model
whose loss coefficient is wrong).

Geyser block: one-node tank (``C = V·ρ·c``, loss ``UA`` to ambient, hot-water
draws as a heat sink forecast), element power ``P[t] ∈ [0, P_max]``, a
minimum temperature (soft) and a maximum; legionella: the tank reaches ≥ 60 °C
at least once in every complete local day of the horizon (binaries ``y[t]``
with ``T[t+1] ≥ 60 − M·(1 − y[t])``, ``Σ_day y ≥ 1``) — a small MILP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import logging

import numpy as np

from hometwin.services.inverter.strategies.base import Plan, Strategy
from hometwin.services.inverter.strategies.lp import DispatchProblem, SparseLP, lp_plan, solve_dispatch
from hometwin.flex import HeatPlan, ThermalFlex, flexible
from hometwin.services.inverter.strategies.hot_water import LEGIONELLA_C, GeyserBlock  # noqa: F401  (re-exported: the geyser's block)
from hometwin.lazy import lazy_module

linalg = lazy_module("scipy.linalg")

_log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Comfort band from presence
# ---------------------------------------------------------------------------------------------
def _hm(text: str) -> float:
    h, m = text.split(":")
    return int(h) * 3600 + int(m) * 60


def presence_mask(epoch_s: np.ndarray, tz: str, windows: list[Any], weekend_all_day: bool = True) -> np.ndarray:
    """True where someone is home: local time windows — ``(start, end)`` pairs every day, or
    :class:`~hometwin.schedule.DailyWindow` s limited to their weekdays (a weekly calendar) — and
    whole weekend days if asked."""
    import pandas as pd

    t = pd.DatetimeIndex(pd.to_datetime(np.asarray(epoch_s), unit="s", utc=True)).tz_convert(tz)
    sec = (t.hour * 3600 + t.minute * 60 + t.second).to_numpy()
    out = np.zeros(len(sec), dtype=bool)
    calendar = []
    for win in windows:
        if hasattr(win, "start_min"):  # a DailyWindow (weekdays, months)
            calendar.append(win)
            continue
        a, b = win
        a_s, b_s = _hm(a), _hm(b)
        out |= (sec >= a_s) & (sec < b_s) if a_s <= b_s else (sec >= a_s) | (sec < b_s)
    if calendar:
        from hometwin.schedule import any_mask

        out |= any_mask(t, calendar)
    if weekend_all_day:
        out |= (t.day_of_week >= 5)
    return out


def comfort_band(epoch_s: np.ndarray, tz: str, comfort: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, present) per epoch second from a :class:`ComfortConfig`."""
    present = presence_mask(epoch_s, tz, comfort.present, comfort.weekend_present_all_day)
    lower = np.where(present, comfort.comfort_c, comfort.setback_c)
    upper = np.full(len(lower), comfort.comfort_c + comfort.band_k)  # away: pre-heating up to the comfort top
    return lower, upper, present


def comfort_violation_kh(temp: np.ndarray, lower: np.ndarray, upper: np.ndarray, present: np.ndarray, dt_h: float) -> float:
    """K·h outside the band while someone is home."""
    out = np.maximum(lower - temp, 0.0) + np.maximum(temp - upper, 0.0)
    return float(np.sum(out[present]) * dt_h)


# ---------------------------------------------------------------------------------------------
# Thermal blocks for the LP
# ---------------------------------------------------------------------------------------------
@dataclass
class BuildingBlock:
    """A heated building in the plan (see the module docstring). Powers in kW, temperatures in °C."""

    name: str
    a_c: np.ndarray  # (n, n) continuous
    b_c: np.ndarray  # (n, 3) continuous, inputs [T_out, Q_air_w, Q_mass_w]
    x0: np.ndarray  # (n,)
    temp_out: np.ndarray  # (T,)
    lower: np.ndarray  # (T,) band at the end of each step
    upper: np.ndarray
    cop: np.ndarray  # (T,)
    max_heat_kw: np.ndarray | float
    comfort_weight: float  # currency per K·h
    gains_air_w: np.ndarray | float = 0.0
    gains_mass_w: np.ndarray | float = 0.0
    heating_to_mass: float = 0.0
    q_bias_w: float = 0.0
    _idx: dict[str, Any] = field(default_factory=dict, repr=False)

    def reach_c(self) -> np.ndarray:
        """Steady indoor temperature at full power in each step [°C]: ``T_out + (Q_max + gains)/UA``
        (UA from the model: ``−A_c⁻¹ B_c``)."""
        cap = np.broadcast_to(np.asarray(self.max_heat_kw, dtype=float), self.temp_out.shape)
        ss = -np.linalg.solve(self.a_c, self.b_c)  # (n, 3)
        gain_heat = ss[0, 1] * (1 - self.heating_to_mass) + ss[0, 2] * self.heating_to_mass
        return ss[0, 0] * self.temp_out + gain_heat * (cap * 1000.0 + np.asarray(self.gains_air_w) + self.q_bias_w)

    def shortfall_k(self) -> np.ndarray:
        """How far the band's lower bound lies above what full power can hold, per step [K] (≥ 0)."""
        return np.maximum(self.lower - self.reach_c(), 0.0)

    def check(self) -> str | None:
        """A warning (not an error) when comfort is out of reach: the plan still does its best — the
        slacks keep it feasible, it heats at full power where it must — and the shortfall is reported
        (:meth:`shortfall_k`; ``comfort_unreachable_kh`` in the strategy's summary)."""
        t_max = self.reach_c()
        short = np.flatnonzero(t_max + 1e-6 < self.lower)
        if not short.size:
            return None
        i = int(short[0])
        cap = np.broadcast_to(np.asarray(self.max_heat_kw, dtype=float), self.temp_out.shape)
        return (f"comfort.comfort_c: the band's lower bound {self.lower[i]:.1f} °C is above what {self.name} can "
                f"reach at full power ({t_max[i]:.1f} °C at {self.temp_out[i]:.1f} °C outdoors, "
                f"{float(cap[i]):.1f} kW of heat) in {short.size} of {len(self.lower)} steps — heating at full "
                f"power there and reporting the shortfall; lower the comfort temperature or size the heater up")

    def add_to(self, lp: SparseLP, dt_h: float, n: int) -> np.ndarray:
        ns = len(self.x0)
        dt_s = dt_h * 3600.0
        # exact ZOH of [A, B] over the step
        m = np.zeros((ns + 3, ns + 3))
        m[:ns, :ns] = self.a_c
        m[:ns, ns:] = self.b_c
        e = linalg.expm(m * dt_s)
        ad, bd = e[:ns, :ns], e[:ns, ns:]
        b_heat = bd[:, 1] * (1.0 - self.heating_to_mass) + bd[:, 2] * self.heating_to_mass
        cop = np.broadcast_to(np.asarray(self.cop, dtype=float), (n,))
        qmax = np.broadcast_to(np.asarray(self.max_heat_kw, dtype=float), (n,))
        p = lp.var(f"{self.name}.power", n, 0.0, qmax / cop, 0.0)
        x = [lp.var(f"{self.name}.x{j}", n + 1, -np.inf, np.inf) for j in range(ns)]
        ga = np.broadcast_to(np.asarray(self.gains_air_w, dtype=float), (n,)) + self.q_bias_w
        gm = np.broadcast_to(np.asarray(self.gains_mass_w, dtype=float), (n,))
        for j in range(ns):
            lp.rows([(x[j][:1], 1.0)], self.x0[j], self.x0[j])
            const = bd[j, 0] * self.temp_out + bd[j, 1] * ga + bd[j, 2] * gm
            terms = [(x[j][1:], 1.0), (p, -b_heat[j] * 1000.0 * cop)]
            terms += [(x[k][:-1], -ad[j, k]) for k in range(ns)]
            lp.rows(terms, const, const)
        w = self.comfort_weight * dt_h
        s_lo = lp.var(f"{self.name}.below", n, 0.0, np.inf, w)
        s_hi = lp.var(f"{self.name}.above", n, 0.0, np.inf, w)
        lp.rows([(x[0][1:], 1.0), (s_lo, 1.0)], self.lower, np.inf)
        lp.rows([(x[0][1:], 1.0), (s_hi, -1.0)], -np.inf, self.upper)
        self._idx = {"power": p, "x": x, "below": s_lo, "above": s_hi, "cop": cop}
        return p

    def extract(self, x: np.ndarray) -> dict[str, np.ndarray]:
        i = self._idx
        p = x[i["power"]]
        return {"power_kw": p, "heat_kw": p * i["cop"], "temp": x[i["x"][0]], "below": x[i["below"]],
                "above": x[i["above"]]}


# ---------------------------------------------------------------------------------------------
# Standalone controller (used by the strategy, the tests and the bench)
# ---------------------------------------------------------------------------------------------
@dataclass
class HeatingMPC:
    """Receding-horizon heating MPC with integral action for one building."""

    a_c: np.ndarray
    b_c: np.ndarray
    max_heat_kw: float
    comfort_weight: float = 5.0
    integral_gain: float = 0.3
    heating_to_mass: float = 0.0
    q_bias_w: float = 0.0
    _pred: tuple[int, float] | None = None  # (epoch, predicted indoor temp) of the last plan

    @property
    def ua_w_k(self) -> float:
        ss = -np.linalg.solve(self.a_c, self.b_c)
        return 1.0 / ss[0, 1]

    def observe(self, epoch_s: int, temp_measured: float) -> None:
        """Integral action: fold the model's prediction error at ``epoch_s`` into the heat bias."""
        if self._pred is not None and self._pred[0] == epoch_s and self.integral_gain > 0:
            err = temp_measured - self._pred[1]
            self.q_bias_w += self.integral_gain * self.ua_w_k * err

    def block(self, name: str, x0: np.ndarray, temp_out: np.ndarray, lower: np.ndarray, upper: np.ndarray,
              cop: np.ndarray | float, gains_air_w: Any = 0.0, gains_mass_w: Any = 0.0,
              max_heat_kw: Any = None) -> BuildingBlock:
        n = len(temp_out)
        return BuildingBlock(name=name, a_c=self.a_c, b_c=self.b_c, x0=np.asarray(x0, dtype=float),
                             temp_out=np.asarray(temp_out, dtype=float), lower=np.asarray(lower, dtype=float),
                             upper=np.asarray(upper, dtype=float), cop=np.broadcast_to(np.asarray(cop, dtype=float), (n,)),
                             max_heat_kw=self.max_heat_kw if max_heat_kw is None else max_heat_kw,
                             comfort_weight=self.comfort_weight, gains_air_w=gains_air_w, gains_mass_w=gains_mass_w,
                             heating_to_mass=self.heating_to_mass, q_bias_w=self.q_bias_w)

    def plan(self, t0_s: int, dt_s: int, x0: np.ndarray, temp_out: np.ndarray, price: np.ndarray,
             lower: np.ndarray, upper: np.ndarray, cop: Any = 1.0, gains_air_w: Any = 0.0, replan_s: int | None = None,
             check: bool = True) -> dict[str, np.ndarray]:
        """Heat-only plan (no battery, no PV): returns power, heat and temperature per step."""
        blk = self.block("heat", x0, temp_out, lower, upper, cop, gains_air_w)
        warning = blk.check() if check else None
        n = len(temp_out)
        prob = DispatchProblem(dt_h=dt_s / 3600.0, pv_kw=np.zeros(n), load_kw=np.zeros(n), price_import=price,
                               price_export=np.zeros(n), soc0=0.0, thermal=[blk])
        sol = solve_dispatch(prob)
        out = sol.thermal["heat"]
        k = max(1, int(round((replan_s or dt_s) / dt_s)))
        self._pred = (int(t0_s + k * dt_s), float(out["temp"][min(k, n)]))
        out["solve_s"] = np.array([sol.solve_s])
        out["shortfall_k"] = blk.shortfall_k()
        if warning:
            out["warning"] = warning
        return out


def band_over_steps(fc: Any, tz: str, comfort: Any) -> tuple[np.ndarray, np.ndarray]:
    """The comfort band in force over each whole step of the forecast ``fc`` (the tighter of the
    bands at the step's start and end)."""
    ends = fc.t0_s + np.arange(1, fc.n + 1) * fc.dt_s
    lo_e, up_e, _ = comfort_band(ends, tz, comfort)
    lo_s, up_s, _ = comfort_band(ends - fc.dt_s, tz, comfort)
    return np.maximum(lo_e, lo_s), np.minimum(up_e, up_s)


def observe_heater(mpc: Any, f: ThermalFlex, fc: Any) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """A heater's building seen by its MPC at the forecast's start (integral action), and what a plan of
    it needs: the start state, the COP over the horizon (1 for resistive heaters) and the heat gains to
    the air and the mass."""
    x0 = np.asarray(f.x0, dtype=float)
    mpc.observe(fc.t0_s, float(x0[0]))
    cop = np.asarray(f.cop(fc.temp_air), dtype=float)
    try:
        ga, gm = f.gains(fc.signals, fc.n)
    except Exception:  # gains need signals the forecast may lack; integral action covers them
        ga = gm = 0.0
    return x0, cop, ga, gm


# ---------------------------------------------------------------------------------------------
# The strategy inside the inverter
# ---------------------------------------------------------------------------------------------
class HeatingMPCStrategy(Strategy):
    """``mpc``: battery + heat pumps jointly; ``heating_mpc``: heat pumps only (battery self-consumption).
    With ``geyser:`` in the config the geysers join the plan (see :mod:`.hot_water`).

    Controllable heating elements are the roster's elements whose flexibility is a
    :class:`~hometwin.flex.ThermalFlex` (a building's linear model ``A_c``, ``B_c``); they take
    :class:`~hometwin.flex.HeatPlan` commands.
    """

    def __init__(self, config: Any, inverter: Any):
        super().__init__(config, inverter)
        from hometwin.services.inverter.strategies.forecast import Forecaster

        self.name = config.type
        self.replan_steps = max(1, int(round(config.replan_min * 60 / inverter.home.step_s)))
        self.forecaster = Forecaster(inverter, config.forecast)
        self.mpcs: dict[str, HeatingMPC] = {}
        self.warned: dict[str, str] = {}  # heater → the comfort-out-of-reach warning (once per run)
        self.unreachable_kh = 0.0  # K·h the band asked for above what full power can hold (while present)

    def snapshot(self) -> dict[str, Any]:
        """The base state plus each building's MPC: its model and the integral action (bias, last prediction)."""
        out = super().snapshot()
        out["mpcs"] = {name: {"a_c": np.array(mpc.a_c), "b_c": np.array(mpc.b_c), "max_heat_kw": float(mpc.max_heat_kw),
                              "comfort_weight": float(mpc.comfort_weight), "integral_gain": float(mpc.integral_gain),
                              "heating_to_mass": float(mpc.heating_to_mass), "q_bias_w": float(mpc.q_bias_w),
                              "pred": None if mpc._pred is None else [int(mpc._pred[0]), float(mpc._pred[1])]}
                       for name, mpc in self.mpcs.items()}
        return out

    def restore(self, snap: Mapping[str, Any]) -> None:
        super().restore(snap)
        self.mpcs = {}
        for name, d in (snap.get("mpcs") or {}).items():
            pred = d.get("pred")
            self.mpcs[str(name)] = HeatingMPC(
                np.array(d["a_c"], dtype=float), np.array(d["b_c"], dtype=float), float(d["max_heat_kw"]),
                float(d["comfort_weight"]), float(d["integral_gain"]), float(d["heating_to_mass"]),
                float(d["q_bias_w"]), None if pred is None else (int(pred[0]), float(pred[1])))

    def note_shortfall(self, blk: BuildingBlock, fc: Any) -> None:
        """Comfort out of reach is no error: warn once per heater and add up the shortfall over the
        plan's first replanning interval (K·h while present; ``comfort_unreachable_kh``)."""
        warning = blk.check()
        if warning is None:
            return
        if blk.name not in self.warned:
            self.warned[blk.name] = warning
            _log.warning("%s: %s", self.name, warning)
        k = max(1, int(round(self.replan_steps * self.inverter.home.step_s / fc.dt_s)))
        ends = fc.t0_s + np.arange(1, fc.n + 1) * fc.dt_s
        present = comfort_band(ends[:k], self.inverter.home.timezone, self.config.comfort)[2]
        self.unreachable_kh += float(np.sum(blk.shortfall_k()[:k][present]) * fc.dt_h)

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["comfort_unreachable_kh"] = self.unreachable_kh
        out["warnings"] = list(self.warned.values())
        return out

    def heaters(self) -> dict[str, tuple[Any, ThermalFlex]]:
        """``{name: (element, flexibility)}`` of the roster's heated buildings."""
        return flexible(self.inverter.roster, ThermalFlex)

    def thermal_blocks(self, fc: Any) -> list[BuildingBlock]:
        cfg = self.config
        blocks = []
        lower, upper = band_over_steps(fc, self.inverter.home.timezone, cfg.comfort)
        for name, (_, f) in self.heaters().items():
            a_c, b_c = np.asarray(f.a_c), np.asarray(f.b_c)
            mpc = self.mpcs.get(name)
            if mpc is None:
                mpc = self.mpcs[name] = HeatingMPC(a_c, b_c, f.max_heat_w / 1000.0, cfg.comfort_weight_per_kh,
                                                   cfg.integral_gain, f.heating_to_mass_setting)
            x0, cop, ga, gm = observe_heater(mpc, f, fc)
            cap = f.heat_max_w(fc.temp_air) / 1000.0
            blk = mpc.block(name, x0, fc.temp_air, lower, upper, np.maximum(cop, 1e-3), ga, gm, max_heat_kw=cap)
            self.note_shortfall(blk, fc)
            blocks.append(blk)
        if self.hot_water is not None:
            blocks += self.hot_water.blocks(fc)
        return blocks

    def make_plan(self, w: Any, signals: Any) -> Plan:
        cfg = self.config
        if cfg.type == "heating_mpc":
            plan = _heating_only_plan(self, w)
        else:
            plan = lp_plan(self, w)
        return plan

    def thermal_plan(self, plan: Plan, sol: Any, fc: Any) -> None:
        k = max(1, self.replan_steps * self.inverter.home.step_s // fc.dt_s)
        if self.hot_water is not None:
            self.hot_water.store(plan, sol)
        for name, th in sol.thermal.items():
            if "heat_kw" not in th:  # a geyser (stored above)
                continue
            plan.power_w[name] = th["power_kw"] * 1000.0
            plan.setpoints[name] = th["temp"][1:]
            mpc = self.mpcs.get(name)
            if mpc is not None:
                mpc._pred = (int(fc.t0_s + k * fc.dt_s), float(th["temp"][min(k, len(th["temp"]) - 1)]))
            plan.info.setdefault("heat_kw", {})[name] = th["heat_kw"]

    def apply_thermal(self, w: Any) -> None:
        plan = self.plan
        if plan is None:
            return
        step = self.inverter.home.step_s
        k = max(1, plan.dt_s // step)
        for name, (el, _) in self.heaters().items():
            heat = plan.info.get("heat_kw", {}).get(name)
            if heat is None:
                continue
            el.command(HeatPlan(w.i0, heat_w=np.repeat(np.asarray(heat) * 1000.0, k)))


def _heating_only_plan(strategy: HeatingMPCStrategy, w: Any) -> Plan:
    """Heat pumps on prices; the battery is left to self-consumption (no battery arrays in the plan)."""
    cfg = strategy.config
    horizon_s = cfg.horizon_h * 3600.0
    if strategy.hot_water is not None:
        horizon_s = strategy.hot_water.horizon_s(horizon_s)
    fc = strategy.forecaster.forecast(w.i0, horizon_s, cfg.step_min * 60.0)
    blocks = strategy.thermal_blocks(fc)
    n = fc.n
    prob = DispatchProblem(dt_h=fc.dt_h, pv_kw=fc.pv_kw, load_kw=fc.load_kw, price_import=fc.price_import,
                           price_export=fc.price_export, soc0=0.0, battery=None, available=fc.available,
                           import_limit_kw=fc.import_limit_kw, export_limit_kw=fc.export_limit_kw, thermal=blocks,
                           mip_rel_gap=cfg.mip_rel_gap)
    sol = solve_dispatch(prob)
    plan = Plan(t0_s=fc.t0_s, dt_s=fc.dt_s, n=n, cost=sol.energy_cost, solve_s=sol.solve_s)
    strategy.thermal_plan(plan, sol, fc)
    return plan
