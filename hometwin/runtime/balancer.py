"""The inverter service: the home's balancer over WAMP.

Per window it does what :meth:`hometwin.engine.Engine.step_window` does: wait for the
packets of every element on the roster for ``seq`` (signals, energy requests, the
battery's status), then drive the very same window (:func:`hometwin.window.window_steps`:
signal merge, requests, ``Inverter.balance_steps`` with the battery's dispatch as an
RPC, ledger, SoC) with them, and publish ``Flows`` and ``Settle``.

Roster: elements announce themselves (``hometwin.roster.announce``); the WAMP
meta-event ``wamp.session.on_leave`` removes an element whose session left.  The
roster of a window is fixed when its tick arrives, so a join or a leave counts from
the next window.  A missing packet never blocks: after ``timeout_s`` the element is
marked stale (counted, logged) and the window is settled without it.

Strategies (issue 5): the inverter's roster is a dict of
:class:`~hometwin.runtime.proxies.RemoteElement` (every announced element but the
inverter, in spec order, as the engine binds its models).  When the inverter has a
strategy, each window gets a *prepare stage* (:mod:`hometwin.runtime.prepare`): once every
environment ``Signals`` packet of the window arrived, ``Inverter.prepare(w, signals)`` runs
in the executor thread (the proxies fetch flexibility and send commands there), then the
inverter publishes ``plan_ready``, which the plannable elements wait for before their
requests — the order of :meth:`Engine.step_window`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from hometwin.runtime import messages as m
from hometwin.element import Role
from hometwin.registry import element_class
from hometwin.runtime import prepare as pp
from hometwin.runtime.metrics import ServiceMetrics
from hometwin.runtime.service import AHEAD, ElementHost
from hometwin.window import AskDispatch, AskRequests, AskSignals, AskStorage, Commit, Member, signal_order, window_steps

log = logging.getLogger("hometwin.balancer")


class _Slice:
    """One window cut from an ahead element's chunk packet: what ``_settle_window`` reads."""

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


class BatteryUnavailable(RuntimeError):
    """The battery's dispatch RPC failed or timed out."""


class BatteryProxy:
    """The battery over WAMP: its window's StorageStatus ``params``, and ``dispatch`` as an RPC
    awaited on the event loop (the window's :class:`~hometwin.window.AskDispatch`)."""

    def __init__(self, balancer: "Balancer", name: str, seq: int, params: dict[str, float]):
        self.b, self.name, self.seq, self._params = balancer, name, seq, params

    def params(self) -> dict[str, float]:
        return dict(self._params)

    async def dispatch_async(self, *args: Any) -> m.DispatchResult:
        req = self.request(*args)
        try:
            payload = await asyncio.wait_for(self.b.session.call(self.uri, req.wire()), self.b.timeout_s)
        except Exception as exc:
            raise BatteryUnavailable(f"{self.uri}: {exc!r}") from None
        return self.result(req, payload)

    @property
    def uri(self) -> str:
        return m.element_uri(self.name, "dispatch")

    def request(self, dt_s: float, charge_j: np.ndarray, discharge_j: np.ndarray,
                grid_charge_j: np.ndarray | None = None, soc_floor: Any = None,
                grid_target_soc: Any = None) -> m.DispatchRequest:
        n = len(charge_j)
        return m.DispatchRequest(seq=self.seq, dt_s=dt_s, n=n, charge_j=charge_j, discharge_j=discharge_j,
                                 grid_charge_j=grid_charge_j, soc_floor=_per_step(soc_floor, n),
                                 grid_target_soc=_per_step(grid_target_soc, n))

    def result(self, req: m.DispatchRequest, payload: Any) -> m.DispatchResult:
        self.b.metrics.msg("out", self.uri)
        res = m.decode(m.DispatchResult, payload, self.uri, self.b.rejections)
        if res is None or res.seq != self.seq or res.n != req.n:
            raise BatteryUnavailable(f"{self.uri}: invalid answer")
        return res


def _per_step(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=float)
    return np.full(n, float(arr)) if arr.ndim == 0 else arr


class Balancer(pp.BalancerPrepare, ElementHost):
    """Hosts the inverter element and balances every window."""

    def __init__(self, element: Any, order: list[str], metrics: ServiceMetrics | None = None,
                 timeout_s: float = 10.0, ahead_steps: int = m.AHEAD_STEPS):
        super().__init__(element, metrics)
        self.order = list(order)  # spec order: roles (and sums) follow it, as in the engine
        self.timeout_s = timeout_s
        if ahead_steps < 1:
            raise ValueError(f"ahead_steps: must be >= 1 (got {ahead_steps})")
        # Elements running ahead (Describe.ahead): their chunk, their packets, what they were served.
        self.ahead_steps = int(ahead_steps)
        self.chunk: m.Tick | None = None
        self.ahead: dict[str, Any] = {}  # element → its packet for the chunk
        self.revised: dict[str, Any] = {}  # element → a revised packet, used from the next window
        self.chunk_served: dict[str, np.ndarray] = {}  # ahead participant → served per step of the chunk
        self.chunk_done = 0  # steps of the chunk settled
        self.chunk_told = 0  # … of which the elements running ahead were told (hometwin.ahead.settle)
        self.chunk_ends: list[int] = []  # where each window settled in the chunk ended (steps from its i0)
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
        # The clock keeps two single-step windows in flight at speed max: the next tick waits here
        # while a window is open, and rides in its Settle (``next``) to the elements per window.
        self.queued: list[m.Tick] = []
        self.carried: tuple[int, frozenset[str]] | None = None  # (seq of the tick, who got it) in a Settle
        self.next_step = 0  # where the window after it starts
        self.tick_ends: dict[int, m.Tick] = {}  # last window of a clock tick → the tick (TickDone goes out then)
        self.confirmed: dict[str, int] = {}  # element → the window whose speculative packet is taken from it
        # Faults (docs/runtime.md, "State across restarts"): a tick beyond the window after the last one
        # settled waits here for the ticks between (the clock publishes them again, in order) …
        self.held: dict[int, m.Tick] = {}
        # … and an element that missed a window's timeout is not awaited again until it shows a sign of
        # life (a packet, an announce): a stopped process (SIGSTOP) costs one timeout, not one a window.
        self.asleep: set[str] = set()
        self.last_parts: list[str] = []  # who took part in the last window settled (a repeated TickDone's)
        self.last_soc: float | None = None  # the battery's SoC at the end of the last window it took part in
        self.init_prepare(element)  # proxies, prepare_stage, told … (hometwin.runtime.prepare)
        self.prep = "none"  # this window: none (no strategy) | wait | running | done
        self.window_stale: list[str] = []  # elements settled without in this window (counted once)
        self._gone: set[int] = set()  # sessions that left (an admission in flight must not revive them)

    # -- session -----------------------------------------------------------------------------------
    async def on_join(self, session: Any) -> None:
        self.session = session
        self.loop = asyncio.get_running_loop()
        self.roster[self.name] = self.describe_msg()
        await self.register_rpcs()
        await session.register(self.rpc_roster, m.ROSTER_GET)
        await session.register(self.rpc_settle_ahead_now, m.SETTLE_AHEAD_NOW)
        await self.resume_position()  # before the first tick: a restart must not settle a window twice
        await self.sub(m.TICK, self.on_tick)
        await self.sub(m.SIGNALS, lambda p: self.on_packet(m.SIGNALS, m.Signals, p))
        await self.sub(m.REQUEST, lambda p: self.on_packet(m.REQUEST, m.EnergyRequest, p))
        await self.sub(m.STORAGE, lambda p: self.on_packet(m.STORAGE, m.StorageStatus, p))
        await self.sub(m.SIGNALS_AHEAD, lambda p: self.on_ahead_packet(m.SIGNALS_AHEAD, m.Signals, p))
        await self.sub(m.REQUEST_AHEAD, lambda p: self.on_ahead_packet(m.REQUEST_AHEAD, m.EnergyRequest, p))
        await self.sub(m.ANNOUNCE, self.on_announce)
        await session.subscribe(self.on_leave, m.SESSION_ON_LEAVE)
        await self.sub(m.RUN_DONE, lambda payload: self.log_summary())
        self.publish(m.ROSTER_QUERY, m.RosterQuery(reason="inverter joined"))

    async def resume_position(self) -> None:
        """Where the run stands, for an inverter (re)started mid-run: the last window settled and the
        step after it, as the elements know them (each answers ``get`` with the last Settle it got:
        ``settled_seq``, ``next_step``) and the clock (its last ``TickDone``).  A tick the clock sends
        again for a window at or before it is then answered (``TickDone``) without settling it twice.
        At a run's start nobody answers, or everyone answers "nothing settled": nothing changes."""
        wait = min(self.timeout_s, 5.0)

        async def ask(uri: str) -> Any:
            try:
                return await asyncio.wait_for(self.session.call(uri), wait)
            except Exception:  # not there (yet), stopped, or an older service: it cannot say
                return None

        names = [n for n in self.order if n != self.name]
        answers = await asyncio.gather(*(ask(m.element_uri(n, "get")) for n in names), ask(m.clock_uri("status")))
        best, who = (-1, 0), ""
        n_steps = self.ctx.n_steps
        for name, a in zip(names + ["clock"], answers):
            if not isinstance(a, dict):
                continue
            if name == "clock":  # its next tick's seq and step: what it got TickDone for is before them
                seq, step = a.get("seq", 0) - 1, a.get("i")
            else:
                seq, step = a.get("settled_seq"), a.get("next_step")
            if type(seq) is not int or type(step) is not int or not (seq >= 0 and 0 < step <= n_steps):
                continue
            if (seq, step) > best:
                best, who = (seq, step), name
        if best[0] < 0:
            return
        self.settled_seq, self.next_step = best
        # The battery's committed charge (its ``get``: the end of the last window it took part in) is the
        # SoC a window settled without it records, as it would have been before the restart.
        for a in answers[:-1]:
            soc = a.get("telemetry", {}).get("soc") if isinstance(a, dict) else None
            if _is_storage(a) and isinstance(soc, float) and 0.0 <= soc <= 1.0:
                self.last_soc = soc
        self.last_seq = max(self.last_seq, best[0])
        log.warning("resuming the run: window %d was settled through step %d before this inverter started "
                    "(as %s says); a tick for a settled window is answered, not settled again", best[0],
                    best[1] - 1, who)

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
        if old is not None and old.session != d.session:
            self.chunk_served.pop(d.element, None)  # what its old session got is not the new one's to settle
        self.roster[d.element] = d
        if d.session:
            # A restarted element announces with a new session, maybe before the router reports
            # the old one gone: that old session no longer stands for it.
            for old in [s for s, name in self.by_session.items() if name == d.element and s != d.session]:
                del self.by_session[old]
            self.by_session[d.session] = d.element
        if d.element in self.left:
            self.left.remove(d.element)
        if d.ahead and d.element not in self.ahead and self.chunk is not None \
                and self.chunk_done < self.chunk.n:
            self.publish(m.TICK_AHEAD, self.chunk)  # it joined mid-chunk: the chunk's tick again, for it
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
        self.ahead.pop(name, None)
        self.confirmed.pop(name, None)
        self.revised.pop(name, None)
        self.chunk_served.pop(name, None)  # a new session under its name starts its own share
        self.left.append(name)
        log.info("roster: %s left (session %s)", name, session_id)
        self._publish_roster()
        self.advance()  # no need to wait for a packet that cannot come

    def _publish_roster(self) -> None:
        self.publish(m.ROSTER, self._roster(self.last_seq + 1))

    # -- window ------------------------------------------------------------------------------------
    def on_tick(self, payload: Any) -> None:
        t = m.decode(m.Tick, payload, m.TICK, self.rejections)
        if t is None:
            return
        if t.seq <= self.settled_seq:  # the clock sends a tick again: some of its windows are settled
            self._tick_again(t)
            return
        if not self.check_tick(t, runs=True):
            return
        self._accept(t, t.split(), t)

    def _accept(self, t: m.Tick, windows: list[m.Tick], tick: m.Tick) -> None:
        """Open (or queue) ``windows``, the unsettled windows of the clock's ``tick``."""
        w = self.w
        first = windows[0]
        if w is not None and w.seq != self.settled_seq and not self.failed:
            last = self.queued[-1] if self.queued else w
            if any(q.seq == first.seq for q in self.queued) or first.seq == w.seq:
                self.rejections.reject(m.TICK, "duplicate", f"seq {first.seq} is under way already")
                return
            if first.seq == last.seq + 1 and (self.queued or w.n == 1):  # the clock's next tick, in flight
                self.queued += windows
                self.tick_ends[windows[-1].seq] = tick
                self._release_held()
                return
            if first.seq > last.seq + 1:
                self._hold(tick, f"window {last.seq} is the last one open")
                return
            if not self.started:
                log.error("window %d abandoned: a new tick arrived before it was settled", w.seq)
        elif first.seq > self.settled_seq + 1 and self.settled_seq >= 0:
            self._hold(tick, f"window {self.settled_seq} is the last one settled")
            return
        self.queued = windows[1:] + [q for q in self.queued if q.seq > windows[-1].seq]
        self.tick_ends[windows[-1].seq] = tick
        self._open(first)
        self._release_held()

    def _hold(self, t: m.Tick, why: str) -> None:
        """A tick beyond the window after the last one: the ones between were lost (this inverter
        restarted); it waits until the clock publishes them again, in order, before it."""
        if t.seq not in self.held:
            log.warning("tick %d held: %s, the ticks between are awaited (the clock sends them again)", t.seq, why)
        self.held[t.seq] = t

    def _release_held(self) -> None:
        """A held tick that now follows the last window open or queued goes in after it."""
        if not self.held:
            return
        self.held = {s: t for s, t in self.held.items() if s > self.settled_seq}
        last = self.queued[-1] if self.queued else self.w
        t = self.held.pop(last.seq + 1, None) if last is not None else None
        if t is not None:
            self._accept(t, t.split(), t)

    def _tick_again(self, t: m.Tick) -> None:
        """A tick whose first windows are settled already (the clock published it again: this inverter
        restarted, or its TickDone was late).  Every window of it settled: its ``TickDone`` again; some:
        the rest opens (a restart mid-run) — no window is settled twice."""
        last = t.seq + t.windows - 1
        if t.dt_s != self.ctx.step_s or t.i0 + t.n * t.windows > self.ctx.n_steps \
                or abs(t.t0 - (self._t0_epoch + t.i0 * t.dt_s)) > 1e-3:
            self.check_tick(t, runs=True)  # refused, counted and logged there
            return
        if last <= self.settled_seq:
            if t.n == 1:
                nxt = t.i0 + t.windows  # single steps end where they were asked to
            elif last == self.settled_seq:
                nxt = self.next_step
            else:
                self.rejections.reject(m.TICK, "stale_seq", f"seq {t.seq}: settled long ago (window {self.settled_seq})")
                return
            log.info("tick %d (windows %d–%d) was settled already: its TickDone again, nothing settled twice",
                     t.seq, t.seq, last)
            self.publish(m.TICK_DONE, m.TickDone(seq=t.seq, windows=t.windows, i0=t.i0, next_step=nxt,
                                                 participants=self.last_parts or self._ordered()))
            return
        skip = self.settled_seq + 1 - t.seq  # a run of single steps, settled up to its window skip - 1
        w = self.w
        if (w is not None and w.seq != self.settled_seq) or self.queued or t.i0 + skip != self.next_step:
            self.rejections.reject(m.TICK, "duplicate", f"seq {t.seq}: windows {t.seq}–{self.settled_seq} settled, "
                                   "the rest under way")
            return
        windows = t.split()[skip:]
        log.warning("tick %d: windows %d–%d were settled before this inverter started; going on with window %d "
                    "at step %d", t.seq, t.seq, self.settled_seq, windows[0].seq, windows[0].i0)
        self._accept(windows[0], windows, t)

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
        self._relay(t)
        if any(self.roster[n].ahead for n in self.members if n in self.roster):
            self._ahead_window(self.w)
        for uri, msg in self.early.pop(t.seq, []):
            self._take(uri, msg)
        self.early = {s: v for s, v in self.early.items() if s > t.seq}
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(self.timeout_s, self.on_timeout, t.seq)
        self.advance()

    def _relay(self, t: m.Tick) -> None:
        """Send the clock's tick to the members per window that did not get it as the last Settle's
        ``next``: all of them at the first window, after a pause, for windows of many steps; only a
        newcomer (by its session) when the rest got it."""
        per_window = [n for n in self.members if n != self.name and n in self.roster and not self.roster[n].ahead]
        c = self.carried
        need = [n for n in per_window if c is None or c[0] != t.seq or n not in c[1]]
        if not need:
            return
        sessions = [self.roster[n].session for n in need]
        if len(need) == len(per_window) or not all(sessions):
            self.publish(m.TICK_WINDOW, t)
        else:
            self.publish(m.TICK_WINDOW, t, eligible=sessions)

    # -- elements running ahead ------------------------------------------------------------------
    def _ahead_window(self, w: Any) -> None:
        """A window of members running ahead: their revisions take effect now; a window the chunk
        does not cover closes it (its settlement goes out) and starts the next one; the chunk
        packets at hand are sliced for the window."""
        self.ahead.update(self.revised)
        self.revised.clear()
        c = self.chunk
        if not _covers(c, w):
            self._close_chunk()
            n = max(w.n, min(self.ahead_steps, self.ctx.n_steps - w.i0))
            c = self.chunk = m.Tick(seq=w.seq, i0=w.i0, n=n, dt_s=w.dt_s, t0=self._t0_epoch + w.i0 * w.dt_s)
            self.ahead.clear()
            self.chunk_served, self.chunk_done, self.chunk_told, self.chunk_ends = {}, 0, 0, []
            self.publish(m.TICK_AHEAD, c)
        for name, msg in self.ahead.items():
            if name in self.members:
                self.packets[name] = _Slice(msg, w.i0 - c.i0, w.n)

    def _close_chunk(self) -> None:
        """Settle the chunk's steps settled since the last time with the elements running ahead: at
        its end, when a window it does not cover cuts it off, and when the clock pauses (then their
        state is exact at the pause).  The message covers the rest of the chunk from the first step
        not told yet (``i0``) and commits through ``k`` of it."""
        c = self.chunk
        a, b = self.chunk_told, self.chunk_done
        if c is None or b <= a:
            return
        self.chunk_told = b
        if not self.chunk_served:
            return
        st = m.Settle(seq=c.seq, i0=c.i0 + a, n=c.n - a, k=b - a - 1, participants=list(self.chunk_served),
                      served={n: acc[a:b] for n, acc in self.chunk_served.items()},
                      parts=[e - a for e in self.chunk_ends if a < e <= b])
        self.publish(m.SETTLE_AHEAD, st)

    def rpc_settle_ahead_now(self) -> dict[str, Any]:
        """``hometwin.ahead.settle_now``: the clock pauses; tell the elements running ahead what they got
        so far (published before this answer, so they have it before anyone who saw the pause asks)."""
        self.metrics.msg("in", m.SETTLE_AHEAD_NOW)
        self._close_chunk()
        c = self.chunk
        return {"settled_to": self.next_step, "chunk": None if c is None else [c.seq, c.i0, c.n]}

    def on_ahead_packet(self, uri: str, model: type[m.Message], payload: Any) -> None:
        msg = m.decode(model, payload, uri, self.rejections)
        if msg is None:
            return
        name, c = msg.element, self.chunk
        if self.asleep:
            self._alive(name)
        d = self.roster.get(name)
        if d is None or not d.ahead:
            self.rejections.reject(uri, "not_member", f"{name} is not on the roster as an element running ahead")
            return
        if self._expects(d) != {m.REQUEST_AHEAD: m.REQUEST, m.SIGNALS_AHEAD: m.SIGNALS}[uri] \
                or (uri == m.REQUEST_AHEAD and msg.role != d.role):
            self.rejections.reject(uri, "out_of_range", f"{name} ({d.role}) does not publish on {uri}")
            return
        if getattr(msg, "speculative", False):
            self.rejections.reject(uri, "out_of_range", f"{name}: a chunk is never published ahead (speculative)")
            return
        if c is None or msg.seq != c.seq or self.chunk_done >= c.n:
            self.rejections.reject(uri, "stale_seq", f"{name}: chunk {msg.seq}, the chunk is "
                                   + ("none" if c is None else f"{c.seq}" + (" (settled)" if self.chunk_done >= c.n else "")))
            return
        if msg.n != c.n:
            self.rejections.reject(uri, "out_of_range", f"{name}: n {msg.n} != chunk n {c.n}")
            return
        w = self.w
        in_flight = w is not None and w.seq != self.settled_seq
        if in_flight and name in self.packets:
            self.revised[name] = msg  # this window has its packet: the revision from the next one
            return
        self.ahead[name] = msg
        if in_flight and not self.started and name in self.members and _covers(c, w):
            self.packets[name] = _Slice(msg, w.i0 - c.i0, w.n)
            self.advance()

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
        name = msg.element
        if getattr(msg, "speculative", False):
            # Published ahead of the last window's Settle: taken only if that Settle confirmed it (served
            # in full, as its element assumed); else its element takes it back and publishes it again.
            if self.confirmed.get(name) != msg.seq or name not in self.members:  # (or it left meanwhile)
                self.metrics.inc("speculation", "dropped")
                return
            self.metrics.inc("speculation", "used")
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

    def _missing_env(self) -> list[str]:
        """Environment elements (sun, weather, grid) whose signals the prepare stage still waits for."""
        return [n for n in self._missing() if self._expects(self.roster[n]) == m.SIGNALS]

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

    # -- prepare stage (strategies) -----------------------------------------------------------------
    def _member(self, name: str) -> Member:
        """``name`` as the window sees it (kept while its announce stands)."""
        d = self.roster[name]
        got = self._members_of.get(name)
        if got is None or got[0] is not d:
            got = self._members_of[name] = (d, Member.announced(d))
        return got[1]

    def _signals(self, names: list[str]) -> dict[str, np.ndarray]:
        """The window's environment signals of ``names``' packets, merged in dependency order (for
        the prepare stage; the window merges its own the same way)."""
        signals: dict[str, np.ndarray] = {}
        for mb in signal_order([self._member(n) for n in names]):
            signals.update(self.packets[mb.name].arrays)
        return signals

    def log_summary(self) -> None:
        """At the run's end: the prepare stage's cost (with a strategy), the speculative packets."""
        if self.prepare_stage:
            self.log_prepare_summary()
        spec = self.metrics.values["speculation"]
        if spec:
            log.info("speculative packets: %d used, %d dropped (taken back by their elements)",
                     spec.get(("used",), 0), spec.get(("dropped",), 0))

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

    def _speculation(self, w: Any, k: int, nxt: m.Tick | None, parts: list[str], desc: dict[str, m.Describe],
                     requests: dict[str, np.ndarray], served: dict[str, np.ndarray],
                     dispatched: bool) -> tuple[m.Tick | None, list[str]]:
        """Speculative packets (docs/runtime.md): the window after ``nxt`` when its tick is here (the
        elements per window may publish their packet for it ahead), and the participants per window
        whose packet for ``nxt``, published ahead, is taken — this window settled in full for them,
        as they assumed: a source or load got exactly what it asked, the battery its dispatch answer.
        None with a strategy (its prepare stage reads the elements between windows)."""
        self.confirmed = {}
        if nxt is None or self.prepare_stage:
            return None, []
        then = self.queued[1] if len(self.queued) > 1 else None
        if then is not None and not then.follows(nxt.seq, nxt.i0 + nxt.n):
            then = None
        confirmed = []
        if k == w.n - 1:
            for n in parts:
                d = desc[n]
                if d.ahead or n == self.name or n not in self.roster:
                    continue
                if d.role in ("source", "load"):
                    if np.array_equal(served[n], requests[n]):
                        confirmed.append(n)
                elif d.role == "storage" and dispatched:
                    confirmed.append(n)
        self.confirmed = {n: nxt.seq for n in confirmed}
        return then, confirmed

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
        rec = ask.record
        k, parts = rec.k, rec.participants
        if log.isEnabledFor(logging.DEBUG):
            log.debug("window %d: balanced after %.1f ms", w.seq, (time.perf_counter() - self.t_tick) * 1e3)
        self.max_residual_j = max(self.max_residual_j, rec.residual_j)
        if rec.battery_result is not None:
            self.last_soc = float(rec.soc[-1])
        # Both messages are built (validated) before either goes out: a window whose Flows cannot be
        # stated is not settled half-way (elements committed, nobody told).
        nxt = self.queued[0] if self.queued else None
        if nxt is not None and not nxt.follows(w.seq, w.i0 + k + 1):
            nxt = None  # not the window after this one (never from our clock): relayed when it opens
        then, confirmed = self._speculation(w, k, nxt, parts, desc, rec.requests, rec.served,
                                            rec.battery_result is not None)
        settle = m.Settle(seq=w.seq, i0=w.i0, n=w.n, k=k, served=rec.served, participants=parts, next=nxt,
                          then=then, confirmed=confirmed)
        flows = m.Flows(seq=w.seq, i0=w.i0, n=w.n, k=k, dt_s=w.dt_s, flows=rec.flows, served=rec.served,
                        roles={n: r.value for n, r in rec.roles.items()}, soc=rec.soc, stale=stale,
                        max_residual_j=self.max_residual_j)
        # Flows first: an element that got this Settle may answer a restarted inverter "window w.seq is
        # settled" (resume_position), so its Flows must be out by then — else the recorder would miss the
        # window for good.  A crash between the two leaves Flows without the Settle: the restarted inverter
        # settles the window again, from the same packets, and the recorder ignores the exact repeat.
        self.metrics.home_flows(rec.flows, k)  # before the Flows: a run ends on its last Flows
        self.publish(m.FLOWS, flows)
        self.publish(m.SETTLE, settle)
        # who starts the next window from this Settle: its participants per window (see ElementService.on_settle)
        self.carried = None if nxt is None else (nxt.seq, frozenset(n for n in parts if not desc[n].ahead and n != self.name))
        try:
            steps.send(None)  # committed: the window ends (the inverter remembers its flows)
        except StopIteration:
            pass
        later: list[tuple[str, m.Message]] = []  # the clock's TickDone, after the Settle
        self.settled_seq, self.next_step = w.seq, w.i0 + k + 1
        self.last_parts = parts
        c = self.chunk
        if c is not None and c.i0 <= w.i0 < c.i0 + c.n:
            j = w.i0 - c.i0
            for n in parts:
                if desc[n].ahead:
                    acc = self.chunk_served.get(n)
                    if acc is None:
                        acc = self.chunk_served[n] = np.zeros(c.n)
                    got = rec.served.get(n)
                    acc[j:j + k + 1] = 0.0 if got is None else got[: k + 1]
            self.chunk_done = j + k + 1
            self.chunk_ends.append(self.chunk_done)
            if self.chunk_done >= c.n:
                self._close_chunk()
        tick = self.tick_ends.pop(w.seq, None)
        if tick is not None:  # every window of the clock's tick is settled: its next may go out
            later.append((m.TICK_DONE, m.TickDone(seq=tick.seq, windows=tick.windows, i0=tick.i0,
                                                  next_step=self.next_step, participants=parts)))
        for gone in [s for s in self.tick_ends if s < w.seq]:  # a tick whose windows were abandoned (a jump)
            del self.tick_ends[gone]
        end = self._t0_epoch + (w.i0 + k + 1) * w.dt_s
        self.metrics.settled(None, w.dt_s, end, time.perf_counter() - self.t_tick, k + 1)
        self.metrics.telemetry(self.element.telemetry())
        opens = bool(self.queued) and self.w is w and not self.failed  # the clock's next window is here
        self._publish_all(later)  # the clock waits for TickDone (and the recorder for Flows first)
        if opens:
            self._open(self.queued.pop(0))

    def _publish_all(self, messages: list[tuple[str, m.Message]]) -> None:
        for uri, msg in messages:
            self.publish(uri, msg)


def _is_storage(answer: Any) -> bool:
    """An element's ``get`` answer is the storage's (its kind is a registered storage kind)."""
    kind = answer.get("kind") if isinstance(answer, dict) else None
    try:
        return isinstance(kind, str) and element_class(kind).role == Role.storage
    except (KeyError, ValueError):
        return False
