"""``hometwin serve``'s HTTP API (hometwin/api): documents, validation with field paths, export
and import, in-process runs, KPIs, flows, daily and monthly tables, comparisons.

Expectations come from elsewhere than the API: ``hometwin validate`` (a subprocess) for the
error lines and for exported YAML, energy balances for the flows and tables, and the engine run
directly for the KPIs of a run started over HTTP."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from api_support import client, example, wait_run
from conftest import EXAMPLES
from hometwin.engine import Engine
from hometwin.registry import KINDS
from hometwin.spec import parse_home

pytestmark = pytest.mark.timeout(600)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hometwin.cli", *args], capture_output=True, text=True, timeout=300)


def test_kinds_have_schema_icon_and_description() -> None:
    c = client()
    kinds = {k["kind"]: k for k in c.get("/api/kinds").json()}
    assert set(kinds) == set(KINDS)
    battery = kinds["battery"]
    assert battery["role"] == "storage" and battery["icon"] and "\n" not in battery["description"]
    cap = battery["schema"]["properties"]["capacity_kwh"]
    assert cap.get("exclusiveMinimum", cap.get("minimum")) == 0  # the range the form shows
    for k in kinds.values():
        assert k["description"] and k["schema"]["type"] == "object", k["kind"]
    home = c.get("/api/schema/home").json()
    assert home["title"] == "Home" and "spec" in home["properties"]


def test_examples_are_listed_and_valid(tmp_path: Path) -> None:
    c = client()
    listed = {e["name"]: e for e in c.get("/api/examples").json()}
    assert {"cape-town", "minimal"} <= set(listed)
    ex = c.get("/api/examples/cape-town").json()
    assert ex["home"]["metadata"]["name"] == "cape-town" and "load-shedding" in ex["yaml"]
    assert c.post("/api/validate", json={"home": ex["home"]}).json()["ok"] is True
    assert c.get("/api/examples/nope").status_code == 404


def test_validation_errors_are_the_clis_lines_with_paths(tmp_path: Path) -> None:
    doc = example("cape-town")
    idx = next(i for i, el in enumerate(doc["spec"]["elements"]) if el["kind"] == "battery")
    doc["spec"]["elements"][idx]["config"]["capacity_kwh"] = -5
    doc["spec"]["location"]["latitude"] = 123
    r = client().post("/api/validate", json={"home": doc})
    assert r.status_code == 422, r.text
    errors = {e["field"]: e for e in r.json()["errors"]}
    field = f"elements[{idx}].config.capacity_kwh"
    assert errors[field]["path"] == ["elements", idx, "config", "capacity_kwh"]
    assert errors["location.latitude"]["path"] == ["location", "latitude"]
    assert "-5" in errors[field]["message"] and "> 0" in errors[field]["message"]
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(doc))
    out = cli("validate", "-f", str(spec))
    assert out.returncode == 2
    lines = [" ".join(line.split()) for line in out.stderr.splitlines()]
    for e in r.json()["errors"]:  # the same problem, in the same words, as hometwin validate
        assert f"{e['field']}: {e['message']}" in lines, (e, out.stderr)


def test_yaml_body_with_syntax_error_says_where() -> None:
    r = client().post("/api/validate", json={"yaml": "spec: [1, 2\n  location: {"})
    assert r.status_code == 422
    assert "YAML syntax error" in r.json()["errors"][0]["message"] and r.json()["errors"][0]["path"] == []


def test_export_is_yaml_that_validate_accepts_and_import_round_trips(tmp_path: Path) -> None:
    c = client()
    for name in ("cape-town", "minimal"):
        doc = example(name)
        text = c.post("/api/export", json={"home": doc}).json()["yaml"]
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(text)
        out = cli("validate", "-f", str(spec))
        assert out.returncode == 0, out.stderr
        back = c.post("/api/import", json={"yaml": text}).json()["home"]
        assert parse_home(back).model_dump() == parse_home(doc).model_dump()


def test_run_kpis_flows_daily_monthly_match_the_engine() -> None:
    c = client()
    doc = example("cape-town")
    r = c.post("/api/runs", json={"home": doc, "days": 2})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    done = wait_run(c, run_id)
    assert done["status"] == "finished" and done["progress"] == 1.0, done
    got = c.get(f"/api/runs/{run_id}/kpis").json()
    home = parse_home(doc)
    home._source_dir = EXAMPLES
    want = Engine(home, until_s=2 * 86400).run().kpis()
    for key, value in want.items():
        v = got["kpis"][key]
        if isinstance(value, float) and math.isnan(value):
            assert v is None
        elif key in ("self_consumption", "self_sufficiency"):
            assert v == pytest.approx(value * 100, rel=1e-9)
        else:
            assert v == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert got["units"]["total_cost"] == "ZAR" and got["units"]["pv_kwh"] == "kWh"
    kp = got["kpis"]
    flows = c.get(f"/api/runs/{run_id}/flows", params={"every": "15min"}).json()
    assert len(flows["time"]) == 2 * 96 and flows["time"][1] - flows["time"][0] == 15 * 60 * 1000
    assert flows["timezone"] == "Africa/Johannesburg"
    hours = 0.25
    pv = sum(flows["power_w"]["pv"]) * hours / 1000
    assert pv == pytest.approx(kp["pv_kwh"], rel=1e-9)
    grid = sum(flows["power_w"]["grid"]) * hours / 1000
    assert grid == pytest.approx(kp["grid_import_kwh"] - kp["grid_export_kwh"], rel=1e-9, abs=1e-9)
    # every element's own series adds up to the home's load (loads are negative: taken off the bus)
    loads = [k for k in flows["power_w"] if k.startswith("el.") and k[3:] in {"oven", "lights", "tv", "fridge",
                                                                             "house", "kettle", "geyser"}]
    assert loads
    assert all(0 <= s <= 1 for s in flows["soc"] if s is not None)
    daily = c.get(f"/api/runs/{run_id}/daily").json()
    assert len(daily["days"]) in (2, 3)  # local days the UTC-started steps fall on
    assert sum(daily["sources"]["pv"]) == pytest.approx(kp["pv_kwh"], rel=1e-9)
    # energy balance per day: what came onto the bus went somewhere
    for j in range(len(daily["days"])):
        came = sum(daily["sources"][s][j] for s in daily["sources"])
        went = sum(daily["uses"][u][j] for u in daily["uses"])
        assert came == pytest.approx(went, abs=1e-6), daily["days"][j]
    monthly = c.get(f"/api/runs/{run_id}/monthly").json()
    assert monthly["currency"] == "ZAR"
    assert sum(monthly["total_cost"]) == pytest.approx(kp["total_cost"], rel=1e-9)


def test_compare_runs_in_percent_of_the_first() -> None:
    c = client()
    small = example("minimal")
    big = example("minimal")
    big["spec"]["elements"][2]["config"]["capacity_kwp"] = 8.0  # twice the PV
    ids = [c.post("/api/runs", json={"home": h, "days": 1}).json()["id"] for h in (small, big)]
    for i in ids:
        assert wait_run(c, i)["status"] == "finished"
    table = c.get("/api/compare", params={"ids": ",".join(ids)}).json()
    assert table["runs"] == ids
    rows = {r["kpi"]: r for r in table["rows"]}
    a, b = rows["pv_kwh"]["values"]
    assert b > 1.9 * a  # twice the array, June in Berlin: about twice the energy
    assert rows["pv_kwh"]["diff_pct"] == [None, pytest.approx((b - a) / a * 100)]
    assert rows["pv_kwh"]["label"] and rows["pv_kwh"]["unit"] == "kWh"


def test_a_run_can_be_stopped_and_keeps_its_steps() -> None:
    c = client()
    doc = example("cape-town")  # a year: far longer than the test waits
    run_id = c.post("/api/runs", json={"home": doc, "window": 60}).json()["id"]
    deadline = time.monotonic() + 240
    while c.get(f"/api/runs/{run_id}").json()["progress"] == 0:  # some steps settled
        assert time.monotonic() < deadline, "no window settled within 240 s"
        time.sleep(0.2)
    stopped = c.delete(f"/api/runs/{run_id}").json()
    assert stopped["status"] == "stopped" and stopped["progress"] < 1
    k = c.get(f"/api/runs/{run_id}/kpis").json()
    assert k["complete"] is False and k["partial"]["steps_settled"] < k["partial"]["steps_asked"]
    assert c.get("/api/runs").json()[0]["id"] == run_id


def test_an_invalid_home_starts_nothing() -> None:
    c = client()
    doc = example("minimal")
    doc["spec"]["elements"][2]["config"]["capacity_kwp"] = -1
    r = c.post("/api/runs", json={"home": doc, "days": 1})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "elements[2].config.capacity_kwp"
    assert c.get("/api/runs").json() == []


def test_serves_the_built_ui_and_its_routes(tmp_path: Path) -> None:
    ui = tmp_path / "browser"
    (ui / "assets").mkdir(parents=True)
    (ui / "index.html").write_text("<!doctype html><app-root></app-root>")
    (ui / "assets" / "main.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("not for the web")
    c = client(ui_dir=ui)
    anon = {"Authorization": ""}
    assert "<app-root>" in c.get("/", headers=anon).text
    assert c.get("/assets/main.js", headers=anon).text == "console.log(1)"
    assert "<app-root>" in c.get("/builder/elements", headers=anon).text  # the Angular router's path
    for sneaky in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/../../secret.txt"):
        assert "not for the web" not in c.get(sneaky, headers=anon).text, sneaky
    missing = client(ui_dir=tmp_path / "nothing").get("/", headers=anon)
    assert missing.status_code == 503 and "ng build" in missing.text


def test_result_files_of_hometwin_run_are_offered_as_runs(tmp_path: Path) -> None:
    out = tmp_path / "results" / "minimal-1d"
    done = cli("run", "-f", str(EXAMPLES / "minimal.yaml"), "--days", "1", "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    written = json.loads((out / "kpis.json").read_text())  # what hometwin run wrote, read here
    c = client(results_dir=tmp_path / "results")
    runs = {r["id"]: r for r in c.get("/api/runs").json()}
    assert runs["f-minimal-1d"]["status"] == "finished" and runs["f-minimal-1d"]["home"] == "minimal"
    got = c.get("/api/runs/f-minimal-1d/kpis").json()["kpis"]
    assert got["pv_kwh"] == pytest.approx(written["kpis"]["pv_kwh"], rel=1e-12)
    assert got["total_cost"] == pytest.approx(written["kpis"]["total_cost"], rel=1e-12)
    flows = c.get("/api/runs/f-minimal-1d/flows", params={"every": "1h"}).json()
    assert len(flows["time"]) == 24
    assert sum(flows["power_w"]["pv"]) / 1000 == pytest.approx(written["kpis"]["pv_kwh"], rel=1e-9)
