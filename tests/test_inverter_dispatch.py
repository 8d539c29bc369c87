"""The inverter's step balance in three corners the year runs rarely reach (one 1-minute step,
a battery at 90 % SoC, the ledger checked in each): a forced discharge meeting a PV surplus, a
grid-charge slot under an import limit, and PV beyond the inverter's AC rating."""

from __future__ import annotations

from typing import Any

import numpy as np
import pvlib
import pytest

from conftest import make_ctx, window
from hometwin import ledger
from hometwin.element import Role
from hometwin.services.battery.model import Battery
from hometwin.services.inverter.model import Inverter

DT = 60.0
ROLES = {"pv": Role.source, "load": Role.load, "bat": Role.storage, "grid": Role.grid}


def step(inverter: dict[str, Any], pv_w: float, load_w: float, import_limit_w: float = np.inf,
         soc: float = 0.9) -> tuple[Inverter, dict[str, float]]:
    """One step; the flows in mean W over it."""
    ctx = make_ctx(n_steps=60, step_s=int(DT))
    inv = Inverter("inv", inverter, ctx)
    bat = Battery("bat", {"soc_initial": soc, "self_discharge_pct_per_month": 0}, ctx)
    signals = {"grid_available": np.ones(1), "import_limit_w": np.full(1, import_limit_w),
               "export_limit_w": np.full(1, np.inf), "price_import": np.ones(1), "price_export": np.ones(1)}
    requests = {"pv": np.array([pv_w * DT]), "load": np.array([-load_w * DT])}
    st = inv.balance(window(ctx, 0, 1), requests, ROLES, {"load": True}, signals, bat)
    assert abs(float(ledger.residual(st.served, ROLES, st.flows)[0])) < 1e-6
    return inv, {k: float(v[0]) / DT for k, v in st.flows.items() if k.endswith("_j")}


def test_a_forced_discharge_with_pv_surplus_exports_both_and_does_not_charge() -> None:
    """Discharge 2 kW at a peak (a time-of-use slot) while 3 kW of PV is left over: the battery
    and the PV both go out; charging from the surplus in the same step would only run the PV
    through the battery's losses (and its converter past its rating)."""
    slot = {"start": "00:00", "end": "12:00", "target_soc": 0.2, "discharge_kw": 2.0}
    inv, f = step({"mode": "time_of_use", "slots": [slot]}, pv_w=3125.0, load_w=0.0)
    assert f["battery_charge_j"] == 0.0 and f["battery_discharge_j"] > 0
    eta = inv.config.battery_efficiency
    assert f["grid_export_j"] == pytest.approx(f["pv_ac_j"] + f["battery_discharge_j"] * eta, rel=1e-12)
    assert f["grid_export_j"] == pytest.approx(5000.0, rel=1e-9)  # the AC rating: PV 3 kW + battery 2 kW


def test_a_grid_charge_slot_still_discharges_where_the_import_limit_leaves_load_unserved() -> None:
    """A 5 kW load under a 3 kW import limit in a grid-charge slot (target 50 %, battery at 90 %):
    the grid gives all it may, and the battery serves the rest instead of leaving it unserved."""
    slot = {"start": "00:00", "end": "12:00", "target_soc": 0.5, "grid_charge": True}
    inv, f = step({"mode": "time_of_use", "slots": [slot]}, pv_w=0.0, load_w=5000.0, import_limit_w=3000.0)
    assert f["unserved_j"] == 0.0 and f["load_j"] == pytest.approx(5000.0)
    assert f["grid_import_j"] == pytest.approx(3000.0)
    assert f["battery_discharge_j"] * inv.config.battery_efficiency == pytest.approx(2000.0)
    assert f["battery_charge_j"] == 0.0


def test_pv_beyond_the_ac_rating_is_clipped_as_curtailment_not_counted_as_loss() -> None:
    """6.5 kW DC into a 5 kW inverter: pvlib's PVWatts curve reaches the AC rating at pdc0 and no
    further, so DC above pdc0 is not taken (clipping, booked as curtailed); the loss is the
    conversion loss of what was taken."""
    inv, f = step({"mode": "self_use"}, pv_w=6500.0, load_w=0.0, soc=1.0)
    pdc0 = inv.ac_w / inv.config.pv_efficiency
    ac_at = lambda pdc: float(pvlib.inverter.pvwatts(pdc, pdc0, eta_inv_nom=inv.config.pv_efficiency))  # noqa: E731
    assert ac_at(pdc0) == pytest.approx(inv.ac_w) and ac_at(6500.0) == pytest.approx(inv.ac_w)  # the premise
    assert f["pv_ac_j"] == pytest.approx(inv.ac_w)
    assert f["pv_dc_j"] == pytest.approx(pdc0) and f["curtailed_j"] == pytest.approx(6500.0 - pdc0)
    assert f["loss_j"] == pytest.approx(pdc0 - inv.ac_w)  # 4 % of what was taken, not 1.5 kW
