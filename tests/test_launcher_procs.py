"""The launcher's process keeping, with plain processes standing in for services (no router):
one process per element however a restart and ``ctl on`` meet, and a log line too long for
the reader does not stop the reading."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from hometwin.deploy import ServiceCommand
from hometwin.runtime.launcher import Launcher, Proc
from runtime_support import ROOT
from conftest import WAIT_S

MINIMAL = ROOT / "examples" / "homes" / "minimal.yaml"
SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(120)"]


def launcher(logs: list[str], **kw: object) -> Launcher:
    return Launcher(spec_path=MINIMAL, live=False, log_sink=lambda name, color, line: logs.append(f"[{name}] {line}"),
                    **kw)  # type: ignore[arg-type]


def stand_in(la: Launcher, name: str, argv: list[str]) -> Proc:
    p = la.procs[name] = Proc(ServiceCommand(name, "tv", "load", ()), argv, "cyan")
    return p


def count_spawns(la: Launcher) -> list[int]:
    started: list[int] = []
    spawn = la._spawn

    async def counted(p: Proc) -> None:
        await spawn(p)
        started.append(p.proc.pid)  # type: ignore[union-attr]

    la._spawn = counted  # type: ignore[method-assign]
    return started


async def _stop_all(la: Launcher) -> None:
    la.stopping = True
    for p in la.procs.values():
        await la._stop_proc(p)


@pytest.mark.timeout(60)
def test_ctl_on_during_a_restart_wait_starts_one_process_not_two() -> None:
    logs: list[str] = []
    la = launcher(logs)
    started = count_spawns(la)

    async def main() -> list[bool]:
        p = stand_in(la, "tv", SLEEPER)
        await la._spawn(p)
        first = p.proc
        first.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        await first.wait()  # type: ignore[union-attr]
        while not any("restarting in" in line for line in logs):  # the crash is seen: a restart is due
            await asyncio.sleep(0.01)
        await la.switch("tv", True)  # ctl on meanwhile: it is not running, so it starts
        await asyncio.sleep(1.5)  # past the 0.5 s restart delay
        alive = [p.proc.returncode is None]  # type: ignore[union-attr]
        await _stop_all(la)
        return alive

    alive = asyncio.run(main())
    assert len(started) == 2, logs  # the first start and ctl on's; the restart saw it running
    assert alive == [True]


@pytest.mark.timeout(60)
def test_a_log_line_longer_than_the_reader_takes_does_not_stop_the_log() -> None:
    logs: list[str] = []
    la = launcher(logs, restart=False)
    code = "import sys; print('x' * 300_000, flush=True); print('after the long line', flush=True); sys.exit(3)"

    async def main() -> None:
        p = stand_in(la, "tv", [sys.executable, "-c", code])
        await la._spawn(p)
        await asyncio.wait_for(p.pump, WAIT_S)  # type: ignore[arg-type]

    asyncio.run(main())
    assert "[tv] (a log line too long to show was left out)" in logs, logs[:5]
    assert "[tv] after the long line" in logs and "[tv] exited with code 3" in logs, logs[:5]


@pytest.mark.timeout(60)
def test_the_restart_delay_doubles_in_a_crash_loop_and_resets_after_a_good_run() -> None:
    logs: list[str] = []
    la = launcher(logs)

    async def main() -> None:
        p = stand_in(la, "tv", SLEEPER)
        await la._spawn(p)
        for n in range(4):
            proc = p.proc
            if n == 3:
                p.started_at -= 3600  # this one ran an hour before it crashed
            proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            while p.proc is proc:  # the pump restarts it after its delay
                await asyncio.sleep(0.01)
        await _stop_all(la)

    asyncio.run(main())
    delays = [line.split("restarting in ")[1].split(" s")[0] for line in logs if "restarting in" in line]
    assert delays[:3] == ["0.5", "1.0", "2.0"], logs
    assert delays[3] == "0.5", logs
