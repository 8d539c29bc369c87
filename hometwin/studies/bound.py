"""The perfect-foresight bound of a home: the study entry points that build an :class:`~hometwin.engine.Engine`.

The strategies (``services/inverter/strategies``) plan an inverter they are given and import no engine
(tests/test_import_cycles.py); "the bound of this home" builds the engine here and hands its inverter to
them: :func:`decomposed_bound` to :func:`~hometwin.services.inverter.strategies.bound.blocks_bound`,
:func:`optimum` to :class:`~hometwin.services.inverter.strategies.reference.PerfectForesight`.
"""

from __future__ import annotations

import time
from typing import Any

from hometwin.element import Window
from hometwin.engine import Engine
from hometwin.services.inverter.strategies.bound import blocks_bound
from hometwin.services.inverter.strategies.config import PerfectForesightConfig
from hometwin.services.inverter.strategies.reference import PerfectForesight


def decomposed_bound(home: Any, until_s: int | None = None, block_days: float = 14.0, step_min: float = 15.0,
                     comfort: Any = None, comfort_weight_per_kh: float = 5.0,
                     value_of_lost_load_per_kwh: float | None = None, value_scale: float = 1.0) -> dict[str, Any]:
    """A lower bound of the perfect-foresight score of a long run, as blocks of ``block_days`` (a
    Lagrangian relaxation of the joint LP; see docs/strategies.md).

    The joint LP couples the blocks only through the state at their boundaries (stored energy, the
    buildings' temperatures).  Each block is solved alone with its start state *free* — the battery
    anywhere in its SoC window, each building anywhere in the box of states it can reach at all
    (:func:`~hometwin.services.inverter.strategies.bound.reachable_states`) — paid at a price (``λ``:
    per kWh stored, the next day's mean import price delivered; per K of a building state, its heat
    capacity × the next day's mean import price / COP) and credited at the next boundary's price for
    the state it ends in.  Every plan of the whole run splits into block plans that are feasible
    there, with the λ terms summing to zero, so the sum of the block optima is ≤ the joint optimum
    for *any* λ (weak duality; ``value_scale`` scales every λ, for the test that says so); λ only
    decides how close.  Homes with geysers or smart appliances are not decomposed
    (:class:`ValueError`): plan them with the joint solve (:func:`optimum`)."""
    t_wall = time.perf_counter()
    eng = Engine(home, until_s=until_s)
    out = blocks_bound(eng.inverter, None, block_days, step_min, comfort, comfort_weight_per_kh,
                       value_of_lost_load_per_kwh, value_scale)
    out["wall_s"] = time.perf_counter() - t_wall
    return out


def optimum_cost(home: Any, until_s: int | None = None, step_min: float = 15.0, **config: Any) -> float:
    """The perfect-foresight bound of ``home`` (its score over the run), without simulating it."""
    return optimum(home, until_s, step_min, **config)["bound"]


def optimum(home: Any, until_s: int | None = None, step_min: float = 15.0, **config: Any) -> dict[str, Any]:
    """The bound's first solve alone: ``bound``, its ``parts``, the LP's ``solve_s`` and ``steps`` (a run
    longer than ``joint_max_days`` from blocks unless that is raised)."""
    eng = Engine(home, until_s=until_s)
    pf = PerfectForesight(PerfectForesightConfig(step_min=step_min, **config), eng.inverter)
    w = Window(seq=0, i0=0, n=1, dt_s=eng.ctx.step_s, home=eng.ctx)
    pf.defer_appliances(w)
    plan = pf.make_plan(w, {})
    return {"bound": pf.bound, "parts": dict(pf.bound_parts), "solve_s": float(plan.solve_s), "steps": int(plan.n)}
