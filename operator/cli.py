"""``hometwin operator`` and ``hometwin crd`` (registered into the main CLI)."""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the Kubernetes commands to the ``hometwin`` CLI."""

    @app.command("crd")
    def crd_command() -> None:
        """Print the homes.hometwin.io CustomResourceDefinition (YAML) for `kubectl apply -f -`."""
        from hometwin.operator.crd import crd_yaml

        typer.echo(crd_yaml(), nl=False)

    @app.command("operator")
    def operator_command(
        namespace: Optional[list[str]] = typer.Option(None, "--namespace", "-n",
                                                      help="watch Homes in this namespace (repeatable)"),
        all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A", help="watch Homes cluster-wide"),
        standalone: bool = typer.Option(False, "--standalone",
                                        help="no peering with other operator replicas (one replica only)"),
        liveness: Optional[str] = typer.Option(None, "--liveness",
                                               help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz"),
    ) -> None:
        """Run the kopf operator: Home resources → one Deployment per element."""
        import asyncio

        import kopf

        from hometwin.operator import handlers

        if bool(namespace) == all_namespaces:
            raise typer.BadParameter("give --namespace NS (one or more) or --all-namespaces")
        asyncio.run(kopf.operator(registry=handlers.registry, standalone=standalone, clusterwide=all_namespaces,
                                  namespaces=namespace or (), liveness_endpoint=liveness))
