"""Data sources (issue 23): parsing of recorded answers, and HTTP behaviour against a loopback server.

Parsing is checked against ``../shared/data/api_fixtures`` read independently with ``json``; the
HTTP behaviour (User-Agent, caching with Expires / If-Modified-Since / 304, retries honouring
Retry-After, tokens, one-line errors, offline mode) against ``pytest-httpserver`` on 127.0.0.1.
Nothing connects outside this machine.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pydantic import ValidationError
from werkzeug import Request, Response

from hometwin import fetch
from hometwin.published import Versions
from hometwin.services.grid.sources import entsoe, hvakosterstrommen as hks
from hometwin.services.weather.sources import met_norway, open_meteo
from hometwin.services.weather.sources.met_norway import MetNorwaySource
from hometwin.spec import SpecError, parse_home
from homes import INVERTER, SUN, home_doc

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "api_fixtures"
MET_COMPLETE = FIXTURES / "met_locationforecast" / "metno_locationforecast2_complete_lat51.5_lon-0.1_2020-07-20_recorded.json"
MET_COMPACT = FIXTURES / "met_locationforecast" / "metno_locationforecast2_compact_lat40.7_lon-74.0_2020-07-20_recorded.json"
OPEN_METEO = FIXTURES / "open_meteo" / "open_meteo_forecast_minutely15_lat45.83_lon6.86_2025-02-24_recorded_body.json"
HKS = FIXTURES / "hvakosterstrommen"


def utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.timezone.utc).timestamp()


@pytest.fixture
def cache(tmp_path):
    """A fresh cache folder, fast back-off and no rate limit (the tests' own server)."""
    with fetch.configure(cache_dir=tmp_path / "cache", offline=False, backoff_s=0.01, min_interval_s=0.0):
        yield tmp_path / "cache"


# -- parsing of the recorded answers ----------------------------------------------------------

@pytest.mark.parametrize("path", [MET_COMPLETE, MET_COMPACT])
def test_met_norway_parse_matches_the_recorded_answer(path):
    raw = json.loads(path.read_text())["data"]
    steps = raw["properties"]["timeseries"]
    out = met_norway.parse(raw)
    assert len(out["epoch_s"]) == len(steps) == 82
    first = steps[0]["data"]["instant"]["details"]
    assert out["epoch_s"][0] == utc(2020, 7, 20, 11)
    assert out["temp_air"][0] == first["air_temperature"]
    assert out["wind_speed"][0] == first["wind_speed"]
    assert out["cloud_cover"][0] == pytest.approx(first["cloud_area_fraction"] / 100.0)
    last = steps[-1]
    assert out["epoch_s"][-1] == utc(2020, 7, 29, 6)
    assert out["temp_air"][-1] == last["data"]["instant"]["details"]["air_temperature"]
    assert met_norway.published_at(json.dumps(raw).encode()) == utc(2020, 7, 20, 1, 30, 57)


def test_open_meteo_parse_local_times_units_and_instant_irradiance():
    raw = json.loads(OPEN_METEO.read_text())
    block = raw["minutely_15"]
    out = open_meteo.parse(raw)
    assert len(out["epoch_s"]) == len(block["time"]) == 288
    # 2025-02-24T00:00 in Europe/Paris (utc_offset_seconds 3600) is 2025-02-23T23:00Z
    assert out["epoch_s"][0] == utc(2025, 2, 23, 23)
    assert np.all(np.diff(out["epoch_s"]) == 900)
    i = int(np.argmax(block["shortwave_radiation_instant"]))
    assert out["ghi"][i] == block["shortwave_radiation_instant"][i] > 0  # instant: no shift
    assert out["dni"][i] == block["direct_normal_irradiance_instant"][i]
    assert out["dhi"][i] == block["diffuse_radiation_instant"][i]
    assert out["wind_speed"][0] == pytest.approx(block["wind_speed_10m"][0] / 3.6)  # km/h → m/s
    assert out["cloud_cover"][1] == pytest.approx(block["cloud_cover"][1] / 100.0)
    assert out["temp_air"][5] == block["temperature_2m"][5]


def test_open_meteo_hourly_means_sit_at_their_interval_centres():
    data = {"hourly_units": {"wind_speed_10m": "m/s"},
            "hourly": {"time": [0, 3600, 7200], "temperature_2m": [1.0, 2.0, 3.0], "wind_speed_10m": [1, 1, 1],
                       "cloud_cover": [0, 50, 100], "shortwave_radiation": [0.0, 100.0, 300.0],
                       "direct_normal_irradiance": [0.0, 0.0, 0.0], "diffuse_radiation": [0.0, 100.0, 300.0]}}
    out = open_meteo.parse(data)
    # the 100 W/m² stamped 3600 is the mean of 0…3600 s: at 3600 s the series is halfway to the next mean
    assert out["ghi"][1] == pytest.approx(200.0)
    assert out["cloud_cover"][1] == 0.5


def test_hvakosterstrommen_normal_day_and_the_dst_quirk():
    normal = json.loads((HKS / "hvakosterstrommen_prices_2022-09-20_NO1.json").read_text())
    starts, ends, values = hks.parse(normal, dt.date(2022, 9, 20), "NOK")
    assert len(values) == len(normal) == 24
    assert list(values) == [e["NOK_per_kWh"] for e in normal]
    assert starts[0] == utc(2022, 9, 19, 22) and ends[-1] == utc(2022, 9, 20, 22)
    assert np.all(ends[:-1] == starts[1:])
    eur = hks.parse(normal, dt.date(2022, 9, 20), "EUR")[2]
    assert list(eur) == [e["EUR_per_kWh"] for e in normal]

    dst = json.loads((HKS / "hvakosterstrommen_prices_2022-10-30_NO1.json").read_text())
    starts, ends, values = hks.parse(dst, dt.date(2022, 10, 30), "NOK")
    assert len(dst) == 25 and len(values) == 24  # the entry of 2022-10-31 00:00 is the next day's
    # the day has 25 real hours; the recorded 02:00+02:00 entry spans two of them (SOURCES.md §2b)
    assert ends[-1] - starts[0] == 25 * 3600
    assert (ends - starts).tolist().count(7200) == 1
    assert values[2] == dst[2]["NOK_per_kWh"]


ENTSOE_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<Publication_MarketDocument xmlns="urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3">
  <TimeSeries>
    <currency_Unit.name>EUR</currency_Unit.name>
    <price_Measure_Unit.name>MWH</price_Measure_Unit.name>
    <curveType>A03</curveType>
    <Period>
      <timeInterval><start>2024-01-01T23:00Z</start><end>2024-01-02T03:00Z</end></timeInterval>
      <resolution>PT60M</resolution>
      <Point><position>1</position><price.amount>50.5</price.amount></Point>
      <Point><position>2</position><price.amount>-3.25</price.amount></Point>
      <Point><position>4</position><price.amount>80</price.amount></Point>
    </Period>
  </TimeSeries>
</Publication_MarketDocument>"""


def test_entsoe_parse_fills_a03_gaps_and_converts():
    starts, ends, values = entsoe.parse(ENTSOE_XML)
    assert starts.tolist() == [utc(2024, 1, 1, 23) + 3600 * k for k in range(4)]
    assert ends.tolist() == [s + 3600 for s in starts.tolist()]
    assert values.tolist() == [50.5, -3.25, -3.25, 80.0]  # position 3 left out: repeats position 2
    ack = (b'<Acknowledgement_MarketDocument xmlns="urn:x"><Reason><code>999</code>'
           b"<text>No matching data found</text></Reason></Acknowledgement_MarketDocument>")
    with pytest.raises(ValueError, match="No matching data found"):
        entsoe.parse(ack)
    with pytest.raises(ValueError, match="DTD"):
        entsoe.parse(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>')


# -- HTTP behaviour against a loopback server ------------------------------------------------

def met_body() -> tuple[bytes, dict[str, str]]:
    rec = json.loads(MET_COMPLETE.read_text())
    keep = {k: v for k, v in rec["headers"].items() if k in ("Expires", "Last-Modified", "Content-Type")}
    return json.dumps(rec["data"]).encode(), keep


def test_met_norway_user_agent_expires_and_if_modified_since(httpserver, cache, monkeypatch):
    monkeypatch.setenv(fetch.ENV_CONTACT, "ops@example.org")
    body, headers = met_body()
    seen: list[dict[str, str]] = []

    def handler(req: Request) -> Response:
        seen.append({**dict(req.headers), "query": req.query_string.decode()})
        if req.headers.get("If-Modified-Since") == headers["Last-Modified"]:
            return Response(status=304, headers={"Expires": "Mon, 20 Jul 2020 13:00:00 GMT"})
        return Response(body, status=200, headers=headers)

    httpserver.expect_request("/weatherapi/locationforecast/2.0/complete").respond_with_handler(handler)
    src = MetNorwaySource(variant="complete", base_url=httpserver.url_for("/weatherapi/locationforecast/2.0"))
    data, doc = met_norway.load(src, 51.5, -0.1, 25.0)
    assert seen[0]["User-Agent"].startswith("hometwin/") and "ops@example.org" in seen[0]["User-Agent"]
    assert "If-Modified-Since" not in seen[0]
    assert seen[0]["query"] == "lat=51.5000&lon=-0.1000&altitude=25"  # 4 decimals, as MET's terms ask
    assert doc.published_at == utc(2020, 7, 20, 1, 30, 57) and doc.meta["licence"].startswith("Data from MET Norway")
    # the recorded Expires (2020) is past: the next load revalidates, the 304 keeps the cached document
    data2, doc2 = met_norway.load(src, 51.5, -0.1, 25.0)
    assert seen[1]["If-Modified-Since"] == headers["Last-Modified"]
    assert doc2.from_cache and doc2.body == body
    np.testing.assert_array_equal(data2["temp_air"], data["temp_air"])
    assert len(list(cache.rglob("*.body"))) == 1  # a 304 stores nothing new


def test_a_document_that_has_not_expired_is_not_fetched_again(httpserver, cache):
    body, _ = met_body()
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3600))
    httpserver.expect_request("/lf/compact").respond_with_data(body, headers={"Expires": future})
    src = MetNorwaySource(base_url=httpserver.url_for("/lf"))
    met_norway.load(src, 63.43, 10.39, 10.0)
    met_norway.load(src, 63.43, 10.39, 10.0)
    assert len(httpserver.log) == 1


def test_retries_on_5xx_and_429_honour_retry_after(httpserver, cache):
    answers = [Response(status=503), Response(status=429, headers={"Retry-After": "1"}),
               Response(b"[]", status=200)]
    times: list[float] = []

    def handler(req: Request) -> Response:
        times.append(time.monotonic())
        return answers[len(times) - 1]

    httpserver.expect_request("/x").respond_with_handler(handler)
    service = fetch.Service(name="t", title="Test service", host="example.invalid", licence="test")
    doc = fetch.fetch(service, httpserver.url_for("/x"))
    assert doc.body == b"[]" and len(times) == 3
    assert times[2] - times[1] >= 0.95  # waited the Retry-After second (back-off base is 0.01 s)


def test_a_service_that_keeps_failing_gives_one_line(httpserver, cache):
    httpserver.expect_request("/x").respond_with_data("boom", status=500)
    service = fetch.Service(name="t", title="Test service", host="example.invalid", licence="test")
    with pytest.raises(fetch.SourceError) as err:
        fetch.fetch(service, httpserver.url_for("/x"), what="the test data")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("Test service: HTTP 500 for the test data after 5 tries")
    assert len(httpserver.log) == fetch.RETRIES + 1


def test_a_refused_request_is_not_retried_and_says_what_to_do(httpserver, cache):
    httpserver.expect_request("/x").respond_with_data("no", status=403)
    with pytest.raises(fetch.SourceError, match=r"^MET Norway Locationforecast \(api.met.no\): HTTP 403"):
        fetch.fetch(met_norway.SERVICE, httpserver.url_for("/x"))
    assert len(httpserver.log) == 1


def test_an_unreachable_service_gives_one_line(cache):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = MetNorwaySource(base_url=f"http://127.0.0.1:{port}/lf")
    with pytest.raises(fetch.SourceError) as err:
        met_norway.load(src, 63.43, 10.39, 10.0)
    msg = str(err.value)
    assert "\n" not in msg and "MET Norway" in msg and "unreachable" in msg and "--offline" in msg


def test_entsoe_token_missing_is_one_line_and_a_token_is_never_shown_or_cached(httpserver, cache, monkeypatch):
    src = entsoe.EntsoeSource(zone="NO3", exchange_rate=11.5, base_url=httpserver.url_for("/api"))
    monkeypatch.delenv("ENTSOE_API_TOKEN", raising=False)
    with pytest.raises(fetch.SourceError) as err:
        entsoe.load(src, utc(2024, 1, 2), utc(2024, 1, 2, 2))
    assert str(err.value).startswith("ENTSO-E Transparency Platform (web-api.tp.entsoe.eu): no token found in "
                                     "the environment variable ENTSOE_API_TOKEN")
    assert "\n" not in str(err.value) and len(httpserver.log) == 0

    secret = "s3cr3t-token-0123456789"
    monkeypatch.setenv("ENTSOE_API_TOKEN", secret)
    httpserver.expect_request("/api", query_string={"documentType": "A44", "in_Domain": "10YNO-3--------J",
                                                    "out_Domain": "10YNO-3--------J", "periodStart": "202312010000",
                                                    "periodEnd": "202401010000", "securityToken": secret}
                              ).respond_with_data("<Acknowledgement_MarketDocument/>")
    httpserver.expect_request("/api").respond_with_data(ENTSOE_XML, content_type="application/xml")
    starts, _, values = entsoe.load(src, utc(2024, 1, 2), utc(2024, 1, 2, 2))
    assert all(secret in r.query_string.decode() for r, _ in httpserver.log)
    i = int(np.searchsorted(starts, utc(2024, 1, 2, 1)))
    assert values[i] == pytest.approx(-3.25 / 1000 * 11.5)  # EUR/MWh → NOK/kWh at the stated rate
    for path in cache.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace")

    httpserver.clear()
    httpserver.expect_request("/api").respond_with_data("unauthorised", status=401)
    with fetch.configure(cache_dir=cache / "other"):
        with pytest.raises(fetch.SourceError) as err:
            entsoe.load(src, utc(2024, 1, 2), utc(2024, 1, 2, 2))
    assert secret not in str(err.value) and "HTTP 401" in str(err.value) and "help desk" in str(err.value)


def test_a_token_is_sent_only_to_the_service_host_or_loopback(cache, monkeypatch):
    monkeypatch.setenv("ENTSOE_API_TOKEN", "tok")
    src = entsoe.EntsoeSource(zone="NO1", base_url="https://mirror.example.org/api")
    with pytest.raises(fetch.SourceError, match="refusing to send the token to mirror.example.org"):
        entsoe.load(src, utc(2024, 1, 2), utc(2024, 1, 2, 2))


def test_offline_uses_only_the_cache_and_names_what_is_missing(httpserver, cache):
    body, headers = met_body()
    httpserver.expect_request("/lf/compact").respond_with_data(body, headers=headers)
    src = MetNorwaySource(base_url=httpserver.url_for("/lf"))
    with fetch.configure(offline=True):
        with pytest.raises(fetch.OfflineMissing) as err:
            met_norway.load(src, 63.43, 10.39, 10.0)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("offline: no cached MET Norway Locationforecast (api.met.no) data "
                                              "for the forecast at 63.4300, 10.3900 in ") and str(cache) in msg
    assert len(httpserver.log) == 0
    online, _ = met_norway.load(src, 63.43, 10.39, 10.0)
    httpserver.clear()  # the server forgets its answers and its log: offline asks it nothing
    with fetch.configure(offline=True):
        cached, doc = met_norway.load(src, 63.43, 10.39, 10.0)
    assert doc.from_cache and len(httpserver.log) == 0
    np.testing.assert_array_equal(cached["temp_air"], online["temp_air"])


def test_the_version_at_a_time_is_the_forecast_a_planner_could_have_known(httpserver, cache):
    raw = json.loads(MET_COMPACT.read_text())["data"]
    versions = ["2020-07-20T01:30:57Z", "2020-07-20T07:30:00Z", "2020-07-20T13:30:00Z"]
    bodies = []
    for stamp in versions:
        raw["properties"]["meta"]["updated_at"] = stamp
        bodies.append(json.dumps(raw).encode())
    src = MetNorwaySource(base_url=httpserver.url_for("/lf"))
    for b in bodies:  # three publications, each fetched once (no Expires: always fetched again)
        httpserver.clear()
        httpserver.expect_request("/lf/compact").respond_with_data(b)
        met_norway.load(src, 40.7, -74.0, 10.0)
    url, params = met_norway.request(src, 40.7, -74.0, 10.0)
    assert len(fetch.cached(met_norway.SERVICE, url, params)) == 3
    versions = Versions.from_documents(fetch.cached(met_norway.SERVICE, url, params),
                                       lambda doc: met_norway.parse(doc.json()))
    v = versions.at(utc(2020, 7, 20, 12))
    assert v is not None and v.stamp == utc(2020, 7, 20, 7, 30)
    assert versions.at(utc(2020, 7, 20, 1)) is None


def test_cache_keep_bounds_the_versions_kept(httpserver, cache, monkeypatch):
    monkeypatch.setenv(fetch.ENV_CACHE_KEEP, "2")
    service = fetch.Service(name="t", title="Test service", host="example.invalid", licence="test")
    for k in range(4):  # four changed versions, always fetched again (no Expires, no max age)
        httpserver.clear()
        httpserver.expect_request("/x").respond_with_data(f"[{k}]")
        fetch.fetch(service, httpserver.url_for("/x"))
    kept = fetch.cached(service, httpserver.url_for("/x"))
    assert [d.body for d in kept] == [b"[2]", b"[3]"]
    assert len(list(cache.rglob("*.body"))) == 2


def test_eskomsepush_events_switch_the_grid_off(httpserver, cache, monkeypatch):
    from hometwin.engine import Engine
    from homes import grid, home, load

    # the area answer's layout as the EskomSePush API documents it (no recorded answer exists)
    answer = {"events": [{"start": "2023-03-29T10:00:00+02:00", "end": "2023-03-29T12:30:00+02:00", "note": "Stage 4"},
                         {"start": "2023-03-29T18:00:00+02:00", "end": "2023-03-29T20:30:00+02:00", "note": "Stage 4"}],
              "info": {"name": "Rondebosch (16)", "region": "City of Cape Town"}, "schedule": {"days": []}}
    monkeypatch.setenv("ESP_API_TOKEN", "esp-secret")
    httpserver.expect_request("/business/2.0/area", query_string={"id": "capetown-16-rondebosch"},
                              headers={"token": "esp-secret"}).respond_with_json(answer)
    outages = {"eskomsepush": {"area_id": "capetown-16-rondebosch", "base_url": httpserver.url_for("/business/2.0")}}
    h = home([INVERTER, grid(outages=outages), load()], start="2023-03-29T00:00:00", duration="1d", step_s=900)
    frame = Engine(h).run().frame
    off = np.flatnonzero(frame["grid_available"].to_numpy() == 0)
    # 10:00-12:30 and 18:00-20:30 local: steps 40…49 and 72…81 of 15 minutes
    assert off.tolist() == list(range(40, 50)) + list(range(72, 82))
    monkeypatch.delenv("ESP_API_TOKEN")
    with fetch.configure(cache_dir=cache / "empty"), pytest.raises(fetch.SourceError) as err:
        Engine(h)
    assert str(err.value).startswith("EskomSePush API (developer.sepush.co.za): no token found in the environment "
                                     "variable ESP_API_TOKEN; get an API token at https://eskomsepush.gumroad.com")


# -- bad source configuration: refused before anything runs --------------------------------------

def weather_home(source: dict) -> dict:
    return home_doc([SUN, {"name": "weather", "kind": "weather", "config": {"source": source}}, INVERTER])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lat=st.one_of(st.floats(max_value=-90.0001, allow_nan=False, allow_infinity=False),
                     st.floats(min_value=90.0001, allow_nan=False, allow_infinity=False)))
def test_bad_latitude_is_refused_naming_the_field_and_range(lat):
    with pytest.raises(SpecError) as err:
        parse_home(weather_home({"type": "met_norway", "latitude": lat}))
    assert err.value.errors[0].startswith("elements[1].config.source.latitude: must be >= -90 and <= 90 (got ")


@settings(max_examples=40, deadline=None)
@given(url=st.one_of(st.just("http://example.org/x"), st.just("ftp://127.0.0.1/x"),
                     st.just("https://user:pw@example.org"), st.just("http://10.0.0.1:8080/lf"),
                     st.text(max_size=40).filter(lambda s: not s.startswith("https://"))))
def test_bad_base_url_is_refused(url):
    with pytest.raises(ValidationError) as err:
        MetNorwaySource(base_url=url)
    assert "base_url" in str(err.value)


@settings(max_examples=30, deadline=None)
@given(zone=st.text(max_size=6).filter(lambda z: z not in ("NO1", "NO2", "NO3", "NO4", "NO5")))
def test_bad_price_zone_is_refused(zone):
    doc = home_doc([INVERTER, {"name": "grid", "kind": "grid", "config": {
        "tariff": {"type": "spot", "source": {"type": "hvakosterstrommen", "zone": zone}}}}])
    with pytest.raises(SpecError) as err:
        parse_home(doc)
    assert "zone" in "\n".join(err.value.errors) and "NO3" in "\n".join(err.value.errors)


def test_token_file_must_be_a_mounted_secret(tmp_path, monkeypatch):
    monkeypatch.delenv(entsoe.ENV_SECRETS_DIR, raising=False)
    with pytest.raises(ValidationError, match="token_file"):
        entsoe.EntsoeSource(zone="NO1", token_file="/etc/passwd")
    (tmp_path / "entsoe-token").write_text("abc\n")
    monkeypatch.setenv(entsoe.ENV_SECRETS_DIR, str(tmp_path))
    src = entsoe.EntsoeSource(zone="NO1", token_file=str(tmp_path / "entsoe-token"))
    assert fetch.read_token(entsoe.SERVICE, src.token_env, src.token_file) == "abc"


def test_no_request_at_import():
    import subprocess
    import sys

    code = ("import sys, socket\n"
            "def no(*a, **k): raise SystemExit('a connection at import')\n"
            "socket.socket.connect = no\n"
            "import hometwin.fetch, hometwin.services.weather.model, hometwin.services.grid.model\n"
            "print('requests' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


# -- typical years: EPW files and PVGIS TMY ------------------------------------------------------
# No recorded PVGIS answer or EPW file is at hand; pvlib's shipped TMY3 (Greensboro, 723170TYA.CSV,
# real NSRDB values) is written in both layouts by the test, and each reader must give back its values.

def tmy3_frame():
    import os

    import pvlib

    path = os.path.join(os.path.dirname(pvlib.__file__), "data", "723170TYA.CSV")
    data, meta = pvlib.iotools.read_tmy3(path, map_variables=True)
    return data.reset_index(drop=True), meta, path


def epw_text(data, meta) -> str:
    head = [f"LOCATION,Greensboro,NC,USA,TMY3,723170,{meta['latitude']},{meta['longitude']},{meta['TZ']},"
            f"{meta['altitude']}", "DESIGN CONDITIONS,0", "TYPICAL/EXTREME PERIODS,0", "GROUND TEMPERATURES,0",
            "HOLIDAYS/DAYLIGHT SAVINGS,No,0,0,0", "COMMENTS 1,written by tests/test_sources.py from a TMY3 file",
            "COMMENTS 2,", "DATA PERIODS,1,1,Data,Sunday, 1/ 1,12/31"]
    base = dt.datetime(1990, 1, 1)
    rows = []
    for i in range(8760):
        t = base + dt.timedelta(hours=i)
        r = data.iloc[i]
        cover = int(r["TotCld (tenths)"])
        rows.append(f"1990,{t.month},{t.day},{t.hour + 1},60,A7A7,{r['temp_air']},{r['temp_dew']},50,101300,0,0,0,"
                    f"{r['ghi']},{r['dni']},{r['dhi']},0,0,0,0,0,{r['wind_speed']},{cover},{cover},9999,99999,9,"
                    f"999999999,0,0.1,0,88,0.2,0,0")
    return "\n".join(head + rows) + "\n"


def test_an_epw_file_reads_the_values_written_and_runs_as_its_tmy3(tmp_path):
    from hometwin.services.weather.sources.typical_year import read_epw_arrays
    from hometwin.services.weather.model import Weather, read_tmy3_arrays
    from test_weather import make_home, run, sun_signals

    data, meta, tmy3 = tmy3_frame()
    epw = tmp_path / "greensboro.epw"
    epw.write_text(epw_text(data, meta))
    got = read_epw_arrays(str(epw))
    assert got["utc_offset_h"][0] == -5.0
    for key in ("ghi", "dni", "dhi", "temp_air", "wind_speed"):
        np.testing.assert_allclose(got[key], data[key].to_numpy(), rtol=1e-12, err_msg=key)
    np.testing.assert_allclose(got["cloud_cover"], data["TotCld (tenths)"].to_numpy() / 10.0)
    home = make_home(lat=meta["latitude"], lon=meta["longitude"], alt=meta["altitude"],
                     start="2023-07-01T05:00:00Z", n_steps=1440, seed=0)
    sun = sun_signals(home)
    a = run(Weather("weather", {"source": {"type": "epw", "path": str(epw)}}, home), home, sun, 1440)
    b = run(Weather("weather", {"source": {"type": "tmy3", "path": tmy3}}, home), home, sun, 1440)
    for key in ("ghi", "dni", "dhi", "temp_air", "wind_speed", "cloud_cover"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-12, err_msg=key)
    assert read_tmy3_arrays(tmy3)["ghi"].sum() == pytest.approx(got["ghi"].sum())


def test_pvgis_tmy_over_loopback_parsed_by_pvlib_and_cached_for_good(httpserver, cache):
    from hometwin.services.weather.sources import typical_year

    data, meta, _ = tmy3_frame()
    base = dt.datetime(1990, 1, 1)
    hourly = [{"time(UTC)": (base + dt.timedelta(hours=i)).strftime("%Y%m%d:%H%M"), "T2m": float(r["temp_air"]),
               "RH": 50.0, "G(h)": float(r["ghi"]), "Gb(n)": float(r["dni"]), "Gd(h)": float(r["dhi"]),
               "IR(h)": 300.0, "WS10m": float(r["wind_speed"]), "WD10m": 180.0, "SP": 101300.0}
              for i, (_, r) in enumerate(data.iterrows())]
    answer = {"inputs": {"location": {"latitude": 36.1, "longitude": -79.95, "elevation": 273.0},
                         "meteo_data": {}}, "meta": {"inputs": {}},
              "outputs": {"months_selected": [{"month": m, "year": 1990} for m in range(1, 13)],
                          "tmy_hourly": hourly}}
    httpserver.expect_request("/api/v5_3/tmy", query_string={"lat": "36.1000", "lon": "-79.9500",
                                                              "outputformat": "json"}).respond_with_json(answer)
    src = typical_year.PVGISTMYSource(base_url=httpserver.url_for("/api/v5_3"))
    got, doc = typical_year.load_pvgis(src, 36.1, -79.95)
    np.testing.assert_array_equal(got["ghi"], data["ghi"].to_numpy())
    np.testing.assert_array_equal(got["temp_air"], data["temp_air"].to_numpy())
    assert got["utc_offset_h"][0] == 0.0 and doc.meta["licence"].startswith("PVGIS © European Union")
    typical_year.load_pvgis(src, 36.1, -79.95)  # a TMY does not change: no second request
    assert len(httpserver.log) == 1


def test_open_meteo_archive_asks_for_the_run_dates_and_keeps_them(httpserver, cache):
    raw = json.loads(OPEN_METEO.read_text())
    httpserver.expect_request("/v1/archive").respond_with_json(raw)
    src = open_meteo.OpenMeteoSource(mode="archive", base_url=httpserver.url_for("/v1/archive"))
    got, _ = open_meteo.load(src, 45.83, 6.86, utc(2025, 2, 24), utc(2025, 2, 25, 23))
    args = httpserver.log[0][0].args
    assert (args["start_date"], args["end_date"]) == ("2025-02-23", "2025-02-26")
    assert args["wind_speed_unit"] == "ms" and args["timeformat"] == "unixtime"
    assert got["temp_air"][0] == raw["minutely_15"]["temperature_2m"][0]
    open_meteo.load(src, 45.83, 6.86, utc(2025, 2, 24), utc(2025, 2, 25, 23))
    assert len(httpserver.log) == 1  # an archive does not change


def test_a_cache_that_cannot_be_written_is_one_line(httpserver, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    httpserver.expect_request("/x").respond_with_data(b"[]")
    service = fetch.Service(name="t", title="Test service", host="example.invalid", licence="test")
    with fetch.configure(cache_dir=blocker / "cache", offline=False, min_interval_s=0.0):
        with pytest.raises(fetch.SourceError) as err:
            fetch.fetch(service, httpserver.url_for("/x"))
    assert "\n" not in str(err.value) and "cannot write the cache" in str(err.value) and "--cache-dir" in str(err.value)
