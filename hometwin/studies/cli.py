"""``hometwin compare-strategies``: one home under several strategies, with the gap to the perfect-foresight bound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

DEFAULT = ["self_consumption", "time_of_use", "backup", "lp", "lp_forecast_error", "perfect_foresight"]


def register(app: typer.Typer) -> None:
    @app.command("compare-strategies")
    def compare_strategies_cmd(
        file: Path = typer.Option(..., "-f", "--file", help="home.yaml (needs an inverter; a battery for the battery strategies)"),
        strategy: Optional[list[str]] = typer.Option(None, "--strategy", "-s",
                                                     help="a preset name (self_consumption, time_of_use, backup, lp, "
                                                          "lp_forecast_error, mpc, heating_mpc, heating_qp, thermostat, "
                                                          "perfect_foresight) "
                                                          "or a JSON mapping; repeat for several"),
        days: Optional[float] = typer.Option(None, "--days", help="run only this many days"),
        voll: Optional[float] = typer.Option(None, "--voll", min=0.0,
                                             help="value of lost load per kWh (tariff currency): adds the cost of "
                                                  "unserved energy, so outage-blind strategies are not flattered, and "
                                                  "is the planners' price of unserved energy where they set none"),
        out: Optional[Path] = typer.Option(None, "--json", help="also write the table as JSON"),
    ) -> None:
        """Run a home under several strategies: cost, comfort violation, unserved energy, cycles, gap to the optimum."""
        from rich.console import Console
        from rich.table import Table

        from hometwin.cli import load_or_exit
        from hometwin.services.inverter.strategies.base import StrategyError
        from hometwin.studies.compare import compare_strategies

        console = Console()
        home = load_or_exit(file)
        names: list[Any] = [json.loads(s) if s.strip().startswith("{") else s for s in (strategy or DEFAULT)]
        until_s = int(days * 86400) if days else None
        try:
            with console.status("running strategies …"):
                rows = compare_strategies(home, names, until_s, voll_per_kwh=voll)
        except (StrategyError, ValueError) as exc:
            Console(stderr=True).print(f"[bold red]strategy error:[/] {exc}")
            raise typer.Exit(2)
        cur = next(iter(rows.values()))["currency"]
        t = Table(title=f"{home.metadata.name}: strategies" + (f" over {days:g} days" if days else ""))
        cols = ["strategy", f"energy cost [{cur}]", f"total [{cur}]", "comfort K·h", f"+ comfort [{cur}]",
                f"score [{cur}]", "gap to bound", "unserved kWh", "cycles", "solve median ms", "wall s"]
        if voll is not None:
            cols.insert(3, f"+ lost load [{cur}]")
        for col in cols:
            t.add_column(col, justify="right" if col != "strategy" else "left")
        for name, r in rows.items():
            gap = r.get("gap", float("nan"))
            cells = [name, f"{r['energy_cost']:,.2f}", f"{r['total_cost']:,.2f}", f"{r['comfort_violation_kh']:.2f}",
                     f"{r.get('comfort_cost', 0.0):,.2f}", f"{r.get('score', float('nan')):,.2f}",
                     f"{gap:+.2%}" if gap == gap else "n/a", f"{r['unserved_kwh']:.2f}", f"{r['battery_cycles']:.1f}",
                     f"{r.get('solve_median_ms', 0.0):.1f}", f"{r['wall_s']:.1f}"]
            if voll is not None:
                cells.insert(3, f"{r['cost_with_lost_load']:,.2f}")
            t.add_row(*cells)
        console.print(t)
        pf = rows.get("perfect_foresight", {})
        if "bound" in pf:
            parts = pf.get("bound_parts", {})
            console.print(f"bound (perfect foresight, one LP over the whole run of battery, heating, geysers): "
                          f"{pf['bound']:,.2f} {cur} = energy {parts.get('energy_cost', float('nan')):,.2f} + lost load "
                          f"{parts.get('lost_load_cost', float('nan')):,.2f} + comfort {parts.get('comfort_cost', float('nan')):,.2f}")
            if pf.get("bound_valid"):
                console.print("score = energy cost + unserved kWh × VoLL + comfort K·h × "
                              f"{pf.get('comfort_weight_per_kh', 0.0):g} {cur}/K·h (what the bound minimises); "
                              "gap = (score − bound) / |bound|: the bound is below every score, the reference's own included.")
            else:
                console.print(f"[bold yellow]{pf.get('bound_note', 'no valid bound')}[/]")
        if voll is not None:
            console.print(f"+ lost load = energy cost + unserved kWh × {voll:g} {cur}/kWh (--voll).")
        for name, r in rows.items():  # comfort out of reach is reported, not refused
            if r.get("warnings"):
                console.print(f"[yellow]{name}[/]: comfort out of reach in {r.get('comfort_unreachable_kh', 0.0):.2f} K·h "
                              f"of the plans' first steps (while present) — {r['warnings'][0]}")
        if out:
            out.write_text(json.dumps({k: {a: b for a, b in v.items() if a != "result"} for k, v in rows.items()},
                                      indent=2, default=float))
