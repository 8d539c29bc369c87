"""The element's window without I/O (hometwin/runtime/element_window.py), driven directly with
scripted packets: no router, no session.  What it says to publish is checked against the element
model called directly, as the engine calls it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from autobahn.wamp.exception import ApplicationError

from hometwin.element import Window
from hometwin.engine import build_element
from hometwin.registry import element_class
from hometwin.runtime import messages as m
from hometwin.runtime.dispatch import answer_dispatch
from hometwin.runtime.element_window import ElementWindow
from hometwin.runtime.metrics import ServiceMetrics
from hometwin.spec import home_context, load_home
from hometwin.topology import signal_producers
from runtime_support import CAPE_TOWN

HOME = load_home(CAPE_TOWN)
CTX = home_context(HOME, 3600)
T0 = float(CTX.start.timestamp())
PV_INPUTS = ["ghi", "dni", "dhi", "temp_air", "wind_speed", "apparent_zenith", "azimuth", "dni_extra"]


def model(name: str) -> Any:
    if name == "geyser":  # a cold tank on no timer: it heats from the first step
        return element_class("geyser")("geyser", {"temp_initial_c": 30.0, "profile": "M"}, CTX)
    return build_element(next(e for e in HOME.spec.elements if e.name == name), CTX)


def window_of(name: str, ahead: bool = False) -> tuple[ElementWindow, Any]:
    """The element's window, and the same model built again to call directly (the reference)."""
    metrics = ServiceMetrics(name)
    win = ElementWindow(model(name), m.Rejections(metrics.reject), metrics, [], ahead=ahead,
                        producers=signal_producers(HOME, name))
    return win, model(name)


def tick(seq: int, i0: int, n: int) -> m.Tick:
    return m.Tick(seq=seq, i0=i0, n=n, dt_s=60, t0=T0 + i0 * 60)


def window(seq: int, i0: int, n: int) -> Window:
    return Window(seq=seq, i0=i0, n=n, dt_s=60, home=CTX)


def only(out: list[tuple[str, m.Message]], uri: str) -> list[Any]:
    return [msg for u, msg in out if u == uri]


def test_a_short_window_settles_at_k_and_the_next_starts_after_it() -> None:
    win, ref = window_of("geyser")
    out = win.tick(tick(0, 0, 5), m.TICK_WINDOW)
    (r0,) = only(out, m.REQUEST)
    assert [u for u, _ in out] == [m.REQUEST] and r0.seq == 0 and r0.n == 5 and not r0.speculative
    assert np.array_equal(r0.joules, ref.request(window(0, 0, 5), {}))
    assert r0.joules[0] < -1e5  # the geyser heats (3 kW)

    # the inverter cut the window at k = 1 (a stateful load was short): settled through step 1 only
    served = r0.joules[:2] * 0.5
    out = win.settle(m.Settle(seq=0, i0=0, n=5, k=1, served={"geyser": served}, participants=["geyser"],
                              next=tick(1, 2, 5)))
    ref.settle(window(0, 0, 5), 1, served)
    (tel,) = only(out, m.TELEMETRY)
    assert tel.step == 1 and tel.values["temp_water"] == pytest.approx(ref.telemetry()["temp_water"], abs=0)
    (r1,) = only(out, m.REQUEST)  # the Settle carried the next tick: the next window's request at once
    assert (r1.seq, r1.n) == (1, 5) and np.array_equal(r1.joules, ref.request(window(1, 2, 5), {}))
    assert (win.settled_seq, win.next_step, win.last_seq) == (0, 2, 1)

    # a Settle for a window that is not this one, or a second one, changes nothing
    assert win.settle(m.Settle(seq=0, i0=0, n=5, k=4, served={}, participants=["geyser"])) == []
    assert win.rejections.counts[(m.SETTLE, "stale_seq")] == 1
    assert win.settle(m.Settle(seq=1, i0=3, n=5, k=4, served={}, participants=["geyser"])) == []
    assert win.rejections.counts[(m.SETTLE, "out_of_range")] == 1 and win.settled_seq == 0


def test_a_packet_out_ahead_is_kept_when_confirmed_and_taken_back_when_not() -> None:
    win, ref = window_of("geyser")
    (r0,) = only(win.tick(tick(0, 0, 1), m.TICK_WINDOW), m.REQUEST)
    assert np.array_equal(r0.joules, ref.request(window(0, 0, 1), {}))
    ref.settle(window(0, 0, 1), 0, r0.joules)
    # Settle 0 brings window 1 and says window 2 follows: request 1, and request 2 out ahead
    out = win.settle(m.Settle(seq=0, i0=0, n=1, k=0, served={"geyser": r0.joules}, participants=["geyser"],
                              next=tick(1, 1, 1), then=tick(2, 2, 1)))
    r1, r2 = only(out, m.REQUEST)
    assert (r1.seq, r1.speculative, r2.seq, r2.speculative) == (1, False, 2, True)
    assert np.array_equal(r1.joules, ref.request(window(1, 1, 1), {}))
    ref.settle(window(1, 1, 1), 0, r1.joules)  # as assumed: served in full
    assert np.array_equal(r2.joules, ref.request(window(2, 2, 1), {}))

    # confirmed: window 2 is under way already, and window 3's packet goes out ahead in turn
    out = win.settle(m.Settle(seq=1, i0=1, n=1, k=0, served={"geyser": r1.joules}, participants=["geyser"],
                              next=tick(2, 2, 1), then=tick(3, 3, 1), confirmed=["geyser"]))
    (r3,) = only(out, m.REQUEST)
    assert (r3.seq, r3.speculative, win.last_seq) == (3, True, 2)
    assert win.metrics.values["speculation"] == {("kept",): 1}

    # not confirmed (served nothing): taken back, window 2 settled as it was, window 3 asked again
    out = win.settle(m.Settle(seq=2, i0=2, n=1, k=0, served={"geyser": np.zeros(1)}, participants=["geyser"],
                              next=tick(3, 3, 1)))
    ref.settle(window(2, 2, 1), 0, np.zeros(1))
    (again,) = only(out, m.REQUEST)
    assert (again.seq, again.speculative) == (3, False)
    assert np.array_equal(again.joules, ref.request(window(3, 3, 1), {}))
    assert win.metrics.values["speculation"] == {("kept",): 1, ("rolled_back",): 1}
    assert win.element.state["temps"] == ref.state["temps"]


def test_signals_wait_for_their_window_and_come_only_from_producers() -> None:
    win, ref = window_of("roof")
    assert win.tick(tick(0, 0, 3), m.TICK_WINDOW) == []  # it waits for its input signals
    arrays = {k: np.linspace(1.0, 3.0, 3) * (i + 1) for i, k in enumerate(PV_INPUTS)}
    arrays["apparent_zenith"] = np.array([30.0, 31.0, 32.0])
    assert win.signals_in(m.Signals(seq=0, element="grid", n=3, arrays={"ghi": arrays["ghi"]})) == []
    assert win.rejections.counts[(m.SIGNALS, "not_member")] == 1  # the grid does not produce what PV reads
    sun = {k: arrays[k] for k in ("apparent_zenith", "azimuth", "dni_extra")}
    assert win.signals_in(m.Signals(seq=0, element="sun", n=3, arrays=sun)) == []  # not all there yet
    weather = {k: v for k, v in arrays.items() if k not in sun}
    out = win.signals_in(m.Signals(seq=0, element="weather", n=3, arrays=weather))
    (req,) = only(out, m.REQUEST)
    assert np.array_equal(req.joules, ref.request(window(0, 0, 3), arrays)) and req.joules.max() > 0
    # a packet for a window two ahead is buffered; one further ahead, or behind, is refused
    assert win.signals_in(m.Signals(seq=2, element="sun", n=3, arrays=sun)) == [] and list(win.early) == [2]
    win.signals_in(m.Signals(seq=5, element="sun", n=3, arrays=sun))
    assert win.rejections.counts[(m.SIGNALS, "stale_seq")] == 1


def test_the_battery_answers_dispatch_only_inside_its_window() -> None:
    win, ref = window_of("battery")
    out = win.tick(tick(0, 0, 3), m.TICK_WINDOW)
    (status,) = only(out, m.STORAGE)
    assert status.params == ref.params() and not status.speculative
    charge = np.full(3, 6000.0)
    req = m.DispatchRequest(seq=0, dt_s=60, n=3, charge_j=charge, discharge_j=np.zeros(3))
    uri = m.element_uri("battery", "dispatch")
    answer, served = answer_dispatch(win, req, uri)
    expected = ref.dispatch(60, charge, np.zeros(3), None, None, None)
    assert np.array_equal(answer.charge_j, expected.charge_j) and np.array_equal(answer.stored_j, expected.stored_j)
    assert served is None  # no window after this one is known: nothing goes out ahead
    win.settle(m.Settle(seq=0, i0=0, n=3, k=2, served={"battery": -answer.charge_j}, participants=["battery"]))
    with pytest.raises(ApplicationError):
        answer_dispatch(win, req, uri)  # the window is settled
    assert win.rejections.counts[(uri, "stale_seq")] == 1


def test_a_chunk_running_ahead_settles_in_parts() -> None:
    win, ref = window_of("tv", ahead=True)
    (req,) = only(win.tick(tick(0, 0, 6), m.TICK_AHEAD), m.REQUEST_AHEAD)
    assert req.n == 6 and np.array_equal(req.joules, ref.request(window(0, 0, 6), {}))
    # the clock paused inside the chunk: steps 0-2 (three single-step windows) first, then the rest
    win.settle(m.Settle(seq=0, i0=0, n=6, k=2, served={"tv": req.joules[:3]}, participants=["tv"], parts=[1, 2, 3]))
    assert (win.settled, win.settled_seq, win.next_step) == (False, 2, 3)
    win.settle(m.Settle(seq=0, i0=2, n=4, k=3, served={"tv": req.joules[2:]}, participants=["tv"]))
    assert win.rejections.counts[(m.SETTLE_AHEAD, "out_of_range")] == 1  # not where the rest starts
    win.settle(m.Settle(seq=0, i0=3, n=3, k=2, served={"tv": req.joules[3:]}, participants=["tv"], parts=[1, 2, 3]))
    assert (win.settled, win.settled_seq, win.next_step) == (True, 5, 6)
