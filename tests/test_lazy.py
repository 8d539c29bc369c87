"""Heavy libraries load where they are used: validating a spec imports neither pvlib nor scipy's solvers.

Every service validates the whole home (every kind's config), so an eager ``import pvlib``
in the sun's module cost every process of ``hometwin up`` — the TV's too — about a second of
CPU at start (``hometwin.lazy``).  Checked in a fresh interpreter, so that the other tests'
imports do not count.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hometwin.lazy import lazy_module
from runtime_support import CAPE_TOWN, ROOT

TRONDHEIM = ROOT / "examples" / "homes" / "trondheim.yaml"

HEAVY = ("pvlib", "scipy.signal", "scipy.special", "scipy.optimize", "scipy.sparse", "scipy.linalg")


def test_validating_a_home_and_building_a_tv_leave_the_heavy_libraries_unloaded() -> None:
    code = textwrap.dedent(f"""
        import sys
        from hometwin.spec import load_home, home_context
        from hometwin.registry import all_classes, element_class
        home = load_home({str(CAPE_TOWN)!r})
        all_classes()
        tv = next(e for e in home.spec.elements if e.name == "tv")
        element_class("tv")("tv", tv.config, home_context(home, 86400))
        print(",".join(m for m in {HEAVY!r} if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported at spec validation: {out.stdout.strip()}"


def test_a_lazy_module_is_the_module_once_used() -> None:
    import colorsys  # a small stdlib module, not imported by anything here at start

    del sys.modules["colorsys"]
    lazy = lazy_module("colorsys")
    assert "colorsys" not in sys.modules and "not loaded yet" in repr(lazy)
    assert lazy.rgb_to_hsv(1.0, 0.0, 0.0) == colorsys.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert "colorsys" in sys.modules and lazy.__dict__["rgb_to_hsv"] is sys.modules["colorsys"].rgb_to_hsv
    assert lazy_module("colorsys") is sys.modules["colorsys"]  # imported already: the module itself
    try:
        lazy.no_such_function
    except AttributeError as exc:
        assert "no_such_function" in str(exc)
    else:
        raise AssertionError("a missing attribute must raise AttributeError")


@pytest.mark.parametrize(("home", "kind", "name", "needs_pvlib"),
                         [(CAPE_TOWN, "tv", "tv", False), (CAPE_TOWN, "geyser", "geyser", False),
                          (CAPE_TOWN, "pv", "roof", True), (CAPE_TOWN, "weather", "weather", True),
                          (CAPE_TOWN, "inverter", "inverter", True),
                          (TRONDHEIM, "heat_pump", "heat-pump", True)])  # its building's solar gains
def test_a_service_preloads_what_its_element_computes_with(home: Path, kind: str, name: str, needs_pvlib: bool) -> None:
    """``hometwin service`` imports pvlib before joining where its element computes with it (the first
    window must not pay for the import: the inverter's packet timeout would call the element stale),
    and only there."""
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from hometwin.runtime.cli import _home_and_element
        _home_and_element(Path({str(home)!r}), {name!r}, {kind!r}, None, None)
        print("pvlib" in sys.modules and "__file__" in vars(sys.modules["pvlib"]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(needs_pvlib)
