"""What each KPI of :meth:`hometwin.results.Result.kpis` is called and measured in.

One table for every place that shows KPIs to a person — the HTML report, ``hometwin run``'s
table, an HTTP API, a dashboard — so that they all say the same thing::

    >>> kpi_label("total_cost", currency="ZAR")
    'Total cost [ZAR]'
    >>> KPI_LABELS["self_sufficiency"].unit
    'fraction'

``unit`` is the unit of the *value* as ``kpis()`` gives it; :data:`CURRENCY` stands for the
grid element's currency (``meta["currency"]``), filled in by :func:`kpi_unit`.  Fractions
(0–1) are shown as percent (:func:`kpi_display_unit`).  A KPI added to ``kpis()`` needs a row
here (``tests/test_report.py`` fails otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Placeholder unit: the currency of the home's grid element.
CURRENCY = "{currency}"


@dataclass(frozen=True)
class KpiLabel:
    label: str  # a person's name for the KPI, capitalised, without its unit
    unit: str  # of the value in kpis(): kWh, h, J, fraction, cycles, kWh/kWp, or CURRENCY
    description: str = ""


KPI_LABELS: dict[str, KpiLabel] = {
    "pv_kwh": KpiLabel("PV energy (AC)", "kWh", "PV energy taken by the inverter, after its conversion losses"),
    "pv_dc_kwh": KpiLabel("PV energy (DC)", "kWh", "PV energy taken by the inverter at its DC input"),
    "curtailed_kwh": KpiLabel("PV curtailed", "kWh", "PV energy offered but not taken (clipping, no place to put it)"),
    "load_kwh": KpiLabel("Load served", "kWh", "energy delivered to the loads"),
    "unserved_kwh": KpiLabel("Unserved load", "kWh", "energy the loads asked for and did not get"),
    "grid_import_kwh": KpiLabel("Grid import", "kWh"),
    "grid_export_kwh": KpiLabel("Grid export", "kWh"),
    "battery_charge_kwh": KpiLabel("Battery charge", "kWh", "at the battery's terminals"),
    "battery_discharge_kwh": KpiLabel("Battery discharge", "kWh", "at the battery's terminals"),
    "losses_kwh": KpiLabel("Conversion losses", "kWh", "the inverter's PV and battery conversion losses"),
    "energy_cost": KpiLabel("Energy cost", CURRENCY, "import cost less export credit"),
    "fixed_charges": KpiLabel("Fixed charges", CURRENCY, "the grid's daily charge times the local days of the run"),
    "total_cost": KpiLabel("Total cost", CURRENCY, "energy cost plus fixed charges"),
    "self_consumption": KpiLabel("Self-consumption", "fraction", "share of the PV energy used at home (not exported)"),
    "self_sufficiency": KpiLabel("Self-sufficiency (autarky)", "fraction", "share of the load not imported"),
    "outage_hours": KpiLabel("Grid outage", "h"),
    "outage_hours_ridden_through": KpiLabel("Outage ridden through", "h", "outage hours without unserved load"),
    "battery_cycles": KpiLabel("Battery equivalent full cycles", "cycles"),
    "pv_yield_kwh_per_kwp": KpiLabel("PV yield", "kWh/kWp", "AC PV energy per kWp installed"),
    "max_ledger_residual_j": KpiLabel("Max ledger residual", "J", "largest per-step energy imbalance (0 = conserved)"),
}

#: KPIs whose value is a fraction (0–1), shown as percent.
FRACTIONS = frozenset(k for k, v in KPI_LABELS.items() if v.unit == "fraction")


def kpi_unit(name: str, currency: str = "") -> str:
    """The unit of ``kpis()[name]``, the currency filled in ('' for an unknown KPI)."""
    row = KPI_LABELS.get(name)
    if row is None:
        return ""
    return row.unit.replace(CURRENCY, currency or "currency")


def kpi_display_unit(name: str, currency: str = "") -> str:
    """The unit a person reads: as :func:`kpi_unit`, but percent for fractions."""
    return "%" if name in FRACTIONS else kpi_unit(name, currency)


def kpi_label(name: str, currency: str = "") -> str:
    """``'Label [unit]'`` (the display unit), or the bare name of an unknown KPI."""
    row = KPI_LABELS.get(name)
    if row is None:
        return name
    return f"{row.label} [{kpi_display_unit(name, currency)}]"
