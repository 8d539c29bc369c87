"""The clock service: issues ticks, paced (``speed`` simulated s per wall s) or as fast as possible.

A realtime run (``clock.realtime`` in the spec, ``hometwin up --realtime``) is paced by the wall
clock itself: the window of step ``i`` goes out at Unix time ``start + i × step_s``, its speed
1× and not settable; a clock that fell behind (or restarted) catches up, then follows.

Window size: fixed (``window``) or automatic — one step when paced, the spec's
window (default one day) at ``max`` speed.  The next tick goes out when the
inverter's ``TickDone`` for the previous one arrived (its ``next_step`` says where the
next window starts: a window of many steps may settle early) and, when paced, when
wall time says so; a paced clock that cannot keep up reports its lag (status, metric,
log) instead of drifting silently.  At ``max`` speed with single-step windows one tick
stands for a run of ``run_windows`` of them (``Tick.windows``) and two ticks are in
flight (``in_flight``): the inverter opens the windows one after another, and the
clock's part costs per run, not per window (docs/runtime.md, "Runs of windows").

This module holds the clock's steps: pace, tick, wait for ``TickDone``, status.  Its side of each
optimisation lives with the optimisation's other sides: runs of windows in
:mod:`~hometwin.runtime.runs` (``Clock.runs``), windows in flight in
:mod:`~hometwin.runtime.inflight` (``Clock.flight``), settling the elements running ahead at a
pause in :mod:`~hometwin.runtime.ahead`, and a restarted clock going on where the run is in
:mod:`~hometwin.runtime.resume`.

Control RPCs (``hometwin.clock.pause|resume|set_speed|run_until|status``) take
effect at the next window boundary; ``run_until`` also cuts the window there, like
``Engine.at``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pandas as pd
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions

from hometwin.runtime import messages as m
from hometwin.element import HomeContext
from hometwin.runtime.ahead import settle_ahead_now
from hometwin.runtime.inflight import ClockFlight
from hometwin.runtime.metrics import ServiceMetrics
from hometwin.runtime.resume import where_the_run_is
from hometwin.runtime.runs import ClockRuns
from hometwin.runtime.settings import DEFAULTS, RuntimeSettings
from hometwin.runtime.wamp import handler, plain
from hometwin.window import window_len

log = logging.getLogger("hometwin.clock")

#: Lag above this is logged as a warning (seconds of wall time).
LAG_WARN_S = 1.0


def parse_speed(value: Any) -> float | str:
    """``max`` or a positive number of simulated seconds per wall second."""
    if isinstance(value, str) and value.strip().lower() in ("max", "inf", "fast"):
        return "max"
    try:
        speed = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"speed: a number > 0 or 'max' (got {value!r})") from None
    if not speed > 0 or speed == float("inf"):
        raise ValueError(f"speed: a number > 0 or 'max' (got {value!r})")
    return speed


class Clock:
    """The tick source of one home run."""

    def __init__(self, ctx: HomeContext, speed: float | str = "max", window: int | None = None,
                 default_window: int | None = None, expect: list[str] | None = None,
                 paused: bool = False, until: int | None = None, start_timeout_s: float = DEFAULTS.start_timeout_s,
                 retick_s: float = DEFAULTS.retick_s,
                 metrics: ServiceMetrics | None = None, replan_steps: int = 0, in_flight: int = DEFAULTS.in_flight,
                 run_windows: int = DEFAULTS.run_windows):
        self.ctx = ctx
        #: A realtime run (``clock.realtime``, ``hometwin up --realtime``) follows the wall clock:
        #: step ``i`` goes out at ``start + i × step_s`` (Unix time), whatever the speed asked.
        self.realtime = bool(getattr(ctx, "realtime", False))
        self.speed = 1.0 if self.realtime else parse_speed(speed)
        self.window = window
        self.default_window = int(default_window or max(1, 86400 // ctx.step_s))
        self.replan_steps = int(replan_steps)  # the inverter strategy's planning cadence (0 = none)
        self.expect = list(expect or [])
        self.settings = RuntimeSettings(in_flight=in_flight, run_windows=run_windows, retick_s=retick_s,
                                        start_timeout_s=start_timeout_s)  # refused here when out of range
        self.runs = ClockRuns(self, run_windows)  # how many single steps a tick stands for
        self.flight = ClockFlight(self, in_flight)  # the ticks out, each awaiting its TickDone
        self.paused = paused
        self.until = until
        self.start_timeout_s = start_timeout_s
        self.retick_s = retick_s
        self.metrics = metrics or ServiceMetrics("clock")
        self.rejections = m.Rejections(self.metrics.reject)
        self.i = 0
        self.seq = 0
        self.lag_s = 0.0
        self.done = False
        self.failed: str | None = None
        self.session: Any = None
        self.task: asyncio.Future | None = None  # run(), once joined
        self._wake = asyncio.Event()
        self._anchor: tuple[float, int] | None = None  # (wall time, step) pacing reference
        self._t0_epoch = float(ctx.start.timestamp())
        self._last_warn = 0.0
        self._members: list[str] = []  # who took part in the last settled window (for a re-tick)

    # -- RPCs --------------------------------------------------------------------------------------
    def status(self) -> m.ClockStatus:
        return m.ClockStatus(seq=self.seq, i=self.i, n_steps=self.ctx.n_steps,
                             sim_time=(self.ctx.start + pd.Timedelta(seconds=self.i * self.ctx.step_s)).isoformat(),
                             speed=self.speed, window=self.window, paused=self.paused, until=self.until,
                             lag_s=self.lag_s, done=self.done)

    def rpc_pause(self) -> dict[str, Any]:
        self.paused = True
        return self.status().wire()

    def rpc_resume(self) -> dict[str, Any]:
        self.paused = False
        self._anchor = None
        self._wake.set()
        return self.status().wire()

    def rpc_set_speed(self, speed: Any = None) -> dict[str, Any]:
        if self.realtime:
            raise ApplicationError("hometwin.error.invalid_property",
                                   "speed: a realtime run follows the wall clock (1x); its speed cannot be set",
                                   field="speed")
        try:
            self.speed = parse_speed(speed)
        except ValueError as exc:
            raise ApplicationError("hometwin.error.invalid_property", str(exc), field="speed") from None
        self._anchor = None
        self._wake.set()
        return self.status().wire()

    def rpc_run_until(self, step: Any = None) -> dict[str, Any]:
        """Pause when step ``step`` is reached (an int, or a duration from the start such as ``18h``)."""
        from hometwin.spec import parse_duration_s

        try:
            target = int(step) if isinstance(step, int) or (isinstance(step, str) and step.isdigit()) \
                else parse_duration_s(step) // self.ctx.step_s
        except (TypeError, ValueError) as exc:
            raise ApplicationError("hometwin.error.invalid_property", f"run_until: {exc}", field="step") from None
        if target <= self.i or target > self.ctx.n_steps:
            raise ApplicationError("hometwin.error.invalid_property",
                                   f"run_until: step must be in ({self.i}, {self.ctx.n_steps}] (got {target})",
                                   field="step")
        self.until = target
        self.paused = False
        self._anchor = None
        self._wake.set()
        return self.status().wire()

    def _recorded(self, op: str, fn: Any) -> Any:
        """A control RPC whose accepted calls are published as ``ControlEvent``s (the run's events)."""

        def endpoint(*args: Any, details: Any = None, **kwargs: Any) -> Any:
            answer = fn(*args, **kwargs)
            event = m.ControlEvent.accepted("clock", op, details, args={"args": plain(list(args)), **plain(kwargs)},
                                            step=self.i)
            self.session.publish(m.EVENT, event.wire())
            return answer

        return endpoint

    # -- session -----------------------------------------------------------------------------------
    async def on_join(self, session: Any) -> None:
        self.session = session
        for op, fn in (("pause", self.rpc_pause), ("resume", self.rpc_resume), ("set_speed", self.rpc_set_speed),
                       ("run_until", self.rpc_run_until)):
            await session.register(self._recorded(op, fn), m.clock_uri(op), options=RegisterOptions(details=True))
        await session.register(lambda: self.status().wire(), m.clock_uri("status"))
        await session.subscribe(handler(m.TICK_DONE, self.on_done, self.rejections, self.metrics.msg), m.TICK_DONE)
        await session.subscribe(handler(m.RUN_FAILED, self.on_failed, self.rejections, self.metrics.msg), m.RUN_FAILED)
        asyncio.ensure_future(self._status_loop())
        self.task = asyncio.ensure_future(self.run())

    def on_done(self, payload: Any) -> None:
        d = m.decode(m.TickDone, payload, m.TICK_DONE, self.rejections)
        if d is None:
            return
        fut = self.flight.waiting.get(d.seq)
        if fut is None or fut.done():
            self.rejections.reject(m.TICK_DONE, "stale_seq",
                                   f"tick {d.seq} done, waiting for {sorted(self.flight.waiting)}")
            return
        fut.set_result(d)

    def on_failed(self, payload: Any) -> None:
        msg = m.decode(m.RunFailed, payload, m.RUN_FAILED, self.rejections)
        if msg is not None:
            self.failed = msg.error
            self._wake.set()
            self.flight.fail()

    async def _status_loop(self) -> None:
        while not self.done and self.session is not None:
            try:
                self.session.publish(m.CLOCK_STATUS_EVENT, self.status().wire())
            except Exception:
                return
            await asyncio.sleep(1.0)

    async def wait_for_roster(self, names: list[str] | None = None, done: asyncio.Future | None = None,
                              then: str = "starting") -> None:
        """Wait (bounded by ``start_timeout_s``) until every one of ``names`` (default: every expected
        element) is on the inverter's roster; stop early once ``done`` is."""
        names = list(self.expect if names is None else names)
        deadline = time.monotonic() + self.start_timeout_s
        missing = names
        while done is None or not done.done():
            try:
                roster = m.Roster.model_validate(await self.session.call(m.ROSTER_GET))
                missing = [n for n in names if n not in roster.elements]
                if not missing:
                    return
            except Exception:
                pass  # no inverter registered (not yet, or it is restarting)
            if time.monotonic() > deadline:
                log.warning("%s without %s (not on the roster after %.0f s)", then,
                            ", ".join(missing) or "the inverter", self.start_timeout_s)
                return
            await asyncio.sleep(0.1)

    # -- the loop ------------------------------------------------------------------------------------
    def window_len(self, i: int | None = None) -> int:
        """Steps of the window starting at step ``i`` (default: where the run stands): the one
        rule of :func:`hometwin.window.window_len`, with ``run_until``'s step as its stop."""
        i = self.i if i is None else i
        auto = 1 if self.speed != "max" else self.default_window
        return window_len(i, self.ctx.n_steps, self.window or auto, stop=self.until, replan_steps=self.replan_steps)

    async def _retire(self) -> bool:
        """Wait for the oldest tick's ``TickDone``; the run goes on from where it ended.  False: the
        run stops (the clock was cancelled, or the run failed)."""
        got = await self.flight.oldest_done()
        if got is None:
            return False
        tick, done = got
        steps, self.i = done.next_step - self.i, done.next_step
        self.seq = tick.seq + tick.windows
        self._members = list(done.participants)
        self.metrics.inc("ticks", amount=tick.windows)
        self.metrics.inc("steps", amount=steps)
        self.metrics.set("sim_time", self._t0_epoch + self.i * self.ctx.step_s)
        return True

    def _set_lag(self, lag_s: float) -> None:
        self.lag_s = lag_s
        self.metrics.set("lag", lag_s)

    async def _pace(self) -> None:
        if self.speed == "max":
            self._set_lag(0.0)
            return
        if self.realtime:  # the wall clock itself: a step goes out when its time has come
            now = time.time()
            due = self._t0_epoch + self.i * self.ctx.step_s
        else:
            now = time.monotonic()
            if self._anchor is None:
                self._anchor = (now, self.i)
            wall0, i0 = self._anchor
            due = wall0 + (self.i - i0) * self.ctx.step_s / float(self.speed)
        if due > now:
            self._set_lag(0.0)  # caught up: the gauge says so too
            await asyncio.sleep(due - now)
            return
        self._set_lag(now - due)
        if self.lag_s > LAG_WARN_S and now - self._last_warn > 5.0:
            self._last_warn = now
            log.warning("paced clock is %.1f s behind wall time (speed %s): the services cannot keep up",
                        self.lag_s, self.speed)

    async def _tick(self, tick: m.Tick, fut: asyncio.Future) -> m.TickDone:
        """Publish the tick; re-publish it if it was not done within ``retick_s`` (a restarted inverter lost it).

        Before re-publishing, wait (bounded by ``start_timeout_s``) until the inverter's roster again
        holds every element of the last settled window, as the first tick waits for the whole roster:
        a restarted inverter rebuilds its roster from announcements, and a tick that reached it
        before them would be settled without those elements.
        """
        self.session.publish(m.TICK, tick.wire())
        self.metrics.msg("out", m.TICK)
        while True:
            # asyncio.wait, not wait_for: on Python 3.11 wait_for returns the result when the TickDone
            # and a cancellation arrive together, swallowing the cancellation; a paused clock then
            # waited forever for a resume instead of stopping.
            await asyncio.wait({fut}, timeout=self.retick_s)
            if fut.done():
                return fut.result()
            if self.flight.behind_oldest(tick):
                continue  # the oldest tick in flight publishes them all again, in order
            log.warning("tick %d not done after %.1f s: publishing it again once the inverter's "
                        "roster is complete", tick.seq, self.retick_s)
            await self.wait_for_roster(self._members or self.expect, fut, then="re-ticking")
            if fut.done():
                return fut.result()
            again = self.flight.again(tick)  # every tick in flight, oldest first
            for t in again:
                self.session.publish(m.TICK, t.wire())
                self.metrics.msg("out", m.TICK)
            log.warning("tick %d published again%s", tick.seq,
                        f" (and the {len(again) - 1} in flight after it)" if len(again) > 1 else "")

    async def run(self) -> None:
        await self.wait_for_roster()
        at = await where_the_run_is(self.session, self.seq, self.start_timeout_s)  # a clock restarted mid-run
        if at is not None:
            self.seq, self.i = at
        self.metrics.set("speed", 0 if self.speed == "max" else float(self.speed))
        flight = self.flight
        i = self.i  # where the next tick starts
        try:
            while not self.failed:
                if flight.ticks and not flight.may_add(i):
                    if not await self._retire():
                        break
                    continue
                if not flight.ticks:  # a window boundary with nothing out: pause, run_until, the end
                    i = self.i
                    if i >= self.ctx.n_steps:
                        break
                    if self.until is not None and i >= self.until:
                        await settle_ahead_now(self.session, self.start_timeout_s)  # before the pause shows
                        self.until = None
                        self.paused = True
                    elif self.paused and self.seq:  # their state is exact at the pause
                        await settle_ahead_now(self.session, self.start_timeout_s)
                    while self.paused and not self.failed:
                        self._wake.clear()
                        await self._wake.wait()
                    if self.failed:
                        break
                    await self._pace()
                n = self.window_len(i)
                seq = flight.next_seq(self.seq)
                tick = m.Tick(seq=seq, i0=i, n=n, dt_s=self.ctx.step_s, t0=self._t0_epoch + i * self.ctx.step_s,
                              windows=self.runs.length(i))
                fut = flight.expect(seq)
                flight.add(tick, asyncio.ensure_future(self._tick(tick, fut)))
                i += n * tick.windows  # for a window of many steps a guess (TickDone says): none follows it
        finally:
            flight.cancel()
        self.done = True
        if self.failed:
            log.error("run failed at seq %d: %s", self.seq, self.failed)
            return
        self.session.publish(m.RUN_DONE, m.RunDone(seq=self.seq, i=self.i, n_steps=self.ctx.n_steps).wire())
        self.session.publish(m.CLOCK_STATUS_EVENT, self.status().wire())
        log.info("run done: %d steps in %d windows", self.i, self.seq)


def replan_steps_of(home: Any, ctx: HomeContext) -> int:
    """Steps between the inverter strategy's plans (0 without a strategy), from the spec."""
    from hometwin.registry import element_class

    spec_el = next((e for e in home.spec.elements if e.kind == "inverter" and e.enabled), None)
    if spec_el is None:
        return 0
    inverter = element_class("inverter")(spec_el.name, spec_el.config, ctx)
    return int(getattr(getattr(inverter, "strategy", None), "replan_steps", 0) or 0)
