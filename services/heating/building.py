"""Lumped RC thermal model of a building: an indoor-air node and an optional thermal-mass node.

Model choice — a 2R2C air + mass model (a reduced ISO 13790 5R1C)
------------------------------------------------------------------
ISO 13790's 5R1C network has three temperature nodes (air, surface, mass) but
only *one* capacity, on the mass node; its air node has none.  The SmartHjem
thesis house is the opposite: one capacity, the indoor air (``c·m·dT/dt =
Q − K·(T − T_out)``).  A 2R2C network with a capacity on both the air node and
the mass node covers both with one set of equations:

* ``C_a·dT_a/dt = H_ao·(T_o − T_a) + H_am·(T_m − T_a) + Q_a``
* ``C_m·dT_m/dt = H_mo·(T_o − T_m) + H_am·(T_a − T_m) + Q_m``

``H_ao`` (air → outdoors) carries the windows, ventilation and thermal bridges;
the opaque envelope (walls, roof, floor) leaves through the mass, with
``H_mo = 1 / (1/H_op − 1/H_am)`` chosen — as ISO 13790 does for ``H_tr,em`` —
so that the series ``H_am + H_mo`` equals the opaque ``ΣU·A`` exactly and the
steady-state loss coefficient is the textbook ``ΣU·A + V·ρ·c_p·n·(1−η) + Σψ·L``.
With ``mass_capacity_kj_k = 0`` the mass node disappears and every loss leaves
the air node directly (the thesis model).

Discretisation
--------------
Inputs are piecewise constant over a step, so the linear system is solved
exactly with the matrix exponential (``x[k+1] = A_d·x[k] + B_d·u[k]``),
stable and exact for any step length: a day of 1-minute steps and 1440 single
steps give the same temperatures.  The same exponential of an augmented matrix
gives the exact time integral of the temperatures over a step, from which the
losses are booked, so the energy balance closes to rounding:
``ΔU = ∫(Q_heat + Q_gains) − ∫losses``.

Quantities: temperatures [°C], heat flows [W], capacities [J K-1], conductances
[W K-1], energy [J].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from hometwin.element import STRICT

from hometwin.lazy import lazy_module
from hometwin.flex import Gains, Glass

linalg = lazy_module("scipy.linalg")
pvlib = lazy_module("pvlib")  # the solar gains' (hometwin.solar): named here so a heating service preloads it (hometwin.lazy)

C_AIR_J_KGK = 1005.4  # specific heat of air (SmartHjem thesis) [J kg-1 K-1]
RHO_AIR_KG_M3 = 1.225  # density of air (SmartHjem thesis) [kg m-3]


# -- physics as functions ------------------------------------------------------------------------

def transmission_coefficient(areas_m2: Any, u_w_m2k: Any) -> float:
    """Transmission loss coefficient ``H_tr = Σ U·A`` [W K-1] (EN ISO 13789)."""
    return float(np.sum(np.asarray(areas_m2, dtype=float) * np.asarray(u_w_m2k, dtype=float)))


def ventilation_coefficient(volume_m3: float, air_changes_per_h: float, heat_recovery: float = 0.0,
                            rho_kg_m3: float = RHO_AIR_KG_M3, c_j_kgk: float = C_AIR_J_KGK) -> float:
    """Ventilation loss coefficient ``H_ve = V·ρ·c_p·n/3600·(1 − η_hr)`` [W K-1].

    Parameters
    ----------
    volume_m3 : heated air volume [m3]
    air_changes_per_h : air-change rate n [h-1]
    heat_recovery : share of the exhaust heat a heat exchanger returns, η_hr [0-1]
    """
    return volume_m3 * rho_kg_m3 * c_j_kgk * air_changes_per_h / 3600.0 * (1.0 - heat_recovery)


def bridge_coefficient(lengths_m: Any, psi_w_mk: Any) -> float:
    """Linear thermal-bridge loss coefficient ``Σ ψ·L`` [W K-1] (EN ISO 14683)."""
    return float(np.sum(np.asarray(lengths_m, dtype=float) * np.asarray(psi_w_mk, dtype=float)))


def heat_up_time_s(capacity_j_k: float, h_w_k: float, power_w: float, temp_out: float,
                   temp_start: float, temp_end: float) -> float:
    """Time a one-node (air-only) building needs from ``temp_start`` to ``temp_end`` [s].

    ``t = τ·ln((T_∞ − T_0)/(T_∞ − T_1))`` with ``τ = C/H`` and ``T_∞ = T_out + P/H``;
    ``inf`` when the heater cannot reach ``temp_end``.
    """
    t_inf = temp_out + power_w / h_w_k
    if t_inf <= temp_end:
        return float("inf")
    return capacity_j_k / h_w_k * float(np.log((t_inf - temp_start) / (t_inf - temp_end)))


# -- configuration -------------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = STRICT


def _u_value(u: float | None, k: float | None, d: float | None, what: str) -> float:
    if u is not None:
        if k is not None or d is not None:
            raise ValueError(f"{what}: give u_w_m2k or conductivity_w_mk + thickness_m, not both")
        return u
    if k is None or d is None:
        raise ValueError(f"{what}: give u_w_m2k, or conductivity_w_mk and thickness_m")
    return k / d


class Surface(_Strict):
    """An opaque part of the envelope (wall, roof, floor): area and U-value (or k and thickness)."""

    name: str = Field("surface", description="label, e.g. 'walls'")
    area_m2: Annotated[float, Field(gt=0, le=100_000, description="[m2] area")]
    u_w_m2k: Annotated[float | None, Field(gt=0, le=100, description="[W m-2 K-1] U-value")] = None
    conductivity_w_mk: Annotated[float | None, Field(gt=0, le=500, description="[W m-1 K-1] insulation k")] = None
    thickness_m: Annotated[float | None, Field(gt=0, le=10, description="[m] insulation thickness")] = None

    @model_validator(mode="after")
    def _u(self) -> "Surface":
        _u_value(self.u_w_m2k, self.conductivity_w_mk, self.thickness_m, self.name)
        return self

    @property
    def u(self) -> float:
        return _u_value(self.u_w_m2k, self.conductivity_w_mk, self.thickness_m, self.name)


class Glazing(Surface):
    """A window: transmission like a surface, plus solar gains through its glass."""

    name: str = Field("window", description="label")
    g_value: Annotated[float, Field(ge=0, le=1, description="[0-1] total solar energy transmittance")] = 0.6
    azimuth_deg: Annotated[float, Field(ge=0, le=360, description="[°] facing, clockwise from north (180 = south)")] = 180.0
    tilt_deg: Annotated[float, Field(ge=0, le=180, description="[°] from horizontal (90 = vertical)")] = 90.0
    frame_fraction: Annotated[float, Field(ge=0, lt=1, description="[0-1] frame share of the area")] = 0.25
    shading_factor: Annotated[float, Field(ge=0, le=1, description="[0-1] external shading (1 = none)")] = 1.0


class ThermalBridge(_Strict):
    name: str = Field("bridge", description="label")
    length_m: Annotated[float, Field(gt=0, le=100_000, description="[m] length")]
    psi_w_mk: Annotated[float, Field(ge=0, le=10, description="[W m-1 K-1] linear transmittance ψ")]


_W = 0.7 / 0.04  # SmartHjem window: k = 0.7 W/mK over 0.04 m → U = 17.5 W/m2K
_ROOF_M2 = 2 * 20.0 * (5.0 / np.cos(np.radians(40.0)))  # two 20 m slopes over a 10 m span at 40°

#: Presets: whole building configs; explicit keys given next to ``preset`` override them.
PRESETS: dict[str, dict[str, Any]] = {
    # The SmartHjem thesis house (NTNU 2014): 20 × 10 × 3 m, 40° roof, four 1 × 1 m windows,
    # walls k = 0.03 W/mK × 0.25 m, windows k = 0.7 × 0.04 m, one air node, no ventilation.
    # ΣU·A = 0.12·(176 + 261.1 + 200) + 17.5·4 = 146.5 W/K (thesis: ≈ 143 W/K; the gable
    # triangles are left out as in the thesis figure).  Air volume = 600 m3 box + 419.5 m3
    # under the roof → 1249 kg of air; 4 kW heats 15 → 20 °C in ≈ 49 min at 5 °C outdoors
    # (the thesis's 941 kg would take 36 min there; its "about 1 hour" fits the larger volume).
    "smarthjem": {
        "surfaces": [
            {"name": "walls", "area_m2": 2 * (20 + 10) * 3.0 - 4.0, "conductivity_w_mk": 0.03, "thickness_m": 0.25},
            {"name": "roof", "area_m2": round(float(_ROOF_M2), 3), "conductivity_w_mk": 0.03, "thickness_m": 0.25},
            {"name": "floor", "area_m2": 200.0, "conductivity_w_mk": 0.03, "thickness_m": 0.25},
        ],
        "windows": [
            {"name": f"window-{side}", "area_m2": 1.0, "conductivity_w_mk": 0.7, "thickness_m": 0.04,
             "g_value": 0.6, "azimuth_deg": az, "frame_fraction": 0.2}
            for side, az in (("n", 0.0), ("e", 90.0), ("s", 180.0), ("w", 270.0))
        ],
        "thermal_bridges": [],
        "volume_m3": 600.0 + round(float(20.0 * 0.5 * 10.0 * 5.0 * np.tan(np.radians(40.0))), 3),
        "air_changes_per_h": 0.0,
        "heat_recovery": 0.0,
        "mass_capacity_kj_k": 0.0,
        "internal_gains_w": 0.0,
    },
    # A modern (TEK17-like) 150 m2 two-storey house, 10 × 7.5 m footprint, medium thermal
    # mass (ISO 13790: 165 kJ/m2K of floor), balanced ventilation with 80 % heat recovery.
    # ΣU·A ≈ 27 + 10.4 + 9 + 19.8 (windows) = 66 W/K, ventilation 10.3 W/K, bridges 6 W/K.
    "modern": {
        "surfaces": [
            {"name": "walls", "area_m2": 151.0, "u_w_m2k": 0.18},
            {"name": "roof", "area_m2": 80.0, "u_w_m2k": 0.13},
            {"name": "floor", "area_m2": 75.0, "u_w_m2k": 0.12},
        ],
        "windows": [
            {"name": "south", "area_m2": 10.0, "u_w_m2k": 0.8, "g_value": 0.5, "azimuth_deg": 180.0},
            {"name": "east", "area_m2": 5.0, "u_w_m2k": 0.8, "g_value": 0.5, "azimuth_deg": 90.0},
            {"name": "west", "area_m2": 5.0, "u_w_m2k": 0.8, "g_value": 0.5, "azimuth_deg": 270.0},
            {"name": "north", "area_m2": 4.0, "u_w_m2k": 0.8, "g_value": 0.5, "azimuth_deg": 0.0},
        ],
        "thermal_bridges": [{"name": "junctions", "length_m": 120.0, "psi_w_mk": 0.05}],
        "volume_m3": 375.0,
        "air_changes_per_h": 0.5,
        "heat_recovery": 0.8,
        "mass_capacity_kj_k": 165.0 * 150.0,
        "h_air_mass_w_k": 9.1 * 2.5 * 150.0,
        "furniture_factor": 3.0,
        "internal_gains_w": 300.0,
    },
}


class BuildingConfig(_Strict):
    """A building: a ``preset`` and/or explicit envelope, ventilation, bridges, mass and gains."""

    preset: Literal["smarthjem", "modern"] | None = Field(None, description="start from a preset; keys given here override it")
    surfaces: list[Surface] = Field(default_factory=list, description="opaque envelope: walls, roof, floor")
    windows: list[Glazing] = Field(default_factory=list, description="glazing (transmission + solar gains)")
    thermal_bridges: list[ThermalBridge] = Field(default_factory=list, description="linear thermal bridges ψ·L")
    volume_m3: Annotated[float, Field(gt=0, le=1_000_000, description="[m3] heated air volume")] = 300.0
    air_changes_per_h: Annotated[float, Field(ge=0, le=50, description="[h-1] ventilation/infiltration air-change rate")] = 0.5
    heat_recovery: Annotated[float, Field(ge=0, lt=1, description="[0-1] ventilation heat-recovery efficiency")] = 0.0
    furniture_factor: Annotated[float, Field(ge=1, le=50, description="[-] air-node capacity as a multiple of the air's own")] = 1.0
    mass_capacity_kj_k: Annotated[float, Field(ge=0, le=1e7, description="[kJ K-1] thermal mass (0 = air-only node)")] = 0.0
    h_air_mass_w_k: Annotated[float | None, Field(gt=0, le=1e7, description="[W K-1] air↔mass coupling (default 10 × opaque ΣU·A)")] = None
    solar_to_mass: Annotated[float, Field(ge=0, le=1, description="[0-1] share of solar gains absorbed by the mass")] = 0.5
    heating_to_mass: Annotated[float, Field(ge=0, le=1, description="[0-1] share of the heating into the mass (floor heating ≈ 1)")] = 0.0
    internal_gains_w: Annotated[float, Field(ge=0, le=1e6, description="[W] people and appliances' waste heat")] = 0.0
    temp_initial_c: Annotated[float, Field(ge=-50, le=60, description="[°C] indoor temperature at the start")] = 20.0

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in PRESETS:
            merged = {**PRESETS[data["preset"]], **data}
            return merged
        return data

    @model_validator(mode="after")
    def _check(self) -> "BuildingConfig":
        if not self.surfaces and not self.windows:
            raise ValueError("surfaces: a building needs at least one surface or window (or a preset)")
        if self.mass_capacity_kj_k > 0 and self.h_air_mass_w_k is not None:
            h_op = transmission_coefficient([s.area_m2 for s in self.surfaces], [s.u for s in self.surfaces])
            if self.h_air_mass_w_k <= h_op:
                raise ValueError(f"h_air_mass_w_k: must be > the opaque ΣU·A ({h_op:.1f} W/K) "
                                 f"(got {self.h_air_mass_w_k})")
        return self


# -- the model -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Discrete:
    """Exact discretisation for one step length: ``x' = Ad·x + Bd·u``, ``∫x dt = Sx·x + Su·u``.

    ``u = [T_out, Q_air, Q_mass]`` (°C, W, W), piecewise constant over the step.
    """

    dt_s: float
    ad: np.ndarray
    bd: np.ndarray
    sx: np.ndarray
    su: np.ndarray


@dataclass
class Building:
    """The building's RC parameters (from :class:`BuildingConfig`) and its exact step matrices.

    ``n_states`` is 1 (air only) or 2 (air, mass).  Heat from a heater goes to
    the air node, or with ``heating_to_mass`` partly into the mass.
    """

    c_air: float  # [J/K]
    c_mass: float  # [J/K], 0 = no mass node
    h_ao: float  # air ↔ outdoor [W/K]
    h_am: float  # air ↔ mass [W/K]
    h_mo: float  # mass ↔ outdoor [W/K]
    ua: float  # steady-state loss coefficient [W/K]
    parts: dict[str, float]  # loss coefficient by path [W/K]
    windows: list[Glazing]
    internal_gains_w: float
    solar_to_mass: float
    heating_to_mass: float
    temp_initial_c: float
    _cache: dict[float, Discrete] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, cfg: BuildingConfig) -> "Building":
        h_op = transmission_coefficient([s.area_m2 for s in cfg.surfaces], [s.u for s in cfg.surfaces])
        h_win = transmission_coefficient([w.area_m2 for w in cfg.windows], [w.u for w in cfg.windows])
        h_ve = ventilation_coefficient(cfg.volume_m3, cfg.air_changes_per_h, cfg.heat_recovery)
        h_br = bridge_coefficient([b.length_m for b in cfg.thermal_bridges], [b.psi_w_mk for b in cfg.thermal_bridges])
        c_air = cfg.volume_m3 * RHO_AIR_KG_M3 * C_AIR_J_KGK * cfg.furniture_factor
        c_mass = cfg.mass_capacity_kj_k * 1000.0
        parts = {"transmission_opaque": h_op, "transmission_windows": h_win, "ventilation": h_ve, "bridges": h_br}
        if c_mass > 0:
            h_am = cfg.h_air_mass_w_k if cfg.h_air_mass_w_k is not None else 10.0 * max(h_op, 1e-3)
            h_mo = 1.0 / (1.0 / h_op - 1.0 / h_am) if h_op > 0 else 0.0
            h_ao = h_win + h_ve + h_br
        else:
            h_am = h_mo = 0.0
            h_ao = h_op + h_win + h_ve + h_br
        return cls(c_air=c_air, c_mass=c_mass, h_ao=h_ao, h_am=h_am, h_mo=h_mo,
                   ua=h_op + h_win + h_ve + h_br, parts=parts, windows=list(cfg.windows),
                   internal_gains_w=cfg.internal_gains_w, solar_to_mass=cfg.solar_to_mass if c_mass > 0 else 0.0,
                   heating_to_mass=cfg.heating_to_mass if c_mass > 0 else 0.0, temp_initial_c=cfg.temp_initial_c)

    @property
    def n_states(self) -> int:
        return 2 if self.c_mass > 0 else 1

    @property
    def capacities(self) -> np.ndarray:
        """Heat capacity of each node [J K-1]."""
        return np.array([self.c_air, self.c_mass][: self.n_states])

    def continuous(self) -> tuple[np.ndarray, np.ndarray]:
        """Continuous-time ``dx/dt = A·x + B·u`` with ``u = [T_out, Q_air, Q_mass]``."""
        ca, cm = self.c_air, self.c_mass
        if self.n_states == 1:
            a = np.array([[-self.h_ao / ca]])
            b = np.array([[self.h_ao / ca, 1.0 / ca, 1.0 / ca]])
            return a, b
        a = np.array([[-(self.h_ao + self.h_am) / ca, self.h_am / ca],
                      [self.h_am / cm, -(self.h_am + self.h_mo) / cm]])
        b = np.array([[self.h_ao / ca, 1.0 / ca, 0.0],
                      [self.h_mo / cm, 0.0, 1.0 / cm]])
        return a, b

    def discrete(self, dt_s: float) -> Discrete:
        """Exact step matrices for ``dt_s`` (cached)."""
        dt_s = float(dt_s)
        if dt_s not in self._cache:
            a, b = self.continuous()
            self._cache[dt_s] = _exact(a, b, dt_s)
        return self._cache[dt_s]

    def heater_column(self, dt_s: float) -> np.ndarray:
        """State change per W of heater power over one step [K W-1]."""
        d = self.discrete(dt_s)
        return d.bd[:, 1] * (1.0 - self.heating_to_mass) + d.bd[:, 2] * self.heating_to_mass

    def gains(self, signals: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Free heat gains (internal + solar) to the air and the mass node per step [W]."""
        return self.gains_model()(signals, n)

    def gains_model(self) -> Gains:
        """The free gains as the optimizer's contract carries them (:class:`hometwin.flex.Gains`)."""
        return Gains(internal_w=self.internal_gains_w, solar_to_mass=self.solar_to_mass,
                     windows=tuple(Glass(area_m2=w.area_m2, g_value=w.g_value, tilt_deg=w.tilt_deg,
                                         azimuth_deg=w.azimuth_deg, frame_fraction=w.frame_fraction,
                                         shading_factor=w.shading_factor) for w in self.windows))

    def free_response(self, dt_s: float, temp_out: np.ndarray, q_air: np.ndarray, q_mass: np.ndarray) -> np.ndarray:
        """The input part ``Bd·u`` of each step without heating, shape (n_states, n)."""
        d = self.discrete(dt_s)
        u = np.vstack([temp_out, q_air, q_mass])
        return d.bd @ u

    def simulate(self, x0: np.ndarray, dt_s: float, temp_out: np.ndarray, q_heat: np.ndarray,
                 q_air: np.ndarray | None = None, q_mass: np.ndarray | None = None) -> np.ndarray:
        """States at the end of each step for a given heating power (open loop), shape (n, n_states)."""
        n = len(temp_out)
        q_air = np.zeros(n) if q_air is None else q_air
        q_mass = np.zeros(n) if q_mass is None else q_mass
        d = self.discrete(dt_s)
        drive = self.free_response(dt_s, temp_out, q_air, q_mass) + np.outer(self.heater_column(dt_s), q_heat)
        x = np.asarray(x0, dtype=float).copy()
        out = np.empty((n, self.n_states))
        for k in range(n):
            x = d.ad @ x + drive[:, k]
            out[k] = x
        return out

    def losses_j(self, dt_s: float, x_start: np.ndarray, temp_out: np.ndarray, q_air_total: np.ndarray,
                 q_mass_total: np.ndarray) -> np.ndarray:
        """Exact heat lost to outdoors in each step [J], from the step-start states (n, n_states).

        ``q_*_total`` are all heat inputs of the step to each node (heating + gains) [W].
        """
        d = self.discrete(dt_s)
        u = np.vstack([temp_out, q_air_total, q_mass_total])
        integral = d.sx @ np.asarray(x_start, dtype=float).T + d.su @ u  # ∫T dt per node, (n_states, n)
        loss = self.h_ao * (integral[0] - temp_out * dt_s)
        if self.n_states == 2:
            loss = loss + self.h_mo * (integral[1] - temp_out * dt_s)
        return loss

    def params(self, dt_s: float) -> dict[str, Any]:
        """The linear model an MPC needs (see :meth:`HeatedBuilding.params`)."""
        a, b = self.continuous()
        d = self.discrete(dt_s)
        return {"states": ["temp_indoor", "temp_mass"][: self.n_states],
                "inputs": ["q_heat_w"], "disturbances": ["temp_air", "q_gain_air_w", "q_gain_mass_w"],
                "dt_s": float(dt_s), "A_c": a, "B_c": b, "A": d.ad, "B": self.heater_column(dt_s)[:, None],
                "E": d.bd, "c_air_j_k": self.c_air, "c_mass_j_k": self.c_mass, "h_air_out_w_k": self.h_ao,
                "h_air_mass_w_k": self.h_am, "h_mass_out_w_k": self.h_mo, "ua_w_k": self.ua,
                "loss_parts_w_k": dict(self.parts)}


def _exact(a: np.ndarray, b: np.ndarray, dt: float) -> Discrete:
    """Zero-order-hold discretisation plus the exact state integral over the step.

    ``M = [[A, B, 0], [0, 0, 0], [I, 0, 0]]`` on ``z = [x, u, ∫x]``; ``expm(M·dt)``
    gives ``Ad``, ``Bd`` and the integral maps ``Sx``, ``Su`` at once.
    """
    n, m = b.shape
    big = np.zeros((2 * n + m, 2 * n + m))
    big[:n, :n] = a
    big[:n, n:n + m] = b
    big[n + m:, :n] = np.eye(n)
    e = linalg.expm(big * dt)
    return Discrete(dt_s=dt, ad=e[:n, :n], bd=e[:n, n:n + m], sx=e[n + m:, :n], su=e[n + m:, n:n + m])
