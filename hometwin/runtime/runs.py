"""Runs of windows: at speed ``max`` one clock tick stands for a run of single-step windows.

With windows in flight the clock still woke, decoded a ``Flows`` and published a tick for every
window, deciding nothing while the windows are single steps.  So one tick (``Tick.windows``,
``run_windows`` of them, 16 by default) stands for a run ``seq, seq + 1, …`` from step ``i0``; it
stops short of the run's end, of ``run_until``'s step and of a longer window.  The inverter opens a
run's windows one after another, exactly as ticks that came one by one (the elements never see a
run), and answers the clock once per run with ``TickDone`` (``next_step``: where the next run
starts) instead of every window's ``Flows``.  docs/runtime.md, "Runs of windows".
"""

from __future__ import annotations

from typing import Any

from hometwin.runtime import messages as m


# -- the balancer's side ---------------------------------------------------------------------------
class Runs:
    """The clock's ticks by their last window: its ``TickDone`` goes out once that window is settled."""

    def __init__(self) -> None:
        self.ends: dict[int, m.Tick] = {}  # last window of a clock tick → the tick

    def expect(self, windows: list[m.Tick], tick: m.Tick) -> None:
        """``windows`` of the clock's ``tick`` are open or queued: its TickDone follows the last one."""
        self.ends[windows[-1].seq] = tick

    def done(self, w: Any, next_step: int, parts: list[str]) -> m.TickDone | None:
        """Window ``w`` settled: its tick's ``TickDone`` when it was the tick's last window (its next may
        go out).  A tick whose windows were abandoned (a jump) is forgotten."""
        tick = self.ends.pop(w.seq, None)
        done = None if tick is None else m.TickDone(seq=tick.seq, windows=tick.windows, i0=tick.i0,
                                                    next_step=next_step, participants=parts)
        for gone in [s for s in self.ends if s < w.seq]:
            del self.ends[gone]
        return done
