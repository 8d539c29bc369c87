"""Benchmark: what the services' message handlers cost per single-step window, warm and cold.

Every service of the Cape Town home (the same :class:`ElementService` and :class:`Balancer`
objects ``hometwin service`` runs) is hosted in this one process on an in-memory bus that
stands in for the router: a publish is msgpack-encoded once and decoded for every
subscriber, as Crossbar delivers it, and an RPC goes through a msgpack round trip.  The
clock's part is this script: it publishes a single-step ``Tick`` and waits for its ``Flows``.

The windows run twice:

* **warm** — deliveries follow each other in one process, so the handlers' code and data
  stay in the CPU caches (the best case; no router, no sockets, no wake-ups);
* **cold** — before every delivery (every wake-up of a service) the script writes a buffer
  of ``--flush-mb`` MiB, evicting what the previous handler left in the caches.  That is
  what a handler meets over the router on a small machine: fifteen processes take turns
  on two cores, so each wakes to caches the other fourteen filled.

The ratio shows why the twin's processes spend several times their in-process handler
time per window (``bench_runtime.py`` reports that CPU time per process), and which
handlers grow most.  It also checks that the bus run settles the same energy as the
in-process engine, so the handlers timed are the real ones doing the real work.

Appends the figures to bench/RESULTS.md.  Usage:

    python bench/bench_handlers.py [--ticks 1000] [--flush-mb 32]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import results  # bench/results.py (the script's folder is on sys.path)
import hometwin.runtime  # noqa: F401  (registers the element kinds' services)
from hometwin.runtime import messages as m
from hometwin.auth import element_authid
from hometwin.engine import Engine
from hometwin.registry import element_class
from hometwin.runtime.balancer import Balancer
from hometwin.runtime.membus import MemoryBus
from hometwin.runtime.service import ElementService
from hometwin.topology import runs_ahead
from hometwin.spec import home_context, load_home

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "homes" / "cape-town.yaml"


class Bus(MemoryBus):
    """The in-memory router, timing its hosts.

    Time is charged to the host whose code runs: its event handlers, its RPC endpoints and
    every step of a task it started (the inverter settles in a task), minus the deliveries
    and RPCs nested inside (an RPC's caller waits for it over the router too)."""

    def __init__(self, flush: np.ndarray | None):
        super().__init__()
        self.flush = flush
        self.spent: collections.Counter = collections.Counter()  # host id → seconds of its own code
        self.current: int | None = None  # the host whose code runs now
        self._nested: list[float] = []

    def run(self, host_id: int, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args)`` as a wake-up of ``host_id``: caches flushed first in the cold run."""
        t_outer = time.perf_counter()
        if self.flush is not None:
            self.flush += 1.0  # the caches now hold this buffer, not the last handler's working set
        caller, self.current = self.current, host_id
        self._nested.append(0.0)
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            end = time.perf_counter()
            self.spent[host_id] += end - t - self._nested.pop()
            if self._nested:
                self._nested[-1] += end - t_outer
            self.current = caller

    def task_factory(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
        """Tasks a host starts are charged to it, step by step."""
        owner = self.current
        if owner is None:
            return asyncio.Task(coro, loop=loop, **kwargs)
        bus = self

        class Charged:
            def __await__(self) -> Any:
                value: Any = None
                error: BaseException | None = None
                while True:
                    try:
                        if error is not None:
                            pending = bus.run(owner, coro.throw, error)
                        else:
                            pending = bus.run(owner, coro.send, value)
                    except StopIteration as stop:
                        return stop.value
                    try:
                        value, error = (yield pending), None
                    except BaseException as exc:  # noqa: BLE001 — handed back to the coroutine
                        value, error = None, exc

        async def charged() -> Any:
            return await Charged()

        return asyncio.Task(charged(), loop=loop, **kwargs)


async def run_windows(ticks: int, flush_mb: float) -> tuple[dict[str, float], dict[str, float], int]:
    """Run ``ticks`` single-step windows on a fresh bus; returns µs per window by host (after a
    warm-up of a tenth of the windows), the energy flows settled [J] and deliveries per window."""
    home = load_home(SPEC)
    ctx = home_context(home, ticks * 60)
    flush = np.zeros(int(flush_mb * 2**20) // 8) if flush_mb > 0 else None
    bus = Bus(flush)
    asyncio.get_running_loop().set_task_factory(bus.task_factory)
    names = [e.name for e in home.spec.elements]
    hosts: dict[int, Any] = {}
    ahead = runs_ahead(home)  # as `hometwin service` starts them
    for i, e in enumerate(home.spec.elements, start=1):
        el = element_class(e.kind)(e.name, e.config, ctx)
        hosts[i] = Balancer(el, names) if el.role.value == "converter" else ElementService(el, ahead=e.name in ahead)
    for i, h in hosts.items():
        await h.on_join(bus.session(i, authid=element_authid(h.name)))
    clock = bus.session(0)
    flows: asyncio.Queue = asyncio.Queue()
    await clock.subscribe(flows.put_nowait, m.FLOWS)
    await asyncio.sleep(0.05)  # let the roster settle (announcements are plain publishes)
    t0_epoch = float(ctx.start.timestamp())
    warm = max(1, ticks // 10)
    settled: collections.Counter = collections.Counter()
    i = 0
    for seq in range(ticks):
        if seq == warm:
            bus.spent.clear()
            deliveries0 = bus.deliveries
        clock.publish(m.TICK, m.Tick(seq=seq, i0=i, n=1, dt_s=ctx.step_s, t0=t0_epoch + i * ctx.step_s).wire())
        f = m.Flows.model_validate(await asyncio.wait_for(flows.get(), 30))
        for key, arr in f.flows.items():
            settled[key] += float(arr.sum())
        i = f.i0 + f.k + 1
    per = {hosts[h].name: s / (ticks - warm) * 1e6 for h, s in bus.spent.items() if h in hosts}
    return per, dict(settled), round((bus.deliveries - deliveries0) / (ticks - warm))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=1000)
    ap.add_argument("--flush-mb", type=float, default=32.0,
                    help="MiB written before every delivery in the cold run (more than the last-level cache)")
    a = ap.parse_args()
    hot, e_hot, per_window = asyncio.run(run_windows(a.ticks, 0))
    cold, e_cold, _ = asyncio.run(run_windows(a.ticks, a.flush_mb))
    engine = Engine(load_home(SPEC), window=1, until_s=a.ticks * 60).run()
    keys = [k for k in e_hot if k.endswith("_j") and k in engine.frame.columns]
    for label, got in (("warm", e_hot), ("cold", e_cold)):
        for key in keys:
            want = float(engine.frame[key].sum())
            if abs(got[key] - want) > 1e-6 * max(1.0, abs(want)):
                sys.exit(f"the {label} bus run settled {key} = {got[key]:.3f} J, the in-process engine {want:.3f} J: "
                         "the hosts did not do the real work")
    moved = sum(float(engine.frame[k].sum()) for k in ("load_j", "grid_import_j", "pv_ac_j") if k in keys)
    lines = [f"- {a.ticks} single-step windows, every service's handlers in one process on an in-memory bus "
             f"({per_window} deliveries per window, msgpack as over the router; the {len(keys)} energy flows "
             f"settled equal the in-process engine's, load + grid import + PV {moved / 3.6e6:.1f} kWh)",
             f"- handler time per window, all services: warm **{sum(hot.values()):.0f} µs**, cold (a "
             f"{a.flush_mb:g} MiB write before each delivery) **{sum(cold.values()):.0f} µs** "
             f"(**{sum(cold.values()) / sum(hot.values()):.1f}×**)",
             "",
             "| service | warm µs/window | cold µs/window | cold / warm |",
             "|---|---:|---:|---:|"]
    for name in sorted(hot, key=lambda n: -cold.get(n, 0.0)):
        lines.append(f"| {name} | {hot[name]:.0f} | {cold.get(name, 0.0):.0f} | {cold.get(name, 0.0) / hot[name]:.1f}× |")
    print("\n".join(lines), flush=True)
    results.append(lines)


if __name__ == "__main__":
    main()
