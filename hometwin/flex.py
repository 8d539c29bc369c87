"""The optimizer's contract: what an element offers a strategy (its *flexibility*) and the plans it takes.

A strategy in ``services/inverter/strategies`` never reads an element's attributes.  It reads one
frozen value per element — :meth:`hometwin.element.Element.flexibility` — and sends typed commands
through :meth:`hometwin.element.Element.command`:

=====================  ==========================================  =================================
element                flexibility                                 commands
=====================  ==========================================  =================================
battery                :class:`BatteryFlex` (capacity, limits,     —  (the inverter dispatches it)
                       efficiencies, stored energy)
heat pump / heater     :class:`ThermalFlex` (the building's RC     :class:`HeatPlan`, :class:`ClearPlan`
                       model ``A_c``/``B_c``, state, gains,
                       heat source: COP and capacity curve)
geyser (tank)          :class:`TankFlex` (tank model, limits,      :class:`TankPlan`, :class:`ClearPlan`
                       state)
smart appliance        :class:`DeferrableFlex` (cycle profile,     :class:`DeferTo`; the query
                       delay window)                               :class:`UpcomingStarts` → :class:`Start`s
=====================  ==========================================  =================================

The heat source's curves are not tabulated: :class:`HeatPumpCurve` ships the heat pump's model
(hplib coefficients, manufacturer table or Carnot fraction, defrost and limits) and evaluates the
same function the element uses (:meth:`HeatPumpCurve.cop_and_capacity`), so a plan built from the
contract is bit-identical to one built from the model.  Likewise :class:`Gains` computes the building's
free heat gains (internal + solar through the glazing) from the forecast signals.

In-process the strategy calls the element models; over WAMP the balancer's
:class:`hometwin.runtime.proxies.RemoteElement` fetches the flexibility once per prepare stage (the
``flexibility`` RPC) and sends commands through one ``command`` RPC; both ends convert with
:func:`to_wire` / :func:`from_wire`.  This module is the model layer: it imports no runtime.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np

from hometwin.solar import pv_to_ac, window_solar_gains  # noqa: F401  (the contract's physics, with pvlib)

T0_K = 273.15


# -- physics shared by the elements and the strategies -----------------------------------------------

def carnot_cop(temp_supply_c: Any, temp_source_c: Any) -> np.ndarray:
    """Carnot heating COP ``T_supply/(T_supply − T_source)`` [-]; ``inf`` when the source is not colder."""
    ts = np.asarray(temp_supply_c, dtype=float) + T0_K
    lift = ts - (np.asarray(temp_source_c, dtype=float) + T0_K)
    return np.divide(ts, lift, out=np.full(np.broadcast(ts, lift).shape, np.inf), where=lift > 0)


def heating_curve(temp_air_c: Any, supply_design_c: float, design_outdoor_c: float, supply_min_c: float,
                  heating_limit_c: float = 15.0) -> np.ndarray:
    """Supply temperature [°C] of a weather-compensated heating curve (linear, clamped)."""
    return np.interp(np.asarray(temp_air_c, dtype=float), [design_outdoor_c, heating_limit_c],
                     [supply_design_c, supply_min_c])


def hplib_performance(p: Mapping[str, float], temp_air_c: np.ndarray, temp_supply_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heat output [W] and COP [-] of an hplib air/water model (hplib 1.9's ``simulate``, heating)."""
    t_in = np.asarray(temp_air_c, dtype=float)
    t_out = np.asarray(temp_supply_c, dtype=float)
    cop = p["p1_cop"] * t_in + p["p2_cop"] * t_out + p["p3_cop"] + p["p4_cop"] * t_in
    p_el = p["p_el_ref"] * (p["p1_el"] * t_in + p["p2_el"] * t_out + p["p3_el"] + p["p4_el"] * t_in)
    if int(p["group"]) == 1:  # regulated: hplib keeps at least 25 % of the electric power at -7 °C
        p_el_25 = 0.25 * p["p_el_ref"] * (p["p1_el"] * -7.0 + p["p2_el"] * t_out + p["p3_el"] + p["p4_el"] * -7.0)
        p_el = np.maximum(p_el, p_el_25)
    return np.clip(p_el * cop, 0.0, None), cop


SUN_SIGNALS = ("ghi", "dni", "dhi", "apparent_zenith", "azimuth")


@dataclass(frozen=True)
class Glass:
    """One window's solar aperture."""

    area_m2: float
    g_value: float
    tilt_deg: float
    azimuth_deg: float
    frame_fraction: float
    shading_factor: float


@dataclass(frozen=True)
class Gains:
    """A building's free heat gains: internal, and solar through its glazing, split air/mass."""

    internal_w: float
    solar_to_mass: float
    windows: tuple[Glass, ...] = ()

    def __call__(self, signals: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Free heat gains to the air and the mass node per step [W] (zero sun without sun signals)."""
        solar = np.zeros(n)
        if self.windows and all(s in signals for s in SUN_SIGNALS):
            solar = window_solar_gains(*(np.asarray(signals[s], dtype=float) for s in SUN_SIGNALS), self.windows)
        q_air = self.internal_w + solar * (1.0 - self.solar_to_mass)
        q_mass = solar * self.solar_to_mass
        return np.broadcast_to(q_air, (n,)).astype(float), np.asarray(q_mass, dtype=float)


@dataclass
class HeatSource:
    """What a heat source can do in each step (arrays of n)."""

    heat_max_w: np.ndarray  # compressor/element heat at full load [W] (0 = cannot run)
    cop: np.ndarray  # heat / electricity of the main source [-]
    min_modulation: float  # [0-1] lowest part load while on (1 = on/off only)
    backup_w: float  # backup resistive heater [W]


@dataclass(frozen=True)
class ResistiveCurve:
    """Resistive heaters: full power at COP 1 whatever the weather."""

    kind: ClassVar[str] = "resistive"
    power_w: float

    def source(self, temp_out: Any, setpoint: Any) -> HeatSource:
        n = np.shape(temp_out)[0]
        return HeatSource(heat_max_w=np.full(n, self.power_w), cop=np.ones(n), min_modulation=1.0, backup_w=0.0)


@dataclass(frozen=True)
class HeatPumpCurve:
    """A heat pump's capacity and COP over outdoor air and set-point: one of three models —
    ``hplib`` (fit coefficients of the hplib database), ``table`` (manufacturer rows over outdoor
    temperature) or Carnot (``carnot_fraction``, ``cop_min``, ``capacity_slope_per_k``) — then
    defrost, the Carnot cap and the compressor's limits, exactly as the element computes them."""

    kind: ClassVar[str] = "heat_pump"
    type: str  # air_water (heating curve) | air_air (condensing above the set-point)
    condenser_offset_k: float
    supply_temp_design_c: float
    design_outdoor_c: float
    supply_temp_min_c: float
    hplib: tuple[tuple[str, float], ...] | None  # hplib fit parameters (None: no hplib model)
    table: tuple[tuple[float, float, float], ...] | None  # (temp_air_c, heat_kw, cop) rows
    heat_power_kw: float | None
    capacity_slope_per_k: float
    carnot_fraction: float
    cop_min: float
    defrost_penalty: float | None
    defrost_below_c: float
    min_outdoor_c: float
    min_modulation: float
    backup_w: float

    def supply_temp(self, temp_out: np.ndarray, setpoint: np.ndarray) -> np.ndarray:
        if self.type == "air_air":
            return np.asarray(setpoint, dtype=float) + self.condenser_offset_k
        return heating_curve(temp_out, self.supply_temp_design_c, self.design_outdoor_c, self.supply_temp_min_c)

    def performance(self, temp_out: np.ndarray, temp_supply: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Full-load heat [W] and COP [-] before the Carnot cap, defrost and limits."""
        if self.hplib is not None:
            p = dict(self.hplib)
            heat, cop = hplib_performance(p, temp_out, temp_supply)
            if self.heat_power_kw is not None:
                ref, _ = hplib_performance(p, np.array([7.0]), temp_supply[:1] * 0 + 35.0)
                heat = heat * (self.heat_power_kw * 1000.0 / max(float(ref[0]), 1.0))
            return heat, cop
        if self.table is not None:
            t = [r[0] for r in self.table]
            return (np.interp(temp_out, t, [r[1] * 1000.0 for r in self.table]),
                    np.interp(temp_out, t, [r[2] for r in self.table]))
        nominal = (self.heat_power_kw or 6.0) * 1000.0
        heat = nominal * np.clip(1.0 + self.capacity_slope_per_k * (temp_out - 7.0), 0.3, 1.3)
        cop = np.maximum(self.carnot_fraction * carnot_cop(temp_supply, temp_out), self.cop_min)
        return heat, cop

    def cop_and_capacity(self, temp_out: Any, setpoint: Any) -> tuple[np.ndarray, np.ndarray]:
        """Compressor COP and full-load heat [W] per step, all limits applied (heat 0 = compressor off)."""
        temp_out = np.atleast_1d(np.asarray(temp_out, dtype=float))
        setpoint = np.broadcast_to(setpoint, temp_out.shape)
        supply = self.supply_temp(temp_out, setpoint)
        heat, cop = self.performance(temp_out, supply)
        penalty = self.defrost_penalty
        if penalty is None:
            penalty = 0.0 if (self.hplib is not None or self.table is not None) else 0.1
        frost = temp_out < self.defrost_below_c
        heat = np.where(frost, heat * (1.0 - penalty), heat)
        cop = np.where(frost, cop * (1.0 - penalty), cop)
        cop = np.minimum(cop, carnot_cop(supply, temp_out))
        runs = (cop > 1.0) & (temp_out >= self.min_outdoor_c) & (heat > 0)
        return np.where(runs, cop, 1.0), np.where(runs, heat, 0.0)

    def source(self, temp_out: Any, setpoint: Any) -> HeatSource:
        cop, heat = self.cop_and_capacity(temp_out, setpoint)
        return HeatSource(heat_max_w=heat, cop=cop, min_modulation=self.min_modulation, backup_w=self.backup_w)


# -- flexibility --------------------------------------------------------------------------------------

class Flex:
    """Base of an element's flexibility (a frozen dataclass; ``kind`` names it on the wire)."""

    kind: ClassVar[str] = ""


@dataclass(frozen=True)
class BatteryFlex(Flex):
    """A battery as a planner sees it (SI units)."""

    kind: ClassVar[str] = "battery"
    capacity_j: float
    soc_min: float
    soc_max: float
    charge_power_w: float
    discharge_power_w: float
    charge_efficiency: float
    discharge_efficiency: float
    stored_j: float


@dataclass(frozen=True)
class ThermalFlex(Flex):
    """A heat source heating its building: the building's continuous RC model ``dx/dt = A_c·x + B_c·u``
    (``x = [temp_indoor(, temp_mass)]``, ``u = [temp_air, q_air_w, q_mass_w]``), its state, free gains and
    the heat source's curve, evaluated at the comfort set-point."""

    kind: ClassVar[str] = "thermal"
    a_c: np.ndarray
    b_c: np.ndarray
    x0: tuple[float, ...]
    heating_to_mass: float  # the building's share of heater heat into the mass (0 without a mass node)
    heating_to_mass_setting: float  # the configured share (what an MPC of the building is given)
    comfort_c: float
    max_heat_w: float  # at 7 °C outdoors, backup included
    gains: Gains
    curve: HeatPumpCurve | ResistiveCurve

    def source(self, temp_air: Any) -> HeatSource:
        """The source at the comfort set-point over ``temp_air`` (one value per step)."""
        t = np.asarray(temp_air, dtype=float)
        return self.curve.source(t, np.full(np.shape(t), self.comfort_c))

    def cop(self, temp_air: Any) -> np.ndarray:
        """COP per step at the comfort set-point."""
        return self.curve.source(np.atleast_1d(np.asarray(temp_air, dtype=float)),
                                 np.full(np.size(temp_air), self.comfort_c)).cop

    def heat_max_w(self, temp_air: Any) -> np.ndarray:
        """Full heat per step, backup included [W]."""
        src = self.source(temp_air)
        return src.heat_max_w + src.backup_w


@dataclass(frozen=True)
class TankFlex(Flex):
    """A hot-water tank with a resistive element (SI units and °C)."""

    kind: ClassVar[str] = "tank"
    capacity_j_k: float
    element_w: float
    ua_w_k: float
    temp_max_c: float
    temp_min_c: float
    temp_water: float
    temp_ambient_c: float
    temp_cold_c: float
    last_hot_epoch_s: float  # when the tank was last at the legionella temperature (NaN: never)
    element_on: bool


@dataclass(frozen=True)
class DeferrableFlex(Flex):
    """An appliance whose cycles a planner may start later: the cycle's profile and the delay window."""

    kind: ClassVar[str] = "deferrable"
    smart: bool  # False: the planner may not move its cycles (their load is still forecast)
    max_delay_h: float
    phases: tuple[tuple[float, float], ...]  # (duration_s, power_w) of each phase of one cycle


# -- commands ------------------------------------------------------------------------------------------

class Command:
    """Base of a command to an element (a frozen dataclass; ``kind`` names it on the wire)."""

    kind: ClassVar[str] = ""


@dataclass(frozen=True)
class HeatPlan(Command):
    """From run step ``i0`` on: per-step set-points [°C] and/or heat into the building [W]."""

    kind: ClassVar[str] = "heat_plan"
    i0: int
    setpoint_c: np.ndarray | None = None
    heat_w: np.ndarray | None = None


@dataclass(frozen=True)
class TankPlan(Command):
    """From run step ``i0`` on: per-step set-points [°C] and/or element on (0/1); NaN = no opinion."""

    kind: ClassVar[str] = "tank_plan"
    i0: int
    setpoint_c: np.ndarray | None = None
    on: np.ndarray | None = None


@dataclass(frozen=True)
class ClearPlan(Command):
    """Drop the plan: the element's own schedule again."""

    kind: ClassVar[str] = "clear_plan"


@dataclass(frozen=True)
class DeferTo(Command):
    """Move the cycle drawn to start at ``start_epoch_s`` to ``new_start_epoch_s``."""

    kind: ClassVar[str] = "defer_to"
    start_epoch_s: float
    new_start_epoch_s: float


@dataclass(frozen=True)
class UpcomingStarts(Command):
    """Query: the cycles whose (possibly deferred) start lies in ``[t0_epoch_s, t1_epoch_s)``."""

    kind: ClassVar[str] = "upcoming_starts"
    t0_epoch_s: float
    t1_epoch_s: float


@dataclass(frozen=True)
class Start:
    """One appliance cycle (the answer to :class:`UpcomingStarts`)."""

    start_epoch_s: float  # as drawn
    planned_epoch_s: float  # where it will start (deferred or not)
    latest_epoch_s: float
    energy_j: float
    duration_s: float
    smart: bool


@dataclass
class BatteryPolicy:
    """What the inverter asks of the battery in each step of a window (a strategy's battery plan for
    the window, or the inverter's own work mode; the inverter's dispatch follows it)."""

    soc_floor: np.ndarray  # discharge not below this SoC [0-1]
    grid_charge_j: np.ndarray  # AC energy from the grid for charging, max [J]
    grid_target_soc: np.ndarray  # grid charging up to this SoC [0-1]
    force_discharge_j: np.ndarray  # AC energy to discharge even if it is exported [J]
    charge_from_surplus: np.ndarray  # bool: surplus PV may charge the battery
    export_first: bool = False  # surplus goes to the grid first, the battery takes only what cannot be exported
    charge_limit_j: np.ndarray | None = None  # cap on AC energy into the battery (surplus + grid) per step [J]
    discharge_limit_j: np.ndarray | None = None  # cap on AC energy out of the battery per step [J]


# -- the wire form ---------------------------------------------------------------------------------------

_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    Glass, Gains, ResistiveCurve, HeatPumpCurve, BatteryFlex, ThermalFlex, TankFlex, DeferrableFlex,
    HeatPlan, TankPlan, ClearPlan, DeferTo, UpcomingStarts, Start)}
_TAG = "__flex__"


def to_wire(value: Any) -> Any:
    """A contract value as plain dicts, tuples, lists and arrays (``{"__flex__": type, …fields}``)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and type(value).__name__ in _TYPES:
        return {_TAG: type(value).__name__, **{f.name: to_wire(getattr(value, f.name))
                                               for f in dataclasses.fields(value)}}
    if isinstance(value, tuple):
        return tuple(to_wire(v) for v in value)
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    return value


def from_wire(value: Any) -> Any:
    """Inverse of :func:`to_wire`; an unknown type or field raises ``ValueError``."""
    if isinstance(value, dict) and _TAG in value:
        name = value[_TAG]
        cls = _TYPES.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ValueError(f"not a contract type: {name!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: from_wire(v) for k, v in value.items() if k != _TAG}
        if set(kw) - fields:
            raise ValueError(f"{name}: unknown field(s) {sorted(set(kw) - fields)}")
        try:
            return cls(**kw)
        except TypeError as exc:
            raise ValueError(f"{name}: {exc}") from None
    if isinstance(value, tuple):
        return tuple(from_wire(v) for v in value)
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    return value


# -- for strategies ------------------------------------------------------------------------------------

def flexible(roster: Mapping[str, Any] | None, kind: type) -> dict[str, tuple[Any, Any]]:
    """``{name: (element, flexibility)}`` of the roster's elements whose flexibility is a ``kind``,
    in roster order."""
    out = {}
    for name, el in (roster or {}).items():
        f = el.flexibility()
        if isinstance(f, kind):
            out[name] = (el, f)
    return out
