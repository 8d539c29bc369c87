"""The container image installs what every pod runs: router (Crossbar), clock, elements, operator.

The Dockerfile is the source of truth: :func:`image_recipe` reads its ``COPY`` lines and its
``pip install`` line, :func:`build_image_venv` repeats them into a fresh virtual environment
(a copy of exactly what the image copies, installed with exactly the image's arguments), and
the slow test runs a small home's router, clock and element services from that venv's own
``hometwin`` on loopback until the clock has settled the whole run.  A Dockerfile that drops
an extra again (the image once installed ``.[k8s]`` only: ``hometwin router`` said "crossbar
is not installed") fails here, without Docker.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from hometwin import auth
from hometwin.runtime.router import free_ports
from runtime_support import scrape as metrics
from runtime_support import wait_until

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
PIP_TIMEOUT_S = 900  # [s] a fresh venv from pip's cache takes 2-4 min on a loaded machine
RUN_TIMEOUT_S = 240  # [s] router start (Crossbar) + join + a one-day run of hourly steps

# The inverter (it settles windows), a load and the grid that serves it; the clock waits until all
# three have joined before the first tick.
HOUSE_W = 350.0
HOME = {
    "apiVersion": "hometwin.io/v1alpha1", "kind": "Home", "metadata": {"name": "imagecheck"},
    "spec": {
        "location": {"latitude": 52.52, "longitude": 13.40, "timezone": "Europe/Berlin"},
        "clock": {"start": "2025-06-01T00:00:00", "duration": "1d", "step_s": 3600, "seed": 1},
        "elements": [{"name": "inverter", "kind": "inverter", "config": {"ac_power_kw": 4.0}},
                     {"name": "grid", "kind": "grid",
                      "config": {"currency": "EUR", "tariff": {"type": "flat", "price_per_kwh": 0.35}}},
                     {"name": "house", "kind": "base_load", "config": {"power_w": HOUSE_W}}],
    },
}
STEPS = 24  # a day of hourly steps


def image_recipe(dockerfile: Path = DOCKERFILE) -> tuple[list[tuple[list[str], str]], list[str]]:
    """The ``COPY`` lines into the build folder (sources, destination) and the arguments of the
    image's ``pip install`` (after ``pip install``), as the Dockerfile writes them."""
    copies: list[tuple[list[str], str]] = []
    pip_args: list[str] | None = None
    lines = [ln for ln in dockerfile.read_text().splitlines() if not ln.lstrip().startswith("#")]
    for line in "\n".join(lines).replace("\\\n", " ").splitlines():  # comments are whole lines; join continuations
        words = shlex.split(line)
        if not words:
            continue
        if words[0] == "COPY":
            assert not any(w.startswith("--") for w in words[1:]), f"COPY flags are not reproduced: {line}"
            copies.append((words[1:-1], words[-1]))
        elif words[0] == "RUN" and pip_args is None:
            for part in line.strip()[len("RUN"):].split("&&"):
                cmd = shlex.split(part)
                if cmd[:2] == ["pip", "install"]:
                    pip_args = cmd[2:]
    assert copies and pip_args, "the Dockerfile copies the project and pip-installs it"
    return copies, pip_args


def _copy_like_docker(sources: list[str], dest: str, into: Path) -> None:
    """``COPY src… dest`` in the build folder ``into`` (Docker's rules: a folder's contents go
    into ``dest``; with several sources ``dest`` is a folder)."""
    target = into / dest
    for src in sources:
        path = ROOT / src
        if path.is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            to = target / path.name if len(sources) > 1 or dest.endswith("/") else target
            to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, to)


def build_image_venv(where: Path) -> Path:
    """A fresh venv holding what the image installs; its ``bin`` folder."""
    copies, pip_args = image_recipe()
    src = where / "src"
    src.mkdir()
    for sources, dest in copies:
        _copy_like_docker(sources, dest, src)
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # The `pip` script, as the Dockerfile runs it (`python -m pip` would put the build folder on
    # sys.path, where operator/ shadows the standard library's operator module).
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *pip_args], cwd=src,
                          capture_output=True, text=True, timeout=PIP_TIMEOUT_S, env=_clean_env())
    assert done.returncode == 0, f"pip install {' '.join(pip_args)} failed:\n{done.stderr[-3000:]}"
    return venv / "bin"


def _clean_env() -> dict[str, str]:
    """No trace of this checkout: the venv's own hometwin must be what runs."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen]]:
    """Started processes, each in its own process group, ended (TERM, then KILL) on the way out."""
    procs: list[subprocess.Popen] = []
    try:
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


def launch(procs: list[subprocess.Popen], bin_dir: Path, log: Path, *args: str) -> subprocess.Popen:
    """``hometwin ARGS`` from the image's venv, output to ``log``."""
    with log.open("w") as out:
        proc = subprocess.Popen([str(bin_dir / "hometwin"), *args], stdout=out, stderr=subprocess.STDOUT,
                                cwd=log.parent, env=_clean_env(), start_new_session=True)
    procs.append(proc)
    return proc


def start_home(procs: list[subprocess.Popen], bin_dir: Path, run: Path) -> dict[str, int]:
    """Router, then every element and the clock of :data:`HOME`, as the operator's pods run them
    but on loopback; their metrics ports by name.  The one place that builds the services'
    command lines."""
    spec = run / "home.yaml"
    spec.write_text(yaml.safe_dump(HOME))
    realm = f"hometwin.{HOME['metadata']['name']}"
    ws = free_ports(2)
    names = [el["name"] for el in HOME["spec"]["elements"]] + ["clock"]
    first = free_ports(len(names))
    ports = {name: first + i for i, name in enumerate(names)}
    # The home's credentials as the operator's Secret holds them, one file per principal.
    creds = auth.write_credentials(run / "credentials", auth.new_secrets(auth.principals_for(
        [(el["name"], el["kind"]) for el in HOME["spec"]["elements"]])))
    launch(procs, bin_dir, run / "router.log", "router", "--spec", str(spec), "--credentials", str(creds),
           "--realm", realm, "--host", "127.0.0.1", "--port", str(ws), "--rawsocket-port", str(ws + 1))
    wait_until(lambda: "router up" in (run / "router.log").read_text() or procs[0].poll() is not None,
               RUN_TIMEOUT_S, "the router to start")
    assert procs[0].poll() is None, (run / "router.log").read_text()[-3000:]
    common = ("--spec", str(spec), "--router", f"rs://127.0.0.1:{ws + 1}", "--realm", realm,
              "--credentials", str(creds), "--metrics-host", "127.0.0.1")
    for el in HOME["spec"]["elements"]:
        launch(procs, bin_dir, run / f"{el['name']}.log", "service", el["kind"], "--name", el["name"],
               *common, "--metrics-port", str(ports[el["name"]]))
    launch(procs, bin_dir, run / "clock.log", "clock", *common, "--metrics-port", str(ports["clock"]))
    return ports


def test_the_image_installs_every_extra_a_pod_needs() -> None:
    """Router pods need Crossbar (``services``), the operator kopf and the client (``k8s``)."""
    _, pip_args = image_recipe()
    (target,) = [a for a in pip_args if not a.startswith("-")]
    assert target.startswith(".[") and target.endswith("]"), target
    extras = set(target[2:-1].split(","))
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installed = {req.split(">")[0].split("=")[0].split("[")[0].strip() for extra in extras for req in declared[extra]}
    assert {"crossbar", "kopf", "kubernetes"} <= installed, installed
    assert "dev" not in extras  # test tools stay out of the image


@pytest.mark.slow
def test_a_home_runs_from_the_image_install_set(tmp_path: Path) -> None:
    bin_dir = build_image_venv(tmp_path)
    probe = subprocess.run([str(bin_dir / "python"), "-c",
                            "import hometwin, crossbar, kopf, kubernetes, hometwin.operator.handlers; "
                            "print(hometwin.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120, env=_clean_env())
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert Path(probe.stdout.strip()).is_relative_to(tmp_path / "venv"), probe.stdout  # not this checkout

    run = tmp_path / "run"
    run.mkdir()

    def logs() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(run.glob("*.log")))

    with processes() as procs:
        ports = start_home(procs, bin_dir, run)
        try:
            wait_until(lambda: metrics(ports["clock"]).get('hometwin_steps_total{element="clock"}') == STEPS,
                       RUN_TIMEOUT_S, f"the clock to settle all {STEPS} steps")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{logs()}") from None
        assert all(p.poll() is None for p in procs), logs()  # nobody crashed on the way
        grid, house = metrics(ports["grid"]), metrics(ports["house"])
    # Every element settled the whole day, and the energy balances: what the grid put onto the
    # bus is what the house took off it, 350 W for 24 h.
    day_j = HOUSE_W * STEPS * 3600
    assert grid['hometwin_steps_total{element="grid"}'] == house['hometwin_steps_total{element="house"}'] == STEPS
    assert house['hometwin_element_energy_joules_total{direction="off_bus",element="house"}'] == pytest.approx(day_j)
    assert grid['hometwin_element_energy_joules_total{direction="onto_bus",element="grid"}'] == pytest.approx(day_j)
    assert "run done: 24 steps" in (run / "clock.log").read_text()
