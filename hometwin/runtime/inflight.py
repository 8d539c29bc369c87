"""Windows in flight: the clock keeps its next tick out while a window is open.

A single-step window always ends where it was asked to (``k = 0``), so the next one's start is known
before its ``Flows`` come back, and the clock's round trip carries no information it needs.  At speed
``max`` the clock therefore keeps ``in_flight`` ticks out (2 by default; 1 is DESIGN.md's pattern).
Its ticks go to the inverter alone: one that comes while a window is open waits here and rides in
that window's ``Settle`` as ``next``, so an element per window settles and starts the next window at
once, with no tick of its own; the inverter relays a tick on ``hometwin.window.tick`` only to those
that did not get it so (the first window, after a pause or a window of many steps, a newcomer).  No
element sees a window twice.  docs/runtime.md, "Windows in flight".
"""

from __future__ import annotations

import logging
from typing import Any

from hometwin.runtime import messages as m

log = logging.getLogger("hometwin.balancer")


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
