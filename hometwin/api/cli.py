"""``hometwin serve``: the HTTP API and the built UI on one address, behind a login token."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Optional

import typer

#: The token may come from the environment (a test, a service manager) instead of a fresh one.
ENV_TOKEN = "HOMETWIN_SERVE_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (port 0: a free one), bound before the address is printed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _examples_note(folder: Path) -> None:
    """Read the examples now (a few seconds), so the first GET /api/examples is quick; say which
    ones do not run here and why."""
    from hometwin.api.homes import examples
    from hometwin.datafiles import ENV_DATA_ROOT

    left = [e for e in examples(folder).values() if "problem" in e]
    for e in left:
        hint = f" (set {ENV_DATA_ROOT} to that data folder to offer it)" if " outside " in e["problem"] else ""
        typer.echo(f"note: example {e['name']} is not offered: {e['problem']}{hint}", err=True)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
              port: int = typer.Option(8765, "--port", min=0, max=65535, help="port (0: any free one)"),
              no_auth: bool = typer.Option(False, "--no-auth", help="no login token (only on a loopback --host)"),
              ui: Optional[Path] = typer.Option(None, "--ui", help="the built UI (default: ui/dist/hometwin-ui/browser)"),
              examples: Optional[Path] = typer.Option(None, "--examples", help="folder of example home.yaml files"),
              base_dir: Optional[Path] = typer.Option(None, "--base-dir",
                                                      help="folder relative data files of posted homes resolve "
                                                           "against (default: the examples' folder, so an example "
                                                           "loaded in the UI runs as it is)"),
              work_dir: Optional[Path] = typer.Option(None, "--work-dir",
                                                      help="live twins' spec, state and credentials (default: a temporary folder each)"),
              results: Optional[Path] = typer.Option(None, "--results",
                                                     help="a folder of results of hometwin run --out (or of such "
                                                          "folders), offered as finished runs"),
              kubernetes: bool = typer.Option(False, "--kubernetes",
                                              help="POST /api/apply creates or updates the Home resource in the cluster "
                                                   "(kubeconfig, or in-cluster)"),
              namespace: str = typer.Option("default", "--namespace", help="--kubernetes: namespace of the Home resources"),
              log_level: str = typer.Option("warning", "--log-level", help="uvicorn's log level")) -> None:
        """Serve the HTTP API and the UI; open the printed address (it holds the login token)."""
        try:
            import uvicorn

            from hometwin.api.app import Settings, create_app, ui_missing_text
        except ModuleNotFoundError as exc:
            typer.echo(f"error: hometwin serve needs {exc.name}: pip install 'hometwin[serve]'", err=True)
            raise typer.Exit(2)
        if no_auth and not is_loopback(host):
            typer.echo(f"error: --no-auth is refused on --host {host}: without a token anyone who reaches that "
                       "address could run and control twins; bind to 127.0.0.1 or drop --no-auth", err=True)
            raise typer.Exit(2)
        token = None if no_auth else (os.environ.get(ENV_TOKEN) or None)
        settings = Settings(work_dir=work_dir)
        if not no_auth and token is not None:
            if len(token) < 16:
                typer.echo(f"error: {ENV_TOKEN}: at least 16 characters", err=True)
                raise typer.Exit(2)
            settings.token = token
        elif no_auth:
            settings.token = None
        if ui is not None:
            settings.ui_dir = ui
        if examples is not None:
            settings.examples_dir = examples
        settings.base_dir = (base_dir or settings.examples_dir).resolve()
        if results is not None:
            if not results.is_dir():
                typer.echo(f"error: --results {results}: not a folder", err=True)
                raise typer.Exit(2)
            settings.results_dir = results
        if kubernetes:
            from hometwin.api.kube import HomeApplier

            try:
                settings.kube = HomeApplier.connect(namespace)
            except Exception as exc:  # noqa: BLE001 - no cluster: say so in one line
                typer.echo(f"error: --kubernetes: cannot reach a cluster: {type(exc).__name__}: {exc}", err=True)
                raise typer.Exit(2)
        try:
            sock = bind(host, port)
        except OSError as exc:
            typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
            raise typer.Exit(2)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        address = f"http://{shown}:{bound}/" + (f"?token={settings.token}" if settings.token else "")
        ui_dir = Path(settings.ui_dir).resolve()
        if not (ui_dir / "index.html").is_file():
            typer.echo(f"warning: {ui_missing_text(ui_dir)}", err=True)
        if settings.kube is not None:
            typer.echo(f"Kubernetes: POST /api/apply writes Home resources in namespace {namespace}", err=True)
        typer.echo(f"hometwin serve: open {address}")
        typer.echo(f"  API docs: http://{shown}:{bound}/api/docs" + (f"?token={settings.token}" if settings.token else ""))
        sys.stdout.flush()
        app_ = create_app(settings)
        threading.Thread(target=_examples_note, args=(Path(settings.examples_dir),), daemon=True).start()
        # no access log: an EventSource sends the token in its URL, and credentials stay out of logs
        config = uvicorn.Config(app_, log_level=log_level, lifespan="on", timeout_graceful_shutdown=5,
                                access_log=False)
        server = uvicorn.Server(config)
        try:
            server.run(sockets=[sock])
        finally:
            app_.state.runs.stop_all()
