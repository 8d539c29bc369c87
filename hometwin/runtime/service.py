"""The generic element service: hosts any registered element model on the home's realm.

Per window it does what :meth:`hometwin.engine.Engine.step_window` does for this one
element, driven by messages instead of calls (DESIGN.md, the tick protocol):

    Tick → (wait for its declared input signals) → publish Signals (environment,
    grid) / EnergyRequest (sources, loads) / StorageStatus (battery)
    → [battery: answer the inverter's dispatch RPC] → Settle → element.settle(w, k, served)

Handlers are plain (synchronous) functions driven by message arrival, so a window is
processed in the order the router delivers it; RPC property changes are validated
at once and applied at the next window boundary (the next Tick).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from autobahn.wamp.exception import ApplicationError

from hometwin import messages as m
from hometwin.element import Element, HomeContext, InvalidProperty, Role, Window
from hometwin.runtime.metrics import ServiceMetrics
from hometwin.runtime.wamp import handler, plain

log = logging.getLogger("hometwin.service")

#: How many windows ahead a packet may be buffered (router reordering across publishers).
AHEAD = 2


class ElementHost:
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

    # -- publishing ----------------------------------------------------------------------------
    def publish(self, uri: str, msg: m.Message) -> None:
        self.session.publish(uri, msg.wire())
        self.metrics.msg("out", uri)

    def sub(self, uri: str, fn: Any) -> Any:
        return self.session.subscribe(handler(uri, fn, self.rejections, self.metrics.msg), uri)

    # -- RPCs ------------------------------------------------------------------------------------
    def describe_msg(self) -> m.Describe:
        el = self.element
        rpcs = ["describe", "get", "set", "snapshot"] + (["dispatch"] if el.role == Role.storage else []) \
            + (["forecast"] if callable(getattr(el, "forecast", None)) else [])
        return m.Describe(element=self.name, kind=el.kind, role=el.role.value, inputs=list(el.inputs),
                          outputs=list(el.outputs), settle_on_shortfall=el.settle_on_shortfall,
                          session=int(getattr(self.session, "_session_id", 0) or 0),
                          config=plain(el.config.model_dump(mode="json")), rpcs=rpcs)

    async def register_rpcs(self) -> None:
        s = self.session
        await s.register(lambda: self.describe_msg().wire(), m.element_uri(self.name, "describe"))
        await s.register(self.rpc_get, m.element_uri(self.name, "get"))
        await s.register(self.rpc_set, m.element_uri(self.name, "set"))
        await s.register(lambda: plain(self.element.snapshot()), m.element_uri(self.name, "snapshot"))
        if callable(getattr(self.element, "forecast", None)):
            await s.register(self.rpc_forecast, m.element_uri(self.name, "forecast"))

    def rpc_get(self) -> dict[str, Any]:
        return plain({"element": self.name, "kind": self.element.kind, "seq": self.last_seq,
                      "config": self.element.config.model_dump(mode="json"),
                      "telemetry": self.element.telemetry(), "pending_set": self.pending_set})

    def rpc_set(self, *args: Any, **props: Any) -> dict[str, Any]:
        """Validate now, apply at the next window boundary; returns the validated values."""
        if args:
            raise ApplicationError("hometwin.error.invalid_property", "set takes keyword arguments only")
        el = self.element
        allowed = set(el.Config.model_fields) if el.settable is None else set(el.settable)
        bad = [k for k in props if k not in allowed]
        if bad:
            self.rejections.reject(m.element_uri(self.name, "set"), "invalid_property", str(bad))
            raise ApplicationError("hometwin.error.invalid_property", f"not settable: {', '.join(bad)}",
                                   field=bad, allowed=sorted(allowed))
        data = el.config.model_dump()
        data.update(props)
        try:
            new = el.Config.model_validate(data)
        except Exception as exc:
            self.rejections.reject(m.element_uri(self.name, "set"), "invalid_property", str(exc))
            raise ApplicationError("hometwin.error.invalid_property", str(exc), field=sorted(props)) from None
        self.pending_set.append(dict(props))
        return plain({"element": self.name, "applies_at_seq": self.last_seq + 1,
                      "values": {k: getattr(new, k) for k in props}})

    def rpc_forecast(self, *args: Any, **kwargs: Any) -> Any:
        return plain(self.element.forecast(*args, **kwargs))  # type: ignore[attr-defined]

    # -- window boundary -------------------------------------------------------------------------
    def apply_pending(self) -> None:
        while self.pending_set:
            props = self.pending_set.pop(0)
            try:
                values = self.element.set(**props)
                log.info("%s: set %s", self.name, values)
            except InvalidProperty as exc:  # validated before; the config changed in between
                log.error("%s: set refused at the boundary: %s", self.name, exc)

    def check_tick(self, t: m.Tick, repeat_ok: bool = False) -> bool:
        uri = m.TICK
        if repeat_ok and self.w is not None and t.seq == self.w.seq and t.i0 == self.w.i0 and t.n == self.w.n:
            return True  # the clock repeats a tick nobody settled: publish the packets again
        if t.seq <= self.last_seq:
            self.rejections.reject(uri, "stale_seq", f"seq {t.seq} <= last {self.last_seq}")
            return False
        if t.dt_s != self.ctx.step_s:
            self.rejections.reject(uri, "out_of_range", f"dt_s {t.dt_s} != step_s {self.ctx.step_s}")
            return False
        if t.i0 + t.n > self.ctx.n_steps:
            self.rejections.reject(uri, "out_of_range", f"window {t.i0}+{t.n} beyond the run ({self.ctx.n_steps} steps)")
            return False
        if abs(t.t0 - (self._t0_epoch + t.i0 * t.dt_s)) > 1e-3:
            self.rejections.reject(uri, "out_of_range", f"t0 {t.t0} does not match step {t.i0}")
            return False
        return True

    def window(self, t: m.Tick) -> Window:
        return Window(seq=t.seq, i0=t.i0, n=t.n, dt_s=t.dt_s, home=self.ctx)


class ElementService(ElementHost):
    """Hosts one non-inverter element (environment, source, load, storage, grid)."""

    def __init__(self, element: Element, metrics: ServiceMetrics | None = None):
        super().__init__(element, metrics)
        el = element
        self.needs = set(el.inputs)
        self.signals: dict[str, np.ndarray] = {}
        self.early: dict[int, list[m.Signals]] = {}
        self.published = False
        self.settled = True
        self.dispatched: int | None = None

    async def on_join(self, session: Any) -> None:
        self.session = session
        await self.register_rpcs()
        if self.element.role == Role.storage:
            await session.register(self.rpc_dispatch, m.element_uri(self.name, "dispatch"))
        await self.sub(m.TICK, self.on_tick)
        await self.sub(m.SETTLE, self.on_settle)
        if self.needs:
            await self.sub(m.SIGNALS, self.on_signals)
        await self.sub(m.ROSTER_QUERY, lambda payload: self.announce())
        self.announce()

    def announce(self) -> None:
        self.publish(m.ANNOUNCE, self.describe_msg())

    # -- window ----------------------------------------------------------------------------------
    def on_tick(self, payload: Any) -> None:
        t = m.decode(m.Tick, payload, m.TICK, self.rejections)
        if t is None or not self.check_tick(t, repeat_ok=not self.settled):
            return
        if not self.settled and self.w is not None and self.w.seq != t.seq:
            log.warning("%s: window %d was never settled (we were left out)", self.name, self.w.seq)
        self.last_seq = t.seq
        self.apply_pending()
        self.w = self.window(t)
        self.t_tick = time.perf_counter()
        self.signals = {}
        self.published = False
        self.settled = False
        for sig in self.early.pop(t.seq, []):
            self._take_signals(sig)
        self.early = {s: v for s, v in self.early.items() if s > t.seq}
        if self.element.role == Role.storage:
            self.publish(m.STORAGE, m.StorageStatus(seq=t.seq, element=self.name, params=self.element.params()))
        self.advance()

    def on_signals(self, payload: Any) -> None:
        sig = m.decode(m.Signals, payload, m.SIGNALS, self.rejections)
        if sig is None or sig.element == self.name:
            return
        if self.w is not None and sig.seq == self.w.seq:
            if sig.n != self.w.n:
                self.rejections.reject(m.SIGNALS, "out_of_range", f"n {sig.n} != window n {self.w.n}")
                return
            self._take_signals(sig)
            self.advance()
        elif self.last_seq < sig.seq <= self.last_seq + AHEAD:
            self.early.setdefault(sig.seq, []).append(sig)
        else:
            self.rejections.reject(m.SIGNALS, "stale_seq", f"seq {sig.seq}, window {self.last_seq}")

    def _take_signals(self, sig: m.Signals) -> None:
        for key, arr in sig.arrays.items():
            if key in self.needs:
                self.signals[key] = arr

    def advance(self) -> None:
        if self.published or self.w is None or not self.needs <= self.signals.keys():
            return
        self.published = True
        el, w = self.element, self.w
        if el.outputs:
            arrays = {k: np.asarray(v, dtype=float) for k, v in el.signals(w, self.signals).items()}
            self.publish(m.SIGNALS, m.Signals(seq=w.seq, element=self.name, n=w.n, arrays=arrays))
        if el.role in (Role.source, Role.load):
            joules = np.asarray(el.request(w, self.signals), dtype=float)
            self.publish(m.REQUEST, m.EnergyRequest(seq=w.seq, element=self.name, role=el.role.value,
                                                    n=w.n, joules=joules))

    def rpc_dispatch(self, payload: Any = None) -> dict[str, Any]:
        uri = m.element_uri(self.name, "dispatch")
        self.metrics.msg("in", uri)
        req = m.decode(m.DispatchRequest, payload, uri, self.rejections)
        if req is None:
            raise ApplicationError("hometwin.error.invalid_message", "invalid DispatchRequest")
        if self.w is None or req.seq != self.w.seq or req.n != self.w.n:
            self.rejections.reject(uri, "stale_seq", f"seq {req.seq}/n {req.n}, window {self.last_seq}")
            raise ApplicationError("hometwin.error.stale", f"dispatch for seq {req.seq}, window is {self.last_seq}")
        res = self.element.dispatch(req.dt_s, req.charge_j, req.discharge_j, req.grid_charge_j,  # type: ignore[attr-defined]
                                    req.soc_floor, req.grid_target_soc)
        self.dispatched = req.seq
        return m.DispatchResult(seq=req.seq, n=req.n, charge_j=res.charge_j, grid_charge_j=res.grid_charge_j,
                                discharge_j=res.discharge_j, stored_j=res.stored_j, loss_j=res.loss_j).wire()

    def on_settle(self, payload: Any) -> None:
        st = m.decode(m.Settle, payload, m.SETTLE, self.rejections)
        if st is None:
            return
        w = self.w
        if w is None or st.seq != w.seq or self.settled:
            self.rejections.reject(m.SETTLE, "stale_seq", f"seq {st.seq}, window {self.last_seq}")
            return
        if st.i0 != w.i0 or st.n != w.n:
            self.rejections.reject(m.SETTLE, "out_of_range", f"window {st.i0}/{st.n} != {w.i0}/{w.n}")
            return
        self.settled = True
        if self.name not in st.participants:
            log.warning("%s: left out of window %d (stale or not on the roster yet)", self.name, st.seq)
            return
        served = st.served.get(self.name)
        if served is None:
            served = np.zeros(st.k + 1)
        self.element.settle(w, st.k, served)
        end = self._t0_epoch + (w.i0 + st.k + 1) * w.dt_s
        self.metrics.settled(served, w.dt_s, end, time.perf_counter() - self.t_tick, st.k + 1)
        self.metrics.telemetry(self.element.telemetry())
