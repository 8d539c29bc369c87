"""A paced clock that the services cannot keep up with reports its lag (status, metric, log)
instead of drifting silently, and reports none once they keep up again (no router needed:
a stand-in session answers each tick with its TickDone after a set delay)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from hometwin.runtime import messages as m
from hometwin.runtime import clock as clock_mod
from hometwin.runtime.clock import Clock
from hometwin.spec import home_context, load_home
from conftest import EXAMPLES


def done(t: m.Tick) -> dict[str, Any]:
    """What the inverter publishes once every window of ``t`` is settled in full."""
    return m.TickDone(seq=t.seq, windows=t.windows, i0=t.i0, next_step=t.i0 + t.n * t.windows).wire()


class SlowServices:
    """Answers every tick with its TickDone ``delay_s`` later (the services' time for its windows)."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.clock: Clock | None = None
        self.ticks: list[tuple[float, m.Tick]] = []
        self.caught_up = 0  # the first window after the clock caught up with wall time
        self.anchor: Any = None  # the clock's pacing reference (wall time, step)

    def publish(self, uri: str, payload: Any) -> None:
        if uri == m.TICK:
            t = m.Tick.model_validate(payload)
            loop = asyncio.get_running_loop()
            self.ticks.append((time.monotonic(), t))
            loop.call_later(self.delay_s, self.clock.on_done, done(t))

    async def call(self, uri: str, *args: Any, **kwargs: Any) -> Any:
        if uri == m.SETTLE_AHEAD_NOW:  # the clock pauses: the inverter settles the elements running ahead
            return {"settled_to": 0, "chunk": None}
        assert uri == m.ROSTER_GET
        return m.Roster(seq=0, elements=[]).wire()

    async def register(self, *args: Any, **kwargs: Any) -> None: ...

    async def subscribe(self, *args: Any, **kwargs: Any) -> None: ...


def lag_gauge(clk: Clock) -> float:
    """The clock's lag gauge (every series carries home/element/kind/role: the clock's are its own)."""
    (sample,) = [s for metric in clk.metrics.registry.collect() for s in metric.samples
                 if s.name == "hometwin_clock_lag_seconds" and s.labels.get("element") == "clock"]
    return sample.value


@pytest.mark.timeout(60)
def test_paced_clock_reports_lag_and_recovers(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock_mod, "LAG_WARN_S", 0.2)
    ctx = home_context(load_home(EXAMPLES / "cape-town.yaml"), 86400)
    # 60 s steps at 1200× speed: a tick is due every 50 ms of wall time; the services need 150 ms
    services = SlowServices(delay_s=0.15)

    async def main() -> tuple[list[float], list[float], list[float]]:
        clk = Clock(ctx, speed=1200)
        services.clock = clk
        await clk.on_join(services)
        behind, gauges = [], []
        for _ in range(8):  # eight windows late: the lag grows ~0.1 s a window
            seq = clk.seq
            while clk.seq == seq:
                await asyncio.sleep(0.005)
            behind.append(clk.status().lag_s)
            gauges.append(lag_gauge(clk))
        services.delay_s = 0.0  # the services keep up again: the clock catches up, then paces
        while clk.status().lag_s > 0:
            await asyncio.sleep(0.005)
        caught_up = clk.seq
        while clk.seq < caught_up + 3:
            await asyncio.sleep(0.005)
        after = [clk.status().lag_s, lag_gauge(clk)]
        clk.rpc_pause()
        services.caught_up = caught_up
        services.anchor = clk._anchor
        return behind, gauges, after

    with caplog.at_level(logging.WARNING, logger="hometwin.clock"):
        behind, gauges, after = asyncio.run(main())
    # every window starts later than wall time says, and the lag grows by ~ (0.15 - 0.05) s a window
    assert all(b > 0 for b in behind[1:])
    assert behind[-1] > behind[1] + 0.4
    assert gauges[1:] == behind[1:]  # the metric is the status' figure
    assert any("behind wall time" in r.getMessage() for r in caplog.records)
    # caught up: status and metric both say no lag
    assert after == [0.0, 0.0]
    # no tick ever went out before wall time said so (step i is due at anchor + i × 50 ms), and
    # once caught up the clock waited for that: the windows went out no sooner than due
    wall0, i0 = services.anchor
    assert all(t >= wall0 + (tick.i0 - i0) * 0.05 - 1e-6 for t, tick in services.ticks)
    assert len([tick for _, tick in services.ticks if tick.seq >= services.caught_up]) >= 3


# -- the control RPCs, checked before they touch the clock -----------------------------------------

from autobahn.wamp.exception import ApplicationError  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def day_clock(speed: Any = "max") -> Clock:
    return Clock(home_context(load_home(EXAMPLES / "cape-town.yaml"), 86400), speed=speed)


async def joined(services: SlowServices, speed: Any = "max", window: int | None = 60) -> Clock:
    """A day clock with fixed windows, joined to a stand-in session (it starts ticking)."""
    clk = day_clock(speed=speed)
    clk.window = window
    services.clock = clk
    await clk.on_join(services)
    return clk


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.floats(max_value=0.0), st.just(float("inf")), st.just(float("nan")), st.integers(max_value=0),
                 st.text().filter(lambda s: s.strip().lower() not in ("max", "inf", "fast")
                                  and not _is_positive_number(s)),
                 st.none(), st.lists(st.integers(), max_size=2)))
def test_set_speed_refuses_what_is_not_a_positive_speed_and_keeps_the_old_one(bad: Any) -> None:
    clk = day_clock(speed=60)
    with pytest.raises(ApplicationError) as err:
        clk.rpc_set_speed(bad)
    assert err.value.error == "hometwin.error.invalid_property" and err.value.kwargs["field"] == "speed"
    assert "a number > 0 or 'max'" in err.value.args[0]
    assert clk.speed == 60.0


def _is_positive_number(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return 0 < value < float("inf")


def test_speed_decides_the_automatic_window() -> None:
    clk = day_clock()
    assert clk.window_len() == 1440  # as fast as possible: a day per window
    assert clk.rpc_set_speed("3600")["speed"] == 3600.0
    assert clk.window_len() == 1  # paced: one step per window
    clk.rpc_set_speed("max")
    assert clk.window_len() == 1440
    clk.window = 60  # a fixed window wins either way
    assert clk.window_len() == 60


@pytest.mark.parametrize("step", [0, -5, 1441, "25h", "soon", None, 3.5])
def test_run_until_refuses_steps_outside_the_rest_of_the_run(step: Any) -> None:
    clk = day_clock()
    clk.paused = True
    with pytest.raises(ApplicationError) as err:
        clk.rpc_run_until(step)
    assert err.value.kwargs["field"] == "step" and "run_until" in err.value.args[0]
    assert clk.paused and clk.until is None


def test_run_until_accepts_a_step_or_a_duration_and_the_window_stops_there() -> None:
    clk = day_clock()
    assert clk.rpc_run_until("18h")["until"] == 1080
    assert clk.window_len() == 1080  # the window is cut where the clock will pause
    clk.i = 1080
    assert clk.rpc_run_until(1200)["until"] == 1200 and clk.window_len() == 120


@pytest.mark.timeout(30)
def test_pause_stops_the_ticks_and_resume_continues() -> None:
    services = SlowServices(delay_s=0.0)

    async def main() -> tuple[int, int, int]:
        clk = day_clock(speed=6000)  # a tick every 10 ms
        services.clock = clk
        await clk.on_join(services)
        while clk.seq < 3:
            await asyncio.sleep(0.005)
        clk.rpc_pause()
        while not clk._wake._waiters:  # type: ignore[attr-defined]  # the loop now waits to be woken
            await asyncio.sleep(0.005)
        paused_at = len(services.ticks)
        await asyncio.sleep(0.3)
        still = len(services.ticks)
        clk.rpc_resume()
        while len(services.ticks) < still + 3:
            await asyncio.sleep(0.005)
        clk.rpc_pause()
        return paused_at, still, clk.seq

    paused_at, still, seq = asyncio.run(main())
    assert still == paused_at  # no tick while paused
    assert seq >= paused_at + 2  # and on after resume, from where it stopped
    seqs = [t.seq for _, t in services.ticks]
    assert seqs == list(range(len(seqs)))  # no window skipped or repeated


@pytest.mark.timeout(30)
def test_a_restarted_clock_waits_for_the_open_window_then_goes_on_after_it() -> None:
    """Killed mid-window: the inverter still settles the window ticked before; the new clock waits
    for that (``window_open``), then ticks the next window where it starts, not window 0."""
    answers = [dict(settled_seq=6, next_step=420, window_open=True)] * 3 + [dict(settled_seq=7, next_step=480)]

    class Restarted(SlowServices):
        async def call(self, uri: str, *args: Any, **kwargs: Any) -> Any:
            assert uri == m.ROSTER_GET
            return m.Roster(seq=7, elements=[], **(answers.pop(0) if len(answers) > 1 else answers[0])).wire()

    services = Restarted(delay_s=0.0)

    async def main() -> Clock:
        clk = await joined(services)
        while not services.ticks:
            await asyncio.sleep(0.01)
        clk.rpc_pause()
        return clk

    asyncio.run(main())
    first = services.ticks[0][1]
    assert (first.seq, first.i0, first.n) == (8, 480, 60)
    assert len(answers) == 1  # it asked until the open window was settled


@pytest.mark.timeout(60)
@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_a_stop_that_meets_the_flows_stops_the_clock(turns: int) -> None:
    """The clock's task is cancelled (the service stops) a loop turn or two after its window's
    Flows arrive, while it is told to pause: it must end, not take the Flows, pause and wait for ever."""

    class Racing(SlowServices):
        def publish(self, uri: str, payload: Any) -> None:
            if uri != m.TICK:
                return
            t = m.Tick.model_validate(payload)
            self.ticks.append((time.monotonic(), t))
            loop = asyncio.get_running_loop()
            loop.call_soon(self.clock.on_done, done(t))
            if len(self.ticks) == 2:
                clk = self.clock

                def stop(left: int) -> None:
                    if left:
                        loop.call_soon(stop, left - 1)
                    else:
                        clk.rpc_pause()
                        clk.task.cancel()

                loop.call_soon(stop, turns)

    services = Racing(delay_s=0.0)

    async def main() -> bool:
        clk = await joined(services)
        await asyncio.wait({clk.task}, timeout=30)  # returns when it ends; bound for a loaded machine
        ended = clk.task.done()
        if not ended:
            clk.failed = "test"
            clk._wake.set()
        return ended

    assert asyncio.run(main()), "the clock took the Flows, paused, and did not stop"


# -- single-step windows at speed max: two in flight ------------------------------------------------

class CountingServices(SlowServices):
    """Answers each tick after ``delay_s`` and records how many ticks were out, unanswered, at once."""

    def __init__(self, delay_s: float):
        super().__init__(delay_s)
        self.out: set[int] = set()
        self.most_out = 0

    def publish(self, uri: str, payload: Any) -> None:
        if uri == m.TICK:
            seq = payload["seq"]
            self.out.add(seq)
            self.most_out = max(self.most_out, len(self.out))
            asyncio.get_running_loop().call_later(self.delay_s, self.out.discard, seq)
        super().publish(uri, payload)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("in_flight,run_windows", [(1, 1), (2, 1), (1, 16), (2, 16)])
def test_single_steps_at_max_keep_windows_in_flight_and_pause_exactly(in_flight: int, run_windows: int) -> None:
    """At speed max the clock sends the next tick of single-step windows before the last one is
    done (``in_flight``), never more, each a run of up to ``run_windows`` windows, in order and
    gap-free; ``run_until`` still pauses exactly there, with nothing beyond it ticked (a run stops
    short of it), and the clock goes on from there."""
    ctx = home_context(load_home(EXAMPLES / "cape-town.yaml"), 86400)
    services = CountingServices(delay_s=0.002)

    async def main() -> tuple[Clock, list[int]]:
        clk = Clock(ctx, speed="max", window=1, until=40, in_flight=in_flight, run_windows=run_windows)
        services.clock = clk
        await clk.on_join(services)
        while not clk.paused or services.out:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)  # nothing more goes out while paused
        at_pause = [w.i0 for _, t in services.ticks for w in t.split()]
        clk.rpc_run_until(55)
        while not clk.paused or clk.i < 55 or services.out:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        clk.task.cancel()
        return clk, at_pause

    clk, at_pause = asyncio.run(main())
    assert at_pause == list(range(40))  # paused at step 40 exactly, nothing ticked past it
    ticks = [t for _, t in services.ticks]
    windows = [w for t in ticks for w in t.split()]
    assert [w.seq for w in windows] == list(range(55)) and [w.i0 for w in windows] == list(range(55))
    assert all(t.n == 1 for t in ticks)
    # runs of run_windows, cut short where run_until stops them: 40 = 16 + 16 + 8, then 15
    assert [t.windows for t in ticks] == ([1] * 55 if run_windows == 1 else [16, 16, 8, 15])
    assert services.most_out == in_flight
    assert clk.i == 55 and clk.seq == 55 and clk.status().i == 55


def test_a_paced_clock_ticks_every_window_alone() -> None:
    """Paced, each step has its own wall time: no runs (one window a tick), whatever run_windows says."""
    clk = Clock(home_context(load_home(EXAMPLES / "cape-town.yaml"), 86400), speed=600, run_windows=16)
    assert clk.window_len(0) == 1 and clk.runs.length(0) == 1
    clk.speed = "max"
    assert clk.runs.length(0) == 1  # automatic windows at speed max are a day long: no run either
    clk.window = 1
    assert clk.runs.length(0) == 16 and clk.runs.length(1440 - 5) == 5  # the run's end cuts the last run


def test_a_clock_keeps_at_least_one_window_in_flight() -> None:
    ctx = home_context(load_home(EXAMPLES / "cape-town.yaml"), 86400)
    with pytest.raises(ValueError, match="in_flight: must be >= 1"):
        Clock(ctx, in_flight=0)
    with pytest.raises(ValueError, match=r"run_windows: must be in \[1, 1024\]"):
        Clock(ctx, run_windows=0)
