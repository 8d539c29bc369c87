"""The Helm chart: lint, render with default and non-default values, validate every manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from hometwin.operator.crd import crd_yaml

CHART = Path(__file__).resolve().parents[1] / "helm" / "hometwin"
K8S = kubernetes_validate.latest_version()
VALUES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cluster-wide, monitoring, dashboards": {
        "operator": {"clusterWide": True, "resources": {"requests": {"cpu": "100m", "memory": "192Mi"}}},
        "image": {"repository": "registry.local/hometwin", "tag": "dev", "pullPolicy": "Always"},
        "metrics": {"podMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}}},
        "grafana": {"dashboards": {"enabled": True}},
        "serviceAccount": {"create": True, "name": "twin-operator"},
    },
    "extra namespaces": {"operator": {"watchNamespaces": ["homes-a", "homes-b"]}},
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        rendered = chart.render(values, name="twin", namespace="hometwin")
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_lint_is_clean(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True, namespace="hometwin")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_every_rendered_manifest_is_valid_kubernetes(values: dict[str, Any]) -> None:
    docs = render(values)
    assert {d["kind"] for d in docs} >= {"ServiceAccount", "Deployment"}
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com"):
            continue  # a CRD-typed object (Prometheus operator): not in Kubernetes' own schemas
        kubernetes_validate.validate(doc, K8S, strict=True)


def test_namespaced_rbac_by_default_and_cluster_wide_on_request() -> None:
    default = {d["kind"] for d in render({})}
    assert {"Role", "RoleBinding"} <= default and not {"ClusterRole", "ClusterRoleBinding"} & default
    wide = render(VALUES["cluster-wide, monitoring, dashboards"])
    assert {"ClusterRole", "ClusterRoleBinding", "PodMonitor", "ConfigMap"} <= {d["kind"] for d in wide}
    assert not {"Role", "RoleBinding"} & {d["kind"] for d in wide}
    roles = [d for d in render(VALUES["extra namespaces"]) if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["homes-a", "homes-b", "hometwin"]


def test_rbac_is_least_privilege() -> None:
    """Exactly the verbs the operator uses; nothing on secrets, pods or wildcards."""
    (role,) = [d for d in render({}) if d["kind"] == "Role"]
    rules = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert rules == {
        ("hometwin.io", "homes"): {"get", "list", "watch", "patch"},
        ("hometwin.io", "homes/status"): {"get", "patch"},
        ("hometwin.io", "homes/finalizers"): {"update"},
        ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
        ("", "services"): {"get", "list", "create", "patch", "delete"},
        ("", "configmaps"): {"get", "list", "watch", "create", "patch"},  # watch: a deleted one is put back
        ("", "events"): {"create"},
    }


def test_operator_deployment_runs_hometwin_operator_with_the_image() -> None:
    docs = render(VALUES["cluster-wide, monitoring, dashboards"])
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.local/hometwin:dev"
    assert container["args"][:2] == ["operator", "--standalone"] and "--all-namespaces" in container["args"]
    assert {"name": "HOMETWIN_IMAGE", "value": "registry.local/hometwin:dev"} in container["env"]
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "twin-operator"
    (default_dep,) = [d for d in render({}) if d["kind"] == "Deployment"]
    assert "--namespace=hometwin" in default_dep["spec"]["template"]["spec"]["containers"][0]["args"]


def test_values_schema_refuses_nonsense() -> None:
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema({"operator": {"clusterWide": "yes"}})
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema({"imagee": {}})


def test_chart_crd_is_the_generated_one() -> None:
    """helm/hometwin/crds/ holds exactly `hometwin crd` (regenerate: hometwin crd > helm/hometwin/crds/homes.hometwin.io.yaml)."""
    assert (CHART / "crds" / "homes.hometwin.io.yaml").read_text() == crd_yaml()
    with helm.Chart.load(CHART) as chart:
        (crd,) = chart.crds
    kubernetes_validate.validate(yaml.safe_load(crd["data"]), K8S, strict=True)
