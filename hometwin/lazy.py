"""Modules imported at their first use, not when the importing module loads.

Validating a home spec builds the union of every element kind's config, so every
process — a TV's service as much as the PV array's — imports every element module.
pvlib and ``scipy.signal`` alone cost ~1 s of CPU per process there, and ``hometwin up``
starts fourteen of them on two cores.  Element modules therefore name their heavy
libraries with :func:`lazy_module`; the import happens in the processes that compute
with them, on the first attribute access.

After that first access the proxy holds the module's attributes in its own
``__dict__``, so later lookups cost what a plain module attribute costs.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _LazyModule(types.ModuleType):
    """Stands for a module until an attribute is asked for; then imports it and copies its namespace."""

    def _loaded(self) -> bool:
        return "__file__" in self.__dict__  # copied from the module by _load

    def _load(self) -> types.ModuleType:
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        return module

    def __getattr__(self, attr: str) -> Any:  # only called for names not (yet) in our __dict__
        module = self._load()
        try:
            return module.__dict__[attr]
        except KeyError:
            return getattr(module, attr)  # a module-level __getattr__ (scipy's lazy submodules)

    def __repr__(self) -> str:
        loaded = "loaded" if self._loaded() else "not loaded yet"
        return f"<lazy module {self.__name__!r} ({loaded})>"


def lazy_module(name: str) -> types.ModuleType:
    """``name`` (a dotted module path) if imported already, else a proxy that imports it on first use."""
    return sys.modules.get(name) or _LazyModule(name)


def preload_for(obj: Any) -> list[str]:
    """Import now the lazy modules ``obj``'s code names, and return their names.

    A service calls this before it joins the realm, so that its first window does not pay
    for pvlib's import (a second or more on a busy machine, which the inverter's packet
    timeout would count as a stale element).  Looked at: the modules of ``obj``'s class
    and its bases, of its attributes' classes (an inverter's strategy), and one step on,
    the ``hometwin`` modules whose functions and classes those modules use (the weather
    uses the sun's).
    """
    seen: set[str] = set()
    loaded: list[str] = []

    def visit(name: str, depth: int) -> None:
        module = sys.modules.get(name)
        if name in seen or module is None or not name.startswith("hometwin"):
            return
        seen.add(name)
        for value in list(vars(module).values()):
            if isinstance(value, _LazyModule):
                if not value._loaded():
                    value._load()
                    loaded.append(value.__name__)
            elif depth and isinstance(getattr(value, "__module__", None), str):
                visit(value.__module__, depth - 1)

    classes = list(type(obj).__mro__)
    for value in vars(obj).values() if hasattr(obj, "__dict__") else ():
        classes += list(type(value).__mro__)
    for cls in classes:
        visit(cls.__module__, 1)
    return loaded
