"""Service metrics: the /metrics endpoint serves power, energy, SoC and counters (loopback)."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading

import numpy as np
import pytest

from hometwin.runtime import messages as m
from hometwin.engine import build_element
from hometwin.runtime.balancer import Balancer
from hometwin.runtime.metrics import ServiceMetrics
from hometwin.spec import home_context, load_home
from runtime_support import CAPE_TOWN, StandInSession, free_port, scrape
from conftest import WAIT_S


def test_endpoint_serves_power_energy_and_soc() -> None:
    met = ServiceMetrics("oven", home="cape-town", kind="oven", role="load")
    port = free_port()
    met.serve(port, "127.0.0.1")
    met.settled(np.array([-120_000.0, -60_000.0]), 60, 1.7e9, 0.002, 2)
    met.telemetry({"soc": 0.42, "temp_water": 55.0})
    met.reject(m.TICK, "invalid")
    got = scrape(port)
    assert got['hometwin_element_power_watts{element="oven"}'] == -1000.0
    assert got['hometwin_element_energy_joules_total{direction="off_bus",element="oven"}'] == 180_000.0
    assert got['hometwin_battery_soc_ratio{element="oven"}'] == 0.42
    assert got['hometwin_element_temperature_celsius{element="oven",quantity="tank"}'] == 55.0
    assert got['hometwin_messages_rejected_total{element="oven",reason="invalid",uri="hometwin.tick"}'] == 1.0
    assert got['hometwin_steps_total{element="oven"}'] == 2.0
    # the window latency histogram: 2 ms falls in the le="0.002" bucket (upper bounds are inclusive)
    assert got['hometwin_window_latency_seconds_bucket{element="oven",le="0.001"}'] == 0.0
    assert got['hometwin_window_latency_seconds_bucket{element="oven",le="0.002"}'] == 1.0
    assert got['hometwin_window_latency_seconds_bucket{element="oven",le="+Inf"}'] == 1.0
    assert got['hometwin_window_latency_seconds_count{element="oven"}'] == 1.0
    assert got['hometwin_window_latency_seconds_sum{element="oven"}'] == 0.002
    # a second window adds to the counters and replaces the gauges
    met.settled(np.array([30_000.0]), 60, 1.7e9 + 60, 0.5, 1)
    got = scrape(port)
    assert got['hometwin_element_power_watts{element="oven"}'] == 500.0
    assert got['hometwin_element_energy_joules_total{direction="onto_bus",element="oven"}'] == 30_000.0
    assert got['hometwin_element_energy_joules_total{direction="off_bus",element="oven"}'] == 180_000.0
    assert got['hometwin_steps_total{element="oven"}'] == 3.0 and got['hometwin_ticks_total{element="oven"}'] == 2.0
    assert got['hometwin_window_latency_seconds_bucket{element="oven",le="0.2"}'] == 1.0
    assert got['hometwin_window_latency_seconds_bucket{element="oven",le="0.5"}'] == 2.0
    assert got['hometwin_simulated_time_seconds{element="oven"}'] == 1.7e9 + 60


def test_every_series_carries_the_services_identity_and_pv_says_dc() -> None:
    """home / element / kind / role on every series of a service, from what it was given; a PV
    array's power and energy are named DC, the inverter's PV counter AC, next to the home's flows."""
    roof = ServiceMetrics("roof", home="cape-town", kind="pv", role="source")
    port = free_port()
    roof.serve(port, "127.0.0.1")
    roof.settled(np.array([3000.0 * 60, 3600.0 * 60]), 60, 1.7e9, 0.001, 2)
    got = scrape(port, identity=True)
    ident = 'element="roof",home="cape-town",kind="pv",role="source"'
    assert got[f'hometwin_pv_dc_power_watts{{{ident}}}'] == 3600.0
    assert got[f'hometwin_pv_dc_energy_joules_total{{direction="onto_bus",{ident}}}'] == 6600.0 * 60
    assert not [k for k in got if k.startswith("hometwin_element_energy") or k.startswith("hometwin_element_power")]
    # every sample of every family has the four labels, with these values
    for key in got:
        for label in ident.split(","):
            assert label in key, key

    inv = ServiceMetrics("inverter", home="cape-town", kind="inverter", role="converter")
    port = free_port()
    inv.serve(port, "127.0.0.1")
    flows = {f"{f}_j": np.array([1.0, 2.0, 4.0]) * (i + 1) for i, f in enumerate(
        ("load", "grid_import", "grid_export", "battery_charge", "battery_discharge", "curtailed", "unserved",
         "loss", "pv_ac"))}
    inv.home_flows(flows, k=1)  # steps 0 and 1 settled: 3 × the flow's factor
    inv.home_flows(flows, k=2)  # all three: 7 ×
    got = scrape(port, identity=True)
    ident = 'element="inverter",home="cape-town",kind="inverter",role="converter"'
    home = 'home="cape-town",kind="inverter",role="converter"'
    assert got[f'hometwin_home_energy_joules_total{{element="inverter",flow="load",{home}}}'] == 10.0
    assert got[f'hometwin_home_energy_joules_total{{element="inverter",flow="loss",{home}}}'] == 80.0
    assert got[f'hometwin_pv_ac_energy_joules_total{{{ident}}}'] == 90.0
    assert len([k for k in got if k.startswith("hometwin_home_energy_joules_total")]) == 8


def test_a_stopping_service_lingers_for_one_more_scrape() -> None:
    """linger() returns once a scrape that began after it has completed (its last values read),
    at once when nobody ever scraped, and after max_s when the scraper went away."""
    met = ServiceMetrics("clock", home="h", kind="clock", role="clock")
    port = free_port()
    met.serve(port, "127.0.0.1")

    async def later_scrape(delay_s: float) -> tuple[bool, dict[str, float]]:
        loop = asyncio.get_running_loop()
        waiting = asyncio.ensure_future(met.linger(60.0))
        await asyncio.sleep(delay_s)
        met.set("sim_time", 42.0)  # a last value set while lingering is in that scrape
        got = await loop.run_in_executor(None, scrape, port)
        return await asyncio.wait_for(waiting, WAIT_S), got

    assert asyncio.run(met.linger(60.0)) is False  # never scraped: no wait
    scrape(port)
    lingered, got = asyncio.run(later_scrape(0.3))
    assert lingered is True and got['hometwin_simulated_time_seconds{element="clock"}'] == 42.0
    assert asyncio.run(met.linger(0.3)) is False  # scraped before, but not again within 0.3 s


def _gc_hook(phase: str, info: dict) -> None:
    """Python code run at every garbage collection (a chance for a thread switch)."""


def test_scrapes_while_the_loop_adds_series() -> None:
    """The HTTP thread reads the values while the handlers add new series: every scrape parses,
    and the last one has every message counted."""
    met = ServiceMetrics("tv")
    port = free_port()
    met.serve(port, "127.0.0.1")
    done = threading.Event()
    scrapes: list[dict[str, float]] = []
    errors: list[Exception] = []

    def scraper() -> None:
        while not done.is_set():
            try:
                scrapes.append(scrape(port))
            except Exception as exc:  # noqa: BLE001 — an HTTP 500: the collector failed mid-update
                errors.append(exc)

    interval, threshold = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: make a torn read likely
    # A collection during the copy that runs Python code (a callback here; a finalizer in real
    # life) lets the loop's thread in mid-copy: make that frequent.
    gc.set_threshold(20)
    gc.callbacks.append(_gc_hook)
    th = threading.Thread(target=scraper)
    th.start()
    try:
        for i in range(20_000):
            met.msg("in", f"hometwin.element.tv.rpc{i % 2000}")
            met.settled(np.array([float(i)]), 60, 1.7e9 + 60 * i, 0.001, 1)
    finally:
        done.set()
        th.join()
        sys.setswitchinterval(interval)
        gc.set_threshold(*threshold)
        gc.callbacks.remove(_gc_hook)
    assert not errors, errors[:3]
    assert scrapes, "no scrape finished"
    got = scrape(port)
    counts = [v for k, v in got.items() if k.startswith("hometwin_messages_total")]
    assert len(counts) == 2000 and sum(counts) == 20_000.0


@pytest.mark.timeout(30)
def test_missing_packet_is_stale_after_timeout_and_window_settles() -> None:
    """A load announced but silent: after the timeout the window is settled without it (counted)."""
    home = load_home(CAPE_TOWN)
    ctx = home_context(home, 3600)
    inv = build_element(next(e for e in home.spec.elements if e.name == "inverter"), ctx)

    async def main() -> Balancer:
        b = Balancer(inv, ["inverter", "oven"], timeout_s=0.2)
        await b.on_join(StandInSession())
        b.on_announce(m.Describe(element="oven", kind="oven", role="load", session=7).wire())
        t0 = float(ctx.start.timestamp())
        b.on_tick(m.Tick(seq=0, i0=0, n=3, dt_s=60, t0=t0).wire())
        await asyncio.sleep(0.6)
        return b

    b = asyncio.run(main())
    uris = [u for u, _ in b.session.published]
    assert m.SETTLE in uris and m.FLOWS in uris
    flows = m.Flows.model_validate(next(p for u, p in b.session.published if u == m.FLOWS))
    assert flows.stale == ["oven"] and "oven" not in flows.served
    assert b.stale_total == {"oven": 1}
    # the oven's session leaves: it is off the roster for the next window
    b.on_leave(7)
    assert "oven" not in b.rpc_roster()["elements"] and b.left == ["oven"]


def test_a_late_leave_of_an_old_session_keeps_the_restarted_element() -> None:
    """A restarted oven announces with a new session before the router reports its old session
    gone: that late leave must not take the running oven off the roster; its own leave does."""
    home = load_home(CAPE_TOWN)
    ctx = home_context(home, 3600)
    inv = build_element(next(e for e in home.spec.elements if e.name == "inverter"), ctx)

    async def main() -> tuple[list[str], list[str], list[str]]:
        b = Balancer(inv, ["inverter", "oven"], timeout_s=0.2)
        await b.on_join(StandInSession())
        b.on_announce(m.Describe(element="oven", kind="oven", role="load", session=7).wire())
        b.on_announce(m.Describe(element="oven", kind="oven", role="load", session=8).wire())  # restarted
        b.on_leave(7)  # the old session's leave, late
        after_old = b.rpc_roster()["elements"]
        b.on_leave(8)
        return after_old, b.rpc_roster()["elements"], b.left

    after_old, after_new, left = asyncio.run(main())
    assert "oven" in after_old
    assert "oven" not in after_new and left == ["oven"]
