"""Battery dispatch as a linear (or mixed-integer) program, solved by HiGHS through scipy.

Decision variables per step ``t`` (power in kW, held over the step of ``dt_h`` hours):

- ``c[t]``  AC power into the battery converter (from PV surplus or the grid),
- ``d[t]``  AC power out of the battery converter,
- ``gi[t]`` grid import, ``ge[t]`` grid export,
- ``cu[t]`` curtailed PV, ``u[t]`` unserved load (only during outages / limits; penalised),
- ``e[t]``  energy stored at the start of step ``t`` (kWh, ``t = 0 … T``; ``e[0]`` fixed),

plus the electric power of any thermal blocks (heat pump, geyser; see
:mod:`.heating_mpc`) that join the same bus balance.  Constraints:

- bus balance ``pv − cu + d + gi + u = load + c + ge + Σ thermal``,
- storage ``e[t+1] = keep·e[t] + η_inv·η_c·c·dt − d·dt/(η_inv·η_d)``,
- power limits of battery and converter (AC side), the taper of the charge power
  above ``taper_soc`` (linear in ``e``), the inverter's AC rating,
- SoC window (and an optional per-step floor, e.g. a backup reserve),
- through every outage (``available`` false), a reserve: the stored energy above the
  minimum covers ``outage_reserve_factor`` × the forecast load and the planned thermal
  loads of the rest of the outage (PV not counted; at the discharge efficiency) — soft,
  its shortfall priced at the value of lost load spread over the outage's steps (see
  :func:`outage_reserve_kwh`),
- import/export limits, zero grid exchange while the grid is unavailable,
- MILP only (``integer=True``): no simultaneous charge/discharge or import/export.

Objective: ``Σ dt·(p_imp·gi − p_exp·ge + wear·(c + d) + voll·u) − v_term·e[T]`` (+ the soft
floors' slacks), where ``voll`` is the value of lost load (``unserved_penalty_per_kwh``).

Matrices are assembled once as sparse COO arrays with numpy (no Python loop per
step) and handed to :func:`scipy.optimize.milp` (HiGHS).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from hometwin.services.inverter.strategies.base import Strategy, StrategyError
from hometwin.flex import BatteryFlex, flexible
from hometwin.lazy import lazy_module
from hometwin.units import J_PER_KWH

sp = lazy_module("scipy.sparse")
optimize = lazy_module("scipy.optimize")

MONTH_H = 30.4375 * 24


# ---------------------------------------------------------------------------------------------
# A small sparse LP builder
# ---------------------------------------------------------------------------------------------
class SparseLP:
    """Variables in named blocks, constraints as vectorised COO triplets."""

    def __init__(self) -> None:
        self.n = 0
        self.blocks: dict[str, slice] = {}
        self._lb: list[np.ndarray] = []
        self._ub: list[np.ndarray] = []
        self._c: list[np.ndarray] = []
        self._int: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._lo: list[np.ndarray] = []
        self._hi: list[np.ndarray] = []
        self.m = 0

    def var(self, name: str, size: int, lb: Any = 0.0, ub: Any = np.inf, cost: Any = 0.0,
            integer: bool = False) -> np.ndarray:
        """Add a block of ``size`` variables; returns their column indices."""
        idx = np.arange(self.n, self.n + size)
        self.blocks[name] = slice(self.n, self.n + size)
        self.n += size
        self._lb.append(np.broadcast_to(np.asarray(lb, dtype=float), (size,)).copy())
        self._ub.append(np.broadcast_to(np.asarray(ub, dtype=float), (size,)).copy())
        self._c.append(np.broadcast_to(np.asarray(cost, dtype=float), (size,)).copy())
        self._int.append(np.full(size, 1 if integer else 0, dtype=np.uint8))
        return idx

    def add_cost(self, idx: np.ndarray, cost: Any) -> None:
        c = np.concatenate(self._c) if len(self._c) > 1 else self._c[0]
        np.add.at(c, idx, np.broadcast_to(np.asarray(cost, dtype=float), np.shape(idx)))
        self._c = [c]

    def rows(self, terms: Sequence[tuple[np.ndarray, Any]], lo: Any, hi: Any) -> np.ndarray:
        """``lo ≤ Σ coef·x[idx] ≤ hi``, one row per element of the index arrays."""
        m = len(terms[0][0])
        r = np.arange(self.m, self.m + m)
        for idx, coef in terms:
            idx = np.asarray(idx)
            if len(idx) != m:
                raise ValueError("all terms of a row block need the same length")
            self._rows.append(r)
            self._cols.append(idx)
            self._vals.append(np.broadcast_to(np.asarray(coef, dtype=float), (m,)).copy())
        self._lo.append(np.broadcast_to(np.asarray(lo, dtype=float), (m,)).copy())
        self._hi.append(np.broadcast_to(np.asarray(hi, dtype=float), (m,)).copy())
        self.m += m
        return r

    def solve(self, time_limit_s: float | None = None, mip_rel_gap: float = 1e-6) -> tuple[np.ndarray, float, Any]:
        c = np.concatenate(self._c)
        A = sp.csr_array((np.concatenate(self._vals), (np.concatenate(self._rows), np.concatenate(self._cols))),
                         shape=(self.m, self.n))
        integrality = np.concatenate(self._int)
        opts: dict[str, Any] = {"presolve": True}
        if time_limit_s is not None:
            opts["time_limit"] = time_limit_s
        if integrality.any():
            opts["mip_rel_gap"] = mip_rel_gap
        res = optimize.milp(c, constraints=optimize.LinearConstraint(A, np.concatenate(self._lo), np.concatenate(self._hi)),
                   integrality=integrality, bounds=optimize.Bounds(np.concatenate(self._lb), np.concatenate(self._ub)),
                   options=opts)
        return res.x, float(res.fun) if res.x is not None else float("nan"), res


# ---------------------------------------------------------------------------------------------
# Problem data
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatteryModel:
    """What the LP knows of battery + converter (kW, kWh, AC side where it says so)."""

    capacity_kwh: float
    soc_min: float
    soc_max: float
    charge_kw: float  # DC
    discharge_kw: float  # DC
    eta_charge: float = 0.97
    eta_discharge: float = 0.97
    eta_inverter: float = 0.95  # battery ↔ AC, each way
    converter_kw: float = np.inf  # inverter's battery converter rating (AC)
    ac_kw: float = np.inf  # inverter's AC output rating (PV + battery discharge)
    self_discharge_pct_per_month: float = 0.0
    taper_soc: float = 1.0
    taper_min_ratio: float = 1.0

    @classmethod
    def from_params(cls, params: Mapping[str, float], inverter: Any = None, **extra: Any) -> "BatteryModel":
        """From a battery's ``params()`` mapping (SI units, the fields of ``BatteryFlex``) and the inverter (its ratings and efficiency)."""
        kw: dict[str, Any] = dict(
            capacity_kwh=params["capacity_j"] / J_PER_KWH, soc_min=params["soc_min"], soc_max=params["soc_max"],
            charge_kw=params["charge_power_w"] / 1000.0, discharge_kw=params["discharge_power_w"] / 1000.0,
            eta_charge=params.get("charge_efficiency", 0.97), eta_discharge=params.get("discharge_efficiency", 0.97),
        )
        for key in ("self_discharge_pct_per_month", "taper_soc", "taper_min_ratio"):
            if key in params:
                kw[key] = params[key]
        if inverter is not None:
            kw.update(eta_inverter=inverter.config.battery_efficiency, converter_kw=inverter.batt_w / 1000.0,
                      ac_kw=inverter.ac_w / 1000.0)
        kw.update(extra)
        return cls(**kw)

    @classmethod
    def from_flex(cls, flex: BatteryFlex, inverter: Any = None, **extra: Any) -> "BatteryModel":
        """From a battery's :class:`~hometwin.flex.BatteryFlex` and the inverter."""
        return cls.from_params(dataclasses.asdict(flex), inverter, **extra)

    @property
    def charge_ac_max_kw(self) -> float:
        return min(self.converter_kw, self.charge_kw / self.eta_inverter)

    @property
    def discharge_ac_max_kw(self) -> float:
        return min(self.converter_kw, self.discharge_kw * self.eta_inverter)

    def check(self) -> None:
        problems = []
        if not 0 <= self.soc_min < self.soc_max <= 1:
            problems.append(f"soc_min/soc_max: need 0 ≤ soc_min < soc_max ≤ 1 (got {self.soc_min}, {self.soc_max})")
        if self.capacity_kwh <= 0:
            problems.append(f"capacity_kwh: must be > 0 (got {self.capacity_kwh})")
        if problems:
            raise StrategyError(problems)


class ThermalBlock(Protocol):
    """A controllable thermal load that joins the bus balance (heat pump, geyser)."""

    name: str

    def add_to(self, lp: SparseLP, dt_h: float, n: int) -> np.ndarray:
        """Add its variables and rows; return the indices of its electric power [kW] per step."""

    def extract(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Its part of the solution (electric power, temperatures, slacks)."""


@dataclass
class DispatchProblem:
    """One planning problem over ``n`` steps of ``dt_h`` hours (forecasts in kW, prices per kWh)."""

    dt_h: float
    pv_kw: np.ndarray  # AC PV power available (after the inverter's PV conversion)
    load_kw: np.ndarray  # uncontrollable AC load
    price_import: np.ndarray
    price_export: np.ndarray
    soc0: float
    battery: BatteryModel | None = None
    available: np.ndarray | None = None  # bool per step (None = always)
    import_limit_kw: np.ndarray | float = np.inf
    export_limit_kw: np.ndarray | float = np.inf
    soc_floor: np.ndarray | float | None = None  # extra per-step SoC floor (backup reserve), soft
    wear_cost_per_kwh: float = 0.0  # per kWh of AC throughput (charge + discharge)
    terminal_value_per_kwh: float = 0.0  # value of energy stored at the end
    # the start free in [soc0, soc0_max] (None: fixed at soc0), each kWh of it paid at initial_value_per_kwh —
    # a block of the perfect-foresight bound's decomposition (strategies/bound.py)
    soc0_max: float | None = None
    initial_value_per_kwh: float = 0.0
    unserved_penalty_per_kwh: float | None = None  # value of lost load (default: 10 × highest import price + 10)
    outage_reserve_factor: float = 1.0  # stored energy through outages ≥ factor × the forecast load (1: none extra)
    floor_penalty_per_kwh: float | None = None  # violation of soc_floor (default: 2 × highest import price + 1)
    thermal: list[Any] = field(default_factory=list)
    integer: bool = False  # MILP: forbid simultaneous charge/discharge and import/export
    mip_rel_gap: float = 1e-6  # relative optimality gap where the problem has integer variables

    @property
    def n(self) -> int:
        return len(self.pv_kw)


@dataclass
class DispatchPlan:
    """The optimum: per-step AC powers [kW], stored energy [kWh, n+1], cost terms."""

    dt_h: float
    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    import_kw: np.ndarray
    export_kw: np.ndarray
    curtail_kw: np.ndarray
    unserved_kw: np.ndarray
    stored_kwh: np.ndarray
    soc: np.ndarray
    energy_cost: float  # Σ import cost − export revenue over the horizon
    objective: float
    solve_s: float
    thermal: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    status: str = "optimal"

    @property
    def battery_kw(self) -> np.ndarray:
        """Net battery power on the AC side (+ discharge, − charge)."""
        return self.discharge_kw - self.charge_kw


def _arr(value: Any, n: int, name: str) -> np.ndarray:
    a = np.asarray(value, dtype=float)
    if a.ndim == 0:
        return np.full(n, float(a))
    if a.shape != (n,):
        raise StrategyError([f"{name}: needs {n} values, one per step (got {a.shape})"])
    return a


def check_problem(p: DispatchProblem) -> None:
    """Contradictory or malformed inputs as one :class:`StrategyError` naming each field."""
    n = p.n
    problems: list[str] = []
    if p.dt_h <= 0:
        problems.append(f"dt_h: must be > 0 (got {p.dt_h})")
    if n < 1:
        problems.append("pv_kw: the horizon has no steps")
    for name in ("pv_kw", "load_kw", "price_import", "price_export"):
        a = np.asarray(getattr(p, name), dtype=float)
        if a.shape != (n,):
            problems.append(f"{name}: needs {n} values (got shape {a.shape})")
        elif not np.isfinite(a).all():
            problems.append(f"{name}: contains NaN or infinite values")
    if (np.asarray(p.pv_kw) < -1e-9).any():
        problems.append("pv_kw: must be ≥ 0")
    if (np.asarray(p.load_kw) < -1e-9).any():
        problems.append("load_kw: must be ≥ 0")
    b = p.battery
    if b is not None:
        try:
            b.check()
        except StrategyError as exc:
            problems += exc.errors
        if not b.soc_min - 1e-6 <= p.soc0 <= b.soc_max + 1e-6:
            problems.append(f"soc0: {p.soc0:.3f} is outside the battery's window [{b.soc_min}, {b.soc_max}]")
        if p.soc_floor is not None:
            f = np.asarray(p.soc_floor, dtype=float)
            if (f > b.soc_max + 1e-9).any():
                problems.append(f"soc_floor/target: {float(f.max()):.2f} is above the battery's soc_max {b.soc_max}"
                                " — the reserve can never be reached")
    if p.wear_cost_per_kwh < 0:
        problems.append(f"wear_cost_per_kwh: must be ≥ 0 (got {p.wear_cost_per_kwh})")
    if problems:
        raise StrategyError(problems)


def solve_dispatch(p: DispatchProblem, time_limit_s: float | None = 10.0) -> DispatchPlan:
    """Build and solve the dispatch problem (see the module docstring).  A thermal block with a
    ``refine(solution) -> bool`` method may ask for a second pass after the first solution (the
    geyser's legionella step fixed from a first LP, see :class:`~.hot_water.LegionellaLPBlock`)."""
    check_problem(p)
    t0 = time.perf_counter()
    plan = _solve_dispatch(p, time_limit_s)
    again = [blk.refine(plan.thermal[blk.name]) for blk in p.thermal
             if hasattr(blk, "refine") and blk.name in plan.thermal]
    if any(again):
        plan = _solve_dispatch(p, time_limit_s)
    plan.solve_s = time.perf_counter() - t0
    return plan


def _solve_dispatch(p: DispatchProblem, time_limit_s: float | None) -> DispatchPlan:
    t0 = time.perf_counter()
    n, dt = p.n, float(p.dt_h)
    pv = np.maximum(np.asarray(p.pv_kw, dtype=float), 0.0)
    load = np.maximum(np.asarray(p.load_kw, dtype=float), 0.0)
    pi = np.asarray(p.price_import, dtype=float)
    pe = np.asarray(p.price_export, dtype=float)
    avail = np.ones(n, dtype=bool) if p.available is None else np.asarray(p.available, dtype=bool)
    imp = np.where(avail, _arr(p.import_limit_kw, n, "import_limit_kw"), 0.0)
    exp = np.where(avail, _arr(p.export_limit_kw, n, "export_limit_kw"), 0.0)
    pmax = float(max(np.max(np.abs(pi)), np.max(np.abs(pe)), 0.0))
    pen = p.unserved_penalty_per_kwh if p.unserved_penalty_per_kwh is not None else 10.0 * pmax + 10.0
    b = p.battery
    # physically, no more can be exported than PV plus the battery's discharge (keeps negative
    # import prices from making the LP unbounded)
    exp = np.minimum(exp, pv + (b.discharge_ac_max_kw if b is not None else 0.0))
    lp = SparseLP()
    gi = lp.var("import", n, 0.0, imp, pi * dt)
    ge = lp.var("export", n, 0.0, exp, -pe * dt)
    cu = lp.var("curtail", n, 0.0, pv, 0.0)
    u = lp.var("unserved", n, 0.0, np.inf, pen * dt)
    if b is not None:
        cap = b.capacity_kwh
        ac_room = np.maximum(b.ac_kw - pv, 0.0) if np.isfinite(b.ac_kw) else np.inf
        c = lp.var("charge", n, 0.0, b.charge_ac_max_kw, p.wear_cost_per_kwh * dt)
        d = lp.var("discharge", n, 0.0, np.minimum(b.discharge_ac_max_kw, ac_room), p.wear_cost_per_kwh * dt)
        e_lo = np.full(n + 1, b.soc_min * cap)
        e_hi = np.full(n + 1, b.soc_max * cap)
        e0 = float(np.clip(p.soc0, b.soc_min, b.soc_max)) * cap
        e_lo[0] = e_hi[0] = e0
        if p.soc0_max is not None:
            e_hi[0] = float(np.clip(p.soc0_max, p.soc0, b.soc_max)) * cap
        cost_e = np.zeros(n + 1)
        cost_e[0] = p.initial_value_per_kwh
        cost_e[-1] = -p.terminal_value_per_kwh
        e = lp.var("stored", n + 1, e_lo, e_hi, cost_e)
        keep = (1.0 - b.self_discharge_pct_per_month / 100.0) ** (dt / MONTH_H)
        # e[t+1] − keep·e[t] − η_in·c·dt + d·dt/η_out = 0
        eta_in = b.eta_inverter * b.eta_charge
        eta_out = b.eta_inverter * b.eta_discharge
        lp.rows([(e[1:], 1.0), (e[:-1], -keep), (c, -eta_in * dt), (d, dt / eta_out)], 0.0, 0.0)
        if b.taper_soc < b.soc_max and b.taper_min_ratio < 1.0:
            # DC charge ≤ p_ch − slope·(e − e_taper): η_inv·c + slope·e[t] ≤ p_ch + slope·e_taper
            span = (b.soc_max - b.taper_soc) * cap
            slope = (1.0 - b.taper_min_ratio) * b.charge_kw / span
            lp.rows([(c, b.eta_inverter), (e[:-1], slope * keep)], -np.inf, b.charge_kw + slope * b.taper_soc * cap)
        if p.soc_floor is not None:
            floor = np.clip(_arr(p.soc_floor, n, "soc_floor"), b.soc_min, b.soc_max) * cap
            fp = p.floor_penalty_per_kwh if p.floor_penalty_per_kwh is not None else 2.0 * pmax + 1.0
            sf = lp.var("floor_slack", n, 0.0, np.inf, fp)
            lp.rows([(e[1:], 1.0), (sf, 1.0)], floor, np.inf)
        if p.integer:
            z = lp.var("charging", n, 0.0, 1.0, integer=True)
            lp.rows([(c, 1.0), (z, -b.charge_ac_max_kw)], -np.inf, 0.0)
            lp.rows([(d, 1.0), (z, b.discharge_ac_max_kw)], -np.inf, b.discharge_ac_max_kw)
    if p.integer:
        big = np.where(np.isfinite(imp), imp, pv.max() + load.max() + 1e3)
        bige = np.where(np.isfinite(exp), exp, pv.max() + 1e3 + (b.discharge_ac_max_kw if b else 0.0))
        w = lp.var("importing", n, 0.0, 1.0, integer=True)
        lp.rows([(gi, 1.0), (w, -big)], -np.inf, 0.0)
        lp.rows([(ge, 1.0), (w, bige)], -np.inf, bige)
    thermal_idx = [(blk, blk.add_to(lp, dt, n)) for blk in p.thermal]
    if b is not None and p.outage_reserve_factor > 1.0 and not avail.all():
        _outage_reserve_rows(lp, p, avail, load, dt, e, [idx for _, idx in thermal_idx], pen)
    # Bus balance: gi − ge − cu + u + d − c − Σ thermal = load − pv
    terms: list[tuple[np.ndarray, Any]] = [(gi, 1.0), (ge, -1.0), (cu, -1.0), (u, 1.0)]
    if b is not None:
        terms += [(d, 1.0), (c, -1.0)]
    terms += [(idx, -1.0) for _, idx in thermal_idx]
    lp.rows(terms, load - pv, load - pv)
    x, obj, res = lp.solve(time_limit_s=time_limit_s, mip_rel_gap=p.mip_rel_gap)
    if x is None:
        raise StrategyError([f"solver: no solution ({res.message.strip()}); the problem data are contradictory"])
    zero = np.zeros(n)
    g = lambda name: x[lp.blocks[name]] if name in lp.blocks else zero  # noqa: E731
    stored = g("stored") if b is not None else np.zeros(n + 1)
    cost = float(np.sum((pi * g("import") - pe * g("export")) * dt))
    plan = DispatchPlan(
        dt_h=dt, charge_kw=g("charge"), discharge_kw=g("discharge"), import_kw=g("import"),
        export_kw=g("export"), curtail_kw=g("curtail"), unserved_kw=g("unserved"), stored_kwh=stored,
        soc=stored / b.capacity_kwh if b is not None else stored, energy_cost=cost, objective=obj,
        solve_s=time.perf_counter() - t0, status=str(res.message),
        thermal={blk.name: blk.extract(x) for blk, _ in thermal_idx})
    return plan


def _outage_reserve_rows(lp: SparseLP, p: DispatchProblem, avail: np.ndarray, load: np.ndarray, dt: float,
                         e: np.ndarray, thermal: list[np.ndarray], pen: float) -> None:
    """At every outage step ``t``: ``e[t] + slack ≥ e_min + f·(load of the rest of the outage
    + the thermal loads planned in it)/η_out``; a uniform shortfall of x kWh over an outage
    costs x × VoLL (the slack's price is spread over the outage's steps)."""
    b = p.battery
    f = p.outage_reserve_factor
    eta_out = b.eta_inverter * b.eta_discharge
    cap = b.capacity_kwh
    need = outage_reserve_kwh(avail, load, dt, eta_out, f)
    out = np.flatnonzero(~avail)
    _, first, inv, counts = np.unique(_runs(~avail)[out], return_index=True, return_inverse=True, return_counts=True)
    span = counts[inv]  # steps of the step's outage
    end = (out[first] + counts)[inv]  # first step after it
    rs = lp.var("reserve_slack", len(out), 0.0, np.inf, pen / span)
    terms: list[tuple[np.ndarray, Any]] = [(e[out], 1.0), (rs, 1.0)]
    for k in range(int((end - out).max()) if thermal else 0):
        s = out + k
        ok = s < end
        s = np.where(ok, s, out)
        coef = np.where(ok, -f * dt / eta_out, 0.0)
        terms += [(idx[s], coef) for idx in thermal]
    lp.rows(terms, np.minimum(b.soc_min * cap + need[out], b.soc_max * cap), np.inf)


def _runs(mask: np.ndarray) -> np.ndarray:
    """Run number of each step: consecutive equal values of ``mask`` share one (0, 1, 2, …)."""
    m = np.asarray(mask, dtype=bool)
    return np.concatenate([[0], np.cumsum(m[1:] != m[:-1])]) if len(m) else np.zeros(0, dtype=int)


def outage_reserve_kwh(available: np.ndarray, load_kw: np.ndarray, dt_h: float, eta_out: float,
                       factor: float) -> np.ndarray:
    """Stored energy above the battery's minimum [kWh] wanted at the start of each outage step:
    ``factor`` × the forecast load of the rest of that outage, divided by the discharge efficiency
    ``eta_out`` (battery → AC); 0 while the grid is up.  PV is not counted: a cloud can take it
    away, and the reserve is what the house has when it does."""
    out = ~np.asarray(available, dtype=bool)
    deficit = np.where(out, np.maximum(np.asarray(load_kw), 0.0) * dt_h / eta_out, 0.0)
    run = _runs(out)
    total = np.bincount(run, weights=deficit)  # per run
    before = np.cumsum(deficit) - deficit  # deficit of the steps before t
    start = np.cumsum(np.concatenate([[0.0], total]))[run]  # deficit before the run's first step
    rest = total[run] - (before - start)
    return np.where(out, factor * rest, 0.0)


def widen_outages(available: np.ndarray, steps: int) -> np.ndarray:
    """``available`` with every outage widened by ``steps`` on each side (the schedule's uncertainty)."""
    a = np.asarray(available, dtype=bool)
    if steps <= 0 or a.all():
        return a.copy()
    out = (~a).astype(np.int64)
    c = np.concatenate([[0], np.cumsum(out)])
    n = len(a)
    i = np.arange(n)
    lo, hi = np.clip(i - steps, 0, n), np.clip(i + steps + 1, 0, n)
    return (c[hi] - c[lo]) == 0


def lead_floor(available: np.ndarray, need_soc: np.ndarray, steps: int) -> np.ndarray:
    """Per step, the SoC wanted at the start of the next outage if it begins within ``steps``
    steps (0 inside outages and farther ahead)."""
    a = np.asarray(available, dtype=bool)
    n = len(a)
    starts = np.flatnonzero(~a & np.concatenate([[True], a[:-1]]))
    out = np.zeros(n)
    for s0 in starts:
        lo = max(0, s0 - steps)
        out[lo:s0] = np.maximum(out[lo:s0], need_soc[s0])
    return out


# ---------------------------------------------------------------------------------------------
# The receding-horizon strategy
# ---------------------------------------------------------------------------------------------
def battery_flex(inverter: Any) -> BatteryFlex | None:
    """The flexibility of the roster's battery (None without one)."""
    return next((f for _, f in flexible(inverter.roster, BatteryFlex).values()), None)


def plan_from_dispatch(sol: DispatchPlan, t0_s: int, dt_s: int, floor: np.ndarray | None = None) -> Any:
    from hometwin.services.inverter.strategies.base import Plan

    return Plan(t0_s=t0_s, dt_s=dt_s, n=len(sol.charge_kw), charge_w=sol.charge_kw * 1000.0,
                discharge_w=sol.discharge_kw * 1000.0, import_w=sol.import_kw * 1000.0,
                export_w=sol.export_kw * 1000.0, soc=sol.soc[1:], soc_floor=floor, cost=sol.energy_cost,
                solve_s=sol.solve_s)


class LPStrategy(Strategy):
    """Battery dispatch LP over a receding horizon (``type: lp``), with the geysers if ``geyser:`` is set."""

    name = "lp"

    def __init__(self, config: Any, inverter: Any):
        super().__init__(config, inverter)
        from hometwin.services.inverter.strategies.forecast import Forecaster

        self.name = config.type
        self.replan_steps = max(1, int(round(config.replan_min * 60 / inverter.home.step_s)))
        self.forecaster = Forecaster(inverter, config.forecast)

    def make_plan(self, w: Any, signals: Any) -> Any:
        return lp_plan(self, w)

    def thermal_blocks(self, fc: Any) -> list[Any]:
        """The geysers' blocks when the config plans them (``geyser:``), none otherwise."""
        return self.hot_water.blocks(fc) if self.hot_water is not None else []

    def thermal_plan(self, plan: Any, sol: Any, fc: Any) -> None:
        if self.hot_water is not None:
            self.hot_water.store(plan, sol)


def lp_plan(strategy: Any, w: Any, perfect: bool | None = None, horizon_s: float | None = None) -> Any:
    """One receding-horizon plan of the battery (and the strategy's thermal blocks, if any)."""
    cfg = strategy.config
    inv = strategy.inverter
    port = battery_flex(inv)
    if horizon_s is None:
        horizon_s = cfg.horizon_h * 3600.0
        if getattr(strategy, "hot_water", None) is not None:
            horizon_s = strategy.hot_water.horizon_s(horizon_s)
    fc = strategy.forecaster.forecast(w.i0, horizon_s, cfg.step_min * 60.0, perfect=perfect)
    if getattr(cfg, "thermostat_load", False) and getattr(strategy, "hot_water", None) is None:
        # geysers left to their own thermostat: their heating is forecast load (and in the outage reserve)
        thermo = getattr(strategy, "thermostat_load", None)
        if thermo is None:
            from hometwin.services.inverter.strategies.hot_water import ThermostatLoad

            thermo = strategy.thermostat_load = ThermostatLoad(strategy)
        exact = strategy.forecaster.perfect if perfect is None else perfect
        fc.load_kw = fc.load_kw + thermo.load_kw(fc, bool(exact))
    bm = soc0 = None
    if port is not None:
        bm = BatteryModel.from_flex(port, inv)
        soc0 = port.stored_j / port.capacity_j
    tv = getattr(cfg, "terminal_value_per_kwh", None)
    if tv is None:
        tv = 0.0 if fc.reaches_end or bm is None else float(np.min(fc.price_import)) * bm.eta_inverter * bm.eta_discharge
    floor = None
    planned_outages = getattr(cfg, "outage_reserve", True)
    avail = fc.available if planned_outages else np.ones(fc.n, dtype=bool)
    # the announced schedule as forecast: every outage widened by its uncertainty
    avail = widen_outages(avail, int(np.ceil(getattr(cfg, "outage_margin_h", 0.0) * 3600.0 / fc.dt_s - 1e-9)))
    if getattr(cfg, "reserve_soc", None) is not None:
        floor = np.where(avail, cfg.reserve_soc, 0.0)
    factor = getattr(cfg, "outage_reserve_factor", 1.0) if planned_outages else 1.0
    thermal = strategy.thermal_blocks(fc) if hasattr(strategy, "thermal_blocks") else []
    prob = DispatchProblem(dt_h=fc.dt_h, pv_kw=fc.pv_kw, load_kw=fc.load_kw, price_import=fc.price_import,
                           price_export=fc.price_export, soc0=soc0 if soc0 is not None else 0.0, battery=bm,
                           available=avail, import_limit_kw=fc.import_limit_kw, export_limit_kw=fc.export_limit_kw,
                           soc_floor=floor, wear_cost_per_kwh=cfg.wear_cost_per_kwh, terminal_value_per_kwh=tv,
                           unserved_penalty_per_kwh=getattr(cfg, "value_of_lost_load_per_kwh", None),
                           outage_reserve_factor=factor, thermal=thermal, integer=getattr(cfg, "integer", False),
                           mip_rel_gap=getattr(cfg, "mip_rel_gap", 1e-6))
    sol = solve_dispatch(prob)
    lead = int(round(getattr(cfg, "outage_lead_h", 0.0) * 3600.0 / fc.dt_s))
    if bm is not None and planned_outages and lead > 0 and not avail.all():
        # before an announced outage, load the forecast missed (a geyser's thermostat, forecast error) is
        # taken from the grid rather than from the energy the plan holds for the outage
        need = outage_reserve_kwh(avail, fc.load_kw, fc.dt_h, bm.eta_inverter * bm.eta_discharge, factor)
        need_soc = np.minimum(bm.soc_min + need / bm.capacity_kwh, bm.soc_max)
        # from ``outage_lead_h`` before each (widened) outage through its end: no lower than the plan, up to
        # the reserve (the policy lifts the floor wherever the grid is really down, see ``plan_policy``)
        hold = np.minimum(np.maximum(lead_floor(avail, need_soc, lead), np.where(avail, 0.0, need_soc)), sol.soc[1:])
        floor = hold if floor is None else np.maximum(floor, hold)
    plan = plan_from_dispatch(sol, fc.t0_s, fc.dt_s, floor)
    plan.info["forecast"] = fc
    plan.info["dispatch"] = sol
    plan.info["planned_available"] = avail  # the grid as planned: announced outages widened by the margin
    if hasattr(strategy, "thermal_plan"):
        strategy.thermal_plan(plan, sol, fc)
    return plan
