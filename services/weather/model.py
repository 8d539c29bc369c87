"""Weather: cloud cover, actual irradiance, air temperature and wind.

Three sources (``WeatherConfig.source``, discriminated by ``type``):

``stochastic``
    A seeded cloud-cover Markov chain on oktas (0 … 8) at a coarse cloud step,
    linearly ramped to the simulation step; clear-sky index from cloud cover by
    Kasten & Czeplak [1]_; GHI = index × the sun's clear-sky GHI, split into DNI
    and DHI by Erbs [2]_; air temperature with seasonal and daily cycles plus
    AR(1) noise; Weibull wind from a Gaussian AR(1) process.
``tmy3``
    A TMY3 file (``pvlib.iotools.read_tmy3``) mapped onto the run's dates.
``csv``
    A plain CSV time series.
``met_norway``, ``open_meteo``, ``pvgis_tmy``, ``epw``
    The services people use and EPW files (``services/weather/sources``, docs/data-sources.md):
    fetched through :mod:`hometwin.fetch` (cached on disk, ``--offline`` from the cache).
    A source without irradiance (MET Norway) gets GHI/DNI/DHI from its cloud cover as the
    stochastic source does.

Everything that does not depend on the sun's signals is computed per chunk
(one day of run steps) and cached, so a step's value never depends on how the
run is cut into windows.  The stochastic processes live on a coarse grid of
absolute time (multiples of ``cloud_step_s``) and are computed in day blocks
from the start of the run, in order, each block drawing from
``counter_rng(seed, block)``; block ``b`` is therefore the same whichever way
it is reached.

References
----------
.. [1] F. Kasten and G. Czeplak, "Solar and terrestrial radiation dependent on
   the amount and type of cloud", Solar Energy 24(2), 177-189, 1980.
.. [2] D. G. Erbs, S. A. Klein and J. A. Duffie, "Estimation of the diffuse
   radiation fraction for hourly, daily and monthly-average global radiation",
   Solar Energy 28(4), 293-302, 1982.
"""

from __future__ import annotations

import io
import math
from typing import Annotated, Any, Literal, Union

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from hometwin.datafiles import DataFileError, checked_column, parse_errors, read_text, shown
from hometwin.element import DataFile, Element, ElementConfig, Role, Signals, Window
from hometwin.chunks import ChunkCache, steps_per_chunk
from hometwin.services.sun.model import day_of_year
from hometwin.lazy import lazy_module
from hometwin.noise import ar1, counter_rng
from hometwin.services.weather.sources import met_norway, open_meteo, typical_year
from hometwin.services.weather.sources.met_norway import MetNorwaySource
from hometwin.services.weather.sources.open_meteo import OpenMeteoSource
from hometwin.services.weather.sources.typical_year import EPWSource, PVGISTMYSource

pvlib = lazy_module("pvlib")
special = lazy_module("scipy.special")

OKTAS = 8
YEAR_S = 365 * 86400  # a typical (TMY) year has 365 days
TROPICAL_YEAR_D = 365.2422
# proposal of the okta chain: a change moves 1, 2 or 3 oktas up or down with these weights
_JUMPS = {1: 0.65, 2: 0.25, 3: 0.10}


# -- physics -------------------------------------------------------------------------------

def clear_sky_index_kasten_czeplak(cloud_cover: np.ndarray) -> np.ndarray:
    """Clear-sky index from cloud cover, Kasten & Czeplak (1980) [1]_.

    Parameters
    ----------
    cloud_cover : array
        [0-1] fraction of the sky covered (oktas / 8).

    Returns
    -------
    array
        [-] GHI / clear-sky GHI = ``1 - 0.75 * cloud_cover**3.4``.
    """
    return 1.0 - 0.75 * np.power(cloud_cover, 3.4)


def cloud_cover_from_index(kt: np.ndarray) -> np.ndarray:
    """Inverse of :func:`clear_sky_index_kasten_czeplak`, clipped to [0, 1].

    Parameters
    ----------
    kt : array
        [-] clear-sky index GHI / clear-sky GHI.

    Returns
    -------
    array
        [0-1] cloud cover.
    """
    return np.power(np.clip((1.0 - kt) / 0.75, 0.0, 1.0), 1.0 / 3.4)


def irradiance_from_clouds(cloud_cover: np.ndarray, ghi_clear: np.ndarray, zenith: np.ndarray,
                           doy: np.ndarray) -> dict[str, np.ndarray]:
    """GHI from cloud cover and clear sky, split into DNI and DHI by Erbs [2]_.

    Parameters
    ----------
    cloud_cover : array
        [0-1] cloud cover.
    ghi_clear : array
        [W m-2] clear-sky GHI.
    zenith : array
        [degrees] true (not refraction-corrected) solar zenith.
    doy : array
        [-] day of year (for the extraterrestrial irradiance in Erbs).

    Returns
    -------
    dict of arrays
        ``ghi``, ``dni``, ``dhi`` [W m-2] with ``ghi = dhi + dni cos(zenith)``.
    """
    ghi = clear_sky_index_kasten_czeplak(cloud_cover) * ghi_clear
    split = pvlib.irradiance.erbs(ghi, zenith, doy)
    return {"ghi": ghi, "dni": np.asarray(split["dni"], dtype=np.float64),
            "dhi": np.asarray(split["dhi"], dtype=np.float64)}


def okta_distribution(mean_cover: float, concentration: float) -> np.ndarray:
    """Climatological distribution of oktas: beta-binomial, U-shaped for small concentration.

    Parameters
    ----------
    mean_cover : float
        [0-1] mean cloud cover.
    concentration : float
        [-] a + b of the beta distribution; below 2 most hours are clear or
        overcast, as observed almost everywhere.

    Returns
    -------
    array of 9 floats
        [-] probability of 0 … 8 oktas.
    """
    a, b = mean_cover * concentration, (1.0 - mean_cover) * concentration
    k = np.arange(OKTAS + 1)
    log_p = (special.gammaln(OKTAS + 1) - special.gammaln(k + 1) - special.gammaln(OKTAS - k + 1)
             + special.betaln(k + a, OKTAS - k + b) - special.betaln(a, b))
    p = np.exp(log_p)
    return p / p.sum()


def okta_transition_matrix(stationary: np.ndarray, change_prob: float) -> np.ndarray:
    """Transition matrix of the okta chain (Metropolis–Hastings on small jumps).

    Proposals move 1, 2 or 3 oktas up or down (weights 0.65 / 0.25 / 0.10) with
    probability ``change_prob`` per cloud step and are accepted with
    ``min(1, p_j / p_i)``, so the chain keeps the climatological distribution
    ``stationary`` exactly and changes in realistic ramps.

    Parameters
    ----------
    stationary : array of 9 floats
        [-] target distribution of oktas.
    change_prob : float
        [-] probability per cloud step of proposing a change.

    Returns
    -------
    array (9, 9)
        [-] ``P[i, j]`` = probability of going from ``i`` to ``j`` oktas.
    """
    n = len(stationary)
    P = np.zeros((n, n))
    for i in range(n):
        for jump, weight in _JUMPS.items():
            for j in (i - jump, i + jump):
                if 0 <= j < n:
                    P[i, j] = change_prob * weight / 2.0 * min(1.0, stationary[j] / stationary[i])
        P[i, i] = 1.0 - P[i].sum()
    return P


def okta_chain(P: np.ndarray, start: int, uniforms: np.ndarray) -> np.ndarray:
    """Run the okta Markov chain: one step per uniform draw.

    Parameters
    ----------
    P : array (9, 9)
        [-] transition matrix.
    start : int
        [okta] state before the first step.
    uniforms : array
        [-] U(0, 1) draws, one per step.

    Returns
    -------
    array of int8
        [okta] the states after each step.
    """
    cum = [list(np.cumsum(row)) for row in P]
    out = np.empty(len(uniforms), dtype=np.int8)
    state = int(start)
    for i, u in enumerate(uniforms.tolist()):
        row = cum[state]
        j = 0
        while j < OKTAS and u >= row[j]:
            j += 1
        state = j
        out[i] = j
    return out


def temperature_cycle(epoch_s: np.ndarray, longitude: float, latitude: float, mean_c: float,
                      seasonal_amplitude_c: float, daily_amplitude_c: float, hour_max: float,
                      warmest_doy_north: float = 200.0) -> np.ndarray:
    """Deterministic air temperature: annual mean + seasonal and daily cosines.

    Parameters
    ----------
    epoch_s : array
        [s] Unix time (UTC).
    longitude, latitude : float
        [degrees]; longitude sets local solar time, the sign of latitude the season.
    mean_c : float
        [°C] annual mean.
    seasonal_amplitude_c : float
        [°C] half the difference between the warmest and coldest day.
    daily_amplitude_c : float
        [°C] half the daily range.
    hour_max : float
        [h] local solar time of the daily maximum.
    warmest_doy_north : float
        [-] day of year of the warmest day in the northern hemisphere (half a
        year later in the southern one).

    Returns
    -------
    array
        [°C] air temperature without weather noise.
    """
    t = np.asarray(epoch_s, dtype=np.float64)
    days = t / 86400.0
    warmest = warmest_doy_north if latitude >= 0 else warmest_doy_north - TROPICAL_YEAR_D / 2
    doy = np.mod(days, TROPICAL_YEAR_D)  # phase of the year; J2000 drift is negligible here
    # 1970-01-01 is day 0 of the year: doy in [0, 365.24)
    seasonal = seasonal_amplitude_c * np.cos(2 * np.pi * (doy - (warmest - 1)) / TROPICAL_YEAR_D)
    solar_hour = np.mod(days * 24.0 + longitude / 15.0, 24.0)
    daily = daily_amplitude_c * np.cos(2 * np.pi * (solar_hour - hour_max) / 24.0)
    return mean_c + seasonal + daily


def weibull_from_normal(z: np.ndarray, mean: float, k: float) -> np.ndarray:
    """Map standard-normal values to a Weibull distribution (probability integral transform).

    Parameters
    ----------
    z : array
        [-] standard normal values.
    mean : float
        [m s-1] mean of the Weibull distribution.
    k : float
        [-] Weibull shape (2 = Rayleigh, typical of surface wind).

    Returns
    -------
    array
        [m s-1] Weibull-distributed wind speed.
    """
    scale = mean / math.gamma(1.0 + 1.0 / k)
    return scale * np.power(-np.log(special.ndtr(-z)), 1.0 / k)


def typical_year_seconds(epoch_s: np.ndarray, utc_offset_h: float) -> np.ndarray:
    """Seconds into a 365-day typical year at the same local month, day and time.

    Parameters
    ----------
    epoch_s : array
        [s] Unix time (UTC).
    utc_offset_h : float
        [h] the typical year's (standard) time zone offset, e.g. -5 for TMY3 of
        North Carolina.

    Returns
    -------
    array
        [s] position in the typical year, 0 = 1 January 00:00 local; 29 February
        of a leap year reads 28 February.
    """
    local = np.asarray(epoch_s, dtype=np.int64) + int(round(utc_offset_h * 3600))
    day = np.floor_divide(local, 86400)
    sec = local - day * 86400
    days = day.astype("datetime64[D]")
    doy0 = (days - days.astype("datetime64[Y]")).astype(np.int64)
    year = days.astype("datetime64[Y]").astype(np.int64) + 1970
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    doy0 = np.where(leap & (doy0 >= 59), np.maximum(doy0 - 1, 58), doy0)
    return doy0 * 86400 + sec


def sample_interval_means(position_s: np.ndarray, values: np.ndarray, interval_s: int, how: str,
                          period_s: int | None = None) -> np.ndarray:
    """Values of consecutive interval averages at arbitrary positions.

    ``values[h]`` is the mean over ``[h*interval_s, (h+1)*interval_s)``.
    ``how="hold"`` returns that mean anywhere in the interval (sums are kept
    exactly); ``how="linear"`` interpolates linearly between interval centres
    (sums are kept over whole periods, the ramps are smooth).

    Parameters
    ----------
    position_s : array
        [s] positions, from the start of the first interval.
    values : array
        interval means.
    interval_s : int
        [s] length of an interval.
    how : {"hold", "linear"}
    period_s : int or None
        [s] wrap around after this time (a typical year).

    Returns
    -------
    array
    """
    pos = np.asarray(position_s, dtype=np.float64)
    if how == "hold":
        idx = np.floor_divide(pos, interval_s).astype(np.int64)
        idx = np.mod(idx, len(values)) if period_s else np.clip(idx, 0, len(values) - 1)
        return values[idx]
    centres = (np.arange(len(values)) + 0.5) * interval_s
    return np.interp(pos, centres, values, period=period_s)


def block_rng(seed: int, block: int) -> np.random.Generator:
    """Random numbers of day block ``block`` (``counter_rng`` keeps blocks' streams disjoint)."""
    return counter_rng(seed, block)


# -- configuration ----------------------------------------------------------------------------

class StochasticSource(ElementConfig):
    """Synthetic weather: okta Markov chain, Kasten–Czeplak, Erbs, seasonal/daily temperature."""

    type: Literal["stochastic"] = "stochastic"
    cloud_step_s: Annotated[int, Field(ge=60, le=3600, description="[s] step of the cloud chain (divides a day)")] = 900
    cloud_cover_mean: Annotated[float, Field(ge=0.05, le=0.95, description="[0-1] climatological mean cloud cover")] = 0.45
    cloud_concentration: Annotated[float, Field(gt=0.05, le=100.0, description=(
        "[-] beta-binomial concentration of the okta distribution; < 2 gives mostly clear or overcast skies"))] = 1.0
    cloud_change_prob: Annotated[float, Field(gt=0.0, le=1.0, description=(
        "[-] probability per cloud step of proposing a change of cloud cover (persistence)"))] = 0.3
    temp_mean_c: Annotated[float | None, Field(ge=-40.0, le=40.0, description=(
        "[°C] annual mean air temperature; null derives it from latitude and altitude"))] = None
    temp_seasonal_amplitude_c: Annotated[float | None, Field(ge=0.0, le=30.0, description=(
        "[°C] half the warmest-to-coldest-season difference; null derives it from latitude"))] = None
    temp_daily_amplitude_c: Annotated[float, Field(ge=0.0, le=15.0, description="[°C] half the daily range")] = 5.0
    temp_hour_max: Annotated[float, Field(ge=0.0, lt=24.0, description="[h] local solar time of the daily maximum")] = 15.0
    temp_noise_std_c: Annotated[float, Field(ge=0.0, le=15.0, description="[°C] standard deviation of weather noise")] = 2.5
    temp_noise_tau_h: Annotated[float, Field(gt=0.0, le=720.0, description="[h] correlation time of weather noise")] = 48.0
    wind_mean_ms: Annotated[float, Field(gt=0.0, le=30.0, description="[m s-1] mean wind speed at 10 m")] = 3.5
    wind_weibull_k: Annotated[float, Field(ge=1.0, le=5.0, description="[-] Weibull shape of wind speed")] = 2.0
    wind_tau_h: Annotated[float, Field(gt=0.0, le=240.0, description="[h] correlation time of wind speed")] = 6.0

    @model_validator(mode="after")
    def _cloud_step_divides_day(self) -> "StochasticSource":
        if 86400 % self.cloud_step_s:
            raise ValueError(f"cloud_step_s must divide a day of 86400 s (got {self.cloud_step_s})")
        return self


class TMY3Source(ElementConfig):
    """A TMY3 file (``pvlib.iotools.read_tmy3``); its typical year repeats on the run's dates.

    TMY3 values are averages over the hour *ending* at their time stamp, in the
    file's local standard time.  ``hold`` gives each step the average of the
    hour it lies in; ``linear`` interpolates between hour centres (half an hour
    before the stamp).  Irradiance is zero while the sun is below the horizon.
    Both keep the file's annual GHI within 0.5 % (the sunrise and sunset hours
    lose their pre-sunrise/post-sunset minutes).
    """

    type: Literal["tmy3"] = "tmy3"
    path: DataFile = Field(description="TMY3 CSV file; relative paths resolve against the home spec's folder")
    interpolation: Literal["linear", "hold"] = Field("linear", description="hourly means → simulation step")


class CSVSource(ElementConfig):
    """A CSV time series: a time column (ISO 8601, UTC or with offset) and ghi, dni, dhi, temp_air.

    Values are taken as samples at their time stamps and interpolated linearly
    (or held) to the step; ``wind_speed`` and ``cloud_cover`` are optional.
    """

    type: Literal["csv"] = "csv"
    path: DataFile = Field(description="CSV file; relative paths resolve against the home spec's folder")
    time_column: str = Field("time", description="name of the time column")
    interpolation: Literal["linear", "hold"] = Field("linear", description="samples → simulation step")
    wind_speed_default_ms: Annotated[float, Field(ge=0.0, le=30.0, description=(
        "[m s-1] wind speed when the file has no wind_speed column"))] = 1.0


WeatherSource = Annotated[Union[StochasticSource, TMY3Source, CSVSource, MetNorwaySource, OpenMeteoSource,
                                PVGISTMYSource, EPWSource], Field(discriminator="type")]


class WeatherConfig(ElementConfig):
    """Where the weather comes from."""

    source: WeatherSource = Field(default_factory=StochasticSource, description=(
        "stochastic, tmy3, csv, epw, or a service: met_norway, open_meteo, pvgis_tmy (docs/data-sources.md)"))


def default_temp_mean_c(latitude: float, altitude_m: float) -> float:
    """[°C] rough annual mean: 27 °C in the tropics, −0.47 K per degree beyond 15°, −4 K per km.

    Fits e.g. Oslo (6 °C), Greensboro (15 °C) and Johannesburg (~14 °C) within a
    few kelvin; set ``temp_mean_c`` for a real site.
    """
    return 27.0 - 0.47 * max(abs(latitude) - 15.0, 0.0) - 0.004 * altitude_m


def default_temp_seasonal_amplitude_c(latitude: float) -> float:
    """[°C] rough seasonal half-range: 1 K at the equator + 0.16 K per degree of latitude."""
    return 1.0 + 0.16 * abs(latitude)


# -- the element ---------------------------------------------------------------------------------

class Weather(Element):
    """Weather at the home: cloud cover, GHI/DNI/DHI, air temperature and wind."""

    kind = "weather"
    role = Role.environment
    runs_ahead = True
    Config = WeatherConfig
    inputs = ("zenith", "apparent_zenith", "ghi_clear")
    outputs = ("cloud_cover", "ghi", "dni", "dhi", "temp_air", "wind_speed")
    description = "Clouds, irradiance, temperature and wind: stochastic, TMY3, CSV, EPW, MET Norway, Open-Meteo, PVGIS."

    def setup(self) -> None:
        src = self.config.source
        self._cache = ChunkCache(self._compute_chunk, steps_per_chunk(self.home.step_s))
        self._file: dict[str, np.ndarray] | None = None
        self._versions: Any = None  # hometwin.published.Versions of a forecast source
        self._request: Any = None
        self._n_docs = 0
        self._as_of: Any = None  # a planner's view: the version every step reads
        self._refreshed = 0.0
        if isinstance(src, StochasticSource):
            self._setup_stochastic(src)
        elif isinstance(src, TMY3Source):
            self._file = read_tmy3_arrays(self.home.resolve_path(src.path, "source.path"))
        elif isinstance(src, EPWSource):
            self._file = typical_year.read_epw_arrays(self.home.resolve_path(src.path, "source.path"))
        elif isinstance(src, CSVSource):
            self._file = read_csv_arrays(self.home.resolve_path(src.path, "source.path"), src.time_column)
            self._check_csv_covers_run()
        else:
            self._file = self._fetch(src)
            if self._versions is not None:
                self._check_versions_cover_run()
            elif "utc_offset_h" not in self._file:
                self._check_csv_covers_run()

    # -- forecasts as published (issue 23 part 2; docs/data-sources.md, "Replays and real time") --
    #: [s] a realtime element asks its source for a newer forecast at most this often (the fetch
    #: itself honours the service's Expires: no request while the cached forecast is fresh).
    REFRESH_S = 60.0

    def _site(self, src: object) -> tuple[float, float]:
        """(latitude, longitude) a web source is asked for: its own, else the home's."""
        h = self.home
        lat = h.latitude if src.latitude is None else src.latitude  # type: ignore[attr-defined]
        lon = h.longitude if src.longitude is None else src.longitude  # type: ignore[attr-defined]
        return lat, lon

    def _run_span(self) -> tuple[float, float]:
        """[Unix s] the start of the run's first and of its last step."""
        h = self.home
        return float(h.epoch_s(0, 1)[0]), float(h.epoch_s(h.n_steps - 1, 1)[0])

    def _forecast_request(self, src: object) -> tuple[Any, str, dict[str, Any], Any] | None:
        """(service, url, params, parse) of a source that publishes successive forecasts (MET
        Norway, Open-Meteo forecast), whose versions the cache keeps; None for the others."""
        h = self.home
        lat, lon = self._site(src)
        if isinstance(src, MetNorwaySource):
            url, params = met_norway.request(src, lat, lon, h.altitude_m)
            return met_norway.SERVICE, url, params, lambda doc: met_norway.parse(doc.json(), met_norway.SERVICE.title)
        if isinstance(src, OpenMeteoSource) and src.mode == "forecast":
            first, last = self._run_span()
            service, url, params = open_meteo.request(src, lat, lon, first, last)
            return service, url, params, lambda doc: open_meteo.parse(doc.json(), service.title)
        return None

    def _read_versions(self) -> None:
        """Every version of the forecast the cache holds (the documents fetched before, by this
        twin or another run at the site; a forecast archive laid into the cache)."""
        from hometwin import fetch
        from hometwin.published import Versions

        service, url, params, parse = self._request
        docs = fetch.cached(service, url, params)
        if docs and (self._versions is None or len(docs) != self._n_docs):
            self._versions = Versions.from_documents(docs, parse)
            self._n_docs = len(docs)
            self._cache.clear()

    def _refresh(self, fetch_new: bool) -> None:
        """Realtime: at most every :attr:`REFRESH_S`, fetch the forecast anew if it expired
        (``fetch_new``: the element's own service; a planner's shadow only re-reads the cache)
        and take up the versions the cache holds now."""
        import time

        now = time.monotonic()
        if self._request is None or now - self._refreshed < self.REFRESH_S:
            return
        self._refreshed = now
        if fetch_new:
            try:
                self._load(self.config.source)
            except Exception as exc:  # noqa: BLE001 - the twin goes on with the forecast it has
                self.log_once(f"forecast refresh failed ({' '.join(str(exc).split())[:300]}); keeping the last one")
        self._read_versions()

    def log_once(self, text: str) -> None:
        import logging

        if text != getattr(self, "_last_log", None):
            self._last_log = text
            logging.getLogger("hometwin.weather").warning("%s: %s", self.name, text)

    def as_of(self, t: float | None) -> Any:
        """A planner's view at ``t`` [Unix s]: from now on every step reads the newest forecast
        published at or before ``t`` (``None``: each step its own newest, as the element).  Returns
        that version's :class:`hometwin.published.Version` (None without versions).  ``ValueError``
        when nothing was published by ``t``."""
        if self._versions is None:
            return None
        if self.home.realtime:
            self._refresh(fetch_new=False)
        if t is None:
            if self._as_of is not None:
                self._as_of = None
                self._cache.clear()
            return None
        version = self._versions.at(t)
        if version is None:
            first = pd.Timestamp(self._versions.first.stamp, unit="s", tz="UTC")
            raise ValueError(f"weather {self.name}: no forecast published by {pd.Timestamp(t, unit='s', tz='UTC')} "
                             f"(the first recorded one was published {first})")
        if self._as_of is None or self._as_of.key != version.key:
            self._as_of = version
            self._cache.clear()
        return version

    def data_version(self) -> Any:
        """What the values depend on besides time: the forecast version a planner's view reads."""
        return None if self._as_of is None else self._as_of.key

    def _check_versions_cover_run(self) -> None:
        """The recorded forecasts must cover the run's first step (a realtime run) or the whole run."""
        h = self.home
        lo, hi = self._versions.span()  # type: ignore[union-attr]
        first, last = self._run_span()
        if lo > first or (hi < last and not h.realtime):
            fmt = lambda s: pd.Timestamp(s, unit="s", tz="UTC")  # noqa: E731
            raise ValueError(f"source {self.config.source.type}: the forecasts cover {fmt(lo)} … {fmt(hi)}, the run "
                             f"needs {fmt(first)} … {fmt(last)}")

    def _load(self, src: object) -> tuple[dict[str, np.ndarray], Any]:
        h = self.home
        lat, lon = self._site(src)
        first, last = self._run_span()
        if isinstance(src, MetNorwaySource):
            return met_norway.load(src, lat, lon, h.altitude_m)
        if isinstance(src, OpenMeteoSource):
            return open_meteo.load(src, lat, lon, first, last)
        return typical_year.load_pvgis(src, lat, lon)  # type: ignore[arg-type]

    def _fetch(self, src: object) -> dict[str, np.ndarray]:
        """The arrays of a web source at the source's position (default: the home's).  A source
        that publishes successive forecasts keeps every version the cache holds (:meth:`_read_versions`)."""
        data, doc = self._load(src)
        self._document = doc  # retrieval and publication times, licence (hometwin.fetch)
        self._request = self._forecast_request(src)
        if self._request is not None:
            self._read_versions()
        return data

    # stochastic: coarse processes computed in day blocks, in order, kept for the run
    def _setup_stochastic(self, src: StochasticSource) -> None:
        h = self.home
        lat = h.latitude
        self._temp_mean = src.temp_mean_c if src.temp_mean_c is not None else default_temp_mean_c(lat, h.altitude_m)
        self._temp_amp = (src.temp_seasonal_amplitude_c if src.temp_seasonal_amplitude_c is not None
                          else default_temp_seasonal_amplitude_c(lat))
        self._pi = okta_distribution(src.cloud_cover_mean, src.cloud_concentration)
        self._P = okta_transition_matrix(self._pi, src.cloud_change_prob)
        self._slot0 = int(h.epoch_s(0, 1)[0]) // src.cloud_step_s - 1  # one slot before the start
        self._block = 86400 // src.cloud_step_s
        self._coarse: dict[str, list[np.ndarray]] = {"okta": [], "temp_noise": [], "wind_z": []}

    def _coarse_block(self, b: int, state: tuple[int, float, float] | None) -> dict[str, np.ndarray]:
        src = self.config.source
        rng = block_rng(self.seed, b)
        B = self._block
        u_start, u = rng.random(), rng.random(B)
        z_temp, z_wind, z_start = rng.standard_normal(B), rng.standard_normal(B), rng.standard_normal(2)
        phi_t = math.exp(-src.cloud_step_s / (src.temp_noise_tau_h * 3600))
        phi_w = math.exp(-src.cloud_step_s / (src.wind_tau_h * 3600))
        if state is None:  # start of the run: draw from the stationary distributions
            okta0 = int(np.searchsorted(np.cumsum(self._pi), u_start, side="right"))
            state = (min(okta0, OKTAS), src.temp_noise_std_c * z_start[0], z_start[1])
        okta = okta_chain(self._P, state[0], u)
        temp_noise = ar1(src.temp_noise_std_c * math.sqrt(1 - phi_t ** 2) * z_temp, phi_t, state[1])
        wind_z = ar1(math.sqrt(1 - phi_w ** 2) * z_wind, phi_w, state[2])
        return {"okta": okta, "temp_noise": temp_noise, "wind_z": wind_z}

    def _coarse_upto(self, slot: int) -> dict[str, np.ndarray]:
        """Coarse processes from ``self._slot0`` through ``slot`` (computing blocks in order)."""
        need_blocks = (slot - self._slot0) // self._block + 1
        chains = self._coarse
        while len(chains["okta"]) < need_blocks:
            state = None
            if chains["okta"]:
                state = (int(chains["okta"][-1][-1]), float(chains["temp_noise"][-1][-1]),
                         float(chains["wind_z"][-1][-1]))
            block = self._coarse_block(len(chains["okta"]), state)
            for key, values in block.items():
                chains[key].append(values)
        return {key: np.concatenate(parts) for key, parts in chains.items()}

    def _compute_stochastic(self, epoch: np.ndarray) -> dict[str, np.ndarray]:
        src = self.config.source
        cs = src.cloud_step_s
        last_slot = int(epoch[-1]) // cs + 1
        coarse = self._coarse_upto(last_slot)
        first = int(epoch[0]) // cs
        a, b = first - self._slot0, last_slot - self._slot0 + 1
        t_slots = (np.arange(first, last_slot + 1, dtype=np.int64) * cs).astype(np.float64)
        t = epoch.astype(np.float64)
        cloud = np.interp(t, t_slots, coarse["okta"][a:b].astype(np.float64) / OKTAS)
        noise = np.interp(t, t_slots, coarse["temp_noise"][a:b])
        wind_z = np.interp(t, t_slots, coarse["wind_z"][a:b])
        h = self.home
        temp = temperature_cycle(epoch, h.longitude, h.latitude, self._temp_mean, self._temp_amp,
                                 src.temp_daily_amplitude_c, src.temp_hour_max) + noise
        wind = weibull_from_normal(wind_z, src.wind_mean_ms, src.wind_weibull_k)
        return {"cloud_cover": cloud, "temp_air": temp, "wind_speed": wind}

    def _compute_versions(self, epoch: np.ndarray) -> dict[str, np.ndarray]:
        """Each step from the newest forecast published by then (or by the planner's ``as_of``)."""
        versions = self._versions
        if self._as_of is not None:
            return self._compute_file(epoch, self._as_of.data)
        idx = versions.index_at(epoch)
        parts = {j: self._compute_file(epoch[idx == j], versions.items[j].data) for j in np.unique(idx)}
        out = {}
        for key in next(iter(parts.values())):
            col = np.empty(len(epoch))
            for j, part in parts.items():
                col[idx == j] = part[key]
            out[key] = col
        return out

    def _compute_file(self, epoch: np.ndarray, data: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        src = self.config.source
        data = self._file if data is None else data
        assert data is not None
        if "utc_offset_h" in data:  # a typical year: TMY3, EPW, PVGIS
            pos = typical_year_seconds(epoch, float(data["utc_offset_h"][0]))
            if "stamp_shift_s" in data:
                pos = np.mod(pos + data["stamp_shift_s"][0], YEAR_S)
            return {key: sample_interval_means(pos, data[key], 3600, src.interpolation, YEAR_S)
                    for key in ("ghi", "dni", "dhi", "temp_air", "wind_speed", "cloud_cover") if key in data}
        t = epoch.astype(np.float64)
        out = {}
        for key in ("ghi", "dni", "dhi", "temp_air", "wind_speed", "cloud_cover"):
            if key not in data:
                continue
            if src.interpolation == "hold":
                idx = np.clip(np.searchsorted(data["epoch_s"], t, side="right") - 1, 0, len(data[key]) - 1)
                out[key] = data[key][idx]
            else:
                out[key] = np.interp(t, data["epoch_s"], data[key])
        if "wind_speed" not in out:
            out["wind_speed"] = np.full(len(t), getattr(src, "wind_speed_default_ms", 1.0))
        return out

    def _compute_chunk(self, c: int) -> dict[str, np.ndarray]:
        epoch = self.home.epoch_s(c * self._cache.length, self._cache.length)
        if self._file is None:
            return self._compute_stochastic(epoch)
        if self._versions is not None and (len(self._versions) > 1 or self._as_of is not None):
            return self._compute_versions(epoch)
        return self._compute_file(epoch)

    def _check_csv_covers_run(self) -> None:
        data, h = self._file, self.home
        assert data is not None
        first, last = int(h.epoch_s(0, 1)[0]), int(h.epoch_s(h.n_steps - 1, 1)[0])
        if data["epoch_s"][0] > first or data["epoch_s"][-1] < last:
            src = self.config.source
            span = f"{pd.Timestamp(data['epoch_s'][0], unit='s', tz='UTC')} … {pd.Timestamp(data['epoch_s'][-1], unit='s', tz='UTC')}"
            where = (self.home.resolve_path(src.path, 'source.path') if isinstance(src, CSVSource)
                     else f"source {src.type}")
            raise ValueError(f"{where}: covers {span}, the run needs "
                             f"{pd.Timestamp(first, unit='s', tz='UTC')} … {pd.Timestamp(last, unit='s', tz='UTC')}")

    def signals(self, w: Window, inputs: Signals) -> dict[str, np.ndarray]:
        if self.home.realtime and self._as_of is None:
            self._refresh(fetch_new=True)
        out = self._cache.window(w.i0, w.n)
        if "ghi" not in out:  # stochastic, or a forecast of clouds without irradiance (MET Norway)
            out.update(irradiance_from_clouds(out["cloud_cover"], np.asarray(inputs["ghi_clear"]),
                                              np.asarray(inputs["zenith"]), day_of_year(w.epoch_s)))
        else:
            # interpolated hourly means spill light into the night: no irradiance with the sun down
            night = np.asarray(inputs["apparent_zenith"]) >= 90.0
            for key in ("ghi", "dni", "dhi"):
                out[key] = np.where(night, 0.0, out[key])
        if "cloud_cover" not in out:
            ghi_clear = np.asarray(inputs["ghi_clear"])
            with np.errstate(divide="ignore", invalid="ignore"):
                derived = cloud_cover_from_index(out["ghi"] / ghi_clear)
            out["cloud_cover"] = np.where(ghi_clear > 20.0, derived, 0.5)  # unknown at night
        return {key: out[key] for key in self.outputs}


# -- readers: foreign columns → glossary names, once, at the edge ---------------------------------

#: Plausible ranges of weather file values: irradiance [W m-2] below twice the solar constant,
#: air temperature [°C] beyond the records (−89 °C, 57 °C), wind [m s-1] beyond any gust
#: measured on the ground, cloud cover [0-1].  Outside them a file is corrupt or a trap.
_FILE_RANGES = {"ghi": (0.0, 2000.0), "dni": (0.0, 2000.0), "dhi": (0.0, 2000.0), "temp_air": (-100.0, 100.0),
                "wind_speed": (0.0, 120.0), "cloud_cover": (0.0, 1.0)}


def read_tmy3_arrays(path: str) -> dict[str, np.ndarray]:
    """The 8760 hourly rows of a TMY3 file in file order, glossary names, plus its UTC offset.

    Parameters
    ----------
    path : str
        TMY3 CSV file.

    Returns
    -------
    dict of arrays
        ``ghi``, ``dni``, ``dhi`` [W m-2], ``temp_air`` [°C], ``wind_speed`` [m s-1],
        ``cloud_cover`` [0-1] (total sky cover), ``utc_offset_h`` [h] (one value).
    """
    text = read_text(path, "TMY3 file")  # bounded, regular files only (hometwin.datafiles)
    with parse_errors(path, "TMY3 file"):  # pvlib raises many kinds on a malformed file
        data, meta = pvlib.iotools.read_tmy3(io.StringIO(text), map_variables=True)
        offset = float(meta["TZ"])
    if not -14.0 <= offset <= 14.0:
        raise DataFileError(f"TMY3 file {shown(path)}: line 1: the UTC offset is outside [-14, 14] h")
    out = {}
    for key in ("ghi", "dni", "dhi", "temp_air", "wind_speed"):
        if key not in data:
            raise DataFileError(f"{path}: TMY3 file has no column for {key!r}")
        lo, hi = _FILE_RANGES[key]
        out[key] = checked_column(data, key, path, "TMY3 file", lo, hi, header_lines=2)
    if len(out["ghi"]) != 8760:
        raise DataFileError(f"{path}: a TMY3 file has 8760 hourly rows (found {len(out['ghi'])})")
    cloud = data.get("TotCld (tenths)")
    out["cloud_cover"] = (np.clip(cloud.to_numpy(dtype=np.float64) / 10.0, 0.0, 1.0) if cloud is not None
                          else np.full(8760, 0.5))
    out["utc_offset_h"] = np.array([offset])
    return out


def read_csv_arrays(path: str, time_column: str = "time") -> dict[str, np.ndarray]:
    """A weather CSV as arrays: ``epoch_s`` [s] and the glossary columns present.

    Parameters
    ----------
    path : str
        CSV file with a time column (ISO 8601; UTC, or with an offset) and the
        columns ``ghi``, ``dni``, ``dhi`` [W m-2], ``temp_air`` [°C], optionally
        ``wind_speed`` [m s-1] and ``cloud_cover`` [0-1].
    time_column : str
        Name of the time column.

    Returns
    -------
    dict of arrays, sorted by time.
    """
    what = "weather CSV file"
    text = read_text(path, what)  # bounded, regular files only (hometwin.datafiles)
    with parse_errors(path, what):
        frame = pd.read_csv(io.StringIO(text))
    required = (time_column, "ghi", "dni", "dhi", "temp_air")
    for col in required:
        if col not in frame.columns:
            has = ", ".join(shown(c) for c in list(frame.columns)[:30])
            raise DataFileError(f"{path}: missing column {shown(col)} (has: {has})")
    try:
        times = pd.to_datetime(frame[time_column], utc=True, format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        raise DataFileError(f"{path}: column {shown(time_column)} is not ISO 8601 time") from None
    order = np.argsort(times.to_numpy(), kind="stable")
    seconds = (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)
    out = {"epoch_s": seconds[order]}
    for col in ("ghi", "dni", "dhi", "temp_air", "wind_speed", "cloud_cover"):
        if col in frame.columns:
            lo, hi = _FILE_RANGES[col]
            out[col] = checked_column(frame, col, path, what, lo, hi)[order]
    return out

