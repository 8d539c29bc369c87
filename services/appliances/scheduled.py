"""Scheduled loads: an appliance that runs on local-time timers, a manual switch, a duty cycle.

Mean power of a step (W), then joules = power × dt, negative (loads take energy):

* ``on`` (manual switch / smart plug) → runs at ``power_w`` the whole step;
* otherwise each timer runs for the share of the step it covers (exact
  fractional overlap; overlapping timers do not add — the larger wins);
* a ``duty_cycle`` (a fridge compressor) multiplies the running share by the
  share of the step the cycle is on (a pure function of UTC time);
* ``standby_w`` is drawn for the rest of the step.

The request is a pure function of time and config: window size, settling early
and snapshot/restore never change it.  ``set(on=True)`` takes effect at the
next window.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel, Field, model_validator

from hometwin.chunks import ChunkCache
from hometwin.element import MAX_LOAD_W, ElementConfig, Role, STRICT, Signals, Window
from hometwin.services.appliances.meter import MeteredLoad
from hometwin.schedule import DailyWindow, LocalClock
from hometwin.services.appliances import profiles


class Timer(DailyWindow):
    """A daily local-time window in which the appliance runs."""

    power_w: float | None = Field(None, gt=0, le=MAX_LOAD_W, description="[W] power while this timer runs (default: the load's power_w)")


class DutyCycle(BaseModel):
    """Periodic on/off cycling while running (thermostat-driven compressor)."""

    model_config = STRICT

    period_min: float = Field(20.0, gt=0, le=1440, description="[min] length of one on/off cycle")
    on_fraction: float = Field(0.35, gt=0, le=1, description="[-] share of each cycle that is on")
    phase_min: float = Field(0.0, ge=0, description="[min] start of the first cycle after 1970-01-01 00:00 UTC")


class ScheduledLoadConfig(ElementConfig):
    """An appliance with a rated power, timers, a manual switch and an optional duty cycle."""

    power_w: float = Field(1000.0, gt=0, le=MAX_LOAD_W, description="[W] power while running")
    standby_w: float = Field(0.0, ge=0, le=MAX_LOAD_W, description="[W] power while not running")
    on: bool = Field(False, description="manual switch / smart plug: true runs at power_w regardless of timers")
    timers: list[Timer] = Field(default_factory=list, description="daily run windows in local time")
    duty_cycle: DutyCycle | None = Field(None, description="on/off cycling while running (fridge compressor)")

    @model_validator(mode="after")
    def _standby_below_power(self) -> "ScheduledLoadConfig":
        if self.standby_w > self.power_w:
            raise ValueError(f"standby_w ({self.standby_w}) must not exceed power_w ({self.power_w})")
        return self


class ScheduledLoad(MeteredLoad):
    """A load that runs on timers or a manual switch (the generic scheduled appliance)."""

    kind = "scheduled_load"
    role = Role.load
    runs_ahead = True
    Config: ClassVar[type[ElementConfig]] = ScheduledLoadConfig
    inputs = ()
    outputs = ()
    settable: ClassVar[tuple[str, ...] | None] = None
    description = "Appliance on local-time timers, a manual switch and an optional duty cycle."

    config: ScheduledLoadConfig

    def setup(self) -> None:
        cfg = self.config
        self._clock = LocalClock(self.home.timezone)
        self._timer_powers = [t.power_w or cfg.power_w for t in cfg.timers]
        self._power = ChunkCache.of_time(self.power_at, self.home)
        self.init_meter()

    def power(self, w: Window) -> np.ndarray:
        """Mean power [W] of each step of the window (positive = drawn)."""
        return self._power.window(w.i0, w.n)

    def power_at(self, epoch_s: np.ndarray, dt_s: float) -> np.ndarray:
        """Mean power [W] of steps of ``dt_s`` starting at ``epoch_s`` (a pure function of time)."""
        cfg = self.config
        n = len(epoch_s)
        if cfg.on:
            active_w, active = np.full(n, cfg.power_w), np.ones(n)
        elif cfg.timers:
            wall_s = self._clock.wall_seconds(epoch_s)
            active_w, active = profiles.timer_power(wall_s, dt_s, cfg.timers, self._timer_powers)
        else:
            active_w, active = np.zeros(n), np.zeros(n)
        if cfg.duty_cycle is not None:
            dc = cfg.duty_cycle
            duty = profiles.duty_cycle_fraction(epoch_s, dt_s, dc.period_min * 60.0, dc.on_fraction,
                                                dc.phase_min * 60.0)
            active_w, active = active_w * duty, active * duty
        return profiles.mean_power(active_w, active, cfg.standby_w)

    def request(self, w: Window, signals: Signals) -> np.ndarray:
        return -self.power(w) * w.dt_s



# -- presets --------------------------------------------------------------------------------------

class OvenConfig(ScheduledLoadConfig):
    """An electric oven: 2000 W, a dinner timer 17:30–18:30 by default.

    Clear ``timers`` (``[]``) for an oven that only runs when switched ``on``;
    such an oven with ``on: false`` draws nothing.
    """

    power_w: float = Field(2000.0, gt=0, description="[W] power while heating")
    timers: list[Timer] = Field(default_factory=lambda: [Timer(start="17:30", end="18:30")],
                                description="daily run windows in local time (default: dinner 17:30-18:30)")


class Oven(ScheduledLoad):
    """Electric oven (2000 W; dinner timer 17:30–18:30 by default; switch it on at run time)."""

    kind = "oven"
    Config = OvenConfig


class TVConfig(ScheduledLoadConfig):
    """A television: 120 W in the evening, 1 W standby."""

    power_w: float = Field(120.0, gt=0, description="[W] power while on")
    standby_w: float = Field(1.0, ge=0, description="[W] standby power")
    timers: list[Timer] = Field(default_factory=lambda: [Timer(start="19:00", end="23:00")],
                                description="daily viewing windows in local time (default 19:00-23:00)")


class TV(ScheduledLoad):
    """Television (120 W evenings 19:00–23:00, 1 W standby)."""

    kind = "tv"
    Config = TVConfig


class KettleConfig(ScheduledLoadConfig):
    """An electric kettle: 2000 W, short boils (3 min) morning and evening."""

    power_w: float = Field(2000.0, gt=0, description="[W] power while boiling")
    timers: list[Timer] = Field(default_factory=lambda: [Timer(start="07:00", end="07:03"),
                                                         Timer(start="18:00", end="18:03")],
                                description="boils in local time (default 07:00-07:03 and 18:00-18:03)")


class Kettle(ScheduledLoad):
    """Electric kettle (2000 W; 3-minute boils at 07:00 and 18:00)."""

    kind = "kettle"
    Config = KettleConfig


class LightsConfig(ScheduledLoadConfig):
    """The home's lighting: 150 W mornings and evenings."""

    power_w: float = Field(150.0, gt=0, description="[W] power of the lights that are on")
    timers: list[Timer] = Field(default_factory=lambda: [Timer(start="06:30", end="08:00"),
                                                         Timer(start="18:00", end="23:30")],
                                description="lit windows in local time (default 06:30-08:00, 18:00-23:30)")


class Lights(ScheduledLoad):
    """Lighting (150 W; 06:30–08:00 and 18:00–23:30)."""

    kind = "lights"
    Config = LightsConfig


class FridgeConfig(ScheduledLoadConfig):
    """A fridge: always on; its 120 W compressor runs 35 % of every 20 minutes."""

    power_w: float = Field(120.0, gt=0, description="[W] compressor power")
    on: bool = Field(True, description="plugged in (the thermostat cycles the compressor)")
    duty_cycle: DutyCycle | None = Field(default_factory=DutyCycle,
                                         description="compressor cycle (default 35 % of 20 min)")


class Fridge(ScheduledLoad):
    """Fridge (120 W compressor, 35 % duty over a 20-minute cycle: 42 W on average)."""

    kind = "fridge"
    Config = FridgeConfig
