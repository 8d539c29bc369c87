"""The battery's dispatch, reached over WAMP.

The window asks the battery to dispatch as one request (:class:`hometwin.window.AskDispatch`, the
yield of ``Inverter.balance_steps``): in-process it is a method call, over WAMP the battery's
``hometwin.element.<name>.dispatch`` RPC.  The battery answers only for the window it is in,
before that window is settled and with its step length; anything else is counted and refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from autobahn.wamp.exception import ApplicationError

from hometwin.runtime import messages as m


# -- the element's side ---------------------------------------------------------------------------
def answer_dispatch(win: Any, req: m.DispatchRequest | None, uri: str) -> tuple[m.DispatchResult, np.ndarray | None]:
    """The battery's answer to the inverter's dispatch request (decoded; None: it was invalid) for its
    window (``win``: its :class:`hometwin.runtime.element_window.ElementWindow`), and what it was served
    when it may publish its next status ahead (None: it may not)."""
    if req is None:
        raise ApplicationError("hometwin.error.invalid_message", "invalid DispatchRequest")
    w = win.w
    if w is None or req.seq != w.seq or req.n != w.n or win.settled:
        win.rejections.reject(uri, "stale_seq", f"seq {req.seq}/n {req.n}, window {win.last_seq}"
                              + (" (settled)" if win.settled else ""))
        raise ApplicationError("hometwin.error.stale", f"dispatch for seq {req.seq}, window is {win.last_seq}")
    if req.dt_s != w.dt_s:
        win.rejections.reject(uri, "out_of_range", f"dt_s {req.dt_s} != the window's {w.dt_s}")
        raise ApplicationError("hometwin.error.invalid_message", f"dispatch: dt_s {req.dt_s} != {w.dt_s}")
    res = win.element.dispatch(req.dt_s, req.charge_j, req.discharge_j, req.grid_charge_j,
                               req.soc_floor, req.grid_target_soc)
    win.dispatched = req.seq
    served = None
    if win.spec.may_speculate():
        served = np.asarray(res.discharge_j, dtype=float) - (np.asarray(res.charge_j, dtype=float)
                                                             + np.asarray(res.grid_charge_j, dtype=float))
    answer = m.DispatchResult(seq=req.seq, n=req.n, charge_j=res.charge_j, grid_charge_j=res.grid_charge_j,
                              discharge_j=res.discharge_j, stored_j=res.stored_j, loss_j=res.loss_j)
    return answer, served
