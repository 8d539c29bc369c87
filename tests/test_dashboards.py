"""The generated Grafana dashboards, every query executed against the real datasources.

* *Energy flows*: every panel, variable and annotation query runs against a real PostgreSQL
  holding a recorded ``hometwin run --db`` of the Cape Town home (2 days), with Grafana's macros
  expanded here as Grafana's PostgreSQL datasource expands them; the totals they show equal the
  run's ``kpis.json`` (written by the run itself, not by the dashboards).
* *Runtime*: every PromQL query runs against a real Prometheus (Debian's) scraping a live
  ``hometwin up`` on loopback every second; the home's energy counters it scraped last equal the
  run's KPIs (the last window is seen before the services exit).

A query that returns nothing fails.  The chart's dashboards are the generator's output.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from hometwin import grafana
from hometwin.runtime.router import free_port, free_ports
from runtime_support import CAPE_TOWN, ROOT, Up, wait_until
from conftest import WAIT_S

KWH = 3.6e6
DAYS = 2
#: kpis.json energy totals → the Energy-per-day panel's column of the same flow
DAILY = {"pv_kwh": "PV (AC)", "load_kwh": "load", "grid_import_kwh": "grid import",
         "grid_export_kwh": "grid export", "battery_charge_kwh": "battery charge",
         "battery_discharge_kwh": "battery discharge", "losses_kwh": "losses", "unserved_kwh": "unserved"}


def dashboard(name: str) -> dict[str, Any]:
    return json.loads(grafana.dashboard_json(name))


def panel(d: dict[str, Any], title: str) -> dict[str, Any]:
    (p,) = [p for p in d["panels"] if p["title"] == title]
    return p


def queries(d: dict[str, Any], field: str) -> list[tuple[str, str]]:
    """(where, query) of every panel target, variable and annotation of a dashboard."""
    out = [(f"panel {p['title']!r} {t['refId']}", t[field]) for p in d["panels"] for t in p["targets"]]
    for v in d["templating"]["list"]:
        q = v["query"]
        out.append((f"variable {v['name']}", q if isinstance(q, str) else q["query"]))
    for a in d.get("annotations", {}).get("list", []):
        if a.get("target") and field in a["target"]:
            out.append((f"annotation {a['name']!r}", a["target"][field]))
    return out


# -- PostgreSQL: the Energy flows dashboard ------------------------------------------------------


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def expand_sql(sql: str, variables: dict[str, str], t_from: dt.datetime, t_to: dt.datetime, interval_s: int) -> str:
    """Grafana's PostgreSQL macros as its datasource expands them ($__timeGroup: epoch seconds,
    floored to the interval; $__timeFilter: BETWEEN the range's ends) and ``${var:sqlstring}``."""
    sql = re.sub(r"\$__timeGroupAlias\(([^,()]+),\s*\$__interval\)",
                 lambda m: f'floor(extract(epoch from {m[1]})/{interval_s})*{interval_s} AS "time"', sql)
    sql = re.sub(r"\$__timeFilter\(([^()]+)\)",
                 lambda m: f"{m[1]} BETWEEN '{t_from.isoformat()}' AND '{t_to.isoformat()}'", sql)
    for name, value in variables.items():
        sql = sql.replace(f"${{{name}:sqlstring}}", sql_literal(value))
    assert "$" not in sql, f"a macro or variable left unexpanded: {sql}"
    return sql


class Recorded:
    """A recorded ``hometwin run`` in PostgreSQL, and how to run a dashboard query against it."""

    def __init__(self, dsn: str, kpis: dict[str, float], run_id: str, start: dt.datetime, end: dt.datetime):
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True)
        self.kpis, self.run_id, self.start, self.end = kpis, run_id, start, end
        self.loads: set[str] = set()

    @classmethod
    def of(cls, url: str, kpis: dict[str, float], roles: dict[str, str]) -> "Recorded":
        """The one run recorded in the database at ``url`` (a SQLAlchemy URL over a Unix socket)."""
        from sqlalchemy.engine import make_url

        u = make_url(url)
        rec = cls(f"host={u.query['host']} user={u.username} dbname={u.database}", kpis, "", dt.datetime.min,
                  dt.datetime.min)
        rec.loads = {n for n, role in roles.items() if role == "load"}
        ((run_id, start, n, step_s),) = rec.conn.execute("SELECT run_id, start, n_steps, step_s FROM runs").fetchall()
        assert n == DAYS * 86400 // step_s
        rec.run_id, rec.start, rec.end = run_id, start, start + dt.timedelta(seconds=n * step_s)
        return rec

    def query(self, sql: str, interval_s: int = 3600) -> tuple[list[str], list[tuple]]:
        cur = self.conn.execute(expand_sql(sql, {"home": "cape-town", "run": self.run_id},
                                           self.start, self.end, interval_s))
        return [c.name for c in cur.description], cur.fetchall()

    def frame(self, sql: str, interval_s: int = 3600) -> list[dict[str, Any]]:
        cols, rows = self.query(sql, interval_s)
        return [dict(zip(cols, r)) for r in rows]


@pytest.fixture(scope="module")
def recorded(pg_server: Any, tmp_path_factory: Any) -> Iterator[Recorded]:
    """``hometwin run --db`` of 2 days of Cape Town into a fresh database of the session's
    PostgreSQL (tests/pgserver.py, rec's), and the run's own kpis.json."""
    url = pg_server.new_database()
    out = tmp_path_factory.mktemp("run")
    proc = subprocess.run([sys.executable, "-m", "hometwin.cli", "run", "-f", str(CAPE_TOWN), "--until", f"{DAYS}d",
                           "--out", str(out), "-q", "--db", url], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = json.loads((out / "kpis.json").read_text())
    rec = Recorded.of(url, written["kpis"], written["meta"]["roles"])
    yield rec
    rec.conn.close()


def test_every_sql_query_of_energy_flows_returns_rows(recorded: Recorded) -> None:
    d = dashboard("energy-flows.json")
    found = queries(d, "rawSql")
    assert len(found) >= 16, found
    for where, sql in found:
        for interval_s in (60, 3600):
            cols, rows = recorded.query(sql, interval_s)
            assert rows, f"{where} returned nothing (interval {interval_s} s)"
            assert all(r[0] is not None for r in rows), where
            # a time-series query: its time column is inside the run's span
            if cols[0] == "time":
                times = [r[0] if isinstance(r[0], dt.datetime) else
                         dt.datetime.fromtimestamp(float(r[0]), dt.timezone.utc) for r in rows]
                assert recorded.start <= min(times) and max(times) <= recorded.end, where


def test_variables_pick_the_home_and_its_run(recorded: Recorded) -> None:
    d = dashboard("energy-flows.json")
    var = {v["name"]: v["query"] for v in d["templating"]["list"]}
    assert recorded.query(var["home"])[1] == [("cape-town",)]
    cols, rows = recorded.query(var["run"])
    assert cols == ["__value", "__text"] and rows[0][0] == recorded.run_id and "finished" in rows[0][1]


def test_energy_per_day_and_month_sum_to_the_kpis(recorded: Recorded) -> None:
    d = dashboard("energy-flows.json")
    for title, n_rows in (("Energy per simulated day", DAYS), ("Energy per simulated month", 1)):
        (target,) = panel(d, title)["targets"]
        rows = recorded.frame(target["rawSql"])
        assert len(rows) == n_rows, (title, rows)
        for kpi, col in DAILY.items():
            assert sum(r[col] for r in rows) == pytest.approx(recorded.kpis[kpi], abs=1e-6), (title, kpi)
    # local days: the first bar starts at local midnight of the home's time zone (Africa/Johannesburg, UTC+2)
    (target,) = panel(d, "Energy per simulated day")["targets"]
    first = recorded.frame(target["rawSql"])[0]["time"]
    assert first == dt.datetime(2025, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def test_power_flows_integrate_to_the_kpis(recorded: Recorded) -> None:
    """Mean power per interval × the interval = the energy: at one step per point and at one hour."""
    d = dashboard("energy-flows.json")
    sources, loads = (t["rawSql"] for t in panel(d, "Power: sources (+) and uses (−)")["targets"])
    for interval_s in (60, 3600):
        rows = recorded.frame(sources, interval_s)
        assert len(rows) == DAYS * 86400 // interval_s
        for kpi, col, sign in (("pv_kwh", "PV (AC)", 1), ("grid_import_kwh", "grid import", 1),
                               ("battery_discharge_kwh", "battery discharge", 1),
                               ("battery_charge_kwh", "battery charge", -1), ("grid_export_kwh", "grid export", -1),
                               ("losses_kwh", "losses", -1)):
            assert sign * sum(r[col] for r in rows) * interval_s / KWH == pytest.approx(recorded.kpis[kpi], abs=1e-6)
        cols, rows = recorded.query(loads, interval_s)
        assert cols == ["time", "metric", "value"]
        assert {r[1] for r in rows} == recorded.loads and {"oven", "geyser", "fridge"} <= recorded.loads
        assert all(r[2] <= 1e-9 for r in rows)  # loads take energy off the bus: below zero
        served = -sum(r[2] for r in rows) * interval_s / KWH
        assert served == pytest.approx(recorded.kpis["load_kwh"] - recorded.kpis["unserved_kwh"], abs=1e-6)


def test_soc_temperatures_and_prices_are_physical(recorded: Recorded) -> None:
    d = dashboard("energy-flows.json")
    soc = [r["SoC"] for r in recorded.frame(panel(d, "Battery state of charge")["targets"][0]["rawSql"], 60)]
    assert len(soc) == DAYS * 1440 and 0 <= min(soc) < max(soc) <= 100
    temps = recorded.frame(panel(d, "Indoor and tank temperatures")["targets"][0]["rawSql"])
    assert {"geyser temp_water"} <= {r["metric"] for r in temps}
    assert all(5 < r["value"] < 95 for r in temps), temps
    prices = recorded.frame(panel(d, "Price per kWh")["targets"][0]["rawSql"], 60)
    # the Cape Town tariff: 2.30 off-peak … 6.60 peak (ZAR/kWh); export is paid less than import
    assert min(r["import price"] for r in prices) == pytest.approx(2.30)
    assert max(r["import price"] for r in prices) == pytest.approx(6.60)
    assert all(r["export price"] <= r["import price"] for r in prices)


def test_cost_shares_and_the_element_table_match_the_kpis(recorded: Recorded) -> None:
    d, k = dashboard("energy-flows.json"), recorded.kpis
    cost = recorded.frame(panel(d, "Cost per simulated day")["targets"][0]["rawSql"])
    assert len(cost) == DAYS
    assert sum(r["energy cost"] for r in cost) == pytest.approx(k["energy_cost"], abs=1e-6)
    for r in cost:  # energy cost = import − export credit, each day
        assert r["energy cost"] == pytest.approx(r["import"] + r["export credit"], abs=1e-6)
    (shares,) = recorded.frame(panel(d, "Self-sufficiency and self-consumption")["targets"][0]["rawSql"])
    assert shares["self-sufficiency"] == pytest.approx(k["self_sufficiency"], abs=1e-9)
    assert shares["self-consumption"] == pytest.approx(k["self_consumption"], abs=1e-9)
    table = {r["element"]: r for r in recorded.frame(panel(d, "Energy and cost by element")["targets"][0]["rawSql"])}
    assert table["roof"]["onto bus kWh"] == pytest.approx(k["pv_dc_kwh"], abs=1e-6)  # the array's DC
    assert table["grid"]["onto bus kWh"] == pytest.approx(k["grid_import_kwh"], abs=1e-6)
    assert table["grid"]["off bus kWh"] == pytest.approx(k["grid_export_kwh"], abs=1e-6)
    assert table["grid"]["cost"] == pytest.approx(k["energy_cost"], abs=1e-6)
    loads = [r for r in table.values() if r["role"] == "load"]
    assert sum(r["off bus kWh"] for r in loads) == pytest.approx(k["load_kwh"] - k["unserved_kwh"], abs=1e-6)
    assert all(r["cost"] > 0 for r in loads)
    kpis = {r["name"]: r["value"] for r in recorded.frame(panel(d, "KPIs of the run")["targets"][0]["rawSql"])}
    assert kpis["grid_import_kwh"] == pytest.approx(k["grid_import_kwh"], abs=1e-9)


def test_runs_table_links_each_run_to_its_simulated_span(recorded: Recorded) -> None:
    d = dashboard("energy-flows.json")
    p = panel(d, "Runs of $home")
    (row,) = recorded.frame(p["targets"][0]["rawSql"])
    assert row["run_id"] == recorded.run_id and row["status"] == "finished" and row["steps recorded"] == DAYS * 1440
    assert row["from_ms"] == recorded.start.timestamp() * 1000 and row["to_ms"] == recorded.end.timestamp() * 1000
    (link,) = [prop["value"][0] for o in p["fieldConfig"]["overrides"] for prop in o["properties"]
               if prop["id"] == "links"]
    assert "from=${__data.fields.from_ms}" in link["url"] and f"/d/{grafana.ENERGY_UID}?" in link["url"]


def test_outages_and_the_runs_span_are_annotations(recorded: Recorded) -> None:
    d = dashboard("energy-flows.json")
    anno = {a["name"]: a["target"]["rawSql"] for a in d["annotations"]["list"] if a.get("target")}
    outages = recorded.frame(anno["grid outages"])
    # two load-shedding slots a day (02:00–04:30 and 18:00–20:30 local): 2.5 h each
    assert len(outages) == 2 * DAYS
    hours = sum((r["timeend"] - r["time"]).total_seconds() for r in outages) / 3600
    assert hours == pytest.approx(recorded.kpis["outage_hours"]) == 5.0 * DAYS
    local = dt.timezone(dt.timedelta(hours=2))
    assert outages[0]["time"].astimezone(local).time() == dt.time(2, 0)
    events = recorded.frame(anno["events"])
    assert [e["time"] for e in events if e["tags"] == "run"] == [recorded.start, recorded.end]
    # an event the recorder writes shows as one more annotation, at its simulated time
    when = recorded.start + dt.timedelta(hours=7)
    recorded.conn.execute("INSERT INTO events (run_id, seq, time, wall, kind, element, actor, detail) "
                          "VALUES (%s, 1000000, %s, now(), 'set', 'geyser', 'controller', '{\"setpoint_c\": 55}')",
                          (recorded.run_id, when))
    try:
        got = [e for e in recorded.frame(anno["events"]) if e["tags"] == "set"]
        assert [(e["time"], e["text"]) for e in got] == [(when, 'set geyser by controller: {"setpoint_c": 55}')]
    finally:
        recorded.conn.execute("DELETE FROM events WHERE run_id = %s AND seq = 1000000", (recorded.run_id,))


# -- Prometheus: the Runtime dashboard -------------------------------------------------------------

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
RATE_INTERVAL = "4s"  # Grafana's $__rate_interval at a 1 s scrape interval: 4 × the interval


class Prometheus:
    def __init__(self, root: Path, targets: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
               "scrape_configs": [{"job_name": "hometwin", "static_configs": [{"targets": targets}]}]}
        (root / "prometheus.yml").write_text(yaml.safe_dump(cfg))
        self.log = (root / "prometheus.log").open("w")
        self.proc = subprocess.Popen([PROMETHEUS, f"--config.file={root / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={root / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: urllib.request.urlopen(f"{self.url}/-/ready", timeout=2).status == 200, WAIT_S,
                   "Prometheus to be ready")

    def get(self, path: str, **params: Any) -> Any:
        q = urllib.parse.urlencode(params, doseq=True)
        body = json.loads(urllib.request.urlopen(f"{self.url}{path}?{q}", timeout=30).read())
        assert body["status"] == "success", body
        return body["data"]

    def range(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        return self.get("/api/v1/query_range", query=expr, start=start, end=end, step="1s")["result"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def expand_promql(expr: str, home: str = "cape-town") -> str:
    """The Runtime dashboard's variables: one home, every element ("All" is ``.*``)."""
    out = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$home", home).replace("$element", ".*")
    assert "$" not in out, out
    return out


def last(series: dict[str, Any]) -> float:
    return float(series["values"][-1][1])


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: Any, pg_server: Any) -> Iterator[dict[str, Any]]:
    """A live ``hometwin up`` (2 days of Cape Town, paced so that it lasts ~12 s) scraped every
    second by a real Prometheus and recorded by its recorder into PostgreSQL; the run's result,
    its wall span, the Prometheus and the recording."""
    db_url = pg_server.new_database()
    root = tmp_path_factory.mktemp("prometheus")
    n_procs = 16  # ≥ the home's processes (elements + clock): one metrics port each
    base = free_ports(n_procs)
    prom = Prometheus(root, [f"127.0.0.1:{base + i}" for i in range(n_procs)])
    try:
        up = Up(None, metrics_port=base, until_s=DAYS * 86400, speed="14400", db_url=db_url)
        t0 = time.time()
        up.start()
        result, logs = up.finish(600)
        t1 = time.time()
        assert result is not None and up.launcher.ended_early is None, logs[-3000:]
        assert len(up.launcher.procs) <= n_procs  # every process's port was a target
        recorded = Recorded.of(db_url, result.kpis(), result.meta["roles"])
        yield {"prom": prom, "kpis": result.kpis(), "start": t0, "end": t1 + 2, "up": up, "recorded": recorded}
        recorded.conn.close()
    finally:
        prom.stop()


def test_every_promql_query_of_runtime_returns_series(scraped: dict[str, Any]) -> None:
    prom, start, end = scraped["prom"], scraped["start"], scraped["end"]
    d = dashboard("runtime.json")
    found = [(w, q) for w, q in queries(d, "expr") if not w.startswith("variable")]
    assert len(found) >= 10, found
    for where, expr in found:
        series = prom.range(expand_promql(expr), start, end)
        assert series, f"{where} returned nothing: {expand_promql(expr)}"
        # NaN: a quantile over no windows (a service idle in that rate window) — Grafana leaves a gap
        values = [float(v) for s in series for _, v in s["values"] if v != "NaN"]
        assert values and all(math.isfinite(v) and v >= 0 for v in values), where
        assert all(s["metric"].get("home") == "cape-town" for s in series), (where, series[0]["metric"])
    # the elements' labels come from the services themselves: every process is there, by name
    ticks = prom.range(expand_promql(grafana.PROMQL["ticks"]), start, end)
    assert {"clock", "inverter", "roof", "battery", "grid", "geyser", "oven"} <= {s["metric"]["element"] for s in ticks}
    assert max(float(v) for s in ticks for _, v in s["values"]) > 0
    latency = prom.range(expand_promql(grafana.PROMQL["latency_p95"]), start, end)
    assert 0 < max(float(v) for s in latency for _, v in s["values"] if v != "NaN") < 60
    # a clean run: nothing rejected, nothing stale (zeros, not "no data")
    for key in ("stale", "rejected"):
        got = prom.range(expand_promql(grafana.PROMQL[key]), start, end)
        assert got and max(float(v) for s in got for _, v in s["values"]) == 0.0, key


def test_the_last_window_is_scraped_and_sums_by_home_to_the_kpis(scraped: dict[str, Any]) -> None:
    """The services lingered for one more scrape: the home's counters Prometheus has last are the
    run's totals (kpis.json of the same run), and the clock's simulated time is the run's end."""
    prom, k = scraped["prom"], scraped["kpis"]
    start, end = scraped["start"], scraped["end"]
    (pv,) = prom.range(expand_promql(grafana.PROMQL["pv_ac"]), start, end)
    assert last(pv) == pytest.approx(k["pv_kwh"], rel=1e-9)
    flows = {s["metric"]["flow"]: last(s) for s in prom.range(expand_promql(grafana.PROMQL["home_energy"]), start, end)}
    for flow, kpi in (("load", "load_kwh"), ("grid_import", "grid_import_kwh"), ("grid_export", "grid_export_kwh"),
                      ("battery_charge", "battery_charge_kwh"), ("battery_discharge", "battery_discharge_kwh"),
                      ("curtailed", "curtailed_kwh"), ("unserved", "unserved_kwh"), ("loss", "losses_kwh")):
        assert flows[flow] == pytest.approx(k[kpi], rel=1e-9, abs=1e-9), flow
    # the PV array's own counter is DC: summed by home, the run's pv_dc_kwh
    (dc,) = prom.range('sum by (home) (hometwin_pv_dc_energy_joules_total{home="cape-town"}) / 3.6e6', start, end)
    assert last(dc) == pytest.approx(k["pv_dc_kwh"], rel=1e-9)
    (sim,) = prom.range(expand_promql(grafana.PROMQL["sim_time"]), start, end)
    want = dt.datetime(2025, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))) + dt.timedelta(days=DAYS)
    assert last(sim) == want.timestamp() * 1000


def test_runtime_variables_list_the_home_and_its_elements(scraped: dict[str, Any]) -> None:
    prom = scraped["prom"]
    d = dashboard("runtime.json")
    var = {v["name"]: v["query"]["query"] for v in d["templating"]["list"]}
    m = re.fullmatch(r"label_values\((.*), (\w+)\)", var["home"])
    assert m and "cape-town" in prom.get(f"/api/v1/label/{m[2]}/values", **{"match[]": m[1]})
    m = re.fullmatch(r"label_values\((.*), (\w+)\)", expand_promql(var["element"]))
    assert m and {"clock", "inverter", "roof"} <= set(prom.get(f"/api/v1/label/{m[2]}/values", **{"match[]": m[1]}))


def test_energy_flows_of_a_live_hometwin_up_recording(scraped: dict[str, Any]) -> None:
    """The same dashboard on a run of ``hometwin up`` that its recorder wrote: every query
    returns rows (the tank temperatures too: the live geyser publishes them on hometwin.telemetry),
    and the days sum to that run's KPIs."""
    recorded: Recorded = scraped["recorded"]
    d = dashboard("energy-flows.json")
    for where, sql in queries(d, "rawSql"):
        assert recorded.query(sql)[1], f"{where} returned nothing on the hometwin up recording"
    (target,) = panel(d, "Energy per simulated day")["targets"]
    rows = recorded.frame(target["rawSql"])
    for kpi, col in DAILY.items():
        assert sum(r[col] for r in rows) == pytest.approx(recorded.kpis[kpi], abs=1e-6), kpi
    (row,) = recorded.frame(panel(d, "Runs of $home")["targets"][0]["rawSql"])
    assert row["runtime"] == "up" and row["status"] == "finished"
    kinds = {e["tags"] for e in recorded.frame({a["name"]: a["target"]["rawSql"]
                                                for a in d["annotations"]["list"]}["events"])}
    print("event kinds recorded by hometwin up:", sorted(kinds))


# -- the chart ships the generator's files ---------------------------------------------------------


def test_the_charts_dashboards_are_the_generators_output() -> None:
    chart = grafana.CHART_DASHBOARDS
    assert sorted(p.name for p in chart.iterdir()) == sorted(grafana.FILES)
    for name in grafana.FILES:
        assert (chart / name).read_text() == grafana.dashboard_json(name), \
            f"{chart / name} differs from the generator: run `hometwin dashboards --chart`"


def test_the_charts_datasources_are_the_generators(tmp_path: Path) -> None:
    import helm_python as helm

    ds = {"postgresql": {"host": "pg.example:5432", "database": "twin", "user": "reader"},
          "prometheus": {"url": "http://prom.example:9090"}}
    with helm.Chart.load(ROOT / "helm" / "hometwin") as chart:
        rendered = chart.render({"grafana": {"datasources": {"enabled": True, **ds},
                                             "dashboards": {"enabled": True}},
                                 "metrics": {"podMonitor": {"interval": "15s"}}}, name="twin", namespace="hometwin")
    docs = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-datasources")]
    got = yaml.safe_load(cm["data"]["hometwin-datasources.yaml"])
    assert got == yaml.safe_load(grafana.datasources_yaml("pg.example:5432", "twin", "reader",
                                                          "http://prom.example:9090", "15s"))
    (dash_cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboards")]
    assert {k: json.loads(v) for k, v in dash_cm["data"].items()} == \
        {f"hometwin-{n}": json.loads(grafana.dashboard_json(n)) for n in grafana.FILES}


def test_the_command_writes_grafana_provisioning(tmp_path: Path) -> None:
    out = tmp_path / "grafana"
    proc = subprocess.run([sys.executable, "-m", "hometwin.cli", "dashboards", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    ds = yaml.safe_load((out / "provisioning" / "datasources" / "hometwin.yaml").read_text())
    assert {d["uid"]: d["type"] for d in ds["datasources"]} == {grafana.PG_UID: grafana.PG_TYPE,
                                                                 grafana.PROM_UID: grafana.PROM_TYPE}
    assert "password" not in json.dumps(ds).replace('"password": "$HOMETWIN_GRAFANA_DB_PASSWORD"', "")
    prov = yaml.safe_load((out / "provisioning" / "dashboards" / "hometwin.yaml").read_text())
    assert prov["providers"][0]["options"]["path"] == str((out / "dashboards").resolve())
    for name in grafana.FILES:
        d = json.loads((out / "dashboards" / name).read_text())
        assert d == json.loads(grafana.dashboard_json(name))
        # every query names one of the two provisioned datasources
        uids = {t["datasource"]["uid"] for p in d["panels"] for t in p["targets"] if "datasource" in t} | \
               {p["datasource"]["uid"] for p in d["panels"]}
        assert uids <= {grafana.PG_UID, grafana.PROM_UID} and len(uids) == 1
    bad = subprocess.run([sys.executable, "-m", "hometwin.cli", "dashboards"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert bad.returncode != 0 and "--out DIR or --chart" in bad.stderr
