"""Deferrable appliances: move each smart appliance's upcoming starts to the cheapest allowed start.

At every replan the strategy asks each smart appliance on the roster
(``smart: true``, the ``upcoming_starts``/``defer_to`` hook of
:mod:`hometwin.services.appliances.stochastic`) for the cycles that start
within its look-ahead, prices every allowed start of each cycle on the
strategy's own **forecast** (never the true future unless the strategy is the
perfect-foresight reference or its forecast says ``perfect``), and moves the
cycle to the cheapest one with ``defer_to``:

- allowed starts: the drawn start (or *now*, if it was deferred and *now* is
  later) and every plan-step boundary up to ``start + max_delay_h`` — never
  earlier than drawn, never later than allowed, never in the past, and only
  where the whole cycle ends inside the forecast (so no cycle is pushed past
  the end of the run);
- price of a start: the cycle's energy per plan step (from its phases) at the
  marginal price of that step — the export price for the part a forecast PV
  surplus covers, the import price for the rest, and a penalty where an
  announced outage would make the battery (or nobody) carry it; cycles are
  placed in the order of their drawn starts and each one uses up the surplus
  it takes;
- ties go to the earliest start, so a cycle moves only when that saves money.

The decisions are recorded in ``Plan.starts[name] = {drawn start: planned
start}`` (epoch seconds) and in :attr:`ApplianceScheduler.decisions`.  The
forecaster leaves the deferred appliances out of its shadow load and adds
their *planned* profile instead (:meth:`ApplianceScheduler.planned_load_kw`),
so a battery plan sees the appliances where they will run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hometwin.flex import DeferrableFlex, DeferTo, UpcomingStarts, flexible
from hometwin.units import J_PER_KWH


def _phases(f: DeferrableFlex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets_s, durations_s, powers_w) of an appliance's cycle from its flexibility."""
    if not f.phases:
        return np.zeros(1), np.ones(1), np.zeros(1)
    dur = np.array([d for d, _ in f.phases])
    pw = np.array([w for _, w in f.phases])
    offs = np.concatenate([[0.0], np.cumsum(dur)[:-1]])
    return offs, dur, pw


def cycle_energy(starts: np.ndarray, phases: tuple[np.ndarray, np.ndarray, np.ndarray], t0_s: float, dt_s: float,
                 n: int) -> np.ndarray:
    """Energy [kWh] of a cycle per plan step (``n`` steps of ``dt_s`` from ``t0_s``) for each start:
    shape ``(len(starts), n)``, exact overlap of every phase with every step."""
    offs, dur, pw = phases
    s = np.asarray(starts, dtype=float)[:, None]
    e0 = t0_s + np.arange(n, dtype=float)[None, :] * dt_s
    e1 = e0 + dt_s
    out = np.zeros((len(s), n))
    for off, d, p in zip(offs, dur, pw):
        if p == 0.0:
            continue
        a, b = s + off, s + off + d
        out += p * np.clip(np.minimum(e1, b) - np.maximum(e0, a), 0.0, None)
    return out / J_PER_KWH


class ApplianceScheduler:
    """Defers the smart appliances of a strategy's roster (see the module docstring)."""

    def __init__(self, strategy: Any, step_s: float):
        self.strategy = strategy
        self.step_s = float(step_s)
        self.decisions: dict[tuple[str, int], int] = {}  # (appliance, drawn start) → planned start
        self._phases: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    # -- the roster ---------------------------------------------------------------------------
    def appliances(self) -> dict[str, tuple[Any, DeferrableFlex]]:
        """``{name: (element, flexibility)}`` of the smart appliances on the roster, in roster order."""
        return {n: (el, f) for n, (el, f) in flexible(self.strategy.inverter.roster, DeferrableFlex).items() if f.smart}

    def phases(self, name: str, f: DeferrableFlex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if name not in self._phases:
            self._phases[name] = _phases(f)
        return self._phases[name]

    def cycle_s(self, name: str, f: DeferrableFlex) -> float:
        offs, dur, _ = self.phases(name, f)
        return float(offs[-1] + dur[-1])

    def lookahead_s(self, replan_s: float) -> float:
        """How far the price forecast must reach: a replan interval, the longest delay and a cycle."""
        need = 0.0
        for name, (_, f) in self.appliances().items():
            need = max(need, float(f.max_delay_h) * 3600.0 + self.cycle_s(name, f))
        return replan_s + need + self.step_s

    # -- planning -----------------------------------------------------------------------------
    def schedule(self, fc: Any) -> dict[str, dict[int, int]]:
        """Decide every upcoming cycle in the forecast ``fc``; apply with ``defer_to``; return the moves."""
        apps = self.appliances()
        if not apps or fc.n < 1:
            return {}
        t0, dt, n = float(fc.t0_s), float(fc.dt_s), fc.n
        t_end = t0 + n * dt
        pi = np.asarray(fc.price_import, dtype=float)
        pe = np.minimum(np.asarray(fc.price_export, dtype=float), pi)
        pmax = float(np.max(np.abs(pi))) if n else 0.0
        outage = ~np.asarray(fc.available, dtype=bool)
        pi_eff = np.where(outage, 3.0 * pmax + 1.0, pi)  # an outage: the battery (or nobody) carries it
        surplus = np.where(outage, 0.0, np.maximum(np.asarray(fc.pv_kw) - np.asarray(fc.load_kw), 0.0)) * fc.dt_h
        cycles = []
        for name, (el, _) in apps.items():
            for c in el.command(UpcomingStarts(t0, t_end)):
                if c.smart:
                    cycles.append((float(c.start_epoch_s), name, c))
        cycles.sort(key=lambda x: (x[0], x[1]))
        grid = t0 + np.arange(n + 1) * dt
        out: dict[str, dict[int, int]] = {}
        for orig, name, c in cycles:
            el, f = apps[name]
            ph = self.phases(name, f)
            cyc = self.cycle_s(name, f)
            first = max(orig, t0)
            latest = float(c.latest_epoch_s)
            cand = np.concatenate([[first], grid[(grid > first) & (grid <= latest)]])
            cand = cand[cand + cyc <= t_end + 1e-6]
            if cand.size == 0:  # the cycle cannot finish inside the forecast: leave it as it is
                continue
            e = cycle_energy(cand, ph, t0, dt, n)  # (m, n) kWh
            covered = np.minimum(e, surplus[None, :])
            cost = (covered * pe[None, :] + (e - covered) * pi_eff[None, :]).sum(axis=1)
            best = float(cost.min())
            j = int(np.flatnonzero(cost <= best + 1e-9 * (1.0 + abs(best)))[0])
            new = float(cand[j])
            surplus = surplus - covered[j]
            planned = float(c.planned_epoch_s)
            if new != planned:
                el.command(DeferTo(orig, new))
            self.decisions[(name, int(orig))] = int(round(new))
            out.setdefault(name, {})[int(orig)] = int(round(new))
        return out

    def planned_load_kw(self, t0_s: int, dt_s: int, n: int) -> np.ndarray:
        """Mean power [kW] per plan step of the smart appliances' cycles where they are planned to run."""
        out = np.zeros(n)
        t_end = float(t0_s) + n * float(dt_s)
        for name, (el, f) in self.appliances().items():
            cyc = self.cycle_s(name, f)
            starts = [float(c.planned_epoch_s) for c in el.command(UpcomingStarts(float(t0_s) - cyc, t_end))]
            if starts:
                out += cycle_energy(np.array(starts), self.phases(name, f), float(t0_s), float(dt_s), n).sum(axis=0)
        return out / (dt_s / 3600.0)
