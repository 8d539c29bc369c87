"""``hometwin serve --kubernetes``: POST /api/apply creates the ``Home`` resource, then updates
it in place (a changed value changed, a removed one gone), against the Kubernetes API emulator
and the real operator of tests/test_operator.py — which then deploys the applied home."""

from __future__ import annotations

import pytest
import yaml
from fastapi.testclient import TestClient

from api_support import TOKEN, example
from conftest import EXAMPLES
from hometwin.api.app import Settings, create_app
from hometwin.api.kube import HomeApplier, merge_patch
from test_operator import ELEMENTS, NS, Cluster, cluster, wait_for  # noqa: F401 - the module's fixture

pytestmark = pytest.mark.timeout(600)


def test_merge_patch_turns_old_into_new() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}
    new = {"a": 1, "b": {"c": 5}, "e": [2], "f": "x"}
    patch = merge_patch(old, new)
    assert patch == {"b": {"c": 5, "d": None}, "e": [2], "f": "x"}


def test_apply_creates_then_updates_the_home(cluster: Cluster) -> None:  # noqa: F811
    app = create_app(Settings(token=TOKEN, base_dir=EXAMPLES, kube=HomeApplier(cluster.kube, NS)))
    c = TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}, raise_server_exceptions=False)
    doc = example("cape-town")
    doc["metadata"]["name"] = "api-apply"
    doc["spec"]["clock"]["window"] = 720
    r = c.post("/api/apply", json={"home": doc})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "api-apply", "namespace": NS, "created": True}
    home = cluster.home("api-apply")
    battery = next(el for el in home["spec"]["elements"] if el["name"] == "battery")
    assert battery["config"]["capacity_kwh"] == 10.0 and home["spec"]["clock"]["window"] == 720
    # the operator deploys it: router, clock and a Deployment per element
    wait_for(lambda: len(cluster.deployments("api-apply")) == len(ELEMENTS) + 2, "the applied home's Deployments")

    idx = next(i for i, el in enumerate(doc["spec"]["elements"]) if el["name"] == "battery")
    doc["spec"]["elements"][idx]["config"]["capacity_kwh"] = 20.0
    del doc["spec"]["clock"]["window"]
    r = c.post("/api/apply", json={"yaml": yaml.safe_dump(doc)})
    assert r.status_code == 200 and r.json()["created"] is False, r.text
    home = cluster.home("api-apply")
    battery = next(el for el in home["spec"]["elements"] if el["name"] == "battery")
    assert battery["config"]["capacity_kwh"] == 20.0 and "window" not in home["spec"]["clock"]

    doc["spec"]["elements"][idx]["config"]["capacity_kwh"] = -1  # refused before it reaches the cluster
    r = c.post("/api/apply", json={"home": doc})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == f"elements[{idx}].config.capacity_kwh"
    assert next(el for el in cluster.home("api-apply")["spec"]["elements"]
                if el["name"] == "battery")["config"]["capacity_kwh"] == 20.0


def test_apply_without_kubernetes_says_so() -> None:
    c = TestClient(create_app(Settings(token=TOKEN, base_dir=EXAMPLES)), headers={"Authorization": f"Bearer {TOKEN}"})
    r = c.post("/api/apply", json={"home": example("minimal")})
    assert r.status_code == 409 and "--kubernetes" in r.json()["detail"]
