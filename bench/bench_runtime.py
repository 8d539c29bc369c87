"""Benchmark: the Cape Town home over a real Crossbar router vs in-process.

0. the delayed-ACK probe: a subscriber gets an event it does not answer, then (2 ms
   later) one it answers; round trip with and without ``acknowledge_at_once``
   (TCP_QUICKACK) — why single-step windows used to take 40+ ms each;
1. single-step windows (the paced path at speed max): ticks per second over the router,
   services on the router's Unix socket (the ``hometwin up`` default) and on TCP RawSocket;
1b. the ceiling of that pattern here: the same processes exchanging the same messages per
   single-step window over the same router (a clock at nice 10 keeping two ticks in flight,
   each a run of 16 windows to the inverter alone, which says when a run is done; settle →
   geyser, battery, carrying the next tick; the geyser's request and the battery's status; the
   dispatch RPC; Flows → recorder; every 60 windows the chunk's tick, packets and settle of the
   ten elements that run ahead) with
   handlers that do nothing — what the router and the wake-ups alone allow; in the first round
   also the pattern before elements ran ahead (the clock's tick → 13 elements, one window in
   flight, 43 deliveries per window).
   For both, the CPU time each process spends per window (from /proc, over the steady part
   of the run): the twin's elements against the do-nothing processes shows what the
   handlers cost in place (``bench_handlers.py`` shows why that is several times their cost
   in one process);
2. the year at 1-minute steps with automatic windows (a day per window at max speed),
   against the in-process run of the same year measured in this script.

Appends the figures to bench/RESULTS.md.  Usage:

    python bench/bench_runtime.py [--ticks 2880] [--days 365] [--skip-year] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from typing import Any
from pathlib import Path

import results  # bench/results.py (the script's folder is on sys.path)
# At module level only what 7a1e38d (before issue 22) has too: bench_ab.py runs single_step and
# year_over_services on older trees (the runtime's messages, for one, moved since; main imports them).
import hometwin.runtime  # noqa: F401
from hometwin.engine import Engine
from hometwin.runtime.launcher import Launcher
from hometwin.runtime.wamp import autobahn_errors_only
from hometwin.spec import load_home

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "homes" / "cape-town.yaml"


# -- CPU time of every process (Linux /proc) ----------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                out += kids
                todo += kids
        except OSError:
            pass
    return out


def _role(pid: int) -> str:
    """What a process of the run is: the element's name, clock, router, or (a bench child) process."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    if "--name" in argv:
        return argv[argv.index("--name") + 1]
    if "clock" in argv:
        return "clock"
    if any("crossbar" in a for a in argv):
        return "router"
    return "process"


class CpuSampler:
    """Samples every descendant's CPU time (user + system) twice a second, so the CPU each
    process spends per window can be taken over the steady part of a run (not its startup)."""

    def __init__(self) -> None:
        self.samples: dict[int, list[tuple[float, float]]] = {}
        self.roles: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.perf_counter()
            for pid in _descendants(os.getpid()):
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                self.samples.setdefault(pid, []).append((now, (int(fields[11]) + int(fields[12])) / _TICK))
                if pid not in self.roles:
                    self.roles[pid] = _role(pid)
            self._stop.wait(0.5)

    def per_window_ms(self, t_from: float, t_to: float, windows_per_s: float,
                      names: dict[int, str] | None = None) -> dict[str, list[float]]:
        """ms of CPU per window, by role (several processes of a role: one figure each); ``names``
        overrides the role of a pid (forked services all show the fork server's command line)."""
        out: dict[str, list[float]] = {}
        for pid, xs in self.samples.items():
            xs = [x for x in xs if t_from <= x[0] <= t_to]
            if len(xs) >= 2 and xs[-1][0] > xs[0][0]:
                rate = (xs[-1][1] - xs[0][1]) / (xs[-1][0] - xs[0][0])
                role = (names or {}).get(pid, self.roles[pid])
                out.setdefault(role, []).append(rate / windows_per_s * 1e3)
        return out


def _cpu_line(cpu: dict[str, list[float]], elements: list[str] | None) -> str:
    router = sum(cpu.get("router", []))
    if elements is None:  # the ceiling: one do-nothing process per element, inverter, recorder
        each = sorted(cpu.get("process", []))
        total = router + sum(each)
        return (f"router {router:.2f} ms, each do-nothing process {statistics.median(each):.2f} ms "
                f"(median; the busiest {each[-1]:.2f}), all {total:.1f} ms") if each else "n/a"
    els = [v for n in elements for v in cpu.get(n, [])]
    inv = sum(cpu.get("inverter", []))
    total = router + inv + sum(cpu.get("clock", [])) + sum(els)
    return (f"router {router:.2f} ms, inverter {inv:.2f} ms, clock {sum(cpu.get('clock', [])):.2f} ms, each "
            f"element {statistics.median(els):.2f} ms (median; {min(els):.2f}–{max(els):.2f}), "
            f"all {total:.1f} ms") if els else "n/a"


def services(window: int | None, until_s: int, transport: str = "unix") -> tuple[Launcher, object, float]:
    logs: list[str] = []
    la = Launcher(spec_path=SPEC, window=window, until_s=until_s, port=0, rawsocket_port=0, live=False,
                  transport=transport, log_sink=lambda n, c, line: logs.append(f"[{n}] {line}"))
    t0 = time.perf_counter()
    res = asyncio.run(la.run())
    return la, res, time.perf_counter() - t0


def single_step(ticks: int, transport: str = "unix") -> tuple[float, Launcher, float]:
    """Single-step windows over the router: ticks per second from the first Flows to the last (the
    startup of the processes and the router not counted), the launcher, and the run's whole time."""
    la, res, total = services(1, ticks * 60, transport)
    span = la.t_last_flows - la.t_first_flows
    return ((la.windows - 1) / span if span > 0 else float("nan")), la, total


def year_over_services(days: float) -> tuple[float, float, float, int]:
    """``days`` at 1-minute steps with automatic windows over services against in-process: the
    services' time from the first Flows to the last, the in-process run's, the services' time with
    startup, and the number of windows.  The ratio of the first two is the figure."""
    until = int(days * 86400)
    t0 = time.perf_counter()
    Engine(load_home(SPEC), until_s=until).run()
    t_in = time.perf_counter() - t0
    la, res, total = services(None, until)
    return la.t_last_flows - la.t_first_flows, t_in, total, la.windows


class _OpenRole:
    """The do-nothing pattern's own URIs (``p.*``, ``probe.*``) for one principal of its own: the
    measurement of the router, not of the home's roles (whose cost the twin's rounds include)."""

    def crossbar(self) -> dict:
        return {"name": "bench", "permissions": [{"uri": "", "match": "prefix", "allow": {
            "call": True, "register": True, "publish": True, "subscribe": True},
            "disclose": {"caller": False, "publisher": False}, "cache": True}]}


OPEN = _OpenRole()
BENCH_SECRETS = {"bench": __import__("secrets").token_urlsafe(32)}  # forked children share it


def _bench_credentials() -> object:
    from hometwin.runtime.wamp import Credentials

    return Credentials("bench", BENCH_SECRETS["bench"])


def _probe_subscriber(url: str, realm: str, quick_ack: bool) -> None:
    from hometwin.runtime.wamp import component, run_component

    comp = component(url, realm, quick_ack=quick_ack, credentials=_bench_credentials())

    @comp.on_join
    async def joined(session, details):  # type: ignore[no-untyped-def]
        await session.subscribe(lambda x: None, "probe.settle")  # not answered, like a Settle
        await session.subscribe(lambda x: session.publish("probe.pong", x), "probe.tick")
        # answer the prober's query: a "ready" published once could come before it subscribed
        await session.subscribe(lambda: session.publish("probe.ready", quick_ack), "probe.query")

    run_component(comp)


def run_session(url: str, realm: str, body: Any) -> None:
    """Join ``realm`` at ``url``, ``await body(session)``, leave — also when ``body`` fails, so that
    a failed measurement ends instead of waiting forever."""
    from hometwin.runtime.wamp import component, run_component

    comp = component(url, realm, credentials=_bench_credentials())
    stop = asyncio.Event()

    @comp.on_join
    async def joined(session, details):  # type: ignore[no-untyped-def]
        try:
            await body(session)
        finally:
            stop.set()

    run_component(comp, stop)


def delayed_ack_probe(rounds: int = 40) -> dict[bool, float]:
    """Mean round trip (ms) of settle → 2 ms → tick → pong, subscriber with/without quick ACKs."""
    import multiprocessing as mp

    from hometwin.runtime.router import Router

    realm = "hometwin.probe"
    out: dict[bool, float] = {}
    with Router(realm=realm, roles=[OPEN], secrets=BENCH_SECRETS) as r:
        for quick in (False, True):
            sub = mp.Process(target=_probe_subscriber, args=(r.url, realm, quick), daemon=True)
            sub.start()

            async def probe(session):  # type: ignore[no-untyped-def]
                q: asyncio.Queue = asyncio.Queue()
                ready = asyncio.get_running_loop().create_future()
                await session.subscribe(lambda x: q.put_nowait(x), "probe.pong")
                await session.subscribe(lambda x: ready.done() or ready.set_result(x), "probe.ready")
                for _ in range(200):  # up to 60 s for the subscriber to join
                    session.publish("probe.query")
                    await asyncio.sleep(0.3)
                    if ready.done():
                        break
                await asyncio.wait_for(ready, 1)
                await asyncio.sleep(0.5)
                t0 = time.perf_counter()
                for i in range(rounds):
                    session.publish("probe.settle", "x" * 200)
                    await asyncio.sleep(0.002)
                    session.publish("probe.tick", i)
                    await q.get()
                out[quick] = (time.perf_counter() - t0) / rounds * 1e3

            run_session(r.url, realm, probe)
            sub.terminate()
            sub.join()
    return out


# -- 1b: the message pattern alone ---------------------------------------------------------------

#: Cape Town's elements and what each does per window: publishes signals (sig), needs signals
#: (in), publishes a request (req) or the storage status and serves the dispatch RPC (storage).
PATTERN = {"sun": "sig", "weather": "sig+in", "grid": "sig", "roof": "req+in", "battery": "storage",
           "oven": "req", "tv": "req", "kettle": "req", "lights": "req", "fridge": "req", "geyser": "req",
           "house": "req"}
_PAY = b"x" * 64


def _pattern_element(url: str, realm: str, name: str, what: str, ahead: bool = False, relay: bool = False) -> None:
    """One element of the pattern: per window (tick → packet, settle) or, running ahead, per chunk
    (``p.atick`` → packet on ``p.areq``/``p.asig``, ``p.asettle``).  ``relay`` (the protocol now):
    a per-window element's tick comes in the last window's settle (``next``) or, when it did not,
    relayed by the inverter (``p.wtick``); otherwise (before) straight from the clock (``p.tick``)."""
    from hometwin.runtime.wamp import component, run_component

    comp = component(url, realm, credentials=_bench_credentials())
    a = "a" if ahead else ""

    @comp.on_join
    async def joined(session, details):  # type: ignore[no-untyped-def]
        need = {"weather": {"sun"}, "roof": {"sun", "weather"}}.get(name, set())
        got: set[str] = set()

        def go(seq: int) -> None:
            if "sig" in what:
                session.publish(f"p.{a}signals", name, seq, _PAY)
            if "req" in what or what == "storage":
                session.publish(f"p.{a}req", name, seq, _PAY)

        def tick(seq: int) -> None:
            got.clear()
            if not need:
                go(seq)

        def signals(src: str, seq: int, payload: bytes) -> None:
            if src in need:
                got.add(src)
                if got == need:
                    go(seq)

        def settle(seq: int, payload: bytes, nxt: int = -1) -> None:
            if nxt >= 0:
                tick(nxt)

        await session.subscribe(tick, "p.atick" if ahead else "p.wtick" if relay else "p.tick")
        await session.subscribe(settle, f"p.{a}settle")
        if need:
            await session.subscribe(signals, f"p.{a}signals")
        if what == "storage":
            await session.register(lambda seq, payload: payload, "p.dispatch")
        await session.subscribe(lambda: session.publish("p.ready", name), "p.query")

    run_component(comp)


def _pattern_inverter(url: str, realm: str, per_window: int, ahead: int, chunk: int, relay: bool) -> None:
    """Waits for the tick and the packets of a window (and, at a chunk's first window, the chunk's),
    calls the dispatch RPC, publishes settle and Flows (and, at a chunk's end, the chunk's settle).
    ``relay`` (the protocol now): a tick is a run of windows, opened one after another, and its last
    one settled is told to the clock (``p.done``); ticks that come while a window is open wait, and
    ride in its settle as ``next``; one that did not is relayed to the elements per window (``p.wtick``)."""
    from hometwin.runtime.wamp import component, run_component

    comp = component(url, realm, credentials=_bench_credentials())

    @comp.on_join
    async def joined(session, details):  # type: ignore[no-untyped-def]
        got: dict[int, set[str]] = {}
        ticks: list[int] = []  # ticked, not yet settled: the open window first
        ends: set[int] = set()  # the last window of each run
        carried = [-1]

        def needed(seq: int) -> int:
            return per_window + (ahead if ahead and seq % chunk == 0 else 0)

        async def settle(seq: int) -> None:
            await session.call("p.dispatch", seq, _PAY)
            ticks.pop(0)
            nxt = ticks[0] if relay and ticks else -1
            session.publish("p.settle", seq, _PAY * 4, nxt)
            carried[0] = nxt
            session.publish("p.flows", seq, _PAY * 8)
            if seq in ends:
                ends.discard(seq)
                session.publish("p.done", seq)
            if ahead and (seq + 1) % chunk == 0:
                session.publish("p.asettle", seq, _PAY * 4)
            if ticks:
                open_(ticks[0])

        def ready(seq: int) -> None:
            if ticks and ticks[0] == seq and len(got.get(seq, ())) == needed(seq):
                del got[seq]
                asyncio.ensure_future(settle(seq))

        def packet(name: str, seq: int, payload: bytes) -> None:
            got.setdefault(seq, set()).add(name)
            ready(seq)

        def open_(seq: int) -> None:
            if ahead and seq % chunk == 0:
                session.publish("p.atick", seq)
            if relay and carried[0] != seq:
                session.publish("p.wtick", seq)
            ready(seq)

        def tick(seq: int, windows: int = 1) -> None:
            opened = bool(ticks)
            ticks.extend(range(seq, seq + windows))
            if relay:
                ends.add(seq + windows - 1)
            if not opened:
                open_(seq)

        for topic in ("p.req", "p.signals", "p.areq", "p.asignals"):
            await session.subscribe(packet, topic)
        await session.subscribe(tick, "p.tick")
        await session.subscribe(lambda: session.publish("p.ready", "inverter"), "p.query")

    run_component(comp)


def _pattern_recorder(url: str, realm: str) -> None:
    from hometwin.runtime.wamp import component, run_component

    comp = component(url, realm, credentials=_bench_credentials())

    @comp.on_join
    async def joined(session, details):  # type: ignore[no-untyped-def]
        await session.subscribe(lambda seq, payload: None, "p.flows")
        await session.subscribe(lambda: session.publish("p.ready", "recorder"), "p.query")

    run_component(comp)


def _pattern_clock(url: str, realm: str, ticks: int, in_flight: int, nice: int, out: Any, run: int = 0) -> None:
    """The clock of the pattern: ``in_flight`` ticks out at a time, the next on each Flows — or,
    ``run`` > 0 (the protocol now), each tick a run of ``run`` windows, the next when the inverter
    says one is done (``p.done``); puts (windows per second, t_from, t_to) over the steady part into ``out``."""
    if nice:
        os.nice(nice)  # as hometwin up starts the clock (--clock-nice)

    async def pattern(session):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        ready: set[str] = set()
        done = loop.create_future()
        marks: dict[int, float] = {}
        await session.subscribe(lambda name: ready.add(name), "p.ready")

        sent = [0]  # windows ticked so far

        def send() -> None:
            n = min(run or 1, ticks - sent[0])
            if n > 0:
                if run:
                    session.publish("p.tick", sent[0], n)
                else:
                    session.publish("p.tick", sent[0])
                sent[0] += n

        def flows(seq: int, payload: bytes = b"") -> None:
            marks[seq] = time.perf_counter()
            if seq + 1 >= ticks:
                done.done() or done.set_result(None)
            else:
                send()

        await session.subscribe(flows, "p.done" if run else "p.flows")
        while len(ready) < len(PATTERN) + 2:
            session.publish("p.query")
            await asyncio.sleep(0.3)
        await asyncio.sleep(0.5)
        for _ in range(in_flight):
            send()
        await asyncio.wait_for(done, 600)
        warm = min(s for s in marks if s >= min(50, ticks // 10))
        out.put(((ticks - 1 - warm) / (marks[ticks - 1] - marks[warm]), marks[warm], marks[ticks - 1]))

    run_session(url, realm, pattern)


def message_pattern_ceiling(ticks: int, ahead: set[str] | frozenset = frozenset(), chunk: int = 60,
                            now: bool = True) -> tuple[float, float, float]:
    """Single-step windows per second of the home's message pattern with do-nothing handlers, and
    the perf_counter span they were measured over.  ``ahead``: the elements that run ahead (one
    tick, one packet and one settle per ``chunk`` windows).  ``now``: the protocol as it is (ticks
    of runs of RUN_WINDOWS windows, two in flight, from a clock at nice 10 to the inverter alone, which
    says when a run is done; the next tick in the settle); else as before any of that (every tick
    from the clock to every element per window, one in flight, the clock waiting for each Flows)."""
    import multiprocessing as mp

    from hometwin.runtime.messages import RUN_WINDOWS
    from hometwin.runtime.router import Router

    realm = "hometwin.pattern"
    with Router(realm=realm, unix=True, roles=[OPEN], secrets=BENCH_SECRETS) as r:
        url = r.unix_url
        procs = [mp.Process(target=_pattern_element, args=(url, realm, n, w, n in ahead, now), daemon=True)
                 for n, w in PATTERN.items()]
        per_window = len([n for n in PATTERN if n not in ahead])
        procs += [mp.Process(target=_pattern_inverter, args=(url, realm, per_window, len(PATTERN) - per_window, chunk,
                                                             now), daemon=True),
                  mp.Process(target=_pattern_recorder, args=(url, realm), daemon=True)]
        for p in procs:
            p.start()
        out = mp.Queue()
        clock = mp.Process(target=_pattern_clock, args=(url, realm, ticks, 2 if now else 1, 10 if now else 0, out,
                                                        RUN_WINDOWS if now else 0))
        clock.start()
        result = out.get(timeout=900)
        clock.join(30)
        for p in procs:
            p.terminate()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=2880)
    ap.add_argument("--days", type=float, default=365)
    ap.add_argument("--skip-year", action="store_true")
    ap.add_argument("--rounds", type=int, default=1, help="alternate twin (unix) and ceiling this many times")
    a = ap.parse_args()
    from hometwin.runtime.messages import AHEAD_STEPS
    from hometwin.topology import runs_ahead

    autobahn_errors_only(sys.stderr)  # the bench's own sessions (and their forked children) as the services
    lines = []
    probe = delayed_ack_probe()
    lines.append(f"- delayed-ACK probe (unanswered event, 2 ms, answered event; TCP RawSocket): round trip "
                 f"{probe[False]:.1f} ms without quick ACKs, {probe[True]:.1f} ms with them "
                 f"(**{probe[False] / probe[True]:.0f}×**)")
    print(lines[-1], flush=True)
    eng = Engine(load_home(SPEC), window=1, until_s=a.ticks * 60)
    t0 = time.perf_counter()
    eng.run()
    tps_in = a.ticks / (time.perf_counter() - t0)
    elements = [e.name for e in load_home(SPEC).spec.elements if e.kind != "inverter"]

    def single_step_line(transport: str) -> float:
        with CpuSampler() as cpu:
            tps, la, total = single_step(a.ticks, transport)
        span = la.t_last_flows - la.t_first_flows
        names = {p.proc.pid: name for name, p in la.procs.items() if p.proc is not None}  # "clock" too
        lines.append(f"- single-step windows, {a.ticks} ticks over the router ({transport}): **{tps:.0f} ticks/s** "
                     f"(goal ≥ 300; in-process the same windows: {tps_in:.0f} ticks/s, ratio {tps_in / tps:.1f}×; "
                     f"startup of {len(la.procs)} processes + router {total - span:.1f} s not counted); CPU per "
                     f"window: " + _cpu_line(cpu.per_window_ms(la.t_first_flows + 1, la.t_last_flows - 1, tps, names),
                                             elements))
        print(lines[-1], flush=True)
        return tps

    # Twin and ceiling alternate, round after round: other tenants' load moves both alike, so
    # the ratio of a round is the figure to compare; the median over the rounds is reported.
    ratios = []
    ahead = runs_ahead(load_home(SPEC))
    for r in range(a.rounds):
        twin = single_step_line("unix")
        with CpuSampler() as cpu:
            ceiling, t_from, t_to = message_pattern_ceiling(a.ticks, ahead, AHEAD_STEPS)
        ratios.append(twin / ceiling)
        lines.append(f"- the same message pattern per single-step window with do-nothing handlers (16 processes, "
                     f"{len(ahead)} of them running ahead in chunks of {AHEAD_STEPS}; unix): **{ceiling:.0f} ticks/s** "
                     f"— the ceiling the router and the wake-ups allow here; the twin (unix) reaches {ratios[-1]:.0%} "
                     f"of it" + (f" (round {r + 1})" if a.rounds > 1 else "")
                     + "; CPU per window: " + _cpu_line(cpu.per_window_ms(t_from, t_to, ceiling), None))
        print(lines[-1], flush=True)
        if r == 0:
            with CpuSampler() as cpu:
                before, t_from, t_to = message_pattern_ceiling(a.ticks, now=False)
            lines.append(f"- for comparison, the pattern before elements ran ahead (every element ticked by the clock "
                         f"and settled per window, one window in flight, 43 deliveries) with do-nothing handlers: "
                         f"**{before:.0f} ticks/s**; the twin "
                         f"reaches {twin / before:.0%} of it; CPU per window: "
                         + _cpu_line(cpu.per_window_ms(t_from, t_to, before), None))
            print(lines[-1], flush=True)
    if a.rounds > 1:
        lines.append(f"- twin / ceiling over {a.rounds} alternating rounds: median **{statistics.median(ratios):.0%}** "
                     f"(" + ", ".join(f"{x:.0%}" for x in ratios) + ")")
        print(lines[-1], flush=True)
    single_step_line("rawsocket")
    if not a.skip_year:
        span, t_in, total, windows = year_over_services(a.days)
        lines.append(f"- {a.days:g} days at 1-minute steps, automatic windows ({windows} windows): services "
                     f"{span:.1f} s (first to last Flows; {total:.1f} s with startup) vs in-process {t_in:.1f} s → "
                     f"**{span / t_in:.1f}×** (with startup {total / t_in:.1f}×; goal within 10×)")
        print(lines[-1], flush=True)
    results.append(lines)


if __name__ == "__main__":
    main()
