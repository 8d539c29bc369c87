"""A replay of a Trondheim week on recorded forecasts and prices: the LP strategy at each replan
plans with the MET Norway forecast as it was published then, and never with a later one
(issue 23 part 2; ``forecast: {source: published}``).

The archive is **synthetic, built from a real fixture**: only one MET Norway answer is recorded
(``../shared/data/api_fixtures``, London, 2020-07-20), so the test makes 15 versions of it, one
every 12 h, each with every time moved onto the test week (version k 12 h after version k-1),
``meta.updated_at`` 30 min before its first step, and every air temperature raised by
``OFFSET[k]`` (distinct per version, so the forecast a plan used can be told from its values).
The versions are fetched one after another from a loopback server (pytest-httpserver) through
the real MET Norway adapter, so they land in the cache as a live twin records them.  The prices
are hvakosterstrommen answers for each day of the week built from the recorded NO1 days
2022-09-20 and 2022-12-06 (their 24 hourly prices, alternating, stamped onto the week's days,
zone NO3); they are fetched once, then the replay runs ``--offline`` from the cache.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from werkzeug import Request, Response

from hometwin import fetch
from hometwin.engine import Engine
from hometwin.services.grid.sources import hvakosterstrommen
from hometwin.services.weather.sources import met_norway
from homes import PV, SUN, battery, home, load

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "api_fixtures"
MET = FIXTURES / "met_locationforecast" / "metno_locationforecast2_complete_lat51.5_lon-0.1_2020-07-20_recorded.json"
PRICE_DAYS = [FIXTURES / "hvakosterstrommen" / f"hvakosterstrommen_prices_{d}_NO1.json"
              for d in ("2022-09-20", "2022-12-06")]
TRONDHEIM = dict(lat=63.4305, lon=10.3951, tz="Europe/Oslo")
START = dt.datetime(2022, 9, 18, 22, tzinfo=dt.timezone.utc)  # 2022-09-19 00:00 in Oslo (CEST)
DAYS = 7
STEP_S = 900
N_VERSIONS = 15  # one every 12 h from 12 h before the start: the last is published inside the week
OFFSET = [0.3 * k for k in range(N_VERSIONS)]  # [K] added to every temperature of version k


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def versions() -> list[tuple[float, dict]]:
    """(published_at [Unix s], document) of each synthetic version, oldest first."""
    base = json.loads(MET.read_text())["data"]
    first = dt.datetime.fromisoformat(base["properties"]["timeseries"][0]["time"].replace("Z", "+00:00"))
    out = []
    for k in range(N_VERSIONS):
        doc = json.loads(json.dumps(base))
        shift = (START - dt.timedelta(hours=12) + dt.timedelta(hours=12 * k)) - first
        for step in doc["properties"]["timeseries"]:
            t = dt.datetime.fromisoformat(step["time"].replace("Z", "+00:00")) + shift
            step["time"] = _iso(t)
            details = step["data"]["instant"]["details"]
            if "air_temperature" in details:
                details["air_temperature"] = round(details["air_temperature"] + OFFSET[k], 6)
        published = first + shift - dt.timedelta(minutes=30)
        doc["properties"]["meta"]["updated_at"] = _iso(published)
        out.append((published.timestamp(), doc))
    return out


def base_series() -> tuple[np.ndarray, np.ndarray]:
    """(seconds after the first step, temperature) of the recorded answer, read with json."""
    steps = json.loads(MET.read_text())["data"]["properties"]["timeseries"]
    times = [dt.datetime.fromisoformat(s["time"].replace("Z", "+00:00")).timestamp() for s in steps
             if "air_temperature" in s["data"]["instant"]["details"]]
    temps = [s["data"]["instant"]["details"]["air_temperature"] for s in steps
             if "air_temperature" in s["data"]["instant"]["details"]]
    return np.array(times) - times[0], np.array(temps)


def price_day(day: dt.date, k: int) -> list[dict]:
    """The recorded day ``k % 2``'s hourly prices stamped onto ``day`` (CEST, +02:00)."""
    recorded = json.loads(PRICE_DAYS[k % 2].read_text())
    assert len(recorded) == 24
    out = []
    for h, entry in enumerate(recorded):
        a = dt.datetime.combine(day, dt.time(h), dt.timezone(dt.timedelta(hours=2)))
        out.append({**entry, "time_start": a.isoformat(), "time_end": (a + dt.timedelta(hours=1)).isoformat()})
    return out


@pytest.fixture
def archive(tmp_path, httpserver):
    """The cache holding the 15 forecast versions and the week's price days; the spec's sources."""
    docs = versions()
    served = iter(docs)

    def met(req: Request) -> Response:
        return Response(json.dumps(next(served)[1]), headers={"Content-Type": "application/json"})

    httpserver.expect_request("/weatherapi/locationforecast/2.0/complete").respond_with_handler(met)
    days = [dt.date(2022, 9, 19) + dt.timedelta(days=d) for d in range(DAYS)]
    for k, day in enumerate(days):
        httpserver.expect_request(f"/api/v1/prices/2022/{day.month:02d}-{day.day:02d}_NO3.json").respond_with_data(
            json.dumps(price_day(day, k)), content_type="application/json")
    weather_src = {"type": "met_norway", "variant": "complete",
                   "base_url": httpserver.url_for("/weatherapi/locationforecast/2.0")}
    price_src = {"type": "hvakosterstrommen", "zone": "NO3", "base_url": httpserver.url_for("/api/v1/prices")}
    cache = tmp_path / "cache"
    with fetch.configure(cache_dir=cache, min_interval_s=0.0):
        src = met_norway.MetNorwaySource(**weather_src)
        for _ in docs:  # the live twin fetching each forecast as it was published
            met_norway.load(src, TRONDHEIM["lat"], TRONDHEIM["lon"], 0.0)
        hvakosterstrommen.load(hvakosterstrommen.HvaKosterStrommenSource(**price_src), START.timestamp(),
                               START.timestamp() + DAYS * 86400 - STEP_S)
    assert len(httpserver.log) == N_VERSIONS + DAYS
    return cache, docs, weather_src, price_src


def test_replay_plans_with_the_forecast_as_published_at_each_replan(archive):
    cache, docs, weather_src, price_src = archive
    inverter = {"name": "inverter", "kind": "inverter", "config": {"ac_power_kw": 5.0, "strategy": {
        "type": "lp", "horizon_h": 24, "step_min": 60, "replan_min": 180, "forecast": {"source": "published"}}}}
    h = home([SUN, {"name": "weather", "kind": "weather", "config": {"source": weather_src}}, PV, inverter,
              battery(capacity_kwh=10.0),
              {"name": "grid", "kind": "grid", "config": {"currency": "NOK", "tariff": {
                  "type": "spot", "source": price_src, "scale": 1.25, "adder_per_kwh": 0.45}}},
              load(power_w=900.0)],
             start=START.isoformat(), duration=f"{DAYS}d", step_s=STEP_S, name="trondheim", **TRONDHEIM)
    with fetch.configure(cache_dir=cache, offline=True):  # the replay: the cache only
        eng = Engine(h)
        fc = eng.inverter.strategy.forecaster
        seen: list[tuple[int, object]] = []
        real = fc.forecast

        def spy(i0, *args, **kwargs):
            out = real(i0, *args, **kwargs)
            seen.append((i0, out))
            return out

        fc.forecast = spy
        res = eng.run()
    assert len(res.frame) == DAYS * 86400 // STEP_S

    stamps = np.array([p for p, _ in docs])
    log = fc.published_log
    replans = sorted({e["t0_s"] for e in log})
    assert len(replans) >= DAYS * 24 // 3  # every 3 h
    for e in log:
        assert e["element"] == "weather"
        assert e["published_at"] <= e["t0_s"], e  # nothing published after the replan
        newest = stamps[stamps <= e["t0_s"]].max()  # … and the newest published before it
        assert e["published_at"] == newest, e
    used = {e["published_at"] for e in log}
    # each version in turn, from the one published 30 min before the start (version 0, 12 h older, never)
    assert used == set(stamps[1:][stamps[1:] <= replans[-1]]) and len(used) >= N_VERSIONS - 2

    # The values a plan saw are those of that version: its temperature offset, on the recorded
    # forecast's curve moved to the version's times (reference: the fixture read with json).
    rel, temps = base_series()
    checked = 0
    for i0, f in seen:
        t0 = f.t0_s
        k = int(np.searchsorted(stamps, t0, side="right")) - 1
        assert 0 <= k
        first_k = stamps[k] + 1800  # the version's first step: 30 min after its publication
        steps_per_plan = f.dt_s // STEP_S
        n = min(f.n, (res.frame.shape[0] - i0) // steps_per_plan)
        times = t0 + np.arange(n * steps_per_plan) * STEP_S
        expected = (np.interp(times - first_k, rel, temps) + OFFSET[k]).reshape(n, steps_per_plan).mean(axis=1)
        np.testing.assert_allclose(f.temp_air[:n], expected, atol=1e-6)
        if k + 1 < N_VERSIONS:  # the next version, published later, differs by its offset: not seen
            later = (np.interp(times - (stamps[k + 1] + 1800), rel, temps)
                     + OFFSET[k + 1]).reshape(n, steps_per_plan).mean(axis=1)
            assert np.abs(f.temp_air[:n] - later).max() > 0.1
        checked += 1
    assert checked == len(seen) >= len(replans)

    # the LP ran on the recorded prices: it charged the battery and paid the grid
    assert res.frame["battery_charge_j"].sum() > 3.6e6 and res.frame["battery_discharge_j"].sum() > 3.6e6
    assert res.kpis()["energy_cost"] > 0


class _Doc:
    """What :func:`hometwin.fetch.cached` gives: body, times, path."""

    def __init__(self, body: bytes, published: float | None, retrieved: float, name: str):
        self.body, self.published_at, self.retrieved_at, self.path = body, published, retrieved, Path(name + ".json")


def _parse(doc: _Doc) -> dict:
    value = json.loads(doc.body)
    return {"epoch_s": np.array([0.0, 1.0]), "temp_air": np.array([value, value])}


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=12, unique=True), st.floats(-1e3, 1.1e6))
def test_versions_give_the_newest_published_at_or_before_t(stamps, t):
    from hometwin.published import Versions

    docs = [_Doc(json.dumps(k).encode(), s, 2e6 + k, f"v{k}") for k, s in enumerate(stamps)]
    v = Versions.from_documents(docs, _parse)
    before = [s for s in stamps if s <= t]
    got = v.at(t)
    if not before:
        assert got is None
    else:
        assert got.stamp == max(before) and got.data["temp_air"][0] == stamps.index(max(before))
    idx = v.index_at(np.array([t]))[0]
    assert v.items[idx].stamp == (max(before) if before else min(stamps))


def test_versions_keep_one_of_a_forecast_fetched_again_and_leave_out_a_damaged_one():
    from hometwin.published import Versions

    docs = [_Doc(b"1", 100.0, 150.0, "a"), _Doc(b"1", 100.0, 250.0, "b"),  # the same forecast fetched twice
            _Doc(b"{damaged", 200.0, 260.0, "c"), _Doc(b"3", None, 300.0, "d")]  # no stated time: retrieval
    v = Versions.from_documents(docs, _parse)
    assert [x.stamp for x in v.items] == [100.0, 300.0] and [x.key for x in v.items] == ["a", "d"]
    with pytest.raises(ValueError):
        Versions.from_documents([_Doc(b"{damaged", 1.0, 2.0, "x")], _parse)
