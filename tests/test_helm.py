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
        "grafana": {"dashboards": {"enabled": True}, "datasources": {"enabled": True}},
        "serviceAccount": {"create": True, "name": "twin-operator"},
    },
    "extra namespaces": {"operator": {"watchNamespaces": ["homes-a", "homes-b"]}},
    "hardening": {"operator": {"allowedImages": ["registry.local/hometwin:*", "ghcr.io/hometwin/hometwin:0.1.*"]},
                  "homes": {"routerMaxUnavailable": 1},
                  "metrics": {"scraper": {"namespace": "", "podLabels": {"app": "vmagent"}}}},
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
    assert {d["kind"] for d in docs} >= {"ServiceAccount", "Deployment", "NetworkPolicy"}
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
    """Exactly the verbs the operator uses; on secrets only what makes a Home's credentials (no list or
    watch: it reads its own by name); nothing on pods or wildcards."""
    (role,) = [d for d in render({}) if d["kind"] == "Role"]
    rules = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert rules == {
        ("hometwin.io", "homes"): {"get", "list", "watch", "patch"},
        ("hometwin.io", "homes/status"): {"get", "patch"},
        ("hometwin.io", "homes/finalizers"): {"update"},
        ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
        ("", "services"): {"get", "list", "create", "patch", "delete"},
        ("", "configmaps"): {"get", "list", "watch", "create", "patch"},  # watch: a deleted one is put back
        ("", "secrets"): {"get", "create", "patch"},  # a Home's credentials
        ("networking.k8s.io", "networkpolicies"): {"get", "create", "patch"},  # one per Home, owned by it
        ("policy", "poddisruptionbudgets"): {"get", "create", "patch"},  # the router's
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


def _env(values: dict[str, Any]) -> dict[str, str]:
    (dep,) = [d for d in render(values) if d["kind"] == "Deployment"]
    return {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_operator_gets_the_hardening_values_as_its_policy() -> None:
    """What the chart passes is what the operator reads (handlers.policy_from_env)."""
    from hometwin.operator.handlers import policy_from_env
    from hometwin.operator.manifests import Peer

    env = _env({})
    policy = policy_from_env(env, env["HOMETWIN_IMAGE"])
    assert policy.allowed_images == ("ghcr.io/hometwin/hometwin:*",)  # the chart's own repository, any tag
    (operator,) = [d for d in render({}) if d["kind"] == "Deployment"]
    assert policy.operator == Peer("hometwin", operator["spec"]["template"]["metadata"]["labels"])
    assert policy.scraper == Peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
    assert policy.router_max_unavailable == 0

    env = _env(VALUES["hardening"])
    policy = policy_from_env(env, env["HOMETWIN_IMAGE"])
    assert policy.allowed_images == ("registry.local/hometwin:*", "ghcr.io/hometwin/hometwin:0.1.*")
    assert policy.scraper == Peer(None, {"app": "vmagent"}) and policy.router_max_unavailable == 1
    no_scraper = _env({"metrics": {"scraper": {"enabled": False}}})
    assert policy_from_env(no_scraper, no_scraper["HOMETWIN_IMAGE"]).scraper is None


def test_the_operator_pod_takes_no_ingress() -> None:
    (policy,) = [d for d in render({}) if d["kind"] == "NetworkPolicy"]
    (operator,) = [d for d in render({}) if d["kind"] == "Deployment"]
    assert policy["spec"]["podSelector"]["matchLabels"] == operator["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"] and not policy["spec"].get("ingress")


def test_values_schema_refuses_nonsense() -> None:
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema({"operator": {"clusterWide": "yes"}})
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema({"imagee": {}})
        for bad in ({"homes": {"routerMaxUnavailable": 2}}, {"operator": {"allowedImages": ["a:*,b:*"]}},
                    {"metrics": {"scraper": {"namespace": "Monitoring"}}}):
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema(bad)


def test_chart_crd_is_the_generated_one() -> None:
    """helm/hometwin/crds/ holds exactly `hometwin crd` (regenerate: hometwin crd > helm/hometwin/crds/homes.hometwin.io.yaml)."""
    assert (CHART / "crds" / "homes.hometwin.io.yaml").read_text() == crd_yaml()
    with helm.Chart.load(CHART) as chart:
        (crd,) = chart.crds
    kubernetes_validate.validate(yaml.safe_load(crd["data"]), K8S, strict=True)
