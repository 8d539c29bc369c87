"""Services forked from the pre-imported server behave as the command run on its own.

``hometwin up`` forks its service processes from one server that imported the runtime once
(:mod:`hometwin.runtime.zygote`).  A forked service must still be that command: its argv,
its working directory, its own output, its exit code, its signals — and the parent's main
script must not run again in it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from hometwin.runtime import zygote
from conftest import WAIT_S
from runtime_support import CAPE_TOWN, ROOT

MINIMAL = ROOT / "examples" / "homes" / "minimal.yaml"


async def _run(argv: list[str], cwd: Path, until: Any = None) -> tuple[int, list[str], int]:
    """Fork ``hometwin *argv`` in ``cwd``; ``until(lines, proc)`` may act on the output as it comes.
    Returns the exit code, the output lines and the child's pid."""
    proc = await zygote.start(argv, dict(os.environ), cwd=str(cwd))
    lines: list[str] = []
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), WAIT_S)
        if not line:
            break
        lines.append(line.decode().rstrip())
        if until is not None:
            until(lines, proc)
    return await asyncio.wait_for(proc.wait(), WAIT_S), lines, proc.pid


def test_a_forked_command_runs_in_its_directory_and_reports_its_exit_code(tmp_path: Path) -> None:
    shutil.copy(MINIMAL, tmp_path / "home.yaml")
    rc, lines, pid = asyncio.run(_run(["run", "-f", "home.yaml", "--until", "2h", "--out", "out", "-q"], tmp_path))
    assert rc == 0, "\n".join(lines)
    assert pid != os.getpid()
    meta = json.loads((tmp_path / "out" / "kpis.json").read_text())["meta"]  # relative paths: its cwd
    assert meta["n_steps"] == 120
    assert any("wrote" in line for line in lines), lines  # its stdout came back through the pipe

    rc, lines, _ = asyncio.run(_run(["run", "-f", "missing.yaml"], tmp_path))
    assert rc != 0
    assert any("missing.yaml" in line for line in lines), lines  # and its stderr


def test_sigterm_stops_a_forked_service_cleanly(router: Any) -> None:
    sent: list[int] = []

    def on_line(lines: list[str], proc: zygote.ForkedProcess) -> None:
        if "joined" in lines[-1] and not sent:
            proc.send_signal(signal.SIGTERM)
            sent.append(proc.pid)

    rc, lines, _ = asyncio.run(_run(["service", "tv", "--name", "tv", "--spec", str(CAPE_TOWN),
                                     "--router", router.unix_url, "--credentials", str(router.credentials_dir)],
                                    ROOT, on_line))
    assert sent, "\n".join(lines)
    assert rc == 0, "\n".join(lines)
    assert not any("Traceback" in line or "Connection failed" in line for line in lines), lines


def test_the_parents_main_script_is_not_run_again_in_our_children() -> None:
    from multiprocessing import spawn

    zygote._ctx()
    ours = spawn.get_preparation_data(zygote.NAME_PREFIX + "tv")
    assert "init_main_from_path" not in ours and "init_main_from_name" not in ours
    assert ours["sys_path"]  # the rest is prepared as usual
