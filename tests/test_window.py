"""The sans-IO window (hometwin.window) driven directly with scripted packets: the order of its
asks, the signal merge, a short window (settled at the first step a stateful load is short), the
battery's dispatch as a yielded ask, a battery that does not answer, and elements settled without.
Every figure is checked against sums and physics computed here, not by the window."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pvlib
import pytest
from hypothesis import given, settings, strategies as st

from conftest import make_ctx, window
from hometwin.element import Role
from hometwin.services.battery.model import Battery
from hometwin.services.inverter.model import Inverter
from hometwin.window import (AskDispatch, AskPrepare, AskRequests, AskSignals, AskStorage, Commit, Member,
                             WindowRecord, window_len, window_steps)

DT = 60
GRID_OUT = ("grid_available", "price_import", "price_export", "import_limit_w", "export_limit_w")
ROSTER = [
    Member("weather", Role.environment, inputs=("zenith",), outputs=("ghi",)),  # listed before the sun it reads
    Member("sun", Role.environment, outputs=("zenith",)),
    Member("grid", Role.grid, outputs=GRID_OUT),
    Member("inv", Role.converter),
    Member("pv", Role.source),
    Member("tv", Role.load),
    Member("geyser", Role.load, stateful=True),
    Member("bat", Role.storage),
]


def grid_signals(available: np.ndarray, price: float = 2.0) -> dict[str, np.ndarray]:
    n = len(available)
    return {"grid_available": available.astype(float), "price_import": np.full(n, price),
            "price_export": np.full(n, 0.5), "import_limit_w": np.full(n, np.inf), "export_limit_w": np.full(n, np.inf)}


def drive(steps: Any, answer: Callable[[Any], Any]) -> tuple[list[Any], WindowRecord]:
    """Send ``answer(ask)`` for every ask; the asks in order and the record."""
    asks: list[Any] = []
    reply = None
    try:
        while True:
            ask = steps.send(reply)
            asks.append(ask)
            reply = answer(ask)
    except StopIteration as done:
        return asks, done.value


def scripted(signals: dict[str, dict[str, np.ndarray] | None], requests: dict[str, np.ndarray],
             battery: Battery | None, on_dispatch: Callable[[tuple], Any] | None = None) -> Callable[[Any], Any]:
    """Answers from fixed packets (a missing one: None / left out); the battery's ask from a real
    battery model (its ``params``, its ``dispatch``)."""
    def answer(ask: Any) -> Any:
        if isinstance(ask, AskSignals):
            return signals.get(ask.name)
        if isinstance(ask, AskRequests):
            return {n: requests[n] for n in ask.names if n in requests}
        if isinstance(ask, AskStorage):
            return battery.params() if battery is not None else None
        if isinstance(ask, AskDispatch):
            return on_dispatch(ask.args) if on_dispatch is not None else battery.dispatch(*ask.args)  # type: ignore[union-attr]
        return None
    return answer


def closes(rec: WindowRecord) -> np.ndarray:
    """Per step: what came onto the bus minus what left it (0 when energy is conserved), summed
    here from what each element was served and the battery's and the inverter's flows."""
    f = rec.flows
    onto = f["battery_discharge_j"] + f["grid_import_j"]
    off = f["battery_charge_j"] + f["grid_export_j"] + f["loss_j"]
    for name, role in rec.roles.items():
        if role == Role.source:
            onto = onto + rec.served[name]
        elif role == Role.load:
            off = off - rec.served[name]
    return onto - off


def test_signals_are_asked_in_dependency_order_and_merged() -> None:
    """The sun before the weather that reads it (whatever the roster order; those ready at once
    in roster order), each given the signals so far; the requests of sources and loads in roster order; no prepare stage
    without one; the battery's status before its dispatch; the commit last."""
    ctx = make_ctx(n_steps=60, step_s=DT)
    n = 3
    w = window(ctx, 0, n)
    inv = Inverter("inv", {}, ctx)
    bat = Battery("bat", {}, ctx)
    seen: dict[str, set[str]] = {}
    packets = {"sun": {"zenith": np.full(n, 40.0)}, "weather": {"ghi": np.full(n, 500.0)},
               "grid": grid_signals(np.ones(n))}

    def answer(ask: Any) -> Any:
        if isinstance(ask, AskSignals):
            seen[ask.name] = set(ask.signals)
        return scripted(packets, {"pv": np.full(n, 6e4), "tv": np.full(n, -6e3), "geyser": np.full(n, -1.2e5)},
                        bat)(ask)

    asks, rec = drive(window_steps(w, ROSTER, inv), answer)
    kinds = [(type(a).__name__, getattr(a, "name", None)) for a in asks]
    assert kinds == [("AskSignals", "sun"), ("AskSignals", "grid"), ("AskSignals", "weather"),
                     ("AskRequests", None), ("AskStorage", "bat"), ("AskDispatch", "bat"), ("Commit", None)]
    assert seen == {"sun": set(), "grid": {"zenith"}, "weather": {"zenith", *GRID_OUT}}
    assert asks[3].names == ["pv", "tv", "geyser"]
    assert rec.participants == [m.name for m in ROSTER] and rec.stale == []
    # with a prepare stage it comes after every signal and before the requests, given them all
    asks, _ = drive(window_steps(w, ROSTER, inv, prepare=True), scripted(packets, {"pv": np.zeros(n), "tv": np.zeros(n),
                                                                                   "geyser": np.zeros(n)}, bat))
    prep = [a for a in asks if isinstance(a, AskPrepare)]
    assert len(prep) == 1 and asks.index(prep[0]) == 3 and set(prep[0].signals) == {"zenith", "ghi", *GRID_OUT}


def test_a_battery_dispatch_charges_the_surplus_and_the_ledger_closes() -> None:
    """4 kW of PV, 1 kW of load, the grid up: the window asks the battery to charge the AC surplus
    (PVWatts' curve, computed here with pvlib) at its converter's efficiency; the battery's
    answer is what the flows and the SoC record, every step closes, and the battery committed
    through the last step holds the stored energy the window recorded."""
    ctx = make_ctx(n_steps=60, step_s=DT)
    n = 10
    w = window(ctx, 0, n)
    inv = Inverter("inv", {"ac_power_kw": 5.0}, ctx)
    bat = Battery("bat", {"soc_initial": 0.3, "self_discharge_pct_per_month": 0}, ctx)
    pv = np.full(n, 4000.0 * DT)
    tv = np.full(n, -1000.0 * DT)
    geyser = np.zeros(n)
    packets = {"sun": {"zenith": np.zeros(n)}, "weather": {"ghi": np.zeros(n)}, "grid": grid_signals(np.ones(n))}
    asks, rec = drive(window_steps(w, ROSTER, inv), scripted(packets, {"pv": pv, "tv": tv, "geyser": geyser}, bat))

    eta = inv.config.battery_efficiency
    pdc0 = 5000.0 / inv.config.pv_efficiency
    pv_ac = np.clip(pvlib.inverter.pvwatts(pv / DT, pdc0, eta_inv_nom=inv.config.pv_efficiency), 0, None) * DT
    surplus = pv_ac - 1000.0 * DT
    dispatch = next(a for a in asks if isinstance(a, AskDispatch))
    assert dispatch.args[0] == DT
    np.testing.assert_allclose(dispatch.args[1], surplus * eta, rtol=1e-12)  # DC offered for charging
    assert not dispatch.args[2].any()  # nothing wanted from it

    assert rec.k == n - 1 and not rec.dispatch_failed
    res = rec.battery_result
    c_eta = bat.config.charge_efficiency
    stored0 = 0.3 * 10.0 * 3.6e6
    # the battery's own physics: each step stores what it charged, times its efficiency
    np.testing.assert_allclose(np.diff(np.concatenate([[stored0], res.stored_j])), res.charge_j * c_eta, rtol=1e-12)
    np.testing.assert_allclose(rec.flows["battery_charge_j"], res.charge_j + res.grid_charge_j, rtol=0)
    np.testing.assert_allclose(rec.soc, res.stored_j / (10.0 * 3.6e6), rtol=1e-15)
    np.testing.assert_allclose(rec.served["bat"], -rec.flows["battery_charge_j"], rtol=0)
    assert np.all(rec.flows["grid_import_j"] == 0)  # PV covers the load and the charge
    np.testing.assert_allclose(closes(rec), 0.0, atol=1e-6)
    assert rec.residual_j < 1e-6
    np.testing.assert_array_equal(rec.served["tv"], tv)  # served in full
    # the commit: the driver settles the battery through k with what it was served
    assert isinstance(asks[-1], Commit) and asks[-1].record is rec
    bat.settle(w, rec.k, rec.served_to("bat"))
    assert bat.state["stored_j"] == pytest.approx(stored0 + float(np.sum(res.charge_j)) * c_eta, rel=1e-12)
    assert rec.served_to("sun").tolist() == [0.0] * n  # not on the bus: settles with zeros


def test_a_short_window_settles_at_the_first_step_a_stateful_load_is_short() -> None:
    """The grid fails at step 4, no PV, the battery at its minimum: the geyser (stateful) is short
    at step 4, so the window settles through k = 4, found here from the outage and the geyser's
    request alone; before it, grid import serves both loads in full; a load that is not stateful
    does not cut the window."""
    ctx = make_ctx(n_steps=60, step_s=DT)
    n = 12
    w = window(ctx, 0, n)
    inv = Inverter("inv", {}, ctx)
    available = np.ones(n)
    available[4:] = 0.0
    tv = np.full(n, -200.0 * DT)
    geyser = np.full(n, -3000.0 * DT)
    geyser[:2] = 0.0  # off at first
    packets = {"sun": {"zenith": np.zeros(n)}, "weather": {"ghi": np.zeros(n)}, "grid": grid_signals(available)}
    expected_k = int(np.flatnonzero((available == 0) & (geyser < 0))[0])

    bat = Battery("bat", {"soc_initial": 0.1, "soc_min": 0.1, "self_discharge_pct_per_month": 0}, ctx)
    _, rec = drive(window_steps(w, ROSTER, inv), scripted(packets, {"pv": np.zeros(n), "tv": tv, "geyser": geyser}, bat))
    assert rec.k == expected_k == 4
    assert all(len(a) == rec.k + 1 for a in [*rec.served.values(), *rec.flows.values(), rec.soc])
    np.testing.assert_array_equal(rec.served["geyser"][:4], geyser[:4])
    np.testing.assert_array_equal(rec.served["tv"][:4], tv[:4])
    assert rec.served["geyser"][4] == 0.0 and rec.shortfall["geyser"][4] == geyser[4]
    np.testing.assert_allclose(rec.flows["grid_import_j"][:4], -(tv[:4] + geyser[:4]), rtol=1e-12)
    assert rec.flows["unserved_j"][4] == pytest.approx(-(tv[4] + geyser[4]))
    np.testing.assert_allclose(closes(rec), 0.0, atol=1e-6)
    cost = float(np.sum(rec.flows["grid_import_j"] * 2.0) / 3.6e6)  # the tariff of the packets
    assert float(np.sum(rec.flows["cost"])) == pytest.approx(cost, rel=1e-12)

    # the geyser not stateful: the same shortfall, but the window runs to its end
    roster = [m._replace(stateful=False) if m.name == "geyser" else m for m in ROSTER]
    _, rec = drive(window_steps(w, roster, inv), scripted(packets, {"pv": np.zeros(n), "tv": tv, "geyser": geyser}, bat))
    assert rec.k == n - 1
    assert rec.flows["unserved_j"][4:].tolist() == pytest.approx((-(tv + geyser))[4:].tolist())


def test_a_battery_that_does_not_answer_and_silent_elements_are_settled_without() -> None:
    """No answer to the dispatch (an RPC that timed out): the window is balanced without the
    battery, which is counted stale and takes no part; its last SoC holds in the record.  An
    environment element and a load with no packet are settled without as well."""
    ctx = make_ctx(n_steps=60, step_s=DT)
    n = 5
    w = window(ctx, 0, n)
    inv = Inverter("inv", {}, ctx)
    bat = Battery("bat", {"soc_initial": 0.8}, ctx)
    tv = np.full(n, -500.0 * DT)
    packets = {"sun": {"zenith": np.zeros(n)}, "weather": None, "grid": grid_signals(np.ones(n))}
    asked: list[tuple] = []

    def fail(args: tuple) -> None:
        asked.append(args)
        return None

    asks, rec = drive(window_steps(w, ROSTER, inv, last_soc=0.8),
                      scripted(packets, {"pv": np.zeros(n), "tv": tv}, bat, on_dispatch=fail))
    assert len(asked) == 1  # asked once, then balanced without it
    assert rec.dispatch_failed and rec.stale == ["weather", "geyser", "bat"]  # in the order found
    assert rec.participants == ["sun", "grid", "inv", "pv", "tv"]
    assert "bat" not in rec.served and "geyser" not in rec.served
    assert rec.soc.tolist() == [0.8] * n
    np.testing.assert_allclose(rec.flows["grid_import_j"], -tv, rtol=1e-12)
    assert not rec.flows["battery_discharge_j"].any() and not rec.flows["battery_charge_j"].any()
    np.testing.assert_allclose(closes(rec), 0.0, atol=1e-6)


def _reference_len(i: int, n_steps: int, window: int, stop: int | None, replan: int) -> int:
    """Count steps from ``i`` until a boundary: the run's end, ``stop``, a replan, ``window`` steps."""
    n = 0
    j = i
    while True:
        n += 1
        j += 1
        if n >= window or j >= n_steps or j == stop or (replan and j % replan == 0):
            return n


@settings(max_examples=300, deadline=None)
@given(n_steps=st.integers(1, 3000), data=st.data())
def test_window_len_ends_at_the_first_boundary(n_steps: int, data: Any) -> None:
    i = data.draw(st.integers(0, n_steps - 1))
    window = data.draw(st.integers(1, 2000))
    stop = data.draw(st.none() | st.integers(0, n_steps + 5))
    replan = data.draw(st.sampled_from([0, 1, 15, 60, 1440]))
    assert window_len(i, n_steps, window, stop=stop, replan_steps=replan) == _reference_len(i, n_steps, window, stop, replan)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), data=st.data())
@pytest.mark.filterwarnings("ignore:.*encountered in divide:RuntimeWarning")  # PVWatts' curve at 0 W (no PV)
def test_any_window_conserves_energy_and_settles_at_the_first_short_step(n: int, data: Any) -> None:
    """Random PV, loads, outages and battery charge: every step closes (summed here), no load gets
    more than it asked nor a source takes more than it offered, and the window is cut exactly at
    the first step where the stateful geyser got less than it asked (else it runs to its end)."""
    ctx = make_ctx(n_steps=60, step_s=DT)
    w = window(ctx, 0, n)
    watts = st.floats(0, 8000, allow_nan=False)
    pv = np.array(data.draw(st.lists(watts, min_size=n, max_size=n))) * DT
    tv = -np.array(data.draw(st.lists(watts, min_size=n, max_size=n))) * DT
    geyser = -np.array(data.draw(st.lists(st.sampled_from([0.0, 3000.0]), min_size=n, max_size=n))) * DT
    available = np.array(data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n)))
    inv = Inverter("inv", {"ac_power_kw": 5.0}, ctx)
    bat = Battery("bat", {"soc_initial": data.draw(st.floats(0.1, 1.0))}, ctx)
    packets = {"sun": {"zenith": np.zeros(n)}, "weather": {"ghi": np.zeros(n)}, "grid": grid_signals(available)}
    _, rec = drive(window_steps(w, ROSTER, inv), scripted(packets, {"pv": pv, "tv": tv, "geyser": geyser}, bat))

    k = rec.k
    np.testing.assert_allclose(closes(rec), 0.0, atol=1e-6)
    for name, asked in (("tv", tv), ("geyser", geyser)):
        got = rec.served[name]
        assert np.all(got <= 0) and np.all(got >= asked[: k + 1] * (1 + 1e-12))
    assert np.all(rec.served["pv"] >= 0) and np.all(rec.served["pv"] <= pv[: k + 1] * (1 + 1e-12))
    short = (np.abs(rec.served["geyser"] - geyser[: k + 1]) > 1e-9 * np.maximum(-geyser[: k + 1], 1.0))
    assert not short[:k].any()  # served in full before k
    assert k == n - 1 or short[k]  # cut only where it was short
