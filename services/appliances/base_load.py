"""The rest of the house: a constant, an hourly local-time profile and/or a CSV profile, with noise.

Power of a step = ``power_w`` + ``hourly_profile_w[local hour]`` +
``profile_scale`` × file profile, times a noise factor ``max(0, 1 + noise_std · z)``
where ``z`` is standard normal, held for ``noise_step_min`` minutes and drawn
from ``counter_rng(seed, utc_day)`` — a pure function of time.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator

from hometwin.element import MAX_LOAD_W, DataFile, ElementConfig, Role, STRICT, Signals, Window
from hometwin.noise import counter_rng
from hometwin.services.appliances.meter import MeteredLoad
from hometwin.schedule import DAY_S, LocalClock
from hometwin.services.appliances import profiles


class ProfileFile(BaseModel):
    """A CSV of time + power [W] that repeats every day, week or year (local time)."""

    model_config = STRICT

    file: DataFile = Field(description="CSV path; relative paths resolve against the spec's folder")
    time_column: str | None = Field(None, description="time column (default: the first)")
    value_column: str | None = Field(None, description="power column in W (default: power_w, else the second)")
    repeat: Literal["day", "week", "year"] = Field("year", description="period the profile repeats with")
    scale: float = Field(1.0, gt=0, description="[-] factor on the file's power")


class BaseLoadConfig(ElementConfig):
    """Everything in the house not modelled as its own element."""

    power_w: float = Field(300.0, ge=0, le=MAX_LOAD_W, description="[W] constant part")
    hourly_profile_w: list[float] | None = Field(None, description="[W] 24 values, one per local hour, added")
    profile: ProfileFile | None = Field(None, description="power profile from a CSV file, added")
    noise_std: float = Field(0.0, ge=0, le=1, description="[-] relative standard deviation of the noise")
    noise_step_min: float = Field(15.0, gt=0, le=1440, description="[min] how long one noise value holds")

    @field_validator("hourly_profile_w")
    @classmethod
    def _hourly(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return value
        if len(value) != 24:
            raise ValueError(f"needs 24 values, one per local hour (got {len(value)})")
        bad = [v for v in value if not v >= 0]
        if bad:
            raise ValueError(f"values must be >= 0 W (got {bad[:3]})")
        return value

    @field_validator("noise_step_min")
    @classmethod
    def _divides_day(cls, value: float) -> float:
        if (1440 / value) != int(1440 / value):
            raise ValueError(f"must divide a day (1440 min) evenly (got {value})")
        return value


class BaseLoad(MeteredLoad):
    """Base load of the house (constant + hourly profile + CSV profile, optional noise)."""

    kind = "base_load"
    role = Role.load
    runs_ahead = True
    Config: ClassVar[type[ElementConfig]] = BaseLoadConfig
    inputs = ()
    outputs = ()
    description = "The rest of the house: constant, hourly and file profiles with seeded noise."

    config: BaseLoadConfig

    def setup(self) -> None:
        cfg = self.config
        self._clock = LocalClock(self.home.timezone)
        self._profile = None
        if cfg.profile is not None:
            p = cfg.profile
            self._profile = profiles.read_power_profile(self.home.resolve_path(p.file, "profile.file"), self.home.timezone,
                                                        p.repeat, p.time_column, p.value_column)
        self._noise_cache: dict[int, np.ndarray] = {}
        self.init_meter()

    def _noise(self, epoch_s: np.ndarray) -> np.ndarray:
        cfg = self.config
        block_s = int(round(cfg.noise_step_min * 60))
        day = np.floor_divide(epoch_s, DAY_S)
        slot = np.mod(epoch_s, DAY_S) // block_s
        z = np.empty(epoch_s.shape)
        for d in np.unique(day):
            d = int(d)
            if d not in self._noise_cache:
                if len(self._noise_cache) > 8:
                    self._noise_cache.clear()
                self._noise_cache[d] = counter_rng(self.seed, d).standard_normal(DAY_S // block_s)
            sel = day == d
            z[sel] = self._noise_cache[d][slot[sel]]
        return np.maximum(0.0, 1.0 + cfg.noise_std * z)

    def power(self, w: Window) -> np.ndarray:
        """Mean power [W] per step (taken at the step's start)."""
        cfg = self.config
        power = np.full(w.n, cfg.power_w)
        if cfg.hourly_profile_w is not None or self._profile is not None:
            wall_s = self._clock.wall_seconds(w.epoch_s)
            if cfg.hourly_profile_w is not None:
                power = power + profiles.hourly_profile(wall_s, cfg.hourly_profile_w)
            if self._profile is not None:
                power = power + cfg.profile.scale * self._profile.at(wall_s)
        if cfg.noise_std > 0:
            power = power * self._noise(w.epoch_s)
        return np.maximum(power, 0.0)  # a load never feeds the bus (measured profiles dip below 0)

    def request(self, w: Window, signals: Signals) -> np.ndarray:
        return -self.power(w) * w.dt_s

