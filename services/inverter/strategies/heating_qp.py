"""The SmartHjem thesis MPC (NTNU 2014), faithfully: a heating MPC with a quadratic objective.

Beside the LP heating MPC (:mod:`.heating_mpc`, linear price × energy vs. K·h) this is the
thesis's own formulation, a convex QP solved by HiGHS (``highspy``) at every replan:

    minimise   Σ_t  H·(T[t+1] − T_k[t])²  +  R·(E[t]·u[t]·p[t]·Δt)²  +  S·((T[t+1] − T[t])/Δt)²
    subject to x[t+1] = A_d·x[t] + B_d·[T_out[t], Q_max[t]·u[t] + gains[t] + d, gains_mass[t]]
               0 ≤ u[t] ≤ 1,   lower[t] ≤ T_k[t] ≤ upper[t],   x[0] = the measured state

* ``T`` the indoor air (first state of the building model, 1 or 2 states, exact ZOH), ``u`` the
  heater's input (on/off relaxed to [0, 1]: the share of its full heat ``Q_max``), ``E`` its
  electric power at full input [kW] (``Q_max/COP``), ``p`` the price per kWh, ``Δt`` the step in
  hours — so ``E·u·p·Δt`` is the step's cost and R weighs its square [1/currency²];
* ``T_k`` the "comfort temperature", the thesis's slack: the only bounded variable, held in the
  comfort band of each step (``comfort_c``/``setback_c`` … ``+ band_k`` from the presence calendar).
  ``T`` itself is free, so the problem is feasible whatever the weather, the heater or the band:
  when comfort is out of reach the plan heats at full power and the distance ``T − T_k`` is the
  shortfall, paid at H per K² and step [1/K²];
* S weighs the squared heating rate [K/h]² ((h/K)² per step; 0 = off) — for slow heating cables;
* input blocking: ``u`` is held constant over blocks of steps (``blocking``), so the QP has one
  input per block instead of one per step (the thesis's remedy for solve time);
* integral action: after each plan the measured indoor temperature is compared with what the model
  predicted for that moment; the error, divided by the model's heat-to-temperature gain over that
  interval, is integrated (``integral_gain``) into a heat disturbance ``d`` [W] on the air node —
  offset-free control with a wrong model (the thesis tested a model with a tenth of the area).

The weights are per step, as the thesis sums them: changing the step changes their meaning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from hometwin.lazy import lazy_module
from hometwin.services.inverter.strategies.base import Plan
from hometwin.services.inverter.strategies.heating_mpc import (HeatingMPC, HeatingMPCStrategy, band_over_steps,
                                                               observe_heater)

linalg = lazy_module("scipy.linalg")


def block_lengths(n: int, blocking: int | Sequence[int] | None, fine: int = 12, coarse: int = 3) -> np.ndarray:
    """Lengths (in steps) of the input blocks over a horizon of ``n`` steps.

    ``None``: ``fine`` single steps, then blocks of ``coarse`` steps (the default: the first hour
    at 5 min, then 15 min).  An int: blocks of that many steps.  A list: those lengths, the last one
    repeated until the horizon is covered; cut at the horizon's end.
    """
    if n < 1:
        raise ValueError(f"horizon: needs at least one step (got {n})")
    if blocking is None:
        pattern = [1] * min(fine, n)
        rest = [coarse]
    elif isinstance(blocking, (int, np.integer)):
        pattern, rest = [], [int(blocking)]
    else:
        pattern, rest = [int(b) for b in blocking], [int(blocking[-1])]
    if any(b < 1 for b in pattern + rest):
        raise ValueError(f"blocking: every block is ≥ 1 step (got {blocking})")
    out: list[int] = []
    total = 0
    for b in pattern:
        if total >= n:
            break
        out.append(min(b, n - total))
        total += out[-1]
    while total < n:
        out.append(min(rest[0], n - total))
        total += out[-1]
    return np.asarray(out, dtype=int)


_DISC: dict[tuple[bytes, bytes, float], tuple[np.ndarray, np.ndarray]] = {}


def discretise(a_c: np.ndarray, b_c: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact zero-order-hold ``(A_d, B_d)`` of ``ẋ = A_c x + B_c u`` over ``dt_s`` (cached: a plan
    every 5 minutes would otherwise spend more time in ``expm`` than in the QP)."""
    a_c, b_c = np.asarray(a_c, dtype=float), np.asarray(b_c, dtype=float)
    key = (a_c.tobytes() + bytes(str(a_c.shape), "ascii"), b_c.tobytes() + bytes(str(b_c.shape), "ascii"), float(dt_s))
    hit = _DISC.get(key)
    if hit is None:
        ns, nu = b_c.shape
        m = np.zeros((ns + nu, ns + nu))
        m[:ns, :ns] = a_c
        m[:ns, ns:] = b_c
        e = linalg.expm(m * dt_s)
        if len(_DISC) > 256:
            _DISC.clear()
        hit = _DISC[key] = (e[:ns, :ns].copy(), e[:ns, ns:].copy())
    return hit


@dataclass
class QPResult:
    u: np.ndarray  # input per step [0-1]
    heat_w: np.ndarray  # heat into the building per step [W]
    power_kw: np.ndarray  # electric power per step [kW]
    temp: np.ndarray  # indoor air at the start and the end of every step (n + 1) [°C]
    comfort: np.ndarray  # the comfort temperature (slack) per step [°C]
    objective: float
    n_inputs: int  # decision inputs after blocking
    n_vars: int
    solve_s: float
    status: str


def solve_heating_qp(a_c: np.ndarray, b_c: np.ndarray, x0: Any, dt_s: float, temp_out: Any, heat_max_w: Any,
                     elec_max_kw: Any, price: Any, lower: Any, upper: Any, weight_h: float, weight_r: float,
                     weight_s: float = 0.0, blocking: int | Sequence[int] | None = None, gains_air_w: Any = 0.0,
                     gains_mass_w: Any = 0.0, bias_w: float = 0.0, heating_to_mass: float = 0.0) -> QPResult:
    """One plan of the thesis MPC (see the module docstring); arrays have one value per step."""
    import highspy
    from scipy import sparse

    a_c, b_c = np.asarray(a_c, dtype=float), np.asarray(b_c, dtype=float)
    x0 = np.atleast_1d(np.asarray(x0, dtype=float))
    tout = np.atleast_1d(np.asarray(temp_out, dtype=float))
    n, ns = len(tout), len(x0)

    def per_step(v: Any, what: str) -> np.ndarray:
        arr = np.broadcast_to(np.asarray(v, dtype=float), (n,)).astype(float)
        if not np.isfinite(arr).all():
            raise ValueError(f"{what}: contains NaN or infinite values")
        return arr

    qmax, emax = per_step(heat_max_w, "heat_max_w"), per_step(elec_max_kw, "elec_max_kw")
    p, lo, up = per_step(price, "price"), per_step(lower, "lower"), per_step(upper, "upper")
    ga, gm = per_step(gains_air_w, "gains_air_w") + bias_w, per_step(gains_mass_w, "gains_mass_w")
    if (lo > up + 1e-9).any():
        i = int(np.flatnonzero(lo > up + 1e-9)[0])
        raise ValueError(f"lower/upper: the band is empty at step {i} ({lo[i]} > {up[i]})")
    if weight_h < 0 or weight_r < 0 or weight_s < 0:
        raise ValueError(f"weights: H, R, S must be ≥ 0 (got {weight_h}, {weight_r}, {weight_s})")
    blocks = block_lengths(n, blocking)
    m = len(blocks)
    blk = np.repeat(np.arange(m), blocks)  # block of each step
    ad, bd = discretise(a_c, b_c, dt_s)
    b_heat = bd[:, 1] * (1.0 - heating_to_mass) + bd[:, 2] * heating_to_mass
    dt_h = dt_s / 3600.0

    # HiGHS's QP solver sometimes ends in "Solve error" on a well-posed instance (seen on a state
    # fixed at a tiny non-zero start, |x0| < ~2e-4 °C, and on a real winter day at one offset and not
    # at another): the same problem is solved again with the temperatures as offsets from another
    # origin (``shift``; the optimum is the same) before giving up.
    status, solve_s = "not run", 0.0  # solve_s: every attempt
    for shift in (0.0, float(x0.min()) - 1.0, float(np.floor(x0.min())) - 3.0):
        x0s, los, ups = x0 - shift, lo - shift, up - shift

        # variables: u (m) | x_j[0..n] for each state j | T_k (n), temperatures less ``shift``
        ix = [m + j * (n + 1) + np.arange(n + 1) for j in range(ns)]
        ik = m + ns * (n + 1) + np.arange(n)
        nv = m + ns * (n + 1) + n
        col_lo = np.full(nv, -np.inf)
        col_hi = np.full(nv, np.inf)
        col_lo[:m], col_hi[:m] = 0.0, 1.0
        for j in range(ns):
            col_lo[ix[j][0]] = col_hi[ix[j][0]] = x0s[j]
        col_lo[ik], col_hi[ik] = np.minimum(los, ups), ups

        # dynamics: x_j[t+1] − Σ_k A_d[j,k]·x_k[t] − b_heat[j]·Q_max[t]·u[blk(t)] = B_d[j]·[T_out, gains, gains_mass]
        rows, cols, vals, rhs = [], [], [], []
        t = np.arange(n)
        for j in range(ns):
            r = j * n + t
            rows += [r]
            cols += [ix[j][1:]]
            vals += [np.ones(n)]
            for k in range(ns):
                rows += [r]
                cols += [ix[k][:-1]]
                vals += [np.full(n, -ad[j, k])]
            rows += [r]
            cols += [blk]
            vals += [-b_heat[j] * qmax]
            rhs += [bd[j, 0] * tout + bd[j, 1] * ga + bd[j, 2] * gm + shift * (ad[j].sum() - 1.0)]
        a = sparse.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(ns * n, nv))
        b = np.concatenate(rhs)

        # objective ½ zᵀQz: H·(T − T_k)², R·(E·p·Δt)²·u², S·((T[t+1] − T[t])/Δt)²
        qr, qc, qv = [], [], []

        def add(i: np.ndarray, j: np.ndarray, v: np.ndarray) -> None:
            qr.append(i)
            qc.append(j)
            qv.append(v)

        temp = ix[0]
        h2 = np.full(n, 2.0 * weight_h)
        add(temp[1:], temp[1:], h2)
        add(ik, ik, h2)
        add(temp[1:], ik, -h2)
        add(ik, temp[1:], -h2)
        cost2 = (emax * p * dt_h) ** 2  # (currency per step at full input)²
        add(np.arange(m), np.arange(m), 2.0 * weight_r * np.bincount(blk, weights=cost2, minlength=m))
        if weight_s > 0:
            s2 = np.full(n, 2.0 * weight_s / dt_h ** 2)
            add(temp[1:], temp[1:], s2)
            add(temp[:-1], temp[:-1], s2)
            add(temp[1:], temp[:-1], -s2)
            add(temp[:-1], temp[1:], -s2)
        q = sparse.csc_matrix((np.concatenate(qv), (np.concatenate(qr), np.concatenate(qc))), shape=(nv, nv))
        q_low = sparse.tril(q, format="csc")
        q_low.sort_indices()

        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        model = highspy.HighsModel()
        lp = model.lp_
        lp.num_col_, lp.num_row_ = nv, ns * n
        lp.col_cost_ = np.zeros(nv)
        lp.col_lower_, lp.col_upper_ = col_lo, col_hi
        lp.row_lower_, lp.row_upper_ = b, b
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr
        lp.a_matrix_.index_ = a.indices
        lp.a_matrix_.value_ = a.data
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = nv, ns * n
        hess = model.hessian_
        hess.dim_ = nv
        hess.format_ = highspy.HessianFormat.kTriangular
        hess.start_ = q_low.indptr
        hess.index_ = q_low.indices
        hess.value_ = q_low.data
        t0 = time.perf_counter()
        h.passModel(model)
        h.run()
        solve_s += time.perf_counter() - t0
        status = h.modelStatusToString(h.getModelStatus())
        if h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
            break
    else:
        raise RuntimeError(f"heating QP: HiGHS ended with {status!r}")
    z = np.asarray(h.getSolution().col_value)
    u = np.clip(z[blk], 0.0, 1.0)
    return QPResult(u=u, heat_w=u * qmax, power_kw=u * emax, temp=z[temp] + shift, comfort=z[ik] + shift,
                    objective=float(h.getInfo().objective_function_value), n_inputs=m, n_vars=nv,
                    solve_s=solve_s, status=status)


@dataclass
class ThesisMPC(HeatingMPC):
    """Receding-horizon thesis MPC for one building (the QP above), with integral action.

    ``max_heat_kw`` is the heat at full input; the electric power at full input is that over the
    COP of each step (1 for panel heaters).
    """

    weight_h: float = 1.0
    weight_r: float = 10.0
    weight_s: float = 0.0
    blocking: Any = None

    def observe(self, epoch_s: int, temp_measured: float) -> None:
        """Integral action: the model's prediction error at ``epoch_s``, turned into the steady heat [W] that
        would have caused it over the interval since the plan, is folded into the disturbance ``q_bias_w``."""
        if self._pred is None or self._pred[0] != epoch_s or self.integral_gain <= 0:
            return
        err = temp_measured - self._pred[1]
        gain = self._pred[2] if len(self._pred) > 2 else 1.0 / self.ua_w_k  # K per W over the interval
        self.q_bias_w += self.integral_gain * err / gain

    def plan(self, t0_s: int, dt_s: int, x0: np.ndarray, temp_out: np.ndarray, price: np.ndarray,  # type: ignore[override]
             lower: np.ndarray, upper: np.ndarray, cop: Any = 1.0, gains_air_w: Any = 0.0, replan_s: int | None = None,
             check: bool = True, gains_mass_w: Any = 0.0, max_heat_kw: Any = None) -> dict[str, Any]:
        n = len(temp_out)
        cap = np.broadcast_to(np.asarray(self.max_heat_kw if max_heat_kw is None else max_heat_kw, dtype=float), (n,))
        cop_a = np.maximum(np.broadcast_to(np.asarray(cop, dtype=float), (n,)), 1e-3)
        res = solve_heating_qp(self.a_c, self.b_c, x0, dt_s, temp_out, cap * 1000.0, cap / cop_a, price, lower, upper,
                               self.weight_h, self.weight_r, self.weight_s, self.blocking, gains_air_w, gains_mass_w,
                               self.q_bias_w, self.heating_to_mass)
        k = max(1, int(round((replan_s or dt_s) / dt_s)))
        # K per W of steady heat on the air node over the k steps until the next plan (for the integral action)
        ad, bd = discretise(self.a_c, self.b_c, k * dt_s)
        self._pred = (int(t0_s + k * dt_s), float(res.temp[min(k, n)]), float(bd[0, 1]))  # type: ignore[assignment]
        out: dict[str, Any] = {"power_kw": res.power_kw, "heat_kw": res.heat_w / 1000.0, "temp": res.temp,
                               "comfort": res.comfort, "u": res.u, "solve_s": np.array([res.solve_s]),
                               "n_inputs": res.n_inputs, "objective": res.objective}
        if check:
            blk = self.block("heat", x0, temp_out, lower, upper, cop_a, gains_air_w, gains_mass_w, max_heat_kw=cap)
            out["shortfall_k"] = blk.shortfall_k()
            warning = blk.check()
            if warning:
                out["warning"] = warning
        return out


class HeatingQPStrategy(HeatingMPCStrategy):
    """``heating_qp``: the thesis MPC for every heater with a building; the battery follows self-consumption."""

    def __init__(self, config: Any, inverter: Any):
        super().__init__(config, inverter)
        self.name = "heating_qp"

    def _mpc(self, name: str, f: Any) -> ThesisMPC:
        mpc = self.mpcs.get(name)
        if not isinstance(mpc, ThesisMPC):
            cfg = self.config
            old = mpc
            mpc = ThesisMPC(np.asarray(f.a_c, dtype=float), np.asarray(f.b_c, dtype=float),
                            f.max_heat_w / 1000.0, 0.0, cfg.integral_gain, f.heating_to_mass_setting,
                            weight_h=cfg.weight_h, weight_r=cfg.weight_r, weight_s=cfg.weight_s, blocking=cfg.blocking)
            if old is not None:  # restored from a snapshot: keep the integral action
                mpc.q_bias_w, mpc._pred = old.q_bias_w, old._pred
            self.mpcs[name] = mpc
        return mpc

    def snapshot(self) -> dict[str, Any]:
        out = super().snapshot()
        for name, mpc in self.mpcs.items():
            if mpc._pred is not None:
                out["mpcs"][name]["pred"] = [int(mpc._pred[0])] + [float(v) for v in mpc._pred[1:]]
        return out

    def restore(self, snap: Mapping[str, Any]) -> None:
        super().restore(snap)
        for name, d in (snap.get("mpcs") or {}).items():
            pred = d.get("pred")
            if pred is not None:
                self.mpcs[str(name)]._pred = (int(pred[0]),) + tuple(float(v) for v in pred[1:])  # type: ignore

    def make_plan(self, w: Any, signals: Any) -> Plan:
        cfg = self.config
        home = self.inverter.home
        fc = self.forecaster.forecast(w.i0, cfg.horizon_h * 3600.0, cfg.step_min * 60.0)
        lower, upper = band_over_steps(fc, home.timezone, cfg.comfort)
        plan = Plan(t0_s=fc.t0_s, dt_s=fc.dt_s, n=fc.n, cost=0.0, solve_s=0.0)
        replan_s = self.replan_steps * home.step_s
        for name, (_, f) in self.heaters().items():
            mpc = self._mpc(name, f)
            x0, cop, ga, gm = observe_heater(mpc, f, fc)
            cap = f.heat_max_w(fc.temp_air) / 1000.0
            out = mpc.plan(fc.t0_s, fc.dt_s, x0, fc.temp_air, fc.price_import, lower, upper, cop, ga,
                           replan_s=replan_s, check=False, gains_mass_w=gm, max_heat_kw=cap)
            self.note_shortfall(mpc.block(name, x0, fc.temp_air, lower, upper, np.maximum(cop, 1e-3), ga, gm,
                                          max_heat_kw=cap), fc)
            plan.power_w[name] = out["power_kw"] * 1000.0
            plan.setpoints[name] = out["temp"][1:]
            plan.info.setdefault("heat_kw", {})[name] = out["heat_kw"]
            plan.cost += float(np.sum(out["power_kw"] * fc.price_import) * fc.dt_h)
            plan.solve_s += float(out["solve_s"][0])
        return plan
