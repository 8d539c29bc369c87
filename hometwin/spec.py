"""The ``Home`` document (= the CRD schema): location, clock and elements.

One set of pydantic models.  ``hometwin schema`` exports their JSON Schema; the
CRD and the UI forms are generated from it.  Each element's ``config`` is the
pydantic model of its kind, chosen by the ``kind`` discriminator.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import pandas as pd
import yaml
from pandas.errors import OutOfBoundsTimedelta
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model, field_validator, model_validator

from hometwin.element import DateTime, HomeContext, STRICT
from hometwin.errors import bounded_repr, clip, format_validation_error
from hometwin.registry import KINDS, element_class

API_VERSION = "hometwin.io/v1alpha1"
NAME_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # DNS-1123 label: element = Deployment name part
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}

# -- limits of a run (docs/inputs.md) ---------------------------------------------------------
#: Longest run: 50 years (twice a PV array's or a building's service life in a study).
MAX_RUN_YEARS = 50
MAX_RUN_S = int(MAX_RUN_YEARS * 365.25 * 86400)
#: Clock dates: 1900 to 2199.  pandas' nanosecond timestamps end in 1677 and 2262, and a run of
#: 50 years from 2199 still fits; no weather or price data exist before 1900.
MIN_YEAR, MAX_YEAR = 1900, 2199
#: Most steps of a run: 10 million (19 years at 1-minute steps); each costs a row of results.
MAX_STEPS = 10_000_000
#: Most element-steps (steps × enabled elements): 200 million (a year at 1-minute steps with 380
#: elements, or 15 years of the 13-element reference home); about the work of 10 minutes.
MAX_ELEMENT_STEPS = 200_000_000
#: Most elements of a home: 200 (``hometwin up`` starts a process per element; the CRD gets it as
#: ``maxItems``).  A house has a few dozen devices.
MAX_ELEMENTS = 200
#: Bounds of the free-form parts of a document (``metadata`` extras, ``status``): nodes and depth.
MAX_FREE_NODES, MAX_FREE_DEPTH = 10_000, 20


class SpecError(ValueError):
    """A Home document that cannot run; ``errors`` has one line per problem."""

    def __init__(self, errors: list[str], source: str = ""):
        self.errors = errors
        self.source = source
        super().__init__("\n".join(errors))


def parse_duration_s(value: Any) -> int:
    """'7d', '36h', '90m', '3600s', 3600, or an ISO-8601/timedelta → whole seconds, at most
    :data:`MAX_RUN_S` (50 years)."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and len(value) <= 64:
        match = _DURATION_RE.match(value)
        if match:
            seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
        else:
            try:
                seconds = pd.Timedelta(value).total_seconds()
            except (ValueError, OverflowError, OutOfBoundsTimedelta):
                raise ValueError(f"not a duration (got {bounded_repr(value)}; use e.g. '7d', '36h', '15m', '60s')") from None
    else:
        raise ValueError(f"not a duration (got {bounded_repr(value)}; use e.g. '7d', '36h', '15m', '60s')")
    if not math.isfinite(seconds) or abs(seconds) > MAX_RUN_S:
        raise ValueError(f"must be at most {MAX_RUN_YEARS} years ({MAX_RUN_S} s) (got {bounded_repr(value)})")
    if seconds != int(seconds):
        raise ValueError(f"must be whole seconds (got {bounded_repr(value)})")
    return int(seconds)


class _Strict(BaseModel):
    model_config = STRICT


class Metadata(BaseModel):
    # Kubernetes adds uid, namespace, labels … to metadata; they are kept, not validated.
    model_config = ConfigDict(extra="allow")
    name: Annotated[str, Field(pattern=NAME_RE, max_length=40, description="Home name (DNS-1123 label)")]
    namespace: Annotated[str | None, Field(max_length=63)] = None
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bounded_extras(self) -> "Metadata":
        for key, value in (self.model_extra or {}).items():
            _check_free(value, f"metadata.{key}")
        return self


def _check_free(value: Any, where: str) -> None:
    """Refuse a free-form value (kept, not validated) beyond :data:`MAX_FREE_NODES` nodes or
    :data:`MAX_FREE_DEPTH` levels; stops at the first node over (shared subtrees count each time)."""
    budget = MAX_FREE_NODES
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise ValueError(f"{where}: more than {MAX_FREE_NODES} items")
        if depth > MAX_FREE_DEPTH:
            raise ValueError(f"{where}: nested more than {MAX_FREE_DEPTH} levels deep")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
            budget -= len(item)
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)


class Location(_Strict):
    latitude: Annotated[float, Field(ge=-90, le=90, description="[degrees] north positive")]
    longitude: Annotated[float, Field(ge=-180, le=180, description="[degrees] east positive")]
    altitude_m: Annotated[float, Field(ge=-500, le=9000, description="[m] above sea level")] = 0.0
    timezone: str = Field("UTC", max_length=64, description="IANA time zone for schedules and tariffs, e.g. Africa/Johannesburg")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {bounded_repr(value)} (use an IANA name such as 'Europe/Oslo')") from None
        return value


class Clock(_Strict):
    start: DateTime | None = Field(None, description=(
        "first step; without an offset it is local time of the home; may be left out only with "
        "realtime: true (then: now, rounded down to the step)"))
    end: DateTime | None = Field(None, description="end (exclusive); give end or duration")
    duration: str | int | None = Field(None, description="run length, e.g. '7d', '36h' (instead of end)")
    step_s: Annotated[int, Field(ge=1, le=86400, description="[s] simulation step")] = 60
    window: Annotated[int | None, Field(ge=1, le=MAX_STEPS, description="steps per window (default: one day)")] = None
    seed: Annotated[int, Field(ge=0, le=2**63 - 1, description="seed of every random stream")] = 0
    realtime: bool = Field(False, description=(
        "follow the wall clock: step i is simulated at start + i × step_s (1x real time), and the data "
        "sources read new forecasts and prices as they are published (docs/data-sources.md)"))

    @field_validator("start", "end")
    @classmethod
    def _year(cls, value: Any) -> Any:
        if value is not None and not MIN_YEAR <= value.year <= MAX_YEAR:
            raise ValueError(f"must be in the years {MIN_YEAR} to {MAX_YEAR} (got {value.isoformat()})")
        return value

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is not None and parse_duration_s(value) <= 0:
            raise ValueError(f"must be > 0 (got {bounded_repr(value)})")
        return value

    @model_validator(mode="after")
    def _end_or_duration(self) -> "Clock":
        if (self.end is None) == (self.duration is None):
            raise ValueError("give exactly one of clock.end or clock.duration")
        if self.start is None and not self.realtime:
            raise ValueError("clock.start: required (it may be left out only with clock.realtime: true)")
        if self.start is None and self.end is not None:
            raise ValueError("clock.end: a realtime clock without a start takes a duration, not an end")
        if self.end is not None and self.start is not None and (self.end.tzinfo is None) == (self.start.tzinfo is None):
            span = (self.end - self.start).total_seconds()
            if span > MAX_RUN_S:
                raise ValueError(f"clock.end: the run from start to end must be at most {MAX_RUN_YEARS} years "
                                 f"(got {span / 86400 / 365.25:.1f} years)")
        return self


class ElementBase(_Strict):
    name: Annotated[str, Field(pattern=NAME_RE, max_length=40, description="unique element name (DNS-1123 label)")]
    enabled: bool = Field(True, description="false switches the element off (its Deployment scales to 0)")


@cache
def element_spec_model(kind: str) -> type[ElementBase]:
    """The ``{name, kind, enabled, config}`` model of one kind."""
    cls = element_class(kind)
    return create_model(
        f"{type(cls.Config()).__name__.removesuffix('Config') or kind.title()}Element_{kind}",
        __base__=ElementBase,
        __doc__=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else None,
        kind=(Literal[kind], ...),  # type: ignore[valid-type]
        config=(cls.Config, Field(default_factory=cls.Config)),
    )


@cache
def _element_union() -> Any:
    models = tuple(element_spec_model(kind) for kind in KINDS)
    return Annotated[Union[models], Field(discriminator="kind")]  # type: ignore[valid-type]


# -- how the operator deploys a home (ignored by `hometwin run` and `hometwin up`) -------------

# A Kubernetes quantity as people write it: "250m" CPU, "128Mi" memory, "0.5", "1Gi".
QUANTITY_RE = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
Quantity = Annotated[str, Field(pattern=QUANTITY_RE, max_length=20)]


class ResourceAmounts(_Strict):
    cpu: Quantity | None = Field(None, description="CPU, e.g. '100m' (millicores) or '0.5'")
    memory: Quantity | None = Field(None, description="memory, e.g. '128Mi'")


class Resources(_Strict):
    requests: ResourceAmounts = Field(default_factory=lambda: ResourceAmounts(cpu="50m", memory="96Mi"))
    limits: ResourceAmounts = Field(default_factory=lambda: ResourceAmounts(cpu="500m", memory="256Mi"))


class Deployment(_Strict):
    """How the Kubernetes operator runs this home (`hometwin run` / `hometwin up` ignore it)."""

    image: Annotated[str | None, Field(max_length=255, description="container image for every service of "
                                       "this home (default: the operator's own image)")] = None
    resources: Resources = Field(default_factory=Resources,
                                 description="requests/limits of every service (router, clock, elements)")
    elements: dict[Annotated[str, Field(pattern=NAME_RE, max_length=40)], Resources] = Field(
        default_factory=dict, description="per-element resources, keyed by element name (override `resources`)")
    data_config_map: Annotated[str | None, Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", max_length=253,
        description="ConfigMap (in the Home's namespace) holding the data files the spec names by a "
                    "relative path (price CSVs, profiles, weather files), one key per file name; mounted "
                    "into the pods of the elements that read them")] = None
    tls_secret: Annotated[str | None, Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", max_length=253,
        description="Secret (in the Home's namespace) with tls.crt, tls.key and ca.crt (as cert-manager "
                    "makes them): the router's TCP transports then speak TLS only (its certificate must name "
                    "the Service <home>-router) and every service checks it against ca.crt")] = None


class HomeSpecBase(_Strict):
    location: Location
    clock: Clock
    deployment: Deployment = Field(default_factory=Deployment, description="Kubernetes only: image and resources")


@cache
def _spec_model() -> type[BaseModel]:
    return create_model("HomeSpec", __base__=HomeSpecBase,
                        elements=(list[_element_union()], Field(min_length=1, max_length=MAX_ELEMENTS)),  # type: ignore[valid-type]
                        __validators__={"_check": model_validator(mode="after")(_check_elements),
                                        "_count": model_validator(mode="before")(_count_elements)})


def _count_elements(data: Any) -> Any:
    """Refuse too many elements before validating any of them (50,000 would take seconds)."""
    elements = data.get("elements") if isinstance(data, dict) else None
    if isinstance(elements, (list, tuple)) and len(elements) > MAX_ELEMENTS:
        raise ValueError(f"elements: at most {MAX_ELEMENTS} elements in a home (got {len(elements)})")
    return data


# Roles and kinds a home may hold only once (the inverter balances one bus).
_AT_MOST_ONE = ("inverter", "grid", "battery")


def _check_elements(spec: Any) -> Any:
    problems: list[str] = []
    seen: dict[str, int] = {}
    for idx, el in enumerate(spec.elements):
        if el.name in seen:
            problems.append(f"elements[{idx}].name: duplicate name {el.name!r} (also elements[{seen[el.name]}])")
        seen.setdefault(el.name, idx)
    for kind in _AT_MOST_ONE:
        found = [i for i, el in enumerate(spec.elements) if el.kind == kind]
        if len(found) > 1:
            problems.append(f"elements: at most one element of kind {kind!r} (found {len(found)} at "
                            + ", ".join(f"elements[{i}]" for i in found) + ")")
    for name in spec.deployment.elements:
        if name not in seen:
            problems.append(f"deployment.elements.{name}: no element named {name!r} (elements: {', '.join(seen)})")
    if not problems:
        try:
            length_s = run_length_s(spec.clock, spec.location.timezone)
            check_run_size(length_s // spec.clock.step_s, sum(1 for el in spec.elements if el.enabled))
        except SpecError as exc:
            problems.extend(exc.errors)
    if not any(el.kind == "inverter" for el in spec.elements):
        problems.append("elements: a home needs exactly one element of kind 'inverter' (found 0)")
    kinds = {el.kind for el in spec.elements}
    for idx, el in enumerate(spec.elements):
        needs = element_class(el.kind).inputs
        if needs and not _provided(needs, kinds):
            missing = [s for s in needs if not _provided((s,), kinds)]
            problems.append(f"elements[{idx}]: a {el.kind!r} needs signals {missing} that no element of this "
                            f"home provides (add: {', '.join(_providers(missing))})")
    if problems:
        raise ValueError("\n".join(problems))
    return spec


def run_length_s(clock: Any, timezone: str) -> int:
    """Seconds from ``clock.start`` to ``clock.end``, or ``clock.duration``."""
    if clock.end is not None:
        return int((_to_utc(clock.end, timezone) - _to_utc(clock.start, timezone)).total_seconds())
    return parse_duration_s(clock.duration)


def check_run_size(n_steps: int, n_elements: int, where: str = "clock") -> None:
    """Refuse a run of more than :data:`MAX_STEPS` steps or :data:`MAX_ELEMENT_STEPS` element-steps."""
    if n_steps > MAX_STEPS:
        raise SpecError([f"{where}: the run has {n_steps:,} steps, more than the limit of {MAX_STEPS:,} "
                         f"(shorten it or use a longer step_s)"])
    if n_steps * n_elements > MAX_ELEMENT_STEPS:
        raise SpecError([f"{where}: the run has {n_steps:,} steps × {n_elements} enabled elements = "
                         f"{n_steps * n_elements:,} element-steps, more than the limit of {MAX_ELEMENT_STEPS:,} "
                         f"(shorten it, use a longer step_s, or fewer elements)"])


def _provided(signals: tuple[str, ...], kinds: set[str]) -> bool:
    outs = {s for k in kinds for s in element_class(k).outputs}
    return set(signals) <= outs


def _providers(signals: list[str]) -> list[str]:
    return sorted({k for k in KINDS for s in signals if s in element_class(k).outputs})


class HomeBase(_Strict):
    apiVersion: Literal["hometwin.io/v1alpha1"] = API_VERSION
    kind: Literal["Home"] = "Home"
    metadata: Metadata
    # Kubernetes writes status; the spec never reads it.
    status: dict[str, Any] | None = None
    _source_dir: Path | None = PrivateAttr(None)

    @field_validator("status")
    @classmethod
    def _bounded_status(cls, value: Any) -> Any:
        if value is not None:
            _check_free(value, "status")
        return value


@cache
def home_model() -> type[BaseModel]:
    """The pydantic model of the whole ``Home`` document."""
    return create_model("Home", __base__=HomeBase, spec=(_spec_model(), ...))


def json_schema() -> dict[str, Any]:
    """JSON Schema of the Home document (source of the CRD and UI forms)."""
    schema = home_model().model_json_schema()
    schema["title"] = "Home"
    schema["$id"] = "https://hometwin.io/schemas/v1alpha1/home.json"
    return schema


def _flatten_value_errors(lines: list[str]) -> list[str]:
    """Model-level validators report several lines joined with newlines; split them."""
    out = []
    for line in lines:
        where, _, rest = line.partition(": ")
        for sub in rest.split("\n"):
            out.append(sub if sub.startswith("elements") or where == "(document)" else f"{where}: {sub}")
    return [re.sub(r"^spec: ", "", x) for x in out]


def parse_home(data: Any, source: str = "") -> Any:
    """Validate a Home document (already parsed); raise :class:`SpecError` with all problems."""
    if not isinstance(data, dict):
        raise SpecError([f"(document): must be a mapping with apiVersion, kind, metadata, spec (got {type(data).__name__})"], source)
    try:
        return home_model().model_validate(data)
    except ValidationError as exc:
        lines = format_validation_error(exc, root=home_model(), drop=("spec",), kinds=KINDS)
        raise SpecError(_flatten_value_errors(lines), source) from None


#: Deepest nesting of a spec's YAML (the schema needs 6; PyYAML's scanner is quadratic in it).
MAX_YAML_DEPTH = 64


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: ``*name`` is refused where it stands, so a 1 KB document cannot
    expand to billions of nodes (an alias bomb); a Home never needs one.  Nesting is bounded by
    :data:`MAX_YAML_DEPTH` (5,000 ``[`` cost PyYAML 18 s before)."""

    _depth = 0

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        if self.flow_level >= MAX_YAML_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                                            self.get_mark())
        super().fetch_flow_collection_start(token_class)  # type: ignore[misc]

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a home spec",
                                              event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def parse_yaml(text: str, path: str = "") -> Any:
    """A YAML document without aliases (:class:`_NoAliasLoader`), nesting bounded by Python's
    recursion limit; :class:`SpecError` with the line and column of a problem."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        why = " ".join(str(getattr(exc, "problem", None) or exc).split())  # a ReaderError's text has lines
        raise SpecError([f"{where}: YAML syntax error: {clip(why, 300)}"], str(path)) from None
    except RecursionError:
        raise SpecError([f"{path}: YAML nested too deeply"], str(path)) from None


def load_home(path: str | Path) -> Any:
    """Read (a regular file of at most :data:`hometwin.datafiles.MAX_SPEC_BYTES`) and validate a
    ``home.yaml``."""
    from hometwin.datafiles import MAX_SPEC_BYTES, DataFileError, read_text

    path = Path(path)
    try:
        text = read_text(str(path), "home spec", MAX_SPEC_BYTES)
    except DataFileError as exc:
        msg = str(exc)
        if "not found" in msg:
            msg = f"{path}: cannot read (No such file or directory)"
        raise SpecError([msg], str(path)) from None
    data = parse_yaml(text, str(path))
    home = parse_home(data, str(path))
    home._source_dir = path.parent.resolve()  # relative data files resolve against the spec
    return home


# -- derived quantities ----------------------------------------------------------------------

def _to_utc(value: dt.datetime, tz: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
    return ts.tz_convert("UTC")


#: ``hometwin up --realtime`` gives every service it starts the same resolved start (Unix s) here,
#: so that the processes of one run agree on step 0 whenever each of them reads the spec.
ENV_REALTIME_START = "HOMETWIN_REALTIME_START"


def realtime_start(step_s: int, now_s: float | None = None) -> pd.Timestamp:
    """Now (or ``now_s``), rounded down to a whole step (UTC): where a realtime run starts."""
    import time

    now = time.time() if now_s is None else float(now_s)
    return pd.Timestamp(int(now // step_s) * step_s, unit="s", tz="UTC")


def home_context(home: Any, until_s: int | None = None, realtime_start_s: int | None = None) -> HomeContext:
    """The immutable run context of a validated Home.

    A realtime run (``clock.realtime``, or :data:`ENV_REALTIME_START` set by ``hometwin up
    --realtime``) starts at the start that variable gives, else at ``clock.start``, else now
    rounded down to the step.  ``realtime_start_s`` (Unix s) makes it a realtime run from there,
    as the variable does (the launcher's own view of the run it starts)."""
    import os

    spec = home.spec
    loc, clock = spec.location, spec.clock
    env_start = str(realtime_start_s) if realtime_start_s is not None else os.environ.get(ENV_REALTIME_START, "").strip()
    realtime = bool(clock.realtime or env_start)
    if env_start:
        try:
            start = pd.Timestamp(int(env_start), unit="s", tz="UTC")
        except (ValueError, OverflowError):
            raise SpecError([f"{ENV_REALTIME_START}: Unix seconds of the run's start (got {clip(env_start, 40)!r})"]) from None
    elif clock.start is None:
        start = realtime_start(clock.step_s)
    else:
        start = _to_utc(clock.start, loc.timezone)
    length_s = run_length_s(clock, loc.timezone)
    if until_s is not None:
        if not 0 < until_s <= MAX_RUN_S:
            raise SpecError([f"until: the run must be > 0 and at most {MAX_RUN_YEARS} years ({MAX_RUN_S} s) "
                             f"(got {until_s} s)"])
        length_s = until_s
    n_steps = length_s // clock.step_s
    if n_steps <= 0:
        raise SpecError([f"clock: the run is shorter than one step ({length_s} s < step_s {clock.step_s} s)"])
    check_run_size(n_steps, sum(1 for el in spec.elements if el.enabled), "until" if until_s is not None else "clock")
    return HomeContext(name=home.metadata.name, latitude=loc.latitude, longitude=loc.longitude,
                       altitude_m=loc.altitude_m, timezone=loc.timezone, start=start,
                       step_s=clock.step_s, n_steps=n_steps, seed=clock.seed, base_dir=str(source_dir(home)),
                       realtime=realtime)


def check_setup(home: Any, until_s: int | None = None) -> None:
    """Set up every enabled element as a run would — its data files found, confined, read and
    checked (finite, in range, covering the run) — without running anything; :class:`SpecError`
    with one line per problem.  ``hometwin validate`` calls it, so it refuses what ``run`` would."""
    from hometwin.datafiles import DataFileError
    from hometwin.element import data_files

    ctx = home_context(home, until_s)
    problems: list[str] = []
    for idx, el in enumerate(home.spec.elements):  # every file's place first: nothing set up yet
        for where, path in data_files(el.config, f"elements[{idx}].config") if el.enabled else ():
            try:
                ctx.resolve_path(path, where)
            except DataFileError as exc:
                problems.append(str(exc))
    if problems:
        raise SpecError(problems)
    for idx, el in enumerate(home.spec.elements):
        if not el.enabled:
            continue
        try:
            element_class(el.kind)(el.name, el.config, ctx)
        except DataFileError as exc:
            field = getattr(exc, "field", None)
            text = str(exc)
            problems.append(f"elements[{idx}].config.{text}" if field and text.startswith(f"{field}: ")
                            else f"elements[{idx}] ({el.name}): {text}")
        except Exception as exc:  # noqa: BLE001 - a model's setup refusing its config: one line each
            problems.append(f"elements[{idx}] ({el.name}): {clip(' '.join(str(exc).split()), 400)}")
    if problems:
        raise SpecError(problems)


def source_dir(home: Any) -> Path:
    """Folder that relative file paths in the spec are resolved against."""
    return getattr(home, "_source_dir", None) or Path.cwd()
