"""Elements that run ahead: a chunk of windows computed at once.

Most of a home is a pure function of time (the sun, a weather series, PV reading them, a grid's
tariff and outages, timed appliances, base loads: ``Element.runs_ahead``).  Waking each of them twice
per single-step window (tick, settle) cost most of a window's CPU over the router, so they compute a
*chunk* of ``ahead_steps`` steps at once, as mosaik's ``max_advance`` lets a simulator step ahead of
the others.  The inverter cuts the run into chunks (at least the window), publishes the chunk's tick
(``hometwin.ahead.tick``) at the first window a chunk does not cover, slices every window out of
their chunk packets, and settles the chunk with them once (``hometwin.ahead.settle``): at its end,
when a window cuts it off, or when the clock pauses (``hometwin.ahead.settle_now``), listing where
each window ended so that they settle window by window, bit-identical to ``hometwin run``.
docs/runtime.md, "Elements that run ahead".

A ``set`` takes effect at once: the element computes the chunk's packets again and publishes them, and the inverter uses them from its next window.
The three sides live here: the clock's :func:`settle_ahead_now` (at a pause), the inverter's
:class:`AheadChunk` and the element's :class:`ElementChunk`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from hometwin.element import Window
from hometwin.runtime import messages as m

log = logging.getLogger("hometwin.balancer")
clock_log = logging.getLogger("hometwin.clock")


# -- the clock's side ------------------------------------------------------------------------------
async def settle_ahead_now(session: Any, timeout_s: float) -> None:
    """The clock pauses (or stops at ``run_until``'s step): ask the inverter to settle the elements
    running ahead up to here (it answers after publishing it), waiting at most ``timeout_s``; without
    an inverter, or with an old one, there is nothing to wait for."""
    try:
        await asyncio.wait_for(session.call(m.SETTLE_AHEAD_NOW), timeout_s)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        clock_log.debug("%s: %r", m.SETTLE_AHEAD_NOW, exc)


# -- the balancer's side ---------------------------------------------------------------------------
class _Slice:
    """One window cut from an ahead element's chunk packet: what the window reads as its packet."""

    __slots__ = ("element", "role", "n", "joules", "arrays")

    def __init__(self, msg: Any, j: int, n: int):
        self.element, self.n = msg.element, n
        self.role = getattr(msg, "role", None)
        joules = getattr(msg, "joules", None)
        self.joules = joules[j:j + n].copy() if joules is not None else None
        arrays = getattr(msg, "arrays", None)
        self.arrays = {k: a[j:j + n] for k, a in arrays.items()} if arrays is not None else None


def _covers(chunk: m.Tick | None, w: Any) -> bool:
    """True when every step of window ``w`` lies in ``chunk``."""
    return chunk is not None and chunk.i0 <= w.i0 and w.i0 + w.n <= chunk.i0 + chunk.n


class AheadChunk:
    """The chunk the elements running ahead are in, as the inverter (``b``) keeps it: their packets for
    it, what each was served over it, and how far it is settled and told."""

    def __init__(self, b: Any, steps: int):
        self.b = b
        self.steps = int(steps)  # --ahead-steps: the chunk's length (at least the window)
        self.tick: m.Tick | None = None  # the chunk (seq: its first window)
        self.packets: dict[str, Any] = {}  # element → its packet for the chunk
        self.revised: dict[str, Any] = {}  # element → a revised packet, used from the next window
        self.served: dict[str, np.ndarray] = {}  # ahead participant → served per step of the chunk
        self.done = 0  # steps of the chunk settled
        self.told = 0  # … of which the elements running ahead were told (hometwin.ahead.settle)
        self.ends: list[int] = []  # where each window settled in the chunk ended (steps from its i0)

    def open(self, w: Any) -> None:
        """Window ``w`` opens: when members run ahead, their revisions take effect now; a window the
        chunk does not cover closes it (its settlement goes out) and starts the next one; the chunk
        packets at hand are sliced for the window."""
        b = self.b
        if not any(b.roster[n].ahead for n in b.members if n in b.roster):
            return
        self.packets.update(self.revised)
        self.revised.clear()
        c = self.tick
        if not _covers(c, w):
            self.close()
            n = max(w.n, min(self.steps, b.ctx.n_steps - w.i0))
            c = self.tick = m.Tick(seq=w.seq, i0=w.i0, n=n, dt_s=w.dt_s, t0=b._t0_epoch + w.i0 * w.dt_s)
            self.packets.clear()
            self.served, self.done, self.told, self.ends = {}, 0, 0, []
            b.publish(m.TICK_AHEAD, c)
        for name, msg in self.packets.items():
            if name in b.members:
                b.packets[name] = _Slice(msg, w.i0 - c.i0, w.n)

    def settled(self, w: Any, k: int, parts: list[str], desc: dict[str, m.Describe],
                served: dict[str, np.ndarray]) -> None:
        """Window ``w`` settled through ``k``: what the participants running ahead got goes into the
        chunk's account; at the chunk's end it is settled with them."""
        c = self.tick
        if c is None or not c.i0 <= w.i0 < c.i0 + c.n:
            return
        j = w.i0 - c.i0
        for n in parts:
            if desc[n].ahead:
                acc = self.served.get(n)
                if acc is None:
                    acc = self.served[n] = np.zeros(c.n)
                got = served.get(n)
                acc[j:j + k + 1] = 0.0 if got is None else got[: k + 1]
        self.done = j + k + 1
        self.ends.append(self.done)
        if self.done >= c.n:
            self.close()

    def close(self) -> None:
        """Settle the chunk's steps settled since the last time with the elements running ahead: at
        its end, when a window it does not cover cuts it off, and when the clock pauses (then their
        state is exact at the pause).  The message covers the rest of the chunk from the first step
        not told yet (``i0``) and commits through ``k`` of it."""
        c = self.tick
        a, z = self.told, self.done
        if c is None or z <= a:
            return
        self.told = z
        if not self.served:
            return
        st = m.Settle(seq=c.seq, i0=c.i0 + a, n=c.n - a, k=z - a - 1, participants=list(self.served),
                      served={n: acc[a:z] for n, acc in self.served.items()},
                      parts=[e - a for e in self.ends if a < e <= z])
        self.b.publish(m.SETTLE_AHEAD, st)

    def rpc_settle_now(self) -> dict[str, Any]:
        """``hometwin.ahead.settle_now``: the clock pauses; tell the elements running ahead what they got
        so far (published before this answer, so they have it before anyone who saw the pause asks)."""
        self.b.metrics.msg("in", m.SETTLE_AHEAD_NOW)
        self.close()
        c = self.tick
        return {"settled_to": self.b.next_step, "chunk": None if c is None else [c.seq, c.i0, c.n]}

    def on_packet(self, uri: str, model: type[m.Message], payload: Any) -> None:
        """A chunk packet (``hometwin.ahead.signals`` / ``.request``): the window open takes its slice
        now if it still waits; a second one for the chunk is a revision, used from the next window."""
        b = self.b
        msg = m.decode(model, payload, uri, b.rejections)
        if msg is None:
            return
        name, c = msg.element, self.tick
        if b.asleep:
            b._alive(name)
        d = b.roster.get(name)
        if d is None or not d.ahead:
            b.rejections.reject(uri, "not_member", f"{name} is not on the roster as an element running ahead")
            return
        if b._expects(d) != {m.REQUEST_AHEAD: m.REQUEST, m.SIGNALS_AHEAD: m.SIGNALS}[uri] \
                or (uri == m.REQUEST_AHEAD and msg.role != d.role):
            b.rejections.reject(uri, "out_of_range", f"{name} ({d.role}) does not publish on {uri}")
            return
        if getattr(msg, "speculative", False):
            b.rejections.reject(uri, "out_of_range", f"{name}: a chunk is never published ahead (speculative)")
            return
        if c is None or msg.seq != c.seq or self.done >= c.n:
            b.rejections.reject(uri, "stale_seq", f"{name}: chunk {msg.seq}, the chunk is "
                                + ("none" if c is None else f"{c.seq}" + (" (settled)" if self.done >= c.n else "")))
            return
        if msg.n != c.n:
            b.rejections.reject(uri, "out_of_range", f"{name}: n {msg.n} != chunk n {c.n}")
            return
        w = b.w
        in_flight = w is not None and w.seq != b.settled_seq
        if in_flight and name in b.packets:
            self.revised[name] = msg  # this window has its packet: the revision from the next one
            return
        self.packets[name] = msg
        if in_flight and not b.started and name in b.members and _covers(c, w):
            b.packets[name] = _Slice(msg, w.i0 - c.i0, w.n)
            b.advance()

    def joined(self, d: m.Describe, renewed: bool) -> None:
        """``d`` was admitted (``renewed``: under a new session): what its old session got is not the new
        one's to settle; an element running ahead that joins mid-chunk gets the chunk's tick again."""
        if renewed:
            self.served.pop(d.element, None)
        if d.ahead and d.element not in self.packets and self.tick is not None and self.done < self.tick.n:
            self.b.publish(m.TICK_AHEAD, self.tick)

    def left(self, name: str) -> None:
        """``name`` left the roster: a new session under its name starts its own share."""
        self.packets.pop(name, None)
        self.revised.pop(name, None)
        self.served.pop(name, None)


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
