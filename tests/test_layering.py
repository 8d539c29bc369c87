"""Physics and model code never import the runtime, the bus or the operator (import-linter)."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import ROOT


def test_import_linter_contract_holds():
    exe = shutil.which("lint-imports") or str(ROOT / ".venv" / "bin" / "lint-imports")
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout or "kept" in proc.stdout


def test_models_load_without_bus_libraries():
    """Importing every model in a fresh interpreter pulls in none of autobahn, crossbar, twisted, kopf."""
    code = ("import sys, hometwin.registry as r, hometwin.engine, hometwin.spec; r.all_classes(); "
            "bad=[m for m in ('autobahn','crossbar','twisted','kopf','hometwin.runtime','hometwin.operator') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
