"""bench/bench_ab.py's import shim: each side of the A/B imports its own tree, in every process.

The project is installed editable with ``services/`` as ``hometwin.services`` and ``operator/`` as
``hometwin.operator``; bench/ab_site/sitecustomize.py must give all three from ``$HOMETWIN_AB_TREE``
(not from the checkout the venv installed), in a process and in the processes it starts, and must
not let the tree's ``operator/`` shadow Python's own ``operator`` module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SHIM = Path(__file__).resolve().parents[1] / "bench" / "ab_site"

REPORT = """
import json, operator, sys
import hometwin, hometwin.services, hometwin.operator, hometwin.services.inside
print(json.dumps({"hometwin": hometwin.__file__, "services": list(hometwin.services.__path__),
                  "operator": list(hometwin.operator.__path__), "inside": hometwin.services.inside.WHERE,
                  "stdlib_operator": operator.eq(2, 2)}))
"""


def fake_tree(root: Path, tag: str) -> Path:
    for pkg in ("hometwin", "services", "operator"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text(f"TAG = {tag!r}\n")
    (root / "services" / "inside.py").write_text(f"WHERE = {tag!r}\n")
    return root


def test_a_side_imports_its_own_tree_in_its_children_too(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path / "base", "base")
    log = tmp_path / "imports.log"
    env = dict(os.environ, PYTHONPATH=str(SHIM), HOMETWIN_AB_TREE=str(tree), HOMETWIN_AB_LOG=str(log))
    # the child reports, then starts a grandchild that reports (the environment is inherited)
    code = REPORT + "import subprocess; subprocess.run([sys.executable, '-c', %r], check=True)\n" % REPORT
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True, capture_output=True,
                         text=True).stdout.splitlines()
    want = {"hometwin": str(tree / "hometwin" / "__init__.py"), "services": [str(tree / "services")],
            "operator": [str(tree / "operator")], "inside": "base", "stdlib_operator": True}
    assert [json.loads(line) for line in out] == [want, want]
    pids = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert len(pids) == 2 and len({p for p, _ in pids}) == 2
    assert {folder for _, folder in pids} == {str(tree / "hometwin")}


def test_without_a_tree_the_shim_changes_nothing(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(SHIM))
    env.pop("HOMETWIN_AB_TREE", None)
    out = subprocess.run([sys.executable, "-c", "import hometwin.services; print(hometwin.services.__path__[0])"],
                         cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert out == str(Path(__file__).resolve().parents[1] / "services")
