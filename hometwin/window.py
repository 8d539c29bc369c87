"""One window of the tick protocol, without I/O (sans-IO).

The window is a generator: it yields what it needs next (an *ask*), the runtime that drives
it answers by ``send``, and it returns the settled :class:`WindowRecord`.  It never reads a
socket, calls an element or waits: the in-process engine answers every ask from the element
models at once (:func:`run_local`, the asks' ``local`` methods), the WAMP inverter from the
packets it receives and its dispatch RPC.  So the order of a window, the signal merge, who
takes part, the battery's dispatch, the ledger and the state of charge exist once.

One window (``w``: steps ``i0 … i0 + n − 1``)::

    window_steps(w, members, inverter)          driver answers with
      │
      ├─ AskSignals(sun)      ─────────────────▶ the sun's arrays          (in dependency order,
      ├─ AskSignals(weather, {sun's}) ─────────▶ the weather's arrays       merged into one dict;
      ├─ AskSignals(grid, {…})  ───────────────▶ the grid's arrays          None: none came)
      ├─ AskPrepare(signals)    ───────────────▶ None  (only with a strategy: replan, plans out)
      ├─ AskRequests(pv, loads…, signals) ─────▶ {name: joules per step}    (absent: none came)
      ├─ AskStorage(battery)    ───────────────▶ the battery's params()     (None: none came)
      │    Inverter.balance_steps(requests, roles, stateful, signals, params)
      ├─ AskDispatch(battery, args) ───────────▶ the DispatchResult          (None: unavailable,
      │    … the balance goes on, cut at k (the first step a stateful         the window is
      │      load was short)                                                  balanced without it)
      │    ledger.check (every step closes), SoC = stored / capacity
      ├─ Commit(record)         ───────────────▶ None  (every participant settles through k)
      │    inverter.remember(flows), inverter.committed(w, k)
      └─ return WindowRecord(k, served, flows, soc, participants, stale, …)

The next window starts at ``i0 + k + 1``; its length is :func:`window_len`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator, Mapping, Sequence, Union

import numpy as np

from hometwin import ledger
from hometwin.element import Role, Window
from hometwin.topology import Member, roster_signal_order


def window_len(i: int, n_steps: int, window: int, stop: int | None = None, replan_steps: int = 0) -> int:
    """Steps of the window that starts at step ``i``: ``window`` steps, cut at the run's end
    (``n_steps``), at ``stop`` (an action's or ``run_until``'s step, when after ``i``) and where
    the strategy replans (every ``replan_steps`` steps from the start; 0: no strategy); at least 1."""
    n = min(window, n_steps - i)
    if stop is not None and stop > i:
        n = min(n, stop - i)
    if replan_steps:
        n = min(n, replan_steps - (i % replan_steps))
    return max(n, 1)


def has_prepare(inverter: Any) -> bool:
    """The window has a prepare stage: the inverter has a strategy (it replans and sends plans
    to the elements between the environment's signals and the loads' requests)."""
    return getattr(inverter, "strategy", None) is not None and callable(getattr(inverter, "prepare", None))


# -- what a window asks for ----------------------------------------------------------------------
# Each ask answers itself from element models in one process (``local``); a remote driver answers
# the same ask from the packets and RPCs of the element's service.

@dataclass
class AskSignals:
    """The signals of ``name`` for the window; ``signals``: those of the elements before it (its
    inputs among them).  Answer: a mapping signal → array of n steps, or None (none came)."""

    name: str
    signals: dict[str, np.ndarray]

    def local(self, elements: Mapping[str, Any], w: Window) -> Any:
        return elements[self.name].signals(w, self.signals)


@dataclass
class AskPrepare:
    """The strategy's stage (``Inverter.prepare``): replan when due, send the plans.  Answer: None."""

    name: str  # the inverter
    signals: dict[str, np.ndarray]

    def local(self, elements: Mapping[str, Any], w: Window) -> Any:
        elements[self.name].prepare(w, self.signals)
        return None


@dataclass
class AskRequests:
    """The energy requests of the sources and loads ``names`` (joules per step, + offered,
    − asked).  Answer: a mapping name → array; a name left out is settled without (none came)."""

    names: list[str]
    signals: dict[str, np.ndarray]

    def local(self, elements: Mapping[str, Any], w: Window) -> Any:
        return {n: np.asarray(elements[n].request(w, self.signals), dtype=float) for n in self.names}


@dataclass
class AskStorage:
    """The battery's status at the window's start (its ``params()``: capacity, stored energy,
    limits).  Answer: that mapping, or None (none came: the window is balanced without it)."""

    name: str

    def local(self, elements: Mapping[str, Any], w: Window) -> Any:
        return elements[self.name].params()


@dataclass
class AskDispatch:
    """The battery's tentative dispatch: ``args`` as ``BatteryPort.dispatch`` takes them
    (dt_s, charge_j, discharge_j, grid_charge_j, soc_floor, grid_target_soc).  Answer: its
    result (``charge_j``, ``grid_charge_j``, ``discharge_j``, ``stored_j`` …), or None when the
    battery cannot answer (the window is then balanced without it)."""

    name: str
    args: tuple[Any, ...]

    def local(self, elements: Mapping[str, Any], w: Window) -> Any:
        return elements[self.name].dispatch(*self.args)


@dataclass
class Commit:
    """Every participant but the inverter settles through step ``record.k`` with what it was
    served (:meth:`WindowRecord.served_to`).  Answer: None."""

    record: "WindowRecord"

    def local(self, elements: Mapping[str, Any], w: Window) -> Any:
        rec = self.record
        for name in rec.participants:
            if rec.roles[name] != Role.converter:
                elements[name].commit(w, rec.k, rec.served_to(name))
        return None


Ask = Union[AskSignals, AskPrepare, AskRequests, AskStorage, AskDispatch, Commit]


@dataclass
class WindowRecord:
    """One settled window (arrays have ``k + 1`` steps)."""

    window: Window
    k: int
    served: dict[str, np.ndarray]
    flows: dict[str, np.ndarray]
    soc: np.ndarray | None
    shortfall: dict[str, np.ndarray]
    participants: list[str] = field(default_factory=list)  # who took part, in roster order
    roles: dict[str, Role] = field(default_factory=dict)  # … and their roles
    stale: list[str] = field(default_factory=list)  # members settled without (no packet, no dispatch)
    requests: dict[str, np.ndarray] = field(default_factory=dict)  # what the sources and loads asked
    battery_result: Any = None  # the dispatch answer used (None: no battery took part)
    residual_j: float = 0.0  # the ledger's largest residual in this window
    dispatch_failed: bool = False  # the battery did not answer its dispatch: balanced without it

    @property
    def i0(self) -> int:
        """The window's first step (as ``Flows.i0``: a record and its wire form read alike)."""
        return self.window.i0

    @property
    def n(self) -> int:
        """The steps asked for (``k + 1`` of them settled)."""
        return self.window.n

    @property
    def max_residual_j(self) -> float:
        """The ledger's largest residual (``Flows.max_residual_j``: there, of the run so far; the
        recorder keeps the largest of either)."""
        return self.residual_j

    def served_to(self, name: str) -> np.ndarray:
        """What ``name`` was served through step k (zeros for a participant that is not on the
        bus, such as the sun)."""
        got = self.served.get(name)
        return np.zeros(self.k + 1) if got is None else got


def window_steps(w: Window, members: Sequence[Member], inverter: Any, *, prepare: bool = False,
                 check_ledger: bool = True, last_soc: float | None = None) -> Generator[Ask, Any, WindowRecord]:
    """Run window ``w`` of the roster ``members`` (roster order: roles and sums follow it), with
    ``inverter`` the model that balances it (``balance_steps``, ``remember``).  ``prepare``: the
    strategy's stage runs (:func:`has_prepare`).  ``last_soc``: the SoC to record for a window
    settled without the battery (it was not dispatched: its charge holds); None records none.
    Yields the asks above, returns the record; a ledger that does not close raises
    :class:`~hometwin.ledger.LedgerError` before anything is committed."""
    stale: list[str] = []
    signals: dict[str, np.ndarray] = {}
    for mb in roster_signal_order(tuple(members)):
        arrays = yield AskSignals(mb.name, signals)
        if arrays is None:
            stale.append(mb.name)
        else:
            signals.update(arrays)
    if prepare:
        yield AskPrepare(inverter.name, signals)
    wanted = [mb.name for mb in members if mb.role in (Role.source, Role.load)]
    requests: dict[str, np.ndarray] = {}
    if wanted:
        got = yield AskRequests(wanted, signals)
        for name in wanted:
            joules = got.get(name)
            if joules is None:
                stale.append(name)
            else:
                requests[name] = joules
    storage = next((mb.name for mb in members if mb.role == Role.storage), None)
    params = None
    if storage is not None:
        params = yield AskStorage(storage)
        if params is None:
            stale.append(storage)
            storage = None
    left_out = set(stale)
    roles = {mb.name: mb.role for mb in members if mb.name not in left_out}
    stateful = {mb.name: mb.stateful for mb in members if mb.name not in left_out}

    dispatch_failed = False
    steps = inverter.balance_steps(w, requests, roles, stateful, signals, params)
    try:
        ask = next(steps)
        while True:
            result = yield AskDispatch(storage, ask)  # type: ignore[arg-type]
            if result is None:  # the battery cannot answer: the window without it
                steps.close()
                dispatch_failed = True
                stale.append(storage)  # type: ignore[arg-type]
                roles.pop(storage)  # type: ignore[arg-type]
                stateful.pop(storage)  # type: ignore[arg-type]
                storage, params = None, None
                steps = inverter.balance_steps(w, requests, roles, stateful, signals, None)
                next(steps)  # no battery: it yields nothing, StopIteration carries the settlement
            ask = steps.send(result)
    except StopIteration as done:
        st = done.value

    k = st.k
    residual = ledger.check(lambda: w.times[: k + 1], st.served, roles, st.flows) if check_ledger else 0.0
    if params is not None and st.battery_result is not None:
        soc = st.battery_result.stored_j[: k + 1] / params["capacity_j"]
    elif last_soc is not None:  # settled without the battery: not dispatched, its charge holds
        soc = np.full(k + 1, last_soc)
    else:
        soc = None
    record = WindowRecord(window=w, k=k, served=st.served, flows=st.flows, soc=soc, shortfall=st.shortfall,
                          participants=list(roles), roles=roles, stale=stale, requests=requests,
                          battery_result=st.battery_result, residual_j=residual, dispatch_failed=dispatch_failed)
    yield Commit(record)
    inverter.remember(w, st.flows)
    inverter.committed(w, k)
    return record


def run_local(w: Window, elements: Mapping[str, Any], inverter: Any, members: Sequence[Member] | None = None,
              **options: Any) -> WindowRecord:
    """Drive :func:`window_steps` in one process: every ask answered by the element models
    (``elements``: name → model, roster order).  ``options`` as :func:`window_steps` takes them."""
    if members is None:
        members = [Member.of(el) for el in elements.values()]
    steps = window_steps(w, members, inverter, **options)
    answer = None
    try:
        while True:
            answer = steps.send(answer).local(elements, w)
    except StopIteration as done:
        return done.value
