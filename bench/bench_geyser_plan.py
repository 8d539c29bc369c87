"""The Cape Town LP in closed loop with its geyser three ways (issue 21): left to its thermostat with its
heating forecast (the example as shipped), planned with the legionella rule as two LPs (the default of
``geyser:``), and planned with the rule as a MILP.  Solve times and wall time in one run (ratios),
the real City of Cape Town area-1 schedule at stage 2.  Appends to bench/RESULTS.md.

    python bench/bench_geyser_plan.py [--days 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CPT1 = ("loadshedding", "eskom_calendar_schedule_city-of-cape-town-area-1.csv")
WAYS = {
    "thermostat (as shipped)": {},
    "geyser planned, legionella as two LPs": {"geyser": {"legionella_method": "lp"}},
    "geyser planned, legionella MILP": {"geyser": {"legionella_method": "milp"}},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=7)
    args = ap.parse_args()
    from conftest import EXAMPLES, shared
    from hometwin.services.grid.outages import OutageConfig, ScheduleOutages
    from hometwin.studies.compare import run_strategy
    from hometwin.spec import load_home

    h = load_home(EXAMPLES / "cape-town-lp.yaml")
    grid = next(e for e in h.spec.elements if e.kind == "grid")
    grid.config.outages = OutageConfig(schedule=ScheduleOutages(file=str(shared(*CPT1)), stage=2))
    shipped = next(e for e in h.spec.elements if e.kind == "inverter").config.strategy.model_dump()
    rows = {}
    for name, extra in WAYS.items():
        r = run_strategy(h, {**shipped, **extra}, until_s=args.days * 86400, voll_per_kwh=80.0)
        rows[name] = r
        print(f"{name}: solve median {r['solve_median_ms']:.1f} ms (max {r['solve_max_ms']:.0f}), wall {r['wall_s']:.1f} s, "
              f"unserved {r['unserved_kwh']:.3f} kWh, energy cost {r['energy_cost']:.2f} ZAR", flush=True)
    load = os.getloadavg()
    base = rows["thermostat (as shipped)"]
    lines = [f"\n## Geyser in the Cape Town LP (issue 21) — {dt.date.today().isoformat()}\n",
             f"- command: `python bench/bench_geyser_plan.py --days {args.days}` (January 2025, City of Cape Town "
             "area 1 stage 2, 1-min steps, hourly 48 h plans, forecast error)",
             f"- machine: {platform.machine()}, Python {platform.python_version()}, load average {load[0]:.1f} / "
             f"{load[1]:.1f} / {load[2]:.1f} at the end (2 cores shared with other engineers)"]
    for name, r in rows.items():
        lines.append(f"- {name}: solve median **{r['solve_median_ms']:.1f} ms** (max {r['solve_max_ms']:.0f} ms), "
                     f"{r['wall_s']:.1f} s wall ({r['wall_s'] / base['wall_s']:.2f}× the thermostat's); "
                     f"unserved {r['unserved_kwh']:.3f} kWh; energy cost {r['energy_cost']:.2f} ZAR")
    with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
