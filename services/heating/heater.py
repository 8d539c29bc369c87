"""Resistive space heaters (panel heaters) on a thermostat and timer, heating their own building.

The SmartHjem thesis setup: on/off electric panel heaters (COP 1, all the
electricity becomes heat in the room air), a thermostat with hysteresis, and a
weekly presence timer switching between comfort and set-back temperatures.
See :class:`hometwin.services.heating.control.HeatedBuilding` for the control
loop and the optimizer hooks (``params()``, ``set_plan()``).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from hometwin.flex import ResistiveCurve

from .control import HeatedBuilding, Source, ThermostatConfig


class SpaceHeaterConfig(ThermostatConfig):
    """Panel heaters: total rated power plus the thermostat, schedule and building."""

    power_kw: Annotated[float, Field(gt=0, le=100, description="[kW] rated power of all panel heaters together")] = 4.0


class SpaceHeater(HeatedBuilding):
    """Resistive panel heaters (on/off, COP 1) with thermostat + timer in a building model.

    Optimizer hooks: ``params()`` (linear model, ``max_heat_w``, ``cop``) and
    ``set_plan(i0, setpoint_c=..., heat_w=...)`` — see :class:`HeatedBuilding`.
    """

    kind = "space_heater"
    Config = SpaceHeaterConfig
    settable = ("mode", "comfort_c", "setback_c", "setpoint_c", "presence", "hysteresis_k", "power_kw")
    description = "Electric panel heaters with thermostat and presence timer, heating a building model."

    config: SpaceHeaterConfig

    def curve(self) -> ResistiveCurve:
        return ResistiveCurve(power_w=self.config.power_kw * 1000.0)

    def source(self, temp_out: np.ndarray, setpoint: np.ndarray) -> Source:
        return self.curve().source(temp_out, setpoint)
