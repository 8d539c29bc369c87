"""Recording a run: its row in ``runs``, and ``hometwin run --db``'s hook on the engine's windows."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from typing import Any, Mapping

from hometwin.runtime import messages as m
from hometwin.recording.store import RecordingError, RunWriter, Store

#: A writer flushes at most this often [s] (and at the end): with windows of a day one transaction
#: per window, with single-step windows one per ~second.
FLUSH_S = 1.0


def new_run_id(home: str, now: dt.datetime | None = None) -> str:
    """``<home>-<UTC wall start yyyymmddTHHMMSSZ>-<6 hex>``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{home}-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def run_row(home: Any, ctx: Any, run_id: str, runtime: str, currency: str = "") -> dict[str, Any]:
    """The ``runs`` row of a run starting now (status ``running``)."""
    from hometwin._version import __version__

    return {"run_id": run_id, "home": home.metadata.name, "spec": json.dumps(home.model_dump(mode="json"), sort_keys=True),
            "start": ctx.start.to_pydatetime() if hasattr(ctx.start, "to_pydatetime") else ctx.start,
            "step_s": int(ctx.step_s), "n_steps": int(ctx.n_steps), "timezone": str(ctx.timezone),
            "seed": getattr(ctx, "seed", None), "version": __version__, "runtime": runtime, "currency": currency,
            "status": "running", "started_at": dt.datetime.now(dt.timezone.utc), "finished_at": None,
            "steps_recorded": 0, "error": None}


def currency_of(home: Any) -> str:
    for el in home.spec.elements:
        cur = getattr(getattr(el, "config", None), "currency", None)
        if cur:
            return str(cur)
    return ""


def states_of(elements: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The :attr:`~hometwin.element.Element.state_quantities` of each element's ``telemetry()`` now."""
    out: dict[str, dict[str, float]] = {}
    for name, el in elements.items():
        try:
            tel = el.telemetry()
        except Exception:
            continue
        qs = {q: float(tel[q]) for q in type(el).state_quantities if tel.get(q) is not None}
        if qs:
            out[name] = qs
    return out


class EngineRecording:
    """``hometwin run --db``: every settled window of an in-process :class:`hometwin.engine.Engine`
    into the database, its window-end telemetry, and at the end the KPIs and the run's status.

    A database error does not stop the simulation: it is kept (:attr:`error`), recording stops,
    and the command says so in one line and exits non-zero after writing its result files."""

    def __init__(self, url: str, engine: Any, runtime: str = "run"):
        self.engine = engine
        self.error: str | None = None
        self.store = Store(url)  # RecordingError: a bad URL, the database unreachable
        home = engine.home
        self.currency = currency_of(home)
        self.run_id = new_run_id(home.metadata.name)
        self.store.begin_run(run_row(home, engine.ctx, self.run_id, runtime, self.currency),
                             [(n, e.kind, e.role.value) for n, e in engine.elements.items()])
        self.writer = RunWriter(self.store, self.run_id, engine.ctx.start, engine.ctx.step_s)
        self._last = time.monotonic()
        self.write_s = 0.0
        self._plans = 0  # Strategy.made recorded so far
        engine.on_window.append(self.on_window)

    def on_window(self, rec: Any) -> None:
        if self.error is not None:
            return
        t0 = time.perf_counter()
        w = rec.window
        eng = self.engine
        self.writer.add_window(w.i0, rec.k, rec.flows, rec.soc, rec.served,
                               roles={n: e.role.value for n, e in eng.elements.items()},
                               kinds={n: e.kind for n, e in eng.elements.items()})
        self.writer.add_states(w.i0 + rec.k, states_of(eng.elements))
        made = getattr(getattr(eng.inverter, "strategy", None), "made", None) or ()
        for e in made[self._plans:]:  # the plans made for this window (events, as hometwin up records them)
            self.writer.add_event(m.ControlEvent.plan_made(eng.inverter.name, e).model_dump())
        self._plans = len(made)
        if time.monotonic() - self._last >= FLUSH_S:
            self._flush()
        self.write_s += time.perf_counter() - t0

    def _flush(self) -> None:
        try:
            self.writer.flush()
        except RecordingError as exc:
            self.error = str(exc)
        self._last = time.monotonic()

    def finish(self, result: Any, status: str, why: str | None = None) -> None:
        """The last rows, the KPIs (of the steps settled) and the status; errors kept in :attr:`error`."""
        t0 = time.perf_counter()
        if self.error is None:
            for e in getattr(result, "events", []) or []:
                self.writer.add_event(e)
            self._flush()
        if self.error is None:
            try:
                self.store.finish(self.run_id, status, result.kpis() if result is not None else None,
                                  self.currency, error=why)
            except RecordingError as exc:
                self.error = str(exc)
        else:
            try:
                self.store.set_status(self.run_id, "failed", error=self.error[:500])
            except RecordingError:
                pass
        self.write_s += time.perf_counter() - t0
        self.store.close()


def check_recorded(url: str, run_id: str, n_steps: int) -> str | None:
    """None when ``run_id`` is in the database whole (every step, status finished); else why not
    (one line, no password)."""
    from sqlalchemy import select

    from hometwin.recording import schema as s

    try:
        store = Store(url)
    except RecordingError as exc:
        return str(exc)
    try:
        def go() -> Any:
            with store.engine.connect() as conn:
                return conn.execute(select(s.runs.c.status, s.runs.c.steps_recorded, s.runs.c.error)
                                    .where(s.runs.c.run_id == run_id)).first()
        row = store._guard(go, "cannot read")
    except RecordingError as exc:
        return str(exc)
    finally:
        store.close()
    if row is None:
        return f"run {run_id} is not in {store.masked} (the recorder could not write it: see its log)"
    status, steps, error = row
    if status != "finished" or steps != n_steps:
        return (f"run {run_id} in {store.masked} is {status} with {steps} of {n_steps} steps"
                + (f": {error}" if error else ""))
    return None
