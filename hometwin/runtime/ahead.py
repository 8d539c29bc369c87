"""Elements that run ahead: a chunk of windows computed at once.

Most of a home is a pure function of time (the sun, a weather series, PV reading them, a grid's
tariff and outages, timed appliances, base loads: ``Element.runs_ahead``).  Waking each of them twice
per single-step window (tick, settle) cost most of a window's CPU over the router, so they compute a
*chunk* of steps at once.  The inverter publishes the chunk's tick (``hometwin.ahead.tick``), slices
every window out of their chunk packets, and settles the chunk with them once
(``hometwin.ahead.settle``), listing where each window ended so that they settle window by window,
bit-identical to ``hometwin run``; when the clock pauses inside a chunk it is settled in parts.
A ``set`` takes effect at once: the element computes the chunk's packets again and publishes them,
and the inverter uses them from its next window.  docs/runtime.md, "Elements that run ahead".
"""

from __future__ import annotations

from typing import Any

from hometwin.element import Window
from hometwin.runtime import messages as m


# -- the element's side ---------------------------------------------------------------------------
def element_topics(ahead: bool) -> tuple[str, str, str, str]:
    """An element's topics for (tick, signals, request, settle): per window, or running ahead."""
    if ahead:
        return m.TICK_AHEAD, m.SIGNALS_AHEAD, m.REQUEST_AHEAD, m.SETTLE_AHEAD
    return m.TICK_WINDOW, m.SIGNALS, m.REQUEST, m.SETTLE


class ElementChunk:
    """An element running ahead: its window is the inverter's chunk, settled in one part or in
    several (the clock paused inside it), each covering the rest of the chunk."""

    def __init__(self) -> None:
        self.settled_to: int | None = None  # the chunk is settled up to this step
        self.windows = 0  # windows of the chunk settled so far (its Settles' parts)

    def start(self, w: Window) -> int:
        """The first step of chunk ``w`` not settled yet: where its next Settle must start."""
        return w.i0 if self.settled_to is None else self.settled_to

    def settle(self, w: Window, st: m.Settle) -> tuple[Window, bool, int, int]:
        """Part ``st`` of chunk ``w`` is settled: (the part, as a window; whether the chunk is settled
        in full; the last window settled; the step after it)."""
        self.settled_to = st.i0 + st.k + 1
        if st.i0 == w.i0:
            self.windows = 0
        self.windows += len(st.parts) or 1  # the chunk's windows have consecutive seqs from its own
        done, settled_seq = self.settled_to >= w.i0 + w.n, w.seq + self.windows - 1
        if st.i0 != w.i0:  # a later part: the rest of the chunk from st.i0
            w = Window(seq=w.seq, i0=st.i0, n=st.n, dt_s=w.dt_s, home=w.home)
        return w, done, settled_seq, self.settled_to

    @staticmethod
    def revised_by(win: Any, sig: m.Signals) -> bool:
        """Signals for the chunk whose packets are out: a producer's revision (a ``set``), so ours
        follow; False (counted) once the chunk is settled."""
        if win.published and any(k in win.needs for k in sig.arrays):
            if win.settled:
                win.rejections.reject(win.uri_signals, "stale_seq", f"seq {sig.seq}: chunk already settled")
                return False
            win.published = win.sent_signals = False
        return True

    @staticmethod
    def revise(win: Any) -> list[tuple[str, m.Message]] | None:
        """A ``set`` while the chunk is open: apply it at once and say to publish the chunk's packets
        again (the inverter takes them from its next window); None: it waits for the next chunk."""
        if win.w is None or win.settled:
            return None
        win.apply_pending()
        win.published = win.sent_signals = False
        return win.advance()
