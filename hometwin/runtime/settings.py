"""The WAMP runtime's settings: every timeout, count and cadence of the tick protocol in one typed object.

Each setting says its unit and why it exists, and is checked when the object is made: a value out of
range is refused with the field's name and the range allowed (``ahead_steps: must be >= 1 (got 0)``),
as kopf's operator settings are.  ``hometwin up``, ``hometwin service`` and ``hometwin clock`` take
their defaults, ranges and flags' units from here (:func:`describe`); the inverter (``Balancer``) and
the clock validate what they are given through it.  One frozen object, so a run's settings are read
in one place and never change under it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

#: Most single-step windows one tick may stand for (``Tick.windows``: the wire's limit, checked by messages.py).
MAX_RUN_WINDOWS = 1024


def _setting(default: Any, unit: str, why: str, *, ge: float | None = None, gt: float | None = None,
             le: float | None = None) -> Any:
    return field(default=default, metadata={"unit": unit, "why": why, "ge": ge, "gt": gt, "le": le})


@dataclass(frozen=True)
class RuntimeSettings:
    """How the runtime's services wait, batch and pace (defaults: ``RuntimeSettings()``)."""

    timeout_s: float = _setting(
        10.0, "s", "the inverter waits this long for an element's packet, then settles the window without it "
                   "(stale): a missing packet never blocks the run", gt=0)
    ahead_steps: int = _setting(
        60, "steps", "elements that run ahead compute this many steps at once (their chunk; at least the window): "
                     "they wake once per chunk instead of twice per window", ge=1)
    in_flight: int = _setting(
        2, "ticks", "ticks of single-step windows the clock keeps out at speed max: its round trip is off the "
                    "windows' path (1: DESIGN.md's one tick at a time)", ge=1)
    run_windows: int = _setting(
        16, "windows", "single-step windows one clock tick stands for at speed max: the clock's tick and the "
                       "inverter's TickDone cost per run, not per window (1: a tick a window)", ge=1, le=MAX_RUN_WINDOWS)
    retick_s: float = _setting(
        60.0, "s", "the clock publishes a tick again when it was not done this long: a restarted inverter lost "
                   "it", ge=0.1)
    start_timeout_s: float = _setting(
        60.0, "s", "the clock waits this long for the expected elements (and a restarted inverter's roster) "
                   "before it ticks anyway", gt=0)
    clock_nice: int = _setting(
        10, "nice levels", "hometwin up lowers the clock's (and the recorder's) CPU priority by this much: with "
                           "windows in flight the clock is off their critical path", ge=0, le=19)
    state_interval_s: float | None = _setting(
        None, "s", "an element writes its state file at most this often (0: every settle; None: automatic, "
                   "about 2 % of its CPU and at least every 1 s): a crash loses at most this much", ge=0)

    def __post_init__(self) -> None:
        for f in fields(self):
            check(f.name, getattr(self, f.name))


def check(name: str, value: Any) -> None:
    """Refuse ``value`` for setting ``name`` when it is out of the setting's range (ValueError naming both)."""
    meta = _FIELDS[name].metadata
    if value is None and _FIELDS[name].default is None:
        return
    ge, gt, le = meta["ge"], meta["gt"], meta["le"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: a number in {meta['unit']} (got {value!r})")
    if ge is not None and le is not None and not ge <= value <= le:
        raise ValueError(f"{name}: must be in [{ge}, {le}] (got {value})")
    if ge is not None and not value >= ge:
        raise ValueError(f"{name}: must be >= {ge} (got {value})")
    if gt is not None and not value > gt:
        raise ValueError(f"{name}: must be > {gt} (got {value})")
    if le is not None and not value <= le:
        raise ValueError(f"{name}: must be <= {le} (got {value})")


def describe(name: str) -> dict[str, Any]:
    """A setting's default, unit, reason and inclusive bounds (``min``/``max``, for a CLI flag)."""
    f = _FIELDS[name]
    return {"default": f.default, "unit": f.metadata["unit"], "why": f.metadata["why"],
            "min": f.metadata["ge"], "max": f.metadata["le"]}


_FIELDS = {f.name: f for f in fields(RuntimeSettings)}

#: The defaults, for signatures that take one setting at a time.
DEFAULTS = RuntimeSettings()
