"""End to end: ``hometwin run`` of a home on MET Norway weather and hvakosterstrommen prices.

A loopback server (pytest-httpserver) stands in for api.met.no and hvakosterstrommen.no through the
sources' ``base_url``.  It serves the recorded answers of ``../shared/data/api_fixtures``: the
NO1 prices of 2022-09-20 unchanged, and the recorded MET Norway forecast (London, 2020-07-20) with
every time moved by a whole number of days onto the price day (values unchanged) — no recorded
forecast and price day share a date.  The run's prices and weather are checked against the
fixtures read with ``json``; then ``--offline`` runs the same home from the cache without the server.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner
from werkzeug import Request, Response

from hometwin import fetch
from hometwin.cli import app
from hometwin.engine import Engine
from hometwin.spec import load_home
from homes import INVERTER, PV, SUN, home_doc, load

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "api_fixtures"
MET = FIXTURES / "met_locationforecast" / "metno_locationforecast2_complete_lat51.5_lon-0.1_2020-07-20_recorded.json"
PRICES = FIXTURES / "hvakosterstrommen" / "hvakosterstrommen_prices_2022-09-20_NO1.json"
SHIFT = dt.datetime(2022, 9, 19, tzinfo=dt.timezone.utc) - dt.datetime(2020, 7, 20, tzinfo=dt.timezone.utc)
runner = CliRunner()


def shifted_forecast() -> dict:
    data = json.loads(MET.read_text())["data"]
    for step in data["properties"]["timeseries"]:
        t = dt.datetime.fromisoformat(step["time"].replace("Z", "+00:00")) + SHIFT
        step["time"] = t.strftime("%Y-%m-%dT%H:%M:%SZ")
    return data


@pytest.fixture
def spec(tmp_path, httpserver):
    forecast = json.dumps(shifted_forecast()).encode()

    def met(req: Request) -> Response:
        assert req.args["lat"] == "51.5000" and req.args["lon"] == "-0.1000"
        return Response(forecast, headers={"Content-Type": "application/json"})

    httpserver.expect_request("/weatherapi/locationforecast/2.0/complete").respond_with_handler(met)
    httpserver.expect_request("/api/v1/prices/2022/09-20_NO1.json").respond_with_data(
        PRICES.read_bytes(), content_type="application/json")
    weather = {"name": "weather", "kind": "weather", "config": {"source": {
        "type": "met_norway", "variant": "complete", "base_url": httpserver.url_for("/weatherapi/locationforecast/2.0")}}}
    grid = {"name": "grid", "kind": "grid", "config": {"currency": "NOK", "tariff": {"type": "spot", "source": {
        "type": "hvakosterstrommen", "zone": "NO1", "base_url": httpserver.url_for("/api/v1/prices")}}}}
    doc = home_doc([SUN, weather, PV, INVERTER, grid, load(power_w=800.0)], start="2022-09-20T00:00:00",
                   duration="1d", step_s=900, tz="Europe/Oslo", lat=51.5, lon=-0.1, name="real-data")
    path = tmp_path / "home.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_run_on_fetched_data_then_offline_from_the_cache(spec, tmp_path, httpserver):
    cache, out = tmp_path / "cache", tmp_path / "out"
    result = runner.invoke(app, ["run", "-f", str(spec), "--out", str(out), "--cache-dir", str(cache), "-q"])
    assert result.exit_code == 0, result.output
    assert len(httpserver.log) == 2  # one forecast, one price day
    frame = pd.read_parquet(out / "flows.parquet")
    assert len(frame) == 96
    prices = json.loads(PRICES.read_text())
    expected = np.repeat([p["NOK_per_kWh"] for p in prices], 4)  # 15-minute steps of each hour
    np.testing.assert_array_equal(frame["price_import"].to_numpy(), expected)
    kpis = json.loads((out / "kpis.json").read_text())["kpis"]
    assert kpis["energy_cost"] == pytest.approx((frame["grid_import_j"] * expected).sum() / 3.6e6, rel=1e-9)
    assert kpis["energy_cost"] > 0

    # the weather of the run is the recorded forecast: its values at the recorded steps
    with fetch.configure(cache_dir=cache, offline=True):
        engine = Engine(load_home(spec))
    weather = engine.elements["weather"]._cache.window(0, 96)
    t0 = dt.datetime(2022, 9, 19, 22, tzinfo=dt.timezone.utc)  # 2022-09-20 00:00 in Oslo
    steps = json.loads(MET.read_text())["data"]["properties"]["timeseries"]
    checked = 0
    for step in steps:
        t = dt.datetime.fromisoformat(step["time"].replace("Z", "+00:00")) + SHIFT
        k = (t - t0).total_seconds() / 900
        if 0 <= k < 96:
            details = step["data"]["instant"]["details"]
            assert weather["temp_air"][int(k)] == pytest.approx(details["air_temperature"], abs=1e-9)
            assert weather["cloud_cover"][int(k)] == pytest.approx(details["cloud_area_fraction"] / 100, abs=1e-9)
            checked += 1
    assert checked == 24
    night = frame["pv_ac_j"].to_numpy()[:16]  # 00:00-04:00 in Oslo: the sun is down in London
    assert np.all(night == 0) and frame["pv_ac_j"].sum() > 0

    # offline: the server forgets everything; the run is the same, from the cache alone
    httpserver.clear()
    out2 = tmp_path / "out2"
    result = runner.invoke(app, ["run", "-f", str(spec), "--out", str(out2), "--cache-dir", str(cache),
                                 "--offline", "-q"])
    assert result.exit_code == 0, result.output
    assert len(httpserver.log) == 0
    again = pd.read_parquet(out2 / "flows.parquet")
    pd.testing.assert_frame_equal(again, frame)


def test_offline_without_the_data_says_what_is_missing_in_one_line(spec, tmp_path, httpserver):
    empty = tmp_path / "empty-cache"
    result = runner.invoke(app, ["run", "-f", str(spec), "--out", str(tmp_path / "o"), "--cache-dir", str(empty),
                                 "--offline", "-q"])
    assert result.exit_code == 6
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("cannot start: offline: no cached MET Norway Locationforecast (api.met.no) data for "
                               "the forecast at 51.5000, -0.1000 in ") and str(empty) in lines[0]
    assert len(httpserver.log) == 0


def test_open_meteo_weather_and_entsoe_prices_in_a_run(httpserver, tmp_path, monkeypatch):
    """The Open-Meteo recorded answer (Mont Blanc, local times, 15-minute instant irradiance) drives
    the weather element, and ENTSO-E prices (EUR/MWh × the stated rate) the grid."""
    from homes import grid, home
    from test_sources import ENTSOE_XML, OPEN_METEO

    raw = json.loads(OPEN_METEO.read_text())
    httpserver.expect_request("/v1/forecast").respond_with_json(raw)
    xml = ENTSOE_XML.replace(b"2024-01-01T23:00Z", b"2025-02-23T23:00Z").replace(b"2024-01-02T03:00Z",
                                                                                  b"2025-02-24T03:00Z")
    httpserver.expect_request("/api").respond_with_data(xml, content_type="application/xml")
    monkeypatch.setenv("ENTSOE_API_TOKEN", "tok")
    weather = {"name": "weather", "kind": "weather", "config": {"source": {
        "type": "open_meteo", "base_url": httpserver.url_for("/v1/forecast"), "interpolation": "linear"}}}
    spot = {"type": "spot", "source": {"type": "entsoe", "zone": "FR", "exchange_rate": 1.0,
                                       "base_url": httpserver.url_for("/api")}, "adder_per_kwh": 0.1}
    h = home([SUN, weather, INVERTER, grid(tariff=spot), load()], start="2025-02-24T00:00:00", duration="4h",
             step_s=900, tz="Europe/Paris", lat=45.83, lon=6.86)
    with fetch.configure(cache_dir=tmp_path / "cache", offline=False, min_interval_s=0.0):
        engine = Engine(h)
        frame = engine.run().frame
    expected = np.repeat([50.5, -3.25, -3.25, 80.0], 4) / 1000 + 0.1  # A03: position 3 repeats 2
    np.testing.assert_allclose(frame["price_import"].to_numpy(), expected, rtol=1e-12)
    # the weather at each 15-minute step is the recorded sample of that local time
    chunk = engine.elements["weather"]._cache.window(0, 16)
    block = raw["minutely_15"]
    np.testing.assert_array_equal(chunk["temp_air"], block["temperature_2m"][:16])
    np.testing.assert_allclose(chunk["wind_speed"], np.array(block["wind_speed_10m"][:16]) / 3.6, rtol=1e-12)
    assert len([r for r, _ in httpserver.log if r.path == "/api"]) == 1
