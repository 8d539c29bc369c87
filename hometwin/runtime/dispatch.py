"""The battery's dispatch, reached over WAMP.

The window asks the battery to dispatch as one request (:class:`hometwin.window.AskDispatch`, the
yield of ``Inverter.balance_steps``): in-process it is a method call, over WAMP the battery's
``hometwin.element.<name>.dispatch`` RPC, awaited on the inverter's event loop between the two
halves of the balance instead of blocking a worker thread.  A call that fails, times out or answers
something invalid is :class:`BatteryUnavailable`: the window is then balanced without the battery,
as it is when its status packet does not come.

The battery answers only for the window it is in, before that window is settled and with its step length; anything else is counted and refused.
Its sides live here: the inverter's :class:`BatteryProxy` and the battery's :func:`answer_dispatch` (the
clock has none).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from autobahn.wamp.exception import ApplicationError

from hometwin.runtime import messages as m


# -- the balancer's side ---------------------------------------------------------------------------
class BatteryUnavailable(RuntimeError):
    """The battery's dispatch RPC failed or timed out."""


class BatteryProxy:
    """The battery over WAMP: its window's StorageStatus ``params``, and ``dispatch`` as an RPC
    awaited on the event loop (the window's :class:`~hometwin.window.AskDispatch`)."""

    def __init__(self, balancer: Any, name: str, seq: int, params: dict[str, float]):
        self.b, self.name, self.seq, self._params = balancer, name, seq, params

    def params(self) -> dict[str, float]:
        return dict(self._params)

    async def dispatch_async(self, *args: Any) -> m.DispatchResult:
        req = self.request(*args)
        try:
            payload = await asyncio.wait_for(self.b.session.call(self.uri, req.wire()), self.b.timeout_s)
        except Exception as exc:
            raise BatteryUnavailable(f"{self.uri}: {exc!r}") from None
        return self.result(req, payload)

    @property
    def uri(self) -> str:
        return m.element_uri(self.name, "dispatch")

    def request(self, dt_s: float, charge_j: np.ndarray, discharge_j: np.ndarray,
                grid_charge_j: np.ndarray | None = None, soc_floor: Any = None,
                grid_target_soc: Any = None) -> m.DispatchRequest:
        n = len(charge_j)
        return m.DispatchRequest(seq=self.seq, dt_s=dt_s, n=n, charge_j=charge_j, discharge_j=discharge_j,
                                 grid_charge_j=grid_charge_j, soc_floor=_per_step(soc_floor, n),
                                 grid_target_soc=_per_step(grid_target_soc, n))

    def result(self, req: m.DispatchRequest, payload: Any) -> m.DispatchResult:
        self.b.metrics.msg("out", self.uri)
        res = m.decode(m.DispatchResult, payload, self.uri, self.b.rejections)
        if res is None or res.seq != self.seq or res.n != req.n:
            raise BatteryUnavailable(f"{self.uri}: invalid answer")
        return res


def _per_step(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=float)
    return np.full(n, float(arr)) if arr.ndim == 0 else arr


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
