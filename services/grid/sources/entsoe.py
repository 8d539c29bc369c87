"""ENTSO-E Transparency Platform: day-ahead prices (document A44) of a bidding zone.

``GET https://web-api.tp.entsoe.eu/api?documentType=A44&in_Domain=EIC&out_Domain=EIC&periodStart=
YYYYMMDDHHMM&periodEnd=…&securityToken=TOKEN`` → a ``Publication_MarketDocument`` (XML): time series
of periods (``timeInterval`` start/end UTC, ``resolution`` PT60M/PT15M) with points
(``position``, ``price.amount`` in EUR/MWh; curve type A03 leaves out a point that repeats the one
before).  The token (free, by e-mail to the Transparency Platform's help desk after registering)
comes from an environment variable or a mounted Kubernetes Secret; it travels only to ENTSO-E's
host or loopback and is never shown or cached.  Terms: https://transparency.entsoe.eu/ ("Terms and
conditions"): reuse allowed with the source acknowledged as "ENTSO-E Transparency Platform".

``entsoe-py`` (the maintained client) brings its own HTTP (no shared rate limit, cache or offline
mode) and BeautifulSoup; the document is small and regular, so it is parsed here with the standard
library (a document with a DTD is refused: no entity expansion).
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from hometwin.element import ElementConfig
from hometwin.fetch import ENV_SECRETS_DIR, BaseUrl, Service, SourceError, TokenFile, fetch, read_token  # noqa: F401

URL = "https://web-api.tp.entsoe.eu/api"
SERVICE = Service(
    name="entsoe", title="ENTSO-E Transparency Platform (web-api.tp.entsoe.eu)", host="web-api.tp.entsoe.eu",
    licence="Source: ENTSO-E Transparency Platform (https://transparency.entsoe.eu/), its terms and conditions",
    min_interval_s=2.0,
    token_hint="register at transparency.entsoe.eu, ask its help desk for a Web API token, and set it there")
#: Bidding zones → EIC codes (ENTSO-E's area list).
ZONES = {"NO1": "10YNO-1--------2", "NO2": "10YNO-2--------T", "NO3": "10YNO-3--------J",
         "NO4": "10YNO-4--------9", "NO5": "10Y1001A1001A48H", "SE1": "10Y1001A1001A44P",
         "SE2": "10Y1001A1001A45N", "SE3": "10Y1001A1001A46L", "SE4": "10Y1001A1001A47J",
         "DK1": "10YDK-1--------W", "DK2": "10YDK-2--------M", "FI": "10YFI-1--------U",
         "DE_LU": "10Y1001A1001A82H", "NL": "10YNL----------L", "BE": "10YBE----------2",
         "FR": "10YFR-RTE------C", "AT": "10YAT-APG------L", "ES": "10YES-REE------0",
         "PT": "10YPT-REN------W", "PL": "10YPL-AREA-----S", "EE": "10Y1001A1001A39I",
         "LV": "10YLV-1001A00074", "LT": "10YLT-1001A0008Q"}
_RES = re.compile(r"^PT(\d+)M$")


class EntsoeSource(ElementConfig):
    """ENTSO-E day-ahead prices of a bidding zone, EUR/MWh converted to the home's currency per kWh."""

    type: Literal["entsoe"] = "entsoe"
    zone: Literal[tuple(ZONES)] = Field(description="bidding zone, e.g. NO3, SE3, DE_LU")  # type: ignore[valid-type]
    exchange_rate: Annotated[float, Field(gt=0, le=100_000, description=(
        "[currency EUR-1] the home's currency per EUR (1 when the home counts in EUR), e.g. 11.7 for NOK"))] = 1.0
    token_env: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,63}$", description=(
        "environment variable holding the Web API token"))] = "ENTSOE_API_TOKEN"
    token_file: TokenFile = None
    base_url: BaseUrl = None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(node: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in node if _local(c.tag) == name), None)


def _text(node: ET.Element, path: str) -> str:
    for name in path.split("/"):
        found = _child(node, name)
        if found is None:
            raise ValueError(f"no {path}")
        node = found
    return (node.text or "").strip()


def _utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def parse(body: bytes, what: str = "ENTSO-E answer") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends [Unix s], prices [EUR MWh-1]) of an A44 document; an acknowledgement (no data)
    is a :class:`ValueError` with its reason."""
    if b"<!DOCTYPE" in body[:4096].upper() or b"<!ENTITY" in body.upper():
        raise ValueError(f"{what}: a document with a DTD or entities is refused")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"{what}: not XML ({exc.position[0]}:{exc.position[1]})") from None
    if _local(root.tag) == "Acknowledgement_MarketDocument":
        reason = " ".join(" ".join((e.text or "").split()) for e in root.iter() if _local(e.tag) == "text")
        raise ValueError(f"{what}: no data ({reason[:200] or 'acknowledgement without a reason'})")
    rows: dict[int, tuple[int, float]] = {}
    for series in (e for e in root if _local(e.tag) == "TimeSeries"):
        for period in (e for e in series if _local(e.tag) == "Period"):
            try:
                start, end = _utc(_text(period, "timeInterval/start")), _utc(_text(period, "timeInterval/end"))
                match = _RES.match(_text(period, "resolution"))
            except ValueError as exc:
                raise ValueError(f"{what}: a Period without {exc}") from None
            if not match or end <= start:
                raise ValueError(f"{what}: a Period with an unknown resolution or an empty interval")
            res = int(match.group(1)) * 60
            n = (end - start) // res
            values = np.full(n, np.nan)
            for point in (e for e in period if _local(e.tag) == "Point"):
                pos = int(_text(point, "position"))
                if 1 <= pos <= n:
                    values[pos - 1] = float(_text(point, "price.amount"))
            if np.isnan(values[0]):
                raise ValueError(f"{what}: a Period without its first point")
            for i in range(1, n):  # curve A03: a missing point repeats the one before
                if np.isnan(values[i]):
                    values[i] = values[i - 1]
            for i in range(n):
                rows[start + i * res] = (start + (i + 1) * res, float(values[i]))
    if not rows:
        raise ValueError(f"{what}: no TimeSeries with prices")
    starts = np.array(sorted(rows), dtype=np.int64)
    ends = np.array([rows[s][0] for s in starts], dtype=np.int64)
    ends = np.minimum(ends, np.concatenate([starts[1:], [np.iinfo(np.int64).max]]))
    return starts, ends, np.array([rows[s][1] for s in starts])


def _months(first_s: float, last_s: float) -> list[tuple[dt.datetime, dt.datetime]]:
    a = dt.datetime.fromtimestamp(first_s - 86400, dt.timezone.utc).replace(day=1, hour=0, minute=0, second=0,
                                                                           microsecond=0)
    end = dt.datetime.fromtimestamp(last_s + 86400, dt.timezone.utc)
    out = []
    while a <= end:
        b = (a + dt.timedelta(days=32)).replace(day=1)
        out.append((a, b))
        a = b
    return out


def load(src: EntsoeSource, first_s: float, last_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prices [currency kWh-1] covering ``[first_s, last_s]``, one request per UTC month."""
    token = read_token(SERVICE, src.token_env, src.token_file)
    url = src.base_url or URL
    now = dt.datetime.now(dt.timezone.utc)
    parts = []
    for a, b in _months(first_s, last_s):
        params = {"documentType": "A44", "in_Domain": ZONES[src.zone], "out_Domain": ZONES[src.zone],
                  "periodStart": a.strftime("%Y%m%d%H%M"), "periodEnd": b.strftime("%Y%m%d%H%M")}
        doc = fetch(SERVICE, url, params, what=f"{src.zone} day-ahead prices of {a:%Y-%m}",
                    secret_params={"securityToken": token}, accept="application/xml",
                    immutable=b < now - dt.timedelta(days=2), max_age_s=3600.0)
        try:
            parts.append(parse(doc.body, f"{SERVICE.title} ({src.zone} {a:%Y-%m})"))
        except ValueError as exc:
            if "no data" in str(exc) and b > now:
                continue  # a month not yet published
            raise SourceError(str(exc)) from None
    if not parts:
        raise SourceError(f"{SERVICE.title}: no {src.zone} prices published for the run")
    starts, ends, values = (np.concatenate([p[k] for p in parts]) for k in range(3))
    order = np.argsort(starts, kind="stable")
    return starts[order], ends[order], values[order] / 1000.0 * src.exchange_rate
