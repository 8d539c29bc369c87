"""Helpers for the runtime tests: a real Crossbar router on a free loopback port, a
``hometwin up`` launcher in a background thread, ctl calls and /metrics scraping."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

import hometwin.runtime  # noqa: F401  (blocks autobahn's broken UBJSON import)
from hometwin.runtime.cli import call
from hometwin.runtime.launcher import Launcher
from hometwin.runtime.router import Router, free_port, free_ports, node_config, write_config
from conftest import WAIT_S

ROOT = Path(__file__).resolve().parents[1]
CAPE_TOWN = ROOT / "examples" / "homes" / "cape-town.yaml"
REALMS = ("hometwin.cape-town", "hometwin.minimal")


def example_elements() -> list[tuple[str, str]]:
    """Every (element name, kind) of the example homes: the tests run them all (renamed) on the
    shared router's realms, so its roles and principals cover them."""
    import yaml

    out: dict[str, str] = {}
    for f in sorted((ROOT / "examples" / "homes").glob("*.yaml")):
        for el in yaml.safe_load(f.read_text())["spec"]["elements"]:
            out.setdefault(el["name"], el["kind"])
    return list(out.items())


def shared_router(cbdir: Path, credentials_dir: Path, **kw: Any) -> Router:
    """A router for :data:`REALMS` (the ``router`` fixture of conftest.py: one for the test run) whose principals are every example home's, their secrets
    written to ``credentials_dir`` as ``hometwin up`` writes them (``Router.credentials_dir``)."""
    from hometwin import auth

    elements = example_elements()
    r = Router(realm=REALMS[0], realms=REALMS, cbdir=cbdir, roles=auth.roles_for(elements),
               secrets=auth.new_secrets(auth.principals_for(elements)), **kw)
    auth.write_credentials(credentials_dir, r.secrets)
    r.credentials_dir = credentials_dir  # type: ignore[attr-defined]
    return r


def wait_until(pred: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = pred()
        except Exception:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


class Up:
    """``hometwin up`` (the Launcher) in a background thread."""

    def __init__(self, router: Router | None, spec: Path = CAPE_TOWN, unix: bool = False, **kwargs: Any):
        """On the shared ``router``; None: the launcher starts (and watches) a router of its own."""
        self.router = router
        self.logs: list[str] = []
        if router is None:
            self.launcher = Launcher(spec_path=spec, log_sink=self._sink, live=False,
                                     **{"port": 0, "rawsocket_port": 0, **kwargs})
        else:
            url = router.unix_url if unix else router.url  # services over the Unix socket or TCP
            self.launcher = Launcher(spec_path=spec, router_url=url, log_sink=self._sink, live=False,
                                     credentials_dir=router.credentials_dir, **kwargs)
        self.realm = self.launcher.realm
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _sink(self, name: str, color: str, line: str) -> None:
        self.logs.append(f"[{name}] {line}")

    def _run(self) -> None:
        async def main() -> Any:
            self.loop = asyncio.get_running_loop()
            return await self.launcher.run()

        try:
            self.result = asyncio.run(main())
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    @contextlib.contextmanager
    def driving(self) -> Iterator["Up"]:
        """The steps of a test that drive the running twin: when one fails, the launcher is told
        to end, so the test reports that failure instead of waiting out a run that goes on."""
        try:
            yield self
        except BaseException:
            self.launcher.done.set()
            raise

    def finish(self, timeout_s: float) -> tuple[Any, str]:
        """The run's result once it ended, and every process's log lines as one text."""
        res = self.join(timeout_s)
        return res, "\n".join(self.logs)

    def stop(self, why: str = "stopped by the test") -> None:
        """What Ctrl-C does to the launcher (:meth:`Launcher.stop`), from this thread."""
        self.loop.call_soon_threadsafe(self.launcher.stop, why)

    def start(self) -> "Up":
        self.thread.start()
        return self

    def join(self, timeout_s: float) -> Any:
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            raise AssertionError("hometwin up did not finish in time; last logs:\n" + "\n".join(self.logs[-40:]))
        if self.error is not None:
            raise self.error
        return self.result

    def call(self, uri: str, *args: Any, as_: str = "controller", **kwargs: Any) -> Any:
        if self.router is None:  # its own router: the credentials the launcher made
            from hometwin.runtime.wamp import Credentials

            creds = Credentials.from_folder(self.launcher.credentials_dir, as_)
            return call(self.launcher.router.url, self.realm, uri, *args, credentials=creds, **kwargs)
        return call(self.router.url, self.realm, uri, *args, credentials=self.router.credentials(as_), **kwargs)

    def clock(self) -> dict[str, Any]:
        return self.call("hometwin.clock.status")

    def wait_paused_at(self, step: int, timeout_s: float = WAIT_S) -> dict[str, Any]:
        try:
            return wait_until(lambda: (lambda s: s if s["paused"] and s["i"] == step else None)(self.clock()),
                              timeout_s, f"the clock to pause at step {step}")
        except AssertionError as exc:  # say where the run stands and what the services said last
            try:
                status: Any = self.clock()
            except Exception as why:
                status = f"no answer ({why!r})"
            raise AssertionError(f"{exc}; clock status: {status}; last logs:\n" + "\n".join(self.logs[-60:])) from None

    def metrics_port(self, name: str) -> int:
        argv = self.launcher.procs[name].argv
        return int(argv[argv.index("--metrics-port") + 1])

    def scrape(self, *names: str, settle_s: float = 1.0) -> dict[str, dict[str, float]]:
        """/metrics of each named service, read ``settle_s`` after the pause (the last settle's
        gauges are set by then): {name: {'series{labels}': value}}."""
        time.sleep(settle_s)
        return {name: scrape(self.metrics_port(name)) for name in names}


#: The labels every series carries besides ``element`` (hometwin.runtime.metrics.IDENTITY).
IDENTITY_LABELS = ("home", "kind", "role")


def scrape(port: int, identity: bool = False) -> dict[str, float]:
    """Prometheus text → {'name{labels}': value}, labels sorted by name (loopback only).  The
    identity labels other than ``element`` (home, kind, role: the same on every series of a
    service) are left out of the keys unless ``identity``; test_metrics checks them."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = {k: v for k, v in s.labels.items() if identity or k not in IDENTITY_LABELS}
            key = s.name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
            out[key] = float(s.value)
    return out


def max_diff(a: Any, b: Any) -> float:
    """Largest absolute difference over the columns of two result frames (NaN-aware)."""
    assert list(a.index) == list(b.index)
    assert sorted(a.columns) == sorted(b.columns), set(a.columns) ^ set(b.columns)
    worst = 0.0
    for c in b.columns:
        x, y = a[c].to_numpy(dtype=float), b[c].to_numpy(dtype=float)
        assert (np.isnan(x) == np.isnan(y)).all(), c
        d = np.abs(np.nan_to_num(x) - np.nan_to_num(y))
        worst = max(worst, float(d.max()) if d.size else 0.0)
    return worst


def diff_report(a: Any, b: Any, tol: float = 1e-9, rows: int = 8) -> str:
    """Where two result frames differ by more than ``tol``: per column, the first rows (for a failure message)."""
    out = []
    for c in b.columns:
        x, y = a[c].to_numpy(dtype=float), b[c].to_numpy(dtype=float)
        bad = np.flatnonzero(np.abs(np.nan_to_num(x) - np.nan_to_num(y)) > tol)
        if bad.size:
            out.append(f"{c}: {bad.size} rows, first " + ", ".join(
                f"{a.index[i]} {x[i]!r} vs {y[i]!r}" for i in bad[:rows]))
    return "\n".join(out) or "no difference"


__all__ = ["shared_router", "example_elements", "Up", "scrape", "wait_until", "max_diff", "diff_report", "CAPE_TOWN", "free_port", "free_ports", "node_config", "write_config",
           "MemoryBus"]

from hometwin.runtime.membus import MemoryBus  # noqa: E402  (re-exported for the protocol tests)


class StandInSession:
    """The part of autobahn's session a hosted service uses, recording what it publishes (no router)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []
        self._session_id = 1

    def publish(self, uri: str, payload: Any) -> None:
        self.published.append((uri, payload))

    async def register(self, *_: Any, **__: Any) -> None: ...

    async def subscribe(self, *_: Any, **__: Any) -> None: ...

