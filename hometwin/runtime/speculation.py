"""Speculative packets: an element per window publishes its next packet ahead of the Settle.

With the clock off the windows' path, a single-step window still waited for two round trips in a row:
the ``Settle`` to the elements per window and their next packets back, then the battery's dispatch.
The first carries a dependency only when a window was short: a stateful load computes its request
assuming it is fully served, and the battery's next status is its dispatch answer once the window
settles in full.  So an element per window publishes its packet for the next window (marked
``speculative``) right after this one's, and the inverter's ``Settle`` says whose was right
(``confirmed``: served bit for bit what it assumed; the battery a dispatch that was used).  A confirmed
packet is taken for the next window; any other is dropped, and its element rolls back and publishes
again.  Neither side guesses what the other decided.  docs/runtime.md, "Speculative packets".

A confirmed packet is kept; any other is taken back: the element rolls back to the mark before it and publishes again.
Its sides live here: the inverter's :class:`Speculation` and the element's :class:`ElementSpeculation`
(the clock has none: it never sees a packet).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from hometwin.element import Role
from hometwin.runtime import messages as m

log = logging.getLogger("hometwin.balancer")


# -- the balancer's side ---------------------------------------------------------------------------
class Speculation:
    """Which speculative packets the inverter (``b``) takes: those its last ``Settle`` confirmed."""

    def __init__(self, b: Any):
        self.b = b
        self.confirmed: dict[str, int] = {}  # element → the window whose speculative packet is taken from it

    def decide(self, w: Any, k: int, nxt: m.Tick | None, parts: list[str], desc: dict[str, m.Describe],
               requests: dict[str, np.ndarray], served: dict[str, np.ndarray],
               dispatched: bool) -> tuple[m.Tick | None, list[str]]:
        """For window ``w``'s ``Settle``: the window after ``nxt`` when its tick is here (``then``: the
        elements per window may publish their packet for it ahead), and the participants per window
        whose packet for ``nxt``, published ahead, is taken — this window settled in full for them, as
        they assumed: a source or load got exactly what it asked, the battery its dispatch answer.
        None with a strategy (its prepare stage reads the elements between windows)."""
        b = self.b
        self.confirmed = {}
        if nxt is None or b.prepare_stage:
            return None, []
        queued = b.inflight.queued
        then = queued[1] if len(queued) > 1 else None
        if then is not None and not then.follows(nxt.seq, nxt.i0 + nxt.n):
            then = None
        confirmed = []
        if k == w.n - 1:
            for n in parts:
                d = desc[n]
                if d.ahead or n == b.name or n not in b.roster:
                    continue
                if d.role in ("source", "load"):
                    if np.array_equal(served[n], requests[n]):
                        confirmed.append(n)
                elif d.role == "storage" and dispatched:
                    confirmed.append(n)
        self.confirmed = {n: nxt.seq for n in confirmed}
        return then, confirmed

    def takes(self, msg: Any) -> bool:
        """A packet for the window open: one published ahead of the last window's Settle is taken only
        if that Settle confirmed it (else its element takes it back and publishes it again)."""
        if not getattr(msg, "speculative", False):
            return True
        if self.confirmed.get(msg.element) != msg.seq or msg.element not in self.b.members:  # (or it left)
            self.b.metrics.inc("speculation", "dropped")
            return False
        self.b.metrics.inc("speculation", "used")
        return True

    def left(self, name: str) -> None:
        self.confirmed.pop(name, None)

    def log_summary(self) -> None:
        spec = self.b.metrics.values["speculation"]
        if spec:
            log.info("speculative packets: %d used, %d dropped (taken back by their elements)",
                     spec.get(("used",), 0), spec.get(("dropped",), 0))


# -- the element's side ---------------------------------------------------------------------------
class _Spec:
    """A packet out ahead of this window's ``Settle``: the window it is for (``tick``), the element
    as it was before it settled this window as assumed (``mark``), and the ``set``s it applied at
    that boundary (pending again if the packet is taken back)."""

    __slots__ = ("tick", "mark", "applied", "joules")

    def __init__(self, tick: m.Tick, mark: Any, applied: list[dict[str, Any]], joules: np.ndarray | None):
        self.tick, self.mark, self.applied, self.joules = tick, mark, applied, joules

    def is_for(self, t: m.Tick | None) -> bool:
        return t is not None and (t.seq, t.i0, t.n, t.dt_s) == (self.tick.seq, self.tick.i0, self.tick.n, self.tick.dt_s)


class ElementSpeculation:
    """An element's packets out ahead (its :class:`hometwin.runtime.element_window.ElementWindow`,
    ``win``): the window after this one (``then``, as the Settle that started it said) and the
    packet out for it (``out``), kept or taken back when this window's Settle comes."""

    def __init__(self, win: Any):
        self.win = win
        el = win.element
        #: only an element per window whose next packet depends only on what it was served
        self.speculates = not win.ahead and not win.needs and not el.outputs \
            and el.role in (Role.source, Role.load, Role.storage)
        self.then: m.Tick | None = None  # the window after this one (the Settle that started it said so)
        self.out: _Spec | None = None  # a packet published ahead of this window's Settle

    def checked_then(self, then: m.Tick | None, uri: str) -> None:
        """Take a Settle's ``then`` if it may start a window here (as a tick is checked), else None."""
        if then is None or not self.speculates:
            self.then = None
        else:
            self.then = then if self.win.check_tick(then, uri=uri) else None

    def may_speculate(self) -> bool:
        """The next window is known (``then``) and this element's packet for it depends only on
        what it gets in this one; not while it waits for a strategy's plans."""
        win = self.win
        return self.speculates and self.then is not None and self.out is None and win.plan_from is None \
            and win.w is not None and not win.settled

    def speculate(self, served: np.ndarray) -> list[tuple[str, m.Message]]:
        """Settle this window as if served ``served`` (what it asked; the battery: its dispatch answer),
        apply the pending ``set``s at the boundary, and say to publish the next window's packet now,
        marked speculative; the mark before it is kept to roll back to."""
        win = self.win
        el, w, t = win.element, win.w, self.then
        mark = el.checkpoint()
        type(el).settle(el, w, w.n - 1, served)  # the model's own: a state file keeps committed windows only
        applied = win.apply_pending()
        nw = win.window(t)
        if el.role == Role.storage:
            self.out = _Spec(t, mark, applied, None)
            return [(m.STORAGE, m.StorageStatus(seq=t.seq, element=win.name, params=el.params(), speculative=True))]
        joules = np.asarray(el.request(nw, {}), dtype=float)
        self.out = _Spec(t, mark, applied, joules)
        return [(win.uri_request, m.EnergyRequest(seq=t.seq, element=win.name, role=el.role.value, n=nw.n,
                                                  joules=joules, speculative=True))]

    def speculate_storage(self, seq: int, served: np.ndarray) -> list[tuple[str, m.Message]]:
        """The battery's next status once its dispatch answer for window ``seq`` is out, if still so."""
        win = self.win
        if win.w is not None and win.w.seq == seq and win.dispatched == seq and self.may_speculate():
            return self.speculate(served)
        return []

    def rollback(self) -> None:
        """Take the packet out ahead back: the element as before it settled this window as assumed."""
        spec, self.out = self.out, None
        self.win.element.rollback(spec.mark)
        self.win.pending[:0] = spec.applied
        self.win.metrics.inc("speculation", "rolled_back")

    def keep(self, st: m.Settle, served: np.ndarray) -> list[tuple[str, m.Message]]:
        """The Settle confirms the packet out ahead: the element already is where this window's
        settlement leaves it, and the next window (``st.next``) is under way."""
        spec, self.out = self.out, None
        win = self.win
        el, w = win.element, win.w
        el.committed(w, st.k)  # settled when the packet went out: committed now (the state file keeps it)
        win.metrics.inc("speculation", "kept")
        out = win.settled_metrics(w, st.k, served)
        win.enter(st.next, st.then, win.uri_settle, published=True)
        if spec.joules is not None and self.may_speculate():
            out += self.speculate(spec.joules)
        return out

    def committed(self, fn: Any) -> Any:
        """``fn()`` on the element as committed: with a packet out ahead the model has already
        settled this window as assumed; what the twin has settled is the mark before it."""
        spec = self.out
        if spec is None:
            return fn()
        el = self.win.element
        now = el.checkpoint()
        el.rollback(spec.mark)
        try:
            return fn()
        finally:
            el.rollback(now)
