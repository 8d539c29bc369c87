"""Forecasts for the strategies, from the weather, PV, grid and load elements, with seeded error.

The inverter knows the other elements by what they publish about themselves
(``describe()``: kind, name, config) — over WAMP from their registrations,
in-process from the engine's roster.  From those configs it builds *shadow*
models (same kind, config, home and seed → the same numbers) and evaluates
them ahead of time.  That gives the "true" future of the uncontrollable parts:
PV (converted to AC with the inverter's own PV curve), the load of the stateless
loads, outdoor temperature and irradiance, prices, availability and limits.

What a strategy receives is that truth **degraded** unless the strategy is the
explicit perfect-foresight reference or the config says ``perfect: true``:

- PV and load: multiplicative log-normal error, correlated over the horizon
  (AR(1)), its standard deviation growing with √(lead time / 24 h);
- outdoor temperature: additive error, same growth;
- prices (``day_ahead``): the day-ahead market publishes tomorrow at 13:00
  local time; beyond what is published, the last known day repeats;
- outages (``announced``): scheduled load-shedding is known; random outages
  are not (they are left out of the forecast).

The error of the forecast issued at run step ``i`` is drawn from
``counter_rng(seed, i)``: reproducible and independent of window cuts.

With ``source: published`` the weather is instead the forecast **as it was published**: at a
replan at time ``t`` each shadow that has versions (a weather element on MET Norway or the
Open-Meteo forecast) reads the newest version published at or before ``t``
(:meth:`~hometwin.services.weather.model.Weather.as_of`), so PV and outdoor temperature carry
the real forecast's error and nothing published later; :attr:`Forecaster.published_log` says
which version each forecast used.  Prices and outages follow ``prices``/``outages`` as above.
In a realtime run (``HomeContext.realtime``) the shadows take up new documents (forecasts,
price days) at each forecast, whichever the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from hometwin.element import Role, Window
from hometwin.noise import counter_rng, unit_ar1
from hometwin.topology import signal_order

#: Signals worth keeping for planners (environment + grid).
KEEP = ("temp_air", "ghi", "dni", "dhi", "apparent_zenith", "azimuth", "grid_available", "price_import",
        "price_export", "import_limit_w", "export_limit_w")


@dataclass
class Forecast:
    """Per plan step (``n`` steps of ``dt_s`` from epoch ``t0_s``): powers in kW, prices per kWh."""

    t0_s: int
    dt_s: int
    n: int
    pv_kw: np.ndarray
    load_kw: np.ndarray
    temp_air: np.ndarray
    price_import: np.ndarray
    price_export: np.ndarray
    available: np.ndarray  # bool
    import_limit_kw: np.ndarray
    export_limit_kw: np.ndarray
    signals: dict[str, np.ndarray]  # plan-step means of the raw signals (for thermal gains)
    reaches_end: bool  # the horizon reaches the end of the run

    @property
    def dt_h(self) -> float:
        return self.dt_s / 3600.0


class Forecaster:
    """Truth from shadow models, cached per day; forecasts with error on top."""

    def __init__(self, inverter: Any, config: Any = None, perfect: bool = False, exclude: set[str] | None = None):
        self.inverter = inverter
        self.home = inverter.home
        self.config = config
        self.perfect = perfect or bool(getattr(config, "perfect", False))
        self.published = not self.perfect and getattr(config, "source", "synthetic") == "published"
        #: with ``source: published``: per forecast, the version each versioned shadow read
        #: (``t0_s``, ``element``, ``published_at`` [Unix s], ``key``); the last 10,000 kept
        self.published_log: list[dict[str, Any]] = []
        self.exclude = set(exclude or ())
        self.seed = self.home.element_seed(inverter.name + "/forecast")
        self._shadows: list[Any] | None = None
        self._chunk = max(1, 86400 // self.home.step_s)
        self._cache: dict[tuple[int, tuple[Any, ...]], dict[str, np.ndarray]] = {}
        #: planned load the strategy itself decides (deferred appliances), added to ``load_kw``:
        #: ``extra_load(t0_s, dt_s, n) -> kW per plan step``
        self.extra_load: Any = None

    def leave_out(self, names: set[str]) -> None:
        """Drop elements from the shadow load (their load is planned, see ``extra_load``)."""
        if not set(names) <= self.exclude:
            self.exclude |= set(names)
            self._shadows = None
            self._cache.clear()

    # -- shadows ------------------------------------------------------------------------------
    def shadows(self) -> list[Any]:
        if self._shadows is None:
            from hometwin.registry import element_class

            roster: Mapping[str, Any] = self.inverter.roster
            out = []
            for name, el in roster.items():
                if name in self.exclude or el.role in (Role.converter, Role.storage):
                    continue
                if el.role == Role.load and el.settle_on_shortfall:
                    continue  # stateful loads (heat pump, geyser) are planned or left to their thermostat
                d = el.describe()
                out.append(element_class(d["kind"])(name, d["config"], self.home))
            self._shadows = out
        return self._shadows

    def _data_key(self) -> tuple[Any, ...]:
        """What the shadows' values depend on besides time (the forecast versions they read)."""
        return tuple(el.data_version() for el in self.shadows() if hasattr(el, "data_version"))

    def _as_of(self, t0_s: int | None) -> None:
        """Every versioned shadow reads the newest version published at or before ``t0_s``
        (None: each step its own newest, the truth)."""
        found = False
        for el in self.shadows():
            if hasattr(el, "as_of"):
                version = el.as_of(None if t0_s is None else float(t0_s))
                if version is not None:
                    found = True
                    self.published_log.append({"t0_s": t0_s, "element": el.name, "published_at": version.stamp,
                                               "key": version.key})
        del self.published_log[:-10_000]
        if t0_s is not None and not found and not getattr(self, "_warned", False):
            import logging

            self._warned = True
            logging.getLogger("hometwin.forecast").warning(
                "%s: forecast.source is published, but no weather element reads a published forecast (met_norway, "
                "open_meteo forecast): its weather is known without error", self.inverter.name)

    def _truth_chunk(self, c: int) -> dict[str, np.ndarray]:
        key = (c, self._data_key())
        got = self._cache.get(key)
        if got is not None:
            return got
        from hometwin.solar import pv_to_ac

        home = self.home
        i0 = c * self._chunk
        n = min(self._chunk, home.n_steps - i0)
        w = Window(seq=-1, i0=i0, n=n, dt_s=home.step_s, home=home)
        sig: dict[str, np.ndarray] = {}
        shadows = self.shadows()
        for el in signal_order(shadows):
            sig.update(el.signals(w, sig))
        dt = float(home.step_s)
        offer = np.zeros(n)
        demand = np.zeros(n)
        for el in shadows:
            if el.role == Role.source:
                offer = offer + np.asarray(el.request(w, sig), dtype=float)
            elif el.role == Role.load:
                demand = demand - np.asarray(el.request(w, sig), dtype=float)
        inv = self.inverter
        pv_dc = np.minimum(offer, inv.pv_dc_max_w * dt)
        pv_ac = pv_to_ac(pv_dc / dt, inv.pdc0, inv.config.pv_efficiency)
        out = {k: np.asarray(v, dtype=float) for k, v in sig.items() if k in KEEP}
        out["pv_ac_w"] = pv_ac
        out["load_w"] = demand / dt
        out.setdefault("grid_available", np.ones(n))
        for key, val in (("price_import", 0.0), ("price_export", 0.0), ("import_limit_w", np.inf),
                         ("export_limit_w", np.inf), ("temp_air", 10.0)):
            out.setdefault(key, np.full(n, val))
        if inv.config.export_limit_kw is not None:
            out["export_limit_w"] = np.minimum(out["export_limit_w"], inv.config.export_limit_kw * 1000.0)
        if len(self._cache) > 8:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = out
        return out

    def truth(self, i0: int, n: int) -> dict[str, np.ndarray]:
        """True per-run-step values for steps ``i0 … i0+n-1`` (clipped to the run)."""
        n = max(0, min(n, self.home.n_steps - i0))
        parts: dict[str, list[np.ndarray]] = {}
        c0, c1 = i0 // self._chunk, (i0 + n - 1) // self._chunk
        for c in range(c0, c1 + 1):
            ch = self._truth_chunk(c)
            a = max(i0 - c * self._chunk, 0)
            b = min(i0 + n - c * self._chunk, len(ch["pv_ac_w"]))
            for k, v in ch.items():
                parts.setdefault(k, []).append(v[a:b])
        return {k: np.concatenate(v) for k, v in parts.items()}

    # -- forecasts ----------------------------------------------------------------------------
    def forecast(self, i0: int, horizon_s: float, step_s: float, perfect: bool | None = None,
                 extra: bool = True) -> Forecast:
        """Forecast issued at run step ``i0`` for ``horizon_s`` at plan steps of ``step_s``
        (``extra=False``: without the strategy's own planned load)."""
        home = self.home
        k = max(1, int(round(step_s / home.step_s)))
        dt_s = k * home.step_s
        left = home.n_steps - i0
        n_run = min(int(np.ceil(horizon_s / home.step_s)), left)
        n_plan = max(1, int(np.ceil(n_run / k)))
        n_run = min(n_plan * k, left)
        t0 = int(home.epoch_s(i0, 1)[0])
        perfect = self.perfect if perfect is None else perfect
        if self.published or home.realtime:  # realtime: the shadows take up new documents too
            self._as_of(t0 if self.published and not perfect else None)  # perfect: the truth
        tr = self.truth(i0, n_run)
        pad = n_plan * k - n_run

        def agg(a: np.ndarray, how: str = "mean") -> np.ndarray:
            a = np.asarray(a, dtype=float)
            if pad:
                a = np.concatenate([a, np.full(pad, a[-1])])
            a = a.reshape(n_plan, k)
            return a.min(axis=1) if how == "min" else a.mean(axis=1)

        pv = agg(tr["pv_ac_w"]) / 1000.0
        load = agg(tr["load_w"]) / 1000.0
        temp = agg(tr["temp_air"])
        pimp, pexp = agg(tr["price_import"]), agg(tr["price_export"])
        avail = agg(tr["grid_available"], "min") > 0.5
        if not perfect and self.config is not None:
            lead_h = np.arange(n_plan) * dt_s / 3600.0
            rng = counter_rng(self.seed, i0)
            grow = np.sqrt(lead_h / 24.0)
            pv_noise, load_noise, temp_noise = (unit_ar1(rng, n_plan, dt_s) for _ in range(3))
            load = load * np.exp(self.config.load_error * grow * load_noise)
            if not self.published:  # a published forecast carries its own error
                pv = pv * np.exp(self.config.pv_error * grow * pv_noise)
                temp = temp + self.config.temp_error_k * grow * temp_noise
            if self.config.prices == "day_ahead":
                pimp = _day_ahead(pimp, t0, dt_s, home.timezone)
                pexp = _day_ahead(pexp, t0, dt_s, home.timezone)
            if self.config.outages == "none":
                avail = np.ones(n_plan, dtype=bool)
        if extra and self.extra_load is not None:
            load = load + np.asarray(self.extra_load(t0, dt_s, n_plan), dtype=float)
        sig = {key: agg(tr[key]) for key in ("ghi", "dni", "dhi", "apparent_zenith", "azimuth") if key in tr}
        sig["temp_air"] = temp
        return Forecast(t0_s=t0, dt_s=dt_s, n=n_plan, pv_kw=pv, load_kw=load, temp_air=temp,
                        price_import=pimp, price_export=pexp, available=avail,
                        import_limit_kw=agg(tr["import_limit_w"], "min") / 1000.0,
                        export_limit_kw=agg(tr["export_limit_w"], "min") / 1000.0, signals=sig,
                        reaches_end=i0 + n_run >= home.n_steps)


def _day_ahead(price: np.ndarray, t0_s: int, dt_s: int, tz: str) -> np.ndarray:
    """Prices as known at ``t0_s``: published through tomorrow from 13:00 local, else through today;
    later steps repeat the last published day."""
    import pandas as pd

    now = pd.Timestamp(t0_s, unit="s", tz="UTC").tz_convert(tz)
    end_day = now.normalize() + pd.Timedelta(days=2 if now.hour >= 13 else 1)
    known_s = int(end_day.tz_convert("UTC").timestamp())
    times = t0_s + np.arange(len(price)) * dt_s
    per_day = int(round(86400 / dt_s))
    out = price.copy()
    nk = int(np.count_nonzero(times < known_s))  # published steps (a prefix)
    for i in range(nk, len(price)):
        j = i - per_day * int(np.ceil((i - nk + 1) / per_day))
        if j < 0:
            j = i % per_day if i % per_day < nk else nk - 1
        out[i] = price[max(j, 0)]
    return out
