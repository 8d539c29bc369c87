"""Run one home under several strategies and compare them with the perfect-foresight bound."""

from __future__ import annotations

import time
from typing import Any, Iterable

import numpy as np
from pydantic import TypeAdapter

from hometwin.services.inverter.strategies.config import StrategyConfig

#: Named presets for ``--strategy`` (any of them can also be given as a JSON/YAML mapping).
PRESETS: dict[str, dict[str, Any]] = {
    "self_consumption": {"type": "rules", "battery": "self_consumption"},
    "time_of_use": {"type": "rules", "battery": "time_of_use"},
    "backup": {"type": "rules", "battery": "backup"},
    "lp": {"type": "lp", "forecast": {"perfect": True}},
    "lp_forecast_error": {"type": "lp"},
    "mpc": {"type": "mpc", "forecast": {"perfect": True}},
    "heating_mpc": {"type": "heating_mpc", "forecast": {"perfect": True}},
    "heating_qp": {"type": "heating_qp", "forecast": {"perfect": True}},  # the SmartHjem thesis MPC (QP)
    "thermostat": {"type": "rules", "battery": "self_consumption"},  # heaters on their own thermostat
    "perfect_foresight": {"type": "perfect_foresight"},
}


def strategy_config(spec: Any, voll_per_kwh: float | None = None) -> Any:
    """The validated config of a preset name or mapping; ``voll_per_kwh`` (value of lost load) is
    given to a planner that prices unserved energy and does not set its own
    (``value_of_lost_load_per_kwh``), so the plans and the comparison price lost load alike."""
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"--strategy: unknown {spec!r} (known: {', '.join(PRESETS)})")
        spec = PRESETS[spec]
    cfg = TypeAdapter(StrategyConfig).validate_python(spec)
    if (voll_per_kwh is not None and "value_of_lost_load_per_kwh" in type(cfg).model_fields
            and cfg.value_of_lost_load_per_kwh is None):
        cfg = cfg.model_copy(update={"value_of_lost_load_per_kwh": float(voll_per_kwh)})
    return cfg


def with_strategy(home: Any, strategy: Any, voll_per_kwh: float | None = None) -> Any:
    """A copy of ``home`` whose inverter runs ``strategy`` (None = its work mode alone)."""
    h = home.model_copy(deep=True)
    inv = next(el for el in h.spec.elements if el.kind == "inverter")
    cfg = None if strategy is None else strategy_config(strategy, voll_per_kwh)
    own = home_comfort(home)
    if (cfg is not None and own is not None and "comfort" in type(cfg).model_fields
            and not (isinstance(strategy, dict) and "comfort" in strategy)):
        cfg = cfg.model_copy(update={"comfort": own})  # a preset keeps the home's comfort band (its calendar)
    inv.config.strategy = cfg
    return h


def home_comfort(home: Any) -> Any:
    """The comfort band the home's own strategy defines (its ``comfort``), or None: presets run on the
    home keep it, and every row of a comparison is judged against it."""
    inv = next((el for el in home.spec.elements if el.kind == "inverter"), None)
    return getattr(getattr(getattr(inv, "config", None), "strategy", None), "comfort", None)


def run_strategy(home: Any, strategy: Any, until_s: int | None = None,
                 voll_per_kwh: float | None = None) -> dict[str, Any]:
    """Run ``home`` with ``strategy``; KPIs plus comfort violation and the strategy's own figures.

    ``comfort_violation_kh``: K·h outside the comfort band (the strategy's ``comfort``, else the
    home's own strategy's, else the default :class:`~.config.ComfortConfig`) while someone is home, integrated step by step from
    each heating element's indoor temperature at the end of every step and the band in force
    during that step — the same figure however the run is cut into windows or plans."""
    from hometwin.engine import Engine

    eng = Engine(with_strategy(home, strategy, voll_per_kwh), until_s=until_s)
    heaters = {n: e for n, e in eng.elements.items() if hasattr(e, "set_plan") and hasattr(e, "building")}
    viol = {"kh": 0.0}
    strat = eng.inverter.strategy
    comfort = getattr(getattr(strat, "config", None), "comfort", None) or home_comfort(home)

    def hook(rec: Any) -> None:  # comfort outside the band while present, integrated per step
        if not heaters:
            return
        from hometwin.services.inverter.strategies.heating_mpc import comfort_band, comfort_violation_kh
        from hometwin.services.inverter.strategies.config import ComfortConfig

        cc = comfort or ComfortConfig()
        dt_s = rec.window.dt_s
        # the temperature at each step's end against the band in force during that step (its last second,
        # as heating_mpc's closed-loop simulation measures it)
        t_end = np.asarray(rec.window.epoch_s[: rec.k + 1], dtype=np.int64) + dt_s - 1
        lo, up, present = comfort_band(t_end, eng.ctx.timezone, cc)
        for el in heaters.values():
            viol["kh"] += comfort_violation_kh(el.settled_temp_indoor[: rec.k + 1], lo, up, present, dt_s / 3600.0)

    eng.on_window.append(hook)
    t0 = time.perf_counter()
    result = eng.run()
    k = result.kpis()
    out = {"energy_cost": k["energy_cost"], "total_cost": k["total_cost"], "unserved_kwh": k["unserved_kwh"],
           "battery_cycles": k["battery_cycles"], "grid_import_kwh": k["grid_import_kwh"],
           "comfort_violation_kh": viol["kh"], "wall_s": time.perf_counter() - t0, "currency": result.meta.get("currency", "")}
    if strat is not None:
        out.update(strat.summary())
        if hasattr(strat, "bound"):
            out["bound"] = strat.bound
            out["bound_parts"] = dict(strat.bound_parts)
            out["bound_voll_per_kwh"] = strat.voll_per_kwh
    out["result"] = result
    return out


#: a bound above a strategy's score by more than this (relative to |bound|, plus 0.01 in the currency) is
#: not reported as a bound: the plan's 15-minute model and the simulation's minute differ by about this
BOUND_TOLERANCE_REL = 2e-3
BOUND_TOLERANCE_ABS = 0.01


def compare_strategies(home: Any, strategies: Iterable[Any], until_s: int | None = None,
                       bound: bool = True, voll_per_kwh: float | None = None) -> dict[str, dict[str, Any]]:
    """Every strategy's figures, its score and its gap to the perfect-foresight bound.

    ``voll_per_kwh`` (value of lost load, in the tariff's currency per kWh): each row also
    gets ``lost_load_cost`` = unserved kWh × VoLL and ``cost_with_lost_load`` = energy cost
    + that, so a strategy cannot look cheap by leaving the load dark during an outage.  The same
    value is the planners' price of unserved energy (``value_of_lost_load_per_kwh``) wherever their
    config leaves it unset: one notion of lost load in the plans and in the comparison.

    With ``bound`` (the perfect-foresight reference, run like the others): every row gets
    ``comfort_cost`` = comfort violation [K·h] × the reference's ``comfort_weight_per_kh`` and
    ``score`` = energy cost + lost load (at ``voll_per_kwh``, or the reference's own VoLL when none is
    given) + comfort cost — what the reference minimises, so a strategy cannot look cheap by letting
    the house go cold.  ``bound`` is the reference's optimal score (its first solve); it is a valid
    lower bound (``bound_valid``) only if no row's score — the reference's realised one included — lies
    below it by more than the stated tolerance; then ``gap`` = (score − bound) / |bound|, otherwise
    ``gap`` is NaN and ``bound_note`` says which strategy beat it and by how much.
    """
    if voll_per_kwh is not None and not (voll_per_kwh >= 0 and np.isfinite(voll_per_kwh)):
        raise ValueError(f"voll_per_kwh: must be >= 0 and finite (got {voll_per_kwh})")
    rows: dict[str, dict[str, Any]] = {}
    for s in strategies:
        name = s if isinstance(s, str) else strategy_config(s).type
        rows[name] = run_strategy(home, s, until_s, voll_per_kwh)
    if voll_per_kwh is not None:
        for r in rows.values():
            r["voll_per_kwh"] = float(voll_per_kwh)
            r["lost_load_cost"] = r["unserved_kwh"] * float(voll_per_kwh)
            r["cost_with_lost_load"] = r["energy_cost"] + r["lost_load_cost"]
    if bound:
        pf = rows.get("perfect_foresight") or run_strategy(home, "perfect_foresight", until_s, voll_per_kwh)
        rows.setdefault("perfect_foresight", pf)
        if voll_per_kwh is not None:
            pf.setdefault("lost_load_cost", pf["unserved_kwh"] * float(voll_per_kwh))
            pf.setdefault("cost_with_lost_load", pf["energy_cost"] + pf["lost_load_cost"])
            pf.setdefault("voll_per_kwh", float(voll_per_kwh))
        score_rows(rows, pf, voll_per_kwh)
    return rows


def score_rows(rows: dict[str, dict[str, Any]], pf: dict[str, Any], voll_per_kwh: float | None) -> None:
    """Add ``comfort_cost``, ``score``, ``bound``, ``bound_valid``, ``bound_note`` and ``gap`` to every row."""
    weight = float(strategy_config("perfect_foresight").comfort_weight_per_kh)
    voll = float(voll_per_kwh) if voll_per_kwh is not None else float(pf.get("bound_voll_per_kwh", np.nan))
    ref = float(pf.get("bound", np.nan))
    for r in rows.values():
        r["comfort_weight_per_kh"] = weight
        r["comfort_cost"] = r["comfort_violation_kh"] * weight
        r["score"] = r["energy_cost"] + r["unserved_kwh"] * voll + r["comfort_cost"]
    tol = BOUND_TOLERANCE_REL * abs(ref) + BOUND_TOLERANCE_ABS
    below = {name: r["score"] for name, r in rows.items() if not r["score"] >= ref - tol}
    valid = bool(np.isfinite(ref)) and not below
    if not np.isfinite(ref):
        note = "no bound: the perfect-foresight plan was not solved"
    elif below:
        name, sc = min(below.items(), key=lambda kv: kv[1])
        note = (f"not a bound: {name} scores {sc:,.2f}, below the bound {ref:,.2f} by more than the tolerance "
                f"{tol:,.2f} (the plan's model and the simulation differ there); no gap reported")
    else:
        note = ""
    for r in rows.values():
        r["bound"] = ref
        r["bound_valid"] = valid
        r["bound_note"] = note
        r["gap"] = (r["score"] - ref) / abs(ref) if valid and ref else float("nan")
