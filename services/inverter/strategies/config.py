"""The inverter's ``strategy`` field: a discriminated union on ``type`` (pydantic only, cheap to import)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, Strict, field_validator, model_validator

from hometwin.element import STRICT
from hometwin.schedule import DailyWindow, parse_hhmm


class _Strict(BaseModel):
    model_config = STRICT


class ForecastConfig(_Strict):
    """How the strategy's forecasts are made (seeded from the home's seed and the inverter's name)."""

    perfect: bool = Field(False, description="error-free forecasts within the horizon (prices included)")
    pv_error: Annotated[float, Field(ge=0, le=2, description="[-] relative std of the PV forecast error at 24 h lead")] = 0.25
    load_error: Annotated[float, Field(ge=0, le=2, description="[-] relative std of the load forecast error at 24 h lead")] = 0.15
    temp_error_k: Annotated[float, Field(ge=0, le=20, description="[K] std of the outdoor temperature error at 24 h lead")] = 1.5
    prices: Literal["day_ahead", "perfect"] = Field(
        "day_ahead", description="day_ahead: tomorrow's prices are known from 13:00 local time, later days repeat the last known day")
    outages: Literal["announced", "none"] = Field("announced", description="announced: scheduled outages are known ahead")
    source: Literal["synthetic", "published"] = Field("synthetic", description=(
        "synthetic: the truth with seeded error (pv_error, temp_error_k); published: the weather forecast as "
        "it was published at each replan (the newest cached version published at or before it: MET Norway, "
        "Open-Meteo forecast), its own error in place of pv_error and temp_error_k; the load keeps load_error"))


class ComfortConfig(_Strict):
    """Comfort band from a presence schedule (local time): ``comfort_c`` … ``comfort_c + band_k`` while home.

    ``present`` is a list of windows at home.  Each is either a pair ``[HH:MM, HH:MM]`` (every day)
    or a mapping ``{start, end, days}`` (a weekly calendar: the window only on the weekdays in
    ``days``, e.g. ``{start: "08:00", end: "23:00", days: [sat, sun]}``; the same form as a
    thermostat's ``presence``).  ``weekend_present_all_day`` adds whole Saturdays and Sundays; it
    defaults to true for the every-day form and to false once any window names its ``days``.
    """

    comfort_c: Annotated[float, Field(ge=5, le=30, description="[°C] lower comfort bound while present")] = 20.0
    setback_c: Annotated[float, Field(ge=0, le=30, description="[°C] lower bound while away")] = 15.0
    band_k: Annotated[float, Field(gt=0, le=10, description="[K] width of the comfort band above the lower bound")] = 1.0
    # a pair arrives as a list from JSON (state files, the set RPC, Kubernetes): lax for the tuple only
    present: list[Union[Annotated[tuple[str, str], Strict(False)], DailyWindow]] = Field(
        default_factory=lambda: [("00:00", "08:00"), ("16:00", "24:00")],
        description="local time windows at home: [HH:MM, HH:MM] every day, or {start, end, days: [mon … sun]} "
                    "on the weekdays named (a weekly calendar)")
    weekend_present_all_day: bool = Field(True, description="present all day on Saturday and Sunday (default: true "
                                          "unless a window of present names its days)")

    @field_validator("present")
    @classmethod
    def _times(cls, value: list[Any]) -> list[Any]:
        for i, w in enumerate(value):
            if isinstance(w, tuple):
                for part in w:
                    try:
                        parse_hhmm(part)
                    except ValueError as exc:
                        raise ValueError(f"present[{i}]: {exc}") from None
        return value

    @model_validator(mode="after")
    def _order(self) -> "ComfortConfig":
        if self.setback_c > self.comfort_c:
            raise ValueError(f"setback_c: {self.setback_c} °C is above comfort_c {self.comfort_c} °C")
        if "weekend_present_all_day" not in self.model_fields_set and any(
                isinstance(w, DailyWindow) and w.days is not None for w in self.present):
            object.__setattr__(self, "weekend_present_all_day", False)  # a weekly calendar says what weekends are
        return self


class GeyserPlanConfig(_Strict):
    """Geyser scheduling: heat the tank in cheap hours, keep a minimum, reach 60 °C once a day."""

    min_c: Annotated[float, Field(ge=10, le=90, description="[°C] lowest tank temperature the plan keeps (soft), "
                                  "also before every draw")] = 45.0
    max_c: Annotated[float | None, Field(ge=20, le=95, description="[°C] highest planned tank temperature "
                                         "(None: the geyser's setpoint_c)")] = None
    legionella: bool = Field(True, description="reach 60 °C at least once every local day")
    legionella_method: Literal["lp", "milp"] = Field("lp", description=(
        "lp: two LPs — the day's legionella step is the step a first plan without the rule has hottest (fast); "
        "milp: the solver chooses the step (one binary per step; optimal, several times the plan time, "
        "with a long tail)"))
    legionella_margin_k: Annotated[float, Field(ge=0, le=10, description="[K] planned above 60 °C (within max_c) "
                                                "so the tank surely gets there")] = 0.5
    min_weight_per_kh: Annotated[float | None, Field(ge=0, description="[currency/(K·h)] price of the tank below "
                                                     "min_c (None: 10 × the horizon's highest price + 1)")] = None
    horizon_h: Annotated[float, Field(ge=24, le=24 * 14, description="[h] plan at least this far ahead when a "
                                      "geyser is planned (the day's end in view)")] = 24.0
    draw_memory_days: Annotated[int, Field(ge=1, le=28, description="[d] draws forecast as the mean of the same "
                                           "time of day over this many past days")] = 7

    @model_validator(mode="after")
    def _order(self) -> "GeyserPlanConfig":
        if self.max_c is not None and self.min_c > self.max_c:
            raise ValueError(f"min_c: {self.min_c} °C is above max_c {self.max_c} °C")
        if self.max_c is not None and self.legionella and self.max_c < 60.0:
            raise ValueError(f"max_c: {self.max_c} °C is below the legionella temperature 60 °C "
                             "(or set legionella: false)")
        return self


def geyser_switch(cls: Any, value: Any) -> Any:
    """``geyser: true`` plans the geysers with the default settings, ``false`` leaves them to their
    own thermostat (None); a mapping is the settings."""
    if value is True:
        return {}
    if value is False:
        return None
    return value


class _Planner(_Strict):
    horizon_h: Annotated[float, Field(gt=0, le=24 * 14, description="[h] planning horizon")] = 48.0
    step_min: Annotated[float, Field(gt=0, le=240, description="[min] planning step")] = 15.0
    replan_min: Annotated[float, Field(gt=0, le=24 * 60, description="[min] replanning cadence (receding horizon)")] = 60.0
    wear_cost_per_kwh: Annotated[float, Field(ge=0, description="[currency/kWh] battery wear per kWh throughput")] = 0.0
    terminal_value_per_kwh: float | None = Field(
        None, description="[currency/kWh] value of energy left at the horizon's end (None: lowest import price in the horizon × efficiency)")
    reserve_soc: Annotated[float | None, Field(ge=0, le=1, description="[0-1] soft SoC floor kept while the grid is up")] = None
    outage_reserve: bool = Field(True, description="plan for announced outages (no grid exchange in them)")
    value_of_lost_load_per_kwh: Annotated[float | None, Field(ge=0, description=(
        "[currency/kWh] value of lost load: what the plan pays per kWh of load it leaves unserved (None: 10 × "
        "the horizon's highest import price + 10; compare-strategies --voll sets it for every planner)"))] = None
    outage_margin_h: Annotated[float, Field(ge=0, le=6, description=(
        "[h] uncertainty of the outage schedule: each announced outage is planned as starting this much earlier "
        "and ending this much later"))] = 0.5
    outage_reserve_factor: Annotated[float, Field(ge=1, le=3, description=(
        "[-] through every announced outage the stored energy above the battery's minimum covers this many times "
        "the forecast load of the rest of the outage, PV not counted (soft, priced at the value of lost load)"))] = 1.3
    outage_lead_h: Annotated[float, Field(ge=0, le=48, description=(
        "[h] this long before each announced outage the battery is not discharged below its plan (up to the "
        "outage's reserve) by load the forecast did not see; 0: no such hold"))] = 6.0
    thermostat_load: bool = Field(True, description=(
        "forecast the load of geysers left to their own thermostat and timers (not planned with geyser:) from "
        "their tank model and the draws' forecast, so the plan and the outage reserve include it"))
    integer: bool = Field(False, description="MILP: forbid simultaneous charge/discharge and import/export")
    mip_rel_gap: Annotated[float, Field(ge=0, le=0.1, description="[-] relative optimality gap of a plan with "
                                        "integer variables (MILP, the geyser's legionella days)")] = 1e-3
    defer_appliances: bool = Field(True, description="move smart appliances' starts (smart: true) to the cheapest "
                                   "forecast start within their max_delay_h")
    geyser: GeyserPlanConfig | None = Field(None, description="plan the geysers (true or settings; None/false: "
                                            "their own thermostat)")
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)

    _geyser = field_validator("geyser", mode="before")(geyser_switch)


class LPStrategyConfig(_Planner):
    """Battery dispatch LP over price and forecasts; heat pump and geyser keep their own control."""

    type: Literal["lp"] = "lp"


class MPCStrategyConfig(_Planner):
    """Receding-horizon MPC: battery plus heat pump and geyser (if present) planned jointly."""

    type: Literal["mpc"] = "mpc"
    comfort: ComfortConfig = Field(default_factory=ComfortConfig)
    comfort_weight_per_kh: Annotated[float, Field(ge=0, description="[currency/(K·h)] price of discomfort")] = 5.0
    integral_gain: Annotated[float, Field(ge=0, le=1, description="[-] integral action on the model error")] = 0.3


class HeatingMPCStrategyConfig(MPCStrategyConfig):
    """SmartHjem heating MPC: heat pump (and geyser) on prices; the battery follows self-consumption."""

    type: Literal["heating_mpc"] = "heating_mpc"  # type: ignore[assignment]
    horizon_h: Annotated[float, Field(gt=0, le=24 * 14)] = 8.0
    step_min: Annotated[float, Field(gt=0, le=240)] = 15.0
    replan_min: Annotated[float, Field(gt=0, le=24 * 60)] = 15.0


class HeatingQPStrategyConfig(_Planner):
    """The SmartHjem thesis MPC: Σ H·(T − T_k)² + R·(E·u·p·Δt)² + S·(ΔT/Δt)², a convex QP (HiGHS), for the
    heaters; the battery follows self-consumption (see :mod:`.heating_qp`)."""

    type: Literal["heating_qp"] = "heating_qp"
    horizon_h: Annotated[float, Field(gt=0, le=48, description="[h] planning horizon (the thesis: 8 h)")] = 8.0
    step_min: Annotated[float, Field(ge=1, le=60, description="[min] planning step (the thesis: 5 min)")] = 5.0
    replan_min: Annotated[float, Field(gt=0, le=24 * 60, description="[min] replanning cadence")] = 5.0
    comfort: ComfortConfig = Field(default_factory=ComfortConfig)
    weight_h: Annotated[float, Field(gt=0, le=1e6, description="[1/K²] H: weight of (T − T_k)², the squared "
                                     "distance from the comfort band, per step")] = 1.0
    weight_r: Annotated[float, Field(ge=0, le=1e6, description="[1/currency²] R: weight of (E·u·p·Δt)², the "
                                     "squared cost of a step")] = 10.0
    weight_s: Annotated[float, Field(ge=0, le=1e6, description="[(h/K)²] S: weight of (ΔT/Δt)², the squared heating "
                                     "rate in K/h, per step (0: off; for slow heating cables)")] = 0.0
    blocking: Union[Annotated[int, Field(ge=1, le=96)], list[Annotated[int, Field(ge=1, le=96)]], None] = Field(
        None, description="input blocking: the heater's input is held over blocks of this many steps (a list: "
        "those block lengths, the last repeated); None: the first 12 steps one by one, then blocks of 3")
    integral_gain: Annotated[float, Field(ge=0, le=1, description="[-] integral action: share of the model's "
                                          "prediction error folded into the heat disturbance at each plan")] = 0.5

    @model_validator(mode="after")
    def _qp(self) -> "HeatingQPStrategyConfig":
        if self.geyser is not None:
            raise ValueError("geyser: the thesis MPC plans space heating only (use type: heating_mpc to plan "
                             "the geyser too)")
        if self.horizon_h * 60.0 < self.step_min:
            raise ValueError(f"horizon_h: {self.horizon_h} h is shorter than one step ({self.step_min} min)")
        if self.horizon_h * 60.0 / self.step_min > 2000:
            raise ValueError(f"horizon_h: {self.horizon_h} h at {self.step_min} min steps is more than 2000 steps")
        return self


class RulesStrategyConfig(_Strict):
    """Rule-based: self-consumption, automatic time-of-use, load-shedding-aware backup; thermostat heating."""

    type: Literal["rules"] = "rules"
    battery: Literal["self_consumption", "time_of_use", "backup"] = "self_consumption"
    cheap_hours: Annotated[int, Field(ge=0, le=24, description="time_of_use: grid-charge in the N cheapest hours of the day ahead")] = 4
    expensive_hours: Annotated[int, Field(ge=0, le=24, description="time_of_use: discharge freely only in the N dearest hours")] = 6
    target_soc: Annotated[float, Field(ge=0, le=1, description="[0-1] time_of_use: grid-charge up to this SoC")] = 0.9
    reserve_soc: Annotated[float, Field(ge=0, le=1, description="[0-1] backup: floor kept while the grid is up")] = 0.2
    outage_lead_h: Annotated[float, Field(ge=0, le=48, description="[h] backup: look this far ahead for announced outages")] = 6.0
    critical_load_kw: Annotated[float | None, Field(ge=0, description="[kW] backup: load to ride through (None: the load forecast)")] = None
    margin: Annotated[float, Field(ge=1, le=3, description="[-] backup: safety factor on the energy needed")] = 1.2
    replan_min: Annotated[float, Field(gt=0, le=24 * 60, description="[min] how often the rules look ahead")] = 15.0
    defer_appliances: bool = Field(False, description="move smart appliances' starts (smart: true) to the cheapest "
                                   "forecast start within their max_delay_h")
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)


class PerfectForesightConfig(_Strict):
    """The bound: one optimum over the whole run with the true future (never a real strategy)."""

    type: Literal["perfect_foresight"] = "perfect_foresight"
    step_min: Annotated[float, Field(gt=0, le=240, description="[min] optimisation step (the run's step if smaller)")] = 15.0
    wear_cost_per_kwh: Annotated[float, Field(ge=0)] = 0.0
    value_of_lost_load_per_kwh: Annotated[float | None, Field(ge=0, description=(
        "[currency/kWh] value of lost load (None: 10 × the highest import price + 10)"))] = None
    integer: bool = False
    defer_appliances: bool = Field(True, description="smart appliances' starts moved on the true prices")
    replan_min: Annotated[float, Field(gt=0, le=24 * 60, description=(
        "[min] re-solve over the rest of the run (still the true future) from the state reached this often, "
        "so what the plan's 15-minute model leaves out cannot accumulate"))] = 60.0
    replan_horizon_h: Annotated[float | None, Field(gt=0, le=24 * 366, description=(
        "[h] horizon of the re-solves after the first (the first, the bound, always covers the whole run); "
        "None: the rest of the run"))] = 72.0
    joint_max_days: Annotated[float, Field(gt=0, le=366, description=(
        "[d] longest run solved as one LP for the bound; a longer one (a home without geysers or smart "
        "appliances) gets its bound from blocks of block_days (a Lagrangian relaxation, still a lower bound) "
        "and its plans over replan_horizon_h"))] = 45.0
    block_days: Annotated[float, Field(ge=1, le=366, description="[d] block length of the decomposed bound")] = 14.0
    comfort: ComfortConfig = Field(default_factory=ComfortConfig, description=(
        "the comfort band the heating is planned to and scored against (the comparison scores every strategy "
        "against the same band)"))
    comfort_weight_per_kh: Annotated[float, Field(ge=0, description=(
        "[currency/(K·h)] price of a K·h outside the comfort band while someone is home — in the plan and in "
        "the comparison's score"))] = 5.0
    geyser: GeyserPlanConfig | None = Field(default_factory=GeyserPlanConfig, description=(
        "plan the home's geysers with their true draws (None/false: their own thermostat)"))
    mip_rel_gap: Annotated[float, Field(ge=0, le=0.1, description="[-] relative optimality gap where the plan "
                                        "has integer variables (the geysers' legionella days)")] = 1e-4

    _geyser = field_validator("geyser", mode="before")(geyser_switch)


StrategyConfig = Annotated[
    Union[RulesStrategyConfig, LPStrategyConfig, MPCStrategyConfig, HeatingMPCStrategyConfig, HeatingQPStrategyConfig,
          PerfectForesightConfig],
    Field(discriminator="type"),
]


class StrategyError(ValueError):
    """Infeasible or contradictory strategy settings; ``errors`` holds one line per problem,
    each starting with the field it is about."""

    def __init__(self, errors: list[str] | str):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("; ".join(self.errors))
