"""EskomSePush API: the load-shedding events announced for an area (South Africa).

``GET https://developer.sepush.co.za/business/2.0/area?id=AREA`` with the header ``token: TOKEN`` →
``{"events": [{"start": ISO, "end": ISO, "note": "Stage 2"}, …], "info": …, "schedule": …}``.  The
token comes from https://eskomsepush.gumroad.com/l/api (the free tier allows 50 calls a day: an
area's answer is reused for an hour); its terms (the API's licence on that page) allow personal,
non-commercial use and ask for attribution "EskomSePush".  The events are the area's *upcoming*
outages (the next days), so this source suits a live twin or a run of the coming days; for past
or typical runs use the published area schedules (``outages.schedule``: eskom-calendar CSV).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, Field

from hometwin.element import STRICT
from hometwin.fetch import BaseUrl, Service, SourceError, TokenFile, fetch, read_token

URL = "https://developer.sepush.co.za/business/2.0"
SERVICE = Service(
    name="eskomsepush", title="EskomSePush API (developer.sepush.co.za)", host="developer.sepush.co.za",
    licence="Load-shedding data by EskomSePush (https://sepush.co.za), under its API terms",
    min_interval_s=2.0, token_hint="get an API token at https://eskomsepush.gumroad.com/l/api and set it there")


class EskomSePushOutages(BaseModel):
    """The load-shedding events EskomSePush announces for an area."""

    model_config = STRICT
    area_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,120}$", description=(
        "EskomSePush area id, e.g. 'capetown-16-rondebosch' (its areas_search call)"))]
    token_env: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,63}$", description=(
        "environment variable holding the API token"))] = "ESP_API_TOKEN"
    token_file: TokenFile = None
    base_url: BaseUrl = None


def parse(data: Any, what: str = "EskomSePush answer") -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) [Unix s] of an area answer's events."""
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise ValueError(f"{what}: no events list (not an area answer)")
    pairs = []
    for i, event in enumerate(data["events"]):
        try:
            a = dt.datetime.fromisoformat(event["start"])
            b = dt.datetime.fromisoformat(event["end"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{what}: event {i} lacks an ISO start or end") from None
        if a.tzinfo is None or b <= a:
            raise ValueError(f"{what}: event {i} has no offset or ends before it starts")
        pairs.append((a.timestamp(), b.timestamp()))
    pairs.sort()
    arr = np.array(pairs, dtype=np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def load(src: EskomSePushOutages) -> list[tuple[float, float]]:
    token = read_token(SERVICE, src.token_env, src.token_file)
    doc = fetch(SERVICE, f"{src.base_url or URL}/area", {"id": src.area_id}, what=f"area {src.area_id}",
                secret_headers={"token": token}, max_age_s=3600.0)
    try:
        starts, ends = parse(json.loads(doc.body), f"{SERVICE.title} (area {src.area_id})")
    except ValueError as exc:
        raise SourceError(str(exc)) from None
    return list(zip(starts.tolist(), ends.tolist()))
