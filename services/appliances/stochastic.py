"""Stochastic appliances: washing machine, tumble dryer, dishwasher, cooking, and a generic one.

Each local day ``d`` the appliance starts ``N_d`` cycles, ``N_d`` drawn from a
geometric distribution on {0, 1, 2, …} with mean ``starts_per_day``
(``P(N = k) = (1 − p)^k·p`` with ``p = 1/(1 + mean)``; variance
``mean·(1 + mean)``), as in the Auxillium Reborn slides.  Each start's hour
comes from the ``hourly_weights`` (local time), its minute uniformly within
the hour.  A cycle runs through its ``phases`` (e.g. heat → wash → spin), each
at its own power.

The random numbers of day ``d`` come from ``counter_rng(seed, d)`` (a
disjoint Philox stream per day), so the load is a pure function of time: any
window size, settling early or snapshot/restore give the same joules, and a
cycle that started in an earlier window (or the day before) carries on into
the next.  Power per step is the exact overlap of each phase with the step.

Smart appliances and the optimizer hook
---------------------------------------
With ``smart: true`` an optimizer may move a start later (never earlier), by
at most ``max_delay_h``:

* :meth:`StochasticLoad.upcoming_starts` ``(t0_epoch_s, t1_epoch_s)`` lists
  the cycles starting in ``[t0, t1)`` with their energy, duration and latest
  allowed start;
* :meth:`StochasticLoad.defer_to` ``(start_epoch_s, new_start_epoch_s)``
  moves one of them (identified by its original start).  Moves are part of
  the state (snapshots keep them) and take effect at the next window; a cycle
  that already started cannot be moved.

Adding an appliance is a config subclass with other defaults and a class with
its ``kind`` (see the presets at the end) plus one registry line.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field, field_validator

from hometwin.element import ElementConfig, Role, STRICT, Signals, Window
from hometwin.flex import DeferrableFlex, DeferTo, Start, UpcomingStarts
from hometwin.noise import counter_rng
from hometwin.services.appliances.meter import MeteredLoad
from hometwin.schedule import DAY_S, LocalClock


class Phase(BaseModel):
    """One phase of a cycle: a duration at a constant power."""

    model_config = STRICT
    name: str = Field("run", description="label, e.g. 'heat', 'wash', 'spin'")
    duration_min: Annotated[float, Field(gt=0, le=1440, description="[min] length of the phase")]
    power_w: Annotated[float, Field(ge=0, le=50_000, description="[W] power during the phase")]


def _weights(*peaks: tuple[float, float, float]) -> list[float]:
    """24 hourly weights from (hour, width_h, height) bumps plus a small floor."""
    h = np.arange(24) + 0.5
    w = np.full(24, 0.02)
    for centre, width, height in peaks:
        d = np.minimum(np.abs(h - centre), 24 - np.abs(h - centre))
        w += height * np.exp(-0.5 * (d / width) ** 2)
    w[(h < 6)] *= 0.1  # hardly anything starts between midnight and 6
    return [round(float(x), 4) for x in w / w.sum()]


class StochasticLoadConfig(ElementConfig):
    """A cycle appliance with geometric daily starts, a time-of-day preference and phases."""

    starts_per_day: Annotated[float, Field(ge=0, le=50, description="[1/day] mean starts per day (geometric distribution)")] = 0.5
    hourly_weights: list[float] = Field(default_factory=lambda: _weights((8.0, 1.5, 1.0), (19.0, 2.0, 1.2)),
                                        description="24 relative weights of the local start hour 00-23")
    phases: list[Phase] = Field(default_factory=lambda: [Phase(name="run", duration_min=60, power_w=1000)],
                                min_length=1, description="the cycle's phases in order")
    max_starts_per_day: Annotated[int | None, Field(ge=1, le=100, description="cap on starts per day (None = uncapped)")] = None
    smart: bool = Field(False, description="an optimizer may defer starts (defer_to hook)")
    max_delay_h: Annotated[float, Field(ge=0, le=48, description="[h] smart: latest deferral after the drawn start")] = 12.0

    @field_validator("hourly_weights")
    @classmethod
    def _w(cls, value: list[float]) -> list[float]:
        if len(value) != 24:
            raise ValueError(f"must have 24 values, one per hour (got {len(value)})")
        if any(not np.isfinite(x) or x < 0 for x in value) or sum(value) <= 0:
            raise ValueError("must be finite, >= 0 and not all 0")
        return value


class StochasticLoad(MeteredLoad):
    """A generic stochastic cycle appliance (geometric daily starts, multi-phase cycle)."""

    kind = "stochastic_load"
    role = Role.load
    Config: ClassVar[type[ElementConfig]] = StochasticLoadConfig
    inputs = ()
    outputs = ()
    settable = ("starts_per_day", "hourly_weights", "phases", "max_starts_per_day", "smart", "max_delay_h")
    description = "Appliance with random daily starts (geometric) and a multi-phase power profile."

    config: StochasticLoadConfig

    def setup(self) -> None:
        c = self.config
        self._clock = LocalClock(self.home.timezone)
        self._dur = np.array([p.duration_min * 60.0 for p in c.phases])
        self._pow = np.array([p.power_w for p in c.phases])
        self._offs = np.concatenate([[0.0], np.cumsum(self._dur)[:-1]])
        self.cycle_s = float(self._dur.sum())
        self.cycle_j = float((self._dur * self._pow).sum())
        self._cum = np.cumsum(np.asarray(c.hourly_weights, dtype=float))
        self._cum /= self._cum[-1]
        self._days: dict[int, np.ndarray] = {}
        self.init_meter()
        self.state.setdefault("moves", {})

    # -- randomness: a pure function of the local day -----------------------------------------------
    def starts_on(self, day: int) -> int:
        """Number of starts on local day ``day`` (days since 1970-01-01, local calendar)."""
        return len(self.day_starts_wall(day))

    def day_starts_wall(self, day: int) -> np.ndarray:
        """Local wall-clock seconds of the starts drawn for ``day`` (sorted)."""
        if day in self._days:
            return self._days[day]
        c = self.config
        rng = counter_rng(self.seed, day)
        p = 1.0 / (1.0 + c.starts_per_day)
        count = int(rng.geometric(p)) - 1  # numpy's geometric counts trials (>= 1)
        if c.max_starts_per_day is not None:
            count = min(count, c.max_starts_per_day)
        hours = np.searchsorted(self._cum, rng.random(count), side="right")
        minutes = np.floor(rng.random(count) * 60.0)
        starts = np.sort(day * DAY_S + hours * 3600.0 + minutes * 60.0)
        if len(self._days) > 64:
            self._days.clear()
        self._days[day] = starts
        return starts

    def _to_epoch(self, wall: np.ndarray) -> np.ndarray:
        wall = np.asarray(wall, dtype=np.int64)
        guess = wall - self._clock.offsets(wall)
        return (wall - self._clock.offsets(guess)).astype(float)

    def cycle_starts(self, e0: float, e1: float) -> np.ndarray:
        """Epoch seconds of the cycles (after deferrals) that run during ``[e0, e1)``."""
        c = self.config
        reach = self.cycle_s + (c.max_delay_h * 3600.0 if c.smart else 0.0)
        ws0 = int(self._clock.wall_seconds(np.array([int(e0 - reach)]))[0])
        ws1 = int(self._clock.wall_seconds(np.array([int(np.ceil(e1))]))[0])
        days = range(ws0 // DAY_S - 1, ws1 // DAY_S + 1)
        walls = [self.day_starts_wall(d) for d in days]
        if not walls or sum(len(x) for x in walls) == 0:
            return np.zeros(0)
        starts = self._to_epoch(np.concatenate(walls))
        moves = self.state.get("moves") or {}
        if moves:
            starts = np.array([float(moves.get(str(int(s)), s)) for s in starts])
        return starts[(starts < e1) & (starts + self.cycle_s > e0)]

    # -- power ------------------------------------------------------------------------------------
    def energy(self, w: Window) -> np.ndarray:
        """Energy drawn in each step [J, ≥ 0] (exact phase overlaps)."""
        e = w.epoch_s.astype(float)
        dt = float(w.dt_s)
        out = np.zeros(w.n)
        for s in self.cycle_starts(float(e[0]), float(e[-1] + dt)):
            for off, dur, pw in zip(self._offs, self._dur, self._pow):
                if pw == 0.0:
                    continue
                a, b = s + off, s + off + dur
                out += pw * np.clip(np.minimum(e + dt, b) - np.maximum(e, a), 0.0, None)
        return out

    def request(self, w: Window, signals: Signals) -> np.ndarray:
        return -self.energy(w)

    def settle(self, w: Window, k: int, served: np.ndarray) -> None:
        super().settle(w, k, served)
        # forget deferrals of cycles that are over
        now = float(w.epoch_s[k] + w.dt_s)
        moves = self.state.get("moves") or {}
        if moves:
            self.state["moves"] = {o: n for o, n in moves.items() if n + self.cycle_s > now}

    # -- optimizer hook (smart mode) ----------------------------------------------------------------
    commands = (DeferTo.kind, UpcomingStarts.kind)

    def flexibility(self) -> DeferrableFlex:
        """The cycle's profile and how far a planner may delay it (see :mod:`hometwin.flex`)."""
        c = self.config
        return DeferrableFlex(smart=bool(c.smart), max_delay_h=float(c.max_delay_h),
                              phases=tuple((float(p.duration_min) * 60.0, float(p.power_w)) for p in c.phases))

    def command(self, cmd: Any) -> Any:
        """:class:`~hometwin.flex.DeferTo` a cycle, or answer :class:`~hometwin.flex.UpcomingStarts`."""
        if isinstance(cmd, DeferTo):
            return self.defer_to(cmd.start_epoch_s, cmd.new_start_epoch_s)
        if isinstance(cmd, UpcomingStarts):
            return tuple(Start(start_epoch_s=c["start_epoch_s"], planned_epoch_s=c["planned_epoch_s"],
                               latest_epoch_s=c["latest_epoch_s"], energy_j=float(c["energy_j"]),
                               duration_s=float(c["duration_s"]), smart=bool(c["smart"]))
                         for c in self.upcoming_starts(cmd.t0_epoch_s, cmd.t1_epoch_s))
        return super().command(cmd)

    def upcoming_starts(self, t0_epoch_s: float, t1_epoch_s: float) -> list[dict[str, Any]]:
        """Cycles whose (possibly deferred) start lies in ``[t0, t1)``: what a planner may move."""
        c = self.config
        inverse = {v: float(k) for k, v in (self.state.get("moves") or {}).items()}
        out = []
        for s in self.cycle_starts(t0_epoch_s, t1_epoch_s + self.cycle_s):
            if not t0_epoch_s <= s < t1_epoch_s:
                continue
            orig = inverse.get(s, float(s))
            out.append({"start_epoch_s": orig, "planned_epoch_s": float(s), "energy_j": self.cycle_j,
                        "duration_s": self.cycle_s, "smart": c.smart,
                        "latest_epoch_s": orig + (c.max_delay_h * 3600.0 if c.smart else 0.0)})
        return out

    def defer_to(self, start_epoch_s: float, new_start_epoch_s: float) -> None:
        """Move the cycle drawn to start at ``start_epoch_s`` to ``new_start_epoch_s`` (smart only)."""
        c = self.config
        if not c.smart:
            raise ValueError(f"{self.name}: defer_to needs smart: true")
        orig, new = float(int(start_epoch_s)), float(new_start_epoch_s)
        if not 0.0 <= new - orig <= c.max_delay_h * 3600.0:
            raise ValueError(f"{self.name}: a start may move later by 0-{c.max_delay_h} h "
                             f"(got {(new - orig) / 3600.0:+.2f} h)")
        drawn = self._to_epoch(np.concatenate([self.day_starts_wall(d) for d in
                                               range(int(orig) // DAY_S - 1, int(orig) // DAY_S + 2)]))
        if not np.any(drawn == orig):
            raise ValueError(f"{self.name}: no cycle was drawn to start at epoch {orig:.0f}")
        moves = dict(self.state.get("moves") or {})
        moves[str(int(orig))] = new
        self.state["moves"] = moves


# -- presets: one config subclass + one class each -------------------------------------------------

class WashingMachineConfig(StochasticLoadConfig):
    """Washing machine: ~4 washes a week; heat 2 kW 15 min → wash 150 W 60 min → spin 450 W 12 min."""

    starts_per_day: Annotated[float, Field(ge=0, le=50, description="[1/day] mean starts per day (geometric)")] = 0.6
    hourly_weights: list[float] = Field(default_factory=lambda: _weights((9.0, 2.0, 1.0), (18.0, 2.0, 1.0)),
                                        description="24 relative weights of the local start hour 00-23")
    phases: list[Phase] = Field(default_factory=lambda: [
        Phase(name="heat", duration_min=15, power_w=2000), Phase(name="wash", duration_min=60, power_w=150),
        Phase(name="spin", duration_min=12, power_w=450)], min_length=1, description="the cycle's phases in order")


class WashingMachine(StochasticLoad):
    """Washing machine (geometric daily starts; heat → wash → spin)."""

    kind = "washing_machine"
    Config = WashingMachineConfig


class DryerConfig(StochasticLoadConfig):
    """Tumble dryer: ~3 runs a week, 2.5 kW 60 min → 1.2 kW 30 min → cool-down 150 W 10 min."""

    starts_per_day: Annotated[float, Field(ge=0, le=50, description="[1/day] mean starts per day (geometric)")] = 0.4
    hourly_weights: list[float] = Field(default_factory=lambda: _weights((11.0, 2.0, 1.0), (20.0, 2.0, 1.0)),
                                        description="24 relative weights of the local start hour 00-23")
    phases: list[Phase] = Field(default_factory=lambda: [
        Phase(name="dry", duration_min=60, power_w=2500), Phase(name="finish", duration_min=30, power_w=1200),
        Phase(name="cool", duration_min=10, power_w=150)], min_length=1, description="the cycle's phases in order")


class Dryer(StochasticLoad):
    """Tumble dryer (geometric daily starts; dry → finish → cool down)."""

    kind = "dryer"
    Config = DryerConfig


class DishwasherConfig(StochasticLoadConfig):
    """Dishwasher: most evenings; heat 1.8 kW 20 min → wash 100 W 40 min → rinse 1.8 kW 15 min → dry 50 W 30 min."""

    starts_per_day: Annotated[float, Field(ge=0, le=50, description="[1/day] mean starts per day (geometric)")] = 0.8
    hourly_weights: list[float] = Field(default_factory=lambda: _weights((13.5, 1.0, 0.3), (20.5, 1.5, 1.5)),
                                        description="24 relative weights of the local start hour 00-23")
    phases: list[Phase] = Field(default_factory=lambda: [
        Phase(name="heat", duration_min=20, power_w=1800), Phase(name="wash", duration_min=40, power_w=100),
        Phase(name="rinse", duration_min=15, power_w=1800), Phase(name="dry", duration_min=30, power_w=50)],
        min_length=1, description="the cycle's phases in order")


class Dishwasher(StochasticLoad):
    """Dishwasher (geometric daily starts; heat → wash → hot rinse → dry)."""

    kind = "dishwasher"
    Config = DishwasherConfig


class CookingConfig(StochasticLoadConfig):
    """Cooking on the hob: ~1.5 sessions a day around meals, 1.5 kW for 10 min then 800 W for 20 min."""

    starts_per_day: Annotated[float, Field(ge=0, le=50, description="[1/day] mean starts per day (geometric)")] = 1.5
    hourly_weights: list[float] = Field(default_factory=lambda: _weights((7.5, 0.8, 0.5), (12.5, 0.8, 0.6), (18.0, 1.0, 1.5)),
                                        description="24 relative weights of the local start hour 00-23")
    phases: list[Phase] = Field(default_factory=lambda: [
        Phase(name="boil", duration_min=10, power_w=1500), Phase(name="simmer", duration_min=20, power_w=800)],
        min_length=1, description="the cycle's phases in order")


class Cooking(StochasticLoad):
    """Cooking (geometric daily starts around meal times; boil → simmer)."""

    kind = "cooking"
    Config = CookingConfig
