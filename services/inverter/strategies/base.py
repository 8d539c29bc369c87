"""The strategy interface: state + forecasts in, a :class:`Plan` out, applied at window boundaries.

A strategy lives inside the inverter.  The inverter calls

- :meth:`Strategy.prepare` at a window boundary, *before* the loads ask for
  energy (the engine's boundary hook): at a replanning boundary the strategy
  builds a new plan from the roster's flexibility (:mod:`hometwin.flex`: the
  battery, buildings, tanks and deferrable cycles, with their state) and its
  forecasts, and sends those elements typed commands (heat plans, tank plans,
  deferred starts) through ``Element.command`` — the only way a plan reaches
  another element, in-process as over WAMP;
- :meth:`Strategy.policy` inside :meth:`Inverter.balance`, which turns the plan's
  battery part for the window into a :class:`BatteryPolicy`.

``replan_steps`` (run steps between plans) makes the engine cut windows at
replanning boundaries (receding horizon).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from hometwin.codec import copy_tree, is_plain
from hometwin.services.inverter.strategies.config import StrategyError  # noqa: F401  (its home is config; raised here)


@dataclass
class Plan:
    """A plan over a horizon of ``n`` steps of ``dt_s`` seconds starting at epoch ``t0_s``.

    Battery part (AC side, W, ``NaN`` = no opinion → rules): ``charge_w``,
    ``discharge_w``, ``import_w``, ``export_w`` as the optimiser planned them, and
    ``soc_floor`` (per step, 0–1).  Thermal part: set-points per element
    (``setpoints[name]``, °C per step) or on/off windows (``on[name]``, bool per step).
    Deferrable appliances: ``starts[name] = {drawn start: planned start}`` (epoch seconds) for
    every cycle of a smart appliance the plan decided (see :mod:`.appliances`).
    """

    t0_s: int
    dt_s: int
    n: int
    charge_w: np.ndarray | None = None
    discharge_w: np.ndarray | None = None
    import_w: np.ndarray | None = None
    export_w: np.ndarray | None = None
    soc_floor: np.ndarray | None = None
    soc: np.ndarray | None = None  # planned SoC at the end of each step
    grid_target_soc: np.ndarray | None = None  # grid charging stops at this SoC (default: as planned, up to 1)
    setpoints: dict[str, np.ndarray] = field(default_factory=dict)
    power_w: dict[str, np.ndarray] = field(default_factory=dict)  # planned electric power per thermal element
    on: dict[str, np.ndarray] = field(default_factory=dict)
    starts: dict[str, dict[int, int]] = field(default_factory=dict)
    cost: float = float("nan")
    solve_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def index(self, epoch_s: np.ndarray) -> np.ndarray:
        """Plan step of each epoch second (clipped to the horizon)."""
        k = (np.asarray(epoch_s, dtype=np.int64) - self.t0_s) // self.dt_s
        return np.clip(k, 0, self.n - 1)

    # -- snapshots ------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """The plan as a tree of dicts, lists, arrays and numbers (snapshots, state files, msgpack):
        plain data (:func:`hometwin.codec.is_plain`) that the core codec stores exactly.

        ``starts`` become ``[name, drawn, planned]`` triples (map keys stay strings);
        ``info`` keeps what is such a tree (the heat per heater, the geyser trajectories, the
        rule) and leaves out the solver's objects (``forecast``, ``dispatch``): nothing reads
        them after the plan is made; ``solve_s`` (wall time) is not state either.
        """
        arrays = {key: _copy(getattr(self, key)) for key in _PLAN_ARRAYS}
        return {"t0_s": int(self.t0_s), "dt_s": int(self.dt_s), "n": int(self.n), **arrays,
                "setpoints": _copy_map(self.setpoints), "power_w": _copy_map(self.power_w), "on": _copy_map(self.on),
                "starts": [[name, int(a), int(b)] for name, moves in self.starts.items() for a, b in moves.items()],
                "cost": float(self.cost),
                "info": {k: copy_tree(v) for k, v in self.info.items() if is_plain(v)}}

    @classmethod
    def from_state(cls, d: Mapping[str, Any]) -> "Plan":
        """Inverse of :meth:`to_state` (lists where arrays were are turned back into arrays)."""
        starts: dict[str, dict[int, int]] = {}
        for name, a, b in d.get("starts") or []:
            starts.setdefault(str(name), {})[int(a)] = int(b)
        arrays = {key: None if d.get(key) is None else np.array(d[key], dtype=float) for key in _PLAN_ARRAYS}
        on = {k: np.array(v) for k, v in (d.get("on") or {}).items()}
        return cls(t0_s=int(d["t0_s"]), dt_s=int(d["dt_s"]), n=int(d["n"]), **arrays,
                   setpoints={k: np.array(v, dtype=float) for k, v in (d.get("setpoints") or {}).items()},
                   power_w={k: np.array(v, dtype=float) for k, v in (d.get("power_w") or {}).items()},
                   on=on, starts=starts, cost=float(d.get("cost", float("nan"))),
                   info=copy_tree(dict(d.get("info") or {})))

    def covers(self, epoch_s: np.ndarray) -> np.ndarray:
        e = np.asarray(epoch_s, dtype=np.int64)
        return (e >= self.t0_s) & (e < self.t0_s + self.n * self.dt_s)

    def at(self, arr: np.ndarray | None, epoch_s: np.ndarray, default: float = np.nan) -> np.ndarray:
        """``arr`` (one value per plan step) sampled at ``epoch_s``; ``default`` outside the plan."""
        if arr is None:
            return np.full(len(epoch_s), default)
        return np.where(self.covers(epoch_s), np.asarray(arr, dtype=float)[self.index(epoch_s)], default)


class Strategy:
    """Base class: rules-only strategies override :meth:`policy`; planners :meth:`make_plan`."""

    name = "strategy"
    #: run steps between plans (0 = never replans; rule strategies)
    replan_steps: int = 0

    def __init__(self, config: Any, inverter: Any):
        self.config = config
        self.inverter = inverter
        self.plan: Plan | None = None
        self.plans = 0
        self.solve_s: list[float] = []
        self.log: list[dict[str, Any]] = []
        #: every plan made in this run, in order (the recorder's ``plan`` events; not state)
        self.made: list[dict[str, Any]] = []
        self._appliances: Any = False  # ApplianceScheduler once built (None: not enabled)
        self._restored_decisions: dict[tuple[str, int], int] = {}  # from a snapshot, until the scheduler is built
        self.hot_water: Any = None  # GeyserPlanner when the config plans the geysers (``geyser:``)
        if getattr(config, "geyser", None) is not None:
            from hometwin.services.inverter.strategies.hot_water import GeyserPlanner

            self.hot_water = GeyserPlanner(self, config.geyser)

    # -- called by the inverter ---------------------------------------------------------------
    def prepare(self, w: Any, signals: Mapping[str, np.ndarray]) -> None:
        """Window boundary, before requests: replan when due and impose thermal set-points."""
        if self.replan_steps and (self.plan is None or w.i0 % self.replan_steps == 0):
            starts = self.defer_appliances(w)
            self.plan = self.make_plan(w, signals)
            if starts:
                self.plan.starts.update(starts)
            self.plans += 1
            self.solve_s.append(self.plan.solve_s)
            self.made.append({"step": int(w.i0), "plan": int(self.plans), "strategy": self.name,
                              "solve_ms": round(float(self.plan.solve_s) * 1e3, 3)})
            self.apply_thermal(w)
            if self.hot_water is not None:
                self.hot_water.apply(self.plan, w)

    def policy(self, w: Any, signals: Mapping[str, np.ndarray], battery: Mapping[str, float] | None,
               inverter: Any) -> Any:
        from hometwin.services.inverter.strategies.modes import mode_policy

        if self.replan_steps and self.plan is None:
            self.prepare(w, signals)
        if self.plan is None:
            return mode_policy(inverter.config, w, signals, inverter.batt_w)
        return plan_policy(self.plan, w, signals, battery, inverter)

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """What a continuation needs (``Inverter.snapshot`` carries it): the current plan, the
        plan count, the appliance decisions, the geyser planner's limits and — in subclasses —
        their own state (the heating MPC's integral action).  Caches (forecast truth, shadow
        models) are pure functions of the config and rebuild themselves; solve-time statistics
        start again after a restore.  A tree of dicts, lists, arrays and numbers."""
        sched = self._appliances if self._appliances not in (False, None) else None
        decisions = self._restored_decisions if sched is None else sched.decisions
        out: dict[str, Any] = {"type": getattr(self.config, "type", self.name), "name": self.name,
                               "plan": None if self.plan is None else self.plan.to_state(), "plans": int(self.plans),
                               "decisions": [[name, int(a), int(b)] for (name, a), b in decisions.items()]}
        if self.hot_water is not None:
            out["hot_water"] = {"t_min": dict(self.hot_water.t_min), "legionella_c": dict(self.hot_water.legionella_c)}
        return out

    def restore(self, snap: Mapping[str, Any]) -> None:
        """Continue from :meth:`snapshot` (of a strategy of the same type)."""
        want = getattr(self.config, "type", self.name)
        if snap.get("type") != want:
            raise ValueError(f"strategy: a snapshot of a {snap.get('type')!r} strategy cannot restore a {want!r} one")
        plan = snap.get("plan")
        self.plan = None if plan is None else Plan.from_state(plan)
        self.plans = int(snap.get("plans", 0))
        self.solve_s = []
        decisions = {(str(name), int(a)): int(b) for name, a, b in snap.get("decisions") or []}
        self._restored_decisions = decisions
        if self._appliances not in (False, None):
            self._appliances.decisions = dict(decisions)
        hw = snap.get("hot_water")
        if self.hot_water is not None and hw:
            self.hot_water.t_min = {str(k): float(v) for k, v in (hw.get("t_min") or {}).items()}
            self.hot_water.legionella_c = {str(k): float(v) for k, v in (hw.get("legionella_c") or {}).items()}

    # -- deferrable appliances -----------------------------------------------------------------
    def appliance_scheduler(self) -> Any:
        """The :class:`~.appliances.ApplianceScheduler` when the config's ``defer_appliances`` is on
        and the strategy has a forecaster; built on first use (the roster is bound by then)."""
        if self._appliances is False:
            self._appliances = None
            fc = getattr(self, "forecaster", None)
            if getattr(self.config, "defer_appliances", False) and fc is not None:
                from hometwin.services.inverter.strategies.appliances import ApplianceScheduler

                step_s = float(getattr(self.config, "step_min", 15.0)) * 60.0
                sched = ApplianceScheduler(self, step_s)
                sched.decisions.update(self._restored_decisions)
                names = set(sched.appliances())
                if names:
                    fc.leave_out(names)
                    fc.extra_load = sched.planned_load_kw
                self._appliances = sched
        return self._appliances

    def defer_appliances(self, w: Any) -> dict[str, dict[int, int]]:
        """At a replan: move the smart appliances' upcoming starts to the cheapest allowed ones."""
        sched = self.appliance_scheduler()
        if sched is None or not sched.appliances():
            return {}
        home = self.inverter.home
        look = sched.lookahead_s(self.replan_steps * home.step_s)
        fc = self.forecaster.forecast(w.i0, look, sched.step_s, extra=False)
        return sched.schedule(fc)

    # -- for planners -------------------------------------------------------------------------
    def make_plan(self, w: Any, signals: Mapping[str, np.ndarray]) -> Plan:
        raise NotImplementedError

    def apply_thermal(self, w: Any) -> None:
        """Send the plan's thermal part to the elements (the heating planners send
        :class:`~hometwin.flex.HeatPlan`s; geysers get theirs from :class:`~.hot_water.GeyserPlanner`;
        appliance starts go out as :class:`~hometwin.flex.DeferTo` when they are decided, see
        :meth:`defer_appliances`).  A battery-only plan has none."""

    def summary(self) -> dict[str, Any]:
        s = np.asarray(self.solve_s) if self.solve_s else np.zeros(1)
        return {"strategy": self.name, "plans": self.plans, "solve_median_ms": float(np.median(s) * 1e3),
                "solve_max_ms": float(s.max() * 1e3)}


_PLAN_ARRAYS = ("charge_w", "discharge_w", "import_w", "export_w", "soc_floor", "soc", "grid_target_soc")


def _copy(a: Any) -> Any:
    return None if a is None else np.array(a, copy=True)


def _copy_map(d: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): np.array(v, copy=True) for k, v in d.items()}


def plan_policy(plan: Plan, w: Any, signals: Mapping[str, np.ndarray], battery: Mapping[str, float] | None,
                inverter: Any) -> Any:
    """The battery policy that makes the inverter follow ``plan`` in window ``w``.

    The plan's powers become per-step caps and forced flows (see
    :class:`~hometwin.flex.BatteryPolicy`): while the plan
    imports, the battery discharges no more than planned (it holds energy for
    dearer hours); while the plan exports, the battery charges no more than
    planned; planned grid charging and forced discharging happen as planned.  Where
    reality differs from the forecast the greedy rules fill in, and the next
    plan corrects.
    """
    from hometwin.flex import BatteryPolicy

    n, dt = w.n, float(w.dt_s)
    ep = w.epoch_s
    ch = plan.at(plan.charge_w, ep) * dt
    dis = plan.at(plan.discharge_w, ep) * dt
    imp = plan.at(plan.import_w, ep) * dt
    exp = plan.at(plan.export_w, ep) * dt
    floor = np.nan_to_num(plan.at(plan.soc_floor, ep, 0.0), nan=0.0)
    up = signals.get("grid_available")
    if up is not None:  # a floor is a reserve for outages: where the grid is really down it is there to be used
        floor = np.where(np.asarray(up, dtype=float) > 0.5, floor, 0.0)
    have = np.isfinite(ch) & np.isfinite(dis)
    ch, dis = np.nan_to_num(ch, nan=0.0), np.nan_to_num(dis, nan=0.0)
    imp, exp = np.nan_to_num(imp, nan=0.0), np.nan_to_num(exp, nan=0.0)
    eps = 1e-6 * dt  # 1 mW
    importing = have & (imp > eps)
    exporting = have & (exp > eps)
    discharge_limit = np.where(importing, dis, np.inf)
    charge_limit = np.where(exporting | (importing & (ch > eps)), ch, np.inf)
    grid_charge = np.where(importing & (ch > eps), ch, 0.0)
    target = np.where(grid_charge > 0, np.nan_to_num(plan.at(plan.grid_target_soc, ep, 1.0), nan=1.0), 0.0)
    force = np.where(exporting & (dis > eps), dis, 0.0)
    return BatteryPolicy(soc_floor=floor, grid_charge_j=grid_charge,
                         grid_target_soc=target, force_discharge_j=force,
                         charge_from_surplus=np.ones(n, dtype=bool), export_first=False,
                         charge_limit_j=charge_limit, discharge_limit_j=discharge_limit)
