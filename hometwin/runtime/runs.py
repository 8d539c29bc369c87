"""Runs of windows: at speed ``max`` one clock tick stands for a run of single-step windows.

With windows in flight the clock still woke, decoded a ``Flows`` and published a tick for every
window, deciding nothing while the windows are single steps.  So one tick (``Tick.windows``,
``run_windows`` of them, 16 by default) stands for a run ``seq, seq + 1, …`` from step ``i0``; it
stops short of the run's end, of ``run_until``'s step and of a longer window.  The inverter opens a
run's windows one after another, exactly as ticks that came one by one (the elements never see a
run), and answers the clock once per run with ``TickDone`` (``next_step``: where the next run
starts) instead of every window's ``Flows``.  docs/runtime.md, "Runs of windows".

The three sides live here: the clock's :class:`ClockRuns` (how many windows a tick stands for), the
inverter's :class:`Runs` (a run's ``TickDone`` at its last window); the elements never see a run.
"""

from __future__ import annotations

from typing import Any

from hometwin.runtime import messages as m


# -- the clock's side ------------------------------------------------------------------------------
class ClockRuns:
    """How many single-step windows a tick of the clock (``c``) stands for (``Tick.windows``)."""

    def __init__(self, c: Any, run_windows: int):
        self.c = c
        self.run_windows = int(run_windows)  # --run-windows: most windows one tick stands for

    def single_at(self, i: int) -> bool:
        """A single-step window starts at step ``i`` with nothing stopping there (the run's end,
        ``run_until``'s step)."""
        c = self.c
        return i < c.ctx.n_steps and (c.until is None or i < c.until) and c.window_len(i) == 1

    def length(self, i: int) -> int:
        """Windows the tick from step ``i`` stands for: up to ``run_windows`` single steps at speed
        max (as many as follow before the run's end, ``run_until``'s step or a longer window); one
        when paced (each step has its own wall time) or when the window at ``i`` is longer."""
        if self.c.speed != "max" or self.c.window_len(i) != 1:
            return 1
        r = 1
        while r < self.run_windows and self.single_at(i + r):
            r += 1
        return r


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
