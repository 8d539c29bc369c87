"""The ``Home`` document (= the CRD schema): location, clock and elements.

One set of pydantic models.  ``hometwin schema`` exports their JSON Schema; the
CRD and the UI forms are generated from it.  Each element's ``config`` is the
pydantic model of its kind, chosen by the ``kind`` discriminator.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model, field_validator, model_validator

from hometwin.element import HomeContext, STRICT
from hometwin.errors import format_validation_error
from hometwin.registry import KINDS, element_class

API_VERSION = "hometwin.io/v1alpha1"
NAME_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # DNS-1123 label: element = Deployment name part
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


class SpecError(ValueError):
    """A Home document that cannot run; ``errors`` has one line per problem."""

    def __init__(self, errors: list[str], source: str = ""):
        self.errors = errors
        self.source = source
        super().__init__("\n".join(errors))


def parse_duration_s(value: Any) -> int:
    """'7d', '36h', '90m', '3600s', 3600, or an ISO-8601/timedelta → whole seconds."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
        else:
            try:
                seconds = pd.Timedelta(value).total_seconds()
            except ValueError:
                raise ValueError(f"not a duration (got {value!r}; use e.g. '7d', '36h', '15m', '60s')") from None
    else:
        raise ValueError(f"not a duration (got {value!r})")
    if seconds != int(seconds):
        raise ValueError(f"must be whole seconds (got {value!r})")
    return int(seconds)


class _Strict(BaseModel):
    model_config = STRICT


class Metadata(BaseModel):
    # Kubernetes adds uid, namespace, labels … to metadata; they are kept, not validated.
    model_config = ConfigDict(extra="allow")
    name: Annotated[str, Field(pattern=NAME_RE, max_length=40, description="Home name (DNS-1123 label)")]
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class Location(_Strict):
    latitude: Annotated[float, Field(ge=-90, le=90, description="[degrees] north positive")]
    longitude: Annotated[float, Field(ge=-180, le=180, description="[degrees] east positive")]
    altitude_m: Annotated[float, Field(ge=-500, le=9000, description="[m] above sea level")] = 0.0
    timezone: str = Field("UTC", description="IANA time zone for schedules and tariffs, e.g. Africa/Johannesburg")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Europe/Oslo')") from None
        return value


class Clock(_Strict):
    start: dt.datetime = Field(description="first step; without an offset it is local time of the home")
    end: dt.datetime | None = Field(None, description="end (exclusive); give end or duration")
    duration: str | int | None = Field(None, description="run length, e.g. '7d', '36h' (instead of end)")
    step_s: Annotated[int, Field(ge=1, le=86400, description="[s] simulation step")] = 60
    window: Annotated[int | None, Field(ge=1, description="steps per window (default: one day)")] = None
    seed: Annotated[int, Field(ge=0, le=2**63 - 1, description="seed of every random stream")] = 0

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is not None and parse_duration_s(value) <= 0:
            raise ValueError(f"must be > 0 (got {value!r})")
        return value

    @model_validator(mode="after")
    def _end_or_duration(self) -> "Clock":
        if (self.end is None) == (self.duration is None):
            raise ValueError("give exactly one of clock.end or clock.duration")
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


class HomeSpecBase(_Strict):
    location: Location
    clock: Clock
    deployment: Deployment = Field(default_factory=Deployment, description="Kubernetes only: image and resources")


@cache
def _spec_model() -> type[BaseModel]:
    return create_model("HomeSpec", __base__=HomeSpecBase,
                        elements=(list[_element_union()], Field(min_length=1)),  # type: ignore[valid-type]
                        __validators__={"_check": model_validator(mode="after")(_check_elements)})


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
        lines = format_validation_error(exc, root=home_model(), drop=("spec",))
        raise SpecError(_flatten_value_errors(lines), source) from None


def load_home(path: str | Path) -> Any:
    """Read and validate a ``home.yaml``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError([f"{path}: cannot read ({exc.strerror})"], str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise SpecError([f"{where}: YAML syntax error: {getattr(exc, 'problem', exc)}"], str(path)) from None
    home = parse_home(data, str(path))
    home._source_dir = path.parent.resolve()  # relative data files resolve against the spec
    return home


# -- derived quantities ----------------------------------------------------------------------

def _to_utc(value: dt.datetime, tz: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
    return ts.tz_convert("UTC")


def home_context(home: Any, until_s: int | None = None) -> HomeContext:
    """The immutable run context of a validated Home."""
    spec = home.spec
    loc, clock = spec.location, spec.clock
    start = _to_utc(clock.start, loc.timezone)
    if clock.end is not None:
        length_s = int((_to_utc(clock.end, loc.timezone) - start).total_seconds())
    else:
        length_s = parse_duration_s(clock.duration)
    if until_s is not None:
        length_s = until_s
    n_steps = length_s // clock.step_s
    if n_steps <= 0:
        raise SpecError([f"clock: the run is shorter than one step ({length_s} s < step_s {clock.step_s} s)"])
    return HomeContext(name=home.metadata.name, latitude=loc.latitude, longitude=loc.longitude,
                       altitude_m=loc.altitude_m, timezone=loc.timezone, start=start,
                       step_s=clock.step_s, n_steps=n_steps, seed=clock.seed, base_dir=str(source_dir(home)))


def source_dir(home: Any) -> Path:
    """Folder that relative file paths in the spec are resolved against."""
    return getattr(home, "_source_dir", None) or Path.cwd()
