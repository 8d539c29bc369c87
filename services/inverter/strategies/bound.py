"""What the perfect-foresight bound plans besides the battery: heated buildings and the comfort score.

The bound (:mod:`.reference`) is one LP over the whole run of every flexible element of the home,
on the models the simulation uses:

- the battery (:class:`~.lp.BatteryModel`, as every planner);
- every heat pump / space heater with its building (:class:`HeatSourceBlock`): the building's own
  continuous model ``A_c``, ``B_c`` (``params()``), discretised exactly over the plan step, heat
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
from hometwin.lazy import lazy_module

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
        x = [lp.var(f"{self.name}.x{j}", n + 1, -np.inf, np.inf) for j in range(ns)]
        ga = np.broadcast_to(np.asarray(self.gains_air_w, dtype=float), (n,))
        gm = np.broadcast_to(np.asarray(self.gains_mass_w, dtype=float), (n,))
        for j in range(ns):
            lp.rows([(x[j][:1], 1.0)], self.x0[j], self.x0[j])
            const = bd[j, 0] * self.temp_out + bd[j, 1] * ga + bd[j, 2] * gm
            terms = [(x[j][1:], 1.0), (qm, -b_heat[j] * 1000.0), (qb, -b_heat[j] * 1000.0)]
            terms += [(x[k][:-1], -ad[j, k]) for k in range(ns)]
            lp.rows(terms, const, const)
        w = np.asarray(self.weight, dtype=float) * dt_h
        s_lo = lp.var(f"{self.name}.below", n, 0.0, np.inf, w)
        s_hi = lp.var(f"{self.name}.above", n, 0.0, np.inf, w)
        lp.rows([(x[0][1:], 1.0), (s_lo, 1.0)], self.lower, np.inf)
        lp.rows([(x[0][1:], 1.0), (s_hi, -1.0)], -np.inf, self.upper)
        self._idx = {"power": p, "main": qm, "backup": qb, "x": x, "below": s_lo, "above": s_hi}
        return p

    def extract(self, x: np.ndarray) -> dict[str, np.ndarray]:
        i = self._idx
        return {"power_kw": x[i["power"]], "heat_kw": x[i["main"]] + x[i["backup"]], "temp": x[i["x"][0]],
                "below": x[i["below"]], "above": x[i["above"]]}

    def comfort_cost(self, th: dict[str, np.ndarray], dt_h: float) -> float:
        """The comfort score of its solution ``th`` (currency): Σ weight·(below + above)·dt."""
        return float(np.sum(np.asarray(self.weight) * (th["below"] + th["above"])) * dt_h)


def heated_elements(inverter: Any) -> dict[str, Any]:
    """The roster's heat pumps and heaters that take a plan (``set_plan``) and have a building."""
    roster = getattr(inverter, "roster", None) or {}
    return {n: e for n, e in roster.items() if hasattr(e, "set_plan") and hasattr(e, "params")
            and getattr(e, "building", None) is not None and hasattr(e, "source")}


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
    """One :class:`HeatSourceBlock` per heated element, from its ``params()`` and its source model."""
    home = strategy.inverter.home
    lower, upper, price = comfort_steps(fc, home.step_s, home.timezone, comfort, weight)
    out = []
    for name, el in heated_elements(strategy.inverter).items():
        p = el.params()
        src = el.source(np.asarray(fc.temp_air, dtype=float), np.full(fc.n, float(el.config.comfort_c)))
        ga = gm = 0.0
        try:
            ga, gm = el.building.gains(fc.signals, fc.n)
        except Exception:  # gains need sun signals a home without a sun lacks: none then
            ga = gm = 0.0
        out.append(HeatSourceBlock(
            name=name, a_c=np.asarray(p["A_c"], dtype=float), b_c=np.asarray(p["B_c"], dtype=float),
            x0=np.asarray(p["x0"], dtype=float), temp_out=np.asarray(fc.temp_air, dtype=float), lower=lower,
            upper=upper, weight=price, cop=np.asarray(src.cop, dtype=float),
            main_kw=np.asarray(src.heat_max_w, dtype=float) / 1000.0, backup_kw=float(src.backup_w) / 1000.0,
            gains_air_w=ga, gains_mass_w=gm, heating_to_mass=float(el.building.heating_to_mass)))
    return out
