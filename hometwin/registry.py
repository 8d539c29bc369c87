"""Kind → model class.  A new device is one file and one line here.

Entries are import paths so that importing the registry stays cheap and a
service process imports only the model it hosts.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hometwin.element import Element

KINDS: dict[str, str] = {
    # environment
    "sun": "hometwin.services.sun.model:Sun",
    "weather": "hometwin.services.weather.model:Weather",
    # sources, storage, converter, grid
    "pv": "hometwin.services.pv.model:PVArray",
    "battery": "hometwin.services.battery.model:Battery",
    "inverter": "hometwin.services.inverter.model:Inverter",
    "grid": "hometwin.services.grid.model:Grid",
    # scheduled appliances (services/appliances/scheduled.py)
    "scheduled_load": "hometwin.services.appliances.scheduled:ScheduledLoad",
    "oven": "hometwin.services.appliances.scheduled:Oven",
    "tv": "hometwin.services.appliances.scheduled:TV",
    "kettle": "hometwin.services.appliances.scheduled:Kettle",
    "lights": "hometwin.services.appliances.scheduled:Lights",
    "fridge": "hometwin.services.appliances.scheduled:Fridge",
    "base_load": "hometwin.services.appliances.base_load:BaseLoad",
    "space_heater": "hometwin.services.heating.heater:SpaceHeater",
    "heat_pump": "hometwin.services.heating.heat_pump:HeatPump",
    "geyser": "hometwin.services.appliances.geyser:Geyser",
    "stochastic_load": "hometwin.services.appliances.stochastic:StochasticLoad",
    "washing_machine": "hometwin.services.appliances.stochastic:WashingMachine",
    "dryer": "hometwin.services.appliances.stochastic:Dryer",
    "dishwasher": "hometwin.services.appliances.stochastic:Dishwasher",
    "cooking": "hometwin.services.appliances.stochastic:Cooking",
}


@cache
def element_class(kind: str) -> type["Element"]:
    """The model class registered for ``kind`` (KeyError names the known kinds)."""
    try:
        target = KINDS[kind]
    except KeyError:
        raise KeyError(f"unknown element kind {kind!r} (known: {', '.join(sorted(KINDS))})") from None
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if cls.kind != kind:
        raise TypeError(f"registry entry {kind!r} points to {target} whose kind is {cls.kind!r}")
    return cls


def all_classes() -> dict[str, type["Element"]]:
    return {kind: element_class(kind) for kind in KINDS}
