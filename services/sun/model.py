"""The sun: solar position and clear-sky irradiance (pvlib).

Physics are pure functions on numpy arrays of Unix seconds; the :class:`Sun`
element computes them for one day of run steps at a time (a *chunk*) and serves
windows from a small cache, so a step's values never depend on how the run is
cut into windows.

References
----------
.. [1] I. Reda and A. Andreas, "Solar position algorithm for solar radiation
   applications", Solar Energy 76(5), 577-589, 2004 (NREL SPA; pvlib.spa).
.. [2] P. Ineichen and R. Perez, "A new airmass independent formulation for the
   Linke turbidity coefficient", Solar Energy 73(3), 151-157, 2002.
"""

from __future__ import annotations

import calendar
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from hometwin.element import Element, ElementConfig, Role, Signals, Window
from hometwin.chunks import ChunkCache, steps_per_chunk
from hometwin.lazy import lazy_module

pvlib = lazy_module("pvlib")
spa = lazy_module("pvlib.spa")

#: Seconds between the points where SPA's slowly varying terms (heliocentric
#: position, nutation, right ascension, declination) are evaluated exactly; in
#: between they are interpolated linearly (error < 1e-6 degrees, see tests).
SPA_COARSE_S = 3600
_ATMOS_REFRACT_DEG = 0.5667  # SPA's refraction at sunrise/sunset, as pvlib


def day_of_year(epoch_s: np.ndarray) -> np.ndarray:
    """Day of the year (1 … 366) of UTC Unix seconds.

    Parameters
    ----------
    epoch_s : array of int or float
        [s] Unix time (UTC).

    Returns
    -------
    doy : array of int
        [-] day of year in UTC, as ``pandas.DatetimeIndex.dayofyear``.
    """
    days = np.floor_divide(np.asarray(epoch_s, dtype=np.int64), 86400).astype("datetime64[D]")
    years = days.astype("datetime64[Y]")
    return (days - years).astype(np.int64) + 1


def is_leap_year(epoch_s: np.ndarray) -> np.ndarray:
    """True where the UTC year of ``epoch_s`` [s] is a leap year."""
    days = np.floor_divide(np.asarray(epoch_s, dtype=np.int64), 86400).astype("datetime64[D]")
    year = days.astype("datetime64[Y]").astype(np.int64) + 1970
    return (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))


def spa_slow_terms(tc: np.ndarray) -> dict[str, np.ndarray]:
    """The slowly varying SPA terms [1]_ on a grid of times (the orbit part of pvlib.spa).

    Parameters
    ----------
    tc : array
        [s] Unix time (UTC) of the grid points.

    Returns
    -------
    dict of arrays
        ``t`` [s] (the grid), Earth-sun distance ``R`` [AU], nutation in
        longitude ``delta_psi`` [degrees], true obliquity ``epsilon`` [degrees],
        geocentric right ascension ``alpha`` [degrees, 0-360], declination
        ``delta`` [degrees] and the sun's mean longitude ``m`` [degrees].
    """
    tc = np.asarray(tc, dtype=np.float64)
    year, month = _year_month(tc[len(tc) // 2])
    delta_t = float(spa.calculate_deltat(year, month))
    jde = spa.julian_ephemeris_day(spa.julian_day(tc), delta_t)
    jce = spa.julian_ephemeris_century(jde)
    jme = spa.julian_ephemeris_millennium(jce)
    R = spa.heliocentric_radius_vector(jme)
    Theta = spa.geocentric_longitude(spa.heliocentric_longitude(jme))
    beta = spa.geocentric_latitude(spa.heliocentric_latitude(jme))
    nut = np.empty((2, len(tc)))
    spa.longitude_obliquity_nutation(jce, spa.mean_elongation(jce), spa.mean_anomaly_sun(jce),
                                     spa.mean_anomaly_moon(jce), spa.moon_argument_latitude(jce),
                                     spa.moon_ascending_longitude(jce), nut)
    delta_psi = nut[0]
    epsilon = spa.true_ecliptic_obliquity(spa.mean_ecliptic_obliquity(jme), nut[1])
    lamd = spa.apparent_sun_longitude(Theta, delta_psi, spa.aberration_correction(R))
    return {"t": tc, "R": R, "delta_psi": delta_psi, "epsilon": epsilon,
            "alpha": spa.geocentric_sun_right_ascension(lamd, epsilon, beta),
            "delta": spa.geocentric_sun_declination(lamd, epsilon, beta), "m": spa.sun_mean_longitude(jme)}


def coarse_grid(t_first: float, t_last: float, coarse_s: int = SPA_COARSE_S) -> np.ndarray:
    """[s] Points every ``coarse_s`` of absolute time that bracket ``t_first … t_last``."""
    first = np.floor(t_first / coarse_s) * coarse_s
    last = np.floor(t_last / coarse_s) * coarse_s + coarse_s
    return np.arange(first, last + 0.5 * coarse_s, coarse_s)


def solar_position_spa(epoch_s: np.ndarray, latitude: float, longitude: float, altitude_m: float = 0.0,
                       temp_air: float = 12.0, slow: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Solar position by NREL SPA [1]_, built from ``pvlib.spa``'s own functions.

    The Earth-orbit terms of SPA (heliocentric position, nutation, the sun's
    geocentric right ascension and declination, Earth-sun distance) change
    slowly; they are evaluated exactly on a grid of absolute time every
    ``SPA_COARSE_S`` seconds (:func:`spa_slow_terms`) and interpolated
    linearly.  Sidereal time, hour angle, parallax, refraction, zenith and
    azimuth are evaluated at every time.  This agrees with
    ``pvlib.spa.solar_position`` to better than 1e-4 degrees and, with ``slow``
    computed once for many days, is several times faster for minute steps.

    Parameters
    ----------
    epoch_s : array of float
        [s] Unix time (UTC), increasing.
    latitude, longitude : float
        [degrees] north and east positive.
    altitude_m : float
        [m] above sea level; sets the pressure for refraction (``pvlib.atmosphere.alt2pres``).
    temp_air : float
        [°C] mean air temperature for refraction (pvlib's default 12 °C).
    slow : dict of arrays, optional
        :func:`spa_slow_terms` on a grid that brackets ``epoch_s``; computed
        here when not given.

    Returns
    -------
    dict of arrays
        ``apparent_zenith``, ``zenith``, ``azimuth`` [degrees] (azimuth clockwise
        from north) and ``equation_of_time`` [minutes].
    """
    t = np.asarray(epoch_s, dtype=np.float64)
    if slow is None:
        slow = spa_slow_terms(coarse_grid(t[0], t[-1]))
    tc = slow["t"]

    def at(values: np.ndarray) -> np.ndarray:
        return np.interp(t, tc, values)

    R_t, dpsi_t, eps_t, delta_t_ = at(slow["R"]), at(slow["delta_psi"]), at(slow["epsilon"]), at(slow["delta"])
    alpha_t = at(np.unwrap(slow["alpha"], period=360.0)) % 360.0
    # fast terms at every time (the second half of pvlib.spa.solar_position_numpy)
    jd = spa.julian_day(t)
    jc = spa.julian_century(jd)
    v = spa.apparent_sidereal_time(spa.mean_sidereal_time(jd, jc), dpsi_t, eps_t)
    H = spa.local_hour_angle(v, longitude, alpha_t)
    xi = spa.equatorial_horizontal_parallax(R_t)
    u = spa.uterm(latitude)
    x = spa.xterm(u, latitude, altitude_m)
    y = spa.yterm(u, latitude, altitude_m)
    delta_alpha = spa.parallax_sun_right_ascension(x, xi, H, delta_t_)
    delta_prime = spa.topocentric_sun_declination(delta_t_, x, y, xi, delta_alpha, H)
    H_prime = spa.topocentric_local_hour_angle(H, delta_alpha)
    e0 = spa.topocentric_elevation_angle_without_atmosphere(latitude, delta_prime, H_prime)
    pressure_mbar = pvlib.atmosphere.alt2pres(altitude_m) / 100.0
    delta_e = spa.atmospheric_refraction_correction(pressure_mbar, temp_air, e0, _ATMOS_REFRACT_DEG)
    e = spa.topocentric_elevation_angle(e0, delta_e)
    azimuth = spa.topocentric_azimuth_angle(spa.topocentric_astronomers_azimuth(H_prime, delta_prime, latitude))
    eot = spa.equation_of_time(at(slow["m"]), alpha_t, dpsi_t, eps_t)
    return {"apparent_zenith": 90.0 - e, "zenith": 90.0 - e0, "azimuth": azimuth, "equation_of_time": eot}


class SlowTermsCache:
    """:func:`spa_slow_terms` in blocks of ``block_days`` of absolute time, cached (bounded).

    One call per block instead of one per chunk: the per-call cost of SPA's
    nutation and heliocentric series dominates for a day of hourly points.
    """

    def __init__(self, block_days: int = 32, keep: int = 4):
        self.block_s = block_days * 86400
        self._blocks = ChunkCache(self._compute, 1, keep)

    def _compute(self, k: int) -> dict[str, np.ndarray]:
        tc = np.arange(k * self.block_s, (k + 1) * self.block_s + 1, SPA_COARSE_S, dtype=np.float64)
        return spa_slow_terms(tc)

    def bracket(self, t_first: float, t_last: float) -> dict[str, np.ndarray]:
        """Slow terms on the blocks that bracket ``t_first … t_last`` [s]."""
        k0, k1 = int(t_first // self.block_s), int(t_last // self.block_s)
        parts = [self._blocks.chunk(k) for k in range(k0, k1 + 1)]
        if len(parts) == 1:
            return parts[0]
        # neighbouring blocks share their boundary point: keep it once
        return {key: np.concatenate([parts[0][key]] + [p[key][1:] for p in parts[1:]]) for key in parts[0]}


def _year_month(epoch_s: float) -> tuple[int, int]:
    ts = pd.Timestamp(int(epoch_s), unit="s")
    return ts.year, ts.month


def linke_turbidity_monthly(latitude: float, longitude: float) -> np.ndarray:
    """Monthly Linke turbidity [-] at a place, from pvlib's bundled climatology.

    Parameters
    ----------
    latitude, longitude : float
        [degrees] north and east positive.

    Returns
    -------
    array of 12 floats
        [-] Linke turbidity of January … December (``pvlib.clearsky.lookup_linke_turbidity``).
    """
    mid_months = pd.DatetimeIndex([pd.Timestamp(2015, m, 15, tz="UTC") for m in range(1, 13)])
    lt = pvlib.clearsky.lookup_linke_turbidity(mid_months, latitude, longitude, interp_turbidity=False)
    return np.asarray(lt, dtype=np.float64)


def _month_middles(year: int) -> np.ndarray:
    # as pvlib.clearsky._calendar_month_middles: mid-month day of year, with Dec before and Jan after
    mdays = np.array(calendar.mdays[1:], dtype=np.float64)
    ydays = 365.0
    if calendar.isleap(year):
        mdays[1] += 1
        ydays = 366.0
    return np.concatenate([[-calendar.mdays[-1] / 2.0], np.cumsum(mdays) - mdays / 2.0,
                           [ydays + calendar.mdays[1] / 2.0]])


_MIDDLES_LEAP = _month_middles(2016)
_MIDDLES_NOLEAP = _month_middles(2015)


def linke_turbidity_daily(monthly: np.ndarray, epoch_s: np.ndarray) -> np.ndarray:
    """Monthly Linke turbidity interpolated to the UTC day of year, as pvlib does.

    Parameters
    ----------
    monthly : array of 12 floats
        [-] Linke turbidity of January … December (mid-month values).
    epoch_s : array
        [s] Unix time (UTC).

    Returns
    -------
    array
        [-] Linke turbidity, linear in the day of year between month middles
        (``pvlib.clearsky.lookup_linke_turbidity(..., interp_turbidity=True)``).
    """
    values = np.concatenate([[monthly[-1]], monthly, [monthly[0]]])
    doy = day_of_year(epoch_s)
    return np.where(is_leap_year(epoch_s), np.interp(doy, _MIDDLES_LEAP, values),
                    np.interp(doy, _MIDDLES_NOLEAP, values))


def clear_sky_ineichen(apparent_zenith: np.ndarray, dni_extra: np.ndarray, linke_turbidity: np.ndarray,
                       altitude_m: float = 0.0) -> dict[str, np.ndarray]:
    """Ineichen–Perez clear-sky irradiance [2]_ (``pvlib.clearsky.ineichen``).

    Parameters
    ----------
    apparent_zenith : array
        [degrees] refraction-corrected solar zenith.
    dni_extra : array
        [W m-2] extraterrestrial normal irradiance.
    linke_turbidity : array or float
        [-] Linke turbidity.
    altitude_m : float
        [m] site altitude (pressure for the absolute airmass).

    Returns
    -------
    dict of arrays
        ``ghi_clear``, ``dni_clear``, ``dhi_clear`` [W m-2], zero with the sun down.
    """
    am_rel = pvlib.atmosphere.get_relative_airmass(apparent_zenith)  # kastenyoung1989, as Location
    am_abs = pvlib.atmosphere.get_absolute_airmass(am_rel, pvlib.atmosphere.alt2pres(altitude_m))
    with np.errstate(divide="ignore", invalid="ignore"):  # night: pvlib divides by airmass NaN
        cs = pvlib.clearsky.ineichen(apparent_zenith, am_abs, linke_turbidity, altitude=altitude_m,
                                     dni_extra=dni_extra)
    return {"ghi_clear": np.asarray(cs["ghi"], dtype=np.float64),
            "dni_clear": np.asarray(cs["dni"], dtype=np.float64),
            "dhi_clear": np.asarray(cs["dhi"], dtype=np.float64)}


def extra_radiation(epoch_s: np.ndarray) -> np.ndarray:
    """Extraterrestrial normal irradiance [W m-2] by Spencer (1971), of the UTC day of year.

    ``pvlib.irradiance.get_extra_radiation`` is evaluated once per distinct day.
    """
    days, index = np.unique(day_of_year(epoch_s), return_inverse=True)
    per_day = np.asarray(pvlib.irradiance.get_extra_radiation(days.astype(np.float64)), dtype=np.float64)
    return per_day[index]


def sun_signals(epoch_s: np.ndarray, latitude: float, longitude: float, altitude_m: float,
                linke_monthly: np.ndarray | None, linke_fixed: float | None = None,
                slow: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """All sun signals for an array of times (one chunk).

    Parameters
    ----------
    epoch_s : array
        [s] Unix time (UTC) of each step.
    latitude, longitude : float
        [degrees].
    altitude_m : float
        [m].
    linke_monthly : array of 12 floats or None
        [-] monthly Linke turbidity (used when ``linke_fixed`` is None).
    linke_fixed : float or None
        [-] constant Linke turbidity.
    slow : dict of arrays, optional
        SPA's slow terms bracketing ``epoch_s`` (see :func:`solar_position_spa`).

    Returns
    -------
    dict of arrays
        ``zenith``, ``apparent_zenith``, ``azimuth`` [degrees], ``dni_extra``,
        ``ghi_clear``, ``dni_clear``, ``dhi_clear`` [W m-2].
    """
    pos = solar_position_spa(epoch_s, latitude, longitude, altitude_m, slow=slow)
    dni_extra = extra_radiation(epoch_s)
    linke = linke_fixed if linke_fixed is not None else linke_turbidity_daily(linke_monthly, epoch_s)
    cs = clear_sky_ineichen(pos["apparent_zenith"], dni_extra, linke, altitude_m)
    return {"zenith": pos["zenith"], "apparent_zenith": pos["apparent_zenith"], "azimuth": pos["azimuth"],
            "dni_extra": dni_extra, **cs}


class SunConfig(ElementConfig):
    """Clear-sky options of the sun."""

    linke_turbidity: Annotated[float | None, Field(
        None, gt=0.5, le=10.0,
        description="[-] constant Linke turbidity; null looks it up in pvlib's monthly climatology")]
    solar_position_method: Literal["spa"] = Field(
        "spa", description="solar position algorithm: NREL SPA (pvlib.spa), hourly orbit terms")


class Sun(Element):
    """The sun: solar position and Ineichen clear-sky irradiance at the home."""

    kind = "sun"
    role = Role.environment
    runs_ahead = True
    Config = SunConfig
    outputs = ("zenith", "apparent_zenith", "azimuth", "dni_extra", "ghi_clear", "dni_clear", "dhi_clear")
    description = "Solar position (NREL SPA) and clear-sky irradiance (Ineichen, pvlib Linke turbidity)."

    def setup(self) -> None:
        cfg = self.config
        self._linke_monthly = (None if cfg.linke_turbidity is not None
                               else linke_turbidity_monthly(self.home.latitude, self.home.longitude))
        self._cache = ChunkCache(self._compute_chunk, steps_per_chunk(self.home.step_s))
        self._slow = SlowTermsCache()

    def _compute_chunk(self, c: int) -> dict[str, np.ndarray]:
        h = self.home
        epoch = h.epoch_s(c * self._cache.length, self._cache.length)
        slow = self._slow.bracket(float(epoch[0]), float(epoch[-1]))
        return sun_signals(epoch, h.latitude, h.longitude, h.altitude_m, self._linke_monthly,
                           self.config.linke_turbidity, slow)

    def signals(self, w: Window, inputs: Signals) -> dict[str, np.ndarray]:
        return self._cache.window(w.i0, w.n, self.outputs)
