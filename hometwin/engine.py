"""In-process runner: every element model in one process, windows in dependency order.

This is the reference implementation of DESIGN.md's tick protocol.  The WAMP
runtime does exactly the same per window, only with messages between
processes; nothing here relies on shared memory a distributed runtime could
not have (elements exchange only signals, requests, the battery dispatch and
the settlement).

    window:  signals (sun → weather → grid) → requests → inverter.balance
             (battery dispatch) → ledger check → settle every element at k
             → record → next window starts at k + 1
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from hometwin import ledger
from hometwin.element import Element, HomeContext, Role, Window
from hometwin.registry import element_class
from hometwin.spec import SpecError, home_context

ProgressFn = Callable[[int, int], None]


def build_element(spec_el: Any, ctx: HomeContext) -> Element:
    """A model instance from one ``spec.elements[i]`` entry."""
    return element_class(spec_el.kind)(spec_el.name, spec_el.config, ctx)


def signal_order(elements: Iterable[Element]) -> list[Element]:
    """Elements that publish signals, each after the ones whose signals it needs."""
    pending = [e for e in elements if e.outputs]
    done: list[Element] = []
    have: set[str] = set()
    while pending:
        pending_outputs = {s for p in pending for s in p.outputs}
        ready = [e for e in pending if set(e.inputs) <= have or not set(e.inputs) & pending_outputs]
        if not ready:  # a cycle: keep spec order
            ready = pending[:1]
        for e in ready:
            pending.remove(e)
            done.append(e)
            have |= set(e.outputs)
    return done


@dataclass
class WindowRecord:
    """One settled window (arrays have ``k + 1`` steps)."""

    window: Window
    k: int
    served: dict[str, np.ndarray]
    flows: dict[str, np.ndarray]
    soc: np.ndarray | None
    shortfall: dict[str, np.ndarray]


class Engine:
    """Runs a Home in-process.  ``window`` = steps per window (default: one day)."""

    def __init__(self, home: Any, window: int | None = None, until_s: int | None = None,
                 check_ledger: bool = True):
        self.home = home
        self.ctx = home_context(home, until_s)
        clock = home.spec.clock
        self.window = int(window or clock.window or max(1, 86400 // clock.step_s))
        if self.window < 1:
            raise SpecError([f"window: must be >= 1 (got {self.window})"])
        self.check_ledger = check_ledger
        self.elements: dict[str, Element] = {}
        for el in home.spec.elements:
            if el.enabled:
                self.elements[el.name] = build_element(el, self.ctx)
        self.i = 0  # next step to run
        self.seq = 0
        self._actions: dict[int, list[Callable[["Engine"], None]]] = {}
        self.max_residual_j = 0.0
        self.recorder: Any = None
        self.on_window: list[Callable[[WindowRecord], None]] = []
        inv = next((e for e in self.elements.values() if e.role == Role.converter), None)
        bind = getattr(inv, "bind_roster", None)  # the strategy's view of the other elements
        if bind is not None:
            bind(self.elements)

    # -- roster ----------------------------------------------------------------------------------
    @property
    def inverter(self) -> Any:
        return next(e for e in self.elements.values() if e.role == Role.converter)

    @property
    def battery(self) -> Any:
        return next((e for e in self.elements.values() if e.role == Role.storage), None)

    def add(self, element: Element) -> None:
        """An element joins; it contributes from the next window."""
        if element.name in self.elements:
            raise ValueError(f"element {element.name!r} is already on the roster")
        self.elements[element.name] = element

    def remove(self, name: str) -> Element:
        """An element leaves (switched off); from the next window it no longer contributes."""
        if self.elements[name].role == Role.converter:  # checked before it leaves: the run goes on
            raise ValueError("the inverter cannot leave: it balances the home")
        return self.elements.pop(name)

    def set(self, name: str, **props: Any) -> dict[str, Any]:
        """Validated property change; takes effect at the next window boundary."""
        return self.elements[name].set(**props)

    def at(self, step: int, action: Callable[["Engine"], None]) -> None:
        """Run ``action(engine)`` at the boundary before ``step`` (windows are cut there)."""
        self._actions.setdefault(int(step), []).append(action)

    # -- windows ---------------------------------------------------------------------------------
    def _window_len(self) -> int:
        n = min(self.window, self.ctx.n_steps - self.i)
        later = [s for s in self._actions if s > self.i]
        if later:
            n = min(n, min(later) - self.i)
        strategy = getattr(self.inverter, "strategy", None)
        if strategy is not None and getattr(strategy, "replan_steps", None):
            every = int(strategy.replan_steps)
            n = min(n, every - (self.i % every))
        return max(n, 1)

    def step_window(self) -> WindowRecord:
        """Run one window and commit it through its settle step."""
        for action in self._actions.pop(self.i, []):
            action(self)
        n = self._window_len()
        w = Window(seq=self.seq, i0=self.i, n=n, dt_s=self.ctx.step_s, home=self.ctx)
        elements = list(self.elements.values())
        signals: dict[str, np.ndarray] = {}
        for el in signal_order(elements):
            signals.update(el.signals(w, signals))
        prepare = getattr(self.inverter, "prepare", None)  # strategy: replan, impose set-points
        if prepare is not None:
            prepare(w, signals)
        requests: dict[str, np.ndarray] = {}
        roles: dict[str, Role] = {}
        stateful: dict[str, bool] = {}
        for el in elements:
            roles[el.name] = el.role
            stateful[el.name] = el.settle_on_shortfall
            if el.role in (Role.source, Role.load):
                requests[el.name] = np.asarray(el.request(w, signals), dtype=float)
        inverter = self.inverter
        st = inverter.balance(w, requests, roles, stateful, signals, self.battery)
        k = st.k
        if self.check_ledger:
            res = ledger.check(lambda: w.times[: k + 1], st.served, roles, st.flows)
            self.max_residual_j = max(self.max_residual_j, res)
        for el in elements:
            if el.role != Role.converter:
                el.settle(w, k, st.served.get(el.name, np.zeros(k + 1)))
        inverter.remember(w, st.flows)
        batt = self.battery
        soc = st.battery_result.stored_j[: k + 1] / batt.capacity_j if batt is not None and st.battery_result is not None else None
        record = WindowRecord(window=w, k=k, served=st.served, flows=st.flows, soc=soc, shortfall=st.shortfall)
        for hook in self.on_window:
            hook(record)
        self.i += k + 1
        self.seq += 1
        return record

    def run(self, progress: ProgressFn | None = None, stop: Callable[[], bool] | None = None) -> "Any":
        """Run to the end, or until ``stop()`` says so between windows (Ctrl-C); returns a
        :class:`hometwin.results.Result` (of every step: those after ``self.i`` are not settled).
        The recorder stays at ``self.recorder`` (the steps settled so far, if a window raises)."""
        from hometwin.results import Recorder

        self.recorder = recorder = Recorder(self)
        self.on_window.append(recorder.add)
        t0 = time.perf_counter()
        while self.i < self.ctx.n_steps and not (stop is not None and stop()):
            self.step_window()
            if progress is not None:
                progress(self.i, self.ctx.n_steps)
        return recorder.result(wall_s=time.perf_counter() - t0)

    # -- snapshots -------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {"i": self.i, "seq": self.seq, "elements": {n: e.snapshot() for n, e in self.elements.items()}}

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.i, self.seq = int(snap["i"]), int(snap["seq"])
        for name, el_snap in snap["elements"].items():
            self.elements[name].restore(el_snap)


def run(home: Any, window: int | None = None, until_s: int | None = None,
        progress: ProgressFn | None = None) -> Any:
    """Run a validated Home (or a path to a home.yaml) in-process; returns a Result."""
    from hometwin.spec import load_home

    if isinstance(home, (str, bytes)) or hasattr(home, "__fspath__"):
        home = load_home(home)
    return Engine(home, window=window, until_s=until_s).run(progress)
