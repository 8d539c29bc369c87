"""The SmartHjem thesis's price-weight experiment (issue 21), on the shipped thesis house.

The thesis (NTNU 2014): with a higher price weight one day cost 30.96 kr instead of 32.88 kr
(−5.8 %), at some loss of comfort.  Here: ``examples/homes/smarthjem.yaml`` (its 4 kW panel
heaters, its weekly presence calendar, its NO3 tariff: EUR/MWh × 11.5 NOK/EUR + 0.45 NOK/kWh grid
fee and taxes) on one cold winter weekday of real NO3 day-ahead prices, run in the engine (1-min
steps, the project's Trondheim weather) under the thesis MPC (``heating_qp``, 5-min steps, 8 h
horizon, perfect forecast) at two price weights R, with the thermostat and the LP heating MPC
(two comfort weights) beside it.  Appends to bench/RESULTS.md.

    python bench/bench_thesis.py [--day 2026-01-06] [--r-low 10] [--r-high 100] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HOMETWIN_DATA_ROOT", str(ROOT.parent / "shared" / "data"))


def smarthjem_day(day: str, warmup_days: int = 0):
    """The example home from ``day − warmup_days`` for ``warmup_days + 1`` days (it starts at 18 °C)."""
    from hometwin.spec import load_home

    home = load_home(ROOT / "examples" / "homes" / "smarthjem.yaml")
    start = (pd.Timestamp(day) - pd.Timedelta(days=warmup_days)).to_pydatetime()
    clock = home.spec.clock.model_copy(update={"start": start, "duration": f"{warmup_days + 1}d"})
    return home.model_copy(update={"spec": home.spec.model_copy(update={"clock": clock})})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--day", default="2026-01-06", help="a winter weekday with real NO3 prices")
    ap.add_argument("--r-low", type=float, default=10.0)
    ap.add_argument("--r-high", type=float, default=100.0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from hometwin.studies.compare import run_strategy

    home = smarthjem_day(args.day, warmup_days=0)
    runs = {
        "thermostat": "thermostat",
        f"thesis MPC, R = {args.r_low:g}": {"type": "heating_qp", "forecast": {"perfect": True}, "weight_r": args.r_low},
        f"thesis MPC, R = {args.r_high:g}": {"type": "heating_qp", "forecast": {"perfect": True}, "weight_r": args.r_high},
        "LP heating MPC, 5 NOK/K·h": {"type": "heating_mpc", "forecast": {"perfect": True}, "comfort_weight_per_kh": 5.0},
        "LP heating MPC, 0.5 NOK/K·h": {"type": "heating_mpc", "forecast": {"perfect": True}, "comfort_weight_per_kh": 0.5},
    }
    rows = {}
    for name, spec in runs.items():
        r = run_strategy(home, spec)
        kwh = -float(r["result"].frame["el.panel-heaters_j"].sum()) / 3.6e6
        rows[name] = {"cost": r["energy_cost"], "kh": r["comfort_violation_kh"], "kwh": kwh,
                      "solve": r.get("solve_median_ms", 0.0), "wall": r["wall_s"]}
        print(f"{name:30s} {r['energy_cost']:8.2f} NOK  {r['comfort_violation_kh']:6.2f} K·h  {kwh:6.1f} kWh  "
              f"solve median {r.get('solve_median_ms', 0.0):5.1f} ms  {r['wall_s']:5.1f} s", flush=True)
    lo, hi = rows[f"thesis MPC, R = {args.r_low:g}"], rows[f"thesis MPC, R = {args.r_high:g}"]
    change = hi["cost"] / lo["cost"] - 1
    print(f"price weight R {args.r_low:g} → {args.r_high:g}: {lo['cost']:.2f} → {hi['cost']:.2f} NOK ({change:+.1%}), "
          f"comfort lost {lo['kh']:.2f} → {hi['kh']:.2f} K·h (thesis: 32.88 → 30.96 kr, −5.8 %)")
    if args.no_write:
        return
    load = os.getloadavg()
    lines = [f"\n## Thesis price-weight experiment (issue 21) — {dt.date.today().isoformat()}\n",
             f"- command: `python bench/bench_thesis.py --day {args.day} --r-low {args.r_low:g} --r-high {args.r_high:g}`",
             f"- load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (2 cores shared with other engineers)",
             f"- `examples/homes/smarthjem.yaml` on {args.day} (local day, 1-min steps, the project's Trondheim weather), "
             "real NO3 day-ahead prices × 11.5 NOK/EUR + 0.45 NOK/kWh (the example's tariff), its weekly calendar; "
             "energy cost = the whole house (300 W base load included) for the day\n",
             "| strategy | energy cost [NOK] | comfort violation [K·h] | heater energy [kWh] | solve median [ms] | wall [s] |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['cost']:.2f} | {r['kh']:.2f} | {r['kwh']:.1f} | {r['solve']:.1f} | {r['wall']:.1f} |")
    lines.append(f"\nPrice weight R {args.r_low:g} → {args.r_high:g}: **{change:+.1%}** cost "
                 f"({lo['cost']:.2f} → {hi['cost']:.2f} NOK), comfort violation {lo['kh']:.2f} → {hi['kh']:.2f} K·h "
                 "(thesis: 32.88 → 30.96 kr, −5.8 %, \"at some loss of comfort\").\n")
    with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
