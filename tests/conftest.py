"""Shared fixtures and the layers of the suite (docs/testing.md).

Fixtures: a hand-built HomeContext, paths to the examples and to ../shared/data, PostgreSQL, and
the one Crossbar router of the whole run (``router``).  Helpers live in modules beside this one
(runtime_support, api_support, homes, pgserver, ui_support) and are imported by those names —
``from runtime_support import Up`` — never as ``tests.runtime_support``, which would load a second
copy (tests/test_suite_layers.py checks it).

Layers: a test that starts a process, a router, PostgreSQL, Prometheus, a browser or the
Kubernetes emulator is marked ``integration`` here, at collection, from what it uses (see
:func:`integration_reason`); a test that does so without the mark fails, naming what it started.
Year-long runs carry ``@pytest.mark.slow``.  ``scripts/test.sh --fast`` runs the rest.
"""

from __future__ import annotations

import functools
import gc
import inspect
import os
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pytest

from hometwin.element import HomeContext, Window

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "homes"
SHARED_DATA = Path(os.environ.get("HOMETWIN_SHARED_DATA", ROOT.parent / "shared" / "data"))
# The examples name price files in ../shared/data, outside their folder: a configured data root
# (hometwin.datafiles), inherited by every hometwin process the tests start.
os.environ.setdefault("HOMETWIN_DATA_ROOT", str(SHARED_DATA))
#: [s] Upper bound of a wait for an event (a process joined, a port open, the operator reacted):
#: generous, for a loaded machine (two shared cores at a load average of 10); every wait returns
#: as soon as the event is seen, so a quiet machine never waits it out.
WAIT_S = 180.0


def make_ctx(n_steps: int = 1440, step_s: int = 60, start: str = "2025-01-01T00:00:00Z",
             tz: str = "UTC", lat: float = -33.92, lon: float = 18.42, seed: int = 0) -> HomeContext:
    return HomeContext(name="test", latitude=lat, longitude=lon, altitude_m=0.0, timezone=tz,
                       start=pd.Timestamp(start).tz_convert("UTC"), step_s=step_s, n_steps=n_steps, seed=seed)


def window(ctx: HomeContext, i0: int, n: int, seq: int = 0) -> Window:
    return Window(seq=seq, i0=i0, n=n, dt_s=ctx.step_s, home=ctx)


def _read_kubernetes_schemas_once() -> None:
    """kubernetes_validate.validate reads and parses its JSON schema files at every call (the 2 MB
    ``_definitions.json`` among them: ~15 ms an object, hundreds of objects in test_k8s_manifests,
    test_helm and test_crd).  The files never change during a run: parse each once.  (The validation
    itself is the library's own, unchanged; the parsed schemas are only read.)"""
    from kubernetes_validate import utils

    if not hasattr(utils.schema_contents, "cache_info"):
        utils.schema_contents = functools.cache(utils.schema_contents)


_read_kubernetes_schemas_once()


@pytest.fixture
def ctx() -> HomeContext:
    return make_ctx()


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"shared reference data missing: {path} (set HOMETWIN_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the session (tests/pgserver.py: a temp folder, Unix socket only)."""
    from pgserver import PgServer

    server = PgServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh database on the session's PostgreSQL server (its SQLAlchemy URL)."""
    return pg_server.new_database()


@pytest.fixture(scope="session")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The one Crossbar router of the test run, on free loopback ports and a Unix socket, with a
    principal for every element of the example homes on both realms (runtime_support.REALMS).

    Tests only use it (each its own run on a realm); a test that kills or restarts a router
    starts its own (``Up(None)``, ``Router(...)``), so this one is never disturbed."""
    from runtime_support import shared_router

    tmp = tmp_path_factory.mktemp("crossbar")
    r = shared_router(tmp / ".crossbar", tmp / "credentials", unix=True)
    r.start(timeout_s=WAIT_S)
    yield r
    r.stop()


# -- the layers of the suite ------------------------------------------------------------------

#: Fixtures that start a process or a server: a test that uses one, directly or through another
#: fixture, is ``integration``.  (Fixtures defined in tests/ are also read like test code below.)
INTEGRATION_FIXTURES = frozenset({"router", "pg_server", "pg_url"})

#: Names whose use starts a process, a router, a database, a browser or the Kubernetes emulator:
#: a test that refers to one — in its body, or in a function, class or fixture of tests/ that it
#: reaches — is ``integration``.  (Attribute names count too: ``subprocess.run``, ``asyncio.create_subprocess_exec``.)
PROCESS_NAMES = frozenset({
    "subprocess", "Popen", "create_subprocess_exec", "create_subprocess_shell", "fork", "forkpty",
    "posix_spawn", "multiprocessing", "ProcessPoolExecutor",
    "Launcher", "Router", "PgServer", "zygote",  # hometwin up, Crossbar, PostgreSQL, the fork server
    "kmock", "kopf",  # the Kubernetes emulator and the operator
    "sync_playwright", "async_playwright", "uvicorn",  # a browser, a served HTTP API
})

#: Audit events (PEP 578) of a new process: caught while a test runs (:func:`_audit`).
_PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn",
                             "os.exec", "os.system"})
#: Commands a library runs for itself, briefly — not a process of the system under test: the
#: standard library's (platform.processor: uname -p; ctypes.util.find_library: ldconfig, gcc, ld,
#: objdump) and the independent reference solver of tests/test_lp.py (CBC, through PuLP).
_LIBRARY_HELPERS = frozenset({"uname", "ldconfig", "gcc", "cc", "ld", "objdump", "cbc"})
_TESTS = Path(__file__).resolve().parent


@functools.cache
def _file_in_tests(filename: str) -> bool:
    return Path(filename).resolve().is_relative_to(_TESTS)


def _defined_in_tests(obj: Any) -> bool:
    try:
        return _file_in_tests(inspect.getfile(obj))  # (resolved once per file: ~8,000 calls per collection)
    except (TypeError, OSError):
        return False


def _code_objects(obj: Any) -> Iterator[Any]:
    """The code objects of a function (nested ones included)."""
    fn = inspect.unwrap(obj)
    fn = getattr(getattr(fn, "hypothesis", None), "inner_test", fn)
    code = getattr(fn, "__code__", None)
    todo = [code] if code is not None else []
    while todo:
        code = todo.pop()
        yield code
        todo += [c for c in code.co_consts if inspect.iscode(c)]


def process_names_used(obj: Any, _seen: set[int] | None = None) -> set[str]:
    """The names of :data:`PROCESS_NAMES` that ``obj`` (a function or class) refers to, following
    the functions and classes of tests/ it names (helpers in the same module or runtime_support …)."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return set()
    seen.add(id(obj))
    found: set[str] = set()
    for owner in (obj.__mro__ if inspect.isclass(obj) else (obj,)):
        if owner is not obj and not _defined_in_tests(owner):
            continue
        if inspect.isclass(owner):
            module = sys.modules.get(owner.__module__)
            namespace: dict[str, Any] = vars(module) if module is not None else {}
            codes = [c for value in vars(owner).values()
                     for c in _code_objects(getattr(value, "__func__", getattr(value, "fget", value)))]
        else:
            namespace = getattr(inspect.unwrap(owner), "__globals__", {})
            codes = list(_code_objects(owner))
        for code in codes:
            found |= PROCESS_NAMES.intersection(code.co_names)
            for name in code.co_names:
                target = namespace.get(name)
                if (inspect.isfunction(target) or inspect.isclass(target)) and _defined_in_tests(target):
                    found |= process_names_used(target, seen)
    return found


def integration_reason(item: pytest.Item) -> str | None:
    """Why ``item`` is an integration test (a fixture or a name it uses), or None."""
    fixtures = INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    if fixtures:
        return f"uses the fixture {sorted(fixtures)[0]}"
    seen: set[int] = set()
    targets: list[Any] = [getattr(item, "function", None), getattr(item, "cls", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info is not None else ()):
        targets += [d.func for d in defs if _defined_in_tests(d.func)]
    for target in targets:
        if target is not None:
            names = process_names_used(target, seen)
            if names:
                return f"refers to {', '.join(sorted(names))}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("integration") is None and integration_reason(item):
            item.add_marker(pytest.mark.integration)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection imported (every library, every test module) lives for the whole run: set it
    aside from the cyclic collector (gc.freeze), so that each of its full passes scans what the tests
    make, not the whole heap again."""
    gc.collect()
    gc.freeze()


# A test outside the integration layer that starts a process anyway fails, saying what it
# started: the unit layer (scripts/test.sh --fast) stays free of processes although the marks
# above are inferred.  The hook is process-wide (threads included) and cannot be removed; it only
# records while a test that is not ``integration`` is being set up or run.
_watch: dict[str, Any] = {"on": False, "started": []}
_watch_lock = threading.Lock()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event in _PROCESS_EVENTS and _watch["on"]:
        what = args[1] if event == "subprocess.Popen" and len(args) > 1 else args[:1]
        argv = what if isinstance(what, (list, tuple)) else str(what).split()
        if argv and Path(str(argv[0])).name in _LIBRARY_HELPERS:
            return
        with _watch_lock:
            _watch["started"].append(f"{event} {str(what)[:200]}")


sys.addaudithook(_audit)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    _watch["started"] = []
    _watch["on"] = item.get_closest_marker("integration") is None
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    try:
        result = yield
    finally:
        _watch["on"] = False
        started, _watch["started"] = _watch["started"], []
    if started:  # (a test that failed already reports that failure instead)
        pytest.fail(f"this test started a process ({'; '.join(started[:3])}) but is not marked "
                    "integration: use @pytest.mark.integration, or name the helper that starts it in "
                    "PROCESS_NAMES / INTEGRATION_FIXTURES (tests/conftest.py)", pytrace=False)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    _watch["on"] = False
