"""The two pieces of solar physics the optimizer's contract needs, both through pvlib.

:func:`window_solar_gains` (a building's gains through its glazing: the heating models and the
strategies' :class:`hometwin.flex.Gains`) and :func:`pv_to_ac` (the inverter's PV converter: the
inverter and the strategies' forecast).  They live apart from :mod:`hometwin.flex` so that the
contract's data types do not carry pvlib: a service preloads the lazy modules its element's code
names (:func:`hometwin.lazy.preload_for`), and a geyser, which only uses the types, must not pay
for pvlib's import.  Model layer: no runtime imports.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hometwin.lazy import lazy_module

pvlib = lazy_module("pvlib")


def window_solar_gains(ghi: np.ndarray, dni: np.ndarray, dhi: np.ndarray, apparent_zenith: np.ndarray,
                       azimuth: np.ndarray, windows: Any, albedo: float = 0.2) -> np.ndarray:
    """Solar heat gain through glazing ``Σ A·(1 − f_frame)·g·F_sh·G_poa`` [W].

    The plane-of-array irradiance of each window comes from pvlib's isotropic transposition
    (``pvlib.irradiance.get_total_irradiance``).  ``windows``: anything with ``area_m2``,
    ``g_value``, ``tilt_deg``, ``azimuth_deg`` (clockwise from north), ``frame_fraction`` and
    ``shading_factor`` (a building config's ``Glazing`` or a :class:`Glass`).
    """
    total = np.zeros(np.shape(ghi), dtype=float)
    if not windows:
        return total
    for win in windows:
        poa = pvlib.irradiance.get_total_irradiance(
            surface_tilt=win.tilt_deg, surface_azimuth=win.azimuth_deg, solar_zenith=apparent_zenith,
            solar_azimuth=azimuth, dni=dni, ghi=ghi, dhi=dhi, albedo=albedo, model="isotropic")["poa_global"]
        poa = np.nan_to_num(np.clip(np.asarray(poa, dtype=float), 0.0, None))
        total = total + win.area_m2 * (1.0 - win.frame_fraction) * win.g_value * win.shading_factor * poa
    return total


def pv_to_ac(p_dc_w: np.ndarray, pdc0: float, eta_nom: float) -> np.ndarray:
    """PV DC → AC power [W] with PVWatts' part-load efficiency curve, clipped at ``eta_nom·pdc0``
    (the inverter's PV converter; a strategy forecasts AC PV with it).

    Thin wrapper around :func:`pvlib.inverter.pvwatts` (Dobos 2014) that returns
    a plain array and never a negative AC power at night (PVWatts' curve goes
    slightly negative at zero input).
    """
    ac = pvlib.inverter.pvwatts(np.asarray(p_dc_w, dtype=float), pdc0, eta_inv_nom=eta_nom)
    return np.clip(np.asarray(ac, dtype=float), 0.0, None)
