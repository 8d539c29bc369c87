"""A restarted inverter settles no window twice.

The truth of where a run stands lives in the elements, which commit only on a ``Settle`` (each answers
``get`` with the last one it got: ``settled_seq``, ``next_step``), and in the clock (its last
``TickDone``), not in the inverter's own state file.  So a (re)started inverter asks them before it
subscribes to ticks (:meth:`Resume.position`); a tick the clock sends again for windows settled
before is answered with its ``TickDone`` and not settled again, or, of a run settled part-way, the
rest opens (:meth:`Resume.again`); a tick beyond the window after the last one (the ones between went
to the dead inverter) is held until the clock's re-sent ticks fill the gap (:meth:`Resume.hold`).
A restarted clock likewise goes on after the inverter's last settled window
(:func:`where_the_run_is`), and an element's side is its ``get`` (``settled_seq``, ``next_step``).
docs/runtime.md, "State across restarts".

The three sides live here: the clock's :func:`where_the_run_is`, the inverter's :class:`Resume`; the
elements' (their state files, their ``get``) live with the element service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from hometwin.element import Role
from hometwin.registry import element_class
from hometwin.runtime import messages as m

log = logging.getLogger("hometwin.balancer")
clock_log = logging.getLogger("hometwin.clock")


# -- the clock's side ------------------------------------------------------------------------------
async def where_the_run_is(session: Any, seq: int, timeout_s: float) -> tuple[int, int] | None:
    """Where a clock restarted mid-run (its process crashed, its pod was rescheduled) goes on: after
    the inverter's last settled window, instead of ticking window 0 again, which every service would
    refuse as stale.  A window ticked before the restart is let settle first (waiting at most
    ``timeout_s``).  The (seq, step) of the clock's next tick, or None: it goes on from ``seq``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            roster = m.Roster.model_validate(await session.call(m.ROSTER_GET))
        except Exception:
            return None  # no inverter: a new run (wait_for_roster said so)
        if not roster.window_open or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    if roster.settled_seq < seq:
        return None
    clock_log.warning("the inverter settled window %d before this clock started: going on with window %d at "
                      "step %d", roster.settled_seq, roster.settled_seq + 1, roster.next_step)
    return roster.settled_seq + 1, roster.next_step


# -- the balancer's side ---------------------------------------------------------------------------
class Resume:
    """Where the inverter (``b``) takes the run up, and the ticks it holds until the gap is filled."""

    def __init__(self, b: Any):
        self.b = b
        self.held: dict[int, m.Tick] = {}  # a tick beyond the window after the last one, by seq

    async def position(self) -> None:
        """Where the run stands, for an inverter (re)started mid-run: the last window settled and the
        step after it, as the elements know them (each answers ``get`` with the last Settle it got:
        ``settled_seq``, ``next_step``) and the clock (its last ``TickDone``).  A tick the clock sends
        again for a window at or before it is then answered (``TickDone``) without settling it twice.
        At a run's start nobody answers, or everyone answers "nothing settled": nothing changes."""
        b = self.b
        wait = min(b.timeout_s, 5.0)

        async def ask(uri: str) -> Any:
            try:
                return await asyncio.wait_for(b.session.call(uri), wait)
            except Exception:  # not there (yet), stopped, or an older service: it cannot say
                return None

        names = [n for n in b.order if n != b.name]
        answers = await asyncio.gather(*(ask(m.element_uri(n, "get")) for n in names), ask(m.clock_uri("status")))
        best, who = (-1, 0), ""
        n_steps = b.ctx.n_steps
        for name, a in zip(names + ["clock"], answers):
            if not isinstance(a, dict):
                continue
            if name == "clock":  # its next tick's seq and step: what it got TickDone for is before them
                seq, step = a.get("seq", 0) - 1, a.get("i")
            else:
                seq, step = a.get("settled_seq"), a.get("next_step")
            if type(seq) is not int or type(step) is not int or not (seq >= 0 and 0 < step <= n_steps):
                continue
            if (seq, step) > best:
                best, who = (seq, step), name
        if best[0] < 0:
            return
        b.settled_seq, b.next_step = best
        # The battery's committed charge (its ``get``: the end of the last window it took part in) is the
        # SoC a window settled without it records, as it would have been before the restart.
        for a in answers[:-1]:
            soc = a.get("telemetry", {}).get("soc") if isinstance(a, dict) else None
            if _is_storage(a) and isinstance(soc, float) and 0.0 <= soc <= 1.0:
                b.last_soc = soc
        b.last_seq = max(b.last_seq, best[0])
        log.warning("resuming the run: window %d was settled through step %d before this inverter started "
                    "(as %s says); a tick for a settled window is answered, not settled again", best[0],
                    best[1] - 1, who)

    def again(self, t: m.Tick) -> None:
        """A tick whose first windows are settled already (the clock published it again: this inverter
        restarted, or its TickDone was late).  Every window of it settled: its ``TickDone`` again; some:
        the rest opens (a restart mid-run) — no window is settled twice."""
        b = self.b
        last = t.seq + t.windows - 1
        if t.dt_s != b.ctx.step_s or t.i0 + t.n * t.windows > b.ctx.n_steps \
                or abs(t.t0 - (b._t0_epoch + t.i0 * t.dt_s)) > 1e-3:
            b.check_tick(t, runs=True)  # refused, counted and logged there
            return
        if last <= b.settled_seq:
            if t.n == 1:
                nxt = t.i0 + t.windows  # single steps end where they were asked to
            elif last == b.settled_seq:
                nxt = b.next_step
            else:
                b.rejections.reject(m.TICK, "stale_seq", f"seq {t.seq}: settled long ago (window {b.settled_seq})")
                return
            log.info("tick %d (windows %d–%d) was settled already: its TickDone again, nothing settled twice",
                     t.seq, t.seq, last)
            b.publish(m.TICK_DONE, m.TickDone(seq=t.seq, windows=t.windows, i0=t.i0, next_step=nxt,
                                              participants=b.last_parts or b._ordered()))
            return
        skip = b.settled_seq + 1 - t.seq  # a run of single steps, settled up to its window skip - 1
        w = b.w
        if (w is not None and w.seq != b.settled_seq) or b.inflight.queued or t.i0 + skip != b.next_step:
            b.rejections.reject(m.TICK, "duplicate", f"seq {t.seq}: windows {t.seq}–{b.settled_seq} settled, "
                                "the rest under way")
            return
        windows = t.split()[skip:]
        log.warning("tick %d: windows %d–%d were settled before this inverter started; going on with window %d "
                    "at step %d", t.seq, t.seq, b.settled_seq, windows[0].seq, windows[0].i0)
        b.inflight.accept(windows, t)

    def hold(self, t: m.Tick, why: str) -> None:
        """A tick beyond the window after the last one: the ones between were lost (this inverter
        restarted); it waits until the clock publishes them again, in order, before it."""
        if t.seq not in self.held:
            log.warning("tick %d held: %s, the ticks between are awaited (the clock sends them again)", t.seq, why)
        self.held[t.seq] = t

    def release(self) -> None:
        """A held tick that now follows the last window open or queued goes in after it."""
        if not self.held:
            return
        self.held = {s: t for s, t in self.held.items() if s > self.b.settled_seq}
        last = self.b.inflight.last()
        t = self.held.pop(last.seq + 1, None) if last is not None else None
        if t is not None:
            self.b.inflight.accept(t.split(), t)


def _is_storage(answer: Any) -> bool:
    """An element's ``get`` answer is the storage's (its kind is a registered storage kind)."""
    kind = answer.get("kind") if isinstance(answer, dict) else None
    try:
        return isinstance(kind, str) and element_class(kind).role == Role.storage
    except (KeyError, ValueError):
        return False
