"""``hometwin service|clock|router|up|ctl`` — the WAMP runtime's commands (registered into the CLI)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from hometwin.runtime.metrics import LINGER_S
from hometwin.runtime.settings import DEFAULTS, RuntimeSettings, describe

DEFAULT_ROUTER = "rs://127.0.0.1:8081"

ctl_app = typer.Typer(no_args_is_help=True, help="Send runtime RPCs to a running twin (set, pause, resume, speed, on, off, status).")


def _logging(level: str = "INFO") -> None:
    from hometwin.runtime.wamp import autobahn_errors_only

    autobahn_errors_only(sys.stdout)
    ours = logging.getLogger("hometwin")
    ours.setLevel(getattr(logging, level.upper(), logging.INFO))
    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ours.addHandler(out)
    ours.propagate = False


def _home_and_element(spec: Optional[Path], name: str, kind: str, config: Optional[str], until: Optional[str],
                      data_dir: Optional[Path] = None) -> Any:
    from hometwin.cli import _parse_until, load_or_exit
    from hometwin.lazy import preload_for
    from hometwin.registry import element_class
    from hometwin.spec import home_context

    if spec is None:
        raise typer.BadParameter("--spec is required (the home: location, clock, the element's config)")
    home = load_or_exit(spec)
    ctx = home_context(home, _parse_until(until, None))
    if data_dir is not None:
        ctx = dataclasses.replace(ctx, data_dir=str(data_dir))
    el_spec = next((e for e in home.spec.elements if e.name == name), None)
    cfg: Any = el_spec.config if el_spec is not None else {}
    if config:
        try:
            cfg = json.loads(config)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--config: not JSON ({exc})") from None
    if el_spec is not None and el_spec.kind != kind:
        raise typer.BadParameter(f"element {name!r} is a {el_spec.kind!r} in the spec, not a {kind!r}")
    if el_spec is None and not config:
        raise typer.BadParameter(f"element {name!r} is not in {spec}; give its --config")
    element = element_class(kind)(name, cfg, ctx)
    preload_for(element)  # pvlib & co. now, not in the first window (see hometwin.lazy)
    return home, element


_CREDENTIALS_HELP = ("folder of the home's credentials, one file per principal named by its authid "
                     "(hometwin up writes <out>/credentials; a pod mounts its key of the home's Secret)")


def _credentials(folder: Optional[Path], authid: str) -> Any:
    """How this process joins the realm; a missing or bad file is one line (never its content)."""
    from hometwin.auth import CredentialError
    from hometwin.runtime.wamp import Credentials

    if folder is None:
        raise typer.BadParameter(f"--credentials DIR is required: every session authenticates (as {authid!r}); "
                                 "hometwin up writes them to <out>/credentials")
    try:
        return Credentials.from_folder(folder, authid)
    except CredentialError as exc:
        raise typer.BadParameter(str(exc)) from None


_LINGER_HELP = ("[s] when told to stop, keep /metrics (and the session) up until one more scrape has read the "
                "last values, at most this long; an endpoint never scraped does not wait")


def _option(setting: str, flag: str, help: str, default: Any = ..., ranged: bool = True) -> Any:
    """A flag for one of the runtime's settings: its default and range from :class:`RuntimeSettings`."""
    d = describe(setting)
    return typer.Option(d["default"] if default is ... else default, flag, help=help,
                        min=d["min"] if ranged else None, max=d["max"] if ranged else None)


def _settings(**values: Any) -> RuntimeSettings:
    """The settings the flags gave, checked (a value out of range is a usage error naming its flag's setting)."""
    try:
        return RuntimeSettings(**{k: v for k, v in values.items() if v is not None})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _serve_metrics(metrics: Any, port: int, host: str) -> None:
    try:
        metrics.serve(port, host)
    except ValueError as exc:  # the port is taken: say so in one line (hometwin up restarts us)
        raise typer.BadParameter(str(exc)) from None


def service(kind: str = typer.Argument(..., help="element kind (sun, pv, battery, inverter, oven …)"),
            name: str = typer.Option(..., "--name", help="element name"),
            spec: Optional[Path] = typer.Option(None, "--spec", help="home.yaml"),
            config: Optional[str] = typer.Option(None, "--config", help="element config as JSON (overrides the spec's)"),
            router: str = typer.Option(DEFAULT_ROUTER, "--router", help="rs://host:port or ws://host:port/ws"),
            realm: Optional[str] = typer.Option(None, "--realm", help="WAMP realm (default hometwin.<home>)"),
            metrics_port: int = typer.Option(0, "--metrics-port", help="Prometheus port (0 = none)"),
            metrics_host: str = typer.Option("0.0.0.0", "--metrics-host"),
            metrics_linger: float = typer.Option(LINGER_S, "--metrics-linger", min=0.0, max=60.0, help=_LINGER_HELP),
            timeout: float = _option("timeout_s", "--timeout", "[s] inverter: wait this long for a packet",
                                     ranged=False),
            ahead_steps: int = _option("ahead_steps", "--ahead-steps",
                                       "inverter: steps the elements that run ahead compute at once "
                                       "(their chunk; at least the window)"),
            until: Optional[str] = typer.Option(None, "--until", help="run length (as hometwin run --until)"),
            state_dir: Optional[Path] = typer.Option(
                None, "--state-dir", help="keep the element's state in DIR/<name>.json after each settle and "
                                          "restore it at start (a restart continues where it was)"),
            state_interval: Optional[float] = _option(
                "state_interval_s", "--state-interval",
                "[s] write the state file at most this often (0 = every settle; default automatic: "
                "about 2% of the process's CPU, at least every 1 s); the last settle lands within it"),
            data_dir: Optional[Path] = typer.Option(
                None, "--data-dir", help="look up the data files the spec names by a relative path by their "
                                         "file name in DIR (a pod: the home's data ConfigMap is mounted there)"),
            credentials: Optional[Path] = typer.Option(None, "--credentials", help=_CREDENTIALS_HELP),
            ca_file: Optional[Path] = typer.Option(None, "--ca-file", help="CA certificate of a TLS router (rss://, wss://)"),
            log_level: str = typer.Option("INFO", "--log-level")) -> None:
    """Run one element as a WAMP service."""
    from hometwin.auth import element_authid
    from hometwin.deploy import realm_of
    from hometwin.runtime.metrics import ServiceMetrics
    from hometwin.runtime.wamp import component, run_component

    _logging(log_level)
    settings = _settings(timeout_s=timeout, ahead_steps=ahead_steps, state_interval_s=state_interval)
    creds = _credentials(credentials, element_authid(name))
    home, element = _home_and_element(spec, name, kind, config, until, data_dir)
    if state_dir is not None:
        from hometwin.runtime.state import StateKeeper

        keeper = StateKeeper(state_dir, element, interval_s=settings.state_interval_s)
        keeper.restore()  # before the service announces the element: its config may come from the file
        keeper.attach()
    metrics = ServiceMetrics(name, home=home.metadata.name, kind=kind, role=element.role.value)
    _serve_metrics(metrics, metrics_port, metrics_host)
    if element.role.value == "converter":
        from hometwin.runtime.balancer import Balancer

        host: Any = Balancer(element, [e.name for e in home.spec.elements], metrics, timeout_s=settings.timeout_s,
                             ahead_steps=settings.ahead_steps)
    else:
        from hometwin.runtime.service import ElementService
        from hometwin.topology import runs_ahead, signal_producers

        host = ElementService(element, metrics, ahead=name in runs_ahead(home),
                              producers=signal_producers(home, name) if element.inputs else None)
        if state_dir is not None and keeper.restored:
            # Restored from its state file: it is settled through that window, and says so to a
            # restarted inverter (after a router restart every service starts again at once).
            host.settled_seq, host.next_step = int(keeper.restored["seq"]), int(keeper.restored["step"])
    comp = component(router, realm or realm_of(home), credentials=creds, ca_file=_str(ca_file))

    @comp.on_join
    async def _joined(session: Any, details: Any) -> None:
        await host.on_join(session)
        logging.getLogger("hometwin.service").info("%s (%s) joined %s", name, kind, details.realm)

    run_component(comp, linger=lambda: metrics.linger(metrics_linger))


def clock(spec: Path = typer.Option(..., "--spec"),
          router: str = typer.Option(DEFAULT_ROUTER, "--router"),
          realm: Optional[str] = typer.Option(None, "--realm"),
          speed: str = typer.Option("max", "--speed", help="simulated s per wall s, or max"),
          window: Optional[int] = typer.Option(None, "--window", min=1, help="fixed steps per window (default automatic)"),
          until: Optional[str] = typer.Option(None, "--until", help="run length, e.g. 2d"),
          days: Optional[float] = typer.Option(None, "--days"),
          pause_at: Optional[int] = typer.Option(None, "--pause-at", help="pause when this step is reached"),
          paused: bool = typer.Option(False, "--paused", help="start paused"),
          retick: float = _option("retick_s", "--retick", "[s] publish a tick again when it was not done this "
                                  "long (a restarted inverter lost it)"),
          in_flight: int = _option("in_flight", "--in-flight", "ticks of single-step windows kept in flight at speed "
                                   "max (1: wait until a tick is done before the next)"),
          run_windows: int = _option("run_windows", "--run-windows", "single-step windows one tick stands for at "
                                     "speed max (1: a tick a window)"),
          nice: int = _option("clock_nice", "--nice", "lower this process's CPU priority by this much (hometwin "
                              "up: 10; with windows in flight the clock is off their critical path)", default=0),
          metrics_port: int = typer.Option(0, "--metrics-port"),
          metrics_host: str = typer.Option("0.0.0.0", "--metrics-host"),
          metrics_linger: float = typer.Option(LINGER_S, "--metrics-linger", min=0.0, max=60.0, help=_LINGER_HELP),
          credentials: Optional[Path] = typer.Option(None, "--credentials", help=_CREDENTIALS_HELP),
          ca_file: Optional[Path] = typer.Option(None, "--ca-file", help="CA certificate of a TLS router"),
          log_level: str = typer.Option("INFO", "--log-level")) -> None:
    """Run the clock service (issues ticks)."""
    from hometwin.cli import _parse_until, load_or_exit
    from hometwin.deploy import realm_of
    from hometwin.runtime.clock import Clock, replan_steps_of
    from hometwin.runtime.metrics import ServiceMetrics
    from hometwin.runtime.wamp import component, run_component
    from hometwin.spec import home_context

    _logging(log_level)
    settings = _settings(retick_s=retick, in_flight=in_flight, run_windows=run_windows, clock_nice=nice)
    creds = _credentials(credentials, "clock")
    if nice:
        os.nice(nice)
    home = load_or_exit(spec)
    ctx = home_context(home, _parse_until(until, days))
    metrics = ServiceMetrics("clock", home=home.metadata.name, kind="clock", role="clock")
    _serve_metrics(metrics, metrics_port, metrics_host)
    expect = [e.name for e in home.spec.elements if e.enabled]
    clk = Clock(ctx, speed=speed, window=window, default_window=home.spec.clock.window, expect=expect,
                paused=paused, until=pause_at, retick_s=settings.retick_s, metrics=metrics,
                replan_steps=replan_steps_of(home, ctx), in_flight=settings.in_flight,
                run_windows=settings.run_windows)
    comp = component(router, realm or realm_of(home), credentials=creds, ca_file=_str(ca_file))
    comp.on("join", lambda session, details: clk.on_join(session))
    run_component(comp, linger=lambda: metrics.linger(metrics_linger))


def router_cmd(spec: Optional[Path] = typer.Option(None, "--spec", help="home.yaml: its realm, elements and roles"),
               credentials: Optional[Path] = typer.Option(None, "--credentials", help=_CREDENTIALS_HELP),
               realm: Optional[str] = typer.Option(None, "--realm", help="WAMP realm (default hometwin.<home>)"),
               host: str = typer.Option("127.0.0.1", "--host", help="interface (0.0.0.0 in a container)"),
               port: int = typer.Option(8080, "--port", help="WebSocket port (browsers)"),
               rawsocket_port: int = typer.Option(8081, "--rawsocket-port", help="RawSocket port (services)"),
               tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="certificate (PEM): TCP transports "
                                                                                 "speak TLS only (rss://, wss://)"),
               tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="its private key (PEM)"),
               allow_origin: Optional[list[str]] = typer.Option(
                   None, "--allow-origin", help="a browser Origin that may open the WebSocket (repeatable; "
                                                "wildcards as http://127.0.0.1:*; default: this machine's pages)"),
               cbdir: Optional[Path] = typer.Option(None, "--cbdir", help="Crossbar node directory (default a temp dir)")) -> None:
    """Write a Crossbar node config for the home's realm and run the router (every session
    authenticates as one of the home's principals, with their roles)."""
    import threading

    from hometwin import auth
    from hometwin.cli import load_or_exit
    from hometwin.deploy import realm_of
    from hometwin.runtime.router import DEFAULT_ALLOWED_ORIGINS, Router

    if spec is None or credentials is None:
        raise typer.BadParameter("--spec and --credentials are required: the router admits the home's principals "
                                 "only (hometwin up writes them to <out>/credentials)")
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    for f in (tls_cert, tls_key):
        if f is not None and not f.is_file():
            raise typer.BadParameter(f"{f}: not a file")
    home = load_or_exit(spec)
    elements = auth.home_elements(home)
    try:
        secrets = auth.read_credentials(credentials, auth.principals_for(elements))
    except auth.CredentialError as exc:
        raise typer.BadParameter(str(exc)) from None
    realm = realm or realm_of(home)
    r = Router(realm=realm, host=host, port=port, rawsocket_port=rawsocket_port, cbdir=cbdir, log=sys.stdout,
               roles=auth.roles_for(elements), secrets=secrets,
               allowed_origins=tuple(allow_origin) if allow_origin else DEFAULT_ALLOWED_ORIGINS,
               tls=(str(tls_cert), str(tls_key)) if tls_cert is not None else None)
    r.start()
    print(f"router up: {r.url} (services), {r.ws_url} (browsers), realm {realm}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.is_set() and r.proc is not None and r.proc.poll() is None:
            stop.wait(0.5)
    finally:
        r.stop()


def _str(path: Optional[Path]) -> Optional[str]:
    return str(path) if path is not None else None


def up(file: Path = typer.Option(..., "-f", "--file", help="home.yaml"),
       speed: str = typer.Option("max", "--speed", help="simulated s per wall s (60 = a minute per second) or max"),
       window: Optional[int] = typer.Option(None, "--window", min=1, help="fixed steps per window (default automatic)"),
       until: Optional[str] = typer.Option(None, "--until"),
       days: Optional[float] = typer.Option(None, "--days"),
       out: Path = typer.Option(Path("out"), "--out"),
       router: Optional[str] = typer.Option(None, "--router", help="use this running router instead of starting one"),
       credentials: Optional[Path] = typer.Option(
           None, "--credentials", help="the home's credentials folder: made anew for our own router (default "
                                       "<out>/credentials, 0600 files); with --router, that router's (required)"),
       port: int = typer.Option(8080, "--port", help="router WebSocket port"),
       rawsocket_port: int = typer.Option(8081, "--rawsocket-port", help="router RawSocket port"),
       transport: str = typer.Option("unix", "--transport",
                                     help="how the services reach the router started here: unix (a Unix socket "
                                          "beside the router), rawsocket (TCP) or websocket"),
       metrics_port: int = typer.Option(0, "--metrics-port", help="first metrics port (one per process; 0 = none)"),
       pause_at: Optional[int] = typer.Option(None, "--pause-at", help="pause when this step is reached"),
       timeout: float = _option("timeout_s", "--timeout", "[s] the inverter waits this long for a packet",
                                ranged=False),
       ahead_steps: int = _option("ahead_steps", "--ahead-steps",
                                  "steps the elements that run ahead compute at once (1: every window)"),
       retick: Optional[float] = _option("retick_s", "--retick", "[s] the clock publishes a tick again when it was "
                                         f"not done this long (a restarted inverter lost it; default "
                                         f"{DEFAULTS.retick_s:g})", default=None),
       in_flight: int = _option("in_flight", "--in-flight",
                                "ticks of single-step windows the clock keeps in flight at speed max"),
       run_windows: int = _option("run_windows", "--run-windows",
                                  "single-step windows one clock tick stands for at speed max"),
       clock_nice: int = _option("clock_nice", "--clock-nice",
                                 "the clock's lower CPU priority (off the windows' critical path)"),
       state: bool = typer.Option(True, "--state/--no-state",
                                  help="elements keep their state in <out>/state, so a crashed one continues "
                                       "where it was (emptied at start: it is valid for one run)"),
       state_interval: Optional[float] = _option(
           "state_interval_s", "--state-interval", "[s] each element writes its state file at most this often "
           "(0 = every settle; default automatic: about 2% of its CPU, at least every 1 s)"),
       live: bool = typer.Option(True, "--live/--no-live", help="print live power flows once a second"),
       db: Optional[str] = typer.Option(None, "--db", envvar="HOMETWIN_DB_URL",
                                        help="record the run in this database (default sqlite:///<out>/hometwin.db)"),
       record_run: bool = typer.Option(True, "--record/--no-record",
                                       help="start the recorder (hometwin record) as one more service"),
       report: bool = typer.Option(False, "--report"),
       realtime: bool = typer.Option(False, "--realtime",
                                     help="follow the wall clock from now (start = now rounded down to the step, "
                                          "1x real time; --speed does not apply); sources take up new forecasts "
                                          "and prices as they are published (docs/data-sources.md)")) -> None:
    """Run a home as services: Crossbar router, clock, one process per element, the recorder."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from hometwin.cli import EXIT_FAILED, _parse_until, check_out_or_exit, console, kpi_table, write_or_exit
    from hometwin.results import Checkpointer
    from hometwin.runtime.clock import parse_speed
    from hometwin.runtime.launcher import Launcher, PortsInUse
    from hometwin.runtime.wamp import autobahn_errors_only, cancel_leftovers

    try:
        parse_speed(speed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if realtime and speed.strip().lower() not in ("max", "1", "1.0"):
        raise typer.BadParameter(f"--speed {speed}: a --realtime run follows the wall clock (1x); leave --speed out")
    if transport not in ("unix", "rawsocket", "websocket"):
        raise typer.BadParameter(f"--transport: unix, rawsocket or websocket (got {transport!r})")
    _settings(timeout_s=timeout, ahead_steps=ahead_steps, retick_s=retick, in_flight=in_flight,
              run_windows=run_windows, clock_nice=clock_nice, state_interval_s=state_interval)  # refused before a start
    until_s = _parse_until(until, days)
    err = Console(stderr=True)

    def sink(name: str, color: str, line: str) -> None:
        err.print(Text.assemble((f"{name:>10} │ ", color), line))

    launcher = Launcher(spec_path=file, speed=speed, window=window, until_s=until_s, out=out, router_url=router,
                        port=port, rawsocket_port=rawsocket_port, transport=transport, metrics_port=metrics_port,
                        pause_at=pause_at, timeout_s=timeout, ahead_steps=ahead_steps, retick_s=retick, keep_state=state,
                        state_interval_s=state_interval, log_sink=sink, in_flight=in_flight, run_windows=run_windows,
                        clock_nice=clock_nice, credentials_dir=credentials, realtime=realtime,
                        db_url=(db or f"sqlite:///{Path(out).resolve() / 'hometwin.db'}") if record_run else None)
    if router is not None and credentials is None:
        raise typer.BadParameter("--router: give that router's --credentials folder (every session authenticates)")

    try:
        launcher.check_metrics_ports()  # refused before the router or any element starts
        launcher.check_router_ports()
    except PortsInUse as exc:
        raise typer.BadParameter(str(exc)) from None
    check_out_or_exit(out)  # … and so is a run whose results could not be written
    checkpoint = Checkpointer(out)
    n_steps = launcher.ctx.n_steps

    async def keep(task: asyncio.Future) -> None:
        """Write the results so far every so often (in a thread: the recorder goes on meanwhile)."""
        loop = asyncio.get_running_loop()
        while not task.done():
            await asyncio.wait([task], timeout=1.0)
            if not task.done() and launcher.i and not launcher.stopping and checkpoint.due():
                partial = launcher.result().partial(launcher.i, n_steps, "checkpoint: the run goes on")
                await loop.run_in_executor(None, checkpoint.write, partial)

    async def main() -> Any:
        task = asyncio.ensure_future(launcher.run())
        keeper = asyncio.ensure_future(keep(task))
        if live and err.is_terminal:
            with Live(launcher.live_table(), console=err, refresh_per_second=1) as view:
                while not task.done():
                    await asyncio.wait([task], timeout=1.0)
                    view.update(launcher.live_table())
        elif live:
            last = -1
            while not task.done():
                await asyncio.wait([task], timeout=1.0)
                f = launcher.last_flows
                if f is not None and f.seq != last:
                    last = f.seq
                    err.print(f"step {launcher.i}: pv {f.flows['pv_ac_j'][-1] / f.dt_s:,.0f} W · load "
                              f"{f.flows['load_j'][-1] / f.dt_s:,.0f} W · grid "
                              f"{(f.flows['grid_import_j'][-1] - f.flows['grid_export_j'][-1]) / f.dt_s:,.0f} W")
        try:
            return await task
        finally:
            await asyncio.gather(keeper, return_exceptions=True)  # a checkpoint being written ends first

    autobahn_errors_only(sys.stderr)  # as in every service
    loop = asyncio.new_event_loop()
    task = loop.create_task(main())
    signals = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
    got: list[int] = []  # the first stop signal (the exit code is 128 + it)

    def on_signal(sig: signal.Signals) -> None:
        """First Ctrl-C / SIGTERM: stop everything and write the run so far; a second one: stop now."""
        got.append(int(sig))
        if launcher.stopping:
            err.print("[yellow]stopping at once …[/]")
            task.cancel()
        else:
            launcher.stop(signals[sig])

    for sig in signals:  # also when started with SIGINT ignored (a background job of a script)
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        result = loop.run_until_complete(task)
    except asyncio.CancelledError:
        result = launcher.result()
    finally:
        try:
            cancel_leftovers(loop)  # a cancelled launcher still stops its processes here
        finally:
            loop.close()
    if not len(result.frame):  # nothing settled (refused, or stopped before the first window): nothing to write
        why = launcher.failed or launcher.interrupted or "no window was settled"
        err.print(f"[bold red]{'run failed' if launcher.failed else 'stopped'}:[/] {why} — nothing settled, "
                  f"nothing written to {out}")
        raise typer.Exit(128 + got[0] if got and not launcher.failed else EXIT_FAILED)
    console.print(kpi_table({launcher.home.metadata.name: result.kpis()}, result.meta.get("currency", "")))
    paths = write_or_exit(result, out, report, checkpoint, n_steps)
    console.print(f"{len(result.frame)} steps as services in {result.meta['wall_s']:.2f} s · wrote "
                  + ", ".join(str(p) for p in paths.values()))
    if result.meta.get("steps_without"):
        err.print("[yellow]steps settled without an element: "
                  + ", ".join(f"{n} {k}" for n, k in result.meta["steps_without"].items())
                  + " (switched off, not on the roster yet, or stale: the log says which)[/]")
    if launcher.db_url is not None:
        from hometwin.cli import EXIT_RECORD
        from hometwin.recording.run import check_recorded
        from hometwin.recording.store import mask_url

        not_recorded = check_recorded(launcher.db_url, str(launcher.run_id), len(result.frame))
        if not_recorded is None:
            console.print(f"recorded as run {launcher.run_id} in {mask_url(launcher.db_url)}")
        elif not (launcher.interrupted or launcher.failed or launcher.ended_early):
            err.print(f"[bold red]--db: the run was not recorded[/] (its files were written): {not_recorded}")
            raise typer.Exit(EXIT_RECORD)
    if launcher.interrupted:
        err.print(f"[yellow]{launcher.interrupted}: stopped after {len(result.frame)} of {n_steps} steps; "
                  "the files hold the steps settled so far (kpis.json: meta.partial)[/]")
        raise typer.Exit(128 + (got[0] if got else signal.SIGINT))
    if launcher.failed:
        err.print(f"[bold red]run failed:[/] {launcher.failed} — {len(result.frame)} of {n_steps} steps settled")
        raise typer.Exit(EXIT_FAILED)
    if launcher.ended_early:
        err.print(f"[bold red]run ended early:[/] {launcher.ended_early}; the files hold the {len(result.frame)} "
                  "steps settled (kpis.json: meta.partial)")
        raise typer.Exit(EXIT_FAILED)


# -- ctl -----------------------------------------------------------------------------------------

def call(router: str, realm: str, uri: str, *args: Any, timeout_s: float = 10.0, credentials: Any = None,
         ca_file: Optional[str] = None, **kwargs: Any) -> Any:
    """One RPC on a running twin (opens a session as ``credentials``, calls, leaves)."""
    from hometwin.runtime.wamp import component, stop_component

    async def main() -> Any:
        comp = component(router, realm, credentials=credentials, ca_file=ca_file)
        result: asyncio.Future = asyncio.get_running_loop().create_future()

        @comp.on_join
        async def _joined(session: Any, details: Any) -> None:
            try:
                result.set_result(await session.call(uri, *args, **kwargs))
            except Exception as exc:
                result.set_exception(exc)

        @comp.on_leave
        async def _left(session: Any, details: Any) -> None:  # turned away before it joined
            if not result.done():
                from autobahn.wamp.exception import ApplicationError

                result.set_exception(ApplicationError(details.reason or "wamp.error.not_authorized",
                                                      details.message or ""))

        comp.start(asyncio.get_running_loop())
        try:
            return await asyncio.wait_for(result, timeout_s)
        finally:
            await stop_component(comp)  # leave quietly, without the reconnect a plain leave() starts

    import txaio

    txaio.use_asyncio()
    return asyncio.run(main())


@ctl_app.callback()
def _ctl_logging() -> None:
    """autobahn's errors only (not its "trying transport" notes), as in every service."""
    from hometwin.runtime.wamp import autobahn_errors_only

    autobahn_errors_only(sys.stderr)


_CTL_ROUTER = typer.Option(DEFAULT_ROUTER, "--router", help="router URL")
_CTL_REALM = typer.Option(None, "--realm", help="realm (hometwin.<home>)")
_CTL_FILE = typer.Option(None, "-f", "--file", help="home.yaml (for the realm)")
_CTL_CREDS = typer.Option(Path("out/credentials"), "--credentials", envvar="HOMETWIN_CREDENTIALS",
                          help="the home's credentials folder (hometwin up writes <out>/credentials); "
                               "ctl joins as its 'controller'")


def _realm(realm: Optional[str], file: Optional[Path]) -> str:
    if realm:
        return realm
    if file is not None:
        from hometwin.cli import load_or_exit
        from hometwin.deploy import realm_of

        return realm_of(load_or_exit(file))
    raise typer.BadParameter("give --realm or -f home.yaml")


def _ctl_call(router: str, realm: str, credentials: Path, uri: str, *args: Any, **kwargs: Any) -> Any:
    """One ``ctl`` RPC; a refusal or a missing twin is one clear line on stderr and exit code 1."""
    from autobahn.wamp.exception import ApplicationError

    creds = _credentials(credentials, "controller")
    try:
        return call(router, realm, uri, *args, credentials=creds, **kwargs)
    except ApplicationError as exc:
        detail = str(exc.args[0]) if exc.args else ""
        allowed = (exc.kwargs or {}).get("allowed")
        if allowed:
            detail += f" (settable: {', '.join(map(str, allowed))})"
        if exc.error in ("wamp.error.not_authorized", "wamp.error.authentication_failed",
                         "wamp.error.no_such_principal", "wamp.error.authorization_failed"):
            detail = (f"the router refused the controller of {credentials} ({detail or exc.error}) — are these "
                      "the credentials of the run at that router?")
        if exc.error == "wamp.error.no_such_procedure":
            detail = (f"nothing on realm {realm} at {router} serves {uri} — is the twin running there "
                      "(hometwin up), and are the element name and the realm right?")
        typer.echo(f"error: {exc.error}: {detail}", err=True)
        raise typer.Exit(1)
    except (OSError, asyncio.TimeoutError):
        typer.echo(f"error: no router answered at {router} (realm {realm}) within 10 s", err=True)
        raise typer.Exit(1)


def _ctl(router: str, realm: Optional[str], file: Optional[Path], credentials: Path, uri: str, *args: Any,
         **kwargs: Any) -> None:
    typer.echo(json.dumps(_ctl_call(router, _realm(realm, file), credentials, uri, *args, **kwargs), indent=2,
                          default=str))


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"on": True, "off": False}.get(text.lower(), text)


@ctl_app.command("set")
def ctl_set(element: str, props: list[str] = typer.Argument(..., help="key=value (JSON values)"),
            router: str = _CTL_ROUTER, realm: Optional[str] = _CTL_REALM, file: Optional[Path] = _CTL_FILE,
            credentials: Path = _CTL_CREDS) -> None:
    """Set element properties (take effect at the next window boundary): ``set oven on=true``."""
    from hometwin.runtime.messages import element_uri

    kwargs = {}
    for item in props:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: expected key=value")
        kwargs[key] = _value(value)
    _ctl(router, realm, file, credentials, element_uri(element, "set"), **kwargs)


@ctl_app.command("get")
def ctl_get(element: str, router: str = _CTL_ROUTER, realm: Optional[str] = _CTL_REALM,
            file: Optional[Path] = _CTL_FILE,
            credentials: Path = _CTL_CREDS) -> None:
    """An element's config and telemetry."""
    from hometwin.runtime.messages import element_uri

    _ctl(router, realm, file, credentials, element_uri(element, "get"))


@ctl_app.command("pause")
def ctl_pause(router: str = _CTL_ROUTER, realm: Optional[str] = _CTL_REALM, file: Optional[Path] = _CTL_FILE,
            credentials: Path = _CTL_CREDS) -> None:
    """Pause the clock at the next window boundary."""
    from hometwin.runtime.messages import clock_uri

    _ctl(router, realm, file, credentials, clock_uri("pause"))


@ctl_app.command("resume")
def ctl_resume(router: str = _CTL_ROUTER, realm: Optional[str] = _CTL_REALM, file: Optional[Path] = _CTL_FILE,
            credentials: Path = _CTL_CREDS) -> None:
    """Resume the clock."""
    from hometwin.runtime.messages import clock_uri

    _ctl(router, realm, file, credentials, clock_uri("resume"))


@ctl_app.command("speed")
def ctl_speed(speed: str, router: str = _CTL_ROUTER, realm: Optional[str] = _CTL_REALM,
              file: Optional[Path] = _CTL_FILE,
            credentials: Path = _CTL_CREDS) -> None:
    """Set the clock speed (simulated s per wall s, or max)."""
    from hometwin.runtime.messages import clock_uri

    _ctl(router, realm, file, credentials, clock_uri("set_speed"), speed)


@ctl_app.command("until")
def ctl_until(step: str, router: str = _CTL_ROUTER, realm: Optional[str] = _CTL_REALM,
              file: Optional[Path] = _CTL_FILE,
            credentials: Path = _CTL_CREDS) -> None:
    """Run until a step (or a duration from the start, e.g. 18h) and pause there."""
    from hometwin.runtime.messages import clock_uri

    _ctl(router, realm, file, credentials, clock_uri("run_until"), step)


@ctl_app.command("on")
def ctl_on(element: str, router: str = _CTL_ROUTER, realm: Optional[str] = _CTL_REALM,
           file: Optional[Path] = _CTL_FILE,
            credentials: Path = _CTL_CREDS) -> None:
    """Switch an element on (start its process in ``hometwin up``)."""
    from hometwin.runtime.messages import launcher_uri

    _ctl(router, realm, file, credentials, launcher_uri("on"), element)


@ctl_app.command("off")
def ctl_off(element: str, router: str = _CTL_ROUTER, realm: Optional[str] = _CTL_REALM,
            file: Optional[Path] = _CTL_FILE,
            credentials: Path = _CTL_CREDS) -> None:
    """Switch an element off (stop its process; it leaves the roster from the next window)."""
    from hometwin.runtime.messages import launcher_uri

    _ctl(router, realm, file, credentials, launcher_uri("off"), element)


@ctl_app.command("status")
def ctl_status(router: str = _CTL_ROUTER, realm: Optional[str] = _CTL_REALM, file: Optional[Path] = _CTL_FILE,
            credentials: Path = _CTL_CREDS) -> None:
    """Clock status and the inverter's roster."""
    from hometwin.runtime.messages import ROSTER_GET, clock_uri

    r = _realm(realm, file)
    out = {"clock": _ctl_call(router, r, credentials, clock_uri("status")),
           "roster": _ctl_call(router, r, credentials, ROSTER_GET)}
    typer.echo(json.dumps(out, indent=2, default=str))


def record(spec: Path = typer.Option(..., "--spec", help="home.yaml"),
           router: str = typer.Option(DEFAULT_ROUTER, "--router"),
           realm: Optional[str] = typer.Option(None, "--realm"),
           db: Optional[str] = typer.Option(None, "--db", envvar="HOMETWIN_DB_URL", show_envvar=True,
                                            help="database URL (sqlite:///FILE, postgresql://…); give one with a "
                                                 "password in the environment, not here"),
           run_id: Optional[str] = typer.Option(None, "--run-id", help="the run's id in the database (default: "
                                                "the home's run still 'running' there with this spec, else a new one)"),
           until: Optional[str] = typer.Option(None, "--until", help="run length, e.g. 2d"),
           days: Optional[float] = typer.Option(None, "--days"),
           runtime: str = typer.Option("up", "--runtime", help="how the home runs: up | kubernetes"),
           metrics_port: int = typer.Option(0, "--metrics-port", help="/metrics (a pod's probes); 0 = none"),
           nice: int = typer.Option(0, "--nice", min=0, max=19,
                                    help="lower this process's CPU priority (hometwin up: 10; the twin's pace is "
                                         "not the database's: the recorder catches up when the run leaves it CPU)"),
           metrics_host: str = typer.Option("0.0.0.0", "--metrics-host"),
           credentials: Optional[Path] = typer.Option(None, "--credentials", help=_CREDENTIALS_HELP),
           ca_file: Optional[Path] = typer.Option(None, "--ca-file", help="CA certificate of a TLS router"),
           log_level: str = typer.Option("INFO", "--log-level")) -> None:
    """Record a live home: every settled step, events and KPIs into a database (the recorder role)."""
    from hometwin.cli import _parse_until, load_or_exit
    from hometwin.deploy import realm_of
    from hometwin.recording.service import EXIT_DB, LiveRecorder, running_run_id
    from hometwin.recording.store import RecordingError
    from hometwin.runtime.metrics import ServiceMetrics
    from hometwin.runtime.wamp import component, run_component
    from hometwin.spec import home_context

    _logging(log_level)
    log = logging.getLogger("hometwin.recorder")
    creds = _credentials(credentials, "recorder")
    if nice:
        os.nice(nice)
    _serve_metrics(ServiceMetrics("recorder"), metrics_port, metrics_host)
    if not db:
        raise typer.BadParameter("--db URL (or HOMETWIN_DB_URL) is required: where to record")
    home = load_or_exit(spec)
    ctx = home_context(home, _parse_until(until, days))
    realm = realm or realm_of(home)
    try:
        rid = run_id or running_run_id(db, home, ctx)
        rec = LiveRecorder(home, ctx, db, rid, runtime=runtime)
    except RecordingError as exc:
        log.error("%s", exc)
        raise SystemExit(EXIT_DB)
    stop = asyncio.Event()
    comp = component(router, realm, credentials=creds, ca_file=_str(ca_file))

    async def joined(session: Any, details: Any) -> None:
        await rec.on_join(session, stop)
        log.info("recorder joined %s", details.realm)

    comp.on("join", joined)
    run_component(comp, stop=stop)
    rec.finish()
    if rec.error:
        raise SystemExit(EXIT_DB)
    import time as _time

    log.info("run %s %s: %d steps recorded (recorder CPU %.1f s)", rid, (rec.outcome or ("stopped",))[0],
             int(rec.have.sum()), _time.process_time())


def register(app: typer.Typer) -> None:
    """Add the runtime's commands to the ``hometwin`` CLI."""
    app.command("service")(service)
    app.command("record")(record)
    app.command("clock")(clock)
    app.command("router")(router_cmd)
    app.command("up")(up)
    app.add_typer(ctl_app, name="ctl")
