"""Speculative packets: an element per window publishes its next packet ahead of the Settle.

The geyser's next request and the battery's next status depend only on what they get in this
window, so each publishes it before the window is settled, as if served in full (the geyser right
after its request, the battery right after its dispatch answer).  The inverter takes such a packet
only if the Settle lists the element in ``confirmed`` (it got exactly what it assumed); otherwise
the element rolls back to its mark and publishes the packet again.  Checked here:

- a home with load-shedding and a small battery, where the geyser is short for 2 hours: flows
  bit-identical to the engine, and the geyser's and the battery's state too, with packets kept and
  taken back (in-memory bus; the Crossbar tests run the same protocol at speed max);
- the geyser and the battery driven message by message against their models called directly: a
  packet kept, one taken back after a shortfall, a ``set`` made while a packet is out (and one
  applied in a packet taken back, which is applied again), the ``snapshot`` RPC and the state file
  seeing only committed windows.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hometwin.runtime import messages as m
from hometwin.element import Window
from hometwin.engine import Engine
from hometwin.registry import element_class
from hometwin.runtime import state as state_file
from hometwin.runtime.service import ElementService
from hometwin.runtime.state import StateKeeper
from hometwin.spec import home_context, load_home
from runtime_support import CAPE_TOWN, MemoryBus
from test_ahead import Home, frame_diff

INVERTER, ME = 500, 1  # session ids: the test plays the inverter; the element under test


def short_home(tmp_path: Path) -> Path:
    """Cape Town with the grid down 06:00–09:30, a 2 kWh battery at 30 % and the geyser on all day."""
    d = yaml.safe_load(CAPE_TOWN.read_text())
    for e in d["spec"]["elements"]:
        if e["name"] == "battery":
            e["config"].update(capacity_kwh=2.0, soc_initial=0.3)
        elif e["name"] == "grid":
            e["config"]["outages"] = {"daily": [{"start": "06:00", "end": "09:30"}]}
        elif e["name"] == "geyser":
            e["config"].pop("timers")
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def test_speculative_packets_with_shortfalls_equal_in_process(tmp_path: Path):
    steps = 600
    spec = short_home(tmp_path)

    async def main() -> tuple[Home, list[m.Flows]]:
        h = Home(spec, steps)
        await h.start()
        return h, await h.run(steps, run_windows=16)

    h, flows = asyncio.run(main())
    eng = Engine(load_home(spec), window=1, until_s=steps * 60)
    ref = eng.run()
    assert frame_diff(flows, ref) <= 1e-9
    # the geyser really was short (served less than it asked) in some windows, and not in others
    assert (ref.frame["unserved_j"] > 0).sum() >= 60
    for name in ("geyser", "battery"):  # the elements end where the engine's do, to the bit
        got, want = h.hosts[name].element.state, eng.elements[name].state
        assert got.keys() == want.keys()
        for key in want:
            assert np.array_equal(np.asarray(got[key]), np.asarray(want[key])), (name, key)
    g, b, inv = (h.hosts[n].metrics.values["speculation"] for n in ("geyser", "battery", "inverter"))
    # every window's packet went out ahead but the first two: window 0's tick is relayed, and the
    # Settle of window 0 brings window 1 and the first "then"; a shortfall takes the geyser's back
    assert g[("kept",)] + g[("rolled_back",)] == steps - 2 and g[("rolled_back",)] >= 60
    assert b == {("kept",): steps - 2}
    assert inv[("used",)] == g[("kept",)] + b[("kept",)] and inv[("dropped",)] == g[("rolled_back",)]
    for name in ("inverter", "geyser", "battery"):
        assert not h.hosts[name].rejections.counts, name


# -- message by message ------------------------------------------------------------------------------

class Driver:
    """One element service on a bus, driven by the test as its inverter."""

    def __init__(self, kind: str, config: dict[str, Any], tmp_path: Path):
        self.home = load_home(CAPE_TOWN)
        self.ctx = home_context(self.home, 600 * 60)
        cls = element_class(kind)
        self.el = cls(kind, config, self.ctx)
        self.ref = cls(kind, config, self.ctx)  # the model called directly, as the engine does
        self.keeper = StateKeeper(tmp_path, self.el, interval_s=0).attach()
        self.svc = ElementService(self.el)
        self.bus = MemoryBus()
        self.inv = self.bus.session(INVERTER)
        self.out: list[tuple[str, Any]] = []
        self.t0 = float(self.ctx.start.timestamp())

    async def start(self) -> None:
        await self.svc.on_join(self.bus.session(ME))
        for uri, model in ((m.REQUEST, m.EnergyRequest), (m.STORAGE, m.StorageStatus)):
            await self.inv.subscribe(lambda p, uri=uri, model=model: self.out.append((uri, model.model_validate(p))), uri)

    def tick(self, seq: int) -> m.Tick:
        return m.Tick(seq=seq, i0=seq, n=1, dt_s=60, t0=self.t0 + seq * 60)

    def window(self, seq: int) -> Window:
        return Window(seq=seq, i0=seq, n=1, dt_s=60, home=self.ctx)

    def settle(self, seq: int, served: np.ndarray, confirmed: bool, then: bool = True) -> None:
        st = m.Settle(seq=seq, i0=seq, n=1, k=0, served={self.el.name: served}, participants=[self.el.name],
                      next=self.tick(seq + 1), then=self.tick(seq + 2) if then else None,
                      confirmed=[self.el.name] if confirmed else [])
        self.inv.publish(m.SETTLE, st.wire())

    def take(self) -> list[Any]:
        got, self.out[:] = list(self.out), []
        return [msg for _, msg in got]


def test_a_geyser_packet_out_ahead_is_kept_or_taken_back(tmp_path: Path):
    d = Driver("geyser", {"temp_initial_c": 30.0, "profile": "M"}, tmp_path)
    ref = d.ref

    async def main() -> None:
        await d.start()
        d.inv.publish(m.TICK_WINDOW, d.tick(0).wire())  # the first window: relayed, nothing known after it
        (r0,) = d.take()
        assert not r0.speculative and np.array_equal(r0.joules, ref.request(d.window(0), {}))
        assert r0.joules[0] < -1e5  # a cold tank: the element heats (3 kW)
        ref.settle(d.window(0), 0, r0.joules)

        # Settle 0 brings window 1 and says window 2 follows: request 1, then request 2 ahead
        d.settle(0, r0.joules, confirmed=False)
        r1, r2 = d.take()
        assert (r1.seq, r1.speculative, r2.seq, r2.speculative) == (1, False, 2, True)
        assert np.array_equal(r1.joules, ref.request(d.window(1), {}))
        ref.settle(d.window(1), 0, r1.joules)  # what request 2 assumed
        after_1 = copy.deepcopy(ref.state)
        assert np.array_equal(r2.joules, ref.request(d.window(2), {}))
        # a packet out ahead is not committed: the snapshot RPC and the state file still end at window 0
        snap = await d.inv.call(m.element_uri("geyser", "snapshot"))
        assert snap["state"]["temps"] != after_1["temps"] and d.keeper.pending[0] == 0

        # Settle 1 confirms it: nothing published for window 2 again; request 3 goes out ahead
        d.settle(1, r1.joules, confirmed=True)
        (r3_ahead,) = d.take()
        assert (r3_ahead.seq, r3_ahead.speculative) == (3, True)
        assert d.keeper.pending[0] == 1
        snap = await d.inv.call(m.element_uri("geyser", "snapshot"))
        assert snap["state"]["temps"] == after_1["temps"]

        # a set while request 3 is out ahead; then window 2 is short (half served): request 3 is taken
        # back and published again after the shortfall, with the set applied at that boundary
        answer = await d.inv.call(m.element_uri("geyser", "set"), mode="off")
        assert answer["applies_at_seq"] is None and "not out yet" in answer["applies"]
        d.settle(2, 0.5 * r2.joules, confirmed=False)
        r3, r4_ahead = d.take()
        assert (r3.seq, r3.speculative, r4_ahead.seq, r4_ahead.speculative) == (3, False, 4, True)
        ref.settle(d.window(2), 0, 0.5 * r2.joules)
        ref.set(mode="off")
        assert np.array_equal(r3.joules, ref.request(d.window(3), {})) and r3.joules[0] == 0.0
        assert not np.array_equal(r3.joules, r3_ahead.joules)
        ref.settle(d.window(3), 0, r3.joules)
        assert np.array_equal(r4_ahead.joules, ref.request(d.window(4), {}))

        # a set applied in a packet out ahead (request 5, after Settle 3 confirms request 4), which is
        # then taken back: the set is pending again and applies when request 5 is computed anew
        await d.inv.call(m.element_uri("geyser", "set"), mode="auto")
        d.settle(3, r3.joules, confirmed=True)
        (r5_ahead,) = d.take()
        assert r5_ahead.joules[0] < -1e5  # computed with the element back on
        assert d.svc.committed(lambda: d.el.config.mode) == "off"  # … in the model ahead only
        d.settle(4, r4_ahead.joules, confirmed=False)  # not confirmed (whatever the reason): taken back
        r5, r6_ahead = d.take()
        ref.settle(d.window(4), 0, r4_ahead.joules)
        ref.set(mode="auto")
        assert (r5.seq, r5.speculative, r6_ahead.seq) == (5, False, 6)
        assert np.array_equal(r5.joules, ref.request(d.window(5), {})) and np.array_equal(r5.joules, r5_ahead.joules)
        assert d.svc.pending_set == [] and d.el.config.mode == "auto"
        await asyncio.sleep(0.01)  # the state file is written off the settle path

    asyncio.run(main())
    v = d.svc.metrics.values["speculation"]
    assert v == {("kept",): 2, ("rolled_back",): 2}
    assert d.keeper.commits == 5  # windows 0–4, each once, none ahead
    doc = state_file.read(d.keeper.path, d.el, d.keeper.fp)
    assert doc["seq"] == 4 and doc["snapshot"]["state"]["temps"] == ref.state["temps"]
    assert not d.svc.rejections.counts


def test_a_battery_status_goes_out_ahead_after_its_dispatch_answer(tmp_path: Path):
    d = Driver("battery", {"capacity_kwh": 10.0, "soc_initial": 0.5}, tmp_path)
    ref = d.ref
    uri = m.element_uri("battery", "dispatch")

    async def dispatch(seq: int, charge: float) -> m.DispatchResult:
        req = m.DispatchRequest(seq=seq, dt_s=60, n=1, charge_j=np.array([charge]), discharge_j=np.zeros(1))
        res = m.DispatchResult.model_validate(await d.inv.call(uri, req.wire()))
        assert d.take() == []  # the answer first; the status ahead follows from the loop's next turns
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        ref.dispatch(60, np.array([charge]), np.zeros(1))
        return res

    async def main() -> None:
        await d.start()
        d.inv.publish(m.TICK_WINDOW, d.tick(0).wire())
        (s0,) = d.take()
        assert s0.params == ref.params() and not s0.speculative
        await dispatch(0, 60_000.0)
        assert d.take() == []  # nothing known after window 0: nothing ahead
        ref.settle(d.window(0), 0, np.zeros(1))
        d.settle(0, np.array([-60_000.0]), confirmed=False)
        (s1,) = d.take()
        assert s1.params == ref.params() and not s1.speculative
        await dispatch(1, 120_000.0)
        (s2,) = d.take()
        ref.settle(d.window(1), 0, np.zeros(1))
        assert s2.speculative and s2.seq == 2 and s2.params == ref.params()  # the charge of window 1 in it
        d.settle(1, np.array([-120_000.0]), confirmed=True)
        assert d.take() == []  # kept: window 2 started without a status
        await dispatch(2, 30_000.0)
        (s3_ahead,) = d.take()
        d.settle(2, np.array([-30_000.0]), confirmed=False)  # e.g. the dispatch answer came too late
        (s3,) = d.take()
        ref.settle(d.window(2), 0, np.zeros(1))
        assert not s3.speculative and s3.params == ref.params() == s3_ahead.params

    asyncio.run(main())
    assert d.svc.metrics.values["speculation"] == {("kept",): 1, ("rolled_back",): 1}
    assert d.el.state == ref.state and d.keeper.commits == 3
    assert not d.svc.rejections.counts
