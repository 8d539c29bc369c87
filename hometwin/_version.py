"""The package's version, in a module of its own: modules inside hometwin read it from here, not
from ``hometwin`` itself, whose ``run`` imports the engine (which imports them: an import cycle)."""

__version__ = "0.1.0"
