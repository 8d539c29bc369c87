"""The inverter's rule-based work modes as a battery policy: what the inverter does without a
strategy, and what a strategy does before its first plan."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from hometwin.flex import BatteryPolicy
from hometwin.schedule import window_mask


def mode_policy(c: Any, w: Any, signals: Mapping[str, np.ndarray], batt_w: float) -> BatteryPolicy:
    """Battery policy of the inverter's rule-based work modes (its config ``c``: ``mode``,
    ``reserve_soc``, ``slots``).

    - ``self_use``: surplus charges, deficits discharge, down to the battery's own minimum.
    - ``backup``: like self_use, but while the grid is up the battery is not discharged
      below ``reserve_soc``; during an outage it may go down to its minimum.
    - ``time_of_use``: slots set the floor (``target_soc``), grid-charge up to it, or force a
      discharge; outside slots self_use.
    - ``export_first``: surplus is exported first; the battery takes what cannot be exported.
    """
    n = w.n
    available = _signal(signals, "grid_available", n, 0.0) > 0.5
    floor = np.zeros(n)
    grid_j = np.zeros(n)
    target = np.zeros(n)
    force = np.zeros(n)
    if c.mode == "backup":
        floor = np.where(available, c.reserve_soc, 0.0)
    elif c.mode == "time_of_use":
        for slot in c.slots:
            mask = window_mask(w.local_times, slot)
            if not mask.any():
                continue
            floor = np.where(mask & available, slot.target_soc, floor)
            if slot.grid_charge:
                power = (slot.grid_charge_kw * 1000.0) if slot.grid_charge_kw else batt_w
                grid_j = np.where(mask, power * w.dt_s, grid_j)
                target = np.where(mask, slot.target_soc, target)
            if slot.discharge_kw > 0:
                force = np.where(mask & available, slot.discharge_kw * 1000.0 * w.dt_s, force)
    return BatteryPolicy(soc_floor=floor, grid_charge_j=grid_j, grid_target_soc=target,
                         force_discharge_j=force, charge_from_surplus=np.ones(n, dtype=bool),
                         export_first=c.mode == "export_first")


def _signal(signals: Mapping[str, np.ndarray], name: str, n: int, default: float) -> np.ndarray:
    value = signals.get(name)
    if value is None:
        return np.full(n, default)
    return np.asarray(value, dtype=float)
