"""Results: a tidy time-indexed table, KPIs, Parquet/CSV export and an HTML report (:mod:`hometwin.report`).

The frame has one row per step (UTC index) and columns in joules per step
(``*_j``), SoC (0–1), prices (currency/kWh), cost (currency) and one
``el.<name>_j`` column per element (signed: + onto the bus, − off it).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from hometwin.element import HomeContext, Role
from hometwin.registry import element_class
from hometwin.report import render_report  # noqa: F401  (the page: hometwin/report.py; kept importable here)
from hometwin.units import J_PER_KWH

#: The home-level flows of a settled step, in joules per step (``*_j``) but for the grid's
#: availability (0/1), the prices (currency/kWh) and the cost (currency): the one list of them —
#: a window's ``flows`` (in-process and its wire form, ``Flows``; the runtime's ``FLOW_KEYS`` is
#: this list), the columns of a result's frame and of the database's ``flows``.
FLOW_COLUMNS = (
    "pv_offered_j", "pv_dc_j", "pv_ac_j", "curtailed_j", "load_j", "unserved_j",
    "battery_charge_j", "battery_discharge_j", "grid_import_j", "grid_export_j",
    "loss_j", "grid_available", "price_import", "price_export", "cost",
)


@dataclass(frozen=True)
class RunInfo:
    """What a run's results need besides its settled windows: the run's clock and a few figures of
    the home — data only, read from the spec (:meth:`of_spec`) or from an in-process engine's
    elements (:meth:`of_engine`), no element model built for it.  So ``hometwin up``'s recorder
    and ``hometwin record``, which read only the ``Flows`` messages, give the same results and
    KPIs as ``hometwin run``."""

    ctx: HomeContext  # the run's steps: name, start, step_s, n_steps, timezone
    kinds: dict[str, str]  # element → kind, the elements taking part (spec: the enabled ones)
    currency: str = ""  # the grid's tariff
    fixed_daily_charge: float = 0.0  # the grid's tariff [currency per local day]
    battery_capacity_kwh: float = 0.0  # the (first) storage's
    pv_kwp: float = 0.0  # Σ the sources' capacity_kwp

    @classmethod
    def of_elements(cls, ctx: HomeContext, elements: Iterable[tuple[str, str, Role, Any]]) -> "RunInfo":
        """From ``(name, kind, role, config)`` of each element."""
        elements = list(elements)
        grid = next((cfg for _, _, role, cfg in elements if role == Role.grid), None)
        battery = next((cfg for _, _, role, cfg in elements if role == Role.storage), None)
        return cls(ctx=ctx, kinds={name: kind for name, kind, _, _ in elements},
                   currency=getattr(grid, "currency", "") if grid is not None else "",
                   fixed_daily_charge=float(getattr(grid, "fixed_daily_charge", 0.0)) if grid is not None else 0.0,
                   battery_capacity_kwh=battery.capacity_kwh if battery is not None else 0.0,
                   pv_kwp=float(sum(getattr(cfg, "capacity_kwp", 0.0) for _, _, role, cfg in elements
                                    if role == Role.source)))

    @classmethod
    def of_spec(cls, home: Any, ctx: HomeContext) -> "RunInfo":
        """The enabled elements of a home's spec: kind, config, and the kind's role (a class
        attribute of its model, :func:`hometwin.registry.element_class`; none is built)."""
        return cls.of_elements(ctx, ((el.name, el.kind, element_class(el.kind).role, el.config)
                                     for el in home.spec.elements if el.enabled))

    @classmethod
    def of_engine(cls, engine: Any) -> "RunInfo":
        """An in-process engine's elements as they are now (elements may have joined or left)."""
        return cls.of_elements(engine.ctx, ((n, e.kind, e.role, e.config) for n, e in engine.elements.items()))

    def meta(self, roles: Mapping[str, str], windows: int = 0, settled_early: int = 0,
             max_residual_j: float = 0.0) -> dict[str, Any]:
        """A :class:`Result`'s ``meta``, with what the recorder counted (``roles``: of the elements
        served in the run)."""
        ctx = self.ctx
        return {
            "home": ctx.name, "start": ctx.start.isoformat(), "step_s": ctx.step_s,
            "n_steps": ctx.n_steps, "timezone": ctx.timezone,
            "currency": self.currency, "fixed_daily_charge": self.fixed_daily_charge,
            "battery_capacity_kwh": self.battery_capacity_kwh,
            "pv_kwp": self.pv_kwp, "roles": dict(roles), "windows": windows,
            "windows_settled_early": settled_early, "max_ledger_residual_j": max_residual_j,
            "elements": dict(self.kinds),
        }


class Recorder:
    """Collects every settled window into preallocated arrays: what it reads of a window is the
    wire form's fields (a ``Flows`` message: ``i0``, ``n``, ``k``, ``flows``, ``soc``, ``served``,
    ``roles``, ``max_residual_j``), which a :class:`hometwin.window.WindowRecord` has as well.

    ``run``: the run's :class:`RunInfo` (``hometwin up``: from the spec), or an in-process
    :class:`hometwin.engine.Engine`, whose :meth:`RunInfo.of_engine` is taken when the result is
    (its elements may join and leave during the run)."""

    def __init__(self, run: Any):
        self.info: RunInfo | None = run if isinstance(run, RunInfo) else None
        self._engine = None if isinstance(run, RunInfo) else run
        self.ctx: HomeContext = run.ctx
        n = self.ctx.n_steps
        self.cols = {c: np.zeros(n) for c in FLOW_COLUMNS}
        self.soc = np.full(n, np.nan)
        self.elements: dict[str, np.ndarray] = {}
        self.roles: dict[str, str] = {}
        self.windows = 0
        self.settled_early = 0
        self.max_residual_j = 0.0  # the ledger's largest residual in the windows recorded

    def add(self, rec: Any) -> None:
        """A settled window: a ``Flows`` message or a :class:`hometwin.window.WindowRecord`."""
        i0, m = rec.i0, rec.k + 1
        s = slice(i0, i0 + m)
        for c in FLOW_COLUMNS:
            self.cols[c][s] = rec.flows[c]
        if rec.soc is not None:
            self.soc[s] = rec.soc
        for name, arr in rec.served.items():
            if name not in self.elements:
                self.elements[name] = np.zeros(len(self.soc))
                role = rec.roles.get(name, "load")
                self.roles[name] = getattr(role, "value", role)  # a Role in-process, its value on the wire
            self.elements[name][s] = arr
        self.max_residual_j = max(self.max_residual_j, rec.max_residual_j)
        self.windows += 1
        self.settled_early += int(m < rec.n)

    def run_info(self) -> RunInfo:
        return self.info if self.info is not None else RunInfo.of_engine(self._engine)

    def result(self, wall_s: float = 0.0) -> "Result":
        ctx = self.ctx
        index = ctx.times(0, ctx.n_steps)
        data: dict[str, np.ndarray] = dict(self.cols)
        data["soc"] = self.soc
        for name, arr in self.elements.items():
            data[f"el.{name}_j"] = arr
        frame = pd.DataFrame(data, index=index)
        frame.index.name = "time"
        meta = self.run_info().meta(self.roles, self.windows, self.settled_early, self.max_residual_j)
        meta["wall_s"] = wall_s
        return Result(frame=frame, meta=meta)


@dataclass
class Result:
    """A run's per-step table and metadata; :meth:`kpis` derives the headline figures."""

    frame: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    #: accepted control actions (``ControlEvent``s: set, on/off, pause, speed …), in order
    events: list[dict[str, Any]] = field(default_factory=list)

    def kpis(self) -> dict[str, float]:
        """Energy totals (kWh), cost, self-consumption, autarky, unserved, outages, cycles, yield."""
        f, m = self.frame, self.meta
        tot = {c: float(f[c].sum()) / J_PER_KWH for c in FLOW_COLUMNS if c.endswith("_j")}
        step_h = m["step_s"] / 3600.0
        local_days = f.index.tz_convert(m["timezone"]).normalize().unique()
        outage = f["grid_available"].to_numpy() < 0.5
        ridden = outage & (f["unserved_j"].to_numpy() <= 1e-9)
        pv_ac = tot["pv_ac_j"]
        load = tot["load_j"]
        cap = m.get("battery_capacity_kwh") or 0.0
        out = {
            "pv_kwh": pv_ac,
            "pv_dc_kwh": tot["pv_dc_j"],
            "curtailed_kwh": tot["curtailed_j"],
            "load_kwh": load,
            "unserved_kwh": tot["unserved_j"],
            "grid_import_kwh": tot["grid_import_j"],
            "grid_export_kwh": tot["grid_export_j"],
            "battery_charge_kwh": tot["battery_charge_j"],
            "battery_discharge_kwh": tot["battery_discharge_j"],
            "losses_kwh": tot["loss_j"],
            "energy_cost": float(f["cost"].sum()),
            "fixed_charges": m.get("fixed_daily_charge", 0.0) * len(local_days),
            "self_consumption": (pv_ac - tot["grid_export_j"]) / pv_ac if pv_ac > 0 else float("nan"),
            "self_sufficiency": 1.0 - tot["grid_import_j"] / load if load > 0 else float("nan"),
            "outage_hours": float(outage.sum() * step_h),
            "outage_hours_ridden_through": float(ridden.sum() * step_h),
            "battery_cycles": (tot["battery_charge_j"] + tot["battery_discharge_j"]) / (2 * cap) if cap else 0.0,
            "pv_yield_kwh_per_kwp": pv_ac / m["pv_kwp"] if m.get("pv_kwp") else float("nan"),
            "max_ledger_residual_j": m.get("max_ledger_residual_j", 0.0),
        }
        out["total_cost"] = out["energy_cost"] + out["fixed_charges"]
        return out

    def element_energy_kwh(self) -> dict[str, float]:
        """Net energy per element over the run [kWh] (+ delivered onto the bus, − taken)."""
        return {c[3:-2]: float(self.frame[c].sum()) / J_PER_KWH for c in self.frame.columns if c.startswith("el.")}

    def device_costs(self) -> pd.DataFrame:
        """Energy and cost per load over the run: one row per element that takes energy from the bus.

        ``energy_kwh``: what the element was served [kWh]; ``cost``: Σ over steps of that step's
        energy × the step's import price [currency] — the price of the energy at the moment it was
        used, whether the grid, the PV or the battery delivered it (a kWh of PV or from the battery is
        not free: it could have been exported or kept for later).  It does not depend on how the
        battery was dispatched, so a device's cost compares across strategies; the device costs do
        not add up to the bill (``energy_cost``), which nets export and counts only grid import.
        ``share`` is the element's part of the loads' total energy (0–1)."""
        f = self.frame
        roles = self.meta.get("roles", {})
        price = f["price_import"].to_numpy()
        rows = {}
        for name, role in roles.items():
            col = f"el.{name}_j"
            if role != "load" or col not in f:
                continue
            e = np.maximum(-f[col].to_numpy(), 0.0) / J_PER_KWH
            rows[name] = {"energy_kwh": float(e.sum()), "cost": float(np.dot(e, price))}
        out = pd.DataFrame.from_dict(rows, orient="index", columns=["energy_kwh", "cost"])
        total = out["energy_kwh"].sum()
        out["share"] = out["energy_kwh"] / total if total > 0 else 0.0
        out.index.name = "element"
        return out.sort_values("energy_kwh", ascending=False)

    def power_w(self) -> pd.DataFrame:
        """The ``*_j`` columns as mean power per step [W]."""
        cols = [c for c in self.frame.columns if c.endswith("_j")]
        out = self.frame[cols] / self.meta["step_s"]
        out.columns = [c[:-2] + "_w" for c in cols]
        return out

    def partial(self, steps: int, steps_asked: int, why: str) -> "Result":
        """The first ``steps`` steps of this run, its ``meta`` saying that the run is partial
        (``complete: false``, ``partial: {steps_settled, steps_asked, why}``)."""
        steps = min(int(steps), len(self.frame))
        return Result(frame=self.frame.iloc[:steps].copy(),
                      meta=dict(self.meta, n_steps=steps, complete=False,
                                partial={"steps_settled": steps, "steps_asked": int(steps_asked), "why": why}),
                      events=list(self.events))

    # -- export ----------------------------------------------------------------------------------
    def write(self, out_dir: str | Path, report: bool = False, formats: tuple[str, ...] = ("parquet", "csv")) -> dict[str, Path]:
        """Write flows (Parquet and CSV), KPIs (JSON) and optionally the HTML report.

        All or nothing, as far as a file system allows: every file is written to a temporary
        file beside it first, and only once all of them are complete are they renamed into
        place (``os.replace``, atomic).  A failure on the way (a full disk) leaves the files that
        were there before — a checkpoint's (:class:`Checkpointer`) — whole, and raises."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        writers: dict[str, tuple[Path, Any]] = {}
        if "parquet" in formats:
            writers["parquet"] = (out / "flows.parquet", lambda tmp: self.frame.to_parquet(tmp))
        if "csv" in formats:
            def csv(tmp: Path) -> None:
                import pyarrow as pa
                import pyarrow.csv as pacsv

                pacsv.write_csv(pa.Table.from_pandas(self.frame.reset_index(), preserve_index=False), tmp)

            writers["csv"] = (out / "flows.csv", csv)
        kpis = json.dumps({"meta": _jsonable(self.meta), "kpis": _jsonable(self.kpis()),
                           "elements_kwh": self.element_energy_kwh()}, indent=2)
        writers["kpis"] = (out / "kpis.json", lambda tmp: tmp.write_text(kpis))
        if self.events:
            events = json.dumps([_jsonable(e) for e in self.events], indent=2)
            writers["events"] = (out / "events.json", lambda tmp: tmp.write_text(events))
        if report:
            html = render_report(self)
            writers["report"] = (out / "report.html", lambda tmp: tmp.write_text(html))
        temps: list[Path] = []
        try:
            for path, write in writers.values():
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                temps.append(tmp)
                write(tmp)
            for tmp, (path, _) in zip(temps, writers.values()):
                os.replace(tmp, path)
        finally:
            for tmp in temps:
                tmp.unlink(missing_ok=True)
        return {key: path for key, (path, _) in writers.items()}


class OutputNotWritable(OSError):
    """The output folder cannot take the results (checked before a run starts)."""


def check_writable(out_dir: str | Path) -> Path:
    """Make sure ``out_dir`` exists (created if need be) and a file can be written there, before a
    run starts: a run whose results cannot be written is refused, not computed and lost.  Raises
    :class:`OutputNotWritable` naming the folder and the reason."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".hometwin-write-check-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputNotWritable(f"cannot write results to {out}: {exc.strerror or exc}") from None
    return out


#: A checkpoint is written at most this often [s] …
CHECKPOINT_MIN_S = 30.0
#: … and spaced so that writing takes at most this share of the run's time.
CHECKPOINT_SHARE = 0.05


class Checkpointer:
    """The results so far, written every so often while a run goes on (the very files of the
    end, with ``meta.partial`` saying how far they reach), so that a failure late in a run —
    the process killed, a full disk when the final files are written — leaves what was settled
    until the last checkpoint instead of nothing.  A checkpoint is due :data:`CHECKPOINT_MIN_S`
    after the last one, and later when writing one took long (:data:`CHECKPOINT_SHARE`); one
    that cannot be written is reported (:attr:`error`) and the run goes on."""

    def __init__(self, out_dir: str | Path, min_interval_s: float | None = None, share: float | None = None):
        self.out = Path(out_dir)
        self.min_interval_s = CHECKPOINT_MIN_S if min_interval_s is None else min_interval_s
        self.share = CHECKPOINT_SHARE if share is None else share
        self.last = time.monotonic()
        self.spent_s = 0.0  # how long the last checkpoint took
        self.steps = 0  # steps in the last checkpoint written
        self.error: str | None = None

    def due(self) -> bool:
        return time.monotonic() - self.last >= max(self.min_interval_s, self.spent_s / self.share)

    def write(self, result: Result) -> bool:
        t0 = time.monotonic()
        try:
            result.write(self.out)
        except Exception as exc:  # a checkpoint is a precaution: the run goes on
            self.error = f"{type(exc).__name__}: {exc}"
            return False
        finally:
            self.last = time.monotonic()
            self.spent_s = self.last - t0
        self.steps, self.error = len(result.frame), None
        return True


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and not np.isfinite(v):
            out[k] = None
        elif isinstance(v, (np.floating, np.integer)):
            out[k] = v.item()
        elif isinstance(v, dict):
            out[k] = _jsonable(v)
        else:
            out[k] = v
    return out

