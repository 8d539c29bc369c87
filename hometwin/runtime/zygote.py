"""Start ``hometwin`` service processes from a pre-imported fork server (local runs only).

Every service process of ``hometwin up`` used to be a fresh interpreter that imported the
runtime (autobahn, pydantic, numpy, pandas, the element modules; pvlib and scipy where it
computes with them) before it could join: about a second of CPU each, fourteen of them
for the Cape Town home on a two-core machine.  Here they are forked instead from one
server process that imported all of that once (Python's ``multiprocessing`` *forkserver*,
with those modules preloaded): each child only reads the home and builds its element.
A child is still one OS process per element running the very ``hometwin`` command line
it would run on its own (``hometwin service tv --name tv …``): its own argv, environment,
working directory, stdout/stderr (a pipe the launcher streams), signals and exit code.

On Kubernetes nothing changes: a pod runs the command itself.  ``HOMETWIN_FORKSERVER=0``
(or a platform without ``fork``) falls back to plain subprocesses.
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import os
import signal
import sys
from multiprocessing import reduction
from typing import Any

#: Imported once in the fork server (the service command line, every element kind, the WAMP
#: stack, metrics, and the libraries the sun, weather, PV and inverter compute with).
PRELOAD = ["hometwin.cli", "hometwin.runtime.cli", "hometwin.runtime.service", "hometwin.runtime.balancer",
           "hometwin.runtime.clock", "hometwin.runtime.state", "hometwin.registry", "autobahn.asyncio.component",
           "prometheus_client", "pvlib", "scipy.signal", "scipy.special"]

_context: Any = None


def available() -> bool:
    """Whether services are forked from the server here (Linux/macOS, not turned off)."""
    return os.environ.get("HOMETWIN_FORKSERVER", "1") != "0" and "forkserver" in multiprocessing.get_all_start_methods()


#: Our children's process names start with this (see :func:`_without_main`).
NAME_PREFIX = "hometwin:"


def _without_main(get_preparation_data: Any) -> Any:
    """``multiprocessing`` re-runs the parent's main script in every child, to unpickle what
    it defines.  A service child needs nothing from it, and a script that starts a launcher
    without an ``if __name__ == "__main__"`` guard would start another from each child; so
    for our children (by name) the main module is left out."""

    def prepared(name: str) -> dict[str, Any]:
        data = get_preparation_data(name)
        if str(name).startswith(NAME_PREFIX):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    prepared.__wrapped__ = get_preparation_data  # type: ignore[attr-defined]
    return prepared


def _ctx() -> Any:
    global _context
    if _context is None:
        from multiprocessing import spawn

        if not hasattr(spawn.get_preparation_data, "__wrapped__"):
            spawn.get_preparation_data = _without_main(spawn.get_preparation_data)
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


class _PassFd:
    """An fd handed to the child: duplicated into it when the process object is sent to the
    server (``reduction.DupFd`` must be called while pickling for the fork server)."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self) -> Any:
        return _received, (reduction.DupFd(self.fd),)


def _received(dup: Any) -> Any:
    return dup


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Linux: have the kernel send ``sig`` to this process when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``); False where that cannot be had."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        parent = os.getppid()
        if libc.prctl(1, int(sig), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG = 1
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent died before the call: nobody will send it
        os.kill(os.getpid(), sig)
    return True


def server_pids() -> list[int]:
    """The fork server's and multiprocessing's resource tracker's pids, where they run (the
    launcher hands them to its reaper: they outlive a killed launcher otherwise)."""
    from multiprocessing import forkserver, resource_tracker

    pids = [getattr(forkserver._forkserver, "_forkserver_pid", None),  # type: ignore[attr-defined]
            getattr(resource_tracker._resource_tracker, "_pid", None)]  # type: ignore[attr-defined]
    return [p for p in pids if p]


def _run_command(argv: list[str], env: dict[str, str], cwd: str, out: Any) -> None:
    """In the forked child: become ``python -m hometwin.cli *argv`` writing to ``out``.  It stops
    (SIGTERM) when the fork server dies (the launcher's reaper stops it when the launcher dies)."""
    die_with_parent()
    fd = out.detach()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # as PYTHONUNBUFFERED
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)  # (signals: multiprocessing gives the child back the server's own handlers)
    sys.argv = ["hometwin", *argv]
    from hometwin.cli import main

    try:
        main()
    finally:
        # A multiprocessing child ends with os._exit, which skips the atexit handlers an
        # interpreter runs at exit; the services rely on them (an element's state keeper
        # writes its last settle there), so they run here, as in ``python -m hometwin.cli``.
        atexit._run_exitfuncs()


class ForkedProcess:
    """What the launcher uses of ``asyncio.subprocess.Process``, for a child of the fork server."""

    def __init__(self, process: Any, stdout: asyncio.StreamReader):
        self._p = process
        self.pid: int = process.pid
        self.stdout = stdout
        self._exited = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_reader(process.sentinel, self._on_exit)

    def _on_exit(self) -> None:
        asyncio.get_running_loop().remove_reader(self._p.sentinel)
        self._p.join(0)
        if not self._exited.done():
            self._exited.set_result(self._p.exitcode)

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


async def start(argv: list[str], env: dict[str, str], cwd: str | None = None) -> ForkedProcess:
    """Fork ``hometwin *argv`` from the server (started on first use, in a worker thread:
    the first start waits for its imports)."""
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    try:
        proc = _ctx().Process(target=_run_command, args=(argv, env, cwd or os.getcwd(), _PassFd(w)),
                              daemon=True, name=NAME_PREFIX + (argv[argv.index("--name") + 1] if "--name" in argv else argv[0]))
        await loop.run_in_executor(None, proc.start)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)  # the child has its copy; EOF on r once it exits
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(r, "rb", 0))
    return ForkedProcess(proc, reader)
