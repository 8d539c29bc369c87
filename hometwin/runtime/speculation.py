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
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

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
