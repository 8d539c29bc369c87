"""The real kopf operator against kmock's Kubernetes emulator on a loopback port.

One emulator and one operator (``kopf.operator(standalone=True, …)`` with our own
registry and login handler, reading a kubeconfig that points at the emulator) run
in a background thread's event loop for the whole module; each test applies its
own copy of the Cape Town Home (own name) through the API, as ``kubectl`` would.

Emulator gaps (kmock 0.8), and what the tests do about them:

* no ``resourceVersion``/``uid``/``generation``: kopf needs resourceVersion to tell
  its own patches from stale events, so :class:`Emulator` adds them on writes;
* no ``generateName``: kopf's events all came out named ``kopf-event-``, so only the
  module's first warning event was stored; :class:`Emulator` adds a suffix;
* ``GET /api/v1/namespaces`` fails to parse, so the operator runs cluster-wide here
  (``--namespace`` mode lists namespaces);
* no garbage collector: deleting a Home does not cascade — the tests check the
  ownerReferences that make a real cluster cascade, not the cascade;
* no controllers: nothing sets a Deployment's ``status`` — a test sets
  ``readyReplicas`` itself, as the Deployment controller would;
* label selectors are ignored on lists: the operator filters labels itself too.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import itertools
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import kmock
import kopf
import kubernetes_validate
import pytest
import yaml

from hometwin import auth
from hometwin.deploy import SPEC_PATH_IN_POD, STATE_DIR_IN_POD, service_commands
from hometwin.operator import handlers
from hometwin.operator.kube import Kube, KubeError, load_api_client
from hometwin.operator.manifests import CONFIG_HASH, DEFAULT_IMAGE, LABEL_ELEMENT, LABEL_HOME, object_name, router_url
from hometwin.spec import parse_home
from conftest import WAIT_S

ROOT = Path(__file__).resolve().parents[1]
CAPE_TOWN = ROOT / "examples" / "homes" / "cape-town.yaml"
NS = "default"


class KubectlLoader(yaml.SafeLoader):
    """Reads YAML as kubectl does: timestamps stay strings (local times keep no offset)."""


KubectlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def cape_town(name: str) -> dict[str, Any]:
    doc = yaml.load(CAPE_TOWN.read_text(), Loader=KubectlLoader)
    doc["metadata"] = {"name": name, "namespace": NS}
    return doc


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator plus what kopf relies on: resourceVersion, uid, generation, creationTimestamp."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._versions = itertools.count(1)

    async def _handle(self, request: Any) -> Any:
        data = request.data
        if request.resource is not None and isinstance(data, dict) and \
                request.action in (kmock.action.CREATE, kmock.action.UPDATE):
            meta = data.setdefault("metadata", {})
            meta["resourceVersion"] = str(next(self._versions))
            if request.action == kmock.action.CREATE:
                if meta.get("generateName") and not meta.get("name"):
                    meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("generation", 1)
                meta.setdefault("creationTimestamp", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
            elif "spec" in data and request.subresource is None:
                key = (request.resource, request.namespace, request.name)
                if key in self.objects and not self.objects[key].deleted:
                    meta["generation"] = int(self.objects[key].get("metadata", {}).get("generation", 1)) + 1
        return await super()._handle(request)


class Cluster:
    """Emulator + operator in a background event loop; a sync client for the tests."""

    def __init__(self, kubeconfig: Path):
        self.kubeconfig = kubeconfig
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.kube: Kube | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # surfaced by start()
            self.error = exc
            self.started.set()

    async def _main(self) -> None:
        async with Emulator() as emu, kmock.Server(emu) as server:
            emu.resources.load_bundled()
            emu.resources["hometwin.io/v1alpha1/homes"] = kmock.ResourceInfo(
                kind="Home", singular="home", namespaced=True, subresources={"status"},
                verbs={"get", "list", "watch", "create", "update", "patch", "delete"})
            self.emu = emu
            self.kubeconfig.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
                "clusters": [{"name": "emulator", "cluster": {"server": str(server.url).rstrip("/")}}],
                "users": [{"name": "tester", "user": {"token": "test-token"}}],
                "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
            }))
            self.stop = asyncio.Event()
            ready = asyncio.Event()
            self.operator = operator = asyncio.create_task(kopf.operator(
                registry=handlers.registry, standalone=True, clusterwide=True,
                stop_flag=self.stop, ready_flag=ready, memo=kopf.Memo(image="hometwin:test")))
            await asyncio.wait_for(ready.wait(), timeout=WAIT_S)
            self.kube = Kube(load_api_client())
            self.started.set()
            try:
                await operator
            except asyncio.CancelledError:
                pass  # stopped by close()

    def start(self) -> "Cluster":
        self.thread.start()
        assert self.started.wait(WAIT_S), "emulator/operator did not start"
        if self.error:
            raise self.error
        return self

    def close(self) -> None:
        # A stop flag makes kopf wait for its watch streams, which the emulator never ends:
        # cancelling is the quick way out of a test run.
        self.loop.call_soon_threadsafe(self.operator.cancel)
        self.thread.join(WAIT_S)

    # -- kubectl-like helpers -------------------------------------------------------------------
    def apply(self, home: dict[str, Any]) -> None:
        assert self.kube is not None
        self.kube.create(copy.deepcopy(home))

    def home(self, name: str) -> dict[str, Any]:
        got = self.kube.get("Home", NS, name)
        assert got is not None
        return got

    def edit_spec(self, name: str, edit: Callable[[dict[str, Any]], None]) -> None:
        """Read the Home, change its spec, merge-patch it back (as `kubectl edit`)."""
        spec = copy.deepcopy(self.home(name)["spec"])
        edit(spec)
        self.kube.patch("Home", NS, name, {"spec": spec})

    def deployments(self, home: str) -> dict[str, dict[str, Any]]:
        """Deployments of a home by element (service) name."""
        return {d["metadata"]["labels"][LABEL_ELEMENT]: d
                for d in self.kube.list("Deployment", NS, {LABEL_HOME: home})}

    def objects(self, kind: str, home: str) -> list[dict[str, Any]]:
        return self.kube.list(kind, NS, {LABEL_HOME: home})


def wait_for(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll ``check`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (KeyError, AssertionError, KubeError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def handled(cluster: Cluster, name: str) -> bool:
    """kopf has handled the Home's current spec (it stores it once the handler finished)."""
    home = cluster.home(name)
    last = (home["metadata"].get("annotations") or {}).get("hometwin.io/last-handled-configuration")
    return bool(last) and json.loads(last)["spec"] == home["spec"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    kubeconfig = tmp_path_factory.mktemp("kube") / "kubeconfig"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", str(kubeconfig))  # the operator's login and client read it
        running = Cluster(kubeconfig).start()
        yield running
        running.close()


ELEMENTS = [el["name"] for el in cape_town("x")["spec"]["elements"]]


def test_applying_cape_town_creates_its_services(cluster: Cluster) -> None:
    cluster.apply(cape_town("ct-create"))
    deps = wait_for(lambda: (d := cluster.deployments("ct-create")) and len(d) == len(ELEMENTS) + 2 and d,
                    "router, clock and one Deployment per element")
    home = cluster.home("ct-create")
    uid = home["metadata"]["uid"]

    # The ConfigMap holds the validated spec the pods read.
    (cm,) = cluster.objects("ConfigMap", "ct-create")
    assert parse_home(yaml.safe_load(cm["data"]["home.yaml"])).spec.elements[3].config.capacity_kwh == 10.0

    # Same services and args as `hometwin up` (hometwin.deploy.service_commands).
    expected = service_commands(parse_home(home), SPEC_PATH_IN_POD, router_url("ct-create"), state_dir=STATE_DIR_IN_POD)
    assert set(deps) == {cmd.name for cmd in expected} == set(ELEMENTS) | {"router", "clock"}
    for cmd in expected:
        (container,) = deps[cmd.name]["spec"]["template"]["spec"]["containers"]
        assert container["args"] == list(cmd.args)
        assert container["image"] == "hometwin:test"
        assert deps[cmd.name]["spec"]["replicas"] == 1
    assert deps["battery"]["spec"]["template"]["spec"]["containers"][0]["args"][:4] == \
        ["service", "battery", "--name", "battery"]

    for kind in ("ConfigMap", "Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget"):
        objects = cluster.objects(kind, "ct-create")
        assert objects, kind
        for obj in objects:
            labels = obj["metadata"]["labels"]
            assert labels["app.kubernetes.io/instance"] == "ct-create"
            assert labels["app.kubernetes.io/managed-by"] == "hometwin-operator"
            assert labels["app.kubernetes.io/part-of"] == "hometwin"
            assert {"app.kubernetes.io/name", "app.kubernetes.io/component", LABEL_HOME} <= set(labels)
            if kind not in ("ConfigMap", "NetworkPolicy"):
                assert labels[LABEL_ELEMENT] in deps
            (owner,) = obj["metadata"]["ownerReferences"]  # what makes a real cluster cascade deletion
            assert owner == {"apiVersion": "hometwin.io/v1alpha1", "kind": "Home", "name": "ct-create",
                             "uid": uid, "controller": True, "blockOwnerDeletion": True}
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    services = {s["metadata"]["labels"][LABEL_ELEMENT] for s in cluster.objects("Service", "ct-create")}
    assert services == set(ELEMENTS) | {"router"}
    (policy,) = cluster.objects("NetworkPolicy", "ct-create")
    assert policy["spec"]["podSelector"] == {"matchLabels": {LABEL_HOME: "ct-create"}}
    (pdb,) = cluster.objects("PodDisruptionBudget", "ct-create")
    assert pdb["spec"]["selector"]["matchLabels"] == deps["router"]["spec"]["selector"]["matchLabels"]

    # The home's credentials: one Secret, a fresh secret per principal; a pod mounts only its own key,
    # the router every one (it checks them all).
    (secret,) = cluster.objects("Secret", "ct-create")
    assert sorted(secret["data"]) == sorted(auth.principals_for(auth.home_elements(parse_home(home))))
    assert len({base64.b64decode(v) for v in secret["data"].values()}) == len(secret["data"])
    (owner,) = secret["metadata"]["ownerReferences"]
    assert owner["uid"] == uid
    kubernetes_validate.validate(secret, kubernetes_validate.latest_version(), strict=True)

    def credentials_volume(name: str) -> dict[str, Any]:
        pod = deps[name]["spec"]["template"]["spec"]
        (vol,) = [v for v in pod["volumes"] if v["name"] == "credentials"]
        (mount,) = [mt for mt in pod["containers"][0]["volumeMounts"] if mt["name"] == "credentials"]
        assert mount == {"name": "credentials", "mountPath": "/etc/hometwin/credentials", "readOnly": True}
        assert vol["secret"]["secretName"] == secret["metadata"]["name"] and vol["secret"]["defaultMode"] == 0o400
        return vol["secret"]

    assert credentials_volume("oven")["items"] == [{"key": "element.oven", "path": "element.oven"}]
    assert credentials_volume("clock")["items"] == [{"key": "clock", "path": "clock"}]
    assert "items" not in credentials_volume("router")
    assert deps["router"]["spec"]["template"]["spec"]["containers"][0]["args"][:5] == \
        ["router", "--spec", SPEC_PATH_IN_POD, "--credentials", "/etc/hometwin/credentials"]

    oven = deps["oven"]["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert oven[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in oven["ports"]
    assert oven["resources"] == {"requests": {"cpu": "50m", "memory": "96Mi"},
                                 "limits": {"cpu": "500m", "memory": "256Mi"}}

    status = wait_for(lambda: cluster.home("ct-create").get("status", {}).get("phase") and
                      cluster.home("ct-create")["status"], "a status")
    assert status["phase"] == "Pending" and status["ready"] == f"0/{len(ELEMENTS)}"

    # The Deployment controller reports pods ready → the Home runs.
    for name in deps:
        cluster.kube.patch("Deployment", NS, object_name("ct-create", name), {"status": {"readyReplicas": 1}},
                           sub="status")
    status = wait_for(lambda: (s := cluster.home("ct-create")["status"])["phase"] == "Running" and s, "Running")
    assert status["ready"] == f"{len(ELEMENTS)}/{len(ELEMENTS)}" and status["elements"]["oven"]["ready"]


def test_disabling_the_oven_scales_it_to_zero_and_manual_scale_is_respected(cluster: Cluster) -> None:
    cluster.apply(cape_town("ct-oven"))
    wait_for(lambda: "oven" in cluster.deployments("ct-oven"), "the oven")

    def oven(enabled: bool) -> Callable[[dict[str, Any]], None]:
        def edit(spec: dict[str, Any]) -> None:
            next(el for el in spec["elements"] if el["name"] == "oven")["enabled"] = enabled
        return edit

    cluster.edit_spec("ct-oven", oven(False))
    wait_for(lambda: cluster.deployments("ct-oven")["oven"]["spec"]["replicas"] == 0, "oven scaled to 0")
    assert cluster.deployments("ct-oven")["tv"]["spec"]["replicas"] == 1

    # `kubectl scale deployment ct-oven-tv --replicas=0`, then an unrelated edit: the TV stays off.
    cluster.kube.patch("Deployment", NS, object_name("ct-oven", "tv"), {"spec": {"replicas": 0}})
    cluster.edit_spec("ct-oven", oven(True))
    wait_for(lambda: cluster.deployments("ct-oven")["oven"]["spec"]["replicas"] == 1, "oven back to 1")
    wait_for(lambda: handled(cluster, "ct-oven"), "the edit handled")
    assert cluster.deployments("ct-oven")["tv"]["spec"]["replicas"] == 0


def test_editing_battery_capacity_updates_only_the_battery(cluster: Cluster) -> None:
    cluster.apply(cape_town("ct-battery"))
    wait_for(lambda: handled(cluster, "ct-battery"), "creation handled")
    before = {n: d["metadata"]["resourceVersion"] for n, d in cluster.deployments("ct-battery").items()}
    hash_before = cluster.deployments("ct-battery")["battery"]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]

    def bigger_battery(spec: dict[str, Any]) -> None:
        next(el for el in spec["elements"] if el["name"] == "battery")["config"]["capacity_kwh"] = 15.0

    cluster.edit_spec("ct-battery", bigger_battery)
    wait_for(lambda: handled(cluster, "ct-battery"), "the edit handled")
    after = cluster.deployments("ct-battery")
    changed = {n for n, d in after.items() if d["metadata"]["resourceVersion"] != before[n]}
    assert changed == {"battery"}
    assert after["battery"]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH] != hash_before
    (cm,) = cluster.objects("ConfigMap", "ct-battery")
    assert "capacity_kwh: 15.0" in cm["data"]["home.yaml"]


def test_removing_an_element_deletes_its_deployment(cluster: Cluster) -> None:
    cluster.apply(cape_town("ct-remove"))
    wait_for(lambda: "tv" in cluster.deployments("ct-remove"), "the TV")
    cluster.edit_spec("ct-remove", lambda spec: spec.update(elements=[e for e in spec["elements"] if e["name"] != "tv"]))
    wait_for(lambda: "tv" not in cluster.deployments("ct-remove"), "the TV's Deployment gone")
    wait_for(lambda: "tv" not in {s["metadata"]["labels"][LABEL_ELEMENT] for s in cluster.objects("Service", "ct-remove")},
             "the TV's Service gone")
    assert set(cluster.deployments("ct-remove")) == set(ELEMENTS) - {"tv"} | {"router", "clock"}


def test_an_invalid_home_fails_and_creates_nothing(cluster: Cluster) -> None:
    broken = cape_town("ct-broken")
    broken["spec"]["elements"] = [e for e in broken["spec"]["elements"] if e["kind"] != "inverter"]
    cluster.apply(broken)
    status = wait_for(lambda: (s := cluster.home("ct-broken").get("status") or {}).get("phase") == "Failed" and s,
                      "phase Failed")
    (ready,) = status["conditions"]
    assert ready["type"] == "Ready" and ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "inverter" in ready["message"] and "inverter" in status["lastError"]
    events = wait_for(lambda: [o for (res, ns, _), o in list(cluster.emu.objects.items())
                               if res.plural == "events" and not o.deleted
                               and o.get("reason") == "InvalidSpec"
                               and o.get("involvedObject", {}).get("name") == "ct-broken"], "a warning event")
    assert events[0]["type"] == "Warning"
    for kind in KINDS:
        assert cluster.objects(kind, "ct-broken") == []


KINDS = ("ConfigMap", "Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget", "Secret")


def warnings_for(cluster: Cluster, name: str, reason: str) -> list[dict[str, Any]]:
    return [o for (res, ns, _), o in list(cluster.emu.objects.items())
            if res.plural == "events" and not o.deleted and o.get("reason") == reason
            and o.get("involvedObject", {}).get("name") == name]


def test_an_image_outside_the_allow_list_is_refused_for_good(cluster: Cluster,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """The module's operator runs image ``hometwin:test`` with no allow-list given, so it allows
    its own repository, ``hometwin:*``.  A Home naming another image fails before anything is
    created, says why (status, condition, warning event naming the field), and is not retried;
    after an edit to an allowed image it runs, and a later edit back leaves what runs alone."""
    rogue = cape_town("ct-rogue")
    rogue["spec"]["deployment"] = {"image": "evil.example/miner:latest"}
    cluster.apply(rogue)
    status = wait_for(lambda: (s := cluster.home("ct-rogue").get("status") or {}).get("phase") == "Failed" and s,
                      "phase Failed")
    (ready,) = status["conditions"]
    assert ready["status"] == "False" and ready["reason"] == "ImageNotAllowed"
    assert ready["message"].startswith("spec.deployment.image: 'evil.example/miner:latest' is not an allowed image")
    assert "'hometwin:*'" in ready["message"] and status["lastError"] == ready["message"]
    (event, *_) = wait_for(lambda: warnings_for(cluster, "ct-rogue", "ImageNotAllowed"), "a warning event")
    assert event["type"] == "Warning" and "spec.deployment.image" in event["message"]
    # Permanent: kopf is done with this spec (a temporary error would leave it unhandled, retried),
    # and its log line names the field.
    wait_for(lambda: handled(cluster, "ct-rogue"), "the spec handled, not retried")
    assert "failed permanently: ImageNotAllowed: spec.deployment.image: 'evil.example/miner:latest'" in caplog.text
    for kind in KINDS:
        assert cluster.objects(kind, "ct-rogue") == [], kind

    cluster.edit_spec("ct-rogue", lambda spec: spec["deployment"].update(image="hometwin:v2"))
    deps = wait_for(lambda: (d := cluster.deployments("ct-rogue")) and len(d) == len(ELEMENTS) + 2 and d,
                    "the Home deployed with an allowed image")
    assert {d["spec"]["template"]["spec"]["containers"][0]["image"] for d in deps.values()} == {"hometwin:v2"}

    cluster.edit_spec("ct-rogue", lambda spec: spec["deployment"].update(image="hometwin/../evil:1"))
    wait_for(lambda: handled(cluster, "ct-rogue") or (cluster.home("ct-rogue").get("status") or {}).get("phase")
             == "Failed", "the edit refused")
    wait_for(lambda: cluster.home("ct-rogue")["status"]["phase"] == "Failed", "phase Failed again")
    after = cluster.deployments("ct-rogue")
    assert {d["spec"]["template"]["spec"]["containers"][0]["image"] for d in after.values()} == {"hometwin:v2"}
    assert {n: d["metadata"]["resourceVersion"] for n, d in after.items()} == \
        {n: d["metadata"]["resourceVersion"] for n, d in deps.items()}


def test_a_home_with_a_data_file_gets_its_config_map_or_fails_saying_how(cluster: Cluster) -> None:
    """Trondheim's grid reads a spot-price CSV: with ``data_config_map`` the grid's pod mounts it,
    without it the Home fails before anything is created, with the kubectl line in its condition."""
    doc = yaml.load((CAPE_TOWN.parent / "trondheim.yaml").read_text(), Loader=KubectlLoader)
    doc["metadata"] = {"name": "tr-data", "namespace": NS}
    cluster.apply(doc)
    grid = wait_for(lambda: cluster.deployments("tr-data").get("grid"), "the grid's Deployment")
    pod = grid["spec"]["template"]["spec"]
    assert {"name": "data", "configMap": {"name": "trondheim-data"}} in pod["volumes"]
    assert "--data-dir" in pod["containers"][0]["args"]
    assert "--data-dir" not in cluster.deployments("tr-data")["clock"]["spec"]["template"]["spec"]["containers"][0]["args"]

    bare = copy.deepcopy(doc)
    bare["metadata"] = {"name": "tr-bare", "namespace": NS}
    del bare["spec"]["deployment"]
    cluster.apply(bare)
    status = wait_for(lambda: (s := cluster.home("tr-bare").get("status") or {}).get("phase") == "Failed" and s,
                      "phase Failed")
    (ready,) = status["conditions"]
    assert ready["reason"] == "InvalidSpec" and "kubectl create configmap tr-bare-data --from-file=" in ready["message"]
    assert cluster.objects("Deployment", "tr-bare") == []


def test_a_deployment_deleted_by_hand_is_put_back(cluster: Cluster) -> None:
    """`kubectl delete deployment ct-gone-tv`: the Home still has the TV, so the operator puts its
    Deployment back (as a Deployment puts back a deleted pod) instead of reporting Running without it."""
    cluster.apply(cape_town("ct-gone"))
    tv = wait_for(lambda: cluster.deployments("ct-gone").get("tv"), "the TV's Deployment")
    cluster.kube.delete("Deployment", NS, tv["metadata"]["name"])
    back = wait_for(lambda: (d := cluster.deployments("ct-gone").get("tv")) is not None
                    and d["metadata"]["uid"] != tv["metadata"]["uid"] and d, "the TV's Deployment back")
    assert back["spec"]["template"]["spec"]["containers"][0]["args"] == tv["spec"]["template"]["spec"]["containers"][0]["args"]
    assert set(cluster.deployments("ct-gone")) == set(ELEMENTS) | {"router", "clock"}


def test_a_spec_config_map_deleted_by_hand_is_put_back(cluster: Cluster) -> None:
    cluster.apply(cape_town("ct-cm"))
    (cm,) = wait_for(lambda: cluster.objects("ConfigMap", "ct-cm"), "the spec ConfigMap")
    cluster.kube.delete("ConfigMap", NS, cm["metadata"]["name"])
    (back,) = wait_for(lambda: [c for c in cluster.objects("ConfigMap", "ct-cm") if c["metadata"]["uid"] != cm["metadata"]["uid"]],
                       "the spec ConfigMap back")
    assert back["data"] == cm["data"]
