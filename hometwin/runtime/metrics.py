"""Prometheus metrics of one service (prometheus-client; one registry per service).

Names follow Prometheus conventions with the ``hometwin_`` prefix.  Every series carries the
labels ``home`` (the Home's name), ``element`` (the element's name, or ``clock``), ``kind`` (the
element's kind: pv, battery, inverter, oven …, or ``clock``) and ``role`` (source, storage, load,
converter, grid …, or ``clock``), set by the service itself from the spec: a local Prometheus that
scrapes ``hometwin up`` sums by home exactly as one on Kubernetes does (the chart's PodMonitor keeps
them: ``honorLabels``).

Energy counters say which side of the inverter they count: a PV array's own counter is DC
(``hometwin_pv_dc_energy_joules_total``: what its MPPT took), the inverter's is AC
(``hometwin_pv_ac_energy_joules_total``), next to the home's other flows
(``hometwin_home_energy_joules_total{flow=…}``, the inverter's ledger).  Summed by home, these equal
the run's ``kpis.json`` once the last window is scraped.

The last window is visible: a service told to stop keeps its /metrics endpoint (and its session)
up until one more scrape has completed after the stop, at most ``linger_s`` — when nothing ever
scraped it, it does not wait (:meth:`ServiceMetrics.linger`).

The values are plain Python numbers that the service's handlers update, and a
custom collector (prometheus-client's documented pattern for "proxy" metrics)
turns them into metric families when /metrics is scraped.  A single-step window
updates a dozen series per service; with prometheus-client's ``Counter``/``Gauge``
children (a lock and a value object each) that was ~10 µs of a TV's ~46 µs of
handler time per window, and more with cold caches.  Scrapes are rare; windows are not.
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Iterator, Mapping

import numpy as np
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

#: telemetry key → (metric quantity label) for the temperature gauge
TEMPERATURES = {"temp_indoor": "indoor", "temp_water": "tank", "temp_tank": "tank"}

#: Upper bounds of the window latency histogram's buckets [s] (+Inf is added).
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)

#: The labels every series carries, from the spec (see the module's doc).
IDENTITY = ("home", "element", "kind", "role")

#: How long a stopping service waits for one more scrape of its last values [s] (``--metrics-linger``).
LINGER_S = 5.0

#: attribute → (type, name, help, label names after the :data:`IDENTITY` labels).  A series exists once it has
#: a value (no SoC gauge on a TV).
FAMILIES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "power": ("gauge", "hometwin_element_power_watts",
              "Mean power of the last settled step [W] (+ onto the home's AC bus, − off it)", ()),
    "energy": ("counter", "hometwin_element_energy_joules",
               "Energy through the element since start [J], by direction (onto_bus / off_bus)", ("direction",)),
    "soc": ("gauge", "hometwin_battery_soc_ratio", "Battery state of charge [0-1]", ()),
    "temperature": ("gauge", "hometwin_element_temperature_celsius", "Indoor / tank temperature [°C]",
                    ("quantity",)),
    "home_energy": ("counter", "hometwin_home_energy_joules",
                    "Home-level energy since start [J] by flow (the inverter's ledger: load, grid_import, "
                    "grid_export, battery_charge, battery_discharge, curtailed, unserved, loss)", ("flow",)),
    "pv_ac": ("counter", "hometwin_pv_ac_energy_joules",
              "PV energy delivered on the inverter's AC side since start [J]", ()),
    "ticks": ("counter", "hometwin_ticks", "Windows processed", ()),
    "steps": ("counter", "hometwin_steps", "Simulation steps settled", ()),
    "messages": ("counter", "hometwin_messages", "WAMP messages by direction (in / out) and URI",
                 ("direction", "uri")),
    "rejected": ("counter", "hometwin_messages_rejected", "Inbound messages rejected (logged, dropped)",
                 ("uri", "reason")),
    "stale": ("counter", "hometwin_elements_stale", "Windows settled without an element's packet", ("missing",)),
    "speculation": ("counter", "hometwin_speculative_packets",
                    "Packets published ahead of the last window's Settle (speculative), by outcome: kept / "
                    "rolled_back (an element), used / dropped (the inverter)", ("outcome",)),
    "sim_time": ("gauge", "hometwin_simulated_time_seconds",
                 "Simulated time reached (unix seconds, end of last step)", ()),
    "lag": ("gauge", "hometwin_clock_lag_seconds", "How far the paced clock is behind wall time [s]", ()),
    "speed": ("gauge", "hometwin_clock_speed_ratio", "Simulated seconds per wall second (0 = max)", ()),
}
LATENCY = ("hometwin_window_latency_seconds", "Wall time from tick to settle [s]")

#: A PV array's own power and energy are DC (before the inverter): its names say so.
PV_DC_NAMES = {"power": ("hometwin_pv_dc_power_watts", "Mean DC power of the PV array in the last settled "
                                                       "step [W] (what the inverter's MPPT took)"),
               "energy": ("hometwin_pv_dc_energy_joules", "DC energy of the PV array since start [J], by "
                                                          "direction (onto_bus)")}

#: The home-level flows the inverter counts (FLOW_KEYS' energies less PV, which has its own names).
HOME_FLOWS = ("load", "grid_import", "grid_export", "battery_charge", "battery_discharge", "curtailed",
              "unserved", "loss")


class ServiceMetrics:
    """The metrics every service exposes; ``serve(port)`` starts the HTTP endpoint.

    Updates are plain dictionary operations on the event loop's thread; the HTTP thread
    only copies them (:func:`_snapshot`)."""

    def __init__(self, element: str, home: str = "", kind: str = "", role: str = ""):
        self.element = element
        self.identity = (home, element, kind, role)
        self.names = {attr: PV_DC_NAMES.get(attr, (name, doc)) if kind == "pv" else (name, doc)
                      for attr, (_type, name, doc, _labels) in FAMILIES.items()}
        self.scrapes_started = 0  # scrapes begun (the HTTP thread counts them)
        self.scrapes_done = 0  # the number of the last scrape that completed
        self.registry = CollectorRegistry()
        self.values: dict[str, dict[tuple[str, ...], float]] = {attr: {} for attr in FAMILIES}
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, not cumulative; the last is +Inf
        self._latency_sum = 0.0
        self._latency_count = 0
        self._messages = self.values["messages"]
        self.registry.register(_Collector(self))

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Start the /metrics HTTP endpoint (a daemon thread); port 0 = none.  A port that cannot
        be listened on is a :class:`ValueError` naming it (the service refuses to start)."""
        if port:
            try:
                start_http_server(port, addr=addr, registry=self.registry)
            except OSError as exc:
                raise ValueError(f"--metrics-port {port}: cannot listen on {addr}:{port} "
                                 f"({exc.strerror or exc})") from None

    async def linger(self, max_s: float = LINGER_S, every_s: float = 0.05) -> bool:
        """Wait (on the running loop: handlers still run meanwhile) until a scrape that began after
        this call has completed — the last values were read — or ``max_s`` passed.  An endpoint
        nobody has scraped yet does not wait.  True when that scrape happened."""
        import asyncio
        import time

        if not self.scrapes_started or max_s <= 0:
            return False
        target = self.scrapes_started + 1
        deadline = time.monotonic() + max_s
        while self.scrapes_done < target:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(every_s)
        await asyncio.sleep(0.2)  # the collector is done; let the HTTP thread write the response out
        return True

    # -- updates ---------------------------------------------------------------------------------
    def inc(self, attr: str, *labels: str, amount: float = 1.0) -> None:
        """Add ``amount`` (≥ 0) to counter ``attr`` with the labels after ``element``."""
        series = self.values[attr]
        series[labels] = series.get(labels, 0.0) + amount

    def set(self, attr: str, value: float, *labels: str) -> None:
        """Set gauge ``attr`` with the labels after ``element``."""
        self.values[attr][labels] = float(value)

    def observe_latency(self, seconds: float) -> None:
        self._buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum += seconds
        self._latency_count += 1

    # -- helpers for the hot path --------------------------------------------------------------
    def msg(self, direction: str, uri: str) -> None:
        key = (direction, uri)
        self._messages[key] = self._messages.get(key, 0.0) + 1.0

    def reject(self, uri: str, reason: str) -> None:
        self.inc("rejected", uri, reason)

    def settled(self, served: np.ndarray | None, dt_s: float, end_epoch_s: float, latency_s: float | None,
                steps: int) -> None:
        """One settled window of this element."""
        v = self.values
        v["ticks"][()] = v["ticks"].get((), 0.0) + 1.0
        v["steps"][()] = v["steps"].get((), 0.0) + steps
        v["sim_time"][()] = float(end_epoch_s)
        if latency_s is not None:
            self.observe_latency(latency_s)
        if served is not None and len(served):
            v["power"][()] = float(served[-1]) / dt_s
            if len(served) == 1:
                x = float(served[0])
                onto, off = max(x, 0.0), max(-x, 0.0)
            else:
                onto = float(served[served > 0].sum())
                off = float(-served[served < 0].sum())
            energy = v["energy"]
            if onto:
                energy[("onto_bus",)] = energy.get(("onto_bus",), 0.0) + onto
            if off:
                energy[("off_bus",)] = energy.get(("off_bus",), 0.0) + off

    def home_flows(self, flows: Mapping[str, np.ndarray], k: int) -> None:
        """The inverter's ledger of one settled window (steps 0…k): the home's energy flows."""
        energy = self.values["home_energy"]
        for flow in HOME_FLOWS:
            x = float(np.sum(flows[f"{flow}_j"][: k + 1]))
            energy[(flow,)] = energy.get((flow,), 0.0) + x
        pv = self.values["pv_ac"]
        pv[()] = pv.get((), 0.0) + float(np.sum(flows["pv_ac_j"][: k + 1]))

    def telemetry(self, values: Mapping[str, float]) -> None:
        if "soc" in values:
            self.values["soc"][()] = float(values["soc"])
        for key, quantity in TEMPERATURES.items():
            if key in values:
                self.values["temperature"][(quantity,)] = float(values[key])


def _snapshot(series: dict[tuple[str, ...], float]) -> list[tuple[tuple[str, ...], float]]:
    """The items of a dict the event loop's thread may add to meanwhile.  Copying is not atomic
    (a garbage collection during the copy can run Python code and let the other thread in), so a
    copy that saw the dict grow is taken again; new series are rare, so this ends at once."""
    while True:
        try:
            return list(series.items())
        except RuntimeError:  # "dictionary changed size during iteration"
            continue


class _Collector:
    """Metric families from a :class:`ServiceMetrics`' values, built at scrape time."""

    def __init__(self, metrics: ServiceMetrics):
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        m.scrapes_started += 1  # (one HTTP thread at a time serves a scrape)
        number = m.scrapes_started
        ident = m.identity
        for attr, (kind, _name, _doc, labels) in FAMILIES.items():
            family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = family_type(*m.names[attr], labels=IDENTITY + labels)
            for key, value in _snapshot(m.values[attr]):
                family.add_metric(ident + key, value)
            yield family
        latency = HistogramMetricFamily(*LATENCY, labels=IDENTITY)
        if m._latency_count:
            counts, cumulative, buckets = list(m._buckets), 0, []
            for bound, count in zip(LATENCY_BUCKETS + (math.inf,), counts):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            latency.add_metric(ident, buckets, m._latency_sum)
        yield latency
        m.scrapes_done = number

    def describe(self) -> list[Any]:
        return []  # no checks against other collectors' names (one registry per service)
