"""The prepare stage over WAMP: a strategy plans between a window's signals and its requests.

In-process :meth:`hometwin.engine.Engine.step_window` calls ``Inverter.prepare(w, signals)`` after
the environment's signals and before the loads' requests.  Over WAMP the same order takes this
protocol, whose sides live here (the clock has none: the stage lies inside a window):

**Balancer side** (:class:`BalancerPrepare`, mixed into :class:`hometwin.runtime.balancer.Balancer`)::

    environment Signals of window w arrived ─▶ sync_proxies (a RemoteElement per member)
        ─▶ prepare_epoch += 1 ─▶ Inverter.prepare(w, signals) in the executor thread
              (flexibility: one RPC per element per stage; commands: one RPC each)
        ─▶ publish Signals{element: <inverter>, arrays: {plan_ready: 1…}} ─▶ the window goes on

A *plannable* element (one taking plan commands: :data:`PLAN_COMMANDS`) is told at admission
(``plan_stage`` RPC, before it joins the roster) to wait for the inverter's ``plan_ready`` before
computing each request.  Without a strategy nothing of this happens: no extra message, nobody waits.

**Element side** (:class:`ElementPrepare`, mixed into :class:`hometwin.runtime.service.ElementHost`):
every element with a flexibility serves ``hometwin.element.<name>.flexibility`` (its
:meth:`~hometwin.element.Element.flexibility`, :func:`hometwin.flex.to_wire` encoded with the
proxies' codec), every element taking commands serves ``….command`` (one typed
:mod:`hometwin.flex` command, its fields checked before it touches the model; a plan inside a window,
between its request and its settlement, is refused as stale), and a plannable element serves
``….plan_stage`` and waits for ``plan_ready``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from array import array
from collections import Counter
from typing import Any

import numpy as np
from autobahn.wamp.exception import ApplicationError

from hometwin import flex as fx
from hometwin.element import Element
from hometwin.runtime import messages as m
from hometwin.topology import PLAN_COMMANDS, plannable  # noqa: F401 (plannable: the runtime's name for it)
from hometwin.runtime import proxies as px

log = logging.getLogger("hometwin.prepare")

#: The balancer tells a plannable element to wait for its ``plan_ready`` (``plan_stage(inverter, wait)``).
PLAN_STAGE = "plan_stage"
#: The inverter's ``Signals`` key that says "this window's plan is in place" (one 1.0 per step).
PLAN_READY = "plan_ready"
#: Commands that change an element (refused inside a window); the rest are queries.
MUTATES = PLAN_COMMANDS + (fx.ClearPlan.kind,)


def _cls(element: Any) -> type:
    return element if isinstance(element, type) else type(element)


def ports(element: Any) -> list[str]:
    """The planner RPCs ``element`` (a model or its class) serves: ``flexibility`` where it has one,
    ``command`` where it takes commands."""
    cls = _cls(element)
    return ([px.FLEXIBILITY] if getattr(cls, "flexibility", Element.flexibility) is not Element.flexibility else []) \
        + ([px.COMMAND] if getattr(cls, "commands", ()) else [])


def plannable_describe(d: m.Describe) -> bool:
    """True when an announced element takes plans and can be told to wait for them."""
    return PLAN_STAGE in d.rpcs and px.COMMAND in d.rpcs


# -- argument checks (element side) -----------------------------------------------------------------

def _array(name: str, value: Any, finite: bool) -> np.ndarray:
    if isinstance(value, (str, bytes, dict)) or np.ndim(value) != 1:
        raise ValueError(f"{name}: must be a one-dimensional array of numbers")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: every item must be a number") from None
    if len(arr) > m.MAX_STEPS:
        raise ValueError(f"{name}: at most {m.MAX_STEPS} values (got {len(arr)})")
    if finite and not np.isfinite(arr).all():
        raise ValueError(f"{name}: {int((~np.isfinite(arr)).sum())} value(s) are not finite")
    if not finite and np.isinf(arr).any():
        raise ValueError(f"{name}: infinite values (NaN means 'no opinion', inf is not allowed)")
    return arr


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: must be a finite number (got {value!r})")
    return float(value)


#: Unix seconds a command may name (years 1900-2300): an int64 cast of anything beyond wraps silently.
EPOCH_RANGE = (-2_208_988_800, 10_413_792_000)


def _epoch(name: str, value: Any) -> float:
    v = _number(name, value)
    if not EPOCH_RANGE[0] <= v <= EPOCH_RANGE[1]:
        raise ValueError(f"{name}: unix seconds within {EPOCH_RANGE[0]}..{EPOCH_RANGE[1]} (got {value!r})")
    return v


def check_command(cmd: fx.Command, n_steps: int, step_s: int) -> fx.Command:
    """``cmd`` with its fields checked (and arrays as float arrays), or ``ValueError`` naming the field:
    steps and times lie in this run (a step past its end, or a span of centuries, would break or
    stall every later window)."""
    kind = cmd.kind
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cmd):
        value = getattr(cmd, f.name)
        if value is None:
            continue
        what = f"{kind}: {f.name}"
        if f.name == "i0":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer() or value < 0:
                raise ValueError(f"{what}: must be a run step (an integer >= 0, got {value!r})")
            if not 0 <= value < n_steps:
                raise ValueError(f"{what}: must be a step of this run, 0 <= i0 < {n_steps} (got {value})")
            out[f.name] = int(value)
        elif f.name in ("setpoint_c", "heat_w", "on"):
            out[f.name] = _array(what, value, finite=False)  # NaN = no opinion (the geyser's plan)
        elif f.name.endswith("epoch_s"):
            out[f.name] = _epoch(what, value)
    if isinstance(cmd, fx.UpcomingStarts):
        t0, t1 = out["t0_epoch_s"], out["t1_epoch_s"]
        longest = n_steps * step_s + 7 * 86400  # the run, and a week of planning horizon past it
        if not 0 <= t1 - t0 <= longest:
            raise ValueError(f"{kind}: t1_epoch_s - t0_epoch_s: must be within [0, {longest}] s "
                             f"(the run and a week; got {t1 - t0:.6g})")
    return dataclasses.replace(cmd, **out)


def _plan_stage_args(args: Any, kwargs: Any) -> tuple[str, bool]:
    """The arguments of ``plan_stage(inverter, wait=True)``."""
    names = ("inverter", "wait")
    if len(args) > 2 or set(kwargs) - set(names):
        raise ValueError(f"{PLAN_STAGE}: takes inverter and wait (got {len(args)} positional, {sorted(kwargs)})")
    given = dict(zip(names, args))
    if set(given) & set(kwargs):
        raise ValueError(f"{PLAN_STAGE}: inverter or wait given twice")
    given.update(kwargs)
    if "inverter" not in given:
        raise ValueError(f"{PLAN_STAGE}: missing a required argument: 'inverter'")
    inverter, wait = given["inverter"], given.get("wait", True)
    if not isinstance(wait, bool):
        raise ValueError(f"{PLAN_STAGE}: wait: must be true or false (got {wait!r})")
    try:
        m.Roster(seq=0, elements=[inverter])  # a valid element name
    except (ValueError, TypeError):
        raise ValueError(f"{PLAN_STAGE}: inverter: not an element name") from None
    return inverter, wait


# -- the element side ---------------------------------------------------------------------------------

class ElementPrepare:
    """The element side of the prepare protocol (mixed into ``ElementHost``; the plan stage is the
    ``ElementService``'s, whose window holds ``plan_from`` and ``plan_seq``)."""

    element: Element
    name: str
    ports: list[str]

    async def register_ports(self) -> None:
        s = self.session  # type: ignore[attr-defined]
        if px.FLEXIBILITY in self.ports:
            await s.register(self.rpc_flexibility, m.element_uri(self.name, px.FLEXIBILITY))
        if px.COMMAND in self.ports:
            await s.register(self.rpc_command, m.element_uri(self.name, px.COMMAND))

    def rpc_flexibility(self) -> Any:
        self.metrics.msg("in", m.element_uri(self.name, px.FLEXIBILITY))  # type: ignore[attr-defined]
        return px.encode(fx.to_wire(self.element.flexibility()), px.FLEXIBILITY)

    def rpc_command(self, *args: Any, **kwargs: Any) -> Any:
        """``command(cmd)``: one :mod:`hometwin.flex` command in its wire form.

        A bad command is counted and answered with ``hometwin.error.invalid_argument`` naming the
        field; so is a ``ValueError`` of the model's own checks (``defer_to`` of a cycle never drawn).
        A plan between this window's request and its settlement is refused (``hometwin.error.stale``):
        plans take effect before a window's request, never inside it.
        """
        uri = m.element_uri(self.name, px.COMMAND)
        self.metrics.msg("in", uri)  # type: ignore[attr-defined]
        rejections = self.rejections  # type: ignore[attr-defined]
        try:
            if kwargs or len(args) != 1:
                raise ValueError(f"{px.COMMAND}: takes one command (got {len(args)} positional, {sorted(kwargs)})")
            cmd = fx.from_wire(px.decode(args[0], px.COMMAND))
            if not isinstance(cmd, fx.Command):
                raise ValueError(f"{px.COMMAND}: not a command (got {type(cmd).__name__})")
            if cmd.kind not in self.element.commands:
                raise ValueError(f"{px.COMMAND}: {self.name} takes no {cmd.kind} (it takes {', '.join(self.element.commands)})")
            ctx = self.element.home
            cmd = check_command(cmd, ctx.n_steps, ctx.step_s)
        except ValueError as exc:
            rejections.reject(uri, "invalid_argument", str(exc))
            raise ApplicationError(px.INVALID_ARGUMENT, str(exc)) from None
        if cmd.kind in MUTATES and self.inside_window():  # type: ignore[attr-defined]
            msg = (f"{cmd.kind}: window {self.last_seq}'s request is already published; a plan takes "  # type: ignore[attr-defined]
                   "effect before a window's request (the inverter's prepare stage) or between windows")
            rejections.reject(uri, "stale_seq", msg)
            raise ApplicationError(px.STALE, msg)
        try:
            result = self.element.command(cmd)
        except (ValueError, TypeError) as exc:
            rejections.reject(uri, "invalid_argument", f"{cmd.kind}: {exc}")
            raise ApplicationError(px.INVALID_ARGUMENT, f"{cmd.kind}: {exc}") from None
        return px.encode(fx.to_wire(result), cmd.kind)

    # -- waiting for plans (ElementService; its window holds plan_from and plan_seq) -----------------
    async def rpc_plan_stage(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``plan_stage(inverter, wait=True)``: from now on wait, every window, for ``inverter``'s
        ``plan_ready`` before computing the request (``wait=False``: stop waiting)."""
        uri = m.element_uri(self.name, PLAN_STAGE)
        self.metrics.msg("in", uri)  # type: ignore[attr-defined]
        try:
            inverter, wait = _plan_stage_args(args, kwargs)
        except ValueError as exc:
            self.rejections.reject(uri, "invalid_argument", str(exc))  # type: ignore[attr-defined]
            raise ApplicationError(px.INVALID_ARGUMENT, str(exc)) from None
        win = self.win  # type: ignore[attr-defined]
        if wait:
            await self._subscribe_signals()  # type: ignore[attr-defined]
            win.plan_from = inverter
        else:
            win.plan_from = None
        log.info("%s: %s", self.name, f"waits for {inverter}'s plan every window" if wait else "no longer waits for plans")
        self.send(win.advance())  # type: ignore[attr-defined]
        return {"element": self.name, "waits_for": win.plan_from}


def plan_ready_ok(win: Any, sig: m.Signals) -> bool:
    """A ``plan_ready`` signal to an element's window ``win``: only from the inverter it waits for,
    alone, all ones, once per window (anything else is counted and dropped)."""
    if win.plan_from is None:
        return False  # not ours to wait for (an element with inputs sees everyone's signals)
    why = None
    if sig.element != win.plan_from:
        why = ("out_of_range", f"{PLAN_READY} from {sig.element}, not from the inverter {win.plan_from}")
    elif set(sig.arrays) != {PLAN_READY}:
        why = ("invalid", f"{PLAN_READY} comes alone (got {sorted(sig.arrays)})")
    elif not (sig.arrays[PLAN_READY] == 1.0).all():
        why = ("invalid", f"{PLAN_READY}: every value must be 1.0")
    elif sig.seq == win.plan_seq or any(PLAN_READY in e.arrays for e in win.early.get(sig.seq, [])):
        why = ("duplicate", f"second {PLAN_READY} for window {sig.seq}")
    if why is not None:
        win.rejections.reject(m.SIGNALS, *why)
        return False
    return True


# -- the balancer side ----------------------------------------------------------------------------------

class BalancerPrepare:
    """The balancer side of the prepare protocol (mixed into ``Balancer``)."""

    def init_prepare(self, element: Any) -> None:
        # the strategy's view of the home (bound once, refreshed at every prepare stage)
        self.proxies: dict[str, px.RemoteElement] = {}
        bind = getattr(element, "bind_roster", None)
        if bind is not None:
            bind(self.proxies)
        self.prepare_stage = getattr(element, "strategy", None) is not None and callable(getattr(element, "prepare", None))
        self.prepare_epoch = 0  # +1 per prepare stage (proxies fetch flexibility and config once per stage)
        self.told: dict[str, int] = {}  # plannable element → the session told to wait for plan_ready
        self._telling: set[tuple[str, int]] = set()
        self.plans_published = 0  # Strategy.made published as plan events
        self.prepare_s = array("d")  # wall time of each prepare stage [s] (8 B a window, not a float object)
        self.rpc_counts: Counter[str] = Counter()  # proxy RPCs by operation (flexibility, command, describe)

    async def _admit_plannable(self, d: m.Describe) -> None:
        """Tell a plannable element to wait for the window's plan (``plan_stage``), then admit it:
        it takes part only once it will wait, so no window sees its request before its plan."""
        key = (d.element, d.session)
        if key in self._telling:
            return
        self._telling.add(key)
        uri = m.element_uri(d.element, PLAN_STAGE)
        try:
            await asyncio.wait_for(self.session.call(uri, inverter=self.name, wait=True), self.timeout_s)  # type: ignore[attr-defined]
            self.metrics.msg("out", uri)  # type: ignore[attr-defined]
        except Exception as exc:  # gone again, or an element that cannot wait: it stays off the roster
            log.warning("roster: %s not admitted — %s failed: %r", d.element, uri, exc)
            return
        finally:
            self._telling.discard(key)
        if d.session and d.session in self._gone:  # type: ignore[attr-defined]
            return  # it left while we were telling it
        self.told[d.element] = d.session
        self._admit(d)  # type: ignore[attr-defined]

    def sync_proxies(self) -> None:
        """The strategy's roster for this window: a proxy per member but the inverter, in spec order."""
        current = {}
        for name in self.members:  # type: ignore[attr-defined]
            d = self.roster.get(name)  # type: ignore[attr-defined]
            if name == self.name or d is None:  # type: ignore[attr-defined]
                continue
            p = self.proxies.get(name)
            if p is None or p.session != d.session or p.kind != d.kind or p.rpcs != tuple(d.rpcs):
                p = px.RemoteElement(self, d)
            current[name] = p
        if list(current) != list(self.proxies) or any(current[n] is not self.proxies[n] for n in current):
            self.proxies.clear()
            self.proxies.update(current)

    def _start_prepare(self) -> None:
        self.prep = "running"
        if self.timer is not None:  # type: ignore[has-type]
            self.timer.cancel()
            self.timer = None
        w = self.w  # type: ignore[attr-defined]
        names = [n for n in self.members if n in self.packets and n not in self.window_stale  # type: ignore[attr-defined]
                 and n in self.roster]  # type: ignore[attr-defined]
        signals = self._signals(names)  # type: ignore[attr-defined]
        self.sync_proxies()
        self.prepare_epoch += 1
        asyncio.ensure_future(self._prepare(w, signals))

    async def _prepare(self, w: Any, signals: dict[str, np.ndarray]) -> None:
        t0 = time.perf_counter()
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.element.prepare, w, signals)  # type: ignore[attr-defined]
        except px.ElementUnavailable as exc:
            log.warning("window %d: prepare: %s — the window goes on with the plan as it stands", w.seq, exc)
        except Exception as exc:  # the strategy failed (contradictory settings, solver): fail loudly, as in-process
            self.failed = f"{type(exc).__name__}: {exc}"
            log.exception("window %d: prepare failed", w.seq)
            self.publish(m.RUN_FAILED, m.RunFailed(seq=w.seq, error=self.failed))  # type: ignore[attr-defined]
            return
        self.prepare_s.append(time.perf_counter() - t0)
        made = getattr(getattr(self.element, "strategy", None), "made", None) or ()  # type: ignore[attr-defined]
        for e in made[self.plans_published:]:  # the plans made: events for the results and the recorder
            self.publish(m.EVENT, m.ControlEvent.plan_made(self.name, e))  # type: ignore[attr-defined]
        self.plans_published = len(made)
        if self.w is not w or self.started:  # type: ignore[attr-defined]
            return  # a newer tick took over
        self.publish(m.SIGNALS, m.Signals(seq=w.seq, element=self.name, n=w.n,  # type: ignore[attr-defined]
                                          arrays={PLAN_READY: np.ones(w.n)}))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("window %d: prepared in %.1f ms", w.seq, self.prepare_s[-1] * 1e3)
        self.prep = "done"
        self.timer = self.loop.call_later(self.timeout_s, self.on_timeout, w.seq)  # type: ignore[attr-defined]
        self.advance()  # type: ignore[attr-defined]

    def log_prepare_summary(self) -> None:
        s = np.asarray(self.prepare_s) if self.prepare_s else np.zeros(1)
        logging.getLogger("hometwin.balancer").info(
            "prepare stage: %d windows, %.1f ms mean, %.1f ms median, %.1f ms max, %.2f s in all; proxy RPCs: %s",
            len(self.prepare_s), s.mean() * 1e3, np.median(s) * 1e3, s.max() * 1e3, s.sum(),
            ", ".join(f"{op} {n}" for op, n in self.rpc_counts.most_common()) or "none")
