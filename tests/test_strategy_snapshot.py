"""Strategy state in snapshots: a restored engine continues exactly as the original did.

``Inverter.snapshot()`` carries its strategy's state (the current plan, the plan count,
the appliance decisions, the geyser planner's limits, the heating MPC's integral action);
``Engine.snapshot()`` holds it through the inverter.  Each test runs N windows, cuts the
run in the middle of a replanning interval (so the plan in force matters), snapshots, runs
M more windows; then restores the snapshot — into a fresh engine and, after a trip through
msgpack as the runtime's ``snapshot`` RPC sends it, into another — and runs the same M
windows again: every window's flows and every element's final state are identical.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

from hometwin.engine import Engine
from hometwin.runtime.wamp import plain
from hometwin.studies.compare import with_strategy
from hometwin.spec import load_home
from conftest import EXAMPLES


def _windows(eng: Engine, m: int) -> list[Any]:
    return [eng.step_window() for _ in range(m)]


def _same_windows(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert (ra.window.i0, ra.window.n, ra.k) == (rb.window.i0, rb.window.n, rb.k)
        for key in ra.flows:
            assert np.array_equal(ra.flows[key], rb.flows[key]), (ra.window.i0, key)
        assert ra.served.keys() == rb.served.keys()
        for key in ra.served:
            assert np.array_equal(ra.served[key], rb.served[key]), (ra.window.i0, key)


def _same_tree(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            _same_tree(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple, np.ndarray)):
        x, y = np.asarray(a), np.asarray(b)
        if x.dtype == object or y.dtype == object:
            assert len(a) == len(b), path
            for i, (u, v) in enumerate(zip(a, b)):
                _same_tree(u, v, f"{path}[{i}]")
        else:
            assert x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), path
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), path
    else:
        assert a == b, path


def _wire(snap: dict[str, Any]) -> dict[str, Any]:
    """The snapshot as the runtime's snapshot RPC carries it (plain lists, msgpack)."""
    return msgpack.unpackb(msgpack.packb(plain(snap)), strict_map_key=False)


def _continuation(home: Any, until_s: int, cut: int, m: int) -> dict[str, Any]:
    eng = Engine(home, until_s=until_s)
    eng.at(cut, lambda e: None)  # a window boundary at ``cut`` (inside a replanning interval)
    while eng.i < cut:
        eng.step_window()
    snap = eng.snapshot()
    first = _windows(eng, m)
    end = eng.snapshot()

    again = Engine(home, until_s=until_s)
    again.restore(snap)
    second = _windows(again, m)

    wired = Engine(home, until_s=until_s)
    wired.restore(_wire(snap))
    third = _windows(wired, m)

    eng.restore(snap)  # the same engine, back in time
    fourth = _windows(eng, m)
    for other in (second, third, fourth):
        _same_windows(first, other)
    for other in (again, wired, eng):
        _same_tree(end, other.snapshot())
    return {"snap": snap, "first": first, "engine": again}


def _without_strategy_state(home: Any, until_s: int, snap: dict[str, Any], m: int) -> list[Any]:
    bare = {**snap, "elements": dict(snap["elements"])}
    inv = next(k for k, v in bare["elements"].items() if v["kind"] == "inverter")
    bare["elements"][inv] = {k: v for k, v in bare["elements"][inv].items() if k != "strategy"}
    eng = Engine(home, until_s=until_s)
    eng.restore(bare)
    return _windows(eng, m)


def _differs(a: list[Any], b: list[Any]) -> bool:
    return any(not np.array_equal(ra.flows[k], rb.flows[k]) for ra, rb in zip(a, b) for k in ra.flows)


@pytest.mark.slow  # a long run: closed-loop optimisation over days, 38 s at load 6 (docs/testing.md)
def test_mpc_heat_pump_geyser_appliances_continue_exactly():
    """trondheim-spot: joint MPC of battery, heat pump (integral action), water heater and smart appliances."""
    home = load_home(EXAMPLES / "trondheim-spot.yaml")
    cut = 288 + 6  # day 1, 30 min into an hourly replanning interval (5-min steps)
    out = _continuation(home, 2 * 86400, cut, 14)
    strat = out["snap"]["elements"]["inverter"]["strategy"]
    assert strat["type"] == "mpc" and strat["plan"] is not None and strat["plans"] == -(-cut // 12)
    assert strat["plan"]["t0_s"] < int(out["engine"].ctx.epoch_s(cut, 1)[0])  # the plan in force began before the cut
    mpc = strat["mpcs"]["heat-pump"]
    assert mpc["pred"] is not None and mpc["q_bias_w"] != 0.0  # integral action has acted
    assert "water-heater" in strat["hot_water"]["t_min"]
    # without the strategy's state the same snapshot continues differently: the state is what makes it exact
    assert _differs(out["first"], _without_strategy_state(home, 2 * 86400, out["snap"], 14))


@pytest.mark.slow  # a long run: closed-loop optimisation over days, 20 s at load 6 (docs/testing.md)
def test_lp_with_geyser_plan_continues_exactly():
    """cape-town-lp with the geyser planned too (legionella MILP) instead of left to its thermostat."""
    home = with_strategy(load_home(EXAMPLES / "cape-town-lp.yaml"),
                         {"type": "lp", "geyser": {"legionella_method": "milp"}})
    cut = 1440 + 6 * 60 + 30  # day 2, 08:30 local: 30 min into an hourly replanning interval (1-min steps)
    out = _continuation(home, 2 * 86400, cut, 6)
    strat = out["snap"]["elements"]["inverter"]["strategy"]
    assert strat["type"] == "lp" and strat["plans"] == -(-cut // 60)
    assert "geyser" in strat["plan"]["setpoints"] and "geyser" in strat["plan"]["info"]
    assert _differs(out["first"], _without_strategy_state(home, 2 * 86400, out["snap"], 6))


def test_lp_as_shipped_continues_exactly():
    """cape-town-lp as written: the battery LP, the geyser's thermostat load forecast, the dishwasher deferred."""
    home = load_home(EXAMPLES / "cape-town-lp.yaml")
    cut = 1440 + 30  # day 2, 00:30 local: 30 min into an hourly replanning interval, before the 02:00 slot
    out = _continuation(home, 3 * 86400, cut, 6)
    strat = out["snap"]["elements"]["inverter"]["strategy"]
    assert strat["type"] == "lp" and strat["plans"] == -(-cut // 60)
    assert _differs(out["first"], _without_strategy_state(home, 3 * 86400, out["snap"], 6))


def test_rules_backup_with_deferral_continues_exactly():
    """cape-town-lp with load-shedding-aware backup rules deferring the smart dishwasher."""
    home = with_strategy(load_home(EXAMPLES / "cape-town-lp.yaml"),
                         {"type": "rules", "battery": "backup", "reserve_soc": 0.2, "outage_lead_h": 6, "margin": 1.3,
                          "defer_appliances": True})
    cut = 2520 + 7  # day 2, 20:07 local: inside a 15-min replanning interval, after the first deferral
    out = _continuation(home, 2 * 86400, cut, 12)
    strat = out["snap"]["elements"]["inverter"]["strategy"]
    assert strat["type"] == "rules" and strat["plan"] is not None and strat["plans"] == -(-cut // 15)
    assert any(b != a for name, a, b in strat["decisions"] if name == "dishwasher"), strat["decisions"]


def test_restore_refuses_another_strategy():
    home = load_home(EXAMPLES / "cape-town-lp.yaml")
    eng = Engine(home, until_s=86400)
    eng.step_window()
    snap = eng.snapshot()["elements"]["inverter"]
    strat = dict(snap["strategy"], type="rules")
    with pytest.raises(ValueError, match="strategy: a snapshot of a 'rules' strategy cannot restore a 'lp' one"):
        eng.inverter.restore({**snap, "strategy": strat})
