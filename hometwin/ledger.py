"""Energy bookkeeping: the ledger must close on every step.

    sources + battery discharge + grid import
        = loads served + battery charge + grid export + losses

Sources and loads are summed from what each *element* was served (not from the
inverter's own totals), battery terms are at the battery's terminals, losses
are the inverter's conversion losses.  A residual above ``TOLERANCE_J`` is a
bug and fails the run loudly, naming the step and the elements involved.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import pandas as pd

from hometwin.element import Role

TOLERANCE_J = 1e-6


class LedgerError(RuntimeError):
    """The energy ledger did not close."""


def residual(served: Mapping[str, np.ndarray], roles: Mapping[str, Role],
             flows: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per-step residual [J] of the ledger (0 when energy is conserved)."""
    n = len(flows["loss_j"])
    sources = np.zeros(n)
    loads = np.zeros(n)
    grid_import = flows["grid_import_j"]
    grid_export = flows["grid_export_j"]
    for name, role in roles.items():
        if role == Role.source:
            sources = sources + served[name]
        elif role == Role.load:
            loads = loads - served[name]
        elif role == Role.grid:
            grid_import = np.maximum(served[name], 0.0)
            grid_export = np.maximum(-served[name], 0.0)
    return (sources + flows["battery_discharge_j"] + grid_import
            - loads - flows["battery_charge_j"] - grid_export - flows["loss_j"])


def check(times: Callable[[], pd.DatetimeIndex], served: Mapping[str, np.ndarray], roles: Mapping[str, Role],
          flows: Mapping[str, np.ndarray], tolerance_j: float = TOLERANCE_J) -> float:
    """Raise :class:`LedgerError` if any step's residual exceeds ``tolerance_j``; return the max.

    ``times()`` gives the steps' timestamps, for the error only: building a pandas index for
    every single-step window would cost the inverter more than the check itself."""
    res = residual(served, roles, flows)
    worst = float(np.max(np.abs(res))) if res.size else 0.0
    if not worst <= tolerance_j:  # NaN too: a model that lost track of its energy fails loudly
        i = int(np.argmax(np.abs(res)))
        parts = ", ".join(f"{name}={served[name][i]:+.6g} J" for name in served)
        raise LedgerError(
            f"energy ledger does not close at step {i} of the window ({times()[i].isoformat()}): "
            f"residual {res[i]:+.6g} J (tolerance {tolerance_j} J); elements: {parts}; "
            f"battery +{flows['battery_discharge_j'][i]:.6g}/-{flows['battery_charge_j'][i]:.6g} J, "
            f"grid +{flows['grid_import_j'][i]:.6g}/-{flows['grid_export_j'][i]:.6g} J, "
            f"losses {flows['loss_j'][i]:.6g} J")
    return worst
