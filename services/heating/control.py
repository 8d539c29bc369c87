"""A heat source on a thermostat inside its own building: the shared element of heater and heat pump.

Per step (inputs → controller → physics → results):

1. the setpoint of the step: an optimizer's plan if one covers the step, else
   ``setpoint_c`` if set, else comfort inside the ``presence`` windows (local
   time) and set-back outside them; mode ``on`` ignores the windows (always
   comfort), mode ``off`` heats nothing;
2. a hysteresis thermostat on the indoor air (on below ``setpoint − h/2``,
   off above ``setpoint + h/2``) with minimum on/off times; a modulating source
   runs at ``(setpoint + h/2 − T)/h`` of its capacity, never below its minimum
   modulation; a backup heater joins when the air is ``backup_offset_k`` below
   the switch-on point or the compressor cannot run;
3. the building's exact step (:mod:`.building`) with that heat;
4. electric energy = heat / COP (+ backup at COP 1), requested as negative joules.

A shortfall (served less than requested) scales the heat of that step by the
served share, so the settled state is what the home could actually deliver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from hometwin.flex import ClearPlan, HeatPlan, HeatSource, ThermalFlex
from hometwin.element import Element, ElementConfig, Role, Signals, Window
from hometwin.schedule import DailyWindow, LocalClock, any_mask

from .building import Building, BuildingConfig

Mode = Literal["auto", "on", "off"]


class ThermostatConfig(ElementConfig):
    """Thermostat, schedule and building shared by the heating elements."""

    building: BuildingConfig = Field(default_factory=lambda: BuildingConfig(preset="smarthjem"),
                                     description="the building this source heats: {preset: smarthjem|modern} and/or explicit surfaces")
    mode: Mode = Field("auto", description="auto: comfort/set-back by schedule; on: always comfort; off: no heating")
    comfort_c: Annotated[float, Field(ge=5, le=35, description="[°C] setpoint while someone is home")] = 21.0
    setback_c: Annotated[float, Field(ge=5, le=35, description="[°C] setpoint while away or asleep")] = 17.0
    setpoint_c: Annotated[float | None, Field(ge=5, le=35, description="[°C] manual setpoint, overrides the schedule")] = None
    presence: list[DailyWindow] = Field(default_factory=lambda: [DailyWindow(start="06:00", end="23:00")],
                                        description="local-time windows with comfort temperature ([] = always comfort)")
    hysteresis_k: Annotated[float, Field(gt=0, le=10, description="[K] thermostat dead band (total width)")] = 1.0
    min_on_min: Annotated[float, Field(ge=0, le=240, description="[min] shortest run once switched on")] = 0.0
    min_off_min: Annotated[float, Field(ge=0, le=240, description="[min] shortest pause once switched off")] = 0.0

    @model_validator(mode="after")
    def _setback(self) -> "ThermostatConfig":
        if self.setback_c > self.comfort_c:
            raise ValueError(f"setback_c: must be <= comfort_c ({self.comfort_c}) (got {self.setback_c})")
        return self


#: what the heat source can do in each step of a window (the contract's :class:`hometwin.flex.HeatSource`)
Source = HeatSource


@dataclass
class Trajectory:
    """Per-step results of the controller loop (arrays of n)."""

    x: np.ndarray  # states at the end of each step (n, n_states)
    x_start: np.ndarray  # states at the start of each step
    heat_w: np.ndarray  # heat into the building [W]
    elec_w: np.ndarray  # electric power [W]
    main_heat_w: np.ndarray  # heat from the main source [W]
    on: np.ndarray  # main source on (bool)
    since_s: np.ndarray  # seconds since the last on/off switch, at the end of each step
    setpoint: np.ndarray
    q_air: np.ndarray  # free gains to air [W]
    q_mass: np.ndarray  # free gains to mass [W]
    temp_out: np.ndarray


class HeatedBuilding(Element):
    state_quantities = ("temp_indoor", "temp_mass", "setpoint_c")
    """Base of a thermostat-controlled heat source with its own building model.

    Optimizer hooks (issue 5)
    -------------------------
    * :meth:`params` returns the linear model: exact discrete ``A``, ``B``
      (heat input), ``E`` (disturbances ``[temp_air, q_gain_air_w,
      q_gain_mass_w]``) for the home's step, the R/C values, the source's
      ``max_heat_w`` / ``max_power_w`` and ``cop(temp_air)`` — a function giving
      the COP per step — plus the current state.
    * :meth:`set_plan` imposes a plan from run step ``i0`` on: ``setpoint_c``
      (per-step setpoints the thermostat follows) and/or ``heat_w`` (per-step
      heat into the building [W]; the thermostat is bypassed, the value is
      clipped to what the source can do).  Steps past the plan's end fall back
      to the schedule.  ``clear_plan()`` drops it.  A plan is part of the state
      (snapshots keep it) and, like every change, takes effect at the next
      window.
    """

    role = Role.load
    Config: ClassVar[type[ElementConfig]] = ThermostatConfig
    inputs = ("temp_air", "ghi", "dni", "dhi", "apparent_zenith", "azimuth")
    settle_on_shortfall = True

    def setup(self) -> None:
        c = self.config
        self.building = Building.from_config(c.building)
        self._clock = LocalClock(self.home.timezone)
        dt = float(self.home.step_s)
        self._disc = self.building.discrete(dt)
        self._hcol = self.building.heater_column(dt)
        if "temp_indoor" not in self.state:
            t0 = c.building.temp_initial_c
            self.state.update(temp_indoor=t0, temp_mass=t0 if self.building.n_states == 2 else None,
                              on=False, since_s=1e9, elec_j=0.0, heat_j=0.0, main_heat_j=0.0,
                              gains_j=0.0, loss_j=0.0, power_w=0.0, heat_w=0.0, setpoint_c=c.comfort_c,
                              plan=None)
            self.state["stored_j0"] = self.stored_heat_j()
        self._pending: tuple[Window, Trajectory, np.ndarray, dict] | None = None
        #: indoor temperature at the end of each step of the last settled window [°C] (not state: a
        #: record for per-step KPIs such as the comfort violation, however the run is cut into windows)
        self.settled_temp_indoor = np.zeros(0)

    # -- to be provided by subclasses ----------------------------------------------------------
    def source(self, temp_out: np.ndarray, setpoint: np.ndarray) -> Source:
        raise NotImplementedError

    def curve(self) -> Any:
        """The source's capacity and COP model (a :mod:`hometwin.flex` curve)."""
        raise NotImplementedError

    # -- plan hooks ---------------------------------------------------------------------------
    def set_plan(self, i0: int, setpoint_c: Any = None, heat_w: Any = None) -> None:
        """Impose an optimizer's plan from run step ``i0`` on (see the class docstring)."""
        if setpoint_c is None and heat_w is None:
            raise ValueError("set_plan: give setpoint_c and/or heat_w")
        plan: dict[str, Any] = {"i0": int(i0)}
        for key, val in (("setpoint_c", setpoint_c), ("heat_w", heat_w)):
            if val is not None:
                arr = np.asarray(val, dtype=float)
                if arr.ndim != 1 or not np.all(np.isfinite(arr)):
                    raise ValueError(f"set_plan: {key} must be a 1-D array of finite numbers")
                if key == "heat_w" and (arr < 0).any():
                    raise ValueError("set_plan: heat_w must be >= 0")
                plan[key] = arr.tolist()
        self.state["plan"] = plan

    def clear_plan(self) -> None:
        self.state["plan"] = None

    commands = (HeatPlan.kind, ClearPlan.kind)

    def command(self, cmd: Any) -> None:
        """A planner's :class:`~hometwin.flex.HeatPlan` or :class:`~hometwin.flex.ClearPlan`."""
        if isinstance(cmd, HeatPlan):
            self.set_plan(cmd.i0, setpoint_c=cmd.setpoint_c, heat_w=cmd.heat_w)
        elif isinstance(cmd, ClearPlan):
            self.clear_plan()
        else:
            super().command(cmd)

    def flexibility(self) -> ThermalFlex:
        """The building's RC model, state and gains and the source's curve (see :mod:`hometwin.flex`)."""
        c = self.config
        a_c, b_c = self.building.continuous()
        ref = self.source(np.array([7.0]), np.array([c.comfort_c]))
        return ThermalFlex(
            a_c=a_c, b_c=b_c,
            x0=tuple([self.state["temp_indoor"]] + ([self.state["temp_mass"]] if self.building.n_states == 2 else [])),
            heating_to_mass=float(self.building.heating_to_mass),
            heating_to_mass_setting=float(c.building.heating_to_mass), comfort_c=float(c.comfort_c),
            max_heat_w=float(ref.heat_max_w[0] + ref.backup_w), gains=self.building.gains_model(), curve=self.curve())

    def _plan_slice(self, key: str, w: Window) -> np.ndarray | None:
        plan = self.state.get("plan")
        if not plan or key not in plan:
            return None
        vals = np.asarray(plan[key], dtype=float)
        idx = w.i0 + np.arange(w.n) - plan["i0"]
        ok = (idx >= 0) & (idx < len(vals))
        if not ok.any():
            return None
        return np.where(ok, vals[np.clip(idx, 0, len(vals) - 1)], np.nan)

    # -- schedule -----------------------------------------------------------------------------
    def setpoints(self, w: Window) -> np.ndarray:
        """Setpoint of each step [°C] (NaN where mode is off)."""
        c = self.config
        if c.mode == "off":
            sp = np.full(w.n, np.nan)
        elif c.setpoint_c is not None:
            sp = np.full(w.n, c.setpoint_c)
        elif c.mode == "on" or not c.presence:
            sp = np.full(w.n, c.comfort_c)
        else:
            home = any_mask(self._clock.wall_seconds(w.epoch_s), c.presence)
            sp = np.where(home, c.comfort_c, c.setback_c)
        planned = self._plan_slice("setpoint_c", w)
        if planned is not None:
            sp = np.where(np.isnan(planned), sp, planned)
        return sp

    # -- the controller loop -------------------------------------------------------------------
    def _run(self, w: Window, signals: Signals, scale: np.ndarray | None = None, n: int | None = None) -> Trajectory:
        n = w.n if n is None else n
        c = self.config
        dt = float(w.dt_s)
        b = self.building
        temp_out = np.asarray(signals["temp_air"], dtype=float)[:n]
        sub = {k: np.asarray(v)[:n] for k, v in signals.items() if k in self.inputs}
        q_air, q_mass = b.gains(sub, n)
        free = b.free_response(dt, temp_out, q_air, q_mass)
        sp = self.setpoints(w)[:n]
        src = self.source(temp_out, np.where(np.isnan(sp), c.comfort_c, sp))
        plan_heat = self._plan_slice("heat_w", w)
        plan_heat = None if plan_heat is None else plan_heat[:n]

        ad = self._disc.ad
        a00 = float(ad[0, 0])
        a01 = float(ad[0, 1]) if b.n_states == 2 else 0.0
        a10 = float(ad[1, 0]) if b.n_states == 2 else 0.0
        a11 = float(ad[1, 1]) if b.n_states == 2 else 0.0
        h0 = float(self._hcol[0])
        h1 = float(self._hcol[1]) if b.n_states == 2 else 0.0
        f0 = free[0].tolist()
        f1 = free[1].tolist() if b.n_states == 2 else [0.0] * n
        sp_l = sp.tolist()
        hmax_l = src.heat_max_w.tolist()
        cop_l = src.cop.tolist()
        sc_l = [1.0] * n if scale is None else np.asarray(scale, dtype=float)[:n].tolist()
        ph_l = None if plan_heat is None else plan_heat.tolist()
        half = c.hysteresis_k / 2.0
        min_on, min_off = c.min_on_min * 60.0, c.min_off_min * 60.0
        mod_min, backup_w = src.min_modulation, src.backup_w
        backup_off = getattr(c, "backup_offset_k", 1.0)

        xa = float(self.state["temp_indoor"])
        xm = float(self.state["temp_mass"]) if b.n_states == 2 else 0.0
        on = bool(self.state["on"])
        since = float(self.state["since_s"])
        out_x = np.empty((n, 2))
        out_x0 = np.empty((n, 2))
        heat = np.zeros(n)
        elec = np.zeros(n)
        main = np.zeros(n)
        on_a = np.zeros(n, dtype=bool)
        since_a = np.zeros(n)
        for k in range(n):
            out_x0[k, 0] = xa
            out_x0[k, 1] = xm
            s_k = sp_l[k]
            hmax = hmax_l[k]
            q_main = 0.0
            q_back = 0.0
            was_on = on
            if ph_l is not None and ph_l[k] == ph_l[k]:  # a planned heat (not NaN)
                want = ph_l[k]
                q_main = want if want < hmax else hmax
                rest = want - q_main
                q_back = rest if rest < backup_w else backup_w
                on = q_main > 0.0
            elif s_k != s_k:  # mode off
                on = False
            else:
                if on:
                    if xa > s_k + half and since >= min_on:
                        on = False
                elif xa < s_k - half and since >= min_off:
                    on = True
                if on:
                    frac = (s_k + half - xa) / c.hysteresis_k
                    frac = 1.0 if frac > 1.0 else (mod_min if frac < mod_min else frac)
                    q_main = frac * hmax
                    if backup_w > 0.0 and (hmax <= 0.0 or xa < s_k - half - backup_off):
                        q_back = backup_w
            since = since + dt if on == was_on else dt
            s = sc_l[k]
            q_main *= s
            q_back *= s
            q = q_main + q_back
            e = (q_main / cop_l[k] if q_main > 0.0 else 0.0) + q_back
            xa, xm = a00 * xa + a01 * xm + f0[k] + h0 * q, a10 * xa + a11 * xm + f1[k] + h1 * q
            out_x[k, 0] = xa
            out_x[k, 1] = xm
            heat[k] = q
            elec[k] = e
            main[k] = q_main
            on_a[k] = on
            since_a[k] = since
        ns = b.n_states
        return Trajectory(x=out_x[:, :ns], x_start=out_x0[:, :ns], heat_w=heat, elec_w=elec, main_heat_w=main,
                          on=on_a, since_s=since_a, setpoint=sp, q_air=q_air, q_mass=q_mass, temp_out=temp_out)

    # -- window methods -----------------------------------------------------------------------
    def request(self, w: Window, signals: Signals) -> np.ndarray:
        traj = self._run(w, signals)
        req = -traj.elec_w * w.dt_s
        self._pending = (w, traj, req, dict(signals))
        return req

    def settle(self, w: Window, k: int, served: np.ndarray) -> None:
        if self._pending is None:
            return
        _, traj, req, signals = self._pending
        self._pending = None
        got = np.asarray(served[: k + 1], dtype=float)
        want = req[: k + 1]
        if np.any(np.abs(got - want) > 1e-9 * np.maximum(np.abs(want), 1.0)):
            scale = np.divide(got, want, out=np.ones(k + 1), where=want < 0)
            traj = self._run(w, signals, scale=np.clip(scale, 0.0, 1.0), n=k + 1)
        self._commit(w, traj, k)

    def _commit(self, w: Window, t: Trajectory, k: int) -> None:
        dt = float(w.dt_s)
        b = self.building
        s = slice(0, k + 1)
        st = self.state
        st["temp_indoor"] = float(t.x[k, 0])
        self.settled_temp_indoor = np.array(t.x[s, 0], dtype=float)
        if b.n_states == 2:
            st["temp_mass"] = float(t.x[k, 1])
        st["on"] = bool(t.on[k])
        st["since_s"] = float(t.since_s[k])
        qa_tot = t.q_air[s] + t.heat_w[s] * (1.0 - b.heating_to_mass)
        qm_tot = t.q_mass[s] + t.heat_w[s] * b.heating_to_mass
        st["loss_j"] += float(b.losses_j(dt, t.x_start[s], t.temp_out[s], qa_tot, qm_tot).sum())
        st["gains_j"] += float((t.q_air[s] + t.q_mass[s]).sum() * dt)
        st["heat_j"] += float(t.heat_w[s].sum() * dt)
        st["main_heat_j"] += float(t.main_heat_w[s].sum() * dt)
        st["elec_j"] += float(t.elec_w[s].sum() * dt)
        st["power_w"] = float(t.elec_w[k])
        st["heat_w"] = float(t.heat_w[k])
        sp = float(t.setpoint[k])
        st["setpoint_c"] = sp if sp == sp else None

    # -- state, telemetry, optimizer --------------------------------------------------------------
    def stored_heat_j(self) -> float:
        """Heat stored in the building relative to 0 °C [J] (Σ C·T)."""
        caps = self.building.capacities
        temps = [self.state["temp_indoor"]] + ([self.state["temp_mass"]] if self.building.n_states == 2 else [])
        return float(np.dot(caps, temps))

    def energy_balance(self) -> dict[str, float]:
        """Cumulative heat bookkeeping [J]: ``heat_in + gains − losses − Δstored`` is the residual."""
        st = self.state
        d_stored = self.stored_heat_j() - st["stored_j0"]
        return {"elec_j": st["elec_j"], "heat_in_j": st["heat_j"], "ambient_heat_j": st["heat_j"] - st["elec_j"],
                "gains_j": st["gains_j"], "loss_j": st["loss_j"], "stored_change_j": d_stored,
                "residual_j": st["heat_j"] + st["gains_j"] - st["loss_j"] - d_stored}

    def telemetry(self) -> dict[str, float]:
        st = self.state
        out = {"temp_indoor": st["temp_indoor"], "power_w": st["power_w"], "heat_w": st["heat_w"],
               "energy_j": st["elec_j"]}
        if st.get("temp_mass") is not None:
            out["temp_mass"] = st["temp_mass"]
        if st.get("setpoint_c") is not None:
            out["setpoint_c"] = st["setpoint_c"]
        return out

    def max_heat_w(self, temp_out: np.ndarray) -> np.ndarray:
        src = self.source(np.asarray(temp_out, dtype=float), np.full(np.shape(temp_out), self.config.comfort_c))
        return src.heat_max_w + src.backup_w

    def params(self) -> dict[str, Any]:
        """The linear model and limits an MPC needs (SI units; see the class docstring).

        Keys: ``A``, ``B``, ``E`` (exact discrete matrices for the home's step,
        states ``[temp_indoor(, temp_mass)]``, input heat [W], disturbances
        ``[temp_air, q_gain_air_w, q_gain_mass_w]``), ``A_c``/``B_c``, the R/C
        values, ``ua_w_k``, ``max_heat_w``, ``max_power_w``, ``cop`` (callable:
        temp_air array → COP array at comfort supply conditions), ``comfort_c``,
        ``setback_c``, ``hysteresis_k`` and the current ``x0``.
        """
        c = self.config
        p = self.building.params(float(self.home.step_s))
        ref = self.source(np.array([7.0]), np.array([c.comfort_c]))
        p.update({
            "x0": [self.state["temp_indoor"]] + ([self.state["temp_mass"]] if self.building.n_states == 2 else []),
            "max_heat_w": float(ref.heat_max_w[0] + ref.backup_w),
            "max_power_w": float(ref.heat_max_w[0] / ref.cop[0] + ref.backup_w),
            "cop": lambda temp_air: self.source(np.atleast_1d(np.asarray(temp_air, dtype=float)),
                                                np.full(np.size(temp_air), c.comfort_c)).cop,
            "comfort_c": c.comfort_c, "setback_c": c.setback_c, "hysteresis_k": c.hysteresis_k,
            "presence": [win.model_dump() for win in c.presence],
        })
        return p
