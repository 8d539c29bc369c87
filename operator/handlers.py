"""kopf handlers: thin adapters from Home events to :mod:`hometwin.operator.reconcile`.

Every handler lives in :data:`registry` (not kopf's global one), so embedding the
operator (tests, ``hometwin operator``) runs exactly these and nothing else.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Mapping

import kopf

from hometwin.operator.crd import GROUP, PLURAL, VERSION
from hometwin.operator.kube import Kube, KubeError, connection_info, load_api_client, load_configuration
from hometwin.deploy import DEFAULT_METRICS_PORT
from hometwin.operator.manifests import DEFAULT_IMAGE, LABEL_HOME, MANAGED_BY, Peer, Policy, object_name
from hometwin.operator.progress import METRICS_URL, grid_element, read_progress
from hometwin.operator.reconcile import FAILED, failed_status, home_deployments, home_status, reconcile
from hometwin.spec import SpecError

registry = kopf.OperatorRegistry()
HOMES = dict(group=GROUP, version=VERSION, plural=PLURAL)
RETRY_DELAY_S = 10.0  # [s] after an API error: long enough not to hammer a struggling API server
PROGRESS_INTERVAL_S = float(os.environ.get("HOMETWIN_PROGRESS_INTERVAL_S", "10"))  # [s] status columns refresh


def _labels(env: Mapping[str, str], var: str) -> dict[str, str]:
    try:
        labels = json.loads(env.get(var) or "{}")
    except ValueError as exc:
        raise ValueError(f"{var}: not JSON ({exc}); give pod labels as {{\"key\": \"value\"}}") from None
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ValueError(f"{var}: must be a JSON object of strings (pod labels), got {labels!r}")
    return labels


def repository(image: str) -> str:
    """``registry/name`` of ``registry/name:tag`` or ``registry/name@digest`` (a port stays)."""
    image = image.split("@", 1)[0]
    head, _, tail = image.rpartition(":")
    return head if head and "/" not in tail else image


def policy_from_env(env: Mapping[str, str], image: str) -> Policy:
    """The chart's values as the operator gets them (helm/hometwin/templates/deployment.yaml):

    ``HOMETWIN_ALLOWED_IMAGES`` comma-separated globs (default: the operator's own image
    repository, any tag); ``HOMETWIN_OPERATOR_NAMESPACE`` + ``HOMETWIN_OPERATOR_POD_LABELS``
    (JSON) the operator's pods; ``HOMETWIN_SCRAPER_NAMESPACE`` (empty: any) +
    ``HOMETWIN_SCRAPER_POD_LABELS`` the metrics scraper, when either is set;
    ``HOMETWIN_ROUTER_MAX_UNAVAILABLE`` the router's disruption budget (0 or 1);
    ``HOMETWIN_RECORDER_DB_SECRET`` (+ ``HOMETWIN_RECORDER_DB_KEY``, default ``url``) the Secret
    holding the recorder's database URL (empty: no recorder).
    """
    allowed = tuple(p.strip() for p in env.get("HOMETWIN_ALLOWED_IMAGES", "").split(",") if p.strip())
    operator = scraper = None
    if env.get("HOMETWIN_OPERATOR_NAMESPACE"):
        operator = Peer(env["HOMETWIN_OPERATOR_NAMESPACE"], _labels(env, "HOMETWIN_OPERATOR_POD_LABELS"))
    if "HOMETWIN_SCRAPER_NAMESPACE" in env or "HOMETWIN_SCRAPER_POD_LABELS" in env:
        scraper = Peer(env.get("HOMETWIN_SCRAPER_NAMESPACE") or None, _labels(env, "HOMETWIN_SCRAPER_POD_LABELS"))
    budget = env.get("HOMETWIN_ROUTER_MAX_UNAVAILABLE", "0")
    if budget not in ("0", "1"):
        raise ValueError(f"HOMETWIN_ROUTER_MAX_UNAVAILABLE: 0 or 1 (the router is one pod), got {budget!r}")
    return Policy(allowed_images=allowed or (f"{repository(image)}:*",), operator=operator, scraper=scraper,
                  router_max_unavailable=int(budget),
                  recorder_db_secret=env.get("HOMETWIN_RECORDER_DB_SECRET") or None,
                  recorder_db_key=env.get("HOMETWIN_RECORDER_DB_KEY") or "url")


@kopf.on.login(registry=registry)
def login(**_: Any) -> kopf.ConnectionInfo:
    """In-cluster service account, else the kubeconfig: the same credentials as :class:`Kube`."""
    return connection_info(load_configuration())


@kopf.on.startup(registry=registry)
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Our own annotation prefix, events only for warnings, one API client for all handlers."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="hometwin.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="hometwin.io")
    settings.posting.level = logging.WARNING
    # Our one CRD is installed before the operator (Helm's crds/): no cluster-wide scans of
    # namespaces and CRDs, so a namespaced Role is enough.
    settings.scanning.disabled = True
    if "kube" not in memo:
        memo.kube = Kube(load_api_client())
    memo.setdefault("image", os.environ.get("HOMETWIN_IMAGE", DEFAULT_IMAGE))
    memo.setdefault("metrics_url", os.environ.get("HOMETWIN_METRICS_URL", METRICS_URL))
    memo.setdefault("policy", policy_from_env(os.environ, memo.image))


@kopf.on.resume(**HOMES, registry=registry)
@kopf.on.create(**HOMES, registry=registry)
@kopf.on.update(**HOMES, field="spec", registry=registry)
def reconcile_home(body: kopf.Body, namespace: str, patch: kopf.Patch, memo: kopf.Memo,
                   logger: kopf.Logger, **_: Any) -> None:
    """Create, update or prune the Home's objects; an invalid Home fails and creates nothing."""
    try:
        status, changes = reconcile(memo.kube, body, namespace, memo.image, memo.policy)
    except SpecError as exc:  # invalid, or an image outside the allow-list: no retry fixes it
        reason = getattr(exc, "reason", "InvalidSpec")
        patch.status.update(failed_status(exc.errors, reason))
        kopf.warn(body, reason=reason, message="; ".join(exc.errors)[:1000])
        raise kopf.PermanentError(f"{reason}: {'; '.join(exc.errors)}") from None
    except KubeError as exc:
        patch.status["lastError"] = str(exc)
        raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_S) from exc
    patch.status.update(status)
    logger.info("reconciled: %s", ", ".join(changes) or "no changes")


def _changed_later(type: str | None, **_: Any) -> bool:
    # ADDED: we just created it, and the Home handler writes the status when it is done.
    return type in ("MODIFIED", "DELETED")


def _standing_home(body: kopf.Body, namespace: str, memo: kopf.Memo) -> dict[str, Any] | None:
    """The Home that owns ``body`` (by its label), unless it is gone or Failed."""
    home_name = body.metadata.labels.get(LABEL_HOME)
    home = memo.kube.get("Home", namespace, home_name) if home_name else None
    if home is None or (home.get("status") or {}).get("phase") == FAILED:
        return None
    return home


def _put_back(body: kopf.Body, home: dict[str, Any], namespace: str, memo: kopf.Memo,
              logger: kopf.Logger) -> dict[str, Any] | None:
    """An object of a standing Home was deleted by hand: reconcile the Home, which recreates it
    (the operator's own prune deletes only what the Home no longer has); the new status, or
    ``None`` when the Home is being deleted or cannot be reconciled now."""
    if home["metadata"].get("deletionTimestamp"):
        return None
    try:
        status, changes = reconcile(memo.kube, home, namespace, memo.image, memo.policy)
    except (SpecError, KubeError) as exc:  # the Home's own handler reports and retries these
        logger.warning("%s deleted; not put back now: %s", body.metadata.name, exc)
        return None
    if changes:
        logger.info("%s was deleted: put back (%s)", body.metadata.name, ", ".join(changes))
    return status


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": MANAGED_BY},
               when=_changed_later, registry=registry)
def deployment_changed(body: kopf.Body, namespace: str, memo: kopf.Memo, logger: kopf.Logger,
                       type: str | None = None, **_: Any) -> None:
    """A Deployment of a home changed (ready, scaled, deleted): refresh that Home's status.  One
    deleted while its Home stands (``kubectl delete deployment``) is put back, as a Deployment
    puts back a deleted pod."""
    home = _standing_home(body, namespace, memo)
    if home is None:
        return
    home_name = home["metadata"]["name"]
    if type == "DELETED" and not home["metadata"].get("deletionTimestamp"):
        status = _put_back(body, home, namespace, memo, logger)
        if status is not None:
            memo.kube.patch("Home", namespace, home_name, {"status": status}, sub="status")
        return
    previous = home.get("status") or {}
    status = home_status(home_deployments(memo.kube, home_name, namespace), previous.get("phase"))
    if any(previous.get(k) != status[k] for k in ("phase", "ready", "elements")):
        memo.kube.patch("Home", namespace, home_name, {"status": status}, sub="status")


@kopf.on.event("", "v1", "configmaps", labels={"app.kubernetes.io/managed-by": MANAGED_BY},
               when=lambda type, **_: type == "DELETED", registry=registry)
def config_map_deleted(body: kopf.Body, namespace: str, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """The home's spec ConfigMap deleted while its Home stands: put it back (new pods need it)."""
    home = _standing_home(body, namespace, memo)
    if home is not None:
        _put_back(body, home, namespace, memo, logger)


@kopf.timer(**HOMES, interval=PROGRESS_INTERVAL_S, registry=registry)
def progress(spec: kopf.Spec, name: str, namespace: str, status: kopf.Status, patch: kopf.Patch,
             memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Simulated time and net grid power from the grid element's /metrics (printer columns)."""
    if status.get("phase") in (FAILED, None):
        return
    grid = grid_element(dict(spec))
    if grid is None:
        return
    url = memo.metrics_url.format(service=object_name(name, grid), namespace=namespace, port=DEFAULT_METRICS_PORT)
    try:
        now = read_progress(url, grid)
    except (OSError, ValueError) as exc:  # the pod is starting or scaled to 0: keep the last values
        logger.debug("progress: %s not readable: %s", url, exc)
        return
    changed = {k: v for k, v in now.items() if status.get(k) != v}
    if changed:
        patch.status.update(changed)
