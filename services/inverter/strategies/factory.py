"""``make_strategy(config, inverter)``: the strategy object for the inverter config's ``strategy`` field."""

from __future__ import annotations

from typing import Any


def make_strategy(config: Any, inverter: Any) -> Any:
    t = config.type
    if t == "rules":
        from hometwin.services.inverter.strategies.rules import RulesStrategy

        return RulesStrategy(config, inverter)
    if t == "lp":
        from hometwin.services.inverter.strategies.lp import LPStrategy

        return LPStrategy(config, inverter)
    if t in ("mpc", "heating_mpc"):
        from hometwin.services.inverter.strategies.heating_mpc import HeatingMPCStrategy

        return HeatingMPCStrategy(config, inverter)
    if t == "heating_qp":
        from hometwin.services.inverter.strategies.heating_qp import HeatingQPStrategy

        return HeatingQPStrategy(config, inverter)
    if t == "perfect_foresight":
        from hometwin.services.inverter.strategies.reference import PerfectForesight

        return PerfectForesight(config, inverter)
    raise ValueError(f"strategy.type: unknown strategy {t!r}")
