"""The utility connection: availability (outages), limits and tariffs.

The grid publishes signals; it asks for no energy itself (the inverter settles
with it).  Its settled flow is the grid's contribution to the bus: ``+`` import,
``−`` export (J per step).
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from hometwin.chunks import ChunkCache
from hometwin.element import Element, ElementConfig, Role, Signals, Window
from hometwin.schedule import DAY_S, LocalClock, any_mask, local_day
from hometwin.services.grid import outages as out
from hometwin.services.grid import tariffs as tf
from hometwin.units import J_PER_KWH

log = logging.getLogger("hometwin.grid")
_RANDOM_BLOCK_DAYS = 32  # random outages are computed and cached per block of UTC days


class GridConfig(ElementConfig):
    """Grid connection: limits, import/export tariffs, fixed charge and outages."""

    import_limit_kw: float | None = Field(None, gt=0, description="[kW] import limit (None = unlimited)")
    export_limit_kw: float | None = Field(None, ge=0, description="[kW] export limit (None = unlimited, 0 = no export)")
    tariff: tf.Tariff = Field(default_factory=tf.FlatTariff, description="import tariff")
    export_tariff: tf.Tariff = Field(default_factory=tf.FlatTariff, description="export tariff (default: flat 0)")
    fixed_daily_charge: float = Field(0.0, ge=0, description="[currency d-1] charged once per local day")
    currency: str = Field("EUR", min_length=1, description="currency of every price")
    outages: out.OutageConfig = Field(default_factory=out.OutageConfig, description="when the grid is off")
    price_refresh_s: int = Field(300, ge=5, le=86400, description=(
        "[s] realtime: read the prices again at most this often (a price file that changed, a service's "
        "document that appeared or changed: tomorrow's day-ahead prices)"))


class Grid(Element):
    """The utility connection: grid_available, prices and limits per step."""

    kind = "grid"
    role = Role.grid
    runs_ahead = True
    Config = GridConfig
    inputs = ()
    outputs = ("grid_available", "price_import", "price_export", "import_limit_w", "export_limit_w")
    description = "Utility connection: outages and load-shedding, import/export limits, tariffs."

    config: GridConfig
    settable: ClassVar[tuple[str, ...] | None] = None

    def setup(self) -> None:
        cfg, home = self.config, self.home
        self._clock = LocalClock(home.timezone)
        self._series = self._read_series()
        self._prices_read = time.monotonic()
        self._series_version = 0
        self.held_steps = 0  # realtime: steps priced before their price was published (held)
        o = cfg.outages
        self._iv_starts, self._iv_ends = out.intervals_epoch(o.intervals, home.timezone)
        self._explicit = list(zip(self._iv_starts.tolist(), self._iv_ends.tolist()))
        if o.eskomsepush is not None:  # announced events join the explicit intervals
            self._iv_starts, self._iv_ends = self._announced()
        self._stage = (out.read_loadshedding_schedule(home.resolve_path(o.schedule.file, "outages.schedule.file"),
                                                      o.schedule.stage)
                       if o.schedule else None)
        self._random_block: tuple[int, np.ndarray, np.ndarray] | None = None
        self._last_window: tuple[tuple[int, int, int], tuple[np.ndarray, ...]] | None = None
        self._arrays = ChunkCache.of_time(self._arrays_at, home)  # single steps cut from a day at once
        self._import_limit_w = np.inf if cfg.import_limit_kw is None else cfg.import_limit_kw * 1000.0
        self._export_limit_w = np.inf if cfg.export_limit_kw is None else cfg.export_limit_kw * 1000.0
        if not self.state:
            self.state = {"import_j": 0.0, "export_j": 0.0, "import_cost": 0.0, "export_revenue": 0.0,
                          "fixed_charges": 0.0, "last_charged_day": None, "outage_steps": 0,
                          "last_import_w": 0.0, "last_export_w": 0.0, "available": 1.0}

    def _load_series(self, tariff: Any, key: str) -> tf.PriceSeries | None:
        home = self.home
        t0 = int(home.start.timestamp())
        t_last = t0 + (home.n_steps - 1) * home.step_s
        if isinstance(tariff, tf.SpotTariff):
            series = (tf.load_spot_published(tariff, t0, t_last, self.config.price_refresh_s)
                      if home.realtime else tf.load_spot(tariff, t0, t_last))
        elif isinstance(tariff, tf.SeriesTariff):
            series = tf.load_series(tariff, home.resolve_path(tariff.file, f"{key}.file"), home.timezone)
        else:
            return None
        tf.check_price_range(series, tariff)
        if home.realtime:  # later prices are published as the run goes (held until then: _prices)
            now = max(t0, self._now_step())
            tf.check_coverage(series, now, now + 1, home.timezone)
        else:
            tf.check_coverage(series, t0, t_last + 1, home.timezone)
        return series

    def _read_series(self) -> dict[str, tf.PriceSeries | None]:
        """The import and export price series of the tariffs that read prices (None for the others)."""
        cfg = self.config
        return {key: self._load_series(t, field) for key, field, t in
                (("import", "tariff", cfg.tariff), ("export", "export_tariff", cfg.export_tariff))}

    def _taken_up(self) -> None:
        """New prices or outage events are in force: windows are computed again from them."""
        self._series_version += 1
        self._arrays = ChunkCache.of_time(self._arrays_at, self.home)
        self._last_window = None

    def _announced(self) -> tuple[np.ndarray, np.ndarray]:
        """The explicit outage intervals merged with the events EskomSePush announces now."""
        from hometwin.services.grid.sources import eskomsepush

        return out.merge_intervals(self._explicit + eskomsepush.load(self.config.outages.eskomsepush))

    def _now_step(self) -> int:
        """[Unix s] the start of the step the wall clock is in (a realtime run)."""
        return int(time.time()) // self.home.step_s * self.home.step_s

    def _refresh_prices(self) -> None:
        """Realtime: at most every ``price_refresh_s``, read the prices again — a price file whose
        modification time changed, a day's document that appeared or changed — and the
        load-shedding events EskomSePush announces, and use them for the windows computed from
        then on."""
        now = time.monotonic()
        if now - self._prices_read < self.config.price_refresh_s:
            return
        self._prices_read = now
        try:
            fresh = self._read_series()
        except Exception as exc:  # noqa: BLE001 - the twin goes on with the prices it has
            log.warning("%s: reading the prices again failed (%s); keeping the last ones", self.name,
                        " ".join(str(exc).split())[:300])
            fresh = dict(self._series)
        if self.config.outages.eskomsepush is not None:  # the live schedule (its answer is reused for an hour)
            try:
                starts, ends = self._announced()
            except Exception as exc:  # noqa: BLE001 - the twin goes on with the events it has
                log.warning("%s: reading the load-shedding events again failed (%s); keeping the last ones",
                            self.name, " ".join(str(exc).split())[:300])
            else:
                if not (np.array_equal(starts, self._iv_starts) and np.array_equal(ends, self._iv_ends)):
                    self._iv_starts, self._iv_ends = starts, ends
                    self._taken_up()
        if any(_changed(fresh[k], self._series[k]) for k in fresh):
            log.info("%s: new prices (%s)", self.name, ", ".join(
                f"{k}: {s.source} to {pd_stamp(int(s.ends[-1]))}" for k, s in fresh.items() if s is not None))
            self._series = fresh
            self._taken_up()

    def as_of(self, t: float | None) -> None:
        """A planner's view (:class:`~hometwin.services.inverter.strategies.forecast.Forecaster`):
        the prices published so far (realtime: read again when due).  Which of them a planner
        knows at ``t`` is the forecast's ``prices`` setting (``day_ahead``)."""
        if self.home.realtime:
            self._refresh_prices()

    def data_version(self) -> int:
        """Counts the price series taken up (a planner's cached truth is stale after a change)."""
        return self._series_version

    # -- pure-ish helpers over a window ----------------------------------------------------------
    def _prices(self, tariff: Any, series: tf.PriceSeries | None, epoch_s: np.ndarray,
                wall_s: np.ndarray) -> np.ndarray:
        if isinstance(tariff, tf.FlatTariff):
            return np.full(epoch_s.shape, float(tariff.price_per_kwh))
        if isinstance(tariff, tf.TimeOfUseTariff):
            return tf.tou_prices(wall_s, tariff)
        if self.home.realtime:
            prices, held = tf.held_prices(epoch_s, tariff, series)
            self.held_steps += held
            return prices
        return tf.series_prices(epoch_s, tariff, series, self.home.timezone)

    def _random_mask(self, epoch_s: np.ndarray) -> np.ndarray:
        rnd = self.config.outages.random
        b0, b1 = (int(epoch_s[0]) // DAY_S) // _RANDOM_BLOCK_DAYS, (int(epoch_s[-1]) // DAY_S) // _RANDOM_BLOCK_DAYS
        mask = np.zeros(epoch_s.shape, dtype=bool)
        for block in range(b0, b1 + 1):
            if self._random_block is None or self._random_block[0] != block:
                t0 = block * _RANDOM_BLOCK_DAYS * DAY_S
                found = out.random_outages(self.seed, t0, t0 + _RANDOM_BLOCK_DAYS * DAY_S,
                                           rnd.per_year, rnd.mean_duration_h)
                starts, ends = out.merge_intervals([tuple(x) for x in found])
                self._random_block = (block, starts, ends)
            mask |= out.in_intervals(epoch_s, self._random_block[1], self._random_block[2])
        return mask

    def outage_mask(self, epoch_s: np.ndarray, wall_s: np.ndarray) -> np.ndarray:
        """True where the grid is off at the step's start."""
        o = self.config.outages
        mask = out.in_intervals(epoch_s, self._iv_starts, self._iv_ends)
        if o.daily:
            mask |= any_mask(wall_s, o.daily)
        if self._stage is not None:
            mask |= out.schedule_mask(wall_s, self._stage)
        if o.random is not None and o.random.per_year > 0 and len(epoch_s):
            mask |= self._random_mask(epoch_s)
        return mask

    # -- window methods ------------------------------------------------------------------------
    def _window_arrays(self, w: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(outage mask, import price, export price) of a window, cached for its settle."""
        key = (w.i0, w.n, w.dt_s)
        if self._last_window is not None and self._last_window[0] == key:
            return self._last_window[1]
        if self.home.realtime:
            self._refresh_prices()
        arrays = self._arrays.window(w.i0, w.n)
        self._last_window = (key, arrays)
        return arrays

    def _arrays_at(self, epoch_s: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(outage mask, import price, export price) of steps starting at ``epoch_s`` (pure in time)."""
        wall_s = self._clock.wall_seconds(epoch_s)
        cfg = self.config
        return (self.outage_mask(epoch_s, wall_s),
                self._prices(cfg.tariff, self._series["import"], epoch_s, wall_s),
                self._prices(cfg.export_tariff, self._series["export"], epoch_s, wall_s))

    def signals(self, w: Window, inputs: Signals) -> dict[str, np.ndarray]:
        off, p_imp, p_exp = self._window_arrays(w)
        return {
            "grid_available": (~off).astype(float),
            "price_import": p_imp.copy(),
            "price_export": p_exp.copy(),
            "import_limit_w": np.full(w.n, self._import_limit_w),
            "export_limit_w": np.full(w.n, self._export_limit_w),
        }

    def request(self, w: Window, signals: Signals) -> np.ndarray:
        return np.zeros(w.n)

    def settle(self, w: Window, k: int, served: np.ndarray) -> None:
        """Count imports/exports, costs, fixed daily charges and outage steps through step ``k``."""
        flow = np.asarray(served[: k + 1], dtype=float)
        off, p_imp, p_exp = (a[: k + 1] for a in self._window_arrays(w))
        wall_s = self._clock.wall_seconds(w.epoch_s[: k + 1])
        cfg = self.config
        imp, exp = np.clip(flow, 0.0, None), np.clip(-flow, 0.0, None)
        st = self.state
        st["import_j"] += float(imp.sum())
        st["export_j"] += float(exp.sum())
        st["import_cost"] += float((imp * p_imp).sum() / J_PER_KWH)
        st["export_revenue"] += float((exp * p_exp).sum() / J_PER_KWH)
        days = np.unique(local_day(wall_s))
        last = st["last_charged_day"]
        new_days = days if last is None else days[days > last]
        st["fixed_charges"] += len(new_days) * cfg.fixed_daily_charge
        if len(new_days):
            st["last_charged_day"] = int(new_days[-1])
        st["outage_steps"] += int(off.sum())
        st["last_import_w"] = float(imp[-1] / w.dt_s)
        st["last_export_w"] = float(exp[-1] / w.dt_s)
        st["available"] = 0.0 if off[-1] else 1.0

    def telemetry(self) -> dict[str, float]:
        st = self.state
        return {"import_power_w": st["last_import_w"], "export_power_w": st["last_export_w"],
                "available": st["available"], "import_energy_j": st["import_j"],
                "export_energy_j": st["export_j"], "outage_steps": float(st["outage_steps"])}


def _changed(new: tf.PriceSeries | None, old: tf.PriceSeries | None) -> bool:
    if new is None or old is None:
        return new is not old
    return not (np.array_equal(new.starts, old.starts) and np.array_equal(new.ends, old.ends)
                and np.array_equal(new.values, old.values))


def pd_stamp(epoch_s: int) -> str:
    import pandas as pd

    return pd.Timestamp(epoch_s, unit="s", tz="UTC").isoformat()
