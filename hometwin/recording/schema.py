"""The recorder's tables (SQLAlchemy Core): one metadata for SQLite and PostgreSQL.

Why this shape (docs/recording.md):

* Each settled window is one row of arrays: ``flow_windows`` (the home-level flows of every step)
  and ``element_windows`` (each element's energy per step).  One row per element per step and one
  per step were 5.8 million rows for a year at 1-minute steps and nearly all of the recorder's CPU;
  one row per window is 4 015 (bench/RESULTS.md).
* The views keep the per-step shape for the dashboards and ad-hoc SQL: ``flows`` is *wide* — one
  row per settled step, one column per home-level flow (:data:`hometwin.results.FLOW_COLUMNS`,
  joules in the step, plus the SoC), each column a Grafana series with no pivot; ``element_flows``
  is *long* — one row per element per step (elements differ from home to home and join or leave
  during a run; Grafana groups by ``element`` for the stacked loads).
* ``element_states`` holds window-end telemetry (indoor temperature, tank temperature …), one row
  per quantity.

Simulated time is a ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL (UTC stored); SQLite stores it as
ISO text in UTC.  Every table's primary key makes a write idempotent (``INSERT … ON CONFLICT DO
NOTHING``), and a window is cut to the steps the database lacks before it is written
(:meth:`hometwin.recording.store.Store.write_batch`): a recorder that restarts and writes a step
again changes nothing.
"""

from __future__ import annotations

from sqlalchemy import (ARRAY, BigInteger, Column, DateTime, Float, Index, Integer, MetaData, PrimaryKeyConstraint,
                        Table, Text, column, table)

from hometwin.results import FLOW_COLUMNS

metadata = MetaData()

TS = DateTime(timezone=True)

runs = Table(
    "runs", metadata,
    Column("run_id", Text, primary_key=True),
    Column("home", Text, nullable=False),
    Column("spec", Text, nullable=False),  # the Home as JSON
    Column("start", TS, nullable=False),  # simulated start (UTC)
    Column("step_s", Integer, nullable=False),
    Column("n_steps", Integer, nullable=False),
    Column("timezone", Text, nullable=False),
    Column("seed", BigInteger, nullable=True),
    Column("version", Text, nullable=False),
    Column("runtime", Text, nullable=False),  # run | up | kubernetes
    Column("currency", Text, nullable=False, default=""),
    Column("status", Text, nullable=False),  # running | finished | failed | stopped
    Column("started_at", TS, nullable=False),  # wall clock
    Column("finished_at", TS, nullable=True),
    Column("steps_recorded", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),  # why a run failed or stopped
)
Index("runs_home_start", runs.c.home, runs.c.started_at)

#: The wide per-step columns of ``flows`` after (run_id, step, time): FLOW_COLUMNS and the SoC.
FLOW_VALUE_COLUMNS = tuple(FLOW_COLUMNS) + ("soc",)

#: One row per *window* of steps: the home-level flows of its ``n`` steps from ``i0``, read through
#: the ``flows`` view.  ``v`` holds the FLOW_VALUE_COLUMNS of every step (NULL: no SoC) —
#: PostgreSQL: ``double precision[][]``, one row per column (``v[j][k]``: column j, step i0+k-1);
#: SQLite: JSON text, one array per step (``[[pv_offered_j, pv_dc_j, …, soc], …]``).
flow_windows = Table(
    "flow_windows", metadata,
    Column("run_id", Text, nullable=False),
    Column("i0", Integer, nullable=False),
    Column("n", Integer, nullable=False),
    Column("t0", TS, nullable=False),
    Column("t1", TS, nullable=False),
    Column("v", Text().with_variant(ARRAY(Float(53), dimensions=2), "postgresql"), nullable=False),
    PrimaryKeyConstraint("run_id", "i0"),
)
Index("flow_windows_end", flow_windows.c.run_id, (flow_windows.c.i0 + flow_windows.c.n))

#: ``flows``: the view of ``flow_windows`` one row per step — run_id, step, time and the
#: FLOW_VALUE_COLUMNS, as the wide table it replaces (and the dashboards query).
flows = table("flows", column("run_id"), column("step"), column("time"), *[column(c) for c in FLOW_VALUE_COLUMNS])

_PG_TIME = "r.start + ((w.i0 + u.k - 1) * r.step_s) * interval '1 second'"
# SQLite: times as SQLAlchemy writes them there ("YYYY-MM-DD HH:MM:SS.ffffff", UTC)
_SQLITE_TIME = ("strftime('%Y-%m-%d %H:%M:%S', r.start, '+' || ((w.i0 + j.key) * r.step_s) || ' seconds') "
                "|| substr(r.start, 20)")

FLOWS_VIEW = {
    "postgresql": f"""
CREATE VIEW flows AS
SELECT w.run_id, w.i0 + u.k::integer - 1 AS step, {_PG_TIME} AS time,
  {', '.join(f"u.{c}" for c in FLOW_VALUE_COLUMNS)}
FROM flow_windows w
JOIN runs r ON r.run_id = w.run_id
CROSS JOIN LATERAL unnest({', '.join(f"w.v[{j}:{j}]" for j in range(1, len(FLOW_VALUE_COLUMNS) + 1))})
  WITH ORDINALITY AS u({', '.join(FLOW_VALUE_COLUMNS)}, k)
""",
    "sqlite": f"""
CREATE VIEW IF NOT EXISTS flows AS
SELECT w.run_id AS run_id, w.i0 + j.key AS step, {_SQLITE_TIME} AS time,
  {', '.join(f"j.value ->> {i} AS {c}" for i, c in enumerate(FLOW_VALUE_COLUMNS))}
FROM flow_windows w
JOIN runs r ON r.run_id = w.run_id, json_each(w.v) AS j
""",
}

#: One row per element per *window* (a day, with automatic windows): the element's energy in each
#: step of the window as an array — ``double precision[]`` on PostgreSQL, a JSON array (text) on
#: SQLite.  One row carries a window's 1 440 values, so recording the Cape Town year writes 3 650
#: rows here instead of 5.26 million (bench/RESULTS.md).  ``t0``/``t1``: the simulated time of the
#: window's first and last step.  Read it through the ``element_flows`` view.
element_windows = Table(
    "element_windows", metadata,
    Column("run_id", Text, nullable=False),
    Column("element", Text, nullable=False),
    Column("i0", Integer, nullable=False),  # the window's first step
    Column("n", Integer, nullable=False),  # its steps (the array's length)
    Column("t0", TS, nullable=False),
    Column("t1", TS, nullable=False),
    Column("energy_j", Text().with_variant(ARRAY(Float(53)), "postgresql"), nullable=False),  # + onto the bus, − off it
    PrimaryKeyConstraint("run_id", "element", "i0"),
)
# which windows a new one overlaps (RunWriter trims what is there already): by the window's end
Index("element_windows_end", element_windows.c.run_id, (element_windows.c.i0 + element_windows.c.n))

#: ``element_flows``: the view of ``element_windows`` one row per element per step, the columns of
#: the long table it replaces (run_id, step, time, element, energy_j) — what the dashboards query.
ELEMENT_FLOWS_VIEW = {
    "postgresql": f"""
CREATE VIEW element_flows AS
SELECT w.run_id, w.i0 + u.k::integer - 1 AS step,
  {_PG_TIME} AS time,
  w.element, u.energy_j
FROM element_windows w
JOIN runs r ON r.run_id = w.run_id
CROSS JOIN LATERAL unnest(w.energy_j) WITH ORDINALITY AS u(energy_j, k)
""",
    "sqlite": f"""
CREATE VIEW IF NOT EXISTS element_flows AS
SELECT w.run_id AS run_id, w.i0 + j.key AS step, {_SQLITE_TIME} AS time,
  w.element AS element, j.value AS energy_j
FROM element_windows w
JOIN runs r ON r.run_id = w.run_id, json_each(w.energy_j) AS j
""",
}

elements = Table(
    "elements", metadata,
    Column("run_id", Text, nullable=False),
    Column("element", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("role", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "element"),
)

element_states = Table(
    "element_states", metadata,
    Column("run_id", Text, nullable=False),
    Column("step", Integer, nullable=False),  # the last step of the window
    Column("time", TS, nullable=False),
    Column("element", Text, nullable=False),
    Column("quantity", Text, nullable=False),  # temp_indoor, temp_water, …
    Column("value", Float(53), nullable=False),
    PrimaryKeyConstraint("run_id", "step", "element", "quantity"),
)

events = Table(
    "events", metadata,
    Column("run_id", Text, nullable=False),
    Column("seq", Integer, nullable=False),  # order in the run
    Column("time", TS, nullable=True),  # simulated, where known
    Column("wall", TS, nullable=False),
    Column("kind", Text, nullable=False),
    Column("element", Text, nullable=True),
    Column("actor", Text, nullable=True),
    Column("detail", Text, nullable=False, default="{}"),  # JSON
    PrimaryKeyConstraint("run_id", "seq"),
)

kpis = Table(
    "kpis", metadata,
    Column("run_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("value", Float(53), nullable=True),  # NULL: not defined (no PV: no self-consumption)
    Column("unit", Text, nullable=False, default=""),
    PrimaryKeyConstraint("run_id", "name"),
)
