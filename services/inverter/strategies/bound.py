"""What the perfect-foresight bound plans besides the battery: heated buildings and the comfort score.

The bound (:mod:`.reference`) is one LP over the whole run of every flexible element of the home,
on the models the simulation uses:

- the battery (:class:`~.lp.BatteryModel`, as every planner);
- every heat pump / space heater with its building (:class:`HeatSourceBlock`): the building's own
  continuous model ``A_c``, ``B_c`` (its ``ThermalFlex``), discretised exactly over the plan step, heat
  into the air and mass as the building splits it, the free gains from the forecast's sun, and the
  source as the simulation runs a plan (``set_plan(heat_w=…)``): the main source up to its
  capacity at its COP of the step, the backup heater (COP 1) for the rest;
- the geysers with their draws (:class:`~.heating_mpc.GeyserBlock` through
  :class:`~.hot_water.GeyserPlanner`, with the true draws);
- the smart appliances' starts (the strategy's :class:`~.appliances.ApplianceScheduler` on the
  true prices, before each plan).

Comfort is scored as the comparison scores it (:func:`~.compare.run_strategy`): K·h below the
band's lower bound or above its upper bound **while someone is home**, at ``comfort_weight_per_kh``
per K·h.  The LP's slacks are priced exactly there (a step's price is the weight times the share
of its minutes someone is home), so the LP minimises the same score the comparison reports:
energy cost + lost load × VoLL + discomfort × its price.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hometwin.services.inverter.strategies.lp import SparseLP
from hometwin.flex import DeferrableFlex, TankFlex, ThermalFlex, flexible
from hometwin.lazy import lazy_module
from hometwin.units import J_PER_KWH

linalg = lazy_module("scipy.linalg")


@dataclass
class HeatSourceBlock:
    """A heated building in the bound's LP: main source at its COP + backup at COP 1 (kW, °C)."""

    name: str
    a_c: np.ndarray  # (ns, ns) continuous
    b_c: np.ndarray  # (ns, 3): [T_out, Q_air_w, Q_mass_w]
    x0: np.ndarray
    temp_out: np.ndarray  # (n,)
    lower: np.ndarray  # (n,) at each step's end (°C; -inf: no lower bound scored)
    upper: np.ndarray  # (n,)
    weight: np.ndarray  # (n,) price of a K·h outside the band in the step (0 where nobody is home)
    cop: np.ndarray  # (n,) main source
    main_kw: np.ndarray  # (n,) main source heat capacity
    backup_kw: float  # backup heater [kW heat = kW electric]
    gains_air_w: np.ndarray | float = 0.0
    gains_mass_w: np.ndarray | float = 0.0
    heating_to_mass: float = 0.0
    # the decomposition (:func:`blocks_bound`): the start state free in [x0_lo, x0_hi] (None: fixed at
    # ``x0``), paid at ``start_value`` per K, the end state credited at ``end_value`` per K (per state)
    x0_lo: np.ndarray | None = None
    x0_hi: np.ndarray | None = None
    start_value: np.ndarray | None = None
    end_value: np.ndarray | None = None
    _idx: dict[str, Any] = field(default_factory=dict, repr=False)

    def add_to(self, lp: SparseLP, dt_h: float, n: int) -> np.ndarray:
        ns = len(self.x0)
        m = np.zeros((ns + 3, ns + 3))
        m[:ns, :ns] = self.a_c
        m[:ns, ns:] = self.b_c
        e = linalg.expm(m * dt_h * 3600.0)
        ad, bd = e[:ns, :ns], e[:ns, ns:]
        b_heat = bd[:, 1] * (1.0 - self.heating_to_mass) + bd[:, 2] * self.heating_to_mass
        cop = np.maximum(np.broadcast_to(np.asarray(self.cop, dtype=float), (n,)), 1e-3)
        qm = lp.var(f"{self.name}.main_heat", n, 0.0, np.broadcast_to(self.main_kw, (n,)))
        qb = lp.var(f"{self.name}.backup_heat", n, 0.0, self.backup_kw)
        p = lp.var(f"{self.name}.power", n, 0.0, np.inf)
        lp.rows([(p, 1.0), (qm, -1.0 / cop), (qb, -1.0)], 0.0, 0.0)  # electric power
        # bounded (far outside anything a house reaches): a free chain of states invites the presolve to
        # substitute them away, with coefficients that shrink geometrically along the run
        x = [lp.var(f"{self.name}.x{j}", n + 1, -100.0, 150.0) for j in range(ns)]
        ga = np.broadcast_to(np.asarray(self.gains_air_w, dtype=float), (n,))
        gm = np.broadcast_to(np.asarray(self.gains_mass_w, dtype=float), (n,))
        for j in range(ns):
            if self.x0_lo is None:
                lp.rows([(x[j][:1], 1.0)], self.x0[j], self.x0[j])
            else:
                lp.rows([(x[j][:1], 1.0)], self.x0_lo[j], self.x0_hi[j])
            if self.start_value is not None:
                lp.add_cost(x[j][:1], float(self.start_value[j]))
            if self.end_value is not None:
                lp.add_cost(x[j][-1:], -float(self.end_value[j]))
            const = bd[j, 0] * self.temp_out + bd[j, 1] * ga + bd[j, 2] * gm
            terms = [(x[j][1:], 1.0), (qm, -b_heat[j] * 1000.0), (qb, -b_heat[j] * 1000.0)]
            terms += [(x[k][:-1], -ad[j, k]) for k in range(ns)]
            lp.rows(terms, const, const)
        # the band only where it is scored (someone home): no slack, no row elsewhere
        w = np.broadcast_to(np.asarray(self.weight, dtype=float), (n,))
        on = np.flatnonzero(w > 0)
        lower = np.broadcast_to(np.asarray(self.lower, dtype=float), (n,))[on]
        upper = np.broadcast_to(np.asarray(self.upper, dtype=float), (n,))[on]
        s_lo = lp.var(f"{self.name}.below", on.size, 0.0, np.inf, w[on] * dt_h)
        s_hi = lp.var(f"{self.name}.above", on.size, 0.0, np.inf, w[on] * dt_h)
        if on.size:
            t_end = x[0][1:][on]
            lp.rows([(t_end, 1.0), (s_lo, 1.0)], lower, np.inf)
            lp.rows([(t_end, 1.0), (s_hi, -1.0)], -np.inf, upper)
        self._idx = {"power": p, "main": qm, "backup": qb, "x": x, "below": s_lo, "above": s_hi, "on": on, "n": n}
        return p

    def extract(self, x: np.ndarray) -> dict[str, np.ndarray]:
        i = self._idx
        below, above = np.zeros(i["n"]), np.zeros(i["n"])
        below[i["on"]] = x[i["below"]]
        above[i["on"]] = x[i["above"]]
        return {"power_kw": x[i["power"]], "heat_kw": x[i["main"]] + x[i["backup"]], "temp": x[i["x"][0]],
                "below": below, "above": above}

    def comfort_cost(self, th: dict[str, np.ndarray], dt_h: float) -> float:
        """The comfort score of its solution ``th`` (currency): Σ weight·(below + above)·dt."""
        return float(np.sum(np.asarray(self.weight) * (th["below"] + th["above"])) * dt_h)


def heated_elements(inverter: Any) -> dict[str, tuple[Any, ThermalFlex]]:
    """``{name: (element, flexibility)}`` of the roster's heat pumps and heaters (a building each)."""
    return flexible(inverter.roster, ThermalFlex)


def comfort_steps(fc: Any, run_step_s: int, tz: str, comfort: Any, weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per plan step of ``fc``: (lower, upper, price per K·h) of the band as the comparison scores it.

    The comparison measures the indoor temperature at the end of every run step against the band in
    force in that step's last second, while someone is home.  A plan step scores its end temperature
    against the tightest band of its run steps where someone is home, at ``weight`` × the share of
    them where someone is."""
    from hometwin.services.inverter.strategies.heating_mpc import comfort_band

    k = max(1, int(round(fc.dt_s / run_step_s)))
    t_end = fc.t0_s + np.arange(fc.n * k, dtype=np.int64) * run_step_s + run_step_s - 1
    lo, up, present = comfort_band(t_end, tz, comfort)
    lo, up, present = lo.reshape(fc.n, k), up.reshape(fc.n, k), present.reshape(fc.n, k)
    share = present.mean(axis=1)
    lower = np.where(share > 0, np.where(present, lo, -np.inf).max(axis=1), -np.inf)
    upper = np.where(share > 0, np.where(present, up, np.inf).min(axis=1), np.inf)
    return lower, upper, weight * share


def heat_blocks(strategy: Any, fc: Any, comfort: Any, weight: float) -> list[HeatSourceBlock]:
    """One :class:`HeatSourceBlock` per heated element, from its flexibility (model and source curve)."""
    home = strategy.inverter.home
    lower, upper, price = comfort_steps(fc, home.step_s, home.timezone, comfort, weight)
    out = []
    for name, (_, f) in heated_elements(strategy.inverter).items():
        src = f.source(np.asarray(fc.temp_air, dtype=float))
        ga = gm = 0.0
        try:
            ga, gm = f.gains(fc.signals, fc.n)
        except Exception:  # gains need sun signals a home without a sun lacks: none then
            ga = gm = 0.0
        out.append(HeatSourceBlock(
            name=name, a_c=np.asarray(f.a_c, dtype=float), b_c=np.asarray(f.b_c, dtype=float),
            x0=np.asarray(f.x0, dtype=float), temp_out=np.asarray(fc.temp_air, dtype=float), lower=lower,
            upper=upper, weight=price, cop=np.asarray(src.cop, dtype=float),
            main_kw=np.asarray(src.heat_max_w, dtype=float) / 1000.0, backup_kw=float(src.backup_w) / 1000.0,
            gains_air_w=ga, gains_mass_w=gm, heating_to_mass=float(f.heating_to_mass)))
    return out


# ---------------------------------------------------------------------------------------------
# The decomposition: a long run as blocks, each a relaxation, their sum a lower bound
# ---------------------------------------------------------------------------------------------
def _slice(fc: Any, a: int, b: int) -> Any:
    from dataclasses import replace

    cut = lambda v: v[a:b] if isinstance(v, np.ndarray) and v.shape[:1] == (fc.n,) else v  # noqa: E731
    return replace(fc, t0_s=int(fc.t0_s + a * fc.dt_s), n=b - a, pv_kw=cut(fc.pv_kw), load_kw=cut(fc.load_kw),
                   temp_air=cut(fc.temp_air), price_import=cut(fc.price_import), price_export=cut(fc.price_export),
                   available=cut(fc.available), import_limit_kw=cut(fc.import_limit_kw),
                   export_limit_kw=cut(fc.export_limit_kw), signals={k: cut(v) for k, v in fc.signals.items()},
                   reaches_end=bool(fc.reaches_end and b == fc.n))


def reachable_states(blk: HeatSourceBlock, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) state [°C] at the start of every step (n + 1, ns) over all heat plans in
    [0, main + backup]: the building is a monotone system (``A_c`` Metzler, heat and gains enter with
    non-negative weights, so ``A_d`` and the input columns are non-negative), so every trajectory lies
    between the one without heat and the one at full heat, state by state."""
    n, ns = len(blk.temp_out), len(blk.x0)
    m = np.zeros((ns + 3, ns + 3))
    m[:ns, :ns] = blk.a_c
    m[:ns, ns:] = blk.b_c
    e = linalg.expm(m * dt_h * 3600.0)
    ad, bd = e[:ns, :ns], e[:ns, ns:]
    if (ad < -1e-12).any() or (bd < -1e-12).any():
        raise ValueError(f"{blk.name}: the building model is not monotone; its reachable states are not a box")
    b_heat = bd[:, 1] * (1.0 - blk.heating_to_mass) + bd[:, 2] * blk.heating_to_mass
    ga = np.broadcast_to(np.asarray(blk.gains_air_w, dtype=float), (n,))
    gm = np.broadcast_to(np.asarray(blk.gains_mass_w, dtype=float), (n,))
    free = bd[:, :1] * blk.temp_out[None, :] + bd[:, 1:2] * ga[None, :] + bd[:, 2:3] * gm[None, :]  # (ns, n)
    qmax = (np.broadcast_to(blk.main_kw, (n,)) + blk.backup_kw) * 1000.0
    lo = np.empty((n + 1, ns))
    hi = np.empty((n + 1, ns))
    lo[0] = hi[0] = blk.x0
    for t in range(n):
        lo[t + 1] = ad @ lo[t] + free[:, t]
        hi[t + 1] = ad @ hi[t] + free[:, t] + b_heat * qmax[t]
    return lo, hi


def blocks_bound(inv: Any, forecaster: Any = None, block_days: float = 14.0, step_min: float = 15.0,
                 comfort: Any = None, comfort_weight_per_kh: float = 5.0,
                 value_of_lost_load_per_kwh: float | None = None, value_scale: float = 1.0) -> dict[str, Any]:
    """A lower bound of the perfect-foresight score of the run of inverter ``inv`` from its elements' present
    state (the start), as blocks of ``block_days``: the decomposition of docs/strategies.md (its home-level
    entry point, which builds the engine, is :func:`hometwin.studies.bound.decomposed_bound`)."""
    import time

    from hometwin.services.inverter.strategies.config import ComfortConfig
    from hometwin.services.inverter.strategies.forecast import Forecaster
    from hometwin.services.inverter.strategies.lp import (BatteryModel, DispatchProblem, battery_flex,
                                                          solve_dispatch)

    t_wall = time.perf_counter()
    comfort = comfort or ComfortConfig()
    unsupported = [n for n, (_, f) in flexible(inv.roster, (TankFlex, DeferrableFlex)).items()
                   if isinstance(f, TankFlex) or f.smart]
    if unsupported:
        raise ValueError(f"block_days: {', '.join(unsupported)} (geysers, smart appliances) are not decomposed; "
                         "use the joint solve (perfect_foresight) for this home")
    home_ctx = inv.home
    step_s = max(step_min * 60.0, float(home_ctx.step_s))

    class _Planner:  # what heat_blocks reads
        inverter = inv

    fc = (forecaster or Forecaster(inv, None, perfect=True)).forecast(0, home_ctx.n_steps * home_ctx.step_s, step_s,
                                                                      perfect=True)
    t_fc = time.perf_counter() - t_wall
    per_block = max(1, int(round(block_days * 86400 / fc.dt_s)))
    edges = list(range(0, fc.n, per_block)) + [fc.n]
    whole = heat_blocks(_Planner, fc, comfort, comfort_weight_per_kh)
    boxes = {b.name: reachable_states(b, fc.dt_h) for b in whole}
    day = max(1, int(round(86400 / fc.dt_s)))

    def value(blk: HeatSourceBlock, t: int) -> np.ndarray:
        """λ at step boundary ``t``: per state, currency per K (heat capacity × heat price of the next day)."""
        if t >= fc.n:
            return np.zeros(len(blk.x0))
        sl = slice(t, min(t + day, fc.n))
        heat_price = float(np.mean(fc.price_import[sl] / np.maximum(blk.cop[sl], 1.0)))
        return _capacities_kwh_k(blk) * heat_price * value_scale

    port = battery_flex(inv)
    bm, soc0 = None, 0.0
    if port is not None:
        bm = BatteryModel.from_flex(port, inv)
        soc0 = port.stored_j / port.capacity_j

    def battery_value(t: int) -> float:
        """λ of stored energy at step boundary ``t`` [currency/kWh]: the next day's mean import price,
        delivered (0 at the run's end: nothing stored is worth anything after it)."""
        if t >= fc.n or bm is None:
            return 0.0
        return float(np.mean(fc.price_import[t:t + day])) * bm.eta_inverter * bm.eta_discharge * value_scale

    total, parts, solve_s = 0.0, {"energy_cost": 0.0, "lost_load_cost": 0.0, "comfort_cost": 0.0, "state_value": 0.0}, 0.0
    pmax = float(max(np.max(np.abs(fc.price_import)), np.max(np.abs(fc.price_export)), 0.0))
    voll = value_of_lost_load_per_kwh if value_of_lost_load_per_kwh is not None else 10.0 * pmax + 10.0
    from hometwin.services.inverter.strategies.base import StrategyError

    todo = list(zip(edges[:-1], edges[1:]))[::-1]
    done = 0
    kh = {"below": 0.0, "above": 0.0, "above_outdoor_10c_plus": 0.0}
    while todo:
        a, b = todo.pop()
        f = _slice(fc, a, b)
        blocks = heat_blocks(_Planner, f, comfort, comfort_weight_per_kh)
        for blk, w in zip(blocks, whole):
            lo, hi = boxes[blk.name]
            if a > 0:
                blk.x0_lo, blk.x0_hi = lo[a], hi[a]
                blk.x0 = 0.5 * (lo[a] + hi[a])
                blk.start_value = value(w, a)
            blk.end_value = value(w, b)
        free = a > 0 and bm is not None
        prob = DispatchProblem(dt_h=f.dt_h, pv_kw=f.pv_kw, load_kw=f.load_kw, price_import=f.price_import,
                               price_export=f.price_export, soc0=bm.soc_min if free else soc0,
                               soc0_max=bm.soc_max if free else None,
                               initial_value_per_kwh=battery_value(a) if free else 0.0,
                               battery=bm, available=f.available, import_limit_kw=f.import_limit_kw,
                               export_limit_kw=f.export_limit_kw, terminal_value_per_kwh=battery_value(b),
                               unserved_penalty_per_kwh=voll, thermal=list(blocks))
        try:
            sol = solve_dispatch(prob, time_limit_s=None)
        except StrategyError:
            if b - a < 2 * day:
                raise
            # HiGHS's presolve gives up on some long blocks (numerical difficulties): two halves are
            # still a valid decomposition, one more boundary
            mid = a + (b - a) // 2
            todo += [(mid, b), (a, mid)]
            continue
        done += 1
        solve_s += sol.solve_s
        total += sol.objective
        comfort_k = sum(blk.comfort_cost(sol.thermal[blk.name], f.dt_h) for blk in blocks)
        for blk in blocks:  # K·h as the comparison counts them (each step × the share of it someone is home)
            share = np.asarray(blk.weight) / comfort_weight_per_kh if comfort_weight_per_kh > 0 else 0.0
            th = sol.thermal[blk.name]
            kh["below"] += float(np.sum(share * th["below"]) * f.dt_h)
            kh["above"] += float(np.sum(share * th["above"]) * f.dt_h)
            warm = np.asarray(f.temp_air) >= 10.0
            kh["above_outdoor_10c_plus"] += float(np.sum((share * th["above"])[warm]) * f.dt_h)
        lost = float(np.sum(sol.unserved_kw) * f.dt_h * voll)
        parts["energy_cost"] += sol.energy_cost
        parts["lost_load_cost"] += lost
        parts["comfort_cost"] += comfort_k
        parts["state_value"] += sol.objective - sol.energy_cost - lost - comfort_k
    return {"bound": float(total), "parts": parts, "blocks": done, "steps": int(fc.n), "voll_per_kwh": float(voll), "comfort_kh": kh,
            "solve_s": solve_s, "forecast_s": t_fc, "wall_s": time.perf_counter() - t_wall}


def _capacities_kwh_k(blk: HeatSourceBlock) -> np.ndarray:
    """Heat capacity of each state [kWh/K] from the continuous model: ``B_c``'s heat columns are 1/C."""
    ns = len(blk.x0)
    c = np.empty(ns)
    c[0] = 1.0 / blk.b_c[0, 1]
    if ns > 1:
        c[1] = 1.0 / blk.b_c[1, 2]
    return c / J_PER_KWH
