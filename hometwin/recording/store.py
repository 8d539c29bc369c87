"""Writes a run into the recorder's database (SQLAlchemy Core; SQLite or PostgreSQL).

A :class:`Store` is opened on a URL (``sqlite:///out/hometwin.db``, ``postgresql://…``); a
:class:`RunWriter` collects what one run settles — windows of steps, window-end telemetry,
control events — and :meth:`RunWriter.flush` writes it in one transaction:

* each window's flows and element energies as one row of arrays (``flow_windows``,
  ``element_windows``; the numbers as text by orjson), cut first to the steps the database lacks;
* PostgreSQL: ``COPY`` (through a temporary table and ``INSERT … SELECT … ON CONFLICT DO NOTHING``
  should a row be there already): one round trip per table, no per-row statements;
* SQLite: ``executemany`` of ``INSERT … ON CONFLICT DO NOTHING`` in WAL mode.

Every write is idempotent, so a step written twice (a recorder restarted and fed the same or
overlapping windows again) is there once, as first written.  Any database error becomes a :class:`RecordingError`: one
line, the URL's password masked.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import orjson

from hometwin.kpi_labels import CURRENCY, KPI_LABELS
from hometwin.recording import schema as s

def kpi_unit(name: str, currency: str = "") -> str:
    """The ``kpis.unit`` of a KPI: its unit in :data:`hometwin.kpi_labels.KPI_LABELS` (the table the
    report, the CLI and the API show), with the currency's code for money and ``1`` for fractions."""
    row = KPI_LABELS.get(name)
    if row is None:
        return ""
    return {"fraction": "1", CURRENCY: currency}.get(row.unit, row.unit)


class RecordingError(RuntimeError):
    """The database cannot be reached or written: one line, without credentials."""


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and logs)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable database URL>"


def _one_line(exc: BaseException, url: str) -> str:
    """The first line of a driver's message, without the URL's password."""
    orig = getattr(exc, "orig", None) or exc
    text = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    try:
        from sqlalchemy.engine import make_url

        pw = make_url(url).password
        if pw:
            text = text.replace(str(pw), "***")
    except Exception:
        pass
    return text[:300]


def _utc(t: Any) -> dt.datetime:
    import pandas as pd

    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


class Store:
    """An open recorder database (tables created if missing)."""

    def __init__(self, url: str, echo: bool = False):
        from sqlalchemy import create_engine, event
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        self.url = url
        self.masked = mask_url(url)
        try:
            u = make_url(url)
        except ArgumentError:
            raise RecordingError(f"--db: not a database URL ({self.masked}); use sqlite:///FILE or "
                                 "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB") from None
        backend = u.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise RecordingError(f"--db: {backend!r} is not supported ({self.masked}); use sqlite:///FILE or "
                                 "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB")
        if backend == "postgresql" and u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")  # psycopg 3 (the `db` extra)
        if backend == "sqlite" and u.database in (None, "", ":memory:"):
            raise RecordingError(f"--db: give the SQLite file ({self.masked}: sqlite:///path/to/hometwin.db)")
        self.dialect = backend
        try:
            self.engine = create_engine(u, echo=echo, pool_pre_ping=True)
        except (NoSuchModuleError, ImportError) as exc:
            raise RecordingError(f"--db {self.masked}: no driver ({exc}); install hometwin[db]") from None
        if backend == "sqlite":
            from pathlib import Path

            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)

            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
                cur = dbapi_conn.cursor()
                # large pages (set while the file is new): the bulk of the rows is appended per step,
                # a quarter less work per row than 4 KiB pages here (bench/RESULTS.md)
                cur.execute("PRAGMA page_size=65536")
                cur.execute("PRAGMA cache_size=-32768")  # 32 MiB
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")  # durable at every checkpoint; a crash loses no commit in WAL
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()
        self._guard(self._create, "cannot open the database")

    def _create(self) -> None:
        """The tables, and the ``element_flows`` view where it is missing."""
        from sqlalchemy import inspect

        s.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            views = inspect(conn).get_view_names()
            for name, ddl in (("flows", s.FLOWS_VIEW), ("element_flows", s.ELEMENT_FLOWS_VIEW)):
                if name not in views:
                    conn.exec_driver_sql(ddl[self.dialect])

    def _guard(self, fn: Any, what: str) -> Any:
        try:
            return fn()
        except RecordingError:
            raise
        except Exception as exc:
            raise RecordingError(f"{what} {self.masked}: {_one_line(exc, self.url)}") from None

    def close(self) -> None:
        self.engine.dispose()

    # -- small tables: SQLAlchemy inserts -------------------------------------------------------
    def _insert(self, table: Any) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def _upsert(self, conn: Any, table: Any, rows: list[dict[str, Any]], update: Sequence[str] = ()) -> None:
        if not rows:
            return
        stmt = self._insert(table)
        pk = [c.name for c in table.primary_key.columns]
        if update:
            stmt = stmt.on_conflict_do_update(index_elements=pk, set_={c: stmt.excluded[c] for c in update})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=pk)
        conn.execute(stmt, rows)

    def begin_run(self, run: dict[str, Any], elements: Iterable[tuple[str, str, str]]) -> None:
        """The run's row (kept as it is when the run is there already: a restarted recorder) and
        its elements ``(name, kind, role)``."""
        def go() -> None:
            with self.engine.begin() as conn:
                self._upsert(conn, s.runs, [run])
                self._upsert(conn, s.elements, [{"run_id": run["run_id"], "element": n, "kind": k, "role": r}
                                                for n, k, r in elements])
        self._guard(go, "cannot record the run in")

    def finish(self, run_id: str, status: str, kpis: Mapping[str, float] | None, currency: str = "",
               error: str | None = None) -> None:
        """The run's end: its status, the steps recorded and (when it has them) its KPIs."""
        from sqlalchemy import func, select, update

        def go() -> None:
            with self.engine.begin() as conn:
                fw = s.flow_windows.c
                n = conn.execute(select(func.sum(fw.n)).where(fw.run_id == run_id)).scalar()
                conn.execute(update(s.runs).where(s.runs.c.run_id == run_id).values(
                    status=status, finished_at=dt.datetime.now(dt.timezone.utc), steps_recorded=int(n or 0),
                    error=error))
                if kpis:
                    self._upsert(conn, s.kpis, [
                        {"run_id": run_id, "name": k, "unit": kpi_unit(k, currency),
                         "value": float(v) if v is not None and math.isfinite(float(v)) else None}
                        for k, v in kpis.items()], update=("value", "unit"))
        self._guard(go, "cannot finish the run in")

    def set_status(self, run_id: str, status: str, error: str | None = None) -> None:
        from sqlalchemy import update

        def go() -> None:
            with self.engine.begin() as conn:
                conn.execute(update(s.runs).where(s.runs.c.run_id == run_id).values(status=status, error=error))
        self._guard(go, "cannot update the run in")

    def recorded_steps(self, run_id: str) -> np.ndarray:
        """The steps of ``run_id`` in ``flows``, in order."""
        from sqlalchemy import select

        def go() -> np.ndarray:
            fw = s.flow_windows.c
            with self.engine.connect() as conn:
                spans = conn.execute(select(fw.i0, fw.n).where(fw.run_id == run_id).order_by(fw.i0)).all()
            return np.concatenate([np.arange(i0, i0 + n, dtype=np.int64) for i0, n in spans] or
                                  [np.zeros(0, dtype=np.int64)])
        return self._guard(go, "cannot read")

    def event_count(self, run_id: str) -> int:
        from sqlalchemy import func, select

        def go() -> int:
            with self.engine.connect() as conn:
                return int(conn.execute(select(func.coalesce(func.max(s.events.c.seq) + 1, 0))
                                        .where(s.events.c.run_id == run_id)).scalar())
        return self._guard(go, "cannot read")

    # -- bulk: flows and element_windows --------------------------------------------------------
    def write_batch(self, b: "Batch") -> None:
        """One transaction: every row of ``b`` (idempotent by primary key; the steps of an element's
        window that the database holds already are left out, so the view has each step once)."""
        if b.empty:
            return

        def go() -> None:
            with self.engine.begin() as conn:
                flow_rows, element_rows = self._window_rows(conn, b)
                if self.dialect == "postgresql":
                    self._copy(conn, s.flow_windows, flow_rows)
                    self._copy(conn, s.element_windows, element_rows)
                    self._copy(conn, s.element_states, b.state_rows)
                else:
                    self._executemany(conn, s.flow_windows, flow_rows)
                    self._executemany(conn, s.element_windows, element_rows)
                    self._executemany(conn, s.element_states, b.state_rows)
                self._upsert(conn, s.elements, b.elements)
                self._upsert(conn, s.events, b.events)
        self._guard(go, "cannot write to")
        b.clear()

    def _window_rows(self, conn: Any, b: "Batch") -> tuple[list[tuple], list[tuple]]:
        """``b``'s windows as rows of ``flow_windows`` and ``element_windows``: each cut to the steps
        that neither the database nor an earlier window of ``b`` has (for the home; for the element)
        — a restarted recorder, a catch-up that overlaps a window written before."""
        from sqlalchemy import select

        if not b.windows:
            return [], []
        lo = min(w[1] for w in b.windows)
        hi = max(w[1] + len(w[2]) for w in b.windows)
        have: dict[str | None, list[tuple[int, int]]] = {}
        fw, ew = s.flow_windows.c, s.element_windows.c
        for i0, n in conn.execute(select(fw.i0, fw.n).where(fw.run_id == b.run_id, fw.i0 + fw.n > lo, fw.i0 < hi)):
            have.setdefault(None, []).append((i0, i0 + n))
        for el, i0, n in conn.execute(select(ew.element, ew.i0, ew.n)
                                      .where(ew.run_id == b.run_id, ew.i0 + ew.n > lo, ew.i0 < hi)):
            have.setdefault(el, []).append((i0, i0 + n))
        flow_rows: list[tuple] = []
        element_rows: list[tuple] = []
        for key, i0, values in b.windows:
            for a, z in _uncovered(i0, i0 + len(values), have.setdefault(key, [])):
                t0, t1 = b.times(np.asarray([a, z - 1]))
                part = values[a - i0:z - i0]
                if key is None:
                    flow_rows.append((b.run_id, a, z - a, t0, t1, _array_text(part, self.dialect)))
                else:
                    element_rows.append((b.run_id, key, a, z - a, t0, t1, _array_text(part, self.dialect)))
                have[key].append((a, z))
        return flow_rows, element_rows

    @staticmethod
    def _executemany(conn: Any, table: Any, rows: list[tuple]) -> None:
        if not rows:
            return
        cols = [c.name for c in table.columns]
        sql = (f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
               "ON CONFLICT DO NOTHING")
        conn.exec_driver_sql(sql, rows)

    @staticmethod
    def _copy(conn: Any, table: Any, rows: list[tuple]) -> None:
        """``COPY`` the rows in: straight into the table — the rows of a new step — and, should one
        be there already (a restarted recorder; a unique violation), through a temporary table and
        ``INSERT … ON CONFLICT DO NOTHING`` instead."""
        if not rows:
            return
        cols = ", ".join(c.name for c in table.columns)
        text = "\n".join(map("\t".join, (map(str, row) for row in rows))).replace("\tNone", "\t\\N") + "\n"
        dbapi = conn.connection.dbapi_connection
        import psycopg

        try:
            with dbapi.transaction():  # a savepoint: a conflict undoes this COPY only
                with dbapi.cursor() as cur, cur.copy(f"COPY {table.name} ({cols}) FROM STDIN") as cp:
                    cp.write(text)
            return
        except psycopg.errors.UniqueViolation:
            pass
        tmp = f"_in_{table.name}"
        conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {tmp} (LIKE {table.name}) ON COMMIT DELETE ROWS")
        with dbapi.cursor() as cur, cur.copy(f"COPY {tmp} ({cols}) FROM STDIN") as cp:
            cp.write(text)
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {tmp} ON CONFLICT DO NOTHING")


def _uncovered(a: int, z: int, have: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of steps [a, z) outside every interval [a', z') of ``have``."""
    parts = [(a, z)]
    for ha, hz in have:
        if hz <= a or ha >= z:
            continue
        parts = [p for pa, pz in parts for p in ((pa, min(pz, ha)), (max(pa, hz), pz)) if p[0] < p[1]]
    return parts


_PG_ARRAY = str.maketrans("[]", "{}")


def _array_text(values: np.ndarray, dialect: str) -> str:
    """A window's values (steps, or steps × columns) as SQLite's JSON array or PostgreSQL's array
    literal (there: columns × steps, :data:`schema.flow_windows`): the shortest text of each float
    that reads back to the same double (orjson's, 17× faster than repr), NaN as ``null`` (NULL)."""
    if dialect == "sqlite":
        return orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return orjson.dumps(np.ascontiguousarray(values.T), option=orjson.OPT_SERIALIZE_NUMPY).decode().translate(_PG_ARRAY)


@dataclass
class Batch:
    """Rows not written yet (tuples in the tables' column order; windows as ``(element, i0, energies)``
    or ``(None, i0, steps × FLOW_VALUE_COLUMNS)``, made rows when written)."""

    run_id: str = ""
    times: Any = None  # steps → their times as written (RunWriter.times)
    windows: list[tuple] = field(default_factory=list)
    state_rows: list[tuple] = field(default_factory=list)
    elements: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.windows or self.state_rows or self.elements or self.events)

    def clear(self) -> None:
        for lst in (self.windows, self.state_rows, self.elements, self.events):
            lst.clear()


class RunWriter:
    """What one run settles, window by window, into a :class:`Store`.

    ``add_window`` takes a window's settled steps (the engine's ``WindowRecord`` or a ``Flows``
    message: ``i0``, ``k``, ``flows``, ``soc``, ``served``); :meth:`flush` writes what was added
    since the last flush in one transaction."""

    def __init__(self, store: Store, run_id: str, start: Any, step_s: int):
        self.store = store
        self.run_id = run_id
        self.start_ns = int(np.datetime64(_utc(start).replace(tzinfo=None), "ns").astype(np.int64))
        self.step_ns = int(step_s) * 1_000_000_000
        self.batch = Batch(run_id, self.times)
        self.elements_known: set[str] = set()
        self.events_seq = 0
        self.steps_added = 0
        # SQLite reads back what SQLAlchemy writes ("YYYY-MM-DD HH:MM:SS.ffffff", UTC); PostgreSQL
        # takes ISO 8601 with its zone
        self._sep, self._suffix = (" ", "") if store.dialect == "sqlite" else ("T", "Z")

    def times(self, steps: np.ndarray) -> list[str]:
        t = (self.start_ns + steps.astype(np.int64) * self.step_ns).astype("datetime64[ns]").astype("datetime64[us]")
        return [x.replace("T", self._sep) + self._suffix for x in np.datetime_as_string(t, unit="us").tolist()]

    def time_of(self, step: int) -> dt.datetime:
        return dt.datetime.fromtimestamp((self.start_ns + step * self.step_ns) / 1e9, dt.timezone.utc)

    def add_window(self, i0: int, k: int, flows: Mapping[str, Any], soc: Any, served: Mapping[str, Any],
                   roles: Mapping[str, str] | None = None, kinds: Mapping[str, str] | None = None) -> None:
        n = k + 1
        mat = np.empty((n, len(s.FLOW_VALUE_COLUMNS)))  # one row per step (flow_windows)
        for j, c in enumerate(s.FLOW_COLUMNS):
            mat[:, j] = np.asarray(flows[c], dtype=float)[:n]
        mat[:, -1] = np.asarray(soc, dtype=float)[:n] if soc is not None else np.nan  # NaN: NULL
        self.batch.windows.append((None, int(i0), mat))
        names = sorted(served)
        for nm in names:  # one array per element and window (element_windows)
            self.batch.windows.append((nm, int(i0), np.asarray(served[nm], dtype=float)[:n]))
        for name in names:
            if name not in self.elements_known and roles is not None:
                self.elements_known.add(name)
                self.batch.elements.append({"run_id": self.run_id, "element": name,
                                            "kind": (kinds or {}).get(name, ""), "role": roles.get(name, "")})
        self.steps_added += n

    def add_states(self, step: int, states: Mapping[str, Mapping[str, float]]) -> None:
        """Window-end telemetry ``{element: {quantity: value}}`` at ``step`` (the window's last)."""
        t = self.times(np.asarray([step]))[0]
        for el, qs in states.items():
            for q, v in qs.items():
                if v is not None and math.isfinite(float(v)):
                    self.batch.state_rows.append((self.run_id, int(step), t, el, q, float(v)))

    def add_event(self, e: Mapping[str, Any], seq: int | None = None) -> None:
        """A control event (``ControlEvent.model_dump()``, or ``{kind, step, element, …}``)."""
        seq = self.events_seq if seq is None else seq
        self.events_seq = max(self.events_seq, seq + 1)
        step = e.get("step")
        wall = e.get("wall_time")
        detail = {k: v for k, v in e.items() if k not in ("action", "kind", "element", "by", "source", "step",
                                                            "wall_time")}
        self.batch.events.append({
            "run_id": self.run_id, "seq": int(seq), "time": self.time_of(int(step)) if step is not None else None,
            "wall": dt.datetime.fromtimestamp(float(wall), dt.timezone.utc) if wall else dt.datetime.now(dt.timezone.utc),
            "kind": str(e.get("action") or e.get("kind") or "event"), "element": e.get("element"),
            "actor": e.get("by") or e.get("source"), "detail": json.dumps(detail, default=str, sort_keys=True)})

    def flush(self) -> None:
        self.store.write_batch(self.batch)
