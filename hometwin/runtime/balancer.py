"""The inverter service: the home's balancer over WAMP.

Per window it does what :meth:`hometwin.engine.Engine.step_window` does, in the tick protocol's steps
(docs/runtime.md, "The protocol on the wire"), which are the sections below:

1. **roster**: elements announce themselves; one whose session left (``wamp.session.on_leave``) is
   dropped.  A window's roster is fixed when it opens, so a join or a leave counts from the next.
2. **tick**: the clock's tick opens a window.
3. **packets**: the window waits for every member's packet (signals, energy request, the battery's
   status); a missing one never blocks: after ``timeout_s`` the element is stale (counted, logged)
   and the window is settled without it.
4. **prepare** (only with a strategy; both sides in :mod:`~hometwin.runtime.prepare`): once the
   environment's signals are in, ``Inverter.prepare`` runs in the executor thread (the strategy's
   proxies fetch the elements' flexibility and send commands there), then the inverter publishes
   ``Signals{plan_ready}``; plannable elements, told at admission (``plan_stage``), wait for it
   before their request.  Without a strategy nothing of this happens.
5. **balance**: the very same window as in-process (:func:`hometwin.window.window_steps`: signal merge,
   requests, ``Inverter.balance_steps`` with the battery's dispatch as an RPC, ledger, SoC).
6. **settle**: ``Flows``, then ``Settle``, then the clock's ``TickDone``; the next window opens.

Each optimisation of the protocol is a module holding its state as one object the balancer owns:
windows in flight (:mod:`~hometwin.runtime.inflight`), runs of windows (:mod:`~hometwin.runtime.runs`),
speculative packets (:mod:`~hometwin.runtime.speculation`), elements running ahead in chunks
(:mod:`~hometwin.runtime.ahead`), the battery's dispatch (:mod:`~hometwin.runtime.dispatch`) and a
restart mid-run (:mod:`~hometwin.runtime.resume`); their sizes and timeouts are
:class:`~hometwin.runtime.settings.RuntimeSettings`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from hometwin.runtime import messages as m
from hometwin.runtime import prepare as pp
from hometwin.runtime.ahead import AheadChunk
from hometwin.runtime.dispatch import BatteryProxy, BatteryUnavailable
from hometwin.runtime.inflight import InFlight
from hometwin.runtime.metrics import ServiceMetrics
from hometwin.runtime.resume import Resume
from hometwin.runtime.runs import Runs
from hometwin.runtime.service import AHEAD, ElementHost
from hometwin.runtime.settings import DEFAULTS, RuntimeSettings
from hometwin.runtime.speculation import Speculation
from hometwin.topology import Member, signal_order
from hometwin.window import AskDispatch, AskRequests, AskSignals, AskStorage, Commit, window_steps

log = logging.getLogger("hometwin.balancer")


class Balancer(pp.BalancerPrepare, ElementHost):
    """Hosts the inverter element and balances every window."""

    def __init__(self, element: Any, order: list[str], metrics: ServiceMetrics | None = None,
                 timeout_s: float = DEFAULTS.timeout_s, ahead_steps: int = DEFAULTS.ahead_steps):
        super().__init__(element, metrics)
        self.settings = RuntimeSettings(timeout_s=timeout_s, ahead_steps=ahead_steps)  # refused when out of range
        self.order = list(order)  # spec order: roles (and sums) follow it, as in the engine
        self.timeout_s = timeout_s
        self.roster: dict[str, m.Describe] = {}
        self._members_of: dict[str, tuple[m.Describe, Member]] = {}  # element → (its announce, as a window member)
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
        self.settled_seq = -1  # the last window settled (its Flows published); -1: none yet
        self.next_step = 0  # where the window after it starts
        # An element that missed a window's timeout is not awaited again until it shows a sign of life
        # (a packet, an announce): a stopped process (SIGSTOP) costs one timeout, not one a window.
        self.asleep: set[str] = set()
        self.last_parts: list[str] = []  # who took part in the last window settled (a repeated TickDone's)
        self.last_soc: float | None = None  # the battery's SoC at the end of the last window it took part in
        # The protocol's optimisations, each with its own state (docs/runtime.md).
        self.inflight = InFlight(self)  # the clock's next windows, queued while one is open
        self.runs = Runs()  # the clock's ticks of many windows, answered with TickDone at their last
        self.speculation = Speculation(self)  # packets published ahead of the last Settle
        self.ahead = AheadChunk(self, self.settings.ahead_steps)  # the chunk of the elements running ahead
        self.resume = Resume(self)  # where a restarted inverter takes the run up; ticks held until a gap fills
        self.init_prepare(element)  # proxies, prepare_stage, told … (hometwin.runtime.prepare)
        self.prep = "none"  # this window: none (no strategy) | wait | running | done
        self.window_stale: list[str] = []  # elements settled without in this window (counted once)
        self._gone: set[int] = set()  # sessions that left (an admission in flight must not revive them)

    # -- 1. roster ---------------------------------------------------------------------------------
    async def on_join(self, session: Any) -> None:
        self.session = session
        self.loop = asyncio.get_running_loop()
        self.roster[self.name] = self.describe_msg()
        await self.register_rpcs()
        await session.register(self.rpc_roster, m.ROSTER_GET)
        await session.register(self.ahead.rpc_settle_now, m.SETTLE_AHEAD_NOW)
        await self.resume.position()  # before the first tick: a restart must not settle a window twice
        await self.sub(m.TICK, self.on_tick)
        await self.sub(m.SIGNALS, lambda p: self.on_packet(m.SIGNALS, m.Signals, p))
        await self.sub(m.REQUEST, lambda p: self.on_packet(m.REQUEST, m.EnergyRequest, p))
        await self.sub(m.STORAGE, lambda p: self.on_packet(m.STORAGE, m.StorageStatus, p))
        await self.sub(m.SIGNALS_AHEAD, lambda p: self.ahead.on_packet(m.SIGNALS_AHEAD, m.Signals, p))
        await self.sub(m.REQUEST_AHEAD, lambda p: self.ahead.on_packet(m.REQUEST_AHEAD, m.EnergyRequest, p))
        await self.sub(m.ANNOUNCE, self.on_announce)
        await session.subscribe(self.on_leave, m.SESSION_ON_LEAVE)
        await self.sub(m.RUN_DONE, lambda payload: self.log_summary())
        self.publish(m.ROSTER_QUERY, m.RosterQuery(reason="inverter joined"))

    def rpc_get(self) -> dict[str, Any]:
        out = super().rpc_get()
        if self.prepare_stage:
            s = self.prepare_s
            out["prepare"] = {"windows": len(s), "total_s": float(sum(s)), "last_s": float(s[-1]) if s else 0.0,
                              "max_s": float(max(s)) if s else 0.0, "rpcs": dict(self.rpc_counts),
                              "roster": list(self.proxies), "waiting": sorted(self.told)}
        return out

    def rpc_roster(self) -> dict[str, Any]:
        return self._roster(max(self.last_seq, 0)).wire()

    def _roster(self, seq: int) -> m.Roster:
        return m.Roster(seq=seq, elements=self._ordered(), left=list(self.left), stale=sorted(self.stale_total),
                        settled_seq=self.settled_seq, next_step=self.next_step,
                        window_open=self.w is not None and self.w.seq != self.settled_seq and not self.failed)

    def _ordered(self) -> list[str]:
        known = [n for n in self.order if n in self.roster]
        return known + [n for n in self.roster if n not in self.order]

    def on_announce(self, payload: Any) -> None:
        d = m.decode(m.Describe, payload, m.ANNOUNCE, self.rejections)
        if d is None:
            return
        if d.element == self.name:  # the router does not send us our own events: another session
            self.rejections.reject(m.ANNOUNCE, "out_of_range", f"{d.element}: the inverter's own name")
            return
        old = self.roster.get(d.element)
        if old is not None and (old.kind, old.role) != (d.kind, d.role) and old.session not in self._gone:
            # An element's kind and role do not change while its session lives: a second announcer
            # under its name (a misconfigured service) must not take its place on the roster.
            self.rejections.reject(m.ANNOUNCE, "out_of_range", f"{d.element}: announced as {d.kind} ({d.role}), "
                                   f"but {old.kind} ({old.role}) of session {old.session} is on the roster")
            return
        if d.role == "converter":
            self.rejections.reject(m.ANNOUNCE, "out_of_range", f"{d.element}: a second inverter")
            return
        if self.asleep:
            self._alive(d.element)
        if self.prepare_stage and pp.plannable_describe(d) and self.told.get(d.element) != d.session:
            asyncio.ensure_future(self._admit_plannable(d))
            return
        self._admit(d)

    def _admit(self, d: m.Describe) -> None:
        new = d.element not in self.roster
        old = self.roster.get(d.element)
        renewed = old is not None and old.session != d.session
        self.roster[d.element] = d
        if d.session:
            # A restarted element announces with a new session, maybe before the router reports
            # the old one gone: that old session no longer stands for it.
            for s in [s for s, name in self.by_session.items() if name == d.element and s != d.session]:
                del self.by_session[s]
            self.by_session[d.session] = d.element
        if d.element in self.left:
            self.left.remove(d.element)
        self.ahead.joined(d, renewed)
        if new:
            log.info("roster: %s (%s) joined", d.element, d.kind)
            self._publish_roster()

    def on_leave(self, session_id: Any = None, *args: Any, **kwargs: Any) -> None:
        if isinstance(session_id, int):
            self._gone.add(session_id)
        name = self.by_session.pop(int(session_id), None) if isinstance(session_id, int) else None
        if name is None or name not in self.roster:
            return
        del self.roster[name]
        self.asleep.discard(name)
        self.ahead.left(name)
        self.speculation.left(name)
        self.left.append(name)
        log.info("roster: %s left (session %s)", name, session_id)
        self._publish_roster()
        self.advance()  # no need to wait for a packet that cannot come

    def _publish_roster(self) -> None:
        self.publish(m.ROSTER, self._roster(self.last_seq + 1))

    # -- 2. tick: a window opens ---------------------------------------------------------------------
    def on_tick(self, payload: Any) -> None:
        t = m.decode(m.Tick, payload, m.TICK, self.rejections)
        if t is None:
            return
        if t.seq <= self.settled_seq:  # the clock sends a tick again: some of its windows are settled
            self.resume.again(t)
            return
        if not self.check_tick(t, runs=True):
            return
        self.inflight.accept(t.split(), t)

    def _open(self, t: m.Tick) -> None:
        """Window ``t`` starts: roster, relay of its tick, packets at hand, timeout."""
        self.last_seq = t.seq
        self.apply_pending()
        self.w = self.window(t)
        self.t_tick = time.perf_counter()
        self.members = self._ordered()
        self.packets = {}
        self.started = False
        self.window_stale = []
        self.prep = "wait" if self.prepare_stage else "none"
        self.inflight.relay(t)
        self.ahead.open(self.w)
        for uri, msg in self.early.pop(t.seq, []):
            self._take(uri, msg)
        self.early = {s: v for s, v in self.early.items() if s > t.seq}
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(self.timeout_s, self.on_timeout, t.seq)
        self.advance()

    # -- 3. packets ----------------------------------------------------------------------------------
    def on_packet(self, uri: str, model: type[m.Message], payload: Any) -> None:
        msg = m.decode(model, payload, uri, self.rejections)
        if msg is None or msg.element == self.name:  # our own plan_ready (the router normally skips it)
            return
        if self.asleep:
            self._alive(msg.element)
        if self.w is not None and msg.seq == self.w.seq and not self.started:
            self._take(uri, msg)
            self.advance()
        elif self.last_seq < msg.seq <= self.last_seq + AHEAD:
            self.early.setdefault(msg.seq, []).append((uri, msg))
        else:
            self.rejections.reject(uri, "stale_seq", f"{msg.element}: seq {msg.seq}, window {self.last_seq}")

    def _take(self, uri: str, msg: Any) -> None:
        if not self.speculation.takes(msg):
            return
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

    def _missing(self, asleep: bool = False) -> list[str]:
        """Members whose packet the window still awaits (``asleep``: those it does not await, asleep)."""
        return [n for n in self.members if n in self.roster and n != self.name and n not in self.window_stale
                and (n in self.asleep) == asleep and self._expects(self.roster[n]) is not None and n not in self.packets]

    def _alive(self, name: str) -> None:
        """A sign of life from ``name`` (a packet, an announce): awaited again from now."""
        if name in self.asleep:
            self.asleep.discard(name)
            log.warning("%s is back (a sign of life at window %d): awaited again", name, self.last_seq)

    def advance(self) -> None:
        if self.started or self.w is None or self.failed:
            return
        if self.prep == "wait":
            if not self._missing_env():
                self._start_prepare()
            return
        if self.prep == "running" or self._missing():
            return
        self._start(stale=list(self.window_stale))

    def on_timeout(self, seq: int) -> None:
        if self.started or self.w is None or self.w.seq != seq or self.prep == "running":
            return
        missing = self._missing_env() if self.prep == "wait" else self._missing()
        for name in missing:
            self.stale_total[name] = self.stale_total.get(name, 0) + 1
            self.metrics.inc("stale", name)
        self.window_stale += missing
        self.asleep.update(missing)
        log.warning("window %d: no packet from %s within %.1f s — %s without (stale; not awaited again until "
                    "a sign of life)", seq, ", ".join(missing), self.timeout_s,
                    "planned" if self.prep == "wait" else "settled")
        if self.prep == "wait":
            self._start_prepare()
        else:
            self._start(stale=list(self.window_stale))

    # -- 5. balance ----------------------------------------------------------------------------------
    def _member(self, name: str) -> Member:
        """``name`` as the window sees it (kept while its announce stands)."""
        d = self.roster[name]
        got = self._members_of.get(name)
        if got is None or got[0] is not d:
            got = self._members_of[name] = (d, Member.announced(d))
        return got[1]

    def _start(self, stale: list[str] = ()) -> None:
        self.started = True
        asleep = self._missing(asleep=True)
        if asleep:  # stale since an earlier window, not heard from since: settled without, not awaited
            for name in asleep:
                self.stale_total[name] = self.stale_total.get(name, 0) + 1
                self.metrics.inc("stale", name)
            self.window_stale += asleep
            stale = list(stale) + asleep
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
        """Drive the window (:func:`hometwin.window.window_steps`) with this window's packets, then
        publish what it settled.  A member whose packet did not come (``stale``) is answered None;
        the battery's dispatch is an RPC (if it fails, the window goes on without the battery)."""
        members = [n for n in self.members if n in self.roster]
        desc = {n: self.roster[n] for n in members}  # as they stand now (one may leave while we await)
        # Who takes part: roster members of this window (spec order) that delivered, plus
        # those that deliver nothing (the inverter itself, elements without outputs).
        given = {n for n in members if n not in stale and (n in self.packets or self._expects(desc[n]) is None)}
        packets = self.packets
        steps = window_steps(w, [self._member(n) for n in members], self.element, last_soc=self.last_soc)
        battery: BatteryProxy | None = None
        ask = next(steps)
        while not isinstance(ask, Commit):
            answer: Any = None
            if isinstance(ask, AskSignals):
                answer = packets[ask.name].arrays if ask.name in given else None
            elif isinstance(ask, AskRequests):
                answer = {n: packets[n].joules for n in ask.names if n in given}
            elif isinstance(ask, AskStorage):
                if ask.name in given:
                    battery = BatteryProxy(self, ask.name, w.seq, packets[ask.name].params)
                    answer = battery.params()
                    if self.prepare_stage:  # the balance starts: a strategy's policy may call blocking proxies
                        ask = await asyncio.get_running_loop().run_in_executor(None, steps.send, answer)
                        continue
            elif isinstance(ask, AskDispatch):
                try:
                    answer = await battery.dispatch_async(*ask.args)  # type: ignore[union-attr]
                except BatteryUnavailable as exc:  # answered None: the window is balanced without it
                    log.warning("window %d: %s — settled without the battery", w.seq, exc)
                    self.asleep.add(ask.name)
                    self.stale_total[ask.name] = self.stale_total.get(ask.name, 0) + 1
                    self.metrics.inc("stale", ask.name)
                    stale = stale + [ask.name]
            ask = steps.send(answer)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("window %d: balanced after %.1f ms", w.seq, (time.perf_counter() - self.t_tick) * 1e3)
        self._settled(w, ask.record, steps, desc, stale)

    # -- 6. settle -----------------------------------------------------------------------------------
    def _settled(self, w: Any, rec: Any, steps: Any, desc: dict[str, m.Describe], stale: list[str]) -> None:
        """Window ``w`` is balanced (``rec``): publish its Flows and Settle, commit it, tell the clock
        when it ends a tick, and open the next window when it is here."""
        k, parts = rec.k, rec.participants
        self.max_residual_j = max(self.max_residual_j, rec.residual_j)
        if rec.battery_result is not None:
            self.last_soc = float(rec.soc[-1])
        # Both messages are built (validated) before either goes out: a window whose Flows cannot be
        # stated is not settled half-way (elements committed, nobody told).
        nxt = self.inflight.next_after(w, k)
        then, confirmed = self.speculation.decide(w, k, nxt, parts, desc, rec.requests, rec.served,
                                                  rec.battery_result is not None)
        settle = m.Settle(seq=w.seq, i0=w.i0, n=w.n, k=k, served=rec.served, participants=parts, next=nxt,
                          then=then, confirmed=confirmed)
        flows = m.Flows(seq=w.seq, i0=w.i0, n=w.n, k=k, dt_s=w.dt_s, flows=rec.flows, served=rec.served,
                        roles={n: r.value for n, r in rec.roles.items()}, soc=rec.soc, stale=stale,
                        max_residual_j=self.max_residual_j)
        # Flows first: an element that got this Settle may answer a restarted inverter "window w.seq is
        # settled" (resume.py), so its Flows must be out by then — else the recorder would miss the
        # window for good.  A crash between the two leaves Flows without the Settle: the restarted inverter
        # settles the window again, from the same packets, and the recorder ignores the exact repeat.
        self.metrics.home_flows(rec.flows, k)  # before the Flows: a run ends on its last Flows
        self.publish(m.FLOWS, flows)
        self.publish(m.SETTLE, settle)
        self.inflight.carry(nxt, parts, desc)
        try:
            steps.send(None)  # committed: the window ends (the inverter remembers its flows)
        except StopIteration:
            pass
        self.settled_seq, self.next_step = w.seq, w.i0 + k + 1
        self.last_parts = parts
        self.ahead.settled(w, k, parts, desc, rec.served)
        done = self.runs.done(w, self.next_step, parts)  # the clock's TickDone, after the Settle
        end = self._t0_epoch + (w.i0 + k + 1) * w.dt_s
        self.metrics.settled(None, w.dt_s, end, time.perf_counter() - self.t_tick, k + 1)
        self.metrics.telemetry(self.element.telemetry())
        opens = bool(self.inflight.queued) and self.w is w and not self.failed  # the clock's next window is here
        if done is not None:  # the clock waits for TickDone (and the recorder for Flows first)
            self.publish(m.TICK_DONE, done)
        if opens:
            self._open(self.inflight.queued.pop(0))

    def log_summary(self) -> None:
        """At the run's end: the prepare stage's cost (with a strategy), the speculative packets."""
        if self.prepare_stage:
            self.log_prepare_summary()
        self.speculation.log_summary()

    # -- 4. prepare stage (strategies) ---------------------------------------------------------------
    def _missing_env(self) -> list[str]:
        """Environment elements (sun, weather, grid) whose signals the prepare stage still waits for."""
        return [n for n in self._missing() if self._expects(self.roster[n]) == m.SIGNALS]

    def _signals(self, names: list[str]) -> dict[str, np.ndarray]:
        """The window's environment signals of ``names``' packets, merged in dependency order (for
        the prepare stage; the window merges its own the same way)."""
        signals: dict[str, np.ndarray] = {}
        for mb in signal_order([self._member(n) for n in names]):
            signals.update(self.packets[mb.name].arrays)
        return signals

