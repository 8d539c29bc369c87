"""bench/bench_ab.py's import shim: ``hometwin``, ``hometwin.services`` and ``hometwin.operator``
from the tree named in ``$HOMETWIN_AB_TREE`` instead of the checkout the venv installed.

The project is installed editable with ``services/`` mapped to ``hometwin.services`` and
``operator/`` to ``hometwin.operator`` (setup.py); a tree's root on ``sys.path`` would give its
``hometwin`` but the venv's ``services`` (and a top-level ``operator`` that shadows Python's).  So
the three roots are found here, first on ``sys.meta_path``; their submodules follow from their
``__path__``.  Python imports this module at startup from ``$PYTHONPATH``, so every process a
measurement starts (the launcher's fork server, the clock, the router) imports the same tree.
``$HOMETWIN_AB_LOG``: a file to which each process that imports ``hometwin`` adds its pid and the
folder it was taken from (bench_ab.py checks that every one names the side's tree).
"""

from __future__ import annotations

import importlib.util
import os
import sys

ROOTS = {"hometwin": "hometwin", "hometwin.services": "services", "hometwin.operator": "operator"}
TREE = os.environ.get("HOMETWIN_AB_TREE")


class TreeFinder:
    """The three package roots from ``TREE``; anything else is left to the next finder."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> object:
        if name not in ROOTS:
            return None
        folder = os.path.join(TREE, ROOTS[name])
        spec = importlib.util.spec_from_file_location(name, os.path.join(folder, "__init__.py"),
                                                      submodule_search_locations=[folder])
        log = os.environ.get("HOMETWIN_AB_LOG")
        if log and name == "hometwin":
            with open(log, "a") as f:
                f.write(f"{os.getpid()} {folder}\n")
        return spec


if TREE:
    sys.meta_path.insert(0, TreeFinder)
