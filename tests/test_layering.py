"""Layering: physics and model code never import the runtime, the bus or the operator.

import-linter cannot see ``hometwin.services``/``hometwin.operator`` (they are mapped
from ``services/`` and ``operator/`` with setuptools package-dir), so this test does
the same job: it parses every project module, follows ``hometwin.*`` imports
transitively (including imports inside functions), and fails if any module of the
model layer can reach a forbidden one.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

ROOTS = {"hometwin": ROOT / "hometwin", "hometwin.services": ROOT / "services", "hometwin.operator": ROOT / "operator"}
MODEL_LAYER = ("hometwin.services", "hometwin.spec", "hometwin.element", "hometwin.ledger", "hometwin.engine",
               "hometwin.window", "hometwin.registry", "hometwin.errors", "hometwin.schedule", "hometwin.units",
               "hometwin.noise", "hometwin.topology", "hometwin.chunks", "hometwin.codec", "hometwin.solar")
FORBIDDEN = ("autobahn", "crossbar", "twisted", "kopf", "kubernetes", "hometwin.runtime", "hometwin.operator")


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for prefix, base in sorted(ROOTS.items(), key=lambda kv: -len(kv[0])):
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mods[".".join([prefix, *parts])] = path
    return mods


@functools.cache  # one parse per module: the closure of every model module reads the same files
def _imports(path: Path, module: str) -> frozenset[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return frozenset(out)


def _closure(start: str, mods: dict[str, Path]) -> dict[str, str]:
    """Every import reachable from ``start`` → the project module that imports it."""
    seen: dict[str, str] = {}
    todo = [start]
    visited: set[str] = set()
    while todo:
        mod = todo.pop()
        if mod in visited or mod not in mods:
            continue
        visited.add(mod)
        for imp in _imports(mods[mod], mod):
            seen.setdefault(imp, mod)
            for candidate in (imp, imp.rpartition(".")[0]):
                if candidate in mods and candidate not in visited:
                    todo.append(candidate)
    return seen


def test_model_layer_never_reaches_runtime_bus_or_operator():
    mods = _modules()
    assert "hometwin.services.battery.model" in mods and "hometwin.engine" in mods
    problems = []
    for mod in sorted(mods):
        if not mod.startswith(MODEL_LAYER):
            continue
        for imp, via in _closure(mod, mods).items():
            if any(imp == f or imp.startswith(f + ".") for f in FORBIDDEN):
                problems.append(f"{mod} reaches {imp} (imported by {via})")
    assert not problems, "\n".join(problems)


def test_the_check_would_catch_a_violation(tmp_path):
    """Guard against a test that cannot fail: a forbidden import is detected."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from autobahn.asyncio.component import Component\n")
    assert "autobahn.asyncio.component" in _imports(bad, "hometwin.services.bad")


def test_models_load_without_bus_libraries():
    """Importing every model in a fresh interpreter pulls in none of autobahn, crossbar, twisted, kopf."""
    code = ("import sys, hometwin.registry as r, hometwin.engine, hometwin.spec; r.all_classes(); "
            "bad=[m for m in ('autobahn','crossbar','twisted','kopf','hometwin.runtime','hometwin.operator') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
