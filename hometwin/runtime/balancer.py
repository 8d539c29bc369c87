"""The inverter service: the home's balancer over WAMP.

Per window it does what :meth:`hometwin.engine.Engine.step_window` does around
``inverter.balance``: wait for the packets of every element on the roster for
``seq`` (signals, energy requests, the battery's status), call the very same
:meth:`Inverter.balance` with the battery reached through a dispatch-RPC proxy,
check the ledger, publish ``Settle`` and ``Flows``.

Roster: elements announce themselves (``hometwin.roster.announce``); the WAMP
meta-event ``wamp.session.on_leave`` removes an element whose session left.  The
roster of a window is fixed when its tick arrives, so a join or a leave counts from
the next window.  A missing packet never blocks: after ``timeout_s`` the element is
marked stale (counted, logged) and the window is settled without it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from hometwin import ledger
from hometwin import messages as m
from hometwin.element import Role
from hometwin.engine import signal_order
from hometwin.runtime.metrics import ServiceMetrics
from hometwin.runtime.service import AHEAD, ElementHost

log = logging.getLogger("hometwin.balancer")


class BatteryUnavailable(RuntimeError):
    """The battery's dispatch RPC failed or timed out."""


class BatteryProxy:
    """:class:`BatteryPort` over WAMP: ``params()`` from the window's StorageStatus, ``dispatch`` an RPC.

    ``Inverter.balance`` is synchronous, so it runs in a worker thread and this proxy
    blocks that thread on the RPC made by the event loop.
    """

    def __init__(self, balancer: "Balancer", name: str, seq: int, params: dict[str, float]):
        self.b, self.name, self.seq, self._params = balancer, name, seq, params

    def params(self) -> dict[str, float]:
        return dict(self._params)

    def dispatch(self, dt_s: float, charge_j: np.ndarray, discharge_j: np.ndarray,
                 grid_charge_j: np.ndarray | None = None, soc_floor: Any = None,
                 grid_target_soc: Any = None) -> m.DispatchResult:
        n = len(charge_j)
        req = m.DispatchRequest(seq=self.seq, dt_s=dt_s, n=n, charge_j=charge_j, discharge_j=discharge_j,
                                grid_charge_j=grid_charge_j, soc_floor=_per_step(soc_floor, n),
                                grid_target_soc=_per_step(grid_target_soc, n))
        uri = m.element_uri(self.name, "dispatch")
        async def rpc() -> Any:
            return await self.b.session.call(uri, req.wire())

        fut = asyncio.run_coroutine_threadsafe(rpc(), self.b.loop)
        try:
            payload = fut.result(self.b.timeout_s)
        except Exception as exc:
            fut.cancel()
            raise BatteryUnavailable(f"{uri}: {exc!r}") from None
        self.b.metrics.msg("out", uri)
        res = m.decode(m.DispatchResult, payload, uri, self.b.rejections)
        if res is None or res.seq != self.seq or res.n != n:
            raise BatteryUnavailable(f"{uri}: invalid answer")
        return res


def _per_step(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=float)
    return np.full(n, float(arr)) if arr.ndim == 0 else arr


class Balancer(ElementHost):
    """Hosts the inverter element and balances every window."""

    def __init__(self, element: Any, order: list[str], metrics: ServiceMetrics | None = None,
                 timeout_s: float = 10.0):
        super().__init__(element, metrics)
        self.order = list(order)  # spec order: roles (and sums) follow it, as in the engine
        self.timeout_s = timeout_s
        self.roster: dict[str, m.Describe] = {}
        self.by_session: dict[int, str] = {}
        self.left: list[str] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.members: list[str] = []
        self.packets: dict[str, Any] = {}
        self.early: dict[int, list[tuple[str, Any]]] = {}
        self.started = False
        self.timer: asyncio.TimerHandle | None = None
        self.stale_total: dict[str, int] = {}
        self.max_residual_j = 0.0
        self.failed: str | None = None

    # -- session -----------------------------------------------------------------------------------
    async def on_join(self, session: Any) -> None:
        self.session = session
        self.loop = asyncio.get_running_loop()
        self.roster[self.name] = self.describe_msg()
        await self.register_rpcs()
        await session.register(self.rpc_roster, m.ROSTER_GET)
        await self.sub(m.TICK, self.on_tick)
        await self.sub(m.SIGNALS, lambda p: self.on_packet(m.SIGNALS, m.Signals, p))
        await self.sub(m.REQUEST, lambda p: self.on_packet(m.REQUEST, m.EnergyRequest, p))
        await self.sub(m.STORAGE, lambda p: self.on_packet(m.STORAGE, m.StorageStatus, p))
        await self.sub(m.ANNOUNCE, self.on_announce)
        await session.subscribe(self.on_leave, m.SESSION_ON_LEAVE)
        self.publish(m.ROSTER_QUERY, m.RosterQuery(reason="inverter joined"))

    def rpc_roster(self) -> dict[str, Any]:
        return m.Roster(seq=max(self.last_seq, 0), elements=[n for n in self._ordered()],
                        left=list(self.left), stale=sorted(self.stale_total)).wire()

    def _ordered(self) -> list[str]:
        known = [n for n in self.order if n in self.roster]
        return known + [n for n in self.roster if n not in self.order]

    def on_announce(self, payload: Any) -> None:
        d = m.decode(m.Describe, payload, m.ANNOUNCE, self.rejections)
        if d is None or d.element == self.name:
            return
        if d.role == "converter":
            self.rejections.reject(m.ANNOUNCE, "out_of_range", f"{d.element}: a second inverter")
            return
        new = d.element not in self.roster
        self.roster[d.element] = d
        if d.session:
            self.by_session[d.session] = d.element
        if d.element in self.left:
            self.left.remove(d.element)
        if new:
            log.info("roster: %s (%s) joined", d.element, d.kind)
            self._publish_roster()

    def on_leave(self, session_id: Any = None, *args: Any, **kwargs: Any) -> None:
        name = self.by_session.pop(int(session_id), None) if isinstance(session_id, int) else None
        if name is None or name not in self.roster:
            return
        del self.roster[name]
        self.left.append(name)
        log.info("roster: %s left (session %s)", name, session_id)
        self._publish_roster()
        self.advance()  # no need to wait for a packet that cannot come

    def _publish_roster(self) -> None:
        self.publish(m.ROSTER, m.Roster(seq=self.last_seq + 1, elements=self._ordered(), left=list(self.left)))

    # -- window ------------------------------------------------------------------------------------
    def on_tick(self, payload: Any) -> None:
        t = m.decode(m.Tick, payload, m.TICK, self.rejections)
        if t is None or not self.check_tick(t):
            return
        if not self.started and self.w is not None:
            log.error("window %d abandoned: a new tick arrived before it was settled", self.w.seq)
        self.last_seq = t.seq
        self.apply_pending()
        self.w = self.window(t)
        self.t_tick = time.perf_counter()
        self.members = self._ordered()
        self.packets = {}
        self.started = False
        for uri, msg in self.early.pop(t.seq, []):
            self._take(uri, msg)
        self.early = {s: v for s, v in self.early.items() if s > t.seq}
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(self.timeout_s, self.on_timeout, t.seq)
        self.advance()

    def on_packet(self, uri: str, model: type[m.Message], payload: Any) -> None:
        msg = m.decode(model, payload, uri, self.rejections)
        if msg is None:
            return
        if self.w is not None and msg.seq == self.w.seq and not self.started:
            self._take(uri, msg)
            self.advance()
        elif self.last_seq < msg.seq <= self.last_seq + AHEAD:
            self.early.setdefault(msg.seq, []).append((uri, msg))
        else:
            self.rejections.reject(uri, "stale_seq", f"{msg.element}: seq {msg.seq}, window {self.last_seq}")

    def _take(self, uri: str, msg: Any) -> None:
        name = msg.element
        d = self.roster.get(name)
        if name not in self.members or d is None:
            self.rejections.reject(uri, "not_member", f"{name} is not on the roster of window {msg.seq}")
            return
        if getattr(msg, "n", self.w.n) != self.w.n:
            self.rejections.reject(uri, "out_of_range", f"{name}: n {msg.n} != window n {self.w.n}")
            return
        expected = self._expects(d)
        if uri != expected:
            self.rejections.reject(uri, "out_of_range", f"{name} ({d.role}) does not publish on {uri}")
            return
        if uri == m.REQUEST and msg.role != d.role:
            self.rejections.reject(uri, "out_of_range", f"{name}: role {msg.role} != announced {d.role}")
            return
        if name in self.packets:
            self.rejections.reject(uri, "duplicate", f"{name}: second packet for window {msg.seq}")
            return
        self.packets[name] = msg
        if log.isEnabledFor(logging.DEBUG) and self.w.seq % 50 == 0:
            log.debug("window %d: %s after %.1f ms", self.w.seq, name, (time.perf_counter() - self.t_tick) * 1e3)

    @staticmethod
    def _expects(d: m.Describe) -> str | None:
        if d.role in ("source", "load"):
            return m.REQUEST
        if d.role == "storage":
            return m.STORAGE
        if d.outputs:
            return m.SIGNALS
        return None

    def _missing(self) -> list[str]:
        return [n for n in self.members if n in self.roster and n != self.name
                and self._expects(self.roster[n]) is not None and n not in self.packets]

    def advance(self) -> None:
        if self.started or self.w is None or self.failed or self._missing():
            return
        self._start()

    def on_timeout(self, seq: int) -> None:
        if self.started or self.w is None or self.w.seq != seq:
            return
        missing = self._missing()
        for name in missing:
            self.stale_total[name] = self.stale_total.get(name, 0) + 1
            self.metrics.stale.labels(self.name, name).inc()
        log.warning("window %d: no packet from %s within %.1f s — settled without (stale)", seq,
                    ", ".join(missing), self.timeout_s)
        self._start(stale=missing)

    def _start(self, stale: list[str] = ()) -> None:
        self.started = True
        if log.isEnabledFor(logging.DEBUG):
            log.debug("window %d: packets complete after %.1f ms", self.w.seq, (time.perf_counter() - self.t_tick) * 1e3)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        asyncio.ensure_future(self._settle(list(stale)))

    async def _settle(self, stale: list[str]) -> None:
        w = self.w
        try:
            await self._settle_window(w, stale)
        except Exception as exc:
            self.failed = f"{type(exc).__name__}: {exc}"
            log.exception("window %d failed", w.seq)
            self.publish(m.RUN_FAILED, m.RunFailed(seq=w.seq, error=self.failed))

    async def _settle_window(self, w: Any, stale: list[str]) -> None:
        # Who takes part: roster members of this window (spec order) that delivered, plus
        # those that deliver nothing (the inverter itself, elements without outputs).
        parts = [n for n in self.members if n not in stale and n in self.roster
                 and (n in self.packets or self._expects(self.roster[n]) is None)]
        desc = {n: self.roster[n] for n in parts}
        envs = [SimpleNamespace(name=n, inputs=tuple(desc[n].inputs), outputs=tuple(desc[n].outputs))
                for n in parts if desc[n].role not in ("source", "load", "storage") and desc[n].outputs]
        signals: dict[str, np.ndarray] = {}
        for e in signal_order(envs):
            signals.update(self.packets[e.name].arrays)
        requests = {n: self.packets[n].joules for n in parts if desc[n].role in ("source", "load")}
        roles = {n: Role(desc[n].role) for n in parts}
        stateful = {n: desc[n].settle_on_shortfall for n in parts}
        storage = next((n for n in parts if desc[n].role == "storage"), None)
        battery = BatteryProxy(self, storage, w.seq, self.packets[storage].params) if storage else None
        loop = asyncio.get_running_loop()
        inverter = self.element
        try:
            st = await loop.run_in_executor(None, inverter.balance, w, requests, roles, stateful, signals, battery)
        except BatteryUnavailable as exc:
            log.warning("window %d: %s — settled without the battery", w.seq, exc)
            self.stale_total[storage] = self.stale_total.get(storage, 0) + 1
            self.metrics.stale.labels(self.name, storage).inc()
            parts.remove(storage)
            roles.pop(storage)
            stateful.pop(storage)
            stale = stale + [storage]
            battery = None
            st = await loop.run_in_executor(None, inverter.balance, w, requests, roles, stateful, signals, None)
        k = st.k
        if log.isEnabledFor(logging.DEBUG):
            log.debug("window %d: balanced after %.1f ms", w.seq, (time.perf_counter() - self.t_tick) * 1e3)
        res = ledger.check(w.times[: k + 1], st.served, roles, st.flows)
        self.max_residual_j = max(self.max_residual_j, res)
        self.publish(m.SETTLE, m.Settle(seq=w.seq, i0=w.i0, n=w.n, k=k, served=st.served, participants=parts))
        inverter.remember(w, st.flows)
        soc = None
        if battery is not None and st.battery_result is not None:
            soc = st.battery_result.stored_j[: k + 1] / battery.params()["capacity_j"]
        self.publish(m.FLOWS, m.Flows(seq=w.seq, i0=w.i0, n=w.n, k=k, dt_s=w.dt_s, flows=st.flows,
                                      served=st.served, roles={n: r.value for n, r in roles.items()},
                                      soc=soc, stale=stale, max_residual_j=self.max_residual_j))
        end = self._t0_epoch + (w.i0 + k + 1) * w.dt_s
        self.metrics.settled(None, w.dt_s, end, time.perf_counter() - self.t_tick, k + 1)
        self.metrics.telemetry(inverter.telemetry())
