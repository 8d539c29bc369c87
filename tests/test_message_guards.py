"""Inbound messages and RPC arguments that used to slip past the checks: each is now rejected
and counted, and changes nothing (services hosted on a stand-in session, no router)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from autobahn.wamp.exception import ApplicationError

from hometwin import flex as fx
from hometwin.runtime import messages as m
from hometwin.runtime import proxies as px
from hometwin.engine import build_element
from hometwin.runtime.balancer import Balancer
from hometwin.runtime.service import ElementService
from hometwin.runtime.wamp import handler
from hometwin.spec import home_context, load_home
from runtime_support import CAPE_TOWN, StandInSession

HOME = load_home(CAPE_TOWN)
CTX = home_context(HOME, 3600)
T0 = float(CTX.start.timestamp())
WEATHER_KEYS = ["ghi", "dni", "dhi", "temp_air", "wind_speed", "apparent_zenith", "azimuth", "dni_extra"]


def service(name: str, home: Any = HOME, ctx: Any = CTX) -> ElementService:
    s = ElementService(build_element(next(e for e in home.spec.elements if e.name == name), ctx))
    s.session = StandInSession()
    return s


def tick(seq: int, i0: int = 0, n: int = 3) -> dict[str, Any]:
    return m.Tick(seq=seq, i0=i0, n=n, dt_s=60, t0=T0 + i0 * 60).wire()


def on(s: Any, uri: str, fn: Any) -> Any:
    return handler(uri, fn, s.rejections, s.metrics.msg)  # as the router's deliveries reach it


def test_a_repeated_tick_must_repeat_the_window_exactly() -> None:
    house = service("house")
    on_tick = on(house, m.TICK_WINDOW, house.on_tick)
    on_tick(tick(0))
    before = house.session.published[-1][1]
    on_tick({"seq": 0, "i0": 0, "n": 3, "dt_s": 1, "t0": T0})  # "the same window" with 1 s steps
    assert house.w.dt_s == 60 and house.session.published[-1][1] is before
    assert house.rejections.counts[(m.TICK_WINDOW, "out_of_range")] == 1  # a repeat is checked as any tick


def test_a_tick_at_nan_time_is_invalid() -> None:
    house = service("house")
    on(house, m.TICK_WINDOW, house.on_tick)({"seq": 0, "i0": 0, "n": 3, "dt_s": 60, "t0": float("nan")})
    assert house.last_seq == -1 and house.rejections.counts[(m.TICK_WINDOW, "invalid")] == 1


def test_signals_buffered_before_their_tick_are_checked_against_it() -> None:
    roof = service("roof")
    on_tick, on_sig = on(roof, m.TICK_WINDOW, roof.on_tick), on(roof, m.SIGNALS, roof.on_signals)
    on_tick(tick(0))
    on_sig({"seq": 1, "element": "weather", "n": 7, "arrays": {k: [1.0] * 7 for k in WEATHER_KEYS}})  # early
    roof.win.settled = True
    on_tick(tick(1, 3))  # the window has n = 3
    assert roof.win.signals == {} and roof.rejections.counts[(m.SIGNALS, "out_of_range")] == 1


@pytest.mark.parametrize("arrays, why", [
    ({"export_limit_w": [-5000.0] * 3}, "must be >= 0"),
    ({"grid_available": [2.0] * 3}, "within [0, 1]"),
])
def test_grid_signals_out_of_range_are_refused(arrays: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("[", r"\[").replace("]", r"\]")):
        m.Signals.model_validate({"seq": 0, "element": "grid", "n": 3, "arrays": arrays})


@pytest.mark.parametrize("change, why", [
    (lambda p: p.pop("capacity_j"), "missing capacity_j"),
    (lambda p: p.update(capacity_j=0.0), "capacity_j: must be > 0"),
    (lambda p: p.update(soc_min=0.9, soc_max=0.2), "soc_min <= soc_max"),
    (lambda p: p.update(charge_power_w=-1.0), "must be >= 0: charge_power_w"),
    (lambda p: p.update(discharge_efficiency=1.5), "efficiencies within"),
])
def test_a_storage_status_must_describe_a_battery(change: Any, why: str) -> None:
    params = build_element(next(e for e in HOME.spec.elements if e.name == "battery"), CTX).params()
    m.StorageStatus(seq=0, element="battery", params=params)  # the real one passes
    change(params)
    with pytest.raises(ValueError, match=why):
        m.StorageStatus(seq=0, element="battery", params=params)


def test_a_stray_dispatch_cannot_change_the_battery_after_or_outside_its_window() -> None:
    battery = service("battery")
    on(battery, m.TICK_WINDOW, battery.on_tick)(tick(0))
    zeros = np.zeros(3)
    odd = m.DispatchRequest(seq=0, dt_s=86400, n=3, charge_j=np.full(3, 1e9), discharge_j=zeros).wire()
    with pytest.raises(ApplicationError):
        battery.rpc_dispatch(odd)  # another step length than the window's
    good = m.DispatchRequest(seq=0, dt_s=60, n=3, charge_j=np.full(3, 1000.0), discharge_j=zeros).wire()
    battery.rpc_dispatch(good)
    battery.win.settled = True  # the window was settled
    with pytest.raises(ApplicationError):
        battery.rpc_dispatch(good)
    uri = m.element_uri("battery", "dispatch")
    assert battery.rejections.counts[(uri, "out_of_range")] == 1 and battery.rejections.counts[(uri, "stale_seq")] == 1


def test_a_positional_set_is_counted() -> None:
    oven = service("oven")
    with pytest.raises(ApplicationError):
        oven.rpc_set("on")
    assert oven.rejections.counts[(m.element_uri("oven", "set"), "invalid_property")] == 1


def test_a_set_its_model_cannot_take_is_refused_at_once_and_changes_nothing() -> None:
    """A profile file that is not there passes the config model but not the element's setup: the
    set RPC says so at once (not at the boundary, where it used to leave a half-set element)."""
    house = service("house")
    el = house.element
    w = house.window(m.Tick.model_validate(tick(0, 0, 60)))
    before = el.request(w, {}).copy()
    with pytest.raises(ApplicationError, match=r"house: profile: power profile file not found: \S*/nope.csv"):
        house.rpc_set(profile={"file": "nope.csv"})
    assert house.pending_set == [] and el.config.profile is None
    assert house.rejections.counts[(m.element_uri("house", "set"), "invalid_property")] == 1
    assert np.array_equal(el.request(w, {}), before)
    assert house.rpc_set(power_w=500.0)["values"] == {"power_w": 500.0}  # a good one still goes through
    house.apply_pending()
    assert np.allclose(el.request(w, {}), -500.0 * 60)


def test_port_calls_name_steps_and_times_of_this_run() -> None:
    home = load_home(CAPE_TOWN.parent / "cape-town-lp.yaml")
    ctx = home_context(home, 86400)
    t0 = float(ctx.start.timestamp())

    def send(svc: ElementService, cmd: Any) -> Any:  # as the command RPC receives it
        return svc.rpc_command(px.encode(fx.to_wire(cmd)))

    geyser = service("geyser", home, ctx)
    with pytest.raises(ApplicationError, match="i0: must be a step of this run"):
        send(geyser, fx.TankPlan(1e300, on=np.array([1.0, 1.0, 1.0])))  # type: ignore[arg-type]
    assert geyser.element.state.get("plan") in (None, {})  # nothing stored
    dishwasher = service("dishwasher", home, ctx)
    with pytest.raises(ApplicationError, match="the run and a week"):
        send(dishwasher, fx.UpcomingStarts(t0, t0 + 2000 * 86400.0))
    with pytest.raises(ApplicationError, match="unix seconds within"):
        send(dishwasher, fx.DeferTo(1e300, 1e300))
    assert send(dishwasher, fx.UpcomingStarts(t0, t0 + 86400.0)) is not None  # a day is fine
    counted = sum(n for (uri, why), n in {**geyser.rejections.counts, **dishwasher.rejections.counts}.items()
                  if why == "invalid_argument")
    assert counted == 3


def test_a_second_announcer_cannot_take_an_elements_place() -> None:
    inverter = build_element(next(e for e in HOME.spec.elements if e.name == "inverter"), CTX)

    async def main() -> Balancer:
        b = Balancer(inverter, [e.name for e in HOME.spec.elements], timeout_s=0.2)
        await b.on_join(StandInSession())
        b.on_announce(m.Describe(element="battery", kind="battery", role="storage", session=7).wire())
        b.on_announce(m.Describe(element="battery", kind="oven", role="load", session=99).wire())  # hijack
        b.on_announce(m.Describe(element="inverter", kind="oven", role="load", session=98).wire())
        return b

    b = asyncio.run(main())
    assert b.roster["battery"].kind == "battery" and b.by_session == {7: "battery"}
    assert b.roster["inverter"].kind == "inverter"  # itself, not the announcer of its name
    assert b.rejections.counts[(m.ANNOUNCE, "out_of_range")] == 2
    b.on_leave(7)  # the real one leaves: then a new kind may come under the name
    b.on_announce(m.Describe(element="battery", kind="oven", role="load", session=99).wire())
    assert b.roster["battery"].kind == "oven"
