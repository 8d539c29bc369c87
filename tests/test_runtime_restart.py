"""The crash/restart path of ``hometwin up`` against a real Crossbar router, and state that
survives a restart (``--state-dir``).

(a) the geyser hangs (SIGSTOP) at 08:00, the window 08:00–09:00 is settled without it after
    the inverter's timeout (stale, counted), then it is killed (SIGKILL); the launcher
    restarts it and it continues from its state file — its tank temperature right after
    the restart is the one it had settled at 08:00, not the config's 60 °C.  The whole day
    equals the in-process run in which the geyser leaves at 08:00 and comes back at 09:00
    with the state it had: bit for bit.
(b) the inverter is killed (SIGKILL) at noon and the clock resumed at once: the tick goes
    out while no inverter listens, the clock publishes it again (``retick_s``) once the
    restarted inverter's roster is whole, and the day equals ``hometwin run`` exactly.
(c) the clock is killed while paused at noon: the restarted clock asks the inverter where the run
    is and goes on with the next window (not window 0 again), and the day equals ``hometwin run``.
(d) ``hometwin service --state-dir``: a corrupt state file and one written for another
    config are refused with a log line and moved aside (the element starts from its
    config); a matching one is restored.

The crashes happen at known steps: the clock is paused there (``pause_at``/``run_until``).
Waits are generous; no assertion depends on wall-clock time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hometwin.engine import Engine, build_element
from hometwin.runtime import state as sf
from hometwin.runtime.cli import call
from hometwin.spec import home_context, load_home
from runtime_support import CAPE_TOWN, Up, free_ports, max_diff, scrape, wait_until  # noqa: F401
from conftest import WAIT_S

pytestmark = pytest.mark.timeout(400)
HANG_AT, BACK_AT = 480, 540  # 08:00 (after the morning draws, the element timer off) and 09:00
KILL_INVERTER_AT = 720


def _state(up: Up, name: str) -> dict[str, Any]:
    return json.loads((up.launcher.state_dir / f"{name}.json").read_text())


def test_a_killed_element_is_restarted_and_continues_from_its_state(router):  # type: ignore[no-untyped-def]
    up = Up(router, window=60, until_s=86400, pause_at=HANG_AT, timeout_s=3.0, metrics_port=free_ports(32)).start()
    with up.driving():
        up.wait_paused_at(HANG_AT, timeout_s=180)
        # the geyser's file catches up with its last settle (writes are spaced, at most 1 s)
        wait_until(lambda: _state(up, "geyser")["step"] == HANG_AT, WAIT_S, "the geyser's state file at step 480")
        before = up.call("hometwin.element.geyser.get")["telemetry"]["temp_water"]
        saved = _state(up, "geyser")["snapshot"]["state"]
        assert before == float(np.mean(saved["temps"]))
        assert before < 59.0  # the morning draws cooled the tank below its initial 60 °C

        old_pid = up.launcher.procs["geyser"].proc.pid
        os.kill(old_pid, signal.SIGSTOP)  # hangs: still on the roster, sends nothing
        up.call("hometwin.clock.run_until", BACK_AT)
        up.wait_paused_at(BACK_AT)  # 08:00–09:00 settled without it after the 3 s timeout
        roster = up.call("hometwin.roster.get")
        assert "geyser" in roster["stale"]
        stale = scrape(up.metrics_port("inverter"))
        assert stale['hometwin_elements_stale_total{element="inverter",missing="geyser"}'] == 1.0
        assert up.launcher.stale_windows == {"geyser": 1}

        os.kill(old_pid, signal.SIGKILL)
        wait_until(lambda: up.launcher.procs["geyser"].restarts == 1 and up.launcher.procs["geyser"].proc.pid != old_pid,
                   WAIT_S, "the launcher to restart the geyser")
        # the new process (its last seq is -1: it has seen no tick yet) …
        got = wait_until(lambda: (lambda g: g if g["seq"] == -1 else None)(up.call("hometwin.element.geyser.get")),
                         120, "the restarted geyser's get RPC")
        # … has the tank of its last settle before the crash, not the config's 60 °C
        assert got["telemetry"]["temp_water"] == before
        assert got["telemetry"]["temp_water"] != got["config"]["setpoint_c"] == 60
        wait_until(lambda: "geyser" in up.call("hometwin.roster.get")["elements"], WAIT_S, "the geyser back on the roster")
        up.call("hometwin.clock.resume")
    res, logs = up.finish(240)
    assert "[geyser] exited with code -9" in logs
    assert f"geyser: restored state from {up.launcher.state_dir / 'geyser.json'}: valid from step {HANG_AT}" in logs
    assert f"first window after the restart starts at step {BACK_AT}; the restored state is from step {HANG_AT}" in logs

    assert len(res.frame) == 1440 and res.meta.get("complete", True)
    assert res.kpis()["max_ledger_residual_j"] <= 1e-6
    geyser = res.frame["el.geyser_j"].to_numpy()
    assert not geyser[HANG_AT:BACK_AT].any()  # the window it missed was settled without it
    assert geyser[BACK_AT:BACK_AT + 60].min() < -2000.0 * 60  # at 09:00 its element heats the cooled tank

    # in-process: the geyser leaves at 08:00 and comes back at 09:00 with the state it had
    eng = Engine(load_home(CAPE_TOWN), window=60, until_s=86400)
    gone: dict[str, Any] = {}
    order = list(eng.elements)
    eng.at(HANG_AT, lambda e: gone.update(g=e.remove("geyser")))

    def back(e: Engine) -> None:
        e.add(gone["g"])
        e.elements = {n: e.elements[n] for n in order}  # spec order, as the balancer keeps it

    eng.at(BACK_AT, back)
    ref = eng.run()
    assert max_diff(res.frame, ref.frame) <= 1e-9


def test_a_killed_inverter_is_restarted_and_the_clock_ticks_again(router):  # type: ignore[no-untyped-def]
    up = Up(router, window=60, until_s=86400, pause_at=KILL_INVERTER_AT, retick_s=3.0).start()
    with up.driving():
        up.wait_paused_at(KILL_INVERTER_AT, timeout_s=180)
        old_pid = up.launcher.procs["inverter"].proc.pid
        os.kill(old_pid, signal.SIGKILL)
        wait_until(lambda: up.launcher.procs["inverter"].proc.returncode is not None
                   or up.launcher.procs["inverter"].restarts == 1, WAIT_S, "the launcher to see the inverter die")
        up.call("hometwin.clock.resume")  # the noon tick goes out while no inverter listens
    res, logs = up.finish(300)
    assert up.launcher.procs["inverter"].restarts == 1
    assert "[inverter] exited with code -9" in logs
    assert "tick 12 not done after 3.0 s: publishing it again" in logs
    assert "tick 12 published again" in logs
    assert "inverter: restored state from" in logs  # its telemetry (last flows) came back too

    assert len(res.frame) == 1440
    assert res.kpis()["max_ledger_residual_j"] <= 1e-6
    assert up.launcher.stale_windows == {}
    ref = Engine(load_home(CAPE_TOWN), window=60, until_s=86400).run()
    assert max_diff(res.frame, ref.frame) <= 1e-9  # nobody lost a window: the crash left no trace


def test_a_killed_clock_is_restarted_and_goes_on_where_the_run_is(router):  # type: ignore[no-untyped-def]
    """The clock is killed (SIGKILL) while paused at noon; the launcher restarts it and, instead of
    ticking window 0 again (which every service would refuse as stale, forever), it asks the
    inverter where the run is and goes on with window 12 at step 720: the day equals `hometwin run`."""
    up = Up(router, window=60, until_s=86400, pause_at=KILL_INVERTER_AT).start()
    with up.driving():
        up.wait_paused_at(KILL_INVERTER_AT, timeout_s=180)
        old_pid = up.launcher.procs["clock"].proc.pid
        os.kill(old_pid, signal.SIGKILL)
        wait_until(lambda: up.launcher.procs["clock"].restarts == 1 and up.launcher.procs["clock"].proc.pid != old_pid,
                   WAIT_S, "the launcher to restart the clock")
        # the new clock pauses where the old one was told to (the launcher starts it with --pause-at)
        st = up.wait_paused_at(KILL_INVERTER_AT, timeout_s=120)
        assert st["seq"] == 12 and st["i"] == KILL_INVERTER_AT
        up.call("hometwin.clock.resume")
    res, logs = up.finish(300)
    assert "[clock] exited with code -9" in logs
    assert "the inverter settled window 11 before this clock started: going on with window 12 at step 720" in logs
    assert len(res.frame) == 1440 and res.meta.get("complete", True)
    assert res.kpis()["max_ledger_residual_j"] <= 1e-6
    ref = Engine(load_home(CAPE_TOWN), window=60, until_s=86400).run()
    assert max_diff(res.frame, ref.frame) <= 1e-9  # no window lost or run twice


def test_a_clock_paused_by_ctl_comes_back_paused_after_a_crash(router):  # type: ignore[no-untyped-def]
    """No --pause-at here: the clock is paused over RPC (``hometwin ctl`` run_until 05:00), then
    killed; the restarted clock must not run on by itself."""
    up = Up(router, window=60, until_s=86400, speed="3600").start()  # paced: step 300 is ~5 s away
    with up.driving():
        wait_until(lambda: up.call("hometwin.clock.run_until", 300), 120, "the clock to take run_until")
        st = up.wait_paused_at(300)  # paused over RPC, not by an argument of its command line
        wait_until(lambda: up.launcher.clock_status.get("paused"), WAIT_S, "the launcher to see the pause")
        old_pid = up.launcher.procs["clock"].proc.pid
        os.kill(old_pid, signal.SIGKILL)
        wait_until(lambda: up.launcher.procs["clock"].proc.pid != old_pid, WAIT_S, "the launcher to restart the clock")
        again = wait_until(lambda: (lambda s: s if s["paused"] and s["i"] == st["i"] else None)(up.clock()), 120,
                           "the restarted clock, paused where it was")
        assert again["seq"] == st["seq"]
        up.call("hometwin.clock.set_speed", "max")  # the rest of the day at full speed
        up.call("hometwin.clock.resume")
    res, logs = up.finish(300)
    assert "[clock] exited with code -9" in logs
    assert len(res.frame) == 1440
    ref = Engine(load_home(CAPE_TOWN), window=60, until_s=86400).run()
    assert max_diff(res.frame, ref.frame) <= 1e-9


# -- (c) the service's --state-dir, one process against the router ---------------------------------

REALM = "hometwin.minimal"  # a realm of the shared router no other test runs a home in


def _geyser_file(state_dir: Path, temp_c: float | None = None, **config: Any) -> Path:
    home = load_home(CAPE_TOWN)
    spec = next(e for e in home.spec.elements if e.name == "geyser")
    el = build_element(spec, home_context(home, None))
    if config:
        el = type(el)(el.name, dict(el.config.model_dump(), **config), el.home)
    if temp_c is not None:
        el.state["temps"] = [temp_c] * len(el.state["temps"])  # the whole tank at temp_c
    keeper = sf.StateKeeper(state_dir, el, interval_s=0)
    keeper.committed(seq=5, i0=240, k=59)
    return keeper.path


def _serve_geyser(router: Any, state_dir: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "hometwin.cli", "service", "geyser", "--name", "geyser", "--spec", str(CAPE_TOWN),
           "--router", router.url, "--realm", REALM, "--state-dir", str(state_dir),
           "--credentials", str(router.credentials_dir)]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _get_from(proc: subprocess.Popen, log: Path, router: Any) -> dict[str, Any]:
    try:
        wait_until(lambda: "joined" in log.read_text() or proc.poll() is not None, WAIT_S, "the geyser service to join")
        assert proc.poll() is None, log.read_text()  # it did not crash
        return wait_until(lambda: call(router.url, REALM, "hometwin.element.geyser.get", timeout_s=5,
                                               credentials=router.credentials("viewer")), WAIT_S,
                          "the geyser's get RPC")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("case", ["corrupt", "other config", "matching"])
def test_the_service_refuses_a_bad_state_file_and_restores_a_good_one(router, tmp_path, case):  # type: ignore[no-untyped-def]
    state_dir = tmp_path / "state"
    if case == "corrupt":
        path = _geyser_file(state_dir, temp_c=41.5)
        path.write_text(path.read_text()[:-40])  # a torn write (what os.replace prevents)
    elif case == "other config":
        path = _geyser_file(state_dir, temp_c=41.5, setpoint_c=55.0)
    else:
        path = _geyser_file(state_dir, temp_c=41.5)
    log = tmp_path / "geyser.log"
    got = _get_from(_serve_geyser(router, state_dir, log), log, router)
    text = log.read_text()
    if case == "matching":
        assert f"geyser: restored state from {path}: valid from step 300 (window 5 settled through step 299)" in text
        assert got["telemetry"]["temp_water"] == 41.5
        assert path.exists() and not path.with_name("geyser.json.refused").exists()
    else:
        why = "corrupt: not JSON" if case == "corrupt" else "written for another config or home"
        line = next(ln for ln in text.splitlines() if "refused" in ln)
        assert "ERROR hometwin.state: geyser: state file" in line and why in line, line
        assert "moved to geyser.json.refused — starting from the config" in line
        assert got["telemetry"]["temp_water"] == 60.0  # the config's initial temperature
        assert not path.exists() and path.with_name("geyser.json.refused").exists()
