"""A paced clock that the services cannot keep up with reports its lag (status, metric, log)
instead of drifting silently, and reports none once they keep up again (no router needed:
a stand-in session answers each tick with its Flows after a set delay)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
import pytest

from hometwin import messages as m
from hometwin.runtime import clock as clock_mod
from hometwin.runtime.clock import Clock
from hometwin.spec import home_context, load_home
from tests.conftest import EXAMPLES


class SlowServices:
    """Answers every tick with its window's Flows ``delay_s`` later (the services' window time)."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.clock: Clock | None = None
        self.ticks: list[tuple[float, m.Tick]] = []
        self.caught_up = 0  # the first window after the clock caught up with wall time
        self.anchor: Any = None  # the clock's pacing reference (wall time, step)

    def publish(self, uri: str, payload: Any) -> None:
        if uri == m.TICK:
            t = m.Tick.model_validate(payload)
            loop = asyncio.get_running_loop()
            self.ticks.append((time.monotonic(), t))
            zeros = np.zeros(t.n)
            flows = m.Flows(seq=t.seq, i0=t.i0, n=t.n, k=t.n - 1, dt_s=t.dt_s,
                            flows={key: zeros for key in m.FLOW_KEYS}, served={}, roles={})
            loop.call_later(self.delay_s, self.clock.on_flows, flows.wire())

    async def call(self, uri: str, *args: Any, **kwargs: Any) -> Any:
        assert uri == m.ROSTER_GET
        return m.Roster(seq=0, elements=[]).wire()

    async def register(self, *args: Any, **kwargs: Any) -> None: ...

    async def subscribe(self, *args: Any, **kwargs: Any) -> None: ...


def lag_gauge(clk: Clock) -> float:
    return clk.metrics.registry.get_sample_value("hometwin_clock_lag_seconds", {"element": "clock"})


@pytest.mark.timeout(60)
def test_paced_clock_reports_lag_and_recovers(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock_mod, "LAG_WARN_S", 0.2)
    ctx = home_context(load_home(EXAMPLES / "cape-town.yaml"), 86400)
    # 60 s steps at 1200× speed: a tick is due every 50 ms of wall time; the services need 150 ms
    services = SlowServices(delay_s=0.15)

    async def main() -> tuple[list[float], list[float], list[float]]:
        clk = Clock(ctx, speed=1200)
        services.clock = clk
        await clk.on_join(services)
        behind, gauges = [], []
        for _ in range(8):  # eight windows late: the lag grows ~0.1 s a window
            seq = clk.seq
            while clk.seq == seq:
                await asyncio.sleep(0.005)
            behind.append(clk.status().lag_s)
            gauges.append(lag_gauge(clk))
        services.delay_s = 0.0  # the services keep up again: the clock catches up, then paces
        while clk.status().lag_s > 0:
            await asyncio.sleep(0.005)
        caught_up = clk.seq
        while clk.seq < caught_up + 3:
            await asyncio.sleep(0.005)
        after = [clk.status().lag_s, lag_gauge(clk)]
        clk.rpc_pause()
        services.caught_up = caught_up
        services.anchor = clk._anchor
        return behind, gauges, after

    with caplog.at_level(logging.WARNING, logger="hometwin.clock"):
        behind, gauges, after = asyncio.run(main())
    # every window starts later than wall time says, and the lag grows by ~ (0.15 - 0.05) s a window
    assert all(b > 0 for b in behind[1:])
    assert behind[-1] > behind[1] + 0.4
    assert gauges[1:] == behind[1:]  # the metric is the status' figure
    assert any("behind wall time" in r.getMessage() for r in caplog.records)
    # caught up: status and metric both say no lag
    assert after == [0.0, 0.0]
    # no tick ever went out before wall time said so (step i is due at anchor + i × 50 ms), and
    # once caught up the clock waited for that: the windows went out no sooner than due
    wall0, i0 = services.anchor
    assert all(t >= wall0 + (tick.i0 - i0) * 0.05 - 1e-6 for t, tick in services.ticks)
    assert len([tick for _, tick in services.ticks if tick.seq >= services.caught_up]) >= 3
