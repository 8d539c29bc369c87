"""Home → the processes that run it as services (pure; shared by `hometwin up` and the operator).

Both the local launcher and the Kubernetes operator start exactly these
commands — one router, one clock, one process per enabled element — so the two
deployments of the same spec are the same set of services (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SPEC_PATH_IN_POD = "/etc/hometwin/home.yaml"
DEFAULT_METRICS_PORT = 9100
ROUTER_WS_PORT = 8080
ROUTER_RAWSOCKET_PORT = 8081
#: Where an element's pod keeps its state file (an ``emptyDir``: it outlives a container crash).
STATE_DIR_IN_POD = "/var/lib/hometwin/state"
#: Where the data files of ``spec.deployment.data_config_map`` are mounted (by file name).
DATA_DIR_IN_POD = "/var/lib/hometwin/data"
#: Where a pod finds the home's credentials (hometwin.auth): its own key of the home's Secret, the
#: router all of them.
CREDENTIALS_DIR_IN_POD = "/etc/hometwin/credentials"
#: The recorder (``hometwin record``) reads its database URL from this environment variable, never
#: from its arguments (a PostgreSQL URL may hold a password): ``hometwin up`` sets it, and the
#: operator from a Secret (``spec.deployment.recorder_db_secret``).
DB_URL_ENV = "HOMETWIN_DB_URL"
#: Where a pod finds the router's TLS files (``spec.deployment.tls_secret``): the router its
#: certificate and key, every other pod the CA that signed it.
TLS_DIR_IN_POD = "/etc/hometwin/tls"


@dataclass(frozen=True)
class ServiceCommand:
    """One service of a home: its name, what it is, and its ``hometwin`` arguments."""

    name: str  # element name, or "router" / "clock"
    kind: str  # element kind, or "router" / "clock"
    role: str  # element role, or "router" / "clock"
    args: tuple[str, ...]  # arguments after the ``hometwin`` entry point
    enabled: bool = True
    metrics_port: int = DEFAULT_METRICS_PORT
    labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def realm_of(home: Any) -> str:
    """One WAMP realm per home."""
    return f"hometwin.{home.metadata.name}"


def service_commands(home: Any, spec_path: str, router_url: str,
                     metrics_port: int = DEFAULT_METRICS_PORT, state_dir: str | None = None,
                     data_dir: str | None = None,
                     credentials_dir: str = CREDENTIALS_DIR_IN_POD,
                     tls_dir: str | None = None, recorder: bool = False) -> list[ServiceCommand]:
    """Router, clock and one service per element (disabled ones included, ``enabled=False``); with
    ``recorder``, the recorder too (``hometwin record``: its database URL in :data:`DB_URL_ENV`).

    With ``state_dir`` every element keeps its state there (``--state-dir``), so a restarted
    element continues from its last settle; the router and the clock keep none.  With
    ``data_dir`` every element looks up the data files its config names by a relative path there,
    by file name (``--data-dir``; a pod, where they come from a ConfigMap), then and after a
    runtime ``set``.  Every process authenticates with its key in ``credentials_dir``
    (``--credentials``; the router reads every principal's there).
    """
    from hometwin.registry import element_class

    realm = realm_of(home)
    common = ("--spec", spec_path, "--router", router_url, "--realm", realm, "--credentials", credentials_dir)
    tls: tuple[str, ...] = ()
    if tls_dir is not None:  # the router speaks TLS only; the others check its certificate
        common += ("--ca-file", f"{tls_dir}/ca.crt")
        tls = ("--tls-cert", f"{tls_dir}/tls.crt", "--tls-key", f"{tls_dir}/tls.key")
    out = [
        ServiceCommand("router", "router", "router",
                       ("router", "--spec", spec_path, "--credentials", credentials_dir, "--realm", realm,
                        "--host", "0.0.0.0", "--port", str(ROUTER_WS_PORT),
                        "--rawsocket-port", str(ROUTER_RAWSOCKET_PORT)) + tls,
                       metrics_port=metrics_port),
        ServiceCommand("clock", "clock", "clock", ("clock",) + common + ("--metrics-port", str(metrics_port)),
                       metrics_port=metrics_port),
    ]
    for el in home.spec.elements:
        role = element_class(el.kind).role.value
        out.append(ServiceCommand(el.name, el.kind, role,
                                  ("service", el.kind, "--name", el.name) + common
                                  + ("--metrics-port", str(metrics_port))
                                  + (("--state-dir", state_dir) if state_dir is not None else ())
                                  + (("--data-dir", data_dir) if data_dir is not None else ()),
                                  enabled=el.enabled, metrics_port=metrics_port))
    if recorder:
        out.append(ServiceCommand("recorder", "recorder", "recorder",
                                  ("record",) + common + ("--metrics-port", str(metrics_port)), metrics_port=metrics_port))
    return out
