"""Small homes built in code for scenario tests."""

from __future__ import annotations

import copy
from typing import Any

from hometwin.spec import parse_home


def home_doc(elements: list[dict[str, Any]], *, start: str = "2025-06-01T00:00:00", duration: str = "2d",
             step_s: int = 60, tz: str = "Africa/Johannesburg", lat: float = -33.92, lon: float = 18.42,
             name: str = "t", seed: int = 1) -> dict[str, Any]:
    return {"apiVersion": "hometwin.io/v1alpha1", "kind": "Home", "metadata": {"name": name},
            "spec": {"location": {"latitude": lat, "longitude": lon, "timezone": tz},
                     "clock": {"start": start, "duration": duration, "step_s": step_s, "seed": seed},
                     "elements": copy.deepcopy(elements)}}


def home(elements: list[dict[str, Any]], **kw: Any) -> Any:
    return parse_home(home_doc(elements, **kw))


SUN = {"name": "sun", "kind": "sun"}
WEATHER = {"name": "weather", "kind": "weather"}
PV = {"name": "roof", "kind": "pv", "config": {"capacity_kwp": 5.0, "tilt_deg": 30, "azimuth_deg": 0}}
INVERTER = {"name": "inverter", "kind": "inverter", "config": {"ac_power_kw": 5.0}}


def battery(**cfg: Any) -> dict[str, Any]:
    return {"name": "battery", "kind": "battery", "config": cfg}


def grid(**cfg: Any) -> dict[str, Any]:
    cfg.setdefault("tariff", {"type": "flat", "price_per_kwh": 0.3})
    return {"name": "grid", "kind": "grid", "config": cfg}


def load(name: str = "house", power_w: float = 500.0) -> dict[str, Any]:
    return {"name": name, "kind": "base_load", "config": {"power_w": power_w}}
