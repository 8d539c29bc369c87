"""Optimizer strategies hosted by the inverter: rules, battery LP/MILP, heating MPC, references.

A strategy sees only what the inverter can get over messages (the window's
signals, each element's flexibility — :mod:`hometwin.flex`: the battery, buildings,
tanks, deferrable cycles —, forecasts built from the other elements' published
configs), sends the elements typed commands and returns a
:class:`~hometwin.services.inverter.strategies.base.Plan` that the inverter
applies at window boundaries.  ``make_strategy(config, inverter)`` builds one
from the inverter config's ``strategy`` field.
"""

from hometwin.services.inverter.strategies.base import Plan, Strategy, StrategyError  # noqa: F401
