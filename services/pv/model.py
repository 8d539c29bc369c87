"""A PV array: transposition, IAM, SAPM cell temperature and PVWatts DC (pvlib).

The chain is pvlib's ModelChain with the PVWatts models, written out as one
pure function (:func:`pvwatts_array_dc`) on numpy arrays:

1. plane-of-array irradiance, ``pvlib.irradiance.get_total_irradiance``
   (Hay–Davies by default);
2. the physical incidence-angle modifier on the beam part (as PVWatts);
3. cell temperature by the SAPM model from the POA global irradiance;
4. ``pvlib.pvsystem.pvwatts_dc`` and the PVWatts system losses (a percentage).

The element offers the DC energy per step (J, positive); the inverter turns it
into AC.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from hometwin.element import Element, ElementConfig, Role, Signals, Window
from hometwin.lazy import lazy_module

pvlib = lazy_module("pvlib")

TemperatureModel = Literal["open_rack_glass_glass", "close_mount_glass_glass",
                           "open_rack_glass_polymer", "insulated_back_glass_polymer"]


def pvwatts_array_dc(ghi: np.ndarray, dni: np.ndarray, dhi: np.ndarray, temp_air: np.ndarray,
                     wind_speed: np.ndarray, apparent_zenith: np.ndarray, azimuth: np.ndarray,
                     dni_extra: np.ndarray, *, pdc0_w: float, tilt_deg: float, azimuth_deg: float,
                     gamma_pdc: float = -0.0037, losses_pct: float = 14.0,
                     temperature_model: str = "open_rack_glass_polymer", albedo: float = 0.2,
                     transposition: str = "haydavies", iam: bool = True) -> dict[str, np.ndarray]:
    """DC power of one PV array by the PVWatts chain.

    Parameters
    ----------
    ghi, dni, dhi : array
        [W m-2] global horizontal, direct normal, diffuse horizontal irradiance.
    temp_air : array
        [°C] air temperature.
    wind_speed : array
        [m s-1] wind speed.
    apparent_zenith, azimuth : array
        [degrees] solar position (azimuth clockwise from north).
    dni_extra : array
        [W m-2] extraterrestrial normal irradiance.
    pdc0_w : float
        [W] DC nameplate at 1000 W m-2 and 25 °C.
    tilt_deg, azimuth_deg : float
        [degrees] array tilt from horizontal and azimuth (pvlib: 180 = south).
    gamma_pdc : float
        [1/°C] temperature coefficient of power.
    losses_pct : float
        [%] PVWatts system losses (soiling, wiring, mismatch …).
    temperature_model : str
        SAPM parameter set (``pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS['sapm']``).
    albedo : float
        [0-1] ground reflectance.
    transposition : {"haydavies", "isotropic", "perez"}
        sky-diffuse model of ``pvlib.irradiance.get_total_irradiance``.
    iam : bool
        apply the physical incidence-angle modifier to the beam.

    Returns
    -------
    dict of arrays
        ``p_dc`` [W] (after losses, >= 0), ``poa_global`` [W m-2],
        ``effective_irradiance`` [W m-2], ``temp_cell`` [°C].
    """
    airmass = None
    if transposition == "perez":
        airmass = pvlib.atmosphere.get_relative_airmass(apparent_zenith)
    with np.errstate(invalid="ignore", divide="ignore"):
        poa = pvlib.irradiance.get_total_irradiance(
            tilt_deg, azimuth_deg, apparent_zenith, azimuth, dni, ghi, dhi, dni_extra=dni_extra,
            airmass=airmass, albedo=albedo, model=transposition)
        poa_direct = np.nan_to_num(np.asarray(poa["poa_direct"], dtype=np.float64))
        poa_diffuse = np.nan_to_num(np.asarray(poa["poa_diffuse"], dtype=np.float64))
        if iam:
            aoi = pvlib.irradiance.aoi(tilt_deg, azimuth_deg, apparent_zenith, azimuth)
            poa_direct = poa_direct * np.nan_to_num(pvlib.iam.physical(aoi))
    poa_global = np.nan_to_num(np.asarray(poa["poa_global"], dtype=np.float64))
    effective = poa_direct + poa_diffuse
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"][temperature_model]
    temp_cell = pvlib.temperature.sapm_cell(poa_global, temp_air, wind_speed, **params)
    p_dc = pvlib.pvsystem.pvwatts_dc(effective, temp_cell, pdc0_w, gamma_pdc)
    p_dc = np.maximum(np.asarray(p_dc, dtype=np.float64) * (1.0 - losses_pct / 100.0), 0.0)
    return {"p_dc": p_dc, "poa_global": poa_global, "effective_irradiance": effective,
            "temp_cell": np.asarray(temp_cell, dtype=np.float64)}


class PVArrayConfig(ElementConfig):
    """One PV array (several arrays = several elements)."""

    capacity_kwp: Annotated[float, Field(gt=0.0, le=10000.0, description="[kWp] DC nameplate (STC)")] = 5.0
    tilt_deg: Annotated[float, Field(ge=0.0, le=90.0, description="[degrees] tilt from horizontal")] = 30.0
    azimuth_deg: Annotated[float, Field(ge=0.0, le=360.0, description=(
        "[degrees] facing, clockwise from north (180 = south; a southern-hemisphere array faces 0)"))] = 180.0
    losses_pct: Annotated[float, Field(ge=0.0, lt=100.0, description="[%] PVWatts system losses")] = 14.0
    gamma_pdc: Annotated[float, Field(ge=-0.02, le=0.0, description="[1/°C] temperature coefficient of power")] = -0.0037
    temperature_model: TemperatureModel = Field("open_rack_glass_polymer", description="SAPM cell temperature parameters")
    albedo: Annotated[float, Field(ge=0.0, le=1.0, description="[0-1] ground reflectance")] = 0.2
    transposition: Literal["haydavies", "isotropic", "perez"] = Field("haydavies", description="sky-diffuse model")
    iam: bool = Field(True, description="physical incidence-angle modifier on the beam (as PVWatts)")


class PVArray(Element):
    """A PV array: offers its DC energy per step (J, positive) to the inverter."""

    kind = "pv"
    role = Role.source
    runs_ahead = True
    Config = PVArrayConfig
    inputs = ("ghi", "dni", "dhi", "temp_air", "wind_speed", "apparent_zenith", "azimuth", "dni_extra")
    description = "PV array: pvlib transposition, SAPM cell temperature and PVWatts DC."

    def setup(self) -> None:
        self._offered = np.zeros(0)
        self._offered_i0 = -1
        self.state.setdefault("energy_dc_j", 0.0)
        self.state.setdefault("offered_j", 0.0)
        self.state.setdefault("curtailed_j", 0.0)
        self.state.setdefault("power_w", 0.0)
        self.state.setdefault("offered_power_w", 0.0)

    def dc_power(self, signals: Signals) -> dict[str, np.ndarray]:
        """The PVWatts chain on one window's signals (see :func:`pvwatts_array_dc`)."""
        cfg = self.config
        args = {k: np.asarray(signals[k], dtype=np.float64) for k in self.inputs}
        return pvwatts_array_dc(**args, pdc0_w=cfg.capacity_kwp * 1000.0, tilt_deg=cfg.tilt_deg,
                                azimuth_deg=cfg.azimuth_deg, gamma_pdc=cfg.gamma_pdc,
                                losses_pct=cfg.losses_pct, temperature_model=cfg.temperature_model,
                                albedo=cfg.albedo, transposition=cfg.transposition, iam=cfg.iam)

    def request(self, w: Window, signals: Signals) -> np.ndarray:
        offered = self.dc_power(signals)["p_dc"] * w.dt_s
        self._offered, self._offered_i0 = offered, w.i0
        return offered.copy()

    def settle(self, w: Window, k: int, served: np.ndarray) -> None:
        served = np.asarray(served[:k + 1], dtype=np.float64)
        j = w.i0 - self._offered_i0  # > 0: a later part of the window it offered for (a chunk settled in parts)
        offered = self._offered[j:j + k + 1] if 0 <= j and len(self._offered) > j + k else served
        st = self.state
        st["energy_dc_j"] += float(served.sum())
        st["offered_j"] += float(offered.sum())
        st["curtailed_j"] += float((offered - served).sum())
        st["power_w"] = float(served[-1]) / w.dt_s
        st["offered_power_w"] = float(offered[-1]) / w.dt_s

    def telemetry(self) -> dict[str, float]:
        return {"power_w": self.state["power_w"], "offered_power_w": self.state["offered_power_w"],
                "energy_dc_j": self.state["energy_dc_j"], "curtailed_j": self.state["curtailed_j"]}
