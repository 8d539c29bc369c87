"""Heat pump (air-to-water or air-to-air) on a thermostat, heating its own building model.

Heat output and COP per step from the outdoor air temperature and the supply
temperature, by one of three models:

* ``carnot`` (default): ``COP = max(η·COP_Carnot, cop_min)``, capacity
  ``heat_power_kw·(1 + slope·(T_air − 7))``;
* ``hplib``: the fitted parameters of a real model from the hplib database
  (Heat Pump KEYMARK test data; Tjaden et al., hplib 1.9):
  ``COP = p1·T_in + p2·T_out + p3 + p4·T_amb``,
  ``P_el = P_el_ref·(p1'·T_in + p2'·T_out + p3' + p4'·T_amb)``, ``P_th = P_el·COP``
  (temperatures in °C, ``T_in = T_amb`` = outdoor air, ``T_out`` = supply);
* ``table``: a manufacturer's table of COP and capacity over the outdoor
  temperature, interpolated linearly (no gaps wider than 15 K allowed).

Whatever the model, the COP is capped at the Carnot limit
``T_supply/(T_supply − T_air)`` (kelvin) and a compressor COP at or below 1
switches the compressor off (the backup heater takes over, COP 1).  Below
``defrost_below_c`` the defrost penalty takes its share of capacity and COP;
below ``min_outdoor_c`` the compressor does not run.

Supply temperature: air-to-water follows a heating curve (``supply_temp_design_c``
at ``design_outdoor_c`` down to ``supply_temp_min_c`` at 15 °C outdoors);
air-to-air condenses at the setpoint + ``condenser_offset_k``.

Control (thermostat, schedule, modulation, min on/off, backup) and the
optimizer hooks ``params()`` / ``set_plan()`` are in
:class:`hometwin.services.heating.control.HeatedBuilding`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator, model_validator

from hometwin.element import STRICT
from hometwin.flex import HeatPumpCurve
from hometwin.flex import carnot_cop  # noqa: F401  (re-exported: the model's Carnot limit)

from .building import BuildingConfig
from .control import HeatedBuilding, Source, ThermostatConfig

T0_K = 273.15
MAX_TABLE_GAP_K = 15.0


@lru_cache(maxsize=32)
def hplib_parameters(model: str) -> dict[str, float]:
    """Fit parameters of one air/water model of the hplib database (KeyError names close matches)."""
    from hplib import hplib

    db = hplib.load_database()
    rows = db[db["Model"] == model]
    if rows.empty:
        close = [m for m in db["Model"] if model.lower().split()[0] in m.lower()][:8]
        raise KeyError(f"heat pump model {model!r} is not in the hplib database"
                       + (f" (similar: {', '.join(close)})" if close else ""))
    row = rows.iloc[0]
    if int(row["Group"]) not in (1, 4):
        raise KeyError(f"heat pump model {model!r} is not an outdoor air/water heat pump (hplib group {row['Group']})")
    keys = {"group": "Group", "p_el_ref": "P_el_h_ref [W]", "p_th_ref": "P_th_h_ref [W]",
            "p1_cop": "p1_COP [-]", "p2_cop": "p2_COP [-]", "p3_cop": "p3_COP [-]", "p4_cop": "p4_COP [-]",
            "p1_el": "p1_P_el_h [1/°C]", "p2_el": "p2_P_el_h [1/°C]", "p3_el": "p3_P_el_h [-]",
            "p4_el": "p4_P_el_h [1/°C]"}
    return {k: float(row[v]) for k, v in keys.items()}


class CopPoint(BaseModel):
    """One row of a manufacturer's table."""

    model_config = STRICT
    temp_air_c: Annotated[float, Field(ge=-40, le=50, description="[°C] outdoor air")]
    cop: Annotated[float, Field(gt=0, le=20, description="[-] COP at this point")]
    heat_kw: Annotated[float, Field(gt=0, le=1000, description="[kW] heating capacity at this point")]


class HeatPumpConfig(ThermostatConfig):
    """Heat pump: type, performance model, limits, defrost, backup heater, thermostat and building."""

    building: BuildingConfig = Field(default_factory=lambda: BuildingConfig(preset="modern"),
                                     description="the building this heat pump heats: {preset: smarthjem|modern} and/or explicit surfaces")
    type: Literal["air_water", "air_air"] = Field("air_water", description="air_water (heating curve) or air_air")
    model: str | None = Field(None, description="hplib model name (e.g. 'CTC EcoAir 408 1x230V'); None = Carnot model")
    cop_table: list[CopPoint] | None = Field(None, description="manufacturer table over outdoor temperature (instead of model)")
    heat_power_kw: Annotated[float | None, Field(gt=0, le=1000, description="[kW] heating capacity at 7 °C outdoors (Carnot model; scales hplib)")] = None
    carnot_fraction: Annotated[float, Field(gt=0, le=0.9, description="[0-1] share of the Carnot COP reached")] = 0.45
    cop_min: Annotated[float, Field(ge=1, le=10, description="[-] lowest COP of the Carnot model (capped by Carnot)")] = 1.5
    capacity_slope_per_k: Annotated[float, Field(ge=0, le=0.1, description="[K-1] capacity change per K of outdoor air (Carnot model)")] = 0.015
    min_modulation: Annotated[float, Field(gt=0, le=1, description="[0-1] lowest part load (1 = on/off unit)")] = 0.3
    supply_temp_design_c: Annotated[float, Field(ge=20, le=75, description="[°C] supply temperature at design_outdoor_c")] = 35.0
    supply_temp_min_c: Annotated[float, Field(ge=15, le=75, description="[°C] supply temperature at 15 °C outdoors")] = 25.0
    design_outdoor_c: Annotated[float, Field(ge=-40, le=10, description="[°C] design outdoor temperature")] = -15.0
    condenser_offset_k: Annotated[float, Field(ge=0, le=40, description="[K] air-to-air: condensing above the setpoint")] = 15.0
    min_outdoor_c: Annotated[float, Field(ge=-40, le=10, description="[°C] below this the compressor stops")] = -25.0
    defrost_below_c: Annotated[float, Field(ge=-30, le=15, description="[°C] defrost cycles below this outdoor temperature")] = 5.0
    defrost_penalty: Annotated[float | None, Field(ge=0, lt=1, description="[0-1] capacity and COP lost to defrost (default 0.1; 0 for hplib/table, whose test points include defrost)")] = None
    backup_kw: Annotated[float, Field(ge=0, le=100, description="[kW] backup resistive heater (0 = none)")] = 3.0
    backup_offset_k: Annotated[float, Field(ge=0, le=20, description="[K] backup joins this far below the switch-on temperature")] = 1.0
    min_on_min: Annotated[float, Field(ge=0, le=240, description="[min] shortest compressor run")] = 5.0
    min_off_min: Annotated[float, Field(ge=0, le=240, description="[min] shortest compressor pause")] = 5.0

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                hplib_parameters(value)
            except KeyError as exc:
                raise ValueError(str(exc.args[0])) from None
        return value

    @field_validator("cop_table")
    @classmethod
    def _table(cls, value: list[CopPoint] | None) -> list[CopPoint] | None:
        if value is None:
            return value
        if len(value) < 2:
            raise ValueError("a COP table needs at least 2 points")
        temps = [p.temp_air_c for p in value]
        if any(b <= a for a, b in zip(temps, temps[1:])):
            raise ValueError(f"temp_air_c must increase strictly from row to row (got {temps})")
        gaps = [b - a for a, b in zip(temps, temps[1:])]
        if max(gaps) > MAX_TABLE_GAP_K:
            i = int(np.argmax(gaps))
            raise ValueError(f"gap of {gaps[i]:g} K between {temps[i]:g} and {temps[i + 1]:g} °C "
                             f"(at most {MAX_TABLE_GAP_K:g} K between rows)")
        return value

    @model_validator(mode="after")
    def _one_model(self) -> "HeatPumpConfig":
        if self.model is not None and self.cop_table is not None:
            raise ValueError("model: give an hplib model or a cop_table, not both")
        if self.supply_temp_min_c > self.supply_temp_design_c:
            raise ValueError(f"supply_temp_min_c: must be <= supply_temp_design_c ({self.supply_temp_design_c}) "
                             f"(got {self.supply_temp_min_c})")
        return self


class HeatPump(HeatedBuilding):
    """Air-to-water or air-to-air heat pump with backup heater, thermostat and schedule in a building.

    Optimizer hooks: ``params()`` (linear model, ``max_heat_w``, ``max_power_w``,
    ``cop(temp_air)``) and ``set_plan(i0, setpoint_c=..., heat_w=...)`` — see
    :class:`hometwin.services.heating.control.HeatedBuilding`.
    """

    kind = "heat_pump"
    Config = HeatPumpConfig
    settable = ("mode", "comfort_c", "setback_c", "setpoint_c", "presence", "hysteresis_k", "backup_kw",
                "min_on_min", "min_off_min")
    description = "Heat pump (air-to-water/air-to-air) with backup heater and thermostat, heating a building model."

    config: HeatPumpConfig

    def curve(self) -> HeatPumpCurve:
        """The heat pump's capacity and COP model as the optimizer's contract carries it."""
        c = self.config
        return HeatPumpCurve(
            type=c.type, condenser_offset_k=c.condenser_offset_k, supply_temp_design_c=c.supply_temp_design_c,
            design_outdoor_c=c.design_outdoor_c, supply_temp_min_c=c.supply_temp_min_c,
            hplib=None if c.model is None else tuple(hplib_parameters(c.model).items()),
            table=None if c.cop_table is None else tuple((p.temp_air_c, p.heat_kw, p.cop) for p in c.cop_table),
            heat_power_kw=c.heat_power_kw, capacity_slope_per_k=c.capacity_slope_per_k,
            carnot_fraction=c.carnot_fraction, cop_min=c.cop_min, defrost_penalty=c.defrost_penalty,
            defrost_below_c=c.defrost_below_c, min_outdoor_c=c.min_outdoor_c, min_modulation=c.min_modulation,
            backup_w=c.backup_kw * 1000.0)

    def supply_temp(self, temp_out: np.ndarray, setpoint: np.ndarray) -> np.ndarray:
        return self.curve().supply_temp(temp_out, setpoint)

    def performance(self, temp_out: np.ndarray, temp_supply: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Full-load heat [W] and COP [-] before the Carnot cap, defrost and limits."""
        return self.curve().performance(temp_out, temp_supply)

    def cop_and_capacity(self, temp_out: Any, setpoint: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Compressor COP and full-load heat [W] per step, all limits applied (heat 0 = compressor off)."""
        temp_out = np.atleast_1d(np.asarray(temp_out, dtype=float))
        setpoint = np.full(temp_out.shape, self.config.comfort_c) if setpoint is None else setpoint
        return self.curve().cop_and_capacity(temp_out, setpoint)

    def source(self, temp_out: np.ndarray, setpoint: np.ndarray) -> Source:
        return self.curve().source(temp_out, setpoint)
