"""The generic element service: hosts any registered element model on the home's realm.

Per window it does what :meth:`hometwin.engine.Engine.step_window` does for this one
element, driven by messages instead of calls (DESIGN.md, the tick protocol):

    Tick → (wait for its declared input signals) → publish Signals (environment,
    grid) / EnergyRequest (sources, loads) / StorageStatus (battery)
    → [battery: answer the inverter's dispatch RPC] → Settle → element.settle(w, k, served)

Handlers are plain (synchronous) functions driven by message arrival, so a window is
processed in the order the router delivers it; RPC property changes are validated
at once and applied at the next window boundary (the next Tick).

Planner ports (the optimizer's contract, :mod:`hometwin.flex`): an element serves its
``flexibility`` and takes ``command``s as RPCs, commands checked before they touch the model.
When the inverter has a strategy it tells each *plannable* element (``plan_stage``) to wait,
every window, for the inverter's ``plan_ready`` signal before computing its request, as
:meth:`Engine.step_window` calls ``prepare`` before the loads' requests — the prepare protocol,
both sides, is :mod:`hometwin.runtime.prepare`.
"""

from __future__ import annotations

import asyncio
import math
import logging
import time
from typing import Any

import numpy as np
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions

from hometwin.runtime import messages as m
from hometwin.auth import element_authid
from hometwin.element import Element, HomeContext, InvalidProperty, Role, Window
from hometwin.runtime import prepare as pp
from hometwin.runtime.metrics import ServiceMetrics
from hometwin.runtime.wamp import plain, subscribe

log = logging.getLogger("hometwin.service")

#: How many windows ahead a packet may be buffered (router reordering across publishers).
AHEAD = 2


def _signal_graph(home: Any) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """The classes of ``home``'s enabled elements, and for each the others whose outputs it reads."""
    from hometwin.registry import element_class

    cls = {e.name: element_class(e.kind) for e in home.spec.elements if e.enabled}
    producers = {n: {p for p in cls if p != n and set(cls[p].outputs) & set(cls[n].inputs)} for n in cls}
    return cls, producers


def signal_producers(home: Any, name: str) -> set[str] | None:
    """The enabled elements of ``home`` whose outputs ``name`` reads (its signals come only from
    them); None when ``name`` is not an enabled element of the spec (then anyone's are taken)."""
    return _signal_graph(home)[1].get(name)


def runs_ahead(home: Any) -> set[str]:
    """The enabled elements of ``home`` that run ahead of the windows (a chunk at a time).

    An element may when its class says so (``Element.runs_ahead``: requests and signals a pure
    function of time, config and its inputs), every producer of its inputs runs ahead, and every
    element consuming its outputs does too (the inverter takes both kinds): a per-window consumer
    gets its signals per window, so its producers stay per window.  Fixpoint from all candidates.
    """
    cls, producers = _signal_graph(home)
    ahead = {n for n, c in cls.items() if getattr(c, "runs_ahead", False)
             and c.role not in (Role.storage, Role.converter) and not pp.plannable(c) and not c.settle_on_shortfall}
    consumers = {n: {c for c in cls if n in producers[c] and cls[c].role != Role.converter} for n in cls}
    changed = True
    while changed:
        changed = False
        for n in sorted(ahead):
            if not (producers[n] <= ahead and consumers[n] <= ahead):
                ahead.discard(n)
                changed = True
    return ahead


class _Spec:
    """A packet out ahead of this window's ``Settle``: the window it is for (``tick``), the element
    as it was before it settled this window as assumed (``mark``), and the ``set``s it applied at
    that boundary (pending again if the packet is taken back)."""

    __slots__ = ("tick", "mark", "applied", "joules")

    def __init__(self, tick: m.Tick, mark: Any, applied: list[dict[str, Any]], joules: np.ndarray | None):
        self.tick, self.mark, self.applied, self.joules = tick, mark, applied, joules

    def is_for(self, t: m.Tick | None) -> bool:
        return t is not None and (t.seq, t.i0, t.n, t.dt_s) == (self.tick.seq, self.tick.i0, self.tick.n, self.tick.dt_s)


class ElementHost(pp.ElementPrepare):
    """What every hosted element has: its model, its RPCs, pending property changes, metrics."""

    def __init__(self, element: Element, metrics: ServiceMetrics | None = None):
        self.element = element
        self.name = element.name
        self.ctx: HomeContext = element.home
        self.metrics = metrics or ServiceMetrics(self.name)
        self.rejections = m.Rejections(self.metrics.reject)
        self.session: Any = None
        self.pending_set: list[dict[str, Any]] = []
        self.last_seq = -1  # last tick seen
        self.w: Window | None = None
        self.t_tick = 0.0
        self._t0_epoch = float(self.ctx.start.timestamp())
        self.ports = pp.ports(element)  # planner RPCs this element serves (flexibility, command)
        self.spec: _Spec | None = None  # a packet published ahead of this window's Settle (ElementService)

    # -- publishing ----------------------------------------------------------------------------
    def publish(self, uri: str, msg: m.Message, eligible: list[int] | None = None) -> None:
        """Publish ``msg``; ``eligible``: only to these sessions (WAMP subscriber allow-listing)."""
        if eligible is None:
            self.session.publish(uri, msg.wire())
        else:
            self.session.publish(uri, msg.wire(), options=PublishOptions(eligible=list(eligible)))
        self.metrics.msg("out", uri)

    def sub(self, uri: str, fn: Any) -> Any:
        """Subscribe ``fn``; on the topics whose packets name their sender, only packets the router
        says that sender published get through (:func:`hometwin.runtime.wamp.subscribe`)."""
        return subscribe(self.session, uri, fn, self.rejections, self.metrics.msg)

    # -- RPCs ------------------------------------------------------------------------------------
    def describe_msg(self) -> m.Describe:
        el = self.element
        rpcs = ["describe", "get", "set", "snapshot"] + (["dispatch"] if el.role == Role.storage else []) \
            + list(self.ports) + self.extra_rpcs()
        return m.Describe(element=self.name, kind=el.kind, role=el.role.value, inputs=list(el.inputs),
                          outputs=list(el.outputs), settle_on_shortfall=el.settle_on_shortfall,
                          session=int(getattr(self.session, "_session_id", 0) or 0),
                          config=plain(el.config.model_dump(mode="json")), rpcs=rpcs)

    async def register_rpcs(self) -> None:
        s = self.session
        await s.register(lambda: self.describe_msg().wire(), m.element_uri(self.name, "describe"))
        await s.register(self.rpc_get, m.element_uri(self.name, "get"))
        await s.register(self.rpc_set_recorded, m.element_uri(self.name, "set"), options=RegisterOptions(details=True))
        await s.register(lambda: plain(self.committed(self.element.snapshot)), m.element_uri(self.name, "snapshot"))
        await self.register_ports()

    def extra_rpcs(self) -> list[str]:
        """RPCs a subclass serves besides the common ones (listed in ``Describe.rpcs``)."""
        return []

    def inside_window(self) -> bool:
        """True between this window's request and its settlement (plans must not land there)."""
        return False

    def committed(self, fn: Any) -> Any:
        """``fn()`` on the element as committed: with a packet out ahead (speculative) the model has
        already settled this window as assumed; what the twin has settled is the mark before it."""
        spec = self.spec
        if spec is None:
            return fn()
        el = self.element
        now = el.checkpoint()
        el.rollback(spec.mark)
        try:
            return fn()
        finally:
            el.rollback(now)

    def rpc_get(self) -> dict[str, Any]:
        el = self.element
        config, telemetry = self.committed(lambda: (el.config, el.telemetry()))
        return plain({"element": self.name, "kind": el.kind, "seq": self.last_seq,
                      "config": config.model_dump(mode="json"), "telemetry": telemetry,
                      "pending_set": self.pending_set})

    def rpc_set(self, *args: Any, **props: Any) -> dict[str, Any]:
        """Validate now, apply at the next window boundary; returns the validated values."""
        if args:
            self.rejections.reject(m.element_uri(self.name, "set"), "invalid_property", "positional arguments")
            raise ApplicationError("hometwin.error.invalid_property", "set takes keyword arguments only")
        el = self.element
        allowed = el.settable_properties()
        bad = [k for k in props if k not in allowed]
        if bad:
            self.rejections.reject(m.element_uri(self.name, "set"), "invalid_property", str(bad))
            raise ApplicationError("hometwin.error.invalid_property", f"not settable: {', '.join(bad)}",
                                   field=bad, allowed=allowed)
        try:
            new = el.validated(**props)  # what set() will apply at the boundary, checked now
        except InvalidProperty as exc:
            self.rejections.reject(m.element_uri(self.name, "set"), "invalid_property", str(exc))
            raise ApplicationError("hometwin.error.invalid_property", str(exc), field=sorted(props)) from None
        self.pending_set.append(dict(props))
        values = {k: getattr(new, k) for k in props}
        if self.revise_now():
            return plain({"element": self.name, "applies_at_seq": None, "applies": "the inverter's next window",
                          "values": values})
        if self.spec is not None:  # the next window's packet is out ahead: the one after it, or the next
            return plain({"element": self.name, "applies_at_seq": None,  # one if that packet is taken back
                          "applies": "the first window whose packet is not out yet", "values": values})
        return plain({"element": self.name, "applies_at_seq": self.last_seq + 1, "values": values})

    def rpc_set_recorded(self, *args: Any, details: Any = None, **props: Any) -> dict[str, Any]:
        """:meth:`rpc_set`, and an accepted change published as a ``ControlEvent`` (who asked: the
        caller the router discloses) for the run's events."""
        answer = self.rpc_set(*args, **props)
        self.publish(m.EVENT, m.ControlEvent.accepted(element_authid(self.name), "set", details, element=self.name,
                                                      args=answer.get("values", {})))
        return answer

    def revise_now(self) -> bool:
        """Apply a pending ``set`` at once and publish the window's packets again (elements running
        ahead: the inverter takes the revised chunk from its next window boundary).  False: it waits
        for the next tick."""
        return False

    # -- window boundary -------------------------------------------------------------------------
    def apply_pending(self) -> list[dict[str, Any]]:
        """Apply the pending ``set``s (a window boundary); returns them (applied or refused)."""
        done = []
        while self.pending_set:
            props = self.pending_set.pop(0)
            done.append(props)
            try:
                values = self.element.set(**props)
                log.info("%s: set %s", self.name, values)
            except InvalidProperty as exc:  # validated before; the config changed in between
                log.error("%s: set refused at the boundary: %s", self.name, exc)
        return done

    def check_tick(self, t: m.Tick, repeat_ok: bool = False, uri: str = m.TICK, runs: bool = False) -> bool:
        """``t`` may start this host's next window (``runs``: a run of windows may, the inverter's)."""
        # The clock repeats a tick nobody settled (publish the packets again): only its seq is not
        # new; step length, range and time are checked as for any tick.
        repeat = repeat_ok and self.w is not None and (t.seq, t.i0, t.n) == (self.w.seq, self.w.i0, self.w.n)
        if not repeat and t.seq <= self.last_seq:
            self.rejections.reject(uri, "stale_seq", f"seq {t.seq} <= last {self.last_seq}")
            return False
        if t.windows != 1 and not runs:
            self.rejections.reject(uri, "out_of_range", f"windows {t.windows}: a run of windows is the inverter's "
                                   "to open, one tick a window here")
            return False
        if t.dt_s != self.ctx.step_s:
            self.rejections.reject(uri, "out_of_range", f"dt_s {t.dt_s} != step_s {self.ctx.step_s}")
            return False
        if t.i0 + t.n * t.windows > self.ctx.n_steps:
            self.rejections.reject(uri, "out_of_range", f"window {t.i0}+{t.n * t.windows} beyond the run "
                                   f"({self.ctx.n_steps} steps)")
            return False
        if abs(t.t0 - (self._t0_epoch + t.i0 * t.dt_s)) > 1e-3:
            self.rejections.reject(uri, "out_of_range", f"t0 {t.t0} does not match step {t.i0}")
            return False
        return True

    def window(self, t: m.Tick) -> Window:
        return Window(seq=t.seq, i0=t.i0, n=t.n, dt_s=t.dt_s, home=self.ctx)


class ElementService(ElementHost):
    """Hosts one non-inverter element (environment, source, load, storage, grid).

    ``ahead=True`` (see :func:`runs_ahead`): the element's window is the inverter's *chunk*
    (``hometwin.ahead.tick``, many single-step windows at once) and its packets, signals and
    settlement travel on the ``hometwin.ahead.*`` topics; the inverter slices every window out
    of them.  A ``set`` then takes effect at once: the chunk's packet is computed again and
    published, and the inverter uses it from its next window boundary.
    """

    def __init__(self, element: Element, metrics: ServiceMetrics | None = None, ahead: bool = False,
                 producers: set[str] | None = None):
        super().__init__(element, metrics)
        el = element
        self.ahead = ahead
        #: who may send this element the signals it reads (None: anyone — a service without a spec)
        self.producers = producers
        self.uri_tick, self.uri_signals, self.uri_request, self.uri_settle = \
            (m.TICK_AHEAD, m.SIGNALS_AHEAD, m.REQUEST_AHEAD, m.SETTLE_AHEAD) if ahead \
            else (m.TICK_WINDOW, m.SIGNALS, m.REQUEST, m.SETTLE)
        self.needs = set(el.inputs)
        self.signals: dict[str, np.ndarray] = {}
        self.early: dict[int, list[m.Signals]] = {}
        self.published = False  # this window's signals / request are out
        self.sent_signals = False
        self.settled = True
        self.dispatched: int | None = None
        self.init_plan_stage()  # plannable, plan_from, plan_seq (hometwin.runtime.prepare)
        self.settled_to: int | None = None  # running ahead: the chunk is settled up to this step
        self._signals_sub: Any = None
        # Speculative packets (docs/runtime.md): an element per window whose next packet depends only
        # on what it was served publishes it ahead of this window's Settle, assuming it is served in full.
        self.speculates = not ahead and not self.needs and not el.outputs \
            and el.role in (Role.source, Role.load, Role.storage)
        self.then: m.Tick | None = None  # the window after this one (the Settle that started it said so)
        # The last window the inverter settled while this element listened (a participant or left out) and
        # the step after it: a restarted inverter asks (``get``) and resumes after it, settling none twice.
        self.settled_seq, self.next_step = -1, 0
        self.chunk_windows = 0  # running ahead: windows of the chunk settled so far (its Settles' parts)

    def extra_rpcs(self) -> list[str]:
        return [pp.PLAN_STAGE] if self.plannable else []

    def rpc_get(self) -> dict[str, Any]:
        out = super().rpc_get()
        out["settled_seq"], out["next_step"] = self.settled_seq, self.next_step  # (a restarted inverter asks)
        return out

    def describe_msg(self) -> m.Describe:
        d = super().describe_msg()
        d.ahead = self.ahead
        return d

    def revise_now(self) -> bool:
        if not self.ahead or self.w is None or self.settled:
            return False
        self.apply_pending()
        self.published = self.sent_signals = False
        self.advance()
        return True

    async def on_join(self, session: Any) -> None:
        self.session = session
        await self.register_rpcs()
        if self.element.role == Role.storage:
            await session.register(self.rpc_dispatch, m.element_uri(self.name, "dispatch"))
        if self.plannable:
            await session.register(self.rpc_plan_stage, m.element_uri(self.name, pp.PLAN_STAGE))
        await self.sub(self.uri_tick, self.on_tick)
        await self.sub(self.uri_settle, self.on_settle)
        if self.needs:
            await self._subscribe_signals()
        await self.sub(m.ROSTER_QUERY, lambda payload: self.announce())
        self.announce()

    async def _subscribe_signals(self) -> None:
        if self._signals_sub is None:
            self._signals_sub = await self.sub(self.uri_signals, self.on_signals)

    def announce(self) -> None:
        self.publish(m.ANNOUNCE, self.describe_msg())

    # -- window ----------------------------------------------------------------------------------
    def on_tick(self, payload: Any) -> None:
        t = m.decode(m.Tick, payload, self.uri_tick, self.rejections)
        if t is not None:
            self.start_window(t, self.uri_tick)

    def start_window(self, t: m.Tick, uri: str, then: m.Tick | None = None) -> None:
        """Window ``t`` starts: from its tick (``uri``) or the last window's ``Settle.next`` (``then``:
        that Settle's window after it)."""
        # A chunk is repeated when an element joins mid-chunk (it needs the chunk's tick): publish again.
        if not self.check_tick(t, repeat_ok=self.ahead or not self.settled, uri=uri):
            return
        if self.spec is not None:  # not the window it was for, or its tick again: the packet is taken back
            self._rollback()
        if not self.settled and self.w is not None and self.w.seq != t.seq and not self.ahead:
            log.warning("%s: window %d was never settled (we were left out)", self.name, self.w.seq)
        repeat = self.w is not None and t.seq == self.w.seq and (not self.settled or self.ahead)
        if not repeat:  # a re-published tick is the same window: a set made meanwhile waits for the next one
            self.apply_pending()
            self.settled_to = None
        self._enter(t, then, uri, published=False)
        for sig in self.early.pop(t.seq, []):  # buffered before their tick: checked against it now
            if sig.n != t.n:
                self.rejections.reject(self.uri_signals, "out_of_range", f"{sig.element}: n {sig.n} != window n {t.n}")
                continue
            self._take_signals(sig)
        self.early = {s: v for s, v in self.early.items() if s > t.seq}
        if self.element.role == Role.storage:
            self.publish(m.STORAGE, m.StorageStatus(seq=t.seq, element=self.name, params=self.element.params()))
        self.advance()

    def _enter(self, t: m.Tick, then: m.Tick | None, uri: str, published: bool) -> None:
        """Window ``t`` is this element's from now (``published``: its packet went out ahead)."""
        self.last_seq = t.seq
        self.w = self.window(t)
        self.t_tick = time.perf_counter()
        self.signals = {}
        self.published = self.sent_signals = published
        self.settled = False
        self.then = self._checked_then(then, uri)

    def on_signals(self, payload: Any) -> None:
        uri = self.uri_signals
        sig = m.decode(m.Signals, payload, uri, self.rejections)
        if sig is None or sig.element == self.name:
            return
        if pp.PLAN_READY in sig.arrays and not self._plan_ok(sig):
            return
        if self.producers is not None and sig.element not in self.producers and self.needs & sig.arrays.keys():
            self.rejections.reject(uri, "not_member", f"{sig.element} does not produce what {self.name} reads "
                                   f"(from {', '.join(sorted(self.producers)) or 'nobody'})")
            return
        if self.w is not None and sig.seq == self.w.seq:
            if sig.n != self.w.n:
                self.rejections.reject(uri, "out_of_range", f"n {sig.n} != window n {self.w.n}")
                return
            if self.ahead and self.published and any(k in self.needs for k in sig.arrays):
                if self.settled:
                    self.rejections.reject(uri, "stale_seq", f"seq {sig.seq}: chunk already settled")
                    return
                self.published = self.sent_signals = False  # a producer's revision (set): ours follows
            self._take_signals(sig)
            self.advance()
        elif self.last_seq < sig.seq <= self.last_seq + AHEAD or (self.ahead and sig.seq > self.last_seq):
            self.early.setdefault(sig.seq, []).append(sig)
        else:
            self.rejections.reject(uri, "stale_seq", f"seq {sig.seq}, window {self.last_seq}")

    def _take_signals(self, sig: m.Signals) -> None:
        if pp.PLAN_READY in sig.arrays:
            self.plan_seq = sig.seq
            return
        for key, arr in sig.arrays.items():
            if key in self.needs:
                self.signals[key] = arr

    def inside_window(self) -> bool:
        return self.published and not self.settled and self.element.role in (Role.source, Role.load)

    def advance(self) -> None:
        if self.published or self.w is None or not self.needs <= self.signals.keys():
            return
        el, w = self.element, self.w
        if el.outputs and not self.sent_signals:
            self.sent_signals = True
            arrays = {k: np.asarray(v, dtype=float) for k, v in el.signals(w, self.signals).items()}
            self.publish(self.uri_signals, m.Signals(seq=w.seq, element=self.name, n=w.n, arrays=arrays))
        if el.role in (Role.source, Role.load):
            if self.waits_for_plan():
                return  # the inverter's prepare stage may still change this element's plan
            self.published = True
            joules = np.asarray(el.request(w, self.signals), dtype=float)
            self.publish(self.uri_request, m.EnergyRequest(seq=w.seq, element=self.name, role=el.role.value,
                                                    n=w.n, joules=joules))
            if self.may_speculate():
                self._speculate(joules)
        self.published = True

    # -- speculative packets -------------------------------------------------------------------
    def may_speculate(self) -> bool:
        """The next window is known (``then``) and this element's packet for it depends only on
        what it gets in this one; not while it waits for a strategy's plans."""
        return self.speculates and self.then is not None and self.spec is None and self.plan_from is None \
            and self.w is not None and not self.settled

    def _speculate(self, served: np.ndarray) -> None:
        """Settle this window as if served ``served`` (what it asked; the battery: its dispatch answer),
        apply the pending ``set``s at the boundary, and publish the next window's packet now,
        marked speculative; the mark before it is kept to roll back to."""
        el, w, t = self.element, self.w, self.then
        mark = el.checkpoint()
        type(el).settle(el, w, w.n - 1, served)  # the model's own: a state file keeps committed windows only
        applied = self.apply_pending()
        nw = self.window(t)
        if el.role == Role.storage:
            self.spec = _Spec(t, mark, applied, None)
            self.publish(m.STORAGE, m.StorageStatus(seq=t.seq, element=self.name, params=el.params(), speculative=True))
        else:
            joules = np.asarray(el.request(nw, {}), dtype=float)
            self.spec = _Spec(t, mark, applied, joules)
            self.publish(self.uri_request, m.EnergyRequest(seq=t.seq, element=self.name, role=el.role.value, n=nw.n,
                                                           joules=joules, speculative=True))

    def _checked_then(self, then: m.Tick | None, uri: str) -> m.Tick | None:
        """A Settle's ``then`` if it may start a window here (as a tick is checked), else None."""
        if then is None or not self.speculates:
            return None
        return then if self.check_tick(then, uri=uri) else None

    def _rollback(self) -> None:
        """Take the packet out ahead back: the element as before it settled this window as assumed."""
        spec, self.spec = self.spec, None
        self.element.rollback(spec.mark)
        self.pending_set[:0] = spec.applied
        self.metrics.inc("speculation", "rolled_back")

    def _keep(self, st: m.Settle, served: np.ndarray) -> None:
        """The Settle confirms the packet out ahead: the element already is where this window's
        settlement leaves it, and the next window (``st.next``) is under way."""
        spec, self.spec = self.spec, None
        el, w = self.element, self.w
        committed = getattr(el, "settle_committed", None)  # the state file (StateKeeper)
        if committed is not None:
            committed(w.seq, w.i0, st.k)
        self.metrics.inc("speculation", "kept")
        self._settled_metrics(w, st.k, served)
        self._enter(st.next, st.then, self.uri_settle, published=True)
        if spec.joules is not None and self.may_speculate():
            self._speculate(spec.joules)

    def rpc_dispatch(self, payload: Any = None) -> dict[str, Any]:
        uri = m.element_uri(self.name, "dispatch")
        self.metrics.msg("in", uri)
        req = m.decode(m.DispatchRequest, payload, uri, self.rejections)
        if req is None:
            raise ApplicationError("hometwin.error.invalid_message", "invalid DispatchRequest")
        if self.w is None or req.seq != self.w.seq or req.n != self.w.n or self.settled:
            self.rejections.reject(uri, "stale_seq", f"seq {req.seq}/n {req.n}, window {self.last_seq}"
                                   + (" (settled)" if self.settled else ""))
            raise ApplicationError("hometwin.error.stale", f"dispatch for seq {req.seq}, window is {self.last_seq}")
        if req.dt_s != self.w.dt_s:
            self.rejections.reject(uri, "out_of_range", f"dt_s {req.dt_s} != the window's {self.w.dt_s}")
            raise ApplicationError("hometwin.error.invalid_message", f"dispatch: dt_s {req.dt_s} != {self.w.dt_s}")
        res = self.element.dispatch(req.dt_s, req.charge_j, req.discharge_j, req.grid_charge_j,  # type: ignore[attr-defined]
                                    req.soc_floor, req.grid_target_soc)
        self.dispatched = req.seq
        if self.may_speculate():
            # its next status once the answer is out (autobahn sends it from the loop's next turn)
            served = np.asarray(res.discharge_j, dtype=float) - (np.asarray(res.charge_j, dtype=float)
                                                                 + np.asarray(res.grid_charge_j, dtype=float))
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self._speculate_storage, req.seq, served)
        return m.DispatchResult(seq=req.seq, n=req.n, charge_j=res.charge_j, grid_charge_j=res.grid_charge_j,
                                discharge_j=res.discharge_j, stored_j=res.stored_j, loss_j=res.loss_j).wire()

    def on_settle(self, payload: Any) -> None:
        uri = self.uri_settle
        st = m.decode(m.Settle, payload, uri, self.rejections)
        if st is None:
            return
        w = self.w
        if w is None or st.seq != w.seq or self.settled:
            self.rejections.reject(uri, "stale_seq", f"seq {st.seq}, window {self.last_seq}")
            return
        # Running ahead, a chunk may be settled in parts (the clock paused inside it): each part
        # covers the rest of the chunk from the first step not settled yet.
        start = w.i0 if self.settled_to is None else self.settled_to
        if st.i0 != start or st.i0 + st.n != w.i0 + w.n:
            self.rejections.reject(uri, "out_of_range", f"window {st.i0}/{st.n} != {start}/{w.i0 + w.n - start}")
            return
        if self.ahead:
            self.settled_to = st.i0 + st.k + 1
            self.settled = self.settled_to >= w.i0 + w.n
            if st.i0 == w.i0:
                self.chunk_windows = 0
            self.chunk_windows += len(st.parts) or 1  # the chunk's windows have consecutive seqs from its own
            self.settled_seq, self.next_step = w.seq + self.chunk_windows - 1, self.settled_to
            if st.i0 != w.i0:  # a later part: the rest of the chunk from st.i0
                w = Window(seq=w.seq, i0=st.i0, n=st.n, dt_s=w.dt_s, home=self.ctx)
        else:
            self.settled = True
            self.settled_seq, self.next_step = st.seq, st.i0 + st.k + 1
        if self.name not in st.participants:
            if self.spec is not None:
                self._rollback()
            log.warning("%s: left out of window %d (stale or not on the roster yet)", self.name, st.seq)
            return  # the inverter relays the next tick to those left out (hometwin.window.tick)
        served = st.served.get(self.name)
        if served is None:
            served = np.zeros(st.k + 1)
        if self.spec is not None:
            if self.name in st.confirmed and self.spec.is_for(st.next):
                self._keep(st, served)
                return
            self._rollback()  # not served as assumed, or no such next window: settle it as it was
        if st.parts:  # a chunk: window by window, as the inverter balanced it (and as `hometwin run` settles)
            a = 0
            for b in st.parts:
                part = Window(seq=w.seq, i0=st.i0 + a, n=b - a, dt_s=w.dt_s, home=self.ctx)
                self.element.settle(part, b - a - 1, served[a:b])
                a = b
        else:
            self.element.settle(w, st.k, served)
        self._settled_metrics(w, st.k, served)
        if st.next is not None and not self.ahead:
            self.start_window(st.next, uri, then=st.then)  # the clock's next tick, already at the inverter

    def _settled_metrics(self, w: Window, k: int, served: np.ndarray) -> None:
        end = self._t0_epoch + (w.i0 + k + 1) * w.dt_s
        self.metrics.settled(served, w.dt_s, end, time.perf_counter() - self.t_tick, k + 1)
        tel = self.element.telemetry()
        self.metrics.telemetry(tel)
        keep = type(self.element).state_quantities
        if keep:  # the window-end state on record (the recorder's element_states)
            values = {q: float(tel[q]) for q in keep if tel.get(q) is not None and math.isfinite(tel[q])}
            self.publish(m.TELEMETRY, m.Telemetry(element=self.name, seq=w.seq, step=w.i0 + k, values=values))

    def _speculate_storage(self, seq: int, served: np.ndarray) -> None:
        if self.w is not None and self.w.seq == seq and self.dispatched == seq and self.may_speculate():
            self._speculate(served)
