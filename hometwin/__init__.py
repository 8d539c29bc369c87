"""hometwin: a Kubernetes-native digital twin of a home's energy system.

    >>> import hometwin
    >>> result = hometwin.run("examples/homes/cape-town.yaml")
    >>> result.kpis()["self_sufficiency"]
"""

from __future__ import annotations

from typing import Any

from hometwin._version import __version__
__all__ = ["run", "load_home", "__version__"]


def run(home: Any, window: int | None = None, until_s: int | None = None, progress: Any = None) -> Any:
    """Run a Home (validated model or path to a home.yaml) in-process; returns a Result."""
    from hometwin.engine import run as _run

    return _run(home, window=window, until_s=until_s, progress=progress)


def load_home(path: Any) -> Any:
    """Read and validate a home.yaml (raises SpecError with one line per problem)."""
    from hometwin.spec import load_home as _load

    return _load(path)
