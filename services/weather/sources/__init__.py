"""Weather from the services people use: MET Norway, Open-Meteo, PVGIS TMY, EPW files.

Each adapter turns one service's answer into the arrays the weather element reads
(:func:`hometwin.services.weather.model.read_csv_arrays`' layout: ``epoch_s`` and glossary
columns), fetching through :mod:`hometwin.fetch` (cache, offline mode, respectful HTTP).
Licences and attribution: docs/data-sources.md.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from hometwin.element import ElementConfig
from hometwin.fetch import BaseUrl

Latitude = Annotated[float | None, Field(ge=-90, le=90, description="[degrees] north positive; null = the home's")]
Longitude = Annotated[float | None, Field(ge=-180, le=180, description="[degrees] east positive; null = the home's")]


class WebSource(ElementConfig):
    """A source fetched over HTTP: a position (default the home's) and a ``base_url`` override."""

    latitude: Latitude = None
    longitude: Longitude = None
    base_url: BaseUrl = None
