"""The element contract every device model implements.

An element is one physical thing of the home (sun, weather, a PV array, the
battery, the oven …).  It is a plain Python object: no I/O, no clock, no bus.
The in-process engine calls its methods directly; the WAMP adapter in
``hometwin.runtime`` calls the very same methods when a message arrives.

Time is owned by the orchestrator and comes in *windows* (see DESIGN.md, the
tick protocol): a :class:`Window` of ``n`` steps of ``dt_s`` seconds starting at
step index ``i0`` of the run.  For each window an element

1. may publish *signals* (environment and grid: irradiance, temperature,
   prices, availability) — :meth:`Element.signals`;
2. publishes its *energy request* — :meth:`Element.request` — joules per step,
   positive when it puts energy onto the home's AC bus (sources), negative when
   it takes energy (loads), assuming it is fully served;
3. is *settled* through step ``k`` (inclusive) with what it actually got —
   :meth:`Element.settle` — and commits its state there.  The next window
   starts at ``k + 1``.  The runtime that drives the window settles through
   :meth:`Element.commit`, which then tells the element's observers
   (``on_commit``: the state file of a service, :mod:`hometwin.runtime.state`).

Sign convention: onto the home's AC bus is positive, off it is negative.
Energy is in joules per step; power (W) only at the edges.
"""

from __future__ import annotations

import copy
import datetime as dt
import enum
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Callable, ClassVar, Iterator, Mapping

import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from hometwin.errors import clip, format_validation_error

#: Signals are named arrays of one window, using pvlib's glossary where it has a
#: name (ghi, dni, dhi, temp_air, wind_speed, apparent_zenith, azimuth …) and
#: ours otherwise (price_import, grid_available …).
Signals = Mapping[str, np.ndarray]


class Role(str, enum.Enum):
    """What an element does on the home's energy bus."""

    environment = "environment"  # sun, weather: signals only, no energy
    source = "source"  # PV: offers energy (DC, through the inverter)
    load = "load"  # appliances: take energy from the AC bus
    storage = "storage"  # battery: dispatched by the inverter
    grid = "grid"  # the utility connection: availability, limits, tariffs
    converter = "converter"  # the inverter: balances every window


#: The config of the models a spec is made of: an unknown key is an error, never ignored, and so
#: are inf and NaN (no quantity of a home is infinite; a YAML ``.inf`` is a typo or a trap), and
#: types are strict: ``true`` or ``'2400'`` is not a number (pydantic's lax mode took them as 1
#: and 2400).  An int is still a float.  Date-times are the one lax type (:data:`DateTime`).
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def _no_number(value: Any) -> Any:
    if isinstance(value, (bool, int, float)):
        raise ValueError(f"must be a date-time such as '2025-06-01T00:00' (got {value!r})")
    return value


#: A date-time in a spec: a YAML timestamp or an ISO 8601 string (Kubernetes sends strings), never
#: a number (lax pydantic took ``0`` or ``true`` as seconds since 1970).
DateTime = Annotated[dt.datetime, Field(strict=False), BeforeValidator(_no_number)]


#: [W] the largest power of one load (1 MW: beyond any home's connection).
MAX_LOAD_W = 1e6
#: The largest magnitude of any number in an element's config whose field declares no bound of
#: its own: no quantity of a home comes near 1e9 in the units configs use (W, kW, kWh, °C,
#: currency, counts), while 1e308 overflows to inf in the first sum.
MAX_CONFIG_MAGNITUDE = 1e9


class ElementConfig(BaseModel):
    """Base of every element's config: unknown keys, inf and NaN are errors, never taken; numbers
    are strict (:data:`STRICT`) and bounded (:data:`MAX_CONFIG_MAGNITUDE`)."""

    model_config = ConfigDict(STRICT, validate_assignment=True, frozen=False)

    @model_validator(mode="after")
    def _bounded_numbers(self) -> "ElementConfig":
        problems = list(_unbounded(self, ""))
        if problems:
            raise ValueError("\n".join(problems[:20]) + (f"\n(and {len(problems) - 20} more)" if len(problems) > 20 else ""))
        return self


def _declares_bound(info: Any) -> bool:
    return any(getattr(m, a, None) is not None for m in getattr(info, "metadata", ()) for a in ("le", "lt"))


def _unbounded(value: Any, where: str, budget: list[int] | None = None) -> Iterator[str]:
    """'field: …' for every number beyond :data:`MAX_CONFIG_MAGNITUDE` in fields without a bound
    of their own (nested models, lists and maps included; nested element configs check their own)."""
    budget = budget if budget is not None else [100_000]
    budget[0] -= 1
    if budget[0] < 0:
        return
    if isinstance(value, BaseModel):
        if where and isinstance(value, ElementConfig):
            return  # validated (and bounded) on its own
        for name, info in type(value).model_fields.items():
            if not _declares_bound(info):
                yield from _unbounded(getattr(value, name), f"{where}.{name}" if where else name, budget)
            else:
                yield from _unbounded_items(getattr(value, name), f"{where}.{name}" if where else name, budget)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _unbounded(item, f"{where}[{i}]", budget)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _unbounded(item, f"{where}.{key}", budget)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > MAX_CONFIG_MAGNITUDE:
        yield f"{where}: must be at most {MAX_CONFIG_MAGNITUDE:g} in magnitude (got {value:g})"


def _unbounded_items(value: Any, where: str, budget: list[int]) -> Iterator[str]:
    """A bounded field's value is fine as a number; models inside it are still walked."""
    if isinstance(value, (BaseModel, list, tuple, dict)):
        yield from _unbounded(value, where, budget)


class InvalidProperty(ValueError):
    """A runtime ``set()`` was refused; ``errors`` holds one line per problem."""

    def __init__(self, element: str, errors: list[str]):
        self.element = element
        self.errors = errors
        super().__init__(f"{element}: " + "; ".join(errors))


class DataFileField:
    """Marks a config field that holds a data file's path (``Annotated[str, DATA_FILE]``).

    :func:`data_files` finds them, so the Kubernetes operator can tell which files a home's
    pods need (they are not in the image: they come from a ConfigMap, by file name)."""

    def __repr__(self) -> str:
        return "DATA_FILE"


DATA_FILE = DataFileField()
#: A config field holding a CSV/TMY3 path; relative paths resolve against the spec's folder.
DataFile = Annotated[str, DATA_FILE]


def data_files(model: Any, where: str) -> Iterator[tuple[str, str]]:
    """``(location, path)`` of every :data:`DataFile` field set in a config model, nested
    models, lists and maps included (``location`` as ``where.field[i].field``)."""
    if isinstance(model, BaseModel):
        for name, info in type(model).model_fields.items():
            value = getattr(model, name)
            if isinstance(value, str) and any(isinstance(x, DataFileField) for x in info.metadata):
                yield f"{where}.{name}", value
            else:
                yield from data_files(value, f"{where}.{name}")
    elif isinstance(model, (list, tuple)):
        for i, item in enumerate(model):
            yield from data_files(item, f"{where}[{i}]")
    elif isinstance(model, dict):
        for key, item in model.items():
            yield from data_files(item, f"{where}.{key}")


@dataclass(frozen=True)
class HomeContext:
    """What every element knows about the home it lives in (immutable)."""

    name: str
    latitude: float
    longitude: float
    altitude_m: float
    timezone: str
    start: pd.Timestamp  # UTC, tz-aware: time of step 0
    step_s: int  # seconds per step
    n_steps: int  # steps in the whole run
    seed: int
    #: The spec's folder: relative file paths in configs resolve against it, and every data file
    #: must lie inside it (or a data root, :mod:`hometwin.datafiles`).  ``None`` (a context built
    #: in code, not from a spec) confines nothing.
    base_dir: str | None = None
    data_dir: str | None = None  # in a pod: relative data files are looked up by file name here
    #: The run follows the wall clock (``clock.realtime``, ``hometwin up --realtime``): sources
    #: read new published documents (forecasts, price days) as they appear (docs/data-sources.md).
    realtime: bool = False

    def resolve_path(self, path: str, field: str = "file") -> str:
        """A data file a config names (``field``, for the message), confined: relative paths from
        the spec's folder, or, with ``data_dir`` (a Kubernetes pod, where the data files are a
        mounted ConfigMap), by file name in ``data_dir``; the real path (symlinks resolved) must
        lie inside that folder or a configured data root, else :class:`DataFileError` naming
        ``field`` and the rule.  Readers then open it with :func:`hometwin.datafiles.read_limited`."""
        from hometwin.datafiles import DataFileError, confine

        try:
            return confine(path, self.base_dir, self.data_dir)
        except DataFileError as exc:
            err = DataFileError(f"{field}: {exc}")
            err.field = field  # type: ignore[attr-defined]
            raise err from None

    def element_seed(self, element_name: str) -> int:
        """A stable 64-bit seed for one element (home seed + element name)."""
        digest = hashlib.sha256(f"{self.seed}/{element_name}".encode()).digest()
        return int.from_bytes(digest[:8], "little")

    def times(self, i0: int, n: int) -> pd.DatetimeIndex:
        """UTC timestamps of steps ``i0 … i0+n-1`` (start of each step)."""
        return pd.date_range(self.start + pd.Timedelta(seconds=i0 * self.step_s), periods=n,
                             freq=pd.Timedelta(seconds=self.step_s), tz="UTC")

    def epoch_s(self, i0: int, n: int) -> np.ndarray:
        """Unix seconds (int64) of steps ``i0 … i0+n-1``."""
        t0 = int(self.start.timestamp())
        return t0 + (i0 + np.arange(n, dtype=np.int64)) * self.step_s


@dataclass(frozen=True)
class Window:
    """``n`` steps of ``dt_s`` seconds starting at run step ``i0``; ``seq`` counts windows."""

    seq: int
    i0: int
    n: int
    dt_s: int
    home: HomeContext = field(repr=False, compare=False)

    @property
    def t0(self) -> pd.Timestamp:
        return self.home.start + pd.Timedelta(seconds=self.i0 * self.dt_s)

    @cached_property
    def times(self) -> pd.DatetimeIndex:
        return self.home.times(self.i0, self.n)

    @cached_property
    def epoch_s(self) -> np.ndarray:
        return self.home.epoch_s(self.i0, self.n)

    @cached_property
    def local_times(self) -> pd.DatetimeIndex:
        return self.times.tz_convert(self.home.timezone)


class Element:
    """Base class of every device model.

    Subclasses set the class attributes and override the window methods they
    need.  ``self.config`` is the validated pydantic config; ``self.state`` a
    plain dict of JSON-able values (what :meth:`snapshot` stores).
    """

    kind: ClassVar[str] = ""
    role: ClassVar[Role]
    Config: ClassVar[type[ElementConfig]] = ElementConfig
    #: Signal names this element needs from others (e.g. ``("ghi", "temp_air")``).
    inputs: ClassVar[tuple[str, ...]] = ()
    #: Signal names this element publishes (environment and grid elements).
    outputs: ClassVar[tuple[str, ...]] = ()
    #: True when the element's later requests depend on what it was served
    #: (a geyser that got nothing is colder): a shortfall then settles the
    #: window at that step.  Stateless loads keep the window going.
    settle_on_shortfall: ClassVar[bool] = False
    #: True when the element's requests and signals are a pure function of time, its config and
    #: its inputs' signals, and settling feeds nothing back into later ones (timers, profiles, the
    #: sun, PV): as a service it may then compute many windows at once, ahead of them
    #: (:func:`hometwin.topology.runs_ahead`).  In-process it changes nothing.
    runs_ahead: ClassVar[bool] = False
    #: Config fields that ``set()`` may change at run time (None = all).
    settable: ClassVar[tuple[str, ...] | None] = None
    description: ClassVar[str] = ""
    #: Keys of :meth:`telemetry` kept on record at every window's end (a tank's or a room's
    #: temperature): the recorder's ``element_states``, in-process and from the live twin alike.
    state_quantities: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, config: ElementConfig | Mapping[str, Any] | None, home: HomeContext):
        self.name = name
        self.home = home
        if config is None:
            config = {}
        if not isinstance(config, self.Config):
            config = self.Config.model_validate(dict(config))
        self.config = config
        self.state: dict[str, Any] = {}
        self.seed = home.element_seed(name)
        #: Called with ``(seq, i0, k)`` each time a window is committed (:meth:`committed`).
        self.on_commit: list[Callable[[int, int, int], None]] = []
        self.setup()

    # -- life cycle -----------------------------------------------------------------
    def setup(self) -> None:
        """Derive parameters from ``self.config`` (called at start and after ``set``)."""

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue exactly here (config + state)."""
        return {"kind": self.kind, "name": self.name,
                "config": self.config.model_dump(mode="json"),
                "state": _copy_state(self.state)}

    def restore(self, snap: Mapping[str, Any]) -> None:
        """Continue from a :meth:`snapshot` (of an element of the same kind)."""
        if snap.get("kind") != self.kind:
            raise ValueError(f"{self.name}: snapshot of kind {snap.get('kind')!r} cannot restore a {self.kind!r}")
        self.config = self.Config.model_validate(snap["config"])
        self.setup()
        self.state = _copy_state(snap["state"])

    def checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """An in-memory mark to :meth:`rollback` to: the instance's attributes (a window in
        progress, the config, caches) and a copy of the state.  Cheap (no config dump), not for
        files: the runtime takes one before it settles a window ahead of its ``Settle``
        (speculative packets).  Models replace what ``request``/``settle``/``set`` change — they
        assign attributes and state entries rather than mutate shared objects in place — which
        the built-in models do (a cache filled in place is fine: it holds pure functions)."""
        return dict(self.__dict__), _copy_state(self.state)

    def rollback(self, mark: tuple[dict[str, Any], dict[str, Any]]) -> None:
        """Return to a :meth:`checkpoint` (``mark`` stays usable)."""
        attrs, state = mark
        self.__dict__.clear()
        self.__dict__.update(attrs)
        self.state = _copy_state(state)

    def set(self, **props: Any) -> dict[str, Any]:
        """Validated runtime change of config properties; returns the new values.

        The engine and the runtime call this only between windows, so a change
        takes effect at the next window boundary.
        """
        ready = self._prepared(**props)
        self.__dict__.update(ready.__dict__)  # all or nothing: a refused set leaves the element as it was
        return {k: getattr(self.config, k) for k in props}

    def settable_properties(self) -> list[str]:
        """The config fields :meth:`set` accepts (``settable``, or every field), sorted."""
        return sorted(self.Config.model_fields if self.settable is None else self.settable)

    def validated(self, **props: Any) -> ElementConfig:
        """The config :meth:`set` would give for ``props``, changing nothing; :class:`InvalidProperty`
        (one line per problem, naming the field and what is allowed) when it would be refused —
        by the config model, or by :meth:`setup` (a data file that is not there)."""
        return self._prepared(**props).config

    def _prepared(self, **props: Any) -> "Element":
        """A shallow copy of this element with ``props`` set and set up (``setup`` assigns what it
        derives, as ``checkpoint`` assumes): what :meth:`set` turns this element into."""
        new = self._config_with(**props)
        ready = copy.copy(self)
        ready.state = _copy_state(self.state)
        ready.config = new
        try:
            ready.setup()
        except Exception as exc:  # the model said no (e.g. a profile file that is not there)
            text = clip(" ".join(str(exc).split()), 400)  # one bounded line (a model's text may quote a value)
            raise InvalidProperty(self.name, [f"{', '.join(sorted(props))}: {text}"]) from None
        return ready

    def _config_with(self, **props: Any) -> ElementConfig:
        allowed = self.settable_properties()
        bad = [f"{k}: not a settable property (allowed: {', '.join(allowed)})"
               for k in props if k not in allowed]
        if bad:
            raise InvalidProperty(self.name, bad)
        data = self.config.model_dump()
        data.update(props)
        try:
            new = self.Config.model_validate(data)
        except ValidationError as exc:
            raise InvalidProperty(self.name, format_validation_error(exc, root=self.Config)) from None
        return new

    # -- window methods ------------------------------------------------------------------
    def signals(self, w: Window, inputs: Signals) -> dict[str, np.ndarray]:
        """Signals for the window (environment and grid); default none."""
        return {}

    def request(self, w: Window, signals: Signals) -> np.ndarray:
        """Joules per step this element offers (+) or asks (−), assuming full service."""
        return np.zeros(w.n)

    def settle(self, w: Window, k: int, served: np.ndarray) -> None:
        """Commit state through step ``k`` (inclusive) given ``served[:k+1]`` (J, signed)."""

    def commit(self, w: Window, k: int, served: np.ndarray) -> None:
        """:meth:`settle`, then :meth:`committed`: how a runtime settles a window for good (a
        window settled only as assumed — a speculative packet — goes through :meth:`settle` alone,
        and is committed when confirmed)."""
        self.settle(w, k, served)
        self.committed(w, k)

    def committed(self, w: Window, k: int) -> None:
        """Window ``w`` is committed through step ``k`` (settled; for the converter, which is
        never settled: remembered): tell the observers in ``on_commit``."""
        for fn in self.on_commit:
            fn(w.seq, w.i0, k)

    def telemetry(self) -> dict[str, float]:
        """Current scalar state for metrics and the UI (e.g. ``soc``, ``temp_indoor``)."""
        return {}

    #: the kinds of :mod:`hometwin.flex` commands this element takes (``HeatPlan.kind``, …)
    commands: ClassVar[tuple[str, ...]] = ()

    def flexibility(self) -> Any:
        """What a planner may do with this element (a :mod:`hometwin.flex` value), or None."""
        return None

    def command(self, cmd: Any) -> Any:
        """Carry out a planner's :mod:`hometwin.flex` command (see :attr:`commands`)."""
        raise ValueError(f"{self.name}: a {self.kind} takes no {getattr(cmd, 'kind', type(cmd).__name__)} command")

    def describe(self) -> dict[str, Any]:
        """What the element is, for the roster and the UI."""
        return {"name": self.name, "kind": self.kind, "role": self.role.value,
                "inputs": list(self.inputs), "outputs": list(self.outputs),
                "settle_on_shortfall": self.settle_on_shortfall,
                "config": self.config.model_dump(mode="json")}


def _copy_state(state: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            out[key] = value.copy()
        elif isinstance(value, dict):
            out[key] = _copy_state(value)
        elif isinstance(value, list):
            out[key] = list(value)
        else:
            out[key] = value
    return out
