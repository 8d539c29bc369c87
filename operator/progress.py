"""A running home's progress for ``kubectl get homes``: simulated time and net grid power.

Every element service exports ``hometwin_simulated_time_seconds`` and
``hometwin_element_power_watts`` (docs/runtime.md); the grid element's power is the
home's net exchange (+ import onto the AC bus, − export).  The operator reads the grid
element's metrics Service (``<home>-<grid>:9100``, the one the manifests create) on a
timer and writes ``status.simulatedTime`` and ``status.netPowerW``, the CRD's
``Simulated`` and ``Net W`` printer columns.  An unreachable pod (starting, scaled to 0)
is not an error: the columns keep their last values.
"""

from __future__ import annotations

import datetime as dt
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

#: Where an element's metrics are; ``{service}``, ``{namespace}``, ``{port}`` are filled in.
#: (``HOMETWIN_METRICS_URL`` overrides it, e.g. for an operator outside the cluster.)
METRICS_URL = "http://{service}.{namespace}.svc:{port}/metrics"


def grid_element(spec: Any) -> str | None:
    """Name of the home's enabled grid element (from the Home's ``spec``), if any."""
    for el in (spec or {}).get("elements", []) or []:
        if el.get("kind") == "grid" and el.get("enabled", True):
            return str(el["name"])
    return None


def parse_progress(text: str, element: str) -> dict[str, Any]:
    """``simulatedTime`` (ISO 8601, UTC) and ``netPowerW`` of ``element`` from Prometheus text."""
    out: dict[str, Any] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.labels.get("element") != element:
                continue
            if s.name == "hometwin_simulated_time_seconds" and s.value > 0:
                out["simulatedTime"] = dt.datetime.fromtimestamp(s.value, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            elif s.name == "hometwin_element_power_watts":
                out["netPowerW"] = round(float(s.value), 1)
    return out


def read_progress(url: str, element: str, timeout_s: float = 2.0) -> dict[str, Any]:
    """Scrape ``url`` and return :func:`parse_progress` of it (raises ``OSError`` if unreachable)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - the home's own Service
        return parse_progress(resp.read().decode(), element)
