"""Grafana dashboards as code: *Energy flows* (PostgreSQL, simulated time) and *Runtime* (Prometheus).

``hometwin dashboards --out DIR`` (hometwin/grafana_cli.py) writes Grafana provisioning (docs/grafana.md)::

    DIR/provisioning/datasources/hometwin.yaml   PostgreSQL (the recorder's database) + Prometheus
    DIR/provisioning/dashboards/hometwin.yaml    a file provider for DIR/dashboards
    DIR/dashboards/energy-flows.json, runtime.json

and the chart ships the same dashboards (helm/hometwin/dashboards/, written by
``hometwin dashboards --chart``; tests/test_dashboards.py checks they are the generator's output).

The dashboards are built with Grafana's own builder library, grafana-foundation-sdk.  It has no
builder for SQL datasources' queries, so :class:`SqlQuery` (a ``Dataquery`` variant, the SDK's
extension point) and :class:`SqlAnnotation` are the two small types added here.

Every SQL query reads the recorder's schema (the ``runs``, ``flows``, ``element_flows``,
``elements``, ``element_states``, ``events`` and ``kpis`` tables; docs/recording.md) and uses
only these Grafana macros and variables, which tests/test_dashboards.py expands to run each
query against a real PostgreSQL: ``$__timeFilter(col)``, ``$__timeGroupAlias(col, $__interval)``,
``${home:sqlstring}``, ``${run:sqlstring}``.  PromQL uses ``$home``, ``$element`` (regex
matchers, "All" = ``.*``) and ``$__rate_interval``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (DataSourceRef, DynamicConfigValue, VariableOption,
                                                     VariableRefresh, VariableSort)
from hometwin.units import J_PER_KWH

PG_UID, PG_TYPE = "hometwin-postgresql", "grafana-postgresql-datasource"
PROM_UID, PROM_TYPE = "hometwin-prometheus", "prometheus"
PG = DataSourceRef(type_val=PG_TYPE, uid=PG_UID)
PROM = DataSourceRef(type_val=PROM_TYPE, uid=PROM_UID)

ENERGY_UID, RUNTIME_UID = "hometwin-energy-flows", "hometwin-runtime"
#: file name → dashboard builder function (below); the chart's files are these.
FILES = {"energy-flows.json": "energy_flows", "runtime.json": "runtime"}
CHART_DASHBOARDS = Path(__file__).resolve().parents[1] / "helm" / "hometwin" / "dashboards"


# -- the SQL query type ----------------------------------------------------------------------------


class SqlQuery(cogvariants.Dataquery):
    """A query of Grafana's SQL datasources (PostgreSQL here), as Grafana saves it: raw SQL in
    code mode, ``time_series`` (a time column, then one series per value column, or per ``metric``
    value in long form) or ``table``."""

    def __init__(self, ref_id: str, raw_sql: str, fmt: str = "time_series"):
        self.ref_id, self.raw_sql, self.format = ref_id, raw_sql.strip(), fmt

    def to_json(self) -> dict[str, object]:
        return {"refId": self.ref_id, "datasource": {"type": PG_TYPE, "uid": PG_UID}, "editorMode": "code",
                "format": self.format, "rawQuery": True, "rawSql": self.raw_sql}


class Sql(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, ref_id: str, raw_sql: str, fmt: str = "time_series"):
        self._q = SqlQuery(ref_id, raw_sql, fmt)

    def build(self) -> SqlQuery:
        return self._q


class SqlAnnotation(cogbuilder.Builder[Any]):
    """An annotation query of a SQL datasource: columns ``time``, ``timeend`` (optional), ``text``, ``tags``."""

    def __init__(self, raw_sql: str):
        self._q = SqlQuery("Anno", raw_sql, "table")

    def build(self) -> SqlQuery:
        return self._q


# -- SQL ---------------------------------------------------------------------------------------------

RUN = "${run:sqlstring}"
HOME = "${home:sqlstring}"


def _per_step_power(expr: str) -> str:
    """Mean power [W] over a time bucket of a per-step energy column [J]."""
    return f"avg({expr}) / max(r.step_s)"


def _local(col: str, unit: str) -> str:
    """The start of the simulated local day / month of ``col`` (the run's time zone), as a timestamp."""
    return f"date_trunc('{unit}', {col} AT TIME ZONE r.timezone) AT TIME ZONE r.timezone"


SOURCES_SQL = f"""
SELECT $__timeGroupAlias(f.time, $__interval),
  {_per_step_power('f.pv_ac_j')} AS "PV (AC)",
  {_per_step_power('f.battery_discharge_j')} AS "battery discharge",
  {_per_step_power('f.grid_import_j')} AS "grid import",
  -{_per_step_power('f.battery_charge_j')} AS "battery charge",
  -{_per_step_power('f.grid_export_j')} AS "grid export",
  -{_per_step_power('f.loss_j')} AS "losses"
FROM flows f JOIN runs r ON r.run_id = f.run_id
WHERE f.run_id = {RUN} AND $__timeFilter(f.time)
GROUP BY 1 ORDER BY 1
"""

LOADS_SQL = f"""
SELECT $__timeGroupAlias(ef.time, $__interval), ef.element AS metric,
  {_per_step_power('ef.energy_j')} AS value
FROM element_flows ef
JOIN elements e ON e.run_id = ef.run_id AND e.element = ef.element
JOIN runs r ON r.run_id = ef.run_id
WHERE ef.run_id = {RUN} AND e.role = 'load' AND $__timeFilter(ef.time)
GROUP BY 1, 2 ORDER BY 1
"""


def _energy_per(unit: str) -> str:
    """Energy per simulated local day or month [kWh], one column per flow."""
    cols = ",\n  ".join(f'sum(f.{c}_j) / {J_PER_KWH} AS "{label}"' for c, label in (
        ("pv_ac", "PV (AC)"), ("load", "load"), ("grid_import", "grid import"), ("grid_export", "grid export"),
        ("battery_charge", "battery charge"), ("battery_discharge", "battery discharge"), ("loss", "losses"),
        ("unserved", "unserved")))
    return f"""
SELECT {_local('f.time', unit)} AS time,
  {cols}
FROM flows f JOIN runs r ON r.run_id = f.run_id
WHERE f.run_id = {RUN} AND $__timeFilter(f.time)
GROUP BY 1 ORDER BY 1
"""


SOC_SQL = f"""
SELECT $__timeGroupAlias(f.time, $__interval), avg(f.soc) * 100 AS "SoC"
FROM flows f
WHERE f.run_id = {RUN} AND f.soc IS NOT NULL AND $__timeFilter(f.time)
GROUP BY 1 ORDER BY 1
"""

TEMPERATURES_SQL = f"""
SELECT $__timeGroupAlias(s.time, $__interval), s.element || ' ' || s.quantity AS metric, avg(s.value) AS value
FROM element_states s
WHERE s.run_id = {RUN} AND s.quantity LIKE 'temp%' AND $__timeFilter(s.time)
GROUP BY 1, 2 ORDER BY 1
"""

PRICE_SQL = f"""
SELECT $__timeGroupAlias(f.time, $__interval),
  avg(f.price_import) AS "import price", avg(f.price_export) AS "export price"
FROM flows f
WHERE f.run_id = {RUN} AND $__timeFilter(f.time)
GROUP BY 1 ORDER BY 1
"""

COST_PER_DAY_SQL = f"""
SELECT {_local('f.time', 'day')} AS time,
  sum(f.cost) AS "energy cost",
  sum(f.grid_import_j * f.price_import) / {J_PER_KWH} AS "import",
  -sum(f.grid_export_j * f.price_export) / {J_PER_KWH} AS "export credit"
FROM flows f JOIN runs r ON r.run_id = f.run_id
WHERE f.run_id = {RUN} AND $__timeFilter(f.time)
GROUP BY 1 ORDER BY 1
"""

#: The same definitions as hometwin.results.Result.kpis, over the dashboard's time range.
SHARES_SQL = f"""
SELECT
  CASE WHEN sum(f.load_j) > 0 THEN 1 - sum(f.grid_import_j) / sum(f.load_j) END AS "self-sufficiency",
  CASE WHEN sum(f.pv_ac_j) > 0 THEN (sum(f.pv_ac_j) - sum(f.grid_export_j)) / sum(f.pv_ac_j) END
    AS "self-consumption"
FROM flows f
WHERE f.run_id = {RUN} AND $__timeFilter(f.time)
"""

#: Per element over the time range: energy each way, and what the energy it took would have cost
#: at the import price of its step (the grid: the home's actual energy cost).
ELEMENTS_SQL = f"""
WITH f AS MATERIALIZED (  -- the steps' prices once, hashed: a join of the two views step by step otherwise
  SELECT f.step, f.price_import, f.cost FROM flows f WHERE f.run_id = {RUN} AND $__timeFilter(f.time)
)
SELECT e.element, e.kind, e.role,
  sum(greatest(ef.energy_j, 0)) / {J_PER_KWH} AS "onto bus kWh",
  sum(greatest(-ef.energy_j, 0)) / {J_PER_KWH} AS "off bus kWh",
  CASE WHEN e.role = 'grid' THEN sum(f.cost)
       ELSE sum(greatest(-ef.energy_j, 0) * f.price_import) / {J_PER_KWH} END AS "cost"
FROM element_flows ef
JOIN elements e ON e.run_id = ef.run_id AND e.element = ef.element
JOIN f ON f.step = ef.step
WHERE ef.run_id = {RUN} AND $__timeFilter(ef.time)
GROUP BY e.element, e.kind, e.role ORDER BY e.role, e.element
"""

#: The runs of the home, each with a link that opens this dashboard on it over its simulated span.
RUNS_SQL = f"""
SELECT r.run_id, r.status, r.runtime, r.start AS "simulated start",
  r.start + make_interval(secs => r.n_steps * r.step_s) AS "simulated end",
  r.steps_recorded AS "steps recorded", r.n_steps AS "steps", r.version, r.started_at AS "recorded at",
  (extract(epoch FROM r.start) * 1000)::bigint AS from_ms,
  (extract(epoch FROM r.start + make_interval(secs => r.n_steps * r.step_s)) * 1000)::bigint AS to_ms
FROM runs r
WHERE r.home = {HOME}
ORDER BY r.started_at DESC
"""

KPIS_SQL = f"""
SELECT k.name, k.value, k.unit FROM kpis k WHERE k.run_id = {RUN} ORDER BY k.name
"""

#: Grid outages: runs of steps with the grid unavailable (gaps and islands), each one region.
OUTAGES_SQL = f"""
SELECT min(o.time) AS time, max(o.time) + make_interval(secs => max(r.step_s)) AS timeend,
  'grid outage (' || count(*) || ' steps)' AS text, 'outage' AS tags
FROM (SELECT f.run_id, f.time, f.step - row_number() OVER (ORDER BY f.step) AS island
      FROM flows f WHERE f.run_id = {RUN} AND f.grid_available < 0.5 AND $__timeFilter(f.time)) o
JOIN runs r ON r.run_id = o.run_id
GROUP BY o.island ORDER BY 1
"""

#: The run's recorded events (switches, property sets, pauses, plans …), and where it starts and
#: ends (a run without any event still shows its span).
EVENTS_SQL = f"""
SELECT ev.time AS time,
  ev.kind || coalesce(' ' || ev.element, '') || coalesce(' by ' || ev.actor, '') || ': ' || ev.detail AS text,
  ev.kind AS tags
FROM events ev
WHERE ev.run_id = {RUN} AND ev.time IS NOT NULL AND $__timeFilter(ev.time)
UNION ALL
SELECT t.time, t.text, 'run' AS tags
FROM runs r, LATERAL (VALUES
  (r.start, 'run ' || r.run_id || ' starts (' || r.runtime || ', version ' || r.version || ')'),
  (r.start + make_interval(secs => r.n_steps * r.step_s), 'run ' || r.run_id || ' ends: ' || r.status
   || ', ' || r.steps_recorded || ' of ' || r.n_steps || ' steps recorded')) AS t(time, text)
WHERE r.run_id = {RUN} AND $__timeFilter(t.time)
ORDER BY 1
"""

HOMES_SQL = "SELECT DISTINCT home FROM runs ORDER BY 1"
RUN_VARIABLE_SQL = f"""
SELECT run_id AS __value, run_id || ' (' || status || ')' AS __text FROM runs WHERE home = {HOME}
ORDER BY started_at DESC
"""

# -- PromQL ------------------------------------------------------------------------------------------

SEL = 'home=~"$home", element=~"$element"'


def _or_zero(expr: str, by: str) -> str:
    """``expr``, or 0 for every (home, element) that is running but has none: a counter that no
    event has created yet (no rejected message) reads as 0, not as "no data"."""
    return f"({expr}) or (sum by ({by}) (rate(hometwin_ticks_total{{{SEL}}}[$__rate_interval])) * 0)"


PROMQL = {
    "ticks": f"sum by (home, element) (rate(hometwin_ticks_total{{{SEL}}}[$__rate_interval]))",
    "steps": 'sum by (home) (rate(hometwin_steps_total{home=~"$home", element="clock"}[$__rate_interval]))',
    "lag": 'max by (home) (hometwin_clock_lag_seconds{home=~"$home"})',
    "latency_p50": "histogram_quantile(0.5, sum by (home, element, le) "
                   f"(rate(hometwin_window_latency_seconds_bucket{{{SEL}}}[$__rate_interval])))",
    "latency_p95": "histogram_quantile(0.95, sum by (home, element, le) "
                   f"(rate(hometwin_window_latency_seconds_bucket{{{SEL}}}[$__rate_interval])))",
    "stale": _or_zero(f"sum by (home, element) (rate(hometwin_elements_stale_total{{{SEL}}}[$__rate_interval]))",
                      "home, element"),
    "rejected": _or_zero("sum by (home, element) "
                         f"(rate(hometwin_messages_rejected_total{{{SEL}}}[$__rate_interval]))", "home, element"),
    "pv_ac": f'sum by (home) (hometwin_pv_ac_energy_joules_total{{home=~"$home"}}) / {J_PER_KWH:.0f}',
    "home_energy": f'sum by (home, flow) (hometwin_home_energy_joules_total{{home=~"$home"}}) / {J_PER_KWH:.0f}',
    "sim_time": 'max by (home) (hometwin_simulated_time_seconds{home=~"$home"}) * 1000',  # the furthest settled
}


def _prom(ref: str, key: str, legend: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().ref_id(ref).expr(PROMQL[key]).legend_format(legend).range()


# -- panels --------------------------------------------------------------------------------------


def _ts(title: str, unit: str, *targets: Any, desc: str = "", stacked: bool = False, bars: bool = False,
        h: int = 8, w: int = 12) -> timeseries.Panel:
    p = timeseries.Panel().title(title).description(desc).unit(unit).height(h).span(w)
    for t in targets:
        p = p.with_target(t)
    if stacked:
        p = p.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL)).fill_opacity(60)
    if bars:
        p = p.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80).bar_alignment(common.BarAlignment.AFTER)
    return p


def _query_variable(name: str, label: str, ds: DataSourceRef, query: str | dict[str, object],
                    all_: bool = False) -> dash.QueryVariable:
    v = (dash.QueryVariable(name).label(label).datasource(ds).query(query)
         .refresh(VariableRefresh.ON_DASHBOARD_LOAD).sort(VariableSort.ALPHABETICAL_ASC))
    if all_:
        v = v.include_all(True).multi(True).all_value(".*").current(VariableOption(text="All", value="$__all"))
    return v


def energy_flows() -> dash.Dashboard:
    link = {"title": "open this run over its simulated span",
            "url": f"/d/{ENERGY_UID}?var-home=${{home}}&var-run=${{__data.fields.run_id}}"
                   "&from=${__data.fields.from_ms}&to=${__data.fields.to_ms}"}
    d = (dash.Dashboard("hometwin · Energy flows").uid(ENERGY_UID).tags(["hometwin"])
         .description("Simulated energy flows of one recorded run (the recorder's PostgreSQL): simulated time "
                      "on the x axis — pick a run in the table to open its span.")
         .time("2025-01-01T00:00:00.000Z", "2025-01-03T00:00:00.000Z").timezone("browser").editable()
         .with_variable(_query_variable("home", "home", PG, HOMES_SQL))
         .with_variable(_query_variable("run", "run", PG, RUN_VARIABLE_SQL.strip()))
         .annotation(dash.AnnotationQuery().name("grid outages").datasource(PG).enable(True)
                     .icon_color("red").target(SqlAnnotation(OUTAGES_SQL)))
         .annotation(dash.AnnotationQuery().name("events").datasource(PG).enable(True)
                     .icon_color("blue").target(SqlAnnotation(EVENTS_SQL))))
    d = d.with_panel(table.Panel().title("Runs of $home").datasource(PG).height(6).span(24)
                     .description("Click a run to open it over its simulated span.")
                     .with_target(Sql("A", RUNS_SQL, "table"))
                     .override_by_name("run_id", [DynamicConfigValue(id_val="links", value=[link])])
                     .override_by_regexp("from_ms|to_ms", [DynamicConfigValue(id_val="custom.hidden", value=True)]))
    d = d.with_panel(_ts("Power: sources (+) and uses (−)", "watt",
                         Sql("A", SOURCES_SQL), Sql("B", LOADS_SQL),
                         desc="Mean power per interval: PV on the AC side, battery and grid stacked above zero; "
                              "each load (by element), battery charge, export and losses below.",
                         stacked=True, h=10, w=24).datasource(PG))
    d = d.with_panel(_ts("Energy per simulated day", "kwatth", Sql("A", _energy_per("day")),
                         desc="Local days of the home's time zone.", bars=True).datasource(PG))
    d = d.with_panel(_ts("Energy per simulated month", "kwatth", Sql("A", _energy_per("month")),
                         bars=True).datasource(PG))
    d = d.with_panel(_ts("Battery state of charge", "percent", Sql("A", SOC_SQL), h=7, w=8)
                     .min(0).max(100).datasource(PG))
    d = d.with_panel(_ts("Indoor and tank temperatures", "celsius", Sql("A", TEMPERATURES_SQL), h=7, w=8,
                         desc="Window-end telemetry of the elements that have it (geyser tank, rooms).")
                     .datasource(PG))
    d = d.with_panel(_ts("Price per kWh", "none", Sql("A", PRICE_SQL), h=7, w=8,
                         desc="Import and export price per kWh (the run's currency).").datasource(PG))
    d = d.with_panel(_ts("Cost per simulated day", "none", Sql("A", COST_PER_DAY_SQL), bars=True,
                         desc="Energy cost (import − export credit) per local day, in the run's currency; "
                              "fixed daily charges are in the KPIs.").datasource(PG))
    d = d.with_panel(stat.Panel().title("Self-sufficiency and self-consumption").datasource(PG).unit("percentunit")
                     .description("1 − import/load and (PV − export)/PV over the time range (as kpis.json).")
                     .with_target(Sql("A", SHARES_SQL, "table")).decimals(1).height(8).span(12))
    d = d.with_panel(table.Panel().title("Energy and cost by element").datasource(PG).height(9).span(12)
                     .description("Over the time range; cost: what each element's energy would have cost at "
                                  "its step's import price (the grid: the home's actual energy cost).")
                     .with_target(Sql("A", ELEMENTS_SQL, "table")).decimals(3))
    d = d.with_panel(table.Panel().title("KPIs of the run").datasource(PG).height(9).span(12)
                     .with_target(Sql("A", KPIS_SQL, "table")).decimals(3))
    return d


def runtime() -> dash.Dashboard:
    d = (dash.Dashboard("hometwin · Runtime").uid(RUNTIME_UID).tags(["hometwin"])
         .description("The runtime's health from Prometheus (wall time): ticks, lag, latency, stale and "
                      "rejected messages by home and element.")
         .time("now-15m", "now").refresh("5s").timezone("browser").editable()
         .with_variable(_query_variable("home", "home", PROM,
                                        {"query": "label_values(hometwin_ticks_total, home)", "refId": "home"},
                                        all_=True))
         .with_variable(_query_variable("element", "element", PROM,
                                        {"query": 'label_values(hometwin_ticks_total{home=~"$home"}, element)',
                                         "refId": "element"}, all_=True)))
    d = d.with_panel(_ts("Ticks per second", "ops", _prom("A", "ticks", "{{home}} {{element}}"),
                         desc="Windows each service processed per wall second.").datasource(PROM))
    d = d.with_panel(_ts("Simulated steps per second", "ops", _prom("A", "steps", "{{home}}"),
                         desc="The clock's settled steps per wall second.").datasource(PROM))
    d = d.with_panel(_ts("Clock lag", "s", _prom("A", "lag", "{{home}}"),
                         desc="How far a paced clock is behind wall time (0 at speed max).", w=8).datasource(PROM))
    d = d.with_panel(_ts("Window latency (tick → settle)", "s", _prom("A", "latency_p50", "p50 {{home}} {{element}}"),
                         _prom("B", "latency_p95", "p95 {{home}} {{element}}"), w=16).datasource(PROM))
    d = d.with_panel(_ts("Stale windows per second", "ops", _prom("A", "stale", "{{home}} {{element}}"),
                         desc="Windows the inverter settled without an element's packet (by the inverter's "
                              "element label).").datasource(PROM))
    d = d.with_panel(_ts("Rejected messages per second", "ops", _prom("A", "rejected", "{{home}} {{element}}"),
                         desc="Inbound messages a service rejected (logged, dropped).").datasource(PROM))
    d = d.with_panel(_ts("Home energy since start [kWh]", "kwatth", _prom("A", "home_energy", "{{home}} {{flow}}"),
                         _prom("B", "pv_ac", "{{home}} PV (AC)"),
                         desc="The inverter's ledger; after the run ends these equal its kpis.json.",
                         w=16).datasource(PROM))
    d = d.with_panel(_ts("Simulated time reached", "dateTimeAsIso", _prom("A", "sim_time", "{{home}}"), w=8)
                     .datasource(PROM))
    return d


# -- files -------------------------------------------------------------------------------------------


def dashboard_json(name: str) -> str:
    """The JSON of one dashboard (``FILES`` key), as written to disk."""
    built = globals()[FILES[name]]().build()
    return json.dumps(json.loads(json.dumps(built, cls=JSONEncoder)), indent=2, sort_keys=True) + "\n"


def datasources_yaml(postgres_host: str, database: str, user: str, prometheus_url: str,
                     scrape_interval: str = "1s") -> str:
    """Grafana datasource provisioning; the password comes from Grafana's environment
    (``$HOMETWIN_GRAFANA_DB_PASSWORD``), never from this file."""
    doc = {"apiVersion": 1, "datasources": [
        {"name": "hometwin PostgreSQL", "uid": PG_UID, "type": PG_TYPE, "access": "proxy", "url": postgres_host,
         "user": user, "jsonData": {"database": database, "sslmode": "prefer", "postgresVersion": 1500,
                                    "timescaledb": False, "timeInterval": "1m"},
         "secureJsonData": {"password": "$HOMETWIN_GRAFANA_DB_PASSWORD"}, "editable": False},
        {"name": "hometwin Prometheus", "uid": PROM_UID, "type": PROM_TYPE, "access": "proxy",
         "url": prometheus_url, "jsonData": {"timeInterval": scrape_interval}, "editable": False},
    ]}
    return yaml.safe_dump(doc, sort_keys=False)


def dashboards_yaml(path: Path) -> str:
    doc = {"apiVersion": 1, "providers": [
        {"name": "hometwin", "folder": "hometwin", "type": "file", "disableDeletion": True,
         "allowUiUpdates": False, "options": {"path": str(path)}}]}
    return yaml.safe_dump(doc, sort_keys=False)


def write_dashboards(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in FILES:
        (folder / name).write_text(dashboard_json(name))
        out.append(folder / name)
    return out
