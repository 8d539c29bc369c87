"""A validated Home → the Kubernetes objects that run it (pure: no API calls, no kopf).

One ConfigMap with the spec, a NetworkPolicy fencing the home's pods, the home's router
(Deployment + Service + PodDisruptionBudget), the clock (Deployment) and one Deployment +
metrics Service per element, every one owned by the Home.  What the cluster admin decides
(images a Home may run, who besides the home may reach it) comes in a :class:`Policy`.
The containers run exactly the commands of
:func:`hometwin.deploy.service_commands`, so ``hometwin up`` and the operator start
the same services.

Two annotations make reconciling cheap and selective:

* ``hometwin.io/config-hash`` on a pod template: a hash of what that service reads
  from the spec (its element entry, location, clock).  The ConfigMap changes for
  every edit, but only the pod template of the changed element changes, so only
  that Deployment rolls.
* ``hometwin.io/desired-hash`` on every object: a hash of the desired object less
  ``spec.replicas``; the reconciler skips objects whose hash did not change.
"""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import yaml

from hometwin.auth import element_authid
from hometwin.deploy import (CREDENTIALS_DIR_IN_POD, DATA_DIR_IN_POD, TLS_DIR_IN_POD, DEFAULT_METRICS_PORT, ROUTER_RAWSOCKET_PORT, ROUTER_WS_PORT,
                             SPEC_PATH_IN_POD, STATE_DIR_IN_POD, ServiceCommand, service_commands,
                             DB_URL_ENV)
from hometwin.element import data_files
from hometwin.spec import API_VERSION, SpecError

GROUP = "hometwin.io"
MANAGED_BY = "hometwin-operator"
DEFAULT_IMAGE = "ghcr.io/hometwin/hometwin:0.1.0"
CONTAINER = "hometwin"
SPEC_KEY = "home.yaml"
SPEC_DIR = SPEC_PATH_IN_POD.rsplit("/", 1)[0]

LABEL_HOME = f"{GROUP}/home"
LABEL_ELEMENT = f"{GROUP}/element"
LABEL_SERVICE = f"{GROUP}/service"  # selector: element name, or "router" / "clock"
CONFIG_HASH = f"{GROUP}/config-hash"
DESIRED_HASH = f"{GROUP}/desired-hash"
ENABLED = f"{GROUP}/enabled"  # the `enabled` flag the replicas were last set from

RESERVED_NAMES = ("router", "clock", "spec")  # names of the home's own services and ConfigMap
MAX_NAME = 63  # Service names are DNS-1035 labels


class ImageNotAllowed(SpecError):
    """``spec.deployment.image`` is outside the operator's allow-list (the admin's policy, not a
    typo a retry could fix: the Home fails permanently until it is edited)."""

    reason = "ImageNotAllowed"


@dataclass(frozen=True)
class Peer:
    """Pods that may reach a home's pods: in the namespace named ``namespace`` (``None``: any
    namespace) whose labels include ``pod_labels`` (empty: any pod there)."""

    namespace: str | None = None
    pod_labels: Mapping[str, str] = field(default_factory=dict)

    def selector(self) -> dict[str, Any]:
        """A NetworkPolicy ``from`` entry (both selectors in one entry: pods in that namespace)."""
        namespaces = {"matchLabels": {"kubernetes.io/metadata.name": self.namespace}} if self.namespace else {}
        return {"namespaceSelector": namespaces,
                "podSelector": {"matchLabels": dict(self.pod_labels)} if self.pod_labels else {}}


@dataclass(frozen=True)
class Policy:
    """The cluster admin's rules for every Home (chart values, given to the operator as env vars).

    ``allowed_images``: globs a ``spec.deployment.image`` must match (``*`` never crosses a
    ``/``); ``None`` checks nothing (the pure builder's default; the operator always has a list).
    ``operator``/``scraper``: the only pods outside the home that may reach it, and only its
    ``/metrics`` port (the operator reads the grid's for the status columns; Prometheus scrapes
    every element and the clock).
    ``router_max_unavailable``: the router's PodDisruptionBudget (0: a drain waits for an admin).
    ``recorder_db_secret``: deploy the recorder (``hometwin record``), its database URL from this
    Secret's key ``recorder_db_key`` (an environment variable from a ``secretKeyRef``: never in
    the pod's arguments or in the chart's plain values).
    """

    allowed_images: tuple[str, ...] | None = None
    operator: Peer | None = None
    scraper: Peer | None = None
    router_max_unavailable: int = 0
    #: The recorder's database: a Secret (in each Home's namespace) and its key holding the URL
    #: (chart value homes.recorder.databaseSecret); None: no recorder is deployed.
    recorder_db_secret: str | None = None
    recorder_db_key: str = "url"


def image_allowed(image: str, patterns: Sequence[str]) -> bool:
    """``image`` matches one of the globs (``*``: any run of characters but ``/``)."""
    return any(re.fullmatch("[^/]*".join(re.escape(part) for part in p.split("*")), image) for p in patterns)


def check_image(home: Any, allowed: Sequence[str] | None) -> None:
    """Refuse a Home whose ``spec.deployment.image`` is outside ``allowed`` (:class:`ImageNotAllowed`)."""
    image = home.spec.deployment.image
    if allowed is None or image is None or image_allowed(image, allowed):
        return
    raise ImageNotAllowed([f"spec.deployment.image: {image!r} is not an allowed image; this operator runs only "
                           f"{', '.join(repr(p) for p in allowed) or '(none)'} (chart value operator.allowedImages)"])


def object_name(home_name: str, service: str) -> str:
    """``<home>-<service>``, a valid DNS-1035 label (≤ 63 chars, starts with a letter)."""
    name = f"{home_name}-{service}"
    if not name[0].isalpha():
        name = f"ht-{name}"
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:MAX_NAME - 9].rstrip('-')}-{digest}"
    return name


def router_url(home_name: str, tls: bool = False) -> str:
    """Where the home's services reach its router (the router Service, in-namespace DNS)."""
    return f"ws{'s' if tls else ''}://{object_name(home_name, 'router')}:{ROUTER_WS_PORT}/ws"


def digest(data: Any) -> str:
    """Stable short hash of JSON-able data."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def spec_document(home: Any) -> dict[str, Any]:
    """The Home as the services read it from the ConfigMap (what the user wrote, validated).

    A realtime Home without a ``clock.start`` gets one here: the resource's ``creationTimestamp``
    rounded down to the step, so that every pod (each reads the spec on its own, at its own
    time) and every restart agree on step 0; the clock catches up from there to now, then
    follows the wall clock."""
    doc = home.model_dump(mode="json", exclude_unset=True, exclude={"status"})
    doc["apiVersion"], doc["kind"] = API_VERSION, "Home"
    doc["metadata"] = {"name": home.metadata.name}
    clock = home.spec.clock
    created = (home.metadata.model_extra or {}).get("creationTimestamp")
    if clock.realtime and clock.start is None and created:
        from hometwin.spec import realtime_start

        when = datetime.datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()
        doc["spec"]["clock"]["start"] = realtime_start(clock.step_s, when).isoformat()
    return doc


def labels(home_name: str, component: str, service: str | None = None) -> dict[str, str]:
    """Recommended ``app.kubernetes.io/*`` labels plus ``hometwin.io/home|element|service``."""
    out = {
        "app.kubernetes.io/name": "hometwin",
        "app.kubernetes.io/instance": home_name,
        "app.kubernetes.io/component": component.replace("_", "-"),
        "app.kubernetes.io/part-of": "hometwin",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_HOME: home_name,
    }
    if service is not None:
        out[LABEL_ELEMENT] = service
        out[LABEL_SERVICE] = service
    return out


def owner_reference(home_name: str, uid: str) -> dict[str, Any]:
    """The Home as controlling owner: deleting it garbage-collects everything."""
    return {"apiVersion": API_VERSION, "kind": "Home", "name": home_name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}


def _resources(home: Any, element: str | None) -> dict[str, Any]:
    """Home-wide requests/limits, with the element's override merged field by field."""
    dep = home.spec.deployment
    out = dep.resources.model_dump(exclude_none=True)
    override = dep.elements.get(element) if element else None
    if override is not None:
        for part, amounts in override.model_dump(exclude_unset=True, exclude_none=True).items():
            out.setdefault(part, {}).update(amounts)
    return {part: amounts for part, amounts in out.items() if amounts}


def _config_hash(home: Any, cmd: ServiceCommand) -> str:
    """What this service reads from the spec; elements also read location and clock."""
    spec = home.spec
    shared = {"location": spec.location.model_dump(mode="json"), "clock": spec.clock.model_dump(mode="json")}
    if cmd.role in ("router",):
        return digest({"realm": cmd.args})
    if cmd.role == "clock":
        # The clock also cuts windows where the inverter's strategy replans (replan_steps_of): a
        # strategy edit must reach it.  (A restarted clock goes on where the run is.)
        inverter = [el.config.model_dump(mode="json") for el in spec.elements if el.kind == "inverter" and el.enabled]
        return digest(shared | {"inverter": inverter})
    if cmd.role == "recorder":  # it records the whole spec with the run
        return digest(spec.model_dump(mode="json"))
    element = next(el for el in spec.elements if el.name == cmd.name)
    return digest(shared | {"element": element.model_dump(mode="json", exclude={"enabled"})})


def _probe(cmd: ServiceCommand, router_port: str = "rawsocket") -> dict[str, Any]:
    """Elements and clock: their /metrics answers once the process serves.  The router speaks
    WAMP, not HTTP: a TCP connect to a transport's port (Crossbar listens once the realm is up)."""
    if cmd.role == "router":
        check: dict[str, Any] = {"tcpSocket": {"port": router_port}}
    else:
        check = {"httpGet": {"path": "/metrics", "port": "metrics"}}
    return check | {"periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3}


def _ports(cmd: ServiceCommand) -> list[dict[str, Any]]:
    if cmd.role == "router":
        return [{"name": "ws", "containerPort": ROUTER_WS_PORT, "protocol": "TCP"},
                {"name": "rawsocket", "containerPort": ROUTER_RAWSOCKET_PORT, "protocol": "TCP"}]
    return [{"name": "metrics", "containerPort": cmd.metrics_port, "protocol": "TCP"}]


def _volumes(home: Any, cmd: ServiceCommand) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(volume, its mount) pairs of a service's pod: one line per volume."""
    out = [({"name": "spec", "configMap": {"name": object_name(home.metadata.name, "spec")}},
            {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True}),
           ({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}, {"name": "tmp", "mountPath": "/tmp"})]
    if "--state-dir" in cmd.args:  # an element's state file outlives a crash of its container (not of
        # its pod): the restarted container continues from its last settle
        out.append(({"name": "state", "emptyDir": {"sizeLimit": "64Mi"}},
                    {"name": "state", "mountPath": STATE_DIR_IN_POD}))
    if "--data-dir" in cmd.args:  # the spec's data files, by file name; the pod waits for the ConfigMap
        out.append(({"name": "data", "configMap": {"name": home.spec.deployment.data_config_map}},
                    {"name": "data", "mountPath": DATA_DIR_IN_POD, "readOnly": True}))
    if home.spec.deployment.tls_secret:  # the router its certificate and key, the others the CA only
        keys = ("tls.crt", "tls.key") if "--tls-cert" in cmd.args else ("ca.crt",)
        out.append(({"name": "tls", "secret": {"secretName": home.spec.deployment.tls_secret, "defaultMode": 0o400,
                                               "items": [{"key": k, "path": k} for k in keys]}},
                    {"name": "tls", "mountPath": TLS_DIR_IN_POD, "readOnly": True}))
    # The home's credentials (hometwin.auth): the router reads every principal's secret, any other pod
    # only its own key of the Secret (a pod that is taken over cannot act as another).
    secret: dict[str, Any] = {"secretName": credentials_secret_name(home.metadata.name), "defaultMode": 0o400}
    if cmd.role != "router":
        authid = cmd.role if cmd.role in ("clock", "recorder") else element_authid(cmd.name)
        secret["items"] = [{"key": authid, "path": authid}]
    out.append(({"name": "credentials", "secret": secret},
                {"name": "credentials", "mountPath": CREDENTIALS_DIR_IN_POD, "readOnly": True}))
    return out


def credentials_secret_name(home_name: str) -> str:
    """The Secret holding a home's principals' secrets, one key per authid."""
    return object_name(home_name, "credentials")


def credentials_secret(home: Any, namespace: str, secrets: dict[str, str]) -> dict[str, Any]:
    """The home's credentials Secret (made once by the operator; not part of the declared objects,
    whose hash would change with every fresh secret)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": credentials_secret_name(home.metadata.name), "namespace": namespace,
                     "labels": labels(home.metadata.name, "credentials")},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(secrets.items())},
    }


def _deployment(home: Any, cmd: ServiceCommand, namespace: str, image: str, component: str,
                policy: Policy = Policy()) -> dict[str, Any]:
    home_name = home.metadata.name
    element = cmd.name if cmd.role not in ("router", "clock", "recorder") else None
    volumes = _volumes(home, cmd)
    pod_labels = labels(home_name, component, cmd.name)
    pod_annotations = {CONFIG_HASH: _config_hash(home, cmd)}
    if cmd.role != "router":
        pod_annotations |= {"prometheus.io/scrape": "true", "prometheus.io/port": str(cmd.metrics_port),
                            "prometheus.io/path": "/metrics"}
    container = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": list(cmd.args) + (["--runtime", "kubernetes"] if cmd.role == "recorder" else []),
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONUNBUFFERED", "value": "1"}] + (
            [{"name": DB_URL_ENV, "valueFrom": {"secretKeyRef": {"name": policy.recorder_db_secret,
                                                                   "key": policy.recorder_db_key}}}]
            if cmd.role == "recorder" else []),
        "ports": _ports(cmd),
        "resources": _resources(home, element),
        # Router: ready when the RawSocket transport accepts, alive while the WebSocket one does.
        "readinessProbe": _probe(cmd) | {"initialDelaySeconds": 2},
        "livenessProbe": _probe(cmd, router_port="ws") | {"initialDelaySeconds": 30},
        "volumeMounts": [mount for _, mount in volumes],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": object_name(home_name, cmd.name), "namespace": namespace,
                     "labels": labels(home_name, component, cmd.name),
                     "annotations": {ENABLED: str(cmd.enabled).lower()}},
        "spec": {
            "replicas": 1 if cmd.enabled else 0,
            "revisionHistoryLimit": 3,
            # One instance of a service per home at a time: two ovens on one bus would count twice.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {LABEL_HOME: home_name, LABEL_SERVICE: cmd.name}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": {
                    "enableServiceLinks": False,
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [volume for volume, _ in volumes],
                },
            },
        },
    }


def _service(home: Any, cmd: ServiceCommand, namespace: str, component: str) -> dict[str, Any]:
    home_name = home.metadata.name
    ports = [{"name": p["name"], "port": p["containerPort"], "targetPort": p["name"], "protocol": "TCP"}
             for p in _ports(cmd)]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": object_name(home_name, cmd.name), "namespace": namespace,
                     "labels": labels(home_name, component, cmd.name)},
        "spec": {"type": "ClusterIP", "selector": {LABEL_HOME: home_name, LABEL_SERVICE: cmd.name},
                 "ports": ports},
    }


def _network_policy(home: Any, namespace: str, policy: Policy) -> dict[str, Any]:
    """Ingress to the home's pods: its router's ports from the home's own pods only, /metrics
    from the operator and the scraper only, nothing else (the pods talk only through the router).

    Egress stays open (DNS, and the router is reached through its Service).  A pod outside the
    home that carries the home's label gets through: labels are not identities (WAMP
    authentication is the second fence)."""
    home_name = home.metadata.name
    router_ports = [{"protocol": "TCP", "port": ROUTER_WS_PORT}, {"protocol": "TCP", "port": ROUTER_RAWSOCKET_PORT}]
    ingress: list[dict[str, Any]] = [
        {"from": [{"podSelector": {"matchLabels": {LABEL_HOME: home_name}}}], "ports": router_ports}]
    readers = [peer.selector() for peer in (policy.operator, policy.scraper) if peer is not None]
    if readers:
        ingress.append({"from": readers, "ports": [{"protocol": "TCP", "port": DEFAULT_METRICS_PORT}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": object_name(home_name, "network"), "namespace": namespace,
                     "labels": labels(home_name, "network-policy")},
        "spec": {"podSelector": {"matchLabels": {LABEL_HOME: home_name}}, "policyTypes": ["Ingress"],
                 "ingress": ingress},
    }


def _disruption_budget(home: Any, namespace: str, policy: Policy) -> dict[str, Any]:
    """The router is a singleton by design (a second one would split the realm, and the home's
    services with it), so ``minAvailable`` has nothing to count on: ``maxUnavailable`` 0 (the
    default) makes a drain or the autoscaler wait for an admin instead of stalling the home
    unannounced; 1 lets them through."""
    home_name = home.metadata.name
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": object_name(home_name, "router"), "namespace": namespace,
                     "labels": labels(home_name, "router", "router")},
        "spec": {"maxUnavailable": policy.router_max_unavailable,
                 "selector": {"matchLabels": {LABEL_HOME: home_name, LABEL_SERVICE: "router"}}},
    }


def _config_map(home: Any, namespace: str) -> dict[str, Any]:
    home_name = home.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": object_name(home_name, "spec"), "namespace": namespace,
                     "labels": labels(home_name, "spec")},
        "data": {SPEC_KEY: yaml.safe_dump(spec_document(home), sort_keys=False)},
    }


def check_names(home: Any) -> None:
    """Element names that would collide with the home's own objects are refused."""
    bad = [f"elements[{i}].name: {el.name!r} is reserved for the home's own services "
           f"({', '.join(RESERVED_NAMES)}); choose another name"
           for i, el in enumerate(home.spec.elements) if el.name in RESERVED_NAMES]
    if bad:
        raise SpecError(bad)


#: A ConfigMap key (what ``kubectl create configmap --from-file`` makes of a file name).
_CONFIG_MAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def check_data_files(home: Any) -> None:
    """Data files named by a relative path must come from ``deployment.data_config_map``, one
    key per file name: refused (before anything is created) when there is no such ConfigMap
    named, when two different paths share a file name, or when a name cannot be a key."""
    files = [(where, path) for i, el in enumerate(home.spec.elements)
             for where, path in data_files(el.config, f"elements[{i}].config") if not os.path.isabs(path)]
    if not files:
        return
    bad: list[str] = []
    cm = home.spec.deployment.data_config_map
    if cm is None:
        names = " ".join(f"--from-file={path}" for path in dict.fromkeys(path for _, path in files))
        bad += [f"{where}: {path!r} is a relative path, and the pods have only the spec: name a ConfigMap "
                f"holding the file in spec.deployment.data_config_map (kubectl create configmap "
                f"{home.metadata.name}-data {names})" for where, path in files]
    by_name: dict[str, tuple[str, str]] = {}
    for where, path in files:
        name = os.path.basename(path)
        if not _CONFIG_MAP_KEY.fullmatch(name) or name.startswith("..") or name == "." or len(name) > 253:
            bad.append(f"{where}: file name {name!r} cannot be a ConfigMap key (letters, digits, '-', '_', '.'; "
                       "at most 253; not '.' nor starting with '..')")
        first = by_name.setdefault(name, (where, path))
        if os.path.normpath(first[1]) != os.path.normpath(path):
            bad.append(f"{where}: {path!r} and {first[0]} ({first[1]!r}) share the file name {name!r}; "
                       f"the pods look data files up by file name in ConfigMap {cm or '(none)'}: rename one")
    if bad:
        raise SpecError(bad)


def build_manifests(home: Any, namespace: str, image: str = DEFAULT_IMAGE,
                    owner_uid: str | None = None, policy: Policy = Policy()) -> list[dict[str, Any]]:
    """Every object of a validated Home, in apply order (ConfigMap, NetworkPolicy before any pod,
    router and its PodDisruptionBudget, clock, elements).

    ``spec.deployment.image`` wins over ``image`` (the operator's own image) when the policy
    allows it (:class:`ImageNotAllowed` otherwise).  With ``owner_uid`` every object is owned by
    the Home (deletion cascades).
    """
    check_names(home)
    check_data_files(home)
    check_image(home, policy.allowed_images)
    image = home.spec.deployment.image or image
    home_name = home.metadata.name
    objects = [_config_map(home, namespace), _network_policy(home, namespace, policy)]
    tls = bool(home.spec.deployment.tls_secret)
    for cmd in service_commands(home, SPEC_PATH_IN_POD, router_url(home_name, tls), DEFAULT_METRICS_PORT,
                                state_dir=STATE_DIR_IN_POD,
                                data_dir=DATA_DIR_IN_POD if home.spec.deployment.data_config_map else None,
                                tls_dir=TLS_DIR_IN_POD if tls else None,
                                recorder=policy.recorder_db_secret is not None):
        component = cmd.kind
        objects.append(_deployment(home, cmd, namespace, image, component, policy))
        if cmd.role != "clock":
            objects.append(_service(home, cmd, namespace, component))
        if cmd.role == "router":
            objects.append(_disruption_budget(home, namespace, policy))
    for obj in objects:
        if owner_uid:
            obj["metadata"]["ownerReferences"] = [owner_reference(home_name, owner_uid)]
        obj["metadata"].setdefault("annotations", {})[DESIRED_HASH] = desired_hash(obj)
    return objects


def desired_hash(obj: dict[str, Any]) -> str:
    """Hash of an object as the operator wants it, less replicas (owned by `enabled` and kubectl scale)."""
    body = copy.deepcopy(obj)
    body.get("spec", {}).pop("replicas", None)
    body["metadata"].get("annotations", {}).pop(DESIRED_HASH, None)
    body["metadata"].get("annotations", {}).pop(ENABLED, None)
    return digest(body)


def key(obj: dict[str, Any]) -> tuple[str, str]:
    """(kind, name) of an object."""
    return obj["kind"], obj["metadata"]["name"]
