"""``kubectl get homes`` shows a running home's simulated time and net grid power.

The real kopf operator against kmock's emulator (as tests/test_operator.py) reads the grid
element's real Prometheus endpoint (a :class:`ServiceMetrics` served on a loopback port,
what every element pod runs) and fills ``status.simulatedTime`` / ``status.netPowerW`` —
the CRD's ``Simulated`` and ``Net W`` printer columns.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest

from hometwin.operator.crd import PRINTER_COLUMNS
from hometwin.operator.progress import grid_element, parse_progress
from hometwin.runtime.metrics import ServiceMetrics
from hometwin.runtime.router import free_port
from test_operator import Cluster, cape_town, wait_for

PORT = free_port()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    kubeconfig = tmp_path_factory.mktemp("kube") / "kubeconfig"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", str(kubeconfig))
        mp.setenv("HOMETWIN_METRICS_URL", f"http://127.0.0.1:{PORT}/metrics")  # the grid pod's Service, here
        running = Cluster(kubeconfig).start()
        yield running
        running.close()


def _status(cluster: Cluster, name: str, power_w: float, when: dt.datetime) -> Any:
    st = cluster.home(name).get("status") or {}
    want = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return st if st.get("simulatedTime") == want and st.get("netPowerW") == power_w else None


def test_printer_columns_follow_the_grid_elements_metrics(cluster: Cluster) -> None:
    paths = {c["name"]: c["jsonPath"] for c in PRINTER_COLUMNS}
    assert paths["Simulated"] == ".status.simulatedTime" and paths["Net W"] == ".status.netPowerW"

    grid = ServiceMetrics("grid")
    grid.serve(PORT, "127.0.0.1")
    t1 = dt.datetime(2025, 1, 1, 18, 0, tzinfo=dt.timezone.utc)
    grid.settled(np.array([0.0, 1200.0 * 60]), 60.0, t1.timestamp(), None, 2)  # importing 1.2 kW

    cluster.apply(cape_town("ct-progress"))
    st = wait_for(lambda: _status(cluster, "ct-progress", 1200.0, t1), "Simulated/Net W from /metrics")
    assert st["phase"] in ("Pending", "Running")

    t2 = t1 + dt.timedelta(hours=6)
    grid.settled(np.array([-2500.0 * 60]), 60.0, t2.timestamp(), None, 1)  # exporting 2.5 kW at noon
    wait_for(lambda: _status(cluster, "ct-progress", -2500.0, t2), "the columns to follow")


def test_parse_progress_reads_only_the_grid_element() -> None:
    text = ("# TYPE hometwin_element_power_watts gauge\n"
            'hometwin_element_power_watts{element="roof"} 3000.0\n'
            'hometwin_element_power_watts{element="grid"} -450.24\n'
            "# TYPE hometwin_simulated_time_seconds gauge\n"
            'hometwin_simulated_time_seconds{element="grid"} 1.7356896e+09\n')
    got = parse_progress(text, "grid")
    assert got == {"netPowerW": -450.2,
                   "simulatedTime": dt.datetime.fromtimestamp(1.7356896e9, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert parse_progress(text, "nobody") == {}
    assert grid_element({"elements": [{"name": "g", "kind": "grid", "enabled": False},
                                      {"name": "mains", "kind": "grid"}]}) == "mains"
    assert grid_element({"elements": [{"name": "sun", "kind": "sun"}]}) is None
