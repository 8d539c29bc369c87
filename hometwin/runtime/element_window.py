"""One element's windows over WAMP, without I/O (sans-IO): the element's side of the tick protocol.

:class:`ElementWindow` is a state machine.  The element service decodes a packet, feeds it here
and publishes what comes back (a list of ``(topic, message)``); nothing here reads a socket,
waits or publishes.  It calls only the element model, as :meth:`hometwin.engine.Engine.step_window`
does for this one element::

    tick(Tick)        → the battery's StorageStatus; then advance()
    signals(Signals)  → (once every input signal of the window is here) advance():
                        the element's Signals (environment, grid), its EnergyRequest (sources, loads)
    settle(Settle)    → element.commit(w, k, served) (settle, then the state file); the window-end Telemetry;
                        and the next window's tick() when the Settle carries it (``next``)

Its optimisations are parts it owns: :class:`hometwin.runtime.speculation.ElementSpeculation`
(``spec``: the next window's packet out ahead of this window's Settle),
:class:`hometwin.runtime.ahead.ElementChunk` (``chunk``: running ahead, the window is the
inverter's chunk) and :func:`hometwin.runtime.dispatch.answer_dispatch` (the battery's answer).
A packet that does not fit is counted (``rejections``) and dropped, never applied.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from hometwin.element import Element, InvalidProperty, Role, Window
from hometwin.runtime import messages as m
from hometwin.runtime import prepare as pp
from hometwin.runtime.ahead import ElementChunk, element_topics
from hometwin.runtime.metrics import ServiceMetrics
from hometwin.runtime.speculation import ElementSpeculation

log = logging.getLogger("hometwin.service")

#: How many windows ahead a packet may be buffered (router reordering across publishers).
AHEAD = 2

#: What a step of the window says to publish: (topic, message), in order.
Out = list[tuple[str, m.Message]]


def tick_ok(t: m.Tick, ctx: Any, t0_epoch: float, last_seq: int, w: Window | None, rejections: m.Rejections,
            repeat_ok: bool = False, uri: str = m.TICK, runs: bool = False) -> bool:
    """``t`` may start a host's next window (its last tick ``last_seq``, its window ``w``;
    ``runs``: a run of windows may, the inverter's); a tick that may not is counted."""
    # The clock repeats a tick nobody settled (publish the packets again): only its seq is not
    # new; step length, range and time are checked as for any tick.
    repeat = repeat_ok and w is not None and (t.seq, t.i0, t.n) == (w.seq, w.i0, w.n)
    if not repeat and t.seq <= last_seq:
        rejections.reject(uri, "stale_seq", f"seq {t.seq} <= last {last_seq}")
        return False
    if t.windows != 1 and not runs:
        rejections.reject(uri, "out_of_range", f"windows {t.windows}: a run of windows is the inverter's "
                          "to open, one tick a window here")
        return False
    if t.dt_s != ctx.step_s:
        rejections.reject(uri, "out_of_range", f"dt_s {t.dt_s} != step_s {ctx.step_s}")
        return False
    if t.i0 + t.n * t.windows > ctx.n_steps:
        rejections.reject(uri, "out_of_range", f"window {t.i0}+{t.n * t.windows} beyond the run "
                          f"({ctx.n_steps} steps)")
        return False
    if abs(t.t0 - (t0_epoch + t.i0 * t.dt_s)) > 1e-3:
        rejections.reject(uri, "out_of_range", f"t0 {t.t0} does not match step {t.i0}")
        return False
    return True


def apply_sets(element: Element, pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply the pending ``set``s (a window boundary); returns them (applied or refused)."""
    done = []
    while pending:
        props = pending.pop(0)
        done.append(props)
        try:
            values = element.set(**props)
            log.info("%s: set %s", element.name, values)
        except InvalidProperty as exc:  # validated before; the config changed in between
            log.error("%s: set refused at the boundary: %s", element.name, exc)
    return done


class ElementWindow:
    """The window of one hosted non-inverter element: tick → signals → request → settle.

    ``pending``: the ``set``s validated and waiting for a window boundary (the host's list, shared);
    ``ahead``: the element runs ahead (its window is the inverter's chunk, on the ``hometwin.ahead.*``
    topics); ``producers``: who may send it the signals it reads (None: anyone).
    """

    def __init__(self, element: Element, rejections: m.Rejections, metrics: ServiceMetrics,
                 pending: list[dict[str, Any]], ahead: bool = False, producers: set[str] | None = None):
        el = self.element = element
        self.name, self.ctx = el.name, el.home
        self.rejections, self.metrics, self.pending, self.producers = rejections, metrics, pending, producers
        self.ahead = ahead
        self.uri_tick, self.uri_signals, self.uri_request, self.uri_settle = element_topics(ahead)
        self.t0_epoch = float(self.ctx.start.timestamp())
        self.needs = set(el.inputs)
        self.last_seq = -1  # last tick seen
        self.w: Window | None = None
        self.t_tick = 0.0
        self.signals: dict[str, np.ndarray] = {}
        self.early: dict[int, list[m.Signals]] = {}
        self.published = False  # this window's signals / request are out
        self.sent_signals = False
        self.settled = True
        self.dispatched: int | None = None  # the last window the battery dispatched
        # The last window the inverter settled while this element listened (a participant or left out) and
        # the step after it: a restarted inverter asks (``get``) and resumes after it, settling none twice.
        self.settled_seq, self.next_step = -1, 0
        self.plan_from: str | None = None  # the inverter whose plan_ready this element waits for
        self.plan_seq = -1  # last window whose plan_ready arrived
        self.chunk = ElementChunk() if ahead else None
        self.spec = ElementSpeculation(self)

    def check_tick(self, t: m.Tick, repeat_ok: bool = False, uri: str = m.TICK) -> bool:
        return tick_ok(t, self.ctx, self.t0_epoch, self.last_seq, self.w, self.rejections, repeat_ok, uri)

    def apply_pending(self) -> list[dict[str, Any]]:
        return apply_sets(self.element, self.pending)

    def window(self, t: m.Tick) -> Window:
        return Window(seq=t.seq, i0=t.i0, n=t.n, dt_s=t.dt_s, home=self.ctx)

    # -- tick --------------------------------------------------------------------------------------
    def tick(self, t: m.Tick, uri: str, then: m.Tick | None = None) -> Out:
        """Window ``t`` starts: from its tick (``uri``) or the last window's ``Settle.next`` (``then``:
        that Settle's window after it)."""
        # A chunk is repeated when an element joins mid-chunk (it needs the chunk's tick): publish again.
        if not self.check_tick(t, repeat_ok=self.ahead or not self.settled, uri=uri):
            return []
        if self.spec.out is not None:  # not the window it was for, or its tick again: the packet is taken back
            self.spec.rollback()
        if not self.settled and self.w is not None and self.w.seq != t.seq and not self.ahead:
            log.warning("%s: window %d was never settled (we were left out)", self.name, self.w.seq)
        repeat = self.w is not None and t.seq == self.w.seq and (not self.settled or self.ahead)
        if not repeat:  # a re-published tick is the same window: a set made meanwhile waits for the next one
            self.apply_pending()
            if self.chunk is not None:
                self.chunk.settled_to = None
        self.enter(t, then, uri, published=False)
        for sig in self.early.pop(t.seq, []):  # buffered before their tick: checked against it now
            if sig.n != t.n:
                self.rejections.reject(self.uri_signals, "out_of_range", f"{sig.element}: n {sig.n} != window n {t.n}")
                continue
            self._take_signals(sig)
        self.early = {s: v for s, v in self.early.items() if s > t.seq}
        out: Out = []
        if self.element.role == Role.storage:
            out.append((m.STORAGE, m.StorageStatus(seq=t.seq, element=self.name, params=self.element.params())))
        return out + self.advance()

    def enter(self, t: m.Tick, then: m.Tick | None, uri: str, published: bool) -> None:
        """Window ``t`` is this element's from now (``published``: its packet went out ahead)."""
        self.last_seq = t.seq
        self.w = self.window(t)
        self.t_tick = time.perf_counter()
        self.signals = {}
        self.published = self.sent_signals = published
        self.settled = False
        self.spec.checked_then(then, uri)

    # -- signals -----------------------------------------------------------------------------------
    def signals_in(self, sig: m.Signals) -> Out:
        """A ``Signals`` packet (decoded): taken for this window, buffered for a later one, or refused."""
        uri = self.uri_signals
        if sig.element == self.name:
            return []
        if pp.PLAN_READY in sig.arrays and not pp.plan_ready_ok(self, sig):
            return []
        if self.producers is not None and sig.element not in self.producers and self.needs & sig.arrays.keys():
            self.rejections.reject(uri, "not_member", f"{sig.element} does not produce what {self.name} reads "
                                   f"(from {', '.join(sorted(self.producers)) or 'nobody'})")
            return []
        if self.w is not None and sig.seq == self.w.seq:
            if sig.n != self.w.n:
                self.rejections.reject(uri, "out_of_range", f"n {sig.n} != window n {self.w.n}")
                return []
            if self.chunk is not None and not self.chunk.revised_by(self, sig):
                return []
            self._take_signals(sig)
            return self.advance()
        if self.last_seq < sig.seq <= self.last_seq + AHEAD or (self.ahead and sig.seq > self.last_seq):
            self.early.setdefault(sig.seq, []).append(sig)
        else:
            self.rejections.reject(uri, "stale_seq", f"seq {sig.seq}, window {self.last_seq}")
        return []

    # -- the prepare stage (plan_ready) --------------------------------------------------------------
    def _take_signals(self, sig: m.Signals) -> None:
        if pp.PLAN_READY in sig.arrays:
            self.plan_seq = sig.seq
            return
        for key, arr in sig.arrays.items():
            if key in self.needs:
                self.signals[key] = arr

    def waits_for_plan(self) -> bool:
        return self.plan_from is not None and self.w is not None and self.plan_seq != self.w.seq

    # -- request -----------------------------------------------------------------------------------
    def advance(self) -> Out:
        """Once every input signal is here: the element's signals, then its request (not while it
        waits for the inverter's plans), and the next window's packet ahead where it may."""
        if self.published or self.w is None or not self.needs <= self.signals.keys():
            return []
        el, w = self.element, self.w
        out: Out = []
        if el.outputs and not self.sent_signals:
            self.sent_signals = True
            arrays = {k: np.asarray(v, dtype=float) for k, v in el.signals(w, self.signals).items()}
            out.append((self.uri_signals, m.Signals(seq=w.seq, element=self.name, n=w.n, arrays=arrays)))
        if el.role in (Role.source, Role.load):
            if self.waits_for_plan():
                return out  # the inverter's prepare stage may still change this element's plan
            self.published = True
            joules = np.asarray(el.request(w, self.signals), dtype=float)
            out.append((self.uri_request, m.EnergyRequest(seq=w.seq, element=self.name, role=el.role.value,
                                                          n=w.n, joules=joules)))
            if self.spec.may_speculate():
                out += self.spec.speculate(joules)
        self.published = True
        return out

    def inside(self) -> bool:
        """True between this window's request and its settlement (plans must not land there)."""
        return self.published and not self.settled and self.element.role in (Role.source, Role.load)

    # -- settle ------------------------------------------------------------------------------------
    def settle(self, st: m.Settle) -> Out:
        """The inverter's ``Settle`` (decoded): settle the element through ``k`` with what it was served."""
        uri = self.uri_settle
        w = self.w
        if w is None or st.seq != w.seq or self.settled:
            self.rejections.reject(uri, "stale_seq", f"seq {st.seq}, window {self.last_seq}")
            return []
        # Running ahead, a chunk may be settled in parts (the clock paused inside it): each part
        # covers the rest of the chunk from the first step not settled yet.
        start = w.i0 if self.chunk is None else self.chunk.start(w)
        if st.i0 != start or st.i0 + st.n != w.i0 + w.n:
            self.rejections.reject(uri, "out_of_range", f"window {st.i0}/{st.n} != {start}/{w.i0 + w.n - start}")
            return []
        if self.chunk is not None:
            w, self.settled, self.settled_seq, self.next_step = self.chunk.settle(w, st)
        else:
            self.settled = True
            self.settled_seq, self.next_step = st.seq, st.i0 + st.k + 1
        if self.name not in st.participants:
            if self.spec.out is not None:
                self.spec.rollback()
            log.warning("%s: left out of window %d (stale or not on the roster yet)", self.name, st.seq)
            return []  # the inverter relays the next tick to those left out (hometwin.window.tick)
        served = st.served.get(self.name)
        if served is None:
            served = np.zeros(st.k + 1)
        if self.spec.out is not None:
            if self.name in st.confirmed and self.spec.out.is_for(st.next):
                return self.spec.keep(st, served)
            self.spec.rollback()  # not served as assumed, or no such next window: settle it as it was
        if st.parts:  # a chunk: window by window, as the inverter balanced it (and as `hometwin run` settles)
            a = 0
            for b in st.parts:
                part = Window(seq=w.seq, i0=st.i0 + a, n=b - a, dt_s=w.dt_s, home=self.ctx)
                self.element.commit(part, b - a - 1, served[a:b])
                a = b
        else:
            self.element.commit(w, st.k, served)
        out = self.settled_metrics(w, st.k, served)
        if st.next is not None and not self.ahead:
            out += self.tick(st.next, uri, then=st.then)  # the clock's next tick, already at the inverter
        return out

    def settled_metrics(self, w: Window, k: int, served: np.ndarray) -> Out:
        """Window ``w`` settled through ``k``: its metrics, and the window-end state on record."""
        end = self.t0_epoch + (w.i0 + k + 1) * w.dt_s
        self.metrics.settled(served, w.dt_s, end, time.perf_counter() - self.t_tick, k + 1)
        tel = self.element.telemetry()
        self.metrics.telemetry(tel)
        keep = type(self.element).state_quantities
        if not keep:
            return []
        # the window-end state on record (the recorder's element_states)
        values = {q: float(tel[q]) for q in keep if tel.get(q) is not None and math.isfinite(tel[q])}
        return [(m.TELEMETRY, m.Telemetry(element=self.name, seq=w.seq, step=w.i0 + k, values=values))]
