"""Stopping is quiet: a stopped service and a finished ``hometwin up`` print no error noise.

autobahn's asyncio ``Component`` reports a clean close as "Connection failed:
TransportLost" and starts to reconnect; abandoned tasks are reported as "Task was
destroyed but it is pending!" (see :func:`hometwin.runtime.wamp.quiet_stop`).  A user
who sees those after every run learns to ignore errors — so here a real service is
stopped with SIGTERM, and a real ``hometwin up`` (its own Crossbar router, one
process per element) runs to its end, and neither prints any of it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from runtime_support import CAPE_TOWN, ROOT, wait_until
from conftest import WAIT_S

NOISE = ("Traceback", "Connection failed", "trying transport", "Task was destroyed", "Exception in callback",
         "Unhandled error", "never awaited")
MINIMAL = ROOT / "examples" / "homes" / "minimal.yaml"


def noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(n in line for n in NOISE)]


def test_sigterm_stops_a_service_cleanly(router):  # type: ignore[no-untyped-def]
    proc = subprocess.Popen([sys.executable, "-m", "hometwin.cli", "service", "tv", "--name", "tv",
                             "--spec", str(CAPE_TOWN), "--router", router.unix_url,
                             "--credentials", str(router.credentials_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + WAIT_S
        while not any("joined" in line for line in lines):  # the log line once it is on the realm
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(lines)
            lines.append(line)
            assert time.monotonic() < deadline, f"the service did not join within {WAIT_S} s:\n" + "".join(lines)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert noise(text) == [], text


def test_hometwin_up_ends_quietly(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "hometwin.cli", "up", "-f", str(MINIMAL), "--until", "6h",
                           "--window", "60", "--port", "0", "--rawsocket-port", "0", "--out", str(out),
                           "--no-live", "--state-interval", "0"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=dict(os.environ, COLUMNS="400"))  # rich: one log line per line
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    meta = json.loads((out / "kpis.json").read_text())["meta"]
    assert (meta["n_steps"], meta["windows"], meta["runtime"]) == (360, 6, "services")
    assert noise(text) == [], "\n".join(noise(text))
    # --state-interval 0 reached every element: each wrote its state file after each of the
    # 6 settles (its closing log line counts both), and the files are valid from step 360.
    for name in meta["elements"]:
        (kept,) = [line for line in text.splitlines() if f"{name}: state kept in" in line]
        assert f"{name}.json: 6 settles" in kept and ", 6 writes" in kept, kept
        assert json.loads((out / "state" / f"{name}.json").read_text())["step"] == 360, name


def test_ctrl_c_stops_every_process_and_writes_the_run_so_far(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the whole process group: the launcher stops the router and
    every service (none is restarted), and writes the steps settled so far, ledger closed."""
    import psutil

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "hometwin.cli", "up", "-f", str(MINIMAL), "--days", "1",
                             "--speed", "3600", "--port", "0", "--rawsocket-port", "0", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=dict(os.environ, COLUMNS="400"), start_new_session=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        # paced at an hour per second: the live line reports the step once a second
        wait_until(lambda: any(line.startswith("step ") and int(line.split()[1].rstrip(":")) >= 120 for line in err),
                   180, "two simulated hours of the paced run")
        family = psutil.Process(proc.pid).children(recursive=True)  # router (own session) + clock + elements
        assert len(family) >= 7, [p.cmdline()[-6:] for p in family]
        os.killpg(proc.pid, signal.SIGINT)
        stdout, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    reader.join(WAIT_S)
    text = stdout + "".join(err)
    assert proc.returncode == 130, text  # interrupted: 128 + SIGINT, the files hold the steps so far
    gone, alive = psutil.wait_procs(family, timeout=WAIT_S)
    assert alive == [], [p.cmdline()[-6:] for p in alive]
    assert not any("restarting in" in line for line in err), text  # a stopping launcher restarts nothing
    assert noise(text) == [], "\n".join(noise(text))
    meta = json.loads((out / "kpis.json").read_text())["meta"]
    assert meta["complete"] is False and 120 <= meta["n_steps"] < 1440, meta
    assert meta["max_ledger_residual_j"] < 1e-6
    import pandas as pd

    assert len(pd.read_parquet(out / "flows.parquet")) == meta["n_steps"]


def test_ctl_without_a_twin_says_so_in_one_line(router):  # type: ignore[no-untyped-def]
    """``hometwin ctl`` on a realm where nothing runs: exit 1, one clear line naming what is missing."""
    for args, uri in ((["status"], "hometwin.clock.status"), (["set", "oven", "on=true"], "hometwin.element.oven.set")):
        proc = subprocess.run([sys.executable, "-m", "hometwin.cli", "ctl", *args, "--router", router.url,
                               "--realm", "hometwin.minimal", "--credentials", str(router.credentials_dir)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and uri in lines[0] and "hometwin.minimal" in lines[0], proc.stderr
        assert "is the twin running" in lines[0] and noise(proc.stdout + proc.stderr) == [], proc.stderr


def test_a_run_stopped_early_records_only_windows_settled_with_every_element(router):  # type: ignore[no-untyped-def]
    """Stopped mid-run at full speed: the elements get SIGTERM while the clock and the inverter may
    still settle a window or two without them.  Those windows are not the home's: the result ends
    at the last window settled before the stop, and equals the in-process run up to there."""
    from hometwin.engine import Engine
    from hometwin.spec import load_home
    from runtime_support import CAPE_TOWN, Up, max_diff, wait_until

    up = Up(router, window=10, until_s=3 * 86400).start()
    wait_until(lambda: up.loop is not None and up.launcher.i >= 600, 180, "ten simulated hours")
    up.stop()
    res = up.join(120)
    n = len(res.frame)
    assert 600 <= n < 3 * 1440 and res.meta["complete"] is False
    assert res.meta["n_steps"] == n and n % 10 == 0  # whole windows
    ref = Engine(load_home(CAPE_TOWN), window=10, until_s=3 * 86400).run()
    assert max_diff(res.frame, ref.frame.iloc[:n]) <= 1e-9  # no window settled without a stopping element
