"""Typical years: PVGIS TMY (fetched, JRC European Commission) and EPW files.

Both give 8760 hourly rows that repeat on the run's dates, as a TMY3 file does
(:func:`hometwin.services.weather.model.read_tmy3_arrays`' layout).  pvlib parses both
(``pvlib.iotools.read_pvgis_tmy``, ``pvlib.iotools.read_epw``); the PVGIS answer is fetched
through :mod:`hometwin.fetch` (cached for good: a TMY does not change) so offline runs and the
rate limit hold.  PVGIS data: © European Union, free reuse with acknowledgement of the source
(https://joint-research-centre.ec.europa.eu/pvgis-photovoltaic-geographical-information-system/pvgis-data-download/pvgis-terms-use_en).

PVGIS TMY rows are UTC, stamped at the start of the hour; EPW rows are local standard time,
stamped at the end of the hour (as TMY3).
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from pydantic import Field

from hometwin.datafiles import DataFileError, checked_column, parse_errors, read_text, shown
from hometwin.element import DataFile, ElementConfig
from hometwin.fetch import Document, Service, fetch
from hometwin.lazy import lazy_module
from hometwin.services.weather.sources import WebSource

pvlib = lazy_module("pvlib")

URL = "https://re.jrc.ec.europa.eu/api/v5_3"
SERVICE = Service(
    name="pvgis", title="PVGIS TMY (re.jrc.ec.europa.eu)", host="re.jrc.ec.europa.eu",
    licence="PVGIS © European Union, 2001-2025; reuse authorised with acknowledgement of the source "
            "(JRC PVGIS terms of use)", min_interval_s=2.0)
_RANGES = {"ghi": (0.0, 2000.0), "dni": (0.0, 2000.0), "dhi": (0.0, 2000.0), "temp_air": (-100.0, 100.0),
           "wind_speed": (0.0, 120.0)}


class PVGISTMYSource(WebSource):
    """A PVGIS typical meteorological year at the home, repeated on the run's dates."""

    type: Literal["pvgis_tmy"] = "pvgis_tmy"
    interpolation: Literal["linear", "hold"] = "linear"


class EPWSource(ElementConfig):
    """An EnergyPlus weather file (EPW, e.g. from climate.onebuilding.org), repeated on the run's dates."""

    type: Literal["epw"] = "epw"
    path: DataFile = Field(description="EPW file; relative paths resolve against the home spec's folder")
    interpolation: Literal["linear", "hold"] = Field("linear", description="hourly means → simulation step")


def _arrays(data: object, path: str, what: str, offset_h: float, header_lines: int) -> dict[str, np.ndarray]:
    out = {}
    for key, (lo, hi) in _RANGES.items():
        if key not in data:  # type: ignore[operator]
            raise DataFileError(f"{what} {shown(path)}: no column for {key!r}")
        out[key] = checked_column(data, key, path, what, lo, hi, header_lines=header_lines)
    if len(out["ghi"]) != 8760:
        raise DataFileError(f"{what} {shown(path)}: a typical year has 8760 hourly rows (found {len(out['ghi'])})")
    cloud = data.get("total_sky_cover")  # type: ignore[attr-defined]
    out["cloud_cover"] = (np.clip(np.asarray(cloud, dtype=np.float64) / 10.0, 0.0, 1.0) if cloud is not None
                          else np.full(8760, np.nan))
    if np.isnan(out["cloud_cover"]).all():
        del out["cloud_cover"]
    out["utc_offset_h"] = np.array([offset_h])
    return out


def read_epw_arrays(path: str) -> dict[str, np.ndarray]:
    """An EPW file's 8760 rows (hour ending, local standard time) and its UTC offset."""
    text = read_text(path, "EPW file")
    with parse_errors(path, "EPW file"):
        data, meta = pvlib.iotools.read_epw(io.StringIO(text))
        offset = float(meta["TZ"])
    if not -14.0 <= offset <= 14.0:
        raise DataFileError(f"EPW file {shown(path)}: line 1: the UTC offset is outside [-14, 14] h")
    return _arrays(data.reset_index(drop=True), path, "EPW file", offset, header_lines=8)


def parse_pvgis(body: bytes, what: str = "PVGIS answer") -> dict[str, np.ndarray]:
    """A PVGIS TMY JSON answer's 8760 rows (UTC, stamped at the hour's start)."""
    with parse_errors(what, "PVGIS TMY answer"):
        data, _meta = pvlib.iotools.read_pvgis_tmy(io.StringIO(body.decode("utf-8")), pvgis_format="json",
                                                   map_variables=True)
    out = _arrays(data.reset_index(drop=True), what, "PVGIS TMY answer", 0.0, header_lines=1)
    out["stamp_shift_s"] = np.array([1800.0])  # a sample at the hour's start, not an hour-ending mean
    return out


def load_pvgis(src: PVGISTMYSource, lat: float, lon: float) -> tuple[dict[str, np.ndarray], Document]:
    url = f"{src.base_url or URL}/tmy"
    params = {"lat": f"{lat:.4f}", "lon": f"{lon:.4f}", "outputformat": "json"}
    doc = fetch(SERVICE, url, params, what=f"the TMY at {lat:.4f}, {lon:.4f}", immutable=True)
    return parse_pvgis(doc.body, SERVICE.title), doc
