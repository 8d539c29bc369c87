"""The HTML report (``hometwin run --report``): its numbers checked against the flows it was made
from, recomputed here from the frame's columns; local time; labels and units; offline.

The reports are made by the command itself, of the Cape Town example home, for 2 days and for a
year; the figures are read back from the JSON the page hands to plotly.js, the key figures from
its table, and one report is opened in a real Chromium with no network to see the plots drawn.
"""

from __future__ import annotations

import base64
import html as htmllib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from hometwin.cli import app
from hometwin.kpi_labels import KPI_LABELS, kpi_unit
from conftest import EXAMPLES

CAPE_TOWN = EXAMPLES / "cape-town.yaml"
SPEC = yaml.safe_load(CAPE_TOWN.read_text())
TZ = SPEC["spec"]["location"]["timezone"]  # Africa/Johannesburg
GRID = next(e for e in SPEC["spec"]["elements"] if e["kind"] == "grid")["config"]
CURRENCY = GRID["currency"]  # ZAR
FIXED_DAILY = GRID["fixed_daily_charge"]
KWH = 3.6e6
CHROMIUM = "/usr/bin/chromium"


class Report:
    def __init__(self, out: Path):
        self.html = (out / "report.html").read_text()
        self.frame = pd.read_parquet(out / "flows.parquet")
        self.kpis = json.loads((out / "kpis.json").read_text())["kpis"]
        self.figures = {fid: json.loads(text) for fid, text in re.findall(
            r'<script type="application/json" data-figure="([\w-]+)">(.*?)</script>', self.html, re.S)}
        self.size = (out / "report.html").stat().st_size

    def traces(self, fid: str) -> dict[str, dict[str, Any]]:
        return {t["name"]: t for t in self.figures[fid]["data"] if "name" in t}

    def local_frame(self, cols: list[str]) -> pd.DataFrame:
        e = self.frame[cols] / KWH
        e.index = pd.DatetimeIndex(self.frame.index).tz_convert(TZ)
        return e


def arr(v: Any) -> np.ndarray:
    """A plotly array: a list, or plotly ≥ 6's typed array ``{"dtype": "f8", "bdata": base64}``."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]).newbyteorder("<"))
        return a.reshape(v["shape"]) if "shape" in v else a
    return np.asarray(v)


def run_report(out: Path, *args: str) -> Report:
    result = CliRunner().invoke(app, ["run", "-f", str(CAPE_TOWN), *args, "--out", str(out), "--report", "-q"])
    assert result.exit_code == 0, result.output
    return Report(out)


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return run_report(tmp_path_factory.mktemp("two-days"), "--days", "2")


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return run_report(tmp_path_factory.mktemp("year"))  # the example's clock: 365 days of 1-minute steps


BALANCE_SOURCES = ["pv_dc_j", "grid_import_j", "battery_discharge_j"]
BALANCE_USES = ["load_j", "grid_export_j", "battery_charge_j", "loss_j"]


def check_daily_balance(rep: Report, days: int) -> None:
    e = rep.local_frame(BALANCE_SOURCES + BALANCE_USES)
    day = e.groupby(e.index.date).sum()
    assert len(day) == days
    residual = day[BALANCE_SOURCES].sum(axis=1) - day[BALANCE_USES].sum(axis=1)
    assert np.abs(residual).max() <= 1e-9  # kWh per day: the ledger closes to 1e-6 J a step
    assert day["pv_dc_j"].min() > 1.0 and day["grid_import_j"].sum() > 0 and day["loss_j"].min() > 0  # not vacuous
    # the report's bars are those sums, uses drawn downwards, one bar per local day
    bars = rep.traces("fig-balance")
    for col, name, sign in (("pv_dc_j", "PV (DC)", 1), ("grid_import_j", "Grid import", 1),
                            ("battery_discharge_j", "Battery discharge", 1), ("load_j", "Load served", -1),
                            ("grid_export_j", "Grid export", -1), ("battery_charge_j", "Battery charge", -1),
                            ("loss_j", "Conversion losses", -1)):
        assert list(bars[name]["x"]) == [f"{d:%Y-%m-%d}" for d in day.index]
        np.testing.assert_allclose(sign * arr(bars[name]["y"]), day[col].to_numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(arr(bars["Sources − uses"]["y"]), residual.to_numpy(), atol=1e-9)


def check_sankey(rep: Report) -> None:
    (sankey,) = rep.figures["fig-sankey"]["data"]
    labels = [lab.split(":")[0] for lab in sankey["node"]["label"]]
    link = sankey["link"]
    src, dst, val = arr(link["source"]), arr(link["target"]), arr(link["value"])
    flows = {(labels[a], labels[b]): v for a, b, v in zip(src, dst, val)}
    into = sum(v for (a, b), v in flows.items() if b == "Home")
    out = sum(v for (a, b), v in flows.items() if a == "Home")
    assert set(a for a, b in flows) | set(b for a, b in flows) >= {"Home", "Grid import", "Grid export", "PV roof"}
    k = rep.kpis
    assert into == pytest.approx(out, rel=1e-12, abs=1e-9)
    assert into == pytest.approx(k["pv_dc_kwh"] + k["grid_import_kwh"] + k["battery_discharge_kwh"], rel=1e-12)
    assert out == pytest.approx(k["load_kwh"] + k["grid_export_kwh"] + k["battery_charge_kwh"] + k["losses_kwh"], rel=1e-12)
    for node, kpi in (("Grid import", "grid_import_kwh"), ("Battery discharge", "battery_discharge_kwh")):
        assert flows[(node, "Home")] == pytest.approx(k[kpi], rel=1e-12)
    for node, kpi in (("Grid export", "grid_export_kwh"), ("Battery charge", "battery_charge_kwh"),
                      ("Conversion losses", "losses_kwh")):
        assert flows[("Home", node)] == pytest.approx(k[kpi], rel=1e-12)
    assert flows[("PV roof", "Home")] == pytest.approx(k["pv_dc_kwh"], rel=1e-12)
    loads = {b: v for (a, b), v in flows.items()
             if a == "Home" and b not in ("Grid export", "Battery charge", "Conversion losses")}
    assert sum(loads.values()) == pytest.approx(k["load_kwh"], rel=1e-12)
    # each load's link is that element's energy (its column, taken off the bus: negative)
    for name, v in loads.items():
        assert v == pytest.approx(-rep.frame[f"el.{name}_j"].sum() / KWH, rel=1e-12)
    assert {"geyser", "fridge", "oven", "house"} <= set(loads)


def check_monthly_cost(rep: Report, months: list[str], days_in: list[int]) -> None:
    bars = rep.traces("fig-cost")
    assert list(bars["Import cost"]["x"]) == months
    imp = arr(bars["Import cost"]["y"])
    exp = -arr(bars["Export credit"]["y"])
    fixed = arr(bars["Fixed charges"]["y"])
    total = arr(bars["Total"]["y"])
    k = rep.kpis
    # sums over the months are the run's KPIs
    assert (imp - exp).sum() == pytest.approx(k["energy_cost"], rel=1e-9, abs=1e-9)
    assert fixed.sum() == pytest.approx(k["fixed_charges"], rel=1e-12)
    assert total.sum() == pytest.approx(k["total_cost"], rel=1e-9, abs=1e-9)
    # each month, from the frame's flows and prices by local month, and the calendar
    f = rep.frame
    local_month = pd.DatetimeIndex(f.index).tz_convert(TZ).strftime("%Y-%m")
    ref_imp = (f["grid_import_j"] * f["price_import"] / KWH).groupby(local_month).sum()
    ref_exp = (f["grid_export_j"] * f["price_export"] / KWH).groupby(local_month).sum()
    np.testing.assert_allclose(imp, ref_imp.loc[months].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(exp, ref_exp.loc[months].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(fixed, FIXED_DAILY * np.array(days_in, dtype=float), rtol=1e-12)
    np.testing.assert_allclose(total, imp - exp + fixed, rtol=1e-9, atol=1e-9)
    assert imp.min() > 0 and exp.min() > 0


def kpi_rows(rep: Report) -> dict[str, tuple[str, str]]:
    table = re.search(r'<table class="kpis">(.*?)</table>', rep.html, re.S).group(1)
    rows = {}
    for cells in re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", table):
        label = htmllib.unescape(re.sub(r"<[^>]+>", "", cells[0]))
        rows[label] = (cells[1], htmllib.unescape(cells[2]))
    return rows


def test_two_days_daily_balance_closes_each_local_day(two_days: Report) -> None:
    check_daily_balance(two_days, days=2)


def test_two_days_sankey_balances_and_matches_the_kpis(two_days: Report) -> None:
    check_sankey(two_days)


def test_two_days_monthly_cost_sums_to_the_energy_cost(two_days: Report) -> None:
    check_monthly_cost(two_days, ["2025-01"], [2])


def test_every_kpi_shown_has_its_label_and_unit(two_days: Report) -> None:
    rows = kpi_rows(two_days)
    assert len(rows) == len(two_days.kpis)
    for name, value in two_days.kpis.items():
        spec = KPI_LABELS.get(name)
        assert spec is not None and spec.label and spec.unit, f"KPI {name} has no label or unit"
        shown, unit = rows[spec.label]
        assert unit, name
        if name in ("energy_cost", "fixed_charges", "total_cost"):
            assert unit == CURRENCY and kpi_unit(name, CURRENCY) == CURRENCY
            assert float(shown.replace(",", "")) == pytest.approx(value, abs=0.005)
        elif name in ("self_consumption", "self_sufficiency"):
            assert unit == "%" and float(shown) == pytest.approx(100 * value, abs=0.05)
        elif name.endswith("_kwh"):
            assert unit == "kWh" and float(shown.replace(",", "")) == pytest.approx(value, abs=0.005)
    assert rows["Grid outage"] == ("10.00", "h")  # 2 × (2.5 h + 2.5 h) of load-shedding in the spec


def test_times_are_the_homes_local_time(two_days: Report) -> None:
    # the spec starts at local midnight: 22:00 UTC the day before
    assert pd.Timestamp(two_days.frame.index[0]) == pd.Timestamp("2024-12-31T22:00:00Z")
    power = two_days.figures["fig-power"]
    x = power["data"][0]["x"]
    assert x[0] == "2025-01-01 00:00" and x[-1] == "2025-01-02 23:59"
    # the outages shaded are the spec's load-shedding slots, in local time
    slots = [(s["x0"], s["x1"]) for s in power["layout"]["shapes"]]
    assert slots[:2] == [("2025-01-01 02:00", "2025-01-01 04:30"), ("2025-01-01 18:00", "2025-01-01 20:30")]
    assert len(slots) == 4
    assert "2025-01-01 00:00 – 2025-01-03 00:00 (Africa/Johannesburg, UTC+02:00)" in two_days.html
    # and the PV peaks near local solar noon (≈ 13:20 in Cape Town in January), not at UTC noon
    pv = arr(two_days.traces("fig-power")["PV (AC)"]["y"])
    peak_hour = int(x[int(np.argmax(pv[:1440]))][11:13])
    assert 11 <= peak_hour <= 15


def test_the_page_fetches_nothing(two_days: Report) -> None:
    from plotly.offline import get_plotlyjs

    page = two_days.html
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    assert not re.search(r"<link\b", page, re.I)
    assert not re.search(r"<(img|iframe|embed|object|source)\b[^>]*\b(src|data)\s*=\s*[\"']?(https?:)?//", page, re.I)
    assert not re.search(r"url\(\s*[\"']?(https?:)?//", page.replace(get_plotlyjs(), ""), re.I)
    assert "default-src 'none'" in page  # the page's CSP: a browser would refuse any request anyway
    js = get_plotlyjs()
    assert page.count(js) == 1  # plotly.js, embedded once for all the figures
    assert set(two_days.figures) == {"fig-power", "fig-soc", "fig-balance", "fig-cost", "fig-sankey"}


def test_chromium_draws_every_plot_without_a_network(two_days: Report, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(two_days.html)
    dom = subprocess.run(
        [CHROMIUM, "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--proxy-server=127.0.0.1:9",  # a closed port: anything fetched would fail
         "--virtual-time-budget=15000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    for fid in two_days.figures:
        assert re.search(rf'id="{fid}" class="[^"]*js-plotly-plot', dom), fid
    (sankey,) = two_days.figures["fig-sankey"]["data"]
    assert dom.count('class="sankey-node"') == len(sankey["node"]["label"])
    assert dom.count('class="trace bars"') == 7 + 3  # the daily balance's sources and uses, the cost's parts


@pytest.mark.slow
def test_a_years_report(year: Report) -> None:
    """The year of the example: 365 balanced local days, twelve months of cost, the Sankey."""
    check_daily_balance(year, days=365)
    check_monthly_cost(year, [f"2025-{m:02d}" for m in range(1, 13)],
                       [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    check_sankey(year)
    assert year.kpis["fixed_charges"] == pytest.approx(365 * FIXED_DAILY)
    # the power plot of a year: hourly means, local hours (8760 of them, no DST in South Africa)
    x = year.figures["fig-power"]["data"][0]["x"]
    assert len(x) == 8760 and x[0] == "2025-01-01 00:00" and x[-1] == "2025-12-31 23:00"
    assert len(year.figures["fig-power"]["layout"]["shapes"]) == 2 * 365
    assert year.size < 12e6  # plotly.js (~4.8 MB) once, and the year's data


def test_local_time_follows_daylight_saving(tmp_path: Path) -> None:
    """Trondheim over the night clocks go forward (30 March 2025, 02:00 → 03:00 in Europe/Oslo):
    a local day of 23 hours, and the plot's time jumps from 01:59 to 03:00."""
    doc = yaml.safe_load((EXAMPLES / "trondheim.yaml").read_text())
    doc["spec"]["clock"].pop("duration")
    doc["spec"]["clock"].update(start="2025-03-29T00:00:00", end="2025-03-31T00:00:00")  # local midnights
    grid = next(e for e in doc["spec"]["elements"] if e["kind"] == "grid")
    grid["config"]["tariff"] = {"type": "flat", "price_per_kwh": 1.5}
    spec = tmp_path / "trondheim-dst.yaml"
    spec.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", "-f", str(spec), "--out", str(out), "--report", "-q"])
    assert result.exit_code == 0, result.output
    rep = Report(out)
    assert len(rep.frame) == 47 * 60  # 24 h + 23 h of 1-minute steps
    assert "2025-03-29 00:00 – 2025-03-31 00:00 (Europe/Oslo, UTC+01:00)" in rep.html
    x = rep.figures["fig-power"]["data"][0]["x"]
    i = x.index("2025-03-30 01:59")
    assert x[i + 1] == "2025-03-30 03:00" and "2025-03-30 02:30" not in x and x[-1] == "2025-03-30 23:59"
    bars = rep.traces("fig-balance")
    assert list(bars["Load served"]["x"]) == ["2025-03-29", "2025-03-30"]
    # the second day's load is the sum of its 23 hours (steps 1440 …), the first's of 24
    load = rep.frame["load_j"].to_numpy() / KWH
    np.testing.assert_allclose(-arr(bars["Load served"]["y"]), [load[:1440].sum(), load[1440:].sum()], rtol=1e-12)
    assert kpi_rows(rep)["Total cost"][1] == "NOK"
