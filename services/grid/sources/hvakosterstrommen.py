"""hvakosterstrommen.no: Norwegian day-ahead prices (NO1–NO5) in NOK and EUR per kWh, without VAT.

One JSON document per zone and local day (Europe/Oslo):
``/api/v1/prices/{YYYY}/{MM}-{DD}_{zone}.json`` → ``[{NOK_per_kWh, EUR_per_kWh, EXR, time_start,
time_end}, …]``.  The service asks for attribution ("Strømpriser levert av hvakosterstrommen.no")
and gets its prices from ENTSO-E.  A past day's prices never change (cached for good); today's
and tomorrow's are fetched again after an hour.  Tomorrow's are published after the day-ahead
auction (about 13:00 CET); before that the service answers 404.

Each document's own entries are kept (the stated ``time_start``/``time_end``, so a DST day's
23 or 25 hours, and the recorded quirk of 2022-10-30 whose 02:00+02:00 entry spans two real hours,
come out as the service states them); an entry starting on another local day is left to that
day's document.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from typing import Any, Literal

import numpy as np
from pydantic import Field

from hometwin.element import ElementConfig
from hometwin.fetch import BaseUrl, Service, fetch

URL = "https://www.hvakosterstrommen.no/api/v1/prices"
ZONE_TZ = zoneinfo.ZoneInfo("Europe/Oslo")
SERVICE = Service(
    name="hvakosterstrommen", title="hvakosterstrommen.no price API", host="www.hvakosterstrommen.no",
    licence="Strømpriser levert av hvakosterstrommen.no (https://www.hvakosterstrommen.no); prices from ENTSO-E",
    min_interval_s=1.0)


class HvaKosterStrommenSource(ElementConfig):
    """hvakosterstrommen.no day-ahead prices of a Norwegian zone, excluding VAT."""

    type: Literal["hvakosterstrommen"] = "hvakosterstrommen"
    zone: Literal["NO1", "NO2", "NO3", "NO4", "NO5"] = Field(description="price zone (NO3 = Trondheim)")
    currency: Literal["NOK", "EUR"] = Field("NOK", description="which of the answer's prices to use")
    base_url: BaseUrl = None


def parse(data: Any, day: dt.date | None = None, currency: str = "NOK",
          what: str = "hvakosterstrommen answer") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends [Unix s], prices [currency kWh-1]) of one day's answer, the entries starting
    on local ``day`` (all when ``None``)."""
    if not isinstance(data, list):
        raise ValueError(f"{what}: not a JSON list of prices")
    key = f"{currency}_per_kWh"
    rows = []
    for i, entry in enumerate(data):
        try:
            a = dt.datetime.fromisoformat(entry["time_start"])
            b = dt.datetime.fromisoformat(entry["time_end"])
            value = float(entry[key])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{what}: entry {i} lacks time_start, time_end or {key}") from None
        if a.tzinfo is None or b <= a or not np.isfinite(value):
            raise ValueError(f"{what}: entry {i} has no offset, an end not after its start, or no finite price")
        if day is None or a.astimezone(ZONE_TZ).date() == day:
            rows.append((a.timestamp(), b.timestamp(), value))
    rows.sort()
    arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
    return arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2]


def day_url(src: HvaKosterStrommenSource, day: dt.date) -> str:
    return f"{src.base_url or URL}/{day.year:04d}/{day.month:02d}-{day.day:02d}_{src.zone}.json"


def load(src: HvaKosterStrommenSource, first_s: float, last_s: float,
         max_age_s: float = 3600.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prices covering ``[first_s, last_s]``: one document per local (Oslo) day (today's and
    later ones asked again after ``max_age_s``; a realtime twin asks more often)."""
    day = dt.datetime.fromtimestamp(first_s, ZONE_TZ).date()
    end = dt.datetime.fromtimestamp(last_s, ZONE_TZ).date()
    today = dt.datetime.now(ZONE_TZ).date()
    parts = []
    while day <= end:
        doc = fetch(SERVICE, day_url(src, day), None, what=f"{src.zone} prices of {day.isoformat()}",
                    immutable=day < today, max_age_s=max_age_s)
        parts.append(parse(json.loads(doc.body), day, src.currency, f"{SERVICE.title} ({src.zone} {day})"))
        day += dt.timedelta(days=1)
    starts, ends, values = (np.concatenate([p[k] for p in parts]) for k in range(3))
    order = np.argsort(starts, kind="stable")
    return starts[order], ends[order], values[order]
