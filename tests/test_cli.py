"""The hometwin command end to end: run writes results and the report; compare shows differences."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import yaml
from typer.testing import CliRunner

import hometwin
from hometwin.cli import app
from conftest import EXAMPLES

runner = CliRunner()


def test_run_writes_parquet_csv_kpis_and_report(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "-f", str(EXAMPLES / "cape-town.yaml"), "--days", "2", "--out", str(out),
                                 "--report", "-q"])
    assert result.exit_code == 0, result.output
    assert "Self-sufficiency (autarky) [%]" in result.output and "PV yield [kWh/kWp]" in result.output
    frame = pd.read_parquet(out / "flows.parquet")
    csv = pd.read_csv(out / "flows.csv")
    assert len(frame) == len(csv) == 2 * 1440
    np.testing.assert_allclose(csv["grid_import_j"].to_numpy(), frame["grid_import_j"].to_numpy(), rtol=1e-12)
    ref = hometwin.run(EXAMPLES / "cape-town.yaml", until_s=2 * 86400).frame
    np.testing.assert_array_equal(frame["soc"].to_numpy(), ref["soc"].to_numpy())
    kpis = json.loads((out / "kpis.json").read_text())
    assert kpis["kpis"]["load_kwh"] == frame["load_j"].sum() / 3.6e6
    html = (out / "report.html").read_text()
    assert html.count('data-figure="fig-') == 5 and "Cost per month" in html  # tests/test_report.py: the rest


def test_compare_prints_both_homes_and_the_difference(tmp_path):
    doc = yaml.safe_load((EXAMPLES / "cape-town.yaml").read_text())
    for el in doc["spec"]["elements"]:
        if el["kind"] == "battery":
            el["config"]["capacity_kwh"] = 20.0
    doc["metadata"]["name"] = "cape-town-20kwh"
    bigger = tmp_path / "bigger.yaml"
    bigger.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["compare", "-f", str(EXAMPLES / "cape-town.yaml"), "-f", str(bigger), "--days", "3"])
    assert result.exit_code == 0, result.output
    assert "cape-town-20kwh" in result.output and "Δ cape-town-20kwh" in result.output
    a = hometwin.run(EXAMPLES / "cape-town.yaml", until_s=3 * 86400).kpis()
    b = hometwin.run(hometwin.load_home(bigger), until_s=3 * 86400).kpis()
    # a bigger battery never leaves more load unserved through the same outages
    assert b["unserved_kwh"] <= a["unserved_kwh"] + 1e-9


def test_bad_flags_are_clear():
    result = runner.invoke(app, ["run", "-f", str(EXAMPLES / "minimal.yaml"), "--days", "-1"])
    assert result.exit_code == 2 and "--days: must be > 0" in result.output
    result = runner.invoke(app, ["run", "-f", str(EXAMPLES / "minimal.yaml"), "--until", "soon"])
    assert result.exit_code == 2 and "--until: not a duration" in result.output
    result = runner.invoke(app, ["run", "-f", "/nonexistent/home.yaml"])
    assert result.exit_code == 2 and "cannot read" in result.output
