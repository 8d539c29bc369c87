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
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from hometwin.runtime import messages as m

log = logging.getLogger("hometwin.balancer")


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
