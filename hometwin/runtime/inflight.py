"""Windows in flight: the clock keeps its next tick out while a window is open.

A single-step window always ends where it was asked to (``k = 0``), so the next one's start is known
before its ``Flows`` come back, and the clock's round trip carries no information it needs.  At speed
``max`` the clock therefore keeps ``in_flight`` ticks out (2 by default; 1 is DESIGN.md's pattern).
Its ticks go to the inverter alone: one that comes while a window is open waits here and rides in
that window's ``Settle`` as ``next``, so an element per window settles and starts the next window at
once, with no tick of its own; the inverter relays a tick on ``hometwin.window.tick`` only to those
that did not get it so (the first window, after a pause or a window of many steps, a newcomer).  No
element sees a window twice.  docs/runtime.md, "Windows in flight".

The three sides live here: the clock's :class:`ClockFlight` (the ticks it has out, and whether
another may go), the inverter's :class:`InFlight` (ticks queued behind the open window, carried in a
``Settle`` or relayed); an element per window starts a ``Settle``'s ``next`` at once (``ElementWindow.settle``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hometwin.runtime import messages as m

log = logging.getLogger("hometwin.balancer")


# -- the clock's side ------------------------------------------------------------------------------
class ClockFlight:
    """The ticks the clock (``c``) has out, oldest first, each awaiting its ``TickDone``."""

    def __init__(self, c: Any, in_flight: int):
        self.c = c
        self.in_flight = int(in_flight)  # --in-flight: most ticks out at once (single steps at speed max)
        self.ticks: list[tuple[m.Tick, asyncio.Task]] = []  # out, oldest first, each awaiting its TickDone
        self.waiting: dict[int, asyncio.Future] = {}  # tick seq → its TickDone

    def may_add(self, i: int) -> bool:
        """Another tick may go out before the oldest one is done: at speed max, while every
        window in flight and the next are single steps (each ends where it was asked to, so the
        next one's start is known before it is settled; the next tick then waits at the inverter
        and rides in the window's Settle to the elements per window — docs/runtime.md) and
        nothing (a pause, ``run_until``, the run's end, a failure) stops at ``i``."""
        c = self.c
        return (len(self.ticks) < self.in_flight and c.speed == "max" and not c.paused and not c.failed
                and all(t.n == 1 for t, _ in self.ticks) and c.runs.single_at(i))

    def next_seq(self, seq: int) -> int:
        """The seq of the next tick, after the windows of every tick out from ``seq``."""
        return seq + sum(t.windows for t, _ in self.ticks)

    def expect(self, seq: int) -> asyncio.Future:
        """The future tick ``seq``'s ``TickDone`` will resolve (:meth:`Clock.on_done`)."""
        fut = self.waiting[seq] = asyncio.get_running_loop().create_future()
        return fut

    def add(self, tick: m.Tick, task: asyncio.Task) -> None:
        """``tick`` is out: ``task`` publishes it and returns its ``TickDone``."""
        self.ticks.append((tick, task))

    async def oldest_done(self) -> tuple[m.Tick, m.TickDone] | None:
        """Wait until the oldest tick is done: it and its ``TickDone``; None when the clock was
        cancelled or the run failed (its wait was cancelled)."""
        tick, task = self.ticks[0]
        try:
            return tick, await task
        except asyncio.CancelledError:
            return None
        finally:
            if task.done():
                self.ticks.pop(0)
                self.waiting.pop(tick.seq, None)

    def behind_oldest(self, tick: m.Tick) -> bool:
        """``tick`` is out behind an older one (which publishes them all again when they are late)."""
        return bool(self.ticks) and self.ticks[0][0] is not tick

    def again(self, tick: m.Tick) -> list[m.Tick]:
        """The ticks to publish again, oldest first, when ``tick`` is late: every one out, or ``tick``
        alone.  A restarted inverter that got a later one alone would hold it for the gap; in order it
        opens them one after another (a settled window of theirs it answers without settling it
        again: docs/runtime.md, "State across restarts")."""
        return [t for t, _ in self.ticks] or [tick]

    def fail(self) -> None:
        """The run failed: no ``TickDone`` is awaited any longer."""
        for fut in self.waiting.values():
            if not fut.done():
                fut.cancel()

    def cancel(self) -> None:
        """The clock stops: the ticks out are given up."""
        for tick, task in self.ticks:
            task.cancel()
            self.waiting.pop(tick.seq, None)


# -- the balancer's side ---------------------------------------------------------------------------
class InFlight:
    """The clock's windows the inverter (``b``) has but has not opened, and who got the next one."""

    def __init__(self, b: Any):
        self.b = b
        self.queued: list[m.Tick] = []  # windows waiting for the one open to settle, in order
        self.carried: tuple[int, frozenset[str]] | None = None  # (seq of the tick, who got it) in a Settle

    def accept(self, windows: list[m.Tick], tick: m.Tick) -> None:
        """Open (or queue) ``windows``, the unsettled windows of the clock's ``tick``."""
        b = self.b
        w = b.w
        first = windows[0]
        if w is not None and w.seq != b.settled_seq and not b.failed:
            last = self.queued[-1] if self.queued else w
            if any(q.seq == first.seq for q in self.queued) or first.seq == w.seq:
                b.rejections.reject(m.TICK, "duplicate", f"seq {first.seq} is under way already")
                return
            if first.seq == last.seq + 1 and (self.queued or w.n == 1):  # the clock's next tick, in flight
                self.queued += windows
                b.runs.expect(windows, tick)
                b.resume.release()
                return
            if first.seq > last.seq + 1:
                b.resume.hold(tick, f"window {last.seq} is the last one open")
                return
            if not b.started:
                log.error("window %d abandoned: a new tick arrived before it was settled", w.seq)
        elif first.seq > b.settled_seq + 1 and b.settled_seq >= 0:
            b.resume.hold(tick, f"window {b.settled_seq} is the last one settled")
            return
        self.queued = windows[1:] + [q for q in self.queued if q.seq > windows[-1].seq]
        b.runs.expect(windows, tick)
        b._open(first)
        b.resume.release()

    def last(self) -> m.Tick | None:
        """The last window open or queued."""
        return self.queued[-1] if self.queued else self.b.w

    def next_after(self, w: Any, k: int) -> m.Tick | None:
        """The window after ``w`` (settled through ``k``) when its tick is here: it rides in the Settle."""
        nxt = self.queued[0] if self.queued else None
        if nxt is not None and not nxt.follows(w.seq, w.i0 + k + 1):
            nxt = None  # not the window after this one (never from our clock): relayed when it opens
        return nxt

    def carry(self, nxt: m.Tick | None, parts: list[str], desc: dict[str, m.Describe]) -> None:
        """Who starts ``nxt`` from the Settle that carries it: its participants per window (see
        ElementService.on_settle)."""
        b = self.b
        self.carried = None if nxt is None else \
            (nxt.seq, frozenset(n for n in parts if not desc[n].ahead and n != b.name))

    def relay(self, t: m.Tick) -> None:
        """Send the clock's tick to the members per window that did not get it as the last Settle's
        ``next``: all of them at the first window, after a pause, for windows of many steps; only a
        newcomer (by its session) when the rest got it."""
        b = self.b
        per_window = [n for n in b.members if n != b.name and n in b.roster and not b.roster[n].ahead]
        c = self.carried
        need = [n for n in per_window if c is None or c[0] != t.seq or n not in c[1]]
        if not need:
            return
        sessions = [b.roster[n].session for n in need]
        if len(need) == len(per_window) or not all(sessions):
            b.publish(m.TICK_WINDOW, t)
        else:
            b.publish(m.TICK_WINDOW, t, eligible=sessions)
