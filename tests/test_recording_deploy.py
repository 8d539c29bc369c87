"""The recorder on Kubernetes: one more Deployment of a Home when the chart names the Secret of
its database URL — the URL only ever in a ``secretKeyRef`` (never in the pod's arguments or the
chart's values), the pod holding only the ``recorder`` key of the home's credentials — and the
same ``hometwin record`` command ``hometwin up`` starts (hometwin.deploy)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

from hometwin.deploy import DB_URL_ENV, service_commands
from hometwin.operator.handlers import policy_from_env
from hometwin.operator.manifests import Policy, build_manifests
from hometwin.spec import load_home
from runtime_support import CAPE_TOWN
from test_helm import render

K8S = "1.30"


def _deployments(policy: Policy) -> dict[str, dict[str, Any]]:
    home = load_home(CAPE_TOWN)
    return {o["metadata"]["name"]: o for o in build_manifests(home, "homes", policy=policy) if o["kind"] == "Deployment"}


def test_no_recorder_unless_the_chart_names_its_database_secret() -> None:
    assert "cape-town-recorder" not in _deployments(Policy())
    assert policy_from_env({}, "img:1").recorder_db_secret is None


def test_the_recorder_deployment_reads_its_url_from_the_secret_only() -> None:
    policy = policy_from_env({"HOMETWIN_RECORDER_DB_SECRET": "hometwin-db", "HOMETWIN_RECORDER_DB_KEY": "dsn"}, "img:1")
    dep = _deployments(policy)["cape-town-recorder"]
    kubernetes_validate.validate(dep, K8S, strict=True)
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"][:1] == ["record"] and c["args"][-2:] == ["--runtime", "kubernetes"]
    assert "--db" not in c["args"] and not any("postgres" in a for a in c["args"])
    env = {e["name"]: e for e in c["env"]}
    assert env[DB_URL_ENV] == {"name": DB_URL_ENV, "valueFrom": {"secretKeyRef": {"name": "hometwin-db", "key": "dsn"}}}
    creds = next(v for v in pod["volumes"] if v["name"] == "credentials")
    assert creds["secret"]["items"] == [{"key": "recorder", "path": "recorder"}]  # its own key only
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}  # one recorder a run
    # the same command as hometwin up's (the spec path and router aside)
    up = {c.name: c for c in service_commands(load_home(CAPE_TOWN), "/x.yaml", "rs://r", recorder=True)}
    assert up["recorder"].args[0] == "record" and "--credentials" in up["recorder"].args


def test_the_chart_passes_the_secret_name_not_a_url() -> None:
    docs = render({"homes": {"recorder": {"databaseSecret": "hometwin-db"}}})
    op = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in op["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HOMETWIN_RECORDER_DB_SECRET"] == "hometwin-db" and env["HOMETWIN_RECORDER_DB_KEY"] == "url"
    plain = {e["name"] for d in render({}) if d["kind"] == "Deployment"
             for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "HOMETWIN_RECORDER_DB_SECRET" not in plain  # the default: no recorder
