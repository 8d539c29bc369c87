"""The thesis experiment: a week of the SmartHjem house, MPC vs. thermostat with timer.

A study of the heating MPCs (:mod:`hometwin.services.inverter.strategies.heating_mpc`,
:mod:`~hometwin.services.inverter.strategies.heating_qp`) on the heating room's ``smarthjem``
building: it builds the plant from the building model itself, which a strategy may not (a
strategy reads the optimizer's contract, :mod:`hometwin.flex`, and imports no element module).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from hometwin.services.heating.building import Building, BuildingConfig
from hometwin.services.inverter.strategies.config import ComfortConfig
from hometwin.lazy import lazy_module
from hometwin.services.inverter.strategies.heating_mpc import HeatingMPC, comfort_band, comfort_violation_kh

linalg = lazy_module("scipy.linalg")


def thesis_house(ua_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, float]:
    """(A_c, B_c, max heat kW) of the SmartHjem house from the heating room's ``smarthjem`` preset."""
    b = Building.from_config(BuildingConfig(preset="smarthjem"))
    a_c, b_c = b.continuous()
    if ua_scale != 1.0:
        a_c = a_c * ua_scale
        b_c = b_c.copy()
        b_c[:, 0] = b_c[:, 0] * ua_scale
    return a_c, b_c, 4.0



# ---------------------------------------------------------------------------------------------
# The thesis experiment: a week of the SmartHjem house, MPC vs. thermostat with timer
# ---------------------------------------------------------------------------------------------
def simulate_thesis_week(price_hourly: np.ndarray, temp_out_hourly: np.ndarray, t0_s: int, tz: str,
                         controller: str = "mpc", comfort: Any = None, comfort_weight: float = 5.0,
                         model_ua_scale: float = 1.0, integral_gain: float = 0.3, plant_dt_s: int = 60,
                         plan_dt_s: int = 900, horizon_h: float = 8.0, preheat_h: float = 1.0,
                         hysteresis_k: float = 1.0, days: int = 7, qp: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Simulate the thesis house (1 air node, 4 kW electric heater) for ``days`` days.

    ``controller``: ``"mpc"`` (:mod:`~hometwin.services.inverter.strategies.heating_mpc`, replanning every ``plan_dt_s``, heater modulating at the
    planned power), ``"qp"`` (the thesis's quadratic MPC, :mod:`~hometwin.services.inverter.strategies.heating_qp`, with the weights
    ``qp = {weight_h, weight_r, weight_s, blocking}``; give ``plan_dt_s=300`` for its 5-minute steps) or
    ``"thermostat"``  (on/off with ``hysteresis_k`` around the band's middle,
    the timer switching to comfort ``preheat_h`` before presence starts).  Prices per kWh, hourly.
    The MPC's model may be wrong (``model_ua_scale``) — integral action corrects it.
    """

    comfort = comfort or ComfortConfig()
    a_p, b_p, qmax = thesis_house()
    a_m, b_m, _ = thesis_house(model_ua_scale)
    n = days * 86400 // plant_dt_s
    ep = t0_s + np.arange(n) * plant_dt_s
    hour = (ep - t0_s) // 3600
    price = np.asarray(price_hourly, dtype=float)[hour]
    tout = np.interp((ep - t0_s) / 3600.0, np.arange(len(temp_out_hourly)), temp_out_hourly)
    lower, upper, present = comfort_band(ep, tz, comfort)
    m = np.zeros((4, 4))
    m[:1, :1] = a_p
    m[:1, 1:] = b_p
    e = linalg.expm(m * plant_dt_s)
    ad, bd = float(e[0, 0]), e[0, 1:]
    temp = np.empty(n)
    heat = np.zeros(n)
    t = comfort.comfort_c + 0.5
    if controller == "qp":
        from hometwin.services.inverter.strategies.heating_qp import ThesisMPC

        mpc = ThesisMPC(a_m, b_m, qmax, 0.0, integral_gain, **dict(qp or {}))
    else:
        mpc = HeatingMPC(a_m, b_m, qmax, comfort_weight, integral_gain)
    k_plan = plan_dt_s // plant_dt_s
    nh = int(horizon_h * 3600 // plan_dt_s)
    on = False
    # the timer: comfort from preheat_h before each presence start
    timer_lower = comfort_band(ep + int(preheat_h * 3600), tz, comfort)[0]
    sp = np.maximum(lower, timer_lower) + comfort.band_k / 2.0
    power = 0.0
    solve = []
    for i in range(n):
        if controller in ("mpc", "qp") and i % k_plan == 0:
            mpc.observe(int(ep[i]), t)
            idx = np.minimum(i + (np.arange(nh) + 1) * k_plan, n - 1)
            j = np.minimum(i + np.arange(nh) * k_plan, n - 1)
            blk_lower = np.maximum(lower[idx], lower[np.minimum(j, n - 1)])  # the band over the whole step
            blk_upper = np.minimum(upper[idx], upper[np.minimum(j, n - 1)])
            hp = np.minimum(hour[j], len(price_hourly) - 1)
            out = mpc.plan(int(ep[i]), plan_dt_s, np.array([t]), tout[j], np.asarray(price_hourly, dtype=float)[hp],
                           blk_lower, blk_upper, 1.0, replan_s=plan_dt_s, check=False)
            power = float(out["heat_kw"][0]) * 1000.0
            solve.append(float(out["solve_s"][0]))
        elif controller == "thermostat":
            if t < sp[i] - hysteresis_k / 2:
                on = True
            elif t > sp[i] + hysteresis_k / 2:
                on = False
            power = qmax * 1000.0 if on else 0.0
        heat[i] = power
        t = ad * t + bd[0] * tout[i] + bd[1] * power
        temp[i] = t
    dt_h = plant_dt_s / 3600.0
    kwh = heat / 1000.0 * dt_h  # COP 1: electric = heat
    # comfort measured at the end of each step against the band of that moment
    end_lower, end_upper, end_present = comfort_band(ep + plant_dt_s - 1, tz, comfort)
    return {"cost": float(np.sum(kwh * price)), "energy_kwh": float(kwh.sum()),
            "violation_kh": comfort_violation_kh(temp, end_lower, end_upper, end_present, dt_h),
            "violation_kh_per_day": comfort_violation_kh(temp, end_lower, end_upper, end_present, dt_h) / days,
            "mean_temp_present": float(temp[end_present].mean()), "min_temp_present": float(temp[end_present].min()),
            "solve_median_ms": float(np.median(solve) * 1e3) if solve else 0.0, "plans": len(solve),
            "q_bias_w": float(mpc.q_bias_w), "trace": {"epoch_s": ep, "temp": temp, "heat_w": heat, "lower": end_lower,
                                                       "upper": end_upper, "present": end_present}}
