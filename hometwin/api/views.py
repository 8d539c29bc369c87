"""What the API shows of a :class:`hometwin.results.Result`: KPIs with labels and units, power
flows (resampled, arrays of plain numbers), daily energy balance, monthly cost, comparisons.

Every number leaves as a JSON number (NaN and infinities as ``null``), never packed bytes.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from hometwin.kpi_labels import FRACTIONS, KPI_LABELS, kpi_display_unit
from hometwin.results import Result
from hometwin.units import J_PER_KWH

#: Most points of one series in a flows answer (a year at 15 minutes is 35,040).
MAX_POINTS = 50_000


def number(value: Any) -> float | None:
    """A float for JSON: NaN and ±inf become None."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def numbers(values: Iterable[Any]) -> list[float | None]:
    arr = np.asarray(values, dtype=float)
    return [float(v) if math.isfinite(v) else None for v in arr.tolist()]


def kpis(result: Result) -> dict[str, Any]:
    """``{"kpis", "units", "labels"}``; fractions as percentages."""
    currency = result.meta.get("currency", "") or "currency"
    values = result.kpis()
    out: dict[str, float | None] = {}
    for key, value in values.items():
        v = number(value)
        out[key] = v * 100 if v is not None and key in FRACTIONS else v
    units = {k: kpi_display_unit(k, currency) for k in out}
    labels = {k: KPI_LABELS[k].label if k in KPI_LABELS else k for k in out}
    meta = result.meta
    partial = meta.get("partial")
    return {"kpis": out, "units": units, "labels": labels, "currency": meta.get("currency", ""),
            "complete": partial is None, "partial": partial}


def _epoch_ms(index: pd.DatetimeIndex) -> list[int]:
    return (index.asi8 // 1_000_000).tolist() if index.unit == "ns" else \
        [int(t.timestamp() * 1000) for t in index]


def power_frame(result: Result) -> pd.DataFrame:
    """Mean power per step [W]: pv, load, battery (+ discharging onto the bus), grid (+ import),
    ``el.<name>`` (+ onto the bus, − taken), and the SoC (0–1)."""
    f = result.frame
    dt = result.meta["step_s"]
    cols = {"pv": f["pv_ac_j"] / dt, "load": f["load_j"] / dt,
            "battery": (f["battery_discharge_j"] - f["battery_charge_j"]) / dt,
            "grid": (f["grid_import_j"] - f["grid_export_j"]) / dt}
    for c in f.columns:
        if c.startswith("el.") and c.endswith("_j"):
            cols[c[:-2]] = f[c] / dt
    cols["soc"] = f["soc"]
    return pd.DataFrame(cols, index=f.index)


def flows(result: Result, every_s: int | None) -> dict[str, Any]:
    """Power flows as mean power per ``every_s`` seconds (None: the step, or coarser so that no
    series has more than :data:`MAX_POINTS` points)."""
    frame = power_frame(result)
    step = int(result.meta["step_s"])
    n = len(frame)
    if every_s is None:
        every_s = step * max(1, math.ceil(n / MAX_POINTS))
    if every_s < step:
        raise ValueError(f"every: must be at least the run's step of {step} s (got {every_s} s)")
    if n and n * step / every_s > MAX_POINTS:
        raise ValueError(f"every: at most {MAX_POINTS} points per series; this run of {n * step} s needs "
                         f"every >= {math.ceil(n * step / MAX_POINTS)} s (got {every_s} s)")
    if every_s != step and n:
        frame = frame.resample(f"{every_s}s", origin="start").mean()
    power = {c: numbers(frame[c]) for c in frame.columns if c != "soc"}
    return {"time": _epoch_ms(frame.index), "timezone": result.meta["timezone"], "every_s": every_s,
            "power_w": power, "soc": numbers(frame["soc"])}


def daily(result: Result) -> dict[str, Any]:
    """Energy per local day [kWh]: where it came from (PV's AC output, battery, grid) and where it
    went (loads, battery, grid, conversion losses after the PV inverter); the two sides are equal."""
    f = result.frame.copy()
    f.index = f.index.tz_convert(result.meta["timezone"])
    days = f.groupby(f.index.date)
    sums = days.sum(numeric_only=True) / J_PER_KWH
    sources = {"pv": sums["pv_ac_j"], "battery": sums["battery_discharge_j"], "grid": sums["grid_import_j"]}
    # the ledger's losses include the PV's own DC→AC conversion; "pv" here is AC, so only the
    # losses after it (the battery's conversion) are a use of that energy
    uses = {"load": sums["load_j"], "battery": sums["battery_charge_j"], "grid": sums["grid_export_j"],
            "losses": sums["loss_j"] - (sums["pv_dc_j"] - sums["pv_ac_j"])}
    return {"days": [d.isoformat() for d in sums.index], "timezone": result.meta["timezone"], "unit": "kWh",
            "sources": {k: numbers(v) for k, v in sources.items()}, "uses": {k: numbers(v) for k, v in uses.items()},
            "unserved": numbers(sums["unserved_j"])}


def monthly(result: Result) -> dict[str, Any]:
    """Cost per local calendar month: energy cost, fixed charges (per local day), total."""
    f = result.frame
    local = f.index.tz_convert(result.meta["timezone"])
    months = local.strftime("%Y-%m")
    energy = f["cost"].groupby(months).sum()
    n_days = pd.Series(local.normalize(), index=months).groupby(level=0).nunique()
    fixed = n_days * float(result.meta.get("fixed_daily_charge", 0.0))
    return {"months": list(energy.index), "currency": result.meta.get("currency", ""),
            "energy_cost": numbers(energy), "fixed_charges": numbers(fixed.reindex(energy.index)),
            "total_cost": numbers(energy + fixed.reindex(energy.index)),
            "import_kwh": numbers(f["grid_import_j"].groupby(months).sum() / J_PER_KWH),
            "export_kwh": numbers(f["grid_export_j"].groupby(months).sum() / J_PER_KWH)}


def compare(named: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """KPI rows of several runs (``(id, kpis(result))``) with the difference of each to the
    first in % of the first (None where the first is 0 or missing)."""
    first = named[0][1]
    rows = []
    for key in first["kpis"]:
        values = [k["kpis"].get(key) for _, k in named]
        base = values[0]
        diff = [None if base in (None, 0) or v is None else (v - base) / abs(base) * 100 for v in values]
        diff[0] = None
        rows.append({"kpi": key, "label": first["labels"][key], "unit": first["units"][key], "values": values,
                     "diff_pct": diff})
    return {"runs": [i for i, _ in named], "rows": rows}
