"""``hometwin dashboards``: Grafana provisioning for the recorder's database and Prometheus (docs/grafana.md).

The builders (hometwin.grafana, grafana-foundation-sdk) load only when the command runs: every
service process imports the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def dashboards(out: Optional[Path] = typer.Option(None, "--out", "-o", help="write Grafana provisioning to DIR"),
               chart: bool = typer.Option(False, "--chart", help="write the chart's dashboards "
                                                                  "(helm/hometwin/dashboards) instead"),
               postgres_host: str = typer.Option("127.0.0.1:5432", "--postgres-host",
                                                 help="host:port of the recorder's PostgreSQL, as Grafana reaches it"),
               database: str = typer.Option("hometwin", "--database", help="its database"),
               user: str = typer.Option("grafana", "--user", help="a read-only role (SELECT on the recorder's "
                                                                 "tables); its password: $HOMETWIN_GRAFANA_DB_PASSWORD "
                                                                 "in Grafana's environment"),
               prometheus_url: str = typer.Option("http://127.0.0.1:9090", "--prometheus-url"),
               scrape_interval: str = typer.Option("1s", "--scrape-interval",
                                                   help="Prometheus' scrape interval (Grafana's $__rate_interval "
                                                        "follows it; keep it under the services' 5 s linger)")) -> None:
    """Write the Grafana dashboards (Energy flows, Runtime) and provisioning for them (docs/grafana.md)."""
    from hometwin import grafana

    if chart == (out is not None):
        raise typer.BadParameter("give one of --out DIR or --chart")
    if chart:
        for p in grafana.write_dashboards(grafana.CHART_DASHBOARDS):
            typer.echo(f"wrote {p}")
        return
    assert out is not None
    out = out.resolve()
    files = grafana.write_dashboards(out / "dashboards")
    ds = out / "provisioning" / "datasources" / "hometwin.yaml"
    pv = out / "provisioning" / "dashboards" / "hometwin.yaml"
    for p, text in ((ds, grafana.datasources_yaml(postgres_host, database, user, prometheus_url, scrape_interval)),
                    (pv, grafana.dashboards_yaml(out / "dashboards"))):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for p in files + [ds, pv]:
        typer.echo(f"wrote {p}")
    typer.echo(f"point Grafana at it: GF_PATHS_PROVISIONING={out / 'provisioning'}")


def register(app: typer.Typer) -> None:
    app.command("dashboards")(dashboards)
