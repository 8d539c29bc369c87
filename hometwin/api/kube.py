"""``hometwin serve --kubernetes``: "apply" writes the ``Home`` resource (create, or update it in
place) for the operator to run, instead of starting a local twin."""

from __future__ import annotations

import asyncio
from typing import Any

from hometwin.api.runs import ApiError


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: changed and new keys,
    ``None`` for the keys ``new`` no longer has; lists and scalars are replaced whole."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value)
    return patch


class HomeApplier:
    """Creates or updates ``Home`` resources in ``namespace`` (or the document's own)."""

    def __init__(self, kube: Any, namespace: str = "default"):
        self.kube, self.namespace = kube, namespace

    @classmethod
    def connect(cls, namespace: str = "default") -> "HomeApplier":
        from hometwin.operator.kube import Kube, load_api_client

        return cls(Kube(load_api_client()), namespace)

    def apply_sync(self, doc: dict[str, Any]) -> dict[str, Any]:
        from hometwin.operator.kube import KubeError

        meta = dict(doc.get("metadata") or {})
        namespace = meta.get("namespace") or self.namespace
        name = meta["name"]
        meta["namespace"] = namespace
        body = {"apiVersion": doc["apiVersion"], "kind": "Home", "metadata": meta, "spec": doc["spec"]}
        try:
            old = self.kube.get("Home", namespace, name)
            if old is None:
                self.kube.create(body)
                return {"name": name, "namespace": namespace, "created": True}
            patch = {"spec": merge_patch(old.get("spec") or {}, doc["spec"])}
            labels = meta.get("labels")
            if labels is not None:
                patch["metadata"] = {"labels": merge_patch((old.get("metadata") or {}).get("labels") or {}, labels)}
            self.kube.patch("Home", namespace, name, patch)
            return {"name": name, "namespace": namespace, "created": False}
        except KubeError as exc:
            status = 409 if exc.status == 409 else 422 if exc.status in (400, 422) else 502
            raise ApiError(status, f"the Kubernetes API refused the Home {namespace}/{name}: {exc}") from None

    async def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(None, self.apply_sync, doc)
