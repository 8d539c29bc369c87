"""Prometheus metrics of one service (prometheus-client; one registry per service).

Names follow Prometheus conventions with the ``hometwin_`` prefix and an
``element`` label (the element's name, or ``clock`` / the inverter's name).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

#: telemetry key → (metric quantity label) for the temperature gauge
TEMPERATURES = {"temp_indoor": "indoor", "temp_water": "tank", "temp_tank": "tank"}


class ServiceMetrics:
    """The metrics every service exposes; ``serve(port)`` starts the HTTP endpoint."""

    def __init__(self, element: str):
        self.element = element
        self.registry = reg = CollectorRegistry()
        lab = ["element"]
        self.power = Gauge("hometwin_element_power_watts",
                           "Mean power of the last settled step [W] (+ onto the home's AC bus, − off it)", lab, registry=reg)
        self.energy = Counter("hometwin_element_energy_joules_total",
                              "Energy through the element since start [J], by direction (onto_bus / off_bus)",
                              lab + ["direction"], registry=reg)
        self.soc = Gauge("hometwin_battery_soc_ratio", "Battery state of charge [0-1]", lab, registry=reg)
        self.temperature = Gauge("hometwin_element_temperature_celsius", "Indoor / tank temperature [°C]",
                                 lab + ["quantity"], registry=reg)
        self.ticks = Counter("hometwin_ticks_total", "Windows processed", lab, registry=reg)
        self.steps = Counter("hometwin_steps_total", "Simulation steps settled", lab, registry=reg)
        self.latency = Histogram("hometwin_window_latency_seconds", "Wall time from tick to settle [s]", lab,
                                 buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
                                 registry=reg)
        self.messages = Counter("hometwin_messages_total", "WAMP messages by direction (in / out) and URI",
                                lab + ["direction", "uri"], registry=reg)
        self.rejected = Counter("hometwin_messages_rejected_total", "Inbound messages rejected (logged, dropped)",
                                lab + ["uri", "reason"], registry=reg)
        self.stale = Counter("hometwin_elements_stale_total", "Windows settled without an element's packet",
                             lab + ["missing"], registry=reg)
        self.sim_time = Gauge("hometwin_simulated_time_seconds", "Simulated time reached (unix seconds, end of last step)",
                              lab, registry=reg)
        self.lag = Gauge("hometwin_clock_lag_seconds", "How far the paced clock is behind wall time [s]", lab, registry=reg)
        self.speed = Gauge("hometwin_clock_speed_ratio", "Simulated seconds per wall second (0 = max)", lab, registry=reg)
        self._e = element
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(element, *labels)``, looked up once (prometheus-client's ``labels`` costs
        ~5 µs a call; single-step windows call these a dozen times per tick).  Created on first use,
        so a series appears only once it has a value (no SoC gauge on a TV)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self._e, *labels)
        return child

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Start the /metrics HTTP endpoint (a daemon thread); port 0 = none."""
        if port:
            start_http_server(port, addr=addr, registry=self.registry)

    # -- helpers for the hot path --------------------------------------------------------------
    def msg(self, direction: str, uri: str) -> None:
        self._child(self.messages, direction, uri).inc()

    def reject(self, uri: str, reason: str) -> None:
        self._child(self.rejected, uri, reason).inc()

    def settled(self, served: np.ndarray | None, dt_s: float, end_epoch_s: float, latency_s: float | None,
                steps: int) -> None:
        """One settled window of this element."""
        child = self._child
        child(self.ticks).inc()
        child(self.steps).inc(steps)
        child(self.sim_time).set(end_epoch_s)
        if latency_s is not None:
            child(self.latency).observe(latency_s)
        if served is not None and len(served):
            child(self.power).set(float(served[-1]) / dt_s)
            if len(served) == 1:
                v = float(served[0])
                onto, off = max(v, 0.0), max(-v, 0.0)
            else:
                onto = float(served[served > 0].sum())
                off = float(-served[served < 0].sum())
            if onto:
                child(self.energy, "onto_bus").inc(onto)
            if off:
                child(self.energy, "off_bus").inc(off)

    def telemetry(self, values: Mapping[str, float]) -> None:
        if "soc" in values:
            self._child(self.soc).set(float(values["soc"]))
        for key, quantity in TEMPERATURES.items():
            if key in values:
                self._child(self.temperature, quantity).set(float(values[key]))
