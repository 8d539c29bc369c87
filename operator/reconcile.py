"""Make a namespace hold what a Home asks for; compute the Home's status.

Plain synchronous code on dicts (no kopf): :mod:`hometwin.operator.handlers` only
calls it.  Rules:

* An object is written only when its ``hometwin.io/desired-hash`` changed, so an
  edit touches only what it changes (editing the battery rolls only the battery).
* ``spec.replicas`` of an element's Deployment is written on create and when the
  element's ``enabled`` flag changed — never otherwise, so ``kubectl scale`` sticks.
* Objects of the home that the spec no longer names are deleted.
* The spec is validated before anything is written: an invalid Home creates nothing; so is
  its image against the admin's allow-list (:class:`~hometwin.operator.manifests.Policy`).
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from hometwin import auth
from hometwin.operator.kube import Kube
from hometwin.operator.manifests import DESIRED_HASH, ENABLED, LABEL_HOME, LABEL_SERVICE, MANAGED_BY, Policy, \
    build_manifests, credentials_secret, credentials_secret_name, key, owner_reference
from hometwin.spec import parse_home

PENDING, RUNNING, DEGRADED, FAILED = "Pending", "Running", "Degraded", "Failed"
OWNED_KINDS = ("Deployment", "Service")  # what a removed element leaves behind


def home_document(body: Any) -> dict[str, Any]:
    """A kopf body (or any mapping) → a plain Home dict for :func:`parse_home`."""
    return {k: copy.deepcopy(body[k]) for k in ("apiVersion", "kind", "metadata", "spec") if k in body}


def desired_objects(body: Any, namespace: str, image: str, policy: Policy = Policy()) -> list[dict[str, Any]]:
    """Validate the Home (:class:`SpecError` if invalid or not allowed) and build its objects."""
    doc = home_document(body)
    home = parse_home(doc)
    return build_manifests(home, namespace, image, owner_uid=doc["metadata"].get("uid"), policy=policy)


def _patch_for(desired: dict[str, Any], existing: dict[str, Any]) -> dict[str, Any] | None:
    """The merge patch that brings ``existing`` to ``desired``, or None when nothing changed."""
    annotations = existing.get("metadata", {}).get("annotations") or {}
    same_body = annotations.get(DESIRED_HASH) == desired["metadata"]["annotations"][DESIRED_HASH]
    flag_flipped = desired["kind"] == "Deployment" and \
        annotations.get(ENABLED) != desired["metadata"]["annotations"][ENABLED]
    if same_body and not flag_flipped:
        return None
    patch = copy.deepcopy(desired)
    if desired["kind"] == "Deployment" and not flag_flipped:
        patch["spec"].pop("replicas")  # respect a manual `kubectl scale`
    return patch


def ensure_credentials(kube: Kube, body: Any, namespace: str) -> list[str]:
    """The home's credentials Secret: made once with a fresh secret per principal (owned by the
    Home); a principal added since (a new element) gets its key; existing keys are never changed
    (the pods run with them).  Rotation: delete the Secret, the next reconcile makes a new one."""
    doc = home_document(body)
    home = parse_home(doc)
    authids = auth.principals_for(auth.home_elements(home))
    name = credentials_secret_name(home.metadata.name)
    existing = kube.get("Secret", namespace, name)
    if existing is None:
        obj = credentials_secret(home, namespace, auth.new_secrets(authids))
        if doc["metadata"].get("uid"):
            obj["metadata"]["ownerReferences"] = [owner_reference(home.metadata.name, doc["metadata"]["uid"])]
        kube.create(obj)
        return [f"created Secret/{name}"]
    missing = [a for a in authids if a not in (existing.get("data") or {})]
    if not missing:
        return []
    kube.patch("Secret", namespace, name, {"data": credentials_secret(home, namespace, auth.new_secrets(missing))["data"]})
    return [f"patched Secret/{name} (+{', '.join(missing)})"]


def apply(kube: Kube, objects: list[dict[str, Any]]) -> list[str]:
    """Create or patch every object; return what was written, as 'created|patched Kind/name'."""
    written = []
    for obj in objects:
        meta = obj["metadata"]
        existing = kube.get(obj["kind"], meta["namespace"], meta["name"])
        if existing is None:
            kube.create(obj)
            written.append(f"created {obj['kind']}/{meta['name']}")
            continue
        patch = _patch_for(obj, existing)
        if patch is not None:
            kube.patch(obj["kind"], meta["namespace"], meta["name"], patch)
            written.append(f"patched {obj['kind']}/{meta['name']}")
    return written


def prune(kube: Kube, home_name: str, namespace: str, objects: list[dict[str, Any]]) -> list[str]:
    """Delete Deployments and Services of this home that ``objects`` no longer holds."""
    keep = {key(o) for o in objects}
    selector = {LABEL_HOME: home_name, "app.kubernetes.io/managed-by": MANAGED_BY}
    deleted = []
    for kind in OWNED_KINDS:
        for obj in kube.list(kind, namespace, selector):
            if (kind, obj["metadata"]["name"]) not in keep:
                kube.delete(kind, namespace, obj["metadata"]["name"])
                deleted.append(f"deleted {kind}/{obj['metadata']['name']}")
    return deleted


def condition(type_: str, ok: bool, reason: str, message: str = "") -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message,
            "lastTransitionTime": now}


def home_status(deployments: list[dict[str, Any]], previous_phase: str | None = None) -> dict[str, Any]:
    """Phase and per-service readiness from the home's Deployments.

    Running: every Deployment that should run (replicas > 0) has all replicas ready.
    Pending: not yet, on the way up.  Degraded: it was Running (or Degraded) and a
    service is not ready now.  Elements scaled to 0 (disabled or by hand) are off,
    not missing.  ``ready`` counts elements only (router and clock are prerequisites).
    """
    services: dict[str, Any] = {}
    for dep in deployments:
        meta = dep["metadata"]
        name = (meta.get("labels") or {}).get(LABEL_SERVICE, meta["name"])
        replicas = int(dep.get("spec", {}).get("replicas", 1) or 0)
        ready = int((dep.get("status") or {}).get("readyReplicas") or 0)
        services[name] = {"enabled": (meta.get("annotations") or {}).get(ENABLED, "true") == "true",
                          "replicas": replicas, "readyReplicas": ready, "ready": ready >= replicas}
    running = {n: s for n, s in services.items() if s["replicas"] > 0}
    elements = {n: s for n, s in running.items() if n not in ("router", "clock")}
    all_ready = bool(running) and all(s["ready"] for s in running.values())
    if all_ready:
        phase = RUNNING
    elif previous_phase in (RUNNING, DEGRADED):
        phase = DEGRADED
    else:
        phase = PENDING
    n_ready = sum(s["ready"] for s in elements.values())
    return {
        "phase": phase,
        "ready": f"{n_ready}/{len(elements)}",
        "readyElements": n_ready,
        "totalElements": len(elements),
        "elements": services,
        "conditions": [condition("Ready", all_ready, phase,
                                 "all services ready" if all_ready else
                                 "not ready: " + ", ".join(sorted(n for n, s in running.items() if not s["ready"])))],
    }


def home_deployments(kube: Kube, home_name: str, namespace: str) -> list[dict[str, Any]]:
    return kube.list("Deployment", namespace, {LABEL_HOME: home_name, "app.kubernetes.io/managed-by": MANAGED_BY})


def reconcile(kube: Kube, body: Any, namespace: str, image: str,
              policy: Policy = Policy()) -> tuple[dict[str, Any], list[str]]:
    """Validate, apply, prune; return the Home's new status and what was written.

    Raises :class:`SpecError` before any write when the Home is invalid or its image not allowed.
    """
    objects = desired_objects(body, namespace, image, policy)
    name = body["metadata"]["name"]
    changes = ensure_credentials(kube, body, namespace) + apply(kube, objects) + prune(kube, name, namespace, objects)
    previous = (body.get("status") or {}).get("phase")
    status = home_status(home_deployments(kube, name, namespace), previous)
    status["lastError"] = ""
    status["observedGeneration"] = body["metadata"].get("generation", 0)
    return status, changes


def failed_status(errors: list[str], reason: str = "InvalidSpec") -> dict[str, Any]:
    """Status of a Home that cannot run: phase Failed, condition Ready=False with every problem."""
    message = "; ".join(errors)
    return {"phase": FAILED, "lastError": message, "conditions": [condition("Ready", False, reason, message)]}
