"""Wire messages of the tick protocol (pydantic), their WAMP URIs, and the topics table.

Every message travels as one positional WAMP argument: a dict (msgpack map).
Arrays are raw little-endian float64 bytes (msgpack ``bin``): exact to the bit
and cheap to encode; JSON clients (browsers) may send plain lists instead.
Every inbound message is validated here — array length ``== n``, finite values,
the sign the protocol prescribes — before it can touch any state; receivers also
check ``seq`` against their current window (:func:`decode` counts and logs a bad
message and returns ``None``).

Sign convention: onto the home's AC bus is positive, off it negative (DESIGN.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from typing import Annotated, Any, Callable, Literal

import numpy as np
from pydantic import (BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, ValidationError,
                      model_validator)

from hometwin.results import FLOW_COLUMNS
from hometwin.runtime.settings import DEFAULTS, MAX_RUN_WINDOWS

#: The runtime settings' defaults under their older names here (bench scripts that also run trees from
#: before hometwin.runtime.settings import them from this module); the settings object is the source.
AHEAD_STEPS, IN_FLIGHT, RUN_WINDOWS = DEFAULTS.ahead_steps, DEFAULTS.in_flight, DEFAULTS.run_windows

log = logging.getLogger("hometwin.runtime.messages")

#: Largest window a tick may announce (a year of 1-minute steps fits).
MAX_STEPS = 600_000
#: Flows terms may be this far below zero from float rounding [J].
SIGN_TOLERANCE_J = 1e-6


def _to_array(value: Any, posinf: bool = False) -> np.ndarray:
    if isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) % 8:
            raise ValueError(f"float64 array bytes: length {len(value)} is not a multiple of 8")
        arr = np.frombuffer(value, dtype="<f8").copy()
    elif isinstance(value, np.ndarray):
        arr = np.array(value, dtype=float)
    elif isinstance(value, (list, tuple)):
        try:
            arr = np.array(value, dtype=float)
        except (TypeError, ValueError):
            raise ValueError("array: every item must be a number") from None
    else:
        raise ValueError(f"array: expected float64 bytes or a list of numbers (got {type(value).__name__})")
    if arr.ndim != 1:
        raise ValueError(f"array: must be one-dimensional (got shape {arr.shape})")
    # One reduction for the common case: the sum of finite values is finite (NaN and ±inf
    # propagate); only a non-finite sum (or a finite-valued overflow) needs the element check.
    # Single-step windows validate ~250 arrays per tick over the router, so this matters.
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(arr)
    if not math.isfinite(total):
        bad = ~np.isfinite(arr) & ~(posinf & (arr == np.inf))
        if bad.any():
            raise ValueError(f"array: {int(bad.sum())} value(s) are not finite")
    return arr


def _to_bytes(arr: np.ndarray) -> bytes:
    return np.ascontiguousarray(arr, dtype="<f8").tobytes()


#: A float64 array on the wire (raw little-endian bytes; lists accepted).
F64 = Annotated[np.ndarray, PlainValidator(_to_array), PlainSerializer(_to_bytes, return_type=bytes)]
#: As :data:`F64`, but ``+inf`` allowed (checked per key by the message: a limit of +inf = no limit).
F64Inf = Annotated[np.ndarray, PlainValidator(lambda v: _to_array(v, posinf=True)),
                   PlainSerializer(_to_bytes, return_type=bytes)]


def _to_array_map(value: Any) -> dict[str, np.ndarray]:
    """Named float64 arrays of one length: packed ``[names, bytes]`` (one buffer, rows in name
    order — what we send) or a map name → array (bytes or a list of numbers: JSON clients)."""
    if isinstance(value, dict):
        if value and all(type(a) is np.ndarray and a.ndim == 1 for a in value.values()) \
                and all(isinstance(k, str) for k in value) and len({len(a) for a in value.values()}) == 1:
            # What a service builds (the inverter's Settle and Flows): one block, one check, not
            # one per array; a non-finite value falls through to the per-key check that names it.
            block = np.array(list(value.values()), dtype=float)
            with np.errstate(over="ignore", invalid="ignore"):
                total = np.add.reduce(block, axis=None)
            if math.isfinite(total):
                return dict(zip(value, block))
        out = {}
        for key, arr in value.items():
            if not isinstance(key, str):
                raise ValueError(f"array map: keys must be names (got {type(key).__name__})")
            try:
                out[key] = _to_array(arr)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return out
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError("array map: expected a map name → array or a packed [names, float64 bytes]")
    names, data = value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ValueError("array map: packed names must be a list of strings")
    if len(set(names)) != len(names):
        raise ValueError("array map: packed names must be unique")
    flat = _to_array(data)
    if not names:
        if len(flat):
            raise ValueError(f"array map: {len(flat)} values for no names")
        return {}
    if len(flat) % len(names):
        raise ValueError(f"array map: {len(flat)} values do not split into {len(names)} equal arrays")
    rows = flat.reshape(len(names), -1)
    return {name: rows[i] for i, name in enumerate(names)}


def _pack_array_map(arrays: dict[str, np.ndarray]) -> list[Any]:
    names = list(arrays)
    if not names:
        return [[], b""]
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(f"array map: arrays of one message must share a length (got {sorted(lengths)})")
    return [names, np.ascontiguousarray(np.stack([np.asarray(a, dtype=float) for a in arrays.values()]),
                                        dtype="<f8").tobytes()]


#: Named float64 arrays of one length (``Settle.served``, ``Flows.flows``/``served``): one
#: buffer on the wire instead of a map of small ones, so a receiver checks one array, not ~30.
ArrayMap = Annotated[dict[str, np.ndarray], PlainValidator(_to_array_map),
                     PlainSerializer(_pack_array_map, return_type=list)]

#: Signal names whose value may be +inf: "no limit" (the grid's import/export limits without a limit).
UNLIMITED_SUFFIX = "_limit_w"
Seq = Annotated[int, Field(ge=0, description="window counter, +1 per window")]
Name = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=False)

    def wire(self) -> dict[str, Any]:
        """The msgpack-ready dict (arrays as bytes)."""
        return self.model_dump()


def _check_len(name: str, arr: np.ndarray | None, n: int) -> None:
    if arr is not None and len(arr) != n:
        raise ValueError(f"{name}: length {len(arr)} != n {n}")


def _check_sign(name: str, arr: np.ndarray | None, sign: int, tol: float = 0.0) -> None:
    if arr is None or not arr.size:
        return
    if sign > 0 and arr.min() < -tol:
        raise ValueError(f"{name}: must be >= 0 (min {arr.min():.6g})")
    if sign < 0 and arr.max() > tol:
        raise ValueError(f"{name}: must be <= 0 (max {arr.max():.6g})")


# -- the window -------------------------------------------------------------------------------

class Tick(Message):
    """A window: ``n`` steps of ``dt_s`` seconds from run step ``i0`` (UTC ``t0``, unix seconds)."""

    seq: Seq
    i0: Annotated[int, Field(ge=0)]
    n: Annotated[int, Field(ge=1, le=MAX_STEPS)]
    dt_s: Annotated[int, Field(ge=1, le=86400)]
    t0: float = Field(allow_inf_nan=False, description="[s] unix time of step i0")
    windows: Annotated[int, Field(ge=1, le=MAX_RUN_WINDOWS)] = Field(
        1, description="a run: this many single-step windows seq, seq + 1, … from step i0 (the clock's tick to "
        "the inverter at speed max; the inverter opens them one after another)")

    @model_validator(mode="after")
    def _run(self) -> "Tick":
        if self.windows > 1 and self.n != 1:
            raise ValueError(f"windows: a run of {self.windows} windows is of single steps (n = 1, got n {self.n})")
        return self

    def follows(self, seq: int, step: int) -> bool:
        """True when this is the one window after window ``seq``, starting at ``step``."""
        return self.seq == seq + 1 and self.i0 == step and self.windows == 1

    def split(self) -> list["Tick"]:
        """The windows of a run, each its own single-window tick (``[self]`` for one window)."""
        if self.windows == 1:
            return [self]
        return [Tick(seq=self.seq + j, i0=self.i0 + j, n=1, dt_s=self.dt_s, t0=self.t0 + j * self.dt_s)
                for j in range(self.windows)]


class TickDone(Message):
    """The inverter settled every window of the clock's tick ``seq`` (``windows`` of them from step
    ``i0``): the clock's next tick starts at ``next_step`` (a window of many steps may settle early)."""

    seq: Seq
    windows: Annotated[int, Field(ge=1, le=MAX_RUN_WINDOWS)] = 1
    i0: Annotated[int, Field(ge=0)]
    next_step: Annotated[int, Field(ge=1)]
    participants: list[Name] = Field(default_factory=list, description="who took part in its last window")

    @model_validator(mode="after")
    def _steps(self) -> "TickDone":
        if self.next_step <= self.i0:
            raise ValueError(f"next_step: must be > i0 {self.i0} (got {self.next_step})")
        return self


class Signals(Message):
    """Named signal arrays of one window from one environment or grid element."""

    seq: Seq
    element: Name
    n: Annotated[int, Field(ge=1, le=MAX_STEPS)]
    arrays: dict[str, F64Inf]

    @model_validator(mode="after")
    def _lengths(self) -> "Signals":
        for key, arr in self.arrays.items():
            _check_len(f"arrays.{key}", arr, self.n)
            if not key.endswith(UNLIMITED_SUFFIX) and np.isinf(arr).any():
                raise ValueError(f"arrays.{key}: {int(np.isinf(arr).sum())} value(s) are not finite "
                                 f"(+inf is allowed only for *{UNLIMITED_SUFFIX}: no limit)")
            if key.endswith(UNLIMITED_SUFFIX):
                _check_sign(f"arrays.{key}", arr, 1)  # a limit in W: >= 0 (+inf: none)
            if key == "grid_available" and arr.size and (arr.min() < 0 or arr.max() > 1):
                raise ValueError(f"arrays.grid_available: must be within [0, 1] (got {arr.min():.6g}..{arr.max():.6g})")
        return self


class EnergyRequest(Message):
    """What a source offers (≥ 0) or a load asks (≤ 0) per step, in joules."""

    seq: Seq
    element: Name
    role: Literal["source", "load"]
    n: Annotated[int, Field(ge=1, le=MAX_STEPS)]
    joules: F64
    speculative: bool = Field(False, description="published before the last window's Settle, assuming that "
                              "window settles in full for this element; the inverter takes it only if that Settle "
                              "lists the element in confirmed, else the element publishes it again (not speculative)")

    @model_validator(mode="after")
    def _shape(self) -> "EnergyRequest":
        _check_len("joules", self.joules, self.n)
        _check_sign("joules", self.joules, 1 if self.role == "source" else -1)
        return self


#: What a storage element's ``params()`` must hold (``Battery.params``).
STORAGE_PARAMS = ("capacity_j", "soc_min", "soc_max", "charge_power_w", "discharge_power_w",
                  "charge_efficiency", "discharge_efficiency", "stored_j")


class StorageStatus(Message):
    """A storage element's flexibility description at the start of a window (``Battery.params``)."""

    seq: Seq
    element: Name
    params: dict[str, float]
    speculative: bool = Field(False, description="published right after the last window's dispatch answer, "
                              "assuming that window settles in full (see EnergyRequest.speculative)")

    @model_validator(mode="after")
    def _finite(self) -> "StorageStatus":
        p = self.params
        bad = [k for k, v in p.items() if not np.isfinite(v)]
        if bad:
            raise ValueError(f"params: not finite: {', '.join(bad)}")
        missing = [k for k in STORAGE_PARAMS if k not in p]
        if missing:
            raise ValueError(f"params: missing {', '.join(missing)}")
        if p["capacity_j"] <= 0:
            raise ValueError(f"params.capacity_j: must be > 0 (got {p['capacity_j']:.6g})")
        if not 0 <= p["soc_min"] <= p["soc_max"] <= 1:
            raise ValueError(f"params: 0 <= soc_min <= soc_max <= 1 (got {p['soc_min']:.6g}, {p['soc_max']:.6g})")
        negative = [k for k in ("charge_power_w", "discharge_power_w", "stored_j") if p[k] < 0]
        if negative:
            raise ValueError(f"params: must be >= 0: {', '.join(negative)}")
        bad_eff = [k for k in ("charge_efficiency", "discharge_efficiency") if not 0 < p[k] <= 1]
        if bad_eff:
            raise ValueError(f"params: efficiencies within (0, 1]: {', '.join(bad_eff)}")
        return self


class DispatchRequest(Message):
    """The inverter's wishes for the battery, per step (DC terminal joules, ≥ 0)."""

    seq: Seq
    dt_s: Annotated[float, Field(gt=0, le=86400)]
    n: Annotated[int, Field(ge=1, le=MAX_STEPS)]
    charge_j: F64
    discharge_j: F64
    grid_charge_j: F64 | None = None
    soc_floor: F64 | None = None
    grid_target_soc: F64 | None = None

    @model_validator(mode="after")
    def _shape(self) -> "DispatchRequest":
        for key in ("charge_j", "discharge_j", "grid_charge_j", "soc_floor", "grid_target_soc"):
            _check_len(key, getattr(self, key), self.n)
            _check_sign(key, getattr(self, key), 1)
        for key in ("soc_floor", "grid_target_soc"):
            arr = getattr(self, key)
            if arr is not None and arr.size and arr.max() > 1.0:
                raise ValueError(f"{key}: must be within [0, 1] (max {arr.max():.6g})")
        return self


class DispatchResult(Message):
    """What the battery can do (tentative until the window is settled)."""

    seq: Seq
    n: Annotated[int, Field(ge=1, le=MAX_STEPS)]
    charge_j: F64
    grid_charge_j: F64
    discharge_j: F64
    stored_j: F64
    loss_j: F64

    @model_validator(mode="after")
    def _shape(self) -> "DispatchResult":
        for key in ("charge_j", "grid_charge_j", "discharge_j", "stored_j", "loss_j"):
            _check_len(key, getattr(self, key), self.n)
        for key in ("charge_j", "grid_charge_j", "discharge_j", "stored_j"):
            _check_sign(key, getattr(self, key), 1)
        return self


class Settle(Message):
    """The window is committed through step ``k``: what every participant actually got."""

    seq: Seq
    i0: Annotated[int, Field(ge=0)]
    n: Annotated[int, Field(ge=1, le=MAX_STEPS)]
    k: Annotated[int, Field(ge=0)]
    served: ArrayMap
    participants: list[Name]
    parts: list[int] = Field(default_factory=list, description="hometwin.ahead.settle: where each window the "
                             "inverter balanced ends (steps from i0), so a chunk is settled window by window")
    next: Tick | None = Field(None, description="the next window's tick when the inverter has it already (the "
                              "clock keeps two single-step windows in flight): elements per window start it at once")
    then: Tick | None = Field(None, description="the window after next, when the inverter has its tick already: an "
                              "element per window may publish its packet for it ahead (speculative)")
    confirmed: list[Name] = Field(default_factory=list, description="participants whose speculative packet for next "
                                  "the inverter takes: this window settled in full for them, as they assumed")

    @model_validator(mode="after")
    def _shape(self) -> "Settle":
        if self.k >= self.n:
            raise ValueError(f"k: must be < n {self.n} (got {self.k})")
        if self.next is not None:
            _check_follows("next: the window after this one", self.next, self.seq, self.i0 + self.k + 1)
        if self.then is not None:
            if self.next is None:
                raise ValueError("then: the window after next, and there is no next")
            _check_follows("then: the window after next", self.then, self.next.seq, self.next.i0 + self.next.n)
        if self.confirmed and self.next is None:
            raise ValueError("confirmed: speculative packets are for the next window, and there is none")
        stray = sorted(set(self.confirmed) - set(self.participants))
        if stray:
            raise ValueError(f"confirmed: not participants of this window: {', '.join(stray[:5])}")
        if self.parts and (self.parts[-1] != self.k + 1 or any(b <= a for a, b in zip([0] + self.parts, self.parts))):
            raise ValueError(f"parts: increasing window ends from i0, the last k + 1 = {self.k + 1} (got {self.parts[:8]})")
        for key, arr in self.served.items():
            _check_len(f"served.{key}", arr, self.k + 1)
        return self


def _check_follows(what: str, t: Tick, seq: int, step: int) -> None:
    """``t`` is the one window after window ``seq``, from ``step`` (:meth:`Tick.follows`), else say why."""
    if not t.follows(seq, step):
        raise ValueError(f"{what}, seq {seq + 1} from step {step} (got seq {t.seq} from step {t.i0}"
                         + (f", a run of {t.windows} windows)" if t.windows != 1 else ")"))


#: The keys of ``Flows.flows``: the home-level flow columns of the results, one list
#: (:data:`hometwin.results.FLOW_COLUMNS`).
FLOW_KEYS = FLOW_COLUMNS


class Flows(Message):
    """The settled steps of a window: home flows, what each element got, SoC, roster changes."""

    seq: Seq
    i0: Annotated[int, Field(ge=0)]
    n: Annotated[int, Field(ge=1, le=MAX_STEPS)]
    k: Annotated[int, Field(ge=0)]
    dt_s: Annotated[int, Field(ge=1, le=86400)]
    flows: ArrayMap
    served: ArrayMap
    roles: dict[str, str]
    soc: F64 | None = None
    stale: list[str] = Field(default_factory=list)
    max_residual_j: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _shape(self) -> "Flows":
        if self.k >= self.n:
            raise ValueError(f"k: must be < n {self.n} (got {self.k})")
        missing = [key for key in FLOW_KEYS if key not in self.flows]
        extra = [key for key in self.flows if key not in FLOW_KEYS]
        if missing or extra:
            raise ValueError(f"flows: missing {missing}, unknown {extra}")
        for key, arr in self.flows.items():
            _check_len(f"flows.{key}", arr, self.k + 1)
        energy = [arr for key, arr in self.flows.items() if key.endswith("_j")]
        if energy and np.min(energy) < -SIGN_TOLERANCE_J:  # one reduction; the per-key check names it
            for key, arr in self.flows.items():
                if key.endswith("_j"):
                    _check_sign(f"flows.{key}", arr, 1, SIGN_TOLERANCE_J)
        for key, arr in self.served.items():
            _check_len(f"served.{key}", arr, self.k + 1)
        _check_len("soc", self.soc, self.k + 1)
        return self


# -- roster and control ---------------------------------------------------------------------------

class Describe(Message):
    """An element announces itself (on join and when the balancer asks)."""

    element: Name
    kind: str
    role: Literal["environment", "source", "load", "storage", "grid", "converter"]
    inputs: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    settle_on_shortfall: bool = False
    session: int = Field(0, ge=0, description="WAMP session id (roster leaves by session)")
    config: dict[str, Any] = Field(default_factory=dict)
    rpcs: list[str] = Field(default_factory=list)
    ahead: bool = Field(False, description="runs ahead: its window is the inverter's chunk (hometwin.ahead.*)")


class RosterQuery(Message):
    """The balancer asks every element to (re-)announce itself."""

    reason: str = ""


class Roster(Message):
    """Who takes part from window ``seq`` on, and who left."""

    seq: Seq
    elements: list[Name]
    left: list[Name] = Field(default_factory=list)
    stale: list[Name] = Field(default_factory=list, description="elements settled without at least once in this "
                              "run (per window: Flows.stale)")
    # the inverter's answer to hometwin.roster.get also says where the run is (a restarted clock goes on there)
    settled_seq: int = Field(-1, ge=-1, description="last window settled (-1: none yet)")
    next_step: int = Field(0, ge=0, description="step the window after it starts at")
    window_open: bool = Field(False, description="a window is ticked and not settled yet")


class SetProperty(Message):
    """``hometwin.element.<name>.set`` keyword arguments: property → new value."""

    props: dict[str, Any]


class ClockStatus(Message):
    """Where the run stands (RPC answer and, once a second, an event)."""

    seq: Seq
    i: Annotated[int, Field(ge=0, description="next step to run")]
    n_steps: Annotated[int, Field(ge=1)]
    sim_time: str = Field(description="ISO time of step i (UTC)")
    speed: float | Literal["max"]
    window: int | None = Field(None, description="fixed steps per window (None: automatic)")
    paused: bool = False
    until: int | None = None
    lag_s: float = Field(0.0, description="[s] how far the paced clock is behind wall time")
    done: bool = False


class RunDone(Message):
    """The clock reached the end of the run."""

    seq: Seq
    i: Annotated[int, Field(ge=0)]
    n_steps: Annotated[int, Field(ge=1)]


class RunFailed(Message):
    """The run cannot go on (e.g. the ledger did not close): fail loudly."""

    seq: Seq
    error: str


class ControlEvent(Message):
    """A control action that was accepted (a property set, on/off, pause, resume, speed, until), or
    a plan the inverter's strategy made (``plan``): published by whoever applied it, recorded with
    the run's results (``events.json``) and by the recorder."""

    source: str = Field(max_length=64, description="principal that applied it and published this "
                        "(element.<name>, clock, launcher); subscribers check it is the publisher")
    action: Literal["set", "on", "off", "pause", "resume", "set_speed", "run_until", "plan"]
    element: str | None = Field(None, max_length=64, description="the element it concerns, if any")
    args: dict[str, Any] = Field(default_factory=dict, description="what was asked (a set: the properties)")
    by: str | None = Field(None, max_length=64, description="principal that asked for it (the caller)")
    step: int | None = Field(None, ge=0, description="first step it applies at, where known")
    wall_time: float = Field(description="[s] unix time it was accepted")

    @classmethod
    def accepted(cls, source: str, action: str, details: Any = None, **fields: Any) -> "ControlEvent":
        """The event of an action accepted now; ``details``: the RPC's call details, whose caller
        the router discloses on the control RPCs (``by``)."""
        return cls(source=source, action=action, by=getattr(details, "caller_authid", None), wall_time=time.time(),
                   **fields)

    @classmethod
    def plan_made(cls, inverter: str, made: dict[str, Any]) -> "ControlEvent":
        """The event of a plan the strategy made (an entry of ``Strategy.made``: step, plan, strategy, solve_ms)."""
        return cls(source=f"element.{inverter}", action="plan", element=inverter, step=made["step"],
                   args={k: v for k, v in made.items() if k != "step"}, wall_time=time.time())


class Telemetry(Message):
    """An element's :attr:`~hometwin.element.Element.state_quantities` at the end of a settled window."""

    element: Name
    seq: Seq
    step: Annotated[int, Field(ge=0, description="the window's last step settled")]
    values: dict[Annotated[str, Field(max_length=64)], Annotated[float, Field(allow_inf_nan=False)]] = \
        Field(max_length=16)


# -- URIs ----------------------------------------------------------------------------------------

PREFIX = "hometwin"
TICK = f"{PREFIX}.tick"
SIGNALS = f"{PREFIX}.signals"
REQUEST = f"{PREFIX}.request"
STORAGE = f"{PREFIX}.storage"
SETTLE = f"{PREFIX}.settle"
FLOWS = f"{PREFIX}.flows"
ROSTER = f"{PREFIX}.roster"
ANNOUNCE = f"{PREFIX}.roster.announce"
ROSTER_QUERY = f"{PREFIX}.roster.query"
ROSTER_GET = f"{PREFIX}.roster.get"
CLOCK_STATUS_EVENT = f"{PREFIX}.clock.status"
RUN_DONE = f"{PREFIX}.run.done"
RUN_FAILED = f"{PREFIX}.run.failed"
SESSION_ON_LEAVE = "wamp.session.on_leave"
#: Elements that run ahead (``Describe.ahead``) take a chunk of windows at once on these.
TICK_AHEAD = f"{PREFIX}.ahead.tick"
SIGNALS_AHEAD = f"{PREFIX}.ahead.signals"
REQUEST_AHEAD = f"{PREFIX}.ahead.request"
SETTLE_AHEAD = f"{PREFIX}.ahead.settle"
#: RPC (inverter): settle the steps of the chunk settled so far with the elements running ahead now.
SETTLE_AHEAD_NOW = f"{PREFIX}.ahead.settle_now"
#: The inverter settled the windows of a clock tick (the clock's next tick may go out).
TICK_DONE = f"{PREFIX}.tick.done"
#: The clock's tick, relayed by the inverter to the elements per window that did not get it in the
#: previous window's ``Settle.next`` (the first window, after a pause, windows of many steps).
TICK_WINDOW = f"{PREFIX}.window.tick"
#: An accepted control action (``ControlEvent``), for the results' events.
EVENT = f"{PREFIX}.event"
#: An element's window-end state (``Telemetry``: a tank's, a room's temperature), for the recorder.
TELEMETRY = f"{PREFIX}.telemetry"


def element_uri(name: str, op: str) -> str:
    """``hometwin.element.<name>.<op>`` (op: describe, get, set, snapshot, dispatch, planner ports)."""
    return f"{PREFIX}.element.{name}.{op}"


def clock_uri(op: str) -> str:
    """``hometwin.clock.<op>`` (op: pause, resume, set_speed, run_until, status)."""
    return f"{PREFIX}.clock.{op}"


def launcher_uri(op: str) -> str:
    """``hometwin.launcher.<op>`` (op: on, off, status) — only while ``hometwin up`` runs."""
    return f"{PREFIX}.launcher.{op}"


#: (uri, pub/sub or rpc, message model or None, who publishes / serves, who subscribes / calls, what)
TOPICS: list[tuple[str, str, type[Message] | None, str, str, str]] = [
    (TICK, "event", Tick, "clock", "inverter",
     "a window starts; at speed max a run of `windows` single steps (two runs in flight)"),
    (TICK_DONE, "event", TickDone, "inverter", "clock", "every window of the tick `seq` is settled; go on at `next_step`"),
    (TICK_WINDOW, "event", Tick, "inverter", "elements per window",
     "the clock's tick, for those whose last `Settle` did not carry it as `next`"),
    (SIGNALS, "event", Signals, "sun, weather, grid; inverter (`plan_ready`, only with a strategy)",
     "elements with inputs, inverter; plannable elements", "signals of the window; `plan_ready`: the plan is applied, request now"),
    (REQUEST, "event", EnergyRequest, "sources, loads", "inverter", "joules per step offered (+) / asked (−); "
     "`speculative`: out ahead of the last window's Settle"),
    (STORAGE, "event", StorageStatus, "battery", "inverter", "battery parameters and stored energy at window start; "
     "`speculative`: out right after the last window's dispatch answer"),
    (SETTLE, "event", Settle, "inverter", "elements per window",
     "commit through step k with what was served; `next`: the next window's tick, when it is out already; "
     "`then`: the one after it; `confirmed`: whose speculative packet for `next` is taken"),
    (FLOWS, "event", Flows, "inverter", "recorder, launcher, UI", "settled steps of every window: home flows, per element, SoC"),
    (ROSTER, "event", Roster, "inverter", "anyone", "roster changed (joined, left, stale)"),
    (ANNOUNCE, "event", Describe, "every element", "inverter", "an element joins / re-announces"),
    (ROSTER_QUERY, "event", RosterQuery, "inverter", "every element", "please re-announce"),
    (CLOCK_STATUS_EVENT, "event", ClockStatus, "clock", "UI, launcher", "once a second"),
    (RUN_DONE, "event", RunDone, "clock", "launcher", "the run reached its end"),
    (RUN_FAILED, "event", RunFailed, "inverter", "clock, launcher", "the run failed (ledger)"),
    (TELEMETRY, "event", Telemetry, "elements with a state on record (geyser, heated building)", "recorder, UI",
     "window-end temperatures; the publisher must be the element it names"),
    (EVENT, "event", ControlEvent, "an element (set), clock (pause, resume, speed, until), hometwin up (on, off), "
     "inverter (plan)", "launcher, recorder, UI",
     "a control action was accepted, or the strategy made a plan; the publisher must be its `source`"),
    (TICK_AHEAD, "event", Tick, "inverter", "elements that run ahead",
     "a chunk of windows starts (seq: its first window); repeated when such an element joins mid-chunk"),
    (SIGNALS_AHEAD, "event", Signals, "sun, weather, grid (running ahead)", "inverter, elements with inputs running ahead",
     "signals of the chunk; a second packet for the chunk is a revision (after a `set`)"),
    (REQUEST_AHEAD, "event", EnergyRequest, "sources, loads (running ahead)", "inverter",
     "joules per step of the chunk; a second packet is a revision, used from the next window"),
    (SETTLE_AHEAD, "event", Settle, "inverter", "elements that run ahead",
     "the chunk's steps from i0 are committed through step k (at its end, when cut off, or when the clock pauses)"),
    (SETTLE_AHEAD_NOW, "rpc", None, "inverter", "clock (before it pauses)",
     "settle the chunk so far with the elements running ahead (their state is then exact at the pause)"),
    (SESSION_ON_LEAVE, "event", None, "router (WAMP meta)", "inverter", "a session left: its element leaves the roster"),
    (element_uri("<name>", "describe"), "rpc", Describe, "every element", "anyone", "what the element is"),
    (element_uri("<name>", "get"), "rpc", None, "every element", "anyone", "config, telemetry and window state"),
    (element_uri("<name>", "set"), "rpc", SetProperty, "every element", "ctl, UI", "validated property change (kwargs), at the next window boundary"),
    (element_uri("<name>", "snapshot"), "rpc", None, "every element", "anyone", "config + state, to continue exactly here"),
    (element_uri("<name>", "dispatch"), "rpc", DispatchRequest, "battery", "inverter", "tentative dispatch; returns DispatchResult"),
    (element_uri("<name>", "flexibility"), "rpc", None,
     "elements with a flexibility (battery, heated buildings, geysers, stochastic appliances)", "inverter strategies",
     "the element's `hometwin.flex` value (`flex.to_wire`, arrays bit-exact); listed in Describe.rpcs"),
    (element_uri("<name>", "command"), "rpc", None, "elements taking commands", "inverter strategies",
     "one typed `hometwin.flex` command (`HeatPlan`, `TankPlan`, `ClearPlan`, `DeferTo`, `UpcomingStarts`), "
     "fields checked; plans inside a window refused as stale"),
    (element_uri("<name>", "plan_stage"), "rpc", None, "plannable elements", "inverter",
     "from now on wait for the inverter's `plan_ready` before each request"),
    (ROSTER_GET, "rpc", Roster, "inverter", "clock, ctl", "current roster"),
    (clock_uri("pause"), "rpc", None, "clock", "ctl, UI", "stop at the next window boundary"),
    (clock_uri("resume"), "rpc", None, "clock", "ctl, UI", "go on"),
    (clock_uri("set_speed"), "rpc", None, "clock", "ctl, UI", "simulated s per wall s, or 'max'"),
    (clock_uri("run_until"), "rpc", None, "clock", "ctl, UI", "pause when step i (or a duration from the start) is reached"),
    (clock_uri("status"), "rpc", ClockStatus, "clock", "ctl, UI", "where the run stands"),
    (launcher_uri("on"), "rpc", None, "hometwin up", "ctl", "start an element's process"),
    (launcher_uri("off"), "rpc", None, "hometwin up", "ctl", "stop an element's process (switch it off)"),
    (launcher_uri("status"), "rpc", None, "hometwin up", "ctl", "processes and their state"),
    (launcher_uri("flows"), "rpc", Flows, "hometwin up", "recorder",
     "the settled steps from `since` (to `until`) in one `Flows`, for a restarted recorder (None: none yet)"),
]


def _fields(model: type[Message] | None) -> str:
    if model is None:
        return "–"
    return ", ".join(f"`{name}`" for name in model.model_fields)


def topics_table() -> str:
    """The AsyncAPI-style table of every topic and RPC (Markdown), generated from the models."""
    lines = ["| URI | type | message | fields | from | to | meaning |",
             "|---|---|---|---|---|---|---|"]
    for uri, kind, model, sender, receiver, what in TOPICS:
        name = model.__name__ if model is not None else "–"
        lines.append(f"| `{uri}` | {kind} | {name} | {_fields(model)} | {sender} | {receiver} | {what} |")
    return "\n".join(lines) + "\n"


# -- decoding with accounting ---------------------------------------------------------------------

class Rejections:
    """Counts rejected messages (in memory, and in a Prometheus counter when one is given)."""

    def __init__(self, on_reject: Callable[[str, str], None] | None = None):
        self.counts: Counter[tuple[str, str]] = Counter()
        self.on_reject = on_reject

    def reject(self, topic: str, reason: str, detail: str = "") -> None:
        self.counts[(topic, reason)] += 1
        log.warning("rejected message on %s (%s): %s", topic, reason, detail[:500])
        if self.on_reject is not None:
            self.on_reject(topic, reason)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def decode(model: type[Message], payload: Any, topic: str, rejections: Rejections) -> Any:
    """Validate one inbound payload; a bad one is counted, logged and ``None`` is returned."""
    if not isinstance(payload, dict):
        rejections.reject(topic, "malformed", f"expected a map, got {type(payload).__name__}")
        return None
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        rejections.reject(topic, "invalid", "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()))
        return None
    except (TypeError, ValueError) as exc:
        rejections.reject(topic, "invalid", str(exc))
        return None


if __name__ == "__main__":  # print the topics table for docs/runtime.md
    print(topics_table(), end="")
