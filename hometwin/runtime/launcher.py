"""``hometwin up``: a whole home on one machine — router, clock, one OS process per element.

The processes are exactly :func:`hometwin.deploy.service_commands` (the Kubernetes
operator starts the same), with local adjustments: every process gets its own metrics
port (``--metrics-port`` base + index, on 127.0.0.1), the clock gets the run options
(speed, window, until, pause-at, re-tick) and every element a per-run ``--state-dir``.
Logs are streamed with the element's name, a crashed element is restarted (as
Kubernetes would) and continues from the state it kept there (see
:mod:`hometwin.runtime.state`), ``hometwin ctl on|off`` starts/stops an element's
process, and a recorder subscribed to ``Flows`` writes the same results and KPIs as
``hometwin run``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from autobahn.wamp.types import RegisterOptions

from hometwin.runtime import messages as m
from hometwin.deploy import DB_URL_ENV, ServiceCommand, realm_of, service_commands
from hometwin.results import Recorder, Result, RunInfo
from hometwin.runtime import zygote
from hometwin.runtime.metrics import LINGER_S
from hometwin.runtime.settings import DEFAULTS
from hometwin.runtime.reaper import Reaper
from hometwin.runtime.router import Router, port_free, port_owner
from hometwin.runtime.wamp import (EXIT_ROUTER_LOST, Credentials, component, plain, stop_component, subscribe,
                                   txaio_quiet)
from hometwin.spec import home_context

log = logging.getLogger("hometwin.up")

#: How a service process starts: ``python -m hometwin.cli <service_commands args>`` (forked from
#: the pre-imported server, :mod:`hometwin.runtime.zygote`, where it can be).
CLI = [sys.executable, "-m", "hometwin.cli"]

#: A process that ran this long before it exited is restarted after the shortest delay again
#: (the kubelet does the same after 10 minutes; local runs are shorter).
BACKOFF_RESET_S = 60.0
METRICS_HOST = "127.0.0.1"  # the processes' /metrics: this machine only
#: A router (crossbar) that exits is started again on the same ports, at most this many times
#: within ROUTER_RESTART_WINDOW_S; one more exit ends the run (exit code 3, with the reason).
ROUTER_RESTARTS = 3
ROUTER_RESTART_WINDOW_S = 60.0


class PortsInUse(ValueError):
    """``hometwin up`` refused to start: a port it needs is taken."""


COLORS = ("cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta", "bright_green",
          "bright_yellow", "bright_blue", "red", "bright_red")


class RecordedSteps:
    """Which steps the recorder holds, so that none is overwritten or counted twice.

    A ``Flows`` that covers a step already recorded is a second settlement of it (a restarted
    inverter, or a forgery): if it says exactly what is recorded for those steps (every flow
    column, the SoC, every element's served energy; bit for bit) it is the same settlement
    published again and is ignored; otherwise it is refused, logged and counted
    (``kpis.json``'s ``meta.flows_rejected``) and the recorded steps stay as they are."""

    def __init__(self, n_steps: int):
        self.have = np.zeros(n_steps, dtype=bool)
        self.rejected = 0  # Flows refused: they would have changed a recorded step
        self.ignored = 0  # Flows that repeated recorded steps exactly

    def admit(self, f: m.Flows, rec: Recorder) -> str | None:
        """None: record ``f``; else why not (``"same"``: it repeats recorded steps exactly)."""
        s = slice(f.i0, f.i0 + f.k + 1)
        if f.i0 + f.k + 1 > len(self.have):
            self.rejected += 1
            return f"steps {f.i0}–{f.i0 + f.k} lie beyond the run's {len(self.have)} steps"
        old = self.have[s]
        if not old.any():
            self.have[s] = True
            return None
        at = np.flatnonzero(old) + f.i0  # the steps recorded already
        j = at - f.i0
        same = all(np.array_equal(rec.cols[c][at], np.asarray(f.flows[c])[j]) for c in rec.cols) \
            and (np.array_equal(rec.soc[at], np.asarray(f.soc)[j], equal_nan=True) if f.soc is not None
                 else bool(np.isnan(rec.soc[at]).all())) \
            and all(np.array_equal(rec.elements[n][at] if n in rec.elements else np.zeros(len(at)),
                                   np.asarray(f.served[n])[j] if n in f.served else np.zeros(len(at)))
                    for n in set(rec.elements) | set(f.served))
        if not same:
            self.rejected += 1
            return (f"window {f.seq} settles steps {at[0]}–{at[-1]} again, differently from what is recorded "
                    "(refused: a settled step is never overwritten)")
        if old.all():
            self.ignored += 1
            return "same"
        self.have[s] = True  # the recorded steps it repeats exactly, and new ones
        return None


@dataclass
class Proc:
    cmd: ServiceCommand
    argv: list[str]
    color: str
    proc: asyncio.subprocess.Process | None = None
    wanted: bool = True  # False: switched off (ctl off) — not restarted
    restarts: int = 0
    backoff: int = 0  # restarts since it last ran BACKOFF_RESET_S without exiting (the delay doubles)
    started_at: float = 0.0
    joined: bool = False  # it said it joined the realm ("… joined hometwin.<home>")
    pump: asyncio.Task | None = None


@dataclass
class Launcher:
    """Runs one home as services; ``await run()`` returns the :class:`Result`."""

    spec_path: Path
    speed: str = "max"
    window: int | None = None
    until_s: int | None = None
    out: Path | None = None
    router_url: str | None = None  # an external router; None = start one
    host: str = "127.0.0.1"
    port: int = 8080
    rawsocket_port: int = 8081
    metrics_port: int = 0  # base port; 0 = no metrics endpoints
    pause_at: int | None = None
    # The runtime's settings (hometwin.runtime.settings: units, reasons, ranges), passed on as flags.
    timeout_s: float = DEFAULTS.timeout_s  # the inverter's wait for a packet (hometwin service --timeout)
    ahead_steps: int = DEFAULTS.ahead_steps  # the inverter's chunk for elements that run ahead (--ahead-steps)
    in_flight: int = DEFAULTS.in_flight  # ticks of single-step windows the clock keeps in flight (--in-flight)
    run_windows: int = DEFAULTS.run_windows  # single-step windows one clock tick stands for (--run-windows)
    clock_nice: int = DEFAULTS.clock_nice  # the clock's lower CPU priority (hometwin clock --nice)
    live: bool = True
    log_sink: Callable[[str, str, str], None] | None = None  # (name, color, line)
    restart: bool = True
    transport: str = "unix"  # how the services reach our own router: unix | rawsocket | websocket
    router_log: Any = None  # a file for crossbar's output (default: discarded)
    retick_s: float | None = None  # clock: re-publish a tick not done after this long (None: the clock's 60 s)
    keep_state: bool = True  # every element keeps its state in state_dir, so a crash-restart continues
    state_dir: Path | None = None  # per run; None: <out>/state, or a temp dir (removed at the end) without out
    state_interval_s: float | None = None  # an element writes its state at most this often (None: automatic)
    forkserver: bool = True  # fork the services from a pre-imported server (hometwin.runtime.zygote)
    #: The home's credentials (hometwin.auth), one file per principal.  With our own router: made anew
    #: here (None: <out>/credentials, or a temp dir removed at the end without out).  With an external
    #: router (``router_url``): that router's folder, required.
    credentials_dir: Path | None = None
    #: Record the run into this database (``hometwin record``, one more service; None: no recorder).
    db_url: str | None = None
    run_id: str | None = None  # the run's id in the database (None: a new one)
    #: Follow the wall clock from now (``hometwin up --realtime``): every service gets the same
    #: start, now rounded down to the step (:data:`hometwin.spec.ENV_REALTIME_START`); the clock
    #: then paces at 1× real time.  A spec's ``clock.realtime`` does the same from its ``start``
    #: (or from now when it has none).
    realtime: bool = False
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from hometwin.spec import load_home

        from hometwin.spec import realtime_start

        self.spec_path = Path(self.spec_path).resolve()
        self.home = load_home(self.spec_path)
        self.realm = realm_of(self.home)
        clock = self.home.spec.clock
        #: Unix s of step 0 of a realtime run that starts now (every service is told it)
        self.realtime_start_s: int | None = None
        if self.realtime or (clock.realtime and clock.start is None):
            self.realtime = True
            self.realtime_start_s = int(realtime_start(clock.step_s).timestamp())
        self.ctx = home_context(self.home, self.until_s, self.realtime_start_s)  # the run's steps
        #: the run's results: from the Flows messages alone, with the home's figures from the spec
        self.recorder = Recorder(RunInfo.of_spec(self.home, self.ctx))
        self.router: Router | None = None
        self.session: Any = None
        self.last_flows: m.Flows | None = None
        self.clock_status: dict[str, Any] = {}
        self.roster: list[str] = []
        self.left: list[str] = []
        self.done = asyncio.Event()
        self.failed: str | None = None
        self.stopping = False
        self.interrupted: str | None = None  # why stop() ended the run early
        self.i = 0
        self.windows = 0
        self.t_first_flows = 0.0  # wall time of the first / last Flows (benchmarks)
        self.t_last_flows = 0.0
        self.t_start = time.perf_counter()
        self.t_router_up = self.t_joined = 0.0  # monotonic, as Proc.started_at (startup order)
        self.stale_windows: dict[str, int] = {}  # element → windows settled without it (stale), from Flows
        #: element → steps settled without it for any reason (switched off, not on the roster yet, stale)
        self.steps_without: dict[str, int] = {}
        self._enabled = [e.name for e in self.home.spec.elements if e.enabled]
        self._own_state_dir = False
        self.reaper: Reaper | None = None  # stops our processes if this launcher dies (reaper.py)
        self.router_restarts = 0
        self.t_router_lost = 0.0  # monotonic: when the router last exited
        self._router_watch: asyncio.Task | None = None
        self._router_restart: asyncio.Future | None = None  # a restart in progress (a worker thread)
        self._servers_watched = False
        self._own_credentials_dir = False
        self.events: list[dict[str, Any]] = []  # accepted control actions (ControlEvent), in order
        self.rejections = m.Rejections()
        self.recorded = RecordedSteps(self.ctx.n_steps)  # no step overwritten or counted twice
        if self.db_url is not None and self.run_id is None:
            from hometwin.recording.run import new_run_id

            self.run_id = new_run_id(self.home.metadata.name)

    # -- credentials -------------------------------------------------------------------------------
    def _prepare_credentials(self) -> dict[str, str]:
        """Fresh secrets for every principal of the home (our own router), written 0600 into
        :attr:`credentials_dir`; or, with an external router, that router's folder read back."""
        from hometwin import auth

        authids = auth.principals_for(auth.home_elements(self.home))
        if self.router_url is not None:
            if self.credentials_dir is None:
                raise auth.CredentialError(f"--router {self.router_url}: give that router's --credentials folder "
                                           "(every session authenticates)")
            return auth.read_credentials(self.credentials_dir, authids)
        if self.credentials_dir is None and self.out is not None:
            self.credentials_dir = Path(self.out) / "credentials"
        if self.credentials_dir is None:
            self.credentials_dir = Path(tempfile.mkdtemp(prefix=f"hometwin-credentials-{self.home.metadata.name}-"))
            self._own_credentials_dir = True
        self.credentials_dir = Path(self.credentials_dir).resolve()
        secrets = auth.new_secrets(authids)
        auth.write_credentials(self.credentials_dir, secrets)
        return secrets

    # -- state -------------------------------------------------------------------------------------
    def _prepare_state_dir(self) -> None:
        """A fresh state folder for this run: a state file is valid for one run only (step 0 starts anew)."""
        if not self.keep_state:
            self.state_dir = None
            return
        if self.state_dir is None and self.out is not None:
            self.state_dir = Path(self.out) / "state"
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix=f"hometwin-state-{self.home.metadata.name}-"))
            self._own_state_dir = True
            return
        self.state_dir = Path(self.state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for el in self.home.spec.elements:  # only what element services write there
            for f in [self.state_dir / f"{el.name}.json", self.state_dir / f"{el.name}.json.refused",
                      *self.state_dir.glob(f".{el.name}.json.*.tmp")]:
                f.unlink(missing_ok=True)

    # -- processes -----------------------------------------------------------------------------
    def _argv(self, cmd: ServiceCommand, index: int) -> list[str]:
        args = list(cmd.args)
        if "--metrics-port" in args:
            j = args.index("--metrics-port")
            args[j + 1] = str(self.metrics_port + index if self.metrics_port else 0)
            args += ["--metrics-host", METRICS_HOST]
        if self.until_s:  # every service: a planner's horizon stops where the run does
            args += ["--until", f"{self.until_s}s"]
        if cmd.kind == "clock":
            args += ["--speed", str(self.speed)]
            if self.window:
                args += ["--window", str(self.window)]
            if self.pause_at is not None:
                args += ["--pause-at", str(self.pause_at)]
            if self.retick_s is not None:
                args += ["--retick", str(self.retick_s)]
            args += ["--in-flight", str(self.in_flight), "--run-windows", str(self.run_windows),
                     "--nice", str(self.clock_nice)]
        elif self.state_dir is not None and cmd.kind != "recorder":  # --state-dir comes with the command
            if self.state_interval_s is not None:
                args += ["--state-interval", str(self.state_interval_s)]
        if cmd.kind == "recorder":
            args += ["--run-id", str(self.run_id), "--nice", str(self.clock_nice)]
        if cmd.kind == "inverter":
            args += ["--timeout", str(self.timeout_s), "--ahead-steps", str(self.ahead_steps)]
            if os.environ.get("HOMETWIN_DEBUG_BALANCER"):
                args += ["--log-level", "DEBUG"]
        return CLI + args

    async def _spawn_all(self, which: Callable[[Proc], bool]) -> None:
        for p in self.procs.values():
            if which(p) and p.wanted and p.proc is None and not self.stopping:
                await self._spawn(p)

    async def _spawn(self, p: Proc, extra: tuple[str, ...] = ()) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.realtime_start_s is not None:  # every service of the run: the same step 0
            from hometwin.spec import ENV_REALTIME_START

            env[ENV_REALTIME_START] = str(self.realtime_start_s)
        if p.cmd.kind == "recorder" and self.db_url is not None:
            env[DB_URL_ENV] = self.db_url  # never in its arguments (a password would show in ps)
        argv = p.argv + list(extra)
        if self.forkserver and zygote.available() and argv[:len(CLI)] == CLI:
            p.proc = await zygote.start(argv[len(CLI):], env)  # type: ignore[assignment]
            if not self._servers_watched and self.reaper is not None:
                self._servers_watched = True
                for pid in zygote.server_pids():
                    self.reaper.watch(pid)
        else:
            p.proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                          stderr=asyncio.subprocess.STDOUT, env=env)
        if self.reaper is not None:
            self.reaper.watch(p.proc.pid)
        p.started_at = time.monotonic()
        p.joined = False
        p.pump = asyncio.ensure_future(self._pump(p))

    async def _pump(self, p: Proc) -> None:
        proc = p.proc
        assert proc is not None and proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except ValueError:  # a line beyond the reader's limit: asyncio dropped it; read on
                self._log(p.cmd.name, p.color, "(a log line too long to show was left out)")
                continue
            if not line:
                break
            text = line.decode(errors="replace").rstrip()
            if "UBJSON" in text or "_ARRAY_API" in text or not text:
                continue
            if not p.joined and f" joined {self.realm}" in text:
                p.joined = True
            self._log(p.cmd.name, p.color, text)
        rc = await proc.wait()
        # Another process may stand for this element by now (``ctl off`` then ``on``): not ours to restart.
        if self.stopping or not p.wanted or p.proc is not proc:
            return
        if p.cmd.kind == "recorder" and rc == 0:  # it recorded the run's end and left
            return
        if time.monotonic() - p.started_at >= BACKOFF_RESET_S:
            p.backoff = 0  # it ran well for a while: a new crash is not part of a crash loop
        # It left because the router went away (it said so): started again at once, without more
        # words — unless it keeps leaving (then it backs off, and says so, as after a crash).
        quiet = rc == EXIT_ROUTER_LOST and p.backoff == 0
        if not quiet:
            self._log(p.cmd.name, p.color, f"exited with code {rc}")
        if self.restart:
            delay = min(10.0, 0.5 * 2 ** min(p.backoff, 4))
            p.restarts += 1
            p.backoff += 1
            kept = f"; state from {self.state_dir}" if self.state_dir is not None and p.cmd.kind != "clock" else ""
            if not quiet:
                self._log(p.cmd.name, p.color, f"restarting in {delay:.1f} s (restart {p.restarts}{kept})")
            await asyncio.sleep(delay)
            if rc == EXIT_ROUTER_LOST and p.cmd.kind in ("inverter", "clock"):
                await self._after_the_elements(p)
            # ``ctl on`` during the wait started it already: one process per element
            if not self.stopping and p.wanted and p.proc is proc:
                # A clock that was paused (ctl pause) comes back paused; where the run is, it asks
                # the inverter (hometwin.runtime.resume.where_the_run_is).
                paused = p.cmd.kind == "clock" and bool(self.clock_status.get("paused"))
                await self._spawn(p, ("--paused",) if paused else ())

    async def _after_the_elements(self, p: Proc, timeout_s: float = 60.0) -> None:
        """After the router came back, the inverter starts once every element has rejoined, and the
        clock once the inverter has: a restarted inverter learns where the run is from the elements'
        restored states (``get``: ``settled_seq``, ``next_step``), and a restarted clock from the
        inverter — all of them restarted at once, nobody could say, and the run went back to
        window 0.  The clock also waits for this launcher's own session to be back (it retries every
        2 s): a window settled before it subscribes again would be missing from the results.
        Bounded: after ``timeout_s`` it starts anyway."""
        def ready() -> bool:
            ahead = [q for q in self.procs.values() if q.wanted and q is not p
                     and (q.cmd.kind == "inverter" if p.cmd.kind == "clock" else q.cmd.kind not in ("clock", "inverter"))]
            if p.cmd.kind == "clock" and self.t_joined < self.t_router_lost:
                return False
            return all(q.joined and q.proc is not None and q.proc.returncode is None for q in ahead)

        deadline = time.monotonic() + timeout_s
        while not self.stopping and not ready() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)

    def _log(self, name: str, color: str, text: str) -> None:
        if self.log_sink is not None:
            self.log_sink(name, color, text)
        else:
            sys.stderr.write(f"[{name}] {text}\n")

    async def _stop_proc(self, p: Proc, timeout_s: float = 8.0 + LINGER_S) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s`` (a scraped service first lingers for one more
        scrape of its /metrics, at most LINGER_S: the run's last window is seen by Prometheus)."""
        proc = p.proc
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout_s)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
        except ProcessLookupError:
            pass

    async def _stop_recorder(self, p: Proc, timeout_s: float = 120.0) -> None:
        """The recorder ends by itself once it has written the run's end (run.done, with the steps
        it lacked asked of this launcher, whose session is still there); when the run did not end
        that way, SIGTERM: it writes what it has and marks the run stopped."""
        proc = p.proc
        if proc is None or proc.returncode is not None:
            return
        if self.i >= self.ctx.n_steps and not self.failed:
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), timeout_s)
                return
            except asyncio.TimeoutError:
                self._log(p.cmd.name, p.color, f"did not end {timeout_s:.0f} s after the run did: stopping it")
        await self._stop_proc(p, timeout_s=30.0)

    async def switch(self, name: str, on: bool) -> dict[str, Any]:
        """``ctl on|off``: start or stop an element's process (the clock and inverter stay)."""
        p = self.procs.get(name)
        if p is None or p.cmd.kind in ("clock", "inverter", "recorder"):
            raise ValueError(f"no switchable element {name!r} (known: {', '.join(self._switchable())})")
        if on:
            p.wanted = True
            if p.proc is None or p.proc.returncode is not None:
                await self._spawn(p)
        else:
            p.wanted = False
            await self._stop_proc(p)
        return self.proc_status()

    def _switchable(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.cmd.kind not in ("clock", "inverter", "recorder")]

    def proc_status(self) -> dict[str, Any]:
        return {n: {"kind": p.cmd.kind, "running": p.proc is not None and p.proc.returncode is None,
                    "wanted": p.wanted, "restarts": p.restarts, "pid": p.proc.pid if p.proc else None}
                for n, p in self.procs.items()}

    # -- control session -----------------------------------------------------------------------------
    async def _on_join(self, session: Any, details: Any = None) -> None:
        self.session = session
        rej = self.rejections  # one count for the run, across rejoins (kpis.json: meta.messages_rejected)

        def on_flows(payload: Any) -> None:
            if self.stopping or self.failed:  # the elements are being stopped: a window settled now may lack some
                return
            f = m.decode(m.Flows, payload, m.FLOWS, rej)
            if f is None:
                return
            why = self.recorded.admit(f, self.recorder)
            if why == "same":
                log.info("Flows of window %d repeat recorded steps %d–%d exactly: ignored", f.seq, f.i0, f.i0 + f.k)
                return
            if why is not None:
                self._log("up", "red", f"Flows refused: {why}")
                if self.router_restarts and f.i0 < self.i:
                    # Every service was restarted with the router, and the inverter and the clock did
                    # not find where the run was: every window from here on would be refused (or wait
                    # out timeouts) until the end.  Stop now, in words; the files hold steps 0…i-1.
                    self.failed = (f"after the router restarted, window {f.seq} (steps {f.i0}–{f.i0 + f.k}) was "
                                   f"settled again, though steps 0–{self.i - 1} were recorded: the restarted "
                                   "inverter and clock did not find where the run was; stopping")
                    self.done.set()
                return
            self.last_flows = f
            for name in f.stale:
                self.stale_windows[name] = self.stale_windows.get(name, 0) + 1
            for name in self._enabled:
                if name not in f.roles:
                    self.steps_without[name] = self.steps_without.get(name, 0) + f.k + 1
            self.recorder.add(f)
            self.i = f.i0 + f.k + 1
            now = time.perf_counter()
            self.t_first_flows = self.t_first_flows or now
            self.t_last_flows = now
            self.windows += 1

        def on_done(*_: Any, **__: Any) -> None:
            self.done.set()

        def on_failed(payload: Any = None, *_: Any, **__: Any) -> None:
            self.failed = str(payload.get("error") if isinstance(payload, dict) else payload)
            self.done.set()

        def on_roster(payload: Any = None, *_: Any, **__: Any) -> None:
            r = m.decode(m.Roster, payload, m.ROSTER, rej)
            if r is not None:
                self.roster, self.left = r.elements, r.left

        def on_status(payload: Any = None, *_: Any, **__: Any) -> None:
            if isinstance(payload, dict):
                self.clock_status = payload

        def on_event(payload: Any) -> None:
            e = m.decode(m.ControlEvent, payload, m.EVENT, self.rejections)
            if e is not None:
                self.events.append(e.model_dump())
                if e.action != "plan":  # (a strategy's plans: hourly, recorded, not worth a line each)
                    self._log("up", "white", f"control: {e.action} {e.element or ''} {e.args or ''} by {e.by}".strip())

        def switch(on: bool) -> Any:
            async def endpoint(name: str, details: Any = None) -> dict[str, Any]:
                answer = await self.switch(name, on)
                ev = m.ControlEvent.accepted("launcher", "on" if on else "off", details, element=name, step=self.i)
                self.events.append(ev.model_dump())  # a publisher does not get its own event
                session.publish(m.EVENT, ev.wire())
                return answer
            return endpoint

        await session.subscribe(lambda p=None, *a, **k: on_flows(p), m.FLOWS)
        await session.subscribe(on_done, m.RUN_DONE)
        await session.subscribe(on_failed, m.RUN_FAILED)
        await session.subscribe(on_roster, m.ROSTER)
        await session.subscribe(on_status, m.CLOCK_STATUS_EVENT)
        # A router of our own is new: only one given with --router can hold this home already (and
        # our own services, started while crossbar boots, may have registered on ours by now).
        if self.router_url is not None and not self._joined.is_set():  # (checked at the first join)
            await self._refuse_a_second_home(session)
        await subscribe(session, m.EVENT, on_event, self.rejections)
        await session.register(switch(True), m.launcher_uri("on"), options=RegisterOptions(details=True))
        await session.register(switch(False), m.launcher_uri("off"), options=RegisterOptions(details=True))
        await session.register(lambda: plain(self.proc_status()), m.launcher_uri("status"))
        await session.register(self.flows_since, m.launcher_uri("flows"))
        import txaio

        txaio.set_global_log_level("error")  # autobahn's errors again (quiet while the router was away)
        self.t_joined = time.monotonic()
        self._joined.set()

    async def _refuse_a_second_home(self, session: Any) -> None:
        """On a router given with ``--router``, this home may run already (another ``hometwin up``,
        the operator): its inverter or clock has registered its RPCs on the realm.  Refuse then,
        before any service starts, instead of a second clock and inverter fighting over it."""
        from autobahn.wamp.exception import ApplicationError

        taken = []
        for uri, what in ((m.ROSTER_GET, "an inverter"), (m.clock_uri("status"), "a clock")):
            try:  # an RPC nobody serves is refused at once (no_such_procedure); one that answers is taken
                await asyncio.wait_for(session.call(uri), 10)
                taken.append(what)
            except ApplicationError as exc:
                if exc.error != "wamp.error.no_such_procedure":
                    taken.append(what)  # served, and refused (not allowed to us): someone is there
            except asyncio.TimeoutError:
                taken.append(what)  # served, and hung: someone is there
        if taken:
            self.failed = (f"realm {self.realm} on {self.router_url} already has {', '.join(taken)}: this home "
                           "runs there already (another hometwin up, or the operator); stop it first, or use "
                           "another router")
            self.done.set()

    # -- run -----------------------------------------------------------------------------------------
    def stop(self, why: str = "stopped") -> None:
        """End the run now (Ctrl-C, SIGTERM): :meth:`run` stops every process and returns the
        steps settled so far.  Synchronous, so no exiting element is restarted meanwhile."""
        if not self.stopping:
            self.stopping = True
            self.interrupted = why
            self._log("up", "yellow", f"{why}: stopping the clock, the elements and the router")
        self.done.set()

    def check_metrics_ports(self) -> None:
        """Refuse before anything starts when a process's /metrics port (``metrics_port`` + its
        index) is taken: that service would crash-loop, and the run go on without it."""
        if not self.metrics_port:
            return
        names = [c.name for c in service_commands(self.home, str(self.spec_path), "", recorder=self.db_url is not None)
                 if c.kind != "router"]
        last = self.metrics_port + len(names) - 1
        if self.metrics_port < 1 or last > 65535:
            raise PortsInUse(f"--metrics-port: {self.metrics_port} + {len(names) - 1} (one port per process) "
                             f"must lie in 1–65535")
        taken = [f"{self.metrics_port + i} ({name})" for i, name in enumerate(names)
                 if not port_free(self.metrics_port + i, METRICS_HOST)]
        if taken:
            raise PortsInUse(f"--metrics-port {self.metrics_port}: port{'s' if len(taken) > 1 else ''} "
                             f"{', '.join(taken)} in use on {METRICS_HOST}; the {len(names)} processes need "
                             f"{self.metrics_port}–{last} free")

    def check_router_ports(self) -> None:
        """Refuse before anything starts when a port of the router started here (``--port``,
        ``--rawsocket-port``) is taken — by another ``hometwin up`` on the default ports, say:
        crossbar would die with "Address already in use" after the services had started."""
        if self.router_url is not None:
            return
        ports = ((self.port, "--port (WebSocket)"), (self.rawsocket_port, "--rawsocket-port (RawSocket)"))
        bad = [f"{what} {port}" for port, what in ports if not 0 <= port <= 65535]
        if bad:
            raise PortsInUse(f"{', '.join(bad)}: must lie in 1–65535 (0: any free port)")
        taken = [f"{what} {port} is in use on {self.host} by {port_owner(port, self.host)}"
                 for port, what in ports if port and not port_free(port, self.host)]
        if taken:
            raise PortsInUse(f"{'; '.join(taken)} — another hometwin up? Stop it, or choose other ports "
                             "(0: any free one)")

    def _start_router(self) -> None:
        assert self.router is not None
        self.router.start()

    async def _watch_router(self, url: str) -> None:
        """Start the router again when it exits (same ports, socket and node directory; the services
        leave when they lose it and rejoin once it is back, see :data:`EXIT_ROUTER_LOST`), at most
        :data:`ROUTER_RESTARTS` times within :data:`ROUTER_RESTART_WINDOW_S`; then end the run."""
        loop = asyncio.get_running_loop()
        exits: list[float] = []
        while not self.stopping:
            proc = self.router.proc if self.router is not None else None
            if proc is None or proc.poll() is None:
                await asyncio.sleep(0.5)
                continue
            rc = proc.returncode
            now = time.monotonic()
            self.t_router_lost = now
            exits = [t for t in exits if now - t < ROUTER_RESTART_WINDOW_S] + [now]
            txaio_quiet()  # autobahn's "Connection failed" of our own session: this line says it
            if len(exits) > ROUTER_RESTARTS:
                self.failed = (f"the router (crossbar) exited with code {rc}, {len(exits)} times within "
                               f"{ROUTER_RESTART_WINDOW_S:.0f} s; not starting it again")
                self.done.set()
                return
            self.router_restarts += 1
            self._log("router", "red", f"crossbar exited with code {rc}: starting it again on the same ports "
                                       f"({len(exits)} of at most {ROUTER_RESTARTS} restarts within "
                                       f"{ROUTER_RESTART_WINDOW_S:.0f} s); the services rejoin once it is up")
            self._router_restart = loop.run_in_executor(None, self.router.restart)
            try:
                await self._router_restart
            except Exception as exc:
                if not self.stopping:
                    self.failed = f"the router (crossbar) exited with code {rc} and could not be started again: {exc}"
                    self.done.set()
                return
            finally:
                self._router_restart = None
            self._log("router", "white", f"crossbar up again: services on {url}")

    async def run(self) -> Result:
        self.check_metrics_ports()
        self.check_router_ports()
        self._joined = asyncio.Event()
        self.reaper = Reaper()
        url = self.router_url
        comp: Any = None
        comp_done: Any = None
        try:
            router_up = None
            secrets = self._prepare_credentials()
            if self._own_credentials_dir:
                self.reaper.remove(self.credentials_dir)
            self._launcher_credentials = Credentials("launcher", secrets["launcher"])
            if url is not None:  # a router of someone else's: is this home running there already?
                comp, comp_done = await self._join(url)  # (refused in _on_join; before anything is touched)
                if self.done.is_set():
                    return self.result()
            else:
                from hometwin.auth import home_elements, roles_for

                self.router = Router(realm=self.realm, host=self.host, port=self.port,  # 0: prepare() chooses
                                     rawsocket_port=self.rawsocket_port, roles=roles_for(home_elements(self.home)),
                                     secrets=secrets, log=self.router_log, unix=self.transport == "unix",
                                     on_spawn=self.reaper.watch_group).prepare()
                self.reaper.remove(self.router._tmp)
                url = {"websocket": self.router.ws_url, "unix": self.router.unix_url}.get(self.transport,
                                                                                          self.router.url)
                router_up = asyncio.get_running_loop().run_in_executor(None, self._start_router)
            if self.ctx.realtime:
                self._log("up", "white", f"realtime: step 0 at {self.ctx.start.isoformat()}, the clock "
                                         f"follows the wall clock (1x)")
            self._prepare_state_dir()
            if self._own_state_dir:
                self.reaper.remove(self.state_dir)
            if self.state_dir is not None:
                self._log("up", "white", f"element state kept in {self.state_dir} (a restarted element continues)")
            cmds = [c for c in service_commands(self.home, str(self.spec_path), url,
                                                  state_dir=str(self.state_dir) if self.state_dir is not None else None,
                                                  credentials_dir=str(self.credentials_dir),
                                                  recorder=self.db_url is not None)
                    if c.kind != "router"]
            for idx, cmd in enumerate(cmds):
                self.procs[cmd.name] = Proc(cmd=cmd, argv=self._argv(cmd, idx), color=COLORS[idx % len(COLORS)],
                                            wanted=cmd.enabled)
            if router_up is not None:
                # The elements start while crossbar boots, which leaves a core idle for its ~3 s: each
                # retries until the router listens (a refused connection is not an error).  The clock
                # starts once this launcher has joined, so the recorder misses no Flows.
                await self._spawn_all(lambda p: p.cmd.kind != "clock")
                await router_up
                self.t_router_up = time.monotonic()
                self._log("router", "white", f"crossbar up: services on {url}; {self.router.url} (RawSocket), "
                                             f"{self.router.ws_url} (browsers)")
                self._router_watch = asyncio.ensure_future(self._watch_router(url))
            if self.stopping:
                return self.result()
            if comp is None:
                comp, comp_done = await self._join(url)
                if self.done.is_set():  # Ctrl-C meanwhile
                    return self.result()
            else:
                await self._spawn_all(lambda p: p.cmd.kind != "clock")
            await self._recorder_joined()
            await self._spawn_all(lambda p: p.cmd.kind == "clock")
            self.t_start = time.perf_counter()
            await self.done.wait()
        finally:
            await self.shutdown(comp)
            if comp_done is not None and not comp_done.done():
                comp_done.cancel()
        return self.result()

    async def _recorder_joined(self, timeout_s: float = 60.0) -> None:
        """The clock starts once the recorder has joined (so it misses no Flows; if it does, it asks
        for them: ``hometwin.launcher.flows``).  Bounded: after ``timeout_s`` the run starts anyway."""
        p = self.procs.get("recorder")
        deadline = time.monotonic() + timeout_s
        while (p is not None and not p.joined and not self.stopping and time.monotonic() < deadline
               and p.proc is not None and p.proc.returncode is None):
            await asyncio.sleep(0.1)

    def flows_since(self, since: int, until: int | None = None) -> dict[str, Any] | None:
        """``hometwin.launcher.flows``: the settled steps from ``since`` (before ``until``) that this
        launcher holds, in one :class:`~hometwin.runtime.messages.Flows` (None: it holds none from there)."""
        have = self.recorded.have
        since = int(since)
        until = len(have) if until is None else min(int(until), len(have))
        if not 0 <= since < until or not have[since]:
            return None
        gaps = np.flatnonzero(~have[since:until])
        end = since + int(gaps[0]) if gaps.size else until
        rec, s = self.recorder, slice(since, end)
        soc = rec.soc[s]
        f = m.Flows(seq=0, i0=since, n=end - since, k=end - since - 1, dt_s=self.ctx.step_s,
                    flows={c: rec.cols[c][s] for c in rec.cols}, served={n: a[s] for n, a in rec.elements.items()},
                    roles=dict(rec.roles), soc=None if np.isnan(soc).any() else soc,
                    max_residual_j=self.recorder.max_residual_j)  # of the run so far
        return f.wire()

    async def _join(self, url: str) -> tuple[Any, Any]:
        """Join the realm (the recorder's session; :meth:`_on_join`), within 30 s, or until the run ends."""
        comp = component(url, self.realm, credentials=self._launcher_credentials)
        comp.on("join", self._on_join)
        comp.on("disconnect", lambda *_a, **_k: None if self.stopping else txaio_quiet())
        comp_done = comp.start(asyncio.get_running_loop())
        joined = asyncio.ensure_future(self._joined.wait())
        stopped = asyncio.ensure_future(self.done.wait())
        await asyncio.wait([joined, stopped], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not joined.done():
            joined.cancel()
            if not self.done.is_set():
                await stop_component(comp)
                raise TimeoutError(f"could not join the realm {self.realm} at {url} within 30 s")
        return comp, comp_done

    async def shutdown(self, comp: Any = None) -> None:
        self.stopping = True
        if self._router_watch is not None:
            self._router_watch.cancel()
        if self._router_restart is not None:  # let a restart in its thread end first: then stop that one
            try:
                await asyncio.wait_for(asyncio.shield(self._router_restart), 90)
            except Exception:
                pass
        order = [p for p in self.procs.values() if p.cmd.kind not in ("clock", "inverter", "recorder")] + \
                [p for p in self.procs.values() if p.cmd.kind == "inverter"] + \
                [p for p in self.procs.values() if p.cmd.kind == "clock"]
        await asyncio.gather(*(self._stop_proc(p) for p in order), return_exceptions=True)
        recorder = self.procs.get("recorder")
        if recorder is not None:  # last: it writes the run's end (it leaves by itself after run.done)
            await self._stop_recorder(recorder)
            order.append(recorder)
        for p in order:
            if p.pump is not None:
                try:
                    await asyncio.wait_for(p.pump, 2)
                except (asyncio.TimeoutError, Exception):
                    pass
        if comp is not None:
            await stop_component(comp)
        if self.router is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.router.stop)
        if self._own_state_dir and self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        if self._own_credentials_dir and self.credentials_dir is not None:
            shutil.rmtree(self.credentials_dir, ignore_errors=True)
        if self.reaper is not None:  # everything is stopped and removed: nothing left for it to do
            self.reaper.release()

    @property
    def ended_early(self) -> str | None:
        """Why the run ended before its last step, if it did (None: it ran to the end)."""
        n = self.ctx.n_steps
        gap = self._first_gap()
        if gap < self.i:
            return (f"steps from {gap} on were settled while hometwin up was away from the router and "
                    "are missing from the results")
        if self.i >= n:
            return None
        return self.interrupted or self.failed or (f"the run ended at step {self.i} of {n} without a failure "
                                                   "reported (hometwin.run.done before the end)")

    def _first_gap(self) -> int:
        """The first step before ``i`` that no Flows recorded (``i`` when there is none)."""
        have = self.recorded.have[: self.i]
        return self.i if have.all() else int(np.argmin(have))

    def result(self) -> Result:
        """The recorded run (cut at the last settled step when stopped early: ``meta.partial`` says so)."""
        res = self.recorder.result(wall_s=time.perf_counter() - self.t_start)
        end = self._first_gap()  # the steps recorded without a hole
        if end < len(res.frame):
            res = res.partial(end, len(res.frame), self.ended_early or "stopped")
        res.meta["runtime"] = "services"
        res.meta["steps_without"] = dict(self.steps_without)
        res.meta["messages_rejected"] = {f"{uri} {why}": n for (uri, why), n in self.rejections.counts.items()}
        res.events = list(self.events)
        res.meta["flows_rejected"] = self.recorded.rejected  # Flows that would have changed a recorded step
        res.meta["flows_repeated"] = self.recorded.ignored  # … that repeated recorded steps exactly (ignored)
        if self.router_restarts:
            res.meta["router_restarts"] = self.router_restarts
        return res

    def live_table(self) -> Any:
        from rich.table import Table

        f = self.last_flows
        st = self.clock_status
        title = (f"{self.home.metadata.name} · {st.get('sim_time', '…')} · step {st.get('i', 0)}/{st.get('n_steps', '?')}"
                 f" · speed {st.get('speed', self.speed)}" + (" · PAUSED" if st.get("paused") else "")
                 + (f" · lag {st.get('lag_s', 0):.1f} s" if st.get("lag_s") else ""))
        table = Table(title=title)
        table.add_column("element")
        table.add_column("W", justify="right")
        table.add_column("process")
        procs = self.proc_status()
        if f is not None:
            for name, arr in f.served.items():
                running = procs.get(name, {}).get("running")
                table.add_row(name, f"{float(arr[-1]) / f.dt_s:,.0f}", "up" if running else "–")
            for key in ("pv_ac_j", "load_j", "grid_import_j", "grid_export_j", "battery_charge_j",
                        "battery_discharge_j", "unserved_j"):
                table.add_row(f"[dim]{key[:-2]}[/]", f"{float(f.flows[key][-1]) / f.dt_s:,.0f}", "")
            if f.soc is not None:
                table.add_row("[dim]battery SoC[/]", f"{float(f.soc[-1]):.1%}", "")
        return table


def kpis_equal(a: Result, b: Result, atol_j: float = 1e-9) -> float:
    """Largest absolute difference between two results' energy columns [J]."""
    cols = [c for c in a.frame.columns if c.endswith("_j") and c in b.frame.columns]
    return max(float(np.max(np.abs(a.frame[c].to_numpy() - b.frame[c].to_numpy()))) for c in cols)
