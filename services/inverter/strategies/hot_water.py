"""Geyser scheduling in closed loop: the geyser plan inside a planner, its plan applied to the tank.

With ``geyser:`` set in a planner's config (``lp``, ``mpc``, ``heating_mpc``)
every geyser on the roster becomes a :class:`GeyserBlock` of the
plan (jointly with the battery and heat pumps where the strategy plans them):

- the tank from the geyser's ``TankFlex`` (heat capacity, element power, losses,
  the current mean temperature), the element's power limited to the steps its
  ``timers`` allow;
- the draws' heat forecast from a shadow geyser built from the published config
  (``draw_heat_w``): the true future only for perfect forecasts, otherwise the
  mean of the same time of day over the previous ``draw_memory_days`` days (a
  persistence forecast, exact for the daily EU tapping cycles), and their most
  as the cautious forecast the minimum before a draw is held against;
- a soft minimum ``min_c`` at the end of every step *and* before every draw
  (the tank holds a step's draws above the minimum, and above their use
  temperature, without help from the element);
- the legionella constraint: at or above 60 °C (plus ``legionella_margin_k``)
  at least once in every local day whose end the horizon reaches — today only
  if the tank has not been there yet today (``TankFlex.last_hot_epoch_s``),
  soft with a penalty above a day of full-power heating, so a day that can no
  longer make it (the end of a day, a timer) never makes the problem
  infeasible; by default as two LPs (:class:`LegionellaLPBlock`: the day's
  step fixed where a first plan without the rule is hottest), or as a MILP
  (``legionella_method: milp``: the solver chooses the step);
- the planning horizon is at least ``horizon_h`` (24 h), so the day's end is
  always in view.

A geyser a planner does *not* schedule (no ``geyser:``) is still in its plan as
forecast load: :class:`ThermostatLoad` runs the geyser's own thermostat on a
shadow over the draws' forecast (the planner's ``thermostat_load``).

The plan reaches the geyser as per-run-step set-points (``Geyser.set_plan``):
in a step the plan heats, the planned end-of-step temperature; elsewhere
``min_c`` — the element then only keeps the tank off the minimum.  The plan is
indexed by run step, so it survives any window cut and takes effect at the
window boundary, like the heating elements' plans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from hometwin.flex import TankFlex, TankPlan, flexible
from hometwin.services.inverter.strategies.config import StrategyError

DAY_S = 86400


def local_day(epoch_s: np.ndarray, tz: str) -> np.ndarray:
    """Local calendar day number (days since 1970-01-01, local) of each epoch second."""
    from hometwin.schedule import LocalClock

    e = np.asarray(epoch_s, dtype=np.int64)
    return np.floor_divide(LocalClock(tz).wall_seconds(e), DAY_S).astype(np.int64)


#: [°C] the legionella temperature a tank must reach once a day
LEGIONELLA_C = 60.0


@dataclass
class GeyserBlock:
    """A hot-water tank in the plan (one node), with the daily legionella constraint.

    Minimum (soft, ``min_weight`` per K·h): at the end of every step, and at the start of every step
    with draws the tank holds that step's draws (``draw_peak_w`` if given: a cautious forecast) —
    without help from the element — above both
    ``t_min`` and the draws' use temperature (``draw_use_c``).  Legionella: ``T ≥ legionella_c`` at
    the end of at least one step of each day in ``hot_days`` (default: the first day unless
    ``legionella_done_today``, and every later day the horizon covers completely); with a
    ``miss_penalty`` a day may miss it at that price (the problem stays feasible).  ``element_kw``
    may be one value per step (0 where a timer keeps the element off).
    """

    name: str
    volume_l: float
    ua_w_k: float
    element_kw: float
    t0: float
    t_min: float
    t_max: float
    draw_w: np.ndarray  # heat taken by hot-water draws per step [W]
    ambient_c: np.ndarray | float
    day_index: np.ndarray  # local day number of each step
    legionella_done_today: bool = False
    min_weight: float = 10.0  # currency per K·h below t_min
    legionella: bool = True
    legionella_c: float = LEGIONELLA_C  # the temperature to reach once a day (≥ 60 °C; a margin above it)
    hot_days: np.ndarray | None = None  # local days that must reach it (None: as described in the class doc)
    miss_penalty: float | None = None  # per day that misses it (None: a hard constraint)
    draw_use_c: np.ndarray | float = 0.0  # use temperature of each step's draws (the tank must hold it)
    draw_peak_w: np.ndarray | None = None  # draws the tank must hold before the element helps (default draw_w)
    _idx: dict[str, Any] = field(default_factory=dict, repr=False)

    def check(self) -> None:
        problems = []
        if self.t_max < self.legionella_c and self.legionella:
            problems.append(f"geyser.t_max: {self.t_max} °C is below the legionella temperature {self.legionella_c} °C")
        if self.t_min > self.t_max:
            problems.append(f"geyser.t_min: {self.t_min} °C is above t_max {self.t_max} °C")
        if problems:
            raise StrategyError(problems)

    def add_to(self, lp: Any, dt_h: float, n: int) -> np.ndarray:
        c = self.volume_l * 4186.0  # J/K
        dt_s = dt_h * 3600.0
        a = float(np.exp(-self.ua_w_k * dt_s / c))
        g = (1.0 - a) / self.ua_w_k  # K per W of steady heat
        amb = np.broadcast_to(np.asarray(self.ambient_c, dtype=float), (n,))
        p = lp.var(f"{self.name}.power", n, 0.0, self.element_kw, 0.0)
        t = lp.var(f"{self.name}.temp", n + 1, -np.inf, self.t_max)
        lp.rows([(t[:1], 1.0)], self.t0, self.t0)
        # T[t+1] = a·T[t] + (1−a)·amb + g·(1000·P − draw)
        lp.rows([(t[1:], 1.0), (t[:-1], -a), (p, -g * 1000.0)], (1 - a) * amb - g * self.draw_w, (1 - a) * amb - g * self.draw_w)
        s = lp.var(f"{self.name}.below", n, 0.0, np.inf, self.min_weight * dt_h)
        lp.rows([(t[1:], 1.0), (s, 1.0)], self.t_min, np.inf)
        peak = self.draw_w if self.draw_peak_w is None else self.draw_peak_w
        drop = np.broadcast_to(np.asarray(peak, dtype=float), (n,)) * g  # K a step's draws take
        use = np.broadcast_to(np.asarray(self.draw_use_c, dtype=float), (n,))
        wet = np.flatnonzero(drop > 1e-9)
        sd = lp.var(f"{self.name}.below_draw", len(wet), 0.0, np.inf, self.min_weight * dt_h)
        if wet.size:
            lp.rows([(t[wet], 1.0), (sd, 1.0)], np.maximum(self.t_min, use[wet]) + drop[wet], np.inf)
        if self.legionella:
            days = np.asarray(self.day_index)
            groups = []
            if self.hot_days is None:
                steps_day = int(round(24 / dt_h))
                for k, d in enumerate(np.unique(days)):
                    sel = np.flatnonzero(days == d)
                    if k == 0 and self.legionella_done_today:
                        continue
                    if len(sel) < steps_day and k > 0:  # the horizon's incomplete last day
                        continue
                    groups.append(sel)
            else:
                groups = [np.flatnonzero(days == d) for d in np.asarray(self.hot_days)]
                groups = [sel for sel in groups if sel.size]
            if groups:
                y = lp.var(f"{self.name}.hot", n, 0.0, 1.0, integer=True)
                big = self.legionella_c + 50.0
                lp.rows([(t[1:], 1.0), (y, -big)], self.legionella_c - big, np.inf)
                miss = None
                if self.miss_penalty is not None:
                    miss = lp.var(f"{self.name}.miss", len(groups), 0.0, 1.0, self.miss_penalty)
                for j, sel in enumerate(groups):
                    _sum_row(lp, y[sel] if miss is None else np.concatenate([y[sel], miss[j:j + 1]]), 1.0)
        self._idx = {"power": p, "temp": t, "below": s, "below_draw": sd, "wet": wet}
        return p

    def extract(self, x: np.ndarray) -> dict[str, np.ndarray]:
        i = self._idx
        n = len(i["power"])
        below_draw = np.zeros(n)
        below_draw[i["wet"]] = x[i["below_draw"]]
        return {"power_kw": x[i["power"]], "temp": x[i["temp"]], "below": x[i["below"]], "below_draw": below_draw}


def _sum_row(lp: Any, idx: np.ndarray, lo: float) -> None:
    """One row ``Σ x[idx] ≥ lo``."""
    r = np.full(len(idx), lp.m)
    lp._rows.append(r)
    lp._cols.append(np.asarray(idx))
    lp._vals.append(np.ones(len(idx)))
    lp._lo.append(np.array([lo]))
    lp._hi.append(np.array([np.inf]))
    lp.m += 1



@dataclass
class LegionellaLPBlock(GeyserBlock):
    """A :class:`GeyserBlock` whose daily legionella rule is kept linear: *LP and fix*.

    The MILP lets the solver choose, for each day, the step at which the tank reaches the
    legionella temperature (one binary per step).  Here the plan is solved twice as an LP
    (:func:`~.lp.solve_dispatch` asks :meth:`refine`): first without the rule; then, for each
    day in ``hot_days``, the step that first plan has hottest becomes the day's legionella step
    — the tank reaches ``legionella_c`` at its end (soft: ``miss_penalty`` per K short, so
    a day that cannot make it never makes the problem infeasible).  The hottest step is where the
    cheap plan heats anyway (before the day's large draws, in cheap hours), so the extra heat
    costs little; the second plan is the optimum *for that choice*, never below the MILP's.
    Two LPs take some 2× one plan's time instead of the MILP's ~10× (and its long tail)."""

    hot_steps: np.ndarray | None = None  # chosen legionella step of each hot day (None: the first pass)

    def add_to(self, lp: Any, dt_h: float, n: int) -> np.ndarray:
        want = self.legionella
        self.legionella = False
        try:
            p = super().add_to(lp, dt_h, n)
        finally:
            self.legionella = want
        if want and self.hot_steps is not None and len(self.hot_steps):
            t = self._idx["temp"]
            steps = np.asarray(self.hot_steps, dtype=np.int64)
            if self.miss_penalty is None:  # a hard rule, as the MILP's
                lp.rows([(t[steps + 1], 1.0)], self.legionella_c, np.inf)
            else:
                miss = lp.var(f"{self.name}.miss", len(steps), 0.0, np.inf, self.miss_penalty)
                lp.rows([(t[steps + 1], 1.0), (miss, 1.0)], self.legionella_c, np.inf)
            self._idx["hot_steps"] = steps
        return p

    def groups(self) -> list[np.ndarray]:
        """The plan steps of each day that must reach the legionella temperature."""
        days = np.asarray(self.day_index)
        sel = [np.flatnonzero(days == d) for d in np.asarray(self.hot_days if self.hot_days is not None else [])]
        return [g for g in sel if g.size]

    def refine(self, th: Mapping[str, np.ndarray]) -> bool:
        """After the first pass: fix each hot day's step at the plan's hottest; True if a second pass is due."""
        if not self.legionella or self.hot_steps is not None:
            return False
        temp = np.asarray(th["temp"], dtype=float)[1:]  # at the end of each step
        self.hot_steps = np.array([g[int(np.argmax(temp[g]))] for g in self.groups()], dtype=np.int64)
        return bool(len(self.hot_steps))


class GeyserPlanner:
    """The geyser part of a planner (see the module docstring)."""

    def __init__(self, strategy: Any, config: Any):
        self.strategy = strategy
        self.config = config
        self._shadows: dict[str, Any] = {}
        self._checked = False
        self.t_min: dict[str, float] = {}
        self.legionella_c: dict[str, float] = {}

    def geysers(self) -> dict[str, tuple[Any, TankFlex]]:
        """``{name: (element, flexibility)}`` of the roster's geysers."""
        return flexible(self.strategy.inverter.roster, TankFlex)

    def shadow(self, name: str, el: Any) -> Any:
        """A geyser built from the published config: the draws and timers, never the live state."""
        if name not in self._shadows:
            from hometwin.registry import element_class

            d = el.describe()
            self._shadows[name] = element_class(d["kind"])(name, d["config"], self.strategy.inverter.home)
        return self._shadows[name]

    def limits(self, name: str, p: TankFlex) -> tuple[float, float]:
        """(t_min, t_max) of geyser ``name`` (its flexibility ``p``) under the config; clear errors."""
        c = self.config
        setpoint = float(p.temp_max_c)
        t_max = setpoint if c.max_c is None else float(c.max_c)
        what = f"{name}'s setpoint_c {setpoint:g} °C" if c.max_c is None else f"strategy.geyser.max_c {t_max:g} °C"
        problems = []
        if c.min_c > t_max:
            problems.append(f"strategy.geyser.min_c: {c.min_c:g} °C is above {what} — the tank can never be kept there")
        if c.legionella and t_max < LEGIONELLA_C:
            problems.append(f"strategy.geyser.legionella: {what} is below the legionella temperature {LEGIONELLA_C:g} °C"
                            " — raise it (or max_c), or set legionella: false")
        if float(p.temp_cold_c) >= t_max:
            problems.append(f"strategy.geyser.max_c: {t_max:g} °C is not above {name}'s cold water "
                            f"{float(p['temp_cold_c']):g} °C")
        if problems:
            raise StrategyError(problems)
        return float(c.min_c), t_max

    def check(self) -> None:
        """Contradictory settings before the first plan (a geyser plan without a geyser, limits)."""
        if self._checked:
            return
        gs = self.geysers()
        if not gs:
            raise StrategyError("strategy.geyser: the home has no geyser to plan (remove geyser: from the strategy)")
        for name, (_, f) in gs.items():
            self.limits(name, f)
        self._checked = True

    def horizon_s(self, horizon_s: float) -> float:
        return max(float(horizon_s), self.config.horizon_h * 3600.0)

    # -- the blocks -----------------------------------------------------------------------------
    def draw_forecast(self, shadow: Any, fc: Any, perfect: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per plan step: the expected draw heat [W], a cautious one [W] (the most of the past days,
        what the tank must hold before a draw) and the highest use temperature [°C]."""
        home = self.strategy.inverter.home
        k = max(1, int(round(fc.dt_s / home.step_s)))
        ep = fc.t0_s + np.arange(fc.n * k, dtype=np.int64) * home.step_s
        if perfect:
            heat, t_use = shadow.draw_heat_w(ep, home.step_s)
            mean = heat.reshape(fc.n, k).mean(axis=1)
            return mean, mean, t_use.reshape(fc.n, k).max(axis=1)
        days = max(1, int(self.config.draw_memory_days))
        mean = np.zeros(fc.n)
        peak = np.zeros(fc.n)
        t_use = np.zeros(fc.n)
        for d in range(1, days + 1):
            h, t = shadow.draw_heat_w(ep - d * DAY_S, home.step_s)
            h = h.reshape(fc.n, k).mean(axis=1)
            mean += h / days
            peak = np.maximum(peak, h)
            t_use = np.maximum(t_use, t.reshape(fc.n, k).max(axis=1))
        return mean, peak, t_use

    def blocks(self, fc: Any) -> list[GeyserBlock]:
        self.check()
        c = self.config
        home = self.strategy.inverter.home
        tz = home.timezone
        perfect = bool(getattr(self.strategy.forecaster, "perfect", False))
        pmax = float(np.max(np.abs(fc.price_import))) if fc.n else 0.0
        starts = fc.t0_s + np.arange(fc.n, dtype=np.int64) * fc.dt_s
        days = local_day(starts, tz)
        t_end = fc.t0_s + fc.n * fc.dt_s
        last_full = int(local_day(np.array([t_end]), tz)[0])  # days before this one end inside the horizon
        today = int(days[0]) if fc.n else 0
        k = max(1, int(round(fc.dt_s / home.step_s)))
        ep_run = fc.t0_s + np.arange(fc.n * k, dtype=np.int64) * home.step_s
        out = []
        for name, (el, p) in self.geysers().items():
            t_min, t_max = self.limits(name, p)
            self.t_min[name] = t_min
            if c.legionella:
                self.legionella_c[name] = min(LEGIONELLA_C + c.legionella_margin_k, t_max)
            sh = self.shadow(name, el)
            draw_w, draw_peak, t_use = self.draw_forecast(sh, fc, perfect)
            allowed = sh.allowed(ep_run).reshape(fc.n, k).mean(axis=1)
            hot = float(p.last_hot_epoch_s)
            done_today = np.isfinite(hot) and int(local_day(np.array([int(hot)]), tz)[0]) == today
            hot_days = [int(d) for d in np.unique(days) if d < last_full and not (d == today and done_today)]
            element_kw = p.element_w / 1000.0
            block = LegionellaLPBlock if c.legionella_method == "lp" else GeyserBlock
            out.append(block(
                name=name, volume_l=p.capacity_j_k / 4186.0, ua_w_k=max(float(p.ua_w_k), 1e-6),
                element_kw=element_kw * allowed, t0=float(p.temp_water), t_min=t_min, t_max=t_max,
                draw_w=draw_w, ambient_c=float(p.temp_ambient_c), day_index=days,
                legionella_done_today=done_today,
                min_weight=c.min_weight_per_kh if c.min_weight_per_kh is not None else 10.0 * pmax + 1.0,
                legionella=c.legionella, legionella_c=self.legionella_c.get(name, LEGIONELLA_C),
                hot_days=np.array(hot_days, dtype=np.int64),
                miss_penalty=24.0 * element_kw * pmax + 100.0,
                draw_use_c=np.where(draw_peak > 0, t_use, 0.0), draw_peak_w=draw_peak))
        return out

    # -- applying the plan ----------------------------------------------------------------------
    def store(self, plan: Any, sol: Any) -> None:
        """Copy the geysers' part of a solution into the plan (set-points and planned power)."""
        for name in self.geysers():
            th = sol.thermal.get(name)
            if th is None:
                continue
            plan.power_w[name] = np.asarray(th["power_kw"]) * 1000.0
            plan.setpoints[name] = np.asarray(th["temp"])[1:]
            plan.info.setdefault("geyser", {})[name] = {"temp": np.asarray(th["temp"]), "below": np.asarray(th["below"])}

    def apply(self, plan: Any, w: Any) -> None:
        """Send each geyser its plan as per-run-step set-points from the window's first step."""
        if plan is None:
            return
        home = self.strategy.inverter.home
        k = max(1, int(round(plan.dt_s / home.step_s)))
        for name, (el, _) in self.geysers().items():
            temp = plan.setpoints.get(name)
            power = plan.power_w.get(name)
            if temp is None or power is None:
                continue
            floor = self.t_min.get(name, self.config.min_c)
            temp = np.asarray(temp, dtype=float)
            hot = self.legionella_c.get(name)
            if hot is not None:  # the solver's tolerance must not keep the tank a hair below the legionella step
                temp = np.where(temp >= hot - 0.01, np.maximum(temp, hot), temp)
            sp = np.where(np.asarray(power) > 1.0, np.maximum(temp, floor), floor)
            offset = int((int(w.epoch_s[0]) - plan.t0_s) // home.step_s)
            run_sp = np.repeat(sp, k)[max(offset, 0):]
            if run_sp.size:
                el.command(TankPlan(w.i0, setpoint_c=run_sp))


class ThermostatLoad:
    """The electric load of geysers left to their own thermostat and timers, forecast for a planner.

    A geyser the plan does not schedule (no ``geyser:`` in the config) still heats: its thermostat
    switches the element on below ``setpoint_c − hysteresis_k`` whenever a timer allows it — a
    150 l tank with a 3 kW element takes ~3 kWh in the hour after its timer opens.  That load is
    no less predictable than the draws that cause it: a shadow geyser built from the published
    config runs its own thermostat (:meth:`Geyser.thermostat_forecast`) from the live tank's
    temperature and element state (``TankFlex``) over the draws' forecast — the true future for a
    perfect forecast, otherwise the mean of the same time of day over the previous
    ``memory_days`` days (exact for the daily EU tapping cycles, as for the geyser plan).  The
    planner adds it to the load forecast, so the outage reserve covers a geyser that heats inside
    an announced outage and the plan prices its energy.
    """

    def __init__(self, strategy: Any, memory_days: int = 7):
        self.strategy = strategy
        self.memory_days = int(memory_days)
        self._planner = GeyserPlanner(strategy, None)  # for its shadows and its list of geysers

    def geysers(self) -> dict[str, tuple[Any, TankFlex]]:
        return self._planner.geysers()

    def load_kw(self, fc: Any, perfect: bool) -> np.ndarray:
        """Forecast electric power [kW] per plan step of ``fc`` of all geysers under their thermostats."""
        from hometwin.element import Window

        out = np.zeros(fc.n)
        gs = self.geysers()
        if not gs or fc.n == 0:
            return out
        home = self.strategy.inverter.home
        k = max(1, int(round(fc.dt_s / home.step_s)))
        i0 = int(round((fc.t0_s - int(home.epoch_s(0, 1)[0])) / home.step_s))
        n_run = fc.n * k
        w = Window(seq=-1, i0=i0, n=n_run, dt_s=home.step_s, home=home)
        ep = np.asarray(w.epoch_s, dtype=np.int64)
        for name, (el, p) in gs.items():
            sh = self._planner.shadow(name, el)
            draws = None
            if not perfect:
                days = max(1, self.memory_days)
                mass = np.zeros(n_run)
                t_use = np.zeros(n_run)
                for d in range(1, days + 1):
                    m, t = sh.draws_at(ep - d * DAY_S, home.step_s)
                    mass += m / days
                    t_use = np.maximum(t_use, t)
                draws = (mass, t_use)
            elec_j = sh.thermostat_forecast(w, float(p.temp_water), bool(p.element_on), draws)
            out += elec_j.reshape(fc.n, k).mean(axis=1) / home.step_s / 1000.0
        return out
