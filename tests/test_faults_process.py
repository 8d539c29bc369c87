"""Faults of the processes around a run, against the real Crossbar router and the real launcher.

- The router is SIGKILLed: the launcher starts it again on the same ports and socket, every
  service leaves quietly (one line, exit code 75), is started again and rejoins; the run then
  either finishes equal to ``hometwin run`` (but for steps counted in ``meta.steps_without``),
  or ends with a clear failure, its files holding only steps equal to ``hometwin run`` — never
  a hang, never a step overwritten.  A router that keeps dying ends the run after the restarts
  allowed.
- The launcher is SIGKILLed: its reaper stops every process of its tree (Crossbar and its
  worker, the fork server and the services forked from it, the resource tracker) and removes
  the router's temporary folder.
- SIGINT/SIGTERM of ``hometwin up`` and ``hometwin run``: exit 130/143, the steps settled so far
  written (``meta.partial``).  An unwritable ``--out`` is refused before the run (exit 2); a
  late write failure leaves the last checkpoint whole and exits 4.
- Two launchers on the same ports, the same home twice on one router: refused before anything
  starts, in one line.

Every wait is bounded (a failure shows the logs); nothing here depends on wall-clock speed.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest
from typer.testing import CliRunner

from hometwin.runtime import messages as m
from hometwin.cli import app
from hometwin.engine import Engine
from hometwin.results import Result
from hometwin.runtime import launcher as launcher_mod
from hometwin.runtime.launcher import Launcher, PortsInUse
from hometwin.spec import load_home
from runtime_support import CAPE_TOWN, Up, diff_report, free_ports, max_diff, wait_until
from conftest import WAIT_S

pytestmark = pytest.mark.timeout(420)
ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "examples" / "homes" / "minimal.yaml"
CLI = [sys.executable, "-m", "hometwin.cli"]
ENV = dict(os.environ, COLUMNS="400")  # rich: one log line per line


class OwnUp(Up):
    """``hometwin up`` with its own router (the launcher watches it), in a background thread; a
    wait that fails ends the run and shows the last logs."""

    def __init__(self, **kwargs: Any):
        super().__init__(None, spec=kwargs.pop("spec", CAPE_TOWN), **kwargs)

    def text(self, last: int = 80) -> str:
        return "\n".join(self.logs[-last:])

    def wait(self, pred: Any, timeout_s: float, what: str) -> Any:
        try:
            return wait_until(pred, timeout_s, what)
        except AssertionError as exc:
            self.end()
            raise AssertionError(f"{exc}; last logs:\n{self.text()}") from None

    def end(self) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.launcher.stop, "ended by the test")
            self.thread.join(120)

    def join(self, timeout_s: float) -> Any:
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            self.end()
            raise AssertionError(f"hometwin up did not end within {timeout_s} s; last logs:\n{self.text()}")
        if self.error is not None:
            raise self.error
        return self.result


def _reference(spec: Path, window: int, until_s: int) -> Any:
    return Engine(load_home(spec), window=window, until_s=until_s).run()


def _same_but_steps_without(res: Any, ref: Any, before: int) -> None:
    """Equal to ``hometwin run`` over every step when every element was settled in every window; when some
    windows were settled without an element (``steps_without``, said in words), equal up to the fault at
    step ``before`` — after it the home took another path — and the battery's SoC known at every step (a
    restarted inverter takes it from the battery, not NaN)."""
    n = len(res.frame)
    if not res.meta["steps_without"]:
        assert max_diff(res.frame, ref.frame.iloc[:n]) <= 1e-9, diff_report(res.frame, ref.frame.iloc[:n])
    else:
        assert max_diff(res.frame.iloc[:before], ref.frame.iloc[:before]) <= 1e-9, res.meta["steps_without"]
    soc = res.frame["soc"].to_numpy()
    assert not np.isnan(soc).any(), f"SoC unknown at {np.flatnonzero(np.isnan(soc))[:10]}"
    assert ((soc >= 0.0) & (soc <= 1.0)).all()


# -- the router dies ---------------------------------------------------------------------------

def test_a_killed_router_is_started_again_and_the_run_goes_on_or_stops_in_words() -> None:
    until = 86400
    up = OwnUp(window=60, until_s=until, pause_at=720, retick_s=5.0, timeout_s=10.0).start()
    up.wait(lambda: up.launcher._joined.is_set() and up.call(m.clock_uri("status"))["i"] == 720
            and up.call(m.clock_uri("status"))["paused"], 240, "the clock to pause at step 720")
    # the launcher knows it (the clock's status event, once a second): it restarts the clock paused
    up.wait(lambda: up.launcher.clock_status.get("paused") and up.launcher.clock_status.get("i") == 720, WAIT_S,
            "the launcher to see the pause")
    old = up.launcher.router.proc.pid
    cbdir = Path(up.launcher.router.cbdir)
    killed_at = len(up.logs)
    os.killpg(old, signal.SIGKILL)  # crossbar and its router worker
    up.wait(lambda: up.launcher.router_restarts == 1 and up.launcher.router.proc is not None
            and up.launcher.router.proc.pid != old and up.launcher.router.proc.poll() is None, 120,
            "the launcher to start the router again")
    enabled = set(up.launcher._enabled)
    up.wait(lambda: set(up.call(m.ROSTER_GET)["elements"]) >= enabled, 180, "every element back on the roster")
    # the restarted clock came back paused (the launcher starts it with --paused): resume it
    up.wait(lambda: up.call(m.clock_uri("status"))["paused"], 120, "the restarted clock")
    up.call(m.clock_uri("resume"))
    res = up.join(300)
    after = up.logs[killed_at:]
    text = "\n".join(after)
    # quiet: no traceback, one "lost the router" line per service, a few lines each at most
    assert "Traceback" not in text and "Connection failed" not in text, text
    for name in up.launcher.procs:
        lost = [line for line in after if line.startswith(f"[{name}]") and "lost the router" in line]
        assert len(lost) == 1, (name, lost)
    assert len(after) < 20 * len(up.launcher.procs), text  # (the issue saw 3,300 lines in 3 minutes)
    assert res.meta["router_restarts"] == 1
    ref = _reference(CAPE_TOWN, 60, until)
    print(f"after the router's restart: {len(res.frame)} steps, failed: {up.launcher.failed}")
    if up.launcher.failed:  # stopped in words, the steps recorded before are the right ones
        assert res.meta["partial"]["steps_settled"] == len(res.frame)
        assert len(res.frame) >= 720
        assert max_diff(res.frame, ref.frame.iloc[:len(res.frame)]) <= 1e-9
    else:  # or it went on to the end
        assert res.meta.get("partial") is None and len(res.frame) == 1440, res.meta
        assert res.meta["flows_rejected"] == 0  # no window settled twice with other numbers
        _same_but_steps_without(res, ref, before=720)
    assert not cbdir.exists()  # removed when the run ended


def test_a_router_that_keeps_dying_ends_the_run_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher_mod, "ROUTER_RESTARTS", 0)  # the first exit is one too many
    up = OwnUp(spec=MINIMAL, window=60, until_s=86400, pause_at=120).start()
    up.wait(lambda: up.launcher._joined.is_set() and up.call(m.clock_uri("status"))["paused"], 240,
            "the clock to pause")
    os.killpg(up.launcher.router.proc.pid, signal.SIGKILL)
    res = up.join(120)
    assert up.launcher.failed and "exited with code -9, 1 times within 60 s; not starting it again" in up.launcher.failed
    assert res.meta["partial"]["steps_settled"] == len(res.frame) == 120
    assert res.meta["complete"] is False and up.launcher.ended_early == up.launcher.failed


# -- the launcher dies -------------------------------------------------------------------------

def _tree(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def test_a_killed_launcher_leaves_no_process_and_no_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(CLI + ["up", "-f", str(CAPE_TOWN), "--days", "1", "--speed", "3600", "--port", "0",
                                   "--rawsocket-port", "0", "--out", str(out), "--no-state"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=ENV,
                            start_new_session=True)
    err: list[str] = []
    threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    family: list[psutil.Process] = []
    try:
        wait_until(lambda: any(line.startswith("step ") for line in err) or proc.poll() is not None, 240,
                   "the first settled window")
        assert proc.poll() is None, "".join(err)
        family[:] = _tree(proc.pid)
        names = [" ".join(p.cmdline()[:3]) for p in family]
        # crossbar (controller + worker), the reaper, the fork server, the resource tracker, 14 services
        assert len(family) >= 18, names
        sock = re.search(r"services on rs\+unix://(\S+)/\.crossbar/router\.sock", "".join(err))
        assert sock, "".join(err)
        node = Path(sock.group(1))
        assert node.exists()
        proc.kill()
        proc.wait(30)
        gone, alive = psutil.wait_procs(family, timeout=WAIT_S)
        assert alive == [], [p.cmdline()[:4] for p in alive]
        wait_until(lambda: not node.exists(), WAIT_S, f"the router's folder {node} to be removed")
    finally:  # (what a failing test leaves: the processes it saw)
        for p in family:
            try:
                p.kill()
            except psutil.Error:
                pass
        if proc.poll() is None:
            proc.kill()


# -- interrupted: SIGINT / SIGTERM -------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_hometwin_up_interrupted_exits_128_plus_the_signal_and_writes_the_run_so_far(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(CLI + ["up", "-f", str(MINIMAL), "--days", "1", "--speed", "3600", "--port", "0",
                                   "--rawsocket-port", "0", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=ENV)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_until(lambda: any(line.startswith("step ") and int(line.split()[1].rstrip(":")) >= 60 for line in err)
                   or proc.poll() is not None, 240, "an hour of the paced run")
        assert proc.poll() is None, "".join(err)
        family = _tree(proc.pid)
        proc.send_signal(sig)  # the launcher alone (not its group): it stops the others
        stdout, rest = proc.communicate(timeout=120)  # (the end of stderr, where the reader had not got)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(WAIT_S)
    text = stdout + "".join(err) + (rest or "")
    assert proc.returncode == 128 + sig, text
    assert psutil.wait_procs(family, timeout=WAIT_S)[1] == []
    meta = json.loads((out / "kpis.json").read_text())["meta"]
    n = meta["n_steps"]
    assert meta["complete"] is False and meta["partial"] == {"steps_settled": n, "steps_asked": 1440,
                                                             "why": {2: "Ctrl-C", 15: "SIGTERM"}[sig]}
    assert 60 <= n < 1440 and len(pd.read_parquet(out / "flows.parquet")) == n
    assert len(pd.read_csv(out / "flows.csv")) == n
    assert f"stopped after {n} of 1440 steps" in text
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def _run_cli(args: list[str]) -> Any:
    return CliRunner().invoke(app, args, catch_exceptions=False)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_hometwin_run_interrupted_exits_128_plus_the_signal_and_writes_the_windows_settled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int) -> None:
    """The signal comes (to this process, the handlers are the command's) while window 5 of 24 is
    settled: the run stops after it and writes those 5 windows."""
    windows: list[int] = []
    step_window = Engine.step_window

    def counted(self: Engine) -> Any:
        rec = step_window(self)
        windows.append(rec.window.seq)
        if len(windows) == 5:
            os.kill(os.getpid(), sig)
        return rec

    monkeypatch.setattr(Engine, "step_window", counted)
    out = tmp_path / "out"
    r = _run_cli(["run", "-f", str(CAPE_TOWN), "--days", "1", "--window", "60", "--out", str(out), "-q"])
    assert r.exit_code == 128 + sig, r.output
    assert len(windows) == 5  # no window after the signal
    meta = json.loads((out / "kpis.json").read_text())["meta"]
    assert meta["partial"]["steps_settled"] == meta["n_steps"] == 300 and meta["partial"]["steps_asked"] == 1440
    ref = _reference(CAPE_TOWN, 60, 86400)
    assert max_diff(pd.read_parquet(out / "flows.parquet"), ref.frame.iloc[:300]) == 0.0


# -- where the results go ----------------------------------------------------------------------

@pytest.mark.parametrize("command", ["run", "up"])
def test_an_unwritable_out_is_refused_before_the_run(tmp_path: Path, command: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"  # cannot be made, not even by root
    args = ["--port", "0", "--rawsocket-port", "0", "--no-live"] if command == "up" else []
    proc = subprocess.run(CLI + [command, "-f", str(MINIMAL), "--days", "0.1", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=ENV)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert f"cannot write results to {out}: Not a directory; nothing was run" in " ".join(text.split()), text
    assert "crossbar up" not in text and "Traceback" not in text


def test_a_late_write_failure_keeps_the_last_checkpoint_and_exits_4(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint after every window; the final write fails half-way (a full disk, once
    flows.parquet is written): the folder keeps the last checkpoint, whole and consistent."""
    import hometwin.results as results

    monkeypatch.setattr(results, "CHECKPOINT_MIN_S", 0.0)
    monkeypatch.setattr(results, "CHECKPOINT_SHARE", 1e9)
    write = Result.write

    def full_disk(self: Result, out_dir: Any, report: bool = False, **kw: Any) -> Any:
        if self.meta.get("partial") is None:  # the final write
            def fail(*_: Any, **__: Any) -> None:
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr("pyarrow.csv.write_csv", fail)
        return write(self, out_dir, report, **kw)

    monkeypatch.setattr(Result, "write", full_disk)
    out = tmp_path / "out"
    r = _run_cli(["run", "-f", str(CAPE_TOWN), "--days", "1", "--window", "60", "--out", str(out), "-q"])
    assert r.exit_code == 4, r.output
    said = " ".join(r.output.split())
    assert "could not write the results" in said and "No space left on device" in said
    assert "keeps the checkpoint of the first 1380 of 1440 steps" in said
    meta = json.loads((out / "kpis.json").read_text())["meta"]
    assert meta["partial"]["steps_settled"] == 1380 and meta["n_steps"] == 1380
    frame = pd.read_parquet(out / "flows.parquet")  # not the final one, written before the failure
    assert len(frame) == 1380 and len(pd.read_csv(out / "flows.csv")) == 1380
    assert sorted(p.name for p in out.iterdir()) == ["flows.csv", "flows.parquet", "kpis.json"]  # no temp file
    ref = _reference(CAPE_TOWN, 60, 86400)
    assert max_diff(frame, ref.frame.iloc[:1380]) == 0.0


# -- refused before anything starts ------------------------------------------------------------

def test_a_second_launcher_on_the_same_ports_is_refused_in_one_line(tmp_path: Path) -> None:
    ws = free_ports(2)
    rs = ws + 1
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", rs))
        taken.listen()
        la = Launcher(spec_path=MINIMAL, port=ws, rawsocket_port=rs, live=False)
        with pytest.raises(PortsInUse, match=rf"--rawsocket-port \(RawSocket\) {rs} is in use on 127.0.0.1 by "
                                             rf"pid {os.getpid()} "):
            la.check_router_ports()
        proc = subprocess.run(CLI + ["up", "-f", str(MINIMAL), "--days", "0.1", "--port", str(ws), "--rawsocket-port",
                                     str(rs), "--out", str(tmp_path / "out"), "--no-live"],
                              capture_output=True, text=True, timeout=120, env=ENV)
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, text
    assert f"--rawsocket-port (RawSocket) {rs} is in use on 127.0.0.1 by pid {os.getpid()}" in text
    assert "another hometwin up?" in text and "Address already in use" not in text and "crossbar up" not in text


def test_the_same_home_twice_on_one_router_is_refused_in_words(router, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = Up(router, spec=MINIMAL, window=60, until_s=86400, pause_at=60).start()
    with first.driving():
        first.wait_paused_at(60, timeout_s=240)
        logs: list[str] = []
        second = Launcher(spec_path=MINIMAL, router_url=router.url, window=60, until_s=86400, live=False,
                          credentials_dir=router.credentials_dir, log_sink=lambda name, color, line: logs.append(line))
        res = asyncio.run(asyncio.wait_for(second.run(), 120))
        assert second.failed == (f"realm hometwin.minimal on {router.url} already has an inverter, a clock: this home "
                                 "runs there already (another hometwin up, or the operator); stop it first, or use "
                                 "another router")
        assert second.procs == {} and second.state_dir is None  # nothing was started or touched
        assert len(res.frame) == 0
        # the command: exit 3, the reason in words, nothing written
        proc = subprocess.run(CLI + ["up", "-f", str(MINIMAL), "--router", router.url, "--days", "1", "--no-live",
                                     "--credentials", str(router.credentials_dir),
                                     "--out", str(tmp_path / "second")], capture_output=True, text=True,
                              timeout=120, env=ENV)
        text = " ".join((proc.stdout + proc.stderr).split())
        assert proc.returncode == 3, text
        assert f"realm hometwin.minimal on {router.url} already has an inverter" in text, text
        assert "nothing written" in text and not (tmp_path / "second" / "kpis.json").exists()
        assert first.clock()["paused"] and first.clock()["i"] == 60  # the first run is untouched
        first.call(m.clock_uri("resume"))
    res1 = first.join(240)
    assert len(res1.frame) == 1440


def test_a_run_that_ends_before_its_last_step_says_so(router) -> None:  # type: ignore[no-untyped-def]
    """``hometwin.run.done`` before the end (forged, or a clock that gave up): the result is cut at
    the last step recorded, ``meta.partial`` says why, and ``ended_early`` makes ``up`` exit 3."""
    up = Up(router, spec=MINIMAL, window=60, until_s=86400, pause_at=120).start()
    with up.driving():
        up.wait_paused_at(120, timeout_s=240)
        up.loop.call_soon_threadsafe(up.launcher.done.set)  # what an early run.done does (Launcher.on_done)
    res = up.join(120)
    why = "the run ended at step 120 of 1440 without a failure reported (hometwin.run.done before the end)"
    assert up.launcher.ended_early == why and not up.launcher.failed and not up.launcher.interrupted
    assert len(res.frame) == 120 and res.meta["complete"] is False
    assert res.meta["partial"] == {"steps_settled": 120, "steps_asked": 1440, "why": why}
