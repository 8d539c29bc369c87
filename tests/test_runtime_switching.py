"""Runtime changes: properties set over RPC and an element switched off, at window boundaries.

The same actions in-process (``Engine.at(step, action)``) give identical flows:

    step 840 (14:00)  oven.on = true, inverter.mode = self_use     (set RPCs while paused)
    step 1110 (18:30) oven's process stopped (ctl off)             (roster: oven left)
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from hometwin.engine import Engine
from hometwin.spec import load_home
from runtime_support import CAPE_TOWN, Up, max_diff, wait_until  # noqa: F401
from conftest import WAIT_S

pytestmark = pytest.mark.timeout(400)
SET_AT, OFF_AT = 840, 1110


def _set(eng: Engine) -> None:
    eng.set("oven", on=True)
    eng.set("inverter", mode="self_use")


def ctl_run(up: Up, *args: str) -> subprocess.CompletedProcess:
    """``hometwin ctl …`` as a user types it, against the running twin."""
    return subprocess.run([sys.executable, "-m", "hometwin.cli", "ctl", *args, "--router", up.router.url,
                           "--realm", up.realm, "--credentials", str(up.router.credentials_dir)],
                          capture_output=True, text=True, timeout=120)


def ctl(up: Up, *args: str) -> Any:
    """The JSON answer of a ``hometwin ctl`` command that must succeed."""
    proc = ctl_run(up, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_set_and_switch_off_at_window_boundaries(router):  # type: ignore[no-untyped-def]
    up = Up(router, window=1440, until_s=86400, pause_at=SET_AT).start()
    up.wait_paused_at(SET_AT, timeout_s=180)
    assert ctl(up, "set", "oven", "on=true")["values"] == {"on": True}  # the CLI, as a user would
    assert up.call("hometwin.element.inverter.set", mode="self_use")["values"] == {"mode": "self_use"}
    refused = ctl_run(up, "set", "inverter", "mode=turbo")  # refused, nothing queued: one line naming the field
    assert refused.returncode == 1 and "hometwin.error.invalid_property" in refused.stderr, refused.stderr
    assert "mode" in refused.stderr and "self_use" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    refused = ctl_run(up, "set", "oven", "colour=red")
    assert refused.returncode == 1 and "not settable: colour" in refused.stderr and "(settable: " in refused.stderr
    up.call("hometwin.clock.run_until", OFF_AT)
    up.wait_paused_at(OFF_AT)
    assert ctl(up, "off", "oven")["oven"]["wanted"] is False
    roster = wait_until(lambda: (lambda r: r if "oven" not in r["elements"] else None)(up.call("hometwin.roster.get")),
                        WAIT_S, "the oven to leave the roster")
    assert "oven" in roster["left"]
    status = ctl(up, "status")
    assert status["clock"]["paused"] and status["clock"]["i"] == OFF_AT and "oven" not in status["roster"]["elements"]
    up.call("hometwin.clock.resume")
    res = up.join(240)

    eng = Engine(load_home(CAPE_TOWN), window=1440, until_s=86400)
    eng.at(SET_AT, _set)
    eng.at(OFF_AT, lambda e: e.remove("oven"))
    ref = eng.run()
    assert max_diff(res.frame, ref.frame) <= 1e-9
    oven = res.frame["el.oven_j"].to_numpy()
    assert (oven[SET_AT:OFF_AT] < 0).all()  # on from the boundary …
    assert not oven[OFF_AT:].any()  # … and gone from the next window after it left
    assert res.meta["steps_without"] == {"oven": 1440 - OFF_AT}  # the run's own account of it
    assert res.kpis()["max_ledger_residual_j"] <= 1e-6
    assert len(res.frame) == 1440  # the run went on


def test_single_step_windows_identical_with_a_set(router):  # type: ignore[no-untyped-def]
    """Window 1 (the paced path) for 3 h, with a property change at a boundary, equals in-process.

    The kettle runs ahead (it computes 60 steps at once): a change at step 90, inside its
    second chunk, is published as a revision and must still count from that very window."""
    steps, at = 180, 90
    up = Up(router, window=1, until_s=steps * 60, pause_at=at).start()
    up.wait_paused_at(at, timeout_s=180)
    up.call("hometwin.element.kettle.set", on=True)
    up.call("hometwin.clock.resume")
    res = up.join(240)
    eng = Engine(load_home(CAPE_TOWN), window=1, until_s=steps * 60)
    eng.at(at, lambda e: e.set("kettle", on=True))
    ref = eng.run()
    assert max_diff(res.frame, ref.frame) <= 1e-9
    kettle = res.frame["el.kettle_j"].to_numpy()
    assert not kettle[:at].any() and (kettle[at:] < 0).all()
    assert np.isfinite(res.frame["soc"]).all()


def test_a_repeated_tick_keeps_the_window_a_set_waits_for_the_next():
    """The clock re-publishes a tick nobody settled (a restarted inverter): the element publishes the
    same request again; a property set in between applies at the next window, not inside this one."""
    from hometwin.runtime import messages as m
    from hometwin.engine import Engine
    from hometwin.runtime.service import ElementService
    from hometwin.spec import load_home
    from runtime_support import CAPE_TOWN

    class Recorder:  # the session's publish side; what the router would deliver to the inverter
        def __init__(self) -> None:
            self.sent: list[tuple[str, dict]] = []

        def publish(self, uri: str, payload: dict) -> None:
            self.sent.append((uri, payload))

    eng = Engine(load_home(CAPE_TOWN), until_s=86400)
    svc = ElementService(eng.elements["oven"])
    svc.session = Recorder()
    start = eng.ctx.start.timestamp()
    i0 = 3 * 60  # 03:00, the oven is off
    tick = m.Tick(seq=7, i0=i0, n=60, dt_s=60, t0=start + i0 * 60).wire()

    def requests() -> list[float]:
        return [float(np.sum(m.EnergyRequest.model_validate(p).joules))
                for uri, p in svc.session.sent if uri == m.REQUEST]

    svc.on_tick(tick)
    first = requests()
    assert len(first) == 1
    svc.rpc_set(on=True)  # arrives mid-window
    svc.on_tick(tick)  # the same window again
    assert requests() == first * 2  # identical request: the set did not leak into this window
    assert svc.pending_set == [{"on": True}]
    svc.on_settle(m.Settle(seq=7, i0=i0, n=60, k=59, served={"oven": np.zeros(60)}, participants=["oven"]).wire())
    svc.on_tick(m.Tick(seq=8, i0=i0 + 60, n=60, dt_s=60, t0=start + (i0 + 60) * 60).wire())
    assert svc.pending_set == [] and requests()[-1] < first[0] - 1e5  # now on: it draws (more) power
