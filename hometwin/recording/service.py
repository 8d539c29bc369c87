"""``hometwin record``: the recorder of a live home — one more service of the realm.

It joins as the ``recorder`` principal (hometwin.auth: subscribe to the flows, the roster, the
clock's status, control events and the run's end; call the launcher's ``flows`` RPC — nothing
else), and writes every settled step into the database as it comes (:class:`RunWriter`: one
transaction per :data:`FLUSH_S`).

Crash safety.  Writes are idempotent by (run, step), and the recorder knows which steps the
database holds (read back when it starts).  Steps settled while it was down — killed, restarted
— are not lost: when a ``Flows`` arrives that does not follow the last step recorded, or when it
(re)joins, it asks ``hometwin.launcher.flows`` for the settled steps it lacks (``hometwin up``
keeps every settled step of the run in memory anyway, for its result files) and writes them
first.  So a recorder SIGKILLed and restarted leaves no gap and no duplicate
(tests/test_recording_live.py).  With no launcher to ask (a router of someone else's), a gap is
logged and kept in ``runs.error``.

At the run's end (``hometwin.run.done``) it writes the last rows and the KPIs, computed from
every recorded step (a restarted recorder reads back the flows it had written), sets the run
``finished`` and exits 0.  A database it cannot write is one line in its log and exit code 5
(``hometwin up`` starts it again and it resumes where the database stops).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from hometwin.runtime import messages as m
from hometwin.recording import schema as s
from hometwin.recording.run import FLUSH_S, currency_of, run_row
from hometwin.recording.store import RecordingError, RunWriter, Store
from hometwin.registry import element_class
from hometwin.results import Result, RunInfo

log = logging.getLogger("hometwin.recorder")

#: ``hometwin record``'s exit code when the database cannot be written (the run goes on).
EXIT_DB = 5
#: Steps asked of the launcher per call when catching up.
CATCH_UP_STEPS = 20000


class LiveRecorder:
    def __init__(self, home: Any, ctx: Any, db_url: str, run_id: str, runtime: str = "up"):
        self.home, self.ctx = home, ctx
        self.run_id = run_id
        self.store = Store(db_url)
        #: the run's figures for its KPIs, from the spec (the recorder reads Flows; it builds no model)
        self.info = RunInfo.of_spec(home, ctx)
        self.kinds = {el.name: el.kind for el in home.spec.elements}
        self.currency = currency_of(home)
        self.roles = roles = {el.name: element_class(el.kind).role.value for el in home.spec.elements}
        self.store.begin_run(run_row(home, ctx, run_id, runtime, self.currency),
                             [(n, self.kinds[n], roles[n]) for n in self.kinds])
        self.writer = RunWriter(self.store, run_id, ctx.start, ctx.step_s)
        self.writer.events_seq = self.store.event_count(run_id)
        self.have = np.zeros(ctx.n_steps, dtype=bool)
        self._first_missing = 0  # next_missing()'s cursor: every step before it is recorded
        have = self.store.recorded_steps(run_id)
        self.have[have[have < ctx.n_steps]] = True
        #: the flows of every recorded step, for the KPIs at the end (a restarted recorder reads back
        #: those it had written before)
        self.cols = {c: np.zeros(ctx.n_steps) for c in s.FLOW_VALUE_COLUMNS}
        self.cols["soc"][:] = np.nan
        if have.size:
            log.info("run %s: %d steps recorded already (a restarted recorder): resuming", run_id, have.size)
            self._read_back()
        self.session: Any = None
        self.done = asyncio.Event()
        self.outcome: tuple[str, str | None] | None = None  # (status, error) at the end
        self.error: str | None = None  # the database failed
        self.gap: str | None = None
        #: the ledger's largest residual in the Flows seen (the launcher's catch-up carries its own, of the run)
        self.max_residual_j = 0.0
        self._catching_up = False

    # -- what comes in ---------------------------------------------------------------------------
    def next_missing(self) -> int:
        """The first step not recorded (n_steps when every step is).  Steps are only ever added, so
        it moves forward from where it was: O(1) a Flows on average, not a scan of the run (asked at
        every Flows: 525,600 times a year of single-step windows)."""
        i, have = self._first_missing, self.have
        while i < len(have) and have[i]:
            i += 1
        self._first_missing = i
        return i

    def add_flows(self, f: m.Flows) -> None:
        n = f.k + 1
        if f.i0 + n > len(self.have):
            log.warning("Flows of steps %d–%d lie beyond the run's %d steps: ignored", f.i0, f.i0 + f.k, len(self.have))
            return
        self.max_residual_j = max(self.max_residual_j, f.max_residual_j)
        new = ~self.have[f.i0:f.i0 + n]
        if not new.any():
            return  # recorded already (the same settlement again: the database keeps the first)
        self.writer.add_window(f.i0, f.k, f.flows, f.soc, f.served, roles=f.roles, kinds=self.kinds)
        self.have[f.i0:f.i0 + n] = True
        sl = slice(f.i0, f.i0 + n)
        for c in s.FLOW_COLUMNS:
            self.cols[c][sl] = f.flows[c]
        if f.soc is not None:
            self.cols["soc"][sl] = f.soc

    async def on_flows(self, payload: Any, rej: m.Rejections) -> None:
        f = m.decode(m.Flows, payload, m.FLOWS, rej)
        if f is None:
            return
        if f.i0 > self.next_missing():
            await self.catch_up(f.i0)
        self.add_flows(f)

    async def catch_up(self, until: int | None = None) -> None:
        """Ask the launcher for the settled steps this recorder lacks before ``until``."""
        if self._catching_up or self.session is None:
            return
        self._catching_up = True
        try:
            while True:
                since = self.next_missing()
                stop = len(self.have) if until is None else until
                if since >= stop:
                    return
                try:
                    payload = await self.session.call(m.launcher_uri("flows"), since, min(stop, since + CATCH_UP_STEPS))
                except Exception as exc:
                    if until is not None:
                        self.gap = (f"steps {since}–{until - 1} were settled while the recorder was away and no "
                                    f"launcher could give them ({str(exc)[:120]})")
                        log.error("%s", self.gap)
                    return
                if not payload:
                    return
                f = m.decode(m.Flows, payload, m.launcher_uri("flows"), m.Rejections())
                if f is None or f.i0 != since:
                    return
                self.add_flows(f)
                log.info("caught up steps %d–%d from the launcher", f.i0, f.i0 + f.k)
        finally:
            self._catching_up = False

    def on_telemetry(self, payload: Any, rej: m.Rejections) -> None:
        t = m.decode(m.Telemetry, payload, m.TELEMETRY, rej)
        if t is not None and t.step < len(self.have) and t.values:
            self.writer.add_states(t.step, {t.element: t.values})

    def on_event(self, payload: Any, rej: m.Rejections) -> None:
        e = m.decode(m.ControlEvent, payload, m.EVENT, rej)
        if e is not None:
            self.writer.add_event(e.model_dump())

    def on_roster(self, payload: Any, rej: m.Rejections) -> None:
        r = m.decode(m.Roster, payload, m.ROSTER, rej)
        if r is not None and (r.left or r.stale):
            self.writer.add_event({"kind": "roster", "wall_time": time.time(), "left": list(r.left),
                                   "stale": list(r.stale), "elements": list(r.elements), "window": r.seq})

    # -- writing ---------------------------------------------------------------------------------
    def flush(self) -> bool:
        if self.error is not None:
            return False
        try:
            self.writer.flush()
            return True
        except RecordingError as exc:
            self.error = str(exc)
            log.error("%s", self.error)
            self.done.set()
            return False

    async def flusher(self) -> None:
        while not self.done.is_set():
            try:
                await asyncio.wait_for(self.done.wait(), FLUSH_S)
            except asyncio.TimeoutError:
                pass
            self.flush()

    def _read_back(self) -> None:
        """The flows this run already has in the database (a restarted recorder)."""
        from sqlalchemy import select

        def go() -> list:
            with self.store.engine.connect() as conn:
                cols = [s.flows.c.step] + [s.flows.c[c] for c in s.FLOW_VALUE_COLUMNS]
                return conn.execute(select(*cols).where(s.flows.c.run_id == self.run_id)).all()
        rows = self.store._guard(go, "cannot read")
        if rows:
            arr = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
            idx = arr[:, 0].astype(np.int64)
            for j, c in enumerate(s.FLOW_VALUE_COLUMNS, start=1):
                self.cols[c][idx] = arr[:, j]

    def kpis(self) -> dict[str, float]:
        """The run's KPIs (hometwin.results.Result.kpis) from every recorded step."""
        import pandas as pd

        frame = pd.DataFrame(self.cols, index=self.ctx.times(0, self.ctx.n_steps))
        return Result(frame=frame, meta=self.info.meta(roles={}, max_residual_j=self.max_residual_j)).kpis()

    def finish(self) -> None:
        """After the session: the last rows, and the run's end (KPIs when it finished)."""
        status, why = self.outcome or ("stopped", "the recorder was stopped before the run's end")
        if not self.flush():
            try:
                self.store.set_status(self.run_id, "failed", error=(self.error or "")[:500])
            except RecordingError:
                pass
            return
        if self.gap:
            why = (why + "; " if why else "") + self.gap
        try:
            kpis = self.kpis() if status == "finished" else None
            self.store.finish(self.run_id, status, kpis, self.currency, error=why)
        except RecordingError as exc:
            self.error = str(exc)
        except Exception as exc:  # the KPIs could not be computed: the steps are recorded
            self.error = f"KPIs: {type(exc).__name__}: {exc}"
        if self.error:
            log.error("%s", self.error)

    # -- the session -----------------------------------------------------------------------------
    async def on_join(self, session: Any, stop: asyncio.Event) -> None:
        from hometwin.runtime.wamp import subscribe

        self.session = session
        rej = m.Rejections()
        pending: list[asyncio.Future] = []

        def on_flows(payload: Any) -> None:
            pending.append(asyncio.ensure_future(self.on_flows(payload, rej)))
            pending[:] = [p for p in pending if not p.done()]

        def on_done(payload: Any) -> None:
            async def end() -> None:
                await asyncio.gather(*pending, return_exceptions=True)
                await self.catch_up()  # the steps before the end this recorder lacks, if any
                self.outcome = ("finished", None) if self.next_missing() >= len(self.have) else (
                    "stopped", f"the run ended at step {self.next_missing()} of {len(self.have)}")
                self.done.set()
                stop.set()
            asyncio.ensure_future(end())

        def on_failed(payload: Any) -> None:
            self.outcome = ("failed", str(payload.get("error") if isinstance(payload, dict) else payload)[:500])
            self.done.set()
            stop.set()

        await subscribe(session, m.FLOWS, on_flows, rej)
        await subscribe(session, m.RUN_DONE, on_done, rej)
        await subscribe(session, m.RUN_FAILED, on_failed, rej)
        await subscribe(session, m.EVENT, lambda p: self.on_event(p, rej), rej)
        await subscribe(session, m.TELEMETRY, lambda p: self.on_telemetry(p, rej), rej)
        await subscribe(session, m.ROSTER, lambda p: self.on_roster(p, rej), rej)
        asyncio.ensure_future(self.flusher())
        log.info("recording run %s into %s", self.run_id, self.store.masked)
        if self.next_missing() > 0:
            await self.catch_up(None)  # a restarted recorder: what was settled while it was away


def running_run_id(url: str, home: Any, ctx: Any) -> str:
    """The id of this home's run that is still ``running`` in the database with the same spec and
    start (a recorder pod restarted on Kubernetes continues it), else a new one."""
    import json

    from sqlalchemy import select

    from hometwin.recording import schema as s
    from hometwin.recording.run import new_run_id

    store = Store(url)
    try:
        spec = json.dumps(home.model_dump(mode="json"), sort_keys=True)
        def go() -> Any:
            with store.engine.connect() as conn:
                return conn.execute(select(s.runs.c.run_id).where(
                    s.runs.c.home == home.metadata.name, s.runs.c.status == "running", s.runs.c.spec == spec,
                    s.runs.c.n_steps == int(ctx.n_steps)).order_by(s.runs.c.started_at.desc()).limit(1)).scalar()
        found = store._guard(go, "cannot read")
    finally:
        store.close()
    return found or new_run_id(home.metadata.name)
