"""The HTML report of a run (``--report``): one self-contained file that opens offline.

What it shows, all in the home's local time:

* the key figures, each with its label and unit (:mod:`hometwin.kpi_labels`, the currency
  of the grid element);
* interactive plots (plotly): power flows with the grid outages shaded, the battery's SoC,
  the daily energy balance, the cost per month and the energy flows of the run as a Sankey
  diagram;
* the daily balance and the monthly cost as tables;
* energy and cost per device (:meth:`hometwin.results.Result.device_costs`).

The balance is the ledger's (:mod:`hometwin.ledger`), summed per local day::

    PV (DC) + grid import + battery discharge = load served + grid export + battery charge + losses

PV is counted where the inverter took it, at its DC input (``pv_dc_j``: what the arrays were
served), the battery at its terminals, and the losses are the inverter's conversion losses (PV
DC→AC and battery AC↔DC, ``loss_j``).  Curtailed PV (offered, never taken) and unserved load
(asked for, never delivered) are no flow of the bus: they are shown beside the balance, not
in it.

plotly.js is embedded once in the page (no CDN, nothing fetched: the page's Content Security
Policy forbids any request); each figure is a JSON document in the page that a few lines of
script hand to ``Plotly.newPlot``.  The data functions (:func:`daily_balance`,
:func:`monthly_cost`, :func:`sankey_links`) are the report's numbers, for tests and other code.
"""

from __future__ import annotations

import html
import json
from typing import Any

import numpy as np
import pandas as pd

from hometwin.kpi_labels import FRACTIONS, KPI_LABELS, kpi_display_unit
from hometwin.units import J_PER_KWH


#: The daily balance: (column of the frame, label), sources first, then uses.
BALANCE_SOURCES = (("pv_dc_j", "PV (DC)"), ("grid_import_j", "Grid import"), ("battery_discharge_j", "Battery discharge"))
BALANCE_USES = (("load_j", "Load served"), ("grid_export_j", "Grid export"), ("battery_charge_j", "Battery charge"),
                ("loss_j", "Conversion losses"))
#: Beside the balance (no flow of the bus).
BALANCE_MEMO = (("curtailed_j", "PV curtailed"), ("unserved_j", "Unserved load"))

#: The power plot's lines: (column, label, colour).
POWER_LINES = (("pv_ac_j", "PV (AC)", "#e6a700"), ("load_j", "Load served", "#222222"),
               ("grid_import_j", "Grid import", "#d62728"), ("grid_export_j", "Grid export", "#9467bd"),
               ("battery_discharge_j", "Battery discharge", "#2ca02c"), ("battery_charge_j", "Battery charge", "#17becf"),
               ("unserved_j", "Unserved load", "#ff00aa"))
COLOURS = {label: colour for _, label, colour in POWER_LINES} | {
    "PV (DC)": "#e6a700", "Conversion losses": "#8c8c8c", "Load served": "#444444"}

#: At most this many points per line in the power and SoC plots (means over longer steps beyond).
MAX_POINTS = 10_000
_RULES = ("15min", "1h", "3h", "1D")


def _local(index: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    return index.tz_convert(tz)


def _wall(index: pd.DatetimeIndex, step_s: int = 60) -> list[str]:
    """Local wall-clock times as plotly reads them (no offset: plotly.js would drop it)."""
    fmt = "%Y-%m-%d %H:%M" if step_s % 60 == 0 else "%Y-%m-%d %H:%M:%S"
    return list(index.strftime(fmt))


def daily_balance(result: Any) -> pd.DataFrame:
    """Energy per local day [kWh]: the balance's sources and uses, ``residual`` (sources − uses,
    0 when the ledger closed) and, beside it, curtailed PV and unserved load."""
    f, tz = result.frame, result.meta["timezone"]
    cols = [c for c, _ in BALANCE_SOURCES + BALANCE_USES + BALANCE_MEMO]
    e = f[cols] / J_PER_KWH
    e.index = _local(f.index, tz)
    day = e.groupby(e.index.normalize()).sum()
    day["sources"] = day[[c for c, _ in BALANCE_SOURCES]].sum(axis=1)
    day["uses"] = day[[c for c, _ in BALANCE_USES]].sum(axis=1)
    day["residual"] = day["sources"] - day["uses"]
    day.index.name = "day"
    return day


def monthly_cost(result: Any) -> pd.DataFrame:
    """Cost per local month [currency]: import cost, export credit, energy cost (the two
    netted: the frame's ``cost``), fixed charges (the daily charge for each local day of the
    run in that month), total; with the month's import and export [kWh]."""
    f, m = result.frame, result.meta
    local = _local(f.index, m["timezone"])
    month = local.strftime("%Y-%m")
    g = pd.DataFrame({
        "import_kwh": f["grid_import_j"].to_numpy() / J_PER_KWH,
        "export_kwh": f["grid_export_j"].to_numpy() / J_PER_KWH,
        "import_cost": (f["grid_import_j"] * f["price_import"]).to_numpy() / J_PER_KWH,
        "export_credit": (f["grid_export_j"] * f["price_export"]).to_numpy() / J_PER_KWH,
        "energy_cost": f["cost"].to_numpy(),
    }, index=month).groupby(level=0).sum()
    days = pd.Series(local.normalize().unique())
    g["fixed_charges"] = days.dt.strftime("%Y-%m").value_counts().reindex(g.index, fill_value=0) * float(
        m.get("fixed_daily_charge", 0.0))
    g["total"] = g["energy_cost"] + g["fixed_charges"]
    g.index.name = "month"
    return g


def sankey_links(result: Any) -> list[tuple[str, str, float]]:
    """The run's energy flows [kWh] through the home's bus (the inverter and its AC side):
    ``(from, to, kWh)``; PV arrays, grid import and battery discharge flow into ``"Home"``,
    which gives it to each load, the grid, the battery and the losses."""
    f, m = result.frame, result.meta
    roles = m.get("roles", {})
    hub = "Home"
    links: list[tuple[str, str, float]] = []
    for name, role in roles.items():
        col = f"el.{name}_j"
        if role == "source" and col in f:
            links.append((f"PV {name}", hub, float(f[col].sum()) / J_PER_KWH))
    links.append(("Grid import", hub, float(f["grid_import_j"].sum()) / J_PER_KWH))
    links.append(("Battery discharge", hub, float(f["battery_discharge_j"].sum()) / J_PER_KWH))
    for name, role in roles.items():
        col = f"el.{name}_j"
        if role == "load" and col in f:
            links.append((hub, name, -float(f[col].sum()) / J_PER_KWH))
    links.append((hub, "Grid export", float(f["grid_export_j"].sum()) / J_PER_KWH))
    links.append((hub, "Battery charge", float(f["battery_charge_j"].sum()) / J_PER_KWH))
    links.append((hub, "Conversion losses", float(f["loss_j"].sum()) / J_PER_KWH))
    return [link for link in links if link[2] > 0.0]


# -- figures -----------------------------------------------------------------------------------

def _layout(title: str, **kw: Any) -> dict[str, Any]:
    return dict(title=dict(text=title, x=0.0), template="plotly_white", height=kw.pop("height", 380),
                margin=dict(l=60, r=20, t=50, b=100), legend=dict(orientation="h", y=-0.22, yanchor="top"), **kw)


def _rule(f: pd.DataFrame) -> str | None:
    if len(f) <= MAX_POINTS:
        return None
    span_s = (f.index[-1] - f.index[0]).total_seconds()
    return next((r for r in _RULES if span_s / pd.Timedelta(r).total_seconds() <= MAX_POINTS), _RULES[-1])


def outages(result: Any) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The grid outages of the run, ``(start, end)`` in local time, at step resolution."""
    f, m = result.frame, result.meta
    down = (f["grid_available"].to_numpy() < 0.5).astype(np.int8)
    edges = np.diff(np.concatenate([[0], down, [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    times = f.index.append(pd.DatetimeIndex([f.index[-1] + pd.Timedelta(seconds=m["step_s"])]))
    local = _local(times, m["timezone"])
    return [(local[a], local[b]) for a, b in zip(starts, ends)]


def power_figure(result: Any) -> Any:
    import plotly.graph_objects as go

    f, m = result.frame, result.meta
    rule = _rule(f)
    cols = [c for c, _, _ in POWER_LINES]
    p = f[cols] / m["step_s"] / 1000.0
    p.index = _local(f.index, m["timezone"])
    if rule is not None:
        p = p.resample(rule).mean()
    x = _wall(p.index, m["step_s"])
    fig = go.Figure()
    for col, label, colour in POWER_LINES:
        if p[col].abs().max() >= 1e-3:  # a line of at least 1 W somewhere (not float dust)
            fig.add_trace(go.Scatter(x=x, y=p[col].to_numpy(np.float32), name=label, mode="lines",
                                     line=dict(width=1, color=colour)))
    shapes = [dict(type="rect", xref="x", yref="paper", x0=_wall(pd.DatetimeIndex([a]), m["step_s"])[0],
                   x1=_wall(pd.DatetimeIndex([b]), m["step_s"])[0], y0=0, y1=1, fillcolor="#d62728",
                   opacity=0.08, line=dict(width=0), layer="below", name="grid outage")
              for a, b in outages(result)]
    what = "" if rule is None else f" ({rule} means)"
    xaxis: dict[str, Any] = dict(title=f"local time ({m['timezone']})")
    if rule is not None:  # a long run: zoom to a day, a week, a month
        xaxis["rangeselector"] = dict(buttons=[dict(count=c, step=s, stepmode="backward", label=lab) for c, s, lab in
                                               ((1, "day", "1 d"), (7, "day", "1 w"), (1, "month", "1 m"))]
                                      + [dict(step="all", label="all")])
    fig.update_layout(**_layout(f"Power flows{what}; grid outages shaded", shapes=shapes, yaxis=dict(title="kW"),
                                xaxis=xaxis))
    return fig


def soc_figure(result: Any) -> Any | None:
    import plotly.graph_objects as go

    f, m = result.frame, result.meta
    if not f["soc"].notna().any():
        return None
    soc = f["soc"] * 100.0
    soc.index = _local(f.index, m["timezone"])
    rule = _rule(f)
    if rule is not None:
        soc = soc.resample(rule).mean()
    fig = go.Figure(go.Scatter(x=_wall(soc.index, m["step_s"]), y=soc.to_numpy(np.float32), mode="lines",
                               name="SoC", line=dict(width=1, color="#2ca02c")))
    fig.update_layout(**_layout("Battery state of charge", height=280, yaxis=dict(title="%", range=[0, 100]),
                                xaxis=dict(title=f"local time ({m['timezone']})")))
    return fig


def balance_figure(day: pd.DataFrame, tz: str) -> Any:
    import plotly.graph_objects as go

    x = list(day.index.strftime("%Y-%m-%d"))
    fig = go.Figure()
    for col, label in BALANCE_SOURCES:
        fig.add_trace(go.Bar(x=x, y=day[col].to_numpy(), name=label, marker_color=COLOURS.get(label)))
    for col, label in BALANCE_USES:
        fig.add_trace(go.Bar(x=x, y=-day[col].to_numpy(), name=label, marker_color=COLOURS.get(label)))
    fig.add_trace(go.Scatter(x=x, y=day["residual"].to_numpy(), name="Sources − uses", mode="lines+markers",
                             line=dict(color="black", width=1)))
    fig.update_layout(**_layout("Daily energy balance: sources (up) = uses (down)", barmode="relative",
                                yaxis=dict(title="kWh per day"),
                                xaxis=dict(title=f"local day ({tz})", type="category" if len(x) <= 31 else "date")))
    return fig


def cost_figure(month: pd.DataFrame, currency: str) -> Any:
    import plotly.graph_objects as go

    x = list(month.index)
    fig = go.Figure([
        go.Bar(x=x, y=month["import_cost"].to_numpy(), name="Import cost", marker_color="#d62728"),
        go.Bar(x=x, y=-month["export_credit"].to_numpy(), name="Export credit", marker_color="#9467bd"),
        go.Bar(x=x, y=month["fixed_charges"].to_numpy(), name="Fixed charges", marker_color="#8c8c8c"),
        go.Scatter(x=x, y=month["total"].to_numpy(), name="Total", mode="markers+text", marker=dict(color="black"),
                   text=[f"{v:,.2f}" for v in month["total"]], textposition="top center"),
    ])
    fig.update_layout(**_layout(f"Cost per month [{currency}]", barmode="relative", height=340,
                                yaxis=dict(title=currency), xaxis=dict(title="local month", type="category")))
    return fig


def sankey_figure(links: list[tuple[str, str, float]], period: str) -> Any:
    import plotly.graph_objects as go

    nodes: list[str] = []
    for a, b, _ in links:
        for n in (a, b):
            if n not in nodes:
                nodes.append(n)
    total = {n: max(sum(v for a, _, v in links if a == n), sum(v for _, b, v in links if b == n)) for n in nodes}
    fig = go.Figure(go.Sankey(
        valueformat=",.2f", valuesuffix=" kWh",
        node=dict(label=[f"{n}: {total[n]:,.1f} kWh" for n in nodes], pad=14, thickness=16,
                  color=[COLOURS.get(n, "#1f77b4" if n != "Home" else "#555555") for n in nodes]),
        link=dict(source=[nodes.index(a) for a, _, _ in links], target=[nodes.index(b) for _, b, _ in links],
                  value=[v for _, _, v in links], label=[f"{a} → {b}" for a, b, _ in links])))
    fig.update_layout(**_layout(f"Energy flows, {period}", height=max(420, 28 * len(nodes))))
    return fig


# -- page --------------------------------------------------------------------------------------

def _num(v: float, digits: int = 2) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:,.{digits}f}"


def _kpi_value(name: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if name in FRACTIONS:
        return f"{v * 100:.1f}"
    if name == "max_ledger_residual_j":
        return f"{v:.2e}"
    return _num(float(v))


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _figure_json(fig: Any) -> str:
    # JSON inside <script>: "</" must not end the element early.
    return fig.to_json().replace("</", "<\\/")


CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:")

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#f3f3f3}p.note{color:#555;font-size:.9em}
table.kpis td:nth-child(3){text-align:left;color:#555}.figure{width:100%;margin:1em 0}
.partial{background:#fff3cd;border:1px solid #e0c36b;padding:.5em 1em}"""

RENDER = """document.querySelectorAll('script[type="application/json"][data-figure]').forEach(function (s) {
  var fig = JSON.parse(s.textContent);
  Plotly.newPlot(s.dataset.figure, fig.data, fig.layout, {responsive: true, displaylogo: false});
});"""


def render_report(result: Any) -> str:
    """The report of ``result`` as one HTML page (plotly.js embedded, nothing fetched)."""
    from plotly.offline import get_plotlyjs

    from hometwin._version import __version__

    f, m = result.frame, result.meta
    tz, currency = m["timezone"], m.get("currency", "")
    local = _local(f.index, tz)
    end = local[-1] + pd.Timedelta(seconds=m["step_s"])
    offset = f"{local[0]:%z}"  # +0200
    period = f"{local[0]:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} ({tz}, UTC{offset[:3]}:{offset[3:]})"
    k = result.kpis()
    day = daily_balance(result)
    month = monthly_cost(result)
    links = sankey_links(result)

    kpi_rows = [[f'<span title="{html.escape(KPI_LABELS[n].description if n in KPI_LABELS else "")}">'
                 f"{html.escape(KPI_LABELS[n].label if n in KPI_LABELS else n)}</span>",
                 _kpi_value(n, k[n]), html.escape(kpi_display_unit(n, currency))]
                for n in sorted(k, key=lambda n: list(KPI_LABELS).index(n) if n in KPI_LABELS else len(KPI_LABELS))]
    figures: list[tuple[str, Any]] = [("fig-power", power_figure(result))]
    soc = soc_figure(result)
    if soc is not None:
        figures.append(("fig-soc", soc))
    figures += [("fig-balance", balance_figure(day, tz)), ("fig-cost", cost_figure(month, currency)),
                ("fig-sankey", sankey_figure(links, f"{local[0]:%Y-%m-%d} – {end:%Y-%m-%d}"))]
    figs = {fid: (f'<div id="{fid}" class="figure"></div><script type="application/json" data-figure="{fid}">'
                  f"{_figure_json(fig)}</script>") for fid, fig in figures}

    bal_cols = BALANCE_SOURCES + BALANCE_USES
    bal_rows = [[f"{d:%Y-%m-%d}"] + [_num(row[c], 3) for c, _ in bal_cols] + [f"{row['residual']:.1e}"]
                + [_num(row[c], 3) for c, _ in BALANCE_MEMO] for d, row in day.iterrows()]
    bal_rows.append(["<b>total</b>"] + [f"<b>{_num(day[c].sum(), 3)}</b>" for c, _ in bal_cols]
                    + [f"<b>{day['residual'].sum():.1e}</b>"] + [f"<b>{_num(day[c].sum(), 3)}</b>" for c, _ in BALANCE_MEMO])
    bal_table = _table(["day"] + [lab for _, lab in bal_cols] + ["sources − uses"] + [lab for _, lab in BALANCE_MEMO],
                       bal_rows, "balance")
    cost_cols = (("import_kwh", "Import [kWh]"), ("export_kwh", "Export [kWh]"), ("import_cost", "Import cost"),
                 ("export_credit", "Export credit"), ("energy_cost", "Energy cost"), ("fixed_charges", "Fixed charges"),
                 ("total", "Total"))
    cost_rows = [[mo] + [_num(row[c]) for c, _ in cost_cols] for mo, row in month.iterrows()]
    cost_rows.append(["<b>total</b>"] + [f"<b>{_num(month[c].sum())}</b>" for c, _ in cost_cols])
    cost_table = _table(["month"] + [lab if "kWh" in lab else f"{lab} [{currency}]" for _, lab in cost_cols],
                        cost_rows, "cost")
    dev = result.device_costs()
    dev_rows = [[html.escape(str(name)), _num(row["energy_kwh"], 3), f"{row['share'] * 100:.1f}", _num(row["cost"])]
                for name, row in dev.iterrows()]
    dev_rows.append(["<b>total</b>", f"<b>{_num(dev['energy_kwh'].sum(), 3)}</b>", "<b>100.0</b>" if len(dev) else "–",
                     f"<b>{_num(dev['cost'].sum())}</b>"])
    dev_table = _table(["device", "Energy [kWh]", "Share [%]", f"Cost [{currency}]"], dev_rows, "devices")
    partial = m.get("partial")
    partial_note = (f'<p class="partial">This run did not finish: {partial["steps_settled"]} of {partial["steps_asked"]} '
                    f'steps ({html.escape(str(partial.get("why", "")))}).</p>' if partial else "")
    elements = ", ".join(f"{html.escape(n)} ({html.escape(kd)})" for n, kd in m.get("elements", {}).items())
    many = len(day) > 31
    details = (lambda inner: f"<details><summary>the table, day by day</summary>{inner}</details>") if many else (lambda inner: inner)
    title = f"hometwin report: {html.escape(m['home'])}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{STYLE}</style>
<script>{get_plotlyjs()}</script>
</head><body>
<h1>{title}</h1>
<p>{period} · {len(f)} steps of {m['step_s']} s · currency {html.escape(currency or '–')} ·
hometwin {html.escape(__version__)}<br>elements: {elements}</p>
{partial_note}
<h2>Key figures</h2>
{_table(["KPI", "value", "unit"], kpi_rows, "kpis")}
<h2>Power</h2>
{figs['fig-power']}
{figs.get('fig-soc', '')}
<h2>Daily energy balance</h2>
<p class="note">Per local day, sources = uses: PV (DC) + grid import + battery discharge = load served + grid
export + battery charge + conversion losses. PV is counted at the inverter's DC input, the battery at its
terminals; the losses are the inverter's PV and battery conversion losses. Curtailed PV (offered, never taken)
and unserved load (asked for, never delivered) are not flows of the home's bus and are listed beside the
balance. All figures in kWh.</p>
{figs['fig-balance']}
{details(bal_table)}
<h2>Cost per month</h2>
<p class="note">Energy cost = import cost − export credit, at each step's prices; fixed charges = the grid's daily
charge ({_num(float(m.get('fixed_daily_charge', 0.0)))} {html.escape(currency)}) for each local day of the run.</p>
{figs['fig-cost']}
{cost_table}
<h2>Energy and cost per device</h2>
<p class="note">Each load's energy served over the run, and its cost: at every step, the energy the device took
× that step's import price, summed — the price of the energy when it was used, whichever of grid, PV or battery
delivered it. The device costs therefore do not add up to the energy cost above, which counts only grid import
and nets the export credit.</p>
{dev_table}
<h2>Energy flows</h2>
<p class="note">Where the run's energy came from and went, through the home's bus (the inverter and its AC side),
in kWh. Not flows, so not shown: PV curtailed {_num(k['curtailed_kwh'])} kWh, unserved load
{_num(k['unserved_kwh'])} kWh.</p>
{figs['fig-sankey']}
<script>{RENDER}</script>
</body></html>
"""
