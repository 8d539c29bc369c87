"""In-process speed: the Cape Town home for a year at 1-minute steps vs pvlib's ModelChain.

Both run in this one process, one after the other, on the same machine; the ratio is
what counts (machines here are noisy).  pvlib's ModelChain (PVWatts) is run over the
same 525 600 timestamps with clear-sky weather for the same location — the cost of
just the PV physics, which the whole home (sun, stochastic weather, PV, battery,
inverter, grid, 8 loads, ledger) is compared against.

    python bench/bench_core.py [--repeat 3] [--record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hometwin.engine import Engine  # noqa: E402
from hometwin.spec import home_context, load_home  # noqa: E402


def time_home(path: Path, until_s: int | None = None) -> tuple[float, dict]:
    """Wall time of the home's run (its whole span, or up to ``until_s``) and its KPIs."""
    home = load_home(path)
    t0 = time.perf_counter()
    result = Engine(home, until_s=until_s).run()
    return time.perf_counter() - t0, result.kpis()


def time_modelchain(path: Path, until_s: int | None = None) -> float:
    home = load_home(path)
    ctx = home_context(home, until_s)
    pv = next(e.config for e in home.spec.elements if e.kind == "pv")
    times = ctx.times(0, ctx.n_steps)
    t0 = time.perf_counter()
    loc = pvlib.location.Location(ctx.latitude, ctx.longitude, tz="UTC", altitude=ctx.altitude_m)
    weather = loc.get_clearsky(times)  # Ineichen: the same clear-sky model the sun element uses
    weather["temp_air"] = 20.0
    weather["wind_speed"] = 1.0
    system = pvlib.pvsystem.PVSystem(
        surface_tilt=pv.tilt_deg, surface_azimuth=pv.azimuth_deg,
        module_parameters={"pdc0": pv.capacity_kwp * 1000, "gamma_pdc": -0.0037},
        inverter_parameters={"pdc0": pv.capacity_kwp * 1000 / 0.96},
        temperature_model_parameters=pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_glass"],
        losses_parameters={})
    mc = pvlib.modelchain.ModelChain(system, loc, aoi_model="physical", spectral_model="no_loss",
                                     losses_model="pvwatts")
    mc.run_model(weather)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=str(ROOT / "examples/homes/cape-town.yaml"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--record", action="store_true", help="append the figures to bench/RESULTS.md")
    args = ap.parse_args()
    path = Path(args.home)
    home_s, mc_s = [], []
    for _ in range(args.repeat):
        s, kpis = time_home(path)
        home_s.append(s)
        mc_s.append(time_modelchain(path))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    h, m = float(np.median(home_s)), float(np.median(mc_s))
    lines = [
        f"home year ({path.name}, 525 600 steps): median {h:.2f} s of {args.repeat} (min {min(home_s):.2f} s)",
        f"pvlib ModelChain (PVWatts, same 525 600 steps): median {m:.2f} s",
        f"ratio home / ModelChain: {h / m:.2f}",
        f"peak RSS of the process: {peak_mib:.0f} MiB",
    ]
    print("\n".join(lines))
    if args.record:
        stamp = dt.date.today().isoformat()
        machine = f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}"
        block = (f"\n### In-process year — {stamp}\n\n`python bench/bench_core.py --record` on {machine}\n\n"
                 + "\n".join(f"- {line}" for line in lines) + "\n")
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write(block)


if __name__ == "__main__":
    main()
