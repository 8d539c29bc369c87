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

    def __getattr__(self, attr: str) -> Any:  # only called for names not (yet) in our __dict__
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        try:
            return module.__dict__[attr]
        except KeyError:
            return getattr(module, attr)  # a module-level __getattr__ (scipy's lazy submodules)

    def __repr__(self) -> str:
        loaded = "loaded" if "__file__" in self.__dict__ else "not loaded yet"
        return f"<lazy module {self.__name__!r} ({loaded})>"


def lazy_module(name: str) -> types.ModuleType:
    """``name`` (a dotted module path) if imported already, else a proxy that imports it on first use."""
    return sys.modules.get(name) or _LazyModule(name)
