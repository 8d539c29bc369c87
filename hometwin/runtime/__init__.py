"""WAMP runtime: generic element service, inverter balancer, clock, router, local launcher.

Autobahn tries to import the optional UBJSON codec (``bjdata``), which was built
against NumPy 1.x and prints a long traceback under NumPy 2 on import.  We never
use UBJSON (msgpack on the wire), so it is blocked before autobahn is imported.
"""

import sys

sys.modules.setdefault("bjdata", None)  # type: ignore[arg-type]
