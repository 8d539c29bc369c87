"""A tiny, dict-in dict-out Kubernetes client for the few kinds the operator owns.

It rides on the official ``kubernetes`` client for configuration and auth
(in-cluster service account or kubeconfig) and talks plain JSON, so the
reconciler works on the same dicts :mod:`hometwin.operator.manifests` builds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import kubernetes

MERGE_PATCH = "application/merge-patch+json"

# kind → (API prefix, plural)
PATHS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("api/v1", "configmaps"),
    "Secret": ("api/v1", "secrets"),
    "Service": ("api/v1", "services"),
    "Deployment": ("apis/apps/v1", "deployments"),
    "NetworkPolicy": ("apis/networking.k8s.io/v1", "networkpolicies"),
    "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets"),
    "Home": ("apis/hometwin.io/v1alpha1", "homes"),
}


class KubeError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, method: str, path: str, body: str):
        self.status = status
        super().__init__(f"{method} {path}: HTTP {status}: {body[:300]}")


def load_configuration() -> kubernetes.client.Configuration:
    """In-cluster service account when in a pod, else the kubeconfig (``$KUBECONFIG`` read now)."""
    cfg = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=cfg)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None,
                                           client_configuration=cfg)
    return cfg


def load_api_client() -> kubernetes.client.ApiClient:
    return kubernetes.client.ApiClient(load_configuration())


def connection_info(cfg: kubernetes.client.Configuration) -> Any:
    """The same credentials for kopf's own API calls (watching, patching the Home)."""
    import kopf

    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    scheme, token = (header.split(" ", 1) if " " in header else (None, header)) if header else (None, None)
    return kopf.ConnectionInfo(server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
                               scheme=scheme, token=token, certificate_path=cfg.cert_file,
                               private_key_path=cfg.key_file, username=cfg.username or None,
                               password=cfg.password or None)


@dataclass
class Kube:
    """JSON calls on namespaced objects of the kinds in :data:`PATHS`."""

    api: kubernetes.client.ApiClient
    timeout_s: float = 30.0  # [s] per request: a hung API call must not hang a handler forever

    def _call(self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None,
              content_type: str = "application/json") -> dict[str, Any] | None:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = self.api.param_serialize(method=method, resource_path=path, query_params=query or [],
                                          header_params=headers, body=body, auth_settings=["BearerToken"])
        response = self.api.call_api(*params, _request_timeout=self.timeout_s)
        response.read()
        text = response.data.decode() if response.data else ""
        if response.status == 404 and method == "GET":
            return None
        if not 200 <= response.status < 300:
            raise KubeError(response.status, method, path, text)
        return json.loads(text) if text else {}

    @staticmethod
    def _path(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
        prefix, plural = PATHS[kind]
        path = f"/{prefix}/namespaces/{namespace}/{plural}"
        return path + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._call("GET", self._path(kind, namespace, name))

    def list(self, kind: str, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        """Objects whose labels match ``selector`` (also filtered here: some servers ignore it)."""
        query = [("labelSelector", ",".join(f"{k}={v}" for k, v in selector.items()))]
        items = (self._call("GET", self._path(kind, namespace), query=query) or {}).get("items", [])
        return [o for o in items
                if all((o.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in selector.items())]

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return self._call("POST", self._path(obj["kind"], meta["namespace"]), obj) or {}

    def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any],
              sub: str | None = None) -> dict[str, Any]:
        """JSON merge patch (RFC 7386): dicts merge, lists and scalars replace, null deletes."""
        return self._call("PATCH", self._path(kind, namespace, name, sub), patch, content_type=MERGE_PATCH) or {}

    def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            self._call("DELETE", self._path(kind, namespace, name), {"propagationPolicy": "Background"})
        except KubeError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise
