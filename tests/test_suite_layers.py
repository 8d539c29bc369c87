"""The layers of the test suite (tests/conftest.py, docs/testing.md): what is marked integration,
the guard against unmarked processes, one copy of each helper module, and ``scripts/test.sh --fast``."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import conftest
from conftest import ROOT, process_names_used
from runtime_support import Up

TESTS = ROOT / "tests"
HELPERS = {p.stem for p in TESTS.glob("*.py") if not p.name.startswith("test_")}


def _pure(x: float) -> float:
    return 2 * x


def _starts_the_launcher() -> None:  # never called: read, not run
    Up(None).start()


class _OwnUp(Up):
    """As test_faults_process's OwnUp: a subclass whose base starts the processes."""


def _through_helpers() -> None:
    _starts_the_launcher()


def _in_a_lambda() -> object:
    return lambda: subprocess.run(["true"])


def test_a_test_is_integration_by_what_it_refers_to_through_helpers_and_classes() -> None:
    assert process_names_used(_pure) == set()
    assert process_names_used(_starts_the_launcher) == {"Launcher"}  # runtime_support.Up → hometwin up
    assert process_names_used(_through_helpers) == {"Launcher"}
    assert process_names_used(_OwnUp) == {"Launcher"}
    assert process_names_used(_in_a_lambda) == {"subprocess"}


def test_the_router_and_databases_make_a_test_integration_by_fixture() -> None:
    assert {"router", "pg_server", "pg_url"} <= conftest.INTEGRATION_FIXTURES


def test_a_process_started_outside_the_integration_layer_is_caught() -> None:
    # this test refers to subprocess, so it is integration itself and not watched: watch by hand
    conftest._watch.update(on=True, started=[])
    try:
        subprocess.run(["true"], check=True)
        started = list(conftest._watch["started"])
    finally:
        conftest._watch.update(on=False, started=[])
    assert len(started) == 1 and started[0].startswith("subprocess.Popen") and "true" in started[0], started


def test_helpers_are_imported_by_one_name_only() -> None:
    """``tests.runtime_support`` and ``runtime_support`` would be two modules (two copies of every
    helper and fixture): tests import helpers and conftest by their bare names."""
    bad = []
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{path.name}:{node.lineno}: {n}" for n in names
                    if n.startswith("tests.") or n == "tests"]
    assert not bad, "import helpers by their bare names (from runtime_support import …):\n" + "\n".join(bad)
    assert {"conftest", "runtime_support"} <= HELPERS


def test_the_router_fixture_is_defined_once() -> None:
    """One session router for the run: defined in conftest only, not re-exported by a helper
    (a fixture imported into a module is a fixture of that module: one router per module)."""
    defined = []
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "router" and any(
                    "fixture" in ast.unparse(d) for d in node.decorator_list):
                defined.append(path.name)
            if isinstance(node, ast.ImportFrom) and any(a.name == "router" for a in node.names) \
                    and (node.module or "") in HELPERS:
                defined.append(f"{path.name} imports it")
    assert defined == ["conftest.py"], defined


def test_fast_runs_the_unit_layer_only() -> None:
    out = subprocess.run(["bash", "scripts/test.sh", "--fast", "--collect-only", "-q", "-p", "no:cacheprovider",
                          str(Path(__file__).relative_to(ROOT))],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    listed = [line.split("::")[1] for line in out.stdout.splitlines() if "::" in line]
    assert "test_helpers_are_imported_by_one_name_only" in listed
    assert "test_fast_runs_the_unit_layer_only" not in listed  # this one starts a process: integration
    assert "test_a_process_started_outside_the_integration_layer_is_caught" not in listed
