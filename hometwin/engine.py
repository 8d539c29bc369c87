"""In-process runner: every element model in one process, windows in dependency order.

This is the reference implementation of DESIGN.md's tick protocol.  The WAMP
runtime does exactly the same per window, only with messages between
processes; nothing here relies on shared memory a distributed runtime could
not have (elements exchange only signals, requests, the battery dispatch and
the settlement).

    window:  signals (sun → weather → grid) → requests → inverter.balance
             (battery dispatch) → ledger check → settle every element at k
             → record → next window starts at k + 1

The window itself is :func:`hometwin.window.window_steps` (sans-IO: it yields what it needs);
here every ask is answered by the element models at once (:func:`hometwin.window.run_local`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from hometwin.element import Element, HomeContext, Role, Window
from hometwin.registry import element_class
from hometwin.spec import SpecError, home_context
from hometwin.topology import Member
from hometwin.window import WindowRecord, has_prepare, run_local, window_len

__all__ = ["Engine", "WindowRecord", "build_element", "run"]

ProgressFn = Callable[[int, int], None]


def build_element(spec_el: Any, ctx: HomeContext) -> Element:
    """A model instance from one ``spec.elements[i]`` entry."""
    return element_class(spec_el.kind)(spec_el.name, spec_el.config, ctx)


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
        self.recorder: Any = None
        self.on_window: list[Callable[[WindowRecord], None]] = []
        self._members: tuple[tuple[Element, ...], list[Member]] = ((), [])  # (the roster's elements, its members)
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
        later = [s for s in self._actions if s > self.i]
        strategy = getattr(self.inverter, "strategy", None)
        return window_len(self.i, self.ctx.n_steps, self.window, stop=min(later) if later else None,
                          replan_steps=int(getattr(strategy, "replan_steps", 0) or 0))

    def step_window(self) -> WindowRecord:
        """Run one window (:mod:`hometwin.window`, every ask answered by the models here) and
        commit it through its settle step."""
        for action in self._actions.pop(self.i, []):
            action(self)
        w = Window(seq=self.seq, i0=self.i, n=self._window_len(), dt_s=self.ctx.step_s, home=self.ctx)
        inverter = self.inverter
        key = tuple(self.elements.values())
        if key != self._members[0]:  # the roster changed (add, remove): its members again (by identity)
            self._members = (key, [Member.of(el) for el in self.elements.values()])
        members = self._members[1]
        record = run_local(w, self.elements, inverter, members, prepare=has_prepare(inverter),
                           check_ledger=self.check_ledger)
        for hook in self.on_window:
            hook(record)
        self.i += record.k + 1
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
