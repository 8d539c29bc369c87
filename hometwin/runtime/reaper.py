"""Nothing outlives ``hometwin up``: a small process that cleans up after a launcher that died.

The launcher stops its processes itself when it ends (the run is over, Ctrl-C, SIGTERM).  A
launcher that is killed (SIGKILL, the OOM killer, a crash) cannot: its router (Crossbar, in
its own session, with the router worker it forks), the fork server with every service forked
from it and multiprocessing's resource tracker would go on computing, and the router's
temporary node directory would stay behind.  So the launcher starts this reaper first, in a
session of its own (a Ctrl-C at the terminal does not reach it), and tells it through a pipe
what to stop and what to remove, as it starts things.  The reaper reads the pipe until it
closes: after ``release`` (the launcher cleaned up) it exits; on a bare end of file (the
launcher is gone, the kernel closed its end) it sends SIGTERM to every process and process
group it was told of, SIGKILL to those still there after a grace period, and removes the
folders.  A pid is checked against its start time before it is signalled, so a pid the
kernel gave to an unrelated process since is left alone.

Protocol, one line each: ``pid PID START``, ``group PGID``, ``dir PATH``, ``release``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE_S = 5.0  # after SIGTERM, before SIGKILL (a service writes its state file on SIGTERM)


def start_time(pid: int) -> str | None:
    """The process's start time (``/proc/PID/stat`` field 22, clock ticks since boot), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


class Reaper:
    """The launcher's end of the pipe (:func:`main` is the other).  Every method is a no-op where
    the reaper could not start (no ``/proc``: not Linux)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        if not Path("/proc/self/stat").exists():
            return
        self.proc = subprocess.Popen([sys.executable, "-m", "hometwin.runtime.reaper"], stdin=subprocess.PIPE,
                                     start_new_session=True, close_fds=True)

    def _send(self, line: str) -> None:
        if self.proc is None or self.proc.stdin is None or self.proc.stdin.closed:
            return
        try:
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def watch(self, pid: int | None) -> None:
        """Stop process ``pid`` if the launcher dies."""
        started = start_time(pid) if pid else None
        if started is not None:
            self._send(f"pid {pid} {started}")

    def watch_group(self, pgid: int | None) -> None:
        """Stop process group ``pgid`` (a process started with ``start_new_session``) if the launcher dies."""
        if pgid:
            self._send(f"group {pgid}")

    def remove(self, path: str | Path | None) -> None:
        """Remove the folder ``path`` if the launcher dies."""
        if path:
            self._send(f"dir {Path(path).resolve()}")

    def release(self) -> None:
        """The launcher stopped everything itself: the reaper exits without doing anything."""
        self._send("release")
        self.close()

    def close(self) -> None:
        if self.proc is not None and self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


def _alive(pid: int, started: str | None) -> bool:
    return start_time(pid) == started if started is not None else False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def reap(pids: dict[int, str], groups: set[int], dirs: list[str]) -> None:
    """SIGTERM every process and group still there, SIGKILL after :data:`GRACE_S`, remove the folders."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, started in pids.items():
            if _alive(pid, started):
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        for pgid in groups:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + (GRACE_S if sig == signal.SIGTERM else 2.0)
        while time.monotonic() < deadline and (any(_alive(p, s) for p, s in pids.items())
                                               or any(_group_alive(g) for g in groups)):
            time.sleep(0.05)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the launcher's end of the pipe ends us
    pids: dict[int, str] = {}
    groups: set[int] = set()
    dirs: list[str] = []
    for raw in sys.stdin.buffer:
        word, _, rest = raw.decode(errors="replace").strip().partition(" ")
        try:
            if word == "pid":
                pid, started = rest.split()
                pids[int(pid)] = started
            elif word == "group":
                groups.add(int(rest))
            elif word == "dir":
                dirs.append(rest)
            elif word == "release":
                return
        except ValueError:
            continue
    if pids or groups or dirs:
        sys.stderr.write(f"hometwin up ended without stopping its processes: stopping {len(pids)} process(es) and "
                         f"{len(groups)} group(s), removing {len(dirs)} folder(s)\n")
        reap(pids, groups, dirs)


if __name__ == "__main__":
    main()
