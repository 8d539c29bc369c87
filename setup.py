"""Package discovery with the DESIGN.md mapping.

``services/`` and ``operator/`` are installed as ``hometwin.services`` and
``hometwin.operator``; ``operator/`` must never become a top-level package (it
would shadow Python's own ``operator`` module).  Metadata lives in pyproject.toml.
"""
from setuptools import find_packages, setup

ROOTS = {"hometwin": "hometwin", "hometwin.services": "services", "hometwin.operator": "operator"}


def _packages() -> list[str]:
    found = []
    for name, path in ROOTS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_packages(path)]
    return found


setup(packages=_packages(), package_dir=ROOTS)
