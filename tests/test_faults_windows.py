"""Faults on the window side of ``hometwin up`` (issue 18, point 3), against a real Crossbar router
and the real launcher: nothing lost, nothing counted twice, never a hang.

* the inverter is killed (SIGKILL) mid-run with single-step windows (runs of windows and windows in
  flight, elements running ahead in chunks, speculative packets) and with day windows: the restarted
  inverter asks the elements where the run is, answers a tick for a settled window without settling
  it again and goes on after it — the day equals ``hometwin run`` bit for bit, every step recorded once;
* the geyser is killed at a chosen step and the battery mid-run: the launcher restarts them; the
  first continues exactly, the second's missed windows are settled without it (counted);
* the clock is killed mid-run: the restarted clock goes on where the inverter is;
* the geyser is stopped (SIGSTOP) for longer than the timeout: one timeout, then the windows go on
  without awaiting it; after SIGCONT it is back and the day equals the in-process run in which the
  geyser leaves and comes back with the state it had;
* the recorder refuses a second, different ``Flows`` for a recorded step and ignores an exact repeat.

Every wait is bounded (a failure shows the logs); no assertion depends on wall-clock time.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import numpy as np
import pytest

from hometwin.runtime import messages as m
from hometwin.engine import Engine
from hometwin.results import Recorder, RunInfo
from hometwin.runtime.launcher import RecordedSteps
from hometwin.spec import home_context, load_home
from runtime_support import CAPE_TOWN, Up, diff_report, max_diff, wait_until  # noqa: F401
from conftest import WAIT_S

pytestmark = pytest.mark.timeout(600)
DAY = 86400
WAIT_S = 240  # every wait for the twin, generous for a loaded 2-core machine


def _reference(window: int | None, until_s: int = DAY, at: dict[int, Any] | None = None) -> Any:
    eng = Engine(load_home(CAPE_TOWN), window=window, until_s=until_s)
    for step, action in (at or {}).items():
        eng.at(step, action)
    return eng.run()


def _wait_step(up: Up, step: int) -> None:
    """Until the recorder has the steps before ``step`` (polled often: single steps go fast)."""
    try:
        wait_until(lambda: up.launcher.i >= step or up.launcher.done.is_set(), WAIT_S,
                   f"the recorder to pass step {step}", every_s=0.002)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last logs:\n" + "\n".join(up.logs[-60:])) from None
    assert not up.launcher.done.is_set(), "the run ended before the fault could be injected"


def _kill(up: Up, name: str, sig: int = signal.SIGKILL) -> int:
    pid = up.launcher.procs[name].proc.pid
    os.kill(pid, sig)
    return pid


def _restarted(up: Up, name: str, old_pid: int) -> None:
    p = up.launcher.procs[name]
    wait_until(lambda: p.proc is not None and p.proc.pid != old_pid and p.proc.returncode is None, WAIT_S,
               f"the launcher to restart {name}")


def _check_once(up: Up, res: Any, ref: Any, logs: str) -> None:
    """Every step recorded exactly once, as many windows as the reference, nothing refused, SoC finite."""
    n = len(ref.frame)
    assert len(res.frame) == n and res.meta.get("complete", True), logs[-4000:]
    assert up.launcher.recorded.have.all(), np.flatnonzero(~up.launcher.recorded.have)[:20]
    assert res.meta["windows"] == ref.meta["windows"], (res.meta["windows"], ref.meta["windows"])
    assert res.meta["flows_rejected"] == 0, [ln for ln in logs.splitlines() if "Flows refused" in ln][:5]
    assert np.isfinite(res.frame["soc"].to_numpy()).all()
    assert res.kpis()["max_ledger_residual_j"] <= 1e-6


def _killed_at_400_equals_run(router: Any, name: str, **kw: Any) -> str:
    """A day of single-step windows; ``name`` SIGKILLed at step 400 and restarted; every step
    settled once, every element in every step, equal to ``hometwin run``.  Returns the logs."""
    up = Up(router, window=1, until_s=DAY, **kw).start()
    with up.driving():
        _wait_step(up, 400)
        old = _kill(up, name)
        _restarted(up, name, old)
    res, logs = up.finish(WAIT_S)
    assert f"[{name}] exited with code -9" in logs
    ref = _reference(window=1)
    _check_once(up, res, ref, logs)
    assert res.meta["steps_without"] == {}
    assert max_diff(res.frame, ref.frame) <= 1e-9, diff_report(res.frame, ref.frame)
    return logs


def test_a_killed_inverter_resumes_single_step_windows_in_flight(router):  # type: ignore[no-untyped-def]
    """SIGKILL of the inverter mid-run at speed max with ``--window 1``: runs of 16 windows, two in
    flight, elements running ahead in chunks of 60 steps and speculative packets."""
    logs = _killed_at_400_equals_run(router, "inverter", retick_s=3.0)
    assert "resuming the run: window" in logs, logs[-4000:]  # it asked the elements where the run is


def test_a_killed_inverter_resumes_day_windows(router):  # type: ignore[no-untyped-def]
    """Day windows over two days: the inverter is killed just after the second day's tick went out
    (it may or may not have settled it): that day is settled once, and the run equals `hometwin run`."""
    up = Up(router, until_s=2 * DAY, pause_at=1440, retick_s=3.0).start()
    with up.driving():
        up.wait_paused_at(1440, timeout_s=WAIT_S)
        up.call("hometwin.clock.resume")
        old = _kill(up, "inverter")
        _restarted(up, "inverter", old)
    res, logs = up.finish(WAIT_S)
    assert "[inverter] exited with code -9" in logs
    ref = _reference(window=None, until_s=2 * DAY)
    _check_once(up, res, ref, logs)
    assert res.meta["steps_without"] == {}
    assert max_diff(res.frame, ref.frame) <= 1e-9, diff_report(res.frame, ref.frame)


def test_a_killed_geyser_continues_exactly_at_its_step(router):  # type: ignore[no-untyped-def]
    """SIGKILL of the geyser at step 600 (paused there, its state file caught up): restarted, it
    continues from its state; with single-step windows the day equals `hometwin run`."""
    up = Up(router, window=1, until_s=DAY, pause_at=600).start()
    with up.driving():
        up.wait_paused_at(600, timeout_s=WAIT_S)
        import json

        path = up.launcher.state_dir / "geyser.json"
        wait_until(lambda: json.loads(path.read_text())["step"] == 600, WAIT_S, "the geyser's state file at step 600")
        old = _kill(up, "geyser")
        _restarted(up, "geyser", old)
        wait_until(lambda: up.call("hometwin.element.geyser.get")["seq"] == -1, 120, "the restarted geyser")
        wait_until(lambda: "geyser" in up.call("hometwin.roster.get")["elements"], WAIT_S, "the geyser back on the roster")
        up.call("hometwin.clock.resume")
    res, logs = up.finish(WAIT_S)
    assert "[geyser] exited with code -9" in logs
    ref = _reference(window=1)
    _check_once(up, res, ref, logs)
    assert res.meta["steps_without"] == {}
    assert max_diff(res.frame, ref.frame) <= 1e-9, diff_report(res.frame, ref.frame)


def test_a_battery_killed_mid_run_is_settled_without_then_rejoins(router):  # type: ignore[no-untyped-def]
    """SIGKILL of the battery mid-run: the windows until it is back are settled without it (counted
    in ``meta.steps_without``); no step is lost or settled twice, the ledger closes, SoC stays finite,
    and the steps before the kill equal `hometwin run`."""
    up = Up(router, window=1, until_s=DAY, timeout_s=5.0).start()
    with up.driving():
        _wait_step(up, 400)
        old = _kill(up, "battery")
        killed_at = up.launcher.i
        _restarted(up, "battery", old)
    res, logs = up.finish(WAIT_S)
    assert "[battery] exited with code -9" in logs
    ref = _reference(window=1)
    _check_once(up, res, ref, logs)
    without = res.meta["steps_without"]
    assert set(without) <= {"battery"} and without.get("battery", 0) >= 1, without
    assert max_diff(res.frame.iloc[:killed_at], ref.frame.iloc[:killed_at]) <= 1e-9
    gone = res.frame["el.battery_j"].to_numpy() == 0.0
    assert gone.sum() >= without["battery"]  # the steps without it: nothing charged or discharged


def test_a_killed_clock_goes_on_where_the_inverter_is(router):  # type: ignore[no-untyped-def]
    """SIGKILL of the clock mid-run with ticks of runs in flight: the inverter settles what it has;
    the restarted clock asks where the run is and goes on after it. The day equals `hometwin run`."""
    _killed_at_400_equals_run(router, "clock")


def test_a_stopped_geyser_costs_one_timeout_then_rejoins(router):  # type: ignore[no-untyped-def]
    """SIGSTOP of the geyser at 08:00 for an hour of single-step windows (60 windows, each of which
    used to wait the whole timeout): it is stale after one timeout and not awaited again; after
    SIGCONT its packets show it is back and it takes part again from 09:00."""
    hang, back = 480, 540
    up = Up(router, window=1, until_s=DAY, pause_at=hang, timeout_s=5.0).start()
    with up.driving():
        up.wait_paused_at(hang, timeout_s=WAIT_S)
        pid = _kill(up, "geyser", signal.SIGSTOP)
        try:
            up.call("hometwin.clock.run_until", back)
            up.wait_paused_at(back, timeout_s=WAIT_S)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_until(lambda: any("geyser is back" in ln for ln in up.logs), WAIT_S, "the inverter to see the geyser back")
        up.call("hometwin.clock.resume")
    res, logs = up.finish(WAIT_S)
    timeouts = [ln for ln in logs.splitlines() if "no packet from geyser within" in ln]
    assert len(timeouts) == 1, timeouts  # one timeout, not one per window
    assert up.launcher.procs["geyser"].restarts == 0
    assert up.launcher.stale_windows == {"geyser": back - hang}
    assert res.meta["steps_without"] == {"geyser": back - hang}

    gone: dict[str, Any] = {}
    eng = Engine(load_home(CAPE_TOWN), window=1, until_s=DAY)
    order = list(eng.elements)
    eng.at(hang, lambda e: gone.update(g=e.remove("geyser")))

    def rejoin(e: Engine) -> None:
        e.add(gone["g"])
        e.elements = {n: e.elements[n] for n in order}

    eng.at(back, rejoin)
    ref = eng.run()
    _check_once(up, res, ref, logs)
    assert not res.frame["el.geyser_j"].to_numpy()[hang:back].any()
    assert max_diff(res.frame, ref.frame) <= 1e-9, diff_report(res.frame, ref.frame)


# -- the recorder alone -------------------------------------------------------------------------------

def _flows(i0: int, pv: float, seq: int = 0) -> m.Flows:
    cols = {c: np.zeros(2) for c in ("pv_offered_j", "pv_dc_j", "pv_ac_j", "curtailed_j", "load_j", "unserved_j",
                                     "battery_charge_j", "battery_discharge_j", "grid_import_j", "grid_export_j",
                                     "loss_j", "grid_available", "price_import", "price_export", "cost")}
    cols["pv_ac_j"] = np.array([pv, pv])
    cols["load_j"] = np.array([pv, pv])
    return m.Flows(seq=seq, i0=i0, n=2, k=1, dt_s=60, flows=cols, served={"pv": np.array([pv, pv])},
                   roles={"pv": "source"}, soc=None, stale=[], max_residual_j=0.0)


def test_the_recorder_never_overwrites_a_step():  # type: ignore[no-untyped-def]
    home = load_home(CAPE_TOWN)
    rec = Recorder(RunInfo.of_spec(home, home_context(home, DAY)))  # as hometwin up's: Flows and the spec
    steps = RecordedSteps(rec.ctx.n_steps)
    first = _flows(100, 58.4, seq=50)
    assert steps.admit(first, rec) is None
    rec.add(first)  # the recorder reads a Flows as it is
    assert steps.admit(_flows(100, 58.4, seq=50), rec) == "same"  # an exact repeat: ignored
    why = steps.admit(_flows(100, 10_031.0, seq=50), rec)  # a forgery / a second, different settlement
    assert why is not None and "steps 100–101 again" in why
    assert steps.admit(_flows(101, 7.0, seq=51), rec) is not None  # overlaps step 101 with other values
    assert steps.admit(_flows(101, 58.4, seq=51), rec) is None  # step 101 as recorded, and a new step 102
    assert (steps.rejected, steps.ignored) == (2, 1)
    assert rec.cols["pv_ac_j"][100:102].tolist() == [58.4, 58.4]
    assert steps.admit(_flows(rec.ctx.n_steps - 1, 1.0), rec) is not None  # beyond the run


# -- the inverter alone: re-sent ticks after a restart (a stand-in session, no router) ------------------

class _Resumed:
    """A stand-in session whose geyser says it got the Settle of window 40 (steps are windows here)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []
        self._session_id = 1

    def publish(self, uri: str, payload: Any, **_: Any) -> None:
        self.published.append((uri, payload))

    async def call(self, uri: str, *_: Any, **__: Any) -> Any:
        if uri == m.element_uri("geyser", "get"):
            return {"element": "geyser", "settled_seq": 40, "next_step": 41}
        raise RuntimeError(f"no callee for {uri}")

    async def register(self, *_: Any, **__: Any) -> None: ...

    async def subscribe(self, *_: Any, **__: Any) -> None: ...


def test_a_restarted_inverter_answers_settled_ticks_and_holds_one_beyond_a_gap() -> None:
    from hometwin.engine import build_element
    from hometwin.runtime.balancer import Balancer
    from hometwin.spec import home_context

    home = load_home(CAPE_TOWN)
    ctx = home_context(home, DAY)
    t0 = float(ctx.start.timestamp())
    inverter = build_element(next(e for e in home.spec.elements if e.name == "inverter"), ctx)

    def run(seq: int) -> dict[str, Any]:
        return m.Tick(seq=seq, i0=seq, n=1, dt_s=60, t0=t0 + seq * 60, windows=16).wire()

    async def main() -> Any:
        s = _Resumed()
        b = Balancer(inverter, [e.name for e in home.spec.elements], timeout_s=5.0)
        await b.on_join(s)
        assert (b.settled_seq, b.next_step) == (40, 41)
        s.published.clear()
        b.on_tick(run(25))  # windows 25–40, all settled before the restart: TickDone again, nothing settled
        assert [u for u, _ in s.published] == [m.TICK_DONE]
        assert m.TickDone.model_validate(s.published[0][1]).next_step == 41
        b.on_tick(run(49))  # beyond a gap (the run 33–48 went to the dead inverter): held
        assert [u for u, _ in s.published] == [m.TICK_DONE] and list(b.resume.held) == [49]
        b.on_tick(run(33))  # re-sent, settled through 40: opens 41, then the held run follows at 49
        for _ in range(500):
            await asyncio.sleep(0.01)
            if b.settled_seq == 64:
                break
        return b, s

    b, s = asyncio.run(main())
    flows = [m.Flows.model_validate(p) for u, p in s.published if u == m.FLOWS]
    assert [f.i0 for f in flows] == list(range(41, 65))  # each window once, none of 25–40 again
    done = [m.TickDone.model_validate(p) for u, p in s.published if u == m.TICK_DONE]
    assert [(d.seq, d.next_step) for d in done] == [(25, 41), (33, 49), (49, 65)]
    assert b.resume.held == {}


class _ResumedWithBattery(_Resumed):
    """… and whose battery answers ``get`` with its committed charge (SoC 0.55)."""

    async def call(self, uri: str, *args: Any, **kw: Any) -> Any:
        if uri == m.element_uri("battery", "get"):
            return {"element": "battery", "kind": "battery", "telemetry": {"soc": 0.55}}
        return await super().call(uri, *args, **kw)


def test_a_restarted_inverter_takes_the_batterys_soc_for_windows_settled_without_it() -> None:
    from hometwin.engine import build_element
    from hometwin.runtime.balancer import Balancer
    from hometwin.spec import home_context

    home = load_home(CAPE_TOWN)
    inverter = build_element(next(e for e in home.spec.elements if e.name == "inverter"), home_context(home, DAY))

    async def main() -> Balancer:
        b = Balancer(inverter, [e.name for e in home.spec.elements], timeout_s=5.0)
        await b.on_join(_ResumedWithBattery())
        return b

    b = asyncio.run(main())
    # mid-run (the geyser says window 40 is settled): a window the battery misses records SoC 0.55, not NaN
    assert (b.settled_seq, b.last_soc) == (40, 0.55)
