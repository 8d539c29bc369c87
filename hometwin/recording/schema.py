"""The recorder's tables (SQLAlchemy Core): one metadata for SQLite and PostgreSQL.

Why this shape (docs/recording.md):

* ``flows`` is *wide* — one row per settled step, one column per home-level flow
  (:data:`hometwin.results.FLOW_COLUMNS`, joules in the step, plus the SoC).  Those flows are the
  same for every home, so a Grafana time-series query reads each column as a series, with no
  pivot, and one row costs one index entry.
* ``element_flows`` is *long* — one row per element per step.  Elements differ from home to home
  (and join or leave during a run); Grafana groups by ``element`` for the stacked loads.
* ``element_states`` holds window-end telemetry (indoor temperature, tank temperature …), one row
  per quantity.

Simulated time is a ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL (UTC stored); SQLite stores it as
ISO text in UTC.  Every table's primary key makes a write idempotent: a recorder that restarts
and writes a step again changes nothing (``INSERT … ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Column, DateTime, Float, Index, Integer, MetaData, PrimaryKeyConstraint,
                        Table, Text)

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

flows = Table(
    "flows", metadata,
    Column("run_id", Text, nullable=False),
    Column("step", Integer, nullable=False),
    Column("time", TS, nullable=False),
    *[Column(c, Float(53), nullable=(c == "soc")) for c in FLOW_VALUE_COLUMNS],
    PrimaryKeyConstraint("run_id", "step"),
    sqlite_with_rowid=False,  # SQLite: the rows live in the primary key's B-tree (half the file, faster)
)
Index("flows_run_time", flows.c.run_id, flows.c.time)

element_flows = Table(
    "element_flows", metadata,
    Column("run_id", Text, nullable=False),
    Column("step", Integer, nullable=False),
    Column("time", TS, nullable=False),
    Column("element", Text, nullable=False),
    Column("energy_j", Float(53), nullable=False),  # + onto the bus, − off it
    PrimaryKeyConstraint("run_id", "step", "element"),
    sqlite_with_rowid=False,
)
# Grafana's time filter on PostgreSQL; SQLite (the embedded default, written fastest) goes by the key
Index("element_flows_run_time", element_flows.c.run_id, element_flows.c.time).ddl_if(dialect="postgresql")

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
