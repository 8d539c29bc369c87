"""The battery's dispatch, reached over WAMP.

The window asks the battery to dispatch as one request (:class:`hometwin.window.AskDispatch`, the
yield of ``Inverter.balance_steps``): in-process it is a method call, over WAMP the battery's
``hometwin.element.<name>.dispatch`` RPC, awaited on the inverter's event loop between the two
halves of the balance instead of blocking a worker thread.  A call that fails, times out or answers
something invalid is :class:`BatteryUnavailable`: the window is then balanced without the battery,
as it is when its status packet does not come.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

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
