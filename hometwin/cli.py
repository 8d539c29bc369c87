"""The ``hometwin`` command (typer + rich).

Core commands live here (run, validate, schema, compare).  Other rooms add
theirs from their own module through a ``register(app)`` function listed in
``_PLUGINS`` (the WAMP runtime: service/router/up/ctl; the operator; the
optimizer's compare), so this file stays small and nobody edits it to add one.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hometwin.kpi_labels import FRACTIONS, kpi_label

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="hometwin: a digital twin of a home's energy system.")
console = Console()
err_console = Console(stderr=True)

EXIT_SPEC = 2

_PLUGINS = (
    "hometwin.runtime.cli",  # service, router, up, ctl
    "hometwin.grafana_cli",  # dashboards
    "hometwin.operator.cli",  # operator, crd
    "hometwin.studies.cli",  # compare-strategies
    "hometwin.api.cli",  # serve: the HTTP API and the UI
)


def fail_spec(exc: Exception) -> None:
    """Print every problem of a refused spec, one per line, and exit 2 (nothing ran)."""
    errors = getattr(exc, "errors", None) or [str(exc)]
    source = getattr(exc, "source", "") or ""
    err_console.print(f"[bold red]invalid home spec{(' ' + source) if source else ''}[/] — {len(errors)} problem(s), nothing was run:")
    for line in errors:
        err_console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)  # one line each
    raise typer.Exit(EXIT_SPEC)


def load_or_exit(path: Path) -> Any:
    from hometwin.spec import SpecError, load_home

    try:
        return load_home(path)
    except SpecError as exc:
        fail_spec(exc)


def _parse_until(until: Optional[str], days: Optional[float]) -> Optional[int]:
    from hometwin.spec import parse_duration_s

    if until and days:
        raise typer.BadParameter("give --until or --days, not both")
    if days is not None:
        from hometwin.spec import MAX_RUN_S, MAX_RUN_YEARS

        if not 0 < days <= MAX_RUN_S / 86400:  # NaN fails too
            raise typer.BadParameter(f"--days: must be > 0 and at most {MAX_RUN_S // 86400} ({MAX_RUN_YEARS} years) "
                                     f"(got {days})")
        return int(days * 86400)
    if until:
        try:
            return parse_duration_s(until)
        except ValueError as exc:
            raise typer.BadParameter(f"--until: {exc}") from None
    return None


def kpi_table(kpis: dict[str, dict[str, float]], currency: str = "") -> Table:
    """KPIs side by side; with two or more columns, the difference to the first."""
    names = list(kpis)
    table = Table(title="Key figures", show_lines=False)
    table.add_column("KPI")
    for name in names:
        table.add_column(name, justify="right")
    if len(names) > 1:
        for name in names[1:]:
            table.add_column(f"Δ {name}", justify="right")
    first = kpis[names[0]]
    for key in first:
        row = [_label(key, currency)] + [_fmt(kpis[n].get(key), key) for n in names]
        if len(names) > 1:
            for n in names[1:]:
                row.append(_fmt_delta(first.get(key), kpis[n].get(key), key))
        table.add_row(*row)
    return table


def _label(key: str, currency: str) -> str:
    return escape(kpi_label(key, currency))  # "[kWh]" is no rich markup


def _fmt(v: Any, key: str = "") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if key in FRACTIONS:
        return f"{v * 100:.1f}"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) >= 1e-2 or v == 0 else f"{v:.2e}"
    return str(v)


def _fmt_delta(a: Any, b: Any, key: str = "") -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or a != a or b != b:
        return "–"
    d = b - a
    if key in FRACTIONS:
        return f"{d * 100:+.1f} pp"
    rel = f" ({d / abs(a):+.1%})" if a else ""
    return f"{d:+,.2f}{rel}"


@app.command()
def run(file: Path = typer.Option(..., "-f", "--file", help="home.yaml"),
        until: Optional[str] = typer.Option(None, "--until", help="run only this long, e.g. 2d, 36h"),
        days: Optional[float] = typer.Option(None, "--days", help="run only this many days"),
        window: Optional[int] = typer.Option(None, "--window", min=1, help="steps per window (default one day)"),
        out: Path = typer.Option(Path("out"), "--out", help="folder for flows.parquet, flows.csv, kpis.json"),
        report: bool = typer.Option(False, "--report", help="also write report.html"),
        db: Optional[str] = typer.Option(None, "--db", envvar="HOMETWIN_DB_URL",
                                         help="also record the run in this database (sqlite:///FILE, postgresql://…)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
        offline: bool = typer.Option(False, "--offline", envvar="HOMETWIN_OFFLINE",
                                     help="use only cached data of weather/price/outage services; fetch nothing"),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", envvar="HOMETWIN_CACHE_DIR",
                                                 help="cache of fetched data (default ~/.cache/hometwin)")) -> None:
    """Run a home in-process and print its KPIs (and record it in a database with --db)."""
    from hometwin.fetch import configure

    with configure(cache_dir=cache_dir, offline=offline):
        _run(file, until, days, window, out, report, db, quiet)


def _run(file: Path, until: Optional[str], days: Optional[float], window: Optional[int], out: Path, report: bool,
         db: Optional[str], quiet: bool) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from hometwin.engine import Engine
    from hometwin.fetch import SourceError
    from hometwin.ledger import LedgerError
    from hometwin.results import Checkpointer
    from hometwin.spec import SpecError

    home = load_or_exit(file)
    until_s = _parse_until(until, days)
    try:
        engine = Engine(home, window=window, until_s=until_s)
    except SpecError as exc:
        fail_spec(exc)
    except SourceError as exc:  # a service unreachable, a token missing, offline without the data
        err_console.print(f"cannot start: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_SOURCE)
    except (ValueError, FileNotFoundError) as exc:
        err_console.print(f"[bold red]cannot start:[/] {exc}", markup=True)
        raise typer.Exit(EXIT_SPEC)
    check_out_or_exit(out)
    recording = open_recording(db, engine)
    total = engine.ctx.n_steps
    checkpoint = Checkpointer(out)
    stop = StopSignals()
    bar_update: Any = None

    def progress(i: int, n: int) -> None:
        if bar_update is not None:
            bar_update(i)
        if i < n and checkpoint.due():
            checkpoint.write(engine.recorder.result().partial(i, n, "checkpoint: the run goes on"))

    result: Any = None
    try:
        with stop:
            if quiet:
                result = engine.run(progress, stop=stop.requested)
            else:
                with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                              TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=True) as bar:
                    task = bar.add_task(f"{home.metadata.name}: {total} steps", total=total)
                    bar_update = lambda i: bar.update(task, completed=i)  # noqa: E731
                    result = engine.run(progress, stop=stop.requested)
    except KeyboardInterrupt:  # a second Ctrl-C in the middle of a window: the windows before it
        result = engine.recorder.result() if engine.recorder is not None else None
    except LedgerError as exc:
        err_console.print(f"[bold red]ledger error:[/] {exc}")
        if recording is not None:
            recording.finish(None, "failed", f"ledger error: {exc}")
        raise typer.Exit(3)
    if result is None:
        if recording is not None:
            recording.finish(None, "stopped", stop.why)
        err_console.print(f"[yellow]{stop.why}: stopped before the first window; nothing written[/]")
        raise typer.Exit(stop.exit_code)
    if engine.i < total:
        result = result.partial(engine.i, total, stop.why or "stopped")
    console.print(kpi_table({home.metadata.name: result.kpis()}, result.meta.get("currency", "")))
    if recording is not None:
        recording.finish(result, "stopped" if stop.signum is not None else "finished", stop.why if stop.signum else None)
    paths = write_or_exit(result, out, report, checkpoint, total)
    console.print(f"{len(result.frame)} steps in {result.meta['wall_s']:.2f} s · wrote " + ", ".join(str(p) for p in paths.values()))
    if recording is not None:
        if recording.error is not None:
            err_console.print(f"[bold red]--db: the run was not recorded[/] (its files were written): "
                              f"{escape(recording.error)}")
            raise typer.Exit(EXIT_RECORD)
        console.print(f"recorded as run {recording.run_id} in {escape(recording.store.masked)} "
                      f"({recording.write_s:.2f} s writing)")
    if stop.signum is not None:
        err_console.print(f"[yellow]{stop.why}: stopped after {len(result.frame)} of {total} steps; the files hold "
                          "the steps settled so far (kpis.json: meta.partial)[/]")
        raise typer.Exit(stop.exit_code)


# -- interruption and results that are not lost ------------------------------------------------

#: Exit codes: a spec or an option refused (nothing ran), the run failed or ended early, its
#: results could not be written, and interrupted (128 + the signal: 130 Ctrl-C, 143 SIGTERM).
EXIT_FAILED = 3
EXIT_WRITE = 4
#: The run's results were written but it could not be recorded in the database (--db).
EXIT_RECORD = 5
#: A data source could not be read: a service unreachable, a token missing, --offline without
#: the data in the cache (nothing ran).
EXIT_SOURCE = 6


class StopSignals:
    """SIGINT/SIGTERM while a run computes: the first asks it to stop after the window in
    progress (:meth:`requested`), a second one stops it at once (``KeyboardInterrupt``)."""

    NAMES = {2: "Ctrl-C", 15: "SIGTERM"}

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    @property
    def why(self) -> str:
        return self.NAMES.get(self.signum or 0, "stopped")

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 2)

    def requested(self) -> bool:
        return self.signum is not None

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        err_console.print(f"[yellow]{self.why}: stopping after this window (again: at once) …[/]")

    def __enter__(self) -> "StopSignals":
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *_: Any) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)


def check_out_or_exit(out: Path) -> None:
    """Refuse a run whose output folder cannot be written, before it starts (exit 2)."""
    from hometwin.results import OutputNotWritable, check_writable

    try:
        check_writable(out)
    except OutputNotWritable as exc:
        err_console.print(f"[bold red]--out:[/] {escape(str(exc))}; nothing was run")
        raise typer.Exit(EXIT_SPEC)


def open_recording(db: Optional[str], engine: Any) -> Any:
    """``--db``: the database opened and the run's row written before the run starts.  When that
    fails (a bad URL, the database unreachable, a full disk) one line says so (no password) and the
    run goes on without it: its result files are written, and the command exits 5 at the end."""
    if not db:
        return None
    from types import SimpleNamespace

    from hometwin.recording.run import EngineRecording
    from hometwin.recording.store import RecordingError

    try:
        return EngineRecording(db, engine)
    except RecordingError as exc:
        err_console.print(f"[bold red]--db:[/] {escape(str(exc))}; the run goes on unrecorded")
        return SimpleNamespace(error=str(exc), finish=lambda *a, **k: None)


def write_or_exit(result: Any, out: Path, report: bool, checkpoint: Any, steps_asked: int) -> dict[str, Path]:
    """Write the results (all files or none, :meth:`Result.write`); when that fails, say what the
    folder holds instead (the last checkpoint, or nothing) and exit 4."""
    try:
        return result.write(out, report=report)
    except Exception as exc:
        kept = (f"{out} keeps the checkpoint of the first {checkpoint.steps} of {steps_asked} steps "
                "(kpis.json: meta.partial)" if checkpoint is not None and checkpoint.steps else "nothing was written")
        err_console.print(f"[bold red]could not write the results[/] to {escape(str(out))}: "
                          f"{escape(f'{type(exc).__name__}: {exc}')}; {kept}")
        raise typer.Exit(EXIT_WRITE)


@app.command()
def validate(file: Path = typer.Option(..., "-f", "--file", help="home.yaml")) -> None:
    """Validate a home.yaml and its data files: every problem, one line each (exit 2 if any)."""
    from hometwin.spec import SpecError, check_setup

    home = load_or_exit(file)
    try:
        check_setup(home)  # the data files and every element's setup, as `run` does; nothing runs
    except SpecError as exc:
        exc.source = str(file)
        fail_spec(exc)
    n = len(home.spec.elements)
    console.print(f"[green]ok[/] {file}: home {home.metadata.name!r}, {n} elements")


@app.command()
def schema(out: Optional[Path] = typer.Option(None, "--out", "-o", help="write to a file instead of stdout")) -> None:
    """Print the JSON Schema of the Home document."""
    from hometwin.spec import json_schema

    text = json.dumps(json_schema(), indent=2)
    if out:
        out.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")


@app.command()
def compare(files: list[Path] = typer.Option(..., "-f", "--file", help="two or more home.yaml"),
            until: Optional[str] = typer.Option(None, "--until"),
            days: Optional[float] = typer.Option(None, "--days"),
            window: Optional[int] = typer.Option(None, "--window", min=1)) -> None:
    """Run several homes and print their KPIs side by side with differences."""
    from hometwin.engine import Engine

    homes = [load_or_exit(f) for f in files]
    until_s = _parse_until(until, days)
    kpis: dict[str, dict[str, float]] = {}
    currency = ""
    for f, home in zip(files, homes):
        with console.status(f"running {f} …"):
            result = Engine(home, window=window, until_s=until_s).run()
        label = home.metadata.name if home.metadata.name not in kpis else f"{home.metadata.name} ({f.stem})"
        kpis[label] = result.kpis()
        currency = currency or result.meta.get("currency", "")
    console.print(kpi_table(kpis, currency))


def _register_plugins() -> None:
    for module in _PLUGINS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue  # that room is not installed (yet)
            raise
        mod.register(app)


_register_plugins()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
