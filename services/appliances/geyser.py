"""Geyser (electric storage water heater): tank, element, thermostat, standing losses, hot-water draws.

Physics per step (inputs → controller → physics → results):

1. **draw** — taps ask for *mixed* water at their use temperature ``T_m``; a
   thermostatic mixing valve blends hot water from the top of the tank with
   cold mains water (``temp_cold_c``).  Hot mass ``m_hot = m_mix·(T_m − T_c)/(T_top − T_c)``
   leaves the top, the same mass of cold water enters the bottom (plug flow
   through the nodes).  A tank colder than ``T_m`` gives all its water
   unmixed: the tap gets less energy than it asked for (``unmet_j``);
2. **standing losses** — each node cools exactly (exponential) towards
   ``temp_ambient_c`` through its share of ``ua_w_k``;
3. **element** — a hysteresis thermostat at the element's node switches on
   below ``setpoint_c − hysteresis_k`` and off at ``setpoint_c``; within the
   step it heats at most to the setpoint (the thermostat opens mid-step), so
   no water is ever hotter than the setpoint; optional ``timers`` (local time)
   allow the element only inside them (a geyser timer);
4. **stratification** (``nodes > 1``) — a node heated above the one over it
   mixes with it (buoyancy), which conserves energy.

Draw profiles: the EU 812/2013 (EN 16147) tapping cycles S, M and L, embedded
below from Annex III of the regulation (start, energy ``Q_tap`` at 10 °C
inlet, flow rate and use temperature; durations follow from them), or a
seeded stochastic profile of showers, baths and small taps drawn per local day
with ``counter_rng`` (a pure function of time).

Energy bookkeeping (tests check it over a year):
``elec_j − draw_j − loss_j = Δ(Σ m·c·T)``.

Optimizer hooks (issue 5), mirroring the heating elements': :meth:`Geyser.params`
describes the tank's flexibility; :meth:`Geyser.draw_heat_w` and
:meth:`Geyser.allowed` give a planner (on a shadow built from the published
config) the draws' heat and the steps the timers allow; :meth:`Geyser.set_plan`
imposes a plan from run step ``i0`` on — per-step ``setpoint_c`` (the element
heats whenever the element node is below it, up to it, without hysteresis) and/or
``on`` (0 blocks the element, 1 lets it heat up to the step's setpoint) — that
replaces the thermostat where it has a value (``NaN`` or past its end: the
thermostat again); timers and ``mode: off`` still hold.  ``clear_plan()`` drops
it.  A plan is part of the state (snapshots keep it), is indexed by run step
(so it survives any cut of the windows) and, like every change, takes effect
at the next window.  ``state["hot_s"]`` is the epoch second of the start of the
last step that ended with the tank at or above ``LEGIONELLA_C`` (60 °C).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from hometwin.chunks import ChunkCache
from hometwin.element import Element, ElementConfig, Role, Signals, Window
from hometwin.flex import ClearPlan, TankFlex, TankPlan
from hometwin.noise import counter_rng
from hometwin.schedule import DAY_S, DailyWindow, LocalClock, any_mask
from hometwin.units import J_PER_KWH

C_WATER = 4186.0  # [J kg-1 K-1]
RHO_WATER = 1.0  # [kg l-1]
TEMP_COLD_EU = 10.0  # cold water of the EU 812/2013 tapping cycles [°C]
LEGIONELLA_C = 60.0  # the tank reaches this at least once a day to keep legionella down [°C]

# EU 812/2013 Annex III, Table 1 (also EN 16147): per tap (start "HH:MM", Q_tap [kWh],
# f [l/min], T_m [°C]).  Qref: S 2.100 kWh, M 5.845 kWh, L 11.655 kWh.
_S = [("07:00", 0.105, 3, 25), ("07:30", 0.105, 3, 25), ("08:30", 0.105, 3, 25), ("09:30", 0.105, 3, 25),
      ("11:30", 0.105, 3, 25), ("11:45", 0.105, 3, 25), ("12:45", 0.315, 4, 55), ("18:00", 0.105, 3, 25),
      ("18:15", 0.105, 3, 40), ("20:30", 0.420, 4, 55), ("21:30", 0.525, 5, 45)]
_M = [("07:00", 0.105, 3, 25), ("07:05", 1.400, 6, 40), ("07:30", 0.105, 3, 25), ("08:01", 0.105, 3, 25),
      ("08:15", 0.105, 3, 25), ("08:30", 0.105, 3, 25), ("08:45", 0.105, 3, 25), ("09:00", 0.105, 3, 25),
      ("09:30", 0.105, 3, 25), ("10:30", 0.105, 3, 40), ("11:30", 0.105, 3, 25), ("11:45", 0.105, 3, 25),
      ("12:45", 0.315, 4, 55), ("14:30", 0.105, 3, 25), ("15:30", 0.105, 3, 25), ("16:30", 0.105, 3, 25),
      ("18:00", 0.105, 3, 25), ("18:15", 0.105, 3, 40), ("18:30", 0.105, 3, 40), ("19:00", 0.105, 3, 25),
      ("20:30", 0.735, 4, 55), ("21:15", 0.105, 3, 25), ("21:30", 1.400, 6, 40)]
_L = [("07:00", 0.105, 3, 25), ("07:05", 1.400, 6, 40), ("07:30", 0.105, 3, 25), ("07:45", 0.105, 3, 25),
      ("08:05", 3.605, 10, 40), ("08:25", 0.105, 3, 25), ("08:30", 0.105, 3, 25), ("08:45", 0.105, 3, 25),
      ("09:00", 0.105, 3, 25), ("09:30", 0.105, 3, 25), ("10:30", 0.105, 3, 40), ("11:30", 0.105, 3, 25),
      ("11:45", 0.105, 3, 25), ("12:45", 0.315, 4, 55), ("14:30", 0.105, 3, 25), ("15:30", 0.105, 3, 25),
      ("16:30", 0.105, 3, 25), ("18:00", 0.105, 3, 25), ("18:15", 0.105, 3, 40), ("18:30", 0.105, 3, 40),
      ("19:00", 0.105, 3, 25), ("20:30", 0.735, 4, 55), ("21:00", 3.605, 10, 40), ("21:30", 0.105, 3, 25)]


def _table(rows: list[tuple[str, float, float, float]]) -> np.ndarray:
    """Rows → array of (start_s, duration_s, mixed mass kg, T_m) per tap."""
    out = []
    for hhmm, q_kwh, flow_l_min, t_m in rows:
        h, m = hhmm.split(":")
        mass = q_kwh * J_PER_KWH / (C_WATER * (t_m - TEMP_COLD_EU))  # mixed water at T_m [kg]
        duration = mass / (flow_l_min * RHO_WATER / 60.0)
        out.append((int(h) * 3600 + int(m) * 60, duration, mass, float(t_m)))
    return np.array(out)


#: EU 812/2013 tapping cycles as (start_s, duration_s, mixed_kg, T_m) rows, and their Qref [kWh].
TAPPING_CYCLES: dict[str, np.ndarray] = {"S": _table(_S), "M": _table(_M), "L": _table(_L)}
TAPPING_RAW: dict[str, list[tuple[str, float, float, float]]] = {"S": _S, "M": _M, "L": _L}
QREF_KWH = {"S": 2.100, "M": 5.845, "L": 11.655}


def tapping_draws(wall_s: np.ndarray, dt_s: float, taps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mixed-water mass [kg] and use temperature [°C] per step from daily taps.

    Each tap (start_s of the local day, duration_s, mass_kg, T_m) spreads its
    mass evenly over its duration; a step gets the share it overlaps (taps of
    the previous day that run past midnight included).
    """
    n = len(wall_s)
    mass = np.zeros(n)
    t_use = np.zeros(n)
    if len(taps) == 0:
        return mass, t_use
    sod = np.mod(wall_s, DAY_S).astype(float)
    for start, dur, m, t_m in taps:
        share = np.zeros(n)
        for shift in (-DAY_S, 0.0):
            share += np.clip(np.minimum(sod + dt_s, start + shift + dur) - np.maximum(sod, start + shift), 0.0, None)
        got = share > 0
        if got.any():
            mass += m * share / dur
            t_use = np.where(got, np.maximum(t_use, t_m), t_use)
    return mass, t_use


class StochasticDraws(ElementConfig):
    """Seeded daily hot-water events (counts Poisson, start times around morning and evening peaks)."""

    showers_per_day: Annotated[float, Field(ge=0, le=50, description="[1/day] mean showers")] = 2.0
    shower_l: Annotated[float, Field(gt=0, le=500, description="[l] mixed water per shower at 40 °C")] = 60.0
    baths_per_day: Annotated[float, Field(ge=0, le=10, description="[1/day] mean baths")] = 0.1
    bath_l: Annotated[float, Field(gt=0, le=1000, description="[l] mixed water per bath at 40 °C")] = 150.0
    taps_per_day: Annotated[float, Field(ge=0, le=200, description="[1/day] mean small draws (sink, kitchen)")] = 15.0
    tap_l: Annotated[float, Field(gt=0, le=100, description="[l] mixed water per small draw at 40 °C")] = 3.0


class GeyserConfig(ElementConfig):
    """Electric storage water heater: tank, element, thermostat, losses and draw profile."""

    tank_volume_l: Annotated[float, Field(gt=0, le=5000, description="[l] tank volume")] = 150.0
    element_kw: Annotated[float, Field(gt=0, le=50, description="[kW] element power")] = 3.0
    setpoint_c: Annotated[float, Field(ge=20, le=95, description="[°C] thermostat setpoint (element off here)")] = 60.0
    hysteresis_k: Annotated[float, Field(gt=0, le=30, description="[K] element on below setpoint − hysteresis")] = 5.0
    ua_w_k: Annotated[float, Field(ge=0, le=100, description="[W K-1] standing loss coefficient to the room")] = 1.5
    temp_ambient_c: Annotated[float, Field(ge=-30, le=50, description="[°C] air around the tank")] = 20.0
    temp_cold_c: Annotated[float, Field(ge=0, le=40, description="[°C] cold mains water")] = 10.0
    temp_initial_c: Annotated[float | None, Field(ge=0, le=95, description="[°C] tank at the start (default setpoint)")] = None
    nodes: Annotated[int, Field(ge=1, le=20, description="[-] tank nodes (1 = fully mixed; more = stratified)")] = 1
    element_node: Annotated[int | None, Field(ge=0, le=19, description="node of the element and thermostat, 0 = top (default: bottom)")] = None
    profile: Literal["S", "M", "L", "stochastic", "none"] = Field("M", description="draw profile: EU 812/2013 S/M/L, stochastic or none")
    draw_scale: Annotated[float, Field(ge=0, le=20, description="[-] multiplies every draw")] = 1.0
    stochastic: StochasticDraws = Field(default_factory=StochasticDraws, description="parameters of the stochastic profile")
    timers: list[DailyWindow] = Field(default_factory=list, description="local windows the element may run in ([] = always)")
    mode: Literal["auto", "off"] = Field("auto", description="auto: thermostat (and timers); off: element isolated")

    @model_validator(mode="after")
    def _check(self) -> "GeyserConfig":
        if self.element_node is not None and self.element_node >= self.nodes:
            raise ValueError(f"element_node: must be < nodes ({self.nodes}) (got {self.element_node})")
        if self.temp_cold_c >= self.setpoint_c:
            raise ValueError(f"temp_cold_c: must be below setpoint_c ({self.setpoint_c}) (got {self.temp_cold_c})")
        return self


class Geyser(Element):
    state_quantities = ("temp_water", "temp_top")
    """Electric water heater (geyser): tank, element, thermostat, standing losses, EU/stochastic draws."""

    kind = "geyser"
    role = Role.load
    Config: ClassVar[type[ElementConfig]] = GeyserConfig
    inputs = ()
    outputs = ()
    settle_on_shortfall = True
    settable = ("setpoint_c", "hysteresis_k", "timers", "mode", "element_kw", "profile", "draw_scale")
    description = "Electric storage water heater with thermostat, standing losses and hot-water draws."

    config: GeyserConfig

    def setup(self) -> None:
        c = self.config
        self._clock = LocalClock(self.home.timezone)
        self.node_mass = c.tank_volume_l * RHO_WATER / c.nodes
        self.el_node = c.nodes - 1 if c.element_node is None else c.element_node
        # exact per-node decay of the standing loss over one step
        tau = self.node_mass * C_WATER / (c.ua_w_k / c.nodes) if c.ua_w_k > 0 else np.inf
        self._keep = float(np.exp(-self.home.step_s / tau)) if np.isfinite(tau) else 1.0
        self._events: dict[int, np.ndarray] = {}
        self._draws = ChunkCache.of_time(self.draws_at, self.home)
        if "temps" not in self.state:
            t0 = c.setpoint_c if c.temp_initial_c is None else c.temp_initial_c
            self.state.update(temps=[float(t0)] * c.nodes, on=False, elec_j=0.0, draw_j=0.0, loss_j=0.0,
                              unmet_j=0.0, power_w=0.0)
            self.state["stored_j0"] = self.stored_heat_j()
        elif len(self.state["temps"]) != c.nodes:  # node count changed: keep the mean temperature
            mean = float(np.mean(self.state["temps"]))
            self.state["temps"] = [mean] * c.nodes
        self.state.setdefault("plan", None)
        self.state.setdefault("hot_s", None)
        self._pending: Any = None

    # -- plan hooks ----------------------------------------------------------------------------
    def set_plan(self, i0: int, setpoint_c: Any = None, on: Any = None) -> None:
        """Impose a planner's per-step ``setpoint_c`` [°C] and/or ``on`` (0/1) from run step ``i0`` on
        (``NaN`` = no opinion; see the module docstring)."""
        if setpoint_c is None and on is None:
            raise ValueError("set_plan: give setpoint_c and/or on")
        plan: dict[str, Any] = {"i0": int(i0)}
        for key, val in (("setpoint_c", setpoint_c), ("on", on)):
            if val is None:
                continue
            arr = np.asarray(val, dtype=float)
            if arr.ndim != 1:
                raise ValueError(f"set_plan: {key} must be a 1-D array")
            ok = arr[np.isfinite(arr)]
            if key == "setpoint_c" and ((ok < 0).any() or (ok > 100).any()):
                raise ValueError("set_plan: setpoint_c must be within 0-100 °C")
            if key == "on" and not np.isin(ok, (0.0, 1.0)).all():
                raise ValueError("set_plan: on must be 0 or 1 (NaN: no opinion)")
            plan[key] = [float(x) for x in arr]
        self.state["plan"] = plan

    def clear_plan(self) -> None:
        self.state["plan"] = None

    commands = (TankPlan.kind, ClearPlan.kind)

    def command(self, cmd: Any) -> None:
        """A planner's :class:`~hometwin.flex.TankPlan` or :class:`~hometwin.flex.ClearPlan`."""
        if isinstance(cmd, TankPlan):
            self.set_plan(cmd.i0, setpoint_c=cmd.setpoint_c, on=cmd.on)
        elif isinstance(cmd, ClearPlan):
            self.clear_plan()
        else:
            super().command(cmd)

    def _plan_slice(self, key: str, w: Window, n: int) -> list[float] | None:
        plan = self.state.get("plan")
        if not plan or key not in plan:
            return None
        vals = np.asarray(plan[key], dtype=float)
        idx = w.i0 + np.arange(n) - plan["i0"]
        ok = (idx >= 0) & (idx < len(vals))
        if not ok.any():
            return None
        return np.where(ok, vals[np.clip(idx, 0, len(vals) - 1)], np.nan).tolist()

    # -- draws ---------------------------------------------------------------------------------
    def _day_events(self, day: int) -> np.ndarray:
        """Stochastic taps of one local day: (start_s, duration_s, mixed_kg, T_m) rows."""
        if day in self._events:
            return self._events[day]
        s = self.config.stochastic
        rng = counter_rng(self.seed, day)
        rows = []
        for mean, litres, flow in ((s.showers_per_day, s.shower_l, 8.0), (s.baths_per_day, s.bath_l, 15.0),
                                   (s.taps_per_day, s.tap_l, 4.0)):
            count = rng.poisson(mean)
            morning = rng.random(count) < 0.45
            hour = np.where(morning, rng.normal(7.0, 1.0, count), rng.normal(19.5, 2.0, count)) % 24.0
            for h in hour:
                rows.append((float(np.floor(h * 60.0) * 60.0), litres / flow * 60.0, litres * RHO_WATER, 40.0))
        events = np.array(rows) if rows else np.zeros((0, 4))
        if len(self._events) > 64:
            self._events.clear()
        self._events[day] = events
        return events

    def draws(self, w: Window) -> tuple[np.ndarray, np.ndarray]:
        """Mixed-water mass [kg] and use temperature [°C] of each step of the window (a single-step
        window is cut from a day computed at once: the draws are a pure function of time)."""
        return self._draws.window(w.i0, w.n)

    def draws_at(self, epoch_s: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Mixed-water mass [kg] and use temperature [°C] of steps of ``dt_s`` starting at ``epoch_s``
        (a pure function of time: past and future alike)."""
        c = self.config
        epoch_s = np.asarray(epoch_s, dtype=np.int64)
        n = len(epoch_s)
        if c.profile == "none" or c.draw_scale == 0:
            return np.zeros(n), np.zeros(n)
        wall = self._clock.wall_seconds(epoch_s)
        if c.profile in TAPPING_CYCLES:
            mass, t_use = tapping_draws(wall, dt_s, TAPPING_CYCLES[c.profile])
            return mass * c.draw_scale, t_use
        mass, t_use = np.zeros(n), np.zeros(n)
        days = np.floor_divide(wall, DAY_S)
        for day in np.unique(days):
            sel = days == day
            for d in (int(day) - 1, int(day)):
                events = self._day_events(d)
                if len(events) == 0:
                    continue
                if d < day:  # only the part of yesterday's events that runs past midnight
                    events = events[events[:, 0] + events[:, 1] > DAY_S]
                m, t = tapping_draws(wall[sel], dt_s, events)
                mass[sel] += m
                t_use[sel] = np.maximum(t_use[sel], t)
        return mass * c.draw_scale, t_use

    def draw_heat_w(self, epoch_s: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Mean heat [W] the draws take from the tank in each step (mixed water from cold to its use
        temperature, as long as the tank is hotter than that) and the draws' use temperature [°C]
        (0 where nothing is drawn)."""
        mass, t_use = self.draws_at(epoch_s, dt_s)
        heat = mass * C_WATER * np.maximum(t_use - self.config.temp_cold_c, 0.0) / float(dt_s)
        return heat, t_use

    def allowed(self, epoch_s: np.ndarray) -> np.ndarray:
        """Where the element may run at all (``mode`` and ``timers``), per epoch second."""
        c = self.config
        epoch_s = np.asarray(epoch_s, dtype=np.int64)
        if c.mode == "off":
            return np.zeros(len(epoch_s), dtype=bool)
        if c.timers:
            return np.asarray(any_mask(self._clock.wall_seconds(epoch_s), c.timers), dtype=bool)
        return np.ones(len(epoch_s), dtype=bool)

    def thermostat_forecast(self, w: Window, temp_c: float, on: bool = False,
                            draws: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Electric energy [J] per step of ``w`` the element takes under its own thermostat and timers
        (no plan), from a fully mixed tank at ``temp_c`` (the element ``on`` or not) and the draws
        ``draws`` (mixed mass [kg], use temperature [°C] per step; default: this geyser's own).  A
        pure function of its arguments and the config: the state is not touched.  A planner that
        leaves a geyser to its thermostat forecasts its load with this (on a shadow)."""
        if draws is not None:
            mass, t_use = (np.asarray(a, dtype=float) for a in draws)
            if mass.shape != (w.n,) or t_use.shape != (w.n,):
                raise ValueError(f"thermostat_forecast: draws need {w.n} values each")
            draws = (mass, t_use)
        traj = self._run(w, draws=draws, temps=[float(temp_c)] * self.config.nodes, on=on, use_plan=False)
        return np.asarray(traj["elec"], dtype=float)

    # -- the step loop -------------------------------------------------------------------------
    def _run(self, w: Window, scale: np.ndarray | None = None, n: int | None = None,
             draws: tuple[np.ndarray, np.ndarray] | None = None, temps: list[float] | None = None,
             on: bool | None = None, use_plan: bool = True) -> dict[str, Any]:
        c = self.config
        n = w.n if n is None else n
        dt = float(w.dt_s)
        mass, t_use = self.draws(w) if draws is None else draws
        mass, t_use = mass[:n].tolist(), t_use[:n].tolist()
        if c.mode == "off":
            allowed = [False] * n
        elif c.timers:
            allowed = any_mask(self._clock.wall_seconds(w.epoch_s[:n]), c.timers).tolist()
        else:
            allowed = [True] * n
        sc = [1.0] * n if scale is None else np.asarray(scale, dtype=float)[:n].tolist()
        plan_sp = self._plan_slice("setpoint_c", w, n) if use_plan else None
        plan_on = self._plan_slice("on", w, n) if use_plan else None
        planned = plan_sp is not None or plan_on is not None
        if planned:
            plan_sp = plan_sp or [float("nan")] * n
            plan_on = plan_on or [float("nan")] * n
        temps = list(self.state["temps"]) if temps is None else [float(t) for t in temps]
        nn = len(temps)
        mnode = self.node_mass
        mc = mnode * C_WATER
        keep = self._keep
        amb = c.temp_ambient_c
        cold = c.temp_cold_c
        t_set = c.setpoint_c
        t_on = c.setpoint_c - c.hysteresis_k
        e_max = c.element_kw * 1000.0 * dt
        el = self.el_node
        on = bool(self.state["on"]) if on is None else bool(on)
        elec = np.zeros(n)
        draw_j = np.zeros(n)
        loss_j = np.zeros(n)
        unmet = np.zeros(n)
        on_a = np.zeros(n, dtype=bool)
        temps_end = np.empty((n, nn))
        for k in range(n):
            # 1. draw through a mixing valve
            m_mix = mass[k]
            if m_mix > 0.0:
                top = temps[0]
                t_m = t_use[k]
                want = m_mix * C_WATER * (t_m - cold)
                m_hot = m_mix * (t_m - cold) / (top - cold) if top > t_m else m_mix
                if m_hot > nn * mnode:
                    m_hot = nn * mnode
                if nn == 1:
                    got = m_hot * C_WATER * (top - cold)
                    temps[0] = (top * (mnode - m_hot) + cold * m_hot) / mnode
                else:
                    before = sum(temps)
                    _plug_flow(temps, m_hot, mnode, cold)
                    got = mc * (before - sum(temps))
                draw_j[k] = got
                if want > got * (1.0 + 1e-9):
                    unmet[k] = want - got
            # 2. standing losses (exact)
            lost = 0.0
            for i in range(nn):
                ti = temps[i]
                tl = amb + (ti - amb) * keep
                lost += mc * (ti - tl)
                temps[i] = tl
            loss_j[k] = lost
            # 3. thermostat (or the plan) and element
            t_el = temps[el]
            ts = t_set
            if planned and (plan_sp[k] == plan_sp[k] or plan_on[k] == plan_on[k]):
                if plan_sp[k] == plan_sp[k]:
                    ts = plan_sp[k]
                on = allowed[k] and (plan_on[k] != plan_on[k] or plan_on[k] > 0.5) and t_el < ts
            elif not allowed[k]:
                on = False
            elif on:
                if t_el >= t_set:
                    on = False
            elif t_el < t_on:
                on = True
            if on:
                e = e_max if e_max < mc * (ts - t_el) else mc * (ts - t_el)
                e = (e if e > 0.0 else 0.0) * sc[k]
                temps[el] = t_el + e / mc
                elec[k] = e
                if temps[el] >= ts - 1e-12:
                    on = False
                if nn > 1:
                    _buoyancy(temps)
            on_a[k] = on
            temps_end[k] = temps
        return {"elec": elec, "draw": draw_j, "loss": loss_j, "unmet": unmet, "on": on_a, "temps": temps_end}

    # -- window methods ------------------------------------------------------------------------
    def request(self, w: Window, signals: Signals) -> np.ndarray:
        traj = self._run(w)
        req = -traj["elec"]
        self._pending = (traj, req)
        return req

    def settle(self, w: Window, k: int, served: np.ndarray) -> None:
        if self._pending is None:
            return
        traj, req = self._pending
        self._pending = None
        got = np.asarray(served[: k + 1], dtype=float)
        want = req[: k + 1]
        if np.any(np.abs(got - want) > 1e-9 * np.maximum(np.abs(want), 1.0)):
            scale = np.divide(got, want, out=np.ones(k + 1), where=want < 0)
            traj = self._run(w, scale=np.clip(scale, 0.0, 1.0), n=k + 1)
        s = slice(0, k + 1)
        st = self.state
        st["temps"] = [float(t) for t in traj["temps"][k]]
        st["on"] = bool(traj["on"][k])
        st["elec_j"] += float(traj["elec"][s].sum())
        st["draw_j"] += float(traj["draw"][s].sum())
        st["loss_j"] += float(traj["loss"][s].sum())
        st["unmet_j"] += float(traj["unmet"][s].sum())
        st["power_w"] = float(traj["elec"][k] / w.dt_s)
        hot = np.flatnonzero(np.asarray(traj["temps"][s]).mean(axis=1) >= LEGIONELLA_C - 1e-6)
        if hot.size:
            st["hot_s"] = int(w.epoch_s[int(hot[-1])])

    # -- state -----------------------------------------------------------------------------------
    def stored_heat_j(self) -> float:
        """Heat in the tank relative to 0 °C [J]."""
        return float(sum(self.state["temps"]) * self.node_mass * C_WATER)

    def energy_balance(self) -> dict[str, float]:
        st = self.state
        d = self.stored_heat_j() - st["stored_j0"]
        return {"elec_j": st["elec_j"], "draw_j": st["draw_j"], "loss_j": st["loss_j"], "unmet_j": st["unmet_j"],
                "stored_change_j": d, "residual_j": st["elec_j"] - st["draw_j"] - st["loss_j"] - d}

    @property
    def temp_water(self) -> float:
        """Mean tank temperature [°C]."""
        return float(np.mean(self.state["temps"]))

    def telemetry(self) -> dict[str, float]:
        st = self.state
        return {"temp_water": self.temp_water, "temp_top": float(st["temps"][0]), "power_w": st["power_w"],
                "energy_j": st["elec_j"], "unmet_j": st["unmet_j"]}

    def flexibility(self) -> TankFlex:
        """The tank as a planner sees it (see :mod:`hometwin.flex` and :meth:`params`)."""
        p = self.params()
        return TankFlex(**{k: v for k, v in p.items() if k != "element_on"}, element_on=bool(p["element_on"]))

    def params(self) -> dict[str, float]:
        """Flexibility description for a planner: tank heat capacity, element power, losses, limits,
        the state (mean tank temperature; whether the thermostat has the element on, ``element_on``)
        and when the tank was last at the legionella temperature (``last_hot_epoch_s``, NaN if never)."""
        c = self.config
        hot = self.state.get("hot_s")
        return {"capacity_j_k": c.tank_volume_l * RHO_WATER * C_WATER, "element_w": c.element_kw * 1000.0,
                "ua_w_k": c.ua_w_k, "temp_max_c": c.setpoint_c, "temp_min_c": c.setpoint_c - c.hysteresis_k,
                "temp_water": self.temp_water, "temp_ambient_c": c.temp_ambient_c, "temp_cold_c": c.temp_cold_c,
                "last_hot_epoch_s": float("nan") if hot is None else float(hot),
                "element_on": 1.0 if self.state.get("on") else 0.0}


def _plug_flow(temps: list[float], m: float, mnode: float, cold: float) -> None:
    """Move ``m`` kg up through the nodes (top = 0), cold water entering at the bottom."""
    nn = len(temps)
    while m > 0.0:
        part = m if m < mnode else mnode
        f = part / mnode
        for i in range(nn - 1):
            temps[i] = temps[i] * (1.0 - f) + temps[i + 1] * f
        temps[nn - 1] = temps[nn - 1] * (1.0 - f) + cold * f
        m -= part


def _buoyancy(temps: list[float]) -> None:
    """Mix adjacent nodes until no node is warmer than the one above it (energy-conserving)."""
    nn = len(temps)
    changed = True
    while changed:
        changed = False
        for i in range(nn - 1):
            if temps[i + 1] > temps[i] + 1e-12:
                # mix the warm lower node with every node above it that is colder than the mix
                j = i
                total = temps[i] + temps[i + 1]
                count = 2
                mean = total / count
                while j > 0 and temps[j - 1] < mean:
                    j -= 1
                    total += temps[j]
                    count += 1
                    mean = total / count
                for q in range(j, i + 2):
                    temps[q] = mean
                changed = True
