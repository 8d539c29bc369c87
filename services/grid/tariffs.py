"""Tariffs: flat, time-of-use (local time, DST-correct), price series from CSV files, and spot
prices fetched from hvakosterstrommen.no or ENTSO-E (``services/grid/sources``).

Prices are in currency per kWh (``price_import``, ``price_export`` in the
glossary).  A step is charged the price of the interval that contains the
step's *start*.

A price series is kept as three arrays — interval starts and ends (UTC epoch
seconds) and values — and looked up with ``searchsorted``; a step whose start is
in no interval (before, after or in a gap of the file) is an error that names
the file and the missing span.

Readers
-------
* long format: one time column and one value column.  Times with an offset
  (``2025-03-30T02:00:00+02:00``) or naive plus a ``timezone``.  Naive local
  times at the autumn DST change appear twice in order (first summer time, then
  winter time); a blank value (the non-existent spring hour) is dropped.
* EPEX wide daily format ``Date,00-01,…,23-00,Baseload,Peakload`` (or 96
  quarter-hour columns ``00:00-00:15`` …) in local time.  The layout has 24
  columns on every day (SOURCES.md §1b), so:

  - spring-forward day (23 h): the column of the non-existent hour (02-03 in
    Europe/Oslo, a filler repeat of a neighbour) is dropped;
  - autumn day (25 h): one hour is missing; the repeated wall-clock hour gets
    the price of its column at both occurrences (prices follow the wall clock).
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from hometwin.datafiles import DataFileError, checked_column, mtime_key, parse_errors, read_text, shown
from hometwin.element import DataFile, STRICT
from hometwin.schedule import DailyWindow, window_mask
from hometwin.services.grid.sources import entsoe, hvakosterstrommen
from hometwin.services.grid.sources.entsoe import EntsoeSource
from hometwin.services.grid.sources.hvakosterstrommen import HvaKosterStrommenSource

#: Largest price magnitude [currency kWh-1] a tariff may give.  Prices are in the home's currency,
#: so the bound must hold in the weakest one: the EU wholesale cap of 4 EUR/kWh is about 70,000
#: IDR/kWh.  A price beyond it is a typo or a trap (1e308 runs to a cost of inf), never a tariff.
MAX_PRICE_PER_KWH = 100_000.0
#: Largest value in a price file, in the file's unit (per MWh allows 1000× the per-kWh bound).
MAX_FILE_PRICE = MAX_PRICE_PER_KWH * 1000.0
#: Largest factor on a file's prices (a currency conversion: 1 EUR is about 17,000 IDR).
MAX_SCALE = 100_000.0
Price = Annotated[float, Field(ge=-MAX_PRICE_PER_KWH, le=MAX_PRICE_PER_KWH)]

_WIDE_COL_RE = re.compile(r"^(\d{2})(?::(\d{2}))?-(\d{2})(?::(\d{2}))?$")


class _Strict(BaseModel):
    model_config = STRICT


class FlatTariff(_Strict):
    """One price at all times."""

    type: Literal["flat"] = "flat"
    price_per_kwh: Price = Field(0.0, description="[currency kWh-1] price (may be negative)")


class TouPeriod(DailyWindow):
    """A daily local-time window with its price."""

    price_per_kwh: Price = Field(description="[currency kWh-1] price inside the window")


class TimeOfUseTariff(_Strict):
    """Prices by local time of day (weekdays, months optional); the first matching period wins."""

    type: Literal["time_of_use"] = "time_of_use"
    periods: list[TouPeriod] = Field(default_factory=list, description="windows in local time, first match wins")
    default_price_per_kwh: Price = Field(0.0, description="[currency kWh-1] price outside every period")


class SeriesTariff(_Strict):
    """Prices from a CSV file (spot prices), plus scale and adder."""

    type: Literal["series"] = "series"
    file: DataFile = Field(description="CSV path; relative paths resolve against the home spec's folder")
    format: Literal["auto", "long", "epex_wide"] = Field(
        "auto", description="'long' (time, value columns), 'epex_wide' (Date,00-01,…), 'auto' detects")
    time_column: str | None = Field(None, description="long format: time column (default: the first)")
    value_column: str | None = Field(None, description="long format: value column (default: the second)")
    time_format: str | None = Field(None, description="long format: strftime format of the times, e.g. "
                                                      "'%d%b%Y %H:%M:%S' (default: inferred)")
    timezone: str | None = Field(None, description="IANA zone of naive times (default: the home's zone)")
    unit: Literal["per_mwh", "per_kwh"] = Field("per_mwh", description="unit of the file's values")
    scale: float = Field(1.0, gt=0, le=MAX_SCALE, description="[-] factor on the file's price, e.g. EUR→NOK")
    adder_per_kwh: Price = Field(0.0, description="[currency kWh-1] added after scaling (grid fee, taxes)")


SpotSource = Annotated[Union[HvaKosterStrommenSource, EntsoeSource], Field(discriminator="type")]


class SpotTariff(_Strict):
    """Day-ahead prices fetched from a service (hvakosterstrommen.no, ENTSO-E), plus scale and adder.

    The source gives prices in the home's currency per kWh (hvakosterstrommen: NOK or EUR;
    ENTSO-E: EUR/MWh × ``exchange_rate``); ``scale`` and ``adder_per_kwh`` then apply as for a
    series (VAT: ``scale: 1.25``; grid fee: the adder).  docs/data-sources.md.
    """

    type: Literal["spot"] = "spot"
    source: SpotSource = Field(description="hvakosterstrommen or entsoe")
    scale: float = Field(1.0, gt=0, le=MAX_SCALE, description="[-] factor on the price, e.g. 1.25 for 25 % VAT")
    adder_per_kwh: Price = Field(0.0, description="[currency kWh-1] added after scaling (grid fee, taxes)")

    @property
    def unit(self) -> str:
        return "per_kwh"


Tariff = Annotated[Union[FlatTariff, TimeOfUseTariff, SeriesTariff, SpotTariff], Field(discriminator="type")]


def load_spot(tariff: SpotTariff, first_s: float, last_s: float) -> PriceSeries:
    """The :class:`PriceSeries` [currency kWh-1] of a spot tariff covering ``[first_s, last_s]``."""
    src = tariff.source
    if isinstance(src, HvaKosterStrommenSource):
        starts, ends, values = hvakosterstrommen.load(src, first_s, last_s)
    else:
        starts, ends, values = entsoe.load(src, first_s, last_s)
    return PriceSeries(starts, ends, values, f"{src.type} {src.zone}")


def load_spot_published(tariff: SpotTariff, first_s: float, last_s: float, max_age_s: float) -> PriceSeries:
    """A realtime twin's prices: the local days from ``first_s`` on that are published so far
    (hvakosterstrommen answers 404 for tomorrow before the day-ahead auction's results, about
    13:00 CET); a day not published ends the series.  Today's and later documents are asked
    again after ``max_age_s`` (a document that changes or appears is taken up then)."""
    import datetime as dt

    from hometwin.fetch import SourceError

    src = tariff.source
    if not isinstance(src, HvaKosterStrommenSource):
        starts, ends, values = entsoe.load(src, first_s, last_s)
        return PriceSeries(starts, ends, values, f"{src.type} {src.zone}")
    tz = hvakosterstrommen.ZONE_TZ
    day = dt.datetime.fromtimestamp(first_s, tz).date()
    end = dt.datetime.fromtimestamp(last_s, tz).date()
    parts = []
    while day <= end:
        t = dt.datetime.combine(day, dt.time(12), tz).timestamp()
        try:
            parts.append(hvakosterstrommen.load(src, t, t, max_age_s=max_age_s))
        except SourceError:
            if not parts:
                raise  # not even the first day: the twin cannot start
            break
        day += dt.timedelta(days=1)
    starts, ends, values = (np.concatenate([p[k] for p in parts]) for k in range(3))
    return PriceSeries(starts, ends, values, f"{src.type} {src.zone}")


def held_prices(epoch_s: np.ndarray, tariff: "SeriesTariff | SpotTariff", series: PriceSeries) -> tuple[np.ndarray, int]:
    """A realtime twin's price per step [currency kWh-1]: a step no published price covers yet
    (tomorrow before it is published; a file not yet extended) holds the last price published
    before it (the first after it before the series starts).  Also the count of such steps."""
    values, covered = series.lookup(epoch_s)
    if not covered.all():
        last = np.clip(np.searchsorted(series.starts, epoch_s, side="right") - 1, 0, len(series.values) - 1)
        values = np.where(covered, values, series.values[last])
    return to_per_kwh(values, tariff), int((~covered).sum())


# -- price series -----------------------------------------------------------------------------

@dataclass(frozen=True)
class PriceSeries:
    """Piecewise-constant prices: value ``values[i]`` on ``[starts[i], ends[i])`` (UTC epoch s)."""

    starts: np.ndarray  # int64, sorted
    ends: np.ndarray  # int64, ends[i] <= starts[i+1]
    values: np.ndarray  # float, file unit
    source: str

    def lookup(self, epoch_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values, covered) at each epoch second; uncovered steps get NaN."""
        idx = np.searchsorted(self.starts, epoch_s, side="right") - 1
        safe = np.maximum(idx, 0)
        covered = (idx >= 0) & (epoch_s < self.ends[safe])
        return np.where(covered, self.values[safe], np.nan), covered

    def gaps(self, t0_s: int, t1_s: int) -> list[tuple[int, int]]:
        """Uncovered spans ``[a, b)`` intersecting ``[t0_s, t1_s)``."""
        lo = np.concatenate([[np.iinfo(np.int64).min], self.ends])
        hi = np.concatenate([self.starts, [np.iinfo(np.int64).max]])
        out = []
        for a, b in zip(lo[lo < hi], hi[lo < hi]):
            a, b = max(int(a), t0_s), min(int(b), t1_s)
            if a < b:
                out.append((a, b))
        return out


def _span_text(a: int, b: int, tz: str) -> str:
    fa = pd.Timestamp(a, unit="s", tz="UTC").tz_convert(tz)
    fb = pd.Timestamp(b, unit="s", tz="UTC").tz_convert(tz)
    return f"{fa.isoformat()} to {fb.isoformat()}"


def check_coverage(series: PriceSeries, t0_s: int, t1_s: int, tz: str = "UTC") -> None:
    """Raise ``ValueError`` naming the file and the missing spans if ``[t0_s, t1_s)`` is not covered."""
    gaps = series.gaps(t0_s, t1_s)
    if not gaps:
        return
    spans = "; ".join(_span_text(a, b, tz) for a, b in gaps[:3])
    more = f" (and {len(gaps) - 3} more gaps)" if len(gaps) > 3 else ""
    first = _span_text(int(series.starts[0]), int(series.ends[-1]), tz)
    raise ValueError(f"price series {series.source} has no price for {spans}{more}; "
                     f"the file covers {first}")


def _is_wide(columns: list[str]) -> bool:
    return len(columns) > 1 and columns[0].strip().lower() == "date" and bool(_WIDE_COL_RE.match(columns[1].strip()))


def _frame(path: str) -> pd.DataFrame:
    """The CSV at ``path`` (read bounded, see :mod:`hometwin.datafiles`) as a frame."""
    text = read_text(path, "price series file")
    with parse_errors(path, "price series file"):
        return pd.read_csv(io.StringIO(text))


def _columns(frame: pd.DataFrame) -> str:
    return ", ".join(shown(c) for c in list(frame.columns)[:30]) + (" …" if len(frame.columns) > 30 else "")


def _checked_prices(frame: pd.DataFrame, column: Any, path: str) -> np.ndarray:
    """A price column: finite numbers within :data:`MAX_FILE_PRICE` (the file's own unit)."""
    return checked_column(frame, column, path, "price series file", -MAX_FILE_PRICE, MAX_FILE_PRICE)


def read_epex_wide(path: str, timezone: str) -> PriceSeries:
    """Read the EPEX wide daily layout (``Date``, N interval columns, extra columns ignored)."""
    frame = _frame(path)
    cols = [c for c in frame.columns[1:] if _WIDE_COL_RE.match(str(c).strip())]
    if not cols:
        raise DataFileError(f"{path}: no interval columns like '00-01' or '00:00-00:15' after 'Date'")
    res_min = 1440 // len(cols)
    if res_min * len(cols) != 1440:
        raise DataFileError(f"{path}: {len(cols)} interval columns do not divide a day")
    frame = frame.dropna(subset=[frame.columns[0]])
    with parse_errors(path, "price series file"):
        days = pd.to_datetime(frame.iloc[:, 0].astype(str).str.strip(), format="%Y-%m-%d").to_numpy("datetime64[s]")
    values = np.column_stack([_checked_prices(frame, c, path) for c in cols]) if len(frame) else np.zeros((0, len(cols)))
    offsets = (np.arange(len(cols)) * res_min * 60).astype("timedelta64[s]")
    naive = pd.DatetimeIndex((days[:, None] + offsets[None, :]).ravel())
    flat = values.ravel()
    first = naive.tz_localize(timezone, ambiguous=np.ones(len(naive), bool), nonexistent="NaT")
    second = naive.tz_localize(timezone, ambiguous=np.zeros(len(naive), bool), nonexistent="NaT")
    ok = ~first.isna() & ~np.isnan(flat)
    t_first = first[ok].as_unit("s").asi8
    t_second = second[ok].as_unit("s").asi8
    rep = t_second != t_first  # repeated wall-clock time (autumn): the second occurrence too
    starts = np.concatenate([t_first, t_second[rep]])
    vals = np.concatenate([flat[ok], flat[ok][rep]])
    # the end of each row's day: next local midnight
    day_idx = np.repeat(np.arange(len(days)), len(cols))[ok]
    day_end_naive = pd.DatetimeIndex(days + np.timedelta64(1, "D"))
    day_end = day_end_naive.tz_localize(timezone, ambiguous=True, nonexistent="shift_forward").as_unit("s").asi8
    row_end = np.concatenate([day_end[day_idx], day_end[day_idx][rep]])
    order = np.argsort(starts, kind="stable")
    starts, vals, row_end = starts[order], vals[order], row_end[order]
    nxt = np.concatenate([starts[1:], [np.iinfo(np.int64).max]])
    ends = np.minimum(nxt, row_end)
    return PriceSeries(starts.astype(np.int64), ends.astype(np.int64), vals, path)


def parse_times(column: pd.Series, time_format: str | None = None) -> pd.Series:
    """Timestamps of a CSV column: ``time_format`` if given, else an inferred format, else per element."""
    text = column.astype(str).str.strip()
    if time_format:
        return pd.to_datetime(text, format=time_format)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format": we fall back on purpose
        try:
            return pd.to_datetime(text)
        except (ValueError, TypeError):
            return pd.to_datetime(text, format="mixed")


def read_long(path: str, timezone: str, time_column: str | None = None,
              value_column: str | None = None, time_format: str | None = None) -> PriceSeries:
    """Read a long CSV (one time column, one value column); each value lasts until the next time.

    The nominal interval is the median spacing; a spacing over 1.5× it is a gap
    (the interval before it ends after one nominal interval), and so is the end
    of the file.
    """
    frame = _frame(path)
    tcol = time_column or frame.columns[0]
    if value_column is None:
        if len(frame.columns) != 2:
            raise DataFileError(f"{path}: give value_column (columns: {_columns(frame)})")
        value_column = frame.columns[1]
    for col in (tcol, value_column):
        if col not in frame.columns:
            raise DataFileError(f"{path}: no column {shown(col)} (columns: {_columns(frame)})")
    frame = frame[[tcol, value_column]].dropna()
    with parse_errors(path, "price series file"):
        times = parse_times(frame[tcol], time_format)
    if getattr(times.dt, "tz", None) is None:
        idx = pd.DatetimeIndex(times)
        try:
            idx = idx.tz_localize(timezone, ambiguous="infer", nonexistent="NaT")
        except Exception:  # noqa: BLE001 - inference needs both repeated hours; fall back to summer time
            idx = idx.tz_localize(timezone, ambiguous=True, nonexistent="NaT")
        times = pd.Series(idx, index=frame.index)
    else:
        times = times.dt.tz_convert("UTC")
    keep = ~pd.isna(times.to_numpy())
    starts = pd.DatetimeIndex(times[keep]).as_unit("s").asi8.astype(np.int64)
    vals = _checked_prices(frame, value_column, path)[keep]
    order = np.argsort(starts, kind="stable")
    starts, vals = starts[order], vals[order]
    if len(starts) < 2:
        raise DataFileError(f"{path}: need at least two prices")
    spacing = np.diff(starts)
    nominal = int(np.median(spacing))
    nxt = np.concatenate([starts[1:], [starts[-1] + nominal]])
    gap = (nxt - starts) > 1.5 * nominal
    ends = np.where(gap, starts + nominal, nxt)
    return PriceSeries(starts, ends.astype(np.int64), vals, path)


@lru_cache(maxsize=16)
def _read_cached(path: str, mtime: tuple[float, int], fmt: str, timezone: str, tcol: str | None,
                 vcol: str | None, time_format: str | None) -> PriceSeries:
    if fmt == "auto":
        header = read_text(path, "price series file").partition("\n")[0].strip().split(",")
        fmt = "epex_wide" if _is_wide(header) else "long"
    if fmt == "epex_wide":
        return read_epex_wide(path, timezone)
    return read_long(path, timezone, tcol, vcol, time_format)


def load_series(tariff: SeriesTariff, path: str, home_timezone: str) -> PriceSeries:
    """The :class:`PriceSeries` of a series tariff (cached per file, modification time and size)."""
    return _read_cached(path, mtime_key(path), tariff.format, tariff.timezone or home_timezone,
                        tariff.time_column, tariff.value_column, tariff.time_format)


# -- prices for a window ----------------------------------------------------------------------

def tou_prices(wall_s: np.ndarray, tariff: TimeOfUseTariff) -> np.ndarray:
    """Price per step from local wall-clock seconds; the first matching period wins."""
    price = np.full(wall_s.shape, float(tariff.default_price_per_kwh))
    for period in reversed(tariff.periods):
        price = np.where(window_mask(wall_s, period), period.price_per_kwh, price)
    return price


def series_prices(epoch_s: np.ndarray, tariff: "SeriesTariff | SpotTariff", series: PriceSeries,
                  timezone: str = "UTC") -> np.ndarray:
    """Price per step [currency kWh-1]: file value → per kWh → × scale → + adder."""
    values, covered = series.lookup(epoch_s)
    if not covered.all():
        bad = epoch_s[~covered]
        check_coverage(series, int(bad.min()), int(bad.max()) + 1, timezone)
    return to_per_kwh(values, tariff)


def to_per_kwh(values: np.ndarray, tariff: "SeriesTariff | SpotTariff") -> np.ndarray:
    """File values → [currency kWh-1]: per kWh, × scale, + adder."""
    per_kwh = values / 1000.0 if tariff.unit == "per_mwh" else values
    return per_kwh * tariff.scale + tariff.adder_per_kwh


def check_price_range(series: PriceSeries, tariff: "SeriesTariff | SpotTariff") -> None:
    """Refuse a series whose prices, converted, exceed :data:`MAX_PRICE_PER_KWH` (naming the file)."""
    prices = to_per_kwh(series.values, tariff)
    bad = np.flatnonzero(~(np.abs(prices) <= MAX_PRICE_PER_KWH))
    if bad.size:
        at = pd.Timestamp(int(series.starts[bad[0]]), unit="s", tz="UTC").isoformat()
        raise DataFileError(f"price series file {shown(series.source)}: the price at {at} is outside "
                            f"[-{MAX_PRICE_PER_KWH:g}, {MAX_PRICE_PER_KWH:g}] per kWh after unit, scale and "
                            f"adder ({bad.size} such prices)")
