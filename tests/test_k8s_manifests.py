"""The pure manifest builder: Home → Kubernetes objects."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
import pytest
import yaml

from hometwin.deploy import DATA_DIR_IN_POD, SPEC_PATH_IN_POD, STATE_DIR_IN_POD, service_commands
from hometwin.operator.handlers import policy_from_env, repository
from hometwin.operator.manifests import CONFIG_HASH, DESIRED_HASH, LABEL_ELEMENT, LABEL_HOME, ImageNotAllowed, Peer, \
    Policy, build_manifests, image_allowed, object_name, router_url
from hometwin.spec import SpecError, load_home, parse_home
from conftest import shared

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "homes"
K8S = kubernetes_validate.latest_version()


@pytest.fixture(scope="module")
def home() -> Any:
    return load_home(EXAMPLES / "cape-town.yaml")


def edited(home: Any, edit: Any) -> Any:
    doc = home.model_dump(mode="json", exclude_unset=True)
    edit(doc)
    return parse_home(doc)


def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["labels"][LABEL_ELEMENT]: o for o in objects if o["kind"] == "Deployment"}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_object_of_every_example_is_valid_kubernetes(path: Path) -> None:
    objects = build_manifests(load_home(path), "homes", owner_uid="0c2d5f0e-0000-4000-8000-000000000001",
                              policy=POLICY)
    name = load_home(path).metadata.name  # read afresh: once, not once per object
    assert {"NetworkPolicy", "PodDisruptionBudget"} <= {o["kind"] for o in objects}
    for obj in objects:
        kubernetes_validate.validate(obj, K8S, strict=True)
        assert obj["metadata"]["namespace"] == "homes"
        assert obj["metadata"]["ownerReferences"][0]["kind"] == "Home"
        assert obj["metadata"]["labels"][LABEL_HOME] == name


def test_same_services_and_args_as_hometwin_up(home: Any) -> None:
    """`hometwin up` and the operator run the same set of services with the same arguments."""
    commands = service_commands(home, SPEC_PATH_IN_POD, router_url(home.metadata.name), state_dir=STATE_DIR_IN_POD)
    deps = deployments(build_manifests(home, "default"))
    assert sorted(deps) == sorted(c.name for c in commands)
    for cmd in commands:
        container = deps[cmd.name]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == list(cmd.args)
        assert deps[cmd.name]["spec"]["replicas"] == (1 if cmd.enabled else 0)


def test_objects_of_a_home(home: Any) -> None:
    objects = build_manifests(home, "default", image="hometwin:1")
    kinds = [o["kind"] for o in objects]
    n = len(home.spec.elements)
    assert kinds.count("ConfigMap") == 1 and kinds.count("Deployment") == n + 2 and kinds.count("Service") == n + 1
    assert kinds.count("NetworkPolicy") == 1 and kinds.count("PodDisruptionBudget") == 1
    assert kinds.index("NetworkPolicy") < kinds.index("Deployment")  # the fence stands before any pod
    cm = objects[0]
    assert parse_home(yaml.safe_load(cm["data"]["home.yaml"])).model_dump() == home.model_dump()
    oven = deployments(objects)["oven"]
    pod = oven["spec"]["template"]["spec"]
    assert pod["volumes"][0] == {"name": "spec", "configMap": {"name": "cape-town-spec"}}
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == str(Path(SPEC_PATH_IN_POD).parent)
    assert pod["securityContext"]["runAsNonRoot"] is True
    for probe in ("readinessProbe", "livenessProbe"):
        assert pod["containers"][0][probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    router = deployments(objects)["router"]["spec"]["template"]["spec"]["containers"][0]
    assert router["readinessProbe"]["tcpSocket"] == {"port": "rawsocket"}  # what the services use
    assert router["livenessProbe"]["tcpSocket"] == {"port": "ws"}
    assert {p["name"]: p["containerPort"] for p in router["ports"]} == {"ws": 8080, "rawsocket": 8081}
    # Elements keep their state on an emptyDir (it outlives a container crash); router and clock keep none.
    for name, dep in deployments(objects).items():
        pod_spec = dep["spec"]["template"]["spec"]
        (container,) = pod_spec["containers"]
        volumes = {v["name"]: v for v in pod_spec["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        if name in ("router", "clock"):
            assert "state" not in volumes and "--state-dir" not in container["args"], name
        else:
            assert "emptyDir" in volumes["state"] and mounts["state"] == STATE_DIR_IN_POD, name
            assert container["args"][container["args"].index("--state-dir") + 1] == STATE_DIR_IN_POD, name
    assert oven["spec"]["selector"]["matchLabels"] == {LABEL_HOME: "cape-town", "hometwin.io/service": "oven"}
    labels = oven["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "oven" and labels[LABEL_ELEMENT] == "oven"
    assert oven["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert "ownerReferences" not in oven["metadata"]  # none without the Home's uid


def test_disabled_element_gets_zero_replicas(home: Any) -> None:
    off = edited(home, lambda d: next(e for e in d["spec"]["elements"] if e["name"] == "oven").update(enabled=False))
    deps = deployments(build_manifests(off, "default"))
    assert deps["oven"]["spec"]["replicas"] == 0 and deps["tv"]["spec"]["replicas"] == 1
    assert deps["oven"]["metadata"]["annotations"]["hometwin.io/enabled"] == "false"


def test_changing_one_element_changes_only_its_deployment(home: Any) -> None:
    before = by_key(build_manifests(home, "default"))
    after = by_key(build_manifests(edited(home, lambda d: next(
        e for e in d["spec"]["elements"] if e["name"] == "battery")["config"].update(capacity_kwh=15.0)), "default"))
    changed = {k for k in before if before[k]["metadata"]["annotations"][DESIRED_HASH] !=
               after[k]["metadata"]["annotations"][DESIRED_HASH]}
    assert changed == {("ConfigMap", "cape-town-spec"), ("Deployment", "cape-town-battery")}
    battery = ("Deployment", "cape-town-battery")
    assert before[battery]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH] != \
        after[battery]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]


def test_changing_the_location_rolls_every_element(home: Any) -> None:
    before = deployments(build_manifests(home, "default"))
    after = deployments(build_manifests(edited(home, lambda d: d["spec"]["location"].update(latitude=-34.0)), "default"))
    rolled = {n for n in before if before[n]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH] !=
              after[n]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]}
    assert rolled == set(before) - {"router"}


def test_resources_default_and_per_element_override(home: Any) -> None:
    custom = edited(home, lambda d: d["spec"].update(deployment={
        "image": "registry.local/hometwin:dev",
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "elements": {"inverter": {"limits": {"cpu": "2"}}}}))
    deps = deployments(build_manifests(custom, "default", image="ignored:1"))
    inverter = deps["inverter"]["spec"]["template"]["spec"]["containers"][0]
    assert inverter["image"] == "registry.local/hometwin:dev"
    assert inverter["resources"] == {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "512Mi"}}
    assert deps["oven"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}


def test_deployment_overrides_must_name_an_element(home: Any) -> None:
    with pytest.raises(SpecError, match="deployment.elements.toaster"):
        edited(home, lambda d: d["spec"].update(deployment={"elements": {"toaster": {}}}))


def test_reserved_element_names_are_refused(home: Any) -> None:
    clash = edited(home, lambda d: next(e for e in d["spec"]["elements"] if e["name"] == "tv").update(name="router"))
    with pytest.raises(SpecError, match="reserved"):
        build_manifests(clash, "default")


def test_object_names_are_dns_labels() -> None:
    assert object_name("cape-town", "oven") == "cape-town-oven"
    long = object_name("a" * 40, "b" * 40)
    assert len(long) == 63 and long[0].isalpha() and not long.endswith("-")
    assert object_name("7th-street", "tv") == "ht-7th-street-tv"


# -- data files: relative paths in a spec come from a ConfigMap in the pods -------------------------

SPOT_CSV = "epex_NO3_hourly_eur_mwh_2025-01-24_to_2026-08-21.csv"


def spot_tariff(path: str) -> dict[str, Any]:
    return {"type": "series", "file": path, "format": "epex_wide", "unit": "per_mwh"}


def with_files(home: Any, grid_file: str, house_file: str | None = None, config_map: str | None = None) -> Any:
    def edit(d: dict[str, Any]) -> None:
        els = {e["name"]: e for e in d["spec"]["elements"]}
        els["grid"].setdefault("config", {})["tariff"] = spot_tariff(grid_file)
        if house_file is not None:
            els["house"].setdefault("config", {})["profile"] = {"file": house_file}
        if config_map is not None:
            d["spec"]["deployment"] = {"data_config_map": config_map}
    return edited(home, edit)


def test_a_relative_data_file_without_a_config_map_is_refused(home: Any) -> None:
    with pytest.raises(SpecError) as err:
        build_manifests(with_files(home, f"prices/{SPOT_CSV}"), "default")
    msg = str(err.value)
    assert "elements[" in msg and ".config.tariff.file" in msg and "spec.deployment.data_config_map" in msg
    assert f"kubectl create configmap cape-town-data --from-file=prices/{SPOT_CSV}" in msg


def test_data_files_are_mounted_by_file_name_into_every_element_pod(home: Any) -> None:
    objects = build_manifests(with_files(home, f"../prices/{SPOT_CSV}", config_map="ct-data"), "default")
    for obj in objects:
        kubernetes_validate.validate(obj, K8S, strict=True)
    deps = deployments(objects)
    grid = deps["grid"]["spec"]["template"]["spec"]
    args = grid["containers"][0]["args"]
    assert args[args.index("--data-dir") + 1] == DATA_DIR_IN_POD
    assert {"name": "data", "mountPath": DATA_DIR_IN_POD, "readOnly": True} in grid["containers"][0]["volumeMounts"]
    assert {"name": "data", "configMap": {"name": "ct-data"}} in grid["volumes"]
    # every element (a runtime set may name a file later), not the router or the clock
    for name, dep in deps.items():
        pod = dep["spec"]["template"]["spec"]
        has = "--data-dir" in pod["containers"][0]["args"] and any(v["name"] == "data" for v in pod["volumes"])
        assert has == (name not in ("router", "clock")), name
    # without a data ConfigMap no pod gets either
    for dep in deployments(build_manifests(home, "default")).values():
        assert "--data-dir" not in dep["spec"]["template"]["spec"]["containers"][0]["args"]


def test_two_data_files_with_one_file_name_are_refused(home: Any) -> None:
    clash = with_files(home, f"a/{SPOT_CSV}", house_file=f"b/{SPOT_CSV}", config_map="ct-data")
    with pytest.raises(SpecError, match="share the file name"):
        build_manifests(clash, "default")
    same = with_files(home, f"a/{SPOT_CSV}", house_file=f"a/./{SPOT_CSV}", config_map="ct-data")
    build_manifests(same, "default")  # one file named twice is one key


def test_absolute_data_paths_are_left_to_the_image(home: Any) -> None:
    deps = deployments(build_manifests(with_files(home, f"/opt/data/{SPOT_CSV}"), "default"))  # not refused
    assert "--data-dir" not in deps["grid"]["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize("name", ["Data", "-data", "data_files", "a" * 254])
def test_data_config_map_must_be_a_kubernetes_name(home: Any, name: str) -> None:
    with pytest.raises(SpecError, match="data_config_map"):
        edited(home, lambda d: d["spec"].update(deployment={"data_config_map": name}))


def test_a_pod_reads_its_data_files_by_file_name_from_the_data_dir(tmp_path: Path) -> None:
    """What a grid pod runs (``hometwin service grid --data-dir …``): the spec's relative tariff path
    does not exist beside the mounted spec, the file is found by its name in the data folder, and
    the prices are the ones `hometwin run` reads through the path."""
    from hometwin.element import Window
    from hometwin.runtime.cli import _home_and_element

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(shared("spot_prices", SPOT_CSV), data / SPOT_CSV)  # the ConfigMap's key = file name
    etc = tmp_path / "etc"
    etc.mkdir()
    doc = yaml.safe_load((EXAMPLES / "trondheim.yaml").read_text())
    (etc / "home.yaml").write_text(yaml.safe_dump(doc))
    assert not (etc / doc_tariff_file(doc)).exists()

    _, in_pod = _home_and_element(etc / "home.yaml", "grid", "grid", None, "2d", data_dir=data)
    _, local = _home_and_element(EXAMPLES / "trondheim.yaml", "grid", "grid", None, "2d")
    w = Window(seq=0, i0=0, n=2880, dt_s=60, home=local.home)
    want = local.signals(w, {})["price_import"]
    got = in_pod.signals(Window(seq=0, i0=0, n=2880, dt_s=60, home=in_pod.home), {})["price_import"]
    assert np.array_equal(got, want) and np.ptp(want) > 0  # spot prices: they vary over two days

    with pytest.raises(Exception, match=SPOT_CSV):  # without the data folder the spec's path is missing
        _home_and_element(etc / "home.yaml", "grid", "grid", None, "2d")


def doc_tariff_file(doc: dict[str, Any]) -> str:
    return next(e for e in doc["spec"]["elements"] if e["name"] == "grid")["config"]["tariff"]["file"]


def test_an_inverter_edit_rolls_the_clock_too(home: Any) -> None:
    """The clock cuts windows where the inverter's strategy replans: a change there reaches it."""
    before = deployments(build_manifests(home, "default"))
    after = deployments(build_manifests(edited(home, lambda d: next(
        e for e in d["spec"]["elements"] if e["name"] == "inverter")["config"].update(reserve_soc=0.3)), "default"))
    rolled = {n for n in before if before[n]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH] !=
              after[n]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]}
    assert rolled == {"inverter", "clock"}


def test_the_kubectl_line_names_each_file_once(home: Any) -> None:
    def both(d: dict[str, Any]) -> None:
        grid = next(e for e in d["spec"]["elements"] if e["name"] == "grid")
        grid["config"]["tariff"] = spot_tariff(f"prices/{SPOT_CSV}")
        grid["config"]["export_tariff"] = spot_tariff(f"prices/{SPOT_CSV}")
    with pytest.raises(SpecError) as err:
        build_manifests(edited(home, both), "default")
    line = next(ln for ln in str(err.value).splitlines() if "kubectl create configmap" in ln)
    assert line.count(f"--from-file=prices/{SPOT_CSV}") == 1


@pytest.mark.parametrize("name", ["..prices.csv", ".", "a" * 254 + ".csv", "prices.csv\n", "prix été.csv"])
def test_file_names_that_cannot_be_config_map_keys_are_refused(home: Any, name: str) -> None:
    with pytest.raises(SpecError, match="cannot be a ConfigMap key"):
        build_manifests(with_files(home, f"prices/{name}", config_map="ct-data"), "default")


# -- hardening: NetworkPolicy, PodDisruptionBudget, image allow-list ---------------------------------

OPERATOR = Peer("hometwin", {"app.kubernetes.io/name": "hometwin", "app.kubernetes.io/component": "operator"})
SCRAPER = Peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
POLICY = Policy(allowed_images=("ghcr.io/hometwin/hometwin:*",), operator=OPERATOR, scraper=SCRAPER)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # what the builder writes
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def admits(policy: dict[str, Any], policy_ns: str, to: dict[str, str], source_ns: str, source: dict[str, str],
           port: int) -> bool:
    """NetworkPolicy ingress semantics (matchLabels only): is a TCP connection from a pod
    (namespace, labels) to ``port`` of a pod with labels ``to`` allowed?"""
    spec = policy["spec"]
    if not _selects(spec["podSelector"], to):
        return True  # not selected: this policy does not isolate that pod
    assert spec["policyTypes"] == ["Ingress"]
    for rule in spec.get("ingress", []):
        if not any(p["port"] == port and p["protocol"] == "TCP" for p in rule["ports"]):
            continue
        for peer in rule["from"]:
            ns_ok = (_selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": source_ns})
                     if "namespaceSelector" in peer else source_ns == policy_ns)
            if ns_ok and _selects(peer.get("podSelector", {}), source):
                return True
    return False


def pod_labels(objects: list[dict[str, Any]], service: str) -> dict[str, str]:
    return deployments(objects)[service]["spec"]["template"]["metadata"]["labels"]


def test_network_policy_lets_only_the_home_reach_its_router(home: Any) -> None:
    objects = build_manifests(home, "homes", owner_uid="0c2d5f0e-0000-4000-8000-000000000001", policy=POLICY)
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy"]
    kubernetes_validate.validate(policy, K8S, strict=True)
    router, battery, clock = (pod_labels(objects, s) for s in ("router", "battery", "clock"))
    other_home = pod_labels(build_manifests(edited(home, lambda d: d["metadata"].update(name="next-door")), "homes"),
                            "battery")
    operator = dict(OPERATOR.pod_labels) | {"pod-template-hash": "abc"}
    prometheus = {"app.kubernetes.io/name": "prometheus", "statefulset": "prom"}

    def ok(to: dict[str, str], ns: str, source: dict[str, str], port: int) -> bool:
        return admits(policy, "homes", to, ns, source, port)

    for port in (8080, 8081):
        assert ok(router, "homes", battery, port) and ok(router, "homes", clock, port)  # the home's own pods
        assert not ok(router, "homes", other_home, port)  # another home in the same namespace
        assert not ok(router, "default", battery, port)  # the same labels in another namespace
        assert not ok(router, "hometwin", operator, port) and not ok(router, "monitoring", prometheus, port)
    for target in (battery, clock):
        assert ok(target, "monitoring", prometheus, 9100) and ok(target, "hometwin", operator, 9100)
        assert not ok(target, "homes", other_home, 9100) and not ok(target, "homes", router, 9100)
        assert not ok(target, "monitoring", {"app": "grafana"}, 9100)  # the scraper's namespace, not the scraper
        assert not ok(target, "default", prometheus, 9100)  # the scraper's labels, not its namespace
    # metrics ports the home actually serves, router ports the router actually opens
    served = {p["containerPort"] for d in deployments(objects).values()
              for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]} == served == {8080, 8081, 9100}
    # no scraper, no operator: nobody outside the home gets in at all
    (bare,) = [o for o in build_manifests(home, "homes") if o["kind"] == "NetworkPolicy"]
    assert not admits(bare, "homes", battery, "hometwin", operator, 9100)
    assert len(bare["spec"]["ingress"]) == 1


@pytest.mark.parametrize("max_unavailable", [0, 1])
def test_the_router_has_a_disruption_budget_and_nothing_else_does(home: Any, max_unavailable: int) -> None:
    objects = build_manifests(home, "homes", owner_uid="0c2d5f0e-0000-4000-8000-000000000001",
                              policy=Policy(router_max_unavailable=max_unavailable))
    (pdb,) = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    kubernetes_validate.validate(pdb, K8S, strict=True)
    assert pdb["spec"]["maxUnavailable"] == max_unavailable and "minAvailable" not in pdb["spec"]
    covered = {name for name, dep in deployments(objects).items()
               if _selects(pdb["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])}
    assert covered == {"router"}
    assert deployments(objects)["router"]["spec"]["replicas"] == 1  # a singleton: why not minAvailable


@pytest.mark.parametrize("image, allowed", [
    ("ghcr.io/hometwin/hometwin:0.1.0", True),
    ("ghcr.io/hometwin/hometwin:dev", True),
    ("ghcr.io/hometwin/hometwin:0.1.0@sha256:" + "a" * 64, True),
    ("ghcr.io/hometwin/hometwin", False),  # no tag: whatever :latest is today
    ("ghcr.io/hometwin/hometwin-miner:1", False),
    ("ghcr.io/hometwin/hometwin:1/../../evil/x:1", False),  # `*` never crosses a '/'
    ("evil.example/ghcr.io/hometwin/hometwin:1", False),
    ("docker.io/library/busybox:latest", False),
])
def test_image_allow_list(image: str, allowed: bool) -> None:
    assert image_allowed(image, ["ghcr.io/hometwin/hometwin:*"]) is allowed
    assert image_allowed(image, []) is False


def test_a_home_with_an_image_outside_the_allow_list_builds_nothing(home: Any) -> None:
    rogue = edited(home, lambda d: d["spec"].update(deployment={"image": "evil.example/miner:latest"}))
    with pytest.raises(ImageNotAllowed) as err:
        build_manifests(rogue, "homes", policy=POLICY)
    (line,) = err.value.errors
    assert line.startswith("spec.deployment.image: 'evil.example/miner:latest' is not an allowed image")
    assert "'ghcr.io/hometwin/hometwin:*'" in line and "operator.allowedImages" in line
    ours = edited(home, lambda d: d["spec"].update(deployment={"image": "ghcr.io/hometwin/hometwin:0.2.0"}))
    images = {d["spec"]["template"]["spec"]["containers"][0]["image"]
              for d in deployments(build_manifests(ours, "homes", policy=POLICY)).values()}
    assert images == {"ghcr.io/hometwin/hometwin:0.2.0"}
    build_manifests(home, "homes", image="anything:1", policy=POLICY)  # no image named: the operator's own


def test_policy_from_the_operator_environment() -> None:
    env = {"HOMETWIN_ALLOWED_IMAGES": "registry.local/hometwin:*, ghcr.io/hometwin/hometwin:*",
           "HOMETWIN_OPERATOR_NAMESPACE": "hometwin",
           "HOMETWIN_OPERATOR_POD_LABELS": '{"app.kubernetes.io/component": "operator"}',
           "HOMETWIN_SCRAPER_NAMESPACE": "monitoring",
           "HOMETWIN_SCRAPER_POD_LABELS": '{"app.kubernetes.io/name": "prometheus"}',
           "HOMETWIN_ROUTER_MAX_UNAVAILABLE": "1"}
    policy = policy_from_env(env, "ghcr.io/hometwin/hometwin:0.1.0")
    assert policy == Policy(allowed_images=("registry.local/hometwin:*", "ghcr.io/hometwin/hometwin:*"),
                            operator=Peer("hometwin", {"app.kubernetes.io/component": "operator"}),
                            scraper=Peer("monitoring", {"app.kubernetes.io/name": "prometheus"}),
                            router_max_unavailable=1)
    default = policy_from_env({}, "registry.local:5000/team/hometwin:dev")
    assert default == Policy(allowed_images=("registry.local:5000/team/hometwin:*",))  # own repository, any tag
    assert repository("ghcr.io/hometwin/hometwin@sha256:" + "b" * 64) == "ghcr.io/hometwin/hometwin"
    assert repository("localhost:5000/hometwin") == "localhost:5000/hometwin"
    for bad in ({"HOMETWIN_SCRAPER_POD_LABELS": "prometheus"}, {"HOMETWIN_SCRAPER_POD_LABELS": '{"a": 1}'},
                {"HOMETWIN_ROUTER_MAX_UNAVAILABLE": "2"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            policy_from_env(bad, "x:1")


@given(tag=st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), min_size=1, max_size=40))
def test_a_glob_star_never_crosses_a_slash(tag: str) -> None:
    """Whatever follows the allowed repository's ':' — a tag, a digest, a path trick — is allowed
    exactly when it stays in that repository (no '/')."""
    assert image_allowed(f"ghcr.io/hometwin/hometwin:{tag}", ["ghcr.io/hometwin/hometwin:*"]) is ("/" not in tag)
    assert not image_allowed(f"ghcr.io/hometwin/hometwin{tag}", ["ghcr.io/hometwin/hometwin:*"]) or tag[0] == ":"


def test_a_home_with_a_tls_secret_speaks_tls_to_its_router(home: Any) -> None:
    """spec.deployment.tls_secret: the router gets the certificate and key and serves TLS only; every
    other pod reaches it at wss:// and mounts only the CA it checks the certificate with."""
    tls = edited(home, lambda d: d["spec"].setdefault("deployment", {}).update(tls_secret="ct-router-tls"))
    objects = build_manifests(tls, "default", owner_uid="0c2d5f0e-0000-4000-8000-000000000001")
    deps = deployments(objects)

    def pod(name: str) -> tuple[list[str], dict[str, Any]]:
        spec = deps[name]["spec"]["template"]["spec"]
        (vol,) = [v for v in spec["volumes"] if v["name"] == "tls"]
        (mount,) = [mt for mt in spec["containers"][0]["volumeMounts"] if mt["name"] == "tls"]
        assert mount == {"name": "tls", "mountPath": "/etc/hometwin/tls", "readOnly": True}
        assert vol["secret"]["secretName"] == "ct-router-tls" and vol["secret"]["defaultMode"] == 0o400
        return spec["containers"][0]["args"], vol["secret"]

    args, secret = pod("router")
    assert args[args.index("--tls-cert") + 1] == "/etc/hometwin/tls/tls.crt"
    assert args[args.index("--tls-key") + 1] == "/etc/hometwin/tls/tls.key"
    assert [i["key"] for i in secret["items"]] == ["tls.crt", "tls.key"]
    for name in ("clock", "oven", "inverter"):
        args, secret = pod(name)
        assert args[args.index("--router") + 1].startswith("wss://") and "--tls-key" not in args
        assert args[args.index("--ca-file") + 1] == "/etc/hometwin/tls/ca.crt"
        assert [i["key"] for i in secret["items"]] == ["ca.crt"]  # never the router's key
    for obj in objects:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    # without it, no TLS anywhere
    plain = deployments(build_manifests(home, "default"))
    assert all(v["name"] != "tls" for d in plain.values() for v in d["spec"]["template"]["spec"]["volumes"])
    assert plain["oven"]["spec"]["template"]["spec"]["containers"][0]["args"][
        plain["oven"]["spec"]["template"]["spec"]["containers"][0]["args"].index("--router") + 1].startswith("ws://")
