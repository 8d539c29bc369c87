"""MET Norway Locationforecast 2.0 (api.met.no): air temperature, wind and cloud cover.

Terms (https://api.met.no/doc/TermsOfService): an identifying User-Agent, at most 4 decimals
of latitude/longitude, no more than 20 requests/s per application, and caching: a document is
not fetched again before its ``Expires``, and then with ``If-Modified-Since``.  All of that is
:mod:`hometwin.fetch`.  Data: CC BY 4.0 / NLOD 2.0, "Data from MET Norway".

The answer is GeoJSON; ``properties.meta.updated_at`` is when MET Norway published the forecast
(kept as the document's ``published_at`` for replays), ``properties.timeseries[i].time`` the
step (UTC) and ``data.instant.details`` its values.  It has no irradiance: the weather element
derives GHI/DNI/DHI from cloud cover (Kasten–Czeplak, Erbs), as for the stochastic source.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal

import numpy as np

from hometwin.fetch import Document, Service, fetch
from hometwin.services.weather.sources import WebSource

URL = "https://api.met.no/weatherapi/locationforecast/2.0"
SERVICE = Service(
    name="met_norway", title="MET Norway Locationforecast (api.met.no)", host="api.met.no",
    licence="Data from MET Norway (https://api.met.no), CC BY 4.0 / NLOD 2.0; terms: https://api.met.no/doc/TermsOfService",
    min_interval_s=1.0, conditional=True)


class MetNorwaySource(WebSource):
    """MET Norway Locationforecast 2.0: the published forecast at the home (about 9 days ahead)."""

    type: Literal["met_norway"] = "met_norway"
    variant: Literal["compact", "complete"] = "compact"
    interpolation: Literal["linear", "hold"] = "linear"


def _iso(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def published_at(body: bytes) -> float | None:
    """``properties.meta.updated_at`` of an answer [Unix s]."""
    return _iso(json.loads(body)["properties"]["meta"]["updated_at"])


def parse(data: Any, what: str = "MET Norway answer") -> dict[str, np.ndarray]:
    """The time series of a Locationforecast answer: ``epoch_s`` [s], ``temp_air`` [°C],
    ``wind_speed`` [m s-1], ``cloud_cover`` [0-1]; steps lacking a value are dropped."""
    try:
        steps = data["properties"]["timeseries"]
    except (KeyError, TypeError):
        raise ValueError(f"{what}: no properties.timeseries (not a Locationforecast 2.0 answer)") from None
    rows = []
    for step in steps:
        details = (step.get("data") or {}).get("instant", {}).get("details", {})
        try:
            rows.append((_iso(step["time"]), float(details["air_temperature"]), float(details["wind_speed"]),
                         float(details["cloud_area_fraction"]) / 100.0))
        except (KeyError, TypeError, ValueError):
            continue
    if len(rows) < 2:
        raise ValueError(f"{what}: fewer than two complete steps")
    arr = np.array(sorted(rows))
    return {"epoch_s": arr[:, 0], "temp_air": arr[:, 1], "wind_speed": arr[:, 2],
            "cloud_cover": np.clip(arr[:, 3], 0.0, 1.0)}


def request(src: MetNorwaySource, lat: float, lon: float, altitude_m: float) -> tuple[str, dict[str, Any]]:
    """URL and parameters (4 decimals of position, whole metres of altitude, as the terms ask)."""
    url = f"{src.base_url or URL}/{src.variant}"
    return url, {"lat": f"{lat:.4f}", "lon": f"{lon:.4f}", "altitude": str(int(round(altitude_m)))}


def load(src: MetNorwaySource, lat: float, lon: float, altitude_m: float) -> tuple[dict[str, np.ndarray], Document]:
    url, params = request(src, lat, lon, altitude_m)
    doc = fetch(SERVICE, url, params, what=f"the forecast at {lat:.4f}, {lon:.4f}", published=published_at)
    return parse(doc.json(), SERVICE.title), doc
