"""The generic element service: hosts any registered element model on the home's realm.

Per window it does what :meth:`hometwin.engine.Engine.step_window` does for this one
element, driven by messages instead of calls (DESIGN.md, the tick protocol):

    Tick → (wait for its declared input signals) → publish Signals (environment,
    grid) / EnergyRequest (sources, loads) / StorageStatus (battery)
    → [battery: answer the inverter's dispatch RPC] → Settle → element.commit(w, k, served)

The window is :class:`hometwin.runtime.element_window.ElementWindow`, a state machine without
I/O: the service decodes each packet, feeds it there and publishes what it returns.  Handlers
are plain (synchronous) functions driven by message arrival, so a window is processed in the
order the router delivers it; RPC property changes are validated at once and applied at the
next window boundary (the next Tick).

Planner ports (the optimizer's contract, :mod:`hometwin.flex`): an element serves its
``flexibility`` and takes ``command``s as RPCs, commands checked before they touch the model.
When the inverter has a strategy it tells each *plannable* element (``plan_stage``) to wait,
every window, for the inverter's ``plan_ready`` signal before computing its request, as
:meth:`Engine.step_window` calls ``prepare`` before the loads' requests — the prepare protocol,
both sides, is :mod:`hometwin.runtime.prepare`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions

from hometwin.runtime import messages as m
from hometwin.auth import element_authid
from hometwin.element import Element, HomeContext, InvalidProperty, Role, Window
from hometwin.runtime import prepare as pp
from hometwin.runtime.dispatch import answer_dispatch
from hometwin.runtime.element_window import AHEAD, ElementWindow, Out, apply_sets, tick_ok
from hometwin.runtime.metrics import ServiceMetrics
from hometwin.runtime.wamp import plain, subscribe

__all__ = ["AHEAD", "ElementHost", "ElementService"]

log = logging.getLogger("hometwin.service")


class ElementHost(pp.ElementPrepare):
    """What every hosted element has: its model, its RPCs, pending property changes, metrics."""

    last_seq = -1  # last tick seen
    w: Window | None = None  # the window it is in
    t_tick = 0.0  # when that window's tick came (perf_counter)

    def __init__(self, element: Element, metrics: ServiceMetrics | None = None):
        self.element = element
        self.name = element.name
        self.ctx: HomeContext = element.home
        self.metrics = metrics or ServiceMetrics(self.name)
        self.rejections = m.Rejections(self.metrics.reject)
        self.session: Any = None
        self.pending_set: list[dict[str, Any]] = []
        self._t0_epoch = float(self.ctx.start.timestamp())
        self.ports = pp.ports(element)  # planner RPCs this element serves (flexibility, command)

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
        """``fn()`` on the element as committed (an element service with a packet out ahead has
        already settled this window as assumed: see :meth:`ElementSpeculation.committed`)."""
        return fn()

    def out_ahead(self) -> bool:
        """The next window's packet is out ahead of this window's Settle (speculative)."""
        return False

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
        if self.out_ahead():  # the next window's packet is out ahead: the one after it, or the next
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
        return apply_sets(self.element, self.pending_set)

    def check_tick(self, t: m.Tick, repeat_ok: bool = False, uri: str = m.TICK, runs: bool = False) -> bool:
        """``t`` may start this host's next window (``runs``: a run of windows may, the inverter's)."""
        return tick_ok(t, self.ctx, self._t0_epoch, self.last_seq, self.w, self.rejections, repeat_ok, uri, runs)

    def window(self, t: m.Tick) -> Window:
        return Window(seq=t.seq, i0=t.i0, n=t.n, dt_s=t.dt_s, home=self.ctx)


class ElementService(ElementHost):
    """Hosts one non-inverter element (environment, source, load, storage, grid).  ``ahead=True``
    (:func:`hometwin.topology.runs_ahead`): its window is the inverter's chunk (:mod:`hometwin.runtime.ahead`)."""

    def __init__(self, element: Element, metrics: ServiceMetrics | None = None, ahead: bool = False,
                 producers: set[str] | None = None):
        super().__init__(element, metrics)
        self.ahead = ahead
        #: the element's window (``producers``: who may send it the signals it reads; None: anyone)
        self.win = ElementWindow(element, self.rejections, self.metrics, self.pending_set, ahead, producers)
        self.plannable = pp.plannable(element)
        self._signals_sub: Any = None

    # what the host reads of the window
    last_seq = property(lambda self: self.win.last_seq)  # type: ignore[assignment]
    w = property(lambda self: self.win.w)  # type: ignore[assignment]

    def inside_window(self) -> bool:
        return self.win.inside()

    def committed(self, fn: Any) -> Any:
        return self.win.spec.committed(fn)

    def out_ahead(self) -> bool:
        return self.win.spec.out is not None

    def revise_now(self) -> bool:
        out = self.win.chunk.revise(self.win) if self.win.chunk is not None else None
        if out is None:
            return False
        self.send(out)
        return True

    def extra_rpcs(self) -> list[str]:
        return [pp.PLAN_STAGE] if self.plannable else []

    def rpc_get(self) -> dict[str, Any]:
        out = super().rpc_get()
        out["settled_seq"], out["next_step"] = self.win.settled_seq, self.win.next_step  # (a restarted inverter asks)
        return out

    def describe_msg(self) -> m.Describe:
        d = super().describe_msg()
        d.ahead = self.ahead
        return d

    async def on_join(self, session: Any) -> None:
        self.session = session
        await self.register_rpcs()
        if self.element.role == Role.storage:
            await session.register(self.rpc_dispatch, m.element_uri(self.name, "dispatch"))
        if self.plannable:
            await session.register(self.rpc_plan_stage, m.element_uri(self.name, pp.PLAN_STAGE))
        await self.sub(self.win.uri_tick, self.on_tick)
        await self.sub(self.win.uri_settle, self.on_settle)
        if self.win.needs:
            await self._subscribe_signals()
        await self.sub(m.ROSTER_QUERY, lambda payload: self.announce())
        self.announce()

    async def _subscribe_signals(self) -> None:
        if self._signals_sub is None:
            self._signals_sub = await self.sub(self.win.uri_signals, self.on_signals)

    def announce(self) -> None:
        self.publish(m.ANNOUNCE, self.describe_msg())

    def send(self, out: Out) -> None:
        for uri, msg in out:
            self.publish(uri, msg)

    def on_tick(self, payload: Any) -> None:
        t = m.decode(m.Tick, payload, self.win.uri_tick, self.rejections)
        if t is not None:
            self.send(self.win.tick(t, self.win.uri_tick))

    def on_signals(self, payload: Any) -> None:
        sig = m.decode(m.Signals, payload, self.win.uri_signals, self.rejections)
        if sig is not None:
            self.send(self.win.signals_in(sig))

    def rpc_dispatch(self, payload: Any = None) -> dict[str, Any]:
        """The battery: the inverter's dispatch request for this window (:mod:`hometwin.runtime.dispatch`)."""
        uri = m.element_uri(self.name, "dispatch")
        self.metrics.msg("in", uri)
        answer, served = answer_dispatch(self.win, m.decode(m.DispatchRequest, payload, uri, self.rejections), uri)
        if served is not None:  # its next status once the answer is out (autobahn sends it on the loop's next turn)
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, lambda: self.send(self.win.spec.speculate_storage(answer.seq, served)))
        return answer.wire()

    def on_settle(self, payload: Any) -> None:
        st = m.decode(m.Settle, payload, self.win.uri_settle, self.rejections)
        if st is not None:
            self.send(self.win.settle(st))
