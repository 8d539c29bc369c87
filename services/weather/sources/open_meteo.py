"""Open-Meteo: forecast (``/v1/forecast``) and historical weather (``/v1/archive``, ERA5, 1940 on).

Open-Meteo's data are CC BY 4.0 ("Weather data by Open-Meteo.com"); the free API is for
non-commercial use, about 10,000 calls a day (https://open-meteo.com/en/terms).  The answer is
JSON, either ``hourly`` or ``minutely_15`` blocks with a ``time`` column (ISO local time without
an offset, shifted by ``utc_offset_seconds``, or Unix seconds with ``timeformat=unixtime``) and
units in ``*_units``.  Radiation names without ``_instant`` are means over the preceding
interval (Open-Meteo's docs): their samples are placed at the interval's centre.

The official ``openmeteo-requests`` client speaks Open-Meteo's FlatBuffers format (and brings
its own HTTP cache); the JSON form keeps one parser for live answers and recorded ones, and
fetches through :mod:`hometwin.fetch`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from hometwin.fetch import Document, Service, fetch
from hometwin.services.weather.sources import WebSource

FORECAST_URL = "https://api.open-meteo.com/v1/forecast"
ARCHIVE_URL = "https://archive-api.open-meteo.com/v1/archive"
SERVICE = Service(
    name="open_meteo", title="Open-Meteo (open-meteo.com)", host="api.open-meteo.com",
    licence="Weather data by Open-Meteo.com (https://open-meteo.com/), CC BY 4.0; terms: https://open-meteo.com/en/terms",
    min_interval_s=1.0)
ARCHIVE = Service(name="open_meteo_archive", title="Open-Meteo historical weather (open-meteo.com)",
                  host="archive-api.open-meteo.com", licence=SERVICE.licence, min_interval_s=1.0)
HOURLY = ("temperature_2m", "wind_speed_10m", "cloud_cover", "shortwave_radiation", "direct_normal_irradiance",
          "diffuse_radiation")
#: Open-Meteo name → (glossary name); ``_instant`` variants are samples, the others interval means.
_NAMES = {"temperature_2m": "temp_air", "wind_speed_10m": "wind_speed", "cloud_cover": "cloud_cover",
          "shortwave_radiation": "ghi", "direct_normal_irradiance": "dni", "diffuse_radiation": "dhi"}
_WIND = {"km/h": 1 / 3.6, "m/s": 1.0, "mp/h": 0.44704, "kn": 0.514444}


class OpenMeteoSource(WebSource):
    """Open-Meteo: ``forecast`` (up to 16 days ahead) or ``archive`` (any past year: the run's dates)."""

    type: Literal["open_meteo"] = "open_meteo"
    mode: Literal["forecast", "archive"] = Field("forecast", description="forecast, or the historical archive (ERA5)")
    forecast_days: Annotated[int, Field(ge=1, le=16, description="[d] days ahead (forecast)")] = 7
    past_days: Annotated[int, Field(ge=0, le=92, description="[d] days back (forecast)")] = 1
    interpolation: Literal["linear", "hold"] = "linear"


def parse(data: Any, what: str = "Open-Meteo answer") -> dict[str, np.ndarray]:
    """``epoch_s`` and the glossary columns of an Open-Meteo answer (``minutely_15`` or ``hourly``)."""
    if not isinstance(data, dict):
        raise ValueError(f"{what}: not a JSON object")
    block_name = "minutely_15" if "minutely_15" in data else "hourly"
    block, units = data.get(block_name), data.get(f"{block_name}_units") or {}
    if not isinstance(block, dict) or "time" not in block:
        raise ValueError(f"{what}: no hourly or minutely_15 block with a time column")
    times = block["time"]
    if times and isinstance(times[0], str):
        offset = float(data.get("utc_offset_seconds", 0))
        epoch = np.array([dt.datetime.fromisoformat(t).replace(tzinfo=dt.timezone.utc).timestamp() - offset
                          for t in times])
    else:
        epoch = np.asarray(times, dtype=np.float64)
    if len(epoch) < 2:
        raise ValueError(f"{what}: fewer than two steps")
    step = float(np.median(np.diff(epoch)))
    out: dict[str, np.ndarray] = {}
    for name, key in _NAMES.items():
        for variant, shift in ((f"{name}_instant", 0.0), (name, -step / 2)):
            if variant in block:
                values = np.array([np.nan if v is None else float(v) for v in block[variant]])
                if key == "wind_speed":
                    unit = units.get(variant, "km/h")
                    if unit not in _WIND:
                        raise ValueError(f"{what}: unknown wind speed unit {unit!r}")
                    values = values * _WIND[unit]
                elif key == "cloud_cover":
                    values = values / 100.0
                out[key] = values
                if key in ("ghi", "dni", "dhi"):
                    out[f"_shift_{key}"] = np.array([shift])
                break
    if "temp_air" not in out:
        raise ValueError(f"{what}: no temperature_2m column")
    keep = np.isfinite(out["temp_air"])
    result = {"epoch_s": epoch[keep]}
    for key in ("temp_air", "wind_speed", "cloud_cover", "ghi", "dni", "dhi"):
        if key in out:
            result[key] = np.nan_to_num(out[key][keep], nan=0.0) if key != "temp_air" else out[key][keep]
    if all(k in out for k in ("ghi", "dni", "dhi")):
        # interval means are placed at their centres: one time axis for all, shifted irradiance
        shifts = {float(out[f"_shift_{k}"][0]) for k in ("ghi", "dni", "dhi")}
        if shifts != {0.0}:
            for k in ("ghi", "dni", "dhi"):
                result[k] = np.interp(result["epoch_s"], result["epoch_s"] + float(out[f"_shift_{k}"][0]), result[k])
    else:
        for k in ("ghi", "dni", "dhi"):
            result.pop(k, None)
    return result


def request(src: OpenMeteoSource, lat: float, lon: float, first_s: float, last_s: float) -> tuple[Service, str, dict[str, Any]]:
    params: dict[str, Any] = {"latitude": f"{lat:.4f}", "longitude": f"{lon:.4f}", "hourly": ",".join(HOURLY),
                              "wind_speed_unit": "ms", "timeformat": "unixtime", "timezone": "UTC"}
    if src.mode == "archive":
        day = lambda s: dt.datetime.fromtimestamp(s, dt.timezone.utc).date().isoformat()  # noqa: E731
        params.update(start_date=day(first_s - 86400), end_date=day(last_s + 86400))
        return ARCHIVE, src.base_url or ARCHIVE_URL, params
    params.update(forecast_days=src.forecast_days, past_days=src.past_days)
    return SERVICE, src.base_url or FORECAST_URL, params


def load(src: OpenMeteoSource, lat: float, lon: float, first_s: float, last_s: float) -> tuple[dict[str, np.ndarray], Document]:
    service, url, params = request(src, lat, lon, first_s, last_s)
    archive = src.mode == "archive"
    doc = fetch(service, url, params, what=f"the {src.mode} at {lat:.4f}, {lon:.4f}",
                immutable=archive, max_age_s=None if archive else 900.0)
    return parse(doc.json(), service.title), doc
