"""Elements that run ahead: a chunk of single-step windows at once, the same flows as in-process.

The services of a home are hosted on an in-memory bus (msgpack as on the wire, events in
order; :class:`runtime_support.MemoryBus`) so that hundreds of single-step windows run in a
second; the real router runs the same protocol in ``test_runtime_equivalence`` and
``test_runtime_switching``.  Compared with :class:`hometwin.engine.Engine` at window 1:

- every window's flows and what each element got, to 1e-9 J;
- an element running ahead wakes once per chunk (its tick and its settlement), not per window;
- a ``set`` inside a chunk counts from the next window (the chunk is published again: a
  revision), also for a producer of signals (weather → roof);
- an element that leaves inside a chunk is gone from the next window; one that joins inside a
  chunk gets the chunk's tick again and takes part from the next window.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from hometwin.runtime import messages as m
from hometwin.auth import element_authid
from hometwin.engine import Engine
from hometwin.registry import element_class
from hometwin.runtime.balancer import Balancer
from hometwin.runtime.service import ElementService
from hometwin.topology import runs_ahead, signal_producers
from hometwin.spec import home_context, load_home
from runtime_support import CAPE_TOWN, MemoryBus

TRONDHEIM = Path(__file__).resolve().parents[1] / "examples" / "homes" / "trondheim.yaml"
CLOCK = 999  # the test's session id: it plays the clock


def test_which_elements_run_ahead():
    """Pure functions of time run ahead; a per-window consumer keeps its producers per window."""
    cape = load_home(CAPE_TOWN)
    assert runs_ahead(cape) == {"sun", "weather", "roof", "grid", "oven", "tv", "kettle", "lights", "fridge", "house"}
    # Trondheim's heat pump (a thermal building, per window) reads the weather and the sun, so
    # those stay per window, and so does the roof that reads them.
    tr = load_home(TRONDHEIM)
    ahead = runs_ahead(tr)
    assert not ahead & {"sun", "weather", "roof", "heat-pump", "battery", "inverter"}
    assert {"grid", "house"} <= ahead
    kinds = {e.name: e.kind for e in tr.spec.elements}
    assert all(getattr(element_class(kinds[n]), "runs_ahead", False) for n in ahead)


class Home:
    """Every enabled element of a home as a hosted service on one bus."""

    def __init__(self, spec: Path, steps: int, ahead_steps: int = 60):
        self.home = load_home(spec)
        self.ctx = home_context(self.home, steps * 60)
        self.bus = MemoryBus()
        self.names = [e.name for e in self.home.spec.elements]
        self.ahead = runs_ahead(self.home)
        self.ahead_steps = ahead_steps
        self.sid = {name: i for i, name in enumerate(self.names, start=1)}
        self.hosts: dict[str, Any] = {}

    def host(self, name: str) -> Any:
        e = next(e for e in self.home.spec.elements if e.name == name)
        el = element_class(e.kind)(e.name, e.config, self.ctx)
        if el.role.value == "converter":
            return Balancer(el, self.names, ahead_steps=self.ahead_steps)
        return ElementService(el, ahead=name in self.ahead, producers=signal_producers(self.home, name))

    async def start(self) -> None:
        for name in self.names:
            self.hosts[name] = self.host(name)
            await self.hosts[name].on_join(self.bus.session(self.sid[name], authid=element_authid(name)))

    async def join(self, name: str, sid: int) -> None:
        self.hosts[name] = self.host(name)
        self.sid[name] = sid
        await self.hosts[name].on_join(self.bus.session(sid, authid=element_authid(name)))

    async def run(self, windows: int, before: dict[int, Callable[[], Any]] | None = None,
                  in_flight: int = 2, drain: bool = True, run_windows: int = 1) -> list[m.Flows]:
        """``windows`` single-step windows, ``in_flight`` ticks out at a time as the clock at speed max
        keeps them, each a run of up to ``run_windows`` windows (a run stops short of an action);
        ``before[seq]`` runs before window ``seq``'s tick, with no window in flight (``drain=False``:
        while the windows before it are in flight).  Every tick must be told done, once."""
        before = before or {}
        clock = self.bus.session(CLOCK)
        got: asyncio.Queue = asyncio.Queue()
        await clock.subscribe(got.put_nowait, m.FLOWS)
        self.done: list[m.TickDone] = []
        await clock.subscribe(lambda p: self.done.append(m.TickDone.model_validate(p)), m.TICK_DONE)
        t0, dt = float(self.ctx.start.timestamp()), self.ctx.step_s
        out: list[m.Flows] = []
        self.ticks: list[m.Tick] = []
        issued = 0
        while len(out) < windows:
            flight = len(self.ticks) - len(self.done)
            while issued < windows and flight < in_flight and not (drain and flight and before.get(issued)):
                action = before.get(issued)
                if action is not None:
                    result = action()
                    if asyncio.iscoroutine(result):
                        await result
                r = 1
                while r < run_windows and issued + r < windows and before.get(issued + r) is None:
                    r += 1
                tick = m.Tick(seq=issued, i0=issued, n=1, dt_s=dt, t0=t0 + issued * dt, windows=r)
                self.ticks.append(tick)
                clock.publish(m.TICK, tick.wire())
                issued += r
                flight += 1
            f = m.Flows.model_validate(await asyncio.wait_for(got.get(), 10))
            assert f.seq == len(out) and f.i0 == len(out) and f.k == 0 and not f.stale
            out.append(f)
        assert [(d.seq, d.windows, d.i0, d.next_step) for d in self.done] == \
            [(t.seq, t.windows, t.i0, t.i0 + t.windows) for t in self.ticks]
        return out

    def received(self, name: str, uri: str) -> int:
        return self.bus.received[(self.sid[name], uri)]


def frame_diff(flows: list[m.Flows], ref: Any) -> float:
    """Largest difference [J] of the home's flows and every element's share against ``ref.frame``."""
    worst = 0.0
    for f in flows:
        row = ref.frame.iloc[f.i0]
        for key in m.FLOW_KEYS:
            a, b = float(f.flows[key][0]), float(row[key])
            if not (np.isnan(a) and np.isnan(b)):
                worst = max(worst, abs(a - b))
        for col in ref.frame.columns:
            if col.startswith("el."):
                name = col[3:-2]
                a = float(f.served[name][0]) if name in f.served else 0.0
                worst = max(worst, abs(a - float(row[col])))
    return worst


def in_process(spec: Path, steps: int, actions: dict[int, Callable[[Engine], Any]] | None = None) -> Any:
    if not actions:
        return _plain(spec, steps)
    eng = Engine(load_home(spec), window=1, until_s=steps * 60)
    for step, action in actions.items():
        eng.at(step, action)
    return eng.run()


@functools.cache
def _plain(spec: Path, steps: int) -> Any:
    """The engine's run without actions: the reference of four tests (600 single-step windows of
    cape-town), run once per module; the tests only read it."""
    return Engine(load_home(spec), window=1, until_s=steps * 60).run()


def test_single_steps_in_chunks_equal_in_process():
    steps = 600  # 00:00-10:00 local: night and a summer morning's PV

    async def main() -> tuple[Home, list[m.Flows]]:
        h = Home(CAPE_TOWN, steps)
        await h.start()
        return h, await h.run(steps)

    h, flows = asyncio.run(main())
    ref = in_process(CAPE_TOWN, steps)
    assert frame_diff(flows, ref) <= 1e-9
    assert ref.frame["el.tv_j"].lt(0).all() and ref.frame["pv_offered_j"].gt(0).any()  # not a run of zeros
    # Running ahead: one tick and one settlement per 60-step chunk, no window ticks.  Per window
    # (the geyser, the battery): a Settle per window, each carrying the next window's tick (the
    # clock keeps two in flight), so only the first tick is relayed; the clock's ticks go to the
    # inverter alone.
    for name in ("tv", "roof", "sun", "grid"):
        assert h.received(name, m.TICK_AHEAD) == steps // 60 and h.received(name, m.SETTLE_AHEAD) == steps // 60, name
        assert h.received(name, m.TICK_WINDOW) == 0 and h.received(name, m.SETTLE) == 0, name
    for name in ("geyser", "battery"):
        assert h.received(name, m.SETTLE) == steps and h.received(name, m.TICK_WINDOW) == 1, name
        assert h.received(name, m.TICK) == 0 and h.received(name, m.TICK_AHEAD) == 0, name
    assert h.received("inverter", m.TICK) == steps
    assert not h.hosts["inverter"].rejections.counts and not h.hosts["geyser"].rejections.counts
    # Settled through the end in chunks, the meters hold what the engine's frame says they got.
    assert h.hosts["tv"].element.state["energy_j"] == pytest.approx(-ref.frame["el.tv_j"].sum(), rel=1e-12)
    assert h.hosts["grid"].element.state["import_j"] == pytest.approx(ref.frame["grid_import_j"].sum(), rel=1e-12)
    assert h.hosts["roof"].element.state["energy_dc_j"] == pytest.approx(ref.frame["el.roof_j"].sum(), rel=1e-12)


def test_runs_of_single_steps_equal_in_process():
    """The clock's ticks as runs of 16 single-step windows (what it sends at speed max): the
    inverter opens them one after another, carries each next tick in the Settle, tells the clock
    once per run (TickDone), and the flows are those of the engine, window by window."""
    steps = 600

    async def main() -> tuple[Home, list[m.Flows]]:
        h = Home(CAPE_TOWN, steps)
        await h.start()
        return h, await h.run(steps, run_windows=16)

    h, flows = asyncio.run(main())
    assert frame_diff(flows, in_process(CAPE_TOWN, steps)) <= 1e-9
    assert [t.windows for t in h.ticks] == [16] * 37 + [8]  # 600 = 37 × 16 + 8
    assert h.received("inverter", m.TICK) == 38 and len(h.done) == 38
    for name in ("geyser", "battery"):  # every window's tick but the first rode in a Settle
        assert h.received(name, m.SETTLE) == steps and h.received(name, m.TICK_WINDOW) == 1, name
    assert not h.hosts["inverter"].rejections.counts and not h.hosts["geyser"].rejections.counts


def test_only_the_inverter_opens_a_run_of_windows():
    """A run of windows on the elements' tick topics is refused and counted: one tick a window there."""

    async def main() -> Home:
        h = Home(CAPE_TOWN, 120)
        await h.start()
        run = m.Tick(seq=0, i0=0, n=1, dt_s=60, t0=float(h.ctx.start.timestamp()), windows=4).wire()
        h.bus.session(CLOCK).publish(m.TICK_WINDOW, run)
        h.bus.session(CLOCK).publish(m.TICK_AHEAD, run)
        return h

    h = asyncio.run(main())
    assert h.hosts["geyser"].rejections.counts[(m.TICK_WINDOW, "out_of_range")] == 1
    assert h.hosts["tv"].rejections.counts[(m.TICK_AHEAD, "out_of_range")] == 1
    assert h.hosts["geyser"].w is None and h.hosts["tv"].w is None  # nothing started


def test_a_set_inside_a_chunk_counts_from_the_next_window():
    """The kettle switched on at window 90 (inside the chunk 60–119) and the weather made
    overcast at window 450, 07:30 (chunk 420–479): the roof, reading the weather ahead, revises too."""
    steps, kettle_at, cloud_at = 600, 90, 450

    async def main() -> list[m.Flows]:
        h = Home(CAPE_TOWN, steps)
        await h.start()
        call = h.bus.session(CLOCK).call

        async def overcast() -> None:
            w = h.hosts["weather"].element.config.source.model_dump()
            await call(m.element_uri("weather", "set"), source={**w, "cloud_cover_mean": 0.95})

        return await h.run(steps, {kettle_at: lambda: call(m.element_uri("kettle", "set"), on=True),
                                   cloud_at: overcast})

    flows = asyncio.run(main())

    def overcast(e: Engine) -> None:
        w = e.elements["weather"].config.source.model_dump()
        e.set("weather", source={**w, "cloud_cover_mean": 0.95})

    ref = in_process(CAPE_TOWN, steps, {kettle_at: lambda e: e.set("kettle", on=True), cloud_at: overcast})
    assert frame_diff(flows, ref) <= 1e-9
    kettle = ref.frame["el.kettle_j"].to_numpy()
    assert not kettle[:kettle_at].any() and (kettle[kettle_at:120] < 0).all()  # (load-shedding from 02:00)
    plain = in_process(CAPE_TOWN, steps)  # the change shows in the roof's output from that window on
    roof, roof0 = ref.frame["el.roof_j"].to_numpy(), plain.frame["el.roof_j"].to_numpy()
    assert np.array_equal(roof[:cloud_at], roof0[:cloud_at]) and not np.array_equal(roof[cloud_at:], roof0[cloud_at:])


def leave_and_join(name: str, steps: int, off_at: int, on_at: int, drain: bool = True,
                   run_windows: int = 1) -> tuple[Home, list[m.Flows]]:
    """``name``'s session leaves before window ``off_at``; a new service of it joins before ``on_at``."""

    async def main() -> tuple[Home, list[m.Flows]]:
        h = Home(CAPE_TOWN, steps)
        await h.start()
        flows = await h.run(steps, {off_at: lambda: h.bus.leave(h.sid[name]), on_at: lambda: h.join(name, 60)},
                            drain=drain, run_windows=run_windows)
        return h, flows

    return asyncio.run(main())


def removed_and_added(name: str, steps: int, off_at: int, on_at: int) -> Any:
    """The engine's run with ``name`` removed at step ``off_at`` and a new one added at ``on_at``."""
    spec = next(e for e in load_home(CAPE_TOWN).spec.elements if e.name == name)

    def back(e: Engine) -> None:
        e.add(element_class(spec.kind)(name, spec.config, e.ctx))

    return in_process(CAPE_TOWN, steps, {off_at: lambda e: e.remove(name), on_at: back})


def test_leaving_and_joining_inside_a_chunk():
    """The TV's session leaves before window 70 and a new TV service joins before window 100
    (both inside a chunk): gone from window 70, back from window 100, as Engine.remove/add."""
    steps, off_at, on_at = 200, 70, 100

    h, flows = leave_and_join("tv", steps, off_at, on_at)
    assert frame_diff(flows, removed_and_added("tv", steps, off_at, on_at)) <= 1e-9
    tv = [f.served.get("tv", np.zeros(1))[0] for f in flows]
    assert all(v < 0 for v in tv[:off_at]) and not any(tv[off_at:on_at]) and all(v < 0 for v in tv[on_at:])
    # the new TV got the chunk's tick again when it joined (60–119), then the chunks 120–179 and
    # 180–199 (the last one ends with the run)
    assert h.received("tv", m.TICK_AHEAD) == 3
    assert h.hosts["tv"].element.state["energy_j"] == pytest.approx(-sum(tv[on_at:]), rel=1e-12)


@pytest.mark.parametrize("run_windows", [1, 16])
def test_a_per_window_element_that_joins_gets_the_tick_relayed_to_it_alone(run_windows: int):
    """With two ticks in flight the next tick rides in the Settle.  The geyser's session leaves
    before window 70 and a new one joins before window 100, both while windows are in flight (two
    single windows, or two runs of up to 16): the newcomer alone gets the tick relayed
    (``hometwin.window.tick`` to its session), the battery keeps starting windows from its Settles,
    nobody sees a window twice, and the flows are the engine's with the geyser removed and added."""
    steps, off_at, on_at = 160, 70, 100

    h, flows = leave_and_join("geyser", steps, off_at, on_at, drain=False, run_windows=run_windows)
    roles = ["geyser" in f.roles for f in flows]
    gone = roles.index(False)
    back_at = gone + roles[gone:].index(True)
    # from a window in flight when it left (joined), or the next
    early = 1 if run_windows == 1 else 2 * run_windows
    assert off_at - early <= gone <= off_at and on_at - early <= back_at <= on_at + 1, (gone, back_at)
    assert frame_diff(flows, removed_and_added("geyser", steps, gone, back_at)) <= 1e-9
    assert all(roles[:gone]) and not any(roles[gone:back_at]) and all(roles[back_at:])
    # the battery: the first tick relayed, every later one in a Settle
    assert h.received("battery", m.TICK_WINDOW) == 1 and h.received("battery", m.SETTLE) == steps
    # the new geyser: its first tick relayed to it alone, the rest in Settles
    assert h.received("geyser", m.TICK_WINDOW) == 1 and h.received("geyser", m.SETTLE) >= steps - back_at
    assert not h.hosts["inverter"].rejections.counts and not h.hosts["battery"].rejections.counts


def test_ahead_packets_are_checked():
    """A chunk packet from an element that does not run ahead, with the wrong length, for an old
    chunk, of the wrong sign, or marked speculative is refused and counted, and the window's flows
    are unchanged."""
    steps = 130

    async def main() -> tuple[Home, list[m.Flows]]:
        h = Home(CAPE_TOWN, steps)
        await h.start()
        joules = lambda v, n: np.full(n, v).tobytes()  # noqa: E731

        def pub(uri: str, payload: dict) -> None:
            """As the element the packet names (its own session): the content is what is wrong."""
            name = payload["element"]
            h.bus.session(h.sid[name], authid=element_authid(name)).publish(uri, payload)

        def garbage() -> None:
            pub(m.REQUEST_AHEAD, {"seq": 60, "element": "geyser", "role": "load", "n": 60, "joules": joules(-5.0, 60)})
            pub(m.REQUEST_AHEAD, {"seq": 60, "element": "tv", "role": "load", "n": 2, "joules": joules(-5.0, 2)})
            pub(m.REQUEST_AHEAD, {"seq": 0, "element": "tv", "role": "load", "n": 60, "joules": joules(-5.0, 60)})
            pub(m.REQUEST_AHEAD, {"seq": 60, "element": "tv", "role": "load", "n": 60, "joules": joules(5.0, 60)})
            pub(m.REQUEST_AHEAD, {"seq": 60, "element": "tv", "role": "source", "n": 60, "joules": joules(5.0, 60)})
            pub(m.SIGNALS_AHEAD, {"seq": 60, "element": "oven", "n": 60, "arrays": {"ghi": joules(1.0, 60)}})
            pub(m.REQUEST_AHEAD, {"seq": 60, "element": "tv", "role": "load", "n": 60, "joules": joules(-5.0, 60),
                                  "speculative": True})  # a chunk is never published ahead

        return h, await h.run(steps, {75: garbage})

    h, flows = asyncio.run(main())
    assert frame_diff(flows, in_process(CAPE_TOWN, steps)) <= 1e-9
    counts = h.hosts["inverter"].rejections.counts
    assert counts[(m.REQUEST_AHEAD, "not_member")] == 1  # the geyser runs per window
    assert counts[(m.REQUEST_AHEAD, "out_of_range")] == 3  # n 2; a load's packet as a source; speculative
    assert counts[(m.REQUEST_AHEAD, "stale_seq")] == 1  # chunk 0 is settled
    assert counts[(m.REQUEST_AHEAD, "invalid")] == 1  # a load offering energy
    assert counts[(m.SIGNALS_AHEAD, "out_of_range")] == 1  # the oven publishes no signals
    # nor does the roof take the oven's "ghi" for its chunk (it reads the sun's and the weather's)
    assert h.hosts["roof"].rejections.counts[(m.SIGNALS_AHEAD, "not_member")] == 1


def test_a_pause_inside_a_chunk_settles_it_so_far():
    """Before the clock pauses it asks the inverter to settle the elements running ahead: at 06:40
    (window 400, inside the chunk 360–419) their meters hold exactly what the engine's frame says
    they got so far; the rest of the chunk is settled later, nothing twice."""
    steps, pause = 600, 400
    seen: dict[str, float] = {}

    async def main() -> tuple[Home, list[m.Flows]]:
        h = Home(CAPE_TOWN, steps)
        await h.start()

        async def pause_here() -> None:
            answer = await h.bus.session(CLOCK).call(m.SETTLE_AHEAD_NOW)
            assert answer == {"settled_to": pause, "chunk": [360, 360, 60]}
            roof = h.hosts["roof"].element.state
            seen.update(tv=h.hosts["tv"].element.state["energy_j"], roof_dc=roof["energy_dc_j"],
                        roof_offered=roof["offered_j"], grid_import=h.hosts["grid"].element.state["import_j"])

        return h, await h.run(steps, {pause: pause_here})

    h, flows = asyncio.run(main())
    ref = in_process(CAPE_TOWN, steps)
    assert frame_diff(flows, ref) <= 1e-9
    before = ref.frame.iloc[:pause]
    assert before["pv_offered_j"].gt(0).any()  # the sun is up: the roof's meters move
    assert seen["tv"] == pytest.approx(-before["el.tv_j"].sum(), rel=1e-12)
    assert seen["roof_dc"] == pytest.approx(before["el.roof_j"].sum(), rel=1e-12)
    assert seen["roof_offered"] == pytest.approx(before["pv_offered_j"].sum(), rel=1e-12)
    assert seen["grid_import"] == pytest.approx(before["grid_import_j"].sum(), rel=1e-12)
    assert h.hosts["tv"].element.state["energy_j"] == pytest.approx(-ref.frame["el.tv_j"].sum(), rel=1e-12)
    assert h.hosts["roof"].element.state["offered_j"] == pytest.approx(ref.frame["pv_offered_j"].sum(), rel=1e-12)
    assert h.received("tv", m.SETTLE_AHEAD) == steps // 60 + 1  # one chunk in two parts
    assert not h.hosts["tv"].rejections.total
